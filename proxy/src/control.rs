//! The control channel between the CLI commands and the running proxy: one JSON request and one
//! JSON response per connection over a unix socket (mode 0600, in a 0700 directory by default).
//! A call blocks for the whole operation, so `deploy` returns after the drain. The operation runs
//! in its own task: a client that disconnects mid-deploy does not leave it half done.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::duration::go;
use crate::handoff::Outgoing;
use crate::options::{DeployRequest, RolloutDeployRequest};
use crate::router::{Router, ServiceSummary};

/// Largest request accepted on the socket.
const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlRequest {
    Deploy(Box<DeployRequest>),
    Remove {
        service: String,
    },
    Pause {
        service: String,
        #[serde(with = "go")]
        drain_timeout: Duration,
        #[serde(with = "go")]
        max_pause: Duration,
    },
    Stop {
        service: String,
        #[serde(with = "go")]
        drain_timeout: Duration,
        message: String,
    },
    Resume {
        service: String,
    },
    List,
    RolloutDeploy(RolloutDeployRequest),
    RolloutSet {
        service: String,
        percentage: u8,
        allowlist: Vec<String>,
    },
    RolloutStop {
        service: String,
    },
    /// Which process answers, and its protocol (`hoist-proxy status`).
    Status,
    /// A new proxy on the same state directory asks to take over (`handoff.rs`); the
    /// connection stays open for `Release`.
    Handoff,
    /// Sent after `Handoff` once the new proxy accepts: let go.
    Release,
}

/// The control protocol's version: raised when a request or response changes shape, so `hoist`
/// can tell a proxy it cannot drive.
pub const PROTOCOL: u32 = 1;

/// What `hoist-proxy status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// The hoist-proxy release.
    pub version: String,
    /// [`PROTOCOL`] of the process answering.
    pub protocol: u32,
    /// Its host name (in a container, the container's short id).
    pub host: String,
    pub pid: u32,
}

impl ProxyStatus {
    /// This process's.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: PROTOCOL,
            host: nix::unistd::gethostname()
                .ok()
                .and_then(|name| name.into_string().ok())
                .unwrap_or_default(),
            pid: std::process::id(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ControlResponse {
    Done,
    Services { services: Vec<ServiceSummary> },
    Status(ProxyStatus),
    Failed { error: String },
}

/// Binds the control socket: refuses if another proxy answers on it, replaces a stale file, and
/// restricts it to the owner.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;

    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "another hoist-proxy is already running on socket {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale control socket {}", path.display()))?;
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen on control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict control socket {}", path.display()))?;
    Ok(listener)
}

/// Serves control requests until `shutdown` fires, or until a successor takes over (then the
/// socket is closed first, so the successor can bind it).
pub async fn serve(
    listener: UnixListener,
    router: Arc<Router>,
    shutdown: CancellationToken,
    outgoing: Arc<Outgoing>,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            () = outgoing.control_closing() => {
                drop(listener);
                outgoing.control_closed();
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "Control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let router = Arc::clone(&router);
        let outgoing = Arc::clone(&outgoing);
        tokio::spawn(async move {
            if let Err(error) = answer(stream, router, outgoing).await {
                tracing::debug!(%error, "Control connection ended early");
            }
        });
    }
}

async fn answer(
    stream: UnixStream,
    router: Arc<Router>,
    outgoing: Arc<Outgoing>,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    tokio::io::AsyncReadExt::take(&mut reader, MAX_REQUEST_BYTES)
        .read_line(&mut line)
        .await?;
    let response = match serde_json::from_str::<ControlRequest>(&line) {
        Ok(ControlRequest::Handoff) => {
            return crate::handoff::give(reader, writer, router, outgoing).await;
        }
        Ok(request) => {
            // Run the operation in its own task so it completes even if this client goes away.
            match tokio::spawn(execute(router, request)).await {
                Ok(response) => response,
                Err(error) => ControlResponse::Failed {
                    error: format!("internal error: {error}"),
                },
            }
        }
        Err(error) => ControlResponse::Failed {
            error: format!("malformed control request: {error}"),
        },
    };
    let mut bytes = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.shutdown().await
}

async fn execute(router: Arc<Router>, request: ControlRequest) -> ControlResponse {
    let result = match request {
        ControlRequest::Deploy(request) => router.deploy(*request).await,
        ControlRequest::Remove { service } => router.remove(&service).await,
        ControlRequest::Pause {
            service,
            drain_timeout,
            max_pause,
        } => router.pause(&service, drain_timeout, max_pause).await,
        ControlRequest::Stop {
            service,
            drain_timeout,
            message,
        } => router.stop(&service, drain_timeout, message).await,
        ControlRequest::Resume { service } => router.resume(&service),
        ControlRequest::List => {
            return ControlResponse::Services {
                services: router.list(),
            };
        }
        ControlRequest::RolloutDeploy(request) => router.rollout_deploy(request).await,
        ControlRequest::RolloutSet {
            service,
            percentage,
            allowlist,
        } => router.rollout_set(&service, percentage, allowlist),
        ControlRequest::RolloutStop { service } => router.rollout_stop(&service),
        ControlRequest::Status => return ControlResponse::Status(ProxyStatus::current()),
        ControlRequest::Handoff | ControlRequest::Release => {
            Err("`release` only follows `handoff` on its connection".to_owned())
        }
    };
    match result {
        Ok(()) => ControlResponse::Done,
        Err(error) => ControlResponse::Failed { error },
    }
}

/// Why a control call failed on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach hoist-proxy on {}: {source}; is `hoist-proxy run` running with the same --state-dir or --socket?",
        .path.display()
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lost the connection to hoist-proxy: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected answer from hoist-proxy: {0}")]
    Protocol(String),
    #[error("{0}")]
    Failed(String),
}

/// Sends one request and waits for its answer, however long the operation takes.
pub async fn call(socket: &Path, request: &ControlRequest) -> Result<ControlResponse, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_owned(),
            source,
        })?;
    call_over(stream, request).await
}

/// [`call`] over a connection to the control socket opened some other way (hoist opens one
/// through SSH, as a `direct-streamlocal` channel).
pub async fn call_over<S>(
    stream: S,
    request: &ControlRequest,
) -> Result<ControlResponse, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let mut bytes =
        serde_json::to_vec(request).map_err(|error| ClientError::Protocol(error.to_string()))?;
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.flush().await?;
    let mut line = String::new();
    BufReader::new(reader).read_line(&mut line).await?;
    if line.is_empty() {
        return Err(ClientError::Protocol(
            "the proxy closed the connection without an answer".into(),
        ));
    }
    match serde_json::from_str::<ControlResponse>(&line) {
        Ok(ControlResponse::Failed { error }) => Err(ClientError::Failed(error)),
        Ok(response) => Ok(response),
        Err(error) => Err(ClientError::Protocol(error.to_string())),
    }
}
