//! `hoist config` and `hoist init` through the real binary, in a fresh directory per test: what
//! the user reads for each kind of bad configuration (message, key, file:line:column, hint, exit
//! status), the merged output of a destination, and that secret values never show. No Docker.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A temporary app directory and the `hoist` binary run inside it.
struct App {
    dir: tempfile::TempDir,
}

impl App {
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hoist-config-")
            .tempdir()
            .expect("create a temp dir");
        let app = App { dir };
        for (name, text) in files {
            app.write(name, text);
        }
        app
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(path, text).expect("write file");
    }

    fn hoist(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hoist"))
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("run hoist")
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A valid starting point: every bad case below changes one thing.
const BASE: &str = r#"service = "hello"
image = "ghcr.io/acme/hello"
[servers.web]
hosts = ["203.0.113.10"]
"#;

#[test]
fn bad_configurations_name_file_line_column_key_and_fix() {
    struct Case {
        name: &'static str,
        files: Vec<(&'static str, String)>,
        args: &'static [&'static str],
        expected: &'static [&'static str],
    }
    let base = |extra: &str| vec![("deploy.toml", format!("{BASE}{extra}"))];
    let cases = [
        Case {
            name: "typo in a role key",
            files: vec![("deploy.toml", BASE.replace("hosts = [", "hots = ["))],
            args: &["config"],
            expected: &[
                "error: Invalid configuration: deploy.toml:4:1: unknown key `hots` in `[servers.web]`",
                "hint: did you mean `hosts`?",
            ],
        },
        Case {
            name: "unknown top-level key",
            files: vec![("deploy.toml", format!("region = \"eu\"\n{BASE}"))],
            args: &["config"],
            expected: &[
                "deploy.toml:1:1: unknown key `region` at the top level",
                "hint: known keys here: `service`, `image`",
            ],
        },
        Case {
            name: "wrong type",
            files: base("[proxy]\napp_port = \"3000\"\n"),
            args: &["config"],
            expected: &[
                "deploy.toml:6:12: `proxy.app_port` must be an integer",
                "found a string (\"3000\")",
            ],
        },
        Case {
            name: "bad duration",
            files: base("[proxy]\ndeploy_timeout = \"30x\"\n"),
            args: &["config"],
            expected: &[
                "deploy.toml:6:18: `proxy.deploy_timeout`: invalid duration `30x`",
                "`500ms`, `5s`, `1m30s`",
            ],
        },
        Case {
            name: "bad nested duration",
            files: base("[proxy.healthcheck]\ninterval = \"fast\"\n"),
            args: &["config"],
            expected: &["deploy.toml:6:12: `proxy.healthcheck.interval`: invalid duration `fast`"],
        },
        Case {
            name: "bad host",
            files: vec![(
                "deploy.toml",
                BASE.replace("[\"203.0.113.10\"]", "[\"203.0.113.10\", \"bad host\"]"),
            )],
            args: &["config"],
            expected: &[
                "deploy.toml:4:26: `servers.web.hosts[1]`: invalid host `bad host`: hosts can't contain spaces",
            ],
        },
        Case {
            name: "bad role name",
            files: base("[servers.Workers]\nhosts = [\"203.0.113.11\"]\n"),
            args: &["config"],
            expected: &["deploy.toml:5:10: `servers.Workers`: invalid name `Workers`"],
        },
        Case {
            name: "syntax error",
            files: base("[proxy\n"),
            args: &["config"],
            expected: &["deploy.toml:5:7: TOML syntax error"],
        },
        Case {
            name: "tls without hosts",
            files: base("[proxy]\ntls = true\n"),
            args: &["config"],
            expected: &[
                "deploy.toml:6:1: `proxy.tls = true` needs `proxy.hosts`",
                "hint: add `hosts = [\"app.example.com\"]` under `[proxy]`",
            ],
        },
        Case {
            name: "acme without tls",
            files: base("[proxy.acme]\ndirectory = \"letsencrypt-staging\"\n"),
            args: &["config"],
            expected: &[
                "deploy.toml:5:8: `[proxy.acme]` only applies with `proxy.tls = true`",
                "hint: set `tls = true` under `[proxy]`",
            ],
        },
        Case {
            name: "acme directory neither a name nor an https URL",
            files: base(
                "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\n[proxy.acme]\ndirectory = \"http://ca.example.com/dir\"\n",
            ),
            args: &["config"],
            expected: &[
                "deploy.toml:9:1: `http://ca.example.com/dir` is not an ACME directory",
                "hint: use `letsencrypt`, `letsencrypt-staging`, or the https:// URL",
            ],
        },
        Case {
            name: "acme challenge unknown",
            files: base(
                "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\n[proxy.acme]\nchallenge = \"dns-01\"\n",
            ),
            args: &["config"],
            expected: &["deploy.toml:9:13: `proxy.acme.challenge`", "dns-01"],
        },
        Case {
            name: "eab key id without its key",
            files: base(
                "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\n[proxy.acme]\neab_kid = \"kid-1\"\n",
            ),
            args: &["config"],
            expected: &[
                "deploy.toml:9:1: `eab_kid` needs `eab_hmac_key`",
                "hint: add `eab_hmac_key = \"ACME_EAB_HMAC_KEY\"`",
            ],
        },
        Case {
            name: "asset_path on a role without the proxy",
            files: base("[servers.jobs]\nhosts = [\"203.0.113.11\"]\nasset_path = \"/assets\"\n"),
            args: &["config"],
            expected: &[
                "`servers.jobs.asset_path`: asset bridging serves old and new assets through the proxy",
                "hint: remove it, or set `proxy = true` under `[servers.jobs]`",
            ],
        },
        Case {
            name: "asset_path not absolute",
            files: vec![("deploy.toml", format!("asset_path = \"public\"\n{BASE}"))],
            args: &["config"],
            expected: &["invalid path `public`: expected an absolute directory of the image"],
        },
        Case {
            name: "a certificate without its key",
            files: base(
                "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\nssl_certificate = \"CERT\"\n",
            ),
            args: &["config"],
            expected: &[
                "deploy.toml:8:1: `ssl_certificate` needs `ssl_private_key`",
                "hint: add `ssl_private_key = \"SSL_PRIVATE_KEY\"` under `[proxy]`",
            ],
        },
        Case {
            name: "a certificate without tls",
            files: base("[proxy]\nssl_certificate = \"CERT\"\nssl_private_key = \"KEY\"\n"),
            args: &["config"],
            expected: &[
                "deploy.toml:6:1: `ssl_certificate` only applies with `proxy.tls = true`",
                "hint: set `tls = true` under `[proxy]`",
            ],
        },
        Case {
            name: "a certificate and acme",
            files: base(
                "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\nssl_certificate = \"CERT\"\n\
                 ssl_private_key = \"KEY\"\n[proxy.acme]\ndirectory = \"letsencrypt-staging\"\n",
            ),
            args: &["config"],
            expected: &[
                "`[proxy.acme]` and `ssl_certificate` exclude each other",
                "hint: remove `[proxy.acme]`, or `ssl_certificate` and `ssl_private_key`",
            ],
        },
        Case {
            name: "a certificate's secret undefined",
            files: base(
                "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\nssl_certificate = \"CERT\"\n\
                 ssl_private_key = \"KEY\"\n",
            ),
            args: &["config"],
            expected: &["error: Secret `CERT` is not defined (deploy.toml:8:1 names it)"],
        },
        Case {
            name: "error in the destination file points into it",
            files: vec![
                ("deploy.toml", BASE.to_string()),
                (
                    "deploy.staging.toml",
                    "# staging\n[ssh]\nhost_key_checking = \"yes\"\n".to_string(),
                ),
            ],
            args: &["config", "staging"],
            expected: &["deploy.staging.toml:3:21: `ssh.host_key_checking`: invalid value `yes`"],
        },
        Case {
            name: "missing secret",
            files: base("[env]\nsecret = [\"DATABASE_URL\"]\n"),
            args: &["config"],
            expected: &[
                "error: Secret `DATABASE_URL` is not defined (deploy.toml:6:11 names it)",
                "hint: add `DATABASE_URL=...` to .hoist/secrets",
            ],
        },
        Case {
            name: "unknown destination",
            files: vec![
                ("deploy.toml", BASE.to_string()),
                ("deploy.staging.toml", String::new()),
                ("deploy.production.toml", String::new()),
            ],
            args: &["config", "prod"],
            expected: &[
                "error: Unknown destination `prod`: `deploy.prod.toml` does not exist",
                "hint: destinations here: `production`, `staging`",
            ],
        },
        Case {
            name: "two different destinations",
            files: base(""),
            args: &["-d", "prod", "config", "staging"],
            expected: &["Two different destinations given: `staging` and `--destination prod`"],
        },
        Case {
            name: "missing deploy.toml",
            files: vec![],
            args: &["config"],
            expected: &[
                "error: Configuration file `deploy.toml` not found",
                "hint: run `hoist init`",
            ],
        },
    ];
    for case in cases {
        let app = App::new(&[]);
        for (name, text) in &case.files {
            app.write(name, text);
        }
        let output = app.hoist(case.args);
        let err = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}: exit status\n```\n{err}```",
            case.name
        );
        for fragment in case.expected {
            assert!(
                err.contains(fragment),
                "{}: expected `{fragment}` in\n```\n{err}```",
                case.name
            );
        }
        assert!(
            stdout(&output).is_empty(),
            "{}: no data on failure",
            case.name
        );
    }
}

#[test]
fn invalid_key_report_shows_the_source_line() {
    let app = App::new(&[("deploy.toml", &BASE.replace("hosts = [", "hots = ["))]);
    let output = app.hoist(&["config"]);
    assert_eq!(
        stderr(&output),
        "error: Invalid configuration: deploy.toml:4:1: unknown key `hots` in `[servers.web]`\n  |\n4 | hots = [\"203.0.113.10\"]\n  | ^^^^\n\nhint: did you mean `hosts`?\n"
    );
}

#[test]
fn destination_is_merged_over_deploy_toml() {
    let app = App::new(&[
        (
            "deploy.toml",
            r#"service = "hello"
image = "ghcr.io/acme/hello"
[servers.web]
hosts = ["203.0.113.10", "203.0.113.11"]
cmd = "bin/server"
[proxy]
app_port = 3000
healthcheck = { path = "/health", interval = "2s" }
[env]
clear = { RUST_LOG = "info", REGION = "eu" }
"#,
        ),
        (
            "deploy.staging.toml",
            r#"[servers.web]
hosts = ["198.51.100.7"]
[proxy.healthcheck]
interval = "500ms"
[env.clear]
RUST_LOG = "debug"
"#,
        ),
    ]);
    let output = app.hoist(&["config", "staging"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "merged from deploy.toml + deploy.staging.toml",
        "hosts = [\"198.51.100.7\"]\n",
        "cmd = \"bin/server\"",
        "app_port = 3000",
        "path = \"/health\"",
        "interval = \"500ms\"",
        "RUST_LOG = \"debug\"",
        "REGION = \"eu\"",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in\n{text}");
    }
    assert!(
        !text.contains("203.0.113.10"),
        "arrays are replaced:\n{text}"
    );

    // The same with -d and --json.
    let output = app.hoist(&["-d", "staging", "config", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["destination"], "staging");
    assert_eq!(json["servers"]["web"]["hosts"][0], "198.51.100.7");
    assert_eq!(json["proxy"]["healthcheck"]["interval"], "500ms");
}

#[test]
fn secret_commands_do_not_run_and_values_never_show() {
    let app = App::new(&[
        (
            "deploy.toml",
            &format!(
                "{BASE}[registry]\nusername = \"acme\"\npassword = \"GHCR_TOKEN\"\n[env]\nsecret = [\"DATABASE_URL\"]\n"
            ),
        ),
        (
            ".hoist/secrets",
            "GHCR_TOKEN=$(touch command-ran; echo ghp_supersecret123)\nDATABASE_URL=postgres://u:plainsecret456@db/x\n",
        ),
    ]);
    let output = app.hoist(&["config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let all = format!("{}{}", stdout(&output), stderr(&output));
    assert!(all.contains("password = \"GHCR_TOKEN\""), "{all}");
    assert!(all.contains("\"DATABASE_URL\""), "{all}");
    for value in ["ghp_supersecret123", "plainsecret456"] {
        assert!(!all.contains(value), "secret value shown:\n{all}");
    }
    assert!(
        !app.path().join("command-ran").exists(),
        "`hoist config` ran a secret's command"
    );
    let output = app.hoist(&["config", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stdout(&output).contains("ghp_supersecret123"));
}

#[test]
fn init_writes_a_starter_that_asks_for_its_secret() {
    let app = App::new(&[(".gitignore", "/target")]);
    let output = app.hoist(&["init"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let status = stderr(&output);
    assert!(status.contains("Created deploy.toml"), "{status}");
    assert!(status.contains("Created .hoist/secrets"), "{status}");
    assert!(
        status.contains("Created hooks/pre-deploy.sample"),
        "{status}"
    );
    assert!(status.contains("Updated .gitignore"), "{status}");

    use std::os::unix::fs::PermissionsExt;
    let mode = |name: &str| {
        std::fs::metadata(app.path().join(name))
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(".hoist/secrets"), 0o600);
    assert_eq!(mode("hooks/post-deploy.sample"), 0o755);
    let gitignore = std::fs::read_to_string(app.path().join(".gitignore")).expect("read");
    assert_eq!(gitignore, "/target\n.hoist/secrets*\n");

    // The starter loads; what's left is the registry token, which `hoist config` asks for.
    let output = app.hoist(&["config"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("error: Secret `GHCR_TOKEN` is not defined (deploy.toml:"),
        "{err}"
    );
    assert!(
        err.contains("hint: add `GHCR_TOKEN=...` to .hoist/secrets"),
        "{err}"
    );

    let secrets = std::fs::read_to_string(app.path().join(".hoist/secrets")).expect("read");
    app.write(
        ".hoist/secrets",
        &format!("{secrets}GHCR_TOKEN=$(gh auth token)\n"),
    );
    let output = app.hoist(&["config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let service = app
        .path()
        .file_name()
        .map(|name| name.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    assert!(
        stdout(&output).contains(&format!("service = \"{service}\"")),
        "{}",
        stdout(&output)
    );

    // A second init refuses to overwrite deploy.toml and leaves .gitignore alone.
    let output = app.hoist(&["init"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("error: `deploy.toml` already exists"),
        "{}",
        stderr(&output)
    );
    let gitignore = std::fs::read_to_string(app.path().join(".gitignore")).expect("read");
    assert_eq!(gitignore.matches(".hoist/secrets*").count(), 1);
}

#[test]
fn config_file_option_reads_another_file_and_its_destinations() {
    let app = App::new(&[
        ("ops/app.toml", BASE),
        ("ops/app.prod.toml", "[proxy]\napp_port = 8080\n"),
    ]);
    let output = app.hoist(&["-c", "ops/app.toml", "config", "prod"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("app_port = 8080"));
    let output = app.hoist(&["-c", "ops/app.toml", "config", "staging"]);
    let err = stderr(&output);
    assert!(
        err.contains("`ops/app.staging.toml` does not exist") && err.contains("`prod`"),
        "{err}"
    );
}

#[test]
fn aliases_expand_to_commands_and_a_destination_can_be_required() {
    let app = App::new(&[
        (
            "deploy.toml",
            &format!(
                "{BASE}\n[aliases]\nshow = \"config --json\"\nloop = \"show\"\n\
                 bad = \"deploy --no-such-flag\"\n"
            ),
        ),
        (
            "deploy.staging.toml",
            "[servers.web]\nhosts = [\"203.0.113.9\"]\n",
        ),
    ]);
    // `hoist show` runs `hoist config --json`; the command line's global options still apply.
    let output = app.hoist(&["show", "-d", "staging"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(json["servers"]["web"]["hosts"][0], "203.0.113.9", "{json}");
    // An alias never expands to another, nor to a bad command line; a typo gets a suggestion.
    let output = app.hoist(&["loop"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("never to another alias"),
        "{}",
        stderr(&output)
    );
    let output = app.hoist(&["bad"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("The alias `bad` (`deploy --no-such-flag`) is not a hoist"),
        "{}",
        stderr(&output)
    );
    let output = app.hoist(&["confg"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("did you mean `hoist config`?"),
        "{}",
        stderr(&output)
    );
    let output = app.hoist(&["nothing-like-it"]);
    assert!(
        stderr(&output).contains("aliases: `bad`, `loop`, `show`"),
        "{}",
        stderr(&output)
    );

    // An alias named like a command would never run: refused.
    app.write(
        "deploy.toml",
        &format!("{BASE}\n[aliases]\ndeploy = \"config\"\n"),
    );
    let output = app.hoist(&["config"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output)
            .contains("The alias `deploy` in `[aliases]` has the name of a hoist command"),
        "{}",
        stderr(&output)
    );

    // `require_destination = true`: no command runs without one.
    app.write(
        "deploy.toml",
        &format!("require_destination = true\n{BASE}"),
    );
    let output = app.hoist(&["config"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("`require_destination = true`")
            && stderr(&output).contains("-d staging"),
        "{}",
        stderr(&output)
    );
    let output = app.hoist(&["config", "-d", "staging"]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn secrets_path_names_the_secrets_file_and_minimum_version_guards_old_hoists() {
    let base = format!("{BASE}\n[env]\nsecret = [\"API_KEY\"]\n");
    let app = App::new(&[
        (
            "deploy.toml",
            &format!("secrets_path = \"config/deploy.env\"\n{base}"),
        ),
        ("config/deploy.env", "API_KEY=from-config\n"),
        ("deploy.staging.toml", ""),
        (
            "config/deploy.env.staging",
            "API_KEY=staging\nnot a definition\n",
        ),
    ]);
    let output = app.hoist(&["config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stdout(&output).contains("from-config"), "a value shown");
    // The destination's file is that path with `.staging` after it.
    let output = app.hoist(&["config", "-d", "staging"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("config/deploy.env.staging:2"),
        "{}",
        stderr(&output)
    );
    // .hoist/secrets is not read once secrets_path names another file.
    app.write(
        "deploy.toml",
        &format!("secrets_path = \"elsewhere.env\"\n{base}"),
    );
    app.write(".hoist/secrets", "API_KEY=ignored\n");
    let output = app.hoist(&["config"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stderr(&output).contains("API_KEY"), "{}", stderr(&output));

    app.write(
        "deploy.toml",
        &format!("minimum_version = \"999.0\"\n{BASE}"),
    );
    let output = app.hoist(&["config"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("this configuration needs hoist 999.0 or newer"),
        "{}",
        stderr(&output)
    );
    app.write(
        "deploy.toml",
        &format!("minimum_version = \"0.0.1\"\n{BASE}"),
    );
    assert!(app.hoist(&["config"]).status.success());
    app.write(
        "deploy.toml",
        &format!("minimum_version = \"soon\"\n{BASE}"),
    );
    let output = app.hoist(&["config"]);
    assert!(
        stderr(&output).contains("is not a version"),
        "{}",
        stderr(&output)
    );
}
