//! The test application itself: the settings it reads from the environment and what each
//! path answers (`/up`, `/version`, `/`, `/slow`, `/stream`, `/headers`, `/bytes`, and
//! `POST /upload`, `/assets/NAME`). It maps a parsed request (and a digest of its body) to a response; framing
//! and sockets live in http.rs and connection.rs.

use std::path::Path;
use std::time::Duration;
use std::{env, fs, thread};

use crate::http::{self, Request};
use crate::log::Log;

/// Largest `/bytes?n=` answer.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// What the app learned of a request body it read: its length and FNV-1a hash, so uploads can
/// be checked end to end without keeping them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDigest {
    pub length: u64,
    pub fnv1a: u64,
}

impl Default for BodyDigest {
    fn default() -> Self {
        Self {
            length: 0,
            fnv1a: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl BodyDigest {
    pub fn update(&mut self, bytes: &[u8]) {
        self.length += bytes.len() as u64;
        for byte in bytes {
            self.fnv1a ^= u64::from(*byte);
            self.fnv1a = self.fnv1a.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The body `/bytes?n=N` sends: byte `i` is `i % 251`.
pub fn pattern(length: u64) -> Vec<u8> {
    (0..length).map(|index| (index % 251) as u8).collect()
}

/// Reported version when `APP_VERSION` is unset or empty.
pub const DEFAULT_VERSION: &str = "dev";
/// `/slow` sleeps this long without `ms`.
pub const DEFAULT_SLOW_MS: u64 = 1000;
/// Longest `/slow` sleep; larger `ms` values are capped to it.
pub const MAX_SLOW_MS: u64 = 600_000;
/// `/stream` chunk count without `chunks`.
pub const DEFAULT_STREAM_CHUNKS: u64 = 5;
/// Most chunks one `/stream` sends; larger `chunks` values are capped to it.
pub const MAX_STREAM_CHUNKS: u64 = 100_000;
/// Pause between `/stream` chunks without `ms`.
pub const DEFAULT_STREAM_INTERVAL_MS: u64 = 200;
/// Longest pause between `/stream` chunks; larger `ms` values are capped to it.
pub const MAX_STREAM_INTERVAL_MS: u64 = 600_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub version: String,
    pub hostname: String,
    /// `/up` answers 503 (set by a non-empty `APP_BROKEN`, or by `APP_BROKEN_ON_HOST` naming
    /// the host hoist started it on, `HOIST_HOST`).
    pub broken: bool,
    /// `/up` answers 503 once this long has passed since `started` (`APP_HEALTHY_FOR`, in
    /// seconds): a version that passes its first health check and fails later.
    pub healthy_for: Option<std::time::Duration>,
    pub started: std::time::Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Body,
    /// Value of the `Allow` header (405 responses).
    pub allow: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Full(Vec<u8>),
    /// Produced while it is written: `chunks` lines, `interval` apart.
    Stream(StreamPlan),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    pub chunks: u64,
    pub interval: Duration,
    pub version: String,
}

impl App {
    /// Reads `APP_VERSION`, `APP_BROKEN` and the hostname (`/etc/hostname`, else `HOSTNAME`).
    pub fn from_env() -> App {
        let version = env::var("APP_VERSION")
            .ok()
            .filter(|version| !version.is_empty())
            .unwrap_or_else(|| DEFAULT_VERSION.to_string());
        let hostname = fs::read_to_string("/etc/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .or_else(|| env::var("HOSTNAME").ok().filter(|name| !name.is_empty()))
            .unwrap_or_else(|| "unknown".to_string());
        let on_host = env::var("APP_BROKEN_ON_HOST")
            .ok()
            .filter(|host| !host.is_empty())
            .is_some_and(|host| env::var("HOIST_HOST").ok().as_deref() == Some(host.as_str()));
        let broken = on_host || env::var_os("APP_BROKEN").is_some_and(|value| !value.is_empty());
        let healthy_for = env::var("APP_HEALTHY_FOR")
            .ok()
            .and_then(|secs| secs.parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .map(std::time::Duration::from_secs_f64);
        App {
            version,
            hostname,
            broken,
            healthy_for,
            started: std::time::Instant::now(),
        }
    }

    /// Answers one request; `/slow` blocks the calling thread for its delay.
    pub fn respond(&self, request: &Request, body: &BodyDigest, log: &Log) -> Response {
        let known = [
            "/up", "/health", "/version", "/", "/slow", "/stream", "/headers", "/bytes", "/upload",
            "/say",
        ];
        if request.method == "POST" && request.path == "/upload" {
            return Response::text(
                200,
                &format!("received {} bytes fnv1a {:016x}\n", body.length, body.fnv1a),
            );
        }
        if !matches!(request.method.as_str(), "GET" | "HEAD") || request.path == "/upload" {
            return if known.contains(&request.path.as_str()) {
                Response {
                    allow: Some("GET, HEAD"),
                    ..Response::text(405, "method not allowed\n")
                }
            } else {
                Response::text(404, "not found\n")
            };
        }
        // `/health` is `/up` under the name the examples/ stack checks.
        let path = match request.path.as_str() {
            "/health" => "/up",
            path => path,
        };
        match path {
            "/up" if self.broken => {
                log.warn("health check failing on purpose (APP_BROKEN)");
                Response::text(503, "unhealthy on purpose (APP_BROKEN is set)\n")
            }
            "/up"
                if self
                    .healthy_for
                    .is_some_and(|healthy_for| self.started.elapsed() >= healthy_for) =>
            {
                log.warn("health check failing on purpose (APP_HEALTHY_FOR has passed)");
                Response::text(503, "unhealthy on purpose (APP_HEALTHY_FOR has passed)\n")
            }
            "/up" => Response::text(200, "OK\n"),
            "/version" => Response::text(200, &format!("{}\n", self.version)),
            "/" => Response::text(
                200,
                &format!(
                    "hello from hoist-testapp {} on {}\n",
                    self.version, self.hostname
                ),
            ),
            "/slow" => match number_param(&request.query, "ms", DEFAULT_SLOW_MS, MAX_SLOW_MS) {
                Ok(ms) => {
                    thread::sleep(Duration::from_millis(ms));
                    Response::text(200, &format!("slow {} {ms}ms\n", self.version))
                }
                Err(message) => Response::text(400, &message),
            },
            "/stream" => self.stream(&request.query),
            "/say" => {
                let text = http::query_param(&request.query, "text").unwrap_or_default();
                log.info(&format!("said {text} ({})", self.version));
                Response::text(200, &format!("{}\n", self.version))
            }
            "/bytes" => match number_param(&request.query, "n", 0, MAX_BYTES) {
                Ok(length) => Response {
                    status: 200,
                    body: Body::Full(pattern(length)),
                    allow: None,
                },
                Err(message) => Response::text(400, &message),
            },
            "/headers" => {
                let mut body = Vec::new();
                for header in &request.headers {
                    body.extend_from_slice(header.name.as_bytes());
                    body.extend_from_slice(b": ");
                    body.extend_from_slice(&header.value);
                    body.push(b'\n');
                }
                Response {
                    status: 200,
                    body: Body::Full(body),
                    allow: None,
                }
            }
            path if path.starts_with("/assets/") => asset(&path["/assets/".len()..]),
            _ => Response::text(404, "not found\n"),
        }
    }

    fn stream(&self, query: &str) -> Response {
        let chunks = number_param(query, "chunks", DEFAULT_STREAM_CHUNKS, MAX_STREAM_CHUNKS);
        let interval = number_param(
            query,
            "ms",
            DEFAULT_STREAM_INTERVAL_MS,
            MAX_STREAM_INTERVAL_MS,
        );
        match (chunks, interval) {
            (Ok(chunks), Ok(interval_ms)) => Response {
                status: 200,
                body: Body::Stream(StreamPlan {
                    chunks,
                    interval: Duration::from_millis(interval_ms),
                    version: self.version.clone(),
                }),
                allow: None,
            },
            (Err(message), _) | (_, Err(message)) => Response::text(400, &message),
        }
    }
}

impl Response {
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            body: Body::Full(body.as_bytes().to_vec()),
            allow: None,
        }
    }
}

impl StreamPlan {
    /// The text of chunk `index`, counting from 1.
    pub fn chunk(&self, index: u64) -> String {
        format!("chunk {index} {}\n", self.version)
    }
}

/// Reads a non-negative integer query parameter, `default` when absent, capped at `max`.
fn number_param(query: &str, name: &str, default: u64, max: u64) -> Result<u64, String> {
    match http::query_param(query, name) {
        None => Ok(default),
        Some(value) => value
            .parse::<u64>()
            .map(|number| number.min(max))
            .map_err(|_| format!("invalid {name}={value:?}: expected a whole number\n")),
    }
}

/// `/assets/NAME`: the file NAME of the image's `/assets` directory (asset bridging tests), or
/// 404. Plain names only: no directories, nothing hidden.
fn asset(name: &str) -> Response {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Response::text(404, "not found\n");
    }
    match fs::read(Path::new("/assets").join(name)) {
        Ok(body) => Response {
            status: 200,
            body: Body::Full(body),
            allow: None,
        },
        Err(_) => Response::text(404, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn app(broken: bool) -> App {
        App {
            version: "v7".to_string(),
            hostname: "box".to_string(),
            broken,
            healthy_for: None,
            started: std::time::Instant::now(),
        }
    }

    fn get(target: &str) -> Request {
        let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\nX-Seen: yes\r\n\r\n");
        http::parse_head(head.as_bytes()).unwrap()
    }

    fn body(response: &Response) -> &str {
        match &response.body {
            Body::Full(bytes) => std::str::from_utf8(bytes).unwrap(),
            Body::Stream(_) => panic!("expected a full body"),
        }
    }

    #[test]
    fn answers_fixed_routes() {
        let log = Log::Memory(Default::default());
        let cases = [
            ("/up", 200, "OK\n"),
            ("/version", 200, "v7\n"),
            ("/", 200, "hello from hoist-testapp v7 on box\n"),
            ("/headers", 200, "Host: a\nX-Seen: yes\n"),
            ("/slow?ms=1", 200, "slow v7 1ms\n"),
            ("/nope", 404, "not found\n"),
        ];
        for (target, status, text) in cases {
            let response = app(false).respond(&get(target), &BodyDigest::default(), &log);
            assert_eq!(
                (response.status, body(&response)),
                (status, text),
                "{target}"
            );
        }
    }

    #[test]
    fn broken_app_fails_health_checks_and_says_why() {
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let response = app(true).respond(
            &get("/up"),
            &BodyDigest::default(),
            &Log::Memory(Arc::clone(&lines)),
        );
        assert_eq!(response.status, 503);
        let lines = lines.lock().unwrap();
        assert_eq!(
            *lines,
            ["warning: health check failing on purpose (APP_BROKEN)"]
        );
    }

    #[test]
    fn an_app_healthy_for_a_while_fails_its_health_checks_after_that() {
        let log = Log::Memory(Arc::default());
        let mut app = app(false);
        app.healthy_for = Some(std::time::Duration::from_secs(3600));
        let up = |app: &App| {
            app.respond(&get("/up"), &BodyDigest::default(), &log)
                .status
        };
        assert_eq!(up(&app), 200);
        app.healthy_for = Some(std::time::Duration::ZERO);
        assert_eq!(up(&app), 503);
    }

    #[test]
    fn stream_parameters_have_defaults_caps_and_validation() {
        let log = Log::Memory(Default::default());
        let plan = |target: &str| match app(false)
            .respond(&get(target), &BodyDigest::default(), &log)
            .body
        {
            Body::Stream(plan) => (plan.chunks, plan.interval.as_millis()),
            Body::Full(text) => panic!("{}", String::from_utf8_lossy(&text)),
        };
        assert_eq!(plan("/stream"), (5, 200));
        assert_eq!(plan("/stream?chunks=2&ms=0"), (2, 0));
        assert_eq!(plan("/stream?chunks=999999999"), (MAX_STREAM_CHUNKS, 200));
        let invalid = app(false).respond(&get("/stream?ms=soon"), &BodyDigest::default(), &log);
        assert_eq!(invalid.status, 400);
        assert_eq!(
            number_param("ms=700000", "ms", 1, MAX_SLOW_MS),
            Ok(MAX_SLOW_MS)
        );
    }

    #[test]
    fn other_methods_on_known_paths_are_not_allowed() {
        let head = "DELETE /up HTTP/1.1\r\nHost: a\r\n\r\n";
        let request = http::parse_head(head.as_bytes()).unwrap();
        let response = app(false).respond(
            &request,
            &BodyDigest::default(),
            &Log::Memory(Default::default()),
        );
        assert_eq!((response.status, response.allow), (405, Some("GET, HEAD")));
    }

    #[test]
    fn uploads_are_digested_and_bytes_are_a_pattern() {
        let log = Log::Memory(Default::default());
        let head = "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        let request = http::parse_head(head.as_bytes()).unwrap();
        let mut digest = BodyDigest::default();
        digest.update(b"abc");
        let response = app(false).respond(&request, &digest, &log);
        // FNV-1a of "abc".
        assert_eq!(
            response.body,
            Body::Full(b"received 3 bytes fnv1a e71fa2190541574b\n".to_vec())
        );
        let bytes = app(false).respond(&get("/bytes?n=300"), &BodyDigest::default(), &log);
        assert_eq!(bytes.body, Body::Full(pattern(300)));
        assert_eq!(pattern(253)[252], 1);
    }
}
