//! Dispatch from parsed arguments to commands. One file per command family; commands take the
//! parsed arguments and the [`Printer`] and return errors for `main` to report.

mod config;
mod init;
mod sandbox;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::printer::Printer;
use crate::report::hinted;

pub async fn run(cli: Cli, printer: &Printer) -> Result<()> {
    match cli.command {
        Command::Sandbox(command) => sandbox::run(command, printer).await,
        Command::Config(args) => config::run(&cli.global, &args, printer),
        Command::Init => init::run(&cli.global, printer),
        other => Err(not_yet(&other)),
    }
}

/// Commands declared in the CLI whose implementation has not landed yet.
fn not_yet(command: &Command) -> anyhow::Error {
    let name = format!("{command:?}");
    let name = name
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("this")
        .to_lowercase();
    hinted(
        format!("`hoist {name}` is not implemented yet"),
        "`hoist init`, `hoist config` and `hoist sandbox up|down|list` work today; see README.md for what is available",
    )
}
