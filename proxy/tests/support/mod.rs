//! Test support: a real `hoist-proxy run` process on a free loopback port with its own state
//! directory, its control commands run as processes, in-process backends (hyper) with the
//! endpoints the tests need, and a real HTTP client.

#![allow(dead_code)]

pub mod pebble;
pub mod tls;

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A running `hoist-proxy run`.
pub struct Proxy {
    pub child: Child,
    pub port: u16,
    /// The HTTPS port.
    pub https_port: u16,
    pub state_dir: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    _home: Option<tempfile::TempDir>,
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_hoist-proxy")
}

impl Proxy {
    /// Starts a proxy with a fresh state directory.
    pub fn start(extra: &[&str]) -> Self {
        let home = tempfile::tempdir().expect("temporary state directory");
        let state_dir = home.path().join("state");
        let mut proxy = Self::start_in(&state_dir, extra);
        proxy._home = Some(home);
        proxy
    }

    /// Starts a proxy on an existing state directory (restarts).
    pub fn start_in(state_dir: &Path, extra: &[&str]) -> Self {
        Self::start_at(state_dir, (0, 0), extra)
    }

    /// Starts another build of the proxy (the static release binary) with a fresh state
    /// directory; control commands still use this build's.
    pub fn start_binary(binary: &str, extra: &[&str]) -> Self {
        let home = tempfile::tempdir().expect("temporary state directory");
        let state_dir = home.path().join("state");
        let mut proxy = Self::launch(binary, &state_dir, (0, 0), extra);
        proxy._home = Some(home);
        proxy
    }

    /// Starts a proxy on an existing state directory with given HTTP and HTTPS ports (0: any).
    pub fn start_at(state_dir: &Path, ports: (u16, u16), extra: &[&str]) -> Self {
        Self::launch(binary(), state_dir, ports, extra)
    }

    fn launch(
        binary: &str,
        state_dir: &Path,
        (http_port, https_port): (u16, u16),
        extra: &[&str],
    ) -> Self {
        let mut command = Command::new(binary);
        command
            .args(["run", "--bind", "127.0.0.1"])
            .args(["--http-port", &http_port.to_string()])
            .args(["--https-port", &https_port.to_string()])
            .arg("--state-dir")
            .arg(state_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        clear_environment(&mut command);
        let mut child = command.spawn().expect("start hoist-proxy");
        let stdout = child.stdout.take().expect("proxy stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_sender, port_receiver) = std::sync::mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("\"Server started\"") {
                        let value: serde_json::Value =
                            serde_json::from_str(&line).unwrap_or_default();
                        let port = |key: &str| value[key].as_u64().unwrap_or(0) as u16;
                        let _ = port_sender.send((port("http_port"), port("https_port")));
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let (port, https_port) = port_receiver
            .recv_timeout(Duration::from_secs(20))
            .expect("hoist-proxy did not report `Server started`");
        Self {
            child,
            port,
            https_port,
            state_dir: state_dir.to_owned(),
            log,
            _home: None,
        }
    }

    /// A handle for control commands, usable from other threads.
    pub fn control(&self) -> Control {
        Control {
            state_dir: self.state_dir.clone(),
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.control().cli(args)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.control().ok(args)
    }

    pub fn deploy(&self, service: &str, target: &Backend, extra: &[&str]) {
        self.control().deploy(service, &target.target(), extra)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_log_within(needle, Duration::from_secs(10))
    }

    /// Waits up to `limit` until a log line contains `needle`.
    pub fn wait_for_log_within(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self
                .log_lines()
                .into_iter()
                .find(|line| line.contains(needle))
            {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:#?}",
                self.log_lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Log lines containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Waits until `count` log lines contain `needle`.
    pub fn wait_for_log_count(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count_log(needle) < count {
            assert!(
                Instant::now() < deadline,
                "fewer than {count} log lines with {needle:?}: {:#?}",
                self.log_lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (without waiting).
    pub fn signal_terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

/// Runs control commands against one proxy's state directory.
#[derive(Clone, Debug)]
pub struct Control {
    pub state_dir: PathBuf,
}

impl Control {
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_env(args, &[])
    }

    /// Runs a control command with extra environment variables.
    pub fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(binary());
        command.args(args).arg("--state-dir").arg(&self.state_dir);
        clear_environment(&mut command);
        command.envs(env.iter().copied());
        command.output().expect("run hoist-proxy command")
    }

    /// Runs a control command and asserts it succeeded; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "hoist-proxy {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Deploys `service` to `target` with extra flags.
    pub fn deploy(&self, service: &str, target: &str, extra: &[&str]) {
        let mut args = vec!["deploy", service, "--target", target];
        args.extend_from_slice(extra);
        self.ok(&args);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

fn clear_environment(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HOIST_PROXY_") {
            command.env_remove(name);
        }
    }
}

/// An in-process backend. Endpoints: `/up` (200, or 503 when unhealthy), `/up-internal` (200
/// only with `Host: internal.test`), `/version` (its
/// name), `/redirect?to=URL` (302 there), `/slow?ms=N`, `/stream?chunks=N&ms=M` (chunked), `/sse?chunks=N&ms=M`, `/headers`
/// (the request line and headers it got), `/echo` (the body back), `/ws` (WebSocket echo);
/// anything else answers its name.
pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
    pub healthy: Arc<AtomicBool>,
    pub requests: Arc<AtomicUsize>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let address = listener.local_addr().expect("backend address");
        let healthy = Arc::new(AtomicBool::new(true));
        let requests = Arc::new(AtomicUsize::new(0));
        let (shutdown, mut stop) = tokio::sync::watch::channel(false);
        let state = Arc::new(BackendState {
            name: name.to_owned(),
            healthy: Arc::clone(&healthy),
            requests: Arc::clone(&requests),
        });
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(pair) => pair, Err(_) => continue },
                    _ = stop.changed() => return,
                };
                let state = Arc::clone(&state);
                let mut stopped = stop.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(state.answer(request).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::select! {
                        _ = connection => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        Self {
            name: name.to_owned(),
            address,
            healthy,
            requests,
            shutdown,
        }
    }

    /// `127.0.0.1:<port>`, as `--target` takes it.
    pub fn target(&self) -> String {
        self.address.to_string()
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Stops as a crashed server does: the port refuses connections and open ones are cut.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

struct BackendState {
    name: String,
    healthy: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

fn query_number(request: &Request<Incoming>, key: &str, default: u64) -> u64 {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(default)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<BoxBody> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
}

fn chunked(chunks: u64, pause: Duration, content_type: &'static str) -> Response<BoxBody> {
    let stream = futures_util::stream::unfold(0u64, move |sent| async move {
        if sent == chunks {
            return None;
        }
        if sent > 0 {
            tokio::time::sleep(pause).await;
        }
        let data = if content_type == "text/event-stream" {
            format!("data: event {sent}\n\n")
        } else {
            format!("chunk {sent}\n")
        };
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from(data))),
            sent + 1,
        ))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response
        .headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    response
}

impl BackendState {
    async fn answer(&self, mut request: Request<Incoming>) -> Response<BoxBody> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        match request.uri().path() {
            // Healthy only when asked with `Host: internal.test`.
            "/up-internal" => {
                let host = request.headers().get("host").map(|h| h.as_bytes());
                if host == Some(b"internal.test") {
                    text(StatusCode::OK, "up")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "wrong host")
                }
            }
            "/up" => {
                if self.healthy.load(Ordering::SeqCst) {
                    text(StatusCode::OK, "up")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "down")
                }
            }
            "/version" => text(StatusCode::OK, self.name.clone()),
            "/redirect" => {
                let to = request
                    .uri()
                    .query()
                    .and_then(|query| query.strip_prefix("to="))
                    .unwrap_or("/up")
                    .to_owned();
                let mut response = text(StatusCode::FOUND, "");
                if let Ok(location) = http::HeaderValue::from_str(&to) {
                    response.headers_mut().insert("location", location);
                }
                response
            }
            "/slow" => {
                let ms = query_number(&request, "ms", 1000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(StatusCode::OK, format!("{} slow {ms}", self.name))
            }
            "/stream" => chunked(
                query_number(&request, "chunks", 3),
                Duration::from_millis(query_number(&request, "ms", 500)),
                "text/plain",
            ),
            "/sse" => chunked(
                query_number(&request, "chunks", 3),
                Duration::from_millis(query_number(&request, "ms", 500)),
                "text/event-stream",
            ),
            "/headers" => {
                let mut lines = format!(
                    "{} {}\n",
                    request.method(),
                    request.uri().path_and_query().map_or("", |pq| pq.as_str())
                );
                for (name, value) in request.headers() {
                    lines.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                }
                text(StatusCode::OK, lines)
            }
            "/echo" => {
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                text(StatusCode::OK, body)
            }
            "/ws" => {
                let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
                    return text(StatusCode::BAD_REQUEST, "not a websocket");
                };
                let upgrade = hyper::upgrade::on(&mut request);
                tokio::spawn(async move {
                    let Ok(upgraded) = upgrade.await else { return };
                    let mut socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        None,
                    )
                    .await;
                    while let Some(Ok(message)) = socket.next().await {
                        if message.is_text() || message.is_binary() {
                            if socket.send(message).await.is_err() {
                                return;
                            }
                        } else if message.is_close() {
                            return;
                        }
                    }
                });
                let mut response = text(StatusCode::SWITCHING_PROTOCOLS, "");
                let headers = response.headers_mut();
                headers.insert("upgrade", http::HeaderValue::from_static("websocket"));
                headers.insert("connection", http::HeaderValue::from_static("Upgrade"));
                if let Ok(accept) = http::HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
                {
                    headers.insert("sec-websocket-accept", accept);
                }
                response
            }
            _ => text(StatusCode::OK, self.name.clone()),
        }
    }
}

/// A real HTTP/1.1 client with keep-alive.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// What a request got.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// GET `url` with extra headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Got {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request.body(Full::new(Bytes::new())).unwrap()).await
}

pub async fn get(url: &str) -> Got {
    get_with(url, &[]).await
}

pub async fn send(request: Request<Full<Bytes>>) -> Got {
    let response = client()
        .request(request)
        .await
        .expect("request through the proxy");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A WebSocket client connected through the proxy.
pub async fn websocket(
    url: &str,
) -> WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connect");
    socket
}

/// Sends `text` and waits for the echo.
pub async fn echo<S>(socket: &mut WebSocketStream<S>, text: &str) -> Result<String, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    socket
        .send(Message::text(text.to_owned()))
        .await
        .map_err(|error| error.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
        Ok(Some(Ok(Message::Text(reply)))) => Ok(reply.to_string()),
        other => Err(format!("{other:?}")),
    }
}

/// Runs a control command off the runtime and asserts it succeeded; returns stdout.
pub async fn ok(control: &Control, args: &[&str]) -> String {
    let control = control.clone();
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    blocking(move || control.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())).await
}

/// Runs a control command off the runtime.
pub async fn cli(control: &Control, args: &[&str]) -> Output {
    let control = control.clone();
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    blocking(move || control.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())).await
}

/// Deploys `service` to `target` with extra flags, off the runtime.
pub async fn deploy(control: &Control, service: &str, target: &Backend, extra: &[&str]) {
    let target = target.target();
    let mut args = vec!["deploy", service, "--target", &target];
    args.extend_from_slice(extra);
    ok(control, &args).await;
}

/// Runs a blocking CLI call off the async runtime.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking task")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
