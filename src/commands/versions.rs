//! `hoist versions`: the versions each server keeps for each role, newest first, marking the
//! one the proxy routes to (or, for a role without the proxy, the running one). These are what
//! `hoist rollback VERSION` can return to.

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::container;
use crate::fleet;
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
    let app_hosts = fleet::app_hosts(config, hosts);
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
    let mut rows = Vec::new();
    for role in container::role_containers(config, server).await? {
        for container in &role.containers {
            let created = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(container.created.max(0) as u64);
            rows.push(VersionRow {
                host: server.host.clone(),
                role: role.role.clone(),
                live: role.is_live(container),
                version: container.version.clone(),
                container: container.name.clone(),
                state: container.state.clone(),
                created: humantime::format_rfc3339_seconds(created).to_string(),
            });
        }
    }
    Ok(rows)
}
