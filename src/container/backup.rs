//! The backup agent on one server: the `hoist-backup-<service>` container of the hoist-backup
//! image, which takes the scheduled backups of the service's accessories on that server and
//! runs the `hoist backup` commands hoist sends it with `docker exec`. What it is asked to do
//! (the [`AgentSpec`], storage credentials and encryption key included) travels as an
//! environment variable in the body of the create call, never in an argv or a label. It is
//! replaced when its spec or image changes, and left alone otherwise.

use std::collections::HashMap;

use anyhow::{Context, Result};
use bollard::auth::DockerCredentials;
use bollard::models::{ContainerCreateBody, HostConfig};

use hoist_backup::spec::{AccessoryBackup, AgentSpec, DOCKER_SOCKET, SPEC_ENV, STATE_DIR, Target};

use crate::config::{BackupConfig, Config};
use crate::container::accessory::{create_and_start, pull_reporting, remove};
use crate::docker;
use crate::naming::{LABEL_SERVICE, accessory_container, backup_container};
use crate::registry;
use crate::remote::Server;
use crate::reporter::Reporter;
use crate::secrets::Secrets;

/// The agent one host needs, resolved (secrets included) before any server is touched.
pub struct Agent {
    pub host: String,
    pub container: String,
    spec: AgentSpec,
    spec_json: String,
    credentials: Option<DockerCredentials>,
}

/// The agents of every host with a backed-up accessory, in host order.
pub fn plan_all(config: &Config, secrets: &Secrets) -> Result<Vec<Agent>> {
    let mut hosts: Vec<&String> = Vec::new();
    for accessory in config.accessories.values() {
        if accessory.backup.is_some() {
            for host in &accessory.hosts {
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
        }
    }
    hosts
        .into_iter()
        .map(|host| plan(config, secrets, host))
        .collect()
}

/// The agent of `host`: every backed-up accessory that runs there.
pub fn plan(config: &Config, secrets: &Secrets, host: &str) -> Result<Agent> {
    let mut accessories = Vec::new();
    for (name, accessory) in &config.accessories {
        let Some(backup) = &accessory.backup else {
            continue;
        };
        if !accessory.hosts.iter().any(|h| h == host) {
            continue;
        }
        accessories.push(accessory_backup(config, secrets, name, backup)?);
    }
    let spec = AgentSpec {
        service: config.service.clone(),
        image: config.backup.image.clone(),
        accessories,
    };
    let spec_json = serde_json::to_string(&spec).context("Failed to encode the backup spec")?;
    Ok(Agent {
        host: host.to_string(),
        container: backup_container(&config.service),
        credentials: registry::credentials_for(config, secrets, &config.backup.image)?,
        spec,
        spec_json,
    })
}

fn accessory_backup(
    config: &Config,
    secrets: &Secrets,
    name: &str,
    backup: &BackupConfig,
) -> Result<AccessoryBackup> {
    let value =
        |reference| -> Result<String> { Ok(secrets.resolve(reference)?.expose().to_string()) };
    Ok(AccessoryBackup {
        name: name.to_string(),
        container: accessory_container(&config.service, name),
        kind: backup.kind.clone(),
        schedule: backup.schedule.clone(),
        retention: backup.retention,
        target: Target {
            endpoint: backup.endpoint.clone(),
            region: backup.region.clone(),
            bucket: backup.bucket.clone(),
            prefix: backup.prefix.clone(),
            access_key_id: value(&backup.access_key_id)?,
            secret_access_key: value(&backup.secret_access_key)?,
        },
        compression_level: backup.compression_level,
        encryption_key: backup.encryption_key.as_ref().map(value).transpose()?,
    })
}

impl Agent {
    pub fn backs_up(&self, accessory: &str) -> bool {
        self.spec.find(accessory).is_some()
    }

    /// Create the agent, or replace it if it runs another spec or image; start it if stopped.
    pub async fn ensure(&self, server: &Server, reporter: &Reporter) -> Result<()> {
        let docker = &server.docker;
        let container = &self.container;
        let progress = reporter.host(&server.host);
        let wanted_env = format!("{SPEC_ENV}={}", self.spec_json);
        match docker.inspect_container(container, None).await {
            Ok(inspect) => {
                let config = inspect.config.unwrap_or_default();
                let same = config.image.as_deref() == Some(self.spec.image.as_str())
                    && config.env.unwrap_or_default().contains(&wanted_env);
                if same {
                    if inspect.state.and_then(|s| s.running) != Some(true) {
                        docker
                            .start_container(container, None)
                            .await
                            .with_context(|| format!("Failed to start `{container}`"))?;
                        progress.done(format!("started {container} (it was stopped)"));
                    }
                    return Ok(());
                }
                progress.step(format!("replacing {container} (its configuration changed)"));
                remove(docker, container).await?;
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("Failed to inspect `{container}` on `{}`", server.host)
                });
            }
        }
        let image = &self.spec.image;
        pull_reporting(server, image, self.credentials.clone(), &progress).await?;
        docker::ensure_network(docker).await?;
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            env: Some(vec![wanted_env]),
            cmd: Some(vec!["hoist-backup".to_string(), "agent".to_string()]),
            user: Some("0:0".to_string()),
            labels: Some(HashMap::from([(
                LABEL_SERVICE.to_string(),
                self.spec.service.clone(),
            )])),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    format!("{DOCKER_SOCKET}:{DOCKER_SOCKET}"),
                    format!("{container}:{STATE_DIR}"),
                ]),
                ..docker::long_running()
            }),
            ..Default::default()
        };
        create_and_start(
            server,
            container,
            body,
            format!("see its output with `hoist logs --container {container}`"),
        )
        .await?;
        let names: Vec<&str> = self
            .spec
            .accessories
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        progress.done(format!(
            "booted {container} ({image}) for {}",
            names.join(", ")
        ));
        Ok(())
    }
}
