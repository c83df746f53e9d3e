//! `hoist versions`: the versions each server keeps for each role, newest first, marking the
//! one the proxy routes to (or, for a role without the proxy, the running one). These are what
//! `hoist rollback VERSION` can return to. Below the table: whether the fleet is consistent (one
//! version live for every role on every host, and no release left pending), or what differs.

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::container;
use crate::deploy::state::{self, Phase, Record};
use crate::fleet::{self, Fleet};
use crate::naming;
use crate::printer::{self, Printer};
use crate::remote::Server;
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

/// What one host runs live, and its release record.
#[derive(Debug, Serialize)]
struct HostLive {
    host: String,
    /// Role → live version (`None`: nothing live).
    live: Vec<(String, Option<String>)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<Record>,
}

pub async fn run(config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    let app_hosts = fleet::app_hosts(config, hosts);
    let reporter = Reporter::new(*printer);
    let fleet = Fleet::connect(config, &app_hosts, &reporter, printer, "list the versions").await?;
    let scope = naming::scope(&config.service, config.destination.as_deref());
    let gathered =
        futures_util::future::join_all(fleet.servers.iter().map(|s| gather(config, s, &scope)))
            .await;
    fleet.close().await;
    let mut rows = Vec::new();
    let mut lives = Vec::new();
    for (server, result) in fleet.servers.iter().zip(gathered) {
        let (mut host_rows, live) =
            result.map_err(|err| err.context(format!("on `{}`", server.host)))?;
        rows.append(&mut host_rows);
        lives.push(live);
    }
    let problems = inconsistencies(&lives);
    if printer.json() {
        let json = serde_json::json!({
            "versions": rows,
            "hosts": lives,
            "consistent": problems.is_empty(),
            "problems": problems,
        });
        printer.data(format!("{}\n", serde_json::to_string_pretty(&json)?));
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
    if problems.is_empty() {
        let version = lives
            .iter()
            .flat_map(|host| host.live.iter().filter_map(|(_, v)| v.as_deref()))
            .next()
            .unwrap_or("nothing");
        printer.status(
            "Consistent",
            format!("{version} is live for every role on every host"),
        );
    } else {
        for problem in &problems {
            printer.warn(problem);
        }
    }
    Ok(())
}

async fn gather(
    config: &Config,
    server: &Server,
    scope: &str,
) -> Result<(Vec<VersionRow>, HostLive)> {
    let (roles, record) = tokio::join!(
        container::role_containers(config, server),
        state::read(&server.session, scope)
    );
    let mut rows = Vec::new();
    let mut live = Vec::new();
    for role in roles? {
        live.push((role.role.clone(), role.live_version().map(str::to_string)));
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
    Ok((
        rows,
        HostLive {
            host: server.host.clone(),
            live,
            release: record?,
        },
    ))
}

/// What keeps the fleet from being consistent: different live versions, roles with nothing
/// live, releases left pending.
fn inconsistencies(hosts: &[HostLive]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut versions: Vec<&str> = hosts
        .iter()
        .flat_map(|host| host.live.iter().filter_map(|(_, v)| v.as_deref()))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    if versions.len() > 1 {
        let runs: Vec<String> = hosts
            .iter()
            .flat_map(|host| {
                host.live.iter().map(move |(role, version)| {
                    format!(
                        "{role} on {}: {}",
                        host.host,
                        version.as_deref().unwrap_or("-")
                    )
                })
            })
            .collect();
        problems.push(format!(
            "the fleet runs {} versions: {}",
            versions.len(),
            runs.join(", ")
        ));
    }
    for host in hosts {
        for (role, version) in &host.live {
            if version.is_none() {
                problems.push(format!("nothing is live for {role} on {}", host.host));
            }
        }
        if let Some(record) = host.release.as_ref().filter(|r| r.phase == Phase::Pending) {
            problems.push(format!(
                "the {} did not finish on {}; the next `hoist deploy` or `hoist rollback` \
                 converges it",
                record.describe(),
                host.host
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, live: &[(&str, Option<&str>)], pending: bool) -> HostLive {
        HostLive {
            host: name.into(),
            live: live
                .iter()
                .map(|(role, v)| (role.to_string(), v.map(str::to_string)))
                .collect(),
            release: pending.then(|| Record::begin("v3", Some("v2"), "deploy", "alice")),
        }
    }

    #[test]
    fn one_version_everywhere_and_nothing_pending_is_consistent() {
        let hosts = [
            host("a", &[("web", Some("v2"))], false),
            host("c", &[("jobs", Some("v2"))], false),
        ];
        assert!(inconsistencies(&hosts).is_empty());
    }

    #[test]
    fn mixed_versions_missing_roles_and_pending_releases_are_each_named() {
        let hosts = [
            host("a", &[("web", Some("v3"))], false),
            host("b", &[("web", Some("v2"))], true),
            host("c", &[("jobs", None)], false),
        ];
        let problems = inconsistencies(&hosts);
        assert_eq!(problems.len(), 3, "{problems:?}");
        let named = |text: &str| problems.iter().any(|problem| problem.contains(text));
        assert!(named("2 versions") && named("web on b: v2"), "{problems:?}");
        assert!(named("nothing is live for jobs on c"), "{problems:?}");
        assert!(named("did not finish on b"), "{problems:?}");
    }
}
