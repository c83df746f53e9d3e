//! `hoist-proxy run`'s flags: listeners, server-side timeouts, the bounds on what clients can
//! hold, ACME defaults, logging. What they do lives in `server.rs` and the modules it starts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

use super::parse_go_bool;
use crate::duration::parse_duration;

/// The HTTP and HTTPS ports and the address they listen on: `run` binds them (unless it takes
/// them from `listen`), `listen` holds them for every `run --listeners-from`.
#[derive(Debug, Args)]
pub struct ListenerArgs {
    /// Port to listen on for HTTP
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 80,
        env = "HOIST_PROXY_HTTP_PORT"
    )]
    pub http_port: u16,

    /// Port to listen on for HTTPS
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 443,
        env = "HOIST_PROXY_HTTPS_PORT"
    )]
    pub https_port: u16,

    /// Address to listen on [default: all interfaces]
    #[arg(long, value_name = "ADDR", env = "HOIST_PROXY_BIND")]
    pub bind: Option<IpAddr>,
}

impl ListenerArgs {
    /// The HTTP and HTTPS addresses.
    pub fn addresses(&self) -> (SocketAddr, SocketAddr) {
        let ip = self.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        (
            SocketAddr::new(ip, self.http_port),
            SocketAddr::new(ip, self.https_port),
        )
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub listen: ListenerArgs,

    /// Port to serve Prometheus metrics on; 0 turns metrics off
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 0,
        env = "HOIST_PROXY_METRICS_PORT"
    )]
    pub metrics_port: u16,

    /// Take the HTTP and HTTPS listening sockets from the `hoist-proxy listen` on this unix
    /// socket instead of binding them (the ports and --bind are then the owner's); a proxy
    /// already running on the same state directory hands over to this one without refusing a
    /// connection, and exits once its requests are done
    #[arg(long, value_name = "PATH")]
    pub listeners_from: Option<PathBuf>,

    /// How long a client has to send a request's headers; also the longest a keep-alive
    /// connection may sit idle between requests
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub read_header_timeout: Duration,

    /// Longest pause allowed while a client sends a request body, or reads a response, before the
    /// connection is closed; slow clients cannot pin a target forever
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub client_timeout: Duration,

    /// Threads serving requests, each with its own listener [default: one per CPU]
    #[arg(long, value_name = "N", env = "HOIST_PROXY_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// How long in-flight requests get to finish on SIGTERM before the proxy exits
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Open client connections allowed on each port (HTTP, HTTPS); at the cap the proxy closes
    /// connections that have no request in flight and waits for a free slot before accepting
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// How long an HTTP/2 connection may stay open with no request in flight
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub http2_idle_timeout: Duration,

    /// Streams a client may have open at once on one HTTP/2 connection
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_concurrent_streams: u32,

    /// Directory for request and response bodies that spill out of memory while buffered;
    /// emptied on start [default: buffers in the state directory]
    #[arg(long, value_name = "DIR")]
    pub buffer_dir: Option<PathBuf>,

    /// Bytes of buffered bodies kept in memory across all requests; beyond it bodies spill to
    /// --buffer-dir at once
    #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024 * 1024)]
    pub buffer_memory_limit: u64,

    /// Bytes of buffered bodies on disk across all requests; beyond it request bodies are
    /// refused with 503 and responses are streamed unbuffered
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub buffer_disk_limit: u64,

    /// Longest a client may take to send a whole buffered request body (408 after it)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub request_body_timeout: Duration,

    /// Bytes of log lines waiting for stdout; when stdout blocks, lines beyond it are dropped
    /// (and counted in hoist_proxy_log_lines_dropped_total)
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024)]
    pub log_queue_limit: usize,

    /// Not supported: hoist-proxy serves HTTP/1.1 and HTTP/2; giving --http3 is an error
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool
    )]
    pub http3: bool,

    /// ACME directory for services that name none [default: Let's Encrypt production]
    #[arg(long, value_name = "URL", env = "HOIST_PROXY_TLS_ACME_DIRECTORY")]
    pub tls_acme_directory: Option<String>,

    /// CA certificate (PEM) to trust for the ACME directory, for a private ACME server
    #[arg(long, value_name = "PATH", env = "HOIST_PROXY_TLS_ACME_CA_ROOT")]
    pub tls_acme_ca_root: Option<PathBuf>,

    /// External account binding key id for services that name none
    #[arg(long, value_name = "KID", env = "HOIST_PROXY_TLS_ACME_EAB_KID")]
    pub tls_acme_eab_kid: Option<String>,

    /// External account binding HMAC key (base64url) for that key id
    #[arg(
        long,
        value_name = "KEY",
        env = "HOIST_PROXY_TLS_ACME_EAB_HMAC_KEY",
        hide_env_values = true,
        requires = "tls_acme_eab_kid"
    )]
    pub tls_acme_eab_hmac_key: Option<String>,

    /// ACME challenge for services that name none: http-01 or tls-alpn-01 [default: http-01]
    #[arg(long, value_name = "TYPE", env = "HOIST_PROXY_TLS_ACME_CHALLENGE")]
    pub tls_acme_challenge: Option<crate::options::ChallengeKind>,

    /// Where ACME accounts and certificates are kept [default: certs in the state directory]
    #[arg(long, value_name = "DIR")]
    pub tls_acme_cache_path: Option<PathBuf>,

    /// Include debug logs
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool,
        env = "HOIST_PROXY_DEBUG"
    )]
    pub debug: bool,
}
