//! What the agent remembers on the server, in its volume at [`crate::spec::STATE_DIR`]: each
//! accessory's last success and last failure (`NAME.json`, replaced atomically), and a lock per
//! accessory so a scheduled backup and `hoist backup now` never run at once.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::manifest::Status;
use crate::report::hinted;

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// Held while one accessory's backup, restore or verify runs.
pub struct Lock {
    _file: File,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub fn load(&self, accessory: &str) -> Status {
        std::fs::read(self.root.join(format!("{accessory}.json")))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_else(|| Status {
                accessory: accessory.to_string(),
                ..Default::default()
            })
    }

    pub fn update(&self, accessory: &str, change: impl FnOnce(&mut Status)) -> Result<Status> {
        let mut status = self.load(accessory);
        change(&mut status);
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("Can't create `{}`", self.root.display()))?;
        let path = self.root.join(format!("{accessory}.json"));
        let temporary = self.root.join(format!(".{accessory}.json.tmp"));
        let bytes = serde_json::to_vec_pretty(&status).context("Failed to encode the status")?;
        std::fs::write(&temporary, bytes)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .with_context(|| format!("Can't write `{}`", path.display()))?;
        Ok(status)
    }

    /// The accessory's lock, or an error naming what holds it.
    pub fn lock(&self, accessory: &str) -> Result<Lock> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("Can't create `{}`", self.root.display()))?;
        let path = self.root.join(format!("{accessory}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("Can't open `{}`", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(hinted(
                format!("A backup, restore or verify of `{accessory}` is already running"),
                "wait for it to finish (see `hoist backup list`), then try again",
            )),
            Err(TryLockError::Error(err)) => {
                Err(err).with_context(|| format!("Can't lock `{}`", path.display()))
            }
        }
    }
}
