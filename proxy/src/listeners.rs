//! The listening sockets of the HTTP and HTTPS ports, held by a long-lived owner
//! (`hoist-proxy listen`) and handed to each `hoist-proxy run --listeners-from` over a unix socket
//! with SCM_RIGHTS. The sockets, and the connections queued on them, outlive any one proxy, so a
//! proxy can be replaced without a connection being refused: the old and the new one accept from
//! the same sockets while one takes over from the other (`handoff.rs`).
//!
//! In Docker a published port belongs to one container, so the owner runs in a container of its
//! own that never changes (it does nothing but hold the sockets); the proxies receive them over
//! the unix socket in the state volume both mount.
//!
//! The exchange: the proxy connects; the owner sends one line of JSON (how many sockets of each
//! port) with every socket attached, then keeps the connection open. The proxy keeps it open too:
//! when the owner goes away its sockets are gone from the network, so the proxy shuts down (and
//! its restart policy brings it back onto the owner's new sockets).

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

/// Most sockets of one port the owner hands out (one per serving thread of the proxy).
pub const MAX_PER_PORT: usize = 64;

/// File name of the owner's socket inside the state directory.
pub const SOCKET_FILE_NAME: &str = "listeners.sock";

/// The line that goes with the sockets: the first `http` are the HTTP port's, the next `https`
/// the HTTPS port's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    http: usize,
    https: usize,
}

/// Listening sockets of both ports, bound here (`run` without an owner) or received from one.
#[derive(Debug)]
pub struct Listeners {
    pub http: Vec<std::net::TcpListener>,
    pub https: Vec<std::net::TcpListener>,
    /// The connection to the owner, kept open while the sockets are in use.
    pub owner: Option<UnixStream>,
}

impl Listeners {
    /// Binds `count` SO_REUSEPORT sockets on each of `http` and `https`.
    pub fn bind(http: SocketAddr, https: SocketAddr, count: usize) -> anyhow::Result<Self> {
        Ok(Self {
            http: reuseport_listeners(http, count)
                .with_context(|| format!("cannot listen for HTTP on {http}"))?,
            https: reuseport_listeners(https, count)
                .with_context(|| format!("cannot listen for HTTPS on {https}"))?,
            owner: None,
        })
    }

    /// Receives the sockets from the owner at `path`, waiting up to `wait` for it to answer
    /// (a proxy container may start before the owner's).
    pub fn fetch(path: &Path, wait: Duration) -> anyhow::Result<Self> {
        let started = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(error) if started.elapsed() >= wait => {
                    return Err(error).with_context(|| {
                        format!(
                            "no `hoist-proxy listen` answered on {} within {}",
                            path.display(),
                            crate::duration::format_duration(wait)
                        )
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let (header, fds) = receive(&stream)
            .with_context(|| format!("cannot receive the listeners from {}", path.display()))?;
        stream.set_read_timeout(None)?;
        if fds.len() != header.http + header.https || header.http == 0 || header.https == 0 {
            anyhow::bail!(
                "the listener owner on {} sent {} sockets for {header:?}",
                path.display(),
                fds.len()
            );
        }
        let mut sockets = fds.into_iter().map(|fd| {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true).map(|()| listener)
        });
        let http = sockets
            .by_ref()
            .take(header.http)
            .collect::<Result<_, _>>()?;
        let https = sockets.collect::<Result<_, _>>()?;
        Ok(Self {
            http,
            https,
            owner: Some(stream),
        })
    }

    /// The port the first socket of `listeners` is bound to, or `asked`.
    pub fn port(listeners: &[std::net::TcpListener], asked: u16) -> u16 {
        listeners
            .first()
            .and_then(|listener| listener.local_addr().ok())
            .map_or(asked, |address| address.port())
    }
}

/// `hoist-proxy listen`: binds the ports, then hands the sockets to every proxy that connects
/// on `socket`, until SIGTERM or SIGINT. It never accepts a connection itself.
pub async fn serve_owner(listeners: Listeners, socket: &Path) -> anyhow::Result<()> {
    let owner = crate::control::bind(socket).await?;
    tracing::info!(
        http_port = Listeners::port(&listeners.http, 0),
        https_port = Listeners::port(&listeners.https, 0),
        per_port = listeners.http.len(),
        socket = %socket.display(),
        "Holding the listeners"
    );
    let listeners = std::sync::Arc::new(listeners);
    let serving = async {
        loop {
            let stream = match owner.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "Listener socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let listeners = std::sync::Arc::clone(&listeners);
            tokio::spawn(async move {
                let Ok(std_stream) = stream.into_std() else {
                    return;
                };
                // A short blocking send: one line and the descriptors.
                let sent = std_stream
                    .set_nonblocking(false)
                    .and_then(|()| send(&std_stream, &listeners));
                if let Err(error) = sent {
                    tracing::warn!(%error, "Could not hand the listeners to a proxy");
                    return;
                }
                tracing::info!("Handed the listeners to a proxy");
                // Held open until the proxy goes: its end tells it when this process is gone.
                let _ = std_stream.set_nonblocking(true);
                if let Ok(mut stream) = tokio::net::UnixStream::from_std(std_stream) {
                    let mut sink = [0u8; 64];
                    while let Ok(read) = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await
                    {
                        if read == 0 {
                            break;
                        }
                    }
                }
                tracing::info!("A proxy let go of the listeners");
            });
        }
    };
    tokio::select! {
        _ = serving => {}
        signal = crate::server::termination() => tracing::info!(signal, "Shutting down"),
    }
    let _ = std::fs::remove_file(socket);
    crate::logging::flush();
    Ok(())
}

/// Binds `count` listeners on one address with SO_REUSEPORT, so each serving thread accepts its
/// own connections. Port 0 picks a free port for the first; the others join it.
pub fn reuseport_listeners(
    address: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut listeners: Vec<std::net::TcpListener> = Vec::with_capacity(count);
    let mut address = address;
    for _ in 0..count {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(address),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        address = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Sends `listeners` over `stream` with their header line.
pub fn send(stream: &UnixStream, listeners: &Listeners) -> std::io::Result<()> {
    let header = Header {
        http: listeners.http.len(),
        https: listeners.https.len(),
    };
    let mut line = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let fds: Vec<RawFd> = listeners
        .http
        .iter()
        .chain(&listeners.https)
        .map(AsRawFd::as_raw_fd)
        .collect();
    let rights = [ControlMessage::ScmRights(&fds)];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&line)],
        &rights,
        MsgFlags::empty(),
        None,
    )?;
    if sent != line.len() {
        return Err(std::io::Error::other("the header line was cut short"));
    }
    Ok(())
}

/// Receives the header line and the sockets sent with it.
fn receive(stream: &UnixStream) -> anyhow::Result<(Header, Vec<OwnedFd>)> {
    let mut buffer = [0u8; 256];
    let mut space = nix::cmsg_space!([RawFd; 2 * MAX_PER_PORT]);
    let mut iov = [IoSliceMut::new(&mut buffer)];
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = control {
            // SAFETY: the kernel just installed these descriptors in this process for us; each
            // is owned exactly once from here on.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if message.flags.contains(MsgFlags::MSG_CTRUNC) {
        anyhow::bail!("more sockets than the {MAX_PER_PORT} per port this proxy takes");
    }
    let length = message.bytes;
    let line = std::str::from_utf8(&buffer[..length])
        .context("the header line is not UTF-8")?
        .trim_end();
    if line.is_empty() {
        anyhow::bail!("the owner closed the connection without sending the sockets");
    }
    let header = serde_json::from_str(line).context("the header line is not the expected JSON")?;
    Ok((header, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn sockets_sent_are_the_sockets_received() {
        let bound = Listeners::bind(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            2,
        )
        .expect("bind");
        let http_port = Listeners::port(&bound.http, 0);
        let (left, right) = UnixStream::pair().expect("pair");
        send(&left, &bound).expect("send");
        let (header, fds) = receive(&right).expect("receive");
        assert_eq!(header, Header { http: 2, https: 2 });
        assert_eq!(fds.len(), 4);
        let received = std::net::TcpListener::from(fds.into_iter().next().expect("one"));
        assert_eq!(
            Listeners::port(&[received.try_clone().unwrap()], 0),
            http_port
        );
        // A connection made to the port is accepted from the received copy.
        received.set_nonblocking(false).unwrap();
        drop(bound);
        let mut client = std::net::TcpStream::connect(("127.0.0.1", http_port)).expect("connect");
        let (mut accepted, _) = received.accept().expect("accept on the received socket");
        client.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
    }

    #[test]
    fn a_closed_owner_is_an_error_not_a_panic() {
        let (left, right) = UnixStream::pair().expect("pair");
        drop(left);
        assert!(receive(&right).is_err());
    }
}
