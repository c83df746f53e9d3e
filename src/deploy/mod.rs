//! A release: one version put live on every app host with zero downtime, for `hoist deploy`,
//! `redeploy` and `rollback`. The sequence:
//!
//! 1. Resolve secrets, registry credentials and the version (nothing is touched yet);
//!    `pre-connect`; build and push (`pre-build`), or check the registry has the image.
//! 2. Connect; take the lock on the primary host (the first configured app host).
//! 3. On every host at once: pull. Then `pre-deploy`, the `hoist` network and hoist-proxy, and
//!    `pre-app-boot`.
//! 4. On every host at once, each role in turn ([`boot`]): clean up what an interrupted deploy
//!    left, start the new container, let the proxy health-check it, swap and drain (roles without
//!    the proxy: wait until it is ready), then stop the old container. A new container that fails
//!    gets no traffic: its logs are shown and it is removed.
//! 5. `post-app-boot`, prune (deploy only), an audit line per host, `post-deploy`, and only then
//!    the lock is released.
//!
//! Ctrl-C stops at the next step that can stop safely (never in the middle of a proxy swap),
//! removes the new containers that got no traffic and releases the lock.

pub mod app;
mod owner;
pub mod proxy;
pub mod prune;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bollard::auth::DockerCredentials;
use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::audit;
use crate::build;
use crate::config::Config;
use crate::docker;
use crate::hooks::{Hook, Hooks};
use crate::lock::{self, LockInfo};
use crate::naming;
use crate::printer::Printer;
use crate::registry;
use crate::remote::{Connector, Server};
use crate::report::hinted;
use crate::reporter::{HostProgress, Reporter};
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
}

/// How long each phase took, for the summary and `--json`.
#[derive(Debug, Default)]
struct Timings(Vec<(&'static str, Duration)>);

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

/// Everything secret or remote a release needs, resolved before the first connection.
struct Prepared {
    /// Role name → its containers' environment (secret values included).
    env: BTreeMap<String, Vec<String>>,
    app_credentials: Option<DockerCredentials>,
    proxy_credentials: Option<DockerCredentials>,
    /// `NAME=value` for `hoist-proxy deploy`'s environment (secrets it must not get as flags).
    proxy_env: Vec<String>,
    performer: String,
}

/// Why a release stopped early because of Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("Interrupted (Ctrl-C)")]
struct Interrupted;

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
    let app_hosts = app_hosts(config, hosts);

    // 1. Everything that can fail without touching a server.
    let secrets = Secrets::load(&config.root, config.destination.as_deref())?;
    let prepared = prepare(config, &secrets, &roles)?;
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
        Hooks::new(&config.hooks_path, *printer, hook_vars, started).with_secrets(hook_secrets);
    hooks.set("HOIST_VERSION", version.as_deref().unwrap_or_default());

    hooks.run(Hook::PreConnect, &app_hosts)?;
    let check_first = match (&version, kind) {
        (Some(version), Kind::Deploy | Kind::Redeploy) if options.skip_build => {
            Some(version.clone())
        }
        (Some(version), Kind::Deploy | Kind::Redeploy) => {
            hooks.run(Hook::PreBuild, &app_hosts)?;
            build_and_push(config, version, &prepared, printer, &mut timings).await?;
            None
        }
        _ => None,
    };

    // 2. Connect (while the registry confirms a `--skip-build` image: connecting changes
    //    nothing, and no server is changed unless the registry says yes), then lock.
    let phase = Instant::now();
    let reporter = Reporter::new(*printer);
    let primary = primary_host(config).unwrap_or_else(|| app_hosts[0].clone());
    let mut connect_to = app_hosts.clone();
    if !connect_to.contains(&primary) {
        connect_to.insert(0, primary.clone());
    }
    let connector = Connector::from_config(config)?;
    let check = async {
        match &check_first {
            Some(version) => {
                check_registry(config, version, prepared.app_credentials.clone(), printer).await
            }
            None => Ok(()),
        }
    };
    let (checked, connected) = tokio::join!(check, connector.connect_all(&connect_to, &reporter));
    let (servers, unreachable) = connected?;
    if let Err(err) = checked {
        close_all(&servers).await;
        return Err(err);
    }
    if let Some(failure) = unreachable.into_iter().next() {
        close_all(&servers).await;
        return Err(failure.error.context(format!(
            "Can't {} while `{}` is unreachable; nothing was changed",
            kind.name(),
            failure.host
        )));
    }
    timings.add(
        if check_first.is_some() {
            "connect and registry check"
        } else {
            "connect"
        },
        phase,
    );
    let Some(primary_server) = servers.iter().find(|s| s.host == primary) else {
        close_all(&servers).await;
        return Err(anyhow!("The primary host `{primary}` is not connected"));
    };
    let version = match version {
        Some(version) => version,
        None => match rollback_target(config, &roles, primary_server).await {
            Ok(version) => version,
            Err(err) => {
                close_all(&servers).await;
                return Err(err);
            }
        },
    };
    hooks.set("HOIST_VERSION", &version);
    let scope = naming::scope(&config.service, config.destination.as_deref());
    let phase = Instant::now();
    let lock_info = LockInfo::new(&prepared.performer, kind.name(), Some(&version))?;
    if let Err(err) = take_lock(
        primary_server,
        &scope,
        &lock_info,
        options.lock_wait,
        printer,
    )
    .await
    {
        close_all(&servers).await;
        return Err(err);
    }
    timings.add("lock", phase);

    // 3.–5. With the lock held; Ctrl-C is ours from here on.
    let interrupt = CancellationToken::new();
    let listener = tokio::spawn(listen_for_ctrl_c(interrupt.clone(), *printer));
    let app_servers: Vec<&Server> = servers
        .iter()
        .filter(|server| app_hosts.contains(&server.host))
        .collect();
    let context = Release {
        config,
        kind,
        version: &version,
        prepared: &prepared,
        roles: &roles,
        reporter: &reporter,
        interrupt: &interrupt,
    };
    let result = context
        .run_locked(&app_servers, &app_hosts, &hooks, &mut timings)
        .await;
    listener.abort();

    let released = lock::release(&primary_server.session, &scope, lock_info.id.as_deref()).await;
    close_all(&servers).await;
    if let Err(err) = released {
        printer.warn(format!(
            "{err:#}; release it with `hoist lock release` once you are sure no deploy runs"
        ));
    }
    if let Err(err) = result {
        if err.is::<Interrupted>() {
            return Err(hinted(
                format!(
                    "Interrupted (Ctrl-C) before the switch: the new containers got no traffic \
                     and were removed, the previous version keeps serving, and the deploy lock \
                     is released ({})",
                    short(&version)
                ),
                format!("run `hoist {}` again to finish", kind.name()),
            ));
        }
        return Err(err);
    }
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
        printer.data(format!(
            "{}\n",
            serde_json::json!({
                "command": kind.name(),
                "version": version,
                "hosts": app_hosts,
                "seconds": started.elapsed().as_secs_f64(),
                "phases": phases,
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

/// The host holding the deploy lock: the first host of the first role, whatever `--hosts`
/// narrows, so every deploy of a service meets the same lock.
pub fn primary_host(config: &Config) -> Option<String> {
    config
        .roles
        .values()
        .flat_map(|role| role.hosts.first())
        .next()
        .cloned()
}

/// The hosts among `hosts` that run an app role (not only accessories or the load balancer).
pub fn app_hosts(config: &Config, hosts: &[String]) -> Vec<String> {
    hosts
        .iter()
        .filter(|host| config.roles.values().any(|role| role.hosts.contains(host)))
        .cloned()
        .collect()
}

/// One role's containers on a server and the live one.
pub struct RoleContainers {
    pub role: String,
    /// Newest first.
    pub containers: Vec<app::AppContainer>,
    /// Id (or its prefix) of the live container: the proxy's target, or for a role without
    /// the proxy the running one.
    pub live: Option<String>,
}

impl RoleContainers {
    pub fn is_live(&self, container: &app::AppContainer) -> bool {
        self.live
            .as_deref()
            .is_some_and(|live| container.id.starts_with(live))
    }

    /// The version the live container runs, if it runs.
    pub fn live_version(&self) -> Option<&str> {
        self.containers
            .iter()
            .find(|container| container.running && self.is_live(container))
            .map(|container| container.version.as_str())
    }
}

/// Every role of the configuration that runs on `server`, with its containers.
pub async fn role_containers(config: &Config, server: &Server) -> Result<Vec<RoleContainers>> {
    // No proxy (yet) means no role is live behind it.
    let services = proxy::list(&server.docker).await.unwrap_or_default();
    let mut roles = Vec::new();
    for (role, role_config) in &config.roles {
        if !role_config.hosts.contains(&server.host) {
            continue;
        }
        let containers = app::list(&server.docker, config, role).await?;
        let live = if role_config.proxy {
            let service = naming::role_scope(&config.service, role, config.destination.as_deref());
            proxy::live_target(&services, &service)
        } else {
            containers.iter().find(|c| c.running).map(|c| c.id.clone())
        };
        roles.push(RoleContainers {
            role: role.clone(),
            containers,
            live,
        });
    }
    Ok(roles)
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

fn prepare(
    config: &Config,
    secrets: &Secrets,
    roles: &[(String, Vec<String>)],
) -> Result<Prepared> {
    let mut env = BTreeMap::new();
    for (role, _) in roles {
        env.insert(role.clone(), secrets.container_env(&config.role_env(role))?);
    }
    Ok(Prepared {
        env,
        app_credentials: registry::credentials_for(config, secrets, &config.image)?,
        proxy_credentials: registry::credentials_for(config, secrets, &config.proxy.image)?,
        proxy_env: proxy::deploy_env(config, secrets)?,
        performer: version::performer(&config.root),
    })
}

/// The first 12 characters of a commit-like version, for messages.
fn short(version: &str) -> &str {
    if version.len() == 40 && version.chars().all(|c| c.is_ascii_hexdigit()) {
        &version[..12]
    } else {
        version
    }
}

async fn close_all(servers: &[Server]) {
    for server in servers {
        server.session.close().await;
    }
}

async fn check_registry(
    config: &Config,
    version: &str,
    credentials: Option<DockerCredentials>,
    printer: &Printer,
) -> Result<()> {
    let reference = format!("{}:{version}", config.image);
    match docker::connect_local().await {
        Ok(local) => {
            printer.status("Checking", format!("{reference} in the registry"));
            build::check_pushed(&local, &reference, credentials).await
        }
        Err(err) => {
            printer.warn(format!(
                "can't check `{reference}` in the registry before deploying ({err:#}); the \
                 servers will find out when they pull"
            ));
            Ok(())
        }
    }
}

async fn build_and_push(
    config: &Config,
    version: &str,
    prepared: &Prepared,
    printer: &Printer,
    timings: &mut Timings,
) -> Result<()> {
    let local = docker::connect_local().await?;
    let reference = format!("{}:{version}", config.image);
    let phase = Instant::now();
    printer.status(
        "Building",
        format!("{reference} with the local Docker engine"),
    );
    build::build(&local, config, version, |line| printer.detail(line)).await?;
    timings.add("build", phase);
    let phase = Instant::now();
    printer.status("Pushing", &reference);
    let reporter = Reporter::new(*printer);
    let progress = reporter.host("registry");
    build::push(
        &local,
        &config.image,
        version,
        prepared.app_credentials.clone(),
        |layers| progress.step(format!("pushing ({layers} layers done)")),
    )
    .await
    .inspect_err(|_| progress.failed("push failed"))?;
    progress.done(format!("pushed {reference}"));
    timings.add("push", phase);
    Ok(())
}

/// Take the lock, waiting up to `wait` for another holder to release it.
pub async fn take_lock(
    server: &Server,
    scope: &str,
    info: &LockInfo,
    wait: Duration,
    printer: &Printer,
) -> Result<()> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        let Some(holder) = lock::try_acquire(&server.session, scope, info).await? else {
            return Ok(());
        };
        if started.elapsed() >= wait {
            return Err(hinted(
                format!(
                    "The deploy lock on `{}` is held by {}",
                    server.host,
                    holder.describe()
                ),
                "wait for that deploy to finish (`--lock-wait 5m` waits for it); if none is \
                 running (a killed deploy leaves its lock), `hoist lock release` removes it",
            ));
        }
        if !announced {
            printer.status(
                "Waiting",
                format!("for the deploy lock, held by {}", holder.describe()),
            );
            announced = true;
        }
        tokio::time::sleep(Duration::from_secs(1).min(wait.saturating_sub(started.elapsed())))
            .await;
    }
}

/// The version to roll back to: the most recently stopped container of the first role on the
/// primary host, i.e. the version that was live before the current one.
async fn rollback_target(
    config: &Config,
    roles: &[(String, Vec<String>)],
    server: &Server,
) -> Result<String> {
    let (role, _) = &roles[0];
    let containers = app::list(&server.docker, config, role).await?;
    let live: Vec<&str> = containers
        .iter()
        .filter(|c| c.running)
        .map(|c| c.version.as_str())
        .collect();
    let mut best: Option<(std::time::SystemTime, String)> = None;
    for container in containers.iter().filter(|c| !c.running) {
        if live.contains(&container.version.as_str()) {
            continue;
        }
        let inspect = server
            .docker
            .inspect_container(&container.name, None)
            .await
            .with_context(|| format!("Failed to inspect `{}`", container.name))?;
        let finished = inspect
            .state
            .and_then(|s| s.finished_at)
            .and_then(|at| humantime::parse_rfc3339_weak(&at).ok())
            .unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|(at, _)| finished > *at) {
            best = Some((finished, container.version.clone()));
        }
    }
    best.map(|(_, version)| version).ok_or_else(|| {
        hinted(
            format!(
                "No previous version of role `{role}` is left on `{}` to roll back to",
                server.host
            ),
            "`hoist versions` lists the versions kept on each server",
        )
    })
}

async fn listen_for_ctrl_c(interrupt: CancellationToken, printer: Printer) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    printer.warn(
        "interrupted: stopping at the next safe point (a proxy switch in progress finishes \
         first); Ctrl-C again to quit at once",
    );
    interrupt.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        printer.warn("quit at once: the deploy lock stays; `hoist details` shows what runs");
        std::process::exit(130);
    }
}

/// One release in progress, shared by every host's work.
struct Release<'a> {
    config: &'a Config,
    kind: Kind,
    version: &'a str,
    prepared: &'a Prepared,
    roles: &'a [(String, Vec<String>)],
    reporter: &'a Reporter,
    interrupt: &'a CancellationToken,
}

impl Release<'_> {
    /// `fut`, unless Ctrl-C comes first.
    async fn interruptible<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            biased;
            () = self.interrupt.cancelled() => Err(Interrupted.into()),
            result = fut => result,
        }
    }

    async fn run_locked(
        &self,
        servers: &[&Server],
        hosts: &[String],
        hooks: &Hooks,
        timings: &mut Timings,
    ) -> Result<()> {
        let image = format!("{}:{}", self.config.image, self.version);

        // Pull, and meanwhile read what runs (nothing changes until pre-deploy has passed).
        let phase = Instant::now();
        let results = join_all(servers.iter().map(|server| async {
            let (pulled, surveyed) = tokio::join!(self.pull(server, &image), self.survey(server));
            pulled?;
            surveyed.with_context(|| format!("on `{}`", server.host))
        }))
        .await;
        let surveys = results.into_iter().collect::<Result<Vec<Survey>>>()?;
        let results = join_all(
            servers
                .iter()
                .zip(&surveys)
                .map(|(server, survey)| self.check_routes(server, survey)),
        )
        .await;
        first_error(results)?;
        timings.add("pull", phase);

        hooks.run(Hook::PreDeploy, hosts)?;

        if self.kind != Kind::Redeploy {
            let phase = Instant::now();
            let results = join_all(servers.iter().map(|server| self.ensure_proxy(server))).await;
            first_error(results)?;
            timings.add("proxy", phase);
        }

        hooks.run(Hook::PreAppBoot, hosts)?;
        let phase = Instant::now();
        let results = join_all(
            servers
                .iter()
                .zip(&surveys)
                .map(|(server, survey)| self.boot_host(server, survey)),
        )
        .await;
        let failed: Vec<&anyhow::Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        let switched: Vec<&str> = servers
            .iter()
            .zip(&results)
            .filter(|(_, result)| result.is_ok())
            .map(|(server, _)| server.host.as_str())
            .collect();
        if !failed.is_empty() {
            if !switched.is_empty() {
                self.reporter.host("summary").failed(format!(
                    "{} now runs on {}",
                    short(self.version),
                    switched.join(", ")
                ));
            }
            return Err(results
                .into_iter()
                .find_map(Result::err)
                .unwrap_or_else(|| anyhow!("boot failed")));
        }
        timings.add("boot", phase);
        hooks.run(Hook::PostAppBoot, hosts)?;

        // The old containers stop while retention and the audit log are seen to.
        let phase = Instant::now();
        let leftovers: Vec<Leftovers> = results.into_iter().collect::<Result<_>>()?;
        let results = join_all(
            servers
                .iter()
                .zip(&leftovers)
                .map(|(server, leftovers)| self.finish(server, leftovers)),
        )
        .await;
        first_error(results)?;
        timings.add("stop old and prune", phase);
        hooks.run(Hook::PostDeploy, hosts)?;
        Ok(())
    }

    /// After the switch on `server`: stop the old containers, remove a replaced copy, prune
    /// (deploy only) and write the audit line, all at once.
    async fn finish(&self, server: &Server, leftovers: &Leftovers) -> Result<()> {
        let docker = &server.docker;
        let cleanup_failed = || {
            format!(
                "{} is live on `{}`, but the previous version's container could not be cleaned \
                 up (the next deploy removes it)",
                short(self.version),
                server.host
            )
        };
        let stop = async {
            for id in &leftovers.stop {
                // By id: a redeployed live container was renamed, and its name is the new one's.
                app::stop(docker, id).await.with_context(cleanup_failed)?;
            }
            for id in &leftovers.remove {
                app::remove(docker, id).await.with_context(cleanup_failed)?;
            }
            anyhow::Ok(())
        };
        let prune = async {
            if self.kind == Kind::Deploy {
                self.prune(server, &leftovers.stop).await
            } else {
                Ok(())
            }
        };
        let scope = naming::scope(&self.config.service, self.config.destination.as_deref());
        let message = match self.kind {
            Kind::Rollback => format!("Rolled back to version {}", self.version),
            _ => format!("Deployed version {}", self.version),
        };
        let audit = async {
            if let Err(err) =
                audit::append(&server.session, &scope, &self.prepared.performer, &message).await
            {
                tracing::warn!(host = %server.host, error = %format!("{err:#}"), "audit line not written");
            }
        };
        let (stopped, pruned, ()) = tokio::join!(stop, prune, audit);
        stopped?;
        pruned
    }

    async fn pull(&self, server: &Server, image: &str) -> Result<()> {
        let progress = self.reporter.host(&server.host);
        let present = docker::image_exists(&server.docker, image).await?;
        if present {
            progress.done(format!("{} already present", short(self.version)));
            return Ok(());
        }
        if self.kind == Kind::Rollback {
            progress.failed("image missing");
            return Err(hinted(
                format!(
                    "Version {} is not on `{}` any more",
                    self.version, server.host
                ),
                "`hoist versions` lists the versions each server keeps",
            ));
        }
        progress.step(format!("pulling {image}"));
        let pulled = self
            .interruptible(docker::pull(
                &server.docker,
                image,
                self.prepared.app_credentials.clone(),
                |p| {
                    if p.total > 0 {
                        progress.step(format!("pulling ({p})"));
                    }
                },
            ))
            .await
            .with_context(|| format!("on `{}`", server.host));
        match pulled {
            Ok(()) => {
                progress.done(format!("pulled {}", short(self.version)));
                Ok(())
            }
            Err(err) => {
                progress.failed("pull failed");
                Err(err)
            }
        }
    }

    async fn ensure_proxy(&self, server: &Server) -> Result<()> {
        if !self.roles.iter().any(|(role, hosts)| {
            hosts.contains(&server.host) && self.config.roles.get(role).is_some_and(|r| r.proxy)
        }) {
            return Ok(());
        }
        let progress = self.reporter.host(&server.host);
        progress.step("checking hoist-proxy");
        let ensured = self
            .interruptible(async {
                docker::ensure_network(&server.docker).await?;
                proxy::ensure(
                    &server.docker,
                    self.config,
                    self.prepared.proxy_credentials.clone(),
                )
                .await
            })
            .await
            .with_context(|| format!("on `{}`", server.host));
        match ensured {
            Ok(ensured) => {
                progress.done(match ensured {
                    proxy::Ensured::Running => "hoist-proxy running".to_string(),
                    proxy::Ensured::Started => "hoist-proxy started".to_string(),
                    proxy::Ensured::Created => {
                        format!("hoist-proxy booted ({})", self.config.proxy.image)
                    }
                });
                Ok(())
            }
            Err(err) => {
                progress.failed("hoist-proxy failed");
                Err(err)
            }
        }
    }

    /// The containers of every role of this release on `server`, and the proxy's routes.
    async fn survey(&self, server: &Server) -> Result<Survey> {
        let roles: Vec<&str> = self
            .roles
            .iter()
            .filter(|(_, hosts)| hosts.contains(&server.host))
            .map(|(role, _)| role.as_str())
            .collect();
        let lists = join_all(
            roles
                .iter()
                .map(|role| self.interruptible(app::list(&server.docker, self.config, role))),
        );
        // No proxy yet (or stopped) is not an error here: the proxy step deals with it.
        let (lists, services) = tokio::join!(lists, proxy::list(&server.docker));
        let mut containers = BTreeMap::new();
        for (role, list) in roles.into_iter().zip(lists) {
            containers.insert(role.to_string(), list?);
        }
        Ok(Survey {
            containers,
            services: services.ok(),
        })
    }

    /// Refuse to deploy where hoist-proxy already routes one of this release's services to
    /// another app's container: different (service, role, destination) triples can make the
    /// same name (`shop` + `web-api`, `shop-web` + `api`). Free when the live target is one of
    /// ours (the survey lists it); one inspect otherwise.
    async fn check_routes(&self, server: &Server, survey: &Survey) -> Result<()> {
        let Some(services) = &survey.services else {
            // No proxy answered yet: `prepare_switch` checks once it runs.
            return Ok(());
        };
        let config = self.config;
        for (role, hosts) in self.roles {
            if !hosts.contains(&server.host) || !config.roles.get(role).is_some_and(|r| r.proxy) {
                continue;
            }
            let destination = config.destination.as_deref();
            let service = naming::role_scope(&config.service, role, destination);
            let ours = naming::Owner::new(&config.service, role, destination);
            let containers = survey
                .containers
                .get(role)
                .map(Vec::as_slice)
                .unwrap_or_default();
            self.interruptible(owner::check_route_owner(
                server, services, &service, &ours, containers,
            ))
            .await?;
        }
        Ok(())
    }

    /// Every role of this release on `server`, one after the other.
    async fn boot_host(&self, server: &Server, survey: &Survey) -> Result<Leftovers> {
        let progress = self.reporter.host(&server.host);
        let mut leftovers = Leftovers::default();
        for (role, hosts) in self.roles {
            if !hosts.contains(&server.host) {
                continue;
            }
            match self.boot(server, role, survey, &progress).await {
                Ok(left) => {
                    leftovers.stop.extend(left.stop);
                    leftovers.remove.extend(left.remove);
                }
                Err(err) => {
                    progress.failed(format!("{role}: failed"));
                    return Err(err);
                }
            }
        }
        progress.done(format!("{} live", short(self.version)));
        Ok(leftovers)
    }

    /// Switch `role` on `server` to the new version.
    async fn boot(
        &self,
        server: &Server,
        role: &str,
        survey: &Survey,
        progress: &HostProgress<'_>,
    ) -> Result<Leftovers> {
        let config = self.config;
        let docker = &server.docker;
        let host = &server.host;
        let behind_proxy = config.roles.get(role).is_some_and(|r| r.proxy);
        let destination = config.destination.as_deref();
        let service = naming::role_scope(&config.service, role, destination);
        let name = naming::app_container(&config.service, role, destination, self.version);

        // Before the switch: whatever fails here, the previous version keeps serving.
        progress.step(format!("{role}: preparing {name}"));
        let mut prepared = PreSwitch::default();
        let slot = Slot {
            role,
            name: &name,
            service: &service,
            behind_proxy,
        };
        let started = self
            .prepare_switch(server, &slot, survey, progress, &mut prepared)
            .await;
        let id = match started {
            Ok(id) => id,
            Err(err) => {
                let removed = self.discard(docker, &name, &prepared).await;
                if err.is::<Interrupted>() {
                    return Err(err);
                }
                return Err(err.context(format!(
                    "Nothing switched on `{host}`: the previous version keeps serving{}",
                    if removed {
                        ""
                    } else {
                        " (the next deploy removes what this one left)"
                    }
                )));
            }
        };

        // The switch. Not interruptible: the proxy finishes a swap it has started either way.
        let switched = if behind_proxy {
            progress.step(format!(
                "{role}: health check on {}",
                config.proxy.healthcheck.path
            ));
            proxy::deploy(docker, config, &service, &id, &self.prepared.proxy_env).await
        } else {
            progress.step(format!("{role}: waiting until {name} is ready"));
            self.interruptible(app::wait_ready(docker, &name, config.proxy.deploy_timeout))
                .await
        };
        if let Err(err) = switched {
            if err.is::<Interrupted>() {
                self.discard(docker, &name, &prepared).await;
                return Err(err);
            }
            if behind_proxy && !err.is::<proxy::Refused>() {
                // The exec itself failed (a lost connection): the proxy may have switched.
                return Err(err.context(format!(
                    "Lost contact with hoist-proxy on `{host}` while it switched `{service}` to \
                     `{name}`; the proxy finishes the switch (or keeps the previous version) on \
                     its own. `hoist versions` shows which version is live; the next deploy \
                     cleans up"
                )));
            }
            return Err(self.failed(docker, host, &slot, &prepared, err).await);
        }

        // After the switch: the new version serves; the old containers are stopped by the caller.
        Ok(Leftovers {
            stop: prepared
                .old
                .iter()
                .filter(|c| prepared.replaced.as_ref() != Some(&c.id))
                .map(|c| c.id.clone())
                .collect(),
            remove: prepared.replaced.iter().cloned().collect(),
        })
    }

    /// Clean up what an interrupted deploy left, free the new container's name, then create and
    /// start it; returns its id. Fills `state` as it goes, for [`Self::discard`].
    async fn prepare_switch(
        &self,
        server: &Server,
        slot: &Slot<'_>,
        survey: &Survey,
        progress: &HostProgress<'_>,
        state: &mut PreSwitch,
    ) -> Result<String> {
        let Slot {
            role,
            name,
            service,
            behind_proxy,
        } = *slot;
        let config = self.config;
        let docker = &server.docker;
        let containers = survey.containers.get(role).cloned().unwrap_or_default();
        if behind_proxy {
            state.live_id = match &survey.services {
                Some(services) => proxy::live_target(services, service),
                // The proxy was missing or stopped then; it runs now, maybe with routes restored
                // from its volume, so who owns the route is checked here instead.
                None => {
                    let services = self.interruptible(proxy::list(docker)).await?;
                    let ours =
                        naming::Owner::new(&config.service, role, config.destination.as_deref());
                    owner::check_route_owner(server, &services, service, &ours, &containers)
                        .await?;
                    proxy::live_target(&services, service)
                }
            };
        }
        let live_id = state.live_id.clone();
        let is_live = |id: &str| live_id.as_deref().is_some_and(|live| id.starts_with(live));
        // Running containers the proxy doesn't route to were left by an interrupted deploy.
        for container in containers.iter().filter(|c| c.running) {
            if behind_proxy && live_id.is_some() && !is_live(&container.id) {
                progress.step(format!(
                    "{role}: removing {} (left by an interrupted deploy)",
                    container.name
                ));
                self.interruptible(app::remove(docker, &container.id))
                    .await?;
            } else {
                state.old.push(container.clone());
            }
        }
        if let Some(existing) = containers.iter().find(|c| c.name == name) {
            if state.old.iter().any(|c| c.id == existing.id) {
                // Redeploying the live version: its name goes to the new container, and once
                // the new one serves, this copy of the same version is removed.
                app::rename_aside(docker, name).await?;
                state.replaced = Some(existing.id.clone());
            } else {
                // A stopped container of this version (rollback): start afresh from its image
                // with the current environment.
                self.interruptible(app::remove(docker, name)).await?;
            }
        }
        let env = self.prepared.env.get(role).cloned().unwrap_or_default();
        let body = app::definition(config, role, self.version, &server.host, &env)?;
        progress.step(format!("{role}: starting {name}"));
        self.interruptible(app::start_new(docker, name, body)).await
    }

    /// The report of a new container that failed its health check (or, without the proxy,
    /// stopped): the proxy's message with the probed URL, the container's last log lines, what
    /// keeps serving. The container is removed first.
    async fn failed(
        &self,
        docker: &bollard::Docker,
        host: &str,
        slot: &Slot<'_>,
        state: &PreSwitch,
        err: anyhow::Error,
    ) -> anyhow::Error {
        let config = self.config;
        let Slot {
            name, behind_proxy, ..
        } = *slot;
        let logs = app::last_logs(docker, name, app::LOG_LINES)
            .await
            .unwrap_or_else(|err| format!("(logs unavailable: {err:#})"));
        let removed = self.discard(docker, name, state).await;
        let still = match state.old.first() {
            Some(container) => format!("{} keeps serving", short(&container.version)),
            None => "nothing was serving before".to_string(),
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
            if behind_proxy {
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

    /// Remove a new container that never got traffic, unless it is what the proxy routes to,
    /// and give a live container renamed aside its name back. Returns whether nothing is left.
    async fn discard(&self, docker: &bollard::Docker, name: &str, state: &PreSwitch) -> bool {
        if let Ok(inspect) = docker.inspect_container(name, None).await {
            let id = inspect.id.unwrap_or_default();
            if state
                .live_id
                .as_deref()
                .is_some_and(|live| id.starts_with(live))
            {
                return true;
            }
        }
        if let Err(err) = app::remove(docker, name).await {
            tracing::warn!(container = name, error = %format!("{err:#}"), "could not remove the new container");
            return false;
        }
        if let Some(id) = &state.replaced
            && let Err(err) = app::rename(docker, id, name).await
        {
            tracing::warn!(container = name, error = %format!("{err:#}"), "could not restore the name of the live container");
            return false;
        }
        true
    }

    /// Retention on `server`; `stopping` are containers being stopped right now.
    async fn prune(&self, server: &Server, stopping: &[String]) -> Result<()> {
        for (role, hosts) in self.roles {
            if hosts.contains(&server.host) {
                let pruned = prune::prune(&server.docker, self.config, role, stopping)
                    .await
                    .with_context(|| {
                        format!("Failed to prune old versions on `{}`", server.host)
                    })?;
                if !pruned.containers.is_empty() {
                    tracing::info!(host = %server.host, containers = ?pruned.containers, images = ?pruned.images, "pruned");
                }
            }
        }
        Ok(())
    }
}

/// Where a role's new container goes on a host.
#[derive(Debug, Clone, Copy)]
struct Slot<'a> {
    role: &'a str,
    /// The new container's name.
    name: &'a str,
    /// The role's service in hoist-proxy.
    service: &'a str,
    behind_proxy: bool,
}

/// Containers to stop (the old version) and to remove (a replaced copy of the new version) once
/// the new version serves on a host: ids.
#[derive(Debug, Default)]
struct Leftovers {
    stop: Vec<String>,
    remove: Vec<String>,
}

/// What runs on one host before a release changes anything there.
#[derive(Debug)]
struct Survey {
    /// Role → its containers, newest first.
    containers: BTreeMap<String, Vec<app::AppContainer>>,
    /// The proxy's services, if it answered.
    services: Option<Vec<hoist_proxy::router::ServiceSummary>>,
}

/// What a role's switch found and changed on a host before the switch itself.
#[derive(Debug, Default)]
struct PreSwitch {
    /// The container id the proxy routed to (12 hex digits), if any.
    live_id: Option<String>,
    /// Running containers of the role, to stop once the new one serves.
    old: Vec<app::AppContainer>,
    /// The live container renamed aside for a redeploy of its own version (its id).
    replaced: Option<String>,
}

fn first_error(results: Vec<Result<()>>) -> Result<()> {
    results.into_iter().collect()
}
