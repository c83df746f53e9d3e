//! Releases end to end: `hoist deploy`, `redeploy`, `rollback`, `versions` and `lock` against a
//! sandbox server (OpenSSH, its own dockerd), the sandbox registry with a password, hoist-proxy
//! built from the repo's Dockerfile and the test app built by hoist from a git repository.
//! Traffic goes through the proxy on the server's port 80 while releases run; every failed
//! request is counted.

mod support;

use std::path::PathBuf;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use support::load::Load;
use support::sandbox::{
    Sandbox, assert_success, git, init_repository, testapp_dir, text, write_config, write_hook,
};
use support::{TestContext, http_get};

/// Every hook, each appending `name version service hosts destination performer runtime` and,
/// for the hooks given secrets, whether the registry password reached it.
const HOOKS: [&str; 6] = [
    "pre-connect",
    "pre-build",
    "pre-deploy",
    "pre-app-boot",
    "post-app-boot",
    "post-deploy",
];

/// The test app in a git repository, deployed to one sandbox server as destination `staging`.
struct App<'a> {
    context: &'a TestContext,
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    host: String,
}

impl<'a> App<'a> {
    async fn new(context: &'a TestContext, sandbox: Sandbox) -> App<'a> {
        let docker = support::docker().await;
        let registry = sandbox.registry();
        let (username, password) = sandbox.registry_credentials();
        let proxy_image = sandbox.push_proxy_image(&docker, "proxy").await;
        let dir = testapp_dir(&format!("REGISTRY_PASSWORD={password}\n"));
        std::fs::write(dir.path().join(".gitignore"), ".hoist/secrets*\nmarkers*\n")
            .expect("write .gitignore");
        for hook in HOOKS {
            let mut script = String::from("#!/bin/sh\nset -e\n");
            script.push_str(&format!(
                "echo \"{hook} $HOIST_VERSION $HOIST_SERVICE $HOIST_HOSTS $HOIST_DESTINATION \
                 $HOIST_PERFORMER ${{HOIST_RUNTIME:-no-runtime}} ${{REGISTRY_PASSWORD:+has-secret}}\" \
                 >> \"$HOIST_TEST_MARKERS\"\n"
            ));
            if hook == "pre-deploy" {
                script.push_str(
                    "if [ -e \"$HOIST_TEST_MARKERS.fail\" ]; then echo 'pre-deploy says no' >&2; exit 7; fi\n\
                     if [ -e \"$HOIST_TEST_MARKERS.slow\" ]; then sleep 3; fi\n",
                );
            }
            if hook == "post-deploy" {
                // The lock is still held here: a nested hoist sees it.
                script.push_str(
                    "\"$HOIST_TEST_BIN\" lock status -d staging >> \"$HOIST_TEST_MARKERS\"\n",
                );
            }
            write_hook(dir.path(), hook, &script);
        }

        let host = sandbox.address(0);
        write_config(
            dir.path(),
            &sandbox,
            std::slice::from_ref(&host),
            "",
            &format!(
                "[registry]\nserver = \"{registry}\"\nusername = \"{username}\"\n\
                 password = \"REGISTRY_PASSWORD\"\n\
                 \n[proxy]\nimage = \"{proxy_image}\"\napp_port = 3000\n\
                 deploy_timeout = \"4s\"\ndrain_timeout = \"5s\"\n\
                 [proxy.healthcheck]\ninterval = \"200ms\"\ntimeout = \"1s\"\n"
            ),
        );
        let app = App {
            context,
            sandbox,
            dir,
            host,
        };
        init_repository(app.dir.path());
        app
    }

    fn git(&self, args: &[&str]) -> String {
        git(self.dir.path(), args)
    }

    /// Commit a release answering `/version` with `label` (its `/up` failing if `broken`);
    /// returns the commit, which is the version hoist deploys.
    fn commit(&self, label: &str, broken: bool) -> String {
        let broken = if broken { ", BROKEN = \"1\"" } else { "" };
        std::fs::write(
            self.dir.path().join("deploy.staging.toml"),
            format!("[builder]\nargs = {{ VERSION = \"{label}\"{broken} }}\n"),
        )
        .expect("write deploy.staging.toml");
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", label]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn markers(&self) -> PathBuf {
        self.dir.path().join("markers")
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = self.context.hoist_command(self.dir.path(), args);
        command
            .env("HOIST_TEST_MARKERS", self.markers())
            .env("HOIST_TEST_BIN", env!("CARGO_BIN_EXE_hoist"));
        command
    }

    fn hoist(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hoist")
    }

    fn hoist_ok(&self, args: &[&str]) -> Output {
        let output = self.hoist(args);
        assert_success(&output, &format!("hoist {}", args.join(" ")));
        output
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn hoist")
    }

    /// What `/version` answers through the proxy.
    fn version(&self) -> String {
        let (status, body) = http_get(&format!("{}:80", self.host), "/version").expect("GET");
        assert_eq!(status, 200, "GET /version answered {status}: {body}");
        body.trim().to_string()
    }

    /// `NAME STATE` of every container of the app on the server, sorted.
    fn containers(&self) -> Vec<String> {
        let output = self.sandbox.ssh(
            0,
            "docker ps -a --filter label=service=hello --format '{{.Names}} {{.State}}' | sort",
        );
        assert_success(&output, "docker ps");
        text(&output).0.lines().map(str::to_string).collect()
    }
}

/// Run `action` under load; asserts zero failed requests and enough traffic to mean it.
fn under_load<T>(app: &App, what: &str, action: impl FnOnce() -> T) -> (T, Vec<String>) {
    let load = Load::start(format!("{}:80", app.host), 4);
    std::thread::sleep(Duration::from_millis(300));
    let result = action();
    std::thread::sleep(Duration::from_millis(300));
    let seen = load.finish_clean(what, 51);
    (result, seen)
}

fn hook_lines(app: &App) -> Vec<String> {
    std::fs::read_to_string(app.markers())
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A secret value that must never reach hoist's output.
const CANARY: &str = "canary-5ecret-XYZ";

/// Deploy `version` (whose config names the secret `APP_SECRET` = [`CANARY`]) with every log
/// RUST_LOG can ask for, including the bollard module that logs request bodies: the canary
/// reaches the container's environment but never stdout or stderr.
fn assert_secret_never_logged(app: &App, version: &str) {
    let output = app
        .command(&["deploy", "staging"])
        .env("RUST_LOG", "trace,bollard::docker=trace")
        .output()
        .expect("run hoist");
    assert_success(&output, "deploy with RUST_LOG=trace,bollard::docker=trace");
    let (stdout, stderr) = text(&output);
    assert!(
        stderr.contains("DEBUG") && stderr.contains("Docker engine reached"),
        "RUST_LOG turned hoist's logs on:\n{stderr}"
    );
    // The proxy's routes, status and the switch went through its control socket over SSH, not
    // `docker exec` (two round trips and a process each).
    let execs: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("Docker request") && line.contains("/hoist-proxy/exec"))
        .collect();
    assert!(
        execs.is_empty(),
        "docker exec into hoist-proxy:\n{}",
        execs.join("\n")
    );
    assert!(
        !stdout.contains(CANARY),
        "the secret is in stdout:\n{stdout}"
    );
    assert!(
        !stderr.contains(CANARY),
        "the secret is in stderr:\n{}",
        stderr
            .lines()
            .filter(|line| line.contains(CANARY))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let output = app.sandbox.ssh(
        0,
        &format!("docker inspect --format '{{{{json .Config.Env}}}}' hello-web-staging-{version}"),
    );
    assert_success(&output, "docker inspect");
    assert!(
        text(&output).0.contains(&format!("APP_SECRET={CANARY}")),
        "the secret reached the container: {}",
        text(&output).0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_redeploy_rollback_with_zero_failed_requests_and_a_broken_version_never_served() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "deploy", 1);
    let app = App::new(&context, sandbox).await;
    let host = app.host.clone();

    // v1: the first deploy boots hoist-proxy and the app; every hook runs once, in order.
    let v1 = app.commit("v1", false);
    let started = Instant::now();
    let output = app.hoist_ok(&["deploy", "staging"]);
    eprintln!("first deploy took {:?}", started.elapsed());
    assert_eq!(app.version(), "v1");
    let (_, stderr) = text(&output);
    assert!(stderr.contains("hoist-proxy created from"), "{stderr}");
    let lines = hook_lines(&app);
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| HOOKS.contains(name))
        .collect();
    assert_eq!(names, HOOKS, "hooks ran in this order: {lines:#?}");
    for line in lines
        .iter()
        .filter(|l| HOOKS.iter().any(|h| l.starts_with(h)))
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            &fields[1..6],
            [
                v1.as_str(),
                "hello",
                host.as_str(),
                "staging",
                "deployer@example.com"
            ],
            "{line}"
        );
        let post = fields[0].starts_with("post-");
        assert_eq!(
            fields[6] != "no-runtime",
            post,
            "HOIST_RUNTIME only in post hooks: {line}"
        );
        let secret = matches!(fields[0], "pre-connect" | "pre-deploy" | "post-deploy");
        assert_eq!(
            fields.get(7) == Some(&"has-secret"),
            secret,
            "secrets only in pre-connect, pre-deploy, post-deploy: {line}"
        );
    }
    let post_deploy_lock = lines.last().expect("post-deploy's lock status");
    assert!(
        post_deploy_lock.starts_with("Locked on")
            && post_deploy_lock.contains("deployer@example.com"),
        "the lock is held during post-deploy: {lines:#?}"
    );
    assert!(
        text(&app.hoist_ok(&["lock", "status", "-d", "staging"]))
            .0
            .starts_with("Unlocked"),
        "the lock is released after the deploy"
    );
    assert_eq!(
        app.containers(),
        [format!("hello-web-staging-{v1} running")],
    );

    // Another app whose (service, role) makes the same proxy service name, `hello-web` + role
    // `staging` = `hello-web-staging`, is refused before it changes anything: the proxy keeps
    // routing to v1 and no container of the other app exists.
    let config = std::fs::read_to_string(app.dir.path().join("deploy.toml")).expect("read");
    let other = config
        .replacen(
            "service = \"hello\"",
            "service = \"hello-web\"\nhooks_path = \"none\"",
            1,
        )
        .replacen("[servers.web]\n", "[servers.staging]\nproxy = true\n", 1);
    std::fs::write(app.dir.path().join("other-app.toml"), other).expect("write other-app.toml");
    let output = app.hoist(&[
        "-c",
        "other-app.toml",
        "deploy",
        "--skip-build",
        "--version",
        &v1,
    ]);
    std::fs::remove_file(app.dir.path().join("other-app.toml")).expect("remove other-app.toml");
    assert!(
        !output.status.success(),
        "a deploy onto another app's route must fail"
    );
    let (_, stderr) = text(&output);
    for expected in [
        "already routes `hello-web-staging`",
        "service `hello`, role `web`, destination `staging`",
        "service `hello-web`, role `staging`",
        "nothing was changed",
        "hint:",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    assert_eq!(app.version(), "v1");
    assert_eq!(
        app.containers(),
        [format!("hello-web-staging-{v1} running")],
    );
    let output = app
        .sandbox
        .ssh(0, "docker ps -aq --filter label=service=hello-web | wc -l");
    assert_eq!(text(&output).0.trim(), "0", "no container of the other app");

    // v2 under continuous load: zero failed requests, then v2 answers.
    let v2 = app.commit("v2", false);
    let (output, seen) = under_load(&app, "deploy v2", || app.hoist(&["deploy", "staging"]));
    assert_success(&output, "deploy v2");
    assert_eq!(seen.last().map(String::as_str), Some("v2"), "{seen:?}");
    assert_eq!(app.version(), "v2");

    // A broken v3: non-zero exit naming the probed URL with the container's log; v2 serves
    // throughout; no v3 container left; the lock is free.
    let v3 = app.commit("v3", true);
    let (output, seen) = under_load(&app, "broken v3", || app.hoist(&["deploy", "staging"]));
    assert!(!output.status.success(), "a broken deploy must fail");
    assert_eq!(seen, ["v2"], "only v2 was ever served");
    let (_, stderr) = text(&output);
    for expected in [
        "GET http://",
        ":3000/up",
        "503",
        "health check failing on purpose",
        "keeps serving",
        "hint:",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    assert!(
        !app.containers().iter().any(|c| c.contains(&v3)),
        "no v3 container is left: {:?}",
        app.containers()
    );
    assert_eq!(app.version(), "v2");
    assert!(
        text(&app.hoist_ok(&["lock", "status", "-d", "staging"]))
            .0
            .starts_with("Unlocked")
    );

    // Rollback (to the version live before v2) under load.
    let (output, seen) = under_load(&app, "rollback", || {
        app.hoist(&["rollback", "-d", "staging"])
    });
    assert_success(&output, "rollback");
    assert_eq!(seen.last().map(String::as_str), Some("v1"), "{seen:?}");
    let versions = text(&app.hoist_ok(&["versions", "staging"])).0;
    let live: Vec<&str> = versions.lines().filter(|l| l.contains("(live)")).collect();
    assert_eq!(live.len(), 1, "{versions}");
    assert!(
        live[0].contains(&v1) && live[0].contains("running"),
        "{versions}"
    );
    assert!(versions.contains(&v2), "{versions}");

    // Redeploy of the live version under load: a fresh container, the same version, no failure.
    let (output, _) = under_load(&app, "redeploy v1", || {
        app.hoist(&["redeploy", "staging", "--version", &v1, "--skip-build"])
    });
    assert_success(&output, "redeploy");
    assert_eq!(app.version(), "v1");
    let containers = app.containers();
    assert_eq!(
        containers.iter().filter(|c| c.contains(&v1)).count(),
        1,
        "one container of v1: {containers:?}"
    );

    // Audit log on the server: one line per release.
    let output = app.sandbox.ssh(0, "cat ~/.hoist/hello-staging/audit.log");
    assert_success(&output, "read the audit log");
    let audit = text(&output).0;
    assert!(audit.contains(&format!("Deployed version {v2}")), "{audit}");
    assert!(
        audit.contains(&format!("Rolled back to version {v1}")),
        "{audit}"
    );
    assert!(audit.contains("[deployer@example.com]"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_admits_one_deploy_pre_deploy_can_veto_ctrl_c_is_safe_and_old_versions_are_pruned()
{
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "lock", 1);
    let app = App::new(&context, sandbox).await;
    let v1 = app.commit("v1", false);
    app.hoist_ok(&["deploy", "staging"]);

    // Two deploys at once (pre-deploy holds the first for 3 s): exactly one proceeds, the other
    // names the holder.
    std::fs::write(app.markers().with_extension("slow"), "").expect("slow");
    let first = app.spawn(&["deploy", "staging", "--version", &v1, "--skip-build"]);
    let second = app.spawn(&["deploy", "staging", "--version", &v1, "--skip-build"]);
    let outputs = [
        first.wait_with_output().expect("first"),
        second.wait_with_output().expect("second"),
    ];
    std::fs::remove_file(app.markers().with_extension("slow")).expect("not slow");
    let succeeded = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(succeeded, 1, "exactly one deploy proceeds: {outputs:#?}");
    let refused = outputs
        .iter()
        .find(|o| !o.status.success())
        .expect("one refused");
    let (_, stderr) = text(refused);
    assert!(
        stderr.contains("deploy lock")
            && stderr.contains("held by deployer@example.com (deploy of"),
        "{stderr}"
    );
    assert!(stderr.contains("hoist lock release"), "{stderr}");

    // A failing pre-deploy stops the deploy before any container changes.
    let v2 = app.commit("v2", false);
    let before = app.containers();
    std::fs::write(app.markers().with_extension("fail"), "").expect("fail");
    let output = app.hoist(&["deploy", "staging"]);
    std::fs::remove_file(app.markers().with_extension("fail")).expect("no fail");
    assert!(!output.status.success());
    let (_, stderr) = text(&output);
    assert!(stderr.contains("Hook `pre-deploy` failed"), "{stderr}");
    assert!(stderr.contains("pre-deploy says no"), "{stderr}");
    assert_eq!(app.containers(), before, "no container changed");
    assert_eq!(app.version(), "v1");
    assert!(
        text(&app.hoist_ok(&["lock", "status", "-d", "staging"]))
            .0
            .starts_with("Unlocked")
    );

    // Ctrl-C during pre-deploy: the deploy stops at the next safe point, v1 keeps serving, no
    // v2 container is left, the lock is released.
    let pre_deploys = || {
        hook_lines(&app)
            .iter()
            .filter(|l| l.starts_with("pre-deploy"))
            .count()
    };
    let before = pre_deploys();
    std::fs::write(app.markers().with_extension("slow"), "").expect("slow");
    let child = app.spawn(&["deploy", "staging", "--skip-build", "--version", &v2]);
    let pid = child.id();
    assert!(
        support::eventually(Duration::from_secs(20), || pre_deploys() > before),
        "pre-deploy started"
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait");
    std::fs::remove_file(app.markers().with_extension("slow")).expect("not slow");
    assert!(!output.status.success());
    let (_, stderr) = text(&output);
    assert!(stderr.contains("Interrupted"), "{stderr}");
    assert!(
        stderr.contains("previous version keeps serving"),
        "{stderr}"
    );
    assert_eq!(app.version(), "v1");
    assert!(
        !app.containers().iter().any(|c| c.contains(&v2)),
        "{:?}",
        app.containers()
    );
    assert!(
        text(&app.hoist_ok(&["lock", "status", "-d", "staging"]))
            .0
            .starts_with("Unlocked")
    );

    // Taken by hand with a message: a deploy is refused naming the holder and the message, a
    // second acquire too, until `hoist lock release`.
    app.hoist_ok(&[
        "lock",
        "acquire",
        "-m",
        "restoring the database",
        "-d",
        "staging",
    ]);
    let status = text(&app.hoist_ok(&["lock", "status", "-d", "staging"])).0;
    assert!(
        status.starts_with("Locked") && status.contains("restoring the database"),
        "{status}"
    );
    let output = app.hoist(&["deploy", "staging", "--skip-build", "--version", &v1]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("restoring the database"), "{stderr}");
    let again = app.hoist(&["lock", "acquire", "-m", "twice", "-d", "staging"]);
    let (_, stderr) = text(&again);
    assert!(!again.status.success(), "{stderr}");
    assert!(stderr.contains("already held by"), "{stderr}");
    app.hoist_ok(&["lock", "release", "-d", "staging"]);
    assert_eq!(app.version(), "v1");

    // Retention: after 7 deploys, exactly 5 stopped versions remain (and the live one), and the
    // image of the oldest pruned version is gone from the server.
    app.hoist_ok(&["deploy", "staging"]); // v2
    let mut versions = vec![v1.clone(), v2];
    for n in 3..=7 {
        if n == 3 {
            // From v3 on the app has a secret; v3 is deployed with everything logged that
            // RUST_LOG can turn on, and the secret must not appear in what hoist prints.
            let config_path = app.dir.path().join("deploy.toml");
            let mut config = std::fs::read_to_string(&config_path).expect("read deploy.toml");
            config.push_str("\n[env]\nsecret = [\"APP_SECRET\"]\n");
            std::fs::write(&config_path, config).expect("write deploy.toml");
            let secrets_path = app.dir.path().join(".hoist/secrets");
            let mut secrets = std::fs::read_to_string(&secrets_path).expect("read secrets");
            secrets.push_str(&format!("APP_SECRET={CANARY}\n"));
            std::fs::write(&secrets_path, secrets).expect("write secrets");
        }
        let version = app.commit(&format!("v{n}"), false);
        if n == 3 {
            assert_secret_never_logged(&app, &version);
        } else {
            app.hoist_ok(&["deploy", "staging"]);
        }
        versions.push(version);
    }
    assert_eq!(app.version(), "v7");
    let containers = app.containers();
    let running: Vec<&String> = containers
        .iter()
        .filter(|c| c.ends_with(" running"))
        .collect();
    let stopped: Vec<&String> = containers
        .iter()
        .filter(|c| c.ends_with(" exited"))
        .collect();
    assert_eq!(running.len(), 1, "{containers:?}");
    assert!(running[0].contains(&versions[6]), "{containers:?}");
    assert_eq!(stopped.len(), 5, "{containers:?}");
    assert!(
        !containers.iter().any(|c| c.contains(&v1)),
        "v1 is pruned: {containers:?}"
    );
    let output = app.sandbox.ssh(
        0,
        &format!(
            "docker image inspect {}/hello:{v1} >/dev/null 2>&1 && echo present || echo gone",
            app.sandbox.registry()
        ),
    );
    assert_eq!(text(&output).0.trim(), "gone", "v1's image is pruned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_registry_password_fails_before_any_server_changes_and_docker_login_credentials_work()
 {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "badauth", 1);
    let app = App::new(&context, sandbox).await;
    let v1 = app.commit("v1", false);
    std::fs::write(
        app.dir.path().join(".hoist/secrets"),
        "REGISTRY_PASSWORD=not-the-password\n",
    )
    .expect("write secrets");
    let audit_before = app.sandbox.ssh(0, "ls -a ~ ; ls ~/.hoist 2>&1");

    // With a build: the push is refused by the registry.
    let output = app.hoist(&["deploy", "staging", "-v"]);
    assert!(!output.status.success());
    let (_, stderr) = text(&output);
    assert!(stderr.contains("Failed to push"), "{stderr}");
    assert!(
        stderr.contains("unauthorized") || stderr.contains("authentication required"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("{}: connecting", app.host)),
        "no server was contacted: {stderr}"
    );

    // Without one: the registry check (made while connecting) refuses it before anything on the
    // server changes.
    let output = app.hoist(&["deploy", "staging", "-v", "--skip-build", "--version", &v1]);
    assert!(!output.status.success());
    let (_, stderr) = text(&output);
    assert!(stderr.contains("The registry refused"), "{stderr}");
    assert!(
        stderr.contains("unauthorized") || stderr.contains("authentication required"),
        "{stderr}"
    );
    assert_eq!(
        text(&app.sandbox.ssh(0, "ls -a ~ ; ls ~/.hoist 2>&1")).0,
        text(&audit_before).0,
        "nothing was written on the server"
    );
    assert!(app.containers().is_empty());

    // No login in deploy.toml: what `docker login` stored is used, to push here and to pull on
    // the server (the registry refuses anonymous pulls).
    let config_path = app.dir.path().join("deploy.toml");
    let config = std::fs::read_to_string(&config_path).expect("read deploy.toml");
    let config: Vec<&str> = config
        .lines()
        .filter(|line| !line.starts_with("username") && !line.starts_with("password"))
        .collect();
    std::fs::write(&config_path, config.join("\n")).expect("write deploy.toml");
    app.git(&["commit", "-qam", "login from docker config"]);
    let (username, password) = app.sandbox.registry_credentials();
    let docker_config = tempfile::tempdir().expect("docker config dir");
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{username}:{password}"),
    );
    std::fs::write(
        docker_config.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            app.sandbox.registry()
        ),
    )
    .expect("write config.json");
    let output = app
        .command(&["deploy", "staging"])
        .env("DOCKER_CONFIG", docker_config.path())
        .output()
        .expect("run hoist");
    assert_success(&output, "deploy with docker login credentials");
    assert_eq!(app.version(), "v1");
}
