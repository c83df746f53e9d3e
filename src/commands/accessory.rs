//! `hoist accessory boot|reboot|remove|logs|exec NAME`: long-lived containers next to the app
//! (databases, caches) on their hosts. What an accessory container is and how it boots lives in
//! container/accessory.rs; this file picks the hosts, reports and prints.

use anyhow::{Result, bail};
use bollard::Docker;

use crate::cli::AccessoryCommand;
use crate::config::{AccessoryConfig, Config};
use crate::container::accessory::{Prepared, boot, remove};
use crate::container::backup;
use crate::docker;
use crate::fleet::Fleet;
use crate::naming::accessory_container;
use crate::printer::Printer;
use crate::report::hinted;
use crate::reporter::Reporter;
use crate::secrets::Secrets;

pub async fn run(command: AccessoryCommand, config: &Config, printer: &Printer) -> Result<()> {
    let name = match &command {
        AccessoryCommand::Boot { name }
        | AccessoryCommand::Reboot { name }
        | AccessoryCommand::Remove { name }
        | AccessoryCommand::Logs { name }
        | AccessoryCommand::Exec { name, .. } => name.clone(),
    };
    let accessory = find(config, &name)?;
    let container = accessory_container(&config.service, &name);
    let reporter = Reporter::new(*printer);
    // Secrets first: a missing one or a failing `$(command)` stops before any server is touched.
    // A backed-up accessory's agent is made current with it.
    let (prepared, agents) = match &command {
        AccessoryCommand::Boot { .. } | AccessoryCommand::Reboot { .. } => {
            let secrets = Secrets::load(&config.root, config.destination.as_deref())?;
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
                (AccessoryCommand::Logs { .. }, _) => {
                    if servers.len() > 1 {
                        printer.status("Logs", format!("{container} on {}", server.host));
                    }
                    docker::logs(&server.docker, &container, 200, docker::write_output).await?
                }
                (AccessoryCommand::Exec { command, .. }, _) => {
                    exec(&server.docker, &container, &server.host, command).await?
                }
                (AccessoryCommand::Boot { .. } | AccessoryCommand::Reboot { .. }, None) => {}
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
