//! The container layer: what hoist runs on one server and the moves it makes there, for the
//! commands and the release engine to call (never the other way round). App containers
//! ([`app`]), hoist-proxy ([`proxy`]), accessories ([`accessory`]), who owns a proxy route
//! ([`owner`]), retention ([`prune`]), removal ([`teardown`]); here, a role's containers with the live one, and booting
//! the proxy with its network.

pub mod accessory;
pub mod app;
pub mod assets;
pub mod backup;
pub mod deploy_secrets;
pub mod error_pages;
pub mod handover;
pub mod loadbalancer;
pub mod oneoff;
pub mod owner;
pub mod proxy;
pub mod proxy_args;
pub mod prune;
pub mod teardown;

use anyhow::Result;
use bollard::auth::DockerCredentials;

use crate::config::Config;
use crate::docker;
use crate::naming;
use crate::remote::Server;
use crate::reporter::Reporter;

/// One role's containers on a server and the live one.
pub struct RoleContainers {
    pub role: String,
    /// Newest first.
    pub containers: Vec<app::AppContainer>,
    /// Id (or its prefix) of the live container: the proxy's target, or for a role without
    /// the proxy the running one.
    pub live: Option<String>,
}

impl RoleContainers {
    pub fn is_live(&self, container: &app::AppContainer) -> bool {
        self.live
            .as_deref()
            .is_some_and(|live| container.id.starts_with(live))
    }

    /// The version the live container runs, if it runs.
    pub fn live_version(&self) -> Option<&str> {
        self.containers
            .iter()
            .find(|container| container.running && self.is_live(container))
            .map(|container| container.version.as_str())
    }
}

/// Every role of the configuration that runs on `server`, with its containers.
pub async fn role_containers(config: &Config, server: &Server) -> Result<Vec<RoleContainers>> {
    // No proxy (yet) means no role is live behind it.
    let services = proxy::list(&server.docker).await.unwrap_or_default();
    let mut roles = Vec::new();
    for (role, role_config) in &config.roles {
        if !role_config.hosts.contains(&server.host) {
            continue;
        }
        let containers = app::list(&server.docker, config, role).await?;
        let live = if role_config.proxy {
            let service = naming::role_scope(&config.service, role, config.destination.as_deref());
            proxy::live_target(&services, &service)
        } else {
            containers.iter().find(|c| c.running).map(|c| c.id.clone())
        };
        roles.push(RoleContainers {
            role: role.clone(),
            containers,
            live,
        });
    }
    Ok(roles)
}

/// What [`boot_proxy`] found or did, and a warning when the proxy running is not from
/// `proxy.image` (an older proxy keeps running until it is replaced on purpose).
pub struct Booted {
    pub ensured: proxy::Ensured,
    pub warning: Option<String>,
}

impl Booted {
    /// For progress lines.
    pub fn describe(&self, config: &Config) -> String {
        match self.ensured {
            proxy::Ensured::Running => "hoist-proxy already running".to_string(),
            proxy::Ensured::Started => "hoist-proxy started".to_string(),
            proxy::Ensured::Created => format!("hoist-proxy created from {}", config.proxy.image),
        }
    }
}

/// The `hoist` network, then a running hoist-proxy on `server` (started if stopped, created
/// from `proxy.image` if missing): the one way every command boots the proxy.
pub async fn boot_proxy(
    config: &Config,
    server: &Server,
    credentials: Option<DockerCredentials>,
) -> Result<Booted> {
    docker::ensure_network(&server.docker).await?;
    let ensured = proxy::ensure(&server.docker, config, credentials).await?;
    let warning = if ensured == proxy::Ensured::Created {
        None
    } else {
        match proxy::inspect(&server.docker).await {
            Ok(Some(container)) => other_image(config, &server.host, &container),
            _ => None,
        }
    };
    Ok(Booted { ensured, warning })
}

/// [`boot_proxy`] with its progress line on `reporter`, for the commands that boot proxies
/// (`hoist proxy boot`, `hoist setup`); returns the warning, if any.
pub async fn boot_proxy_reported(
    config: &Config,
    server: &Server,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> Result<Option<String>> {
    let progress = reporter.host(&server.host);
    progress.step("checking hoist-proxy");
    match boot_proxy(config, server, credentials).await {
        Ok(booted) => {
            progress.done(booted.describe(config));
            Ok(booted.warning)
        }
        Err(err) => {
            progress.failed("hoist-proxy failed");
            Err(err.context(format!("Failed to boot hoist-proxy on `{}`", server.host)))
        }
    }
}

/// The warning for a proxy that runs another image than `proxy.image` (an older proxy keeps
/// running until it is replaced on purpose).
pub fn other_image(
    config: &Config,
    host: &str,
    container: &proxy::ProxyContainer,
) -> Option<String> {
    let image = &config.proxy.image;
    (container.image != *image).then(|| {
        format!(
            "hoist-proxy on `{host}` runs `{}`, not `{image}` (`proxy.image`); \
             `hoist proxy reboot` replaces it",
            container.image
        )
    })
}
