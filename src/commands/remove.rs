//! `hoist remove [DEST] [--yes]`: the app off every one of its servers (app hosts, accessory
//! hosts, the load balancer), after a confirmation: under the deploy lock, each host at once
//! loses the app's routes, containers, accessories with their named volumes, backup agent,
//! images, and hoist-proxy with the `hoist` network where no other app routes through it
//! (container/teardown.rs). Once every host is done, hoist's files there go, the primary host's
//! last since the lock lives among them. A host that fails keeps its files and the lock is
//! released as usual, so running `hoist remove` again finishes the job.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;

use crate::config::Config;
use crate::container::teardown;
use crate::fleet::{self, Locked};
use crate::printer::{self, Printer};
use crate::remote::Server;
use crate::report::hinted;
use crate::reporter::Reporter;

pub async fn run(yes: bool, config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    if !yes {
        let what = format!(
            "This removes {} from {} ({}): its containers, accessories and their volumes (data \
             included), images and routes.",
            config.service,
            printer::plural(hosts.len(), "host"),
            hosts.join(", ")
        );
        confirm("hoist remove", &what, &config.service)?;
    }
    let locked = Locked::begin(
        config,
        hosts,
        "remove",
        "`hoist details` shows what is left; `hoist remove` again finishes the job",
        printer,
    )
    .await?;
    let results = futures_util::future::join_all(
        locked
            .servers()
            .into_iter()
            .map(|server| remove_host(config, server, &locked.reporter)),
    )
    .await;
    if results.iter().any(Result::is_err) {
        locked.finish(results, printer).await?;
        return Ok(());
    }

    // The files, the primary host's (with the lock) last; when the primary host is not among
    // those removed from, its files and the lock stay, and the lock is released as usual.
    let primary = fleet::primary_host(config);
    let command = teardown::files_command(config)?;
    let mut servers = locked.servers();
    servers.sort_by_key(|server| Some(&server.host) == primary.as_ref());
    let mut lock_removed = false;
    for server in servers {
        let removed = match server.session.exec(&command).await {
            Ok(output) if output.status == Some(0) => Ok(()),
            Ok(output) => Err(String::from_utf8_lossy(&output.stderr).trim().to_string()),
            Err(err) => Err(format!("{err:#}")),
        };
        match removed {
            Ok(()) => lock_removed |= Some(&server.host) == primary.as_ref(),
            Err(why) => printer.warn(format!(
                "could not remove hoist's files on `{}`: {why}",
                server.host
            )),
        }
    }
    let took = if lock_removed {
        locked.finish_released().await
    } else {
        let done = hosts.iter().map(|_| Ok(())).collect();
        locked.finish(done, printer).await?
    };
    printer.status(
        "Finished",
        format!(
            "removed {} from {} in {:.1}s",
            config.service,
            printer::plural(hosts.len(), "host"),
            took.as_secs_f64()
        ),
    );
    Ok(())
}

/// Say `what` will go and ask for the service's name on a terminal; without one, `--yes` is
/// needed.
pub(super) fn confirm(command: &str, what: &str, service: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(hinted(
            format!("`{command}` asks for confirmation, and there is no terminal to ask on"),
            "pass `--yes` to remove it without asking",
        ));
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{what}\nType `{service}` to go on: ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != service {
        anyhow::bail!("Not removed: the answer was not `{service}`");
    }
    Ok(())
}

async fn remove_host(config: &Config, server: &Server, reporter: &Reporter) -> Result<()> {
    let progress = reporter.host(&server.host);
    progress.step(format!("removing {}", config.service));
    let removed = match teardown::remove_app(&server.docker, config).await {
        Ok(removed) => removed,
        Err(err) => {
            progress.failed("remove failed");
            return Err(err);
        }
    };
    let mut said = vec![printer::plural(removed.containers.len(), "container")];
    if !removed.volumes.is_empty() {
        said.push(format!("volumes {}", removed.volumes.join(", ")));
    }
    said.push(printer::plural(removed.images, "image"));
    if removed.proxy {
        said.push("hoist-proxy".to_string());
    } else if removed.proxy_silent {
        said.push(
            "hoist-proxy kept: it does not answer, so whom else it routes is unknown \
             (`hoist proxy remove --force` removes it)"
                .to_string(),
        );
    } else if !removed.others.is_empty() {
        said.push(format!(
            "hoist-proxy kept for {}",
            removed.others.join(", ")
        ));
    }
    progress.done(format!("removed {}", said.join(", ")));
    Ok(())
}
