//! A deployed service: its options, its active load balancer (and optional rollout balancer with
//! its split), its maintenance mode, and what it does with a request routed to it. Balancers and
//! options sit behind single pointers that a deploy swaps; a request loads each once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::balancer::{LoadBalancer, writer_cookie};
use crate::budget::BufferBudget;
use crate::error_pages::ErrorPages;
use crate::forward::{ForwardContext, ForwardError, forward};
use crate::metrics::Metrics;
use crate::options::ServiceOptions;
use crate::pause::{Gate, Mode, PauseController, PauseState};
use crate::response::{self, ResponseBody, Unserved};
use crate::rollout::{ROLLOUT_COOKIE, RolloutSplit};
use crate::routes::strip_prefix;

/// Options a request needs, swapped as one.
#[derive(Debug)]
pub struct ServiceConfig {
    pub options: ServiceOptions,
    pub error_pages: ErrorPages,
}

#[derive(Debug)]
pub struct Service {
    pub name: Arc<String>,
    pub config: ArcSwap<ServiceConfig>,
    pub active: ArcSwap<LoadBalancer>,
    pub rollout: ArcSwapOption<LoadBalancer>,
    pub split: ArcSwapOption<RolloutSplit>,
    pub pause: PauseController,
}

/// A request as the service sees it: routed, with the prefix that matched.
#[derive(Debug)]
pub struct Routed<'a> {
    /// `http` or `https`, for X-Forwarded-Proto.
    pub scheme: &'static str,
    pub prefix: &'a str,
    /// The host the request was routed by; the target sees it as `Host`.
    pub host: &'a str,
    /// The address of the TCP peer (a client, or a proxy in front).
    pub peer: IpAddr,
    pub client_ip: IpAddr,
    pub client_timeout: Duration,
    /// Longest a client may take to send a whole buffered body.
    pub request_body_timeout: Duration,
    pub buffers: &'a Arc<BufferBudget>,
    pub metrics: &'a Metrics,
}

/// What handling produced: the response, and the target it went to (for the log).
pub struct Handled {
    pub response: Response<ResponseBody>,
    pub target: Option<Arc<crate::target::Target>>,
}

impl Service {
    pub fn new(
        name: &str,
        config: ServiceConfig,
        active: Arc<LoadBalancer>,
        pause: PauseState,
    ) -> Self {
        Self {
            name: Arc::new(name.to_owned()),
            config: ArcSwap::from_pointee(config),
            active: ArcSwap::new(active),
            rollout: ArcSwapOption::empty(),
            split: ArcSwapOption::empty(),
            pause: PauseController::new(pause),
        }
    }

    /// The balancer a request goes to: the rollout one when a split is set and selects the
    /// request's `kamal-rollout` cookie.
    fn balancer_for<B>(&self, request: &Request<B>) -> Arc<LoadBalancer> {
        if let Some(split) = self.split.load().as_ref()
            && let Some(rollout) = self.rollout.load_full()
            && crate::cookies::find(request.headers(), ROLLOUT_COOKIE)
                .is_some_and(|value| split.selects(value))
        {
            return rollout;
        }
        self.active.load_full()
    }

    /// Handles a request routed to this service.
    pub async fn handle(&self, request: Request<Incoming>, routed: Routed<'_>) -> Handled {
        let config = self.config.load();
        let options = &config.options;
        let original_path = request.uri().path();
        let path = if options.strip_path_prefix {
            strip_prefix(routed.prefix, original_path)
        } else {
            original_path
        };

        let mode = self.pause.mode();
        if mode != Mode::Running {
            let health_path = &self.active.load().options.health_check.path;
            let probe = matches!(*request.method(), Method::GET | Method::HEAD);
            if probe && path == health_path {
                return Handled {
                    response: response::empty(StatusCode::OK),
                    target: None,
                };
            }
            match self.pause.gate().await {
                Gate::Proceed => {}
                Gate::Stopped(message) => {
                    return Handled {
                        response: response::error_page(
                            &config.error_pages,
                            StatusCode::SERVICE_UNAVAILABLE,
                            &message,
                        ),
                        target: None,
                    };
                }
                Gate::PauseExpired => {
                    return Handled {
                        response: response::error_page(
                            &config.error_pages,
                            StatusCode::GATEWAY_TIMEOUT,
                            "",
                        ),
                        target: None,
                    };
                }
            }
        }

        if let Some(canonical) = &options.canonical_host {
            let bare_host = routed.host.split(':').next().unwrap_or(routed.host);
            if !bare_host.eq_ignore_ascii_case(canonical) {
                let port = routed.host.split_once(':').map_or("", |(_, port)| port);
                let separator = if port.is_empty() { "" } else { ":" };
                let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
                let scheme = routed.scheme;
                let location = format!("{scheme}://{canonical}{separator}{port}{path}");
                return Handled {
                    response: response::redirect(&location),
                    target: None,
                };
            }
        }

        // A request that loaded a balancer just before a deploy swapped it may find its targets
        // draining; the next load sees the new balancer.
        let mut claimed = None;
        for _ in 0..3 {
            let balancer = self.balancer_for(&request);
            // The sticky cookie is read only where the balancer keeps clients on targets.
            let back = if balancer.options.sticky_sessions {
                crate::cookies::find(request.headers(), STICKY_COOKIE)
                    .and_then(|token| balancer.claim_token(token))
            } else {
                None
            };
            if let Some(guard) =
                back.or_else(|| balancer.claim(&request, options.read_target_websockets))
            {
                claimed = Some((balancer, guard));
                break;
            }
            if Arc::ptr_eq(&balancer, &self.balancer_for(&request)) {
                break;
            }
        }
        let Some((balancer, guard)) = claimed else {
            let mut response =
                response::error_page(&config.error_pages, StatusCode::SERVICE_UNAVAILABLE, "");
            Unserved::NoTarget.mark(&mut response);
            return Handled {
                response,
                target: None,
            };
        };

        let target_options = &balancer.options;
        let add_cookie = (balancer.has_readers() && !is_read_method(request.method()))
            .then(|| writer_cookie(options.writer_affinity_timeout));
        let cookie_prefix =
            (target_options.scope_cookie_paths && routed.prefix != "/").then_some(routed.prefix);
        let path = path.to_owned();
        let context = ForwardContext {
            path: &path,
            peer: routed.peer,
            client_ip: routed.client_ip,
            options: target_options,
            client_timeout: routed.client_timeout,
            request_body_timeout: routed.request_body_timeout,
            buffers: routed.buffers,
            metrics: routed.metrics,
            cookie_prefix,
            host: routed.host,
            add_cookie,
            scheme: routed.scheme,
            retries: balancer.target_count().saturating_sub(1).min(MAX_RETRIES),
        };
        let read = is_read_method(request.method());
        let another = |tried: &[Arc<crate::target::Target>]| balancer.claim_other(read, tried);
        let sticky_sessions = target_options.sticky_sessions;
        let sticky = sticky_sessions
            .then(|| crate::cookies::find(request.headers(), STICKY_COOKIE).map(str::to_owned))
            .flatten();
        let (result, guard) = forward(request, guard, context, another).await;
        let target = Some(Arc::clone(guard.target()));
        match result {
            Ok(response) => {
                let (mut parts, content) = response.into_parts();
                // A sticky client is told (again) which target answered it.
                if sticky_sessions && sticky.as_deref() != Some(guard.target().token.as_str()) {
                    let cookie = format!(
                        "{STICKY_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
                        guard.target().token
                    );
                    if let Ok(value) = http::HeaderValue::from_str(&cookie) {
                        parts.headers.append(http::header::SET_COOKIE, value);
                    }
                }
                let mut body = ResponseBody::new(content);
                body.hold(guard);
                Handled {
                    response: Response::from_parts(parts, body),
                    target,
                }
            }
            Err(ForwardError::Drained) => {
                tracing::info!(
                    service = %self.name,
                    target_address = target.as_ref().map_or("", |target| target.address.as_str()),
                    "Request cancelled due to draining"
                );
                Handled {
                    response: response::error_page(
                        &config.error_pages,
                        StatusCode::GATEWAY_TIMEOUT,
                        "",
                    ),
                    target,
                }
            }
            Err(error) => {
                tracing::info!(
                    service = %self.name,
                    target_address = target.as_ref().map_or("", |target| target.address.as_str()),
                    status = error.status().as_u16(),
                    error = error.detail(),
                    "Error while proxying"
                );
                let mut response = response::error_page(&config.error_pages, error.status(), "");
                if matches!(error, ForwardError::BadGateway(_)) {
                    Unserved::Unreachable.mark(&mut response);
                }
                Handled { response, target }
            }
        }
    }
}

/// Most other targets a request that failed before any response is sent to.
const MAX_RETRIES: usize = 2;

/// The cookie that keeps a client on its target under `--sticky-sessions`.
pub const STICKY_COOKIE: &str = "hoist-target";

fn is_read_method(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}
