//! The hostile clients, one task per connection: slowloris uploads, idle connections and an
//! HTTP/2 stream flood, each kind counting what the proxy did to it. A connection the proxy ends
//! stays ended, except the HTTP/2 flood's, which connects again.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{H2_CONNECTIONS, IDLE_CONNECTIONS, SLOWLORIS_CONNECTIONS, TRICKLE_INTERVAL, stopped};

/// The body length each slowloris upload announces (it never gets there).
const SLOWLORIS_CONTENT_LENGTH: usize = 1_048_576;
/// What a slowloris upload sends at once, right after its headers: most send a little and then
/// trickle (the acceptance's "trickling a 1 MB body"); one in [`SLOWLORIS_BURSTING_EVERY`]
/// sends 200 KB first, as in the measurement, which is what fills the proxy-wide memory
/// budget (300 x 200 KB is well over its 8 MiB). A burst is what makes hyper grow a
/// connection's read buffer to its 16 KiB maximum; scripts/bench-hostile sends it on every
/// connection, against nginx.
const SLOWLORIS_BURST_BYTES: usize = 200 * 1024;
const SLOWLORIS_START_BYTES: usize = 4 * 1024;
const SLOWLORIS_BURSTING_EVERY: usize = 10;
/// How many of the flood's connections send slow GETs (each stream also holding a target
/// connection) instead of unfinished uploads.
const H2_SLOW_GET_CONNECTIONS: usize = 1;
/// A backend delay longer than the test: these streams hold a target connection until the end.
const H2_SLOW_PATH: &str = "/slow?ms=60000";
/// Streams one flood connection keeps open at most, whatever the server allows, so that a
/// server without a limit cannot exhaust this test process.
const H2_STREAMS_PER_CONNECTION_CAP: usize = 1_000;
/// How long one connection attempt of the load may take (the SYN retransmits of a full backlog).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Every hostile client, running; what each kind saw is in its stats.
pub struct HostileLoad {
    pub slowloris: Arc<SlowlorisStats>,
    pub h2: Arc<H2Stats>,
    pub idle: Arc<IdleStats>,
    tasks: JoinSet<()>,
}

impl HostileLoad {
    /// Starts every client against `port`; they all stop when `stop` turns true.
    pub fn start(port: u16, stop: watch::Receiver<bool>) -> Self {
        let mut load = Self {
            slowloris: Arc::default(),
            h2: Arc::default(),
            idle: Arc::default(),
            tasks: JoinSet::new(),
        };
        for _ in 0..IDLE_CONNECTIONS {
            load.tasks
                .spawn(idle_connection(port, Arc::clone(&load.idle), stop.clone()));
        }
        for index in 0..SLOWLORIS_CONNECTIONS {
            let start = if index % SLOWLORIS_BURSTING_EVERY == 0 {
                SLOWLORIS_BURST_BYTES
            } else {
                SLOWLORIS_START_BYTES
            };
            load.tasks.spawn(slowloris(
                port,
                start,
                Arc::clone(&load.slowloris),
                stop.clone(),
            ));
        }
        for index in 0..H2_CONNECTIONS {
            // Streams held open as long as the proxy allows: request bodies that never finish.
            // One connection sends slow GETs instead; each of those also holds a target
            // connection, about 18 KiB more per stream (measured with half the connections so):
            // that is a slow app more than a hostile client, bounded by the caps on
            // connections and streams.
            let kind = if index < H2_SLOW_GET_CONNECTIONS {
                H2Stream::SlowGet
            } else {
                H2Stream::UnfinishedPost
            };
            load.tasks
                .spawn(h2_flood(port, kind, Arc::clone(&load.h2), stop.clone()));
        }
        load
    }

    /// Every idle connection tried, every slowloris burst sent (or stopped by the proxy), every
    /// HTTP/2 connection at its stream limit (or ended by the proxy) at least once.
    pub fn established(&self) -> bool {
        self.idle.attempted.load(Ordering::SeqCst) == IDLE_CONNECTIONS
            && self.slowloris.bursts_finished.load(Ordering::SeqCst) == SLOWLORIS_CONNECTIONS
            && self.h2.settled.load(Ordering::SeqCst) == H2_CONNECTIONS
    }

    /// What `established` still waits for.
    pub fn missing(&self) -> String {
        format!(
            "idle connections tried {}/{IDLE_CONNECTIONS}, slowloris bursts finished \
             {}/{SLOWLORIS_CONNECTIONS}, HTTP/2 connections at their stream limit {}/{H2_CONNECTIONS}",
            self.idle.attempted.load(Ordering::SeqCst),
            self.slowloris.bursts_finished.load(Ordering::SeqCst),
            self.h2.settled.load(Ordering::SeqCst),
        )
    }

    /// Waits (up to `limit`) for every client task to end after the stop; false if some did not.
    pub async fn join(&mut self, limit: Duration) -> bool {
        let all = async { while self.tasks.join_next().await.is_some() {} };
        tokio::time::timeout(limit, all).await.is_ok()
    }

    /// Prints what each kind of client saw, a few lines each.
    pub fn print(&self) {
        let (slowloris, idle, h2) = (&self.slowloris, &self.idle, &self.h2);
        let load = |counter: &AtomicUsize| counter.load(Ordering::Relaxed);
        println!(
            "  slowloris: {} connected, {} failed to connect; {} sent their first bytes (one in \
             {SLOWLORIS_BURSTING_EVERY}: {} KB, the others {} KB); {} trickled bytes",
            load(&slowloris.connected),
            load(&slowloris.connect_failed),
            load(&slowloris.bursts_sent),
            SLOWLORIS_BURST_BYTES / 1024,
            SLOWLORIS_START_BYTES / 1024,
            load(&slowloris.trickled_bytes),
        );
        println!("    ended by the proxy: {}", slowloris.endings());
        println!(
            "  idle: {} connected, {} failed to connect, {} closed by the proxy",
            load(&idle.connected),
            load(&idle.connect_failed),
            load(&idle.closed_by_proxy),
        );
        println!(
            "  HTTP/2: {} connections made ({} failed), at most {} concurrent streams allowed \
             per connection; {} streams opened: responses {:?}, {} refused, {} reset otherwise",
            load(&h2.connections),
            load(&h2.connect_failed),
            load(&h2.max_streams_allowed),
            load(&h2.streams_opened),
            h2.responses.lock().unwrap(),
            load(&h2.refused),
            load(&h2.reset_other),
        );
    }
}

// Slowloris: the headers of a large POST, a quick burst of its body, then a byte now and then.

#[derive(Default)]
pub struct SlowlorisStats {
    connected: AtomicUsize,
    connect_failed: AtomicUsize,
    /// Uploads done with their burst: all of it sent, stopped by the proxy, or never connected.
    bursts_finished: AtomicUsize,
    bursts_sent: AtomicUsize,
    trickled_bytes: AtomicUsize,
    /// How the proxy ended each upload, and how long after it connected.
    ended: Mutex<Vec<(Ending, Duration)>>,
}

impl SlowlorisStats {
    pub fn ended_count(&self) -> usize {
        self.ended.lock().unwrap().len()
    }

    pub fn all_ended(&self) -> bool {
        self.ended_count() + self.connect_failed.load(Ordering::SeqCst) == SLOWLORIS_CONNECTIONS
    }

    /// How the uploads ended, by kind: "answered 408 x2990 after 15.0-16.2 s, closed x10 ..."
    fn endings(&self) -> String {
        let mut by_kind: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
        for (ending, after) in self.ended.lock().unwrap().iter() {
            by_kind.entry(ending.to_string()).or_default().push(*after);
        }
        if by_kind.is_empty() {
            return "none".into();
        }
        let parts: Vec<String> = by_kind
            .iter()
            .map(|(kind, afters)| {
                let first = afters.iter().min().copied().unwrap_or_default();
                let last = afters.iter().max().copied().unwrap_or_default();
                format!(
                    "{kind} x{} after {:.1}-{:.1} s",
                    afters.len(),
                    first.as_secs_f64(),
                    last.as_secs_f64()
                )
            })
            .collect();
        parts.join(", ")
    }
}

async fn slowloris(
    port: u16,
    start: usize,
    stats: Arc<SlowlorisStats>,
    mut stop: watch::Receiver<bool>,
) {
    let burst_reported = AtomicBool::new(false);
    let Some(mut stream) = connect(port).await else {
        stats.connect_failed.fetch_add(1, Ordering::SeqCst);
        report_burst(&stats, &burst_reported);
        return;
    };
    stats.connected.fetch_add(1, Ordering::SeqCst);
    let connected = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let ending = tokio::select! {
        ending = read_ending(&mut reader) => ending,
        () = upload_slowly(&mut writer, port, start, &stats, &burst_reported) => {
            // A write failed: the proxy closed the connection; its answer may still be there.
            tokio::time::timeout(Duration::from_secs(1), read_ending(&mut reader))
                .await
                .unwrap_or(Ending::Reset)
        }
        () = stopped(&mut stop) => return,
    };
    report_burst(&stats, &burst_reported);
    stats
        .ended
        .lock()
        .unwrap()
        .push((ending, connected.elapsed()));
}

/// Sends the headers and the burst, then trickles; returns only when a write fails.
async fn upload_slowly(
    writer: &mut (impl AsyncWrite + Unpin),
    port: u16,
    start: usize,
    stats: &SlowlorisStats,
    burst_reported: &AtomicBool,
) {
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {SLOWLORIS_CONTENT_LENGTH}\r\n\r\n"
    );
    let chunk = [b'x'; 16 * 1024];
    let burst = async {
        writer.write_all(head.as_bytes()).await?;
        let mut sent = 0;
        while sent < start {
            let size = chunk.len().min(start - sent);
            writer.write_all(&chunk[..size]).await?;
            sent += size;
        }
        std::io::Result::Ok(())
    };
    let sent = burst.await.is_ok();
    if sent {
        stats.bursts_sent.fetch_add(1, Ordering::SeqCst);
    }
    report_burst(stats, burst_reported);
    if !sent {
        return;
    }
    let start = tokio::time::Instant::now() + TRICKLE_INTERVAL;
    let mut trickle = tokio::time::interval_at(start, TRICKLE_INTERVAL);
    loop {
        trickle.tick().await;
        if writer.write_all(b"x").await.is_err() {
            return;
        }
        stats.trickled_bytes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts an upload's burst as finished, once.
fn report_burst(stats: &SlowlorisStats, reported: &AtomicBool) {
    if !reported.swap(true, Ordering::SeqCst) {
        stats.bursts_finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// How the proxy ended a connection.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// It answered (the status), then typically closed.
    Answered(u16),
    Closed,
    Reset,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Answered(status) => write!(formatter, "answered {status}"),
            Ending::Closed => formatter.write_str("closed"),
            Ending::Reset => formatter.write_str("reset"),
        }
    }
}

/// Reads until the proxy answers (an HTTP/1.1 status line), closes or resets.
async fn read_ending(reader: &mut (impl AsyncRead + Unpin)) -> Ending {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) => return status_of(&head).map_or(Ending::Closed, Ending::Answered),
            Ok(read) => {
                head.extend_from_slice(&buffer[..read]);
                if let Some(status) = status_of(&head) {
                    return Ending::Answered(status);
                }
            }
            Err(_) => return status_of(&head).map_or(Ending::Reset, Ending::Answered),
        }
    }
}

/// The status of `HTTP/1.x NNN ...`, once its first 12 bytes are in.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head.get(..12)?).ok()?;
    line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

// Idle: connect, send nothing, notice when the proxy lets go.

#[derive(Default)]
pub struct IdleStats {
    /// Connections tried: connected or failed.
    attempted: AtomicUsize,
    connected: AtomicUsize,
    connect_failed: AtomicUsize,
    pub closed_by_proxy: AtomicUsize,
}

async fn idle_connection(port: u16, stats: Arc<IdleStats>, mut stop: watch::Receiver<bool>) {
    let Some(mut stream) = connect(port).await else {
        stats.connect_failed.fetch_add(1, Ordering::SeqCst);
        stats.attempted.fetch_add(1, Ordering::SeqCst);
        return;
    };
    stats.connected.fetch_add(1, Ordering::SeqCst);
    stats.attempted.fetch_add(1, Ordering::SeqCst);
    let mut byte = [0u8; 1];
    tokio::select! {
        // End of stream, a reset or (unexpectedly) an answer: the proxy is done with it.
        _ = stream.read(&mut byte) => {
            stats.closed_by_proxy.fetch_add(1, Ordering::SeqCst);
        }
        () = stopped(&mut stop) => {}
    }
}

// HTTP/2 stream flood: cleartext with prior knowledge, a new stream whenever the server lets one
// more open, a new connection whenever the server ends one.

#[derive(Default)]
pub struct H2Stats {
    connections: AtomicUsize,
    connect_failed: AtomicUsize,
    /// Flood tasks whose connection reached its stream limit (or was ended by the proxy) once.
    settled: AtomicUsize,
    /// The most concurrent streams the server allowed on one connection (its SETTINGS).
    pub max_streams_allowed: AtomicUsize,
    streams_opened: AtomicUsize,
    responses: Mutex<BTreeMap<u16, usize>>,
    refused: AtomicUsize,
    reset_other: AtomicUsize,
}

#[derive(Clone, Copy)]
enum H2Stream {
    /// A GET the backend answers after a minute.
    SlowGet,
    /// A POST whose body never ends.
    UnfinishedPost,
}

impl H2Stream {
    /// The request and whether its headers end the stream.
    fn request(self, port: u16) -> (Request<()>, bool) {
        let (method, path, end_of_stream) = match self {
            H2Stream::SlowGet => ("GET", H2_SLOW_PATH, true),
            H2Stream::UnfinishedPost => ("POST", "/echo", false),
        };
        let request = Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{port}{path}"))
            .body(())
            .expect("HTTP/2 request");
        (request, end_of_stream)
    }
}

async fn h2_flood(port: u16, kind: H2Stream, stats: Arc<H2Stats>, mut stop: watch::Receiver<bool>) {
    let settled = AtomicBool::new(false);
    let report_settled = || {
        if !settled.swap(true, Ordering::SeqCst) {
            stats.settled.fetch_add(1, Ordering::SeqCst);
        }
    };
    let mut streams = JoinSet::new();
    loop {
        let session = tokio::select! {
            session = h2_session(port) => session,
            () = stopped(&mut stop) => return,
        };
        let Some((sender, driver)) = session else {
            stats.connect_failed.fetch_add(1, Ordering::SeqCst);
            // Refused (at the cap, say): try again soon, not in a hot loop.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                () = stopped(&mut stop) => return,
            }
        };
        stats.connections.fetch_add(1, Ordering::SeqCst);
        let told_to_stop = tokio::select! {
            () = open_streams(sender, kind, port, &stats, &mut streams, &report_settled) => false,
            () = stopped(&mut stop) => true,
        };
        driver.abort();
        streams.abort_all();
        if told_to_stop {
            return;
        }
        // The proxy ended the connection.
        report_settled();
    }
}

/// An HTTP/2 connection whose server's SETTINGS are in, and the task driving it; None if it
/// could not be made within `CONNECT_TIMEOUT`.
async fn h2_session(
    port: u16,
) -> Option<(h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>)> {
    let stream = connect(port).await?;
    let handshake = h2::client::handshake(stream);
    let (sender, mut connection) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .ok()?
        .ok()?;
    let mut ping_pong = connection.ping_pong()?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    // A server sends its SETTINGS before anything else, so once a ping is answered the client
    // knows its stream limit (until then h2 assumes none, and the flood would overshoot).
    let pong = tokio::time::timeout(CONNECT_TIMEOUT, ping_pong.ping(h2::Ping::opaque())).await;
    if !matches!(pong, Ok(Ok(_))) {
        driver.abort();
        return None;
    }
    Some((sender, driver))
}

/// Opens streams on one connection as fast as its server allows, until the connection ends: as
/// many at once as its SETTINGS_MAX_CONCURRENT_STREAMS lets through, and a new one whenever one
/// ends (answered, refused or reset).
async fn open_streams(
    mut sender: h2::client::SendRequest<Bytes>,
    kind: H2Stream,
    port: u16,
    stats: &Arc<H2Stats>,
    streams: &mut JoinSet<()>,
    report_settled: &impl Fn(),
) {
    loop {
        while streams.try_join_next().is_some() {}
        // h2 itself would queue streams beyond the limit without bound while its connection
        // task has not run yet, so the flood counts its own streams against the server's limit.
        let allowed = sender
            .current_max_send_streams()
            .min(H2_STREAMS_PER_CONNECTION_CAP);
        if streams.len() >= allowed {
            stats
                .max_streams_allowed
                .fetch_max(allowed, Ordering::SeqCst);
            report_settled();
            // Wait for a stream to end; h2 does not signal a raised limit (the server's SETTINGS
            // arriving), so look again every 100 ms as well.
            tokio::select! {
                _ = streams.join_next() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        }
        if poll_fn(|context| sender.poll_ready(context)).await.is_err() {
            return;
        }
        let (request, end_of_stream) = kind.request(port);
        let Ok((response, body)) = sender.send_request(request, end_of_stream) else {
            return;
        };
        stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        streams.spawn(await_stream(response, body, Arc::clone(stats)));
        // Let the connection task write the stream out.
        tokio::task::yield_now().await;
    }
}

/// Waits for a stream's response (holding its request body open) and counts how it ended.
async fn await_stream(
    response: h2::client::ResponseFuture,
    _body: h2::SendStream<Bytes>,
    stats: Arc<H2Stats>,
) {
    match response.await {
        Ok(response) => {
            *stats
                .responses
                .lock()
                .unwrap()
                .entry(response.status().as_u16())
                .or_default() += 1;
        }
        Err(error) if error.reason() == Some(h2::Reason::REFUSED_STREAM) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            stats.reset_other.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A TCP connection to the proxy, or None if it could not be made within `CONNECT_TIMEOUT`.
async fn connect(port: u16) -> Option<TcpStream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Ok(stream)) => Some(stream),
        _ => None,
    }
}
