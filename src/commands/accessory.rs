//! `hoist accessory boot|reboot|remove|start|stop|restart|details|logs|exec NAME`: long-lived
//! containers next to the app (databases, caches) on their hosts. What an accessory container is
//! and how it boots, starts and stops lives in container/accessory.rs; this file picks the hosts,
//! reports and prints.

use anyhow::{Context, Result, bail};
use bollard::Docker;

use crate::cli::AccessoryCommand;
use crate::config::{AccessoryConfig, Config};
use crate::container::accessory::{self, Prepared, boot, remove};
use crate::container::backup;
use crate::docker;
use crate::fleet::Fleet;
use crate::naming::accessory_container;
use crate::printer::{self, Printer};
use crate::remote::Server;
use crate::report::hinted;
use crate::reporter::Reporter;
use crate::secrets::Secrets;

pub async fn run(command: AccessoryCommand, config: &Config, printer: &Printer) -> Result<()> {
    let name = match &command {
        AccessoryCommand::Boot { name }
        | AccessoryCommand::Reboot { name }
        | AccessoryCommand::Remove { name }
        | AccessoryCommand::Start { name }
        | AccessoryCommand::Stop { name }
        | AccessoryCommand::Restart { name }
        | AccessoryCommand::Details { name }
        | AccessoryCommand::Logs { name, .. }
        | AccessoryCommand::Exec { name, .. } => name.clone(),
    };
    let accessory = find(config, &name)?;
    let container = accessory_container(&config.service, &name);
    let reporter = Reporter::new(*printer);
    // Secrets first: a missing one or a failing `$(command)` stops before any server is touched.
    // A backed-up accessory's agent is made current with it.
    let (prepared, agents) = match &command {
        AccessoryCommand::Boot { .. } | AccessoryCommand::Reboot { .. } => {
            let secrets = Secrets::for_config(config)?;
            let prepared = Prepared::new(config, &secrets, &name, accessory, &container)?;
            let agents = match accessory.backup {
                Some(_) => backup::plan_all(config, &secrets)?,
                None => Vec::new(),
            };
            (Some(prepared), agents)
        }
        _ => (None, Vec::new()),
    };

    let fleet = Fleet::connect(config, &accessory.hosts, &reporter, printer, "run this").await?;
    let servers = &fleet.servers;
    let result = async {
        match &command {
            AccessoryCommand::Logs { follow, lines, .. } => {
                let servers: Vec<&Server> = servers.iter().collect();
                let prefixed = servers.len() > 1;
                return super::logs::of_container(&servers, &container, *lines, *follow, prefixed)
                    .await;
            }
            AccessoryCommand::Details { .. } => return details(servers, &container, printer).await,
            _ => {}
        }
        for server in servers {
            match (&command, &prepared) {
                (AccessoryCommand::Boot { .. }, Some(prepared)) => {
                    boot(prepared, server, &reporter).await?
                }
                (AccessoryCommand::Reboot { .. }, Some(prepared)) => {
                    remove(&server.docker, &container).await?;
                    boot(prepared, server, &reporter).await?
                }
                (AccessoryCommand::Remove { .. }, _) => {
                    let progress = reporter.host(&server.host);
                    progress.step(format!("removing {container}"));
                    remove(&server.docker, &container).await?;
                    progress.done(format!("removed {container}"));
                }
                (AccessoryCommand::Start { .. }, _) => {
                    let progress = reporter.host(&server.host);
                    progress.step(format!("starting {container}"));
                    accessory::start(server, &name, &container).await?;
                    progress.done(format!("started {container}"));
                }
                (AccessoryCommand::Stop { .. }, _) => {
                    let progress = reporter.host(&server.host);
                    progress.step(format!("stopping {container}"));
                    accessory::stop(server, &name, &container).await?;
                    progress.done(format!("stopped {container}"));
                }
                (AccessoryCommand::Restart { .. }, _) => {
                    let progress = reporter.host(&server.host);
                    progress.step(format!("stopping {container}"));
                    accessory::stop(server, &name, &container).await?;
                    progress.step(format!("starting {container}"));
                    accessory::start(server, &name, &container).await?;
                    progress.done(format!("restarted {container}"));
                }
                (AccessoryCommand::Exec { command, .. }, _) => {
                    exec(&server.docker, &container, &server.host, command).await?
                }
                (
                    AccessoryCommand::Boot { .. }
                    | AccessoryCommand::Reboot { .. }
                    | AccessoryCommand::Logs { .. }
                    | AccessoryCommand::Details { .. },
                    _,
                ) => {}
            }
            for agent in agents.iter().filter(|agent| agent.host == server.host) {
                agent.ensure(server, &reporter).await?;
            }
        }
        Ok(())
    }
    .await;
    fleet.close().await;
    result
}

fn find<'a>(config: &'a Config, name: &str) -> Result<&'a AccessoryConfig> {
    config.accessories.get(name).ok_or_else(|| {
        let known: Vec<String> = config
            .accessories
            .keys()
            .map(|k| format!("`{k}`"))
            .collect();
        hinted(
            format!("No accessory named `{name}` in the configuration"),
            if known.is_empty() {
                "declare it as `[accessories.NAME]` in deploy.toml".to_string()
            } else {
                format!("accessories declared: {}", known.join(", "))
            },
        )
    })
}

async fn exec(docker: &Docker, container: &str, host: &str, command: &[String]) -> Result<()> {
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    let code = docker::exec_streaming(docker, container, &args, docker::write_output).await?;
    if code != 0 {
        bail!(
            "`{}` exited with status {code} in `{container}` on `{host}`",
            command.join(" ")
        );
    }
    Ok(())
}

/// One row per host: the container's state, image, published ports and start time.
async fn details(servers: &[Server], container: &str, printer: &Printer) -> Result<()> {
    let statuses = futures_util::future::join_all(servers.iter().map(|server| async move {
        let status = accessory::status(&server.docker, container).await;
        status.with_context(|| format!("on `{}`", server.host))
    }))
    .await;
    let mut rows = vec![vec![
        "HOST".to_string(),
        "CONTAINER".to_string(),
        "STATE".to_string(),
        "IMAGE".to_string(),
        "PORTS".to_string(),
        "STARTED".to_string(),
    ]];
    for (server, status) in servers.iter().zip(statuses) {
        let row = match status? {
            Some(status) => vec![
                server.host.clone(),
                container.to_string(),
                status.state,
                status.image,
                status.ports.join(", "),
                status.started_at.unwrap_or_else(|| "-".to_string()),
            ],
            None => vec![
                server.host.clone(),
                container.to_string(),
                "absent".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
            ],
        };
        rows.push(row);
    }
    printer.data(printer::table(&rows));
    Ok(())
}
