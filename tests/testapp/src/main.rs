//! hoist-testapp: a tiny std-only HTTP/1.1 server that hoist's end-to-end tests and demo
//! deploy as a `FROM scratch` image (see the Dockerfile beside this crate). This file reads
//! the process settings (`PORT`, `APP_SHUTDOWN_TIMEOUT_MS`), wires signals to the server and
//! owns the exit status; routes live in app.rs.
//!
//! Instead of serving, for `hoist exec` tests: `hoist-testapp env` prints its environment,
//! `exit N [MESSAGE]` prints MESSAGE to stderr and exits with N, `sleep MS` sleeps, and `shell`
//! is an interactive interpreter (see shell.rs).
//!
//! Environment: `PORT` (default 3000), `APP_VERSION` (default `dev`), `APP_BROKEN` (non-empty
//! makes `/up` answer 503), `APP_SHUTDOWN_TIMEOUT_MS` (default 30000: how long SIGTERM waits
//! for in-flight requests before exiting anyway).

mod app;
mod connection;
mod http;
mod log;
mod server;
mod shell;
mod shutdown;
mod signals;

use std::env;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use app::App;
use log::Log;
use server::Server;
use signals::TerminationSignals;

/// Port listened on without `PORT`.
const DEFAULT_PORT: u16 = 3000;
/// How long a graceful shutdown waits for open connections without `APP_SHUTDOWN_TIMEOUT_MS`.
const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 30_000;

fn main() -> ExitCode {
    // One-off commands, for `hoist exec` tests (the image has no shell or coreutils).
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("env") => {
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            for (name, value) in vars {
                println!("{name}={value}");
            }
            return ExitCode::SUCCESS;
        }
        Some("sleep") => {
            // `sleep MS`: a process that runs MS milliseconds, then exits 0.
            let ms = args.next().and_then(|ms| ms.parse().ok()).unwrap_or(1000);
            std::thread::sleep(Duration::from_millis(ms));
            return ExitCode::SUCCESS;
        }
        Some("shell") => return shell::run(),
        Some("exit") => {
            let code = args.next().and_then(|code| code.parse().ok()).unwrap_or(1);
            let message: Vec<String> = args.collect();
            if !message.is_empty() {
                eprintln!("{}", message.join(" "));
            }
            return ExitCode::from(code);
        }
        _ => {}
    }
    let log = Log::Stdio;
    match run(&log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log.warn(&format!("error: {message}"));
            ExitCode::FAILURE
        }
    }
}

fn run(log: &Log) -> Result<(), String> {
    // Before any thread exists, so every thread inherits the blocked mask.
    let signals =
        TerminationSignals::block().map_err(|error| format!("Failed to block signals: {error}"))?;
    let port = env_number("PORT", DEFAULT_PORT)?;
    let drain_timeout = Duration::from_millis(env_number(
        "APP_SHUTDOWN_TIMEOUT_MS",
        DEFAULT_SHUTDOWN_TIMEOUT_MS,
    )?);
    let app = App::from_env();
    let version = app.version.clone();
    let address = SocketAddr::from(([0, 0, 0, 0], port));
    let server = Server::bind(address, app, log.clone())
        .map_err(|error| format!("Failed to listen on `{address}`: {error}"))?;
    signals
        .spawn_handler(server.shutdown(), log.clone())
        .map_err(|error| format!("Failed to start the signal thread: {error}"))?;
    let address = server.local_address().unwrap_or(address);
    log.info(&format!("listening on {address} version {version}"));

    let report = server.run(drain_timeout);
    if report.unfinished == 0 {
        log.info(&format!(
            "shutdown complete after {}ms",
            report.waited.as_millis()
        ));
    } else {
        log.warn(&format!(
            "shutdown timed out after {}ms with {} connection(s) still open; exiting anyway",
            report.waited.as_millis(),
            report.unfinished
        ));
    }
    Ok(())
}

/// Reads a numeric environment variable, `default` when unset or empty.
fn env_number<T: FromStr>(name: &str, default: T) -> Result<T, String> {
    match env::var(name) {
        Ok(value) if !value.is_empty() => value
            .parse()
            .map_err(|_| format!("Invalid `{name}` value `{value}`: expected a whole number")),
        _ => Ok(default),
    }
}
