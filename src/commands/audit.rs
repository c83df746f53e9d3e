//! `hoist audit`: what hoist changed on the servers. Each host keeps its own log
//! (`~/.hoist/<scope>/audit.log`, `[time] [performer] message`); this reads the end of every
//! host's, merges the entries by time and prints the last N, each with its host.

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::fleet::{self, Fleet};
use crate::naming;
use crate::printer::Printer;
use crate::reporter::Reporter;
use crate::ssh::quote;

/// One audit line, split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Entry {
    /// RFC 3339, as written (sorts as text).
    time: String,
    host: String,
    performer: String,
    message: String,
}

pub async fn run(config: &Config, hosts: &[String], lines: usize, printer: &Printer) -> Result<()> {
    let app_hosts = fleet::app_hosts(config, hosts);
    let reporter = Reporter::new(*printer);
    let (fleet, unreachable) = Fleet::connect_reachable(config, &app_hosts, &reporter).await?;
    let scope = naming::scope(&config.service, config.destination.as_deref());
    let path = quote(&crate::audit::path(&scope))?;
    let command = format!("tail -n {lines} {path} 2>/dev/null || true");
    let read = futures_util::future::join_all(
        fleet
            .servers
            .iter()
            .map(|server| server.session.exec(&command)),
    )
    .await;
    fleet.close().await;
    let mut entries = Vec::new();
    for (server, output) in fleet.servers.iter().zip(read) {
        let output = output
            .map_err(|err| anyhow::Error::new(err).context(format!("on `{}`", server.host)))?;
        entries.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| parse(&server.host, line)),
        );
    }
    let entries = last(entries, lines);
    if printer.json() {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&entries)?));
    } else if entries.is_empty() {
        printer.status("Audit", "nothing recorded yet");
    } else {
        let mut text = String::new();
        for entry in &entries {
            text.push_str(&format!(
                "{}  {}  {}  {}\n",
                entry.time, entry.host, entry.performer, entry.message
            ));
        }
        printer.data(text);
    }
    if unreachable.is_empty() {
        return Ok(());
    }
    // What could be read is shown; the hosts that could not be reached make it fail.
    let total = app_hosts.len();
    Err(fleet::unreachable_error(unreachable, total, printer)
        .context("The audit logs of unreachable hosts are missing above"))
}

/// `[time] [performer] message` on `host`; `None` for a line of another shape.
fn parse(host: &str, line: &str) -> Option<Entry> {
    let rest = line.strip_prefix('[')?;
    let (time, rest) = rest.split_once("] [")?;
    let (performer, message) = rest.split_once("] ")?;
    Some(Entry {
        time: time.to_string(),
        host: host.to_string(),
        performer: performer.to_string(),
        message: message.to_string(),
    })
}

/// The last `count` entries of all hosts, oldest first (ties keep host order).
fn last(mut entries: Vec<Entry>, count: usize) -> Vec<Entry> {
    entries.sort_by(|a, b| a.time.cmp(&b.time));
    let skip = entries.len().saturating_sub(count);
    entries.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_every_host_merge_by_time() {
        let a = [
            "[2026-12-02T03:00:00Z] [ann] Deployed v1",
            "[2026-12-02T03:10:00Z] [ann] Deployed v2",
        ];
        let b = [
            "[2026-12-02T03:05:00Z] [bob] Maintenance mode for hello-web",
            "garbage",
        ];
        let entries: Vec<Entry> = a
            .iter()
            .filter_map(|line| parse("a", line))
            .chain(b.iter().filter_map(|line| parse("b", line)))
            .collect();
        assert_eq!(entries.len(), 3, "the line of another shape is skipped");
        let merged = last(entries, 2);
        assert_eq!(
            merged
                .iter()
                .map(|e| (e.host.as_str(), e.message.as_str()))
                .collect::<Vec<_>>(),
            [
                ("b", "Maintenance mode for hello-web"),
                ("a", "Deployed v2")
            ]
        );
        assert_eq!(merged[0].performer, "bob");
    }
}
