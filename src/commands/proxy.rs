//! `hoist proxy boot|reboot|stop|start|remove|details|logs`: the `hoist-proxy` container on the hosts of the roles
//! that run behind it (narrowed by `--hosts`/`--roles`). This file picks the hosts, reports per
//! host and prints; what the container is, how it is created and replaced, lives in
//! container/proxy.rs and container/handover.rs. A reboot hands each host's ports and routes to
//! the new proxy without refusing a request; hosts go in batches, as a deploy's.

use std::time::Instant;

use anyhow::{Context, Result};
use bollard::auth::DockerCredentials;
use hoist_proxy::router::ServiceSummary;
use serde::Serialize;

use crate::cli::ProxyCommand;
use crate::config::Config;
use crate::container::deploy_secrets::DeploySecrets;
use crate::container::{self, handover, loadbalancer, proxy};
use crate::deploy;
use crate::docker;
use crate::fleet::{self, Fleet, Locked};
use crate::hooks::{Hook, Hooks};
use crate::lock::LockInfo;
use crate::naming::PROXY_CONTAINER;
use crate::printer::{self, Printer};
use crate::registry;
use crate::remote::Server;
use crate::report::{hinted, with_hint};
use crate::reporter::Reporter;
use crate::secrets::Secrets;
use crate::version;

/// The hint for a host whose proxy is missing or stopped.
const BOOT_HINT: &str = "start it with `hoist proxy boot`";

/// Where to look when a locked proxy command is quit mid-way.
const DETAILS_HINT: &str = "`hoist proxy details` shows each proxy";

pub async fn run(
    command: ProxyCommand,
    config: &Config,
    hosts: &[String],
    printer: &Printer,
) -> Result<()> {
    let hosts = proxy_hosts(config, hosts)?;
    match command {
        ProxyCommand::Boot | ProxyCommand::Start => boot(config, &hosts, printer).await,
        ProxyCommand::Stop => stop(config, &hosts, printer).await,
        ProxyCommand::Remove { force } => remove(config, &hosts, force, printer).await,
        ProxyCommand::Reboot => reboot(config, &hosts, printer).await,
        ProxyCommand::Details => details(config, &hosts, printer).await,
        ProxyCommand::Logs { lines, follow } => logs(config, &hosts, lines, follow, printer).await,
    }
}

/// `boot`: on every host at once, the `hoist` network and a running proxy (started if stopped,
/// created from `proxy.image` if missing).
async fn boot(config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    let started = Instant::now();
    let credentials = credentials(config)?;
    let reporter = Reporter::new(*printer);
    let fleet = Fleet::connect(config, hosts, &reporter, printer, "boot hoist-proxy").await?;
    let outcomes = futures_util::future::join_all(fleet.servers.iter().map(|server| {
        container::boot_proxy_reported(config, server, credentials.clone(), &reporter)
    }))
    .await;
    fleet.close().await;
    let results = outcomes
        .into_iter()
        .map(|outcome| outcome.map(|warning| warning.into_iter().for_each(|w| printer.warn(w))))
        .collect();
    first_error(results, printer)?;
    printer.status(
        "Finished",
        format!(
            "hoist-proxy runs on {} ({:.1}s)",
            printer::plural(hosts.len(), "host"),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// `stop`: under the deploy lock (no deploy may switch through a proxy going away), the proxy
/// on every host at once.
async fn stop(config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    let locked = Locked::begin(config, hosts, "proxy stop", DETAILS_HINT, printer).await?;
    let results = futures_util::future::join_all(locked.servers().into_iter().map(|server| {
        let progress = locked.reporter.host(&server.host);
        async move {
            progress.step("stopping hoist-proxy");
            let stopped = proxy::stop(&server.docker).await;
            match &stopped {
                Ok(()) => progress.done("hoist-proxy stopped"),
                Err(_) => progress.failed("hoist-proxy stop failed"),
            }
            stopped
        }
    }))
    .await;
    let took = locked.finish(results, printer).await?;
    printer.status(
        "Finished",
        format!(
            "stopped hoist-proxy on {} ({:.1}s); `hoist proxy start` starts it again",
            printer::plural(hosts.len(), "host"),
            took.as_secs_f64()
        ),
    );
    Ok(())
}

/// `remove`: under the deploy lock, hoist-proxy's containers and its state volume (routes,
/// certificates) on every host at once. A proxy that also routes another app's services is left
/// alone unless `force`: removing it would take that app offline too.
async fn remove(config: &Config, hosts: &[String], force: bool, printer: &Printer) -> Result<()> {
    let locked = Locked::begin(config, hosts, "proxy remove", DETAILS_HINT, printer).await?;
    let results = futures_util::future::join_all(locked.servers().into_iter().map(|server| {
        let progress = locked.reporter.host(&server.host);
        async move {
            match other_apps_services(config, server).await? {
                _ if force => {}
                Some(others) if others.is_empty() => {}
                Some(others) => {
                    progress.failed("another app routes through it");
                    return Err(hinted(
                        format!(
                            "hoist-proxy on `{}` also routes {}, not of this app",
                            server.host,
                            others.join(", ")
                        ),
                        "remove those apps first, or pass `--force` to take them offline too",
                    ));
                }
                None => {
                    progress.failed("hoist-proxy does not answer");
                    return Err(hinted(
                        format!(
                            "hoist-proxy on `{}` does not answer, so whom else it routes is unknown",
                            server.host
                        ),
                        "`hoist proxy start` and try again, or pass `--force` to remove it anyway",
                    ));
                }
            }
            progress.step("removing hoist-proxy");
            let removed = proxy::remove(&server.docker).await;
            match &removed {
                Ok(()) => progress.done("hoist-proxy removed, with its routes and certificates"),
                Err(_) => progress.failed("hoist-proxy remove failed"),
            }
            removed
        }
    }))
    .await;
    let took = locked.finish(results, printer).await?;
    printer.status(
        "Finished",
        format!(
            "removed hoist-proxy from {} ({:.1}s); `hoist proxy boot` creates it again",
            printer::plural(hosts.len(), "host"),
            took.as_secs_f64()
        ),
    );
    Ok(())
}

/// The services the proxy on `server` routes that are not this configuration's (its roles' and
/// its load balancer's): none when there is no proxy, `None` when one is there but does not
/// answer.
async fn other_apps_services(config: &Config, server: &Server) -> Result<Option<Vec<String>>> {
    let Ok(services) = proxy::list(&server.docker).await else {
        return Ok(proxy::inspect(&server.docker)
            .await?
            .is_none()
            .then(Vec::new));
    };
    let ours = container::proxy::service_names(config);
    Ok(Some(
        services
            .into_iter()
            .map(|service| service.name)
            .filter(|name| !ours.contains(name))
            .collect(),
    ))
}

/// `reboot`: under the deploy lock, `pre-proxy-reboot`, then in batches of `[boot] limit` hosts
/// (`wait` between them) a new proxy from `proxy.image` taking over from the running one, then
/// `post-proxy-reboot`.
async fn reboot(config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    let started = Instant::now();
    let credentials = credentials(config)?;
    let performer = version::performer(&config.root);
    let vars = deploy::hook_vars(config, &performer, "proxy", "reboot", &[]);
    let hooks = Hooks::for_config(config, *printer, vars, started);
    let lock_info = LockInfo::new(&performer, "proxy reboot", None)?;
    let web_hosts = loadbalancer::web_hosts(config);
    let lb_secrets = match &config.loadbalancer {
        Some(_) => DeploySecrets::for_config(config, &Secrets::for_config(config)?)?,
        None => DeploySecrets::default(),
    };

    let reporter = Reporter::new(*printer);
    let mut connect_to = fleet::with_primary(config, hosts);
    // Web hosts leave the load balancer's rotation while their proxy is replaced.
    let lb_host = config
        .loadbalancer
        .as_ref()
        .map(|lb| lb.host.clone())
        .filter(|_| hosts.iter().any(|host| web_hosts.contains(host)));
    if let Some(lb) = &lb_host
        && !connect_to.contains(lb)
    {
        connect_to.push(lb.clone());
    }
    let fleet = Fleet::connect(
        config,
        &connect_to,
        &reporter,
        printer,
        "reboot hoist-proxy",
    )
    .await?;
    let lb_server = lb_host.as_deref().and_then(|host| fleet.server(host));
    let held = fleet
        .lock_now(
            config,
            lock_info,
            printer,
            "`hoist proxy details` shows each proxy",
        )
        .await?;
    let interrupt = held.interrupt.clone();
    let proxy_servers = fleet.among(hosts);
    let result = async {
        hooks.run(Hook::PreProxyReboot, hosts)?;
        // Batched like a deploy (`[boot] limit` and `wait`): a handover refuses nothing, so a
        // batch is only a bound on how much changes at once.
        let size = deploy::batch_size(config.boot.limit, proxy_servers.len());
        printer.status(
            "Rebooting",
            format!(
                "hoist-proxy on {}, {} at a time: each new proxy takes over the running one's \
                 ports, routes and certificates without refusing a request",
                printer::plural(proxy_servers.len(), "host"),
                size
            ),
        );
        let hosts_in = |servers: &[&Server]| {
            list_or_none(&servers.iter().map(|s| s.host.as_str()).collect::<Vec<_>>())
        };
        let mut done = 0;
        for (number, batch) in proxy_servers.chunks(size).enumerate() {
            if number > 0 && !config.boot.wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(config.boot.wait) => {}
                    () = interrupt.cancelled() => {}
                }
            }
            if interrupt.is_cancelled() {
                return Err(hinted(
                    format!(
                        "Interrupted (Ctrl-C): hoist-proxy was rebooted on {} and not touched on \
                         {}",
                        hosts_in(&proxy_servers[..done]),
                        hosts_in(&proxy_servers[done..]),
                    ),
                    "reboot the others with `hoist proxy reboot --hosts …`",
                ));
            }
            let out: Vec<String> = batch
                .iter()
                .map(|server| server.host.clone())
                .filter(|host| web_hosts.contains(host))
                .collect();
            let balanced = match lb_server {
                Some(lb) if !out.is_empty() => {
                    rotate_lb(lb, config, &out, &lb_secrets, &reporter, true).await?
                }
                _ => false,
            };
            let results = futures_util::future::join_all(
                batch
                    .iter()
                    .map(|server| reboot_host(config, server, credentials.clone(), &reporter)),
            )
            .await;
            if let Some(lb) = lb_server.filter(|_| balanced) {
                rotate_lb(lb, config, &[], &lb_secrets, &reporter, false).await?;
            }
            let (mut rebooted, mut failed) = (proxy_servers[..done].to_vec(), Vec::new());
            let mut first = None;
            for (server, result) in batch.iter().zip(results) {
                match result {
                    Ok(()) => rebooted.push(*server),
                    Err(err) => {
                        failed.push(*server);
                        first.get_or_insert(err);
                    }
                }
            }
            done += batch.len();
            if let Some(err) = first {
                if proxy_servers.len() == 1 {
                    return Err(err);
                }
                return Err(with_hint(
                    err,
                    format!(
                        "hoist-proxy was rebooted on {}, failed on {} and not touched on {}; \
                         where it failed the old proxy keeps serving; `hoist proxy details` \
                         shows each one",
                        hosts_in(&rebooted),
                        hosts_in(&failed),
                        hosts_in(&proxy_servers[done..]),
                    ),
                ));
            }
        }
        hooks.run(Hook::PostProxyReboot, hosts)
    }
    .await;
    held.release(&fleet, printer).await;
    fleet.close().await;
    result?;
    printer.status(
        "Finished",
        format!(
            "rebooted hoist-proxy on {} in {:.1}s",
            printer::plural(proxy_servers.len(), "host"),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Take `out` out of the load balancer's rotation (`leaving`) or put every web host not
/// drained back; false when the LB routes nothing for this app yet.
async fn rotate_lb(
    lb: &Server,
    config: &Config,
    out: &[String],
    secrets: &DeploySecrets,
    reporter: &Reporter,
    leaving: bool,
) -> Result<bool> {
    let progress = reporter.host(&lb.host);
    progress.step(if leaving {
        format!("taking {} out of rotation", out.join(", "))
    } else {
        "putting the web hosts back in rotation".to_string()
    });
    match loadbalancer::sync_without(lb, config, out, secrets).await {
        Ok(balanced) => {
            progress.done(match (balanced, leaving) {
                (false, _) => "routes nothing for this app yet".to_string(),
                (true, true) => format!("{} out of rotation", out.join(", ")),
                (true, false) => "web hosts back in rotation".to_string(),
            });
            Ok(balanced)
        }
        Err(err) => {
            progress.failed("load balancer not updated");
            Err(with_hint(
                err,
                "`hoist lb details` shows which web hosts the load balancer sends to;                  `hoist lb undrain HOST` puts one back",
            ))
        }
    }
}

async fn reboot_host(
    config: &Config,
    server: &Server,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> Result<()> {
    let progress = reporter.host(&server.host);
    progress.step("replacing hoist-proxy");
    let replaced = async {
        let before = proxy::inspect(&server.docker).await?;
        docker::ensure_network(&server.docker).await?;
        let upgraded = handover::upgrade(&server.docker, config, credentials).await?;
        let after = proxy::inspect(&server.docker).await?;
        Ok::<_, anyhow::Error>((before, upgraded, after))
    }
    .await
    .with_context(|| format!("Failed to reboot hoist-proxy on `{}`", server.host));
    match replaced {
        Ok((before, upgraded, after)) => {
            progress.done(upgraded.describe(config, before, after));
            Ok(())
        }
        Err(err) => {
            progress.failed("hoist-proxy reboot failed");
            Err(err)
        }
    }
}

/// One host's proxy, as `details` shows it.
#[derive(Debug, Serialize)]
struct HostProxy {
    host: String,
    /// Docker's state (`running`, `exited`, …), `missing` or `unreachable`.
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    /// What `hoist-proxy list` reports, when the proxy runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    services: Option<Vec<ServiceSummary>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `details`: per host the container's state and image and the services it routes; exits 1 when
/// a proxy is missing, stopped or unreadable, or a host is unreachable, after showing the rest.
async fn details(config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    let reporter = Reporter::new(*printer);
    let (fleet, unreachable) = Fleet::connect_reachable(config, hosts, &reporter).await?;
    let mut rows = futures_util::future::join_all(fleet.servers.iter().map(gather)).await;
    fleet.close().await;
    for failure in &unreachable {
        rows.push(HostProxy {
            host: failure.host.clone(),
            state: "unreachable".into(),
            id: None,
            image: None,
            started_at: None,
            services: None,
            error: Some(failure.summary.clone()),
        });
    }
    rows.sort_by_key(|row| hosts.iter().position(|host| *host == row.host));

    if printer.json() {
        printer.data(format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({ "hosts": rows }))?
        ));
    } else {
        printer.data(render_proxies(&rows));
        if rows.iter().any(|row| row.services.is_some()) {
            printer.data(format!("\n{}", render_services(&rows)));
        }
    }
    if !unreachable.is_empty() {
        return Err(fleet::unreachable_error(unreachable, hosts.len(), printer));
    }
    match problem(&rows) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

async fn gather(server: &Server) -> HostProxy {
    let mut row = HostProxy {
        host: server.host.clone(),
        state: "missing".into(),
        id: None,
        image: None,
        started_at: None,
        services: None,
        error: None,
    };
    match proxy::inspect(&server.docker).await {
        Ok(Some(container)) => {
            row.state = container.state;
            row.id = Some(container.id);
            row.image = Some(container.image);
            row.started_at = container.started_at;
        }
        Ok(None) => return row,
        Err(err) => {
            row.state = "unknown".into();
            row.error = Some(format!("{err:#}"));
            return row;
        }
    }
    if row.state == "running" {
        match proxy::list(&server.docker).await {
            Ok(services) => row.services = Some(services),
            Err(err) => row.error = Some(format!("{err:#}")),
        }
    }
    row
}

/// The failure `details` ends with when some reachable host's proxy does not serve.
fn problem(rows: &[HostProxy]) -> Option<anyhow::Error> {
    let failing: Vec<&HostProxy> = rows
        .iter()
        .filter(|row| row.state != "unreachable")
        .filter(|row| row.state != "running" || row.error.is_some())
        .collect();
    match failing.as_slice() {
        [] => None,
        [row] => Some(match (&row.error, row.state.as_str()) {
            (Some(error), _) => hinted(
                format!("Can't read hoist-proxy on `{}`: {error}", row.host),
                "`hoist proxy logs` shows what it says; `hoist proxy reboot` replaces it",
            ),
            (None, "missing") => hinted(
                format!("hoist-proxy is missing on `{}`", row.host),
                BOOT_HINT,
            ),
            (None, state) => hinted(
                format!("hoist-proxy is not running on `{}` ({state})", row.host),
                BOOT_HINT,
            ),
        }),
        rows => {
            let each: Vec<String> = rows
                .iter()
                .map(|row| match &row.error {
                    Some(_) => format!("`{}` (unreadable)", row.host),
                    None => format!("`{}` ({})", row.host, row.state),
                })
                .collect();
            Some(hinted(
                format!("hoist-proxy does not serve on {}", each.join(", ")),
                format!("{BOOT_HINT}; the table above has the details"),
            ))
        }
    }
}

fn render_proxies(rows: &[HostProxy]) -> String {
    let mut table = vec![
        ["HOST", "STATE", "IMAGE", "CONTAINER", "STARTED"]
            .map(String::from)
            .to_vec(),
    ];
    for row in rows {
        let mut state = row.state.clone();
        if let Some(error) = &row.error {
            state.push_str(&format!(": {error}"));
        } else if row.state == "missing" {
            state.push_str(" (`hoist proxy boot`)");
        }
        table.push(vec![
            row.host.clone(),
            state,
            row.image.clone().unwrap_or_default(),
            row.id.clone().unwrap_or_default(),
            row.started_at
                .as_deref()
                .map(whole_seconds)
                .unwrap_or_default(),
        ]);
    }
    printer::table(&table)
}

/// `2026-01-02T03:04:05.123456789Z` as `2026-01-02T03:04:05Z`.
fn whole_seconds(time: &str) -> String {
    match time.split_once('.') {
        Some((seconds, fraction)) if fraction.ends_with('Z') => format!("{seconds}Z"),
        Some((seconds, _)) => seconds.to_string(),
        None => time.to_string(),
    }
}

/// The routes of every running proxy, `hoist-proxy list`'s columns with the host first.
fn render_services(rows: &[HostProxy]) -> String {
    let mut table = vec![
        [
            "HOST",
            "SERVICE",
            "HOST NAMES",
            "PATHS",
            "TARGETS",
            "STATE",
            "TLS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for row in rows {
        let Some(services) = &row.services else {
            continue;
        };
        if services.is_empty() {
            table.push(vec![row.host.clone(), "(none)".to_string()]);
        }
        for service in services {
            table.push(vec![
                row.host.clone(),
                service.name.clone(),
                if service.hosts.is_empty() {
                    "*".to_string()
                } else {
                    service.hosts.join(",")
                },
                service.paths.join(","),
                service.targets.join("\n"),
                service.state.clone(),
                if service.tls { "yes" } else { "no" }.to_string(),
            ]);
        }
    }
    printer::table(&table)
}

/// `logs`: the last `lines` lines of each host's proxy, stdout and stderr as they were, each line
/// prefixed with `[host]` when there are several hosts.
async fn logs(
    config: &Config,
    hosts: &[String],
    lines: usize,
    follow: bool,
    printer: &Printer,
) -> Result<()> {
    let reporter = Reporter::new(*printer);
    let (fleet, unreachable) = Fleet::connect_reachable(config, hosts, &reporter).await?;
    let mut results = Vec::new();
    let mut running = Vec::new();
    for server in &fleet.servers {
        match proxy::inspect(&server.docker).await {
            Ok(Some(_)) => running.push(server),
            Ok(None) => results.push(Err(hinted(
                format!("hoist-proxy is missing on `{}`", server.host),
                BOOT_HINT,
            ))),
            Err(err) => results.push(Err(err)),
        }
    }
    // With several hosts each line says where it comes from, even if some have no proxy.
    let prefixed = hosts.len() > 1;
    results
        .push(super::logs::of_container(&running, PROXY_CONTAINER, lines, follow, prefixed).await);
    fleet.close().await;
    if !unreachable.is_empty() {
        for result in results.into_iter().filter_map(Result::err) {
            printer.warn(format!("{result:#}"));
        }
        return Err(fleet::unreachable_error(unreachable, hosts.len(), printer));
    }
    first_error(results, printer)
}

/// The hosts among `hosts` where a role runs behind the proxy; none is an error.
fn proxy_hosts(config: &Config, hosts: &[String]) -> Result<Vec<String>> {
    let selected = loadbalancer::proxy_hosts(config, hosts);
    if selected.is_empty() {
        return Err(hinted(
            "No role behind hoist-proxy runs on the selected hosts",
            "a role runs behind the proxy with `proxy = true` in `[servers.<role>]` (the `web` \
             role does by default); check `--hosts` and `--roles`",
        ));
    }
    Ok(selected)
}

/// Registry credentials for `proxy.image`, resolved before any server is touched.
fn credentials(config: &Config) -> Result<Option<DockerCredentials>> {
    let secrets = Secrets::for_config(config)?;
    registry::credentials_for(config, &secrets, &config.proxy.image)
}

/// The first error of `results`; the others become warnings.
fn first_error(results: Vec<Result<()>>, printer: &Printer) -> Result<()> {
    let mut errors = results.into_iter().filter_map(Result::err);
    let first = errors.next();
    for other in errors {
        printer.warn(format!("{other:#}"));
    }
    first.map_or(Ok(()), Err)
}

fn list_or_none(hosts: &[&str]) -> String {
    if hosts.is_empty() {
        "none".to_string()
    } else {
        hosts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, state: &str, error: Option<&str>) -> HostProxy {
        HostProxy {
            host: host.into(),
            state: state.into(),
            id: None,
            image: None,
            started_at: None,
            services: (state == "running").then(Vec::new),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn details_fails_on_a_missing_or_stopped_proxy_but_not_on_unreachable_rows() {
        assert!(problem(&[row("a", "running", None), row("b", "unreachable", None)]).is_none());

        let missing = problem(&[row("a", "running", None), row("b", "missing", None)]);
        let report = crate::report::render(&missing.expect("a problem"));
        assert_eq!(
            report,
            "error: hoist-proxy is missing on `b`\n\nhint: start it with `hoist proxy boot`\n"
        );

        let several = problem(&[row("a", "exited", None), row("b", "running", Some("boom"))]);
        let report = crate::report::render(&several.expect("a problem"));
        assert!(
            report
                .starts_with("error: hoist-proxy does not serve on `a` (exited), `b` (unreadable)"),
            "{report}"
        );
    }

    #[test]
    fn start_times_drop_their_fraction_of_a_second() {
        assert_eq!(
            whole_seconds("2026-01-02T03:04:05.123456789Z"),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            whole_seconds("2026-01-02T03:04:05Z"),
            "2026-01-02T03:04:05Z"
        );
    }

    #[test]
    fn routes_table_puts_the_host_first_and_marks_a_proxy_without_routes() {
        let mut serving = row("a", "running", None);
        serving.services = Some(vec![ServiceSummary {
            name: "hello-web".into(),
            hosts: vec![],
            paths: vec!["/".into()],
            targets: vec!["0123456789ab:3000".into()],
            read_targets: vec![],
            state: "running".into(),
            tls: false,
            rollout_targets: vec![],
            unhealthy_targets: vec![],
        }]);
        let table = render_services(&[serving, row("b", "running", None)]);
        assert_eq!(
            table,
            "HOST  SERVICE    HOST NAMES  PATHS  TARGETS            STATE    TLS\n\
             a     hello-web  *           /      0123456789ab:3000  running  no\n\
             b     (none)\n"
        );
    }
}
