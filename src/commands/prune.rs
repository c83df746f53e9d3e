//! `hoist prune`: the retention each deploy applies after switching, by hand. On every selected
//! host, under the deploy lock, each role keeps its newest `retain_containers` stopped
//! containers (the versions `hoist rollback` can return to) and loses older ones and the images
//! only they used (container/prune.rs). The live container is never touched. Each host's audit
//! log gets a line.

use std::time::Instant;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::container::prune;
use crate::fleet::{self, Fleet};
use crate::lock::LockInfo;
use crate::naming;
use crate::printer::{self, Printer};
use crate::remote::Server;
use crate::reporter::Reporter;
use crate::version;

pub async fn run(
    config: &Config,
    hosts: &[String],
    roles: &[String],
    printer: &Printer,
) -> Result<()> {
    let started = Instant::now();
    let app_hosts = fleet::app_hosts(config, hosts);
    if app_hosts.is_empty() {
        anyhow::bail!("No host among those selected runs a role");
    }
    let performer = version::performer(&config.root);
    let info = LockInfo::new(&performer, "prune", None)?;
    let reporter = Reporter::new(*printer);
    let connect_to = fleet::with_primary(config, &app_hosts);
    let fleet = Fleet::connect(config, &connect_to, &reporter, printer, "prune").await?;
    let held = fleet
        .lock_now(
            config,
            info,
            printer,
            "`hoist versions` shows what each host keeps",
        )
        .await?;
    let servers = fleet.among(&app_hosts);
    let results = futures_util::future::join_all(
        servers
            .iter()
            .map(|server| prune_host(config, server, roles, &performer, &reporter)),
    )
    .await;
    held.release(&fleet, printer).await;
    fleet.close().await;
    let mut removed = 0;
    let mut failed = None;
    for result in results {
        match result {
            Ok(count) => removed += count,
            Err(err) => {
                failed.get_or_insert(err);
            }
        }
    }
    if let Some(err) = failed {
        return Err(err);
    }
    printer.status(
        "Finished",
        format!(
            "{} removed on {} in {:.1}s (keeping {} stopped per role)",
            printer::plural(removed, "old container"),
            printer::plural(servers.len(), "host"),
            started.elapsed().as_secs_f64(),
            config.retain_containers
        ),
    );
    Ok(())
}

/// Every role of `server` (those of `roles`, when given); the number of containers removed.
async fn prune_host(
    config: &Config,
    server: &Server,
    roles: &[String],
    performer: &str,
    reporter: &Reporter,
) -> Result<usize> {
    let progress = reporter.host(&server.host);
    progress.step("pruning");
    let mut containers = Vec::new();
    let mut images = Vec::new();
    for (role, _) in config.roles.iter().filter(|(name, role)| {
        role.hosts.contains(&server.host) && (roles.is_empty() || roles.contains(name))
    }) {
        let pruned = prune::prune(&server.docker, config, role, &[])
            .await
            .with_context(|| format!("Failed to prune `{role}` on `{}`", server.host))?;
        containers.extend(pruned.containers);
        images.extend(pruned.images);
    }
    if !containers.is_empty() {
        let scope = naming::scope(&config.service, config.destination.as_deref());
        let message = format!("Pruned {}", containers.join(", "));
        crate::audit::record(&server.session, &scope, performer, &message).await;
    }
    progress.done(format!(
        "removed {} and {}",
        printer::plural(containers.len(), "container"),
        printer::plural(images.len(), "image")
    ));
    Ok(containers.len())
}
