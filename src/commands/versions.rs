//! `hoist versions`: the versions each server keeps for each role, newest first, marking the
//! one the proxy routes to (or, for a role without the proxy, the running one). These are what
//! `hoist rollback VERSION` can return to.

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::deploy::{self, app, proxy};
use crate::naming;
use crate::printer::{self, Printer};
use crate::remote::{Connector, Server};
use crate::reporter::Reporter;

#[derive(Debug, Serialize)]
struct VersionRow {
    host: String,
    role: String,
    version: String,
    container: String,
    state: String,
    live: bool,
    created: String,
}

pub async fn run(config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    let app_hosts = deploy::app_hosts(config, hosts);
    let connector = Connector::from_config(config)?;
    let reporter = Reporter::new(*printer);
    let (servers, unreachable) = connector.connect_all(&app_hosts, &reporter).await?;
    let mut rows = Vec::new();
    let mut result = Ok(());
    for server in &servers {
        match rows_for(config, server).await {
            Ok(mut host_rows) => rows.append(&mut host_rows),
            Err(err) => {
                result = Err(err.context(format!("on `{}`", server.host)));
                break;
            }
        }
    }
    for server in &servers {
        server.session.close().await;
    }
    if let Some(failure) = unreachable.into_iter().next() {
        return Err(failure.error);
    }
    result?;
    if printer.json() {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&rows)?));
        return Ok(());
    }
    let mut table = vec![vec![
        "HOST".to_string(),
        "ROLE".to_string(),
        "VERSION".to_string(),
        "STATE".to_string(),
        "CREATED".to_string(),
    ]];
    for row in &rows {
        table.push(vec![
            row.host.clone(),
            row.role.clone(),
            if row.live {
                format!("{} (live)", row.version)
            } else {
                row.version.clone()
            },
            row.state.clone(),
            row.created.clone(),
        ]);
    }
    printer.data(printer::table(&table));
    Ok(())
}

async fn rows_for(config: &Config, server: &Server) -> Result<Vec<VersionRow>> {
    // No proxy (yet) means no role is live behind it.
    let services = proxy::list(&server.docker).await.unwrap_or_default();
    let mut rows = Vec::new();
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
        for container in containers {
            let created = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(container.created.max(0) as u64);
            rows.push(VersionRow {
                host: server.host.clone(),
                role: role.clone(),
                live: live
                    .as_deref()
                    .is_some_and(|live| container.id.starts_with(live)),
                version: container.version,
                container: container.name,
                state: container.state,
                created: humantime::format_rfc3339_seconds(created).to_string(),
            });
        }
    }
    Ok(rows)
}
