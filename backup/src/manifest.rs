//! What a backup is in the bucket. Under `PREFIX/ACCESSORY/ID/` each part's object is written
//! first, then `manifest.json` last: a backup without a manifest is an unfinished one and is
//! never listed as a backup. `verify.json` records the newest verify of it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const MANIFEST: &str = "manifest.json";
pub const VERIFY: &str = "verify.json";
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub accessory: String,
    /// `postgres` or `volume`.
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub compression: String,
    pub encrypted: bool,
    /// The accessory's image when the backup was taken (verify starts one like it).
    pub image: Option<String>,
    pub parts: Vec<Part>,
    pub agent_version: String,
}

impl Manifest {
    /// Bytes stored, all parts.
    pub fn size(&self) -> u64 {
        self.parts.iter().map(|part| part.size).sum()
    }

    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|part| part.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// `dump`, `roles` or `files`.
    pub name: String,
    /// The object's name within the backup's prefix.
    pub object: String,
    /// Bytes stored (compressed, encrypted).
    pub size: u64,
    /// Bytes before compression.
    pub raw_size: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyRecord {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub detail: String,
}

/// One backup as `list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    pub manifest: Manifest,
    pub verify: Option<VerifyRecord>,
}

impl Listed {
    /// Good unless a verify of it failed.
    pub fn good(&self) -> bool {
        self.verify.as_ref().is_none_or(|verify| verify.ok)
    }
}

/// A new backup's id: its UTC start time, sortable, readable, safe in a key.
pub fn new_id(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Last success and failure of one accessory's backups, as the agent records them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub accessory: String,
    pub schedule: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
    pub last_success: Option<Success>,
    pub last_failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Success {
    pub at: DateTime<Utc>,
    pub id: String,
    pub size: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub at: DateTime<Utc>,
    pub error: String,
}

/// "12.3 MiB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
