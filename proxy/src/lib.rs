//! hoist-proxy: the reverse proxy that runs as the `hoist-proxy` container on every server,
//! routing by host and path to app containers and swapping them with zero downtime.
//!
//! Its command line is compatible with kamal-proxy's. The crate, outside in:
//! - [`cli`], [`duration`], [`paths`]: the command line, Go durations, where files live;
//! - [`commands`] and [`control`]: the CLI side and the unix-socket channel to the running proxy;
//! - [`server`]: listeners, timeouts, shutdown; [`connection`]: a connection's cap slot and idle
//!   timeout; [`io`]: the write-stall timeout;
//! - [`handler`]: request ids, routing, the per-request record; [`authority`]: the request's
//!   host; [`routes`]: the routing table;
//! - [`router`]: the services and every change to them; [`state`]: the state file;
//! - [`service`]: what a service does with a request; [`pause`], [`rollout`]: its modes and split;
//! - [`balancer`], [`target`], [`health`]: targets, their choice, drains and health checks;
//! - [`forward`], [`upstream`], [`body`], [`response`], [`cookies`]: the upstream hop and its
//!   connection pool, bodies, responses;
//!   [`budget`]: the proxy-wide budget of buffered bytes; [`forwarded`]: trusted peers and the
//!   X-Forwarded-* headers;
//! - [`error_pages`], [`logging`], [`metrics`]: what users and operators see; [`memory`]: the
//!   allocator's arenas and trimming;
//! - [`tls`]: certificates (custom and ACME) and the HTTPS configuration;
//! - [`options`]: the service settings shared by the CLI, the control channel and the state;
//! - [`assets`]: `merge-assets`, a helper for hoist's asset bridging, not part of serving.

pub mod assets;
pub mod authority;
pub mod balancer;
pub mod body;
pub mod budget;
pub mod cli;
pub mod commands;
pub mod connection;
pub mod control;
pub mod cookies;
pub mod duration;
pub mod error_pages;
pub mod forward;
pub mod forwarded;
pub mod handler;
pub mod handoff;
pub mod health;
pub mod io;
pub mod kamal;
pub mod listeners;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod options;
pub mod paths;
pub mod pause;
pub mod response;
pub mod rollout;
pub mod router;
pub mod routes;
pub mod server;
pub mod service;
pub mod state;
pub mod target;
pub mod tls;
pub mod upstream;
