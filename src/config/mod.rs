//! The configuration hoist runs with: deploy.toml and its destination overlay, loaded, checked
//! and resolved into [`Config`] with every default applied. This file holds the public types and
//! their queries; reading and merging files is load.rs, defaults and cross-key checks resolve.rs,
//! the file format schema.rs and values.rs, error wording error.rs, key locations locate.rs.
//! Secret values are not here: the config only names them (see crate::secrets).

mod backup;
mod container;
mod error;
mod load;
mod loadbalancer;
mod locate;
mod options;
mod proxy;
mod resolve;
mod schema;
mod usage;
mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

pub use backup::{AgentConfig, BackupConfig};
pub use container::ContainerSettings;
pub use error::{ConfigError, did_you_mean};
pub use load::{destination, load};
pub use locate::{Location, display_path};
pub use options::{Arch, BootLimit, DockerPackages, HostKeyChecking, JumpHost, PublishedPort};
pub use values::{check_env_name, check_name};
#[allow(
    unused_imports,
    reason = "public API for the deploy commands, which are not wired yet"
)]
pub use values::{format_duration, parse_duration};

use values::{serialize_duration, serialize_optional_duration};

/// Everything deploy.toml (merged with `deploy.<destination>.toml`) says, defaults applied.
/// Paths are absolute.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Directory of deploy.toml; relative paths in it resolve against this.
    #[serde(skip)]
    pub root: PathBuf,
    /// Files read, in merge order.
    #[serde(skip)]
    pub files: Vec<PathBuf>,
    #[serde(skip)]
    pub destination: Option<String>,
    /// `-H`/`--skip-hooks` on the command line: no hook runs.
    #[serde(skip)]
    pub skip_hooks: bool,
    pub service: String,
    pub image: String,
    pub retain_containers: u32,
    /// The role booted first, as a barrier, and whose first host holds the deploy lock:
    /// `primary_role`, else `web` if there is such a role, else the first role.
    pub primary_role: String,
    pub hooks_path: PathBuf,
    /// The secrets file (`.hoist/secrets`); `<it>.<destination>` goes over it.
    pub secrets_path: PathBuf,
    /// A directory of `<status>.html` pages hoist-proxy answers with for this app (502, 503
    /// maintenance, …), instead of its built-in ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_pages_path: Option<PathBuf>,
    /// The oldest hoist this configuration is for; an older one refuses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_version: Option<String>,
    pub registry: RegistryConfig,
    #[serde(rename = "servers")]
    pub roles: BTreeMap<String, RoleConfig>,
    pub proxy: ProxyConfig,
    pub env: EnvConfig,
    pub ssh: SshConfig,
    pub builder: BuilderConfig,
    pub boot: BootConfig,
    pub accessories: BTreeMap<String, AccessoryConfig>,
    /// `[env.tags.<tag>]`: env for the hosts a role tags so.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env_tags: BTreeMap<String, EnvConfig>,
    /// `[loadbalancer]`: hoist-proxy on its own host in front of every web host.
    pub loadbalancer: Option<LoadBalancerConfig>,
    /// `[backup]`'s own keys (the bucket keys are resolved into each accessory's backup).
    pub backup: AgentConfig,
    pub setup: SetupConfig,
    pub deploy: DeployConfig,
    /// Every command needs a destination (`-d staging`): none is refused.
    pub require_destination: bool,
    /// `[aliases]`: `hoist NAME ARGS...` runs `hoist <its words> ARGS...`.
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// `[deploy]`: what a deploy does besides switching.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeployConfig {
    /// Run once per deploy on the primary host, in a one-off container of the new version with
    /// the primary role's environment, after the pull and before any switch (migrations).
    pub release_command: Option<Vec<String>>,
}

/// `[setup]`: how `hoist setup` prepares a fresh server.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SetupConfig {
    pub docker: DockerPackages,
    /// Enable ufw with only SSH, 80 and 443 open.
    pub firewall: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegistryConfig {
    pub server: String,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleConfig {
    pub hosts: Vec<String>,
    /// Runs behind hoist-proxy (default: the role named `web`).
    pub proxy: bool,
    pub cmd: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// This role's own `[servers.<role>.env]`; [`Config::role_env`] merges it with `[env]`.
    pub env: EnvConfig,
    /// Host → its tags: `[env.tags.<tag>]` goes over the role's env on that host.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, Vec<String>>,
    /// Volumes, options, logging, stop timeout and readiness delay: the root's with the
    /// role's over them.
    #[serde(flatten)]
    pub container: ContainerSettings,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyConfig {
    /// The hoist-proxy image started as the `hoist-proxy` container.
    pub image: String,
    pub hosts: Vec<String>,
    pub app_port: u16,
    pub tls: bool,
    #[serde(serialize_with = "serialize_duration")]
    pub deploy_timeout: Duration,
    #[serde(serialize_with = "serialize_duration")]
    pub drain_timeout: Duration,
    #[serde(serialize_with = "serialize_duration")]
    pub response_timeout: Duration,
    /// Trust every client's forwarded headers (kamal-proxy's meaning); off by default.
    pub forward_headers: bool,
    /// Peers (CIDR ranges) whose forwarded headers are kept and appended to: a load balancer,
    /// a CDN.
    pub trusted_proxies: Vec<String>,
    /// Paths the app is routed by within its hosts (empty: every path).
    pub path_prefixes: Vec<String>,
    /// Remove the matched prefix before the request reaches the app (default true).
    pub strip_path_prefix: bool,
    pub healthcheck: HealthcheckConfig,
    pub buffering: BufferingConfig,
    pub acme: AcmeConfig,
    /// Request and response headers shown in the proxy's request log (`[proxy.logging]`).
    pub log_request_headers: Vec<String>,
    pub log_response_headers: Vec<String>,
    /// The app's own certificate (`ssl_certificate` / `ssl_private_key`), instead of ACME.
    pub certificate: Option<CertificateSecrets>,
}

/// The secrets holding a custom certificate chain and its private key, both PEM.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateSecrets {
    pub certificate: SecretRef,
    pub private_key: SecretRef,
}

/// Where `proxy.tls` certificates come from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AcmeConfig {
    pub directory: AcmeDirectory,
    /// `None`: the proxy's default (HTTP-01).
    pub challenge: Option<hoist_proxy::options::ChallengeKind>,
    pub eab_kid: Option<String>,
    pub eab_hmac_key: Option<SecretRef>,
    /// A private ACME CA's root certificate (PEM) on this machine, absolute.
    pub ca_root: Option<PathBuf>,
}

/// `[loadbalancer]`: the one public entry. Its hoist-proxy terminates TLS (`proxy.tls`,
/// `[proxy.acme]`) and balances over every web host's proxy, which then serves plain HTTP and
/// trusts only the LB's forwarded headers.
#[derive(Debug, Clone, Serialize)]
pub struct LoadBalancerConfig {
    pub host: String,
    /// The LB's address as the web hosts see its connections (default: `host`, when that is an
    /// IP address).
    pub private_address: std::net::IpAddr,
    /// Where the LB reaches each web host, when not at its `[servers]` address.
    pub web_addresses: BTreeMap<String, String>,
    /// Keep each client on the web host that first answered it (a cookie), while healthy.
    pub sticky: bool,
}

impl LoadBalancerConfig {
    /// The address the LB reaches web host `host` on.
    pub fn web_address<'a>(&'a self, host: &'a str) -> &'a str {
        self.web_addresses.get(host).map_or(host, String::as_str)
    }
}

/// An ACME directory: Let's Encrypt's (production or staging) or any other by URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcmeDirectory {
    #[default]
    Letsencrypt,
    LetsencryptStaging,
    #[serde(untagged)]
    Url(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthcheckConfig {
    pub path: String,
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Port probed instead of `app_port` (an admin or metrics listener).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Host header of the probe, for an app that checks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BufferingConfig {
    pub requests: bool,
    pub responses: bool,
    /// Bytes of each buffer kept in memory.
    pub memory: u64,
    /// Largest request body in bytes; 0 = unlimited (default 100 MB).
    pub max_request_body: u64,
    /// Largest response body in bytes; 0 = unlimited.
    pub max_response_body: u64,
}

/// Environment of a container: plain values and the names of secrets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EnvConfig {
    pub clear: BTreeMap<String, String>,
    pub secret: Vec<SecretRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SshConfig {
    pub user: String,
    pub port: u16,
    pub proxy_jump: Option<JumpHost>,
    /// Key files, `~` expanded; empty = the agent, then the default key files.
    pub keys: Vec<PathBuf>,
    pub known_hosts: PathBuf,
    pub host_key_checking: HostKeyChecking,
    #[serde(serialize_with = "serialize_duration")]
    pub connect_timeout: Duration,
    /// `None` when written "0s".
    #[serde(serialize_with = "serialize_optional_duration")]
    pub keepalive: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuilderConfig {
    /// Relative to `context`, as written.
    pub dockerfile: PathBuf,
    /// Absolute.
    pub context: PathBuf,
    pub args: BTreeMap<String, String>,
    pub secrets: Vec<SecretRef>,
    pub target: Option<String>,
    pub arch: Vec<Arch>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BootConfig {
    /// `None` = every host at once.
    pub limit: Option<BootLimit>,
    #[serde(serialize_with = "serialize_duration")]
    pub wait: Duration,
    /// Switch the roles other than the primary one at the same time instead of one by one.
    pub parallel_roles: bool,
    /// Put every host already switched back on its previous version when a host fails.
    pub rollback: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccessoryConfig {
    pub image: String,
    /// `host` or `hosts`, normalised to a list.
    pub hosts: Vec<String>,
    pub cmd: Option<String>,
    pub volumes: Vec<String>,
    pub port: Option<PublishedPort>,
    pub env: EnvConfig,
    /// `[accessories.NAME.backup]`, with `[backup]`'s defaults applied.
    pub backup: Option<BackupConfig>,
}

/// The name of a secret, and where the configuration names it (for "not defined" errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub name: String,
    pub location: Location,
}

/// Serialized as the bare name: that is what deploy.toml holds.
impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl Config {
    /// The environment of a role's containers: `[env]` with `[servers.<role>.env]` over it
    /// (its `clear` keys win, its `secret` names are added).
    #[allow(
        dead_code,
        reason = "public API for the deploy commands, which are not wired yet"
    )]
    pub fn role_env(&self, role: &str) -> EnvConfig {
        let mut env = self.env.clone();
        if let Some(role) = self.roles.get(role) {
            merge_env(&mut env, &role.env);
        }
        env
    }

    /// [`Config::role_env`] on `host`, with the env of each tag the role gives that host over
    /// it, in the order the tags are listed.
    pub fn host_env(&self, role: &str, host: &str) -> EnvConfig {
        let mut env = self.role_env(role);
        let tags = self.roles.get(role).and_then(|role| role.tags.get(host));
        for tag in tags.into_iter().flatten() {
            if let Some(tagged) = self.env_tags.get(tag) {
                merge_env(&mut env, tagged);
            }
        }
        env
    }

    /// Every secret the configuration names, each name once (at its first mention): registry
    /// password, `[env]`, roles' env, builder secrets, accessories' env, backup keys.
    pub fn secret_refs(&self) -> Vec<&SecretRef> {
        let mut refs: Vec<&SecretRef> = Vec::new();
        let all = self
            .registry
            .password
            .iter()
            .chain(&self.env.secret)
            .chain(self.roles.values().flat_map(|role| &role.env.secret))
            .chain(self.env_tags.values().flat_map(|env| &env.secret))
            .chain(&self.builder.secrets)
            .chain(&self.proxy.acme.eab_hmac_key)
            .chain(
                self.proxy
                    .certificate
                    .iter()
                    .flat_map(|pair| [&pair.certificate, &pair.private_key]),
            )
            .chain(self.accessories.values().flat_map(|acc| &acc.env.secret))
            .chain(
                self.accessories
                    .values()
                    .filter_map(|acc| acc.backup.as_ref())
                    .flat_map(|backup| backup.secret_refs()),
            );
        for secret in all {
            if !refs.iter().any(|known| known.name == secret.name) {
                refs.push(secret);
            }
        }
        refs
    }

    /// Whether a role behind the proxy runs on `host`.
    pub fn behind_proxy(&self, host: &str) -> bool {
        self.roles
            .values()
            .any(|role| role.proxy && role.hosts.iter().any(|h| h == host))
    }

    /// Whether hoist-proxy runs on `host`: a role behind it, or the load balancer.
    pub fn runs_proxy(&self, host: &str) -> bool {
        self.behind_proxy(host) || self.loadbalancer.as_ref().is_some_and(|lb| lb.host == host)
    }

    /// Every host: roles' (in role order), then accessories', then the load balancer; each
    /// once, in that order.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        let all = self
            .roles
            .values()
            .flat_map(|role| &role.hosts)
            .chain(self.accessories.values().flat_map(|acc| &acc.hosts))
            .chain(self.loadbalancer.iter().map(|lb| &lb.host));
        for host in all {
            if !hosts.contains(host) {
                hosts.push(host.clone());
            }
        }
        hosts
    }

    /// The merged configuration as TOML, defaults included (empty tables and lists left out),
    /// for `hoist config`. Secrets appear by name only: the configuration holds no values.
    pub fn to_toml(&self) -> String {
        let files: Vec<String> = self.files.iter().map(|file| display_path(file)).collect();
        let body = toml::Table::try_from(self)
            .map(|mut table| {
                prune_empty(&mut table);
                table
            })
            .and_then(|table| toml::to_string(&table))
            .unwrap_or_else(|err| format!("# Failed to render the configuration: {err}\n"));
        format!(
            "# hoist configuration merged from {}, defaults included\n\n{body}",
            files.join(" + ")
        )
    }
}

/// Drop empty tables and arrays, innermost first.
fn prune_empty(table: &mut toml::Table) {
    for (_, value) in table.iter_mut() {
        if let toml::Value::Table(inner) = value {
            prune_empty(inner);
        }
    }
    table.retain(|_, value| match value {
        toml::Value::Table(inner) => !inner.is_empty(),
        toml::Value::Array(items) => !items.is_empty(),
        _ => true,
    });
}

/// Overlay `over` onto `env`: `clear` keys replace, `secret` names are added once.
fn merge_env(env: &mut EnvConfig, over: &EnvConfig) {
    env.clear
        .extend(over.clear.iter().map(|(k, v)| (k.clone(), v.clone())));
    for secret in &over.secret {
        if !env.secret.iter().any(|known| known.name == secret.name) {
            env.secret.push(secret.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn reference_example_loads_with_its_values() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "deploy.toml",
            include_str!("../../deploy.toml.example"),
        );
        let config = load(Some(&dir.path().join("deploy.toml")), None).expect("loads");
        assert_eq!(config.service, "hello");
        assert_eq!(config.proxy.app_port, 3000);
        assert!(config.proxy.tls && !config.proxy.forward_headers);
        assert_eq!(
            config.proxy.trusted_proxies,
            ["10.0.0.5/32", "10.0.0.0/24", "2001:db8::/32"]
        );
        assert_eq!(config.proxy.buffering.max_request_body, 104_857_600);
        assert_eq!(config.boot.limit, Some(BootLimit::Count(1)));
        assert_eq!(config.boot.wait, Duration::from_secs(10));
        assert_eq!(config.accessories["db"].hosts, ["203.0.113.12"]);
        assert_eq!(config.ssh.keepalive, Some(Duration::from_secs(30)));
        assert_eq!(config.builder.context, dir.path());
        assert_eq!(config.hooks_path, dir.path().join("hooks"));
        assert!(config.roles["web"].proxy && !config.roles["jobs"].proxy);
        assert_eq!(
            config.roles["web"].container.asset_path.as_deref(),
            Some("/rails/public/assets")
        );
        assert_eq!(
            config.roles["jobs"].container.asset_path, None,
            "a root asset_path is for the roles behind the proxy"
        );
        let lb = config.loadbalancer.as_ref().expect("[loadbalancer]");
        assert_eq!(lb.private_address.to_string(), "10.0.0.2");
        assert_eq!(lb.web_address("203.0.113.11"), "10.0.0.11");
    }

    #[test]
    fn defaults_apply_to_a_minimal_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "deploy.toml",
            "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h1\"]\n[servers.jobs]\nhosts = [\"h2\"]\n",
        );
        let config = load(Some(&dir.path().join("deploy.toml")), None).expect("loads");
        assert_eq!(config.retain_containers, 5);
        assert_eq!(config.registry.server, "ghcr.io");
        assert_eq!(config.proxy.app_port, 80);
        assert!(!config.proxy.forward_headers, "false, with or without TLS");
        assert!(config.proxy.trusted_proxies.is_empty());
        assert_eq!(config.proxy.buffering.max_request_body, 104_857_600);
        assert_eq!(config.proxy.deploy_timeout, Duration::from_secs(30));
        assert_eq!(config.proxy.healthcheck.path, "/up");
        assert_eq!(config.proxy.buffering.memory, 1_048_576);
        assert_eq!(config.ssh.user, "root");
        assert_eq!(config.ssh.port, 22);
        assert_eq!(config.ssh.host_key_checking, HostKeyChecking::Strict);
        assert_eq!(config.ssh.connect_timeout, Duration::from_secs(10));
        assert_eq!(config.builder.arch, [Arch::Amd64]);
        assert_eq!(config.builder.dockerfile, PathBuf::from("Dockerfile"));
        assert_eq!(config.boot.limit, None);
        assert!(config.boot.rollback && !config.boot.parallel_roles);
        assert_eq!(config.primary_role, "web");
        assert!(config.roles["web"].proxy && !config.roles["jobs"].proxy);
    }

    #[test]
    fn destination_overlay_merges_tables_and_replaces_arrays() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "deploy.toml",
            "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h1\", \"h2\"]\ncmd = \"serve\"\n[env]\nclear = { A = \"1\", B = \"2\" }\nsecret = [\"S1\"]\n[ssh]\nkeepalive = \"1m\"\n",
        );
        write(
            dir.path(),
            "deploy.staging.toml",
            "[servers.web]\nhosts = [\"s1\"]\n[env.clear]\nB = \"staging\"\n[ssh]\nkeepalive = \"0s\"\n",
        );
        let config = load(Some(&dir.path().join("deploy.toml")), Some("staging")).expect("loads");
        assert_eq!(config.destination.as_deref(), Some("staging"));
        assert_eq!(config.files.len(), 2);
        assert_eq!(config.roles["web"].hosts, ["s1"]);
        assert_eq!(config.roles["web"].cmd.as_deref(), Some("serve"));
        assert_eq!(config.env.clear["A"], "1");
        assert_eq!(config.env.clear["B"], "staging");
        assert_eq!(config.ssh.keepalive, None);
        // Locations follow the file that set the key last.
        let secret = &config.env.secret[0];
        assert_eq!((secret.location.line, secret.location.column), (8, 11));
        assert!(secret.location.file.ends_with("deploy.toml"));
    }

    #[test]
    fn role_env_secret_refs_and_hosts() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "deploy.toml",
            r#"service = "a"
image = "r/a"
[registry]
username = "u"
password = "TOKEN"
[servers.web]
hosts = ["h1", "h2"]
env = { clear = { A = "web" }, secret = ["WEB_ONLY", "SHARED"] }
[servers.jobs]
hosts = ["h2", "h3"]
[env]
clear = { A = "all", B = "all" }
secret = ["SHARED"]
[builder]
secrets = ["BUILD"]
[accessories.db]
image = "postgres:16"
hosts = ["h4", "h1"]
env = { secret = ["DB_PASSWORD"] }
"#,
        );
        let config = load(Some(&dir.path().join("deploy.toml")), None).expect("loads");
        let web = config.role_env("web");
        assert_eq!(web.clear["A"], "web");
        assert_eq!(web.clear["B"], "all");
        let names: Vec<&str> = web.secret.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["SHARED", "WEB_ONLY"]);
        assert_eq!(config.role_env("jobs").clear["A"], "all");
        let names: Vec<&str> = config
            .secret_refs()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["TOKEN", "SHARED", "WEB_ONLY", "BUILD", "DB_PASSWORD"]
        );
        // Roles in role (name) order: jobs, then web.
        assert_eq!(config.hosts(), ["h2", "h3", "h1", "h4"]);
        let toml = config.to_toml();
        assert!(toml.contains("password = \"TOKEN\""), "{toml}");
        assert!(toml.contains("[servers.web]"), "{toml}");
    }

    #[test]
    fn tagged_hosts_get_their_tags_env_over_the_roles() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h1\", \"h2\"]\n";
        write(
            dir.path(),
            "deploy.toml",
            &format!(
                "{base}tags = {{ h2 = [\"canary\", \"eu\"] }}\n[env]\nclear = {{ A = \"all\" }}\n\
                 [env.tags.canary]\nclear = {{ A = \"canary\", C = \"1\" }}\nsecret = [\"KEY\"]\n\
                 [env.tags.eu]\nclear = {{ REGION = \"eu\" }}\n"
            ),
        );
        let config = load(Some(&dir.path().join("deploy.toml")), None).expect("loads");
        let plain = config.host_env("web", "h1");
        assert_eq!(plain.clear.get("A").map(String::as_str), Some("all"));
        assert!(!plain.clear.contains_key("C") && plain.secret.is_empty());
        let tagged = config.host_env("web", "h2");
        assert_eq!(tagged.clear["A"], "canary");
        assert_eq!(
            (tagged.clear["C"].as_str(), tagged.clear["REGION"].as_str()),
            ("1", "eu")
        );
        assert_eq!(tagged.secret[0].name, "KEY");
        assert!(config.secret_refs().iter().any(|s| s.name == "KEY"));

        let refused = |text: &str, expected: &str| {
            write(dir.path(), "deploy.toml", text);
            let err = load(Some(&dir.path().join("deploy.toml")), None).expect_err("refused");
            let text = format!("{err:#}");
            assert!(text.contains(expected), "{text}");
        };
        refused(
            &format!("{base}tags = {{ h2 = [\"nope\"] }}\n"),
            "`h2` is tagged `nope`, and there is no `[env.tags.nope]`",
        );
        refused(
            &format!("{base}tags = {{ h9 = [\"x\"] }}\n[env.tags.x]\nclear = {{ X = \"1\" }}\n"),
            "tags `h9`, which is not among its hosts",
        );
        refused(
            &format!("{base}[servers.web.env.tags.x]\nclear = {{ X = \"1\" }}\n"),
            "tags are only for the top-level `[env]`",
        );
    }

    #[test]
    fn an_unknown_primary_role_is_refused_with_a_way_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h1\"]\n";
        write(
            dir.path(),
            "deploy.toml",
            &format!("primary_role = \"api\"\n{base}"),
        );
        let err = load(Some(&dir.path().join("deploy.toml")), None).expect_err("refused");
        let text = format!("{err:#}");
        assert!(
            text.contains("`primary_role` names `api`, which is not a role"),
            "{text}"
        );
        write(
            dir.path(),
            "deploy.toml",
            &format!("{base}[boot]\nrollback = false\nparallel_roles = true\n"),
        );
        let config = load(Some(&dir.path().join("deploy.toml")), None).expect("loads");
        assert!(!config.boot.rollback && config.boot.parallel_roles);
        assert_eq!(config.primary_role, "web");
    }

    #[test]
    fn a_bad_trusted_proxy_is_an_error_at_its_entry() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "deploy.toml",
            "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h\"]\n[proxy]\n\
             trusted_proxies = [\"10.0.0.5\", \"10.0.0.300/8\"]\n",
        );
        let err = load(Some(&dir.path().join("deploy.toml")), None)
            .expect_err("a bad entry")
            .to_string();
        assert!(
            err.contains(
                "deploy.toml:6:32: `proxy.trusted_proxies[1]`: invalid trusted proxy `10.0.0.300/8`"
            ),
            "{err}"
        );
        assert!(err.contains("`10.0.0.0/24`"), "{err}");
    }

    #[test]
    fn cross_key_errors_point_at_the_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (text, expected) in [
            (
                "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h\"]\n[registry]\nusername = \"u\"\n",
                (
                    "deploy.toml:6:1",
                    "`registry.username` needs `registry.password`",
                ),
            ),
            (
                "service = \"a\"\nimage = \"r/a\"\n",
                ("deploy.toml:1:1", "at least one role is required"),
            ),
            (
                "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h\"]\n[accessories.db]\nimage = \"p:1\"\n",
                ("deploy.toml:5:14", "`accessories.db` needs `host`"),
            ),
            (
                "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h\"]\nlabels = { role = \"x\" }\n",
                ("deploy.toml:5:12", "hoist sets the `role` label itself"),
            ),
            (
                "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h\", \"h\"]\n",
                ("deploy.toml:4:15", "lists `h` twice"),
            ),
            (
                "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h\"]\n[env]\nclear = { X = \"1\" }\nsecret = [\"X\"]\n",
                ("deploy.toml:7:11", "`X` is both a plain"),
            ),
        ] {
            write(dir.path(), "deploy.toml", text);
            let err = load(Some(&dir.path().join("deploy.toml")), None)
                .expect_err(text)
                .to_string();
            assert!(
                err.contains(&format!("{}: {}", expected.0, expected.1))
                    || (err.contains(expected.0) && err.contains(expected.1)),
                "{err}"
            );
        }
    }
}
