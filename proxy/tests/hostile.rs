//! Hostile clients against a real `hoist-proxy run` on loopback, all at once: slowloris uploads,
//! an HTTP/2 stream flood and 10,000 idle connections, while a well-behaved client keeps sending
//! GETs. The proxy must keep answering that client, stay under its memory budget and count every
//! bound it enforced in its metrics. The clients are in hostile/load.rs and hostile/client.rs,
//! what reads the proxy's memory and metrics in hostile/observe.rs; what the proxy does with
//! each request is tested in proxy.rs.

// In hostile/, so that cargo does not take them for test binaries of their own.
#[path = "hostile/client.rs"]
mod client;
#[path = "hostile/load.rs"]
mod load;
#[path = "hostile/observe.rs"]
mod observe;
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use client::{Latency, Reuse, Sample, well_behaved_client};
use load::HostileLoad;
use observe::{Metrics, Peaks, ProcessFigures, sample_peaks};
use support::{Backend, Proxy};

/// Peak resident memory (VmHWM) the proxy may reach under the whole load: the proxy-wide
/// in-memory buffer budget (`--buffer-memory-limit`, 8 MiB by default); about 17 KiB for each
/// connection with a request in flight (hyper's 8 KiB read and 8 KiB write buffers, the read
/// one growing to 16 KiB for a burst, plus the request's own state) for the 3,000 uploads; a
/// few KiB for each of the 2,000 open HTTP/2 streams; about 2 KiB for each idle connection; the
/// process's baseline (8 MB); headroom for allocator slack. Measured: about 115 MB when set,
/// 128-132 MB on 2026-12-04 with either upstream client (hyper-util's, then upstream.rs), the
/// same binary varying by 2 MB from run to run, so 128 MB had no headroom left. Without the
/// bounds this load took 1.4 GB.
const PEAK_RSS_BUDGET_BYTES: u64 = 144 * 1024 * 1024;

/// The proxy under test: the static release binary that goes into the image (the artifact users
/// run; its memory is what matters, and a debug build's is not), built by scripts/build-static,
/// which scripts/test runs first. `HOIST_PROXY_TEST_BIN` points elsewhere.
fn shipped_binary() -> String {
    if let Ok(path) = std::env::var("HOIST_PROXY_TEST_BIN") {
        return path;
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/x86_64-unknown-linux-gnu/release/hoist-proxy"
    );
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: run `scripts/build-static hoist-proxy` first (scripts/test does)"
    );
    path.to_owned()
}

/// The flags `hoist deploy` passes to `hoist-proxy deploy` (src/deploy/proxy.rs).
const DEPLOY_FLAGS: &[&str] = &[
    "--buffer-requests",
    "--buffer-responses",
    "--buffer-memory=1000000",
    "--max-request-body=104857600",
    "--forward-headers=false",
    "--health-check-rise=1",
];

/// `--request-body-timeout`, the total deadline for a buffered request body. Passed because the
/// default deadline (5 min) is longer than this whole test: at 15 s it ends every slowloris
/// upload while the load is still on, so the test sees the deadline work. Every other bound is at
/// its default.
const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(15);

/// The default of `--max-connections`: the idle connections alone reach it.
const MAX_CONNECTIONS: usize = 10_000;
/// The default of `--http2-max-concurrent-streams`.
const HTTP2_MAX_CONCURRENT_STREAMS: usize = 100;

const SLOWLORIS_CONNECTIONS: usize = 3_000;
/// How often a slowloris upload sends one more byte after its burst.
const TRICKLE_INTERVAL: Duration = Duration::from_secs(5);

const H2_CONNECTIONS: usize = 20;

const IDLE_CONNECTIONS: usize = 10_000;

/// The bound on the well-behaved client's p99 latency under the load: generous, as the proxy,
/// this test's 13,000 sockets and the backend share 2 cores.
const WELL_BEHAVED_P99_BOUND: Duration = Duration::from_secs(2);

/// How long the load may take to be in place: every connection tried, every burst sent.
const LOAD_SETUP_LIMIT: Duration = Duration::from_secs(30);
/// How long the proxy gets to close everything once the clients are gone.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// File descriptors the test process holds at the peak: the idle, slowloris and HTTP/2
/// connections, the backend's side of up to 2,000 proxied slow streams, and slack. The proxy
/// inherits the limit and needs about as many, plus spill files.
const FILE_DESCRIPTORS_NEEDED: u64 = 18_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_stays_bounded_and_keeps_serving_under_hostile_clients() {
    let open_file_limit = raise_open_file_limit();
    assert!(
        open_file_limit >= FILE_DESCRIPTORS_NEEDED,
        "RLIMIT_NOFILE's hard limit is {open_file_limit}; this test needs {FILE_DESCRIPTORS_NEEDED} \
         (raise it, e.g. `ulimit -Hn 65536` as root, before running the test)"
    );
    let backend = Backend::start("app").await;
    let metrics_port = free_port();
    let run_flags = vec![
        format!("--metrics-port={metrics_port}"),
        format!("--request-body-timeout={}s", REQUEST_BODY_TIMEOUT.as_secs()),
    ];
    let mut proxy = Proxy::start_binary(
        &shipped_binary(),
        &run_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let control = proxy.control();
    let target = backend.target();
    support::blocking(move || control.deploy("app", &target, DEPLOY_FLAGS)).await;
    assert_eq!(support::get(&proxy.url("/version")).await.body, "app");

    let pid = proxy.child.id();
    let before = ProcessFigures::read(pid);
    let (stop_load, stop) = watch::channel(false);
    let peaks = Arc::new(Peaks::default());
    let sampler = tokio::spawn(sample_peaks(pid, Arc::clone(&peaks)));
    let well_behaved = tokio::spawn(well_behaved_client(proxy.port, stop.clone()));
    let mut load = HostileLoad::start(proxy.port, stop);
    let load_started = Instant::now();
    progress(load_started, "load started");

    let established = wait_for(LOAD_SETUP_LIMIT, || load.established()).await;
    let established_after = load_started.elapsed();
    progress(load_started, &format!("load in place: {established}"));
    // Hold the load: at least two trickles of every slowloris upload, and until the proxy has
    // ended them all (its request body deadline), or that deadline plus 10 s has passed.
    let trickled_twice = Instant::now() + 2 * TRICKLE_INTERVAL;
    let hold_limit = (load_started + REQUEST_BODY_TIMEOUT + Duration::from_secs(10))
        .saturating_duration_since(Instant::now());
    wait_for(hold_limit, || {
        Instant::now() >= trickled_twice && load.slowloris.all_ended()
    })
    .await;
    let held_for = load_started.elapsed();
    progress(load_started, "load held; stopping it");
    let metrics_under_load = Metrics::scrape(metrics_port).await;
    let at_end_of_load = ProcessFigures::read(pid);
    let alive_under_load = proxy.child.try_wait().expect("proxy status").is_none();
    let slowloris_ended = load.slowloris.ended_count();

    stop_load.send(true).expect("load tasks listen");
    let samples = well_behaved.await.expect("well-behaved client");
    let load_stopped = load.join(SETTLE_LIMIT).await;
    progress(load_started, &format!("clients closed: {load_stopped}"));
    let settled = wait_for(SETTLE_LIMIT, || {
        ProcessFigures::read(pid).open_files <= before.open_files + 16
    })
    .await;
    progress(load_started, &format!("proxy settled: {settled}"));
    sampler.abort();

    let outcome = Outcome {
        pid,
        run_flags,
        open_file_limit,
        established,
        established_after,
        held_for,
        load_stopped,
        settled,
        latency: Latency::of(&samples),
        samples,
        before,
        at_end_of_load,
        after: ProcessFigures::read(pid),
        peaks,
        alive_under_load,
        alive_after: proxy.child.try_wait().expect("proxy status").is_none(),
        slowloris_ended,
        metrics_under_load,
        metrics_after: Metrics::scrape(metrics_port).await,
        load,
    };
    outcome.print();
    let problems = outcome.problems();
    assert!(
        problems.is_empty(),
        "under hostile clients:\n  - {}\n(figures above)",
        problems.join("\n  - ")
    );
}

/// What one run of the test saw.
struct Outcome {
    pid: u32,
    run_flags: Vec<String>,
    open_file_limit: u64,
    established: bool,
    established_after: Duration,
    held_for: Duration,
    /// Every client task ended after the stop.
    load_stopped: bool,
    /// The proxy's open files went back to (about) what it had before the load.
    settled: bool,
    samples: Vec<Sample>,
    latency: Latency,
    before: ProcessFigures,
    at_end_of_load: ProcessFigures,
    after: ProcessFigures,
    peaks: Arc<Peaks>,
    alive_under_load: bool,
    alive_after: bool,
    /// Slowloris uploads the proxy had ended when the load was stopped.
    slowloris_ended: usize,
    metrics_under_load: Metrics,
    metrics_after: Metrics,
    load: HostileLoad,
}

impl Outcome {
    fn peak_rss_bytes(&self) -> u64 {
        self.after
            .peak_rss_bytes
            .max(self.at_end_of_load.peak_rss_bytes)
    }

    fn print(&self) {
        println!(
            "hostile clients against hoist-proxy (the shipped static build, pid {})",
            self.pid
        );
        println!(
            "  run flags: {}; deploy flags: {}",
            self.run_flags.join(" "),
            DEPLOY_FLAGS.join(" ")
        );
        println!("  RLIMIT_NOFILE: {}", self.open_file_limit);
        println!(
            "  load {} after {:.1} s; held {:.1} s; clients closed and tasks ended: {}; \
             proxy settled (open files back near the start): {}",
            if self.established {
                "in place"
            } else {
                "NOT in place"
            },
            self.established_after.as_secs_f64(),
            self.held_for.as_secs_f64(),
            self.load_stopped,
            self.settled,
        );
        self.load.print();
        let count = |reuse: Reuse| {
            self.samples
                .iter()
                .filter(|sample| sample.reuse == reuse)
                .count()
        };
        println!(
            "  well-behaved client: {} requests ({} keep-alive, {} fresh connection), {} failed; \
             p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (bound {} ms)",
            self.samples.len(),
            count(Reuse::KeepAlive),
            count(Reuse::Fresh),
            self.latency.failures.len(),
            millis(self.latency.p50),
            millis(self.latency.p99),
            millis(self.latency.max),
            WELL_BEHAVED_P99_BOUND.as_millis(),
        );
        for failure in self.latency.failures.iter().take(10) {
            println!("    failed: {failure}");
        }
        println!(
            "  proxy RSS: {:.1} MB before, {:.1} MB at the end of the load, {:.1} MB after the \
             clients closed; peak {:.1} MB (VmHWM; sampled every 100 ms: {:.1} MB); budget {:.0} MB",
            mb(self.before.rss_bytes),
            mb(self.at_end_of_load.rss_bytes),
            mb(self.after.rss_bytes),
            mb(self.peak_rss_bytes()),
            mb(self.peaks.rss_bytes.load(Ordering::Relaxed) as u64),
            mb(PEAK_RSS_BUDGET_BYTES),
        );
        println!(
            "  proxy open files: {} before, peak {}, {} after; threads: {} before, peak {}, {} after",
            self.before.open_files,
            self.peaks.open_files.load(Ordering::Relaxed),
            self.after.open_files,
            self.before.threads,
            self.peaks.threads.load(Ordering::Relaxed),
            self.after.threads,
        );
        println!(
            "  proxy alive: {} under load, {} after; slowloris uploads it had ended when the load \
             stopped: {}/{SLOWLORIS_CONNECTIONS}",
            self.alive_under_load, self.alive_after, self.slowloris_ended,
        );
        println!("  metrics (at the end of the load / after the clients closed):");
        for (name, labels) in BOUND_METRICS {
            println!(
                "    {}: {} / {}",
                Metrics::selector(name, labels),
                self.metrics_under_load.show(name, labels),
                self.metrics_after.show(name, labels)
            );
        }
    }

    /// Every way the proxy fell short, described; empty when it held up.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        let counted = |name: &str, labels: &[(&str, &str)]| {
            self.metrics_under_load.value(name, labels).unwrap_or(0.0) > 0.0
        };
        check(
            self.alive_under_load && self.alive_after,
            "the proxy process died".into(),
        );
        check(
            self.established,
            format!(
                "the load was not in place within {LOAD_SETUP_LIMIT:?}: {}",
                self.load.missing()
            ),
        );
        check(
            self.samples.len() >= 100 && self.latency.failures.is_empty(),
            format!(
                "the well-behaved client got {} failures in {} requests (none allowed)",
                self.latency.failures.len(),
                self.samples.len()
            ),
        );
        check(
            self.latency.p99 <= WELL_BEHAVED_P99_BOUND,
            format!(
                "the well-behaved client's p99 was {:.1} ms, above {WELL_BEHAVED_P99_BOUND:?}",
                millis(self.latency.p99)
            ),
        );
        check(
            self.peak_rss_bytes() <= PEAK_RSS_BUDGET_BYTES,
            format!(
                "peak RSS {:.1} MB is over the {:.0} MB budget",
                mb(self.peak_rss_bytes()),
                mb(PEAK_RSS_BUDGET_BYTES)
            ),
        );
        check(
            counted(
                "hoist_proxy_connection_limit_reached_total",
                &[("listener", "http")],
            ),
            format!("the connection cap ({MAX_CONNECTIONS}) was not counted as reached"),
        );
        check(
            counted(
                "hoist_proxy_connections_closed_total",
                &[("listener", "http"), ("reason", "shed")],
            ),
            "no connection was counted as shed at the cap".into(),
        );
        check(
            self.load.idle.closed_by_proxy.load(Ordering::Relaxed) > 0,
            "the proxy closed none of the idle connections".into(),
        );
        check(
            counted(
                "hoist_proxy_buffer_budget_exceeded_total",
                &[("place", "memory")],
            ),
            "the proxy-wide memory budget was not counted as exceeded".into(),
        );
        check(
            counted(
                "hoist_proxy_request_body_timeouts_total",
                &[("kind", "deadline")],
            ),
            "no request body was counted as past its deadline".into(),
        );
        check(
            self.slowloris_ended == SLOWLORIS_CONNECTIONS,
            format!(
                "the proxy ended {} of {SLOWLORIS_CONNECTIONS} slowloris uploads within their \
                 {REQUEST_BODY_TIMEOUT:?} deadline plus 10 s",
                self.slowloris_ended
            ),
        );
        let streams_allowed = self.load.h2.max_streams_allowed.load(Ordering::Relaxed);
        check(
            (1..=HTTP2_MAX_CONCURRENT_STREAMS).contains(&streams_allowed),
            format!(
                "the proxy allowed {streams_allowed} concurrent HTTP/2 streams per connection, \
                 not at most {HTTP2_MAX_CONCURRENT_STREAMS}"
            ),
        );
        for place in ["memory", "disk"] {
            let left = self
                .metrics_after
                .value("hoist_proxy_buffered_bytes", &[("place", place)]);
            check(
                left == Some(0.0),
                format!(
                    "hoist_proxy_buffered_bytes{{place=\"{place}\"}} after the load: {left:?}, \
                     not 0"
                ),
            );
        }
        problems
    }
}

/// The counters and gauges of the bounds, printed and checked.
const BOUND_METRICS: &[(&str, &[(&str, &str)])] = &[
    ("hoist_proxy_connections", &[("listener", "http")]),
    (
        "hoist_proxy_connection_limit_reached_total",
        &[("listener", "http")],
    ),
    (
        "hoist_proxy_connections_closed_total",
        &[("listener", "http"), ("reason", "shed")],
    ),
    (
        "hoist_proxy_connections_closed_total",
        &[("listener", "http"), ("reason", "idle_timeout")],
    ),
    ("hoist_proxy_buffered_bytes", &[("place", "memory")]),
    ("hoist_proxy_buffered_bytes", &[("place", "disk")]),
    (
        "hoist_proxy_buffer_budget_exceeded_total",
        &[("place", "memory")],
    ),
    (
        "hoist_proxy_buffer_budget_exceeded_total",
        &[("place", "disk")],
    ),
    (
        "hoist_proxy_request_body_timeouts_total",
        &[("kind", "deadline")],
    ),
    (
        "hoist_proxy_request_body_timeouts_total",
        &[("kind", "idle")],
    ),
    ("hoist_proxy_log_lines_dropped_total", &[]),
];

// ---------------------------------------------------------------------------------------------
// Small helpers.

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (the proxy, started after,
/// inherits it); returns the limit now in force.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by reference.
    unsafe {
        assert_eq!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit),
            0,
            "getrlimit"
        );
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0, "setrlimit");
    }
    limit.rlim_cur
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

/// Notes a phase on stderr as it happens (the figures come at the end).
fn progress(since: Instant, what: &str) {
    eprintln!("[{:5.1} s] {what}", since.elapsed().as_secs_f64());
}

/// Resolves once the load is told to stop (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Polls `condition` every 50 ms until it holds (true) or `limit` passes (false).
async fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
