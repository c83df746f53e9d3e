//! The deploy lock: a file `~/.hoist/<service>[-<destination>]/lock.json` on the primary host
//! (the first configured host), holding who took it, when and for what. Taking it is one atomic
//! exclusive create (`set -C`), so of two deploys started at once exactly one gets it; releasing
//! removes the file only if it is still the one this command wrote. A lock left by a killed
//! deploy stays until `hoist lock release`: it is reported, never silently stolen.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::naming;
use crate::ssh::{Session, quote};

/// Who holds the lock and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub holder: String,
    /// RFC 3339 time the lock was taken.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The command holding it (`deploy`, `rollback`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Random token of the holding process: release removes only its own lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl LockInfo {
    /// A lock for `command` by `holder` now, with a fresh id.
    pub fn new(holder: &str, command: &str, version: Option<&str>) -> Result<Self> {
        Ok(Self {
            holder: holder.to_string(),
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            version: version.map(str::to_string),
            message: None,
            command: Some(command.to_string()),
            id: Some(naming::random_hex()?),
        })
    }

    /// One line for messages: `alice@laptop (deploy of abc123) since 2026-…`.
    pub fn describe(&self) -> String {
        let mut text = self.holder.clone();
        match (&self.command, &self.version) {
            (Some(command), Some(version)) => text.push_str(&format!(" ({command} of {version})")),
            (Some(command), None) => text.push_str(&format!(" ({command})")),
            _ => {}
        }
        text.push_str(&format!(" since {}", self.at));
        if let Some(message) = &self.message {
            text.push_str(&format!(": {message}"));
        }
        text
    }
}

/// The lock file's path on a server, relative to the SSH user's home.
pub fn path(scope: &str) -> String {
    format!("{}/lock.json", naming::state_dir(scope))
}

/// The lock on `session`'s server, if one is held.
pub async fn read(session: &Session, scope: &str) -> Result<Option<LockInfo>> {
    let path = path(scope);
    let command = format!(
        "if [ -e {path} ]; then cat {path}; else exit 3; fi",
        path = quote(&path)?
    );
    let output = session.exec(&command).await?;
    match output.status {
        Some(0) => Ok(Some(parse(session, &path, &output.stdout)?)),
        Some(3) => Ok(None),
        status => bail!(
            "Failed to read `~/{path}` on `{}` (exit status {status:?}): {}",
            session.host(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

fn parse(session: &Session, path: &str, bytes: &[u8]) -> Result<LockInfo> {
    serde_json::from_slice(bytes).with_context(|| {
        format!(
            "The deploy lock `~/{path}` on `{}` is not valid JSON",
            session.host()
        )
    })
}

/// Take the lock with `info`, or return who holds it.
pub async fn try_acquire(
    session: &Session,
    scope: &str,
    info: &LockInfo,
) -> Result<Option<LockInfo>> {
    let path = path(scope);
    let json = serde_json::to_string(info).context("Failed to encode the lock")?;
    // `set -C` makes `>` an exclusive create (O_EXCL): atomic against a concurrent deploy.
    let command = format!(
        "mkdir -p {dir} && if (set -C; printf '%s\\n' {json} > {path}) 2>/dev/null; then exit 0; \
         elif [ -e {path} ]; then cat {path}; exit 3; else exit 4; fi",
        dir = quote(&naming::state_dir(scope))?,
        json = quote(&json)?,
        path = quote(&path)?,
    );
    let output = session.exec(&command).await?;
    match output.status {
        Some(0) => Ok(None),
        Some(3) => Ok(Some(parse(session, &path, &output.stdout)?)),
        status => bail!(
            "Failed to create the deploy lock `~/{path}` on `{}` (exit status {status:?}): {}",
            session.host(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

/// Remove the lock: only if it carries `id` when one is given, whoever holds it otherwise.
/// Returns whether a lock was removed.
pub async fn release(session: &Session, scope: &str, id: Option<&str>) -> Result<bool> {
    let path = path(scope);
    let path_q = quote(&path)?;
    let command = match id {
        Some(id) => format!(
            "if grep -qF {needle} {path_q} 2>/dev/null; then rm -f {path_q}; else exit 3; fi",
            needle = quote(&format!("\"id\":\"{id}\""))?
        ),
        None => format!("if [ -e {path_q} ]; then rm -f {path_q}; else exit 3; fi"),
    };
    let output = session.exec(&command).await?;
    match output.status {
        Some(0) => Ok(true),
        Some(3) => Ok(false),
        status => bail!(
            "Failed to remove the deploy lock `~/{path}` on `{}` (exit status {status:?}): {}",
            session.host(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}
