//! `hoist-proxy run`: restores the saved state, opens the control socket, the HTTP listener
//! (HTTP/1.1, and HTTP/2 with prior knowledge), the HTTPS listener (TLS 1.2/1.3, HTTP/2 or
//! HTTP/1.1 by ALPN) and the optional metrics listener, serves until SIGTERM or SIGINT, then
//! stops accepting and lets requests in flight finish (up to the shutdown timeout). Connections
//! get server-side timeouts: TLS handshake and request headers, idle keep-alive, stalled bodies
//! and stalled writes; each port has a connection cap (see `connection.rs`). Failed handshakes
//! are counted in the metrics, not logged one by one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::{Request, Response, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::BufferBudget;
use crate::cli::RunArgs;
use crate::connection::{Activity, IdleTimeouts, ListenerLimits};
use crate::handler::Handler;
use crate::handoff::{self, Outgoing};
use crate::io::StallTimeout;
use crate::listeners::Listeners;
use crate::metrics::Metrics;
use crate::paths::ProxyPaths;
use crate::router::Router;
use crate::state::{self, Loaded};
use crate::tls::certs::ACME_TLS_ALPN;
use crate::tls::{Tls, TlsDefaults};
use tokio_rustls::TlsAcceptor;

/// How long `run --listeners-from` waits for the owner of the listeners to answer.
const LISTENERS_WAIT: Duration = Duration::from_secs(30);

/// Runs the proxy until a termination signal, or until a successor takes over.
pub async fn run(args: &RunArgs, paths: &ProxyPaths) -> anyhow::Result<()> {
    state::ensure_directory(&paths.state_dir).with_context(|| {
        format!(
            "cannot create state directory {}",
            paths.state_dir.display()
        )
    })?;
    let (http_address, https_address) = args.listen.addresses();
    let workers = match args.workers {
        Some(workers) => usize::from(workers),
        None => std::thread::available_parallelism().map_or(1, |count| count.get()),
    };
    // The listening sockets come first: the owner's (and then a proxy already running here
    // hands over), or bound here (and then one already running is an error).
    let (listeners, mut control, predecessor) = match &args.listeners_from {
        Some(owner) => {
            let listeners = Listeners::fetch(owner, LISTENERS_WAIT)?;
            let predecessor = handoff::take_over(&paths.socket).await?;
            let control = match predecessor {
                Some(_) => None,
                None => Some(crate::control::bind(&paths.socket).await?),
            };
            (listeners, control, predecessor)
        }
        None => {
            let control = crate::control::bind(&paths.socket).await?;
            let listeners = Listeners::bind(http_address, https_address, workers)?;
            (listeners, Some(control), None)
        }
    };
    if predecessor.is_some() {
        tracing::info!("Taking over from the proxy running on this state directory");
    }

    let metrics = Arc::new(Metrics::default());
    let buffers = Arc::new(BufferBudget::new(
        args.buffer_dir
            .clone()
            .unwrap_or_else(|| paths.state_dir.join(crate::paths::BUFFER_DIR_NAME)),
        args.buffer_memory_limit,
        args.buffer_disk_limit,
        Some(Arc::clone(&metrics)),
    ));
    // Left-over spill files are removed, unless the proxy handing over is still using them.
    let removed = if predecessor.is_some() {
        buffers.create().map(|()| 0)
    } else {
        buffers.prepare()
    }
    .with_context(|| {
        format!(
            "cannot prepare the buffer directory {}",
            buffers.directory().display()
        )
    })?;
    if removed > 0 {
        tracing::info!(removed, directory = %buffers.directory().display(), "Removed buffer files left by an earlier run");
    }
    let tls = Tls::new(
        TlsDefaults {
            directory: args.tls_acme_directory.clone(),
            ca_root: args.tls_acme_ca_root.clone(),
            eab_kid: args.tls_acme_eab_kid.clone(),
            challenge: args.tls_acme_challenge,
            cache: args
                .tls_acme_cache_path
                .clone()
                .unwrap_or_else(|| paths.state_dir.join("certs")),
        },
        Arc::clone(&metrics),
    );
    if let (Some(kid), Some(key)) = (&args.tls_acme_eab_kid, &args.tls_acme_eab_hmac_key) {
        tls.acme.add_eab_key(kid, key).map_err(anyhow::Error::msg)?;
    }
    let tls_config = tls.server_config()?;
    let router = Arc::new(Router::new(paths.state_file()).with_tls(Arc::clone(&tls)));
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

    let max_connections = connection_cap(args.max_connections);
    let bind = listeners
        .http
        .first()
        .and_then(|listener| listener.local_addr().ok())
        .map_or(http_address.ip(), |address| address.ip());
    let http_port = Listeners::port(&listeners.http, args.listen.http_port);
    let https_port = Listeners::port(&listeners.https, args.listen.https_port);
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

    let handler = |port: u16, scheme: &'static str| {
        Arc::new(Handler {
            router: Arc::clone(&router),
            metrics: Arc::clone(&metrics),
            client_timeout: args.client_timeout,
            request_body_timeout: args.request_body_timeout,
            buffers: Arc::clone(&buffers),
            port,
            scheme,
            tls: Some(Arc::clone(&tls)),
            https_port,
        })
    };
    let http_limits = ListenerLimits::new("http", max_connections, Arc::clone(&metrics));
    let https_limits = ListenerLimits::new("https", max_connections, Arc::clone(&metrics));
    let http = handler(http_port, "http");
    let https = handler(https_port, "https");
    let acceptor = TlsAcceptor::from(tls_config);
    let settings = ConnectionSettings {
        read_header_timeout: args.read_header_timeout,
        client_timeout: args.client_timeout,
        shutdown_timeout: args.shutdown_timeout,
        idle: IdleTimeouts {
            http1: args.read_header_timeout,
            http2: args.http2_idle_timeout,
        },
        http2_max_concurrent_streams: args.http2_max_concurrent_streams,
    };
    // Each serving thread takes its share of the sockets; every socket is served by one.
    let mut shares: Vec<Vec<Listener>> = (0..workers).map(|_| Vec::new()).collect();
    let Listeners {
        http: http_sockets,
        https: https_sockets,
        owner,
    } = listeners;
    for (index, socket) in http_sockets.into_iter().enumerate() {
        shares[index % workers].push(Listener {
            socket,
            handler: Arc::clone(&http),
            tls: None,
            limits: Arc::clone(&http_limits),
        });
    }
    for (index, socket) in https_sockets.into_iter().enumerate() {
        shares[index % workers].push(Listener {
            socket,
            handler: Arc::clone(&https),
            tls: Some(acceptor.clone()),
            limits: Arc::clone(&https_limits),
        });
    }
    let mut serving = Vec::new();
    for (index, listeners) in shares.into_iter().enumerate() {
        if listeners.is_empty() {
            continue;
        }
        let shutdown = shutdown.clone();
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("hoist-proxy-http-{index}"))
            .spawn(move || {
                serve_thread(listeners, settings, shutdown);
                let _ = done.send(());
            })
            .context("cannot start a serving thread")?;
        serving.push(finished);
    }
    let trimmer = tokio::spawn(async {
        let mut ticks = tokio::time::interval(crate::memory::TRIM_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            crate::memory::trim();
        }
    });
    // Serving: now the proxy handing over (if any) can let go, and the control socket is ours.
    if let Some(predecessor) = predecessor {
        // An old proxy that went away meanwhile has let go too; one still answering makes the
        // bind below fail.
        if let Err(error) = predecessor.release().await {
            tracing::warn!(
                error = format!("{error:#}"),
                "The old proxy did not confirm letting go"
            );
        }
        control = Some(crate::control::bind(&paths.socket).await?);
    }
    let Some(control) = control else {
        anyhow::bail!("no control socket");
    };
    let outgoing = Outgoing::new();
    let control_task = tokio::spawn(crate::control::serve(
        control,
        Arc::clone(&router),
        shutdown.clone(),
        Arc::clone(&outgoing),
    ));
    // Without the owner its sockets are gone from the network: shut down and be restarted.
    let owner_gone = CancellationToken::new();
    if let Some(owner) = owner {
        let owner_gone = owner_gone.clone();
        tokio::spawn(async move {
            watch_owner(owner).await;
            owner_gone.cancel();
        });
    }
    tracing::info!(
        http_port,
        https_port,
        metrics_port = args.metrics_port,
        bind = %bind,
        workers,
        max_connections,
        socket = %paths.socket.display(),
        state_dir = %paths.state_dir.display(),
        "Server started"
    );

    let handed_over = tokio::select! {
        signal = termination() => {
            tracing::info!(signal, "Shutting down");
            false
        }
        () = outgoing.released.cancelled() => {
            // Idle keep-alive connections close once a request on them is answered, or once
            // idle a while, so no client has a request cut by the close.
            crate::connection::drain_patiently();
            true
        }
        () = owner_gone.cancelled() => {
            tracing::error!("The owner of the listeners went away; shutting down");
            false
        }
    };
    shutdown.cancel();
    if !handed_over {
        let _ = std::fs::remove_file(&paths.socket);
    }
    for finished in serving {
        let _ = finished.await;
    }
    control_task.abort();
    trimmer.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    tracing::info!("Server stopped");
    crate::logging::flush();
    if owner_gone.is_cancelled() {
        anyhow::bail!("the owner of the listeners went away");
    }
    Ok(())
}

/// Resolves when the owner of the listeners closes the connection they came on.
async fn watch_owner(owner: std::os::unix::net::UnixStream) {
    let Ok(mut owner) = owner
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(owner))
    else {
        return;
    };
    let mut sink = [0u8; 64];
    while let Ok(read) = tokio::io::AsyncReadExt::read(&mut owner, &mut sink).await {
        if read == 0 {
            return;
        }
    }
}

/// A listening socket and how its connections are served.
struct Listener {
    socket: std::net::TcpListener,
    handler: Arc<Handler>,
    /// TLS handshake first (HTTPS), or none (HTTP).
    tls: Option<TlsAcceptor>,
    /// The port's connection cap, shared with the other serving threads.
    limits: Arc<ListenerLimits>,
}

/// One serving thread: a single-threaded runtime that accepts, serves and forwards its own
/// connections on its HTTP and HTTPS listeners (nothing crosses threads on the request path),
/// until shutdown; then it lets its requests in flight finish, up to the shutdown timeout.
fn serve_thread(
    listeners: Vec<Listener>,
    settings: ConnectionSettings,
    shutdown: CancellationToken,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Name resolution of targets is the only blocking work here: a few threads suffice,
        // and each thread costs an allocator arena.
        .max_blocking_threads(4)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "Cannot start a serving runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let connections = TaskTracker::new();
        let mut loops = Vec::new();
        for listener in listeners {
            match TcpListener::from_std(listener.socket) {
                Ok(socket) => loops.push(accept_loop(
                    socket,
                    listener.handler,
                    listener.tls,
                    listener.limits,
                    settings,
                    &connections,
                    shutdown.clone(),
                )),
                Err(error) => {
                    tracing::error!(%error, "Cannot use a listener");
                    return;
                }
            }
        }
        futures_util::future::join_all(loops).await;
        connections.close();
        let deadline = tokio::time::Instant::now() + settings.shutdown_timeout;
        let drained = async {
            connections.wait().await;
            crate::connection::tunnels_closed(deadline).await;
        };
        if tokio::time::timeout_at(deadline, drained).await.is_err() {
            tracing::info!(
                timeout = %crate::duration::format_duration(settings.shutdown_timeout),
                "Shutdown timeout reached with requests still in flight"
            );
        }
    });
}

/// Largest request head (request line and headers) hyper buffers for HTTP/1.1, and the largest
/// read it makes from a connection: 16 KiB, Node.js's limit (nginx allows up to 4 x 8 KiB).
/// Bigger heads get 431. Small reads also keep what a slow client pins per connection small.
const HTTP1_MAX_BUFFER: usize = 16 * 1024;

/// Largest header block of an HTTP/2 request.
const HTTP2_MAX_HEADER_LIST: u32 = 32 * 1024;

#[derive(Debug, Clone, Copy)]
struct ConnectionSettings {
    read_header_timeout: Duration,
    client_timeout: Duration,
    shutdown_timeout: Duration,
    idle: IdleTimeouts,
    http2_max_concurrent_streams: u32,
}

fn connection_builder(settings: ConnectionSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .max_buf_size(HTTP1_MAX_BUFFER)
        // hyper starts this timer whenever it waits for a request's head, so it also bounds how
        // long a keep-alive connection may sit idle.
        .header_read_timeout(settings.read_header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.http2_max_concurrent_streams)
        .max_header_list_size(HTTP2_MAX_HEADER_LIST)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// `--max-connections`, lowered if this process may not open that many files: each connection
/// can need two descriptors (client and upstream) on each of the two ports.
fn connection_cap(asked: u32) -> usize {
    let asked = asked as usize;
    let files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        Err(error) => {
            tracing::warn!(%error, "Cannot raise the open-files limit");
            return asked;
        }
    };
    let fits = files.saturating_sub(256) / 4;
    if fits < asked {
        tracing::warn!(
            max_connections = asked,
            open_files_limit = files,
            lowered_to = fits.max(1),
            "The open-files limit is too low for --max-connections; raise it (ulimit -n, or \
             --ulimit nofile=... for the container)"
        );
        return fits.max(1);
    }
    asked
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: TcpListener,
    handler: Arc<Handler>,
    tls: Option<TlsAcceptor>,
    limits: Arc<ListenerLimits>,
    settings: ConnectionSettings,
    connections: &TaskTracker,
    shutdown: CancellationToken,
) {
    let builder = Arc::new(connection_builder(settings));
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let Some(slot) = crate::connection::unless_shutdown(limits.slot(), &shutdown).await else {
            return;
        };
        let accepted = crate::connection::unless_shutdown(listener.accept(), &shutdown).await;
        let (stream, peer) = match accepted {
            None => return,
            Some(Ok(accepted)) => accepted,
            Some(Err(error)) => {
                // Out of file descriptors and the like: back off instead of spinning, and say so
                // once a second at most.
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(%error, "Accept failed");
                    last_warning = Some(tokio::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let service = {
            let handler = Arc::clone(&handler);
            let activity = Arc::clone(&activity);
            service_fn(move |request: Request<Incoming>| {
                let handler = Arc::clone(&handler);
                let guard = activity.start(request.version());
                async move {
                    let mut response = handler.handle(request, peer).await;
                    response.body_mut().hold_connection(guard);
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let shutdown = shutdown.clone();
        let mut slot = slot;
        let Some(acceptor) = &tls else {
            let builder = Arc::clone(&builder);
            connections.spawn(async move {
                let idle = settings.idle;
                if !crate::connection::first_byte(&stream, &activity, &mut slot, idle, &shutdown)
                    .await
                {
                    return;
                }
                let stream = StallTimeout::new(stream, settings.client_timeout);
                let connection =
                    Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
                let driven =
                    crate::connection::drive(connection, activity, slot, settings.idle, shutdown);
                if let Err(error) = driven.await {
                    tracing::debug!(%error, %peer, "Connection ended with an error");
                }
            });
            continue;
        };
        let acceptor = acceptor.clone();
        let builder = Arc::clone(&builder);
        let metrics = Arc::clone(&handler.metrics);
        connections.spawn(async move {
            let idle = settings.idle;
            if !crate::connection::first_byte(&stream, &activity, &mut slot, idle, &shutdown).await
            {
                return;
            }
            let stream = StallTimeout::new(stream, settings.client_timeout);
            // Boxed, like the connection below: the task of a connection that never sends
            // anything stays small.
            let handshake = tokio::time::timeout(
                settings.read_header_timeout,
                Box::pin(acceptor.accept(stream)),
            );
            let mut stream =
                match crate::connection::unless_shutdown_now(handshake, &shutdown).await {
                    None => return,
                    Some(Ok(Ok(stream))) => stream,
                    Some(Ok(Err(error))) => {
                        metrics.tls_handshake_error(handshake_failure(&error));
                        tracing::debug!(%error, %peer, "TLS handshake failed");
                        return;
                    }
                    Some(Err(_)) => {
                        metrics.tls_handshake_error("timeout");
                        return;
                    }
                };
            if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                // A TLS-ALPN-01 validation: the handshake was the answer.
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
                return;
            }
            let connection =
                Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
            let driven =
                crate::connection::drive(connection, activity, slot, settings.idle, shutdown);
            if let Err(error) = driven.await {
                tracing::debug!(%error, %peer, "Connection ended with an error");
            }
        });
    }
}

/// The metrics label of a failed handshake.
fn handshake_failure(error: &std::io::Error) -> &'static str {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::General(message)) if message.contains("certificate") => {
            "no_certificate"
        }
        Some(_) => "protocol",
        None => "io",
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
pub async fn termination() -> &'static str {
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
