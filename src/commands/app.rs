//! `hoist app maintenance|live`: put the app's services on every proxy host into maintenance
//! (hoist-proxy `stop`: requests get 503 with the maintenance page and the message; the proxy
//! keeps health-checking the targets) and back (`resume`), under the deploy lock, with a line in
//! each host's audit log. `stop`, `start`, `details` and `remove` live in app_containers.rs.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::AppCommand;
use crate::config::{Config, format_duration};
use crate::container::proxy;
use crate::fleet::Locked;
use crate::naming;
use crate::printer::{self, Printer};
use crate::remote::Server;
use crate::reporter::Reporter;
use crate::version;

pub async fn run(
    command: AppCommand,
    config: &Config,
    hosts: &[String],
    printer: &Printer,
) -> Result<()> {
    match command {
        AppCommand::Maintenance {
            message,
            drain_timeout,
        } => {
            let change = Change::Maintenance {
                message: message.unwrap_or_default(),
                drain_timeout,
            };
            change_mode(config, hosts, change, printer).await
        }
        AppCommand::Live => change_mode(config, hosts, Change::Live, printer).await,
        AppCommand::Stop => super::app_containers::stop(config, hosts, printer).await,
        AppCommand::Start => super::app_containers::start(config, hosts, printer).await,
        AppCommand::Details => super::app_containers::details(config, hosts, printer).await,
        AppCommand::Remove { yes } => {
            super::app_containers::remove(yes, config, hosts, printer).await
        }
    }
}

/// Maintenance mode on every proxy host of `hosts`, as `hoist app maintenance` does (for
/// commands that need the app quiet meanwhile, such as a restore).
pub async fn maintenance(
    config: &Config,
    hosts: &[String],
    message: &str,
    printer: &Printer,
) -> Result<()> {
    let change = Change::Maintenance {
        message: message.to_string(),
        drain_timeout: config.proxy.drain_timeout,
    };
    change_mode(config, hosts, change, printer).await
}

/// Back live, as `hoist app live` does.
pub async fn live(config: &Config, hosts: &[String], printer: &Printer) -> Result<()> {
    change_mode(config, hosts, Change::Live, printer).await
}

/// What to do to each service.
#[derive(Debug, Clone)]
enum Change {
    Maintenance {
        message: String,
        drain_timeout: Duration,
    },
    Live,
}

impl Change {
    /// The `hoist-proxy` command for `service`.
    fn command(&self, service: &str) -> Vec<String> {
        match self {
            Change::Maintenance {
                message,
                drain_timeout,
            } => {
                let mut args = vec![
                    "hoist-proxy".to_string(),
                    "stop".to_string(),
                    service.to_string(),
                    format!("--drain-timeout={}", format_duration(*drain_timeout)),
                ];
                if !message.is_empty() {
                    args.push(format!("--message={message}"));
                }
                args
            }
            Change::Live => vec![
                "hoist-proxy".to_string(),
                "resume".to_string(),
                service.to_string(),
            ],
        }
    }

    fn audit(&self, services: &[String]) -> String {
        match self {
            Change::Maintenance { message, .. } if message.is_empty() => {
                format!("Maintenance mode for {}", services.join(", "))
            }
            Change::Maintenance { message, .. } => {
                format!("Maintenance mode for {}: {message}", services.join(", "))
            }
            Change::Live => format!("Live again: {}", services.join(", ")),
        }
    }
}

/// The proxy services of the roles behind the proxy on `host`.
fn services_on(config: &Config, host: &str) -> Vec<String> {
    config
        .roles
        .iter()
        .filter(|(_, role)| role.proxy && role.hosts.iter().any(|h| h == host))
        .map(|(name, _)| naming::role_scope(&config.service, name, config.destination.as_deref()))
        .collect()
}

async fn change_mode(
    config: &Config,
    hosts: &[String],
    change: Change,
    printer: &Printer,
) -> Result<()> {
    let proxy_hosts = proxy::hosts(config, hosts);
    if proxy_hosts.is_empty() {
        bail!("No host among those selected runs a role behind hoist-proxy");
    }
    let (subcommand, verb) = match change {
        Change::Maintenance { .. } => ("maintenance", "put into maintenance"),
        Change::Live => ("live", "made live"),
    };
    let scope = naming::scope(&config.service, config.destination.as_deref());
    let performer = version::performer(&config.root);
    let locked = Locked::begin(
        config,
        &proxy_hosts,
        &format!("app {subcommand}"),
        "`hoist-proxy list` on each host shows each service's state",
        printer,
    )
    .await?;
    let results = futures_util::future::join_all(locked.servers().iter().map(|server| {
        apply(
            config,
            server,
            &change,
            &scope,
            &performer,
            &locked.reporter,
        )
    }))
    .await;
    let took = locked.finish(results, printer).await?;
    printer.status(
        "Finished",
        format!(
            "{} {verb} on {} in {:.1}s",
            config.service,
            printer::plural(proxy_hosts.len(), "host"),
            took.as_secs_f64()
        ),
    );
    Ok(())
}

/// `change` on every service of `server`, then the audit line.
async fn apply(
    config: &Config,
    server: &Server,
    change: &Change,
    scope: &str,
    performer: &str,
    reporter: &Reporter,
) -> Result<()> {
    let progress = reporter.host(&server.host);
    let services = services_on(config, &server.host);
    progress.step(match change {
        Change::Maintenance { .. } => "maintenance",
        Change::Live => "live",
    });
    for service in &services {
        let command = change.command(service);
        let args: Vec<&str> = command.iter().skip(1).map(String::as_str).collect();
        if let Err(err) = proxy::control(&server.docker, &args).await {
            progress.failed(format!("{service}: failed"));
            return Err(err);
        }
    }
    crate::audit::record(&server.session, scope, performer, &change.audit(&services)).await;
    progress.done(match change {
        Change::Maintenance { .. } => format!("{}: maintenance", services.join(", ")),
        Change::Live => format!("{}: live", services.join(", ")),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_passes_the_message_and_drain_timeout_to_the_proxy() {
        let change = Change::Maintenance {
            message: "Back at 5".into(),
            drain_timeout: Duration::from_secs(10),
        };
        assert_eq!(
            change.command("hello-web"),
            [
                "hoist-proxy",
                "stop",
                "hello-web",
                "--drain-timeout=10s",
                "--message=Back at 5"
            ]
        );
        assert_eq!(
            change.audit(&["hello-web".into()]),
            "Maintenance mode for hello-web: Back at 5"
        );
        assert_eq!(
            Change::Live.command("hello-web"),
            ["hoist-proxy", "resume", "hello-web"]
        );
    }
}
