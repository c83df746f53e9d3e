//! hoist-proxy: the reverse proxy that runs as the `hoist-proxy` container on every server,
//! routing by host and path to app containers and swapping them with zero downtime.
//!
//! Its command line is compatible with kamal-proxy's. This crate holds:
//! - [`cli`]: every command and flag, parsed with clap;
//! - [`duration`]: Go-style durations (`30s`, `1m30s`) as kamal-proxy's flags take them;
//! - [`paths`]: where the state directory and the control socket are.
//!
//! The server itself (router, services, targets, health checks, TLS) comes in later modules.

pub mod cli;
pub mod duration;
pub mod paths;
