//! The README's GitHub Actions workflow (examples/github-actions/deploy.yml), run as far as this
//! machine allows: its steps' commands, with the repository secrets a workflow would get in
//! their environment, in a fresh home directory, against a sandbox server. Checkout is the app
//! directory itself and the install step is the hoist under test on PATH; the rest runs as
//! written: the SSH key and known hosts from secrets, `hoist deploy` building, pushing and
//! deploying with the registry token and the app's secret taken from the environment through a
//! committed `.hoist/secrets` that holds no value.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use support::sandbox::{Sandbox, assert_success, git, init_repository, testapp_dir, text};
use support::{TestContext, http_get};

/// One step of the workflow: its name, `uses`, `env` and `run` script.
#[derive(Debug, Default)]
struct Step {
    name: String,
    uses: Option<String>,
    env: Vec<(String, String)>,
    run: Option<String>,
}

/// The steps of the workflow's job, read from the plain YAML it is written in (block scalars
/// for scripts, `key: value` maps): enough for this file, and a test failure if it changes shape.
fn steps(yaml: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = yaml.lines().peekable();
    let mut in_steps = false;
    let mut in_env = false;
    while let Some(line) = lines.next() {
        if line.trim_end() == "    steps:" {
            in_steps = true;
            continue;
        }
        let trimmed = line.trim_start();
        if !in_steps || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut indent = line.len() - trimmed.len();
        let mut trimmed = trimmed;
        if let Some(rest) = trimmed.strip_prefix("- ") {
            steps.push(Step::default());
            indent += 2;
            trimmed = rest;
        }
        let step = steps.last_mut().expect("steps start with `- `");
        let (key, value) = trimmed
            .split_once(':')
            .unwrap_or_else(|| panic!("not `key: value`: {line}"));
        let value = value.trim();
        match (indent, key) {
            (8, "name") => step.name = value.to_string(),
            (8, "uses") => step.uses = Some(value.to_string()),
            (8, "env") => in_env = true,
            (8, "run") if value == "|" => {
                let mut script = String::new();
                while let Some(next) = lines.peek() {
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent < 10 {
                        break;
                    }
                    script.push_str(next.get(10..).unwrap_or(""));
                    script.push('\n');
                    lines.next();
                }
                step.run = Some(script);
                in_env = false;
            }
            (8, "run") => {
                step.run = Some(value.to_string());
                in_env = false;
            }
            (10, name) if in_env => step.env.push((name.to_string(), value.to_string())),
            _ => panic!("unexpected line in the workflow: {line}"),
        }
    }
    steps
}

/// `${{ secrets.NAME }}` → the repository secret NAME.
fn expand(value: &str, secrets: &BTreeMap<&str, String>) -> String {
    let name = value
        .strip_prefix("${{ secrets.")
        .and_then(|rest| rest.strip_suffix(" }}"))
        .unwrap_or_else(|| panic!("not a secret expression: {value}"));
    secrets
        .get(name)
        .unwrap_or_else(|| panic!("the workflow needs the repository secret {name}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_actions_workflow_deploys_with_secrets_from_the_environment() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "actions", 1);
    let docker = support::docker().await;
    let (username, password) = sandbox.registry_credentials();
    let proxy_image = sandbox.push_proxy_image(&docker, "actions").await;
    let host = sandbox.address(0);

    // The repository as checked out: deploy.toml and .hoist/secrets as the workflow's header
    // says, both committed.
    let dir = testapp_dir("GHCR_TOKEN=$GHCR_TOKEN\nDATABASE_URL=$DATABASE_URL\n");
    std::fs::write(
        dir.path().join("deploy.toml"),
        format!(
            "service = \"hello\"\nimage = \"{registry}/hello\"\n\n\
             [servers.web]\nhosts = [\"{host}\"]\n\n\
             [ssh]\nconnect_timeout = \"3s\"\n\n\
             [registry]\nserver = \"{registry}\"\nusername = \"{username}\"\npassword = \"GHCR_TOKEN\"\n\n\
             [env]\nsecret = [\"DATABASE_URL\"]\n\n\
             [builder]\nargs = {{ VERSION = \"from-ci\" }}\n\n\
             [proxy]\nimage = \"{proxy_image}\"\napp_port = 3000\n\
             healthcheck = {{ interval = \"200ms\", timeout = \"1s\" }}\n",
            registry = sandbox.registry(),
        ),
    )
    .expect("write deploy.toml");
    init_repository(dir.path());
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "app"]);
    let tracked = git(dir.path(), &["ls-files", ".hoist/secrets"]);
    assert_eq!(tracked, ".hoist/secrets", "the secrets file is committed");

    // What the repository's secrets would hold.
    let read = |path: &Path| std::fs::read_to_string(path).expect("read");
    let secrets = BTreeMap::from([
        ("SSH_PRIVATE_KEY", read(&sandbox.key())),
        ("SSH_KNOWN_HOSTS", read(&sandbox.known_hosts())),
        ("GITHUB_TOKEN", password.clone()),
        ("DATABASE_URL", "postgres://db.internal/app".to_string()),
    ]);
    // A runner's fresh home, and hoist on PATH as the install step leaves it.
    let home = tempfile::tempdir().expect("home");
    let bin = Path::new(env!("CARGO_BIN_EXE_hoist"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |script: &str, env: &[(String, String)]| -> Output {
        let mut command = Command::new("bash");
        command
            .args(["-e", "-o", "pipefail", "-c", script])
            .current_dir(dir.path())
            .env("HOME", home.path())
            .env("PATH", &path)
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .env("HOIST_SANDBOX_HOME", context.home.path())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RUST_LOG");
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("run bash")
    };

    let workflow = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/github-actions/deploy.yml"),
    )
    .expect("read the workflow");
    let steps = steps(&workflow);
    let names: Vec<&str> = steps.iter().map(|step| step.name.as_str()).collect();
    assert_eq!(
        names,
        ["", "Install hoist", "SSH key and known hosts", "Deploy"],
        "the workflow's steps changed: update this test"
    );
    assert_eq!(steps[0].uses.as_deref(), Some("actions/checkout@v4"));
    let mut deploy_output = None;
    for step in steps.iter().skip(2) {
        let env: Vec<(String, String)> = step
            .env
            .iter()
            .map(|(name, value)| (name.clone(), expand(value, &secrets)))
            .collect();
        let script = step.run.as_deref().expect("a run step");
        let output = run(script, &env);
        assert_success(&output, &format!("workflow step `{}`", step.name));
        deploy_output = Some(output);
    }

    // The app runs the commit, with its secret; no secret reached hoist's output.
    let (status, body) = http_get(&format!("{host}:80"), "/version").expect("GET /version");
    assert_eq!((status, body.trim()), (200, "from-ci"));
    let deploy_env = steps[3]
        .env
        .iter()
        .map(|(name, value)| (name.clone(), expand(value, &secrets)))
        .collect::<Vec<_>>();
    let env = run("hoist exec --reuse -- /hoist-testapp env", &deploy_env);
    assert_success(&env, "hoist exec env");
    assert!(
        text(&env)
            .0
            .lines()
            .any(|line| line == "DATABASE_URL=postgres://db.internal/app"),
        "{}",
        text(&env).0
    );
    let (stdout, stderr) = text(&deploy_output.expect("the deploy ran"));
    for secret in [password.as_str(), "postgres://db.internal/app"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret in hoist's output:\n{stdout}\n{stderr}"
        );
    }
}
