//! The switch of one staged unit (a role on a host) and its undoing. Behind the proxy, the
//! switch is `hoist-proxy deploy`: the proxy health-checks the new container, swaps and drains
//! the old one, which keeps running. Without the proxy, it is starting the new container and
//! waiting until it is ready, the old one still running. Either way the old container stays
//! until the whole fleet is switched, so a revert is a proxy swap back (or removing the new
//! worker), never a cold start. Also here: removing a staged container that never got traffic,
//! the report of one that failed, and the canary watch.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::release::Release;
use super::short;
use super::stage::Staged;
use crate::container::{app, proxy};
use crate::remote::Server;
use crate::report::hinted;

/// How a unit's switch failed.
#[derive(Debug)]
pub(super) enum Failed {
    /// The new container failed (health check, stopped, not ready): it got no traffic and was
    /// removed; the previous version keeps serving there. The report says why.
    Refused(anyhow::Error),
    /// The answer was lost (connection, engine): the proxy may or may not have switched.
    Lost(anyhow::Error),
    /// Ctrl-C before the switch began: the new container was removed.
    Interrupted,
}

impl Release<'_> {
    /// Switch `unit` on `server`. Not interruptible once the proxy has been asked: it finishes
    /// a swap it has started either way.
    pub(super) async fn switch(&self, server: &Server, unit: &Staged) -> Result<(), Failed> {
        let docker = &server.docker;
        let progress = self.reporter.host(&server.host);
        let role = &unit.unit.role;
        let switched = if unit.behind_proxy {
            progress.step(format!(
                "{role}: health check on {}",
                self.config.proxy.healthcheck.path
            ));
            let prepared = unit
                .prepared_deploy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            match prepared {
                Some(prepared) => proxy::run_deploy(docker, prepared).await,
                None => {
                    proxy::deploy(
                        server,
                        self.config,
                        &unit.service,
                        &unit.id,
                        &self.prepared.proxy_secrets,
                    )
                    .await
                }
            }
        } else {
            progress.step(format!("{role}: starting {}", unit.name));
            let started = self
                .interruptible(async {
                    app::start(docker, &unit.name).await?;
                    let delay = self.config.roles[role].container.readiness_delay;
                    app::wait_ready(docker, &unit.name, delay, self.config.proxy.deploy_timeout)
                        .await
                })
                .await;
            if started.as_ref().is_err_and(super::stage::interrupted) {
                self.discard(server, unit).await;
                progress.failed(format!("{role}: interrupted"));
                return Err(Failed::Interrupted);
            }
            started
        };
        match switched {
            Ok(()) => {
                progress.done(format!("{role}: {} live", short(self.version)));
                Ok(())
            }
            Err(err) if unit.behind_proxy && !err.is::<proxy::Refused>() => {
                tracing::debug!(host = %server.host, error = format!("{err:#}"), "switch answer lost");
                // The answer is lost (the proxy restarted, the exec was killed): what the proxy
                // routes to decides, once it answers again.
                progress.step(format!(
                    "{role}: answer lost, asking where the proxy routes"
                ));
                match proxy::routed_target(docker, &unit.service).await {
                    Ok(Some(target)) if unit.id.starts_with(&target) => {
                        progress.done(format!(
                            "{role}: {} live (the proxy routes to it)",
                            short(self.version)
                        ));
                        Ok(())
                    }
                    Ok(routed) => {
                        progress.failed(format!("{role}: not switched"));
                        let now = match routed {
                            Some(target) => format!("it routes to {target}"),
                            None => "it routes nothing for it".to_string(),
                        };
                        let err = err.context(format!(
                            "hoist-proxy on `{}` did not switch `{}` to `{}` ({now})",
                            server.host, unit.service, unit.name
                        ));
                        Err(Failed::Refused(self.failed(server, unit, err).await))
                    }
                    Err(read) => {
                        progress.failed(format!("{role}: lost contact"));
                        Err(Failed::Lost(err.context(format!(
                            "Lost contact with hoist-proxy on `{}` while it switched `{}` to \
                             `{}`, and it did not answer after ({read:#}); the proxy finishes \
                             the switch (or keeps the previous version) on its own",
                            server.host, unit.service, unit.name
                        ))))
                    }
                }
            }
            Err(err) => {
                progress.failed(format!("{role}: failed"));
                Err(Failed::Refused(self.failed(server, unit, err).await))
            }
        }
    }

    /// Put `unit` back on its previous version: the proxy swaps back to the old container, still
    /// running (a role without the proxy: the new container goes, the old one never stopped);
    /// the new container is removed. Returns what runs there now, for the report.
    pub(super) async fn revert(&self, server: &Server, unit: &Staged) -> Result<String> {
        if unit.behind_proxy {
            let Some(live_id) = &unit.live_id else {
                return Ok(format!(
                    "{} (nothing ran before it to go back to)",
                    short(self.version)
                ));
            };
            proxy::deploy(
                server,
                self.config,
                &unit.service,
                live_id,
                &self.prepared.proxy_secrets,
            )
            .await?;
        }
        if !self.discard(server, unit).await {
            return Ok(format!(
                "{} (the new container could not be removed; the next deploy does)",
                self.previous(unit)
            ));
        }
        Ok(self.previous(unit))
    }

    /// What ran before on `unit`'s host, for messages.
    pub(super) fn previous(&self, unit: &Staged) -> String {
        match &unit.live_version {
            Some(version) => short(version).to_string(),
            None => "nothing".to_string(),
        }
    }

    /// Remove a staged container that does not serve, unless it is what the proxy routes to,
    /// and give a live container renamed aside its name back. Returns whether nothing is left.
    pub(super) async fn discard(&self, server: &Server, unit: &Staged) -> bool {
        let docker = &server.docker;
        let name = &unit.name;
        if let Ok(inspect) = docker.inspect_container(name, None).await {
            let id = inspect.id.unwrap_or_default();
            if unit
                .live_id
                .as_deref()
                .is_some_and(|live| id.starts_with(live))
            {
                return true;
            }
        }
        if let Err(err) = app::remove(docker, name).await {
            tracing::warn!(container = %name, error = %format!("{err:#}"), "could not remove the new container");
            return false;
        }
        if let Some(id) = &unit.replaced
            && let Err(err) = app::rename(docker, id, name).await
        {
            tracing::warn!(container = %name, error = %format!("{err:#}"), "could not restore the name of the live container");
            return false;
        }
        true
    }

    /// The report of a new container that failed its health check (or, without the proxy,
    /// stopped): the proxy's message with the probed URL, the container's last log lines, what
    /// keeps serving. The container is removed first.
    async fn failed(&self, server: &Server, unit: &Staged, err: anyhow::Error) -> anyhow::Error {
        let config = self.config;
        let docker = &server.docker;
        let name = &unit.name;
        let host = &server.host;
        let logs = app::last_logs(docker, name, app::LOG_LINES)
            .await
            .unwrap_or_else(|err| format!("(logs unavailable: {err:#})"));
        let removed = self.discard(server, unit).await;
        let still = match &unit.live_version {
            Some(version) => format!("{} keeps serving there", short(version)),
            None => "nothing was serving there before".to_string(),
        };
        let logs = if logs.trim().is_empty() {
            "(it printed nothing)".to_string()
        } else {
            logs.trim_end().lines().collect::<Vec<_>>().join("\n    ")
        };
        hinted(
            format!(
                "The new container `{name}` on `{host}` failed; it got no traffic{}, and \
                 {still}.\n  {err}\n  Last {} log lines of `{name}`:\n    {logs}",
                if removed {
                    " and was removed"
                } else {
                    " (removing it failed; the next deploy does)"
                },
                app::LOG_LINES
            ),
            if unit.behind_proxy {
                format!(
                    "the app must answer GET {} with a 2xx on port {} within \
                     `proxy.deploy_timeout` ({})",
                    config.proxy.healthcheck.path,
                    config.proxy.app_port,
                    crate::config::format_duration(config.proxy.deploy_timeout)
                )
            } else {
                "the container must keep running (or report healthy)".to_string()
            },
        )
    }

    /// Watch the canary units for `wait`: behind the proxy a health probe of the new container
    /// every `[proxy.healthcheck] interval`, without it that the container still runs and is not
    /// unhealthy. The first failure ends the watch with its reason.
    pub(super) async fn watch_canary(
        &self,
        units: &[(&Server, &Staged)],
        wait: Duration,
    ) -> Result<()> {
        let started = Instant::now();
        let interval = self.config.proxy.healthcheck.interval;
        loop {
            for (server, unit) in units {
                let checked = if unit.behind_proxy {
                    proxy::probe(&server.docker, self.config, &unit.id).await
                } else {
                    app::still_ready(&server.docker, &unit.name).await
                };
                if let Err(err) = checked {
                    return Err(hinted(
                        format!(
                            "The canary `{}` on `{}` failed during `--canary-wait` ({:.0}s in): \
                             {err:#}",
                            unit.name,
                            server.host,
                            started.elapsed().as_secs_f64()
                        ),
                        format!("`docker logs {}` on `{}` shows why", unit.name, server.host),
                    ));
                }
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(());
            }
            self.interruptible(async {
                tokio::time::sleep(interval.min(left)).await;
                Ok(())
            })
            .await?;
        }
    }
}
