//! `hoist-proxy run`: restores the saved state, opens the control socket, the HTTP listener
//! (HTTP/1.1, and HTTP/2 with prior knowledge) and the optional metrics listener, serves until
//! SIGTERM or SIGINT, then stops accepting and lets requests in flight finish (up to the shutdown
//! timeout). Connections get server-side timeouts: request headers, idle keep-alive, stalled
//! bodies and stalled writes.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::{Request, Response, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::handler::Handler;
use crate::io::StallTimeout;
use crate::metrics::Metrics;
use crate::paths::ProxyPaths;
use crate::router::Router;
use crate::state::{self, Loaded};

/// Runs the proxy until a termination signal.
pub async fn run(args: &RunArgs, paths: &ProxyPaths) -> anyhow::Result<()> {
    state::ensure_directory(&paths.state_dir).with_context(|| {
        format!(
            "cannot create state directory {}",
            paths.state_dir.display()
        )
    })?;
    let control = crate::control::bind(&paths.socket).await?;

    let router = Arc::new(Router::new(paths.state_file()));
    match state::load(&paths.state_file())? {
        Loaded::Fresh => tracing::info!("No previous state to restore"),
        Loaded::State(saved) => {
            let count = saved.services.len();
            router.restore(saved);
            tracing::info!(services = count, "Restored saved state");
        }
        Loaded::Corrupt { error, kept_at } => tracing::error!(
            %error,
            kept_at = %kept_at.display(),
            "Saved state is unreadable; starting empty, the file was kept aside for inspection"
        ),
    }

    let bind = args.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let http_address = SocketAddr::new(bind, args.http_port);
    let http = TcpListener::bind(http_address)
        .await
        .with_context(|| format!("cannot listen for HTTP on {http_address}"))?;
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();

    let metrics_task = if args.metrics_port > 0 {
        let address = SocketAddr::new(bind, args.metrics_port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on {address}"))?;
        Some(tokio::spawn(serve_metrics(
            listener,
            Arc::clone(&metrics),
            shutdown.clone(),
        )))
    } else {
        None
    };

    let handler = Arc::new(Handler {
        router: Arc::clone(&router),
        metrics,
        client_timeout: args.client_timeout,
        port: http
            .local_addr()
            .map(|address| address.port())
            .unwrap_or(args.http_port),
        scheme: "http",
    });
    let control_task = tokio::spawn(crate::control::serve(
        control,
        Arc::clone(&router),
        shutdown.clone(),
    ));
    tracing::info!(
        http_port = handler.port,
        metrics_port = args.metrics_port,
        bind = %bind,
        socket = %paths.socket.display(),
        state_dir = %paths.state_dir.display(),
        "Server started"
    );

    let graceful = GracefulShutdown::new();
    let settings = ConnectionSettings {
        read_header_timeout: args.read_header_timeout,
        client_timeout: args.client_timeout,
    };
    tokio::select! {
        () = accept_loop(http, handler, settings, &graceful) => {}
        signal = termination() => tracing::info!(signal, "Shutting down"),
    }
    shutdown.cancel();
    let _ = std::fs::remove_file(&paths.socket);
    if tokio::time::timeout(args.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!(
            timeout = %crate::duration::format_duration(args.shutdown_timeout),
            "Shutdown timeout reached with requests still in flight"
        );
    }
    control_task.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    tracing::info!("Server stopped");
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct ConnectionSettings {
    read_header_timeout: Duration,
    client_timeout: Duration,
}

fn connection_builder(settings: ConnectionSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // hyper starts this timer whenever it waits for a request's head, so it also bounds how
        // long a keep-alive connection may sit idle.
        .header_read_timeout(settings.read_header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

async fn accept_loop(
    listener: TcpListener,
    handler: Arc<Handler>,
    settings: ConnectionSettings,
    graceful: &GracefulShutdown,
) {
    let builder = Arc::new(connection_builder(settings));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "Accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        let service = service_fn(move |request: Request<Incoming>| {
            let handler = Arc::clone(&handler);
            async move { Ok::<_, Infallible>(handler.handle(request, peer).await) }
        });
        let io = TokioIo::new(StallTimeout::new(stream, settings.client_timeout));
        let connection = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "Connection ended with an error");
            }
        });
    }
}

/// Serves the Prometheus text format on any path of the metrics port.
async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<Incoming>| {
                let text = metrics.encode();
                async move {
                    let mut response =
                        Response::new(http_body_util::Full::new(bytes::Bytes::from(text)));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        http::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Waits for SIGTERM or SIGINT and names it.
async fn termination() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return "none";
    };
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}
