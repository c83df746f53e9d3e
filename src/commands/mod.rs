//! Dispatch from parsed arguments to commands. One file per command family; commands take the
//! resolved configuration and the [`Printer`] and return errors for `main` to report.

pub mod accessory;
mod app;
mod app_containers;
mod audit;
mod backup;
mod config;
pub mod deploy;
mod details;
mod exec;
mod init;
mod lb;
mod lock;
mod logs;
pub mod proxy;
mod prune;
mod sandbox;
mod versions;

use anyhow::Result;

use crate::cli::{Cli, Command, DestinationArg, GlobalArgs};
use crate::config::Config;
use crate::deploy::Kind;
use crate::printer::Printer;
use crate::report::hinted;

pub async fn run(cli: Cli, printer: &Printer) -> Result<()> {
    match cli.command {
        Command::Sandbox(command) => sandbox::run(command, printer).await,
        Command::Config(ref args) => {
            let config = load_config(&cli.global, args)?;
            config::run(&config, printer)
        }
        Command::Init => init::run(&cli.global, printer),
        Command::Details(ref destination) => {
            let config = load_config(&cli.global, destination)?;
            let hosts = select_hosts(&config, &cli.global)?;
            details::run(&config, &hosts, printer).await
        }
        Command::Accessory(command) => {
            let config = load_config(&cli.global, &DestinationArg { destination: None })?;
            accessory::run(command, &config, printer).await
        }
        Command::Deploy(ref args) | Command::Redeploy(ref args) => {
            let kind = if matches!(cli.command, Command::Deploy(_)) {
                Kind::Deploy
            } else {
                Kind::Redeploy
            };
            let config = load_config(&cli.global, &args.destination)?;
            let hosts = select_hosts(&config, &cli.global)?;
            deploy::deploy(kind, args, &config, &hosts, &cli.global.roles, printer).await
        }
        Command::Setup(ref args) => {
            let config = load_config(&cli.global, &args.destination)?;
            let hosts = select_hosts(&config, &cli.global)?;
            let options = deploy::options(Kind::Deploy, args, &cli.global.roles);
            crate::setup::run(options, &config, &hosts, printer).await
        }
        Command::Rollback(ref args) => {
            let config = load_config(&cli.global, &DestinationArg { destination: None })?;
            let hosts = select_hosts(&config, &cli.global)?;
            deploy::rollback(args, &config, &hosts, &cli.global.roles, printer).await
        }
        Command::Versions(ref destination) => {
            let config = load_config(&cli.global, destination)?;
            let hosts = select_hosts(&config, &cli.global)?;
            versions::run(&config, &hosts, printer).await
        }
        Command::Proxy(command) => {
            let config = load_config(&cli.global, &DestinationArg { destination: None })?;
            let hosts = select_hosts(&config, &cli.global)?;
            proxy::run(command, &config, &hosts, printer).await
        }
        Command::Backup(command) => {
            let config = load_config(&cli.global, &DestinationArg { destination: None })?;
            let hosts = select_hosts(&config, &cli.global)?;
            backup::run(command, &config, &hosts, printer).await
        }
        Command::Lb(ref command) => {
            let config = load_config(&cli.global, &DestinationArg { destination: None })?;
            lb::run(command, &config, printer).await
        }
        Command::Lock(ref command) => {
            let config = load_config(&cli.global, &DestinationArg { destination: None })?;
            lock::run(command, &config, printer).await
        }
        Command::App(command) => {
            let config = load_config(&cli.global, &DestinationArg { destination: None })?;
            let hosts = select_hosts(&config, &cli.global)?;
            app::run(command, &config, &hosts, printer).await
        }
        Command::Exec(ref args) => {
            let config = load_config(&cli.global, &DestinationArg { destination: None })?;
            let hosts = select_hosts(&config, &cli.global)?;
            exec::run(args, &config, &hosts, &cli.global.roles, printer).await
        }
        Command::Logs(ref args) => {
            let config = load_config(&cli.global, &args.destination)?;
            let hosts = select_hosts(&config, &cli.global)?;
            logs::run(args, &config, &hosts, &cli.global.roles, printer).await
        }
        Command::Prune(ref destination) => {
            let config = load_config(&cli.global, destination)?;
            let hosts = select_hosts(&config, &cli.global)?;
            prune::run(&config, &hosts, &cli.global.roles, printer).await
        }
        Command::Audit(ref args) => {
            let config = load_config(&cli.global, &args.destination)?;
            let hosts = select_hosts(&config, &cli.global)?;
            audit::run(&config, &hosts, args.lines, printer).await
        }
    }
}

/// deploy.toml (or `-c`), with the destination from the positional argument or `-d`.
fn load_config(global: &GlobalArgs, positional: &DestinationArg) -> Result<Config> {
    let destination = crate::config::destination(
        positional.destination.as_deref(),
        global.destination.as_deref(),
    )?;
    Ok(crate::config::load(
        global.config.as_deref(),
        destination.as_deref(),
    )?)
}

/// The hosts a command works on: every configured host, narrowed by `--roles` and `--hosts`.
fn select_hosts(config: &Config, global: &GlobalArgs) -> Result<Vec<String>> {
    let mut hosts = config.hosts();
    if !global.roles.is_empty() {
        let mut wanted = Vec::new();
        for role in &global.roles {
            let Some(role_config) = config.roles.get(role) else {
                let known: Vec<String> = config.roles.keys().map(|r| format!("`{r}`")).collect();
                return Err(hinted(
                    format!("No role named `{role}` in the configuration (`--roles`)"),
                    format!("roles: {}", known.join(", ")),
                ));
            };
            wanted.extend(role_config.hosts.iter().cloned());
        }
        hosts.retain(|host| wanted.contains(host));
    }
    if !global.hosts.is_empty() {
        for host in &global.hosts {
            if !hosts.contains(host) {
                return Err(hinted(
                    format!("Host `{host}` (`--hosts`) is not among the configured hosts"),
                    format!("hosts: {}", hosts.join(", ")),
                ));
            }
        }
        hosts.retain(|host| global.hosts.contains(host));
    }
    Ok(hosts)
}
