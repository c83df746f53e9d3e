//! The audit log on each server: `~/.hoist/<service>[-<destination>]/audit.log`, one line per
//! change hoist made there, `[time] [performer] message`. Lines hold names and versions, never a
//! secret value.

use anyhow::{Result, bail};

use crate::naming;
use crate::ssh::{Session, quote};

/// The log's path on a server, relative to the SSH user's home.
pub fn path(scope: &str) -> String {
    format!("{}/audit.log", naming::state_dir(scope))
}

/// Append `message` as one line.
pub async fn append(session: &Session, scope: &str, performer: &str, message: &str) -> Result<()> {
    let line = format!(
        "[{}] [{performer}] {}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        message.replace('\n', " ")
    );
    let command = format!(
        "mkdir -p {dir} && printf '%s\\n' {line} >> {path}",
        dir = quote(&naming::state_dir(scope))?,
        line = quote(&line)?,
        path = quote(&path(scope))?,
    );
    let output = session.exec(&command).await?;
    if output.status != Some(0) {
        bail!(
            "Failed to append to `~/{}` on `{}`: {}",
            path(scope),
            session.host(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
