//! The state file: every service with its options, targets, maintenance mode and rollout, written
//! after each change and read at start-up. Writes are atomic (temporary file, fsync, rename, fsync
//! of the directory), so a crash leaves the old file or the new one, never half of one. A file
//! that cannot be read is moved aside and reported, never silently dropped.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::options::{ServiceOptions, TargetOptions};
use crate::pause::PauseState;
use crate::rollout::RolloutSplit;

/// Version of the file format, written into the file.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SavedState {
    #[serde(default)]
    pub version: u32,
    pub services: Vec<SavedService>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedService {
    pub name: String,
    pub options: ServiceOptions,
    pub active: SavedBalancer,
    #[serde(default)]
    pub rollout: Option<SavedBalancer>,
    #[serde(default)]
    pub split: Option<RolloutSplit>,
    #[serde(default)]
    pub pause: PauseState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedBalancer {
    pub writers: Vec<String>,
    #[serde(default)]
    pub readers: Vec<String>,
    #[serde(default)]
    pub options: TargetOptions,
}

/// What loading found.
#[derive(Debug)]
pub enum Loaded {
    /// No file yet.
    Fresh,
    State(SavedState),
    /// The file could not be read as state; it was moved to `kept_at`.
    Corrupt {
        error: String,
        kept_at: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads the state file at `path`. A file that exists but does not parse is renamed to
/// `<path>.corrupt-<unix seconds>` so the proxy can start, and the caller reports it.
pub fn load(path: &Path) -> Result<Loaded, StateError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Fresh),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    match serde_json::from_slice::<SavedState>(&text) {
        Ok(state) => Ok(Loaded::State(state)),
        Err(error) => {
            let seconds = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or(0);
            let mut kept_at = path.as_os_str().to_owned();
            kept_at.push(format!(".corrupt-{seconds}"));
            let kept_at = PathBuf::from(kept_at);
            fs::rename(path, &kept_at).map_err(|source| StateError::Read {
                path: path.to_owned(),
                source,
            })?;
            Ok(Loaded::Corrupt {
                error: error.to_string(),
                kept_at,
            })
        }
    }
}

/// Writes `state` to `path` atomically, mode 0600.
pub fn save(path: &Path, state: &SavedState) -> Result<(), StateError> {
    let failed = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let mut bytes = serde_json::to_vec_pretty(state).map_err(|error| failed(error.into()))?;
    bytes.push(b'\n');
    write_private(path, &bytes).map_err(failed)
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the directory),
/// readable by the owner only (0600). Also used for ACME accounts and certificates.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let directory = path.parent().unwrap_or(Path::new("."));
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        fs::File::open(directory)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&temporary);
    })
}

/// Creates the state directory (mode 0700) if it is missing.
pub fn ensure_directory(directory: &Path) -> std::io::Result<()> {
    if !directory.exists() {
        fs::create_dir_all(directory)?;
        fs::set_permissions(directory, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedState {
        SavedState {
            version: FORMAT_VERSION,
            services: vec![SavedService {
                name: "web".into(),
                options: ServiceOptions::default(),
                active: SavedBalancer {
                    writers: vec!["web-1:3000".into()],
                    readers: vec![],
                    options: TargetOptions::default(),
                },
                rollout: None,
                split: None,
                pause: PauseState::default(),
            }],
        }
    }

    #[test]
    fn saves_atomically_and_loads_back() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state");
        assert!(matches!(load(&path).unwrap(), Loaded::Fresh));
        save(&path, &sample()).unwrap();
        let Loaded::State(state) = load(&path).unwrap() else {
            panic!("expected state");
        };
        assert_eq!(state, sample());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(directory.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_corrupt_file_is_kept_aside() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state");
        fs::write(&path, b"{\"services\": [trunc").unwrap();
        let Loaded::Corrupt { kept_at, .. } = load(&path).unwrap() else {
            panic!("expected corrupt");
        };
        assert!(!path.exists());
        assert_eq!(fs::read(&kept_at).unwrap(), b"{\"services\": [trunc");
    }
}
