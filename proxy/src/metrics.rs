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

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
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
        Self {
            registry,
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
