//! SSH to servers with russh: one authenticated connection per host per command, over which
//! every remote operation runs as a channel (commands in session channels, the Docker Engine API
//! in `direct-streamlocal` channels, see docker/ssh_transport.rs). Jump hosts are a
//! `direct-tcpip` channel through the bastion. Host keys: host_keys.rs; logging in: auth.rs.

mod auth;
mod error;
mod exec;
mod host_keys;

use std::net::ToSocketAddrs;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle, Msg};
use russh::keys::PublicKeyOrCertificate;
use russh::{Channel, ChannelStream};
use tokio::net::TcpStream;

pub use auth::Credentials;
pub use error::SshError;
pub use exec::quote;
pub use host_keys::HostKeyVerifier;

pub use crate::config::{HostKeyChecking, JumpHost};

/// How to reach servers, from `[ssh]` in deploy.toml.
#[derive(Debug, Clone)]
pub struct SshOptions {
    pub user: String,
    pub port: u16,
    pub connect_timeout: Duration,
    /// Keepalive interval; `None` sends none.
    pub keepalive: Option<Duration>,
    pub proxy_jump: Option<JumpHost>,
}

/// An authenticated SSH connection to one server. Cheap to share (`Arc`): every operation opens
/// its own channel.
pub struct Session {
    handle: Arc<Handle<ClientHandler>>,
    host: String,
    user: String,
    /// Session channels opened ahead for the next remote commands: opening one is a round trip,
    /// which a command then need not wait for (see [`Session::session_channel`]). A release
    /// runs two commands at once on each host first (the lock, its record).
    spare: Mutex<Vec<SpareChannel>>,
    /// The bastion this connection runs through; kept alive as long as this session.
    _via: Option<Arc<Session>>,
}

type SpareChannel = tokio::task::JoinHandle<Result<Channel<Msg>, russh::Error>>;

/// How many session channels [`Session`] keeps opened ahead.
const SPARE_CHANNELS: usize = 2;

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.host)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What every connection of one command shares: options, the host key policy and the keys.
pub struct SshClient {
    pub options: SshOptions,
    pub verifier: Arc<HostKeyVerifier>,
    pub credentials: Credentials,
}

impl SshClient {
    /// Connect to `user@host:port` (directly, or through `via`), verify its key and log in, all
    /// within `options.connect_timeout`.
    pub async fn connect(
        &self,
        host: &str,
        user: &str,
        port: u16,
        via: Option<Arc<Session>>,
    ) -> Result<Session, SshError> {
        let target = target_name(user, host, port);
        let stage = Arc::new(Mutex::new("TCP connect"));
        let attempt = self.connect_within(host, user, port, via, stage.clone());
        match tokio::time::timeout(self.options.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(SshError::Timeout {
                target,
                after: self.options.connect_timeout,
                stage: *stage.lock().unwrap_or_else(|p| p.into_inner()),
            }),
        }
    }

    /// The connection itself; `stage` says what is under way, for the timeout error.
    async fn connect_within(
        &self,
        host: &str,
        user: &str,
        port: u16,
        via: Option<Arc<Session>>,
        stage: Arc<Mutex<&'static str>>,
    ) -> Result<Session, SshError> {
        let target = target_name(user, host, port);
        let set_stage = |name| *stage.lock().unwrap_or_else(|p| p.into_inner()) = name;
        let rejection = Arc::new(Mutex::new(None));
        let handler = ClientHandler {
            target: target.clone(),
            host: host.to_string(),
            port,
            verifier: self.verifier.clone(),
            rejection: rejection.clone(),
        };
        let config = Arc::new(client_config(&self.options, &self.verifier, host, port));

        let connected = match &via {
            Some(bastion) => {
                let channel = bastion
                    .handle
                    .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
                    .await
                    .map_err(|source| SshError::Jump {
                        target: target.clone(),
                        jump: bastion.to_string(),
                        source: Box::new(source),
                    })?;
                set_stage("SSH handshake");
                client::connect_stream(config, channel.into_stream(), handler).await
            }
            None => {
                let address = (host, port)
                    .to_socket_addrs()
                    .map_err(|source| SshError::Connect {
                        target: target.clone(),
                        source,
                    })?
                    .next()
                    .ok_or_else(|| SshError::Connect {
                        target: target.clone(),
                        source: std::io::Error::other("the name resolves to no address"),
                    })?;
                let stream =
                    TcpStream::connect(address)
                        .await
                        .map_err(|source| SshError::Connect {
                            target: target.clone(),
                            source,
                        })?;
                let _ = stream.set_nodelay(true);
                set_stage("SSH handshake");
                client::connect_stream(config, stream, handler).await
            }
        };
        let mut handle = match connected {
            Ok(handle) => handle,
            Err(source) => {
                if let Some(rejection) = rejection.lock().unwrap_or_else(|p| p.into_inner()).take()
                {
                    return Err(rejection);
                }
                return Err(SshError::Protocol {
                    target,
                    source: Box::new(source),
                });
            }
        };
        set_stage("login");
        self.credentials
            .authenticate(&mut handle, user, host)
            .await?;
        tracing::debug!(%target, via = via.as_ref().map(|v| v.to_string()), "connected");
        let session = Session {
            handle: Arc::new(handle),
            host: host.to_string(),
            user: user.to_string(),
            spare: Mutex::new(Vec::new()),
            _via: via,
        };
        for _ in 0..SPARE_CHANNELS {
            session.open_spare();
        }
        Ok(session)
    }
}

impl Session {
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A byte stream to a unix socket on the server (`direct-streamlocal@openssh.com`).
    pub async fn open_unix_socket(&self, path: &str) -> Result<ChannelStream<Msg>, SshError> {
        let channel = self
            .handle
            .channel_open_direct_streamlocal(path)
            .await
            .map_err(|source| SshError::Streamlocal {
                host: self.host.clone(),
                socket: path.to_string(),
                source: Box::new(source),
            })?;
        Ok(channel.into_stream())
    }

    /// A session channel for one remote command: a spare opened ahead when there is one (and a
    /// new spare behind it), else a fresh one.
    pub(crate) async fn session_channel(&self) -> Result<Channel<Msg>, russh::Error> {
        let spare = {
            let mut spares = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            (!spares.is_empty()).then(|| spares.remove(0))
        };
        self.open_spare();
        if let Some(spare) = spare
            && let Ok(Ok(channel)) = spare.await
        {
            return Ok(channel);
        }
        self.handle.channel_open_session().await
    }

    /// Start opening one more spare session channel, in the background.
    fn open_spare(&self) {
        let handle = self.handle.clone();
        let opening = tokio::spawn(async move { handle.channel_open_session().await });
        self.spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(opening);
    }

    /// Close the connection politely.
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.user, self.host)
    }
}

/// `user@host` or `user@host:port`.
pub fn target_name(user: &str, host: &str, port: u16) -> String {
    if port == 22 {
        format!("{user}@{host}")
    } else {
        format!("{user}@{host}:{port}")
    }
}

fn client_config(
    options: &SshOptions,
    verifier: &HostKeyVerifier,
    host: &str,
    port: u16,
) -> client::Config {
    let mut config = client::Config {
        keepalive_interval: options.keepalive,
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    };
    // Ask first for the key types known_hosts records for this host, so the check compares like
    // with like.
    let recorded = verifier.recorded_algorithms(host, port);
    if !recorded.is_empty() {
        let mut preferred: Vec<_> = recorded.clone();
        preferred.extend(
            config
                .preferred
                .key
                .iter()
                .filter(|algorithm| !recorded.contains(algorithm))
                .cloned(),
        );
        config.preferred.key = preferred.into();
    }
    config
}

/// russh's per-connection callbacks: only the host key check matters to us.
struct ClientHandler {
    target: String,
    host: String,
    port: u16,
    verifier: Arc<HostKeyVerifier>,
    /// Why the key was refused, for the error russh reports as "unknown key".
    rejection: Arc<Mutex<Option<SshError>>>,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(certificate) => {
                russh::keys::PublicKey::from(certificate.public_key().clone())
            }
        };
        match self
            .verifier
            .verify(&self.target, &self.host, self.port, &key)
        {
            Ok(()) => Ok(true),
            Err(err) => {
                *self.rejection.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                Ok(false)
            }
        }
    }
}
