//! What the backup agent on one server is asked to do: the accessories it backs up, how, when,
//! and where to. hoist builds an [`AgentSpec`] from `[accessories.NAME.backup]` and hands it to
//! the `hoist-backup` container as JSON in the [`SPEC_ENV`] variable (it carries the storage
//! credentials and the encryption key, so it travels as the body of a create call, never in an
//! argv or a label). Shared by both sides so they cannot drift.

use serde::{Deserialize, Serialize};

use crate::retention::Retention;

/// The environment variable holding the JSON spec.
pub const SPEC_ENV: &str = "HOIST_BACKUP_SPEC";
/// Where the agent keeps its state (last success and failure per accessory, locks).
pub const STATE_DIR: &str = "/var/lib/hoist-backup";
/// The server's Docker socket, mounted into the agent.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Label on the throwaway containers the agent creates (verify, volume wipes), so leftovers of
/// a crash can be found and removed.
pub const HELPER_LABEL: &str = "dev.hoist.backup-helper";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub service: String,
    /// The agent's own image: volume wipes run in a helper container of it.
    pub image: String,
    pub accessories: Vec<AccessoryBackup>,
}

impl AgentSpec {
    pub fn find(&self, name: &str) -> Option<&AccessoryBackup> {
        self.accessories.iter().find(|a| a.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessoryBackup {
    /// The accessory's name in deploy.toml.
    pub name: String,
    /// Its container on this server.
    pub container: String,
    pub kind: Kind,
    /// `None`: backups only when asked (`hoist backup now`).
    pub schedule: Option<String>,
    pub retention: Retention,
    pub target: Target,
    /// zstd level, 1 to 19.
    pub compression_level: i32,
    /// A 32-byte key, base64: objects are encrypted before they leave the server.
    pub encryption_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// `pg_dump --format=custom` of one database plus `pg_dumpall --roles-only`, run inside the
    /// accessory's container.
    Postgres {
        user: String,
        database: String,
        /// Run by `verify` after the restore; its answer is recorded.
        verify_query: Option<String>,
    },
    /// The files of a named volume, as a tar of its mount point in the accessory.
    Volume {
        volume: String,
        /// Where the accessory mounts it.
        path: String,
        consistency: Consistency,
    },
}

impl Kind {
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Postgres { .. } => "postgres",
            Kind::Volume { .. } => "volume",
        }
    }
}

/// How a volume is read consistently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Stop the accessory while its files are read, start it again after (the default).
    Stop,
    /// Read while it runs: only for data that tolerates it.
    Live,
}

/// An S3-compatible bucket.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// `https://…` (R2, Hetzner, AWS) or `http://…` (a private MinIO/SeaweedFS).
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Key prefix; backups go under `PREFIX/ACCESSORY/ID/`.
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Where the objects of one accessory's backups live.
    pub fn accessory_prefix(&self, accessory: &str) -> String {
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            accessory.to_string()
        } else {
            format!("{prefix}/{accessory}")
        }
    }
}
