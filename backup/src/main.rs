//! The `hoist-backup` command. `agent` is the container's command; hoist runs the others with
//! `docker exec` in that container. Progress goes to stderr; `--json` answers to stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use hoist_backup::engine::{Agent, Choice};
use hoist_backup::kind::volume;
use hoist_backup::manifest::{Listed, human_size};
use hoist_backup::report::{hinted, render};
use hoist_backup::spec::{AgentSpec, SPEC_ENV, STATE_DIR};
use hoist_backup::state::StateDir;
use hoist_backup::{agent, dock};

#[derive(Parser)]
#[command(name = "hoist-backup", version, about = "hoist's backup agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the schedules (the container's command)
    Agent,
    /// Take a backup of an accessory now
    Now { name: String },
    /// List an accessory's backups
    List {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Put a backup back (the newest good one unless ID or --at says otherwise)
    Restore {
        name: String,
        id: Option<String>,
        /// The newest backup taken at or before this time (RFC 3339, e.g. 2026-12-01T10:00:00Z)
        #[arg(long, conflicts_with = "id")]
        at: Option<DateTime<Utc>>,
    },
    /// Restore a backup into a throwaway container and check it (the newest unless ID)
    Verify { name: String, id: Option<String> },
    /// Last success, last failure and next run of each accessory
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Remove everything inside DIR (the helper that empties a volume before a restore)
    Wipe { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The agent logs what it does; the commands hoist runs print progress lines instead.
    let default_level = if matches!(cli.command, Command::Agent) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOIST_BACKUP_LOG")
                .unwrap_or_else(|_| default_level.into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: can't start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", render(&err));
            ExitCode::FAILURE
        }
    }
}

fn spec() -> Result<AgentSpec> {
    let text = std::env::var(SPEC_ENV).map_err(|_| {
        hinted(
            format!("`{SPEC_ENV}` is not set: this container was not created by hoist"),
            "create it with `hoist backup boot`",
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("`{SPEC_ENV}` is not a valid spec"))
}

async fn run(command: Command) -> Result<()> {
    if let Command::Wipe { dir } = &command {
        return volume::wipe(dir);
    }
    let spec = spec()?;
    let state = StateDir::new(STATE_DIR);
    if let Command::Status { json } = &command {
        let statuses: Vec<_> = spec
            .accessories
            .iter()
            .map(|a| {
                let mut status = state.load(&a.name);
                status.schedule = a.schedule.clone();
                if a.schedule.is_none() {
                    // A next run recorded under an earlier, scheduled spec.
                    status.next_run = None;
                }
                status
            })
            .collect();
        if *json {
            println!("{}", serde_json::to_string(&statuses)?);
        } else {
            for status in statuses {
                println!("{}", serde_json::to_string_pretty(&status)?);
            }
        }
        return Ok(());
    }
    let agent = Agent {
        docker: dock::connect().await?,
        spec,
        state,
    };
    match command {
        Command::Agent => agent::run(agent).await,
        Command::Now { name } => {
            let manifest = agent.backup(&name).await?;
            println!("{}", manifest.id);
            Ok(())
        }
        Command::List { name, json } => {
            let inventory = agent.list(&name).await?;
            if json {
                println!("{}", serde_json::to_string(&inventory.backups)?);
            } else {
                for listed in &inventory.backups {
                    println!("{}", line(listed));
                }
            }
            Ok(())
        }
        Command::Restore { name, id, at } => {
            let choice = match (id, at) {
                (Some(id), _) => Choice::Id(id),
                (None, Some(at)) => Choice::At(at),
                (None, None) => Choice::Latest,
            };
            let manifest = agent.restore(&name, &choice).await?;
            println!("{}", manifest.id);
            Ok(())
        }
        Command::Verify { name, id } => {
            let choice = id.map(Choice::Id).unwrap_or_default();
            let record = agent.verify(&name, &choice).await?;
            println!("{}", record.detail);
            Ok(())
        }
        Command::Status { .. } | Command::Wipe { .. } => Ok(()),
    }
}

fn line(listed: &Listed) -> String {
    let verified = match &listed.verify {
        Some(v) if v.ok => "verified",
        Some(_) => "FAILED verify",
        None => "not verified",
    };
    format!(
        "{}  {}  {:>10}  {}  {}",
        listed.manifest.id,
        listed.manifest.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        human_size(listed.manifest.size()),
        listed.manifest.kind,
        verified
    )
}
