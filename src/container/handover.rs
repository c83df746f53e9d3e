//! Replacing hoist-proxy on one server without refusing a connection.
//!
//! Ports 80 and 443 belong to the `hoist-proxy-ports` container (`hoist-proxy listen`), which
//! only holds the listening sockets and never changes; each proxy container takes them over a
//! unix socket in the `hoist-proxy` volume. An upgrade starts the new proxy as
//! `hoist-proxy-next`; it takes over from the running one (which freezes its state, lets go
//! once the new one accepts, drains and exits), and hoist renames it `hoist-proxy` once it
//! answers. If it cannot start or take over, it is removed and the old one serves on: the
//! error says why. The old container's restart policy is off during the handover, so its exit
//! is final; it is put back if the handover fails.
//!
//! A proxy created by an older hoist holds the ports itself: replacing it once (stop, then the
//! ports container and the new proxy) refuses requests for a moment, and the message says so.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{ContainerUpdateBody, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::StopContainerOptionsBuilder;
use hoist_proxy::control::{ControlRequest, ControlResponse, PROTOCOL, ProxyStatus};

use super::{app, proxy};
use crate::config::{Config, format_duration};
use crate::docker;
use crate::naming::{NEXT_PROXY_CONTAINER, OLD_PROXY_CONTAINER, PROXY_CONTAINER};
use crate::remote::Server;
use crate::report::hinted;

/// How long a new proxy has to start, take over and answer.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a replaced proxy gets to finish requests in flight before it is removed anyway: a
/// little more than hoist-proxy's own default `--shutdown-timeout` (10s).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// What [`upgrade`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgraded {
    /// The new proxy took over from the running one; no connection was refused.
    HandedOver,
    /// The old proxy held the ports itself (an older hoist's) or was stopped: it was replaced,
    /// and requests were refused in between.
    Replaced,
    /// There was none: created.
    Created,
}

/// Replace hoist-proxy on this server with one from `config.proxy.image`, run as this hoist
/// runs it. The image is pulled first, so a failed pull changes nothing.
pub async fn upgrade(
    docker: &Docker,
    config: &Config,
    credentials: Option<DockerCredentials>,
) -> Result<Upgraded> {
    proxy::pull_if_missing(docker, &config.proxy.image, credentials).await?;
    recover(docker).await?;
    let Some(current) = proxy::inspect(docker).await? else {
        proxy::ensure(docker, config, None).await?;
        return Ok(Upgraded::Created);
    };
    if current.command != proxy::run_command() || current.state != "running" {
        replace(docker, config).await?;
        return Ok(Upgraded::Replaced);
    }
    proxy::ensure_ports(docker, config).await?;
    hand_over(docker, config).await?;
    Ok(Upgraded::HandedOver)
}

/// Finish or undo a handover an interrupted hoist left: a `hoist-proxy-next` that answers for
/// itself has taken over and gets the name; one that does not is removed, and so is a
/// `hoist-proxy-old`.
pub async fn recover(docker: &Docker) -> Result<()> {
    if let Ok(inspect) = docker.inspect_container(NEXT_PROXY_CONTAINER, None).await {
        let id: String = inspect.id.unwrap_or_default().chars().take(12).collect();
        let live = status(docker, NEXT_PROXY_CONTAINER)
            .await
            .is_some_and(|status| status.host == id);
        if live {
            docker::remove_container_force(docker, OLD_PROXY_CONTAINER).await?;
            if docker
                .inspect_container(PROXY_CONTAINER, None)
                .await
                .is_ok()
            {
                app::rename(docker, PROXY_CONTAINER, OLD_PROXY_CONTAINER).await?;
            }
            app::rename(docker, NEXT_PROXY_CONTAINER, PROXY_CONTAINER).await?;
        } else {
            docker::remove_container_force(docker, NEXT_PROXY_CONTAINER).await?;
            if docker
                .inspect_container(PROXY_CONTAINER, None)
                .await
                .is_ok()
            {
                restart_policy(
                    docker,
                    PROXY_CONTAINER,
                    RestartPolicyNameEnum::UNLESS_STOPPED,
                )
                .await?;
            }
        }
    }
    docker::remove_container_force(docker, OLD_PROXY_CONTAINER).await
}

/// Stop and remove the proxy, then start the ports container and a new proxy.
async fn replace(docker: &Docker, config: &Config) -> Result<()> {
    let stop = StopContainerOptionsBuilder::new()
        .t(STOP_TIMEOUT.as_secs() as i32)
        .build();
    // Stopped already (304) is success; missing (404) is fine too.
    docker::ignore_not_found(docker.stop_container(PROXY_CONTAINER, Some(stop)).await)
        .context("Failed to stop the `hoist-proxy` container")?;
    docker::remove_container_force(docker, PROXY_CONTAINER).await?;
    proxy::ensure(docker, config, None).await?;
    Ok(())
}

/// Start `hoist-proxy-next`, wait until it has taken over, then give it the name.
async fn hand_over(docker: &Docker, config: &Config) -> Result<()> {
    restart_policy(docker, PROXY_CONTAINER, RestartPolicyNameEnum::NO).await?;
    let started = async {
        proxy::create(docker, config, NEXT_PROXY_CONTAINER).await?;
        proxy::start(docker, NEXT_PROXY_CONTAINER).await?;
        taken_over(docker).await
    }
    .await;
    if let Err(err) = started {
        let logs = app::last_logs(docker, NEXT_PROXY_CONTAINER, 5)
            .await
            .unwrap_or_default();
        let _ = docker::remove_container_force(docker, NEXT_PROXY_CONTAINER).await;
        let _ = restart_policy(
            docker,
            PROXY_CONTAINER,
            RestartPolicyNameEnum::UNLESS_STOPPED,
        )
        .await;
        let said = logs.trim();
        let said = if said.is_empty() {
            String::new()
        } else {
            format!("; it said:\n{said}")
        };
        return Err(hinted(
            format!(
                "The new hoist-proxy (`{}`) did not take over: {err:#}{said}",
                config.proxy.image
            ),
            "the old hoist-proxy keeps serving, unchanged; fix `proxy.image` and reboot again",
        ));
    }
    app::rename(docker, PROXY_CONTAINER, OLD_PROXY_CONTAINER).await?;
    app::rename(docker, NEXT_PROXY_CONTAINER, PROXY_CONTAINER).await?;
    // The old one drains and exits by itself; it is removed once it has (or after the wait).
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        let running = docker
            .inspect_container(OLD_PROXY_CONTAINER, None)
            .await
            .ok()
            .and_then(|inspect| inspect.state.and_then(|state| state.running))
            .unwrap_or(false);
        if !running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    docker::remove_container_force(docker, OLD_PROXY_CONTAINER).await
}

/// Wait until `hoist-proxy-next` answers on the control socket itself: the old proxy has let
/// go. Fails at once if it exits, and after [`TAKEOVER_TIMEOUT`].
async fn taken_over(docker: &Docker) -> Result<()> {
    let started = Instant::now();
    loop {
        let inspect = docker
            .inspect_container(NEXT_PROXY_CONTAINER, None)
            .await
            .context("Failed to inspect the new proxy")?;
        let id: String = inspect.id.unwrap_or_default().chars().take(12).collect();
        let state = inspect.state.unwrap_or_default();
        if !state.running.unwrap_or(false) {
            anyhow::bail!("it exited with status {}", state.exit_code.unwrap_or(-1));
        }
        if let Some(status) = status(docker, NEXT_PROXY_CONTAINER).await
            && status.host == id
        {
            return Ok(());
        }
        if started.elapsed() >= TAKEOVER_TIMEOUT {
            anyhow::bail!(
                "it did not answer within {}",
                format_duration(TAKEOVER_TIMEOUT)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `hoist-proxy status` in `container`, if it answers.
pub async fn status(docker: &Docker, container: &str) -> Option<ProxyStatus> {
    let output = docker::exec_output(docker, container, &["hoist-proxy", "status", "--json"])
        .await
        .ok()?;
    serde_json::from_str(output.stdout.trim()).ok()
}

/// [`status`] of `server`'s `hoist-proxy`, through the control socket channel its connection
/// opened when there is one, else through `docker exec`.
pub async fn status_on(server: &Server) -> Option<ProxyStatus> {
    match server.proxy_call(&ControlRequest::Status).await {
        Some(ControlResponse::Status(status)) => Some(status),
        _ => status(&server.docker, PROXY_CONTAINER).await,
    }
}

/// What is wrong with the running proxy's control protocol (from its `status`), if anything:
/// a proxy too old to report it, or one speaking another than this hoist.
pub fn protocol_problem(status: Option<&ProxyStatus>, host: &str) -> Option<anyhow::Error> {
    match status {
        Some(status) if status.protocol == PROTOCOL => None,
        Some(status) => Some(hinted(
            format!(
                "hoist-proxy {} on `{host}` speaks control protocol {}, this hoist speaks {PROTOCOL}",
                status.version, status.protocol
            ),
            "set `proxy.image` to the hoist-proxy of this hoist's release (the default), or use \
             the hoist release that goes with that proxy",
        )),
        None => Some(hinted(
            format!("hoist-proxy on `{host}` does not report its control protocol (too old)"),
            "`hoist proxy reboot` replaces it with `proxy.image`",
        )),
    }
}

impl Upgraded {
    /// The line for a host whose proxy was replaced: `before` and `after` are its containers.
    pub fn describe(
        self,
        config: &Config,
        before: Option<proxy::ProxyContainer>,
        after: Option<proxy::ProxyContainer>,
    ) -> String {
        let image = &config.proxy.image;
        let new_id = after.map(|c| c.id).unwrap_or_default();
        let old_id = before.map(|c| c.id).unwrap_or_default();
        match self {
            Upgraded::HandedOver => {
                format!(
                    "hoist-proxy {old_id} handed over to {new_id} ({image}), no request refused"
                )
            }
            Upgraded::Replaced => format!(
                "hoist-proxy {old_id} replaced by {new_id} ({image}); requests were refused while \
                 it restarted (once: from now on it takes its ports from hoist-proxy-ports)"
            ),
            Upgraded::Created => format!("hoist-proxy created from {image} ({new_id})"),
        }
    }
}

async fn restart_policy(
    docker: &Docker,
    container: &str,
    name: RestartPolicyNameEnum,
) -> Result<()> {
    let body = ContainerUpdateBody {
        restart_policy: Some(RestartPolicy {
            name: Some(name),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    docker
        .update_container(container, body)
        .await
        .with_context(|| format!("Failed to set the restart policy of `{container}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(protocol: u32) -> ProxyStatus {
        ProxyStatus {
            version: "9.9.9".into(),
            protocol,
            host: "abc".into(),
            pid: 1,
        }
    }

    #[test]
    fn the_same_protocol_is_no_problem_and_any_other_is_named() {
        assert!(protocol_problem(Some(&status(PROTOCOL)), "a").is_none());
        let other = protocol_problem(Some(&status(PROTOCOL + 1)), "a").expect("a problem");
        assert!(
            format!("{other:#}").contains(&format!("speaks control protocol {}", PROTOCOL + 1))
        );
        let old = protocol_problem(None, "a").expect("a problem");
        assert!(format!("{old:#}").contains("too old"));
    }
}
