//! The Docker Engine API of a server, through its SSH connection: each HTTP connection bollard
//! needs is a `direct-streamlocal` channel to `/var/run/docker.sock`, pooled and reused by
//! hyper's client (keep-alive, upgrades for exec and attach). No port is opened on the server and
//! no docker CLI is needed there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::models::SystemVersion;
use bollard::{API_DEFAULT_VERSION, BollardRequest, ClientVersion, Docker};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use russh::ChannelStream;
use russh::client::Msg;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::ssh::{Session, SshError};

/// Channels opened beside the first call, for calls made at once later.
const WARM_CHANNELS: usize = 5;

/// Where Docker listens on servers.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// A bollard client for the engine on `session`'s server, with the API version agreed, and the
/// engine's version report. One `/version` call does both: bollard's `negotiate_version` would
/// read it once to agree and the caller again for the report, a round trip more per server.
pub async fn connect(
    session: Arc<Session>,
    timeout: Duration,
) -> Result<(Docker, SystemVersion), bollard::errors::Error> {
    let connector = Connector {
        session,
        socket: DOCKER_SOCKET,
    };
    // One pool of channels, shared by the probing client and the negotiated one.
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector);
    let docker_with = |version: &ClientVersion| {
        let client = client.clone();
        Docker::connect_with_custom_transport(
            move |request: BollardRequest| {
                let client = client.clone();
                async move {
                    client
                        .request(request)
                        .await
                        .map_err(bollard::errors::Error::from)
                }
            },
            Some("http://docker"),
            timeout.as_secs().max(1),
            version,
        )
    };
    // Pings beside `/version` open more channels in the same round trip, kept in the pool: a
    // release reads a host with several calls at once, and an exec's start takes its channel
    // for good (the stream is hijacked), so later calls find channels open instead of opening
    // them, a round trip each.
    let probe = docker_with(API_DEFAULT_VERSION)?;
    let pings = futures_util::future::join_all((0..WARM_CHANNELS).map(|_| probe.ping()));
    let (report, _) = tokio::join!(probe.version(), pings);
    let report = report?;
    let server = report
        .api_version
        .as_deref()
        .and_then(parse_api_version)
        .ok_or(bollard::errors::Error::APIVersionParseError {})?;
    // As `negotiate_version`: the lower of ours and the server's.
    let agreed = if server < *API_DEFAULT_VERSION {
        server
    } else {
        *API_DEFAULT_VERSION
    };
    Ok((docker_with(&agreed)?, report))
}

/// "1.41" → 1.41.
fn parse_api_version(text: &str) -> Option<ClientVersion> {
    let (major, minor) = text.split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// Opens one SSH channel per HTTP connection hyper asks for.
#[derive(Clone)]
struct Connector {
    session: Arc<Session>,
    socket: &'static str,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = SshError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let session = self.session.clone();
        let socket = self.socket;
        Box::pin(async move {
            tracing::debug!(
                host = session.host(),
                socket,
                "opening a channel to the Docker socket"
            );
            let stream = session.open_unix_socket(socket).await?;
            tracing::debug!(
                host = session.host(),
                socket,
                "channel to the Docker socket open"
            );
            Ok(TokioIo::new(Stream(stream)))
        })
    }
}

/// An SSH channel as a connection hyper can pool.
struct Stream(ChannelStream<Msg>);

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_api_version;

    #[test]
    fn api_versions_parse_as_major_and_minor() {
        let version = parse_api_version("1.41").expect("parses");
        assert_eq!((version.major_version, version.minor_version), (1, 41));
        assert!(parse_api_version("1").is_none());
        assert!(parse_api_version("x.41").is_none());
    }
}
