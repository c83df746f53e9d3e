//! Property tests of what a user, Kamal or a client hands hoist-proxy to parse: Go durations,
//! hosts, targets and path prefixes, the routing table, control requests (JSON on the socket) and
//! the command line. None of them may panic on any input; the ones with a canonical form must
//! give it back unchanged.

use std::time::Duration;

use hoist_proxy::cli::{Cli, Command};
use hoist_proxy::control::ControlRequest;
use hoist_proxy::duration::{MAX_DURATION, format_duration, parse_duration};
use hoist_proxy::options::{
    DeployRequest, normalize_host, normalize_path_prefix, normalize_target,
};
use hoist_proxy::routes::{RouteTable, prefix_matches};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::Value;

/// Text shaped like a Go duration, with the units Go knows and some it doesn't.
const DURATION_LIKE: &str = "[+-]?([0-9]{0,22}(\\.[0-9]{0,22})?(ns|us|µs|μs|ms|s|m|h|d|x| )?){1,4}";

/// Host names as users write them: case, wildcards, ports, dots in odd places, underscores.
const HOST_LIKE: &str = "(\\*\\.)?[a-zA-Z0-9_-]{0,8}(\\.[a-zA-Z0-9_-]{0,8}){0,3}(:[0-9]{0,5})?";

/// Request paths and prefixes: segments, repeated and trailing slashes, odd bytes.
const PATH_LIKE: &str = "/?([a-z0-9%._ ?#-]{0,6}/{0,2}){0,4}";

/// Object keys of control requests, with every field name the protocol uses and some it
/// doesn't.
fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "command",
            "service",
            "targets",
            "read_targets",
            "service_options",
            "target_options",
            "deployment",
            "hosts",
            "path_prefixes",
            "strip_path_prefix",
            "tls",
            "health_check",
            "path",
            "interval",
            "timeout",
            "rise",
            "fall",
            "deploy_timeout",
            "drain_timeout",
            "websocket_grace",
            "force",
            "max_pause",
            "message",
            "percentage",
            "allowlist",
            "trusted_proxies",
            "forward_headers",
            "buffer_memory",
            "max_request_body",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,12}",
    ]
}

/// Any JSON value, strings leaning towards durations and the protocol's command names.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        DURATION_LIKE.prop_map(Value::String),
        prop::sample::select(vec![
            "deploy",
            "remove",
            "pause",
            "stop",
            "resume",
            "list",
            "rollout_deploy",
            "rollout_set",
            "rollout_stop",
            "web",
            "web-1:3000",
            "/",
        ])
        .prop_map(|text| Value::String(text.to_owned())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(json_key(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Words of a hoist-proxy command line: commands, flags (with and without values), values.
fn argv_word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "run",
            "deploy",
            "remove",
            "pause",
            "stop",
            "resume",
            "list",
            "rollout",
            "set",
            "version",
            "web",
            "--target",
            "--target=web-1:3000",
            "--host",
            "--path-prefix",
            "--tls",
            "--tls=false",
            "--tls-staging",
            "--tls-acme-directory",
            "--deploy-timeout",
            "--drain-timeout=",
            "--health-check-interval",
            "--health-check-rise",
            "--buffer-requests",
            "--max-request-body",
            "--forward-headers=maybe",
            "--trusted-proxies",
            "--trusted-proxies=10.0.0.0/24,::1",
            "--percent",
            "--json",
            "--socket",
            "--http-port",
            "--",
            "-",
            "-h",
        ])
        .prop_map(str::to_owned),
        DURATION_LIKE,
        HOST_LIKE,
        "[0-9a-f:./]{0,20}",
        any::<String>(),
    ]
}

fn parse_argv(words: &[String]) -> Result<Cli, clap::Error> {
    use clap::Parser;
    Cli::try_parse_from(std::iter::once("hoist-proxy".to_owned()).chain(words.iter().cloned()))
}

proptest! {
    // Failures are kept beside this file (`parsers.regressions`) and replayed first.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn parse_duration_never_panics(text in any::<String>(), like in DURATION_LIKE) {
        let _ = parse_duration(&text);
        let _ = parse_duration(&like);
    }

    #[test]
    fn every_duration_formats_and_parses_back(nanos in 0..=MAX_DURATION.as_nanos() as u64) {
        let duration = Duration::from_nanos(nanos);
        let text = format_duration(duration);
        prop_assert_eq!(parse_duration(&text), Ok(duration), "{}", text);
    }

    #[test]
    fn a_parsed_duration_survives_its_canonical_form(like in DURATION_LIKE) {
        if let Ok(duration) = parse_duration(&like) {
            prop_assert!(duration <= MAX_DURATION);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
    }

    #[test]
    fn normalizers_never_panic_and_are_idempotent(
        text in any::<String>(),
        host in HOST_LIKE,
        path in PATH_LIKE,
    ) {
        for input in [&text, &host, &path] {
            if let Ok(host) = normalize_host(input) {
                prop_assert_eq!(normalize_host(&host), Ok(host.clone()));
                prop_assert!(!host.bytes().any(|byte| byte.is_ascii_uppercase()), "{}", host);
            }
            if let Ok(target) = normalize_target(input) {
                prop_assert_eq!(normalize_target(&target), Ok(target.clone()));
                prop_assert!(target.rsplit_once(':').is_some(), "{}", target);
            }
            if let Ok(prefix) = normalize_path_prefix(input) {
                prop_assert_eq!(normalize_path_prefix(&prefix), Ok(prefix.clone()));
                prop_assert!(prefix.starts_with('/') && !prefix.contains("//"), "{}", prefix);
            }
        }
    }

    #[test]
    fn route_tables_build_and_look_up_anything(
        entries in prop::collection::vec(
            (
                prop::collection::vec(prop_oneof![HOST_LIKE, any::<String>()], 0..3),
                prop::collection::vec(prop_oneof![PATH_LIKE, any::<String>()], 1..3),
            ),
            0..5,
        ),
        lookups in prop::collection::vec(
            (prop_oneof![HOST_LIKE, any::<String>()], prop_oneof![PATH_LIKE, any::<String>()]),
            0..8,
        ),
    ) {
        let names: Vec<String> = (0..entries.len()).map(|n| format!("service-{n}")).collect();
        // Raw, as a table might be given them, and normalised, as the router gives them.
        let normalized: Vec<(Vec<String>, Vec<String>)> = entries
            .iter()
            .map(|(hosts, prefixes)| {
                (
                    hosts.iter().filter_map(|host| normalize_host(host).ok()).collect(),
                    prefixes
                        .iter()
                        .filter_map(|prefix| normalize_path_prefix(prefix).ok())
                        .collect(),
                )
            })
            .collect();
        for (checked, entries) in [(false, &entries), (true, &normalized)] {
            let table = RouteTable::build(
                names
                    .iter()
                    .zip(entries.iter())
                    .map(|(name, (hosts, prefixes))| {
                        (name.as_str(), &hosts[..], &prefixes[..], name.clone())
                    }),
            );
            let Ok(table) = table else {
                continue;
            };
            for (host, path) in &lookups {
                if let Some(found) = table.lookup(host, path) {
                    prop_assert!(prefix_matches(found.prefix, path), "{} {}", found.prefix, path);
                }
            }
            if !checked {
                continue;
            }
            // Every normalised binding is found at its own host and prefix, by it or a longer
            // prefix of another service.
            for (hosts, prefixes) in entries {
                let hosts: Vec<&str> = if hosts.is_empty() {
                    vec![""]
                } else {
                    hosts.iter().map(String::as_str).collect()
                };
                for host in hosts {
                    for prefix in prefixes {
                        let found = table.lookup(host, prefix);
                        prop_assert!(
                            found.as_ref().is_some_and(|found| found.prefix.len() >= prefix.len()),
                            "{} {} -> {:?}", host, prefix, found
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn control_requests_parse_from_any_text_without_panicking(text in any::<String>()) {
        let _ = serde_json::from_str::<ControlRequest>(&text);
    }

    #[test]
    fn control_requests_parse_from_any_json_without_panicking(
        value in json(),
        command in prop::sample::select(vec![
            "deploy", "remove", "pause", "stop", "resume", "list", "rollout_deploy",
            "rollout_set", "rollout_stop", "nope",
        ]),
        fields in prop::collection::btree_map(json_key(), json(), 0..8),
        service in prop::option::of(any::<String>()),
        durations in prop::collection::vec(DURATION_LIKE, 2),
        message in prop::option::of(any::<String>()),
        percentage in prop::option::of(any::<i16>()),
        allowlist in prop::option::of(prop::collection::vec(any::<String>(), 0..3)),
    ) {
        // Random fields, and the ones the small commands need, so that some requests parse.
        let mut object: serde_json::Map<String, Value> = fields.into_iter().collect();
        object.insert("command".to_owned(), Value::String(command.to_owned()));
        let known = [
            ("service", service.map(Value::String)),
            ("drain_timeout", Some(Value::String(durations[0].clone()))),
            ("max_pause", Some(Value::String(durations[1].clone()))),
            ("message", message.map(Value::String)),
            ("percentage", percentage.map(Value::from)),
            ("allowlist", allowlist.map(|list| list.into_iter().map(Value::String).collect())),
        ];
        for (key, value) in known {
            if let Some(value) = value {
                object.insert(key.to_owned(), value);
            }
        }
        for value in [value, Value::Object(object)] {
            let text = value.to_string();
            if let Ok(request) = serde_json::from_str::<ControlRequest>(&text) {
                // What parses serialises and parses again, and the server may normalise it.
                let again = serde_json::to_string(&request).map_err(|err| err.to_string());
                prop_assert!(again.is_ok(), "{:?}", again);
                let again = again.unwrap_or_default();
                prop_assert!(serde_json::from_str::<ControlRequest>(&again).is_ok(), "{}", again);
                if let ControlRequest::Deploy(mut deploy) = request {
                    let _ = deploy.normalize();
                }
            }
        }
    }

    #[test]
    fn the_command_line_never_panics(words in prop::collection::vec(argv_word(), 0..10)) {
        let _ = parse_argv(&words);
    }

    #[test]
    fn a_parsed_deploy_travels_the_control_socket(
        host in "(\\*\\.)?[a-zA-Z0-9][a-zA-Z0-9_-]{0,8}(\\.[a-zA-Z]{1,5}){0,2}",
        prefix in "(/{1,2}[a-z0-9%._-]{1,5}){0,3}/?",
        timeout in "[0-9]{1,4}(\\.[0-9]{1,3})?(ns|us|µs|ms|s|m|h)",
        extra in prop::collection::vec(
            prop::sample::select(vec![
                "--tls",
                "--tls-redirect=false",
                "--strip-path-prefix=false",
                "--buffer-requests",
                "--buffer-responses=true",
                "--max-request-body=104857600",
                "--forward-headers=true",
                "--forward-headers=false",
                "--trusted-proxies=10.0.0.0/8,2001:db8::/32",
                "--trusted-proxies=192.0.2.7",
                "--health-check-path=/health",
                "--health-check-rise=1",
                "--drain-timeout=1m30s",
                "--target-timeout=500ms",
                "--read-target=web-2:3000",
                "--tls-acme-directory=https://ca.example/dir",
                "--tls-acme-challenge=tls-alpn-01",
                "--log-request-header=X-Id",
                "--websocket-grace=2s",
            ]),
            0..5,
        ),
    ) {
        let mut words: Vec<String> = [
            "deploy",
            "web",
            "--target=web-1:3000",
            &format!("--host={host}"),
            &format!("--path-prefix={prefix}"),
            &format!("--deploy-timeout={timeout}"),
        ]
        .iter()
        .map(|word| (*word).to_owned())
        .collect();
        words.extend(extra.into_iter().map(str::to_owned));
        let Ok(Cli { command: Command::Deploy(args), .. }) = parse_argv(&words) else {
            return Ok(());
        };
        let Ok(request) = DeployRequest::from_args(&args) else {
            return Ok(());
        };
        let text = serde_json::to_string(&ControlRequest::Deploy(Box::new(request.clone())));
        prop_assert!(text.is_ok(), "{:?}", text);
        let parsed = serde_json::from_str::<ControlRequest>(&text.unwrap_or_default());
        let Ok(ControlRequest::Deploy(mut parsed)) = parsed else {
            return Err(TestCaseError::fail(format!("{parsed:?}")));
        };
        // The server normalises what it receives again; a normalised request stays as it is.
        prop_assert!(parsed.normalize().is_ok());
        prop_assert_eq!(parsed.service_options.hosts, request.service_options.hosts);
        prop_assert_eq!(parsed.service_options.path_prefixes, request.service_options.path_prefixes);
        prop_assert_eq!(parsed.deployment.deploy_timeout, request.deployment.deploy_timeout);
    }
}
