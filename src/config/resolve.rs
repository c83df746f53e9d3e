//! From the merged file schema to [`Config`]: defaults from deploy.toml.example, paths made
//! absolute, and the checks that involve several keys (required keys, `tls` needs `hosts`,
//! `username` needs `password`, ...). Every error points at the key that causes it. `[proxy]` is
//! resolved in proxy.rs.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::backup::{
    AccessoryFacts, AgentConfig, BackupSchema, DEFAULT_BACKUP_IMAGE, resolve_backup,
};
use super::container::ContainerSchema;
use super::error::ConfigError;
use super::locate::Locator;
use super::options::{Arch, HostKeyChecking};
use super::schema::{AccessorySchema, EnvSchema, FileSchema, RoleSchema};
use super::values::{DurationValue, Host};
use super::{
    AccessoryConfig, BootConfig, BuilderConfig, Config, DeployConfig, EnvConfig, RegistryConfig,
    RoleConfig, SecretRef, SetupConfig, SshConfig,
};

/// Default of `retain_containers`.
pub const DEFAULT_RETAIN_CONTAINERS: u32 = 5;
/// Default of `registry.server`.
pub const DEFAULT_REGISTRY: &str = "ghcr.io";
/// Default of `proxy.image`: the published image of the hoist-proxy released with this hoist.
pub const DEFAULT_PROXY_IMAGE: &str = concat!(
    "ghcr.io/hoist-deploy/hoist-proxy:",
    env!("CARGO_PKG_VERSION")
);
/// Default of `proxy.deploy_timeout`, `drain_timeout` and `response_timeout`.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `proxy.healthcheck.interval`.
pub const DEFAULT_HEALTHCHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Default of `proxy.healthcheck.timeout`.
pub const DEFAULT_HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `proxy.buffering.memory`, in bytes.
pub const DEFAULT_BUFFER_MEMORY: u64 = 1_048_576;
/// Default of `proxy.buffering.max_request_body`, in bytes: 100 MB, Cloudflare's free-plan
/// cap. With request buffering on, an unlimited body lets one client fill the server's disk.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 100 * 1024 * 1024;
/// Default of `ssh.connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `ssh.keepalive`.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);
/// Labels hoist sets itself on every container.
const RESERVED_LABELS: [&str; 4] = ["service", "role", "destination", "version"];

pub fn resolve(
    schema: FileSchema,
    locator: &Locator,
    root: PathBuf,
    files: Vec<PathBuf>,
    destination: Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |path: &str, message: String, hint: Option<String>| {
        let (location, snippet) = locator.place(path);
        ConfigError::Invalid {
            location,
            message,
            snippet,
            hint,
        }
    };
    let secret = |path: String, name: String| SecretRef {
        name,
        location: locator.location(&path),
    };

    let usage = super::usage::resolve_usage(&schema, &root, destination.as_deref(), &fail)?;

    let service = schema.service.map(|name| name.0).ok_or_else(|| {
        fail(
            "",
            "`service` is required".to_string(),
            Some("add `service = \"myapp\"` at the top of deploy.toml".to_string()),
        )
    })?;
    let image = schema.image.map(|image| image.0).ok_or_else(|| {
        fail(
            "",
            "`image` is required".to_string(),
            Some("add `image = \"ghcr.io/<user>/<app>\"` at the top of deploy.toml".to_string()),
        )
    })?;

    let registry = schema.registry.unwrap_or_default();
    match (&registry.username, &registry.password) {
        (Some(_), None) => {
            return Err(fail(
                "registry.username",
                "`registry.username` needs `registry.password`, the name of the secret holding the password or token".to_string(),
                Some("add `password = \"GHCR_TOKEN\"` under `[registry]` and define it in .hoist/secrets".to_string()),
            ));
        }
        (None, Some(_)) => {
            return Err(fail(
                "registry.password",
                "`registry.password` needs `registry.username`".to_string(),
                Some("add `username = \"...\"` under `[registry]`".to_string()),
            ));
        }
        _ => {}
    }
    let registry = RegistryConfig {
        server: registry
            .server
            .map_or_else(|| DEFAULT_REGISTRY.to_string(), |host| host.0),
        username: registry.username.map(|user| user.0),
        password: registry
            .password
            .map(|name| secret("registry.password".to_string(), name.0)),
    };

    let root_container = ContainerSchema {
        volumes: schema.volumes,
        options: schema.options,
        logging: schema.logging,
        stop_timeout: schema.stop_timeout,
        readiness_delay: schema.readiness_delay,
        asset_path: schema.asset_path,
    };
    let servers = schema.servers.unwrap_or_default();
    if servers.is_empty() {
        return Err(fail(
            "servers",
            "at least one role is required".to_string(),
            Some(
                "add a role such as `[servers.web]` with `hosts = [\"203.0.113.10\"]`".to_string(),
            ),
        ));
    }
    let mut roles = BTreeMap::new();
    for (name, role) in servers {
        let role = resolve_role(&name.0, role, &root_container, &fail, &secret)?;
        roles.insert(name.0, role);
    }

    let proxy =
        super::proxy::resolve_proxy(schema.proxy.unwrap_or_default(), &root, &fail, &secret)?;

    let mut root_env = schema.env;
    let tag_schemas = root_env.as_mut().and_then(|env| env.tags.take());
    let env = resolve_env("env", root_env, &fail, &secret)?;
    let mut env_tags = BTreeMap::new();
    for (tag, tagged) in tag_schemas.unwrap_or_default() {
        let path = format!("env.tags.{}", tag.0);
        env_tags.insert(tag.0, resolve_env(&path, Some(tagged), &fail, &secret)?);
    }
    for (name, role) in &roles {
        for (host, tags) in &role.tags {
            if let Some(unknown) = tags.iter().find(|tag| !env_tags.contains_key(*tag)) {
                return Err(fail(
                    &format!("servers.{name}.tags"),
                    format!(
                        "`{host}` is tagged `{unknown}`, and there is no `[env.tags.{unknown}]`"
                    ),
                    Some(format!(
                        "add `[env.tags.{unknown}]` with its `clear` or `secret` env"
                    )),
                ));
            }
        }
    }
    for (name, role) in &roles {
        check_env_overlap(&format!("servers.{name}.env"), &env, &role.env, &fail)?;
    }

    let ssh = schema.ssh.unwrap_or_default();
    let ssh = SshConfig {
        user: ssh.user.map_or_else(|| "root".to_string(), |user| user.0),
        port: ssh.port.map_or(22, |port| port.0),
        proxy_jump: ssh.proxy_jump,
        keys: ssh
            .keys
            .unwrap_or_default()
            .into_iter()
            .map(|key| absolute(&root, &key.0))
            .collect(),
        known_hosts: ssh.known_hosts.map_or_else(
            || absolute(&root, "~/.ssh/known_hosts"),
            |path| absolute(&root, &path.0),
        ),
        host_key_checking: ssh.host_key_checking.unwrap_or(HostKeyChecking::Strict),
        connect_timeout: positive(
            ssh.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
            "ssh.connect_timeout",
            &fail,
        )?,
        keepalive: match ssh.keepalive {
            None => Some(DEFAULT_KEEPALIVE),
            Some(keepalive) if keepalive.0.is_zero() => None,
            Some(keepalive) => Some(keepalive.0),
        },
    };

    let builder = schema.builder.unwrap_or_default();
    let builder = BuilderConfig {
        dockerfile: PathBuf::from(
            builder
                .dockerfile
                .map_or_else(|| "Dockerfile".to_string(), |f| f.0),
        ),
        context: absolute(
            &root,
            &builder.context.map_or_else(|| ".".to_string(), |c| c.0),
        ),
        args: builder
            .args
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key.0, value.0))
            .collect(),
        secrets: builder
            .secrets
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(index, name)| secret(format!("builder.secrets[{index}]"), name.0))
            .collect(),
        target: builder.target.map(|target| target.0),
        arch: builder
            .arch
            .map_or_else(|| vec![Arch::Amd64], |list| list.0),
    };

    let boot = schema.boot.unwrap_or_default();
    let boot = BootConfig {
        limit: boot.limit,
        wait: boot.wait.map_or(Duration::ZERO, |wait| wait.0),
        parallel_roles: boot.parallel_roles.unwrap_or(false),
        rollback: boot.rollback.unwrap_or(true),
    };
    let primary_role = match schema.primary_role {
        Some(name) if roles.contains_key(&name.0) => name.0,
        Some(name) => {
            let known: Vec<String> = roles.keys().map(|role| format!("`{role}`")).collect();
            return Err(fail(
                "primary_role",
                format!("`primary_role` names `{}`, which is not a role", name.0),
                Some(format!(
                    "name one of the `[servers.<role>]` tables: {}",
                    known.join(", ")
                )),
            ));
        }
        None if roles.contains_key("web") => "web".to_string(),
        None => roles
            .keys()
            .next()
            .cloned()
            .unwrap_or_else(|| "web".to_string()),
    };

    let backup_defaults = schema.backup.unwrap_or_default();
    let mut accessories = BTreeMap::new();
    for (name, accessory) in schema.accessories.unwrap_or_default() {
        let accessory = resolve_accessory(
            &name.0,
            accessory,
            &backup_defaults,
            &service,
            &fail,
            &secret,
        )?;
        accessories.insert(name.0, accessory);
    }

    let loadbalancer = match schema.loadbalancer {
        Some(lb) => {
            let hosts_of = |behind: Option<bool>| -> Vec<String> {
                let mut hosts: Vec<String> = Vec::new();
                for role in roles.values() {
                    if behind.is_none_or(|proxy| role.proxy == proxy) {
                        for host in &role.hosts {
                            if !hosts.contains(host) {
                                hosts.push(host.clone());
                            }
                        }
                    }
                }
                hosts
            };
            Some(super::loadbalancer::resolve_loadbalancer(
                lb,
                &hosts_of(Some(true)),
                &hosts_of(None),
                &fail,
            )?)
        }
        None => None,
    };

    Ok(Config {
        secrets_path: absolute(
            &root,
            &schema
                .secrets_path
                .map_or_else(|| ".hoist/secrets".to_string(), |p| p.0),
        ),
        minimum_version: usage.minimum_version,
        error_pages_path: usage.error_pages_path,
        hooks_path: absolute(
            &root,
            &schema
                .hooks_path
                .map_or_else(|| "hooks".to_string(), |p| p.0),
        ),
        root,
        files,
        destination,
        skip_hooks: false,
        require_destination: usage.require_destination,
        aliases: usage.aliases,
        service,
        image,
        retain_containers: schema
            .retain_containers
            .unwrap_or(DEFAULT_RETAIN_CONTAINERS),
        registry,
        primary_role,
        roles,
        proxy,
        env,
        ssh,
        builder,
        boot,
        accessories,
        env_tags,
        loadbalancer,
        backup: AgentConfig {
            image: backup_defaults
                .image
                .map_or_else(|| DEFAULT_BACKUP_IMAGE.to_string(), |image| image.0),
        },
        deploy: DeployConfig {
            release_command: match schema.deploy.and_then(|deploy| deploy.release_command) {
                Some(command) => Some(
                    shlex::split(&command.0)
                        .filter(|words| !words.is_empty())
                        .ok_or_else(|| {
                            fail(
                                "deploy.release_command",
                                format!("can't split `{}` into words", command.0),
                                Some("check its quotes".to_string()),
                            )
                        })?,
                ),
                None => None,
            },
        },
        setup: {
            let setup = schema.setup.unwrap_or_default();
            SetupConfig {
                docker: setup.docker.unwrap_or_default(),
                firewall: setup.firewall.unwrap_or(false),
            }
        },
    })
}

pub(super) type Fail<'a> = dyn Fn(&str, String, Option<String>) -> ConfigError + 'a;
pub(super) type MakeSecret<'a> = dyn Fn(String, String) -> SecretRef + 'a;

fn resolve_role(
    name: &str,
    role: RoleSchema,
    root: &ContainerSchema,
    fail: &Fail<'_>,
    secret: &MakeSecret<'_>,
) -> Result<RoleConfig, ConfigError> {
    let proxy = role.proxy.unwrap_or(name == "web");
    if role.asset_path.is_some() && !proxy {
        return Err(fail(
            &format!("servers.{name}.asset_path"),
            format!(
                "`servers.{name}.asset_path`: asset bridging serves old and new assets through \
                 the proxy, and `{name}` does not run behind it"
            ),
            Some(format!(
                "remove it, or set `proxy = true` under `[servers.{name}]`"
            )),
        ));
    }
    let mut container = super::container::merge(root, role.container());
    // A root `asset_path` applies to the roles behind the proxy.
    if !proxy {
        container.asset_path = None;
    }
    let mut tags = BTreeMap::new();
    for (host, names) in role.tags.clone().unwrap_or_default() {
        if !role.hosts.iter().flatten().any(|known| known.0 == host) {
            return Err(fail(
                &format!("servers.{name}.tags"),
                format!("`servers.{name}.tags` tags `{host}`, which is not among its hosts"),
                Some("tag a host of this role, written as in its `hosts`".to_string()),
            ));
        }
        tags.insert(host, names.into_iter().map(|tag| tag.0).collect::<Vec<_>>());
    }
    let path = format!("servers.{name}");
    let hosts = hosts_list(&format!("{path}.hosts"), role.hosts, fail)?.ok_or_else(|| {
        fail(
            &path,
            format!("`{path}.hosts` is required: the hosts to run the `{name}` role on"),
            Some(format!("add `hosts = [\"203.0.113.10\"]` under `[{path}]`")),
        )
    })?;
    let labels: BTreeMap<String, String> = role
        .labels
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect();
    if let Some(reserved) = labels
        .keys()
        .find(|key| RESERVED_LABELS.contains(&key.as_str()))
    {
        return Err(fail(
            &format!("{path}.labels.{reserved}"),
            format!("`{path}.labels.{reserved}`: hoist sets the `{reserved}` label itself"),
            Some("choose another label name; `service`, `role`, `destination` and `version` are reserved".to_string()),
        ));
    }
    Ok(RoleConfig {
        hosts,
        proxy,
        cmd: role.cmd.map(|cmd| cmd.0),
        labels,
        env: resolve_env(&format!("{path}.env"), role.env, fail, secret)?,
        tags,
        container,
    })
}

fn resolve_accessory(
    name: &str,
    accessory: AccessorySchema,
    backup_defaults: &BackupSchema,
    service: &str,
    fail: &Fail<'_>,
    secret: &MakeSecret<'_>,
) -> Result<AccessoryConfig, ConfigError> {
    let path = format!("accessories.{name}");
    let image = accessory.image.map(|image| image.0).ok_or_else(|| {
        fail(
            &path,
            format!("`{path}.image` is required"),
            Some(format!(
                "add `image = \"postgres:16\"` (for example) under `[{path}]`"
            )),
        )
    })?;
    let hosts = match (
        accessory.host,
        hosts_list(&format!("{path}.hosts"), accessory.hosts, fail)?,
    ) {
        (Some(host), None) => vec![host.0],
        (None, Some(hosts)) => hosts,
        (Some(_), Some(_)) => {
            return Err(fail(
                &format!("{path}.hosts"),
                format!("`{path}` has both `host` and `hosts`"),
                Some("keep one: `host` for one host, `hosts` for several".to_string()),
            ));
        }
        (None, None) => {
            return Err(fail(
                &path,
                format!("`{path}` needs `host` (or `hosts`): where to run it"),
                Some(format!("add `host = \"203.0.113.12\"` under `[{path}]`")),
            ));
        }
    };
    let volumes: Vec<String> = accessory
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|volume| volume.0)
        .collect();
    let env = resolve_env(&format!("{path}.env"), accessory.env, fail, secret)?;
    let backup = match accessory.backup {
        Some(backup) => Some(resolve_backup(
            &AccessoryFacts {
                name,
                hosts: &hosts,
                volumes: &volumes,
                env: &env.clear,
            },
            backup,
            backup_defaults,
            service,
            fail,
            secret,
        )?),
        None => None,
    };
    Ok(AccessoryConfig {
        image,
        hosts,
        cmd: accessory.cmd.map(|cmd| cmd.0),
        volumes,
        port: accessory.port,
        env,
        backup,
    })
}

/// A host list that, when present, is non-empty and lists each host once.
fn hosts_list(
    path: &str,
    hosts: Option<Vec<Host>>,
    fail: &Fail<'_>,
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(hosts) = hosts else {
        return Ok(None);
    };
    if hosts.is_empty() {
        return Err(fail(
            path,
            format!("`{path}` is empty: list at least one host"),
            None,
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for (index, host) in hosts.into_iter().enumerate() {
        if seen.contains(&host.0) {
            return Err(fail(
                &format!("{path}[{index}]"),
                format!("`{path}` lists `{}` twice", host.0),
                None,
            ));
        }
        seen.push(host.0);
    }
    Ok(Some(seen))
}

fn resolve_env(
    path: &str,
    env: Option<EnvSchema>,
    fail: &Fail<'_>,
    secret: &MakeSecret<'_>,
) -> Result<EnvConfig, ConfigError> {
    let Some(env) = env else {
        return Ok(EnvConfig::default());
    };
    if env.tags.is_some() {
        return Err(fail(
            &format!("{path}.tags"),
            format!("`{path}.tags`: tags are only for the top-level `[env]`"),
            Some(
                "move it to `[env.tags.<tag>]`, and tag hosts under `[servers.<role>] tags`".into(),
            ),
        ));
    }
    let resolved = EnvConfig {
        clear: env
            .clear
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key.0, value.0))
            .collect(),
        secret: env
            .secret
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(index, name)| secret(format!("{path}.secret[{index}]"), name.0))
            .collect(),
    };
    check_env_overlap(path, &EnvConfig::default(), &resolved, fail)?;
    Ok(resolved)
}

/// A variable can't be both plain and secret, within one env table or between `[env]` and a
/// role's env.
fn check_env_overlap(
    path: &str,
    base: &EnvConfig,
    env: &EnvConfig,
    fail: &Fail<'_>,
) -> Result<(), ConfigError> {
    for (index, secret) in env.secret.iter().enumerate() {
        if env.clear.contains_key(&secret.name) || base.clear.contains_key(&secret.name) {
            return Err(fail(
                &format!("{path}.secret[{index}]"),
                format!(
                    "`{}` is both a plain (`clear`) and a `secret` variable",
                    secret.name
                ),
                Some("keep it in one of the two".to_string()),
            ));
        }
    }
    for key in env.clear.keys() {
        if base.secret.iter().any(|secret| &secret.name == key) {
            return Err(fail(
                &format!("{path}.clear.{key}"),
                format!("`{key}` is both a plain (`clear`) and a `secret` variable"),
                Some("keep it in one of the two".to_string()),
            ));
        }
    }
    Ok(())
}

/// A duration that must be above zero, or its default.
pub(super) fn positive(
    value: Option<DurationValue>,
    default: Duration,
    path: &str,
    fail: &Fail<'_>,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(value) if value.0.is_zero() => Err(fail(
            path,
            format!("`{path}` must be longer than zero"),
            None,
        )),
        Some(value) => Ok(value.0),
    }
}

/// `~` expanded, then made absolute against `root`, without `.` and `..` components.
pub(super) fn absolute(root: &Path, path: &str) -> PathBuf {
    let expanded = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => match std::env::home_dir() {
            Some(home) => home.join(rest.trim_start_matches('/')),
            None => PathBuf::from(path),
        },
        _ => PathBuf::from(path),
    };
    let joined = root.join(expanded);
    let mut normal = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_absolute_and_tilde_expanded() {
        let root = Path::new("/app");
        assert_eq!(absolute(root, "."), PathBuf::from("/app"));
        assert_eq!(absolute(root, "hooks"), PathBuf::from("/app/hooks"));
        assert_eq!(absolute(root, "../x"), PathBuf::from("/x"));
        assert_eq!(absolute(root, "/etc/x"), PathBuf::from("/etc/x"));
        if let Some(home) = std::env::home_dir() {
            assert_eq!(absolute(root, "~/.ssh/id"), home.join(".ssh/id"));
        }
        assert_eq!(absolute(root, "~x"), PathBuf::from("/app/~x"));
    }
}
