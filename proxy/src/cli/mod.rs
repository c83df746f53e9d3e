//! The hoist-proxy command line: every command and flag, declared with clap derive, where the doc
//! comments are the help text. Names, defaults and syntax follow kamal-proxy's (cobra/pflag) so
//! Kamal can drive hoist-proxy unchanged: `--flag value` and `--flag=value`, lists repeated or
//! comma-separated, Go durations, and Go booleans (`--tls`, `--tls=false`). What each command does
//! lives with that command; validation that needs the running proxy happens there too.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::duration::parse_duration;

mod deploy;
mod run;

pub use deploy::{DeployArgs, EAB_HMAC_KEY_ENV};
pub use run::{ListenerArgs, RunArgs};

/// How values are written, shown below the help of every command that takes flags.
const FLAG_SYNTAX: &str = "Durations use Go syntax: 30s, 1m30s, 500ms, 1h. Boolean flags take an \
                           optional value after `=`: --tls, --tls=true, --tls=false. Lists take \
                           repeated flags or commas: --host a.example --host b.example, or \
                           --host a.example,b.example.";

/// Zero-downtime reverse proxy for hoist deploys.
///
/// `hoist-proxy run` starts the proxy; every other command talks to the running proxy over its
/// control socket. The command line is compatible with kamal-proxy's.
#[derive(Debug, Parser)]
#[command(name = "hoist-proxy", version, args_override_self = true)]
#[command(after_help = FLAG_SYNTAX)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, before or after its name.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Control socket of the running proxy [env: HOIST_PROXY_SOCKET] [default: hoist-proxy.sock
    /// in the state directory]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub socket: Option<PathBuf>,

    /// Directory for routing state and certificates [env: HOIST_PROXY_STATE_DIR] [default:
    /// ~/.config/hoist-proxy (~/.config/kamal-proxy when run as kamal-proxy), or
    /// /var/lib/hoist-proxy without HOME]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        alias = "state-path",
        help_heading = "Global options"
    )]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy server
    #[command(after_help = FLAG_SYNTAX)]
    Run(RunArgs),

    /// Hold the HTTP and HTTPS listening sockets and hand them to each `run --listeners-from`,
    /// so a proxy can be replaced without refusing a connection
    Listen(ListenArgs),

    /// Show the running proxy's version, protocol and process (`--json` for `hoist`)
    Status(ListArgs),

    /// Deploy a service: health-check the new targets, switch traffic to them, drain the old ones
    #[command(after_help = FLAG_SYNTAX)]
    Deploy(Box<DeployArgs>),

    /// Remove a service
    #[command(visible_alias = "rm")]
    Remove(ServiceArgs),

    /// Pause a service: hold new requests until it is resumed
    #[command(after_help = FLAG_SYNTAX)]
    Pause(PauseArgs),

    /// Stop a service: answer its requests with 503 and a maintenance page
    #[command(after_help = FLAG_SYNTAX)]
    Stop(StopArgs),

    /// Resume a paused or stopped service
    Resume(ServiceArgs),

    /// List the services
    #[command(visible_alias = "ls")]
    List(ListArgs),

    /// Send part of a service's traffic to a second set of targets (canary)
    #[command(subcommand)]
    Rollout(RolloutCommand),

    /// Probe a target once, as its health checks do, and exit 1 if it fails (for `hoist`'s
    /// canary watch; needs no running proxy)
    #[command(after_help = FLAG_SYNTAX)]
    Probe(ProbeArgs),

    /// Give each of two directories the files only the other has (hoist's asset bridging:
    /// run in a one-off container with two versions' asset volumes; needs no running proxy)
    MergeAssets(MergeAssetsArgs),

    /// Print the hoist-proxy version
    Version,
}

impl Command {
    /// The command as typed after `hoist-proxy`, for messages: `deploy`, `rollout set`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Run(_) => "run",
            Command::Listen(_) => "listen",
            Command::Status(_) => "status",
            Command::Deploy(_) => "deploy",
            Command::Remove(_) => "remove",
            Command::Pause(_) => "pause",
            Command::Stop(_) => "stop",
            Command::Resume(_) => "resume",
            Command::List(_) => "list",
            Command::Rollout(RolloutCommand::Deploy(_)) => "rollout deploy",
            Command::Rollout(RolloutCommand::Set(_)) => "rollout set",
            Command::Rollout(RolloutCommand::Stop(_)) => "rollout stop",
            Command::Probe(_) => "probe",
            Command::MergeAssets(_) => "merge-assets",
            Command::Version => "version",
        }
    }
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub listen: ListenerArgs,

    /// Sockets per port (SO_REUSEPORT), shared out among the proxy's serving threads [default:
    /// one per CPU]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub listeners: Option<u16>,

    /// Unix socket the proxies fetch the listeners from [default: listeners.sock in the state
    /// directory]
    #[arg(long, value_name = "PATH")]
    pub listeners_socket: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MergeAssetsArgs {
    /// One directory (the old version's assets)
    pub first: std::path::PathBuf,
    /// The other (the new version's)
    pub second: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The target, `HOST[:PORT]`
    #[arg(value_name = "TARGET")]
    pub target: String,

    /// Path to request
    #[arg(long, default_value = "/up")]
    pub path: String,

    /// Time the probe has to answer
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: std::time::Duration,

    /// Port to probe; 0 means the target's port
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub port: u16,

    /// Host header to send
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the services as one JSON array (for `hoist`), not a table
    #[arg(long)]
    pub json: bool,
}

/// A command whose only argument is the service.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Name of the service
    #[arg(value_name = "SERVICE")]
    pub service: String,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Name of the service
    #[arg(value_name = "SERVICE")]
    pub service: String,

    /// How long requests in flight get to finish
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// How long a new request waits for the service to resume before it gets a 504
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub max_pause: Duration,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Name of the service
    #[arg(value_name = "SERVICE")]
    pub service: String,

    /// How long requests in flight get to finish
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Message to show on the maintenance page
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Deploy the rollout targets, with the service's current options
    #[command(after_help = FLAG_SYNTAX)]
    Deploy(RolloutDeployArgs),

    /// Choose which requests go to the rollout targets, by the `kamal-rollout` cookie
    #[command(after_help = FLAG_SYNTAX)]
    Set(RolloutSetArgs),

    /// Send all traffic back to the service's main targets
    Stop(ServiceArgs),
}

#[derive(Debug, Args)]
pub struct RolloutDeployArgs {
    /// Name of the service
    #[arg(value_name = "SERVICE")]
    pub service: String,

    /// Rollout target(s), host[:port]; repeat the flag or separate with commas
    #[arg(long, value_name = "HOST:PORT", required = true, value_delimiter = ',')]
    pub target: Vec<String>,

    /// Read-only rollout target(s) for GET and HEAD requests, host[:port]
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    pub read_target: Vec<String>,

    /// How long the rollout targets have to become healthy
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub deploy_timeout: Duration,

    /// How long requests in flight on replaced rollout targets get to finish
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// How long upgraded connections on replaced rollout targets may go on; 0 cuts them at once
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub websocket_grace: Duration,
}

#[derive(Debug, Args)]
#[command(group = ArgGroup::new("split").args(["percent", "list"]).required(true).multiple(true))]
pub struct RolloutSetArgs {
    /// Name of the service
    #[arg(value_name = "SERVICE")]
    pub service: String,

    /// Percentage of cookie values sent to the rollout targets
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub percent: Option<u8>,

    /// Cookie values always sent to the rollout targets
    #[arg(long, value_name = "VALUE", value_delimiter = ',')]
    pub list: Vec<String>,
}

/// Parses `--trusted-proxies` entries: an IP address (a /32 or /128) or a CIDR range.
pub fn parse_trusted_proxy(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    if let Ok(address) = value.parse::<IpAddr>() {
        return Ok(ipnet::IpNet::from(address));
    }
    value
        .parse::<ipnet::IpNet>()
        .map(|net| net.trunc())
        .map_err(|_| {
            format!("Expected an IP address or a CIDR range such as 10.0.0.0/24, got `{value}`")
        })
}

/// Parses a boolean as Go's `strconv.ParseBool` does, which is what pflag accepts after `=`:
/// `1 t T TRUE true True` and `0 f F FALSE false False`.
pub fn parse_go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("Expected `true` or `false`, got `{value}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hoist-proxy").chain(args.iter().copied()))
    }

    fn deploy(args: &[&str]) -> DeployArgs {
        let args: Vec<&str> = ["deploy", "web"].iter().chain(args).copied().collect();
        match parse(&args).unwrap().command {
            Command::Deploy(deploy) => *deploy,
            other => panic!("expected deploy, got {other:?}"),
        }
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn go_bool_accepts_what_strconv_accepts() {
        for value in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(value), Ok(true), "{value}");
        }
        for value in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(value), Ok(false), "{value}");
        }
        for value in ["", "yes", "no", "tRUE", "on", "2"] {
            assert!(parse_go_bool(value).is_err(), "{value}");
        }
    }

    #[test]
    fn deploy_defaults_match_kamal_proxy() {
        let args = deploy(&["--target", "web-1:3000"]);
        assert_eq!(args.service, "web");
        assert_eq!(args.target, ["web-1:3000"]);
        assert_eq!(args.path_prefix, ["/"]);
        assert!(args.strip_path_prefix);
        assert!(!args.tls);
        assert!(args.tls_redirect);
        assert_eq!(args.deploy_timeout, Duration::from_secs(30));
        assert_eq!(args.drain_timeout, Duration::from_secs(30));
        assert_eq!(args.health_check_path, "/up");
        assert_eq!(args.health_check_interval, Duration::from_secs(1));
        assert_eq!(args.health_check_timeout, Duration::from_secs(5));
        assert_eq!(args.health_check_port, 0);
        assert_eq!(args.target_timeout, Duration::from_secs(30));
        assert_eq!(args.buffer_memory, 1_048_576);
        assert_eq!(args.max_request_body, 0);
        assert_eq!(args.forward_headers, None);
        assert_eq!(args.writer_affinity_timeout, Duration::from_secs(1));
    }

    #[test]
    fn deploy_takes_what_kamal_sends() {
        let args = deploy(&[
            "--target=web-1:3000",
            "--host=a.example.com",
            "--host=b.example.com",
            "--tls",
            "--deploy-timeout=30s",
            "--drain-timeout=1m30s",
            "--health-check-interval=500ms",
            "--buffer-requests",
            "--buffer-responses",
            "--max-request-body=1000",
            "--forward-headers=false",
            "--tls-redirect=false",
            "--log-request-header=Cache-Control,Last-Modified",
            "--log-request-header=User-Agent",
        ]);
        assert_eq!(args.host, ["a.example.com", "b.example.com"]);
        assert!(args.tls);
        assert_eq!(args.drain_timeout, Duration::from_secs(90));
        assert_eq!(args.health_check_interval, Duration::from_millis(500));
        assert!(args.buffer_requests && args.buffer_responses);
        assert_eq!(args.max_request_body, 1000);
        assert_eq!(args.forward_headers, Some(false));
        assert!(!args.tls_redirect);
        assert_eq!(
            args.log_request_header,
            ["Cache-Control", "Last-Modified", "User-Agent"]
        );
    }

    #[test]
    fn lists_take_commas_and_repeats() {
        let args = deploy(&[
            "--target",
            "a:1,b:2",
            "--target",
            "c:3",
            "--read-target=r:4",
        ]);
        assert_eq!(args.target, ["a:1", "b:2", "c:3"]);
        assert_eq!(args.read_target, ["r:4"]);
    }

    #[test]
    fn boolean_value_must_follow_an_equals_sign() {
        // pflag reads `--tls false` as `--tls` plus a second positional argument.
        assert!(parse(&["deploy", "web", "--target", "a:1", "--tls", "false"]).is_err());
        let args = deploy(&["--tls", "--target", "a:1"]);
        assert!(args.tls);
        assert!(!deploy(&["--target", "a:1", "--tls=0"]).tls);
        assert!(parse(&["deploy", "web", "--target", "a:1", "--tls=maybe"]).is_err());
    }

    #[test]
    fn last_occurrence_of_a_single_value_flag_wins() {
        let args = deploy(&[
            "--target",
            "a:1",
            "--tls",
            "--tls=false",
            "--drain-timeout=1s",
            "--drain-timeout=2s",
        ]);
        assert!(!args.tls);
        assert_eq!(args.drain_timeout, Duration::from_secs(2));
    }

    #[test]
    fn deploy_requires_a_target_and_a_service() {
        assert!(parse(&["deploy", "web"]).is_err());
        assert!(parse(&["deploy", "--target", "a:1"]).is_err());
    }

    #[test]
    fn body_limits_need_buffering_like_kamal_proxy() {
        assert!(parse(&["deploy", "web", "--target", "a:1", "--max-request-body=10"]).is_err());
        assert!(parse(&["deploy", "web", "--target", "a:1", "--max-response-body=10"]).is_err());
        assert!(
            parse(&[
                "deploy",
                "web",
                "--target",
                "a:1",
                "--buffer-responses",
                "--max-response-body=10"
            ])
            .is_ok()
        );
    }

    #[test]
    fn custom_certificate_needs_both_files() {
        assert!(
            parse(&[
                "deploy",
                "web",
                "--target",
                "a:1",
                "--tls-certificate-path=c.pem"
            ])
            .is_err()
        );
        let args = deploy(&[
            "--target",
            "a:1",
            "--tls-certificate-path=c.pem",
            "--tls-private-key-path=k.pem",
        ]);
        assert_eq!(args.tls_private_key_path, Some(PathBuf::from("k.pem")));
    }

    #[test]
    fn acme_flags_parse_and_staging_excludes_a_custom_directory() {
        let args = deploy(&[
            "--target=a:1",
            "--tls-acme-directory=https://acme.zerossl.com/v2/DV90",
            "--tls-acme-eab-kid=kid",
            "--tls-acme-eab-hmac-key=key",
            "--tls-acme-ca-root=/etc/ca.pem",
        ]);
        assert_eq!(args.tls_acme_eab_kid.as_deref(), Some("kid"));
        // The HMAC key may come from `run`; without a key id, a key (e.g. from the
        // environment) is ignored rather than refused.
        let kid_only = deploy(&["--target=a:1", "--tls-acme-eab-kid=kid"]);
        assert_eq!(kid_only.tls_acme_eab_hmac_key, None);
        assert!(parse(&["deploy", "web", "--target=a:1", "--tls-acme-eab-hmac-key=k"]).is_ok());
        assert!(
            parse(&[
                "deploy",
                "web",
                "--target=a:1",
                "--tls-staging",
                "--tls-acme-directory=https://x"
            ])
            .is_err()
        );
    }

    #[test]
    fn run_defaults_match_kamal_proxy() {
        let Command::Run(args) = parse(&["run"]).unwrap().command else {
            panic!("expected run");
        };
        assert_eq!(
            (
                args.listen.http_port,
                args.listen.https_port,
                args.metrics_port
            ),
            (80, 443, 0)
        );
        assert_eq!(args.listen.bind, None);
        assert!(!args.http3 && !args.debug);
    }

    #[test]
    fn aliases_and_global_flags() {
        assert!(matches!(
            parse(&["rm", "web"]).unwrap().command,
            Command::Remove(_)
        ));
        assert!(matches!(
            parse(&["ls"]).unwrap().command,
            Command::List(ListArgs { json: false })
        ));
        assert!(matches!(
            parse(&["list", "--json"]).unwrap().command,
            Command::List(ListArgs { json: true })
        ));
        let cli = parse(&["list", "--socket", "/s.sock", "--state-dir=/state"]).unwrap();
        assert_eq!(cli.global.socket, Some(PathBuf::from("/s.sock")));
        assert_eq!(cli.global.state_dir, Some(PathBuf::from("/state")));
        let cli = parse(&["--socket=/t.sock", "ls"]).unwrap();
        assert_eq!(cli.global.socket, Some(PathBuf::from("/t.sock")));
    }

    #[test]
    fn rollout_set_needs_a_percent_or_a_list() {
        assert!(parse(&["rollout", "set", "web"]).is_err());
        assert!(parse(&["rollout", "set", "web", "--percent=101"]).is_err());
        let Command::Rollout(RolloutCommand::Set(args)) =
            parse(&["rollout", "set", "web", "--percent", "10", "--list", "a,b"])
                .unwrap()
                .command
        else {
            panic!("expected rollout set");
        };
        assert_eq!(
            (args.percent, args.list.as_slice()),
            (Some(10), ["a", "b"].map(String::from).as_slice())
        );
    }

    #[test]
    fn names_commands_as_typed() {
        assert_eq!(
            parse(&["rollout", "stop", "web"]).unwrap().command.name(),
            "rollout stop"
        );
        assert_eq!(parse(&["rm", "web"]).unwrap().command.name(), "remove");
    }
}
