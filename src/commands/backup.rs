//! `hoist backup boot|now|list|restore|verify`: backups of accessories, taken and put back on
//! their servers by the `hoist-backup-<service>` agent (container/backup.rs), which hoist makes
//! current first and then drives with `docker exec`. Nothing of a backup passes through this
//! machine: only the agent's progress lines, its answers (JSON for `list`) and its errors,
//! which are shown as hoist's own.

use std::io::IsTerminal;

use anyhow::{Result, bail};
use hoist_backup::manifest::{Listed, Status, human_size};

use crate::cli::BackupCommand;
use crate::config::Config;
use crate::container::backup::{Agent, plan_all};
use crate::docker::{self, ExecStream};
use crate::fleet::Fleet;
use crate::printer::{Printer, table};
use crate::remote::Server;
use crate::report::{hinted, with_hint};
use crate::reporter::Reporter;
use crate::secrets::Secrets;

pub async fn run(
    command: BackupCommand,
    config: &Config,
    hosts: &[String],
    printer: &Printer,
) -> Result<()> {
    let backed_up: Vec<&String> = config
        .accessories
        .iter()
        .filter(|(_, accessory)| accessory.backup.is_some())
        .map(|(name, _)| name)
        .collect();
    if backed_up.is_empty() {
        return Err(hinted(
            "No accessory has backups configured",
            "add `[accessories.NAME.backup]` (and the bucket in `[backup]`) to deploy.toml; see the README's Backups section",
        ));
    }
    let names: Vec<String> = match command.name() {
        Some(name) => {
            let Some(accessory) = config.accessories.get(name) else {
                return Err(hinted(
                    format!("No accessory named `{name}` in the configuration"),
                    format!("backed up: {}", quoted(&backed_up)),
                ));
            };
            if accessory.backup.is_none() {
                return Err(hinted(
                    format!("Accessory `{name}` has no backups configured"),
                    format!("add `[accessories.{name}.backup]` to deploy.toml"),
                ));
            }
            vec![name.to_string()]
        }
        None if command.needs_name() => {
            return Err(hinted(
                "Name the accessory to restore",
                format!("backed up: {}", quoted(&backed_up)),
            ));
        }
        None => backed_up.iter().map(|n| n.to_string()).collect(),
    };
    if let BackupCommand::Restore { yes, .. } = &command {
        confirm_restore(&names[0], *yes)?;
    }
    // Secrets first: a missing one stops before any server is touched.
    let secrets = Secrets::for_config(config)?;
    let agents: Vec<Agent> = plan_all(config, &secrets)?
        .into_iter()
        .filter(|agent| hosts.contains(&agent.host))
        .filter(|agent| names.iter().any(|name| agent.backs_up(name)))
        .collect();
    if agents.is_empty() {
        bail!("None of the selected hosts runs a backed-up accessory");
    }
    let reporter = Reporter::new(*printer);
    let agent_hosts: Vec<String> = agents.iter().map(|a| a.host.clone()).collect();
    let fleet = Fleet::connect(config, &agent_hosts, &reporter, printer, "run this").await?;
    let result = async {
        for agent in &agents {
            let server = fleet.among(std::slice::from_ref(&agent.host));
            let Some(server) = server.first() else {
                continue;
            };
            agent.ensure(server, &reporter).await?;
        }
        if let BackupCommand::Boot = command {
            return Ok(());
        }
        // Each accessory in turn; one failing doesn't stop the others, and the first failure
        // is the command's error.
        let mut failed: Option<anyhow::Error> = None;
        for name in &names {
            let Some(agent) = agents.iter().find(|a| a.backs_up(name)) else {
                continue;
            };
            let servers = fleet.among(std::slice::from_ref(&agent.host));
            let Some(server) = servers.first() else {
                continue;
            };
            if let Err(err) = one(&command, name, agent, server, config, printer).await {
                if names.len() > 1 {
                    printer.warn(format!("{name}: {err:#}"));
                }
                failed.get_or_insert(err);
            }
        }
        failed.map_or(Ok(()), Err)
    }
    .await;
    fleet.close().await;
    result
}

fn quoted(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A restore replaces data: said yes to, or typed.
fn confirm_restore(name: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(hinted(
            format!("Restoring replaces the data of accessory `{name}`"),
            "pass --yes to confirm",
        ));
    }
    eprint!("Restoring replaces the current data of `{name}`. Type `{name}` to go on: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != name {
        bail!("Not restoring `{name}`: the answer did not match");
    }
    Ok(())
}

async fn one(
    command: &BackupCommand,
    name: &str,
    agent: &Agent,
    server: &Server,
    config: &Config,
    printer: &Printer,
) -> Result<()> {
    match command {
        BackupCommand::Boot => Ok(()),
        BackupCommand::Now { .. } => {
            let id = relay(server, agent, &["now", name], "Backing up", printer).await?;
            printer.status(
                "Finished",
                format!("backup {} of {name} on {}", id.trim(), server.host),
            );
            Ok(())
        }
        BackupCommand::Verify { id, .. } => {
            let mut args = vec!["verify", name];
            args.extend(id.as_deref());
            let detail = relay(server, agent, &args, "Verifying", printer).await?;
            printer.status("Verified", format!("{name}: {}", detail.trim()));
            Ok(())
        }
        BackupCommand::Restore {
            id,
            at,
            maintenance,
            ..
        } => {
            let mut args = vec!["restore".to_string(), name.to_string()];
            args.extend(id.clone());
            if let Some(at) = at {
                args.push(format!("--at={at}"));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if *maintenance {
                super::app::maintenance(
                    config,
                    &config.hosts(),
                    &format!("Restoring {name}"),
                    printer,
                )
                .await?;
            }
            let restored = relay(server, agent, &args, "Restoring", printer).await;
            if *maintenance {
                let live = super::app::live(config, &config.hosts(), printer).await;
                if let Err(err) = live {
                    printer.warn(format!(
                        "the app is still in maintenance: {err:#} (run `hoist app live`)"
                    ));
                }
            }
            let id = restored?;
            printer.status(
                "Restored",
                format!("{name} from backup {} on {}", id.trim(), server.host),
            );
            Ok(())
        }
        BackupCommand::List { .. } => list(name, agent, server, printer).await,
    }
}

async fn list(name: &str, agent: &Agent, server: &Server, printer: &Printer) -> Result<()> {
    let backups = relay(server, agent, &["list", name, "--json"], "Listing", printer).await?;
    let backups: Vec<Listed> = serde_json::from_str(backups.trim()).map_err(|err| {
        anyhow::anyhow!("hoist-backup's list is not the JSON hoist expects: {err}")
    })?;
    let statuses = relay(server, agent, &["status", "--json"], "Listing", printer).await?;
    let statuses: Vec<Status> = serde_json::from_str(statuses.trim()).map_err(|err| {
        anyhow::anyhow!("hoist-backup's status is not the JSON hoist expects: {err}")
    })?;
    let status = statuses
        .into_iter()
        .find(|s| s.accessory == name)
        .unwrap_or_default();
    if printer.json() {
        let value = serde_json::json!({
            "accessory": name,
            "host": server.host,
            "status": status,
            "backups": backups,
        });
        printer.data(format!("{value}\n"));
        return Ok(());
    }
    printer.status(
        "Backups",
        format!("{name} on {}: {}", server.host, describe(&status)),
    );
    let mut rows = vec![vec![
        "ID".to_string(),
        "TAKEN".to_string(),
        "SIZE".to_string(),
        "KIND".to_string(),
        "VERIFIED".to_string(),
    ]];
    for listed in backups.iter().rev() {
        rows.push(vec![
            listed.manifest.id.clone(),
            listed
                .manifest
                .created_at
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            human_size(listed.manifest.size()),
            listed.manifest.kind.clone(),
            match &listed.verify {
                Some(v) if v.ok => format!("yes, {}", v.at.format("%Y-%m-%d %H:%M UTC")),
                Some(v) => format!(
                    "FAILED, {}: {}",
                    v.at.format("%Y-%m-%d %H:%M UTC"),
                    v.detail
                ),
                None => "no".to_string(),
            },
        ]);
    }
    if backups.is_empty() {
        printer.data(format!("{name}: no backups yet\n"));
    } else {
        printer.data(table(&rows));
    }
    Ok(())
}

/// "schedule @daily, next …; last success …; last failure …".
pub fn describe(status: &Status) -> String {
    let time = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let mut parts = Vec::new();
    parts.push(match (&status.schedule, &status.next_run) {
        (Some(schedule), Some(next)) => format!("schedule {schedule}, next {}", time(next)),
        (Some(schedule), None) => format!("schedule {schedule}"),
        (None, Some(next)) => format!("next {}", time(next)),
        (None, None) => "no schedule".to_string(),
    });
    parts.push(match &status.last_success {
        Some(s) => format!(
            "last success {} ({}, {})",
            time(&s.at),
            s.id,
            human_size(s.size)
        ),
        None => "no success yet".to_string(),
    });
    if let Some(failure) = &status.last_failure
        && status
            .last_success
            .as_ref()
            .is_none_or(|s| s.at < failure.at)
    {
        parts.push(format!(
            "last failure {}: {}",
            time(&failure.at),
            failure.error
        ));
    }
    parts.join("; ")
}

/// Run `hoist-backup ARGS` in the agent: its progress lines shown as they come (under `verb`),
/// its stdout returned, and its error report, if it fails, turned into hoist's own.
async fn relay(
    server: &Server,
    agent: &Agent,
    args: &[&str],
    verb: &str,
    printer: &Printer,
) -> Result<String> {
    let mut command = vec!["hoist-backup"];
    command.extend_from_slice(args);
    let exec = docker::create_exec(&server.docker, &agent.container, &command, &[]).await?;
    let mut stdout = Vec::new();
    let mut pending = Vec::new();
    let mut report: Vec<String> = Vec::new();
    let take_line = |line: &str, report: &mut Vec<String>| {
        if !report.is_empty() || line.starts_with("error: ") {
            report.push(line.to_string());
        } else if !line.trim().is_empty() && !line.contains(" INFO ") {
            printer.status(verb, line);
        }
    };
    let code = docker::start_exec(&server.docker, &exec, true, |stream, data| match stream {
        ExecStream::Stdout => stdout.extend_from_slice(data),
        ExecStream::Stderr => {
            pending.extend_from_slice(data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                take_line(String::from_utf8_lossy(&line).trim_end(), &mut report);
            }
        }
    })
    .await?;
    if !pending.is_empty() {
        take_line(String::from_utf8_lossy(&pending).trim_end(), &mut report);
    }
    if code != 0 {
        return Err(agent_error(&report, code, &server.host));
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// The agent's `error:`/`Caused by:`/`hint:` report as an error of hoist's.
fn agent_error(report: &[String], code: i64, host: &str) -> anyhow::Error {
    let mut messages = Vec::new();
    let mut hint = None;
    for line in report {
        if let Some(message) = line.strip_prefix("error: ") {
            messages.push(message.to_string());
        } else if let Some(cause) = line.trim_start().strip_prefix("Caused by: ") {
            messages.push(cause.to_string());
        } else if let Some(text) = line.strip_prefix("hint: ") {
            hint = Some(text.to_string());
        }
    }
    if let Some(first) = messages.first_mut() {
        *first = format!("{first} (on `{host}`)");
    }
    let mut err = match messages.pop() {
        Some(innermost) => anyhow::anyhow!(innermost),
        None => anyhow::anyhow!("hoist-backup exited with status {code} without saying why"),
    };
    while let Some(outer) = messages.pop() {
        err = err.context(outer);
    }
    match hint {
        Some(hint) => with_hint(err, hint),
        None => err,
    }
}
