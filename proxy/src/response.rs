//! What the client receives: the response body that keeps the target claimed until it is fully
//! sent (so drains wait for whole responses), aborts when a drain cancels it, and writes the
//! request's log line and metrics when it ends; plus the responses the proxy generates itself.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Map, Value};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::body::{BoxError, ResponseContent};
use crate::connection::ActivityGuard;
use crate::error_pages::ErrorPages;
use crate::logging::{Address, RequestLine, clip, now_rfc3339};
use crate::metrics::Metrics;
use crate::target::RequestGuard;

/// A response body with its request's bookkeeping attached.
pub struct ResponseBody {
    content: ResponseContent,
    guard: Option<RequestGuard>,
    cancel: Option<CancellationToken>,
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    record: Option<Box<RequestRecord>>,
    /// Keeps the request counted on its connection until the body is gone.
    connection: Option<ActivityGuard>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ResponseBody")
            .field("content", &self.content)
            .finish_non_exhaustive()
    }
}

/// The response was cut because its target was drained past the drain timeout.
#[derive(Debug, thiserror::Error)]
#[error("response cancelled: its target was drained")]
pub struct Cancelled;

impl ResponseBody {
    pub fn new(content: ResponseContent) -> Self {
        Self {
            content,
            guard: None,
            cancel: None,
            cancelled: None,
            record: None,
            connection: None,
        }
    }

    /// Counts the request as in flight on its connection until this body is dropped.
    pub fn hold_connection(&mut self, guard: ActivityGuard) {
        self.connection = Some(guard);
    }

    /// Keeps `guard`'s target claimed until the body ends, and aborts the body when the target's
    /// drain cancels its requests.
    pub fn hold(&mut self, guard: RequestGuard) {
        self.cancel = Some(guard.target().request_cancelled().clone());
        self.guard = Some(guard);
    }

    /// Logs and counts the request when the body ends.
    pub fn record(&mut self, record: Box<RequestRecord>) {
        self.record = Some(record);
    }

    fn finish(&mut self) {
        self.guard = None;
        if let Some(record) = self.record.take() {
            record.finish();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.content).poll_frame(context) {
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame)),
            Poll::Pending => {
                if let Some(token) = &this.cancel {
                    let cancelled = this
                        .cancelled
                        .get_or_insert_with(|| Box::pin(token.clone().cancelled_owned()));
                    if cancelled.as_mut().poll(context).is_ready() {
                        if let Some(record) = this.record.as_mut() {
                            record.note = Some("Request cancelled due to draining");
                        }
                        this.finish();
                        return Poll::Ready(Some(Err(Cancelled.into())));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.content.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.content.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.finish();
    }
}

/// What the log line and the metrics need about one request.
#[derive(Debug)]
pub struct RequestRecord {
    pub started: Instant,
    pub metrics: Arc<Metrics>,
    pub in_flight: Option<Gauge>,
    pub count_in_metrics: bool,
    pub service: Arc<String>,
    pub method: http::Method,
    pub host: String,
    pub port: u16,
    /// Path and query, as received.
    pub uri: http::Uri,
    pub request_id: HeaderValue,
    pub user_agent: Option<HeaderValue>,
    pub req_content_length: i64,
    pub req_content_type: Option<HeaderValue>,
    pub client_addr: IpAddr,
    pub client_port: u16,
    /// The client's address as the target sees it: the first X-Forwarded-For entry, if any.
    pub forwarded_for: Option<HeaderValue>,
    /// The client address after `--client-ip-header`.
    pub client_ip: IpAddr,
    pub proto: &'static str,
    pub scheme: &'static str,
    pub status: u16,
    /// The target the request went to first, if any.
    pub target: Option<Arc<crate::target::Target>>,
    pub resp_content_length: i64,
    pub resp_content_type: Option<HeaderValue>,
    pub extra: Map<String, Value>,
    /// Why the proxy ended the request early, logged as a separate line.
    pub note: Option<&'static str>,
}

impl RequestRecord {
    /// Notes what the response carries.
    pub fn response<B>(&mut self, response: &Response<B>) {
        self.status = response.status().as_u16();
        let headers = response.headers();
        self.resp_content_length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .unwrap_or(-1);
        self.resp_content_type = headers.get(header::CONTENT_TYPE).cloned();
    }

    fn target_address(&self) -> &str {
        self.target
            .as_ref()
            .map_or("", |target| target.address.as_str())
    }

    fn finish(self: Box<Self>) {
        let elapsed = self.started.elapsed();
        if let Some(note) = self.note {
            tracing::info!(
                path = clip(self.uri.path()),
                request_id = clip(header_text(Some(&self.request_id))),
                service = %self.service,
                target_address = self.target_address(),
                "{note}"
            );
        }
        if self.count_in_metrics {
            self.metrics
                .observe(&self.service, &self.method, self.status, elapsed);
        }
        if let Some(gauge) = &self.in_flight {
            gauge.dec();
        }
        RequestLine {
            time: now_rfc3339(),
            level: "INFO",
            msg: "Request",
            host: clip(&self.host),
            port: self.port,
            path: clip(self.uri.path()),
            request_id: clip(header_text(Some(&self.request_id))),
            status: self.status,
            service: &self.service,
            target: self
                .target
                .as_ref()
                .map_or("", |target| target.address.as_str()),
            duration: u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            method: self.method.as_str(),
            req_content_length: self.req_content_length,
            req_content_type: clip(header_text(self.req_content_type.as_ref())),
            resp_content_length: self.resp_content_length,
            resp_content_type: clip(header_text(self.resp_content_type.as_ref())),
            client_addr: self.client_addr,
            client_port: self.client_port,
            remote_addr: match self
                .forwarded_for
                .as_ref()
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(',').next())
            {
                Some(first) => Address::Text(clip(first.trim())),
                None => Address::Ip(self.client_ip),
            },
            user_agent: clip(header_text(self.user_agent.as_ref())),
            proto: self.proto,
            scheme: self.scheme,
            query: clip(self.uri.query().unwrap_or("")),
            extra: self.extra,
        }
        .emit();
    }
}

/// A header's text, or "" when absent or not text.
pub fn header_text(value: Option<&HeaderValue>) -> &str {
    value.and_then(|value| value.to_str().ok()).unwrap_or("")
}

/// A generated HTML error page.
pub fn error_page(pages: &ErrorPages, status: StatusCode, message: &str) -> Response<ResponseBody> {
    let page = pages.render(status, message);
    let mut response = Response::new(ResponseBody::new(ResponseContent::Full(Some(page))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Marks the proxy's own answers that say the request reached no application: `unreachable`
/// (502, the target could not be reached or broke off) and `no-target` (503, none in rotation).
/// A hoist-proxy in front of this one (the load balancer) sends such a request to another host;
/// maintenance pages and the application's own errors carry no mark and pass through.
pub const X_HOIST_PROXY_ERROR: header::HeaderName =
    header::HeaderName::from_static("x-hoist-proxy-error");

/// Why a request reached no application, as [`X_HOIST_PROXY_ERROR`] says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unserved {
    /// 502: the target could not be reached or broke off before answering.
    Unreachable,
    /// 503: no target in rotation.
    NoTarget,
}

impl Unserved {
    pub fn as_str(self) -> &'static str {
        match self {
            Unserved::Unreachable => "unreachable",
            Unserved::NoTarget => "no-target",
        }
    }

    /// The mark a response from another hoist-proxy carries, if any.
    pub fn of<B>(response: &Response<B>) -> Option<Unserved> {
        let mark = response.headers().get(X_HOIST_PROXY_ERROR)?.as_bytes();
        match (response.status(), mark) {
            (StatusCode::BAD_GATEWAY, b"unreachable") => Some(Unserved::Unreachable),
            (StatusCode::SERVICE_UNAVAILABLE, b"no-target") => Some(Unserved::NoTarget),
            _ => None,
        }
    }

    /// Marks `response` with this reason.
    pub fn mark<B>(self, response: &mut Response<B>) {
        response
            .headers_mut()
            .insert(X_HOIST_PROXY_ERROR, HeaderValue::from_static(self.as_str()));
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, text: String) -> Response<ResponseBody> {
    let body = ResponseContent::Full(Some(Bytes::from(text)));
    let mut response = Response::new(ResponseBody::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A bare response with an empty body.
pub fn empty(status: StatusCode) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::new(ResponseContent::Empty));
    *response.status_mut() = status;
    response
}

/// A 301 to `location`, closing the connection as kamal-proxy does.
pub fn redirect(location: &str) -> Response<ResponseBody> {
    let mut response = empty(StatusCode::MOVED_PERMANENTLY);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
