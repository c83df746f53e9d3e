//! How an app container runs, at the root of deploy.toml and per role: `volumes`, `options`
//! (memory, cpus, ulimits, capabilities …), `logging` (driver and options), `stop_timeout` and
//! `readiness_delay`. A role's settings go over the root's: volumes are added, `options` and
//! `logging.options` merge key by key, the rest replaces. Every key reaches the Engine API's
//! create call (container/app.rs) or the stop and readiness waits; unknown keys are errors.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::options::Volume;
use super::values::{DurationValue, NonEmpty, PlainValue};

/// Default of `stop_timeout`: how long a stopped container gets between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `readiness_delay`: how long a role without the proxy and without a Docker health
/// check must keep running to count as ready.
pub const DEFAULT_READINESS_DELAY: Duration = Duration::from_secs(2);

/// The keys, as one file gives them (root or `[servers.<role>]`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerSchema {
    pub volumes: Option<Vec<Volume>>,
    pub options: Option<OptionsSchema>,
    pub logging: Option<LoggingSchema>,
    pub stop_timeout: Option<DurationValue>,
    pub readiness_delay: Option<DurationValue>,
    pub asset_path: Option<AssetPath>,
}

/// `options`: resource limits and the like, as `docker run` names them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptionsSchema {
    /// Memory limit: bytes, or with a unit (`"512m"`, `"2g"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Soft memory limit, as `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<ByteSize>,
    /// CPUs (`1.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    /// Size of /dev/shm, as `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<ByteSize>,
    /// Most processes the container may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// `nofile = "1024:2048"` (soft:hard) or `nproc = 512` (both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ulimits: Option<BTreeMap<String, Ulimit>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_add: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_drop: Option<Vec<String>>,
    /// Run an init process as PID 1 (reaps zombies, forwards signals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
}

impl OptionsSchema {
    /// `over`'s keys over these.
    fn merged(self, over: OptionsSchema) -> OptionsSchema {
        let mut ulimits = self.ulimits.unwrap_or_default();
        ulimits.extend(over.ulimits.unwrap_or_default());
        OptionsSchema {
            memory: over.memory.or(self.memory),
            memory_reservation: over.memory_reservation.or(self.memory_reservation),
            cpus: over.cpus.or(self.cpus),
            shm_size: over.shm_size.or(self.shm_size),
            pids_limit: over.pids_limit.or(self.pids_limit),
            ulimits: (!ulimits.is_empty()).then_some(ulimits),
            cap_add: over.cap_add.or(self.cap_add),
            cap_drop: over.cap_drop.or(self.cap_drop),
            init: over.init.or(self.init),
        }
    }
}

/// `logging`: Docker's log driver and its options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSchema {
    pub driver: Option<NonEmpty>,
    pub options: Option<BTreeMap<String, PlainValue>>,
}

/// A size in bytes, from an integer or a string with a unit: `b`, `k`, `m`, `g` (powers of
/// 1024, as Docker reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ByteSize(pub i64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(bytes) if bytes > 0 => Ok(ByteSize(bytes)),
            Raw::Number(bytes) => Err(serde::de::Error::custom(format!(
                "a size must be positive, found {bytes}"
            ))),
            Raw::Text(text) => parse_size(&text).map(ByteSize).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a size: a number of bytes, or one with a unit such as \
                     \"512m\" or \"2g\""
                ))
            }),
        }
    }
}

/// `"512m"` → 536870912.
pub fn parse_size(text: &str) -> Option<i64> {
    let text = text.trim().to_ascii_lowercase();
    let text = text.strip_suffix('b').unwrap_or(&text);
    let (digits, unit) = match text.char_indices().last()? {
        (index, 'k') => (&text[..index], 1i64 << 10),
        (index, 'm') => (&text[..index], 1 << 20),
        (index, 'g') => (&text[..index], 1 << 30),
        _ => (text, 1),
    };
    let value: i64 = digits.parse().ok()?;
    (value > 0).then(|| value.checked_mul(unit)).flatten()
}

/// A number of CPUs, above 0 (`0.5`, `2`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cpus(pub f64);

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Integer(i64),
            Float(f64),
        }
        let cpus = match Raw::deserialize(deserializer)? {
            Raw::Integer(cpus) => cpus as f64,
            Raw::Float(cpus) => cpus,
        };
        if cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0 {
            Ok(Cpus(cpus))
        } else {
            Err(serde::de::Error::custom(format!(
                "`cpus` is a number of CPUs above 0, such as 0.5 or 2; found {cpus}"
            )))
        }
    }
}

/// A ulimit: `soft:hard`, or one number for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let parsed = match Raw::deserialize(deserializer)? {
            Raw::Number(both) => Some(Ulimit {
                soft: both,
                hard: both,
            }),
            Raw::Text(text) => match text.split_once(':') {
                Some((soft, hard)) => soft
                    .trim()
                    .parse()
                    .ok()
                    .zip(hard.trim().parse().ok())
                    .map(|(soft, hard)| Ulimit { soft, hard }),
                None => text.trim().parse().ok().map(|both| Ulimit {
                    soft: both,
                    hard: both,
                }),
            },
        };
        parsed
            .filter(|limit| limit.soft >= 0 && limit.soft <= limit.hard)
            .ok_or_else(|| {
                serde::de::Error::custom(
                    "a ulimit is `\"soft:hard\"` or one number, with soft no higher than hard",
                )
            })
    }
}

/// How one role's containers run, root and role settings merged.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ContainerSettings {
    /// `name:/path` or `/host/path:/path` (with `:ro` and the like).
    pub volumes: Vec<String>,
    pub options: OptionsSchema,
    /// Docker's log driver, when not the engine's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub log_options: BTreeMap<String, String>,
    #[serde(serialize_with = "super::serialize_duration")]
    pub stop_timeout: Duration,
    #[serde(serialize_with = "super::serialize_duration")]
    pub readiness_delay: Duration,
    /// Where the image keeps its static assets, bridged between versions (roles behind the
    /// proxy only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_path: Option<String>,
}

impl Default for ContainerSettings {
    fn default() -> Self {
        Self {
            volumes: Vec::new(),
            options: OptionsSchema::default(),
            log_driver: None,
            log_options: BTreeMap::new(),
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            readiness_delay: DEFAULT_READINESS_DELAY,
            asset_path: None,
        }
    }
}

/// The root's settings with a role's over them.
pub fn merge(root: &ContainerSchema, role: ContainerSchema) -> ContainerSettings {
    let root = root.clone();
    let mut volumes: Vec<String> = root
        .volumes
        .unwrap_or_default()
        .into_iter()
        .chain(role.volumes.unwrap_or_default())
        .map(|volume| volume.0)
        .collect();
    volumes.dedup();
    let options = root
        .options
        .unwrap_or_default()
        .merged(role.options.unwrap_or_default());
    let (root_logging, role_logging) = (
        root.logging.unwrap_or_default(),
        role.logging.unwrap_or_default(),
    );
    let mut log_options: BTreeMap<String, String> = root_logging
        .options
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect();
    log_options.extend(
        role_logging
            .options
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0)),
    );
    ContainerSettings {
        volumes,
        options,
        log_driver: role_logging.driver.or(root_logging.driver).map(|d| d.0),
        log_options,
        stop_timeout: role
            .stop_timeout
            .or(root.stop_timeout)
            .map_or(DEFAULT_STOP_TIMEOUT, |timeout| timeout.0),
        readiness_delay: role
            .readiness_delay
            .or(root.readiness_delay)
            .map_or(DEFAULT_READINESS_DELAY, |delay| delay.0),
        asset_path: role.asset_path.or(root.asset_path).map(|path| path.0),
    }
}

/// `asset_path`: an absolute path in the image (`"/rails/public/assets"`), without `:` (it
/// becomes a volume mount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetPath(pub String);

impl<'de> Deserialize<'de> for AssetPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bad = !text.starts_with('/')
            || text == "/"
            || text.contains(':')
            || text.chars().any(char::is_whitespace);
        if bad {
            return Err(serde::de::Error::custom(format!(
                "invalid path `{text}`: expected an absolute directory of the image other than \
                 `/`, without `:` or spaces, such as `/rails/public/assets`"
            )));
        }
        Ok(AssetPath(text.trim_end_matches('/').to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_reads_them() {
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("64kb"), Some(64 << 10));
        assert_eq!(parse_size("1000"), Some(1000));
        for bad in ["", "m", "-1m", "1.5g", "12x", "0"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_roles_settings_go_over_the_roots() {
        let root: ContainerSchema = toml::from_str(
            "volumes = [\"data:/data\"]\nstop_timeout = \"30s\"\n\
             [options]\nmemory = \"1g\"\ncpus = 2.0\nulimits = { nofile = \"1024:2048\" }\n\
             [logging]\ndriver = \"json-file\"\noptions = { max-size = \"10m\" }\n",
        )
        .expect("root");
        let role: ContainerSchema = toml::from_str(
            "volumes = [\"/srv/cache:/cache:ro\"]\nreadiness_delay = \"5s\"\n\
             [options]\nmemory = \"256m\"\nulimits = { nproc = 64 }\n\
             [logging]\noptions = { max-file = 3 }\n",
        )
        .expect("role");
        let settings = merge(&root, role);
        assert_eq!(settings.volumes, ["data:/data", "/srv/cache:/cache:ro"]);
        assert_eq!(settings.options.memory, Some(ByteSize(256 << 20)));
        assert_eq!(settings.options.cpus, Some(Cpus(2.0)));
        let ulimits = settings.options.ulimits.expect("ulimits");
        assert_eq!(
            ulimits["nofile"],
            Ulimit {
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(ulimits["nproc"], Ulimit { soft: 64, hard: 64 });
        assert_eq!(settings.log_driver.as_deref(), Some("json-file"));
        assert_eq!(settings.log_options["max-size"], "10m");
        assert_eq!(settings.log_options["max-file"], "3");
        assert_eq!(settings.stop_timeout, Duration::from_secs(30));
        assert_eq!(settings.readiness_delay, Duration::from_secs(5));
        assert_eq!(
            merge(&ContainerSchema::default(), ContainerSchema::default()),
            ContainerSettings::default()
        );
    }

    #[test]
    fn bad_options_are_refused() {
        for bad in [
            "[options]\nmemory = \"lots\"\n",
            "[options]\nswap = \"1g\"\n",
            "[options]\nulimits = { nofile = \"10:5\" }\n",
            "[options]\ncpus = -1\n",
            "[logging]\nflavor = \"x\"\n",
        ] {
            assert!(toml::from_str::<ContainerSchema>(bad).is_err(), "{bad}");
        }
    }
}
