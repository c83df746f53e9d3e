//! The router: the set of services, the routing table built from them, and every change the
//! control commands make (deploy, remove, pause, stop, resume, rollout). Requests only read the
//! routing table, through one pointer; changes build a new table and swap it. No lock is held
//! while waiting for health or drains; changes to one service are serialised by its own lock.
//! Every change is saved to the state file before the command reports success; a change that
//! cannot be saved is undone (a restart would otherwise bring back what the command replaced)
//! and the command fails saying what stays in effect.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::balancer::LoadBalancer;
use crate::duration::format_duration;
use crate::error_pages::ErrorPages;
use crate::health::Prober;
use crate::options::{DeployRequest, RolloutDeployRequest, ServiceOptions};
use crate::pause::PauseState;
use crate::rollout::RolloutSplit;
use crate::routes::RouteTable;
use crate::service::{Service, ServiceConfig};
use crate::state::{self, SavedBalancer, SavedService, SavedState};
use crate::tls::Tls;

/// What a deploy's swap replaced, to undo it if the state cannot be saved.
enum Swapped {
    Replaced {
        service: Arc<Service>,
        old: Arc<LoadBalancer>,
        old_config: Arc<ServiceConfig>,
        old_table: Arc<RouteTable<Route>>,
    },
    Added {
        old_table: Arc<RouteTable<Route>>,
    },
}

/// What a routing table entry yields.
#[derive(Debug, Clone)]
pub struct Route {
    pub service: Arc<Service>,
    pub prefix: Arc<str>,
}

/// One line of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub name: String,
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
    pub targets: Vec<String>,
    pub read_targets: Vec<String>,
    pub state: String,
    pub tls: bool,
    pub rollout_targets: Vec<String>,
    /// The targets (writers and readers) out of rotation: failing their health checks, or
    /// taken out after a connection error. Absent from an older proxy's answer.
    #[serde(default)]
    pub unhealthy_targets: Vec<String>,
}

/// A control command failed; the message goes to the CLI as `Error: <message>`.
pub type CommandResult<T> = Result<T, String>;

#[derive(Debug)]
pub struct Router {
    table: ArcSwap<RouteTable<Route>>,
    services: Mutex<BTreeMap<String, Arc<Service>>>,
    operations: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    state_file: PathBuf,
    save_lock: Mutex<()>,
    /// Handing over to a new process: no change may be saved (so none takes effect) until the
    /// handover completes or is abandoned.
    frozen: std::sync::atomic::AtomicBool,
    prober: Prober,
    tls: Option<Arc<Tls>>,
}

impl Router {
    pub fn new(state_file: PathBuf) -> Self {
        Self {
            table: ArcSwap::from_pointee(RouteTable::default()),
            services: Mutex::new(BTreeMap::new()),
            operations: Mutex::new(HashMap::new()),
            state_file,
            save_lock: Mutex::new(()),
            frozen: std::sync::atomic::AtomicBool::new(false),
            prober: Prober::default(),
            tls: None,
        }
    }

    /// Keeps the certificates of TLS services with `tls` from now on.
    pub fn with_tls(mut self, tls: Arc<Tls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Tells the certificate manager which hosts need certificates now.
    fn sync_tls(&self) {
        if let Some(tls) = &self.tls {
            let options: Vec<ServiceOptions> = self
                .services()
                .values()
                .map(|service| service.config.load().options.clone())
                .collect();
            tls.sync(&options);
        }
    }

    /// The current routing table.
    pub fn table(&self) -> arc_swap::Guard<Arc<RouteTable<Route>>> {
        self.table.load()
    }

    fn services(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Service>>> {
        self.services
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn service(&self, name: &str) -> CommandResult<Arc<Service>> {
        self.services()
            .get(name)
            .cloned()
            .ok_or_else(|| format!("service not found: {name}"))
    }

    /// The per-service lock that serialises changes to one service.
    fn operation(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut operations = self
            .operations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(operations.entry(name.to_owned()).or_default())
    }

    /// Builds the routing table for `services`, with `changed` standing in for the service of
    /// the same name with new options.
    fn build_table(
        services: &BTreeMap<String, Arc<Service>>,
        changed: Option<(&str, &ServiceOptions, &Arc<Service>)>,
    ) -> CommandResult<RouteTable<Route>> {
        let mut entries: Vec<(String, ServiceOptions, Arc<Service>)> = services
            .iter()
            .filter(|(name, _)| changed.is_none_or(|(changed, _, _)| changed != name.as_str()))
            .map(|(name, service)| {
                (
                    name.clone(),
                    service.config.load().options.clone(),
                    Arc::clone(service),
                )
            })
            .collect();
        if let Some((name, options, service)) = changed {
            entries.push((name.to_owned(), options.clone(), Arc::clone(service)));
        }
        let mut rows = Vec::new();
        for (name, options, service) in &entries {
            for prefix in &options.path_prefixes {
                rows.push((
                    name.as_str(),
                    &options.hosts[..],
                    std::slice::from_ref(prefix),
                    Route {
                        service: Arc::clone(service),
                        prefix: Arc::from(prefix.as_str()),
                    },
                ));
            }
        }
        RouteTable::build(rows).map_err(|conflict| conflict.to_string())
    }

    /// Checks that `name` with `options` claims no (host, prefix) another service owns.
    fn check_conflicts(
        services: &BTreeMap<String, Arc<Service>>,
        name: &str,
        options: &ServiceOptions,
    ) -> CommandResult<()> {
        let others: Vec<(&str, ServiceOptions)> = services
            .iter()
            .filter(|(other, _)| other.as_str() != name)
            .map(|(other, service)| (other.as_str(), service.config.load().options.clone()))
            .collect();
        let rows = others
            .iter()
            .map(|(other, options)| (*other, options))
            .chain(std::iter::once((name, options)))
            .map(|(name, options)| (name, &options.hosts[..], &options.path_prefixes[..], ()));
        RouteTable::build(rows)
            .map(drop)
            .map_err(|conflict| conflict.to_string())
    }

    /// Creates or updates a service: health-checks the new targets off to the side, swaps them
    /// in, then drains the old ones. Returns once the old targets are drained.
    pub async fn deploy(&self, mut request: DeployRequest) -> CommandResult<()> {
        request.normalize().map_err(|error| error.to_string())?;
        let operation = self.operation(&request.service);
        let _serialised = operation.lock().await;
        let name = request.service.clone();
        let error_pages = load_error_pages(&request.service_options)?;

        // Refuse a conflict or an unusable certificate before spending the deploy timeout on
        // health checks.
        Self::check_conflicts(&self.services(), &name, &request.service_options)?;
        if request.service_options.tls {
            let Some(tls) = &self.tls else {
                return Err("this proxy serves no HTTPS; deploy without --tls".to_owned());
            };
            Tls::check(&request.service_options)?;
            if let Some(kid) = request.service_options.tls_acme_eab_kid.as_deref() {
                match request.tls_acme_eab_hmac_key.as_deref() {
                    Some(key) => tls.acme.add_eab_key(kid, key)?,
                    None if tls.acme.has_eab_key(kid) => {}
                    None => {
                        return Err(format!(
                            "no HMAC key is known for the external account binding key id \
                             {kid}: pass --tls-acme-eab-hmac-key (or set \
                             HOIST_PROXY_TLS_ACME_EAB_HMAC_KEY) with the deploy or on `run`"
                        ));
                    }
                }
            }
        }

        let options = Arc::new(request.target_options.clone());
        let balancer = LoadBalancer::new(&request.targets, &request.read_targets, options)
            .map_err(|error| error.to_string())?;
        tracing::info!(
            service = %name,
            targets = ?request.targets,
            read_targets = ?request.read_targets,
            hosts = ?request.service_options.hosts,
            paths = ?request.service_options.path_prefixes,
            "Deploying"
        );
        balancer.start_health_checks(&self.prober);
        if !request.deployment.force
            && let Err(unhealthy) = balancer
                .wait_healthy(request.deployment.deploy_timeout)
                .await
        {
            balancer.stop_health_checks();
            tracing::info!(service = %name, error = %unhealthy, "Deploy failed");
            return Err(unhealthy.to_string());
        }

        let config = ServiceConfig {
            options: request.service_options.clone(),
            error_pages,
        };
        let swapped = {
            let mut services = self.services();
            match services.get(&name).cloned() {
                Some(service) => {
                    let table =
                        Self::build_table(&services, Some((&name, &config.options, &service)))?;
                    let old_config = service.config.swap(Arc::new(config));
                    let old = service.active.swap(Arc::clone(&balancer));
                    let old_table = self.table.swap(Arc::new(table));
                    Swapped::Replaced {
                        service,
                        old,
                        old_config,
                        old_table,
                    }
                }
                None => {
                    let service = Arc::new(Service::new(
                        &name,
                        config,
                        Arc::clone(&balancer),
                        PauseState::default(),
                    ));
                    let table = Self::build_table(
                        &services,
                        Some((&name, &service.config.load().options, &service)),
                    )?;
                    services.insert(name.clone(), service);
                    Swapped::Added {
                        old_table: self.table.swap(Arc::new(table)),
                    }
                }
            }
        };
        if let Err(error) = self.save() {
            // Undo, so that what serves is what a restart would restore.
            match &swapped {
                Swapped::Replaced {
                    service,
                    old,
                    old_config,
                    old_table,
                } => {
                    service.config.store(Arc::clone(old_config));
                    service.active.store(Arc::clone(old));
                    self.table.store(Arc::clone(old_table));
                }
                Swapped::Added { old_table } => {
                    self.services().remove(&name);
                    self.table.store(Arc::clone(old_table));
                }
            }
            balancer.stop_health_checks();
            tracing::error!(service = %name, %error, "Deploy undone: the state could not be saved");
            return Err(format!(
                "{error}; nothing switched: the previous targets of {name} keep serving"
            ));
        }
        let replaced = match swapped {
            Swapped::Replaced { old, .. } => Some(old),
            Swapped::Added { .. } => None,
        };
        self.sync_tls();
        if let Some(old) = replaced {
            let outcome = old
                .drain(
                    request.deployment.drain_timeout,
                    request.deployment.websocket_grace,
                )
                .await;
            tracing::info!(
                service = %name,
                cancelled_requests = outcome.cancelled_requests,
                cut_upgraded = outcome.cut_upgraded,
                "Drained"
            );
        }
        tracing::info!(service = %name, targets = ?request.targets, "Deployed");
        Ok(())
    }

    /// Removes a service at once; requests in flight finish on their targets.
    pub async fn remove(&self, name: &str) -> CommandResult<()> {
        let operation = self.operation(name);
        let _serialised = operation.lock().await;
        let (removed, old_table) = {
            let mut services = self.services();
            let removed = services
                .remove(name)
                .ok_or_else(|| format!("service not found: {name}"))?;
            let table = Self::build_table(&services, None)?;
            (removed, self.table.swap(Arc::new(table)))
        };
        if let Err(error) = self.save() {
            self.services().insert(name.to_owned(), removed);
            self.table.store(old_table);
            return Err(format!("{error}; {name} was not removed and keeps serving"));
        }
        removed.active.load().stop_health_checks();
        if let Some(rollout) = removed.rollout.load_full() {
            rollout.stop_health_checks();
        }
        self.sync_tls();
        tracing::info!(service = %name, "Removed");
        Ok(())
    }

    /// Holds new requests; returns once requests in flight are done (or the drain timeout ends).
    pub async fn pause(
        &self,
        name: &str,
        drain_timeout: Duration,
        max_pause: Duration,
    ) -> CommandResult<()> {
        let service = self.service(name)?;
        let before = service.pause.state();
        service.pause.pause(max_pause);
        self.save_or_restore_pause(&service, before)?;
        tracing::info!(service = %name, max_pause = %format_duration(max_pause), "Service paused");
        wait_idle(&service, drain_timeout).await;
        Ok(())
    }

    /// Answers new requests with 503 and `message`; returns once requests in flight are done.
    pub async fn stop(
        &self,
        name: &str,
        drain_timeout: Duration,
        message: String,
    ) -> CommandResult<()> {
        let service = self.service(name)?;
        let before = service.pause.state();
        service.pause.stop(message);
        self.save_or_restore_pause(&service, before)?;
        tracing::info!(service = %name, "Service stopped");
        wait_idle(&service, drain_timeout).await;
        Ok(())
    }

    pub fn resume(&self, name: &str) -> CommandResult<()> {
        let service = self.service(name)?;
        let before = service.pause.state();
        service.pause.resume();
        self.save_or_restore_pause(&service, before)?;
        tracing::info!(service = %name, "Service resumed");
        Ok(())
    }

    /// Deploys a service's rollout targets with its current target options.
    pub async fn rollout_deploy(&self, mut request: RolloutDeployRequest) -> CommandResult<()> {
        request.normalize().map_err(|error| error.to_string())?;
        let operation = self.operation(&request.service);
        let _serialised = operation.lock().await;
        let service = self.service(&request.service)?;
        let options = Arc::clone(&service.active.load().options);
        let balancer = LoadBalancer::new(&request.targets, &request.read_targets, options)
            .map_err(|error| error.to_string())?;
        balancer.start_health_checks(&self.prober);
        if let Err(unhealthy) = balancer
            .wait_healthy(request.deployment.deploy_timeout)
            .await
        {
            balancer.stop_health_checks();
            return Err(unhealthy.to_string());
        }
        let replaced = service.rollout.swap(Some(Arc::clone(&balancer)));
        if let Err(error) = self.save() {
            service.rollout.store(replaced);
            balancer.stop_health_checks();
            return Err(format!(
                "{error}; nothing switched: the previous rollout targets keep serving"
            ));
        }
        tracing::info!(service = %request.service, targets = ?request.targets, "Rollout deployed");
        if let Some(old) = replaced {
            old.drain(
                request.deployment.drain_timeout,
                request.deployment.websocket_grace,
            )
            .await;
        }
        Ok(())
    }

    pub fn rollout_set(
        &self,
        name: &str,
        percentage: u8,
        allowlist: Vec<String>,
    ) -> CommandResult<()> {
        let service = self.service(name)?;
        if service.rollout.load().is_none() {
            return Err(format!(
                "rollout targets not set for {name}; run `hoist-proxy rollout deploy {name} --target ...` first"
            ));
        }
        let before = service.split.swap(Some(Arc::new(RolloutSplit {
            percentage,
            allowlist,
        })));
        if let Err(error) = self.save() {
            service.split.store(before);
            return Err(format!("{error}; the rollout split is unchanged"));
        }
        tracing::info!(service = %name, percentage, "Set rollout split");
        Ok(())
    }

    pub fn rollout_stop(&self, name: &str) -> CommandResult<()> {
        let service = self.service(name)?;
        let before = service.split.swap(None);
        if let Err(error) = self.save() {
            service.split.store(before);
            return Err(format!("{error}; the rollout goes on"));
        }
        tracing::info!(service = %name, "Rollout stopped");
        Ok(())
    }

    /// Every service, for `list`.
    pub fn list(&self) -> Vec<ServiceSummary> {
        self.services()
            .values()
            .map(|service| {
                let options = service.config.load().options.clone();
                let active = service.active.load();
                let (targets, read_targets) = active.addresses();
                let unhealthy_targets = active
                    .targets()
                    .filter(|target| !target.is_healthy())
                    .map(|target| target.address.clone())
                    .collect();
                ServiceSummary {
                    name: service.name.to_string(),
                    hosts: options.hosts,
                    paths: options.path_prefixes,
                    targets,
                    read_targets,
                    state: service.pause.mode().as_str().to_owned(),
                    tls: options.tls,
                    rollout_targets: service
                        .rollout
                        .load()
                        .as_ref()
                        .map(|balancer| balancer.addresses().0)
                        .unwrap_or_default(),
                    unhealthy_targets,
                }
            })
            .collect()
    }

    /// The state to persist.
    fn snapshot(&self) -> SavedState {
        let saved_balancer = |balancer: &LoadBalancer| {
            let (writers, readers) = balancer.addresses();
            SavedBalancer {
                writers,
                readers,
                options: (*balancer.options).clone(),
            }
        };
        SavedState {
            version: state::FORMAT_VERSION,
            services: self
                .services()
                .values()
                .map(|service| SavedService {
                    name: service.name.to_string(),
                    options: service.config.load().options.clone(),
                    active: saved_balancer(&service.active.load()),
                    rollout: service.rollout.load().as_deref().map(saved_balancer),
                    split: service.split.load().as_deref().cloned(),
                    pause: service.pause.state(),
                })
                .collect(),
        }
    }

    /// Stops saving changes, once the save in progress (if any) is written: from here on the
    /// state file is what a successor loads, and every change is refused and undone. False if
    /// already frozen.
    pub fn freeze(&self) -> bool {
        let _writing = self
            .save_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        !self.frozen.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// Saves changes again: the handover was abandoned.
    pub fn unfreeze(&self) {
        self.frozen
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Writes the state file.
    fn save(&self) -> CommandResult<()> {
        let _writing = self
            .save_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.frozen.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("hoist-proxy is handing over to a new process; retry in a moment".into());
        }
        state::save(&self.state_file, &self.snapshot()).map_err(|error| {
            tracing::error!(%error, "Failed to save state");
            error.to_string()
        })
    }

    /// Saves a change of `service`'s mode, or puts `before` back and fails.
    fn save_or_restore_pause(&self, service: &Service, before: PauseState) -> CommandResult<()> {
        self.save().map_err(|error| {
            let mode = before.mode.as_str();
            service.pause.restore(before);
            format!("{error}; {} stays {mode}", service.name)
        })
    }

    /// Restores saved services; their targets count as healthy at once, and checks go on.
    pub fn restore(&self, saved: SavedState) {
        let mut services = self.services();
        for entry in saved.services {
            let error_pages = load_error_pages(&entry.options).unwrap_or_else(|error| {
                tracing::warn!(service = %entry.name, %error, "Using built-in error pages");
                ErrorPages::default()
            });
            let build = |saved: &SavedBalancer| {
                LoadBalancer::new(
                    &saved.writers,
                    &saved.readers,
                    Arc::new(saved.options.clone()),
                )
            };
            let active = match build(&entry.active) {
                Ok(balancer) => balancer,
                Err(error) => {
                    tracing::error!(service = %entry.name, %error, "Skipping unreadable service in saved state");
                    continue;
                }
            };
            active.assume_healthy();
            active.start_health_checks(&self.prober);
            let service = Service::new(
                &entry.name,
                ServiceConfig {
                    options: entry.options,
                    error_pages,
                },
                active,
                entry.pause,
            );
            if let Some(Ok(rollout)) = entry.rollout.as_ref().map(build) {
                rollout.assume_healthy();
                rollout.start_health_checks(&self.prober);
                service.rollout.store(Some(rollout));
            }
            service.split.store(entry.split.map(Arc::new));
            services.insert(entry.name, Arc::new(service));
        }
        match Self::build_table(&services, None) {
            Ok(table) => self.table.store(Arc::new(table)),
            Err(error) => tracing::error!(%error, "Saved state has conflicting routes"),
        }
        drop(services);
        self.sync_tls();
    }
}

fn load_error_pages(options: &ServiceOptions) -> CommandResult<ErrorPages> {
    match &options.error_pages {
        Some(directory) => {
            ErrorPages::load(directory).map_err(|error| format!("cannot load error pages: {error}"))
        }
        None => Ok(ErrorPages::default()),
    }
}

/// Waits until no request is in flight on the service's targets, at most `timeout`.
async fn wait_idle(service: &Service, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let busy = service
            .active
            .load()
            .targets()
            .any(|target| target.in_flight() > 0)
            || service
                .rollout
                .load()
                .as_ref()
                .is_some_and(|rollout| rollout.targets().any(|target| target.in_flight() > 0));
        if !busy || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
