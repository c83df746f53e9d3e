//! `hoist`: the command-line entry point. Parses arguments, sets up logging and output, runs the
//! chosen command and turns its outcome into an exit status and an `error:`/`Caused by:`/`hint:`
//! report. Everything else lives in the modules below.

mod audit;
mod build;
mod cli;
mod commands;
mod config;
mod container;
mod deploy;
mod docker;
mod fleet;
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
mod terminal;
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
    use tracing_subscriber::util::SubscriberInitExt;
    let default = match verbose {
        0 => "warn",
        1 => "hoist=debug,warn",
        _ => "hoist=trace,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = log_subscriber(filter, std::io::stderr).try_init();
}

/// Crates that log request bodies, frames or channel data below INFO, where container
/// environments (secrets), the exec environment (an ACME EAB key) and registry credentials
/// travel: nothing more verbose than INFO reaches the log from them or their modules, whatever
/// `RUST_LOG` says.
const CAPPED_TARGETS: [&str; 5] = ["bollard", "hyper", "hyper_util", "h2", "russh"];

/// Whether an event from `target` at `level` may be logged at all: only INFO and above from
/// [`CAPPED_TARGETS`] and their modules (`bollard::docker`), anything from elsewhere.
fn within_log_cap(target: &str, level: &tracing::Level) -> bool {
    let capped = CAPPED_TARGETS.iter().any(|crate_name| {
        target
            .strip_prefix(crate_name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    });
    !capped || *level <= tracing::Level::INFO
}

/// The subscriber writing log lines to `writer`: an event must pass both `filter` (`RUST_LOG`
/// or the `-v` default) and the cap of [`within_log_cap`], a separate filter that no directive,
/// however specific, can loosen.
fn log_subscriber<W>(
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    let cap = filter_fn(|metadata| within_log_cap(metadata.target(), metadata.level()));
    tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_target(false)
            .with_filter(filter.and(cap)),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::Level;

    use super::*;

    #[test]
    fn capped_crates_and_their_modules_log_nothing_more_verbose_than_info() {
        for target in [
            "bollard",
            "bollard::docker",
            "hyper",
            "hyper::proto::h1::io",
            "hyper_util::client::legacy::pool",
            "h2",
            "h2::codec::framed_write",
            "russh",
            "russh::client",
        ] {
            for level in [Level::DEBUG, Level::TRACE] {
                assert!(!within_log_cap(target, &level), "{target} at {level}");
            }
            for level in [Level::INFO, Level::WARN, Level::ERROR] {
                assert!(within_log_cap(target, &level), "{target} at {level}");
            }
        }
    }

    #[test]
    fn other_targets_are_not_capped_even_with_a_capped_prefix() {
        for target in [
            "hoist",
            "hoist::deploy",
            "bollardx",
            "hyperion",
            "h2o",
            "russhx",
            "log",
        ] {
            assert!(within_log_cap(target, &Level::TRACE), "{target}");
        }
    }

    /// What the subscriber writes, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_rust_log_directive_loosens_the_cap() {
        let captured = Captured::default();
        let writer = captured.clone();
        let filter = tracing_subscriber::EnvFilter::new("trace,bollard::docker=trace,h2=trace");
        let subscriber = log_subscriber(filter, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "bollard::docker", body = "canary-5ecret-XYZ", "request");
            tracing::trace!(target: "h2::codec", "frame canary-5ecret-XYZ");
            tracing::info!(target: "bollard::docker", "an info line passes");
            tracing::trace!(target: "hoist::deploy", "a hoist trace line passes");
        });
        let bytes = captured
            .0
            .lock()
            .map(|bytes| bytes.clone())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("canary-5ecret-XYZ"), "{text}");
        assert!(text.contains("an info line passes"), "{text}");
        assert!(text.contains("a hoist trace line passes"), "{text}");
    }
}
