//! The servers one command works on: an SSH session and a Docker client per host (and, where
//! hoist-proxy runs and the user is root, channels to its control socket), connected in
//! parallel (at most [`MAX_PARALLEL_CONNECTS`] at a time, through one shared jump host connection
//! when `ssh.proxy_jump` is set). A host that can't be reached is reported with its reason, never
//! retried silently and never left hanging past `ssh.connect_timeout`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bollard::Docker;
use futures_util::StreamExt;
use futures_util::stream;

use hoist_proxy::control::{ControlRequest, ControlResponse};
use russh::ChannelStream;
use russh::client::Msg;

use crate::config::Config;
use crate::docker::ssh_transport;
use crate::report::{self, HintExt};
use crate::reporter::Reporter;
use crate::ssh::{
    Credentials, HostKeyVerifier, JumpHost, Session, SshClient, SshError, SshOptions,
};

/// Hosts connected at the same time. SSH handshakes are cheap for us but servers rate-limit
/// unauthenticated connections (`MaxStartups`, 10 by default in OpenSSH).
pub const MAX_PARALLEL_CONNECTS: usize = 10;

/// Time bollard waits for the response headers of one Engine API call; streamed bodies (pull
/// progress, logs) are not bounded by it.
const DOCKER_API_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything needed to reach servers, resolved once per command.
pub struct Connector {
    ssh: SshClient,
    /// Hosts where hoist-proxy runs (roles behind it, the load balancer) and the SSH user is
    /// root: their connections open channels to its control socket too.
    proxied: Vec<String>,
}

/// Channels to hoist-proxy's control socket opened at connect, one per call (a release asks
/// for the routes and the proxy's status at once).
const CONTROL_CHANNELS: usize = 2;

/// One reachable server.
pub struct Server {
    pub host: String,
    pub session: Arc<Session>,
    pub docker: Docker,
    pub connect_time: Duration,
    /// Open channels to hoist-proxy's control socket, each good for one call.
    control: std::sync::Mutex<Vec<ChannelStream<Msg>>>,
    /// Whether hoist-proxy runs here (a role behind it, or the load balancer).
    proxied: bool,
}

impl Server {
    /// A channel to this host's hoist-proxy control socket for one call: one opened at connect
    /// if any is left, else [`Server::open_control_channel`].
    async fn control_channel(&self) -> Option<ChannelStream<Msg>> {
        let warm = self.control.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match warm {
            Some(channel) => Some(channel),
            None => self.open_control_channel().await,
        }
    }

    /// A new channel to this host's hoist-proxy control socket, connected to the proxy running
    /// now (one opened at connect may belong to a proxy handed over since). `None` where the
    /// socket can't be reached that way (see [`Server::proxy_call`]).
    pub async fn open_control_channel(&self) -> Option<ChannelStream<Msg>> {
        if !self.proxied {
            return None;
        }
        self.session
            .open_unix_socket(&crate::naming::proxy_control_socket_on_host())
            .await
            .ok()
    }

    /// A control call to this host's hoist-proxy over its control socket, without a `docker
    /// exec` (two round trips and a process in the container). `None` when the socket can't be
    /// reached that way (no proxy on this host, Docker's volumes elsewhere, an SSH user who may
    /// not enter them) or the call fails: the caller asks through `docker exec`.
    pub async fn proxy_call(&self, request: &ControlRequest) -> Option<ControlResponse> {
        let channel = self.control_channel().await?;
        match hoist_proxy::control::call_over(channel, request).await {
            Ok(response) => Some(response),
            Err(err) => {
                tracing::debug!(host = %self.host, error = %err, "control socket call failed");
                None
            }
        }
    }

    /// The engine's version, e.g. `20.10.24` (`unknown` if it would not say): one call, made
    /// only by what shows it.
    pub async fn docker_version(&self) -> String {
        match ssh_transport::version(&self.docker).await {
            Ok(report) => report.version.unwrap_or_else(|| "unknown".into()),
            Err(err) => {
                tracing::debug!(host = %self.host, error = %err, "no version report");
                "unknown".into()
            }
        }
    }
}

/// A host that could not be reached, and why.
pub struct Unreachable {
    pub host: String,
    pub error: anyhow::Error,
    /// Short reason for tables.
    pub summary: String,
}

impl Connector {
    pub fn from_config(config: &Config) -> Result<Self> {
        let ssh = &config.ssh;
        let credentials = Credentials::load(&ssh.keys).map_err(with_hint)?;
        Ok(Self {
            ssh: SshClient {
                options: SshOptions {
                    user: ssh.user.clone(),
                    port: ssh.port,
                    connect_timeout: ssh.connect_timeout,
                    keepalive: ssh.keepalive,
                    proxy_jump: ssh.proxy_jump.clone(),
                },
                verifier: Arc::new(HostKeyVerifier::new(
                    ssh.known_hosts.clone(),
                    ssh.host_key_checking,
                )),
                credentials,
            },
            // Only root may enter Docker's volumes (a docker-group user gets `docker exec`).
            proxied: match ssh.user.as_str() {
                "root" => config
                    .hosts()
                    .into_iter()
                    .filter(|host| config.runs_proxy(host))
                    .collect(),
                _ => Vec::new(),
            },
        })
    }

    /// Connect to every host (SSH, then channels to the Docker engine).
    /// Returns the servers reached, in the order of `hosts`, and those that were not.
    pub async fn connect_all(
        &self,
        hosts: &[String],
        reporter: &Reporter,
    ) -> Result<(Vec<Server>, Vec<Unreachable>)> {
        self.each_host(hosts, |host, via| async move {
            let progress = reporter.host(host);
            progress.step("connecting");
            let result = self.connect(host, via).await;
            match &result {
                Ok(server) => progress.done(format!(
                    "connected in {:.2}s",
                    server.connect_time.as_secs_f64()
                )),
                Err(unreachable) => {
                    progress.failed(format!("unreachable: {}", unreachable.summary))
                }
            }
            result
        })
        .await
    }

    /// SSH sessions to every host, without Docker (which may not be there yet: `hoist setup`).
    pub async fn sessions(
        &self,
        hosts: &[String],
        reporter: &Reporter,
    ) -> Result<(Vec<Arc<Session>>, Vec<Unreachable>)> {
        self.each_host(hosts, |host, via| async move {
            let progress = reporter.host(host);
            progress.step("connecting");
            let result = self.session(host, via).await;
            match &result {
                Ok(_) => progress.done("connected"),
                Err(unreachable) => {
                    progress.failed(format!("unreachable: {}", unreachable.summary))
                }
            }
            result
        })
        .await
    }

    /// `connect` on every host in parallel (at most [`MAX_PARALLEL_CONNECTS`] at a time, through
    /// the jump host when there is one); results in the order of `hosts`.
    async fn each_host<'a, T, F, Fut>(
        &'a self,
        hosts: &'a [String],
        connect: F,
    ) -> Result<(Vec<T>, Vec<Unreachable>)>
    where
        F: Fn(&'a str, Option<Arc<Session>>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Unreachable>>,
    {
        let via = match &self.ssh.options.proxy_jump {
            Some(jump) => Some(self.connect_jump(jump).await?),
            None => None,
        };
        let connect = &connect;
        let mut results: Vec<(usize, Result<T, Unreachable>)> =
            stream::iter(hosts.iter().enumerate())
                .map(|(index, host)| {
                    let via = via.clone();
                    async move { (index, connect(host, via).await) }
                })
                .buffer_unordered(MAX_PARALLEL_CONNECTS)
                .collect()
                .await;
        results.sort_by_key(|(index, _)| *index);
        let mut reached = Vec::new();
        let mut unreachable = Vec::new();
        for (_, result) in results {
            match result {
                Ok(item) => reached.push(item),
                Err(failure) => unreachable.push(failure),
            }
        }
        Ok((reached, unreachable))
    }

    async fn connect_jump(&self, jump: &JumpHost) -> Result<Arc<Session>> {
        let user = jump.user.as_deref().unwrap_or(&self.ssh.options.user);
        let session = self
            .ssh
            .connect(&jump.host, user, jump.port, None)
            .await
            .map_err(with_hint)
            .with_context(|| {
                format!("Failed to connect to jump host `{jump}` (`ssh.proxy_jump`)")
            })?;
        Ok(Arc::new(session))
    }

    async fn session(
        &self,
        host: &str,
        via: Option<Arc<Session>>,
    ) -> Result<Arc<Session>, Unreachable> {
        let options = &self.ssh.options;
        let session = self
            .ssh
            .connect(host, &options.user, options.port, via)
            .await
            .map_err(|err| Unreachable {
                host: host.to_string(),
                summary: err.summary(),
                error: with_hint(err),
            })?;
        Ok(Arc::new(session))
    }

    async fn connect(&self, host: &str, via: Option<Arc<Session>>) -> Result<Server, Unreachable> {
        let started = Instant::now();
        let session = self.session(host, via).await?;
        let proxied = self.proxied.iter().any(|proxied| proxied == host);
        let control = async {
            if !proxied {
                return Vec::new();
            }
            let socket = crate::naming::proxy_control_socket_on_host();
            futures_util::future::join_all(
                (0..CONTROL_CHANNELS).map(|_| session.open_unix_socket(&socket)),
            )
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect()
        };
        let (docker, control) = tokio::join!(connect_docker(&session), control);
        let docker = docker.map_err(|error| {
            let summary = format!("{:#}", error.root_cause());
            Unreachable {
                host: host.to_string(),
                error,
                summary: format!("Docker: {summary}"),
            }
        })?;
        Ok(Server {
            host: host.to_string(),
            session,
            docker,
            connect_time: started.elapsed(),
            control: std::sync::Mutex::new(control),
            proxied,
        })
    }
}

/// The server's engine over the SSH session.
async fn connect_docker(session: &Arc<Session>) -> Result<Docker> {
    let host = session.host().to_string();
    let docker = ssh_transport::connect(session.clone(), DOCKER_API_TIMEOUT)
        .await
        .with_context(|| format!("Failed to reach the Docker engine on `{host}`"))
        .hint(
            "check that Docker runs there (`hoist setup` installs it) and that the SSH user may \
             use `/var/run/docker.sock` (root or the docker group)",
        )?;
    tracing::debug!(%host, "Docker engine reached");
    Ok(docker)
}

/// An SSH error as a report, with its hint.
fn with_hint(err: SshError) -> anyhow::Error {
    match err.hint() {
        Some(hint) => report::with_hint(err, hint),
        None => anyhow::Error::new(err),
    }
}
