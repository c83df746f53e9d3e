//! `hoist lock status|acquire|release`: the deploy lock on the primary host.

use anyhow::{Context, Result};

use crate::cli::LockCommand;
use crate::config::Config;
use crate::fleet::primary_host;
use crate::lock;
use crate::naming;
use crate::printer::Printer;
use crate::remote::Connector;
use crate::report::hinted;
use crate::reporter::Reporter;
use crate::ssh::Session;

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
        LockCommand::Acquire { message } => acquire(session, &scope, &primary, config, message)
            .await
            .map(|info| {
                printer.status(
                    "Acquired",
                    format!(
                        "the deploy lock on {primary}: {}; `hoist lock release` lets deploys \
                         run again",
                        info.describe()
                    ),
                );
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

/// Take the lock for `hoist lock acquire`, with the user's message; an error names the holder.
async fn acquire(
    session: &Session,
    scope: &str,
    primary: &str,
    config: &Config,
    message: &str,
) -> Result<lock::LockInfo> {
    let mut info = lock::LockInfo::new(
        &crate::version::performer(&config.root),
        "lock acquire",
        None,
    )?;
    // Released by `hoist lock release`, which removes whatever lock is held.
    info.id = None;
    info.message = Some(message.to_string());
    match lock::try_acquire(session, scope, &info).await? {
        None => Ok(info),
        Some(holder) => Err(hinted(
            format!(
                "The deploy lock on `{primary}` is already held by {}",
                holder.describe()
            ),
            "wait for it to be released, or `hoist lock release` if you are sure no one needs it",
        )),
    }
}
