//! One-off containers of an app version: a command run once with a role's environment, secrets
//! included (in the create body, never on a command line), on the `hoist` network, its output
//! streamed, the container removed once it exits. `hoist exec` and the release command use it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};

use super::app;
use crate::config::Config;
use crate::docker::{self, ExecStream};
use crate::naming;

/// Label on one-off containers (not the app's labels: they are no version of a role).
pub const LABEL: &str = "dev.hoist.exec";

/// Run `command` in a one-off container of `role` at `version` on `host`, with `env`; hands
/// its output to `sink` and returns its exit status.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    docker: &Docker,
    config: &Config,
    role: &str,
    version: &str,
    host: &str,
    env: &[String],
    command: &[String],
    mut sink: impl FnMut(ExecStream, &[u8]),
) -> Result<i64> {
    let scope = naming::role_scope(&config.service, role, config.destination.as_deref());
    let name = format!("{scope}-exec-{}", naming::random_hex()?);
    let defined = app::definition(config, role, version, host, env)?;
    let body = ContainerCreateBody {
        cmd: Some(command.to_vec()),
        labels: Some(HashMap::from([(LABEL.to_string(), scope.clone())])),
        host_config: Some(HostConfig {
            network_mode: Some(naming::NETWORK.to_string()),
            ..Default::default()
        }),
        ..defined
    };
    app::create(docker, &name, body).await?;
    let ran = async {
        app::start(docker, &name).await?;
        let follow = docker::LogQuery {
            follow: true,
            ..docker::LogQuery::default()
        };
        docker::read_log(docker, &name, follow, false, &mut sink).await?;
        // The log ends when the container stops; its status is then final.
        for _ in 0..50 {
            let state = docker
                .inspect_container(&name, None)
                .await
                .with_context(|| format!("Failed to inspect `{name}`"))?
                .state
                .unwrap_or_default();
            if !state.running.unwrap_or(false) {
                return state
                    .exit_code
                    .with_context(|| format!("`{name}` has no exit status"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("`{name}` did not stop after its output ended")
    }
    .await;
    let removed = docker::remove_container_force(docker, &name).await;
    let code = ran?;
    removed?;
    Ok(code)
}
