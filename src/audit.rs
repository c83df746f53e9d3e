//! The audit log on each server: `~/.hoist/<service>[-<destination>]/audit.log`, one line per
//! change hoist made there, `[time] [performer] message`. Lines hold names and versions, never a
//! secret value.

use anyhow::Result;

use crate::naming;
use crate::ssh::quote;

/// The log's path on a server, relative to the SSH user's home.
pub fn path(scope: &str) -> String {
    format!("{}/audit.log", naming::state_dir(scope))
}

/// The line for `message` by `performer`, now.
pub fn line(performer: &str, message: &str) -> String {
    format!(
        "[{}] [{performer}] {}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        message.replace('\n', " ")
    )
}

/// A shell command appending `line` to the log (its directory must exist).
pub fn append_command(scope: &str, line: &str) -> Result<String> {
    Ok(format!(
        "printf '%s\\n' {line} >> {path}",
        line = quote(line)?,
        path = quote(&path(scope))?,
    ))
}

/// Append `message` by `performer` to the log on the server of `session`, creating its directory;
/// best effort, since what was done is done either way.
pub async fn record(session: &crate::ssh::Session, scope: &str, performer: &str, message: &str) {
    let (Ok(append), Ok(dir)) = (
        append_command(scope, &line(performer, message)),
        quote(&naming::state_dir(scope)),
    ) else {
        return;
    };
    let _ = session.exec(&format!("mkdir -p {dir} && {append}")).await;
}
