//! App containers on one server: the ones a role has (every version, any state), the definition
//! of a new one, and the moves a release makes with them (create and start, stop, remove,
//! rename aside, last log lines, readiness of a role without the proxy).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, HostConfigLogConfig,
    ResourcesUlimits,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RenameContainerOptionsBuilder};

use crate::config::Config;
use crate::docker::{ignore_not_found, remove_container_force};
use crate::naming::{self, LABEL_DESTINATION, LABEL_ROLE, LABEL_SERVICE, LABEL_VERSION};
use crate::report::hinted;

/// Log lines shown when a new container fails.
pub const LOG_LINES: usize = 20;

/// One container of a role, as the engine lists it.
#[derive(Debug, Clone)]
pub struct AppContainer {
    pub id: String,
    pub name: String,
    pub version: String,
    pub running: bool,
    pub state: String,
    /// Unix time it was created.
    pub created: i64,
}

/// Every container of `role` in this configuration's destination, newest first.
pub async fn list(docker: &Docker, config: &Config, role: &str) -> Result<Vec<AppContainer>> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_SERVICE}={}", config.service),
            format!("{LABEL_ROLE}={role}"),
        ],
    )]);
    let listed = crate::docker::list_containers(docker, &filters).await?;
    let wanted_destination = config.destination.clone().unwrap_or_default();
    let mut containers: Vec<AppContainer> = listed
        .into_iter()
        .filter_map(|summary| {
            let labels = summary.labels.unwrap_or_default();
            let destination = labels.get(LABEL_DESTINATION).cloned().unwrap_or_default();
            if destination != wanted_destination {
                return None;
            }
            let state = summary.state.unwrap_or(ContainerSummaryStateEnum::EMPTY);
            Some(AppContainer {
                id: summary.id?,
                name: summary
                    .names?
                    .into_iter()
                    .next()?
                    .trim_start_matches('/')
                    .to_string(),
                version: labels.get(LABEL_VERSION).cloned()?,
                running: matches!(
                    state,
                    ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING
                ),
                state: state.to_string(),
                created: summary.created.unwrap_or(0),
            })
        })
        .collect();
    containers.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
    Ok(containers)
}

/// The definition of a new container of `role` at `version` on `host`; `env` holds the role's
/// environment with secret values (it goes into the create call only).
pub fn definition(
    config: &Config,
    role: &str,
    version: &str,
    host: &str,
    env: &[String],
) -> Result<ContainerCreateBody> {
    let role_config = config
        .roles
        .get(role)
        .with_context(|| format!("No role `{role}` in the configuration"))?;
    let name = naming::app_container(
        &config.service,
        role,
        config.destination.as_deref(),
        version,
    );
    let mut env = env.to_vec();
    env.push(format!("HOIST_CONTAINER_NAME={name}"));
    env.push(format!("HOIST_VERSION={version}"));
    env.push(format!("HOIST_HOST={host}"));
    env.push(format!("HOIST_ROLE={role}"));
    if let Some(destination) = &config.destination {
        env.push(format!("HOIST_DESTINATION={destination}"));
    }
    let mut labels: HashMap<String, String> = role_config.labels.clone().into_iter().collect();
    labels.insert(LABEL_SERVICE.to_string(), config.service.clone());
    labels.insert(LABEL_ROLE.to_string(), role.to_string());
    labels.insert(
        LABEL_DESTINATION.to_string(),
        config.destination.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_VERSION.to_string(), version.to_string());
    let cmd = match &role_config.cmd {
        Some(cmd) => Some(shlex::split(cmd).ok_or_else(|| {
            hinted(
                format!("Can't split the `cmd` of role `{role}` into words: `{cmd}`"),
                "check its quotes",
            )
        })?),
        None => None,
    };
    let settings = &role_config.container;
    Ok(ContainerCreateBody {
        image: Some(format!("{}:{version}", config.image)),
        env: Some(env),
        labels: Some(labels),
        cmd,
        stop_timeout: Some(settings.stop_timeout.as_secs().max(1) as i64),
        host_config: Some(host_config(settings)),
        ..Default::default()
    })
}

/// The role's volumes, options and logging on top of what every long-running container gets.
fn host_config(settings: &crate::config::ContainerSettings) -> HostConfig {
    let options = &settings.options;
    HostConfig {
        binds: (!settings.volumes.is_empty()).then(|| settings.volumes.clone()),
        memory: options.memory.map(|size| size.0),
        memory_reservation: options.memory_reservation.map(|size| size.0),
        nano_cpus: options.cpus.map(|cpus| (cpus.0 * 1e9) as i64),
        shm_size: options.shm_size.map(|size| size.0),
        pids_limit: options.pids_limit,
        ulimits: options.ulimits.as_ref().map(|ulimits| {
            ulimits
                .iter()
                .map(|(name, limit)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(limit.soft),
                    hard: Some(limit.hard),
                })
                .collect()
        }),
        cap_add: options.cap_add.clone(),
        cap_drop: options.cap_drop.clone(),
        init: options.init,
        log_config: settings
            .log_driver
            .as_ref()
            .map(|driver| HostConfigLogConfig {
                typ: Some(driver.clone()),
                config: (!settings.log_options.is_empty())
                    .then(|| settings.log_options.clone().into_iter().collect()),
            }),
        ..crate::docker::long_running()
    }
}

/// Create `name` without starting it; returns its id.
pub async fn create(docker: &Docker, name: &str, body: ContainerCreateBody) -> Result<String> {
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(name).build()),
            body,
        )
        .await
        .with_context(|| format!("Failed to create container `{name}`"))?;
    Ok(created.id)
}

/// Start the created (or stopped) container `name`.
pub async fn start(docker: &Docker, name: &str) -> Result<()> {
    docker
        .start_container(name, None)
        .await
        .with_context(|| format!("Failed to start container `{name}`"))
}

/// Start the created container `name`, hand its output to `sink` until it exits, and return its
/// exit status; the container is removed whatever happened (see [`removed_after`]).
pub async fn run_to_end(
    docker: &Docker,
    name: &str,
    mut sink: impl FnMut(crate::docker::ExecStream, &[u8]),
) -> Result<i64> {
    let ran = async {
        start(docker, name).await?;
        let follow = crate::docker::LogQuery {
            follow: true,
            ..crate::docker::LogQuery::default()
        };
        crate::docker::read_log(docker, name, follow, false, &mut sink).await?;
        exit_code(docker, name).await
    }
    .await;
    removed_after(docker, name, ran).await
}

/// Remove the container `name` after a run that ended with `ran`: the run's error first, then
/// the removal's.
pub async fn removed_after(docker: &Docker, name: &str, ran: Result<i64>) -> Result<i64> {
    let removal = remove_container_force(docker, name).await;
    let code = ran?;
    removal?;
    Ok(code)
}

/// The container's exit status once its output has ended (the engine may take a moment more
/// to record it).
pub async fn exit_code(docker: &Docker, name: &str) -> Result<i64> {
    for _ in 0..50 {
        let state = docker
            .inspect_container(name, None)
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

/// Whether `name` runs and Docker does not call it unhealthy (a role without the proxy, watched
/// as a canary); the reason when not.
pub async fn still_ready(docker: &Docker, name: &str) -> Result<()> {
    let inspect = docker
        .inspect_container(name, None)
        .await
        .with_context(|| format!("Failed to inspect container `{name}`"))?;
    let state = inspect.state.unwrap_or_default();
    if !state.running.unwrap_or(false) {
        bail!(
            "container `{name}` stopped (exit code {})",
            state.exit_code.unwrap_or(-1)
        );
    }
    let unhealthy = state
        .health
        .and_then(|h| h.status)
        .is_some_and(|status| status.to_string() == "unhealthy");
    if unhealthy {
        bail!("container `{name}` is unhealthy");
    }
    Ok(())
}

/// Stop a container (SIGTERM, then SIGKILL after its stop timeout: the role's `stop_timeout`
/// for an app container, set when it was created; Docker's 10 s otherwise); gone already is
/// fine.
pub async fn stop(docker: &Docker, name: &str) -> Result<()> {
    ignore_not_found(
        docker
            .stop_container(
                name,
                None::<bollard::query_parameters::StopContainerOptions>,
            )
            .await,
    )
    .with_context(|| format!("Failed to stop container `{name}`"))
}

/// Remove a container in any state.
pub async fn remove(docker: &Docker, name: &str) -> Result<()> {
    remove_container_force(docker, name).await
}

/// Rename `name` to `<name>_replaced_<hex>`, freeing its name for a new container of the same
/// version (a redeploy of the live version). The proxy addresses containers by id, so a running
/// one keeps serving under its new name.
pub async fn rename_aside(docker: &Docker, name: &str) -> Result<String> {
    let new_name = format!("{name}_replaced_{}", naming::random_hex()?);
    rename(docker, name, &new_name).await?;
    Ok(new_name)
}

/// Rename the container `from` (a name or an id) to `to`.
pub async fn rename(docker: &Docker, from: &str, to: &str) -> Result<()> {
    docker
        .rename_container(from, RenameContainerOptionsBuilder::new().name(to).build())
        .await
        .with_context(|| format!("Failed to rename container `{from}` to `{to}`"))
}

/// The last `lines` lines a container printed (stdout and stderr interleaved).
pub async fn last_logs(docker: &Docker, name: &str, lines: usize) -> Result<String> {
    let mut out = Vec::new();
    crate::docker::logs(docker, name, lines, |_, data| out.extend_from_slice(data)).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Readiness of a container of a role without the proxy: healthy if the image has a
/// HEALTHCHECK, else still running after `delay` (the role's `readiness_delay`); fails after
/// `timeout`.
pub async fn wait_ready(
    docker: &Docker,
    name: &str,
    delay: Duration,
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    let mut running_since: Option<Instant> = None;
    let mut restarts: Option<i64> = None;
    loop {
        let inspect = docker
            .inspect_container(name, None)
            .await
            .with_context(|| format!("Failed to inspect container `{name}`"))?;
        let state = inspect.state.unwrap_or_default();
        // The restart policy brings an exited container back at once: that is a crash too.
        let restart_count = inspect.restart_count.unwrap_or(0);
        if *restarts.get_or_insert(restart_count) != restart_count {
            bail!(
                "container `{name}` stopped (exit code {}) and was restarted",
                state.exit_code.unwrap_or(-1)
            );
        }
        let running = state.running.unwrap_or(false);
        let health = state
            .health
            .and_then(|h| h.status)
            .map(|status| status.to_string());
        match (running, health.as_deref()) {
            (false, _) => bail!(
                "container `{name}` stopped (exit code {})",
                state.exit_code.unwrap_or(-1)
            ),
            (true, Some("healthy")) => return Ok(()),
            (true, Some("unhealthy")) => bail!("container `{name}` is unhealthy"),
            (true, Some("none") | None) => {
                let since = *running_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= delay {
                    return Ok(());
                }
            }
            (true, Some(_)) => {}
        }
        if started.elapsed() >= timeout {
            bail!(
                "container `{name}` not ready within {} ({})",
                crate::config::format_duration(timeout),
                health.unwrap_or_else(|| "running".into())
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
