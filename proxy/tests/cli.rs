//! Runs the built `hoist-proxy` binary and checks what a user (or Kamal) sees: help listings,
//! the `Error: …` line with exit status 1, and the version. Flag parsing details are unit-tested
//! in src/cli.rs.

use std::process::{Command, Output};

/// Runs `hoist-proxy` with `args` and an environment free of `HOIST_PROXY_*` overrides.
fn hoist_proxy(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hoist-proxy"));
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HOIST_PROXY_") {
            command.env_remove(name);
        }
    }
    command.output().expect("failed to run hoist-proxy")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that `text` has a line starting (after indentation) with `word`.
fn assert_lists(text: &str, word: &str) {
    assert!(
        text.lines().any(|line| line.trim_start().starts_with(word)),
        "expected `{word}` in:\n```\n{text}\n```"
    );
}

#[test]
fn help_lists_every_command() {
    let output = hoist_proxy(&["--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let help = stdout(&output);
    for command in [
        "run", "deploy", "remove", "pause", "stop", "resume", "list", "rollout", "version",
    ] {
        assert_lists(&help, command);
    }
    assert!(help.contains("[alias: rm]"), "{help}");
    assert!(help.contains("[alias: ls]"), "{help}");
}

#[test]
fn deploy_help_lists_the_main_flags() {
    let output = hoist_proxy(&["deploy", "--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let help = stdout(&output);
    for flag in [
        "--target <HOST:PORT>",
        "--health-check-path <PATH>",
        "--drain-timeout <DURATION>",
        "--tls[=<BOOL>]",
    ] {
        assert_lists(&help, flag);
    }
}

#[test]
fn rollout_help_lists_its_commands() {
    let output = hoist_proxy(&["rollout", "--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let help = stdout(&output);
    for command in ["deploy", "set", "stop"] {
        assert_lists(&help, command);
    }
}

#[test]
fn bad_duration_exits_1_naming_the_flag_and_the_value() {
    let output = hoist_proxy(&["deploy", "s", "--target", "a:1", "--deploy-timeout", "3x"]);
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(error.starts_with("Error: "), "{error}");
    assert!(error.contains("--deploy-timeout"), "{error}");
    assert!(error.contains("3x"), "{error}");
    assert!(stdout(&output).is_empty());
}

#[test]
fn boolean_value_after_a_space_is_refused_like_pflag() {
    let output = hoist_proxy(&["deploy", "s", "--target", "a:1", "--tls", "false"]);
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(
        error.starts_with("Error: unexpected argument 'false'"),
        "{error}"
    );
}

#[test]
fn control_commands_without_a_running_proxy_say_where_they_looked() {
    let socket = "/nonexistent/hoist-proxy-test.sock";
    for args in [
        &["deploy", "s", "--target=web:1", "--tls-redirect=false"][..],
        &["rm", "s"],
        &["pause", "s", "--max-pause=2s"],
        &["stop", "s", "--message", "Back soon"],
        &["resume", "s"],
        &["ls"],
        &["rollout", "deploy", "s", "--target=web:1"],
        &["rollout", "set", "s", "--percent=10"],
        &["rollout", "stop", "s"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--socket", socket]);
        let output = hoist_proxy(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let error = stderr(&output);
        assert!(
            error.starts_with(&format!("Error: cannot reach hoist-proxy on {socket}: ")),
            "{args:?}: {error}"
        );
        assert!(error.contains("is `hoist-proxy run` running"), "{error}");
    }
}

#[test]
fn invalid_deploy_options_are_refused_before_contacting_the_proxy() {
    for (flag, expected) in [
        ("--target=http://a:1", "Error: invalid target `http://a:1`"),
        ("--host=bad host", "Error: invalid host `bad host`"),
    ] {
        let args = if flag.starts_with("--target") {
            vec!["deploy", "s", flag, "--socket", "/nonexistent.sock"]
        } else {
            vec![
                "deploy",
                "s",
                "--target=web:1",
                flag,
                "--socket",
                "/nonexistent.sock",
            ]
        };
        let output = hoist_proxy(&args);
        assert_eq!(output.status.code(), Some(1));
        assert!(stderr(&output).starts_with(expected), "{}", stderr(&output));
    }
}

#[test]
fn run_reports_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let state = std::env::temp_dir().join(format!("hoist-proxy-cli-test-{}", std::process::id()));
    let output = hoist_proxy(&[
        "run",
        "--bind=127.0.0.1",
        "--http-port",
        &port,
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_dir_all(&state);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(&format!(
            "Error: cannot listen for HTTP on 127.0.0.1:{port}"
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn version_prints_the_crate_version() {
    let output = hoist_proxy(&["version"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("{}\n", env!("CARGO_PKG_VERSION")));
}
