//! Backups in deploy.toml: `[backup]` (the agent's image and the bucket every accessory's
//! backups go to by default) and `[accessories.NAME.backup]` (what, when, how long kept, and any
//! `[backup]` key overridden). Their schema, what they resolve to, and the checks: a schedule
//! hoist-backup would refuse, a volume the accessory doesn't mount or a kind hoist can't back up
//! is a config error with its location, before any server is touched.

use serde::{Deserialize, Serialize};

use hoist_backup::retention::Retention;
use hoist_backup::schedule::Schedule;
use hoist_backup::spec::{Consistency, Kind};

use super::SecretRef;
use super::error::ConfigError;
use super::resolve::{Fail, MakeSecret};
use super::values::{EnvName, Image, NonEmpty};

/// Default of `backup.image`: the hoist-backup released with this hoist.
pub const DEFAULT_BACKUP_IMAGE: &str = concat!(
    "ghcr.io/hoist-deploy/hoist-backup:",
    env!("CARGO_PKG_VERSION")
);
/// Default of `compression_level` (zstd).
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

/// `[backup]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSchema {
    pub image: Option<Image>,
    pub endpoint: Option<NonEmpty>,
    pub region: Option<NonEmpty>,
    pub bucket: Option<NonEmpty>,
    pub prefix: Option<String>,
    pub access_key_id: Option<EnvName>,
    pub secret_access_key: Option<EnvName>,
    pub encryption_key: Option<EnvName>,
    pub compression_level: Option<i64>,
}

/// `[accessories.NAME.backup]`: the kind's keys, the schedule and retention, and any of
/// `[backup]`'s bucket keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessoryBackupSchema {
    pub kind: Option<NonEmpty>,
    pub schedule: Option<NonEmpty>,
    pub retention: Option<RetentionSchema>,
    pub user: Option<NonEmpty>,
    pub database: Option<NonEmpty>,
    pub verify_query: Option<NonEmpty>,
    pub volume: Option<NonEmpty>,
    pub consistency: Option<NonEmpty>,
    pub endpoint: Option<NonEmpty>,
    pub region: Option<NonEmpty>,
    pub bucket: Option<NonEmpty>,
    pub prefix: Option<String>,
    pub access_key_id: Option<EnvName>,
    pub secret_access_key: Option<EnvName>,
    pub encryption_key: Option<EnvName>,
    pub compression_level: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSchema {
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

/// `[backup] image`: the hoist-backup image of the `hoist-backup-<service>` containers.
#[derive(Debug, Clone, Serialize)]
pub struct AgentConfig {
    pub image: String,
}

/// One accessory's backups, resolved. Secrets by name: their values are read when a command
/// needs them.
#[derive(Debug, Clone, Serialize)]
pub struct BackupConfig {
    #[serde(flatten)]
    pub kind: Kind,
    pub schedule: Option<String>,
    pub retention: Retention,
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub access_key_id: SecretRef,
    pub secret_access_key: SecretRef,
    pub encryption_key: Option<SecretRef>,
    pub compression_level: i32,
}

impl BackupConfig {
    pub fn secret_refs(&self) -> impl Iterator<Item = &SecretRef> {
        [&self.access_key_id, &self.secret_access_key]
            .into_iter()
            .chain(&self.encryption_key)
    }
}

/// What resolving an accessory's backup needs to know about the accessory.
pub struct AccessoryFacts<'a> {
    pub name: &'a str,
    pub hosts: &'a [String],
    pub volumes: &'a [String],
    /// Its plain environment, for the official postgres image's POSTGRES_USER/POSTGRES_DB.
    pub env: &'a std::collections::BTreeMap<String, String>,
}

pub fn resolve_backup(
    accessory: &AccessoryFacts<'_>,
    schema: AccessoryBackupSchema,
    defaults: &BackupSchema,
    service: &str,
    fail: &Fail<'_>,
    secret: &MakeSecret<'_>,
) -> Result<BackupConfig, ConfigError> {
    let name = accessory.name;
    let path = format!("accessories.{name}.backup");
    if accessory.hosts.len() > 1 {
        return Err(fail(
            &path,
            format!(
                "`[{path}]`: accessory `{name}` runs on {} hosts, and each would write the same backups",
                accessory.hosts.len()
            ),
            Some("back up an accessory that runs on one host".to_string()),
        ));
    }
    let kind = resolve_kind(accessory, &schema, &path, fail)?;
    let schedule = match schema.schedule {
        Some(text) => {
            if let Err(err) = text.0.parse::<Schedule>() {
                return Err(fail(
                    &format!("{path}.schedule"),
                    err.to_string(),
                    Some(
                        "write \"@daily\", an interval such as \"6h\", or a cron expression such as \"0 3 * * *\" (UTC)"
                            .to_string(),
                    ),
                ));
            }
            Some(text.0)
        }
        None => None,
    };
    let retention = schema.retention.unwrap_or_default();
    let retention = Retention {
        keep_last: retention.keep_last,
        keep_daily: retention.keep_daily,
        keep_weekly: retention.keep_weekly,
        keep_monthly: retention.keep_monthly,
    };
    if [
        retention.keep_last,
        retention.keep_daily,
        retention.keep_weekly,
        retention.keep_monthly,
    ]
    .contains(&Some(0))
    {
        return Err(fail(
            &format!("{path}.retention"),
            format!("`{path}.retention` keeps 0 of something"),
            Some("leave a rule out rather than set it to 0".to_string()),
        ));
    }
    // An accessory's key wins over `[backup]`'s; each says where it is written.
    let pick = |own: Option<NonEmpty>, default: &Option<NonEmpty>, key: &str| {
        own.map(|value| value.0)
            .or_else(|| default.as_ref().map(|value| value.0.clone()))
            .ok_or_else(|| {
                fail(
                    &path,
                    format!("`{path}` needs `{key}`: where backups go"),
                    Some(format!(
                        "set `{key}` in `[backup]` (for every accessory) or in `[{path}]`"
                    )),
                )
            })
    };
    let pick_secret =
        |own: Option<EnvName>, default: &Option<EnvName>, key: &str| match (own, default) {
            (Some(own), _) => Some(secret(format!("{path}.{key}"), own.0)),
            (None, Some(default)) => Some(secret(format!("backup.{key}"), default.0.clone())),
            (None, None) => None,
        };
    let endpoint = pick(schema.endpoint, &defaults.endpoint, "endpoint")?;
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(fail(
            &path,
            format!("the backup endpoint `{endpoint}` is not an http:// or https:// URL"),
            Some("for example \"https://<account>.r2.cloudflarestorage.com\"".to_string()),
        ));
    }
    let region = schema
        .region
        .or_else(|| defaults.region.clone())
        .map_or_else(|| "us-east-1".to_string(), |r| r.0);
    let bucket = pick(schema.bucket, &defaults.bucket, "bucket")?;
    let prefix = schema
        .prefix
        .or_else(|| defaults.prefix.clone())
        .unwrap_or_else(|| service.to_string());
    let missing_key = |key: &str| {
        fail(
            &path,
            format!("`{path}` needs `{key}`: the name of the secret holding it"),
            Some(format!(
                "set `{key} = \"S3_...\"` in `[backup]` and define that secret in .hoist/secrets"
            )),
        )
    };
    let access_key_id = pick_secret(
        schema.access_key_id,
        &defaults.access_key_id,
        "access_key_id",
    )
    .ok_or_else(|| missing_key("access_key_id"))?;
    let secret_access_key = pick_secret(
        schema.secret_access_key,
        &defaults.secret_access_key,
        "secret_access_key",
    )
    .ok_or_else(|| missing_key("secret_access_key"))?;
    let encryption_key = pick_secret(
        schema.encryption_key,
        &defaults.encryption_key,
        "encryption_key",
    );
    let compression_level = match schema.compression_level.or(defaults.compression_level) {
        None => DEFAULT_COMPRESSION_LEVEL,
        Some(level @ 1..=19) => level as i32,
        Some(level) => {
            return Err(fail(
                &format!("{path}.compression_level"),
                format!("compression_level {level} is outside zstd's 1 to 19"),
                Some("3 (the default) is fast; 19 is small and slow".to_string()),
            ));
        }
    };
    Ok(BackupConfig {
        kind,
        schedule,
        retention,
        endpoint,
        region,
        bucket,
        prefix,
        access_key_id,
        secret_access_key,
        encryption_key,
        compression_level,
    })
}

fn resolve_kind(
    accessory: &AccessoryFacts<'_>,
    schema: &AccessoryBackupSchema,
    path: &str,
    fail: &Fail<'_>,
) -> Result<Kind, ConfigError> {
    let kind = schema.kind.as_ref().map(|k| k.0.as_str()).ok_or_else(|| {
        fail(
            path,
            format!("`[{path}]` needs `kind`: what to back up"),
            Some(
                "`kind = \"postgres\"` (pg_dump) or `kind = \"volume\"` (a named volume's files)"
                    .to_string(),
            ),
        )
    })?;
    let only = |keys: &[(&str, bool)], kind: &str| {
        for (key, set) in keys {
            if *set {
                return Err(fail(
                    &format!("{path}.{key}"),
                    format!("`{key}` does not apply to kind `{kind}`"),
                    Some(format!("remove it from `[{path}]`")),
                ));
            }
        }
        Ok(())
    };
    match kind {
        "postgres" => {
            only(
                &[
                    ("volume", schema.volume.is_some()),
                    ("consistency", schema.consistency.is_some()),
                ],
                kind,
            )?;
            let user = schema
                .user
                .as_ref()
                .map(|u| u.0.clone())
                .or_else(|| accessory.env.get("POSTGRES_USER").cloned())
                .unwrap_or_else(|| "postgres".to_string());
            let database = schema
                .database
                .as_ref()
                .map(|d| d.0.clone())
                .or_else(|| accessory.env.get("POSTGRES_DB").cloned())
                .unwrap_or_else(|| user.clone());
            Ok(Kind::Postgres {
                user,
                database,
                verify_query: schema.verify_query.as_ref().map(|q| q.0.clone()),
            })
        }
        "volume" => {
            only(
                &[
                    ("user", schema.user.is_some()),
                    ("database", schema.database.is_some()),
                    ("verify_query", schema.verify_query.is_some()),
                ],
                kind,
            )?;
            let named: Vec<(&str, &str)> = accessory
                .volumes
                .iter()
                .filter_map(|v| {
                    let mut parts = v.splitn(3, ':');
                    let (source, target) = (parts.next()?, parts.next()?);
                    (!source.starts_with('/') && !source.starts_with('.')).then_some((source, target))
                })
                .collect();
            let known = || {
                if named.is_empty() {
                    format!("give accessory `{}` a named volume (`volumes = [\"NAME:/path\"]`)", accessory.name)
                } else {
                    let names: Vec<String> = named.iter().map(|(n, _)| format!("`{n}`")).collect();
                    format!("its named volumes: {}", names.join(", "))
                }
            };
            let volume = match &schema.volume {
                Some(volume) => volume.0.clone(),
                None if named.len() == 1 => named[0].0.to_string(),
                None => {
                    return Err(fail(
                        path,
                        format!("`[{path}]` needs `volume`: which of the accessory's volumes"),
                        Some(known()),
                    ));
                }
            };
            let Some((_, target)) = named.iter().find(|(n, _)| *n == volume) else {
                return Err(fail(
                    &format!("{path}.volume"),
                    format!("accessory `{}` mounts no named volume `{volume}`", accessory.name),
                    Some(known()),
                ));
            };
            let consistency = match schema.consistency.as_ref().map(|c| c.0.as_str()) {
                None | Some("stop") => Consistency::Stop,
                Some("live") => Consistency::Live,
                Some(other) => {
                    return Err(fail(
                        &format!("{path}.consistency"),
                        format!("consistency `{other}` is not `stop` or `live`"),
                        Some(
                            "`stop` (the default) stops the accessory while its files are read; `live` reads them while it runs"
                                .to_string(),
                        ),
                    ));
                }
            };
            Ok(Kind::Volume {
                volume,
                path: target.to_string(),
                consistency,
            })
        }
        "redis" => Err(fail(
            &format!("{path}.kind"),
            "kind `redis` is not supported yet".to_string(),
            Some(
                "back up Redis's data volume with `kind = \"volume\"`: with the default `consistency = \"stop\"`, Redis writes its snapshot as it stops (when persistence is on)"
                    .to_string(),
            ),
        )),
        other => Err(fail(
            &format!("{path}.kind"),
            format!("kind `{other}` is not one hoist can back up"),
            Some("`postgres` or `volume`".to_string()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load;

    const BASE: &str = "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h\"]\n\
        [backup]\nendpoint = \"https://s3.example.com\"\nbucket = \"b\"\n\
        access_key_id = \"AK\"\nsecret_access_key = \"SK\"\n\
        [accessories.db]\nimage = \"postgres:16\"\nhost = \"h\"\n\
        volumes = [\"pg:/var/lib/postgresql/data\", \"/srv/x:/x\"]\n\
        env = { clear = { POSTGRES_USER = \"app\", POSTGRES_DB = \"appdb\" } }\n\
        [accessories.db.backup]\n";

    fn load_with(backup: &str) -> Result<crate::config::Config, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("deploy.toml"), format!("{BASE}{backup}")).expect("write");
        load(Some(&dir.path().join("deploy.toml")), None).map_err(|err| {
            let hint = err.hint().unwrap_or_default();
            format!("{err} / {hint}")
        })
    }

    #[test]
    fn defaults_come_from_backup_and_the_accessory() {
        let config = load_with("kind = \"postgres\"\nschedule = \"@daily\"\n").expect("valid");
        let backup = config.accessories["db"].backup.clone().expect("backup");
        assert_eq!(
            backup.kind,
            hoist_backup::spec::Kind::Postgres {
                user: "app".to_string(),
                database: "appdb".to_string(),
                verify_query: None,
            }
        );
        assert_eq!(backup.bucket, "b");
        assert_eq!(backup.prefix, "a");
        assert_eq!(backup.region, "us-east-1");
        assert_eq!(backup.access_key_id.name, "AK");
        let volume = load_with("kind = \"volume\"\nbucket = \"other\"\n").expect("valid");
        let backup = volume.accessories["db"].backup.clone().expect("backup");
        assert_eq!(backup.bucket, "other", "the accessory's key wins");
        assert!(matches!(
            backup.kind,
            hoist_backup::spec::Kind::Volume { ref volume, ref path, .. }
                if volume == "pg" && path == "/var/lib/postgresql/data"
        ));
    }

    #[test]
    fn mistakes_are_config_errors() {
        for (backup, expected) in [
            ("schedule = \"@daily\"\n", "needs `kind`"),
            ("kind = \"redis\"\n", "not supported yet"),
            ("kind = \"mysql\"\n", "not one hoist can back up"),
            (
                "kind = \"postgres\"\nschedule = \"every day\"\n",
                "5 fields",
            ),
            ("kind = \"postgres\"\nschedule = \"0s\"\n", "at least 1s"),
            (
                "kind = \"volume\"\nvolume = \"nope\"\n",
                "mounts no named volume `nope`",
            ),
            (
                "kind = \"volume\"\nvolume = \"/srv/x\"\n",
                "mounts no named volume",
            ),
            (
                "kind = \"postgres\"\nvolume = \"pg\"\n",
                "does not apply to kind `postgres`",
            ),
            (
                "kind = \"volume\"\nconsistency = \"snapshot\"\n",
                "not `stop` or `live`",
            ),
            (
                "kind = \"postgres\"\nretention = { keep_last = 0 }\n",
                "keeps 0",
            ),
            (
                "kind = \"postgres\"\ncompression_level = 25\n",
                "outside zstd's 1 to 19",
            ),
            (
                "kind = \"postgres\"\nendpoint = \"s3.example.com\"\n",
                "not an http:// or https:// URL",
            ),
        ] {
            let err = load_with(backup).expect_err(backup);
            assert!(err.contains(expected), "{backup}: {err}");
        }
    }
}
