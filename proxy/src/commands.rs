//! The commands that talk to a running proxy: each turns its flags into one control request,
//! waits for the answer, and prints what the user needs (only `list` prints anything on success).
//! `probe` is the exception: it probes a target itself, without the proxy.

use std::io::Write;

use crate::cli::{Command, ListArgs, ProbeArgs, RolloutCommand};
use crate::control::{self, ControlRequest, ControlResponse};
use crate::health::Prober;
use crate::options::HealthCheckOptions;
use crate::options::{DeployRequest, RolloutDeployRequest};
use crate::paths::ProxyPaths;
use crate::router::ServiceSummary;
use crate::target::Target;

/// Runs a control command (anything but `run` and `version`).
pub async fn run(command: Command, paths: &ProxyPaths) -> anyhow::Result<()> {
    let json = matches!(
        command,
        Command::List(ListArgs { json: true }) | Command::Status(ListArgs { json: true })
    );
    let request = match command {
        Command::Deploy(args) => ControlRequest::Deploy(Box::new(DeployRequest::from_args(&args)?)),
        Command::Remove(args) => ControlRequest::Remove {
            service: args.service,
        },
        Command::Pause(args) => ControlRequest::Pause {
            service: args.service,
            drain_timeout: args.drain_timeout,
            max_pause: args.max_pause,
        },
        Command::Stop(args) => ControlRequest::Stop {
            service: args.service,
            drain_timeout: args.drain_timeout,
            message: args.message.unwrap_or_default(),
        },
        Command::Resume(args) => ControlRequest::Resume {
            service: args.service,
        },
        Command::List(_) => ControlRequest::List,
        Command::Rollout(RolloutCommand::Deploy(args)) => {
            ControlRequest::RolloutDeploy(RolloutDeployRequest::from_args(&args)?)
        }
        Command::Rollout(RolloutCommand::Set(args)) => ControlRequest::RolloutSet {
            service: args.service,
            percentage: args.percent.unwrap_or(0),
            allowlist: args.list,
        },
        Command::Rollout(RolloutCommand::Stop(args)) => ControlRequest::RolloutStop {
            service: args.service,
        },
        Command::Status(_) => ControlRequest::Status,
        Command::Run(_)
        | Command::Listen(_)
        | Command::Probe(_)
        | Command::MergeAssets(_)
        | Command::Version => {
            anyhow::bail!("not a control command")
        }
    };
    match control::call(&paths.socket, &request).await? {
        ControlResponse::Services { services } if json => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &services)?;
            writeln!(out)?;
            Ok(())
        }
        ControlResponse::Services { services } => print_services(&services),
        ControlResponse::Status(status) if json => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &status)?;
            writeln!(out)?;
            Ok(())
        }
        ControlResponse::Status(status) => {
            println!(
                "hoist-proxy {} (protocol {}), pid {} on {}",
                status.version, status.protocol, status.pid, status.host
            );
            Ok(())
        }
        ControlResponse::Done | ControlResponse::Failed { .. } => Ok(()),
    }
}

/// Prints `list`'s table: Service, Host, Path, Target, State, TLS.
fn print_services(services: &[ServiceSummary]) -> anyhow::Result<()> {
    let mut rows = vec![[
        "Service".to_owned(),
        "Host".to_owned(),
        "Path".to_owned(),
        "Target".to_owned(),
        "State".to_owned(),
        "TLS".to_owned(),
    ]];
    for service in services {
        let hosts = if service.hosts.is_empty() {
            "*".to_owned()
        } else {
            service.hosts.join(",")
        };
        rows.push([
            service.name.clone(),
            hosts,
            service.paths.join(","),
            service.targets.join(","),
            service.state.clone(),
            if service.tls { "yes" } else { "no" }.to_owned(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// `probe`: one health probe of a target, from wherever this command runs (inside the proxy's
/// container, that is the proxy's network); fails with the probed URL and what went wrong.
pub async fn probe(args: &ProbeArgs) -> anyhow::Result<()> {
    let target = Target::new(&args.target)
        .map_err(|err| anyhow::anyhow!("invalid target `{}`: {err}", args.target))?;
    let options = HealthCheckOptions {
        path: args.path.clone(),
        timeout: args.timeout,
        port: args.port,
        host: args.host.clone(),
        ..HealthCheckOptions::default()
    };
    Prober::default()
        .probe(&target, &options)
        .await
        .map_err(|failure| anyhow::anyhow!("{failure}"))
}
