//! `hoist setup`: from fresh Debian/Ubuntu servers to a live app in one command, and a quick
//! check that changes nothing on servers that are already right. The sequence:
//!
//! 1. Every secret the configuration names, the registry credentials and the version resolve
//!    (nothing touched yet).
//! 2. SSH to every host; one script per host reports what is there ([`facts`]); [`plan`] decides
//!    the changes. A host that needs changes it can't get (another system, no root rights) stops
//!    setup here, and so does a host whose package mirror is unreachable (`apt-get update`,
//!    before anything is installed): nothing is changed anywhere.
//! 3. On every host at once: install Docker, start it, add a non-root SSH user to the `docker`
//!    group (and log in again so the session has it), enable the firewall if `[setup]` asks.
//! 4. The `docker-setup` hook; then, over Docker: the `hoist` network, hoist-proxy on the hosts
//!    of proxied roles, and the accessories (booted if missing, started if stopped).
//! 5. Deploy, unless the version to deploy is already live on every app host.

pub mod facts;
pub mod plan;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use futures_util::future::join_all;

use crate::config::Config;
use crate::container::{self, accessory};
use crate::deploy;
use crate::docker;
use crate::fleet::{self, Fleet};
use crate::hooks::{Hook, Hooks};
use crate::printer::{Printer, plural};
use crate::registry;
use crate::remote::{Connector, Server};
use crate::report::hinted;
use crate::reporter::Reporter;
use crate::secrets::Secrets;
use crate::ssh::Session;
use crate::version;

use facts::Facts;
use plan::Step;

/// One host's state and what it needs.
struct HostPlan {
    session: Arc<Session>,
    facts: Facts,
    steps: Vec<Step>,
}

impl HostPlan {
    fn host(&self) -> &str {
        self.session.host()
    }

    fn sudo(&self) -> &'static str {
        self.facts.privilege.prefix().unwrap_or("")
    }
}

pub async fn run(
    options: deploy::Options,
    config: &Config,
    hosts: &[String],
    printer: &Printer,
) -> Result<()> {
    let started = Instant::now();
    // 1. What can fail without touching a server.
    let secrets = Secrets::for_config(config)?;
    for reference in config.secret_refs() {
        // A missing secret or a failing `$(command)` stops setup before Docker is installed.
        secrets.resolve(reference)?;
    }
    let proxy_credentials = registry::credentials_for(config, &secrets, &config.proxy.image)?;
    let version = version::resolve(
        &config.root,
        options.version.as_deref(),
        options.allow_dirty,
    )?;
    version::check(&version)?;

    // 2. Look, decide, check the mirror.
    let reporter = Reporter::new(*printer);
    let connector = Connector::from_config(config)?;
    let (sessions, unreachable) = connector.sessions(hosts, &reporter).await?;
    if let Some(failure) = unreachable.into_iter().next() {
        close(&sessions).await;
        return Err(failure.error.context(format!(
            "Can't set up while `{}` is unreachable; nothing was changed",
            failure.host
        )));
    }
    let plans = match survey(config, sessions.clone(), printer).await {
        Ok(plans) => plans,
        Err(err) => {
            close(&sessions).await;
            return Err(err);
        }
    };
    let changing: Vec<&HostPlan> = plans.iter().filter(|plan| !plan.steps.is_empty()).collect();
    let bootstrap = if changing.is_empty() {
        printer.status(
            "Checked",
            format!(
                "{}: Docker runs{}, nothing to change",
                plural(plans.len(), "server"),
                if config.setup.firewall {
                    " and the firewall is on"
                } else {
                    ""
                }
            ),
        );
        Ok(())
    } else {
        change(&changing, &reporter).await
    };
    let needs_new_login: Vec<String> = plans
        .iter()
        .filter(|plan| {
            plan.steps
                .iter()
                .any(|step| matches!(step, Step::JoinDockerGroup(_)))
        })
        .map(|plan| plan.host().to_string())
        .collect();
    close(&sessions).await;
    bootstrap?;
    if !needs_new_login.is_empty() {
        printer.detail(format!(
            "logging in again on {} to use the docker group",
            needs_new_login.join(", ")
        ));
    }
    let bootstrapped = started.elapsed();

    // 3. The docker-setup hook, then what runs in Docker.
    let mut hooks = Hooks::for_config(
        config,
        *printer,
        deploy::hook_vars(
            config,
            &version::performer(&config.root),
            "setup",
            "",
            &options.roles,
        ),
        started,
    );
    hooks.set("HOIST_VERSION", &version);
    hooks.run(Hook::DockerSetup, hosts)?;
    let (fleet, unreachable) = Fleet::connect_reachable(config, hosts, &reporter).await?;
    let servers = &fleet.servers;
    let result = async {
        if let Some(failure) = unreachable.into_iter().next() {
            return Err(failure.error.context(format!(
                "Docker is set up, but `{}` can't be reached over Docker",
                failure.host
            )));
        }
        boot_proxies(config, servers, proxy_credentials, &reporter, printer).await?;
        accessory::ensure_all(config, &secrets, servers, &reporter).await?;
        for agent in crate::container::backup::plan_all(config, &secrets)? {
            if let Some(server) = servers.iter().find(|s| s.host == agent.host) {
                agent.ensure(server, &reporter).await?;
            }
        }
        live_everywhere(config, hosts, servers, &version).await
    }
    .await;
    fleet.close().await;
    let live = result?;
    printer.detail(format!(
        "servers ready in {:.1}s",
        bootstrapped.as_secs_f64()
    ));

    // 4. The app.
    if live {
        printer.status(
            "Live",
            format!(
                "{} {} already runs on every app host; nothing to deploy (setup took {:.1}s)",
                config.service,
                short(&version),
                started.elapsed().as_secs_f64()
            ),
        );
        return Ok(());
    }
    deploy::run(config, hosts, options, printer).await?;
    printer.status(
        "Set up",
        format!(
            "{} in {:.1}s",
            plural(hosts.len(), "server"),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Facts and plans of every host; refuses (nothing changed) if any host can't be set up or
/// can't reach its package mirror.
async fn survey(
    config: &Config,
    sessions: Vec<Arc<Session>>,
    printer: &Printer,
) -> Result<Vec<HostPlan>> {
    let found = join_all(sessions.into_iter().map(|session| async move {
        let output = session
            .exec(facts::SCRIPT)
            .await
            .map_err(anyhow::Error::new)
            .with_context(|| format!("Failed to inspect `{}`", session.host()))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let facts = facts::parse(&text).map_err(|why| {
            anyhow!(
                "Can't tell what `{}` runs: {why}; its shell said: {}",
                session.host(),
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
        anyhow::Ok((session, facts))
    }))
    .await;
    let mut plans = Vec::new();
    let mut refusals = Vec::new();
    for result in found {
        let (session, facts) = result?;
        printer.status("Found", format!("{}: {}", session.host(), facts.summary()));
        match plan::plan(&facts, &config.setup, config.ssh.port) {
            Ok(steps) => plans.push(HostPlan {
                session,
                facts,
                steps,
            }),
            Err(refusal) => refusals.push((session.host().to_string(), refusal)),
        }
    }
    if let Some((host, refusal)) = refusals.first() {
        let others: Vec<&str> = refusals[1..].iter().map(|(h, _)| h.as_str()).collect();
        return Err(hinted(
            format!(
                "Can't set up `{host}`: {}{}; nothing was changed on any server",
                refusal.message,
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" (nor can {})", others.join(", "))
                }
            ),
            refusal.hint.clone(),
        ));
    }
    // The mirror answers wherever something is to be installed.
    let checks = join_all(
        plans
            .iter()
            .filter(|plan| plan.steps.iter().any(Step::installs))
            .map(|plan| async move {
                let command = format!(
                    "{}env DEBIAN_FRONTEND=noninteractive apt-get update -q",
                    plan.sudo()
                );
                (plan.host(), run_script(&plan.session, &command).await)
            }),
    )
    .await;
    for (host, result) in checks {
        if let Err(err) = result {
            return Err(hinted(
                format!(
                    "`{host}` can't reach its package mirror (apt-get update failed: {err:#}); \
                     nothing was changed on any server"
                ),
                "check the server's network, DNS and /etc/apt/sources.list, then run \
                 `hoist setup` again",
            ));
        }
    }
    Ok(plans)
}

/// Every host's steps, hosts in parallel.
async fn change(plans: &[&HostPlan], reporter: &Reporter) -> Result<()> {
    let results = join_all(plans.iter().map(|plan| async move {
        let progress = reporter.host(plan.host());
        let started = Instant::now();
        for step in &plan.steps {
            progress.step(format!("{}…", step.describe()));
            let script = step.script(plan.sudo(), &plan.facts.codename, &plan.facts.os_id);
            if let Err(err) = run_script(&plan.session, &script).await {
                progress.failed(format!("failed to {}", step.describe()));
                return Err(err.context(format!(
                    "Failed to {} on `{}`",
                    step.describe(),
                    plan.host()
                )));
            }
        }
        let done: Vec<String> = plan.steps.iter().map(Step::describe).collect();
        progress.done(format!(
            "{} ({:.1}s)",
            done.join(", "),
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }))
    .await;
    results.into_iter().collect()
}

/// Runs `script` with sh; a non-zero exit is an error carrying the last lines of its output.
async fn run_script(session: &Session, script: &str) -> Result<()> {
    let output = session.exec(script).await.map_err(anyhow::Error::new)?;
    if output.status == Some(0) {
        return Ok(());
    }
    let text = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
    let text = String::from_utf8_lossy(&text);
    let tail: Vec<&str> = text.lines().rev().take(8).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(anyhow!(
        "exit status {}: {}",
        output
            .status
            .map_or_else(|| "unknown".to_string(), |s| s.to_string()),
        tail.join("\n")
    ))
}

/// The `hoist` network everywhere, and hoist-proxy on the hosts of proxied roles, as `hoist proxy
/// boot` does it.
async fn boot_proxies(
    config: &Config,
    servers: &[Server],
    credentials: Option<bollard::auth::DockerCredentials>,
    reporter: &Reporter,
    printer: &Printer,
) -> Result<()> {
    let all: Vec<String> = servers.iter().map(|server| server.host.clone()).collect();
    let proxied = container::loadbalancer::proxy_hosts(config, &all);
    let results = join_all(servers.iter().map(|server| {
        let credentials = credentials.clone();
        let proxied = proxied.contains(&server.host);
        async move {
            if proxied {
                container::boot_proxy_reported(config, server, credentials, reporter).await
            } else {
                docker::ensure_network(&server.docker).await.map(|()| None)
            }
        }
    }))
    .await;
    for warning in results
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
    {
        printer.warn(warning);
    }
    Ok(())
}

/// Whether `version` is the live, running version of every role on every app host.
async fn live_everywhere(
    config: &Config,
    hosts: &[String],
    servers: &[Server],
    version: &str,
) -> Result<bool> {
    let app_hosts = fleet::app_hosts(config, hosts);
    for server in servers.iter().filter(|s| app_hosts.contains(&s.host)) {
        for role in container::role_containers(config, server).await? {
            if role.live_version() != Some(version) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

async fn close(sessions: &[Arc<Session>]) {
    for session in sessions {
        session.close().await;
    }
}

fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}
