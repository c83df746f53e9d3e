//! `hoist lb details|drain|undrain`: the `[loadbalancer]` host's view of the web hosts, and
//! taking one out of rotation for maintenance and back. Draining and undraining hold the deploy
//! lock, so they never race a deploy that is bringing the LB in step with deploy.toml.

use std::time::Instant;

use anyhow::Result;

use crate::cli::LbCommand;
use crate::config::{Config, LoadBalancerConfig};
use crate::container::deploy_secrets::DeploySecrets;
use crate::container::loadbalancer;
use crate::fleet::{self, Fleet};
use crate::lock::LockInfo;
use crate::printer::{self, Printer};
use crate::remote::Server;
use crate::report::hinted;
use crate::reporter::Reporter;
use crate::secrets::Secrets;
use crate::version;

pub async fn run(command: &LbCommand, config: &Config, printer: &Printer) -> Result<()> {
    let Some(lb) = &config.loadbalancer else {
        return Err(hinted(
            "The configuration has no `[loadbalancer]`",
            "add `[loadbalancer]` with `host = \"…\"` to deploy.toml to run one in front of the \
             web hosts",
        ));
    };
    match command {
        LbCommand::Details => details(config, lb, printer).await,
        LbCommand::Drain { host } => rotate(config, lb, host, Rotate::Drain, printer).await,
        LbCommand::Undrain { host } => rotate(config, lb, host, Rotate::Undrain, printer).await,
    }
}

/// `details`: one row per web host; exits 1 when the LB routes nothing for this app yet.
async fn details(config: &Config, lb: &LoadBalancerConfig, printer: &Printer) -> Result<()> {
    let reporter = Reporter::new(*printer);
    let fleet = Fleet::connect(
        config,
        std::slice::from_ref(&lb.host),
        &reporter,
        printer,
        "read the load balancer",
    )
    .await?;
    let status = loadbalancer::status(&fleet.servers[0], config).await;
    fleet.close().await;
    let Some(rows) = status? else {
        return Err(hinted(
            format!(
                "The load balancer on `{}` does not route `{}` yet",
                lb.host,
                loadbalancer::service(config)
            ),
            "`hoist deploy` puts it in front of the web hosts",
        ));
    };
    if printer.json() {
        printer.data(format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({
                "loadbalancer": lb.host,
                "service": loadbalancer::service(config),
                "web_hosts": rows,
            }))?
        ));
    } else {
        printer.data(format!("Load balancer {}\n{}", lb.host, render(&rows)));
    }
    Ok(())
}

/// The web hosts as a table: host, the LB's target, rotation, health.
pub fn render(rows: &[loadbalancer::WebHost]) -> String {
    let mut table = vec![
        ["WEB HOST", "TARGET", "ROTATION", "HEALTH"]
            .map(String::from)
            .to_vec(),
    ];
    for row in rows {
        let rotation = match (row.in_rotation, row.drained) {
            (true, _) => "in",
            (false, true) => "drained",
            (false, false) => "out (the next `hoist deploy` adds it)",
        };
        let health = match row.healthy {
            Some(true) => "healthy",
            Some(false) => "unhealthy",
            None => "-",
        };
        table.push(vec![
            row.host.clone(),
            row.target.clone(),
            rotation.to_string(),
            health.to_string(),
        ]);
    }
    printer::table(&table)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotate {
    Drain,
    Undrain,
}

/// `drain` / `undrain`: under the deploy lock, the LB's target set without (or with) `host`,
/// then the drained list on the LB host. The LB swaps only once every target is healthy, and
/// lets requests in flight to a drained host finish (`proxy.drain_timeout`).
async fn rotate(
    config: &Config,
    lb: &LoadBalancerConfig,
    host: &str,
    change: Rotate,
    printer: &Printer,
) -> Result<()> {
    let started = Instant::now();
    let web = loadbalancer::web_hosts(config);
    if !web.iter().any(|known| known == host) {
        return Err(hinted(
            format!("`{host}` is not a web host the load balancer sends to"),
            format!("web hosts: {}", web.join(", ")),
        ));
    }
    let secrets = Secrets::for_config(config)?;
    let deploy_secrets = DeploySecrets::for_config(config, &secrets)?;
    let (name, verb) = match change {
        Rotate::Drain => ("lb drain", "drained"),
        Rotate::Undrain => ("lb undrain", "undrained"),
    };
    let performer = version::performer(&config.root);
    let info = LockInfo::new(&performer, name, None)?;
    let reporter = Reporter::new(*printer);
    let connect_to = fleet::with_primary(config, std::slice::from_ref(&lb.host));
    let fleet = Fleet::connect(config, &connect_to, &reporter, printer, name).await?;
    let held = fleet
        .lock_now(
            config,
            info,
            printer,
            "`hoist lb details` shows the rotation",
        )
        .await?;
    let result = match fleet.server(&lb.host) {
        Some(server) => rotate_on(server, config, host, change, &deploy_secrets, &reporter).await,
        None => Err(anyhow::anyhow!("`{}` is not connected", lb.host)),
    };
    held.release(&fleet, printer).await;
    fleet.close().await;
    let hosts = result?;
    printer.status(
        "Finished",
        format!(
            "{host} {verb}: the load balancer sends to {} ({:.1}s)",
            printer::plural(hosts.len(), "web host"),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// [`rotate`] on the LB's server; returns the hosts now in rotation.
async fn rotate_on(
    server: &Server,
    config: &Config,
    host: &str,
    change: Rotate,
    deploy_secrets: &DeploySecrets,
    reporter: &Reporter,
) -> Result<Vec<String>> {
    let mut drained = loadbalancer::drained(&server.session, config).await?;
    drained.retain(|known| known != host);
    if change == Rotate::Drain {
        drained.push(host.to_string());
    }
    let hosts = loadbalancer::rotation(config, &drained);
    if hosts.is_empty() {
        return Err(hinted(
            format!("Draining `{host}` would leave the load balancer no web host to send to"),
            "undrain another web host first (`hoist lb undrain HOST`)",
        ));
    }
    let progress = reporter.host(&server.host);
    progress.step(match change {
        Rotate::Drain => format!("taking {host} out of rotation"),
        Rotate::Undrain => format!("putting {host} back once it is healthy"),
    });
    match loadbalancer::sync(server, config, &hosts, deploy_secrets).await {
        Ok(()) => progress.done(format!("sends to {}", hosts.join(", "))),
        Err(err) => {
            progress.failed("the load balancer kept its web hosts");
            return Err(err);
        }
    }
    loadbalancer::write_drained(&server.session, config, &drained).await?;
    Ok(hosts)
}
