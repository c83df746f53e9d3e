//! The `hoist-proxy` binary: parses the command line, dispatches to a command, and turns every
//! failure into kamal-proxy's `Error: <message>` on stderr with exit status 1. Commands live in
//! the library; this file owns only the process edge.

use std::fmt::Display;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use hoist_proxy::cli::{Cli, Command};
use hoist_proxy::paths::{PathEnvironment, ProxyPaths};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return exit_for_parse_error(error),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report_error(format_args!("{error:#}")),
    }
}

/// Runs one command.
fn run(cli: Cli) -> anyhow::Result<()> {
    let paths = ProxyPaths::resolve(
        cli.global.socket.as_deref(),
        cli.global.state_dir.as_deref(),
        &PathEnvironment::from_process(),
    );
    match cli.command {
        Command::Version => {
            println!("{}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Run(args) => {
            if args.http3 {
                return Err(anyhow::anyhow!(
                    "--http3 is not supported: hoist-proxy serves HTTP/1.1 and HTTP/2 (over TLS \
                     and cleartext); remove the flag"
                ));
            }
            hoist_proxy::memory::limit_arenas();
            hoist_proxy::logging::init(args.debug, args.log_queue_limit);
            // One crypto provider for every TLS use (HTTPS, the ACME client).
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            // Control, health checks and metrics; requests are served on threads of their own.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(hoist_proxy::server::run(&args, &paths))
        }
        Command::Listen(args) => {
            hoist_proxy::logging::init(false, 64 * 1024);
            let (http, https) = args.listen.addresses();
            let per_port = args.listeners.map_or_else(
                || std::thread::available_parallelism().map_or(1, |count| count.get()),
                usize::from,
            );
            let listeners = hoist_proxy::listeners::Listeners::bind(
                http,
                https,
                per_port.min(hoist_proxy::listeners::MAX_PER_PORT),
            )?;
            let socket = args.listeners_socket.clone().unwrap_or_else(|| {
                paths
                    .state_dir
                    .join(hoist_proxy::listeners::SOCKET_FILE_NAME)
            });
            hoist_proxy::state::ensure_directory(&paths.state_dir)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(hoist_proxy::listeners::serve_owner(listeners, &socket))
        }
        Command::MergeAssets(args) => {
            let merged =
                hoist_proxy::assets::merge(&args.first, &args.second).map_err(|error| {
                    anyhow::anyhow!(
                        "cannot merge {} and {}: {error}",
                        args.first.display(),
                        args.second.display()
                    )
                })?;
            println!(
                "copied {} entries into {} and {} into {}",
                merged.into_first,
                args.first.display(),
                merged.into_second,
                args.second.display()
            );
            Ok(())
        }
        Command::Probe(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(hoist_proxy::commands::probe(&args)),
        command => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(hoist_proxy::commands::run(command, &paths)),
    }
}

/// Prints `Error: <message>` to stderr and returns exit status 1, as kamal-proxy (cobra) does for
/// every failure, bad flags included. Every error leaves the process through here.
fn report_error(message: impl Display) -> ExitCode {
    eprintln!("Error: {message}");
    ExitCode::FAILURE
}

/// Help and `--version` go to stdout with status 0; a bare `hoist-proxy` or `hoist-proxy rollout`
/// prints help the same way, as cobra does for a command that only groups others. Anything else
/// is a usage error, reported through [`report_error`].
fn exit_for_parse_error(error: clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => error.exit(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            print!("{}", error.render());
            ExitCode::SUCCESS
        }
        _ => {
            let rendered = error.render().to_string();
            let message = rendered.trim_end();
            report_error(message.strip_prefix("error: ").unwrap_or(message))
        }
    }
}
