//! One-off containers of an app version: a command run once with a role's environment, secrets
//! included (in the create body, never on a command line), and its container settings (volumes,
//! resource options, logging), on the `hoist` network, never restarted; its output streamed, or
//! attached to the local terminal (`hoist exec -i`); the container removed once it exits.
//! `hoist exec` and the release command use it.

use std::collections::HashMap;

use anyhow::Result;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};

use super::app;
use crate::config::Config;
use crate::docker::ExecStream;
use crate::docker::attach::{self, Process};
use crate::naming;

/// Label on one-off containers (not the app's labels: they are no version of a role).
pub const LABEL: &str = "dev.hoist.exec";

/// What a one-off container runs: `command` in `role` at `version` on `host`, with `env`.
#[derive(Debug, Clone, Copy)]
pub struct OneOff<'a> {
    pub config: &'a Config,
    pub role: &'a str,
    pub version: &'a str,
    pub host: &'a str,
    pub env: &'a [String],
    pub command: &'a [String],
}

/// Run `oneoff`, hand its output to `sink` and return its exit status.
pub async fn run(
    docker: &Docker,
    oneoff: OneOff<'_>,
    sink: impl FnMut(ExecStream, &[u8]),
) -> Result<i64> {
    let name = create(docker, oneoff, None).await?;
    app::run_to_end(docker, &name, sink).await
}

/// Run `oneoff` attached to hoist's stdin, stdout and stderr (a TTY with `tty`) and return
/// its exit status.
pub async fn run_interactive(docker: &Docker, oneoff: OneOff<'_>, tty: bool) -> Result<i64> {
    let name = create(docker, oneoff, Some(tty)).await?;
    let ran = async {
        let attached = attach::attach_container(docker, &name).await?;
        app::start(docker, &name).await?;
        attach::converse(docker, &Process::Container(name.clone()), attached, tty).await?;
        app::exit_code(docker, &name).await
    }
    .await;
    app::removed_after(docker, &name, ran).await
}

/// Create the container; `interactive`: `Some(tty)` with stdin open (once) and attached.
async fn create(docker: &Docker, oneoff: OneOff<'_>, interactive: Option<bool>) -> Result<String> {
    let OneOff {
        config,
        role,
        version,
        host,
        env,
        command,
    } = oneoff;
    let scope = naming::role_scope(&config.service, role, config.destination.as_deref());
    let name = format!("{scope}-exec-{}", naming::random_hex()?);
    let defined = app::definition(config, role, version, host, env)?;
    let body = ContainerCreateBody {
        cmd: Some(command.to_vec()),
        labels: Some(HashMap::from([(LABEL.to_string(), scope.clone())])),
        host_config: Some(HostConfig {
            network_mode: Some(naming::NETWORK.to_string()),
            restart_policy: None,
            ..defined.host_config.clone().unwrap_or_default()
        }),
        tty: interactive,
        open_stdin: interactive.map(|_| true),
        stdin_once: interactive.map(|_| true),
        attach_stdin: interactive.map(|_| true),
        attach_stdout: interactive.map(|_| true),
        attach_stderr: interactive.map(|_| true),
        ..defined
    };
    app::create(docker, &name, body).await?;
    Ok(name)
}
