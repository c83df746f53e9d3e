//! `ConfigError`: every way loading deploy.toml fails, worded for the user, and the translation
//! of toml/serde messages ("invalid type: string \"x\", expected u16") into ones that name the
//! key. Where keys are written is locate.rs's business.

use std::io;
use std::path::PathBuf;

use super::locate::{Location, Target, display_path};

/// A configuration that can't be used, and why. Displays as the `error:` line (plus a source
/// snippet for [`ConfigError::Invalid`]); [`ConfigError::hint`] is the advice that goes after it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Configuration file `{}` not found", display_path(.path))]
    NotFound { path: PathBuf },

    #[error("Failed to read `{}`", display_path(.path))]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("Unknown destination `{name}`: `{}` does not exist", display_path(.path))]
    UnknownDestination {
        name: String,
        path: PathBuf,
        existing: Vec<String>,
    },

    #[error("Invalid destination name `{name}`")]
    InvalidDestination { name: String },

    #[error("Two different destinations given: `{positional}` and `--destination {flag}`")]
    ConflictingDestinations { positional: String, flag: String },

    #[error("Invalid configuration: {location}: {message}\n{snippet}")]
    Invalid {
        location: Location,
        message: String,
        snippet: String,
        hint: Option<String>,
    },
}

impl ConfigError {
    /// What the user can do about it, printed after the error and its causes.
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::NotFound { .. } => Some(
                "run `hoist init` to create one, or pass another file with `-c FILE`".to_string(),
            ),
            ConfigError::Read { .. } => None,
            ConfigError::UnknownDestination { name, existing, .. } => Some(if existing.is_empty() {
                format!(
                    "no destination files (`deploy.<destination>.toml`) exist yet; create `deploy.{name}.toml` to add one"
                )
            } else {
                let list: Vec<String> = existing.iter().map(|d| format!("`{d}`")).collect();
                format!("destinations here: {}", list.join(", "))
            }),
            ConfigError::InvalidDestination { .. } => Some(
                "destination names use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
                    .to_string(),
            ),
            ConfigError::ConflictingDestinations { .. } => {
                Some("give the destination once, either positionally or with `-d`".to_string())
            }
            ConfigError::Invalid { hint, .. } => hint.clone(),
        }
    }
}

/// Keys a user may expect from Kamal or the docs of other tools that hoist does not build yet:
/// the hint says what to do instead rather than guessing a neighbour's name.
fn not_built(parent: &str, field: &str) -> Option<&'static str> {
    match (parent, field) {
        ("loadbalancer", "hosts") => Some(
            "hoist runs one load balancer, `host = \"…\"`; several (behind DNS round-robin or a \
             floating IP) are not built yet",
        ),
        _ => None,
    }
}

/// A message and an optional hint for a serde error at `target`.
pub fn describe_serde_error(message: &str, target: Option<&Target>) -> (String, Option<String>) {
    let path = target.map_or("", |target| target.path.as_str());
    let subject = if path.is_empty() {
        "the value".to_string()
    } else {
        format!("`{path}`")
    };
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (field, expected) = rest.split_once(", ").unwrap_or((rest, ""));
        let field = field.trim_matches('`');
        let parent = parent_path(path);
        let message = if parent.is_empty() {
            format!("unknown key `{field}` at the top level")
        } else {
            format!("unknown key `{field}` in `[{parent}]`")
        };
        let known = backticked(expected);
        let hint = match did_you_mean(field, &known) {
            _ if let Some(hint) = not_built(parent, field) => Some(hint.to_string()),
            Some(suggestion) => Some(format!("did you mean `{suggestion}`?")),
            None if known.is_empty() => None,
            None => Some(format!(
                "known keys here: {}",
                known
                    .iter()
                    .map(|key| format!("`{key}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        return (message, hint);
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.rsplit_once(", expected ")
    {
        return (
            format!(
                "{subject} must be {}, found {}",
                expected_phrase(expected),
                found_phrase(found)
            ),
            None,
        );
    }
    if let Some(rest) = message.strip_prefix("invalid value: ")
        && let Some((found, expected)) = rest.rsplit_once(", expected ")
    {
        return (
            format!(
                "{subject} must be {}, found {}",
                range_phrase(expected),
                found_phrase(found)
            ),
            None,
        );
    }
    if path.is_empty() {
        (message.to_string(), None)
    } else {
        (format!("`{path}`: {message}"), None)
    }
}

/// The closest known name to a misspelt one, if any is close enough: a few edits away (two,
/// or a quarter of its length), or nearly the same by Jaro-Winkler.
pub fn did_you_mean<'a>(input: &str, candidates: &'a [String]) -> Option<&'a str> {
    let max_edits = (input.chars().count() / 4).max(2);
    candidates
        .iter()
        .map(|candidate| {
            (
                strsim::jaro_winkler(input, candidate),
                strsim::levenshtein(input, candidate),
                candidate,
            )
        })
        .filter(|(similarity, edits, _)| *edits <= max_edits || *similarity >= 0.93)
        .max_by(|a, b| b.1.cmp(&a.1).then(a.0.total_cmp(&b.0)))
        .map(|(_, _, candidate)| candidate.as_str())
}

/// `servers.web.hots` → `servers.web`.
fn parent_path(path: &str) -> &str {
    match path.rfind('.') {
        Some(index) => &path[..index],
        None => "",
    }
}

/// The names in backticks of serde's "expected one of `a`, `b`".
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn expected_phrase(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "an integer".to_string()
        }
        "a boolean" => "a boolean (`true` or `false`)".to_string(),
        "a sequence" => "an array".to_string(),
        "a map" => "a table".to_string(),
        other if other.starts_with("struct ") => "a table".to_string(),
        other => other.to_string(),
    }
}

fn range_phrase(expected: &str) -> String {
    match expected {
        "u8" => "an integer from 0 to 255".to_string(),
        "u16" => "an integer from 0 to 65535".to_string(),
        "u32" => "an integer from 0 to 4294967295".to_string(),
        "u64" | "usize" => "a non-negative integer".to_string(),
        other => expected_phrase(other),
    }
}

fn found_phrase(found: &str) -> String {
    let with = |kind: &str, rest: &str| format!("{kind} ({})", rest.trim_matches('`'));
    if let Some(rest) = found.strip_prefix("string ") {
        with("a string", rest)
    } else if let Some(rest) = found.strip_prefix("integer ") {
        with("an integer", rest)
    } else if let Some(rest) = found.strip_prefix("floating point ") {
        with("a float", rest)
    } else if let Some(rest) = found.strip_prefix("boolean ") {
        with("a boolean", rest)
    } else {
        match found {
            "sequence" => "an array".to_string(),
            "map" => "a table".to_string(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &str) -> Target {
        Target {
            path: path.to_string(),
            is_key: false,
        }
    }

    #[test]
    fn unknown_key_suggests_the_closest_known_one() {
        let (message, hint) = describe_serde_error(
            "unknown field `hots`, expected one of `hosts`, `proxy`, `cmd`, `labels`, `env`",
            Some(&at("servers.web.hots")),
        );
        assert_eq!(message, "unknown key `hots` in `[servers.web]`");
        assert_eq!(hint.as_deref(), Some("did you mean `hosts`?"));
    }

    #[test]
    fn unknown_key_without_close_match_lists_known_keys() {
        let (message, hint) = describe_serde_error(
            "unknown field `zzz`, expected `host`",
            Some(&at("loadbalancer.zzz")),
        );
        assert_eq!(message, "unknown key `zzz` in `[loadbalancer]`");
        assert_eq!(hint.as_deref(), Some("known keys here: `host`"));
        let (message, _) = describe_serde_error(
            "unknown field `sevice`, expected `service`",
            Some(&at("sevice")),
        );
        assert_eq!(message, "unknown key `sevice` at the top level");
    }

    #[test]
    fn a_key_not_built_yet_says_so_instead_of_suggesting_a_neighbour() {
        let (message, hint) = describe_serde_error(
            "unknown field `hosts`, expected one of `host`, `private_address`",
            Some(&at("loadbalancer.hosts")),
        );
        assert_eq!(message, "unknown key `hosts` in `[loadbalancer]`");
        assert!(hint.is_some_and(|hint| hint.contains("one load balancer")));
    }

    #[test]
    fn wrong_type_names_key_expected_and_found() {
        let (message, _) = describe_serde_error(
            "invalid type: string \"3000\", expected u16",
            Some(&at("proxy.app_port")),
        );
        assert_eq!(
            message,
            "`proxy.app_port` must be an integer, found a string (\"3000\")"
        );
        let (message, _) = describe_serde_error(
            "invalid value: integer `-1`, expected u32",
            Some(&at("retain_containers")),
        );
        assert_eq!(
            message,
            "`retain_containers` must be an integer from 0 to 4294967295, found an integer (-1)"
        );
    }

    #[test]
    fn did_you_mean_needs_a_close_match() {
        let known = ["hosts", "proxy", "cmd"].map(String::from);
        assert_eq!(did_you_mean("hots", &known), Some("hosts"));
        assert_eq!(did_you_mean("proxi", &known), Some("proxy"));
        assert_eq!(did_you_mean("database", &known), None);
        let top = ["service", "registry", "retain_containers"].map(String::from);
        assert_eq!(did_you_mean("region", &top), None);
        assert_eq!(
            did_you_mean("retain_container", &top),
            Some("retain_containers")
        );
    }
}
