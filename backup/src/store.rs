//! The bucket: one accessory's backups under `PREFIX/ACCESSORY/`, through `object_store`'s S3
//! client (SigV4, multipart uploads, retries), so R2, Hetzner Object Storage, MinIO and
//! SeaweedFS all work. Listing reads manifests; a backup id without one is unfinished.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::manifest::{Listed, MANIFEST, Manifest, VERIFY, VerifyRecord};
use crate::spec::Target;

#[derive(Clone)]
pub struct Store {
    pub s3: Arc<AmazonS3>,
    base: String,
    /// "bucket `b` at https://…", for messages.
    pub place: String,
}

/// What the bucket holds for one accessory.
pub struct Inventory {
    /// Complete backups, oldest first.
    pub backups: Vec<Listed>,
    /// Ids with objects but no manifest: unfinished or failed backups.
    pub unfinished: Vec<String>,
}

impl Store {
    pub fn open(target: &Target, accessory: &str) -> Result<Store> {
        let s3 = AmazonS3Builder::new()
            .with_endpoint(target.endpoint.trim_end_matches('/'))
            .with_allow_http(target.endpoint.starts_with("http://"))
            .with_region(&target.region)
            .with_bucket_name(&target.bucket)
            .with_access_key_id(&target.access_key_id)
            .with_secret_access_key(&target.secret_access_key)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 4,
                retry_timeout: Duration::from_secs(60),
                ..Default::default()
            })
            .build()
            .with_context(|| format!("Can't use the S3 endpoint `{}`", target.endpoint))?;
        Ok(Store {
            s3: Arc::new(s3),
            base: target.accessory_prefix(accessory),
            place: format!("bucket `{}` at {}", target.bucket, target.endpoint),
        })
    }

    pub fn path(&self, id: &str, object: &str) -> Path {
        Path::from(format!("{}/{id}/{object}", self.base))
    }

    /// Every backup of this accessory. Fails with the bucket's own words (and a hint) when the
    /// credentials are wrong or the bucket is missing.
    pub async fn inventory(&self) -> Result<Inventory> {
        let base = Path::from(self.base.clone());
        let objects: Vec<_> = self
            .s3
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(|err| self.explain(err))?;
        let mut ids: BTreeMap<String, (bool, bool)> = BTreeMap::new();
        for object in &objects {
            let mut parts = object.location.as_ref()[self.base.len()..]
                .trim_start_matches('/')
                .splitn(2, '/');
            let (Some(id), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let entry = ids.entry(id.to_string()).or_default();
            entry.0 |= name == MANIFEST;
            entry.1 |= name == VERIFY;
        }
        let mut backups = Vec::new();
        let mut unfinished = Vec::new();
        let reads = ids.into_iter().map(|(id, (manifest, verify))| async move {
            if !manifest {
                return Ok::<_, anyhow::Error>((id, None));
            }
            let manifest: Manifest = self.get_json(&self.path(&id, MANIFEST)).await?;
            let verify = if verify {
                Some(
                    self.get_json::<VerifyRecord>(&self.path(&id, VERIFY))
                        .await?,
                )
            } else {
                None
            };
            Ok((id, Some(Listed { manifest, verify })))
        });
        let mut results: Vec<_> = futures_util::stream::iter(reads)
            .buffered(8)
            .try_collect()
            .await?;
        results.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, listed) in results {
            match listed {
                Some(listed) => backups.push(listed),
                None => unfinished.push(id),
            }
        }
        backups.sort_by_key(|b| b.manifest.created_at);
        Ok(Inventory {
            backups,
            unfinished,
        })
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &Path) -> Result<T> {
        let bytes = self
            .s3
            .get(path)
            .await
            .map_err(|err| self.explain(err))?
            .bytes()
            .await
            .map_err(|err| self.explain(err))?;
        serde_json::from_slice(&bytes).with_context(|| format!("`{path}` is not valid JSON"))
    }

    pub async fn put_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let body = serde_json::to_vec_pretty(value).context("Failed to encode JSON")?;
        self.s3
            .put(path, PutPayload::from(body))
            .await
            .map_err(|err| self.explain(err))?;
        Ok(())
    }

    /// Every object of backup `id` (its manifest last, so a half-deleted backup is unfinished,
    /// never a listed backup with missing parts).
    pub async fn delete_backup(&self, id: &str) -> Result<()> {
        let prefix = Path::from(format!("{}/{id}", self.base));
        let mut objects: Vec<Path> = self
            .s3
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|err| self.explain(err))?;
        objects.sort_by_key(|path| path.filename() == Some(MANIFEST));
        for object in objects {
            self.s3
                .delete(&object)
                .await
                .map_err(|err| self.explain(err))?;
        }
        Ok(())
    }

    /// An object-store error in plain words, with what to do about the usual ones; the
    /// store's own text follows as the cause.
    pub fn explain(&self, err: object_store::Error) -> anyhow::Error {
        let text = format!("{err}");
        let (message, hint) = if text.contains("NoSuchBucket") {
            (
                format!("The {} does not exist", self.place),
                Some("create the bucket, or fix `bucket` in `[backup]`"),
            )
        } else if text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("AccessDenied")
            || text.contains("403 Forbidden")
        {
            (
                format!("The {} refused the credentials", self.place),
                Some(
                    "check the access key and secret named in `[backup]` (`access_key_id`, `secret_access_key`)",
                ),
            )
        } else if text.contains("error sending request") || text.contains("Connection refused") {
            (
                format!("The {} can't be reached", self.place),
                Some("check `endpoint` in `[backup]`: the server must reach it"),
            )
        } else {
            (format!("The {} failed a request", self.place), None)
        };
        let err = anyhow::Error::new(err);
        match hint {
            Some(hint) => err.context(crate::report::Hinted {
                message,
                hint: hint.to_string(),
            }),
            None => err.context(message),
        }
    }
}
