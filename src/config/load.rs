//! Reading configuration files: find deploy.toml and `deploy.<destination>.toml`, check each
//! file against the schema on its own (so an error points into the file that has it), then
//! deep-merge them and hand the result to resolve.rs.

use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use super::error::{ConfigError, describe_serde_error};
use super::locate::{Locator, Source, find_target};
use super::schema::FileSchema;
use super::values::check_name;
use super::{Config, resolve};

/// Load `path` (default `./deploy.toml`) and, with a destination, `deploy.<destination>.toml`
/// next to it merged over it, then check and resolve the result.
pub fn load(path: Option<&Path>, destination: Option<&str>) -> Result<Config, ConfigError> {
    let path = path.unwrap_or(Path::new("deploy.toml"));
    let path = std::path::absolute(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(name) = destination {
        check_name(name).map_err(|_| ConfigError::InvalidDestination {
            name: name.to_string(),
        })?;
    }
    let root = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));

    let mut files = vec![path.clone()];
    let main_text = read(&path)?;
    let mut texts = vec![main_text];
    if let Some(name) = destination {
        let overlay = destination_file(&path, name);
        match read(&overlay) {
            Ok(text) => {
                files.push(overlay);
                texts.push(text);
            }
            Err(ConfigError::NotFound { .. }) => {
                return Err(ConfigError::UnknownDestination {
                    name: name.to_string(),
                    path: overlay,
                    existing: existing_destinations(&path),
                });
            }
            Err(err) => return Err(err),
        }
    }

    let mut locator = Locator::default();
    let mut merged = toml::Table::new();
    for (file, text) in files.iter().zip(texts) {
        let source = Source {
            path: file.clone(),
            text,
        };
        let table = parse_file(&source)?;
        check_file(&source, &table)?;
        let layer = toml::Table::deserialize(toml::de::Deserializer::from(table.clone())).map_err(
            |err| {
                invalid_at_span(
                    &source,
                    err.span(),
                    format!("TOML error: {}", err.message()),
                )
            },
        )?;
        locator.add_layer(source.clone(), table.get_ref());
        deep_merge(&mut merged, layer);
    }
    // Each file matched the schema, and merging keeps every value's type, so this only fails
    // on a bug; report it at the top of the first file rather than panic.
    let schema: FileSchema = merged.try_into().map_err(|err: toml::de::Error| {
        let (location, snippet) = locator.place("");
        ConfigError::Invalid {
            location,
            message: format!("the merged configuration is invalid: {}", err.message()),
            snippet,
            hint: None,
        }
    })?;
    resolve::resolve(
        schema,
        &locator,
        root,
        files,
        destination.map(str::to_string),
    )
}

/// The destination to use, given positionally (`hoist deploy staging`) and/or with `-d`.
pub fn destination(
    positional: Option<&str>,
    flag: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    match (positional, flag) {
        (Some(positional), Some(flag)) if positional != flag => {
            Err(ConfigError::ConflictingDestinations {
                positional: positional.to_string(),
                flag: flag.to_string(),
            })
        }
        (positional, flag) => Ok(positional.or(flag).map(str::to_string)),
    }
}

/// `deploy.staging.toml` for `deploy.toml` and `staging` (the stem of the main file, so
/// `-c app.toml -d staging` reads `app.staging.toml`).
fn destination_file(main: &Path, name: &str) -> PathBuf {
    let stem = main
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "deploy".to_string());
    main.with_file_name(format!("{stem}.{name}.toml"))
}

/// Destinations that have a file next to `main`, sorted.
fn existing_destinations(main: &Path) -> Vec<String> {
    let stem = main
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(dir) = main.parent() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let name = file_name
                .strip_prefix(&format!("{stem}."))?
                .strip_suffix(".toml")?
                .to_string();
            check_name(&name).ok().map(|()| name)
        })
        .collect();
    names.sort();
    names
}

fn read(path: &Path) -> Result<String, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(ConfigError::NotFound {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parse one file as TOML, keeping the span of every key and value.
fn parse_file(source: &Source) -> Result<Spanned<DeTable<'_>>, ConfigError> {
    DeTable::parse(&source.text).map_err(|err| {
        invalid_at_span(
            source,
            err.span(),
            format!("TOML syntax error: {}", err.message()),
        )
    })
}

/// Check one file against the schema, reporting the first problem with its key.
fn check_file(source: &Source, table: &Spanned<DeTable<'_>>) -> Result<(), ConfigError> {
    let deserializer = toml::de::Deserializer::from(table.clone());
    FileSchema::deserialize(deserializer)
        .map(drop)
        .map_err(|err| {
            let span = err.span().unwrap_or(0..0);
            let target = find_target(table.get_ref(), span.start);
            let (message, hint) = describe_serde_error(err.message(), target.as_ref());
            let mut error = invalid_at_span(source, Some(span), message);
            if let ConfigError::Invalid { hint: slot, .. } = &mut error {
                *slot = hint;
            }
            error
        })
}

fn invalid_at_span(
    source: &Source,
    span: Option<std::ops::Range<usize>>,
    message: String,
) -> ConfigError {
    let span = span.unwrap_or(0..0);
    ConfigError::Invalid {
        location: source.location(span.start),
        message,
        snippet: source.snippet(&span),
        hint: None,
    }
}

/// Merge `over` into `base`: tables key by key, anything else (arrays included) replaced.
fn deep_merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(over_table)) => {
                deep_merge(base_table, over_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("valid TOML")
    }

    #[test]
    fn merge_combines_tables_and_replaces_other_values() {
        let mut base = table(
            "service = \"a\"\n[servers.web]\nhosts = [\"1\", \"2\"]\ncmd = \"x\"\n[env]\nclear = { A = \"1\", B = \"2\" }\n",
        );
        let over = table(
            "service = \"b\"\n[servers.web]\nhosts = [\"3\"]\n[servers.jobs]\nhosts = [\"4\"]\n[env.clear]\nB = \"3\"\n",
        );
        deep_merge(&mut base, over);
        let expected = table(
            "service = \"b\"\n[servers.web]\nhosts = [\"3\"]\ncmd = \"x\"\n[servers.jobs]\nhosts = [\"4\"]\n[env]\nclear = { A = \"1\", B = \"3\" }\n",
        );
        assert_eq!(base, expected);
    }

    #[test]
    fn destination_positional_and_flag_must_agree() {
        assert_eq!(destination(Some("a"), None).ok(), Some(Some("a".into())));
        assert_eq!(destination(None, Some("a")).ok(), Some(Some("a".into())));
        assert_eq!(
            destination(Some("a"), Some("a")).ok(),
            Some(Some("a".into()))
        );
        assert!(destination(Some("a"), Some("b")).is_err());
    }

    #[test]
    fn destination_file_sits_next_to_the_main_file() {
        assert_eq!(
            destination_file(Path::new("/app/deploy.toml"), "staging"),
            PathBuf::from("/app/deploy.staging.toml")
        );
        assert_eq!(
            destination_file(Path::new("/app/hoist.toml"), "prod"),
            PathBuf::from("/app/hoist.prod.toml")
        );
    }
}
