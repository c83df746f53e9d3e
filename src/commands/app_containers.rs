//! `hoist app stop|start|details`: the live version's containers on every app host. `stop`
//! first puts each proxied service into hoist-proxy's stopped state (visitors get the
//! maintenance page, 503, instead of a broken connection), then stops the role's running
//! containers. `start` starts each role's live container again (the proxy's target; for a role
//! without the proxy, the newest container of the version the host's release record names),
//! waits until it is ready, has the proxy health-check it as a deploy would, and resumes the
//! service. Both hold the deploy lock and write a line to each host's audit log. `details` lists
//! every container of each role with its version and state, the live one marked. `remove`
//! (confirmed, under the lock) takes every version off the app hosts with the routes, asset
//! volumes, images and release records, leaving accessories, the proxy and the audit log.

use anyhow::{Context, Result};

use crate::config::Config;
use crate::container::deploy_secrets::DeploySecrets;
use crate::container::{self, RoleContainers, app, proxy};
use crate::deploy::state;
use crate::fleet::{self, Fleet, Locked};
use crate::naming;
use crate::printer::{self, Printer};
use crate::remote::Server;
use crate::reporter::Reporter;
use crate::secrets::Secrets;
use crate::version;

/// Where to look when a host fails part way.
const HINT: &str = "`hoist app details` shows what runs where; `hoist app start` starts it again";

pub async fn stop(config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    on_app_hosts(config, hosts, "app stop", "stopped", printer, stop_host).await
}

/// `per_host` on every app host among `hosts` at once, under the deploy lock (`command` names
/// it), then `<service> <verb> on N hosts in T`.
async fn on_app_hosts(
    config: &Config,
    hosts: &[String],
    command: &str,
    verb: &str,
    printer: &Printer,
    per_host: impl AsyncFn(&Config, &Server, &str, &str, &Reporter) -> Result<()>,
) -> Result<()> {
    let app_hosts = fleet::app_hosts(config, hosts);
    let scope = naming::scope(&config.service, config.destination.as_deref());
    let performer = version::performer(&config.root);
    let locked = Locked::begin(config, &app_hosts, command, HINT, printer).await?;
    let results = futures_util::future::join_all(
        locked
            .servers()
            .iter()
            .map(|server| per_host(config, server, &scope, &performer, &locked.reporter)),
    )
    .await;
    let took = locked.finish(results, printer).await?;
    printer.status(
        "Finished",
        format!(
            "{} {verb} on {} in {:.1}s",
            config.service,
            printer::plural(app_hosts.len(), "host"),
            took.as_secs_f64()
        ),
    );
    Ok(())
}

pub async fn start(config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    // What the proxy's deploy needs from the secrets (an EAB key, a certificate): resolved first.
    let secrets = Secrets::for_config(config)?;
    let proxy_secrets = DeploySecrets::for_config(config, &secrets)?;
    let start = async |config: &Config,
                       server: &Server,
                       scope: &str,
                       performer: &str,
                       reporter: &Reporter| {
        start_host(config, server, scope, performer, &proxy_secrets, reporter).await
    };
    on_app_hosts(config, hosts, "app start", "started", printer, start).await
}

pub async fn remove(yes: bool, config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    let app_hosts = fleet::app_hosts(config, hosts);
    if !yes {
        let what = format!(
            "This removes every version of {} from {} ({}): containers, routes, asset volumes \
             and images (accessories and hoist-proxy stay).",
            config.service,
            printer::plural(app_hosts.len(), "host"),
            app_hosts.join(", ")
        );
        super::remove::confirm("hoist app remove", &what, &config.service)?;
    }
    on_app_hosts(config, hosts, "app remove", "removed", printer, remove_host).await
}

/// Every version of the app off one host, and its release record (nothing is deployed there).
async fn remove_host(
    config: &Config,
    server: &Server,
    scope: &str,
    performer: &str,
    reporter: &Reporter,
) -> Result<()> {
    let progress = reporter.host(&server.host);
    progress.step(format!("removing {}", config.service));
    let removed = container::teardown::remove_versions(&server.docker, config).await?;
    let record = crate::ssh::quote(&state::path(scope))?;
    server.session.exec(&format!("rm -f {record}")).await?;
    let message = format!("Removed app: {}", list(&removed.containers));
    crate::audit::record(&server.session, scope, performer, &message).await;
    progress.done(format!(
        "removed {} and {}",
        printer::plural(removed.containers.len(), "container"),
        printer::plural(removed.images, "image")
    ));
    Ok(())
}

/// Each proxied service stopped in the proxy, then every running container of each role.
async fn stop_host(
    config: &Config,
    server: &Server,
    scope: &str,
    performer: &str,
    reporter: &Reporter,
) -> Result<()> {
    let progress = reporter.host(&server.host);
    let roles = container::role_containers(config, server).await?;
    let mut stopped = Vec::new();
    for role in &roles {
        if role.containers.is_empty() {
            continue;
        }
        if config.roles[&role.role].proxy && role.live.is_some() {
            let service = service(config, &role.role);
            progress.step(format!("{service}: maintenance page"));
            let drain = format!(
                "--drain-timeout={}",
                crate::config::format_duration(config.proxy.drain_timeout)
            );
            proxy::control(&server.docker, &["stop", &service, &drain]).await?;
        }
        for running in role.containers.iter().filter(|c| c.running) {
            progress.step(format!("stopping {}", running.name));
            app::stop(&server.docker, &running.name).await?;
            stopped.push(running.name.clone());
        }
    }
    let message = format!("Stopped app: {}", list(&stopped));
    crate::audit::record(&server.session, scope, performer, &message).await;
    progress.done(format!("stopped {}", list(&stopped)));
    Ok(())
}

/// Each role's live container started, ready, health-checked by the proxy and resumed there.
async fn start_host(
    config: &Config,
    server: &Server,
    scope: &str,
    performer: &str,
    proxy_secrets: &DeploySecrets,
    reporter: &Reporter,
) -> Result<()> {
    let progress = reporter.host(&server.host);
    let roles = container::role_containers(config, server).await?;
    let record = state::read(&server.session, scope).await?;
    let mut started = Vec::new();
    for role in &roles {
        let Some(live) = live_container(role, record.as_ref().map(|r| r.version.as_str())) else {
            progress.step(format!("{}: nothing deployed", role.role));
            continue;
        };
        if !live.running {
            progress.step(format!("starting {}", live.name));
            app::start(&server.docker, &live.name).await?;
        }
        progress.step(format!("waiting for {} to be ready", live.name));
        let delay = config.roles[&role.role].container.readiness_delay;
        app::wait_ready(
            &server.docker,
            &live.name,
            delay,
            config.proxy.deploy_timeout,
        )
        .await?;
        if config.roles[&role.role].proxy {
            let service = service(config, &role.role);
            progress.step(format!("{service}: health check"));
            proxy::deploy(server, config, &service, &live.id, proxy_secrets)
                .await
                .with_context(|| format!("hoist-proxy did not take `{}` back", live.name))?;
            proxy::control(&server.docker, &["resume", &service]).await?;
        }
        started.push(format!("{} ({})", live.name, live.version));
    }
    let message = format!("Started app: {}", list(&started));
    crate::audit::record(&server.session, scope, performer, &message).await;
    progress.done(format!("started {}", list(&started)));
    Ok(())
}

/// The container `start` brings back: the proxy's target; for a role without the proxy, the
/// newest container of the version the release record names, else the newest.
fn live_container<'a>(
    role: &'a RoleContainers,
    recorded: Option<&str>,
) -> Option<&'a app::AppContainer> {
    if role.live.is_some() {
        return role.containers.iter().find(|c| role.is_live(c));
    }
    recorded
        .and_then(|version| role.containers.iter().find(|c| c.version == version))
        .or_else(|| role.containers.first())
}

fn service(config: &Config, role: &str) -> String {
    naming::role_scope(&config.service, role, config.destination.as_deref())
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}

/// Every container of each role on every host: version, state, and which is live.
pub async fn details(config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    let app_hosts = fleet::app_hosts(config, hosts);
    let reporter = Reporter::new(*printer);
    let fleet = Fleet::connect(config, &app_hosts, &reporter, printer, "list them").await?;
    let listed = futures_util::future::join_all(
        fleet
            .servers
            .iter()
            .map(|server| container::role_containers(config, server)),
    )
    .await;
    fleet.close().await;
    let mut rows = vec![
        ["HOST", "ROLE", "CONTAINER", "VERSION", "STATE", "LIVE"]
            .map(str::to_string)
            .to_vec(),
    ];
    for (server, roles) in fleet.servers.iter().zip(listed) {
        let roles = roles.with_context(|| format!("on `{}`", server.host))?;
        for role in &roles {
            for container in &role.containers {
                rows.push(vec![
                    server.host.clone(),
                    role.role.clone(),
                    container.name.clone(),
                    container.version.clone(),
                    container.state.clone(),
                    if role.is_live(container) { "yes" } else { "" }.to_string(),
                ]);
            }
        }
    }
    if rows.len() == 1 {
        printer.status("Details", "no container of the app on these hosts");
        return Ok(());
    }
    printer.data(printer::table(&rows));
    Ok(())
}
