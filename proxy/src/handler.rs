//! The outer request pipeline, in front of every service: X-Request-ID and X-Request-Start,
//! the request's host (400 when missing or ambiguous, see `authority.rs`; CONNECT refused),
//! ACME HTTP-01 answers (before routing), routing by host and path (404 when nothing matches),
//! the redirect of plain HTTP to HTTPS once a host's certificate is ready, the in-flight gauge, and the record that
//! becomes the request's log line and metrics when its response ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value};

use crate::budget::BufferBudget;
use crate::error_pages::ErrorPages;
use crate::forwarded::{self, X_FORWARDED_FOR};
use crate::logging::clip;
use crate::metrics::Metrics;
use crate::response::{self, RequestRecord, ResponseBody, header_text};
use crate::router::Router;
use crate::service::Routed;
use crate::tls::Tls;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");

/// Shared by every connection.
#[derive(Debug)]
pub struct Handler {
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    /// Longest pause allowed while a client sends a body.
    pub client_timeout: Duration,
    /// Longest a client may take to send a whole buffered body.
    pub request_body_timeout: Duration,
    /// The proxy-wide budget of buffered bodies.
    pub buffers: Arc<BufferBudget>,
    /// Port the request arrived on, for the log.
    pub port: u16,
    pub scheme: &'static str,
    /// Certificates, for HTTP-01 answers and redirects; `None` when the proxy has no TLS.
    pub tls: Option<Arc<Tls>>,
    /// Port HTTPS is served on, for redirects.
    pub https_port: u16,
}

const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The service label of requests no service took.
fn unrouted() -> Arc<String> {
    static UNROUTED: std::sync::OnceLock<Arc<String>> = std::sync::OnceLock::new();
    Arc::clone(UNROUTED.get_or_init(|| Arc::new(String::new())))
}

impl Handler {
    /// A TLS service redirects plain HTTP once its host has a certificate (with
    /// `--tls-redirect`, the default); until then it serves HTTP as usual.
    fn redirects_to_https(&self, route: &crate::router::Route, host: &str) -> bool {
        let config = route.service.config.load();
        config.options.tls
            && config.options.tls_redirect
            && self
                .tls
                .as_ref()
                .is_some_and(|tls| tls.ready(&bare_host(host).to_ascii_lowercase()))
    }

    /// `https://host[:port]/path?query`, the port shown when HTTPS is not on 443.
    fn https_location(&self, host: &str, uri: &http::Uri) -> String {
        let host = bare_host(host);
        let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
        match self.https_port {
            443 => format!("https://{host}{path}"),
            port => format!("https://{host}:{port}{path}"),
        }
    }

    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        if !http_body::Body::is_end_stream(request.body()) {
            detach_head(&mut request);
        }
        let headers = request.headers_mut();
        let request_id = match headers.get(X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let mut buffer = uuid::Uuid::encode_buffer();
                let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
                let value = HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"));
                headers.insert(X_REQUEST_ID, value.clone());
                value
            }
        };
        if !headers.contains_key(X_REQUEST_START) {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_millis())
                .unwrap_or(0);
            if let Some(value) = crate::forwarded::header_value(format_args!("t={millis}")) {
                headers.insert(X_REQUEST_START, value);
            }
        }

        // The host the request is routed by is the host the target sees (forward.rs sets it).
        let (host, refusal) = match crate::authority::request_host(&request) {
            Ok(host) if request.method() == Method::CONNECT => (
                host,
                Some((StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not proxied")),
            ),
            Ok(host) => (host, None),
            Err(error) => (
                String::new(),
                Some((StatusCode::BAD_REQUEST, error.to_str())),
            ),
        };
        let plain = self.scheme == "http";
        if plain
            && let Some(tls) = &self.tls
            && let Some(token) = request.uri().path().strip_prefix(ACME_CHALLENGE_PREFIX)
            && let Some(answer) = tls.acme.http01(token)
        {
            tracing::info!(host = %host, token, "Answered ACME HTTP-01 challenge");
            return response::text(StatusCode::OK, answer);
        }
        let route = match refusal {
            Some(_) => None,
            None => self
                .router
                .table()
                .lookup(&host, request.uri().path())
                .map(|found| found.value.clone()),
        };

        let mut client_ip = peer.ip();
        let mut extra = Map::new();
        // The target options of the active balancer name the headers to log, both ways.
        let mut trusted_peer = false;
        let (service_name, in_flight, count_in_metrics, logged) = match &route {
            Some(route) => {
                let config = route.service.config.load();
                let options = &config.options;
                if let Some(name) = &options.client_ip_header
                    && let Some(value) = request
                        .headers()
                        .get(name.as_str())
                        .and_then(|v| v.to_str().ok())
                    && let Ok(ip) = value.trim().parse()
                {
                    client_ip = ip;
                }
                let logged = Arc::clone(&route.service.active.load().options);
                trusted_peer = forwarded::trusts(&logged, peer.ip());
                for name in &logged.log_request_headers {
                    let value = clip(header_text(request.headers().get(name.as_str())));
                    extra.insert(
                        format!("req_{}", name.to_ascii_lowercase()),
                        Value::from(value),
                    );
                }
                let excluded = options.exclude_metrics_paths.iter().any(|path| {
                    crate::routes::strip_prefix(&route.prefix, request.uri().path()) == path
                });
                let gauge = (!excluded).then(|| {
                    let gauge = self.metrics.in_flight(&route.service.name);
                    gauge.inc();
                    gauge
                });
                (
                    Arc::clone(&route.service.name),
                    gauge,
                    !excluded,
                    Some(logged),
                )
            }
            None => (unrouted(), None, true, None),
        };

        let request_headers = request.headers();
        let mut record = Box::new(RequestRecord {
            started,
            metrics: Arc::clone(&self.metrics),
            in_flight,
            count_in_metrics,
            service: service_name,
            method: request.method().clone(),
            host,
            port: self.port,
            uri: request.uri().clone(),
            request_id,
            user_agent: request_headers.get(header::USER_AGENT).cloned(),
            req_content_length: request_headers
                .get(header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse().ok())
                .unwrap_or(-1),
            req_content_type: request_headers.get(header::CONTENT_TYPE).cloned(),
            client_addr: peer.ip(),
            client_port: peer.port(),
            // What a client claims is only logged when it came through a trusted peer.
            forwarded_for: request_headers
                .get(X_FORWARDED_FOR)
                .filter(|_| trusted_peer)
                .cloned(),
            client_ip,
            proto: match request.version() {
                http::Version::HTTP_2 => "HTTP/2.0",
                http::Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
            scheme: self.scheme,
            status: 0,
            target: None,
            resp_content_length: -1,
            resp_content_type: None,
            extra,
            note: None,
        });

        // The record keeps the host for the log line; the rest of the request borrows it there.
        let host = record.host.as_str();
        let (mut response, target) = match route {
            None if let Some((status, why)) = refusal => {
                tracing::debug!(%peer, status = status.as_u16(), why, "Refused a request");
                (
                    response::error_page(&ErrorPages::default(), status, ""),
                    None,
                )
            }
            None => (
                response::error_page(&ErrorPages::default(), StatusCode::NOT_FOUND, ""),
                None,
            ),
            Some(route) if plain && self.redirects_to_https(&route, host) => (
                response::redirect(&self.https_location(host, request.uri())),
                None,
            ),
            Some(route) => {
                let routed = Routed {
                    scheme: self.scheme,
                    prefix: &route.prefix,
                    host,
                    peer: peer.ip().to_canonical(),
                    client_ip,
                    client_timeout: self.client_timeout,
                    request_body_timeout: self.request_body_timeout,
                    buffers: &self.buffers,
                    metrics: &self.metrics,
                };
                let handled = route.service.handle(request, routed).await;
                let names = logged
                    .iter()
                    .flat_map(|options| &options.log_response_headers);
                for name in names {
                    let value = clip(header_text(handled.response.headers().get(name.as_str())));
                    record.extra.insert(
                        format!("resp_{}", name.to_ascii_lowercase()),
                        Value::from(value),
                    );
                }
                (handled.response, handled.target)
            }
        };
        record.response(&response);
        record.target = target;
        response.body_mut().record(record);
        response
    }
}

/// Copies the request's head (target and header values) out of the connection's read buffer.
/// hyper parses them in place, so while a request is in flight its head pins that buffer, and
/// reading the body needs a second one: for a slow upload that doubles what its connection holds.
/// Done only for requests with a body, where it can matter; small copies otherwise not worth it.
fn detach_head<B>(request: &mut Request<B>) {
    let headers = std::mem::take(request.headers_mut());
    let mut copied = http::HeaderMap::with_capacity(headers.len());
    let mut last_name = None;
    for (name, value) in headers {
        // `None` repeats the previous name (several values of one header).
        if let Some(name) = name {
            last_name = Some(name);
        }
        let Some(name) = &last_name else { continue };
        let value = HeaderValue::from_bytes(value.as_bytes()).unwrap_or(value);
        copied.append(name.clone(), value);
    }
    *request.headers_mut() = copied;
    if let Ok(uri) = http::Uri::try_from(request.uri().to_string()) {
        *request.uri_mut() = uri;
    }
}

/// The host without its port: `a.example.com:8080` → `a.example.com`, `[::1]:80` → `[::1]`.
fn bare_host(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::{bare_host, detach_head};

    #[test]
    fn a_detached_head_keeps_every_header_and_the_target() {
        let mut request = http::Request::post("http://app.test/up?x=1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-one", "1")
            .body(())
            .unwrap();
        let before = request.headers().clone();
        detach_head(&mut request);
        assert_eq!(request.headers(), &before);
        assert_eq!(request.uri(), "http://app.test/up?x=1");
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(bare_host("a.example.com:8080"), "a.example.com");
        assert_eq!(bare_host("a.example.com"), "a.example.com");
        assert_eq!(bare_host("[::1]:80"), "[::1]");
    }
}
