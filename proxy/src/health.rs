//! Health checks: one probe (`GET http://<target>[:port]<path>`, 2xx within the timeout means
//! healthy) and the loop that runs it on an interval and moves a target in and out of rotation
//! with rise/fall thresholds, so a single blip does not eject it. Redirects are followed only
//! while they stay on the probed target: a redirect elsewhere (say to the public `https://` URL,
//! which the old container would answer) fails the probe, as any final 3xx does for
//! kamal-proxy, whose checks count only 2xx as healthy.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio_util::sync::CancellationToken;

use crate::options::HealthCheckOptions;
use crate::target::Target;

/// Redirects a probe follows before it counts as failed (as Go's default client).
const MAX_REDIRECTS: usize = 10;

/// The HTTP client probes use, shared by every target.
#[derive(Clone, Debug)]
pub struct Prober {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for Prober {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(connector);
        Self { client }
    }
}

/// A failed probe: what was asked and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    pub url: String,
    pub error: String,
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "GET {}: {}", self.url, self.error)
    }
}

impl Prober {
    /// The URL a target is probed at.
    pub fn url(target: &Target, options: &HealthCheckOptions) -> String {
        let host = target.authority.host();
        let port = match options.port {
            0 => target.authority.port_u16().unwrap_or(80),
            port => port,
        };
        format!("http://{host}:{port}{}", options.path)
    }

    /// Probes once.
    pub async fn probe(
        &self,
        target: &Target,
        options: &HealthCheckOptions,
    ) -> Result<(), ProbeFailure> {
        let first = Self::url(target, options);
        let mut url = first.clone();
        let failure = |url: &str, error: String| ProbeFailure {
            url: url.to_owned(),
            error,
        };
        let attempt = async {
            for _ in 0..=MAX_REDIRECTS {
                let mut request = Request::get(&url).header(header::USER_AGENT, "hoist-proxy");
                if let Some(host) = &options.host {
                    request = request.header(header::HOST, host);
                }
                let request = request
                    .body(Empty::new())
                    .map_err(|error| failure(&url, error.to_string()))?;
                let response = self
                    .client
                    .request(request)
                    .await
                    .map_err(|error| failure(&url, crate::forward::innermost_cause(&error)))?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|value| value.to_str().ok());
                match location {
                    Some(location) if status.is_redirection() => {
                        url = resolve_redirect(&url, location)
                            .filter(|next| same_target(&first, next))
                            .ok_or_else(|| {
                                failure(
                                    &url,
                                    format!(
                                        "answered {status} with a redirect to {location}, away \
                                         from the container; health checks follow redirects \
                                         only on the container itself: make the health check \
                                         path answer 2xx without redirecting (e.g. exclude it \
                                         from forced HTTPS)"
                                    ),
                                )
                            })?;
                    }
                    _ => return Err(failure(&url, describe_status(status))),
                }
            }
            Err(failure(
                &first,
                format!("more than {MAX_REDIRECTS} redirects"),
            ))
        };
        match tokio::time::timeout(options.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(failure(
                &first,
                format!(
                    "no answer within the health check timeout ({})",
                    crate::duration::format_duration(options.timeout)
                ),
            )),
        }
    }

    /// Checks `target` every interval until `stop` fires, updating its health with the
    /// thresholds and calling `changed` after every change. With `lone` set, checks end once the
    /// target is healthy: taking the only target out of rotation would help nobody.
    pub async fn watch(
        &self,
        target: Arc<Target>,
        options: HealthCheckOptions,
        lone: bool,
        stop: CancellationToken,
        changed: impl Fn(&Target, Option<&ProbeFailure>),
    ) {
        let mut ticker = tokio::time::interval(options.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut successes = 0u32;
        let mut failures = 0u32;
        let mut ever_healthy = target.is_healthy();
        let mut seen_healthy = ever_healthy;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if lone && target.is_healthy() {
                return;
            }
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                result = self.probe(&target, &options) => result,
            };
            // Taken out of rotation by a failed request since the last probe (passive
            // ejection): it comes back after `rise` passing probes, as after failed ones.
            if seen_healthy && !target.is_healthy() {
                successes = 0;
            }
            match result {
                Ok(()) => {
                    failures = 0;
                    successes = successes.saturating_add(1);
                    target.clear_last_failure();
                    // A new target goes live on its first success; a target that was taken out
                    // needs `rise` in a row.
                    let threshold = if ever_healthy { options.rise } else { 1 };
                    if !target.is_healthy() && successes >= threshold {
                        ever_healthy = true;
                        target.set_healthy(true);
                        changed(&target, None);
                    }
                }
                Err(failure) => {
                    successes = 0;
                    failures = failures.saturating_add(1);
                    tracing::info!(
                        target_address = %target.address,
                        url = %failure.url,
                        error = %failure.error,
                        "Healthcheck failed"
                    );
                    target.set_last_failure(failure.clone());
                    if target.is_healthy() && failures >= options.fall {
                        target.set_healthy(false);
                        changed(&target, Some(&failure));
                    }
                }
            }
            seen_healthy = target.is_healthy();
        }
    }
}

fn describe_status(status: StatusCode) -> String {
    format!("answered {status}, expected a 2xx status")
}

/// Resolves a `Location` against the URL that answered it; only plain HTTP is followed.
fn resolve_redirect(base: &str, location: &str) -> Option<String> {
    if location.starts_with("http://") {
        return Some(location.to_owned());
    }
    if location.starts_with('/') && !location.starts_with("//") {
        let after_scheme = base.strip_prefix("http://")?;
        let authority_end = after_scheme.find('/').unwrap_or(after_scheme.len());
        return Some(format!(
            "http://{}{location}",
            &after_scheme[..authority_end]
        ));
    }
    None
}

/// True when `next` is on the same `http://host:port` as `first`.
fn same_target(first: &str, next: &str) -> bool {
    let authority = |url: &str| {
        url.strip_prefix("http://")
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_ascii_lowercase())
    };
    let (Some(first), Some(next)) = (authority(first), authority(next)) else {
        return false;
    };
    let with_port = |authority: String| {
        if authority
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.contains(']'))
        {
            authority
        } else {
            format!("{authority}:80")
        }
    };
    with_port(first) == with_port(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_are_followed_only_on_the_target() {
        assert!(same_target("http://web:3000/up", "http://web:3000/ready"));
        assert!(same_target("http://WEB:80/up", "http://web/ready"));
        assert!(!same_target(
            "http://web:3000/up",
            "http://app.example.com/up"
        ));
        assert!(!same_target("http://web:3000/up", "http://web:3001/up"));
        assert!(!same_target("http://web:3000/up", "https://web:3000/up"));
    }

    #[test]
    fn probe_url_uses_the_health_port_when_set() {
        let target = Target::new("web:3000").unwrap();
        let mut options = HealthCheckOptions::default();
        assert_eq!(Prober::url(&target, &options), "http://web:3000/up");
        options.port = 9000;
        options.path = "/health".into();
        assert_eq!(Prober::url(&target, &options), "http://web:9000/health");
    }

    #[test]
    fn redirects_resolve_against_the_target() {
        assert_eq!(
            resolve_redirect("http://web:3000/up", "/ready").as_deref(),
            Some("http://web:3000/ready")
        );
        assert_eq!(
            resolve_redirect("http://web:3000/up", "http://other/x").as_deref(),
            Some("http://other/x")
        );
        assert_eq!(resolve_redirect("http://web:3000/up", "https://x/"), None);
    }
}
