//! Connections to targets, HTTP/1.1 keep-alive, pooled per serving thread: each thread's runtime
//! drives its own connections, so the pool is neither shared nor locked, and a request never
//! wakes another thread. Connections are keyed by the target's `host:port`, so they survive a
//! redeploy that keeps a target. A request takes the most recently returned idle connection
//! that is still open, else opens one (5 s connect timeout, TCP_NODELAY, keep-alive probes); the
//! connection goes back once the response body has ended, and is closed if the body is dropped
//! before that. A request that a pooled connection could not send (the target closed it
//! meanwhile) goes on another one: it was never sent. At most 100 idle connections per target;
//! idle ones are closed after 90 s.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time before TCP keep-alive probes start on a target connection.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// How long an idle connection is kept (as kamal-proxy).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per target (as kamal-proxy).
const MAX_IDLE_PER_TARGET: usize = 100;
/// How often the pool drops closed and expired connections of every target.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How a request to a target failed before any response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made: refused, unreachable, timed out, a name that does not
    /// resolve.
    #[error("{0}")]
    Connect(String),
    /// The connection broke, or the target's answer was not HTTP.
    #[error(transparent)]
    Request(#[from] hyper::Error),
}

impl UpstreamError {
    /// Whether connecting failed (the target never saw the request).
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect(_))
    }

    /// The innermost cause, for messages and logs.
    pub fn detail(&self) -> String {
        match self {
            UpstreamError::Connect(detail) => detail.clone(),
            UpstreamError::Request(error) => crate::forward::innermost_cause(error),
        }
    }
}

/// Send `request` (origin-form URI, Host set) to the target at `authority`.
pub async fn send(
    authority: &Authority,
    request: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let mut request = request;
    loop {
        let (mut sender, pooled) = match POOL.with(|pool| pool.take(authority)) {
            Some(sender) => (sender, true),
            None => (connect(authority).await?, false),
        };
        if pooled && sender.ready().await.is_err() {
            // Closed since it went idle: try the next one.
            continue;
        }
        match sender.try_send_request(request).await {
            // An upgraded connection is the tunnel's now, never pooled.
            Ok(response) if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                return Ok(response.map(|body| UpstreamBody {
                    body,
                    connection: None,
                }));
            }
            Ok(response) => {
                let authority = authority.clone();
                return Ok(response.map(|body| UpstreamBody::new(body, sender, authority)));
            }
            Err(mut error) => match error.take_message() {
                Some(unsent) if pooled => request = unsent,
                _ => return Err(UpstreamError::Request(error.into_error())),
            },
        }
    }
}

/// A new connection to `authority`, its task spawned on this thread's runtime.
async fn connect(authority: &Authority) -> Result<SendRequest<RequestBody>, UpstreamError> {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(UpstreamError::Connect(error.to_string())),
        Err(_) => {
            return Err(UpstreamError::Connect(format!(
                "connection to {authority} timed out after {}s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    // Best effort: without them the connection still works.
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream)
        .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE));
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "Target connection closed with an error");
        }
    });
    Ok(sender)
}

thread_local! {
    /// This serving thread's idle connections.
    static POOL: Pool = Pool::default();
}

struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    idle: RefCell<HashMap<Authority, Vec<Idle>>>,
    swept: Cell<Option<Instant>>,
}

impl Pool {
    /// The most recently returned idle connection to `authority` still open and not expired.
    fn take(&self, authority: &Authority) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(authority)?;
        while let Some(entry) = list.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Keep `sender` for the next request to `authority` (the oldest goes when full).
    fn put(&self, authority: Authority, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        if self
            .swept
            .get()
            .is_none_or(|swept| now.duration_since(swept) >= SWEEP_EVERY)
        {
            self.swept.set(Some(now));
            idle.retain(|_, list| {
                list.retain(|entry| {
                    !entry.sender.is_closed() && now.duration_since(entry.since) < IDLE_TIMEOUT
                });
                !list.is_empty()
            });
        }
        let list = idle.entry(authority).or_default();
        if list.len() >= MAX_IDLE_PER_TARGET {
            list.remove(0);
        }
        list.push(Idle { sender, since: now });
    }
}

/// A target's response body; its connection goes back to the pool when it ends.
#[derive(Debug)]
pub struct UpstreamBody {
    body: Incoming,
    connection: Option<(SendRequest<RequestBody>, Authority)>,
}

impl UpstreamBody {
    fn new(body: Incoming, sender: SendRequest<RequestBody>, authority: Authority) -> Self {
        let mut this = UpstreamBody {
            body,
            connection: Some((sender, authority)),
        };
        if this.body.is_end_stream() {
            this.release();
        }
        this
    }

    fn release(&mut self) {
        if let Some((sender, authority)) = self.connection.take() {
            POOL.with(|pool| pool.put(authority, sender));
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(context);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            // A broken body: the connection is not reused.
            Poll::Ready(Some(Err(_))) => this.connection = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
