//! Logs to stdout, one JSON object per line: lifecycle events (through `tracing`) and one
//! `"msg":"Request"` line per request with kamal-proxy's fields. Lines are handed to a writer
//! thread through a channel, so a slow stdout never stalls request handling and lines from
//! different tasks never interleave.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

static SINK: OnceLock<Sender<Vec<u8>>> = OnceLock::new();

/// Starts the writer thread and routes `tracing` events through it as JSON lines. `debug` lowers
/// the level to DEBUG. Calling it twice keeps the first setup.
pub fn init(debug: bool) {
    if SINK.get().is_some() {
        return;
    }
    let (sender, receiver) = channel();
    if SINK.set(sender).is_err() {
        return;
    }
    std::thread::Builder::new()
        .name("hoist-proxy-log".into())
        .spawn(move || write_lines(receiver))
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

fn write_lines(receiver: Receiver<Vec<u8>>) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    while let Ok(line) = receiver.recv() {
        let _ = out.write_all(&line);
        // Write whatever else is queued before flushing once.
        while let Ok(line) = receiver.try_recv() {
            let _ = out.write_all(&line);
        }
        let _ = out.flush();
    }
}

/// Sends one finished line to the writer thread (or straight to stdout before `init`).
fn emit(line: Vec<u8>) {
    match SINK.get() {
        Some(sink) => {
            let _ = sink.send(line);
        }
        None => {
            let _ = std::io::stdout().write_all(&line);
        }
    }
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
            emit(std::mem::take(&mut self.0));
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
    pub time: String,
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
    pub client_addr: &'a str,
    pub client_port: u16,
    pub remote_addr: &'a str,
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
        let mut line = Vec::with_capacity(512);
        if serde_json::to_writer(&mut line, self).is_ok() {
            line.push(b'\n');
            emit(line);
        }
    }
}

/// The current time as RFC 3339 with milliseconds, for `time`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
