//! `hoist-proxy deploy`'s flags, kamal-proxy's plus hoist-proxy's own (`--trusted-proxies`,
//! `--websocket-grace`, rise/fall). They become a `DeployRequest` in `options.rs`.
//!
//! They are also the typed contract with `hoist`: hoist fills a [`DeployArgs`] (starting from
//! [`DeployArgs::new`], clap's own defaults) and runs [`DeployArgs::to_args`], so no flag name or
//! value syntax is written twice, and the round trip is tested here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

use super::{Cli, Command, parse_go_bool, parse_trusted_proxy};
use crate::duration::{format_duration, parse_duration};

/// Where `deploy` (and `run`) read the EAB HMAC key from, off the command line.
pub const EAB_HMAC_KEY_ENV: &str = "HOIST_PROXY_TLS_ACME_EAB_HMAC_KEY";

#[derive(Debug, Clone, PartialEq, Args)]
pub struct DeployArgs {
    /// Name of the service to create or update
    #[arg(value_name = "SERVICE")]
    pub service: String,

    /// Target(s) to send traffic to, host[:port]; repeat the flag or separate with commas
    #[arg(long, value_name = "HOST:PORT", required = true, value_delimiter = ',')]
    pub target: Vec<String>,

    /// Read-only target(s) for GET and HEAD requests, host[:port]
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    pub read_target: Vec<String>,

    /// Host name(s) to route to this service; none means any host (`*.example.com` allowed)
    #[arg(long, value_name = "HOST", value_delimiter = ',')]
    pub host: Vec<String>,

    /// Serve the service below these path prefix(es)
    #[arg(long, value_name = "PATH", value_delimiter = ',', default_value = "/")]
    pub path_prefix: Vec<String>,

    /// With --path-prefix, strip the prefix from the request before forwarding it
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "true",
        value_parser = parse_go_bool
    )]
    pub strip_path_prefix: bool,

    /// Serve the service over HTTPS with automatic certificates (requires --host)
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool
    )]
    pub tls: bool,

    /// Use the Let's Encrypt staging environment for certificates
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool,
        conflicts_with = "tls_acme_directory"
    )]
    pub tls_staging: bool,

    /// Custom TLS certificate (PEM) instead of an automatic one; needs --tls-private-key-path
    #[arg(long, value_name = "PATH", requires = "tls_private_key_path")]
    pub tls_certificate_path: Option<PathBuf>,

    /// Private key (PEM) of the custom TLS certificate; needs --tls-certificate-path
    #[arg(long, value_name = "PATH", requires = "tls_certificate_path")]
    pub tls_private_key_path: Option<PathBuf>,

    /// Redirect HTTP requests to HTTPS (with --tls)
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "true",
        value_parser = parse_go_bool
    )]
    pub tls_redirect: bool,

    /// Where to keep ACME accounts and certificates [default: certs in the state directory]
    #[arg(long, value_name = "DIR")]
    pub tls_acme_cache_path: Option<PathBuf>,

    /// ACME directory to get certificates from, e.g. ZeroSSL's [default: Let's Encrypt]
    #[arg(long, value_name = "URL")]
    pub tls_acme_directory: Option<String>,

    /// External account binding key id, for ACME servers that require one; its HMAC key comes
    /// with this deploy or from `run`
    #[arg(long, value_name = "KID")]
    pub tls_acme_eab_kid: Option<String>,

    /// External account binding HMAC key (base64url) for --tls-acme-eab-kid; prefer the
    /// environment variable, since command lines are visible to other processes (ignored
    /// without a key id: the container's environment may carry it for `run`)
    #[arg(
        long,
        value_name = "KEY",
        env = EAB_HMAC_KEY_ENV,
        hide_env_values = true
    )]
    pub tls_acme_eab_hmac_key: Option<String>,

    /// CA certificate (PEM) to trust for a private ACME server, e.g. step-ca or Pebble
    #[arg(long, value_name = "PATH")]
    pub tls_acme_ca_root: Option<PathBuf>,

    /// ACME challenge to answer: http-01 (port 80) or tls-alpn-01 (port 443) [default: run's
    /// --tls-acme-challenge, then http-01]
    #[arg(long, value_name = "TYPE")]
    pub tls_acme_challenge: Option<crate::options::ChallengeKind>,

    /// Not supported (kamal-proxy's on-demand TLS): list the service's hosts with --host;
    /// giving it is an error
    #[arg(long, value_name = "URL")]
    pub tls_on_demand_url: Option<String>,

    /// Redirect every other host to this one (must be one of --host)
    #[arg(long, value_name = "HOST")]
    pub canonical_host: Option<String>,

    /// How long the new targets have to become healthy
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub deploy_timeout: Duration,

    /// How long requests in flight on the old targets get to finish
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Switch to the new targets without waiting for them to become healthy; they get no
    /// traffic until a health check passes
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool
    )]
    pub force: bool,

    /// Path to probe for health; a 2xx answer means healthy
    #[arg(long, value_name = "PATH", default_value = "/up")]
    pub health_check_path: String,

    /// Time between health checks
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub health_check_interval: Duration,

    /// Time each health check has to answer
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub health_check_timeout: Duration,

    /// Port to probe for health; 0 means the target's port
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub health_check_port: u16,

    /// Host header to send with health checks
    #[arg(long, value_name = "HOST")]
    pub health_check_host: Option<String>,

    /// Consecutive passing checks that bring an unhealthy target back into rotation
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub health_check_rise: u32,

    /// Consecutive failing checks that take a healthy target out of rotation (with several
    /// targets; a lone target is never taken out)
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub health_check_fall: u32,

    /// How long WebSocket and other upgraded connections on the old targets may go on after the
    /// switch; 0 cuts them at once, as kamal-proxy does
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub websocket_grace: Duration,

    /// How long a target has to start its response before the client gets a 504
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub target_timeout: Duration,

    /// Read whole request bodies before forwarding them
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool
    )]
    pub buffer_requests: bool,

    /// Read whole responses before sending them to the client
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool
    )]
    pub buffer_responses: bool,

    /// Bytes of each buffer kept in memory before the rest spills to a temporary file
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub buffer_memory: u64,

    /// Largest request body in bytes, answered with 413 above it; 0 means unlimited (needs
    /// --buffer-requests)
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 0,
        requires = "buffer_requests"
    )]
    pub max_request_body: u64,

    /// Largest response body in bytes; 0 means unlimited (needs --buffer-responses)
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 0,
        requires = "buffer_responses"
    )]
    pub max_response_body: u64,

    /// Trust every client's forwarded headers (Forwarded, X-Forwarded-*, X-Real-IP) and extend
    /// them [default: true, false with --tls or --trusted-proxies]
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_go_bool
    )]
    pub forward_headers: Option<bool>,

    /// Peers whose forwarded headers (Forwarded, X-Forwarded-*, X-Real-IP) are kept and
    /// appended to: IP addresses or CIDR ranges, such as a load balancer's; from anyone else
    /// they are removed and X-Forwarded-For/-Proto/-Host set fresh. Giving any turns the
    /// --forward-headers default off
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = parse_trusted_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Header carrying the client's address (e.g. True-Client-IP), copied into X-Forwarded-For
    #[arg(long, value_name = "HEADER")]
    pub client_ip_header: Option<String>,

    /// Request header(s) to add to the request log as `req_<name>`
    #[arg(long, value_name = "HEADER", value_delimiter = ',')]
    pub log_request_header: Vec<String>,

    /// Response header(s) to add to the request log as `resp_<name>`
    #[arg(long, value_name = "HEADER", value_delimiter = ',')]
    pub log_response_header: Vec<String>,

    /// Path(s) left out of the Prometheus metrics (still logged)
    #[arg(long, value_name = "PATH", value_delimiter = ',')]
    pub exclude_metrics_path: Vec<String>,

    /// Directory of custom error pages named `<status>.html`
    #[arg(long, value_name = "DIR")]
    pub error_pages: Option<PathBuf>,

    /// With --path-prefix, move the Path of cookies the service sets below the prefix
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool
    )]
    pub scope_cookie_paths: bool,

    /// Keep each client on the target that first answered it (the `hoist-target` cookie), while
    /// that target is healthy
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool
    )]
    pub sticky_sessions: bool,

    /// How long after a write a client's reads keep going to the writer targets
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub writer_affinity_timeout: Duration,

    /// Let WebSocket upgrades go to read targets
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool
    )]
    pub read_target_websockets: bool,
}

impl DeployArgs {
    /// `deploy SERVICE --target TARGETS` with every other flag at its default, as clap parses
    /// it (the EAB HMAC key is not read from this process's environment).
    pub fn new(service: &str, targets: &[String]) -> Result<DeployArgs, clap::Error> {
        let target = format!("--target={}", targets.join(","));
        let cli =
            <Cli as clap::Parser>::try_parse_from(["hoist-proxy", "deploy", service, &target])?;
        match cli.command {
            Command::Deploy(args) => Ok(DeployArgs {
                tls_acme_eab_hmac_key: None,
                ..*args
            }),
            _ => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
        }
    }

    /// The command line that parses back into these flags: `hoist-proxy deploy SERVICE
    /// --target …`, then each flag whose value differs from its default. The EAB HMAC key is
    /// never written: command lines are visible to other processes, so it goes in the
    /// environment as `HOIST_PROXY_TLS_ACME_EAB_HMAC_KEY`.
    pub fn to_args(&self) -> Result<Vec<String>, clap::Error> {
        let defaults = DeployArgs::new(&self.service, &self.target)?;
        let mut args: Vec<String> = vec![
            "hoist-proxy".into(),
            "deploy".into(),
            self.service.clone(),
            format!("--target={}", self.target.join(",")),
        ];
        let mut flag = |name: &str, value: String| args.push(format!("--{name}={value}"));
        let list = |values: &[String]| values.join(",");
        macro_rules! changed {
            ($field:ident, $name:literal, $render:expr) => {
                if self.$field != defaults.$field {
                    #[allow(clippy::redundant_closure_call)]
                    flag($name, ($render)(&self.$field));
                }
            };
        }
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let path = |value: &Option<std::path::PathBuf>| {
            value
                .as_ref()
                .map(|path| path.display().to_string())
                .unwrap_or_default()
        };
        let boolean = |value: &bool| value.to_string();
        let duration = |value: &Duration| format_duration(*value);
        let number = |value: &u64| value.to_string();
        changed!(read_target, "read-target", |v: &Vec<String>| list(v));
        changed!(host, "host", |v: &Vec<String>| list(v));
        changed!(path_prefix, "path-prefix", |v: &Vec<String>| list(v));
        changed!(strip_path_prefix, "strip-path-prefix", boolean);
        changed!(tls, "tls", boolean);
        changed!(tls_staging, "tls-staging", boolean);
        changed!(tls_certificate_path, "tls-certificate-path", path);
        changed!(tls_private_key_path, "tls-private-key-path", path);
        changed!(tls_redirect, "tls-redirect", boolean);
        changed!(tls_acme_cache_path, "tls-acme-cache-path", path);
        changed!(tls_acme_directory, "tls-acme-directory", text);
        changed!(tls_acme_eab_kid, "tls-acme-eab-kid", text);
        changed!(tls_acme_ca_root, "tls-acme-ca-root", path);
        changed!(tls_acme_challenge, "tls-acme-challenge", |v: &Option<
            crate::options::ChallengeKind,
        >| v
            .map(|kind| kind.to_string())
            .unwrap_or_default());
        changed!(tls_on_demand_url, "tls-on-demand-url", text);
        changed!(canonical_host, "canonical-host", text);
        changed!(deploy_timeout, "deploy-timeout", duration);
        changed!(drain_timeout, "drain-timeout", duration);
        changed!(force, "force", boolean);
        changed!(health_check_path, "health-check-path", |v: &String| v
            .clone());
        changed!(health_check_interval, "health-check-interval", duration);
        changed!(health_check_timeout, "health-check-timeout", duration);
        changed!(health_check_port, "health-check-port", |v: &u16| v
            .to_string());
        changed!(health_check_host, "health-check-host", text);
        changed!(health_check_rise, "health-check-rise", |v: &u32| v
            .to_string());
        changed!(health_check_fall, "health-check-fall", |v: &u32| v
            .to_string());
        changed!(websocket_grace, "websocket-grace", duration);
        changed!(target_timeout, "target-timeout", duration);
        changed!(buffer_requests, "buffer-requests", boolean);
        changed!(buffer_responses, "buffer-responses", boolean);
        changed!(buffer_memory, "buffer-memory", number);
        changed!(max_request_body, "max-request-body", number);
        changed!(max_response_body, "max-response-body", number);
        changed!(forward_headers, "forward-headers", |v: &Option<bool>| v
            .map(|v| v.to_string())
            .unwrap_or_default());
        changed!(trusted_proxies, "trusted-proxies", |v: &Vec<
            ipnet::IpNet,
        >| v
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","));
        changed!(client_ip_header, "client-ip-header", text);
        changed!(log_request_header, "log-request-header", |v: &Vec<
            String,
        >| list(v));
        changed!(log_response_header, "log-response-header", |v: &Vec<
            String,
        >| list(
            v
        ));
        changed!(exclude_metrics_path, "exclude-metrics-path", |v: &Vec<
            String,
        >| {
            list(v)
        });
        changed!(error_pages, "error-pages", path);
        changed!(scope_cookie_paths, "scope-cookie-paths", boolean);
        changed!(sticky_sessions, "sticky-sessions", boolean);
        changed!(writer_affinity_timeout, "writer-affinity-timeout", duration);
        changed!(read_target_websockets, "read-target-websockets", boolean);
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[String]) -> DeployArgs {
        let cli = <Cli as clap::Parser>::try_parse_from(args).expect("parses");
        match cli.command {
            Command::Deploy(args) => DeployArgs {
                tls_acme_eab_hmac_key: None,
                ..*args
            },
            other => panic!("not deploy: {}", other.name()),
        }
    }

    #[test]
    fn defaults_write_only_the_service_and_targets() {
        let args = DeployArgs::new("a-web", &["abc:3000".into()]).expect("defaults");
        let argv = args.to_args().expect("argv");
        assert_eq!(
            argv,
            ["hoist-proxy", "deploy", "a-web", "--target=abc:3000"]
        );
        assert_eq!(parse(&argv), args);
    }

    #[test]
    fn every_flag_set_away_from_its_default_parses_back_to_the_same_flags() {
        let mut args =
            DeployArgs::new("a-web", &["abc:3000".into(), "def:3000".into()]).expect("defaults");
        args.read_target = vec!["r1:80".into()];
        args.host = vec!["a.example.com".into(), "*.b.example.com".into()];
        args.path_prefix = vec!["/api".into(), "/v2".into()];
        args.strip_path_prefix = false;
        args.tls = true;
        args.tls_redirect = false;
        args.tls_acme_cache_path = Some("/state/acme".into());
        args.tls_acme_directory = Some("https://acme.example/dir".into());
        args.tls_acme_eab_kid = Some("kid".into());
        args.tls_acme_ca_root = Some("/ca.pem".into());
        args.tls_acme_challenge = Some(crate::options::ChallengeKind::TlsAlpn01);
        args.canonical_host = Some("a.example.com".into());
        args.deploy_timeout = Duration::from_millis(1500);
        args.drain_timeout = Duration::from_secs(90);
        args.force = true;
        args.health_check_path = "/health".into();
        args.health_check_interval = Duration::from_millis(250);
        args.health_check_timeout = Duration::from_secs(2);
        args.health_check_port = 8080;
        args.health_check_host = Some("internal".into());
        args.health_check_rise = 1;
        args.health_check_fall = 5;
        args.websocket_grace = Duration::from_secs(3);
        args.target_timeout = Duration::from_secs(120);
        args.buffer_requests = true;
        args.buffer_responses = true;
        args.buffer_memory = 4096;
        args.max_request_body = 104_857_600;
        args.max_response_body = 7;
        args.forward_headers = Some(false);
        args.trusted_proxies = vec![
            "10.0.0.5/32".parse().expect("net"),
            "2001:db8::/32".parse().expect("net"),
        ];
        args.client_ip_header = Some("True-Client-IP".into());
        args.log_request_header = vec!["X-Request-Id".into()];
        args.log_response_header = vec!["X-Runtime".into()];
        args.exclude_metrics_path = vec!["/up".into()];
        args.error_pages = Some("/pages".into());
        args.scope_cookie_paths = true;
        args.sticky_sessions = true;
        args.writer_affinity_timeout = Duration::from_secs(5);
        args.read_target_websockets = true;
        let argv = args.to_args().expect("argv");
        assert_eq!(parse(&argv), args, "{argv:?}");
        // Staging instead of a directory (they conflict), and the EAB key never on the line.
        args.tls_acme_directory = None;
        args.tls_staging = true;
        args.tls_acme_eab_hmac_key = Some("secret-hmac".into());
        let argv = args.to_args().expect("argv");
        assert!(
            !argv.iter().any(|arg| arg.contains("secret-hmac")),
            "{argv:?}"
        );
        args.tls_acme_eab_hmac_key = None;
        assert_eq!(parse(&argv), args, "{argv:?}");
    }
}
