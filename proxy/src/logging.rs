//! Logs to stdout, one JSON object per line: lifecycle events (through `tracing`) and one
//! `"msg":"Request"` line per request with kamal-proxy's fields. Lines are appended to a shared
//! buffer that a writer thread flushes every few milliseconds (or sooner when it fills), so
//! request handling never waits on stdout, never wakes a thread per line, and lines from
//! different tasks never interleave. The queue is bounded (`--log-queue-limit`): while stdout
//! is blocked, lines beyond it are dropped and counted, and one line says so once it drains.
//! Fields taken from requests are clipped ([`clip`]), so a client cannot make lines huge.

use std::io::Write;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use serde_json::{Map, Value};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Buffer size that makes the writer flush at once.
const FLUSH_SIZE: usize = 256 * 1024;

/// Longest request-derived field (path, query, host, user agent, logged headers) in a log line;
/// the rest is cut.
pub const MAX_FIELD_BYTES: usize = 1024;

/// The default `--log-queue-limit`.
pub const DEFAULT_QUEUE_LIMIT: usize = 4 * 1024 * 1024;

/// Lines waiting for the writer thread.
struct Sink {
    buffer: Mutex<Vec<u8>>,
    full: Condvar,
    /// Most bytes the buffer may hold.
    limit: usize,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Lines dropped since the last report, and in all.
static DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The counter behind `hoist_proxy_log_lines_dropped_total`.
pub fn dropped_lines() -> Counter {
    static COUNTER: OnceLock<Counter> = OnceLock::new();
    COUNTER.get_or_init(Counter::default).clone()
}

/// `text` cut to at most [`MAX_FIELD_BYTES`], at a character boundary.
pub fn clip(text: &str) -> &str {
    if text.len() <= MAX_FIELD_BYTES {
        return text;
    }
    let mut end = MAX_FIELD_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Starts the writer thread and routes `tracing` events through it as JSON lines. `debug` lowers
/// the level to DEBUG; `queue_limit` bounds the bytes waiting for stdout. Calling it twice keeps
/// the first setup.
pub fn init(debug: bool, queue_limit: usize) {
    let sink = Sink {
        buffer: Mutex::new(Vec::with_capacity(FLUSH_SIZE.min(queue_limit))),
        full: Condvar::new(),
        limit: queue_limit.max(FLUSH_SIZE),
    };
    if SINK.set(sink).is_err() {
        return;
    }
    std::thread::Builder::new()
        .name("hoist-proxy-log".into())
        .spawn(write_lines)
        .ok();
    let level = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("HOIST_PROXY_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("hoist_proxy={level},warn")));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(LineWriter)
        .try_init();
}

/// Writes what is buffered now; called on shutdown.
pub fn flush() {
    let Some(sink) = SINK.get() else { return };
    let lines = std::mem::take(&mut *lock(sink));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&lines);
    let _ = stdout.flush();
}

fn lock(sink: &Sink) -> std::sync::MutexGuard<'_, Vec<u8>> {
    sink.buffer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_lines() {
    let Some(sink) = SINK.get() else { return };
    let mut spare = Vec::with_capacity(FLUSH_SIZE);
    loop {
        {
            let mut buffer = lock(sink);
            if buffer.len() < FLUSH_SIZE {
                buffer = sink
                    .full
                    .wait_timeout(buffer, FLUSH_INTERVAL)
                    .map(|(buffer, _)| buffer)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            }
            std::mem::swap(&mut *buffer, &mut spare);
        }
        if !spare.is_empty() {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&spare);
            let _ = stdout.flush();
            spare.clear();
        }
        let dropped = DROPPED.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "Log lines dropped: stdout was blocked and the log queue was full"
            );
        }
    }
}

/// Appends one finished line (or writes it straight to stdout before `init`).
fn emit(line: &[u8]) {
    match SINK.get() {
        Some(sink) => {
            let mut buffer = lock(sink);
            if !enqueue(&mut buffer, line, sink.limit) {
                drop(buffer);
                DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                dropped_lines().inc();
                sink.full.notify_one();
                return;
            }
            if buffer.len() >= FLUSH_SIZE {
                sink.full.notify_one();
            }
        }
        None => {
            let _ = std::io::stdout().write_all(line);
        }
    }
}

/// Appends `line` to the queue unless that would take it past `limit` bytes; false if dropped.
fn enqueue(queue: &mut Vec<u8>, line: &[u8], limit: usize) -> bool {
    if queue.len() + line.len() > limit {
        return false;
    }
    queue.extend_from_slice(line);
    true
}

/// A `tracing` writer that collects one event and emits it when dropped.
struct LineWriter;

struct EventBuffer(Vec<u8>);

impl Write for EventBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            emit(&self.0);
        }
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer(Vec::with_capacity(256))
    }
}

/// One request, as logged when its response is finished.
#[derive(Debug, Serialize)]
pub struct RequestLine<'a> {
    /// Written straight into the line (no string of its own).
    #[serde(serialize_with = "serialize_display")]
    pub time: humantime::Rfc3339Timestamp,
    pub level: &'static str,
    pub msg: &'static str,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub request_id: &'a str,
    pub status: u16,
    pub service: &'a str,
    pub target: &'a str,
    /// Nanoseconds, as kamal-proxy logs it.
    pub duration: u64,
    pub method: &'a str,
    pub req_content_length: i64,
    pub req_content_type: &'a str,
    pub resp_content_length: i64,
    pub resp_content_type: &'a str,
    pub client_addr: std::net::IpAddr,
    pub client_port: u16,
    pub remote_addr: Address<'a>,
    pub user_agent: &'a str,
    pub proto: &'a str,
    pub scheme: &'a str,
    pub query: &'a str,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RequestLine<'_> {
    /// Writes the line.
    pub fn emit(&self) {
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(1024));
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            self.write_json(line);
            line.push(b'\n');
            emit(line);
        });
    }

    /// The line as JSON, as its `Serialize` would write it, without serde's machinery on the
    /// request path: keys are written as they are, numbers with itoa, only values escaped.
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut numbers = itoa::Buffer::new();
        let _ = write!(out, "{{\"time\":\"{}\"", self.time);
        let texts = [
            ("level", self.level),
            ("msg", self.msg),
            ("host", self.host),
        ];
        for (key, value) in texts {
            text_field(out, key, value);
        }
        raw_field(out, "port", numbers.format(self.port).as_bytes());
        text_field(out, "path", self.path);
        text_field(out, "request_id", self.request_id);
        raw_field(out, "status", numbers.format(self.status).as_bytes());
        text_field(out, "service", self.service);
        text_field(out, "target", self.target);
        raw_field(out, "duration", numbers.format(self.duration).as_bytes());
        text_field(out, "method", self.method);
        let length = numbers.format(self.req_content_length);
        raw_field(out, "req_content_length", length.as_bytes());
        text_field(out, "req_content_type", self.req_content_type);
        let length = numbers.format(self.resp_content_length);
        raw_field(out, "resp_content_length", length.as_bytes());
        text_field(out, "resp_content_type", self.resp_content_type);
        let _ = write!(out, ",\"client_addr\":\"{}\"", self.client_addr);
        raw_field(
            out,
            "client_port",
            numbers.format(self.client_port).as_bytes(),
        );
        match &self.remote_addr {
            Address::Text(text) => text_field(out, "remote_addr", text),
            Address::Ip(ip) => {
                let _ = write!(out, ",\"remote_addr\":\"{ip}\"");
            }
        }
        text_field(out, "user_agent", self.user_agent);
        text_field(out, "proto", self.proto);
        text_field(out, "scheme", self.scheme);
        text_field(out, "query", self.query);
        for (key, value) in &self.extra {
            out.push(b',');
            json_string(out, key);
            out.push(b':');
            let _ = serde_json::to_writer(&mut *out, value);
        }
        out.push(b'}');
    }
}

/// `,"key":<value>` for a value already JSON (a number); `key` needs no escaping.
fn raw_field(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(value);
}

/// `,"key":"<value escaped>"`; `key` needs no escaping.
fn text_field(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    json_string(out, value);
}

/// `value` as a JSON string: copied as is when nothing in it needs escaping (the usual case),
/// else escaped by serde_json.
fn json_string(out: &mut Vec<u8>, value: &str) {
    if value
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// An address field: text taken from a header, or an IP address.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Address<'a> {
    Text(&'a str),
    Ip(std::net::IpAddr),
}

/// The current time as RFC 3339 with milliseconds, for `time`.
pub fn now_rfc3339() -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(SystemTime::now())
}

fn serialize_display<S: serde::Serializer>(
    value: &impl std::fmt::Display,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_the_json_serde_would_write() {
        let mut extra = Map::new();
        extra.insert(
            "req_x-tricky".into(),
            Value::from("a \"quoted\" \\ value\n"),
        );
        let line = RequestLine {
            time: now_rfc3339(),
            level: "INFO",
            msg: "Request",
            host: "app.test:8080",
            port: 80,
            path: "/caf\u{e9}/\"x\"",
            request_id: "0123",
            status: 503,
            service: "web",
            target: "10.0.0.3:3000",
            duration: u64::MAX,
            method: "GET",
            req_content_length: -1,
            req_content_type: "",
            resp_content_length: 12,
            resp_content_type: "text/plain",
            client_addr: "2001:db8::1".parse().unwrap(),
            client_port: 65535,
            remote_addr: Address::Text("198.51.100.7\u{7}"),
            user_agent: "curl/8\t",
            proto: "HTTP/1.1",
            scheme: "http",
            query: "a=1&b=\\",
            extra,
        };
        let mut written = Vec::new();
        line.write_json(&mut written);
        // Byte for byte: the same keys in the same order (kamal-proxy's), the same escapes.
        assert_eq!(
            String::from_utf8(written).unwrap(),
            serde_json::to_string(&line).unwrap()
        );
        let ip = RequestLine {
            remote_addr: Address::Ip("192.0.2.1".parse().unwrap()),
            extra: Map::new(),
            ..line
        };
        let mut written = Vec::new();
        ip.write_json(&mut written);
        assert_eq!(
            String::from_utf8(written).unwrap(),
            serde_json::to_string(&ip).unwrap()
        );
    }

    #[test]
    fn the_queue_drops_whole_lines_beyond_its_limit() {
        let mut queue = Vec::new();
        assert!(enqueue(&mut queue, b"12345\n", 10));
        assert!(!enqueue(&mut queue, b"67890\n", 10), "would pass the limit");
        assert!(enqueue(&mut queue, b"abc\n", 10));
        assert_eq!(queue, b"12345\nabc\n");
    }

    #[test]
    fn fields_are_clipped_at_a_character_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_FIELD_BYTES);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_FIELD_BYTES && clipped.len() >= MAX_FIELD_BYTES - 1);
        assert!(long.starts_with(clipped));
    }
}
