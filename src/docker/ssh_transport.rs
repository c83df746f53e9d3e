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
use bollard::{API_DEFAULT_VERSION, BollardRequest, Docker};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use russh::ChannelStream;
use russh::client::Msg;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::ssh::{Session, SshError};

/// Channels opened at connect, for the calls a release makes at once right after (it reads a
/// host with several calls together, and an exec's start takes its channel for good).
const WARM_CHANNELS: usize = 8;

/// Where Docker listens on servers.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// A bollard client for the engine on `session`'s server, once channels to its socket are open
/// (which is what proves the engine is there and the SSH user may use it).
///
/// No `/version` call agrees on an API version first: bollard's request paths carry no version
/// prefix (`Uri::parse` joins an absolute path, which drops it; the test below keeps that
/// true), so the engine answers every call in its own API version, and the call would cost a
/// round trip and the engine's own time (it asks containerd and runc for theirs). The version
/// report is read when shown ([`version`]).
pub async fn connect(session: Arc<Session>, timeout: Duration) -> anyhow::Result<Docker> {
    let opened = futures_util::future::join_all(
        (0..WARM_CHANNELS).map(|_| session.open_unix_socket(DOCKER_SOCKET)),
    )
    .await;
    let mut warm = Vec::with_capacity(opened.len());
    for channel in opened {
        warm.push(channel?);
    }
    let connector = Connector {
        session,
        socket: DOCKER_SOCKET,
        warm: Arc::new(std::sync::Mutex::new(warm)),
    };
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector);
    let docker = Docker::connect_with_custom_transport(
        move |request: BollardRequest| {
            let client = client.clone();
            async move {
                // Method and path only: bodies and headers carry environments and registry
                // credentials.
                let (method, path) = (request.method().clone(), request.uri().path().to_string());
                tracing::debug!(%method, path, "Docker request");
                let response = client
                    .request(request)
                    .await
                    .map_err(bollard::errors::Error::from);
                if let Ok(response) = &response {
                    tracing::debug!(%method, path, status = %response.status(), "Docker response");
                }
                response
            }
        },
        Some("http://docker"),
        timeout.as_secs().max(1),
        API_DEFAULT_VERSION,
    )?;
    Ok(docker)
}

/// The engine's version report (`/version`), for `hoist details`.
pub async fn version(docker: &Docker) -> Result<SystemVersion, bollard::errors::Error> {
    docker.version().await
}

/// Opens one SSH channel per HTTP connection hyper asks for.
#[derive(Clone)]
struct Connector {
    session: Arc<Session>,
    socket: &'static str,
    /// Channels opened at connect, handed out before any new one is opened.
    warm: Arc<std::sync::Mutex<Vec<ChannelStream<Msg>>>>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = SshError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let warm = self.warm.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(stream) = warm {
            return Box::pin(async move { Ok(TokioIo::new(Stream(stream))) });
        }
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
    use std::sync::{Arc, Mutex};

    use bollard::{API_DEFAULT_VERSION, BollardRequest, Docker};

    /// What [`super::connect`] relies on to skip version negotiation: bollard sends paths without
    /// a `/v1.xx` prefix, so the engine answers in its own API version. Should bollard start
    /// sending its (newer) version, older engines would refuse every call: negotiate again.
    #[tokio::test]
    async fn bollard_paths_carry_no_api_version() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let docker = Docker::connect_with_custom_transport(
            move |request: BollardRequest| {
                record
                    .lock()
                    .expect("not poisoned")
                    .push(request.uri().path().to_string());
                async { Err(bollard::errors::Error::RequestTimeoutError) }
            },
            Some("http://docker"),
            5,
            API_DEFAULT_VERSION,
        )
        .expect("a client");
        let _ = docker.ping().await;
        let _ = docker.inspect_container("web", None).await;
        assert_eq!(
            *seen.lock().expect("not poisoned"),
            ["/_ping", "/containers/web/json"]
        );
    }
}
