//! One client connection from accept to close, around hyper's protocol work: the listener's
//! connection cap (a slot per open connection; at the cap, connections idle for a second are
//! shed, those that never sent a request first), the wait for a connection's first byte (hyper's
//! state is only built after it), the idle timeout (no request in flight for too long: before
//! the first request, between HTTP/1.1 requests, on an HTTP/2 connection), and graceful
//! shutdown. What a request does is the handler's; accepting and TLS are the server's.

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

/// How long a connection must have been idle to be shed: a client that just connected (or just
/// got its response) has this long to send its request before it counts as idle.
const SHED_MIN_IDLE: Duration = Duration::from_secs(1);

/// The connection cap of one port, shared by every serving thread that accepts on it.
#[derive(Debug)]
pub struct ListenerLimits {
    /// `http` or `https`, for metrics.
    pub name: &'static str,
    slots: Arc<Semaphore>,
    /// Wakes idle connections so they close, when the cap is reached.
    shed: Notify,
    /// Shedding also takes connections that have carried requests (keep-alive clients), not just
    /// those that never sent one: set when shedding the latter did not free a slot.
    shed_used: AtomicBool,
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
            shed_used: AtomicBool::new(false),
            last_shed: AtomicU64::new(0),
            epoch: Instant::now(),
            open: metrics.connections(name),
            metrics,
        })
    }

    /// A slot for one more connection. At the cap it counts the event, asks the connections
    /// that never sent a request and have been idle a while to close, then (if that freed
    /// nothing) idle keep-alive connections too, and waits for a slot to free up.
    pub async fn slot(self: &Arc<Self>) -> Slot {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.metrics.connection_limit_reached(self.name);
                self.shed_idle();
                let permit = loop {
                    match tokio::time::timeout(
                        SHED_INTERVAL,
                        Arc::clone(&self.slots).acquire_owned(),
                    )
                    .await
                    {
                        Ok(Ok(permit)) => break permit,
                        // The semaphore is never closed; wait like a timeout would.
                        Ok(Err(_)) => tokio::time::sleep(SHED_INTERVAL).await,
                        Err(_) => {
                            self.shed_used.store(true, Ordering::Relaxed);
                            self.shed_idle();
                        }
                    }
                };
                self.shed_used.store(false, Ordering::Relaxed);
                permit
            }
        };
        Slot {
            _permit: permit,
            limits: Arc::clone(self),
            counted: false,
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

/// A place under the cap, taken before accepting (so a full listener stops accepting) and
/// freed when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    limits: Arc<ListenerLimits>,
    /// In the open-connections gauge, once a connection holds it.
    counted: bool,
}

impl Slot {
    /// The slot now holds an accepted connection.
    pub fn opened(&mut self) {
        if !self.counted {
            self.counted = true;
            self.limits.open.inc();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.counted {
            self.limits.open.dec();
        }
    }
}

/// Requests in flight on one connection, so its driver knows when it is idle. Requests only
/// touch atomics; the driver looks at them when its timer fires.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Some request has arrived on it.
    used: AtomicBool,
    /// When the connection last became idle, in milliseconds since `opened`.
    idle_since: AtomicU64,
    http2: AtomicBool,
    opened: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            used: AtomicBool::new(false),
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
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        ActivityGuard {
            activity: Arc::clone(self),
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// How long it has been idle; zero while a request is in flight.
    fn idle_for(&self) -> Duration {
        if !self.idle() {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.idle_since.load(Ordering::Acquire));
        self.opened.elapsed().saturating_sub(since)
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
                    let eligible = !self.used.load(Ordering::Relaxed)
                        || limits.shed_used.load(Ordering::Relaxed);
                    if eligible && self.idle_for() >= SHED_MIN_IDLE {
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

/// Waits until the client sends something, or until the connection is to close without having
/// served anything: shutdown, the idle timeout, or shedding at the cap. A connection that never
/// sends a byte thus costs a small task, not hyper's connection state (allocated after this).
pub async fn first_byte(
    stream: &tokio::net::TcpStream,
    activity: &Activity,
    slot: &mut Slot,
    timeouts: IdleTimeouts,
    shutdown: &CancellationToken,
) -> bool {
    slot.opened();
    let limits = &slot.limits;
    tokio::select! {
        readable = stream.readable() => readable.is_ok(),
        reason = activity.close_reason(limits, timeouts) => {
            limits.metrics.connection_closed(limits.name, reason);
            false
        }
        () = shutdown.cancelled() => {
            // Draining patiently: a client that just connected gets its first request answered.
            patient() && tokio::time::timeout(PATIENT_IDLE, stream.readable()).await.is_ok_and(|readable| readable.is_ok())
        }
    }
}

/// Drives `connection` to its end, asking it to finish gracefully (HTTP/1.1: after the request
/// in flight; HTTP/2: GOAWAY, then the open streams) on shutdown, on the idle timeout, or when
/// its listener sheds idle connections. `slot` is held until the connection is gone.
pub async fn drive<C>(
    mut connection: Pin<Box<C>>,
    activity: Arc<Activity>,
    mut slot: Slot,
    timeouts: IdleTimeouts,
    shutdown: CancellationToken,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    slot.opened();
    let limits = Arc::clone(&slot.limits);
    let mut closing = false;
    let mut draining = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = shutdown.cancelled(), if !closing && !draining => {
                if patient() {
                    draining = true;
                } else {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = activity.may_close(), if draining && !closing => {
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

/// How long an idle HTTP/1.1 connection is kept while draining patiently, in case its client
/// is about to send a request on it.
const PATIENT_IDLE: Duration = Duration::from_secs(1);

/// Set once this process drains patiently: it has handed over to a successor, so no connection
/// needs closing in a hurry.
static PATIENT: AtomicBool = AtomicBool::new(false);

/// Upgraded connections (WebSockets) open in this process, across serving threads.
static TUNNELS: AtomicUsize = AtomicUsize::new(0);

/// From now on, shutdown is patient: connections finish their handshake, a request arriving on
/// an idle HTTP/1.1 connection is answered (with `Connection: close`) before it closes, idle ones
/// close after [`PATIENT_IDLE`], and upgraded connections are waited for (all up to the shutdown
/// timeout). Closing an idle keep-alive connection at once could cut a request its client is
/// sending at that moment.
pub fn drain_patiently() {
    PATIENT.store(true, Ordering::SeqCst);
}

fn patient() -> bool {
    PATIENT.load(Ordering::Relaxed)
}

/// Counts an upgraded connection while the guard lives.
pub fn tunnel_opened() -> TunnelGuard {
    TUNNELS.fetch_add(1, Ordering::AcqRel);
    TunnelGuard(())
}

/// Holds one upgraded connection in the count.
#[derive(Debug)]
pub struct TunnelGuard(());

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        TUNNELS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// When draining patiently, waits until no upgraded connection is open (or `deadline`).
pub async fn tunnels_closed(deadline: Instant) {
    while patient() && TUNNELS.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Activity {
    /// Resolves when a patiently draining connection may close: it speaks HTTP/2 (GOAWAY is
    /// safe), a request is in flight (it closes after the response), or it has been idle a while.
    async fn may_close(&self) {
        loop {
            if self.http2.load(Ordering::Relaxed) || !self.idle() || self.idle_for() >= PATIENT_IDLE
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Runs `future` unless `shutdown` fires first (for work before the connection exists).
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

/// Like [`unless_shutdown`], except that when draining patiently `future` runs to its end (a
/// TLS handshake: the client is waiting on it).
pub async fn unless_shutdown_now<F: Future>(
    future: F,
    shutdown: &CancellationToken,
) -> Option<F::Output> {
    let mut future: Pin<&mut F> = std::pin::pin!(future);
    tokio::select! {
        output = future.as_mut() => return Some(output),
        () = shutdown.cancelled() => {}
    }
    if patient() { Some(future.await) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener with room to spare, 5 s idle timeout for HTTP/1.1 and 60 s for HTTP/2.
    fn listener_with_timeouts() -> (Arc<ListenerLimits>, IdleTimeouts) {
        let limits = ListenerLimits::new("http", 10, Arc::new(Metrics::default()));
        let timeouts = IdleTimeouts {
            http1: Duration::from_secs(5),
            http2: Duration::from_secs(60),
        };
        (limits, timeouts)
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_times_out_and_a_busy_one_does_not() {
        let (limits, timeouts) = listener_with_timeouts();
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
        let (limits, timeouts) = listener_with_timeouts();
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
    async fn at_the_cap_idle_connections_are_shed_and_busy_or_fresh_ones_kept() {
        let metrics = Arc::new(Metrics::default());
        let limits = ListenerLimits::new("http", 3, Arc::clone(&metrics));
        let timeouts = IdleTimeouts {
            http1: Duration::from_secs(600),
            http2: Duration::from_secs(600),
        };
        let long_idle = Arc::new(Activity {
            opened: Instant::now() - Duration::from_secs(5),
            ..Activity::default()
        });
        let busy = Arc::new(Activity::default());
        let _request = busy.start(http::Version::HTTP_11);
        let fresh = Arc::new(Activity::default());
        let mut slots = Vec::new();
        for _ in 0..3 {
            let mut slot = limits.slot().await;
            slot.opened();
            slots.push(slot);
        }
        let watch = |activity: &Arc<Activity>| {
            let (limits, activity) = (Arc::clone(&limits), Arc::clone(activity));
            tokio::spawn(async move { activity.close_reason(&limits, timeouts).await })
        };
        let (long_idle_reason, busy_reason, fresh_reason) =
            (watch(&long_idle), watch(&busy), watch(&fresh));
        tokio::task::yield_now().await;
        let fourth = {
            let limits = Arc::clone(&limits);
            tokio::spawn(async move { limits.slot().await })
        };
        assert_eq!(long_idle_reason.await.unwrap(), "shed");
        slots.remove(0);
        let _fourth = fourth.await.unwrap();
        assert!(
            !busy_reason.is_finished(),
            "a connection with a request stays"
        );
        assert!(
            !fresh_reason.is_finished(),
            "a connection that just opened gets time to send its request"
        );
        let text = metrics.encode();
        let reached = "hoist_proxy_connection_limit_reached_total{listener=\"http\"} 1";
        assert!(text.contains(reached), "{text}");
        let open = "hoist_proxy_connections{listener=\"http\"} 2";
        assert!(
            text.contains(open),
            "only accepted connections count: {text}"
        );
        busy_reason.abort();
        fresh_reason.abort();
    }
}
