//! The command line: every `hoist` command and flag, declared with clap derive. Doc comments are
//! the help text. Parsing only; commands/ turns these into actions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Deploy containerized web apps to plain Linux servers with zero downtime.
#[derive(Debug, Parser)]
#[command(
    name = "hoist",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file [default: deploy.toml]
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Destination (deploy.<DESTINATION>.toml is merged over deploy.toml)
    #[arg(
        short = 'd',
        long = "destination",
        global = true,
        value_name = "DESTINATION"
    )]
    pub destination: Option<String>,

    /// Only these hosts (comma-separated)
    #[arg(long, global = true, value_delimiter = ',', value_name = "HOSTS")]
    pub hosts: Vec<String>,

    /// Only these roles (comma-separated)
    #[arg(long, global = true, value_delimiter = ',', value_name = "ROLES")]
    pub roles: Vec<String>,

    /// Only the primary host (the first host of the primary role)
    #[arg(short = 'p', long, global = true)]
    pub primary: bool,

    /// Show each remote step (-vv for debug logs)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only errors and warnings
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Run no hook (hooks/pre-deploy and the others)
    #[arg(short = 'H', long, global = true)]
    pub skip_hooks: bool,
}

/// A destination given positionally (`hoist deploy staging`), as an alternative to `-d`.
#[derive(Debug, Args)]
pub struct DestinationArg {
    /// Destination, e.g. `staging` (same as -d)
    // Its own id: sharing the global `-d` one ("destination") would make clap drop `-d` after
    // the subcommand.
    #[arg(id = "positional_destination", value_name = "DESTINATION")]
    pub destination: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented deploy.toml, .hoist/secrets and sample hooks
    Init,
    /// Prepare fresh servers (install Docker, boot the proxy and accessories), then deploy
    #[command(disable_version_flag = true)]
    Setup(DeployArgs),
    /// Build, push and roll out a new version with zero downtime
    // `--version` names the version to deploy here, not hoist's own.
    #[command(disable_version_flag = true)]
    Deploy(DeployArgs),
    /// Deploy again without booting the proxy or pruning
    #[command(disable_version_flag = true)]
    Redeploy(DeployArgs),
    /// Go back to a previous version (default: the one live before the current one)
    Rollback(RollbackArgs),
    /// List the retained versions on each server, marking the live one
    Versions(DestinationArg),
    /// Show servers, Docker, containers, versions and proxy status
    Details(DestinationArg),
    /// Show the live app containers' logs from every host, merged by time (`-f` to follow)
    Logs(LogsArgs),
    /// Run a command in a one-off container of the live version, with the role's environment
    /// and secrets (`--reuse`: in the running container); exits with the command's status
    Exec(ExecArgs),
    /// Control the running app
    #[command(subcommand)]
    App(AppCommand),
    /// Manage hoist-proxy on the servers
    #[command(subcommand)]
    Proxy(ProxyCommand),
    /// Manage accessories (databases, caches) declared in deploy.toml
    #[command(subcommand)]
    Accessory(AccessoryCommand),
    /// The load balancer of `[loadbalancer]`: which web hosts it sends to, drain one for
    /// maintenance
    #[command(subcommand)]
    Lb(LbCommand),
    /// Back up accessories to S3-compatible storage, list, restore and verify backups
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Inspect or release the deploy lock
    #[command(subcommand)]
    Lock(LockCommand),
    /// Remove old containers and images beyond `retain_containers`
    Prune(DestinationArg),
    /// Show what hoist changed on the servers: every host's audit log, merged by time
    Audit(AuditArgs),
    /// Remove the app from its servers: containers, accessories and their volumes, images,
    /// routes, hoist's files, and hoist-proxy where no other app uses it
    Remove(RemoveArgs),
    /// Print the merged configuration, secrets redacted
    Config(DestinationArg),
    /// Local throw-away servers and a registry to try a deploy on
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// `hoist NAME ARGS...`: an alias from `[aliases]` in deploy.toml
    #[command(external_subcommand)]
    Alias(Vec<String>),
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub destination: DestinationArg,

    /// Keep printing new lines, from every running container of the roles, including those a
    /// deploy starts meanwhile (Ctrl-C ends)
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Lines from the end of each container's log [default: 100, or all with --since or --grep]
    #[arg(short = 'n', long, value_name = "N")]
    pub lines: Option<usize>,

    /// Only lines since this long ago (`10m`, `2h`) or this time (`2026-12-01T10:00:00Z`)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,

    /// Only lines matching this regular expression
    #[arg(long, value_name = "REGEX")]
    pub grep: Option<String>,

    /// Only this container (a name or id prefix), on whichever host runs it
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run in the live container instead of a one-off one
    #[arg(long)]
    pub reuse: bool,

    /// Interactive: stdin attached, and a TTY when hoist runs in a terminal (keys, Ctrl-C and
    /// window size go to the command); on one host, the first selected (the primary host by
    /// default)
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Extra environment for the command, `NAME=value` (repeatable)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,

    /// Command and its arguments (after `--`)
    #[arg(trailing_var_arg = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub destination: DestinationArg,

    /// Don't ask for confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub destination: DestinationArg,

    /// The last N entries, across every host
    #[arg(short = 'n', long, default_value_t = 50, value_name = "N")]
    pub lines: usize,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub destination: DestinationArg,

    /// Version to deploy [default: the git commit of the app]
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,

    /// Don't build or push: deploy `image:VERSION` already in the registry
    #[arg(long)]
    pub skip_build: bool,

    /// Deploy uncommitted changes (the version becomes `<commit>_uncommitted_<hash>`)
    #[arg(long)]
    pub allow_dirty: bool,

    /// Switch the first N hosts of the primary role first and watch their health for
    /// `--canary-wait` before the rest [default N: 1]
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub canary: Option<u32>,

    /// How long `--canary` watches the canary hosts (health probes every
    /// `proxy.healthcheck.interval`) before the rest go
    #[arg(long, value_name = "DURATION", value_parser = parse_wait, default_value = "30s",
          requires = "canary")]
    pub canary_wait: std::time::Duration,

    /// If a host fails, leave the hosts already switched on the new version instead of
    /// putting them back (Kamal's behaviour; also `boot.rollback = false`)
    #[arg(long)]
    pub no_rollback: bool,

    #[command(flatten)]
    pub lock: LockWaitArg,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Version to roll back to (see `hoist versions`)
    #[arg(value_name = "VERSION")]
    pub to_version: Option<String>,

    #[command(flatten)]
    pub lock: LockWaitArg,
}

#[derive(Debug, Args)]
pub struct LockWaitArg {
    /// If another deploy holds the lock, wait up to this long for it (e.g. `5m`) [default: fail
    /// at once]
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub lock_wait: Option<std::time::Duration>,
}

fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(text)
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Stop the app's containers (proxied services show the maintenance page meanwhile)
    Stop,
    /// Start the live version's containers again and send requests to them
    Start,
    /// List the app's containers on each host: version, state, which one is live
    Details,
    /// Remove the app's containers (every version), routes, asset volumes and images;
    /// accessories, hoist-proxy and the lock stay, and `hoist deploy` starts afresh
    Remove {
        /// Don't ask for confirmation
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Answer every request with the maintenance page (503), on every proxy host
    Maintenance {
        /// Message shown on the maintenance page
        #[arg(long)]
        message: Option<String>,
        /// How long requests in flight get to finish first
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_wait)]
        drain_timeout: std::time::Duration,
    },
    /// Leave maintenance mode: requests reach the app again
    Live,
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Start hoist-proxy on every server
    Boot,
    /// Replace hoist-proxy with the configured version
    Reboot,
    /// Stop hoist-proxy (its requests in flight finish; nothing is served until `start`)
    Stop,
    /// Start a stopped hoist-proxy, with its routes (as `boot`)
    Start,
    /// Remove hoist-proxy with its routes and certificates (`boot` creates it again)
    Remove {
        /// Remove it even when it routes other apps' services too (they go offline)
        #[arg(long)]
        force: bool,
    },
    /// Show hoist-proxy logs
    Logs {
        /// Keep following the logs of every server as lines arrive (until Ctrl-C)
        #[arg(short = 'f', long)]
        follow: bool,
        /// Lines from the end of each server's log
        #[arg(short = 'n', long, default_value_t = 200, value_name = "N")]
        lines: usize,
    },
    /// Show hoist-proxy status and routes
    Details,
}

#[derive(Debug, Subcommand)]
pub enum AccessoryCommand {
    /// Start an accessory
    Boot { name: String },
    /// Replace an accessory's container
    Reboot { name: String },
    /// Remove an accessory's container
    Remove { name: String },
    /// Start an accessory's stopped container (as booted: same definition, same data)
    Start { name: String },
    /// Stop an accessory's container (its data and definition stay; `start` brings it back)
    Stop { name: String },
    /// Stop and start an accessory's container
    Restart { name: String },
    /// Show an accessory's container on each of its hosts: state, image, ports, start time
    Details { name: String },
    /// Show an accessory's logs
    Logs {
        name: String,
        /// Keep following the logs as lines arrive (until Ctrl-C)
        #[arg(short = 'f', long)]
        follow: bool,
        /// Lines from the end of each host's log
        #[arg(short = 'n', long, default_value_t = 200, value_name = "N")]
        lines: usize,
    },
    /// Run a command in an accessory's container
    Exec {
        name: String,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Create or update the backup agent (`hoist-backup-<service>`) on every server with a
    /// backed-up accessory; the other backup commands do this first too
    Boot,
    /// Take a backup now (of every backed-up accessory without NAME)
    Now { name: Option<String> },
    /// List backups (newest first) with each accessory's last success, last failure and next
    /// scheduled run
    List { name: Option<String> },
    /// Put a backup back into its accessory: the newest good one, or ID, or the newest taken
    /// at or before --at. Every part is checked before anything is changed
    Restore {
        name: Option<String>,
        id: Option<String>,
        /// The newest backup taken at or before this time (RFC 3339: 2026-12-01T10:00:00Z)
        #[arg(long, value_name = "TIME", conflicts_with = "id")]
        at: Option<String>,
        /// Don't ask for confirmation
        #[arg(long)]
        yes: bool,
        /// Put the app into maintenance while the restore runs, and back live after
        #[arg(long)]
        maintenance: bool,
    },
    /// Restore a backup (default: the newest) into a throwaway container, check it, and record
    /// the result next to it
    Verify {
        name: Option<String>,
        id: Option<String>,
    },
}

impl BackupCommand {
    pub fn name(&self) -> Option<&str> {
        match self {
            BackupCommand::Boot => None,
            BackupCommand::Now { name }
            | BackupCommand::List { name }
            | BackupCommand::Restore { name, .. }
            | BackupCommand::Verify { name, .. } => name.as_deref(),
        }
    }

    /// A restore puts back one accessory, named.
    pub fn needs_name(&self) -> bool {
        matches!(self, BackupCommand::Restore { .. })
    }
}

#[derive(Debug, Subcommand)]
pub enum LbCommand {
    /// Show each web host as the load balancer sees it: in rotation, healthy, drained
    Details,
    /// Take a web host out of rotation: the load balancer stops sending it new requests and
    /// lets those in flight finish
    Drain {
        /// The web host, as in `[servers]`
        host: String,
    },
    /// Put a drained web host back in rotation, once it passes its health check
    Undrain {
        /// The web host, as in `[servers]`
        host: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Show who holds the deploy lock
    Status,
    /// Take the deploy lock by hand (a migration, an incident), so no deploy starts until
    /// `hoist lock release`
    Acquire {
        /// Why: shown to whoever finds the lock held
        #[arg(short, long, value_name = "MESSAGE")]
        message: String,
    },
    /// Release the deploy lock
    Release,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Start local servers (containers with sshd and their own Docker engine) and a registry
    Up(SandboxUpArgs),
    /// Remove everything a sandbox created
    Down(SandboxDownArgs),
    /// Describe the sandboxes: servers, SSH keys, known_hosts lines, registry
    List(SandboxListArgs),
}

#[derive(Debug, Args)]
pub struct SandboxUpArgs {
    /// How many servers
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=20))]
    pub servers: u8,

    /// Servers with sshd only, no Docker (to try `hoist setup`)
    #[arg(long)]
    pub bare: bool,

    /// Sandbox name (several sandboxes can coexist)
    #[arg(long, default_value = "hoist", value_name = "NAME")]
    pub name: String,

    /// Debian mirror for building the server image [default: the one in /etc/apt]
    #[arg(long, env = "HOIST_SANDBOX_MIRROR", value_name = "URL")]
    pub mirror: Option<String>,
}

#[derive(Debug, Args)]
pub struct SandboxDownArgs {
    /// Sandbox name
    #[arg(long, default_value = "hoist", value_name = "NAME")]
    pub name: String,

    /// Also remove the cached server images (the next `up` rebuilds them, about a minute)
    #[arg(long)]
    pub images: bool,
}

#[derive(Debug, Args)]
pub struct SandboxListArgs {
    /// Only this sandbox
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn destination_is_positional_or_flag() {
        let cli = Cli::try_parse_from(["hoist", "deploy", "staging"]).expect("parses");
        assert!(
            matches!(cli.command, Command::Deploy(DeployArgs { destination: DestinationArg { destination: Some(ref d) }, .. }) if d == "staging")
        );
        let cli = Cli::try_parse_from(["hoist", "-d", "staging", "deploy"]).expect("parses");
        assert_eq!(cli.global.destination.as_deref(), Some("staging"));
        let cli = Cli::try_parse_from(["hoist", "config", "-d", "staging"]).expect("parses");
        assert_eq!(cli.global.destination.as_deref(), Some("staging"));
        let cli =
            Cli::try_parse_from(["hoist", "-d", "prod", "config", "staging"]).expect("parses");
        assert_eq!(cli.global.destination.as_deref(), Some("prod"));
        assert!(
            matches!(cli.command, Command::Config(DestinationArg { destination: Some(ref d) }) if d == "staging")
        );
    }
}
