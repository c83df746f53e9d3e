//! `hoist config [DESTINATION]`: load and check deploy.toml (and the destination overlay),
//! check that every secret it names is defined (without running any `$(command)`), and print
//! the merged configuration on stdout as TOML, or JSON with `--json`. Secrets appear by name.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::Config;
use crate::printer::Printer;
use crate::secrets::Secrets;

pub fn run(config: &Config, printer: &Printer) -> Result<()> {
    Secrets::for_config(config)?.check(config)?;
    if printer.json() {
        let json = serde_json::to_string_pretty(&ConfigJson {
            destination: config.destination.as_deref(),
            files: &config.files,
            config,
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
