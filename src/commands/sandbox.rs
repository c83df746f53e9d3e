//! `hoist sandbox up|down|list`: what the user sees. The work is in crate::sandbox.

use anyhow::{Context, Result};

use crate::cli::SandboxCommand;
use crate::printer::Printer;
use crate::sandbox::{self, ENV_PASSWORD, UpOptions, state::SandboxInfo};

pub async fn run(command: SandboxCommand, printer: &Printer) -> Result<()> {
    match command {
        SandboxCommand::Up(args) => {
            let outcome = sandbox::up(
                UpOptions {
                    name: &args.name,
                    servers: args.servers,
                    bare: args.bare,
                    mirror: args.mirror.as_deref(),
                },
                printer,
            )
            .await?;
            if outcome.already_up {
                printer.status(
                    "Running",
                    format!("sandbox `{}` is already up", outcome.info.name),
                );
            }
            if printer.json() {
                printer.data(to_json(&outcome.info)?);
            } else {
                printer.data(deploy_snippet(&outcome.info));
            }
            Ok(())
        }
        SandboxCommand::Down(args) => {
            let removed = sandbox::down(&args.name, args.images).await?;
            for image in &removed.images_in_use {
                printer.warn(format!("kept image `{image}`: containers still use it"));
            }
            if removed.is_empty() {
                printer.status(
                    "Nothing",
                    format!("to remove: sandbox `{}` does not exist", args.name),
                );
            } else {
                printer.status(
                    "Removed",
                    format!(
                        "sandbox `{}`: {} containers, {} networks, {} volumes{}",
                        args.name,
                        removed.containers,
                        removed.networks,
                        removed.volumes,
                        if args.images {
                            format!(", {} images", removed.images)
                        } else {
                            String::new()
                        }
                    ),
                );
            }
            Ok(())
        }
        SandboxCommand::List(args) => {
            let sandboxes = sandbox::list(args.name.as_deref()).await?;
            if printer.json() {
                let value = serde_json::json!({ "sandboxes": sandboxes });
                printer.data(format!(
                    "{}\n",
                    serde_json::to_string_pretty(&value)
                        .context("Failed to encode the sandbox list")?
                ));
            } else {
                printer.data(table(&sandboxes));
            }
            Ok(())
        }
    }
}

fn to_json(info: &SandboxInfo) -> Result<String> {
    Ok(format!(
        "{}\n",
        serde_json::to_string_pretty(info).context("Failed to encode the sandbox")?
    ))
}

/// What a deploy.toml needs to target the sandbox. The password stays in the credentials file.
fn deploy_snippet(info: &SandboxInfo) -> String {
    let hosts: Vec<String> = info
        .servers
        .iter()
        .map(|s| format!("\"{}\"", s.address))
        .collect();
    let user = info.servers.first().map_or("root", |s| s.ssh_user.as_str());
    format!(
        "# Sandbox `{name}`: {count} server(s), registry {registry}.\n\
         # Registry credentials: `source {credentials}` (defines {ENV_PASSWORD}).\n\
         # SSH in: ssh -i {key} -o UserKnownHostsFile={known_hosts} {user}@{first}\n\
         image = \"{registry}/hello\"\n\
         \n\
         [registry]\n\
         server = \"{registry}\"\n\
         username = \"{username}\"\n\
         password = \"{ENV_PASSWORD}\"\n\
         \n\
         [servers.web]\n\
         hosts = [{hosts}]\n\
         \n\
         [ssh]\n\
         user = \"{user}\"\n\
         keys = [\"{key}\"]\n\
         known_hosts = \"{known_hosts}\"\n",
        name = info.name,
        count = info.servers.len(),
        registry = info.registry.address,
        credentials = info.registry.credentials_path.display(),
        key = info
            .servers
            .first()
            .map(|s| s.key_path.display().to_string())
            .unwrap_or_default(),
        known_hosts = info.known_hosts_path.display(),
        first = info.servers.first().map_or("", |s| s.address.as_str()),
        username = info.registry.username,
        hosts = hosts.join(", "),
    )
}

fn table(sandboxes: &[SandboxInfo]) -> String {
    let mut rows = vec![
        ["SANDBOX", "NAME", "ADDRESS", "STATUS", "KIND"]
            .map(String::from)
            .to_vec(),
    ];
    for info in sandboxes {
        for server in &info.servers {
            rows.push(
                [
                    info.name.clone(),
                    server.name.clone(),
                    server.address.clone(),
                    server.status.clone().unwrap_or_default(),
                    if info.bare {
                        "server (bare)".into()
                    } else {
                        "server".into()
                    },
                ]
                .to_vec(),
            );
        }
        rows.push(
            [
                info.name.clone(),
                "registry".into(),
                info.registry.address.clone(),
                info.registry.status.clone().unwrap_or_default(),
                "registry".into(),
            ]
            .to_vec(),
        );
    }
    crate::printer::table(&rows)
}
