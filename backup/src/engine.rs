//! The four operations on one accessory's backups: take one now ([`backup`]: kind → parts →
//! manifest → retention → status), list them, put one back ([`restore`], after checking every
//! part end to end), and [`verify`] one in a throwaway container, recording the result next to
//! it in the bucket.

use std::time::Instant;

use anyhow::{Context, Result};
use bollard::Docker;
use chrono::{DateTime, Utc};

use crate::crypt::Key;
use crate::kind::{self, Job, say};
use crate::manifest::{
    self, Failure, Listed, MANIFEST, Manifest, Success, VERIFY, VerifyRecord, human_size,
};
use crate::pipeline;
use crate::report::hinted;
use crate::retention::{self, Candidate};
use crate::spec::{AccessoryBackup, AgentSpec, Kind};
use crate::state::StateDir;
use crate::store::{Inventory, Store};

/// Everything an operation needs.
pub struct Agent {
    pub docker: Docker,
    pub spec: AgentSpec,
    pub state: StateDir,
}

/// Which backup `restore` and `verify` mean.
#[derive(Debug, Clone, Default)]
pub enum Choice {
    /// The newest good one.
    #[default]
    Latest,
    Id(String),
    /// The newest taken at or before this time.
    At(DateTime<Utc>),
}

impl Agent {
    pub fn accessory(&self, name: &str) -> Result<&AccessoryBackup> {
        self.spec.find(name).ok_or_else(|| {
            let known: Vec<&str> = self
                .spec
                .accessories
                .iter()
                .map(|a| a.name.as_str())
                .collect();
            hinted(
                format!("No backups are configured for `{name}` on this server"),
                if known.is_empty() {
                    "add `[accessories.NAME.backup]` to deploy.toml and run `hoist backup boot`"
                        .to_string()
                } else {
                    format!("backed up here: {}", known.join(", "))
                },
            )
        })
    }

    fn key(accessory: &AccessoryBackup) -> Result<Option<Key>> {
        accessory
            .encryption_key
            .as_deref()
            .map(Key::from_base64)
            .transpose()
            .map_err(|err| hinted(err.to_string(), "set the secret named by `encryption_key`"))
    }

    fn job<'a>(
        &'a self,
        accessory: &'a AccessoryBackup,
        store: &'a Store,
        key: Option<&'a Key>,
        id: &'a str,
    ) -> Job<'a> {
        Job {
            docker: &self.docker,
            store,
            key,
            level: accessory.compression_level,
            id,
            container: &accessory.container,
            agent_image: &self.spec.image,
            accessory: &accessory.name,
        }
    }

    /// Take a backup of `name` now, apply retention, record the outcome.
    pub async fn backup(&self, name: &str) -> Result<Manifest> {
        let accessory = self.accessory(name)?;
        let _lock = self.state.lock(name)?;
        let started_at = Utc::now();
        let result = self.take(accessory, started_at).await;
        match &result {
            Ok(manifest) => {
                self.state.update(name, |status| {
                    status.last_success = Some(Success {
                        at: manifest.created_at,
                        id: manifest.id.clone(),
                        size: manifest.size(),
                        duration_ms: manifest.duration_ms,
                    })
                })?;
            }
            Err(err) => {
                let error = format!("{err:#}");
                self.state.update(name, |status| {
                    status.last_failure = Some(Failure {
                        at: started_at,
                        error,
                    })
                })?;
            }
        }
        result
    }

    async fn take(
        &self,
        accessory: &AccessoryBackup,
        started_at: DateTime<Utc>,
    ) -> Result<Manifest> {
        let key = Self::key(accessory)?;
        let store = Store::open(&accessory.target, &accessory.name)?;
        // The bucket first: wrong credentials or a missing bucket stop before the database is
        // touched.
        let inventory = store.inventory().await?;
        let inspected = self
            .docker
            .inspect_container(&accessory.container, None)
            .await
            .map_err(|_| {
                hinted(
                    format!(
                        "The accessory container `{}` does not exist here",
                        accessory.container
                    ),
                    format!("boot it with `hoist accessory boot {}`", accessory.name),
                )
            })?;
        let image = inspected.config.and_then(|config| config.image);
        let mut id = manifest::new_id(started_at);
        let taken = |id: &str| {
            inventory.backups.iter().any(|b| b.manifest.id == id)
                || inventory.unfinished.iter().any(|u| u == id)
        };
        let mut suffix = 2;
        while taken(&id) {
            id = format!("{}-{suffix}", manifest::new_id(started_at));
            suffix += 1;
        }
        let clock = Instant::now();
        say(format!(
            "{}: backup {id} to {}",
            accessory.name, store.place
        ));
        let job = self.job(accessory, &store, key.as_ref(), &id);
        let parts = match &accessory.kind {
            Kind::Postgres { user, database, .. } => {
                if inspected.state.and_then(|s| s.running) != Some(true) {
                    return Err(hinted(
                        format!(
                            "`{}` is not running: pg_dump runs inside it",
                            accessory.container
                        ),
                        format!("start it with `hoist accessory boot {}`", accessory.name),
                    ));
                }
                kind::postgres::backup(&job, user, database).await
            }
            Kind::Volume {
                path, consistency, ..
            } => kind::volume::backup(&job, path, *consistency).await,
        };
        let parts = match parts {
            Ok(parts) => parts,
            Err(err) => {
                // Parts already committed belong to no backup now: remove them.
                if let Err(cleanup) = store.delete_backup(&id).await {
                    tracing::warn!("could not remove the parts of failed backup {id}: {cleanup:#}");
                }
                return Err(err);
            }
        };
        let manifest = Manifest {
            format: manifest::FORMAT,
            id: id.clone(),
            accessory: accessory.name.clone(),
            kind: accessory.kind.label().to_string(),
            created_at: started_at,
            duration_ms: clock.elapsed().as_millis() as u64,
            compression: "zstd".to_string(),
            encrypted: key.is_some(),
            image,
            parts,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        store
            .put_json(&store.path(&id, MANIFEST), &manifest)
            .await?;
        say(format!(
            "{}: backup {id} done: {} stored in {:.1}s",
            accessory.name,
            human_size(manifest.size()),
            manifest.duration_ms as f64 / 1000.0
        ));
        self.prune(accessory, &store).await?;
        Ok(manifest)
    }

    /// Apply the retention policy; unfinished backups older than a day go too.
    async fn prune(&self, accessory: &AccessoryBackup, store: &Store) -> Result<()> {
        let inventory = store.inventory().await?;
        let candidates: Vec<Candidate> = inventory
            .backups
            .iter()
            .map(|listed| Candidate {
                id: listed.manifest.id.clone(),
                created_at: listed.manifest.created_at,
                good: listed.good(),
            })
            .collect();
        let kept = retention::keep(&accessory.retention, &candidates);
        for listed in &inventory.backups {
            if !kept.contains(&listed.manifest.id) {
                say(format!(
                    "{}: removing backup {} ({})",
                    accessory.name,
                    listed.manifest.id,
                    accessory.retention.describe()
                ));
                store.delete_backup(&listed.manifest.id).await?;
            }
        }
        let day_ago = manifest::new_id(Utc::now() - chrono::Duration::days(1));
        for id in &inventory.unfinished {
            if id.as_str() < day_ago.as_str() {
                say(format!(
                    "{}: removing unfinished backup {id}",
                    accessory.name
                ));
                store.delete_backup(id).await?;
            }
        }
        Ok(())
    }

    pub async fn list(&self, name: &str) -> Result<Inventory> {
        let accessory = self.accessory(name)?;
        Store::open(&accessory.target, name)?.inventory().await
    }

    fn choose(inventory: &Inventory, choice: &Choice, name: &str) -> Result<Listed> {
        let found = match choice {
            Choice::Latest => inventory.backups.iter().rev().find(|b| b.good()),
            Choice::Id(id) => inventory.backups.iter().find(|b| &b.manifest.id == id),
            Choice::At(at) => inventory
                .backups
                .iter()
                .rev()
                .find(|b| b.good() && b.manifest.created_at <= *at),
        };
        found.cloned().ok_or_else(|| {
            let what = match choice {
                Choice::Latest => "no good backup".to_string(),
                Choice::Id(id) => format!("no backup {id}"),
                Choice::At(at) => format!("no good backup taken at or before {at}"),
            };
            hinted(
                format!("`{name}` has {what}"),
                format!("see what there is with `hoist backup list {name}`"),
            )
        })
    }

    /// Put a backup back into the accessory. Every part is read and checked first, so a
    /// damaged backup fails before anything is changed.
    pub async fn restore(&self, name: &str, choice: &Choice) -> Result<Manifest> {
        let accessory = self.accessory(name)?;
        let _lock = self.state.lock(name)?;
        let key = Self::key(accessory)?;
        let store = Store::open(&accessory.target, name)?;
        let listed = Self::choose(&store.inventory().await?, choice, name)?;
        let manifest = listed.manifest;
        say(format!(
            "{name}: checking backup {} before restoring it",
            manifest.id
        ));
        for part in &manifest.parts {
            pipeline::check(&store, &manifest.id, part, key.as_ref()).await?;
        }
        let job = self.job(accessory, &store, key.as_ref(), &manifest.id);
        match &accessory.kind {
            Kind::Postgres { user, database, .. } => {
                kind::postgres::restore_into(&job, &accessory.container, &manifest, user, database)
                    .await?
            }
            Kind::Volume { volume, path, .. } => {
                kind::volume::restore(&job, &manifest, volume, path).await?
            }
        }
        say(format!("{name}: restored backup {}", manifest.id));
        Ok(manifest)
    }

    /// Check a backup as a restore would use it, and record the outcome next to it. A failed
    /// check is recorded, then returned as the error.
    pub async fn verify(&self, name: &str, choice: &Choice) -> Result<VerifyRecord> {
        let accessory = self.accessory(name)?;
        let _lock = self.state.lock(name)?;
        let key = Self::key(accessory)?;
        let store = Store::open(&accessory.target, name)?;
        let choice = match choice {
            // The newest, good or not yet known: verifying is how it becomes known.
            Choice::Latest => store
                .inventory()
                .await?
                .backups
                .last()
                .map(|b| Choice::Id(b.manifest.id.clone()))
                .unwrap_or(Choice::Latest),
            other => other.clone(),
        };
        let listed = Self::choose(&store.inventory().await?, &choice, name)?;
        let manifest = listed.manifest;
        say(format!("{name}: verifying backup {}", manifest.id));
        let outcome = async {
            for part in &manifest.parts {
                pipeline::check(&store, &manifest.id, part, key.as_ref()).await?;
            }
            let job = self.job(accessory, &store, key.as_ref(), &manifest.id);
            match &accessory.kind {
                Kind::Postgres {
                    user,
                    database,
                    verify_query,
                } => {
                    kind::postgres::verify(&job, &manifest, user, database, verify_query.as_deref())
                        .await
                }
                Kind::Volume { .. } => kind::volume::verify(&job, &manifest).await,
            }
        }
        .await;
        let record = VerifyRecord {
            at: Utc::now(),
            ok: outcome.is_ok(),
            detail: match &outcome {
                Ok(detail) => detail.clone(),
                Err(err) => format!("{err:#}"),
            },
        };
        store
            .put_json(&store.path(&manifest.id, VERIFY), &record)
            .await
            .context("Failed to record the verify result")?;
        match outcome {
            Ok(_) => {
                say(format!(
                    "{name}: backup {} verified: {}",
                    manifest.id, record.detail
                ));
                Ok(record)
            }
            Err(err) => Err(err.context(format!(
                "Backup {} of `{name}` failed verification",
                manifest.id
            ))),
        }
    }
}
