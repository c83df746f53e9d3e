//! A release: one version put live on every app host with zero downtime, for `hoist deploy`,
//! `redeploy` and `rollback`, fleet-atomic by default. The steps, one module each:
//!
//! 1. [`local`]: secrets, registry credentials and the version (nothing is touched yet);
//!    `pre-connect`; build and push (`pre-build`), or check the registry has the image.
//! 2. Connect to every host ([`crate::fleet`]); take the lock on the primary host.
//! 3. [`stage`], on every host at once: pull and read what runs; `pre-deploy`; the `hoist`
//!    network and hoist-proxy; the release command ([`release_command`]) on the primary host;
//!    `pre-app-boot`; the new containers, started behind the proxy
//!    (no traffic yet) or created; the release marked pending ([`state`]).
//! 4. [`switch`], batch by batch in the order [`plan`] works out (primary role first,
//!    `boot.limit` hosts at a time, `boot.wait` apart, `--canary` first and watched): the
//!    proxy health-checks and swaps, or a worker starts and becomes ready. The old containers
//!    keep running. A failure anywhere puts every switched unit back ([`release`]).
//! 5. `post-app-boot`; the old containers stop, prune (deploy only), the release is marked
//!    stable with an audit line per host; `post-deploy`; the lock is released.
//!
//! Ctrl-C stops at the next safe point (never in the middle of a proxy swap): before the first
//! switch the new containers are removed, after it every switched unit goes back.

mod balance;
mod local;
mod plan;
mod release;
mod release_command;
mod stage;
pub mod state;
mod switch;
mod target;

pub use plan::batch_size;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::container::{self, app};
use crate::fleet::{self, Fleet};
use crate::hooks::{Hook, Hooks};
use crate::lock::LockInfo;
use crate::naming;
use crate::printer::Printer;
use crate::remote::Server;
use crate::report::hinted;
use crate::reporter::Reporter;
use crate::secrets::Secrets;
use crate::version;

/// Which command a release serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Build, push, boot the proxy if needed, switch, prune.
    Deploy,
    /// Like deploy, without booting the proxy or pruning.
    Redeploy,
    /// Switch back to a version still on the servers: no build, no pull, no prune.
    Rollback,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Redeploy => "redeploy",
            Kind::Rollback => "rollback",
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub kind: Kind,
    /// `--version`, or rollback's VERSION.
    pub version: Option<String>,
    pub skip_build: bool,
    pub allow_dirty: bool,
    pub lock_wait: Duration,
    /// `--roles`, for the hooks' `HOIST_ROLES`.
    pub roles: Vec<String>,
    /// `--canary N`: switch the first N hosts of the primary role first and watch them.
    pub canary: Option<usize>,
    /// `--canary-wait`: how long the canary is watched.
    pub canary_wait: Duration,
    /// `--no-rollback`: a failure leaves switched hosts on the new version.
    pub no_rollback: bool,
}

/// How long each phase took, for the summary and `--json`.
#[derive(Debug, Default)]
pub(crate) struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    fn add(&mut self, phase: &'static str, since: Instant) {
        self.0.push((phase, since.elapsed()));
    }

    fn summary(&self) -> String {
        self.0
            .iter()
            .map(|(phase, took)| format!("{phase} {:.1}s", took.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn run(
    config: &Config,
    hosts: &[String],
    options: Options,
    printer: &Printer,
) -> Result<()> {
    let started = Instant::now();
    let mut timings = Timings::default();
    let kind = options.kind;
    let roles = roles_on(config, hosts);
    if roles.is_empty() {
        return Err(hinted(
            "No app role runs on the selected hosts",
            "check `--hosts`/`--roles` against `[servers.<role>] hosts` in deploy.toml",
        ));
    }
    let app_hosts = fleet::app_hosts(config, hosts);

    // 1. Everything that can fail without touching a server.
    let secrets = Secrets::for_config(config)?;
    let prepared = local::prepare(config, &secrets, &roles)?;
    let version = match kind {
        Kind::Deploy | Kind::Redeploy => Some(version::resolve(
            &config.root,
            options.version.as_deref(),
            options.allow_dirty,
        )?),
        Kind::Rollback => options.version.clone(),
    };
    if let Some(version) = &version {
        version::check(version)?;
    }
    let hook_vars = hook_vars(config, &prepared.performer, kind.name(), "", &options.roles);
    let hook_secrets = config
        .secret_refs()
        .into_iter()
        .map(|reference| {
            Ok((
                reference.name.clone(),
                secrets.resolve(reference)?.expose().to_string(),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut hooks =
        Hooks::for_config(config, *printer, hook_vars, started).with_secrets(hook_secrets);
    hooks.set("HOIST_VERSION", version.as_deref().unwrap_or_default());

    hooks.run(Hook::PreConnect, &app_hosts)?;
    let check_first = match (&version, kind) {
        (Some(version), Kind::Deploy | Kind::Redeploy) if options.skip_build => {
            Some(version.clone())
        }
        (Some(version), Kind::Deploy | Kind::Redeploy) => {
            hooks.run(Hook::PreBuild, &app_hosts)?;
            local::build_and_push(config, version, &prepared, printer, &mut timings).await?;
            None
        }
        _ => None,
    };

    // 2. Connect, while the registry confirms a `--skip-build` image: connecting, pulling and
    //    reading change nothing, and the lock, the first write, waits for the registry's yes.
    let phase = Instant::now();
    let reporter = Reporter::new(*printer);
    let mut connect_to = fleet::with_primary(config, &app_hosts);
    // The load balancer follows a release that puts a web host live.
    let balanced = config.loadbalancer.as_ref().filter(|_| {
        container::loadbalancer::web_hosts(config)
            .iter()
            .any(|host| app_hosts.contains(host))
    });
    if let Some(lb) = balanced {
        connect_to.push(lb.host.clone());
    }
    let check = check_first.as_ref().map(|version| {
        local::check_registry(config, version, prepared.app_credentials.clone(), printer)
    });
    let fleet = Fleet::connect(config, &connect_to, &reporter, printer, kind.name()).await?;
    timings.add("connect", phase);
    let scope = naming::scope(&config.service, config.destination.as_deref());
    let version = match version {
        Some(version) => version,
        None => match rollback_target(config, &roles, &fleet, &scope).await {
            Ok(version) => version,
            Err(err) => {
                fleet.close().await;
                return Err(err);
            }
        },
    };
    hooks.set("HOIST_VERSION", &version);

    // 3.–6. The lock, taken while every host pulls and is read (which changes nothing); with
    //    it held, Ctrl-C is ours.
    let phase = Instant::now();
    let interrupt = CancellationToken::new();
    let app_servers: Vec<&Server> = fleet.among(&app_hosts);
    let info = LockInfo::new(&prepared.performer, kind.name(), Some(&version)).and_then(|info| {
        let release = match (&info.id, fleet::primary_host(config)) {
            (Some(id), Some(primary)) if !hooks.exists(Hook::PostDeploy) => {
                Some((primary, crate::lock::release_command(&scope, id)?))
            }
            _ => None,
        };
        Ok((info, release))
    });
    let (info, lock_release) = match info {
        Ok(info) => info,
        Err(err) => {
            fleet.close().await;
            return Err(err);
        }
    };
    let release = release::Release {
        config,
        kind,
        version: &version,
        prepared: &prepared,
        roles: &roles,
        options: &options,
        reporter: &reporter,
        printer,
        interrupt: &interrupt,
        scope,
        started,
        switched: Mutex::new(Vec::new()),
        loadbalancer: balanced.and_then(|lb| fleet.server(&lb.host)),
        lock_release,
        lock_released: AtomicBool::new(false),
    };
    let lock = async {
        // The lock is the first thing written on a server: not before the registry said yes.
        if let Some(check) = check {
            match check.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    interrupt.cancel();
                    return Err(err);
                }
                Err(err) => {
                    interrupt.cancel();
                    return Err(anyhow::anyhow!("The registry check failed: {err}"));
                }
            }
        }
        let on_quit = "`hoist details` shows what runs";
        let held = fleet
            .lock(
                config,
                info,
                options.lock_wait,
                printer,
                on_quit,
                interrupt.clone(),
            )
            .await;
        if held.is_err() {
            // No need to finish pulling for a release that can't go on.
            interrupt.cancel();
        }
        held
    };
    let (held, surveys) = tokio::join!(lock, release.pull_and_survey_all(&app_servers));
    let held = match held {
        Ok(held) => held,
        Err(err) => {
            fleet.close().await;
            return Err(err);
        }
    };
    timings.add("lock and pull", phase);
    let result = match surveys {
        Ok(surveys) => {
            release
                .run_locked(&app_servers, surveys, &app_hosts, &hooks, &mut timings)
                .await
        }
        Err(err) => Err(err),
    };
    if release.lock_released.load(Ordering::SeqCst) {
        held.released();
    } else {
        held.release(&fleet, printer).await;
    }
    fleet.close().await;
    result?;
    let message = format!(
        "{} {} on {} host{} in {:.1}s ({})",
        match kind {
            Kind::Rollback => "rolled back to",
            _ => "deployed",
        },
        short(&version),
        app_hosts.len(),
        if app_hosts.len() == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64(),
        timings.summary()
    );
    printer.status("Finished", message);
    if printer.json() {
        let phases: serde_json::Map<String, serde_json::Value> = timings
            .0
            .iter()
            .map(|(phase, took)| (phase.to_string(), serde_json::json!(took.as_secs_f64())))
            .collect();
        let switched = release
            .switched
            .lock()
            .map(|switched| switched.clone())
            .unwrap_or_default();
        printer.data(format!(
            "{}\n",
            serde_json::json!({
                "command": kind.name(),
                "version": version,
                "hosts": app_hosts,
                "seconds": started.elapsed().as_secs_f64(),
                "phases": phases,
                "switched": switched,
            })
        ));
    }
    Ok(())
}

/// The variables every hook of a command gets (`HOIST_SERVICE`, `HOIST_PERFORMER`,
/// `HOIST_COMMAND`, `HOIST_SUBCOMMAND`, `HOIST_RECORDED_AT`, `HOIST_DESTINATION`, and
/// `HOIST_ROLES` when `--roles` narrowed it); no secrets.
pub fn hook_vars(
    config: &Config,
    performer: &str,
    command: &str,
    subcommand: &str,
    roles: &[String],
) -> Vec<(String, String)> {
    let mut vars = vec![
        ("HOIST_SERVICE".to_string(), config.service.clone()),
        ("HOIST_PERFORMER".to_string(), performer.to_string()),
        ("HOIST_COMMAND".to_string(), command.to_string()),
        (
            "HOIST_RECORDED_AT".to_string(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        ),
        (
            "HOIST_DESTINATION".to_string(),
            config.destination.clone().unwrap_or_default(),
        ),
        ("HOIST_SUBCOMMAND".to_string(), subcommand.to_string()),
    ];
    if !roles.is_empty() {
        vars.push(("HOIST_ROLES".to_string(), roles.join(",")));
    }
    vars
}

/// The roles with hosts among `hosts`, each with those hosts.
fn roles_on(config: &Config, hosts: &[String]) -> Vec<(String, Vec<String>)> {
    config
        .roles
        .iter()
        .map(|(name, role)| {
            let on: Vec<String> = role
                .hosts
                .iter()
                .filter(|host| hosts.contains(host))
                .cloned()
                .collect();
            (name.clone(), on)
        })
        .filter(|(_, on)| !on.is_empty())
        .collect()
}

/// The first 12 characters of a commit-like version, for messages.
pub(crate) fn short(version: &str) -> &str {
    if version.len() == 40 && version.chars().all(|c| c.is_ascii_hexdigit()) {
        &version[..12]
    } else {
        version
    }
}

/// The version to roll back to, chosen on the primary host from the primary role's containers
/// (the first role of the release without it) and the release record there.
async fn rollback_target(
    config: &Config,
    roles: &[(String, Vec<String>)],
    fleet: &Fleet,
    scope: &str,
) -> Result<String> {
    let primary = fleet::primary_host(config).unwrap_or_default();
    let (role, hosts) = roles
        .iter()
        .find(|(role, _)| *role == config.primary_role)
        .unwrap_or(&roles[0]);
    let host = if hosts.contains(&primary) {
        primary
    } else {
        hosts[0].clone()
    };
    let server = fleet
        .server(&host)
        .with_context(|| format!("`{host}` is not connected"))?;
    let (containers, record) = tokio::join!(
        app::list(&server.docker, config, role),
        state::read(&server.session, scope)
    );
    let containers = containers?;
    let mut candidates = Vec::new();
    for container in &containers {
        let finished = if container.running {
            None
        } else {
            let inspect = server
                .docker
                .inspect_container(&container.name, None)
                .await
                .with_context(|| format!("Failed to inspect `{}`", container.name))?;
            inspect
                .state
                .and_then(|s| s.finished_at)
                .and_then(|at| humantime::parse_rfc3339_weak(&at).ok())
        };
        candidates.push(target::Candidate {
            version: container.version.clone(),
            running: container.running,
            finished,
        });
    }
    target::rollback_target(&candidates, record?.as_ref()).ok_or_else(|| {
        hinted(
            format!("No previous version of role `{role}` is left on `{host}` to roll back to"),
            "`hoist versions` lists the versions kept on each server",
        )
    })
}
