//! One hoist-proxy handing over to the next on the same state directory, both accepting from
//! the same listening sockets (`listeners.rs`), so no connection is refused or reset:
//!
//! 1. The new proxy, set up and holding the sockets, connects to the old one's control socket and
//!    asks to take over (`handoff`). The old one freezes: it saves no more changes, so its state
//!    file is final, and every change asked of it from now on is refused and undone.
//! 2. The new proxy loads that state and starts accepting. For a moment both accept.
//! 3. It sends `release` on the same connection. The old one closes its control socket, answers,
//!    stops accepting and drains: requests in flight finish, idle keep-alive connections are
//!    closed only once a request on them is answered (with `Connection: close`) or they have
//!    been idle a while; then it exits. The new one binds the control socket.
//!
//! If the new proxy fails or goes away before `release`, the old one unfreezes and serves on as
//! if nothing happened.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

use crate::control::{ControlRequest, ControlResponse};
use crate::router::Router;

/// How long the old proxy stays frozen waiting for `release`.
const RELEASE_WAIT: Duration = Duration::from_secs(60);

/// The old proxy's side: what the control server and the server loop watch.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Set when the control server is to close its socket.
    close_control: CancellationToken,
    /// Set once it has.
    control_closed: CancellationToken,
    /// Set once the successor has taken over: stop accepting, drain, exit.
    pub released: CancellationToken,
}

impl Outgoing {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Resolves when the control server should close its socket.
    pub async fn control_closing(&self) {
        self.close_control.cancelled().await;
    }

    /// The control server has closed its socket.
    pub fn control_closed(&self) {
        self.control_closed.cancel();
    }
}

/// Answers a `handoff` request on the old proxy's control connection: freeze, wait for
/// `release`, then let go (or unfreeze).
pub async fn give(
    mut reader: BufReader<OwnedReadHalf>,
    mut writer: OwnedWriteHalf,
    router: Arc<Router>,
    outgoing: Arc<Outgoing>,
) -> std::io::Result<()> {
    if outgoing.released.is_cancelled() || !router.freeze() {
        return answer(
            &mut writer,
            &ControlResponse::Failed {
                error: "this proxy is already handing over to another".into(),
            },
        )
        .await;
    }
    tracing::info!("Handing over: changes are frozen");
    let mut released = false;
    if answer(&mut writer, &ControlResponse::Done).await.is_ok() {
        let mut line = String::new();
        let read = tokio::time::timeout(RELEASE_WAIT, reader.read_line(&mut line)).await;
        released = matches!(read, Ok(Ok(n)) if n > 0)
            && matches!(
                serde_json::from_str::<ControlRequest>(&line),
                Ok(ControlRequest::Release)
            );
    }
    if !released {
        router.unfreeze();
        tracing::warn!("Handover abandoned by the new proxy; serving on");
        return Ok(());
    }
    outgoing.close_control.cancel();
    outgoing.control_closed.cancelled().await;
    outgoing.released.cancel();
    tracing::info!("Handed over: draining");
    answer(&mut writer, &ControlResponse::Done).await
}

async fn answer(writer: &mut OwnedWriteHalf, response: &ControlResponse) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.flush().await
}

/// The new proxy's side, between freezing the old one and releasing it.
#[derive(Debug)]
pub struct Incoming {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

/// Asks the proxy answering on `socket`, if any, to hand over. `None`: nothing answers there.
pub async fn take_over(socket: &Path) -> anyhow::Result<Option<Incoming>> {
    let Ok(stream) = UnixStream::connect(socket).await else {
        return Ok(None);
    };
    let (reader, writer) = stream.into_split();
    let mut incoming = Incoming {
        reader: BufReader::new(reader),
        writer,
    };
    incoming
        .exchange(&ControlRequest::Handoff)
        .await
        .with_context(|| {
            format!(
                "the proxy running on {} did not hand over",
                socket.display()
            )
        })?;
    Ok(Some(incoming))
}

impl Incoming {
    /// Tells the old proxy to let go; it has closed its control socket when this returns.
    pub async fn release(mut self) -> anyhow::Result<()> {
        self.exchange(&ControlRequest::Release)
            .await
            .context("the old proxy did not let go")
    }

    async fn exchange(&mut self, request: &ControlRequest) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec(request)?;
        bytes.push(b'\n');
        self.writer.write_all(&bytes).await?;
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
            .await
            .context("no answer within 30s")??;
        if read == 0 {
            anyhow::bail!("it closed the connection");
        }
        match serde_json::from_str::<ControlResponse>(&line) {
            Ok(ControlResponse::Done) => Ok(()),
            Ok(ControlResponse::Failed { error }) => anyhow::bail!("{error}"),
            _ => anyhow::bail!("unexpected answer: {}", line.trim()),
        }
    }
}
