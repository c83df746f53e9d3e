//! Accessory containers on one server (databases, caches next to the app): their definition
//! from `[accessories.NAME]` (secrets included, resolved before any server is touched), boot
//! (pull, the `hoist` network, create, start), ensure (boot if missing, start if stopped), start,
//! stop, status and removal. Secret values travel inside the SSH connection as the body of the create call,
//! never in an argv or a label.

use std::collections::HashMap;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};

use crate::config::{AccessoryConfig, Config};
use crate::docker;
use crate::naming::{
    LABEL_ACCESSORY, LABEL_DESTINATION, LABEL_SERVICE, NETWORK, accessory_container,
};
use crate::registry;
use crate::remote::Server;
use crate::report::{HintExt, hinted};
use crate::reporter::Reporter;
use crate::secrets::Secrets;

/// `hoist setup`'s part: every accessory on its hosts among `servers`, booted if missing,
/// started if stopped, left alone if running. Secrets and credentials are resolved for all of
/// them before any server is touched.
pub async fn ensure_all(
    config: &Config,
    secrets: &Secrets,
    servers: &[Server],
    reporter: &Reporter,
) -> Result<()> {
    let mut prepared = Vec::new();
    for (name, accessory) in &config.accessories {
        let container = accessory_container(&config.service, name);
        prepared.push((
            accessory,
            Prepared::new(config, secrets, name, accessory, &container)?,
        ));
    }
    for (accessory, prepared) in &prepared {
        for server in servers
            .iter()
            .filter(|server| accessory.hosts.contains(&server.host))
        {
            let container = &prepared.container;
            match server.docker.inspect_container(container, None).await {
                Ok(inspect) if inspect.state.as_ref().and_then(|s| s.running) == Some(true) => {
                    reporter
                        .host(&server.host)
                        .done(format!("{container} already running"));
                }
                Ok(_) => {
                    let progress = reporter.host(&server.host);
                    progress.step(format!("starting {container}"));
                    server
                        .docker
                        .start_container(container, None)
                        .await
                        .with_context(|| {
                            format!("Failed to start `{container}` on `{}`", server.host)
                        })?;
                    progress.done(format!("started {container} (it was stopped)"));
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => boot(prepared, server, reporter).await?,
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!("Failed to inspect `{container}` on `{}`", server.host)
                    });
                }
            }
        }
    }
    Ok(())
}

/// What boot needs, resolved before connecting: the container definition (secrets included) and
/// the registry credentials.
pub struct Prepared {
    name: String,
    pub container: String,
    image: String,
    body: ContainerCreateBody,
    credentials: Option<DockerCredentials>,
}

impl Prepared {
    pub fn new(
        config: &Config,
        secrets: &Secrets,
        name: &str,
        accessory: &AccessoryConfig,
        container: &str,
    ) -> Result<Self> {
        let credentials = registry::credentials_for(config, secrets, &accessory.image)?;
        let env = secrets.container_env(&accessory.env)?;
        let mut labels = HashMap::from([
            (LABEL_SERVICE.to_string(), config.service.clone()),
            (LABEL_ACCESSORY.to_string(), name.to_string()),
        ]);
        if let Some(destination) = &config.destination {
            labels.insert(LABEL_DESTINATION.to_string(), destination.clone());
        }
        let cmd = match &accessory.cmd {
            Some(cmd) => Some(shlex::split(cmd).ok_or_else(|| {
                hinted(
                    format!("Can't split the `cmd` of accessory `{name}` into words: `{cmd}`"),
                    "check its quotes",
                )
            })?),
            None => None,
        };
        let (exposed_ports, port_bindings) = match &accessory.port {
            Some(port) => {
                let container_port = format!("{}/tcp", port.container_port);
                let binding = PortBinding {
                    host_ip: Some(port.address.clone()),
                    host_port: Some(port.host_port.to_string()),
                };
                (
                    Some(vec![container_port.clone()]),
                    Some(HashMap::from([(container_port, Some(vec![binding]))])),
                )
            }
            None => (None, None),
        };
        let body = ContainerCreateBody {
            image: Some(accessory.image.clone()),
            env: Some(env),
            labels: Some(labels),
            cmd,
            exposed_ports,
            host_config: Some(HostConfig {
                binds: Some(accessory.volumes.clone()),
                port_bindings,
                ..docker::long_running()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    NETWORK.to_string(),
                    EndpointSettings {
                        aliases: Some(vec![container.to_string()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        Ok(Self {
            name: name.to_string(),
            container: container.to_string(),
            image: accessory.image.clone(),
            body,
            credentials,
        })
    }
}

pub async fn boot(prepared: &Prepared, server: &Server, reporter: &Reporter) -> Result<()> {
    let Prepared {
        name,
        container,
        image,
        ..
    } = prepared;
    let docker = &server.docker;
    let progress = reporter.host(&server.host);
    if docker.inspect_container(container, None).await.is_ok() {
        progress.failed(format!("{container} already exists"));
        return Err(hinted(
            format!("Accessory `{name}` is already booted on `{}`", server.host),
            format!("replace it with `hoist accessory reboot {name}`"),
        ));
    }

    pull_reporting(server, image, prepared.credentials.clone(), &progress).await?;

    docker::ensure_network(docker).await?;
    progress.step(format!("starting {container}"));
    create_and_start(
        server,
        container,
        prepared.body.clone(),
        format!("see its output with `hoist accessory logs {name}`"),
    )
    .await?;
    progress.done(format!("booted {container} ({image})"));
    Ok(())
}

/// Create `container` on `server` from `body` and start it; `hint` says where its output is if
/// it fails to start.
pub async fn create_and_start(
    server: &Server,
    container: &str,
    body: ContainerCreateBody,
    hint: String,
) -> Result<()> {
    server
        .docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(container).build()),
            body,
        )
        .await
        .with_context(|| format!("Failed to create `{container}` on `{}`", server.host))?;
    server
        .docker
        .start_container(container, None)
        .await
        .with_context(|| format!("Failed to start `{container}` on `{}`", server.host))
        .hint(hint)
}

/// Pull `image` on `server`, its progress on the host's line.
pub async fn pull_reporting(
    server: &Server,
    image: &str,
    credentials: Option<DockerCredentials>,
    progress: &crate::reporter::HostProgress<'_>,
) -> Result<()> {
    progress.step(format!("pulling {image}"));
    docker::pull(&server.docker, image, credentials, |p| {
        if p.total > 0 {
            progress.step(format!("pulling {image} ({p})"));
        }
    })
    .await
    .with_context(|| format!("on `{}`", server.host))
}

pub async fn remove(docker: &Docker, container: &str) -> Result<()> {
    match docker
        .remove_container(
            container,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(err) => Err(err).with_context(|| format!("Failed to remove `{container}`")),
    }
}

/// What `hoist accessory details` shows of an accessory's container on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `running`, `exited`, … (Docker's state).
    pub state: String,
    pub image: String,
    /// Published ports, `host_ip:host_port->container_port/proto`.
    pub ports: Vec<String>,
    /// When it last started (RFC 3339), if it ever did.
    pub started_at: Option<String>,
}

/// The accessory container's state on this server; `None` when it is not booted there.
pub async fn status(docker: &Docker, container: &str) -> Result<Option<Status>> {
    let inspect = match docker.inspect_container(container, None).await {
        Ok(inspect) => inspect,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("Failed to inspect `{container}`")),
    };
    let state = inspect.state.as_ref();
    let mut ports: Vec<String> = inspect
        .host_config
        .as_ref()
        .and_then(|host| host.port_bindings.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|(port, bindings)| {
            bindings.iter().flatten().map(move |binding| {
                let ip = binding.host_ip.as_deref().unwrap_or("");
                let host_port = binding.host_port.as_deref().unwrap_or("");
                match ip {
                    "" => format!("{host_port}->{port}"),
                    ip => format!("{ip}:{host_port}->{port}"),
                }
            })
        })
        .collect();
    ports.sort();
    Ok(Some(Status {
        state: state
            .and_then(|state| state.status)
            .map_or_else(|| "unknown".to_string(), |status| status.to_string()),
        image: inspect
            .config
            .and_then(|config| config.image)
            .unwrap_or_default(),
        ports,
        started_at: state
            .and_then(|state| state.started_at.clone())
            .filter(|at| !at.starts_with("0001-")),
    }))
}

/// Start the accessory's stopped container (its definition as booted); running already is fine.
pub async fn start(server: &Server, name: &str, container: &str) -> Result<()> {
    match answer(server.docker.start_container(container, None).await) {
        Answer::Done => Ok(()),
        Answer::Missing => Err(not_booted(name, &server.host)),
        Answer::Failed(err) => Err(err)
            .with_context(|| format!("Failed to start `{container}` on `{}`", server.host))
            .hint(format!("see its output with `hoist accessory logs {name}`")),
    }
}

/// Stop the accessory's container (SIGTERM, then SIGKILL after its stop timeout, Docker's 10 s
/// unless the image says otherwise); stopped already is fine. Its data and definition stay.
pub async fn stop(server: &Server, name: &str, container: &str) -> Result<()> {
    match answer(server.docker.stop_container(container, None).await) {
        Answer::Done => Ok(()),
        Answer::Missing => Err(not_booted(name, &server.host)),
        Answer::Failed(err) => {
            Err(err).with_context(|| format!("Failed to stop `{container}` on `{}`", server.host))
        }
    }
}

/// What the engine said to a start or a stop.
enum Answer {
    /// Done, or done already (304).
    Done,
    /// No such container (404).
    Missing,
    Failed(bollard::errors::Error),
}

fn answer(result: Result<(), bollard::errors::Error>) -> Answer {
    match result {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Answer::Done,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Answer::Missing,
        Err(err) => Answer::Failed(err),
    }
}

fn not_booted(name: &str, host: &str) -> anyhow::Error {
    hinted(
        format!("Accessory `{name}` is not booted on `{host}`"),
        format!("boot it with `hoist accessory boot {name}`"),
    )
}
