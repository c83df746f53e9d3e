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
use crate::naming;

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
    let config = resolve::resolve(
        schema,
        &locator,
        root,
        files,
        destination.map(str::to_string),
    )?;
    check_scope_collisions(&config, &path, &locator)?;
    Ok(config)
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

/// Refuse two (role, destination) pairs whose containers and hoist-proxy service would have the
/// same name (`web` with destination `staging` and a role `web-staging`): on a shared server, one
/// deploy would take over the other's route. Destinations are those with a file next to `main`.
fn check_scope_collisions(
    config: &Config,
    main: &Path,
    locator: &Locator,
) -> Result<(), ConfigError> {
    let roles: Vec<&str> = config.roles.keys().map(String::as_str).collect();
    let destinations = existing_destinations(main);
    let destinations: Vec<&str> = destinations.iter().map(String::as_str).collect();
    let Some(collision) = naming::scope_collision(&config.service, &roles, &destinations) else {
        return Ok(());
    };
    let describe = |(role, destination): &(String, Option<String>)| match destination {
        Some(destination) => format!("role `{role}` with destination `{destination}`"),
        None => format!("role `{role}` without a destination"),
    };
    // Point at the longer role name: it is the one that spells another role's destination.
    let (longer, other) = if collision.second.0.len() >= collision.first.0.len() {
        (&collision.second, &collision.first)
    } else {
        (&collision.first, &collision.second)
    };
    let (location, snippet) = locator.place(&super::locate::join_key("servers", &longer.0));
    let destination_files: Vec<String> = [longer, other]
        .iter()
        .filter_map(|(_, destination)| destination.as_deref())
        .map(|destination| {
            format!(
                "destination `{destination}` (`{}`)",
                super::display_path(&destination_file(main, destination))
            )
        })
        .collect();
    Err(ConfigError::Invalid {
        location,
        message: format!(
            "{} and {} would both name their containers and hoist-proxy service `{}`",
            describe(longer),
            describe(other),
            collision.name
        ),
        snippet,
        hint: Some(format!(
            "rename role `{}`{}, so that each pair names its own containers: on a shared server \
             one would take over the other's route",
            longer.0,
            if destination_files.is_empty() {
                String::new()
            } else {
                format!(" or {}", destination_files.join(" or "))
            }
        )),
    })
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
    fn a_role_named_like_another_role_with_a_destination_is_refused_at_its_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let main = dir.path().join("deploy.toml");
        std::fs::write(
            &main,
            "service = \"hello\"\nimage = \"r/hello\"\n[servers.web]\nhosts = [\"h1\"]\n\
             [servers.web-staging]\nhosts = [\"h1\"]\n",
        )
        .expect("write deploy.toml");
        // Without a `staging` destination the names differ.
        load(Some(&main), None).expect("loads without deploy.staging.toml");
        std::fs::write(dir.path().join("deploy.staging.toml"), "").expect("write overlay");
        for destination in [None, Some("staging")] {
            let err = load(Some(&main), destination).expect_err("a collision");
            let text = err.to_string();
            assert!(text.contains("deploy.toml:5:10"), "{text}");
            assert!(
                text.contains(
                    "role `web-staging` without a destination and role `web` with destination \
                     `staging` would both name their containers and hoist-proxy service \
                     `hello-web-staging`"
                ),
                "{text}"
            );
            let hint = err.hint().expect("a hint");
            assert!(hint.contains("rename role `web-staging`"), "{hint}");
            assert!(hint.contains("deploy.staging.toml"), "{hint}");
        }
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

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Every key of the file format, with the roles `web` and `web-staging` and the accessory
        /// `db` standing in for user-named tables.
        const KEYS: &[&str] = &[
            "service",
            "image",
            "retain_containers",
            "hooks_path",
            "registry.server",
            "registry.username",
            "registry.password",
            "servers.web.hosts",
            "servers.web.proxy",
            "servers.web.cmd",
            "servers.web.labels",
            "servers.web.env.clear",
            "servers.web.env.secret",
            "servers.web.tags",
            "env.tags.canary",
            "servers.web-staging.hosts",
            "servers",
            "proxy.image",
            "proxy.hosts",
            "proxy.app_port",
            "proxy.tls",
            "proxy.deploy_timeout",
            "proxy.drain_timeout",
            "proxy.response_timeout",
            "proxy.forward_headers",
            "proxy.trusted_proxies",
            "proxy.path_prefix",
            "proxy.strip_path_prefix",
            "proxy.healthcheck.path",
            "proxy.healthcheck.interval",
            "proxy.healthcheck.timeout",
            "proxy.healthcheck.port",
            "proxy.logging.request_headers",
            "proxy.logging.response_headers",
            "proxy.healthcheck.host",
            "proxy.buffering.requests",
            "proxy.buffering.responses",
            "proxy.buffering.memory",
            "proxy.buffering.max_request_body",
            "proxy.buffering.max_response_body",
            "proxy.acme.directory",
            "proxy.acme.challenge",
            "proxy.acme.eab_kid",
            "proxy.acme.eab_hmac_key",
            "proxy.ssl_certificate",
            "proxy.ssl_private_key",
            "env.clear",
            "env.secret",
            "ssh.user",
            "ssh.port",
            "ssh.proxy_jump",
            "ssh.keys",
            "ssh.known_hosts",
            "ssh.host_key_checking",
            "ssh.connect_timeout",
            "ssh.keepalive",
            "builder.dockerfile",
            "builder.context",
            "builder.args",
            "builder.secrets",
            "builder.target",
            "builder.arch",
            "boot.limit",
            "boot.wait",
            "boot.parallel_roles",
            "boot.rollback",
            "primary_role",
            "accessories.db.image",
            "accessories.db.host",
            "accessories.db.hosts",
            "accessories.db.cmd",
            "accessories.db.volumes",
            "accessories.db.port",
            "accessories.db.env",
            "loadbalancer.host",
            "loadbalancer.private_address",
            "loadbalancer.web_addresses",
            "loadbalancer.sticky",
            "proxy.acme.ca_root",
            "setup.docker",
            "setup.firewall",
            "deploy.release_command",
            "require_destination",
            "aliases.console",
            "secrets_path",
            "minimum_version",
            "error_pages_path",
            "volumes",
            "options.memory",
            "options.ulimits",
            "logging.driver",
            "logging.options",
            "stop_timeout",
            "readiness_delay",
            "asset_path",
            "servers.web.volumes",
            "servers.web.options.cpus",
            "servers.web.logging",
            "servers.web.stop_timeout",
            "servers.web.readiness_delay",
            "servers.web.asset_path",
        ];

        /// A TOML value of any type, with strings shaped like what the keys expect (durations,
        /// hosts, ports, addresses, names) as well as any string at all.
        fn value() -> impl Strategy<Value = toml::Value> {
            let leaf = prop_oneof![
                any::<i64>().prop_map(toml::Value::Integer),
                (0i64..70000).prop_map(toml::Value::Integer),
                any::<bool>().prop_map(toml::Value::Boolean),
                any::<f64>().prop_map(toml::Value::Float),
                any::<String>().prop_map(toml::Value::String),
                "[a-zA-Z0-9.:/%@~\\[\\] _-]{0,24}".prop_map(toml::Value::String),
                "([0-9]{1,21}(ms|s|m|h|x)?){1,3}".prop_map(toml::Value::String),
                "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}(/[0-9]{1,3})?".prop_map(toml::Value::String),
                prop::sample::select(vec![
                    "web",
                    "staging",
                    "letsencrypt",
                    "http-01",
                    "tls-alpn-01",
                    "strict",
                    "accept-new",
                    "amd64",
                    "arm64",
                    "docker.io",
                    "docker-ce",
                    "25%",
                    "0%",
                    "https://acme.example/dir",
                    "/up",
                    "SECRET",
                    "pg:/data",
                ])
                .prop_map(|text| toml::Value::String(text.to_string())),
            ];
            leaf.prop_recursive(2, 12, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
                    prop::collection::btree_map("[A-Za-z_]{1,8}", inner, 0..3)
                        .prop_map(|map| toml::Value::Table(map.into_iter().collect())),
                ]
            })
        }

        /// A file: `start` with values set at some of [`KEYS`].
        fn layer(start: toml::Table) -> impl Strategy<Value = toml::Table> {
            prop::collection::vec((prop::sample::select(KEYS), value()), 0..6).prop_map(
                move |assignments| {
                    let mut table = start.clone();
                    for (path, value) in assignments {
                        set(&mut table, path, value);
                    }
                    table
                },
            )
        }

        /// Set `path` (dotted) in `table`, making tables of whatever is in the way.
        fn set(table: &mut toml::Table, path: &str, value: toml::Value) {
            let mut keys: Vec<&str> = path.split('.').collect();
            let Some(last) = keys.pop() else {
                return;
            };
            let mut table = table;
            for key in keys {
                let entry = table
                    .entry(key.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = toml::Value::Table(toml::Table::new());
                }
                let toml::Value::Table(inner) = entry else {
                    return;
                };
                table = inner;
            }
            table.insert(last.to_string(), value);
        }

        /// A configuration that loads.
        fn valid() -> toml::Table {
            toml::from_str(
                "service = \"hello\"\nimage = \"r/hello\"\n[servers.web]\nhosts = [\"h1\"]\n",
            )
            .unwrap_or_default()
        }

        /// Load `main` (and `overlay` as destination `staging`); whatever comes out, rendering
        /// it must not panic either.
        fn load_text(main: &str, overlay: Option<&str>) {
            let Ok(dir) = tempfile::tempdir() else {
                return;
            };
            let path = dir.path().join("deploy.toml");
            if std::fs::write(&path, main).is_err() {
                return;
            }
            if let Some(overlay) = overlay
                && std::fs::write(dir.path().join("deploy.staging.toml"), overlay).is_err()
            {
                return;
            }
            for destination in [None, overlay.map(|_| "staging")] {
                match load(Some(&path), destination) {
                    Ok(config) => {
                        let _ = config.to_toml();
                        let _ = config.secret_refs();
                        let _ = config.hosts();
                        for role in config.roles.keys() {
                            let _ = config.role_env(role);
                        }
                    }
                    Err(err) => {
                        let _ = err.to_string();
                        let _ = err.hint();
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn loading_any_text_never_panics(text in any::<String>(), overlay in any::<String>()) {
                load_text(&text, Some(&overlay));
            }

            #[test]
            fn loading_the_reference_with_any_splice_never_panics(
                start in any::<prop::sample::Index>(),
                length in 0usize..40,
                insert in any::<String>(),
            ) {
                let reference = include_str!("../../deploy.toml.example");
                let mut at = start.index(reference.len());
                while !reference.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + length).min(reference.len());
                while !reference.is_char_boundary(end) {
                    end -= 1;
                }
                let text = format!("{}{insert}{}", &reference[..at], &reference[end..]);
                load_text(&text, None);
            }

            #[test]
            fn loading_any_values_in_known_keys_never_panics(
                main in layer(valid()),
                overlay in layer(toml::Table::new()),
            ) {
                let (Ok(main), Ok(overlay)) = (toml::to_string(&main), toml::to_string(&overlay))
                else {
                    return Ok(());
                };
                load_text(&main, Some(&overlay));
            }
        }
    }
}
