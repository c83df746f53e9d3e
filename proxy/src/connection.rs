//! One client connection from accept to close, around hyper's protocol work: the listener's
//! connection cap (a slot per open connection; at the cap, connections with no request in flight
//! are shed), the idle timeout (no request in flight for too long: before the first request,
//! between HTTP/1.1 requests, on an HTTP/2 connection), and graceful shutdown. What a request
//! does is the handler's; accepting and TLS are the server's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Shortest time between two rounds of shedding idle connections at the cap.
const SHED_INTERVAL: Duration = Duration::from_millis(100);

/// The connection cap of one port, shared by every serving thread that accepts on it.
#[derive(Debug)]
pub struct ListenerLimits {
    /// `http` or `https`, for metrics.
    pub name: &'static str,
    slots: Arc<Semaphore>,
    /// Wakes idle connections so they close, when the cap is reached.
    shed: Notify,
    /// When the last round of shedding started, in milliseconds since `epoch`.
    last_shed: AtomicU64,
    epoch: Instant,
    metrics: Arc<Metrics>,
    open: Gauge,
}

impl ListenerLimits {
    pub fn new(name: &'static str, max_connections: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            name,
            slots: Arc::new(Semaphore::new(max_connections)),
            shed: Notify::new(),
            last_shed: AtomicU64::new(0),
            epoch: Instant::now(),
            open: metrics.connections(name),
            metrics,
        })
    }

    /// A slot for one more connection. At the cap it counts the event, asks the connections
    /// with no request in flight to close, and waits for a slot to free up.
    pub async fn slot(self: &Arc<Self>) -> Slot {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.metrics.connection_limit_reached(self.name);
                self.shed_idle();
                loop {
                    match tokio::time::timeout(
                        SHED_INTERVAL,
                        Arc::clone(&self.slots).acquire_owned(),
                    )
                    .await
                    {
                        Ok(Ok(permit)) => break permit,
                        // The semaphore is never closed; wait like a timeout would.
                        Ok(Err(_)) => tokio::time::sleep(SHED_INTERVAL).await,
                        Err(_) => self.shed_idle(),
                    }
                }
            }
        };
        self.open.inc();
        Slot {
            _permit: permit,
            limits: Arc::clone(self),
        }
    }

    /// Wakes every idle connection so it closes, at most once per [`SHED_INTERVAL`].
    fn shed_idle(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_shed.load(Ordering::Relaxed);
        let interval = SHED_INTERVAL.as_millis() as u64;
        if (last == 0 || now.saturating_sub(last) >= interval)
            && self
                .last_shed
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.shed.notify_waiters();
        }
    }
}

/// An open connection's place under the cap; freed when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    limits: Arc<ListenerLimits>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.open.dec();
    }
}

/// Requests in flight on one connection, so its driver knows when it is idle. Requests only
/// touch atomics; the driver looks at them when its timer fires.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// When the connection last became idle, in milliseconds since `opened`.
    idle_since: AtomicU64,
    http2: AtomicBool,
    opened: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            opened: Instant::now(),
        }
    }
}

impl Activity {
    /// Counts a request from its arrival until the guard (held by its response body) drops.
    pub fn start(self: &Arc<Self>, version: http::Version) -> ActivityGuard {
        if version == http::Version::HTTP_2 && !self.http2.load(Ordering::Relaxed) {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        ActivityGuard {
            activity: Arc::clone(self),
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// When the idle timeout ends if nothing happens before.
    fn idle_deadline(&self, timeouts: IdleTimeouts) -> Instant {
        let timeout = if self.http2.load(Ordering::Relaxed) {
            timeouts.http2
        } else {
            timeouts.http1
        };
        if self.idle() {
            let since = Duration::from_millis(self.idle_since.load(Ordering::Acquire));
            self.opened + since + timeout
        } else {
            Instant::now() + timeout
        }
    }

    /// Resolves with the reason the connection should close: idle past its timeout, or idle
    /// while the listener sheds.
    async fn close_reason(&self, limits: &ListenerLimits, timeouts: IdleTimeouts) -> &'static str {
        loop {
            let deadline = self.idle_deadline(timeouts);
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if self.idle() && Instant::now() >= self.idle_deadline(timeouts) {
                        return "idle_timeout";
                    }
                }
                () = limits.shed.notified() => {
                    if self.idle() {
                        return "shed";
                    }
                }
            }
        }
    }
}

/// Holds one request in its connection's in-flight count.
#[derive(Debug)]
pub struct ActivityGuard {
    activity: Arc<Activity>,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let activity = &self.activity;
        let millis = u64::try_from(activity.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.idle_since.store(millis, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a connection may go with no request in flight.
#[derive(Debug, Clone, Copy)]
pub struct IdleTimeouts {
    /// Before the first request, and between HTTP/1.1 requests.
    pub http1: Duration,
    /// On a connection that has carried an HTTP/2 request.
    pub http2: Duration,
}

/// Drives `connection` to its end, asking it to finish gracefully (HTTP/1.1: after the request
/// in flight; HTTP/2: GOAWAY, then the open streams) on shutdown, on the idle timeout, or when
/// its listener sheds idle connections. `_slot` is held until the connection is gone.
pub async fn drive<C>(
    connection: C,
    activity: Arc<Activity>,
    slot: Slot,
    timeouts: IdleTimeouts,
    shutdown: CancellationToken,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    let limits = Arc::clone(&slot.limits);
    let mut connection = std::pin::pin!(connection);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            reason = activity.close_reason(&limits, timeouts), if !closing => {
                closing = true;
                limits.metrics.connection_closed(limits.name, reason);
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    drop(slot);
    result
}

/// Runs `future` unless `shutdown` fires first (for work before the connection exists, such
/// as a TLS handshake).
pub async fn unless_shutdown<F: Future>(
    future: F,
    shutdown: &CancellationToken,
) -> Option<F::Output> {
    let future: Pin<&mut F> = std::pin::pin!(future);
    tokio::select! {
        output = future => Some(output),
        () = shutdown.cancelled() => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_times_out_and_a_busy_one_does_not() {
        let metrics = Arc::new(Metrics::default());
        let limits = ListenerLimits::new("http", 10, metrics);
        let timeouts = IdleTimeouts {
            http1: Duration::from_secs(5),
            http2: Duration::from_secs(60),
        };
        let activity = Arc::new(Activity::default());
        let busy = activity.start(http::Version::HTTP_11);
        let waiting = activity.close_reason(&limits, timeouts);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_secs(30), waiting.as_mut())
                .await
                .is_err(),
            "a request in flight keeps the connection"
        );
        drop(busy);
        let started = Instant::now();
        assert_eq!(waiting.await, "idle_timeout");
        assert!(started.elapsed() <= Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn http2_connections_get_their_own_idle_timeout() {
        let metrics = Arc::new(Metrics::default());
        let limits = ListenerLimits::new("http", 10, metrics);
        let timeouts = IdleTimeouts {
            http1: Duration::from_secs(5),
            http2: Duration::from_secs(60),
        };
        let activity = Arc::new(Activity::default());
        drop(activity.start(http::Version::HTTP_2));
        let started = Instant::now();
        assert_eq!(
            activity.close_reason(&limits, timeouts).await,
            "idle_timeout"
        );
        assert!(started.elapsed() >= Duration::from_secs(59));
    }

    #[tokio::test]
    async fn at_the_cap_idle_connections_are_shed_and_busy_ones_kept() {
        let metrics = Arc::new(Metrics::default());
        let limits = ListenerLimits::new("http", 2, Arc::clone(&metrics));
        let timeouts = IdleTimeouts {
            http1: Duration::from_secs(600),
            http2: Duration::from_secs(600),
        };
        let idle = Arc::new(Activity::default());
        let busy = Arc::new(Activity::default());
        let _request = busy.start(http::Version::HTTP_11);
        let idle_slot = limits.slot().await;
        let _busy_slot = limits.slot().await;
        let idle_reason = {
            let (limits, idle) = (Arc::clone(&limits), Arc::clone(&idle));
            tokio::spawn(async move { idle.close_reason(&limits, timeouts).await })
        };
        let busy_reason = {
            let (limits, busy) = (Arc::clone(&limits), Arc::clone(&busy));
            tokio::spawn(async move { busy.close_reason(&limits, timeouts).await })
        };
        tokio::task::yield_now().await;
        let third = {
            let limits = Arc::clone(&limits);
            tokio::spawn(async move { limits.slot().await })
        };
        assert_eq!(idle_reason.await.unwrap(), "shed");
        drop(idle_slot);
        let _third = third.await.unwrap();
        assert!(
            !busy_reason.is_finished(),
            "a connection with a request stays"
        );
        let text = metrics.encode();
        assert!(
            text.contains("hoist_proxy_connection_limit_reached_total{listener=\"http\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hoist_proxy_connections{listener=\"http\"} 2"),
            "{text}"
        );
        busy_reason.abort();
    }
}
