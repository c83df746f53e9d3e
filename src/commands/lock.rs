//! `hoist lock status|release`: the deploy lock on the primary host.

use anyhow::{Context, Result};

use crate::cli::LockCommand;
use crate::config::Config;
use crate::fleet::primary_host;
use crate::lock;
use crate::naming;
use crate::printer::Printer;
use crate::remote::Connector;
use crate::reporter::Reporter;

pub async fn run(command: &LockCommand, config: &Config, printer: &Printer) -> Result<()> {
    let primary = primary_host(config).context("The configuration has no app hosts")?;
    let scope = naming::scope(&config.service, config.destination.as_deref());
    let connector = Connector::from_config(config)?;
    let reporter = Reporter::new(*printer);
    let (servers, unreachable) = connector
        .connect_all(std::slice::from_ref(&primary), &reporter)
        .await?;
    if let Some(failure) = unreachable.into_iter().next() {
        return Err(failure.error);
    }
    let session = &servers[0].session;
    let result = match command {
        LockCommand::Status => lock::read(session, &scope).await.map(|held| {
            if printer.json() {
                printer.data(format!(
                    "{}\n",
                    serde_json::json!({ "host": primary, "lock": held })
                ));
            } else {
                match held {
                    Some(info) => {
                        printer.data(format!("Locked on {primary} by {}\n", info.describe()))
                    }
                    None => printer.data(format!("Unlocked ({primary})\n")),
                }
            }
        }),
        LockCommand::Release => lock::release(session, &scope, None).await.map(|removed| {
            if removed {
                printer.status("Released", format!("the deploy lock on {primary}"));
            } else {
                printer.status("Unlocked", format!("no deploy lock was held on {primary}"));
            }
        }),
    };
    session.close().await;
    result
}
