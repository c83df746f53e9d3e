//! The shape of one deploy.toml file, key for key as in deploy.toml.example. Every field is
//! optional here because a destination file may set any subset; required keys and defaults are
//! applied after merging, in resolve.rs. Value checks live in values.rs.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::container::{AssetPath, ContainerSchema, LoggingSchema, OptionsSchema};
use super::options::{ArchList, BootLimit, HostKeyChecking, JumpHost, PublishedPort, Volume};
use super::values::{
    DurationValue, EnvName, HeaderNameValue, Host, Image, Name, NonEmpty, PathPrefixes, PlainValue,
    Port, RegistryServer, Repository, TrustedProxy, UrlPath,
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSchema {
    pub service: Option<Name>,
    pub image: Option<Repository>,
    pub retain_containers: Option<u32>,
    pub primary_role: Option<Name>,
    pub hooks_path: Option<NonEmpty>,
    pub registry: Option<RegistrySchema>,
    pub servers: Option<BTreeMap<Name, RoleSchema>>,
    pub proxy: Option<ProxySchema>,
    pub env: Option<EnvSchema>,
    pub ssh: Option<SshSchema>,
    pub builder: Option<BuilderSchema>,
    pub boot: Option<BootSchema>,
    pub accessories: Option<BTreeMap<Name, AccessorySchema>>,
    pub loadbalancer: Option<LoadBalancerSchema>,
    pub backup: Option<super::backup::BackupSchema>,
    pub setup: Option<SetupSchema>,
    pub deploy: Option<DeploySchema>,
    pub require_destination: Option<bool>,
    pub aliases: Option<BTreeMap<Name, NonEmpty>>,
    pub secrets_path: Option<NonEmpty>,
    pub minimum_version: Option<NonEmpty>,
    pub error_pages_path: Option<NonEmpty>,
    // How every role's containers run (see container.rs); a role's own go over these.
    pub volumes: Option<Vec<Volume>>,
    pub options: Option<OptionsSchema>,
    pub logging: Option<LoggingSchema>,
    pub stop_timeout: Option<DurationValue>,
    pub readiness_delay: Option<DurationValue>,
    pub asset_path: Option<AssetPath>,
}

/// `[deploy]`: what a deploy does besides switching.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySchema {
    pub release_command: Option<NonEmpty>,
}

/// `[setup]`: how `hoist setup` prepares a fresh server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupSchema {
    pub docker: Option<super::options::DockerPackages>,
    pub firewall: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySchema {
    pub server: Option<RegistryServer>,
    pub username: Option<NonEmpty>,
    pub password: Option<EnvName>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSchema {
    pub hosts: Option<Vec<Host>>,
    pub proxy: Option<bool>,
    pub cmd: Option<NonEmpty>,
    pub labels: Option<BTreeMap<String, PlainValue>>,
    pub env: Option<EnvSchema>,
    /// Host (as in `hosts`) → its tags, naming `[env.tags.<tag>]` tables.
    pub tags: Option<BTreeMap<String, Vec<Name>>>,
    pub volumes: Option<Vec<Volume>>,
    pub options: Option<OptionsSchema>,
    pub logging: Option<LoggingSchema>,
    pub stop_timeout: Option<DurationValue>,
    pub readiness_delay: Option<DurationValue>,
    pub asset_path: Option<AssetPath>,
}

impl RoleSchema {
    /// The role's own container settings.
    pub fn container(&self) -> ContainerSchema {
        ContainerSchema {
            volumes: self.volumes.clone(),
            options: self.options.clone(),
            logging: self.logging.clone(),
            stop_timeout: self.stop_timeout,
            readiness_delay: self.readiness_delay,
            asset_path: self.asset_path.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSchema {
    pub clear: Option<BTreeMap<EnvName, PlainValue>>,
    pub secret: Option<Vec<EnvName>>,
    /// `[env.tags.<tag>]`: over the role's env on the hosts with that tag (top level only).
    pub tags: Option<BTreeMap<Name, EnvSchema>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySchema {
    pub image: Option<Image>,
    pub hosts: Option<Vec<Host>>,
    pub app_port: Option<Port>,
    pub tls: Option<bool>,
    pub deploy_timeout: Option<DurationValue>,
    pub drain_timeout: Option<DurationValue>,
    pub response_timeout: Option<DurationValue>,
    pub forward_headers: Option<bool>,
    pub trusted_proxies: Option<Vec<TrustedProxy>>,
    pub path_prefix: Option<PathPrefixes>,
    pub strip_path_prefix: Option<bool>,
    pub healthcheck: Option<HealthcheckSchema>,
    pub buffering: Option<BufferingSchema>,
    pub acme: Option<AcmeSchema>,
    pub logging: Option<ProxyLoggingSchema>,
    /// The NAME of the secret holding the app's own certificate chain (PEM), instead of ACME.
    pub ssl_certificate: Option<EnvName>,
    /// The NAME of the secret holding that certificate's private key (PEM).
    pub ssl_private_key: Option<EnvName>,
}

/// `[proxy.logging]`: headers the proxy's request log shows for this app.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyLoggingSchema {
    pub request_headers: Option<Vec<HeaderNameValue>>,
    pub response_headers: Option<Vec<HeaderNameValue>>,
}

/// `[proxy.acme]`: where `tls = true` gets its certificates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSchema {
    /// `letsencrypt` (the default), `letsencrypt-staging`, or an ACME directory URL.
    pub directory: Option<NonEmpty>,
    pub challenge: Option<hoist_proxy::options::ChallengeKind>,
    pub eab_kid: Option<NonEmpty>,
    /// The NAME of the secret holding the EAB HMAC key.
    pub eab_hmac_key: Option<EnvName>,
    /// A PEM file on this machine: the root of a private ACME CA's HTTPS certificate.
    pub ca_root: Option<NonEmpty>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckSchema {
    pub path: Option<UrlPath>,
    pub interval: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub port: Option<Port>,
    pub host: Option<Host>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferingSchema {
    pub requests: Option<bool>,
    pub responses: Option<bool>,
    pub memory: Option<u64>,
    pub max_request_body: Option<u64>,
    pub max_response_body: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSchema {
    pub user: Option<NonEmpty>,
    pub port: Option<Port>,
    pub proxy_jump: Option<JumpHost>,
    pub keys: Option<Vec<NonEmpty>>,
    pub known_hosts: Option<NonEmpty>,
    pub host_key_checking: Option<HostKeyChecking>,
    pub connect_timeout: Option<DurationValue>,
    pub keepalive: Option<DurationValue>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderSchema {
    pub dockerfile: Option<NonEmpty>,
    pub context: Option<NonEmpty>,
    pub args: Option<BTreeMap<EnvName, PlainValue>>,
    pub secrets: Option<Vec<EnvName>>,
    pub target: Option<NonEmpty>,
    pub arch: Option<ArchList>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSchema {
    pub limit: Option<BootLimit>,
    pub wait: Option<DurationValue>,
    pub parallel_roles: Option<bool>,
    pub rollback: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessorySchema {
    pub image: Option<Image>,
    pub host: Option<Host>,
    pub hosts: Option<Vec<Host>>,
    pub cmd: Option<NonEmpty>,
    pub volumes: Option<Vec<Volume>>,
    pub port: Option<PublishedPort>,
    pub env: Option<EnvSchema>,
    pub backup: Option<super::backup::AccessoryBackupSchema>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerSchema {
    pub host: Option<Host>,
    /// The LB's address as the web hosts see it (their only trusted peer).
    pub private_address: Option<Host>,
    /// Web host (as in `[servers]`) to the address the LB reaches it on.
    pub web_addresses: Option<BTreeMap<String, Host>>,
    pub sticky: Option<bool>,
}
