//! A load balancer: one deployed set of writer and reader targets, with their options, their
//! health checks, and the choice of a target per request (round-robin over the healthy ones; reads
//! go to readers when there are any, unless the writer-affinity cookie says otherwise).
//!
//! A deploy builds a new balancer off to the side, waits for it to become healthy, swaps it into
//! the service, then drains the old one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, Request, header};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::health::Prober;
use crate::options::TargetOptions;
use crate::target::{DrainOutcome, RequestGuard, Target};

/// Name of the cookie that keeps a client on the writers after a write.
pub const WRITER_COOKIE: &str = "kamal-writer";

/// A set of targets and how to reach them.
#[derive(Debug)]
pub struct LoadBalancer {
    pub writers: Vec<Arc<Target>>,
    pub readers: Vec<Arc<Target>>,
    pub options: Arc<TargetOptions>,
    next_writer: AtomicUsize,
    next_reader: AtomicUsize,
    /// Stops the health checks.
    checks: CancellationToken,
    /// Bumped on every health change, for deploys waiting on health.
    health_changes: watch::Sender<u64>,
}

/// Why a deploy's targets did not become healthy.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "target failed to become healthy within configured timeout ({}){}",
    crate::duration::format_duration(*.timeout),
    details(.unhealthy)
)]
pub struct Unhealthy {
    pub timeout: Duration,
    /// Each target that was not healthy, with its last probe failure.
    pub unhealthy: Vec<(String, Option<String>)>,
}

fn details(unhealthy: &[(String, Option<String>)]) -> String {
    unhealthy
        .iter()
        .map(|(target, failure)| match failure {
            Some(failure) => format!("; {target}: {failure}"),
            None => format!("; {target}: no health check answered yet"),
        })
        .collect()
}

impl LoadBalancer {
    /// Builds a balancer for addresses already normalised by `options`.
    pub fn new(
        writers: &[String],
        readers: &[String],
        options: Arc<TargetOptions>,
    ) -> Result<Arc<Self>, http::uri::InvalidUri> {
        let build = |addresses: &[String]| -> Result<Vec<Arc<Target>>, http::uri::InvalidUri> {
            addresses
                .iter()
                .map(|address| Target::new(address))
                .collect()
        };
        Ok(Arc::new(Self {
            writers: build(writers)?,
            readers: build(readers)?,
            options,
            next_writer: AtomicUsize::new(0),
            next_reader: AtomicUsize::new(0),
            checks: CancellationToken::new(),
            health_changes: watch::Sender::new(0),
        }))
    }

    /// Every target, writers first.
    pub fn targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.writers.iter().chain(&self.readers)
    }

    /// Marks every target healthy without a probe, as for targets restored from the state file.
    pub fn assume_healthy(&self) {
        for target in self.targets() {
            target.set_healthy(true);
        }
    }

    /// Starts a health-check task per target.
    pub fn start_health_checks(self: &Arc<Self>, prober: &Prober) {
        let lone = self.writers.len() + self.readers.len() == 1;
        for target in self.targets() {
            let prober = prober.clone();
            let balancer = Arc::clone(self);
            let target = Arc::clone(target);
            let options = self.options.health_check.clone();
            let stop = self.checks.clone();
            tokio::spawn(async move {
                prober
                    .watch(target, options, lone, stop, |target, failure| {
                        tracing::info!(
                            target_address = %target.address,
                            healthy = target.is_healthy(),
                            error = failure.map(|failure| failure.to_string()),
                            "Target health updated"
                        );
                        balancer.health_changes.send_modify(|count| *count += 1);
                    })
                    .await;
            });
        }
    }

    /// Stops the health checks.
    pub fn stop_health_checks(&self) {
        self.checks.cancel();
    }

    /// True when every target is healthy.
    pub fn all_healthy(&self) -> bool {
        self.targets().all(|target| target.is_healthy())
    }

    /// Waits until every target is healthy, at most `timeout`.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<(), Unhealthy> {
        let mut changes = self.health_changes.subscribe();
        let wait = async {
            loop {
                if self.all_healthy() {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_ok() && self.all_healthy() {
            return Ok(());
        }
        Err(Unhealthy {
            timeout,
            unhealthy: self
                .targets()
                .filter(|target| !target.is_healthy())
                .map(|target| {
                    (
                        target.address.clone(),
                        target.last_failure().map(|failure| failure.to_string()),
                    )
                })
                .collect(),
        })
    }

    /// Claims a target for `request`: readers take reads when there are healthy ones, writers
    /// take everything else. `None` when no healthy target can take it.
    pub fn claim<B>(
        &self,
        request: &Request<B>,
        allow_upgrade_to_readers: bool,
    ) -> Option<RequestGuard> {
        if !self.readers.is_empty()
            && is_read(request, allow_upgrade_to_readers)
            && let Some(guard) = pick(&self.readers, &self.next_reader)
        {
            return Some(guard);
        }
        pick(&self.writers, &self.next_writer)
    }

    /// Claims the healthy target whose [`Target::token`] is `token` (a sticky client's), if any.
    pub fn claim_token(&self, token: &str) -> Option<RequestGuard> {
        self.targets()
            .find(|target| target.token == token && target.is_healthy())
            .and_then(|target| target.claim())
    }

    /// Claims a healthy target not in `tried` for a request sent again, from the set
    /// [`claim`](Self::claim) would pick from: readers for a read when there are healthy ones,
    /// writers otherwise.
    pub fn claim_other(&self, read: bool, tried: &[Arc<Target>]) -> Option<RequestGuard> {
        let untried = |target: &&Arc<Target>| {
            target.is_healthy() && !tried.iter().any(|done| Arc::ptr_eq(done, target))
        };
        let readers_up = read && self.readers.iter().any(|target| target.is_healthy());
        let set = if readers_up {
            &self.readers
        } else {
            &self.writers
        };
        set.iter().filter(untried).find_map(|target| target.claim())
    }

    /// How many targets this balancer has, readers included.
    pub fn target_count(&self) -> usize {
        self.writers.len() + self.readers.len()
    }

    /// True when this balancer splits reads from writes, so writes set the affinity cookie.
    pub fn has_readers(&self) -> bool {
        !self.readers.is_empty()
    }

    /// Stops health checks and drains every target in parallel.
    pub async fn drain(&self, timeout: Duration, upgrade_grace: Duration) -> DrainOutcome {
        self.stop_health_checks();
        let drains = self
            .targets()
            .map(|target| target.drain(timeout, upgrade_grace));
        let outcomes = futures_util::future::join_all(drains).await;
        outcomes
            .into_iter()
            .fold(DrainOutcome::default(), |total, outcome| DrainOutcome {
                cancelled_requests: total.cancelled_requests + outcome.cancelled_requests,
                cut_upgraded: total.cut_upgraded + outcome.cut_upgraded,
            })
    }

    /// Writer and reader addresses, for state and listings.
    pub fn addresses(&self) -> (Vec<String>, Vec<String>) {
        let names = |targets: &[Arc<Target>]| targets.iter().map(|t| t.address.clone()).collect();
        (names(&self.writers), names(&self.readers))
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        self.checks.cancel();
    }
}

/// Round-robin over the healthy targets of `targets`, starting after the last pick.
fn pick(targets: &[Arc<Target>], next: &AtomicUsize) -> Option<RequestGuard> {
    let count = targets.len();
    if count == 0 {
        return None;
    }
    let start = next.fetch_add(1, Ordering::Relaxed);
    for offset in 0..count {
        let target = &targets[(start + offset) % count];
        if target.is_healthy()
            && let Some(guard) = target.claim()
        {
            return Some(guard);
        }
    }
    None
}

/// A read: GET or HEAD, not an upgrade (unless allowed), and no live writer-affinity cookie.
fn is_read<B>(request: &Request<B>, allow_upgrade: bool) -> bool {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    if !allow_upgrade && request.headers().contains_key(header::UPGRADE) {
        return false;
    }
    !has_live_writer_cookie(request)
}

fn has_live_writer_cookie<B>(request: &Request<B>) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or(0);
    crate::cookies::find(request.headers(), WRITER_COOKIE)
        .and_then(|value| value.parse::<u128>().ok())
        .is_some_and(|expiry| expiry > now)
}

/// The `Set-Cookie` value that keeps a client on the writers for `timeout`.
pub fn writer_cookie(timeout: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let expiry = now + timeout;
    let expires = httpdate_of(expiry + Duration::from_secs(1));
    format!(
        "{WRITER_COOKIE}={}; Path=/; Expires={expires}; HttpOnly",
        expiry.as_millis()
    )
}

fn httpdate_of(since_epoch: Duration) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + since_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer(writers: &[&str], readers: &[&str]) -> Arc<LoadBalancer> {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let balancer = LoadBalancer::new(&owned(writers), &owned(readers), Arc::default()).unwrap();
        balancer.assume_healthy();
        balancer
    }

    fn pick_for(balancer: &LoadBalancer, request: Request<()>) -> String {
        balancer
            .claim(&request, false)
            .unwrap()
            .target()
            .address
            .clone()
    }

    #[test]
    fn round_robin_skips_unhealthy_targets() {
        let balancer = balancer(&["a:1", "b:1", "c:1"], &[]);
        balancer.writers[1].set_healthy(false);
        let picks: Vec<String> = (0..4)
            .map(|_| pick_for(&balancer, Request::new(())))
            .collect();
        assert!(!picks.contains(&"b:1".to_string()), "{picks:?}");
        assert!(picks.contains(&"a:1".to_string()) && picks.contains(&"c:1".to_string()));
        for target in &balancer.writers {
            target.set_healthy(false);
        }
        assert!(balancer.claim(&Request::new(()), false).is_none());
    }

    #[test]
    fn reads_go_to_readers_and_writes_and_cookies_to_writers() {
        let balancer = balancer(&["w:1"], &["r:1"]);
        assert_eq!(
            pick_for(&balancer, Request::get("/").body(()).unwrap()),
            "r:1"
        );
        assert_eq!(
            pick_for(&balancer, Request::post("/").body(()).unwrap()),
            "w:1"
        );
        let cookie = writer_cookie(Duration::from_secs(60));
        let value = cookie.split(';').next().unwrap().to_owned();
        let sticky = Request::get("/").header("cookie", value).body(()).unwrap();
        assert_eq!(pick_for(&balancer, sticky), "w:1");
        let upgrade = Request::get("/")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert_eq!(pick_for(&balancer, upgrade), "w:1");
    }
}
