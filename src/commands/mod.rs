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
mod remove;
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
        Command::Alias(ref words) => {
            // Not an alias: a command misspelt is said so, before any configuration error.
            let name = words.first().map_or("", String::as_str);
            let config = match load_config(&cli.global, &DestinationArg { destination: None }) {
                Ok(config) => config,
                Err(err) => {
                    misspelt_command(name)?;
                    return Err(err);
                }
            };
            if !config.aliases.contains_key(name) {
                misspelt_command(name)?;
            }
            let expanded = expand_alias(&config, words, cli.global)?;
            // The alias may ask for other output (`config --json`).
            let global = &expanded.global;
            let printer = Printer::new(global.quiet, global.verbose, global.json);
            Box::pin(run(expanded, &printer)).await
        }
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
        Command::Remove(ref args) => {
            let config = load_config(&cli.global, &args.destination)?;
            let hosts = select_hosts(&config, &cli.global)?;
            remove::run(args.yes, &config, &hosts, printer).await
        }
    }
}

/// deploy.toml (or `-c`), with the destination from the positional argument or `-d`.
fn load_config(global: &GlobalArgs, positional: &DestinationArg) -> Result<Config> {
    let destination = crate::config::destination(
        positional.destination.as_deref(),
        global.destination.as_deref(),
    )?;
    let mut config = crate::config::load(global.config.as_deref(), destination.as_deref())?;
    config.skip_hooks = global.skip_hooks;
    check_aliases(&config)?;
    Ok(config)
}

/// `hoist NAME ARGS...` with `NAME` an alias: its words, then `ARGS`, parsed as a command line
/// of their own, with the global options given on the real one.
fn expand_alias(config: &Config, words: &[String], global: GlobalArgs) -> Result<Cli> {
    let Some((name, rest)) = words.split_first() else {
        anyhow::bail!("No command given");
    };
    let Some(expansion) = config.aliases.get(name) else {
        let known: Vec<String> = config.aliases.keys().map(|k| format!("`{k}`")).collect();
        return Err(hinted(
            format!("`{name}` is neither a hoist command nor an alias in `[aliases]`"),
            if known.is_empty() {
                "see `hoist --help` for the commands".to_string()
            } else {
                format!("aliases: {}; commands: `hoist --help`", known.join(", "))
            },
        ));
    };
    let argv = std::iter::once("hoist".to_string())
        .chain(expansion.iter().cloned())
        .chain(rest.iter().cloned());
    let mut expanded = <Cli as clap::Parser>::try_parse_from(argv).map_err(|err| {
        hinted(
            format!(
                "The alias `{name}` (`{}`) is not a hoist command line: {}",
                expansion.join(" "),
                err.to_string().lines().next().unwrap_or_default()
            ),
            "fix it in `[aliases]` of deploy.toml",
        )
    })?;
    if let Command::Alias(inner) = &expanded.command {
        return Err(hinted(
            format!(
                "The alias `{name}` starts with `{}`, which is not a hoist command",
                inner.first().map_or("", String::as_str)
            ),
            "an alias expands to a hoist command and its arguments, never to another alias",
        ));
    }
    expanded.global = merge_global(global, expanded.global);
    Ok(expanded)
}

/// The global options of an expanded alias: the command line's, else the alias's own.
fn merge_global(given: GlobalArgs, alias: GlobalArgs) -> GlobalArgs {
    GlobalArgs {
        config: given.config.or(alias.config),
        destination: given.destination.or(alias.destination),
        hosts: if given.hosts.is_empty() {
            alias.hosts
        } else {
            given.hosts
        },
        roles: if given.roles.is_empty() {
            alias.roles
        } else {
            given.roles
        },
        primary: given.primary || alias.primary,
        verbose: given.verbose.max(alias.verbose),
        quiet: given.quiet || alias.quiet,
        json: given.json || alias.json,
        skip_hooks: given.skip_hooks || alias.skip_hooks,
    }
}

/// Fail when `name` is a few letters off a hoist command.
fn misspelt_command(name: &str) -> Result<()> {
    let commands: Vec<String> = <Cli as clap::CommandFactory>::command()
        .get_subcommands()
        .map(|command| command.get_name().to_string())
        .collect();
    match crate::config::did_you_mean(name, &commands) {
        Some(command) => Err(hinted(
            format!("`{name}` is not a hoist command"),
            format!("did you mean `hoist {command}`?"),
        )),
        None => Ok(()),
    }
}

/// An alias must not be named like a command: it would never run.
fn check_aliases(config: &Config) -> Result<()> {
    let commands = <Cli as clap::CommandFactory>::command();
    for name in config.aliases.keys() {
        if commands.find_subcommand(name).is_some() {
            return Err(hinted(
                format!("The alias `{name}` in `[aliases]` has the name of a hoist command"),
                "rename it: `hoist {name}` runs the command, never the alias",
            ));
        }
    }
    Ok(())
}

/// The hosts a command works on: every configured host, narrowed by `--roles` and `--hosts`,
/// and to the primary host with `--primary`.
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
    if global.primary {
        let Some(primary) = crate::fleet::primary_host(config) else {
            return Err(hinted(
                "`--primary`: the configuration has no app host",
                "add hosts to the primary role",
            ));
        };
        if !hosts.contains(&primary) {
            return Err(hinted(
                format!(
                    "`--primary`: the primary host `{primary}` is not among the selected hosts"
                ),
                "drop `--hosts`/`--roles`, or `--primary`",
            ));
        }
        hosts = vec![primary];
    }
    Ok(hosts)
}
