//! Prometheus metrics, under kamal-proxy's names so existing dashboards keep working:
//! `kamal_proxy_http_requests_total` and `kamal_proxy_http_request_duration_seconds` by service,
//! method and status, and `kamal_proxy_http_in_flight_requests` by service. Served in the text
//! format on the metrics port.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub service: Arc<String>,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: Arc<String>,
}

/// Buckets of the duration histogram, Prometheus' defaults (5 ms to 10 s).
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlaceLabels {
    pub place: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// The resource bounds' metrics: what each bound holds now and how often it bit.
#[derive(Debug, Default)]
struct Bounds {
    connections: Family<ListenerLabels, Gauge>,
    connection_limit_reached: Family<ListenerLabels, Counter>,
    connections_closed: Family<ClosedLabels, Counter>,
    buffered_bytes: Family<PlaceLabels, Gauge>,
    buffer_budget_exceeded: Family<PlaceLabels, Counter>,
    request_body_timeouts: Family<KindLabels, Counter>,
    retries: Counter,
}

impl Bounds {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "hoist_proxy_connections",
            "Open client connections, by listener",
            self.connections.clone(),
        );
        registry.register(
            "hoist_proxy_connection_limit_reached",
            "Times a listener reached --max-connections and waited for a free slot",
            self.connection_limit_reached.clone(),
        );
        registry.register(
            "hoist_proxy_connections_closed",
            "Client connections the proxy closed, by listener and reason (idle_timeout; shed: \
             idle while the listener was at its cap)",
            self.connections_closed.clone(),
        );
        registry.register(
            "hoist_proxy_buffered_bytes",
            "Bytes of buffered request and response bodies held now, by place (memory, disk)",
            self.buffered_bytes.clone(),
        );
        registry.register(
            "hoist_proxy_buffer_budget_exceeded",
            "Buffered bodies that found the proxy-wide budget used up, by place (memory: spilled \
             to disk early; disk: request refused with 503, response streamed unbuffered)",
            self.buffer_budget_exceeded.clone(),
        );
        registry.register(
            "hoist_proxy_request_body_timeouts",
            "Request bodies cut because the client was too slow, by kind (idle, deadline)",
            self.request_body_timeouts.clone(),
        );
        registry.register(
            "hoist_proxy_upstream_retries",
            "Requests sent again to another target after their connection failed before any \
             response",
            self.retries.clone(),
        );
        registry.register(
            "hoist_proxy_log_lines_dropped",
            "Log lines dropped because stdout was blocked and the log queue was full",
            crate::logging::dropped_lines(),
        );
    }
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    bounds: Bounds,
    tls_handshake_errors: Family<ReasonLabels, Counter>,
    acme_orders: Family<ResultLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<ServiceLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RequestLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BUCKETS)) as fn() -> Histogram,
        );
        let in_flight = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "kamal_proxy_http_requests",
            "HTTP requests handled, by service, method and status",
            requests.clone(),
        );
        registry.register(
            "kamal_proxy_http_request_duration_seconds",
            "Time to handle HTTP requests, by service, method and status",
            durations.clone(),
        );
        registry.register(
            "kamal_proxy_http_in_flight_requests",
            "HTTP requests being handled, by service",
            in_flight.clone(),
        );
        let tls_handshake_errors = Family::<ReasonLabels, Counter>::default();
        let acme_orders = Family::<ResultLabels, Counter>::default();
        registry.register(
            "hoist_proxy_tls_handshake_errors",
            "TLS handshakes that failed, by reason (no_certificate, protocol, timeout, io)",
            tls_handshake_errors.clone(),
        );
        registry.register(
            "hoist_proxy_acme_orders",
            "ACME certificate orders, by result (success, failure)",
            acme_orders.clone(),
        );
        let bounds = Bounds::default();
        bounds.register(&mut registry);
        Self {
            registry,
            bounds,
            tls_handshake_errors,
            acme_orders,
            requests,
            durations,
            in_flight,
        }
    }
}

impl Metrics {
    /// Counts a finished request.
    pub fn observe(&self, service: &Arc<String>, method: &Method, status: u16, elapsed: Duration) {
        let labels = RequestLabels {
            service: Arc::clone(service),
            method: method_label(method),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a failed TLS handshake; handshakes are not logged one by one.
    pub fn tls_handshake_error(&self, reason: &'static str) {
        self.tls_handshake_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn acme_order(&self, result: &'static str) {
        self.acme_orders
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The open-connections gauge of a listener (`http`, `https`).
    pub fn connections(&self, listener: &'static str) -> Gauge {
        self.bounds
            .connections
            .get_or_create_owned(&ListenerLabels { listener })
    }

    pub fn connection_limit_reached(&self, listener: &'static str) {
        self.bounds
            .connection_limit_reached
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    pub fn connection_closed(&self, listener: &'static str, reason: &'static str) {
        self.bounds
            .connections_closed
            .get_or_create(&ClosedLabels { listener, reason })
            .inc();
    }

    /// Adds `delta` (negative to give back) to the bytes buffered in `place`.
    pub fn buffered_bytes(&self, place: &'static str, delta: i64) {
        self.bounds
            .buffered_bytes
            .get_or_create(&PlaceLabels { place })
            .inc_by(delta);
    }

    pub fn buffer_budget_exceeded(&self, place: &'static str) {
        self.bounds
            .buffer_budget_exceeded
            .get_or_create(&PlaceLabels { place })
            .inc();
    }

    pub fn request_body_timeout(&self, kind: &'static str) {
        self.bounds
            .request_body_timeouts
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Counts a request sent again to another target.
    pub fn retried(&self) {
        self.bounds.retries.inc();
    }

    /// The in-flight gauge of a service.
    pub fn in_flight(&self, service: &Arc<String>) -> Gauge {
        self.in_flight.get_or_create_owned(&ServiceLabels {
            service: Arc::clone(service),
        })
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The nine standard methods by name, anything else as `OTHER`, as kamal-proxy labels them.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}
