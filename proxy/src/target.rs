//! One upstream target (`host:port`): its health flag, the requests in flight on it, and its
//! drain. A request claims the target before it is forwarded and releases it when the response
//! body is finished, so a drain waits for whole responses, not just headers.
//!
//! Claim and drain race safely without a lock: a claim increments the in-flight count, then
//! checks the draining flag; a drain sets the flag, then reads the count (both sequentially
//! consistent). Either the claim sees the flag and backs off, or the drain sees the claim.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Authority;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::health::ProbeFailure;

/// An upstream target.
#[derive(Debug)]
pub struct Target {
    /// `host:port`, as deployed.
    pub address: String,
    /// The same, parsed, for upstream request URIs.
    pub authority: Authority,
    /// The same as a header value (`X-Kamal-Target`), built once: a clone shares its bytes.
    pub header: Option<http::HeaderValue>,
    /// What the `hoist-target` cookie says to come back to this target: a hash of its
    /// address, so the address itself is not shown to clients.
    pub token: String,
    healthy: AtomicBool,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    upgraded: AtomicUsize,
    /// Woken whenever a count drops to zero.
    idle: Notify,
    /// Cancels requests still running when the drain timeout ends.
    cancel_requests: CancellationToken,
    /// Cuts upgraded connections (WebSockets) when their grace ends.
    cancel_upgraded: CancellationToken,
    /// The latest failed health check, until one passes.
    last_failure: Mutex<Option<ProbeFailure>>,
}

/// What a drain did, for logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    /// Requests that were still running at the deadline and got a 504.
    pub cancelled_requests: usize,
    /// Upgraded connections that were still open when their grace ended.
    pub cut_upgraded: usize,
}

impl Target {
    /// A target for an address already checked by `options::normalize_target`.
    pub fn new(address: &str) -> Result<Arc<Self>, http::uri::InvalidUri> {
        Ok(Arc::new(Self {
            address: address.to_owned(),
            authority: address.parse()?,
            header: http::HeaderValue::from_str(address).ok(),
            token: token(address),
            healthy: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            upgraded: AtomicUsize::new(0),
            idle: Notify::new(),
            cancel_requests: CancellationToken::new(),
            cancel_upgraded: CancellationToken::new(),
            last_failure: Mutex::new(None),
        }))
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets the health flag; returns the previous value.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed)
    }

    /// The latest failed health check, if the latest check failed.
    pub fn last_failure(&self) -> Option<ProbeFailure> {
        self.last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn set_last_failure(&self, failure: ProbeFailure) {
        *self
            .last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(failure);
    }

    pub fn clear_last_failure(&self) {
        self.last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }

    /// Claims the target for one request, or `None` if it is draining.
    pub fn claim(self: &Arc<Self>) -> Option<RequestGuard> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.draining.load(Ordering::SeqCst) {
            self.release(&self.in_flight);
            return None;
        }
        Some(RequestGuard {
            target: Arc::clone(self),
        })
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Fires when the drain timeout ends with this request still running.
    pub fn request_cancelled(&self) -> &CancellationToken {
        &self.cancel_requests
    }

    fn release(&self, counter: &AtomicUsize) {
        if counter.fetch_sub(1, Ordering::SeqCst) == 1 && self.draining.load(Ordering::SeqCst) {
            self.idle.notify_waiters();
        }
    }

    /// Stops new claims, waits for requests in flight up to `timeout` and cancels the rest
    /// (their clients get 504); upgraded connections get `upgrade_grace`, then are cut.
    pub async fn drain(&self, timeout: Duration, upgrade_grace: Duration) -> DrainOutcome {
        self.draining.store(true, Ordering::SeqCst);
        let requests = async {
            let finished = self.wait_for_zero(&self.in_flight, timeout).await;
            if finished {
                return 0;
            }
            let left = self.in_flight.load(Ordering::SeqCst);
            self.cancel_requests.cancel();
            // Cancelled requests answer 504 right away; give them a moment to unwind.
            self.wait_for_zero(&self.in_flight, Duration::from_secs(1))
                .await;
            left
        };
        let upgraded = async {
            let closed = upgrade_grace > Duration::ZERO
                && self.wait_for_zero(&self.upgraded, upgrade_grace).await;
            if closed {
                return 0;
            }
            let left = self.upgraded.load(Ordering::SeqCst);
            self.cancel_upgraded.cancel();
            left
        };
        let (cancelled_requests, cut_upgraded) = tokio::join!(requests, upgraded);
        DrainOutcome {
            cancelled_requests,
            cut_upgraded,
        }
    }

    /// Waits until `counter` is zero, at most `timeout`; true if it got there.
    async fn wait_for_zero(&self, counter: &AtomicUsize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if counter.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return counter.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

/// Holds a claim on a target; dropping it releases the claim.
#[derive(Debug)]
pub struct RequestGuard {
    target: Arc<Target>,
}

impl RequestGuard {
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// An upgraded connection that outlives its request: counted apart, with its own cut-off.
    pub fn upgraded(&self) -> UpgradeGuard {
        self.target.upgraded.fetch_add(1, Ordering::SeqCst);
        UpgradeGuard {
            target: Arc::clone(&self.target),
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.target.release(&self.target.in_flight);
    }
}

/// Holds an upgraded connection open on a target.
#[derive(Debug)]
pub struct UpgradeGuard {
    target: Arc<Target>,
}

impl UpgradeGuard {
    /// Fires when the connection must be cut.
    pub fn cut(&self) -> &CancellationToken {
        &self.target.cancel_upgraded
    }
}

impl Drop for UpgradeGuard {
    fn drop(&mut self) {
        self.target.release(&self.target.upgraded);
    }
}

/// 16 hex digits of FNV-1a over `address`: stable across restarts and processes.
fn token(address: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in address.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_claims_and_refuses_new_ones() {
        let target = Target::new("app:3000").unwrap();
        let guard = target.claim().unwrap();
        let drainer = {
            let target = Arc::clone(&target);
            tokio::spawn(async move { target.drain(Duration::from_secs(5), Duration::ZERO).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            target.claim().is_none(),
            "a draining target takes no new requests"
        );
        assert!(!drainer.is_finished());
        drop(guard);
        let outcome = drainer.await.unwrap();
        assert_eq!(outcome, DrainOutcome::default());
    }

    #[tokio::test]
    async fn drain_cancels_what_outlives_the_timeout() {
        let target = Target::new("app:3000").unwrap();
        let guard = target.claim().unwrap();
        let cancelled = target.request_cancelled().clone();
        let holder = tokio::spawn(async move {
            cancelled.cancelled().await;
            drop(guard);
        });
        let outcome = target
            .drain(Duration::from_millis(50), Duration::ZERO)
            .await;
        assert_eq!(outcome.cancelled_requests, 1);
        holder.await.unwrap();
        assert_eq!(target.in_flight(), 0);
    }

    #[tokio::test]
    async fn upgraded_connections_get_their_grace() {
        let target = Target::new("app:3000").unwrap();
        let upgrade = target.claim().unwrap().upgraded();
        let cut = upgrade.cut().clone();
        let started = tokio::time::Instant::now();
        let outcome = target
            .drain(Duration::from_secs(5), Duration::from_millis(100))
            .await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(outcome.cut_upgraded, 1);
        assert!(cut.is_cancelled());
        drop(upgrade);
    }
}
