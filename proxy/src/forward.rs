//! Forwarding one request to one target over HTTP/1.1: the upstream URI and headers (`Host` set
//! to the host the request was routed by, query verbatim, hop-by-hop headers stripped, HTTP/2
//! cookies joined, forwarding headers by `forwarded.rs`), request and response buffering within
//! the proxy's budget, the target timeout (504), connection errors (502), drain cancellation
//! (504), and upgrades (WebSockets) tunnelled both ways until either side closes or the drain
//! cuts them. `h2c` upgrades are never passed on: the request goes as a plain one.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::{BufferError, Buffered, IdleTimeout, RequestBody, ResponseContent};
use crate::budget::BufferBudget;
use crate::forwarded::{self, Arrival};
use crate::metrics::Metrics;
use crate::options::TargetOptions;
use crate::target::RequestGuard;

/// A second copy of a request body that can be sent again: none (a body with nothing in it),
/// or one buffered whole in memory.
fn replay(body: &RequestBody, buffers: &Arc<BufferBudget>) -> Option<RequestBody> {
    use hyper::body::Body as _;
    match body {
        RequestBody::Left(streamed) if streamed.is_end_stream() => {
            Some(RequestBody::Right(crate::body::Buffered::empty(buffers)))
        }
        RequestBody::Left(_) => None,
        RequestBody::Right(buffered) => buffered.replica().map(RequestBody::Right),
    }
}

/// Per-request facts the forwarder needs from the layers above it.
#[derive(Debug)]
pub struct ForwardContext<'a> {
    /// Path the target sees (after prefix stripping), query excluded.
    pub path: &'a str,
    /// The TCP peer, whose forwarding headers are trusted or not.
    pub peer: IpAddr,
    pub client_ip: IpAddr,
    pub options: &'a TargetOptions,
    /// Longest pause allowed while the client sends its body.
    pub client_timeout: Duration,
    /// Longest the client may take to send a whole buffered body.
    pub request_body_timeout: Duration,
    pub buffers: &'a Arc<BufferBudget>,
    pub metrics: &'a Metrics,
    /// Where prefixed cookies are scoped, with `--scope-cookie-paths`.
    pub cookie_prefix: Option<&'a str>,
    /// Host of the request, for cookie scoping and X-Forwarded-Host.
    pub host: &'a str,
    /// Set-Cookie to add (writer affinity), if any.
    pub add_cookie: Option<String>,
    /// Scheme the client used (`http`, `https`), for X-Forwarded-Proto.
    pub scheme: &'static str,
    /// How many other targets a request that failed before any response may go to.
    pub retries: usize,
}

/// How forwarding failed, as the status the client gets.
#[derive(Debug)]
pub enum ForwardError {
    /// 400: the client sent a body that could not be read.
    BadRequest(String),
    /// 408: the client was too slow sending its body.
    RequestTimeout(String),
    /// 413: the body is over `--max-request-body`.
    TooLarge,
    /// 503: the proxy's buffer space is used up.
    Unavailable(String),
    /// 502: the target could not be reached or broke the response.
    BadGateway(String),
    /// 504: the target did not answer within the target timeout, or the drain cancelled it.
    Timeout(String),
    /// 500: the response is over `--max-response-body`, or buffering failed.
    Internal(String),
    /// 504: the drain timeout ended before the target answered.
    Drained,
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ForwardError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ForwardError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ForwardError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ForwardError::Timeout(_) | ForwardError::Drained => StatusCode::GATEWAY_TIMEOUT,
            ForwardError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            ForwardError::TooLarge => "request body too large",
            ForwardError::Drained => "request cancelled due to draining",
            ForwardError::BadRequest(detail)
            | ForwardError::RequestTimeout(detail)
            | ForwardError::Unavailable(detail)
            | ForwardError::BadGateway(detail)
            | ForwardError::Timeout(detail)
            | ForwardError::Internal(detail) => detail,
        }
    }
}

/// Sends `request` to the claimed target and returns the target's response, ready for the client,
/// with the guard of the target that answered (or failed last).
///
/// When the request fails before any byte of a response (the connection refused, reset or
/// closed), it goes again to a target `another` claims, up to `context.retries` times, provided
/// the body can be sent again: none, or buffered whole in memory. A streamed body, an upgrade,
/// a timeout and a drain are never retried. So is a request another hoist-proxy answered with
/// its own mark that it reached no application there (see [`unserved`]); when no other target
/// takes it, that answer goes to the client. A refused connection also takes the target out of
/// rotation until its health checks bring it back (passive ejection), when there are others.
pub async fn forward(
    request: Request<Incoming>,
    guard: RequestGuard,
    context: ForwardContext<'_>,
    another: impl FnMut(&[Arc<crate::target::Target>]) -> Option<RequestGuard>,
) -> (
    Result<Response<ResponseContent>, ForwardError>,
    RequestGuard,
) {
    let mut guard = guard;
    let result = forward_to(request, &mut guard, context, another).await;
    (result, guard)
}

async fn forward_to(
    mut request: Request<Incoming>,
    guard: &mut RequestGuard,
    context: ForwardContext<'_>,
    mut another: impl FnMut(&[Arc<crate::target::Target>]) -> Option<RequestGuard>,
) -> Result<Response<ResponseContent>, ForwardError> {
    let options = context.options;
    let upgrade = is_upgrade(&request);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();

    let body = if options.buffer_requests {
        let mut body = IdleTimeout::new(body, context.client_timeout)
            .with_deadline(context.request_body_timeout);
        let read = Buffered::read(
            &mut body,
            options.buffer_memory,
            options.max_request_body,
            context.buffers,
        )
        .await;
        match read {
            Ok(buffered) => RequestBody::Right(buffered),
            Err(BufferError::TooLarge(_)) => return Err(ForwardError::TooLarge),
            Err(error @ BufferError::Exhausted(_)) => {
                return Err(ForwardError::Unavailable(error.to_string()));
            }
            Err(error @ BufferError::Read(_)) => {
                return Err(match error.timeout() {
                    Some(timeout) => {
                        context.metrics.request_body_timeout(timeout.kind());
                        ForwardError::RequestTimeout(error.to_string())
                    }
                    None => ForwardError::BadRequest(error.to_string()),
                });
            }
            Err(error @ BufferError::Spill(_)) => {
                return Err(ForwardError::Internal(error.to_string()));
            }
        }
    } else {
        RequestBody::Left(IdleTimeout::new(body, context.client_timeout))
    };

    let query = parts.uri.query().map(str::to_owned);
    // The Host the request was routed by, unless the request already says exactly that.
    let same_host = parts
        .headers
        .get(header::HOST)
        .is_some_and(|value| value.as_bytes() == context.host.as_bytes());
    if !context.host.is_empty()
        && !same_host
        && let Ok(host) = HeaderValue::from_str(context.host)
    {
        parts.headers.insert(header::HOST, host);
    }
    if parts.version == Version::HTTP_2 {
        join_cookies(&mut parts.headers);
    }
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let arrival = Arrival {
        peer: context.peer,
        client_ip: context.client_ip,
        scheme: context.scheme,
        host: context.host,
    };
    let trusted = forwarded::prepare(&mut parts.headers, options, arrival);

    let mut tried: Vec<Arc<crate::target::Target>> = Vec::new();
    let mut body = Some(body);
    let response = loop {
        let target = Arc::clone(guard.target());
        let Some(this_body) = body.take() else {
            return Err(ForwardError::Internal("request body lost".into()));
        };
        // A spare copy of what is sent, for sending it again elsewhere.
        let spare = if !upgrade && tried.len() < context.retries {
            replay(&this_body, context.buffers).map(|spare| (parts.headers.clone(), spare))
        } else {
            None
        };
        let mut headers = std::mem::take(&mut parts.headers);
        if let Some(value) = target.header.clone() {
            forwarded::append_or_set(&mut headers, X_KAMAL_TARGET, value, trusted);
        }
        let mut upstream = Request::new(this_body);
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = upstream_uri(context.path, query.as_deref())
            .map_err(|error| ForwardError::BadRequest(error.to_string()))?;
        *upstream.version_mut() = Version::HTTP_11;
        *upstream.headers_mut() = headers;
        if spare.is_none() {
            *upstream.extensions_mut() = std::mem::take(&mut parts.extensions);
        }
        let cancelled = target.request_cancelled();
        // A failure, and the answer to pass on when the request cannot go elsewhere.
        let (detail, answer) = tokio::select! {
            result = tokio::time::timeout(options.target_timeout, crate::upstream::send(&target.authority, upstream)) => match result {
                Ok(Ok(response)) => match unserved(&response, &parts.method) {
                    Some(detail) if spare.is_some() => (detail, Some(response)),
                    _ => break response,
                },
                Ok(Err(error)) => {
                    let detail = error.detail();
                    if error.is_connect() && context.retries > 0 && target.set_healthy(false) {
                        tracing::info!(
                            target_address = %target.address,
                            error = %detail,
                            "Target taken out of rotation after a connection error"
                        );
                    }
                    (detail, None)
                }
                Err(_) => return Err(ForwardError::Timeout(format!(
                    "no response within the target timeout ({})",
                    crate::duration::format_duration(options.target_timeout)
                ))),
            },
            _ = cancelled.cancelled() => return Err(ForwardError::Drained),
        };
        tried.push(target);
        let next = spare.and_then(|spare| Some((spare, another(&tried)?)));
        let Some(((headers, spare), next)) = next else {
            match answer {
                Some(response) => break response,
                None => return Err(ForwardError::BadGateway(detail)),
            }
        };
        tracing::info!(
            from = %tried.last().map_or("", |t| t.address.as_str()),
            to = %next.target().address,
            error = %detail,
            "Retrying the request on another target"
        );
        context.metrics.retried();
        parts.headers = headers;
        body = Some(spare);
        *guard = next;
    };

    let (mut parts, body) = response.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let mut upstream_response = Response::from_parts(parts.clone(), ());
            let upstream_upgrade = hyper::upgrade::on(&mut upstream_response);
            let upgraded = guard.upgraded();
            tokio::spawn(async move {
                let _open = crate::connection::tunnel_opened();
                let (client_io, upstream_io) =
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok(pair) => pair,
                        Err(error) => {
                            tracing::debug!(%error, "Upgrade failed");
                            return;
                        }
                    };
                let mut client_io = TokioIo::new(client_io);
                let mut upstream_io = TokioIo::new(upstream_io);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io) => {}
                    _ = upgraded.cut().cancelled() => {}
                }
            });
            return Ok(Response::from_parts(parts, ResponseContent::Empty));
        }
        return Err(ForwardError::BadGateway(
            "target switched protocols unasked".into(),
        ));
    }

    strip_hop_by_hop(&mut parts.headers, false);
    if let Some(prefix) = context.cookie_prefix {
        scope_cookies(&mut parts.headers, prefix, context.host);
    }
    let affinity_off = parts
        .headers
        .remove(X_WRITER_AFFINITY)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"false"));
    if let Some(cookie) = context.add_cookie
        && !affinity_off
        && let Ok(value) = HeaderValue::from_str(&cookie)
    {
        parts.headers.append(header::SET_COOKIE, value);
    }

    let content = if options.buffer_responses && !is_streaming(&parts.headers) {
        let mut body = IdleTimeout::new(body, options.target_timeout);
        let read = Buffered::read(
            &mut body,
            options.buffer_memory,
            options.max_response_body,
            context.buffers,
        )
        .await;
        match read {
            Ok(buffered) => ResponseContent::Buffered(buffered),
            Err(BufferError::TooLarge(limit)) => {
                return Err(ForwardError::Internal(format!(
                    "response larger than --max-response-body ({limit} bytes)"
                )));
            }
            // Out of buffer space: send what was read, then stream the rest.
            Err(BufferError::Exhausted(head)) => {
                ResponseContent::Partial(Box::new((*head, body.into_inner())))
            }
            Err(error) => return Err(ForwardError::BadGateway(error.to_string())),
        }
    } else {
        ResponseContent::Upstream(body)
    };
    Ok(Response::from_parts(parts, content))
}

const X_KAMAL_TARGET: HeaderName = HeaderName::from_static("x-kamal-target");
const X_WRITER_AFFINITY: HeaderName = HeaderName::from_static("x-writer-affinity");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Why a response from another hoist-proxy (a web host behind the load balancer) says the
/// request reached no application there, when sending it to another host is safe: a 503 with no
/// target never reached one; a 502 may have, so only idempotent methods go again.
fn unserved<B>(response: &Response<B>, method: &http::Method) -> Option<String> {
    use crate::response::Unserved;
    match Unserved::of(response)? {
        Unserved::NoTarget => Some("the target's proxy has no application in rotation".into()),
        Unserved::Unreachable if is_idempotent(method) => {
            Some("the target's proxy could not reach its application".into())
        }
        Unserved::Unreachable => None,
    }
}

/// GET, HEAD, OPTIONS, TRACE, PUT and DELETE (RFC 9110 9.2.2): sending one twice does no harm.
fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// A request asking to switch protocols (WebSocket and the like), over HTTP/1.1. An `h2c`
/// upgrade is not one: passing it on would let the client speak HTTP/2 to the target past the
/// proxy, so it is forwarded as a plain request.
fn is_upgrade<B>(request: &Request<B>) -> bool {
    let h2c = request
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("h2c"));
    request.version() == Version::HTTP_11
        && !h2c
        && request.headers().contains_key(header::UPGRADE)
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// `http://<target><path>?<query>`, the query copied byte for byte.
fn upstream_uri(path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let path_and_query = match query {
        Some(query) => {
            let mut value = String::with_capacity(path.len() + query.len() + 1);
            value.push_str(path);
            value.push('?');
            value.push_str(query);
            value
        }
        None => path.to_owned(),
    };
    // Origin form (`/path?query`): the request line a target expects from a proxy in front.
    Uri::builder().path_and_query(path_and_query).build()
}

/// Removes hop-by-hop headers: `Connection` and the names it lists, `Keep-Alive`,
/// `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding` and `Upgrade`. For an upgrade the
/// `Connection: upgrade` and `Upgrade` pair is kept.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if let Some(connection) = headers.get(header::CONNECTION) {
        let listed: Vec<HeaderName> = connection
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| !(keep_upgrade && name == header::UPGRADE))
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        HTTP2_SETTINGS,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// Joins an HTTP/2 request's `cookie` fields (one per cookie there) into the one field HTTP/1.1
/// allows, separated by `; ` (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let cookies: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if cookies.len() < 2 {
        return;
    }
    let joined = cookies.join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// A response that must be streamed even with response buffering on: an event stream, or any
/// response whose length is not known up front (chunked, or close-delimited).
fn is_streaming(headers: &HeaderMap) -> bool {
    let event_stream = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("text/event-stream"));
    event_stream || !headers.contains_key(header::CONTENT_LENGTH)
}

fn scope_cookies(headers: &mut HeaderMap, prefix: &str, host: &str) {
    let host = host.split(':').next().unwrap_or(host);
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        let scoped = cookie
            .to_str()
            .ok()
            .and_then(|text| crate::cookies::scope_path(text, prefix, host))
            .and_then(|text| HeaderValue::from_str(&text).ok());
        headers.append(header::SET_COOKIE, scoped.unwrap_or(cookie));
    }
}

/// The innermost cause of an error ("Connection refused" rather than "client error").
pub fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_with_those_connection_lists() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn query_is_copied_verbatim_in_an_origin_form_target() {
        let uri = upstream_uri("/a", Some("x=1;y=%zz&&z")).unwrap();
        assert_eq!(uri.to_string(), "/a?x=1;y=%zz&&z");
    }

    #[test]
    fn http2_cookies_are_joined_into_one_field() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        join_cookies(&mut headers);
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(headers[header::COOKIE], "a=1; b=2");
    }

    #[test]
    fn h2c_upgrades_are_not_passed_on() {
        let websocket = Request::get("/")
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .body(())
            .unwrap();
        assert!(is_upgrade(&websocket));
        let h2c = Request::get("/")
            .header(header::CONNECTION, "Upgrade, HTTP2-Settings")
            .header(header::UPGRADE, "h2c")
            .header(HTTP2_SETTINGS, "AAMAAABkAAQAAP__")
            .body(())
            .unwrap();
        assert!(!is_upgrade(&h2c));
        let mut headers = h2c.headers().clone();
        strip_hop_by_hop(&mut headers, false);
        assert!(headers.is_empty(), "{headers:?}");
    }

    #[test]
    fn streaming_responses_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(is_streaming(&headers), "unknown length streams");
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(!is_streaming(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        assert!(is_streaming(&headers));
    }
}
