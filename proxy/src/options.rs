//! The settings of a service, as `deploy` gives them and the state file keeps them: one set of
//! types shared by the command line, the control socket and the state file. Normalising and
//! validating them (host and prefix syntax, flag combinations) happens here too, so the server and
//! the client agree on what a valid deploy is.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::{DeployArgs, RolloutDeployArgs};
use crate::duration::go;

/// How a service is reached and what the proxy does around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceOptions {
    /// Host names routed to the service; empty means the default service (any host).
    pub hosts: Vec<String>,
    /// Path prefixes, normalised to `/x` without a trailing slash; `/` is the root.
    pub path_prefixes: Vec<String>,
    /// Remove the matched prefix before forwarding.
    pub strip_path_prefix: bool,
    /// Serve over HTTPS, with a custom certificate or one from ACME.
    pub tls: bool,
    /// Redirect HTTP to HTTPS when `tls` is on.
    pub tls_redirect: bool,
    /// Custom certificate and key (PEM).
    pub tls_certificate_path: Option<PathBuf>,
    pub tls_private_key_path: Option<PathBuf>,
    /// ACME settings.
    pub tls_acme_directory: Option<String>,
    pub tls_acme_cache_path: Option<PathBuf>,
    pub tls_acme_ca_root: Option<PathBuf>,
    pub tls_acme_eab_kid: Option<String>,
    /// Challenge to answer; none means `run`'s setting, then HTTP-01.
    pub tls_acme_challenge: Option<ChallengeKind>,
    /// Every other host is redirected (301) to this one.
    pub canonical_host: Option<String>,
    /// Directory of `<status>.html` pages overriding the built-in ones.
    pub error_pages: Option<PathBuf>,
    /// How long after a write a client's reads stay on the writers.
    #[serde(with = "go")]
    pub writer_affinity_timeout: Duration,
    /// WebSocket upgrades may go to read targets.
    pub read_target_websockets: bool,
    /// Paths (after prefix stripping) left out of the metrics.
    pub exclude_metrics_paths: Vec<String>,
    /// Header whose value replaces the client address in X-Forwarded-For and logs.
    pub client_ip_header: Option<String>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            path_prefixes: vec!["/".to_owned()],
            strip_path_prefix: true,
            tls: false,
            tls_redirect: true,
            tls_certificate_path: None,
            tls_private_key_path: None,
            tls_acme_directory: None,
            tls_acme_cache_path: None,
            tls_acme_ca_root: None,
            tls_acme_eab_kid: None,
            tls_acme_challenge: None,
            canonical_host: None,
            error_pages: None,
            writer_affinity_timeout: Duration::from_secs(1),
            read_target_websockets: false,
            exclude_metrics_paths: Vec::new(),
            client_ip_header: None,
        }
    }
}

/// The ACME challenge the proxy answers to prove it serves a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum ChallengeKind {
    /// A token served on port 80 under /.well-known/acme-challenge/
    #[serde(rename = "http-01")]
    #[value(name = "http-01")]
    Http01,
    /// A special certificate served on port 443 to the acme-tls/1 protocol
    #[serde(rename = "tls-alpn-01")]
    #[value(name = "tls-alpn-01")]
    TlsAlpn01,
}

impl std::fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        })
    }
}

/// How requests reach the targets of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetOptions {
    pub health_check: HealthCheckOptions,
    /// How long a target has to send its response headers before the client gets a 504.
    #[serde(with = "go")]
    pub target_timeout: Duration,
    pub buffer_requests: bool,
    pub buffer_responses: bool,
    /// Bytes of a buffer kept in memory before the rest spills to a temporary file.
    pub buffer_memory: u64,
    /// Largest request body (413 above it); 0 means unlimited.
    pub max_request_body: u64,
    /// Largest buffered response body (500 above it); 0 means unlimited.
    pub max_response_body: u64,
    /// Trust and extend every client's forwarded headers.
    pub forward_headers: bool,
    /// Peers whose forwarded headers are trusted and extended (a load balancer, a CDN).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub log_request_headers: Vec<String>,
    pub log_response_headers: Vec<String>,
    /// Move the Path of cookies set by a prefixed service below its prefix.
    pub scope_cookie_paths: bool,
    /// Keep a client on its target (the `hoist-target` cookie) while it is healthy.
    pub sticky_sessions: bool,
}

impl Default for TargetOptions {
    fn default() -> Self {
        Self {
            health_check: HealthCheckOptions::default(),
            target_timeout: Duration::from_secs(30),
            buffer_requests: false,
            buffer_responses: false,
            buffer_memory: 1024 * 1024,
            max_request_body: 0,
            max_response_body: 0,
            forward_headers: true,
            trusted_proxies: Vec::new(),
            log_request_headers: Vec::new(),
            log_response_headers: Vec::new(),
            scope_cookie_paths: false,
            sticky_sessions: false,
        }
    }
}

/// How targets are probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthCheckOptions {
    pub path: String,
    #[serde(with = "go")]
    pub interval: Duration,
    #[serde(with = "go")]
    pub timeout: Duration,
    /// Port to probe; 0 means the target's own.
    pub port: u16,
    /// Host header for probes.
    pub host: Option<String>,
    /// Consecutive successes that bring an unhealthy target back.
    pub rise: u32,
    /// Consecutive failures that take a healthy target out of rotation.
    pub fall: u32,
}

impl Default for HealthCheckOptions {
    fn default() -> Self {
        Self {
            path: "/up".to_owned(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            port: 0,
            host: None,
            rise: 2,
            fall: 3,
        }
    }
}

/// How one deploy proceeds; not persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentOptions {
    #[serde(with = "go")]
    pub deploy_timeout: Duration,
    #[serde(with = "go")]
    pub drain_timeout: Duration,
    /// How long upgraded connections (WebSockets) on replaced targets may go on; 0 cuts them at
    /// once, as kamal-proxy does.
    #[serde(with = "go")]
    pub websocket_grace: Duration,
    /// Switch without waiting for health.
    pub force: bool,
}

impl Default for DeploymentOptions {
    fn default() -> Self {
        Self {
            deploy_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            websocket_grace: Duration::ZERO,
            force: false,
        }
    }
}

/// Everything `deploy` sends to the running proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub service: String,
    pub targets: Vec<String>,
    pub read_targets: Vec<String>,
    pub service_options: ServiceOptions,
    pub target_options: TargetOptions,
    pub deployment: DeploymentOptions,
    /// External account binding HMAC key for `tls_acme_eab_kid`; held in memory by the proxy,
    /// never saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_acme_eab_hmac_key: Option<String>,
}

/// Everything `rollout deploy` sends: the service's own options are reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutDeployRequest {
    pub service: String,
    pub targets: Vec<String>,
    pub read_targets: Vec<String>,
    pub deployment: DeploymentOptions,
}

/// Why a deploy's options were refused, in kamal-proxy's words where it has some.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("invalid target `{0}`: use host[:port], such as `web-1:3000` or `10.0.0.5:8080`")]
    InvalidTarget(String),
    #[error("invalid host `{0}`: use a name such as `example.com` or `*.example.com`")]
    InvalidHost(String),
    #[error("invalid path prefix `{0}`: it must start with `/`")]
    InvalidPathPrefix(String),
    #[error("invalid service name `{0}`: use letters, digits, `-`, `_` and `.`")]
    InvalidServiceName(String),
    #[error("TLS settings must be specified on the root path service")]
    TlsNotOnRoot,
    #[error("host must be set when using TLS")]
    TlsRequiresHost,
    #[error("canonical host `{0}` must be one of the service's hosts")]
    CanonicalHostNotInHosts(String),
    #[error("health check path `{0}` must start with `/`")]
    InvalidHealthCheckPath(String),
    #[error("--health-check-rise and --health-check-fall must be at least 1")]
    InvalidThreshold,
    #[error(
        "--tls-on-demand-url is not supported: hoist-proxy gets certificates only for the hosts \
         it is given; list them with --host"
    )]
    OnDemandTlsUnsupported,
}

impl DeployRequest {
    /// Builds the request from `deploy`'s flags, normalised and validated.
    pub fn from_args(args: &DeployArgs) -> Result<Self, OptionsError> {
        if args.tls_on_demand_url.is_some() {
            return Err(OptionsError::OnDemandTlsUnsupported);
        }
        let service_options = ServiceOptions {
            hosts: args.host.clone(),
            path_prefixes: args.path_prefix.clone(),
            strip_path_prefix: args.strip_path_prefix,
            tls: args.tls,
            tls_redirect: args.tls_redirect,
            tls_certificate_path: args.tls_certificate_path.clone(),
            tls_private_key_path: args.tls_private_key_path.clone(),
            tls_acme_directory: match (args.tls_staging, &args.tls_acme_directory) {
                (true, _) => Some(LETS_ENCRYPT_STAGING.to_owned()),
                (false, directory) => directory.clone(),
            },
            tls_acme_cache_path: args.tls_acme_cache_path.clone(),
            tls_acme_ca_root: args.tls_acme_ca_root.clone(),
            tls_acme_eab_kid: args.tls_acme_eab_kid.clone(),
            tls_acme_challenge: args.tls_acme_challenge,
            canonical_host: args.canonical_host.clone(),
            error_pages: args.error_pages.clone(),
            writer_affinity_timeout: args.writer_affinity_timeout,
            read_target_websockets: args.read_target_websockets,
            exclude_metrics_paths: args.exclude_metrics_path.clone(),
            client_ip_header: args.client_ip_header.clone(),
        };
        let target_options = TargetOptions {
            health_check: HealthCheckOptions {
                path: args.health_check_path.clone(),
                interval: args.health_check_interval,
                timeout: args.health_check_timeout,
                port: args.health_check_port,
                host: args.health_check_host.clone(),
                rise: args.health_check_rise,
                fall: args.health_check_fall,
            },
            target_timeout: args.target_timeout,
            buffer_requests: args.buffer_requests,
            buffer_responses: args.buffer_responses,
            buffer_memory: args.buffer_memory,
            max_request_body: args.max_request_body,
            max_response_body: args.max_response_body,
            forward_headers: args
                .forward_headers
                .unwrap_or(!args.tls && args.trusted_proxies.is_empty()),
            trusted_proxies: args.trusted_proxies.clone(),
            log_request_headers: args.log_request_header.clone(),
            log_response_headers: args.log_response_header.clone(),
            scope_cookie_paths: args.scope_cookie_paths,
            sticky_sessions: args.sticky_sessions,
        };
        let mut request = DeployRequest {
            service: args.service.clone(),
            targets: args.target.clone(),
            read_targets: args.read_target.clone(),
            service_options,
            target_options,
            deployment: DeploymentOptions {
                deploy_timeout: args.deploy_timeout,
                drain_timeout: args.drain_timeout,
                websocket_grace: args.websocket_grace,
                force: args.force,
            },
            tls_acme_eab_hmac_key: args
                .tls_acme_eab_kid
                .as_ref()
                .and(args.tls_acme_eab_hmac_key.clone()),
        };
        request.normalize()?;
        Ok(request)
    }

    /// Normalises hosts, prefixes and targets and checks the combinations; the server calls this
    /// again on what it receives.
    pub fn normalize(&mut self) -> Result<(), OptionsError> {
        validate_service_name(&self.service)?;
        normalize_targets(&mut self.targets)?;
        normalize_targets(&mut self.read_targets)?;
        let options = &mut self.service_options;
        for host in &mut options.hosts {
            *host = normalize_host(host)?;
        }
        options.hosts.sort();
        options.hosts.dedup();
        if options.path_prefixes.is_empty() {
            options.path_prefixes.push("/".to_owned());
        }
        for prefix in &mut options.path_prefixes {
            *prefix = normalize_path_prefix(prefix)?;
        }
        options.path_prefixes.sort();
        options.path_prefixes.dedup();
        if options.tls {
            if options.hosts.is_empty() {
                return Err(OptionsError::TlsRequiresHost);
            }
            if !options.path_prefixes.iter().any(|prefix| prefix == "/") {
                return Err(OptionsError::TlsNotOnRoot);
            }
        }
        if let Some(canonical) = &options.canonical_host
            && !options.hosts.iter().any(|host| host == canonical)
        {
            return Err(OptionsError::CanonicalHostNotInHosts(canonical.clone()));
        }
        let health = &self.target_options.health_check;
        if !health.path.starts_with('/') {
            return Err(OptionsError::InvalidHealthCheckPath(health.path.clone()));
        }
        if health.rise == 0 || health.fall == 0 {
            return Err(OptionsError::InvalidThreshold);
        }
        Ok(())
    }
}

impl RolloutDeployRequest {
    pub fn from_args(args: &RolloutDeployArgs) -> Result<Self, OptionsError> {
        let mut request = RolloutDeployRequest {
            service: args.service.clone(),
            targets: args.target.clone(),
            read_targets: args.read_target.clone(),
            deployment: DeploymentOptions {
                deploy_timeout: args.deploy_timeout,
                drain_timeout: args.drain_timeout,
                websocket_grace: args.websocket_grace,
                force: false,
            },
        };
        request.normalize()?;
        Ok(request)
    }

    pub fn normalize(&mut self) -> Result<(), OptionsError> {
        validate_service_name(&self.service)?;
        normalize_targets(&mut self.targets)?;
        normalize_targets(&mut self.read_targets)
    }
}

/// Let's Encrypt's staging directory, for `--tls-staging`.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

fn validate_service_name(name: &str) -> Result<(), OptionsError> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
    if valid {
        Ok(())
    } else {
        Err(OptionsError::InvalidServiceName(name.to_owned()))
    }
}

/// Checks targets the way kamal-proxy does (`^\w[-_.\w+]+(:\d+)?$`), adds port 80 where none is
/// given, and drops duplicates.
fn normalize_targets(targets: &mut Vec<String>) -> Result<(), OptionsError> {
    for target in targets.iter_mut() {
        *target = normalize_target(target)?;
    }
    let mut seen = std::collections::HashSet::new();
    targets.retain(|target| seen.insert(target.clone()));
    Ok(())
}

/// `web-1:3000` stays; `web-1` becomes `web-1:80`.
pub fn normalize_target(target: &str) -> Result<String, OptionsError> {
    let invalid = || OptionsError::InvalidTarget(target.to_owned());
    let (host, port) = match target.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (target, None),
    };
    let word = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_';
    let host_ok = host.len() >= 2
        && host.bytes().next().is_some_and(word)
        && host
            .bytes()
            .all(|byte| word(byte) || b"-.+".contains(&byte));
    if !host_ok {
        return Err(invalid());
    }
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(invalid)?,
        None => 80,
    };
    Ok(format!("{host}:{port}"))
}

/// Lower-cases a host and checks it is a name or a one-level wildcard (`*.example.com`).
pub fn normalize_host(host: &str) -> Result<String, OptionsError> {
    let host = host.trim().to_ascii_lowercase();
    let name = host.strip_prefix("*.").unwrap_or(&host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        });
    if valid {
        Ok(host)
    } else {
        Err(OptionsError::InvalidHost(host))
    }
}

/// `/api/` and `api` become `/api`; `/` stays `/`; repeated slashes collapse.
pub fn normalize_path_prefix(prefix: &str) -> Result<String, OptionsError> {
    let prefix = prefix.trim();
    if prefix.contains(['?', '#', ' ']) {
        return Err(OptionsError::InvalidPathPrefix(prefix.to_owned()));
    }
    let segments: Vec<&str> = prefix.split('/').filter(|part| !part.is_empty()).collect();
    Ok(format!("/{}", segments.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_kamal_proxy_syntax() {
        assert_eq!(normalize_target("web-1:3000").unwrap(), "web-1:3000");
        assert_eq!(normalize_target("web").unwrap(), "web:80");
        assert_eq!(normalize_target("10.0.0.5:8080").unwrap(), "10.0.0.5:8080");
        for bad in [
            "",
            "a",
            "-x:1",
            "http://x:1",
            "x:y",
            "x:0",
            "x:70000",
            "[::1]:80",
            "a b:1",
        ] {
            assert!(normalize_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_and_prefixes_are_normalised() {
        assert_eq!(normalize_host("Example.COM").unwrap(), "example.com");
        assert_eq!(normalize_host("*.example.com").unwrap(), "*.example.com");
        assert!(normalize_host("a..b").is_err());
        assert!(normalize_host("*.*.b").is_err());
        assert!(normalize_host("exa mple").is_err());
        assert_eq!(normalize_path_prefix("/api/").unwrap(), "/api");
        assert_eq!(normalize_path_prefix("api//v1").unwrap(), "/api/v1");
        assert_eq!(normalize_path_prefix("/").unwrap(), "/");
        assert_eq!(normalize_path_prefix("").unwrap(), "/");
        assert!(normalize_path_prefix("/a?b").is_err());
    }

    #[test]
    fn options_round_trip_through_json_with_go_durations() {
        let options = TargetOptions::default();
        let json = serde_json::to_string(&options).unwrap();
        assert!(json.contains(r#""target_timeout":"30s""#), "{json}");
        let back: TargetOptions = serde_json::from_str(&json).unwrap();
        assert_eq!(back, options);
        let partial: ServiceOptions = serde_json::from_str(r#"{"hosts":["a.com"]}"#).unwrap();
        assert_eq!(partial.path_prefixes, ["/"]);
    }
}
