//! One release in progress across the fleet, with the deploy lock held: prepare everywhere
//! (pull and read, `pre-deploy`, network and proxy, `pre-app-boot`, stage the new containers,
//! mark the release pending), then switch batch by batch in the planned order, then finish
//! everywhere (stop the old containers, prune, mark it stable). If anything fails before the
//! first switch, nothing was switched anywhere. If a host fails after that (its health check,
//! a lost connection, Ctrl-C, the canary watch), every unit already switched goes back to its
//! previous version, which never stopped running, unless `--no-rollback` (or
//! `boot.rollback = false`) keeps them on the new one; the error says what runs where.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::local::Prepared;
use super::plan::{self, Pace, Unit};
use super::stage::{Staged, Survey};
use super::state::{self, Phase, Record};
use super::switch::Failed;
use super::{Kind, Options, Timings, short};
use crate::config::Config;
use crate::container::{app, prune};
use crate::hooks::{Hook, Hooks};
use crate::naming;
use crate::printer::Printer;
use crate::remote::Server;
use crate::report::hinted;
use crate::reporter::Reporter;

/// Why a release stopped early because of Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("Interrupted (Ctrl-C)")]
pub(super) struct Interrupted;

/// A unit switched, for `--json`: seconds since the command started.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Switched {
    pub host: String,
    pub role: String,
    pub at: f64,
}

/// One release in progress, shared by every host's work.
pub(super) struct Release<'a> {
    pub config: &'a Config,
    pub kind: Kind,
    pub version: &'a str,
    pub prepared: &'a Prepared,
    /// The release's roles, each with its hosts among those selected (configured order).
    pub roles: &'a [(String, Vec<String>)],
    pub options: &'a Options,
    pub reporter: &'a Reporter,
    pub printer: &'a Printer,
    pub interrupt: &'a CancellationToken,
    pub scope: String,
    pub started: Instant,
    pub switched: Mutex<Vec<Switched>>,
    /// The `[loadbalancer]` host, when the release puts a web host live.
    pub loadbalancer: Option<&'a Server>,
    /// A command releasing the deploy lock, run with the last write on its host when nothing
    /// comes after the finish there (one host, no `post-deploy` hook): a round trip less.
    pub lock_release: Option<(String, String)>,
    /// Set once that command ran.
    pub lock_released: AtomicBool,
}

/// Where the switching stopped: why, the units switched until then, the hosts lost.
struct Stopped {
    failure: Failed,
    switched: BTreeSet<Unit>,
    lost: BTreeSet<String>,
}

/// One host in the release: its server, what it had, what was staged there.
struct Host<'s> {
    server: &'s Server,
    survey: Survey,
    record: Record,
    staged: Vec<Staged>,
}

impl<'a> Release<'a> {
    /// `fut`, unless Ctrl-C comes first.
    pub(super) async fn interruptible<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            biased;
            () = self.interrupt.cancelled() => Err(Interrupted.into()),
            result = fut => result,
        }
    }

    /// The release's roles that run on `host`.
    pub(super) fn roles_on<'h>(
        &'h self,
        host: &'h str,
    ) -> impl Iterator<Item = &'a (String, Vec<String>)> + 'h {
        self.roles
            .iter()
            .filter(move |(_, hosts)| hosts.iter().any(|h| h == host))
    }

    pub(super) fn behind_proxy(&self, role: &str) -> bool {
        self.config.roles.get(role).is_some_and(|r| r.proxy)
    }

    /// The role's service in hoist-proxy.
    pub(super) fn service_of(&self, role: &str) -> String {
        naming::role_scope(
            &self.config.service,
            role,
            self.config.destination.as_deref(),
        )
    }

    pub(super) fn owner_of(&self, role: &str) -> naming::Owner {
        naming::Owner::new(
            &self.config.service,
            role,
            self.config.destination.as_deref(),
        )
    }

    /// Pull on every host and read what runs there (nothing changes until pre-deploy has
    /// passed).
    pub(super) async fn pull_and_survey_all(&self, servers: &[&Server]) -> Result<Vec<Survey>> {
        let surveys = join_all(servers.iter().map(|server| self.pull_and_survey(server))).await;
        surveys
            .into_iter()
            .collect::<Result<Vec<Survey>>>()
            .map_err(|err| nothing_switched(self, err, "nothing was changed"))
    }

    /// The rest of the release, with the lock held, from what [`Self::pull_and_survey_all`] read.
    pub(super) async fn run_locked(
        &self,
        servers: &[&Server],
        surveys: Vec<Survey>,
        hosts: &[String],
        hooks: &Hooks,
        timings: &mut Timings,
    ) -> Result<()> {
        self.report_unfinished(servers, &surveys);

        hooks.run(Hook::PreDeploy, hosts)?;
        let phase = Instant::now();
        let (booted, balancer) = tokio::join!(
            join_all(
                servers
                    .iter()
                    .zip(&surveys)
                    .map(|(server, survey)| self.boot_proxy(server, survey)),
            ),
            self.boot_loadbalancer()
        );
        first_error(booted)
            .and(balancer)
            .map_err(|err| nothing_switched(self, err, "no app container was changed"))?;
        timings.add("proxy", phase);
        if self.kind == Kind::Deploy
            && let Some(command) = &self.config.deploy.release_command
        {
            let phase = Instant::now();
            self.run_release_command(servers, command)
                .await
                .map_err(|err| nothing_switched(self, err, "no app container was changed"))?;
            timings.add("release command", phase);
        }
        hooks.run(Hook::PreAppBoot, hosts)?;

        // Stage everywhere; the release is pending on a host from here on.
        let phase = Instant::now();
        let fleet = self.stage_everywhere(servers, surveys).await?;
        timings.add("stage", phase);

        let phase = Instant::now();
        if let Err(stopped) = self.switch_in_batches(&fleet).await {
            return Err(self.undo(&fleet, stopped).await);
        }
        timings.add("switch", phase);
        hooks.run(Hook::PostAppBoot, hosts)?;

        // The old containers stop while retention and the records are seen to.
        let phase = Instant::now();
        let release_lock = fleet.len() == 1;
        let finished = join_all(fleet.iter().map(|host| self.finish(host, release_lock))).await;
        first_error(finished)?;
        timings.add("stop old and prune", phase);
        if self.loadbalancer.is_some() {
            let phase = Instant::now();
            self.sync_loadbalancer().await?;
            timings.add("load balancer", phase);
        }
        hooks.run(Hook::PostDeploy, hosts)?;
        Ok(())
    }

    /// Warn about hosts where an earlier release never finished; this one converges them.
    fn report_unfinished(&self, servers: &[&Server], surveys: &[Survey]) {
        for (server, survey) in servers.iter().zip(surveys) {
            if let Some(record) = survey.record.as_ref().filter(|r| r.phase == Phase::Pending) {
                self.printer.warn(format!(
                    "the {} did not finish on `{}` (interrupted or lost contact); this {} \
                     puts {} live there and cleans up what it left",
                    record.describe(),
                    server.host,
                    self.kind.name(),
                    short(self.version)
                ));
            }
        }
    }

    /// Mark the release pending and stage the new containers on every host at once. If any host
    /// fails, what was staged anywhere is removed and the records are put back.
    async fn stage_everywhere<'s>(
        &self,
        servers: &[&'s Server],
        surveys: Vec<Survey>,
    ) -> Result<Vec<Host<'s>>> {
        let results = join_all(servers.iter().zip(&surveys).map(|(server, survey)| async {
            let record = self.pending_record(&server.host, survey);
            let (written, staged) = tokio::join!(
                state::write(&server.session, &self.scope, Some(&record), None, None),
                self.stage_host(server, survey)
            );
            (record, written, staged)
        }))
        .await;
        let mut fleet = Vec::new();
        let mut failure = None;
        for ((server, survey), (record, written, staged)) in
            servers.iter().zip(surveys).zip(results)
        {
            let staged = match (written, staged) {
                (Ok(()), Ok(staged)) => staged,
                (Err(err), Ok(staged)) => {
                    failure.get_or_insert(err);
                    staged
                }
                (_, Err(err)) => {
                    failure.get_or_insert(err);
                    Vec::new()
                }
            };
            fleet.push(Host {
                server,
                survey,
                record,
                staged,
            });
        }
        let Some(err) = failure else {
            return Ok(fleet);
        };
        join_all(fleet.iter().map(|host| async {
            for unit in &host.staged {
                self.discard(host.server, unit).await;
            }
            self.restore_record(host).await;
        }))
        .await;
        Err(nothing_switched(
            self,
            err,
            "the new containers got no traffic and were removed",
        ))
    }

    /// Switch batch by batch, watching the canary batch; on a failure, where it stopped.
    async fn switch_in_batches(&self, fleet: &[Host<'_>]) -> Result<(), Stopped> {
        let pace = Pace {
            limit: self.config.boot.limit,
            parallel_roles: self.config.boot.parallel_roles,
            canary: self.options.canary,
        };
        let batches = plan::batches(self.roles, &self.config.primary_role, pace);
        let mut switched = BTreeSet::new();
        let mut lost = BTreeSet::new();
        let stop = |failure, switched, lost| Stopped {
            failure,
            switched,
            lost,
        };
        let total = batches.len();
        for (index, batch) in batches.iter().enumerate() {
            if index > 0 && !self.config.boot.wait.is_zero() {
                self.printer.status(
                    "Waiting",
                    format!(
                        "{} before the next batch (`boot.wait`)",
                        crate::config::format_duration(self.config.boot.wait)
                    ),
                );
                let waited = self
                    .interruptible(async {
                        tokio::time::sleep(self.config.boot.wait).await;
                        Ok(())
                    })
                    .await;
                if waited.is_err() {
                    return Err(stop(Failed::Interrupted, switched, lost));
                }
            }
            if self.interrupt.is_cancelled() {
                return Err(stop(Failed::Interrupted, switched, lost));
            }
            let units: Vec<(&Server, &Staged)> = batch
                .units
                .iter()
                .filter_map(|unit| find(fleet, unit))
                .collect();
            let results = join_all(
                units
                    .iter()
                    .map(|(server, staged)| self.switch(server, staged)),
            )
            .await;
            let mut failure = None;
            for ((_, staged), result) in units.iter().zip(results) {
                match result {
                    Ok(()) => {
                        switched.insert(staged.unit.clone());
                        self.record_switch(&staged.unit, index + 1, total);
                    }
                    Err(failed) => {
                        if matches!(failed, Failed::Lost(_)) {
                            lost.insert(staged.unit.host.clone());
                        }
                        // The worst first: a lost host is worse than a refused container.
                        let replace = matches!(
                            (&failure, &failed),
                            (None, _)
                                | (Some(Failed::Refused(_)), Failed::Lost(_))
                                | (
                                    Some(Failed::Interrupted),
                                    Failed::Lost(_) | Failed::Refused(_)
                                )
                        );
                        if replace {
                            failure = Some(failed);
                        }
                    }
                }
            }
            if let Some(failure) = failure {
                return Err(stop(failure, switched, lost));
            }
            if batch.canary && !self.options.canary_wait.is_zero() {
                self.printer.status(
                    "Watching",
                    format!(
                        "the canary for {} (`--canary-wait`)",
                        crate::config::format_duration(self.options.canary_wait)
                    ),
                );
                if let Err(err) = self.watch_canary(&units, self.options.canary_wait).await {
                    let failure = if super::stage::interrupted(&err) {
                        Failed::Interrupted
                    } else {
                        Failed::Refused(err)
                    };
                    return Err(stop(failure, switched, lost));
                }
            }
        }
        Ok(())
    }

    fn record_switch(&self, unit: &Unit, batch: usize, total: usize) {
        self.printer.status(
            "Switched",
            format!(
                "{} on {} to {}{}",
                unit.role,
                unit.host,
                short(self.version),
                if total > 1 {
                    format!(" (batch {batch} of {total})")
                } else {
                    String::new()
                }
            ),
        );
        if let Ok(mut switched) = self.switched.lock() {
            switched.push(Switched {
                host: unit.host.clone(),
                role: unit.role.clone(),
                at: self.started.elapsed().as_secs_f64(),
            });
        }
    }

    /// After a failure: the units switched go back (unless `--no-rollback`), the others'
    /// staged containers go, records are put back where nothing new serves; the error says
    /// what runs where. Hosts lost are left alone: their record stays pending, for the next
    /// release to report and converge.
    async fn undo(&self, fleet: &[Host<'_>], stopped: Stopped) -> anyhow::Error {
        let Stopped {
            failure,
            switched,
            lost,
        } = stopped;
        let rollback = self.config.boot.rollback && !self.options.no_rollback;
        if rollback && !switched.is_empty() {
            self.printer.status(
                "Reverting",
                format!(
                    "{} switched to {}, back to the previous version",
                    crate::printer::plural(switched.len(), "role"),
                    short(self.version)
                ),
            );
        }
        // Per host: what runs there now, and whether the new version is gone from it (`Some(true)`),
        // wholly live (`Some(false)`), or partly (`None`).
        let outcomes = join_all(fleet.iter().map(|host| async {
            if lost.contains(&host.server.host) {
                let line = format!(
                    "unknown (lost contact; the next `hoist {}` reports and converges it)",
                    self.kind.name()
                );
                return (line, None);
            }
            let mut lines = Vec::new();
            let (mut old, mut new) = (0, 0);
            for unit in &host.staged {
                let role = &unit.unit.role;
                if !switched.contains(&unit.unit) {
                    self.discard(host.server, unit).await;
                    old += 1;
                    lines.push(format!("{role} on {} (not switched)", self.previous(unit)));
                } else if !rollback {
                    new += 1;
                    lines.push(format!("{role} on {} (--no-rollback)", short(self.version)));
                } else {
                    match self.revert(host.server, unit).await {
                        Ok(now) => {
                            old += 1;
                            lines.push(format!("{role} back on {now}"));
                        }
                        Err(err) => {
                            new += 1;
                            lines.push(format!(
                                "{role} still on {} (going back failed: {err:#})",
                                short(self.version)
                            ));
                        }
                    }
                }
            }
            let gone = match (old, new) {
                (_, 0) => Some(true),
                (0, _) => Some(false),
                _ => None,
            };
            (lines.join(", "), gone)
        }))
        .await;
        let mut report = Vec::new();
        let mut restore = Vec::new();
        let mut finish = Vec::new();
        for (host, (line, gone)) in fleet.iter().zip(outcomes) {
            report.push((
                self.rank(&host.server.host),
                format!("{}: {line}", host.server.host),
            ));
            match gone {
                Some(true) => restore.push(host),
                Some(false) => finish.push(host),
                None => {}
            }
        }
        join_all(restore.iter().map(|host| self.restore_record(host))).await;
        // Hosts wholly on the new version (--no-rollback) are finished as after a deploy.
        let finished = join_all(finish.iter().map(|host| self.finish(host, false))).await;
        for err in finished.into_iter().filter_map(Result::err) {
            self.printer.warn(format!("{err:#}"));
        }
        report.sort();
        let report: Vec<String> = report.into_iter().map(|(_, line)| line).collect();
        let now = format!("\n  Now:\n    {}", report.join("\n    "));
        match failure {
            Failed::Interrupted => hinted(
                format!(
                    "Interrupted (Ctrl-C) during the switch to {}; {}.{now}",
                    short(self.version),
                    if rollback {
                        "every host switched went back to the previous version"
                    } else {
                        "hosts switched stay on it (--no-rollback)"
                    }
                ),
                format!("run `hoist {}` again to finish", self.kind.name()),
            ),
            Failed::Refused(err) | Failed::Lost(err) => {
                let failed = format!("The {} of {} failed", self.kind.name(), short(self.version));
                let what = if switched.is_empty() {
                    format!("{failed} before any host switched to it")
                } else if rollback {
                    format!(
                        "{failed}, and every host switched to it went back to the previous \
                         version (releases are fleet-atomic; `--no-rollback` keeps them on the \
                         new one)"
                    )
                } else {
                    format!(
                        "{failed}; hosts switched stay on it (--no-rollback), so the fleet runs \
                         mixed versions until `hoist rollback` or the next deploy"
                    )
                };
                err.context(format!("{what}.{now}"))
            }
        }
    }

    /// Where `host` comes in the release's order (primary role first), for reports.
    fn rank(&self, host: &str) -> usize {
        let mut roles: Vec<&(String, Vec<String>)> = self.roles.iter().collect();
        roles.sort_by_key(|(role, _)| *role != self.config.primary_role);
        roles
            .iter()
            .flat_map(|(_, hosts)| hosts)
            .position(|h| h == host)
            .unwrap_or(usize::MAX)
    }

    /// Put the record back as it was before this release, where nothing new serves.
    async fn restore_record(&self, host: &Host<'_>) {
        let live = self.live_version_on(&host.server.host, &host.survey);
        let restored = host
            .record
            .undo(host.survey.record.as_ref(), live.as_deref());
        if let Err(err) = state::write(
            &host.server.session,
            &self.scope,
            restored.as_ref(),
            None,
            None,
        )
        .await
        {
            tracing::warn!(host = %host.server.host, error = %format!("{err:#}"), "release record not restored");
        }
    }

    /// After the switch on a host: stop the old containers, remove a replaced copy, prune
    /// (deploy only), mark the release stable and write the audit line, all at once; with
    /// `release_lock`, the lock goes in the same round trip if it is on this host.
    async fn finish(&self, host: &Host<'_>, release_lock: bool) -> Result<()> {
        let server = host.server;
        let docker = &server.docker;
        let cleanup_failed = || {
            format!(
                "{} is live on `{}`, but the previous version's container could not be cleaned \
                 up (the next deploy removes it)",
                short(self.version),
                server.host
            )
        };
        let stopping: Vec<String> = host
            .staged
            .iter()
            .flat_map(|unit| {
                unit.old
                    .iter()
                    .filter(|c| unit.replaced.as_ref() != Some(&c.id))
                    .map(|c| c.id.clone())
            })
            .collect();
        let stop = async {
            for id in &stopping {
                // By id: a redeployed live container was renamed, and its name is the new one's.
                app::stop(docker, id).await.with_context(cleanup_failed)?;
            }
            for id in host.staged.iter().filter_map(|unit| unit.replaced.as_ref()) {
                app::remove(docker, id).await.with_context(cleanup_failed)?;
            }
            anyhow::Ok(())
        };
        let prune = async {
            if self.kind != Kind::Deploy {
                return Ok(());
            }
            for unit in &host.staged {
                let pruned = prune::prune(docker, self.config, &unit.unit.role, &stopping)
                    .await
                    .with_context(|| {
                        format!("Failed to prune old versions on `{}`", server.host)
                    })?;
                if !pruned.containers.is_empty() {
                    tracing::info!(host = %server.host, containers = ?pruned.containers, images = ?pruned.images, "pruned");
                }
            }
            anyhow::Ok(())
        };
        let message = match self.kind {
            Kind::Rollback => format!("Rolled back to version {}", self.version),
            _ => format!("Deployed version {}", self.version),
        };
        let line = crate::audit::line(&self.prepared.performer, &message);
        let settled = host.record.settle();
        let then = self
            .lock_release
            .as_ref()
            .filter(|(on, _)| release_lock && *on == server.host)
            .map(|(_, command)| command.as_str());
        let record = async {
            match state::write(
                &server.session,
                &self.scope,
                Some(&settled),
                Some(&line),
                then,
            )
            .await
            {
                Ok(()) => {
                    if then.is_some() {
                        self.lock_released.store(true, Ordering::SeqCst);
                    }
                }
                Err(err) => {
                    tracing::warn!(host = %server.host, error = %format!("{err:#}"), "release record and audit line not written");
                }
            }
        };
        let (stopped, pruned, ()) = tokio::join!(stop, prune, record);
        stopped?;
        pruned
    }
}

/// The staged unit `unit` and its server.
fn find<'f>(fleet: &'f [Host<'_>], unit: &Unit) -> Option<(&'f Server, &'f Staged)> {
    fleet.iter().find_map(|host| {
        host.staged
            .iter()
            .find(|staged| staged.unit == *unit)
            .map(|staged| (host.server, staged))
    })
}

fn nothing_switched(release: &Release<'_>, err: anyhow::Error, what: &str) -> anyhow::Error {
    if super::stage::interrupted(&err) {
        return interrupted_before_switch(release.version, release.kind);
    }
    err.context(format!(
        "Nothing was switched on any host: {what}, and the previous version keeps serving"
    ))
}

fn interrupted_before_switch(version: &str, kind: Kind) -> anyhow::Error {
    hinted(
        format!(
            "Interrupted (Ctrl-C) before the switch: the new containers got no traffic and were \
             removed, the previous version keeps serving, and the deploy lock is released ({})",
            short(version)
        ),
        format!("run `hoist {}` again to finish", kind.name()),
    )
}

fn first_error(results: Vec<Result<()>>) -> Result<()> {
    results.into_iter().collect()
}
