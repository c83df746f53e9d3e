//! `hoist logs`: the app's logs from every host. Without `-f`, the live container of each role
//! (the proxy's target; for a role without the proxy, the running one) on every selected host:
//! the last lines of each, merged by Docker's timestamps. With `-f`, every running container of
//! the roles, followed as lines arrive, and containers that start meanwhile (a deploy's new
//! version) are picked up within a second. Each line is prefixed with its host, and its role
//! when there are several; `--grep` keeps the lines matching a regular expression.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use regex::Regex;

use crate::cli::LogsArgs;
use crate::config::Config;
use crate::container::{self, RoleContainers};
use crate::docker::{self, ExecStream, LogQuery};
use crate::fleet::{self, Fleet};
use crate::printer::Printer;
use crate::remote::Server;
use crate::report::hinted;
use crate::reporter::Reporter;

/// Lines per container without `-n`, `--since` or `--grep`.
const DEFAULT_LINES: usize = 100;

/// How often `-f` looks for containers that started.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// The last `lines` of one container's log on each of `servers` (`follow`: then what it
/// writes, until Ctrl-C), read side by side, each line prefixed with its host when `prefixed`:
/// `hoist proxy logs`, `hoist accessory logs`.
pub(super) async fn of_container(
    servers: &[&Server],
    container: &str,
    lines: usize,
    follow: bool,
    prefixed: bool,
) -> Result<()> {
    let reads = servers.iter().map(|server| async move {
        let prefix = prefixed.then(|| format!("[{}] ", server.host));
        let mut output = docker::PrefixedOutput::new(prefix);
        let query = LogQuery {
            tail: Some(lines),
            since: None,
            follow,
        };
        let read = docker::read_log(&server.docker, container, query, false, |stream, data| {
            output.write(stream, data)
        })
        .await;
        output.finish();
        read.with_context(|| format!("on `{}`", server.host))
    });
    for read in futures_util::future::join_all(reads).await {
        read?;
    }
    Ok(())
}

/// What to read and how to show it.
struct Query {
    tail: Option<usize>,
    since: Option<i64>,
    grep: Option<Regex>,
    container: Option<String>,
    roles: Vec<String>,
    /// Prefix lines with the role too.
    with_role: bool,
}

pub async fn run(
    args: &LogsArgs,
    config: &Config,
    hosts: &[String],
    roles: &[String],
    printer: &Printer,
) -> Result<()> {
    let grep = args
        .grep
        .as_deref()
        .map(|pattern| {
            Regex::new(pattern).map_err(|err| {
                hinted(
                    format!("`--grep {pattern}` is not a regular expression: {err}"),
                    "escape special characters, e.g. `--grep 'GET /up\\?x'`",
                )
            })
        })
        .transpose()?;
    let since = args
        .since
        .as_deref()
        .map(|text| since(text, SystemTime::now()))
        .transpose()?;
    let roles: Vec<String> = if roles.is_empty() {
        config.roles.keys().cloned().collect()
    } else {
        roles.to_vec()
    };
    let query = Arc::new(Query {
        tail: args
            .lines
            .or_else(|| (args.since.is_none() && args.grep.is_none()).then_some(DEFAULT_LINES)),
        since,
        grep,
        container: args.container.clone(),
        with_role: roles.len() > 1,
        roles,
    });
    let app_hosts = fleet::app_hosts(config, hosts);
    let reporter = Reporter::new(*printer);
    let fleet = Fleet::connect(config, &app_hosts, &reporter, printer, "read the logs").await?;
    let result = if args.follow {
        let followed = futures_util::future::join_all(
            fleet
                .servers
                .iter()
                .map(|server| follow(config, server, Arc::clone(&query))),
        )
        .await;
        followed
            .into_iter()
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
    } else {
        tail(config, &fleet, &query).await
    };
    fleet.close().await;
    result
}

/// One line read, with where it came from.
struct Line {
    /// Docker's RFC 3339 timestamp (sorts as text within one engine's precision).
    time: String,
    prefix: String,
    stream: ExecStream,
    text: String,
}

/// The last lines of every live container, merged by time, then printed.
async fn tail(config: &Config, fleet: &Fleet, query: &Query) -> Result<()> {
    let read = futures_util::future::join_all(
        fleet
            .servers
            .iter()
            .map(|server| host_lines(config, server, query)),
    )
    .await;
    let mut lines = Vec::new();
    let mut found = false;
    for (server, result) in fleet.servers.iter().zip(read) {
        let (host_found, host_lines) = result.with_context(|| format!("on `{}`", server.host))?;
        found |= host_found;
        lines.extend(host_lines);
    }
    if !found {
        return Err(hinted(
            match &query.container {
                Some(name) => format!("No container `{name}` of this app runs on these hosts"),
                None => "No live container of this app on these hosts".to_string(),
            },
            "`hoist versions` shows what runs where",
        ));
    }
    lines.sort_by(|a, b| a.time.cmp(&b.time));
    for line in lines {
        print(line.stream, &line.prefix, &line.time, &line.text);
    }
    Ok(())
}

/// The containers to read on `server`: with `--container`, that one if it is this app's; else
/// the live one of each selected role (`follow`: every running one).
fn chosen(roles: &[RoleContainers], query: &Query, follow: bool) -> Vec<(String, String)> {
    let mut chosen = Vec::new();
    for role in roles.iter().filter(|role| query.roles.contains(&role.role)) {
        for container in &role.containers {
            let wanted = match &query.container {
                Some(wanted) => container.name == *wanted || container.id.starts_with(wanted),
                None if follow => container.running,
                None => container.running && role.is_live(container),
            };
            if wanted {
                chosen.push((role.role.clone(), container.name.clone()));
            }
        }
    }
    chosen
}

fn prefix(server: &Server, role: &str, query: &Query) -> String {
    if query.with_role {
        format!("[{} {role}] ", server.host)
    } else {
        format!("[{}] ", server.host)
    }
}

async fn host_lines(config: &Config, server: &Server, query: &Query) -> Result<(bool, Vec<Line>)> {
    let roles = container::role_containers(config, server).await?;
    let containers = chosen(&roles, query, false);
    let mut lines = Vec::new();
    for (role, name) in &containers {
        let prefix = prefix(server, role, query);
        let log = LogQuery {
            tail: query.tail,
            since: query.since,
            follow: false,
        };
        docker::log_lines(&server.docker, name, log, |stream, line| {
            let (time, text) = split(line);
            if query.grep.as_ref().is_none_or(|grep| grep.is_match(text)) {
                lines.push(Line {
                    time: time.to_string(),
                    prefix: prefix.clone(),
                    stream,
                    text: text.to_string(),
                });
            }
        })
        .await?;
    }
    Ok((!containers.is_empty(), lines))
}

/// Follow `server`'s containers until Ctrl-C, adding those that start.
async fn follow(config: &Config, server: &Server, query: Arc<Query>) -> Result<()> {
    let mut followed: HashSet<String> = HashSet::new();
    let mut first = true;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let roles = container::role_containers(config, server)
            .await
            .with_context(|| format!("on `{}`", server.host))?;
        for (role, name) in chosen(&roles, &query, true) {
            if !followed.insert(name.clone()) {
                continue;
            }
            let log = LogQuery {
                // Those found at the start show their last lines; later ones all they print.
                tail: if first { query.tail } else { None },
                since: query.since,
                follow: true,
            };
            let docker = server.docker.clone();
            let prefix = prefix(server, &role, &query);
            let query = Arc::clone(&query);
            tasks.spawn(async move {
                let _ = docker::log_lines(&docker, &name, log, |stream, line| {
                    let (time, text) = split(line);
                    if query.grep.as_ref().is_none_or(|grep| grep.is_match(text)) {
                        print(stream, &prefix, time, text);
                    }
                })
                .await;
                name
            });
        }
        first = false;
        // A container whose log ended (it stopped) may be followed again if it restarts.
        while let Some(Ok(name)) = tasks.try_join_next() {
            followed.remove(&name);
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// `2026-…Z text` → (time, text).
fn split(line: &str) -> (&str, &str) {
    line.split_once(' ').unwrap_or(("", line))
}

fn print(stream: ExecStream, prefix: &str, time: &str, text: &str) {
    let line = format!("{prefix}{time} {text}\n");
    docker::write_output(stream, line.as_bytes());
}

/// `--since`: a duration ago (`10m`) or a time (RFC 3339), as Unix seconds.
fn since(text: &str, now: SystemTime) -> Result<i64> {
    let at = match crate::config::parse_duration(text) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(text).map_err(|_| {
            hinted(
                format!("`--since {text}` is neither a duration nor a time"),
                "give how long ago (`10m`, `2h`) or when (`2026-12-01T10:00:00Z`)",
            )
        })?,
    };
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_ago_or_a_time() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(since("10m", now).unwrap(), 1_000_000 - 600);
        assert_eq!(since("1970-01-02T00:00:00Z", now).unwrap(), 86_400);
        let bad = since("yesterday", now).unwrap_err();
        assert!(format!("{bad:#}").contains("neither a duration nor a time"));
    }

    #[test]
    fn a_line_splits_into_its_timestamp_and_text() {
        assert_eq!(
            split("2026-12-02T03:00:00.123Z GET /up 200"),
            ("2026-12-02T03:00:00.123Z", "GET /up 200")
        );
    }
}
