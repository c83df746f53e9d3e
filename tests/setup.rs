//! `hoist setup` end to end on bare sandbox servers (Debian with sshd and sudo, no Docker):
//! Docker is installed from Debian's mirror, hoist-proxy and an accessory with a volume boot,
//! the test app is built by hoist and answers through the proxy; a second setup changes
//! nothing; a non-root sudo user ends up able to use Docker; a user without sudo rights is
//! refused before anything changes.

mod support;

use std::process::Output;
use std::time::Instant;

use support::sandbox::{
    Sandbox, assert_success, git, init_repository, testapp_dir, text, write_config, write_hook,
};
use support::{SandboxGuard, TestContext, http_get, unique_name};

/// A bare sandbox, the hoist-proxy image and an accessory image in its registry, and the test
/// app in a git repository whose deploy.toml points at the sandbox.
struct Setup<'a> {
    context: &'a TestContext,
    _guard: SandboxGuard<'a>,
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    proxy_image: String,
    db_image: String,
}

impl<'a> Setup<'a> {
    async fn new(context: &'a TestContext, prefix: &str) -> Setup<'a> {
        let name = unique_name(prefix);
        let (guard, _) = context.sandbox_up(&name, &["--bare"]);
        let sandbox = Sandbox {
            json: context.sandbox_json(&name),
        };
        let docker = support::docker().await;
        let proxy_image = sandbox.push_proxy_image(&docker, "t").await;
        let db_image = format!("{}/db:{}", sandbox.registry(), unique_name("t"));
        support::build_testapp_image(&docker, &db_image, "db", false).await;
        sandbox.push(&docker, &db_image).await;
        let (_, password) = sandbox.registry_credentials();
        let dir = testapp_dir(&format!(
            "REGISTRY_PASSWORD={password}\nDB_PASSWORD=s3cret-db\n"
        ));
        std::fs::write(dir.path().join(".gitignore"), ".hoist/secrets*\nmarkers\n")
            .expect("write .gitignore");
        write_hook(
            dir.path(),
            "docker-setup",
            "#!/bin/sh\necho \"$HOIST_HOOK $HOIST_COMMAND $HOIST_SERVICE $HOIST_HOSTS\" >> markers\n",
        );
        let setup = Setup {
            context,
            _guard: guard,
            sandbox,
            dir,
            proxy_image,
            db_image,
        };
        setup.write_config("root");
        init_repository(setup.dir.path());
        setup.git(&["add", "-A"]);
        setup.git(&["commit", "-q", "-m", "v1"]);
        setup
    }

    fn git(&self, args: &[&str]) {
        git(self.dir.path(), args);
    }

    /// deploy.toml logging in as `user`, committed (the tree must be clean to deploy).
    fn configure(&self, user: &str) {
        self.write_config(user);
        self.git(&["commit", "-q", "-a", "-m", &format!("log in as {user}")]);
    }

    fn write_config(&self, user: &str) {
        self.write_config_with(user, "")
    }

    /// deploy.toml logging in as `user`, with `extra` TOML appended.
    fn write_config_with(&self, user: &str, extra: &str) {
        let registry = self.sandbox.registry();
        let (username, _) = self.sandbox.registry_credentials();
        write_config(
            self.dir.path(),
            &self.sandbox,
            &[self.host()],
            &format!("user = \"{user}\""),
            &format!(
                "[registry]\nserver = \"{registry}\"\nusername = \"{username}\"\n\
                 password = \"REGISTRY_PASSWORD\"\n\
                 \n[builder]\nargs = {{ VERSION = \"v1\" }}\n\
                 \n[proxy]\nimage = \"{proxy}\"\napp_port = 3000\n\
                 [proxy.healthcheck]\ninterval = \"200ms\"\n\
                 \n[accessories.db]\nimage = \"{db}\"\nhost = \"{host}\"\n\
                 port = \"5432:3000\"\nvolumes = [\"hello-db-data:/data\"]\n\
                 env = {{ clear = {{ PGDATA = \"/data\" }}, secret = [\"DB_PASSWORD\"] }}\n\
                 {extra}",
                proxy = self.proxy_image,
                db = self.db_image,
                host = self.host(),
            ),
        );
    }

    fn host(&self) -> String {
        self.sandbox.address(0)
    }

    fn hoist(&self, args: &[&str]) -> Output {
        self.context.hoist_in(self.dir.path(), args)
    }

    /// A shell command on the server as root.
    fn root(&self, command: &str) -> String {
        let output = self.sandbox.ssh(0, command);
        assert_success(&output, command);
        text(&output).0
    }

    /// A shell command on the server as `user` (logged in with the sandbox key).
    fn as_user(&self, user: &str, command: &str) -> Output {
        let mut server = self.sandbox.server(0).clone();
        server["ssh_user"] = user.into();
        support::ssh(
            &server,
            &self.sandbox.key(),
            &self.sandbox.known_hosts(),
            command,
            None,
        )
    }

    /// `/version` through the proxy on port 80.
    fn version(&self) -> String {
        let (status, body) = http_get(&format!("{}:80", self.host()), "/version").expect("GET");
        assert_eq!(status, 200, "GET /version answered {status}: {body}");
        body.trim().to_string()
    }

    /// A user with the sandbox's login key, and sudo without a password if `sudo`.
    fn add_user(&self, user: &str, sudo: bool) {
        let sudoers = if sudo {
            format!(
                "echo '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{user}; chmod 440 /etc/sudoers.d/{user}; "
            )
        } else {
            String::new()
        };
        self.root(&format!(
            "set -e; useradd -m -s /bin/bash {user}; {sudoers}\
             install -d -m 700 -o {user} -g {user} /home/{user}/.ssh; \
             install -m 600 -o {user} -g {user} /root/.ssh/authorized_keys /home/{user}/.ssh/authorized_keys"
        ));
    }

    fn docker_installed(&self) -> bool {
        self.root("command -v dockerd >/dev/null && echo yes || echo no")
            .trim()
            == "yes"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_takes_a_bare_server_to_a_live_app_and_a_second_run_changes_nothing() {
    let context = TestContext::new();
    let setup = Setup::new(&context, "setup").await;
    assert!(!setup.docker_installed(), "a bare server has no Docker");

    let started = Instant::now();
    let output = setup.hoist(&["setup"]);
    let first = started.elapsed();
    assert_success(&output, "hoist setup");
    let (_, stderr) = text(&output);
    for expected in [
        "Found",
        "Debian GNU/Linux 12 (bookworm), root, no Docker",
        "install Docker (docker.io)",
        "start Docker",
        "hoist-proxy created from",
        "booted hello-db",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing:\n{stderr}");
    }
    assert!(setup.docker_installed());
    assert_eq!(setup.version(), "v1", "the app answers through the proxy");
    let markers = std::fs::read_to_string(setup.dir.path().join("markers")).expect("markers");
    assert_eq!(
        markers,
        format!("docker-setup setup hello {}\n", setup.host()),
        "the docker-setup hook ran once, after Docker"
    );
    let proxy = setup.root("docker inspect -f '{{.State.Running}} {{.Config.Image}}' hoist-proxy");
    assert_eq!(proxy.trim(), format!("true {}", setup.proxy_image));
    // The accessory runs with its volume, its env (secret included) and its port on loopback.
    let db = setup.root(
        "docker inspect -f '{{.State.Running}} {{range .Mounts}}{{.Name}}:{{.Destination}}{{end}}' hello-db",
    );
    assert_eq!(db.trim(), "true hello-db-data:/data");
    let env = setup.root("docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' hello-db");
    assert!(
        env.contains("PGDATA=/data") && env.contains("DB_PASSWORD=s3cret-db"),
        "{env}"
    );
    assert_eq!(
        setup.root("curl -s http://127.0.0.1:5432/version").trim(),
        "db"
    );
    let installs = setup.root("grep -c '^Commandline:' /var/log/apt/history.log || true");

    // Again: everything is found right, nothing is installed, the app is not deployed again.
    let started = Instant::now();
    let output = setup.hoist(&["setup"]);
    let second = started.elapsed();
    assert_success(&output, "second hoist setup");
    let (_, stderr) = text(&output);
    for expected in [
        "Docker running",
        "nothing to change",
        "hoist-proxy already running",
        "hello-db already running",
        "already runs on every app host; nothing to deploy",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing:\n{stderr}");
    }
    assert!(!stderr.contains("install Docker"), "{stderr}");
    assert_eq!(
        setup.root("grep -c '^Commandline:' /var/log/apt/history.log || true"),
        installs,
        "the second setup installed something"
    );
    let containers =
        setup.root("docker ps -a --filter label=service=hello --format '{{.Names}}' | sort");
    assert_eq!(
        containers
            .lines()
            .filter(|name| name.starts_with("hello-web"))
            .count(),
        1,
        "{containers}"
    );
    assert_eq!(setup.version(), "v1");
    eprintln!(
        "hoist setup: first run {:.1}s, second run {:.1}s",
        first.as_secs_f64(),
        second.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sudo_user_gets_docker_and_a_user_without_sudo_is_refused_before_any_change() {
    let context = TestContext::new();
    let setup = Setup::new(&context, "setup-sudo").await;
    setup.add_user("nosudo", false);
    setup.add_user("deployer", true);

    // No root rights: refused with what was needed and how to fix it; nothing installed.
    setup.configure("nosudo");
    let output = setup.hoist(&["setup"]);
    assert!(!output.status.success());
    let (_, stderr) = text(&output);
    for expected in [
        "`nosudo` can't act as root",
        "install Docker (docker.io)",
        "nothing was changed on any server",
        "hint:",
        "NOPASSWD",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing:\n{stderr}");
    }
    assert!(!setup.docker_installed(), "Docker was installed anyway");
    assert_eq!(
        setup
            .root("test -e /etc/apt/sources.list.d/docker.list && echo yes || echo no")
            .trim(),
        "no"
    );

    // A sudo user: Docker is installed, the user joins the docker group, the deploy works;
    // the firewall leaves only SSH, 80 and 443 open.
    setup.write_config_with("deployer", "\n[setup]\nfirewall = true\n");
    setup.git(&["commit", "-q", "-a", "-m", "deployer, firewall"]);
    let output = setup.hoist(&["setup"]);
    assert_success(&output, "hoist setup as deployer");
    let (_, stderr) = text(&output);
    assert!(stderr.contains("deployer with sudo"), "{stderr}");
    assert!(
        stderr.contains("add `deployer` to the docker group"),
        "{stderr}"
    );
    assert_eq!(setup.version(), "v1");
    let groups = setup.as_user("deployer", "id -nG");
    assert!(
        text(&groups)
            .0
            .split_whitespace()
            .any(|group| group == "docker"),
        "{}",
        text(&groups).0
    );
    let ps = setup.as_user(
        "deployer",
        "docker ps --format '{{.Names}}' | grep -x hoist-proxy",
    );
    assert_success(&ps, "docker ps as deployer");

    let firewall = setup.root("ufw status");
    assert!(firewall.contains("Status: active"), "{firewall}");
    let allowed: Vec<&str> = firewall
        .lines()
        .filter(|line| line.contains("ALLOW") && !line.contains("(v6)"))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(allowed, ["22/tcp", "80/tcp", "443/tcp"]);
    let output = setup.hoist(&["setup"]);
    assert_success(&output, "second hoist setup as deployer");
    assert!(
        text(&output)
            .1
            .contains("the firewall is on, nothing to change"),
        "{}",
        text(&output).1
    );

    // hoist's other commands reach Docker as that user too.
    let output = setup.hoist(&["details"]);
    assert_success(&output, "hoist details as deployer");
}
