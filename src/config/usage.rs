//! The keys about how hoist is used with a configuration rather than what it deploys:
//! `minimum_version` (an older hoist refuses the file), `require_destination` (no command runs
//! without `-d`), `[aliases]` (split into words here; commands/mod.rs expands them) and
//! `error_pages_path` (a directory that must exist).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::resolve::{Fail, absolute};
use super::schema::FileSchema;

/// The usage keys, checked.
pub(super) struct Usage {
    pub minimum_version: Option<String>,
    pub require_destination: bool,
    pub aliases: BTreeMap<String, Vec<String>>,
    pub error_pages_path: Option<PathBuf>,
}

pub(super) fn resolve_usage(
    schema: &FileSchema,
    root: &Path,
    destination: Option<&str>,
    fail: &Fail<'_>,
) -> Result<Usage, ConfigError> {
    let minimum_version = schema.minimum_version.clone().map(|version| version.0);
    if let Some(minimum) = &minimum_version {
        let running = env!("CARGO_PKG_VERSION");
        match (parse_version(minimum), parse_version(running)) {
            (None, _) => {
                return Err(fail(
                    "minimum_version",
                    format!("`minimum_version = \"{minimum}\"` is not a version"),
                    Some("write it as MAJOR.MINOR or MAJOR.MINOR.PATCH, such as \"0.2\"".into()),
                ));
            }
            (Some(wanted), Some(have)) if wanted > have => {
                return Err(fail(
                    "minimum_version",
                    format!("this configuration needs hoist {minimum} or newer; this is {running}"),
                    Some("upgrade hoist".to_string()),
                ));
            }
            _ => {}
        }
    }
    let error_pages_path = match &schema.error_pages_path {
        Some(path) => {
            let path = absolute(root, &path.0);
            if !path.is_dir() {
                return Err(fail(
                    "error_pages_path",
                    format!("`{}` is not a directory", path.display()),
                    Some(
                        "give a directory (relative to deploy.toml) holding pages such as \
                         503.html and 502.html"
                            .to_string(),
                    ),
                ));
            }
            Some(path)
        }
        None => None,
    };
    let require_destination = schema.require_destination.unwrap_or(false);
    if require_destination && destination.is_none() {
        return Err(fail(
            "require_destination",
            "`require_destination = true`: this configuration is only used with a destination"
                .to_string(),
            Some(
                "name one: `hoist deploy staging`, or `-d staging` (deploy.staging.toml)"
                    .to_string(),
            ),
        ));
    }
    let mut aliases = BTreeMap::new();
    for (name, command) in schema.aliases.clone().unwrap_or_default() {
        let words = shlex::split(&command.0)
            .filter(|words| !words.is_empty())
            .ok_or_else(|| {
                fail(
                    &format!("aliases.{}", name.0),
                    format!(
                        "can't split the alias `{}` into words: `{}`",
                        name.0, command.0
                    ),
                    Some("check its quotes".to_string()),
                )
            })?;
        aliases.insert(name.0, words);
    }
    Ok(Usage {
        minimum_version,
        require_destination,
        aliases,
        error_pages_path,
    })
}

/// `1.2` or `1.2.3` (a pre-release suffix after `-` is ignored) as (major, minor, patch).
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.trim().split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number() {
        assert_eq!(parse_version("0.2"), Some((0, 2, 0)));
        assert_eq!(parse_version("1.10.3-beta.1"), Some((1, 10, 3)));
        assert!(parse_version("1.10") > parse_version("1.9.9"));
        for bad in ["", "x", "1.x", "1.2.3.4", "-1"] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }
}
