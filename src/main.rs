//! `hoist`: the command-line entry point. Parses arguments, sets up logging and output, runs the
//! chosen command and turns its outcome into an exit status and an `error:`/`Caused by:`/`hint:`
//! report. Everything else lives in the modules below.

mod audit;
mod build;
mod cli;
mod commands;
mod config;
mod deploy;
mod docker;
mod hooks;
mod lock;
mod naming;
mod printer;
mod registry;
mod remote;
mod report;
mod reporter;
mod sandbox;
mod secrets;
mod setup;
mod ssh;
mod version;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::printer::Printer;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let printer = Printer::new(cli.global.quiet, cli.global.verbose, cli.global.json);
    init_tracing(cli.global.verbose);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report::print_error(
                &anyhow::Error::new(err).context("Failed to start the async runtime"),
            );
            return report::ExitStatus::Error.into();
        }
    };
    match runtime.block_on(commands::run(cli, &printer)) {
        Ok(()) => report::ExitStatus::Success.into(),
        Err(err) => {
            report::print_error(&err);
            report::exit_status_for(&err).into()
        }
    }
}

/// Logs are for `-v` and `RUST_LOG`; user-facing output goes through the [`Printer`].
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "hoist=debug,warn",
        // Dependencies stay at info: bollard's debug logs print request bodies.
        _ => "hoist=trace,info",
    };
    let mut filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Whatever RUST_LOG says: these crates log request bodies and channel data at debug, where
    // container environments (secrets) and registry credentials travel.
    for directive in [
        "bollard=info",
        "hyper=info",
        "hyper_util=info",
        "russh=info",
    ] {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
