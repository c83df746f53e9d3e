//! `hoist exec`: run a command on the app's hosts. By default in a one-off container of the
//! live version's image with the role's environment, secrets included (they travel in the
//! Engine API's create body, never on a command line), on the `hoist` network, removed
//! afterwards; with `--reuse`, in the live container itself. The primary role unless `--roles`
//! says otherwise; every selected host of it (`-p` selects the primary host alone). Output is
//! streamed, prefixed with the host when there are several; hoist exits with the command's
//! status. With `-i`, on one host (the first selected), attached to hoist's terminal (see
//! `docker/attach.rs`).

use std::collections::HashMap;

use anyhow::{Context, Result, bail};

use crate::cli::ExecArgs;
use crate::config::{Config, check_env_name};
use crate::container::{self, oneoff};
use crate::docker::{self, PrefixedOutput, attach};
use crate::fleet::Fleet;
use crate::printer::Printer;
use crate::remote::Server;
use crate::report::{CommandExited, hinted};
use crate::reporter::Reporter;
use crate::secrets::Secrets;

pub async fn run(
    args: &ExecArgs,
    config: &Config,
    hosts: &[String],
    roles: &[String],
    printer: &Printer,
) -> Result<()> {
    for pair in &args.env {
        let name = pair.split_once('=').map(|(name, _)| name).ok_or_else(|| {
            hinted(
                format!("`-e {pair}` is not `NAME=value`"),
                "write it as `-e NAME=value`",
            )
        })?;
        check_env_name(name).map_err(|err| anyhow::anyhow!("`-e {pair}`: {err}"))?;
    }
    let mut targets = targets(config, hosts, roles)?;
    if args.interactive && targets.len() > 1 {
        printer.status(
            "Interactive",
            format!(
                "on {} only, the first of {} hosts (pick another with --hosts)",
                targets[0].0,
                targets.len()
            ),
        );
        targets.truncate(1);
    }
    let env = if args.reuse {
        HashMap::new()
    } else {
        let secrets = Secrets::for_config(config)?;
        let mut env = HashMap::new();
        for (host, role) in &targets {
            let values = secrets.container_env(&config.host_env(role, host))?;
            env.insert((host.clone(), role.clone()), values);
        }
        env
    };
    let unique_hosts: Vec<String> = targets.iter().map(|(host, _)| host.clone()).collect();
    let reporter = Reporter::new(*printer);
    let fleet =
        Fleet::connect(config, &unique_hosts, &reporter, printer, "run the command").await?;
    let several = targets.len() > 1;
    let runs = futures_util::future::join_all(targets.iter().map(|(host, role)| {
        let server = fleet.server(host);
        let env = env
            .get(&(host.clone(), role.clone()))
            .cloned()
            .unwrap_or_default();
        async move {
            let server = server.with_context(|| format!("`{host}` is not connected"))?;
            let prefix = several.then(|| format!("[{host}] "));
            // The role's environment (none for `--reuse`: the container has it), then `-e`'s.
            let mut env = env;
            env.extend(args.env.iter().cloned());
            if args.interactive {
                interactive(config, server, role, args, &env).await
            } else if args.reuse {
                in_live_container(config, server, role, &env, &args.command, prefix).await
            } else {
                one_off(config, server, role, env, &args.command, prefix).await
            }
        }
    }))
    .await;
    fleet.close().await;
    let command = args.command.join(" ");
    for ((host, _), result) in targets.iter().zip(runs) {
        let code = result.with_context(|| format!("on `{host}`"))?;
        if code != 0 {
            return Err(CommandExited {
                command,
                code,
                on: format!(" on `{host}`"),
            }
            .into());
        }
    }
    Ok(())
}

/// (host, role) pairs to run on: each host once, with the first of `roles` it runs.
fn targets(config: &Config, hosts: &[String], roles: &[String]) -> Result<Vec<(String, String)>> {
    let roles: Vec<String> = if roles.is_empty() {
        vec![config.primary_role.clone()]
    } else {
        roles.to_vec()
    };
    let mut targets: Vec<(String, String)> = Vec::new();
    for role in &roles {
        let Some(role_config) = config.roles.get(role) else {
            bail!("No role named `{role}` in the configuration");
        };
        for host in role_config.hosts.iter().filter(|host| hosts.contains(host)) {
            if !targets.iter().any(|(known, _)| known == host) {
                targets.push((host.clone(), role.clone()));
            }
        }
    }
    if targets.is_empty() {
        bail!(
            "No selected host runs {}",
            roles
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        );
    }
    Ok(targets)
}

/// The live container of `role` on `server` and its version.
async fn live(config: &Config, server: &Server, role: &str) -> Result<(String, String)> {
    let roles = container::role_containers(config, server).await?;
    roles
        .iter()
        .find(|containers| containers.role == role)
        .and_then(|containers| {
            containers
                .containers
                .iter()
                .find(|c| c.running && containers.is_live(c))
                .map(|c| (c.name.clone(), c.version.clone()))
        })
        .ok_or_else(|| {
            hinted(
                format!("Nothing of `{role}` is live on `{}`", server.host),
                "deploy first (`hoist deploy`), or pick another role with `--roles`",
            )
        })
}

async fn in_live_container(
    config: &Config,
    server: &Server,
    role: &str,
    env: &[String],
    command: &[String],
    prefix: Option<String>,
) -> Result<i64> {
    let (name, _) = live(config, server, role).await?;
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    let exec = docker::create_exec(&server.docker, &name, &args, env).await?;
    let mut output = PrefixedOutput::new(prefix);
    let code = docker::start_exec(&server.docker, &exec, true, |stream, data| {
        output.write(stream, data)
    })
    .await;
    output.finish();
    code
}

/// A one-off container of the live version of `role`, running `command` with `env`.
async fn one_off(
    config: &Config,
    server: &Server,
    role: &str,
    env: Vec<String>,
    command: &[String],
    prefix: Option<String>,
) -> Result<i64> {
    let (_, version) = live(config, server, role).await?;
    let oneoff = oneoff::OneOff {
        config,
        role,
        version: &version,
        host: &server.host,
        env: &env,
        command,
    };
    let mut output = PrefixedOutput::new(prefix);
    let code = oneoff::run(&server.docker, oneoff, |stream, data| {
        output.write(stream, data)
    })
    .await;
    output.finish();
    code
}

/// `-i`: the command attached to hoist's terminal, in the live container (`--reuse`) or a
/// one-off one, with `env` over the container's.
async fn interactive(
    config: &Config,
    server: &Server,
    role: &str,
    args: &ExecArgs,
    env: &[String],
) -> Result<i64> {
    let tty = crate::terminal::is_interactive();
    let (name, version) = live(config, server, role).await?;
    if !args.reuse {
        let oneoff = oneoff::OneOff {
            config,
            role,
            version: &version,
            host: &server.host,
            env,
            command: &args.command,
        };
        return oneoff::run_interactive(&server.docker, oneoff, tty).await;
    }
    let command: Vec<&str> = args.command.iter().map(String::as_str).collect();
    let exec = docker::create_interactive_exec(&server.docker, &name, &command, env, tty).await?;
    let attached = attach::start_exec(&server.docker, exec.id(), tty, &exec.describe()).await?;
    attach::converse(
        &server.docker,
        &attach::Process::Exec(exec.id().to_string()),
        attached,
        tty,
    )
    .await?;
    docker::exec_exit_code(&server.docker, &exec).await
}
