//! `hoist config [DESTINATION]`: load and check deploy.toml (and the destination overlay),
//! check that every secret it names is defined (without running any `$(command)`), and print
//! the merged configuration on stdout as TOML, or JSON with `--json`. Secrets appear by name.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{DestinationArg, GlobalArgs};
use crate::config::{self, Config};
use crate::printer::Printer;
use crate::secrets::Secrets;

pub fn run(global: &GlobalArgs, args: &DestinationArg, printer: &Printer) -> Result<()> {
    let destination =
        config::destination(args.destination.as_deref(), global.destination.as_deref())?;
    let config = config::load(global.config.as_deref(), destination.as_deref())?;
    Secrets::load(&config.root, destination.as_deref())?.check(&config)?;
    if printer.json() {
        let json = serde_json::to_string_pretty(&ConfigJson {
            destination: config.destination.as_deref(),
            files: &config.files,
            config: &config,
        })
        .context("Failed to render the configuration as JSON")?;
        printer.data(format!("{json}\n"));
    } else {
        printer.data(config.to_toml());
    }
    Ok(())
}

/// `--json`: the files read and the destination, then the merged keys.
#[derive(Serialize)]
struct ConfigJson<'a> {
    destination: Option<&'a str>,
    files: &'a [PathBuf],
    #[serde(flatten)]
    config: &'a Config,
}
