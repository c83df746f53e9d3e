//! Everything a release does on each host before the first switch anywhere: pull the image and
//! read what runs (containers, the proxy's routes, the release record), refuse a route that
//! belongs to another app, boot the `hoist` network and hoist-proxy, then stage each role's new
//! container: started for a role behind the proxy (it gets no traffic until its switch), only
//! created for a role without it (starting it is its switch). Whatever fails here, nothing was
//! switched anywhere.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use hoist_proxy::router::ServiceSummary;

use super::plan::Unit;
use super::release::{Interrupted, Release};
use super::state::{Phase, Record};
use super::{Kind, short};
use crate::container::{self, app, assets, handover, owner, proxy};
use crate::docker;
use crate::naming;
use crate::remote::Server;
use crate::report::hinted;

/// What runs on one host before a release changes anything there.
#[derive(Debug)]
pub(super) struct Survey {
    /// Role → its containers, newest first.
    pub containers: BTreeMap<String, Vec<app::AppContainer>>,
    /// The proxy's services, if it answered.
    pub services: Option<Vec<ServiceSummary>>,
    /// The release record as the last release left it.
    pub record: Option<Record>,
    /// The `hoist-proxy` container, if there is one.
    pub proxy: Option<proxy::ProxyContainer>,
    /// Whether the `hoist` network exists.
    pub network: bool,
    /// What the proxy says of itself (`hoist-proxy status`), if it answered.
    pub status: Option<hoist_proxy::control::ProxyStatus>,
}

/// One role's new container on one host, staged before any switch.
#[derive(Debug, Clone)]
pub(super) struct Staged {
    pub unit: Unit,
    /// The new container's name and id.
    pub name: String,
    pub id: String,
    /// The role's service in hoist-proxy.
    pub service: String,
    pub behind_proxy: bool,
    /// The container id the proxy routed to before (12 hex digits), if any: what a revert
    /// switches back to.
    pub live_id: Option<String>,
    /// The version live before, for messages.
    pub live_version: Option<String>,
    /// Running containers of the role, stopped once the whole fleet runs the new version.
    pub old: Vec<app::AppContainer>,
    /// The live container renamed aside for a redeploy of its own version (its id).
    pub replaced: Option<String>,
    /// `hoist-proxy deploy` of the new container, made ready ahead (taken by the switch).
    pub prepared_deploy: Arc<Mutex<Option<proxy::PreparedDeploy>>>,
}

impl Release<'_> {
    /// Pull the image on `server` while reading what runs there.
    pub(super) async fn pull_and_survey(&self, server: &Server) -> Result<Survey> {
        let image = format!("{}:{}", self.config.image, self.version);
        let (pulled, surveyed) = tokio::join!(self.pull(server, &image), self.survey(server));
        pulled?;
        let survey = surveyed.with_context(|| format!("on `{}`", server.host))?;
        self.check_routes(server, &survey).await?;
        Ok(survey)
    }

    /// A deploy pulls at once, as `docker pull` does: its version was just pushed or checked in
    /// the registry, so it is rarely on the server yet, and asking first would cost a round trip
    /// on every deploy. If the pull fails where the image is already present, that copy serves
    /// (with a warning). A redeploy or rollback uses the copy it finds, pulling only without one
    /// (never for a rollback).
    async fn pull(&self, server: &Server, image: &str) -> Result<()> {
        let progress = self.reporter.host(&server.host);
        if self.kind != Kind::Deploy {
            let present = docker::image_exists(&server.docker, image).await?;
            if present {
                progress.done(format!("{} already present", short(self.version)));
                return Ok(());
            }
        }
        if self.kind == Kind::Rollback {
            progress.failed("image missing");
            return Err(hinted(
                format!(
                    "Version {} is not on `{}` any more",
                    self.version, server.host
                ),
                "`hoist versions` lists the versions each server keeps",
            ));
        }
        progress.step(format!("pulling {image}"));
        let pulled = self
            .interruptible(docker::pull(
                &server.docker,
                image,
                self.prepared.app_credentials.clone(),
                |p| {
                    if p.total > 0 {
                        progress.step(format!("pulling ({p})"));
                    }
                },
            ))
            .await
            .with_context(|| format!("on `{}`", server.host));
        match pulled {
            Ok(()) => {
                progress.done(format!("pulled {}", short(self.version)));
                Ok(())
            }
            Err(err)
                if !interrupted(&err)
                    && docker::image_exists(&server.docker, image)
                        .await
                        .unwrap_or(false) =>
            {
                self.printer.warn(format!(
                    "{}: the pull of {image} failed ({:#}); the copy already there serves",
                    server.host,
                    err.root_cause()
                ));
                progress.done(format!("{} already present", short(self.version)));
                Ok(())
            }
            Err(err) => {
                progress.failed("pull failed");
                Err(err)
            }
        }
    }

    /// The containers of every role of this release on `server`, the proxy's routes and the
    /// release record, read at once.
    async fn survey(&self, server: &Server) -> Result<Survey> {
        let roles: Vec<&str> = self
            .roles_on(&server.host)
            .map(|(role, _)| role.as_str())
            .collect();
        let lists = futures_util::future::join_all(
            roles
                .iter()
                .map(|role| self.interruptible(app::list(&server.docker, self.config, role))),
        );
        // No proxy yet (or stopped) is not an error here: the proxy step deals with it.
        let (lists, services, record, container, network, status) = tokio::join!(
            lists,
            proxy::list_on(server),
            super::state::read(&server.session, &self.scope),
            proxy::inspect(&server.docker),
            server.docker.inspect_network(crate::naming::NETWORK, None),
            handover::status_on(server)
        );
        let mut containers = BTreeMap::new();
        for (role, list) in roles.into_iter().zip(lists) {
            containers.insert(role.to_string(), list?);
        }
        Ok(Survey {
            containers,
            services: services.ok(),
            record: record?,
            proxy: container?,
            network: network.is_ok(),
            status,
        })
    }

    /// Refuse to deploy where hoist-proxy already routes one of this release's services to
    /// another app's container: different (service, role, destination) triples can make the
    /// same name (`shop` + `web-api`, `shop-web` + `api`). Free when the live target is one of
    /// ours (the survey lists it); one inspect otherwise.
    async fn check_routes(&self, server: &Server, survey: &Survey) -> Result<()> {
        let Some(services) = &survey.services else {
            // No proxy answered yet: staging checks once it runs.
            return Ok(());
        };
        for (role, _) in self.roles_on(&server.host) {
            if !self.behind_proxy(role) {
                continue;
            }
            let containers = survey
                .containers
                .get(role)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let service = self.service_of(role);
            self.interruptible(owner::check_route_owner(
                server,
                services,
                &service,
                &self.owner_of(role),
                containers,
            ))
            .await?;
            // Maintenance (`hoist app maintenance` or `app stop`) outlives a deploy: say so.
            if let Some(summary) = services.iter().find(|summary| summary.name == service)
                && summary.state != "running"
            {
                self.printer.warn(format!(
                    "`{service}` is {} on `{}`: the new version goes live behind it, and \
                     requests get the maintenance page until `hoist app live`",
                    summary.state, server.host
                ));
            }
        }
        Ok(())
    }

    /// The `hoist` network on every host (a role without the proxy needs it too, to reach the
    /// accessories), and hoist-proxy where a role runs behind it; nothing to do, and no round
    /// trip, where the survey found them (a proxy that answered runs on the network).
    pub(super) async fn boot_proxy(&self, server: &Server, survey: &Survey) -> Result<()> {
        let proxied = self
            .roles_on(&server.host)
            .any(|(role, _)| self.behind_proxy(role));
        if proxied && survey.services.is_some() {
            if let Some(running) = &survey.proxy
                && !running.is_current(self.config)
            {
                if self.kind != Kind::Redeploy {
                    return self.upgrade_proxy(server, running).await;
                }
                if let Some(warning) = container::other_image(self.config, &server.host, running) {
                    self.printer.warn(warning);
                }
            }
            if let Some(problem) = handover::protocol_problem(survey.status.as_ref(), &server.host)
            {
                return Err(problem);
            }
            return Ok(());
        }
        if (!proxied || self.kind == Kind::Redeploy) && survey.network {
            return Ok(());
        }
        if !proxied || self.kind == Kind::Redeploy {
            return self
                .interruptible(docker::ensure_network(&server.docker))
                .await
                .with_context(|| format!("on `{}`", server.host));
        }
        let progress = self.reporter.host(&server.host);
        progress.step("checking hoist-proxy");
        let booted = self
            .interruptible(container::boot_proxy(
                self.config,
                server,
                self.prepared.proxy_credentials.clone(),
            ))
            .await
            .with_context(|| format!("on `{}`", server.host));
        match booted {
            Ok(booted) => {
                progress.done(booted.describe(self.config));
                if let Some(warning) = booted.warning {
                    self.printer.warn(warning);
                }
                Ok(())
            }
            Err(err) => {
                progress.failed("hoist-proxy failed");
                Err(err)
            }
        }
    }

    /// Replace the proxy on `server`, which runs another image or command than this hoist's,
    /// before anything is staged: without refusing a request when it takes its ports from
    /// hoist-proxy-ports, with a brief refusal once when an older hoist's proxy holds them.
    async fn upgrade_proxy(&self, server: &Server, running: &proxy::ProxyContainer) -> Result<()> {
        let progress = self.reporter.host(&server.host);
        progress.step(format!(
            "upgrading hoist-proxy ({} → {})",
            running.image, self.config.proxy.image
        ));
        // Not interruptible: a handover cut short would leave two proxies to sort out.
        let upgraded = async {
            let upgraded = handover::upgrade(
                &server.docker,
                self.config,
                self.prepared.proxy_credentials.clone(),
            )
            .await?;
            let after = proxy::inspect(&server.docker).await?;
            Ok::<_, anyhow::Error>(upgraded.describe(self.config, Some(running.clone()), after))
        }
        .await
        .with_context(|| format!("Failed to upgrade hoist-proxy on `{}`", server.host));
        match upgraded {
            Ok(line) => {
                progress.done(line);
                Ok(())
            }
            Err(err) => {
                progress.failed("hoist-proxy upgrade failed");
                Err(err)
            }
        }
    }

    /// Stage every role of this release on `server` and mark the release pending there. On
    /// failure, what was staged on this host is removed again before returning.
    pub(super) async fn stage_host(&self, server: &Server, survey: &Survey) -> Result<Vec<Staged>> {
        let progress = self.reporter.host(&server.host);
        let mut staged: Vec<Staged> = Vec::new();
        for (role, _) in self.roles_on(&server.host) {
            progress.step(format!("{role}: staging"));
            match self.stage(server, role, survey, &mut staged).await {
                Ok(()) => {}
                Err(err) => {
                    progress.failed(format!("{role}: staging failed"));
                    for unit in &staged {
                        self.discard(server, unit).await;
                    }
                    return Err(err);
                }
            }
        }
        progress.done(format!("{} staged", short(self.version)));
        Ok(staged)
    }

    /// Clean up what an interrupted deploy left, free the new container's name, then create the
    /// new container (and start it behind the proxy); pushed onto `staged` once it exists.
    async fn stage(
        &self,
        server: &Server,
        role: &str,
        survey: &Survey,
        staged: &mut Vec<Staged>,
    ) -> Result<()> {
        let config = self.config;
        let docker = &server.docker;
        let behind_proxy = self.behind_proxy(role);
        let service = self.service_of(role);
        let name = naming::app_container(
            &config.service,
            role,
            config.destination.as_deref(),
            self.version,
        );
        let containers = survey.containers.get(role).cloned().unwrap_or_default();
        let mut live_id = None;
        if behind_proxy {
            live_id = match &survey.services {
                Some(services) => proxy::live_target(services, &service),
                // The proxy was missing or stopped then; it runs now, maybe with routes restored
                // from its volume, so who owns the route is checked here instead.
                None => {
                    let services = self.interruptible(proxy::list(docker)).await?;
                    owner::check_route_owner(
                        server,
                        &services,
                        &service,
                        &self.owner_of(role),
                        &containers,
                    )
                    .await?;
                    proxy::live_target(&services, &service)
                }
            };
        }
        let is_live = |id: &str| live_id.as_deref().is_some_and(|live| id.starts_with(live));
        // A container of a release that never finished here, running but not routed to,
        // never served: it goes. Any other running container is an old version, stopped once
        // the fleet runs the new one.
        let unfinished = survey
            .record
            .as_ref()
            .filter(|record| record.phase == Phase::Pending)
            .map(|record| record.version.as_str());
        let mut old = Vec::new();
        for container in containers.iter().filter(|c| c.running) {
            let never_served = behind_proxy
                && live_id.is_some()
                && !is_live(&container.id)
                && unfinished == Some(container.version.as_str());
            if never_served {
                self.reporter.host(&server.host).step(format!(
                    "{role}: removing {} (left by an interrupted deploy)",
                    container.name
                ));
                self.interruptible(app::remove(docker, &container.id))
                    .await?;
            } else {
                old.push(container.clone());
            }
        }
        let live_version = if behind_proxy {
            containers
                .iter()
                .find(|c| c.running && is_live(&c.id))
                .map(|c| c.version.clone())
        } else {
            old.first().map(|c| c.version.clone())
        };
        // The definition first: a bad one fails before anything here changes.
        let env = self.prepared.env_for(role, &server.host);
        let mut body = app::definition(config, role, self.version, &server.host, &env)?;
        // Asset bridging: this version's assets volume, filled from the image as it starts.
        let bridged = behind_proxy && assets::path(config, role).is_some();
        if bridged {
            let mount = self
                .interruptible(assets::prepare(docker, config, role, self.version))
                .await?;
            if let Some(host_config) = body.host_config.as_mut() {
                host_config.binds.get_or_insert_with(Vec::new).push(mount);
            }
        }
        let bridge_from = live_version.clone().filter(|_| bridged);
        let mut replaced = None;
        if let Some(existing) = containers.iter().find(|c| c.name == name) {
            if old.iter().any(|c| c.id == existing.id) {
                // Redeploying the running version: its name goes to the new container, and once
                // the new one serves, this copy of the same version is removed.
                app::rename_aside(docker, &name).await?;
                replaced = Some(existing.id.clone());
            } else {
                // A stopped container of this version (rollback): start afresh from its image
                // with the current environment.
                self.interruptible(app::remove(docker, &name)).await?;
            }
        }
        let mut unit = Staged {
            unit: Unit {
                host: server.host.clone(),
                role: role.to_string(),
            },
            name: name.clone(),
            id: String::new(),
            service,
            behind_proxy,
            live_id,
            live_version,
            old,
            replaced,
            prepared_deploy: Arc::default(),
        };
        let created = self.interruptible(app::create(docker, &name, body)).await;
        unit.id = match created {
            Ok(id) => id,
            Err(err) => {
                // Nothing new exists; give a renamed live container its name back.
                self.discard(server, &unit).await;
                return Err(err);
            }
        };
        if !behind_proxy {
            staged.push(unit);
            return Ok(());
        }
        // The proxy's deploy is made ready while the container starts (a round trip less at the
        // switch); without it, the switch prepares it then.
        let id = unit.id.clone();
        let service = unit.service.clone();
        staged.push(unit);
        let (started, exec) = tokio::join!(
            self.interruptible(app::start(docker, &name)),
            proxy::prepare_deploy(server, config, &service, &id, &self.prepared.proxy_secrets)
        );
        if let Some(last) = staged.last_mut() {
            *last
                .prepared_deploy
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = exec.ok();
        }
        started?;
        // Before any switch: each version's volume gets the other's assets.
        if let Some(old) = bridge_from {
            self.interruptible(assets::bridge(docker, config, role, &old, self.version))
                .await?;
        }
        Ok(())
    }

    /// The release record this release writes on a host where `survey` was read.
    pub(super) fn pending_record(&self, host: &str, survey: &Survey) -> Record {
        let live = self.live_version_on(host, survey);
        Record::begin(
            self.version,
            live.as_deref(),
            self.kind.name(),
            &self.prepared.performer,
        )
    }

    /// The version live on `host` before this release: the primary role's if it runs there,
    /// else the first role's.
    pub(super) fn live_version_on(&self, host: &str, survey: &Survey) -> Option<String> {
        let mut roles: Vec<&str> = self.roles_on(host).map(|(role, _)| role.as_str()).collect();
        roles.sort_by_key(|role| *role != self.config.primary_role);
        roles.into_iter().find_map(|role| {
            let containers = survey.containers.get(role)?;
            if self.behind_proxy(role) {
                let live = proxy::live_target(survey.services.as_deref()?, &self.service_of(role))?;
                containers
                    .iter()
                    .find(|c| c.running && c.id.starts_with(&live))
                    .map(|c| c.version.clone())
            } else {
                containers
                    .iter()
                    .find(|c| c.running)
                    .map(|c| c.version.clone())
            }
        })
    }
}

/// Whether `err` is (or was caused by) a Ctrl-C.
pub(super) fn interrupted(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<Interrupted>())
}
