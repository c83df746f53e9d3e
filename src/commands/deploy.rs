//! `hoist deploy`, `redeploy` and `rollback`: the command-line side of a release (deploy/).

use std::time::Duration;

use anyhow::Result;

use crate::cli::{DeployArgs, LockWaitArg, RollbackArgs};
use crate::config::Config;
use crate::deploy::{self, Kind, Options};
use crate::printer::Printer;

pub async fn deploy(
    kind: Kind,
    args: &DeployArgs,
    config: &Config,
    hosts: &[String],
    roles: &[String],
    printer: &Printer,
) -> Result<()> {
    deploy::run(config, hosts, options(kind, args, roles), printer).await
}

/// The release `deploy`, `redeploy` and `setup` ask for.
pub fn options(kind: Kind, args: &DeployArgs, roles: &[String]) -> Options {
    Options {
        roles: roles.to_vec(),
        kind,
        version: args.version.clone(),
        skip_build: args.skip_build,
        allow_dirty: args.allow_dirty,
        lock_wait: lock_wait(&args.lock),
        canary: args.canary.map(|n| n as usize),
        canary_wait: args.canary_wait,
        no_rollback: args.no_rollback,
    }
}

pub async fn rollback(
    args: &RollbackArgs,
    config: &Config,
    hosts: &[String],
    roles: &[String],
    printer: &Printer,
) -> Result<()> {
    let options = Options {
        roles: roles.to_vec(),
        kind: Kind::Rollback,
        version: args.to_version.clone(),
        skip_build: true,
        allow_dirty: false,
        lock_wait: lock_wait(&args.lock),
        canary: None,
        canary_wait: Duration::ZERO,
        no_rollback: false,
    };
    deploy::run(config, hosts, options, printer).await
}

fn lock_wait(arg: &LockWaitArg) -> Duration {
    arg.lock_wait.unwrap_or(Duration::ZERO)
}
