//! `hoist details [DEST]`: for every host, whether it is reachable, its Docker version, the
//! service's containers with their versions, and hoist-proxy's state; one table (or `--json`).
//! Exits 1 when any host is unreachable, after showing the others.

use std::collections::HashMap;

use anyhow::Result;
use bollard::Docker;
use serde::Serialize;

use crate::config::Config;
use crate::container::loadbalancer;
use crate::docker;
use crate::fleet::Fleet;
use crate::lock::{self, LockInfo};
use crate::naming::{
    self, LABEL_ACCESSORY, LABEL_DESTINATION, LABEL_ROLE, LABEL_SERVICE, LABEL_VERSION,
    PROXY_CONTAINER,
};
use crate::printer::{self, Printer};
use crate::remote::Server;
use crate::report::hinted;
use crate::reporter::Reporter;

#[derive(Debug, Serialize)]
struct HostDetails {
    host: String,
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    docker_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy: Option<ProxyDetails>,
    containers: Vec<ContainerDetails>,
    /// The deploy lock, when held.
    #[serde(skip_serializing_if = "Option::is_none")]
    lock: Option<LockInfo>,
    /// The backup agent's record of each backed-up accessory here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    backups: Vec<hoist_backup::manifest::Status>,
    /// On the load balancer: each web host as it sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    web_hosts: Option<Vec<loadbalancer::WebHost>>,
}

#[derive(Debug, Serialize)]
struct ProxyDetails {
    /// `running`, `exited`, … or `absent`.
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    /// Services the proxy routes (from `hoist-proxy list`), when it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    services: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
struct ContainerDetails {
    name: String,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accessory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

pub async fn run(config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    let reporter = Reporter::new(*printer);
    let (fleet, unreachable) = Fleet::connect_reachable(config, hosts, &reporter).await?;
    let servers = &fleet.servers;

    let mut details: Vec<HostDetails> = Vec::with_capacity(hosts.len());
    let gathered =
        futures_util::future::join_all(servers.iter().map(|server| gather(config, server))).await;
    details.extend(gathered);
    for failure in &unreachable {
        details.push(HostDetails {
            host: failure.host.clone(),
            reachable: false,
            error: Some(failure.summary.clone()),
            docker_version: None,
            proxy: None,
            containers: Vec::new(),
            lock: None,
            backups: Vec::new(),
            web_hosts: None,
        });
    }
    // Keep the configured host order.
    details.sort_by_key(|d| hosts.iter().position(|h| *h == d.host));
    fleet.close().await;

    if printer.json() {
        printer.data(format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({ "hosts": details }))?
        ));
    } else {
        printer.data(render(&details));
        for host in &details {
            if let Some(rows) = &host.web_hosts {
                printer.data(format!(
                    "\nLoad balancer {}\n{}",
                    host.host,
                    super::lb::render(rows)
                ));
            }
        }
    }

    match unreachable.len() {
        0 => Ok(()),
        1 => {
            let failure = unreachable.into_iter().next().map(|f| f.error);
            Err(failure.unwrap_or_else(|| anyhow::anyhow!("A host is unreachable")))
        }
        count => {
            for failure in &unreachable {
                printer.warn(format!("{}: {:#}", failure.host, failure.error));
            }
            Err(hinted(
                format!("{count} of {} hosts are unreachable", hosts.len()),
                "see the warnings above for each host",
            ))
        }
    }
}

async fn gather(config: &Config, server: &Server) -> HostDetails {
    let mut details = HostDetails {
        host: server.host.clone(),
        reachable: true,
        error: None,
        docker_version: None,
        proxy: None,
        containers: Vec::new(),
        lock: None,
        backups: Vec::new(),
        web_hosts: None,
    };
    let scope = naming::scope(&config.service, config.destination.as_deref());
    let (listed, proxy_state, lock_state, version) = tokio::join!(
        containers(config, &server.docker),
        proxy(&server.docker),
        lock::read(&server.session, &scope),
        server.docker_version()
    );
    details.docker_version = Some(version);
    match lock_state {
        Ok(lock) => details.lock = lock,
        Err(err) => details.error = Some(format!("reading the deploy lock: {err:#}")),
    }
    match listed {
        Ok(containers) => details.containers = containers,
        Err(err) => details.error = Some(format!("listing containers: {err:#}")),
    }
    match proxy_state {
        Ok(proxy) => details.proxy = Some(proxy),
        Err(err) => details.error = Some(format!("inspecting hoist-proxy: {err:#}")),
    }
    match backups(config, server).await {
        Ok(backups) => details.backups = backups,
        Err(err) => details.error = Some(format!("asking the backup agent: {err:#}")),
    }
    if config
        .loadbalancer
        .as_ref()
        .is_some_and(|lb| lb.host == server.host)
        && details.proxy.as_ref().is_some_and(|p| p.state == "running")
    {
        match loadbalancer::status(server, config).await {
            Ok(rows) => details.web_hosts = rows,
            Err(err) => details.error = Some(format!("reading the load balancer: {err:#}")),
        }
    }
    details
}

/// What the backup agent recorded, when this host runs a backed-up accessory.
async fn backups(config: &Config, server: &Server) -> Result<Vec<hoist_backup::manifest::Status>> {
    let backed_up = config
        .accessories
        .values()
        .any(|a| a.backup.is_some() && a.hosts.contains(&server.host));
    if !backed_up {
        return Ok(Vec::new());
    }
    let container = naming::backup_container(&config.service);
    let output = docker::exec(
        &server.docker,
        &container,
        &["hoist-backup", "status", "--json"],
    )
    .await
    .map_err(|err| {
        err.context(format!(
            "`{container}` is not running (`hoist backup boot` starts it)"
        ))
    })?;
    if output.exit_code != 0 {
        anyhow::bail!("`hoist-backup status` failed: {}", output.stderr.trim());
    }
    Ok(serde_json::from_str(output.stdout.trim())?)
}

async fn containers(config: &Config, docker: &Docker) -> Result<Vec<ContainerDetails>> {
    let mut labels = vec![format!("{LABEL_SERVICE}={}", config.service)];
    if let Some(destination) = &config.destination {
        labels.push(format!("{LABEL_DESTINATION}={destination}"));
    }
    let filters = HashMap::from([("label".to_string(), labels)]);
    let list = docker::list_containers(docker, &filters).await?;
    let mut containers: Vec<ContainerDetails> = list
        .into_iter()
        .map(|summary| {
            let labels = summary.labels.unwrap_or_default();
            ContainerDetails {
                name: summary
                    .names
                    .and_then(|names| names.into_iter().next())
                    .map(|name| name.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                state: summary
                    .state
                    .map(|state| state.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                role: labels.get(LABEL_ROLE).cloned(),
                accessory: labels.get(LABEL_ACCESSORY).cloned(),
                version: labels.get(LABEL_VERSION).cloned(),
            }
        })
        .collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(containers)
}

async fn proxy(docker: &Docker) -> Result<ProxyDetails> {
    let Some(container) = crate::container::proxy::inspect(docker).await? else {
        return Ok(ProxyDetails {
            state: "absent".into(),
            image: None,
            services: None,
        });
    };
    let state = container.state;
    let image = Some(container.image).filter(|image| !image.is_empty());
    let services = if state == "running" {
        let output = docker::exec(docker, PROXY_CONTAINER, &["hoist-proxy", "list"]).await?;
        Some(
            output
                .stdout
                .lines()
                .skip(1)
                .filter_map(|line| line.split_whitespace().next().map(str::to_string))
                .collect(),
        )
    } else {
        None
    };
    Ok(ProxyDetails {
        state,
        image,
        services,
    })
}

fn render(details: &[HostDetails]) -> String {
    let mut rows = vec![
        ["HOST", "STATUS", "DOCKER", "PROXY", "CONTAINERS", "LOCK"]
            .map(String::from)
            .to_vec(),
    ];
    for host in details {
        let status = if !host.reachable {
            format!(
                "unreachable: {}",
                host.error.as_deref().unwrap_or("unknown")
            )
        } else if let Some(error) = &host.error {
            format!("error: {error}")
        } else {
            "ok".into()
        };
        let proxy = host.proxy.as_ref().map_or(String::new(), |proxy| {
            let mut text = proxy.state.clone();
            if let Some(image) = &proxy.image {
                text.push_str(&format!(" ({image})"));
            }
            if let Some(services) = &proxy.services {
                text.push_str(&format!(
                    "\n{} service{}",
                    services.len(),
                    if services.len() == 1 { "" } else { "s" }
                ));
            }
            text
        });
        let containers = if host.containers.is_empty() && host.reachable {
            "none".to_string()
        } else {
            host.containers
                .iter()
                .map(|c| {
                    let what = match (&c.role, &c.accessory) {
                        (_, Some(accessory)) => format!("accessory {accessory}"),
                        (Some(role), None) => {
                            format!("{role} {}", c.version.as_deref().unwrap_or("(no version)"))
                        }
                        (None, None) => String::new(),
                    };
                    format!("{} [{}] {what}", c.name, c.state)
                        .trim_end()
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let lock = host.lock.as_ref().map_or(String::new(), |lock| {
            let mut text = format!("held by {}\nsince {}", lock.holder, lock.at);
            if let Some(message) = &lock.message {
                text.push_str(&format!("\n{message}"));
            }
            text
        });
        rows.push(vec![
            host.host.clone(),
            status,
            host.docker_version.clone().unwrap_or_default(),
            proxy,
            containers,
            lock,
        ]);
    }
    let mut out = printer::table(&rows);
    for host in details {
        for status in &host.backups {
            out.push_str(&format!(
                "backups of {} on {}: {}\n",
                status.accessory,
                host.host,
                super::backup::describe(status)
            ));
        }
    }
    out
}
