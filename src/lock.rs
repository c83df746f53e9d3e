//! The deploy lock on each server: a file `~/.hoist/<service>/lock.json` holding who took it,
//! when and for what. This file reads it (for `hoist details`); taking and releasing it belong
//! with `hoist deploy` and `hoist lock`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::ssh::Session;

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
}

/// The lock file's path on a server, relative to the SSH user's home.
pub fn path(service: &str) -> String {
    format!(".hoist/{service}/lock.json")
}

/// The lock on `session`'s server, if one is held. Runs `cat` over SSH: exit 0 with the file,
/// 1 without it.
pub async fn read(session: &Session, service: &str) -> Result<Option<LockInfo>> {
    let path = path(service);
    let command = format!(
        "if [ -e {path} ]; then cat {path}; else exit 3; fi",
        path = shlex::try_quote(&path).context("Invalid service name")?
    );
    let output = session.exec(&command).await?;
    match output.status {
        Some(0) => {
            let info = serde_json::from_slice(&output.stdout).with_context(|| {
                format!(
                    "The deploy lock `~/{path}` on `{}` is not valid JSON",
                    session.host()
                )
            })?;
            Ok(Some(info))
        }
        Some(3) => Ok(None),
        status => anyhow::bail!(
            "Failed to read `~/{path}` on `{}` (exit status {status:?}): {}",
            session.host(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}
