//! Fleet releases end to end on four sandbox servers: the `web` role behind hoist-proxy on A and
//! B, a `jobs` role without the proxy alone on C (Docker and nothing else), an accessory on D.
//! Every release runs under continuous load against each web host and counts every failed
//! request. One sandbox serves the whole sequence: a first deploy everywhere, a rolling deploy in
//! batches of one with a wait, a version healthy on A but never on B (fleet-atomic: A goes
//! back), the same with `--no-rollback`, Ctrl-C after the first batch, a canary that turns
//! unhealthy during `--canary-wait`, and the connection to B cut after A switched, then the
//! next deploy reporting the interrupted release and converging.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::load::Load;
use support::sandbox::{Sandbox, assert_success, testapp_dir, text, write_config};
use support::{TestContext, http_get};

/// The versions this test deploys, each an image of the test app answering `/version` with it.
const VERSIONS: [&str; 7] = ["v1", "v2", "v3", "v4", "v5", "v6", "v7"];

struct Fleet<'a> {
    context: &'a TestContext,
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    /// A, B (web), C (jobs), D (accessory).
    hosts: [String; 4],
    base: String,
}

impl Fleet<'_> {
    /// deploy.toml with `extra` appended to the fleet's configuration.
    fn configure(&self, extra: &str) {
        let web = &self.hosts[..2];
        write_config(
            self.dir.path(),
            &self.sandbox,
            web,
            "",
            &format!("{}\n{extra}", self.base),
        );
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        self.context.hoist_command(self.dir.path(), args)
    }

    fn hoist(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hoist")
    }

    fn hoist_ok(&self, args: &[&str]) -> Output {
        let output = self.hoist(args);
        assert_success(&output, &format!("hoist {}", args.join(" ")));
        output
    }

    /// `hoist deploy --skip-build --version VERSION` plus `extra`, with its stderr piped.
    fn spawn_deploy(&self, version: &str, extra: &[&str]) -> Child {
        let mut args = vec!["deploy", "--skip-build", "--version", version];
        args.extend_from_slice(extra);
        self.command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hoist deploy")
    }

    /// Deploy `version`, and once hoist prints a line with `needle`, `act` on the deploy's pid;
    /// returns whether the deploy succeeded, and its stderr.
    fn deploy_and(&self, version: &str, needle: &str, act: impl FnOnce(u32)) -> (bool, String) {
        let mut child = self.spawn_deploy(version, &[]);
        let (lines, reader) = stderr_lines(&mut child);
        let mut seen = Vec::new();
        wait_for_line(&lines, &mut seen, needle);
        act(child.id());
        let exit = child.wait().expect("wait");
        drain(lines, reader, &mut seen);
        let stderr = seen.join("\n");
        eprintln!("{stderr}");
        (exit.success(), stderr)
    }

    fn deploy(&self, version: &str, extra: &[&str]) -> Output {
        self.spawn_deploy(version, extra)
            .wait_with_output()
            .expect("wait for hoist deploy")
    }

    /// What `/version` answers through the proxy on web host `index`.
    fn version_on(&self, index: usize) -> String {
        let (status, body) =
            http_get(&format!("{}:80", self.hosts[index]), "/version").expect("GET /version");
        assert_eq!(
            status, 200,
            "GET /version on {}: {status} {body}",
            self.hosts[index]
        );
        body.trim().to_string()
    }

    /// `NAME STATE` of every app container (label service=hello) on server `index`, sorted.
    fn containers_on(&self, index: usize) -> Vec<String> {
        let output = self.sandbox.ssh(
            index,
            "docker ps -a --filter label=service=hello --format '{{.Names}} {{.State}}' | sort",
        );
        assert_success(&output, "docker ps");
        text(&output).0.lines().map(str::to_string).collect()
    }

    /// The versions running on server `index` for `role`.
    fn running(&self, index: usize, role: &str) -> Vec<String> {
        let prefix = format!("hello-{role}-");
        self.containers_on(index)
            .iter()
            .filter_map(|line| {
                let (name, state) = line.split_once(' ')?;
                (state == "running" && !name.contains("_replaced_"))
                    .then(|| name.strip_prefix(&prefix).map(str::to_string))
                    .flatten()
            })
            .collect()
    }

    /// The server container of host `index`, for `docker exec`.
    fn container(&self, index: usize) -> String {
        self.sandbox.server(index)["container"]
            .as_str()
            .expect("container")
            .to_string()
    }

    fn assert_unlocked(&self) {
        let status = self.hoist_ok(&["lock", "status"]);
        assert!(
            text(&status).0.starts_with("Unlocked"),
            "{}",
            text(&status).0
        );
    }

    /// A and B on `web`, C on `jobs`, all at `version`.
    fn assert_everywhere(&self, version: &str) {
        assert_eq!(self.version_on(0), version);
        assert_eq!(self.version_on(1), version);
        assert_eq!(
            self.running(2, "jobs"),
            [version],
            "{:?}",
            self.containers_on(2)
        );
    }
}

/// Load on both web hosts while `action` runs; asserts zero failed requests on each.
fn under_load<T>(fleet: &Fleet, what: &str, action: impl FnOnce() -> T) -> T {
    let loads: Vec<(usize, Load)> = [0, 1]
        .into_iter()
        .map(|index| (index, Load::start(format!("{}:80", fleet.hosts[index]), 2)))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let result = action();
    std::thread::sleep(Duration::from_millis(300));
    for (index, load) in loads {
        load.finish_clean(&format!("{what} on {}", fleet.hosts[index]), 21);
    }
    result
}

/// Wait until hoist's stderr has a line containing `needle` (the lines so far are returned,
/// the rest keeps being collected).
fn wait_for_line(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) {
    loop {
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(_) => panic!(
                "no line with `{needle}` in hoist's output:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// Read `child`'s stderr line by line on a thread.
fn stderr_lines(child: &mut Child) -> (mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
    let stderr = child.stderr.take().expect("piped stderr");
    let (sender, receiver) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (receiver, reader)
}

/// The rest of the lines, once the child has exited.
fn drain(
    lines: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
    seen: &mut Vec<String>,
) {
    reader.join().expect("stderr reader");
    seen.extend(lines.try_iter());
}

/// `(host, role, at)` of each unit switched, from `--json` output.
fn switched(output: &Output) -> Vec<(String, String, f64)> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON in hoist's output: {stdout}"));
    json["switched"]
        .as_array()
        .expect("switched")
        .iter()
        .map(|unit| {
            (
                unit["host"].as_str().expect("host").to_string(),
                unit["role"].as_str().expect("role").to_string(),
                unit["at"].as_f64().expect("at"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_deploys_in_batches_and_goes_back_as_one_when_any_host_fails() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "fleet", 4);
    let docker = support::docker().await;
    let registry = sandbox.registry();
    let proxy_image = sandbox.push_proxy_image(&docker, "fleet").await;
    sandbox.push_testapp_versions(&docker, &VERSIONS).await;
    let (username, password) = sandbox.registry_credentials();
    let hosts = [0, 1, 2, 3].map(|index| sandbox.address(index));
    let base = format!(
        "[servers.jobs]\nhosts = [\"{jobs}\"]\nproxy = false\n\
         [registry]\nserver = \"{registry}\"\nusername = \"{username}\"\n\
         password = \"REGISTRY_PASSWORD\"\n\
         [proxy]\nimage = \"{proxy_image}\"\napp_port = 3000\ndeploy_timeout = \"6s\"\n\
         drain_timeout = \"2s\"\n\
         [proxy.healthcheck]\ninterval = \"250ms\"\ntimeout = \"1s\"\n\
         [boot]\nlimit = 1\nwait = \"3s\"\n\
         [accessories.db]\nimage = \"{registry}/hello:v1\"\nhost = \"{db}\"\n",
        jobs = hosts[2],
        db = hosts[3],
    );
    let fleet = Fleet {
        context: &context,
        dir: testapp_dir(&format!("REGISTRY_PASSWORD={password}\n")),
        sandbox,
        hosts,
        base,
    };
    fleet.configure("");

    // The accessory on its own host, then a first deploy everywhere: the worker runs on a host
    // with Docker and nothing else (no proxy, but the `hoist` network all the same).
    fleet.hoist_ok(&["accessory", "boot", "db"]);
    let first = fleet.deploy("v1", &[]);
    assert_success(&first, "first deploy");
    fleet.assert_everywhere("v1");
    assert!(
        fleet
            .containers_on(3)
            .iter()
            .any(|c| c == "hello-db running")
    );
    assert_eq!(
        fleet.containers_on(3).len(),
        1,
        "no app container on the accessory host"
    );
    let proxy_on_c = fleet.sandbox.ssh(2, "docker ps -a --format '{{.Names}}'");
    assert!(
        !text(&proxy_on_c).0.contains("hoist-proxy"),
        "no proxy on the jobs host"
    );

    // Rolling: one host at a time, A then B (config order), 3s apart, then the jobs role.
    let output = under_load(&fleet, "rolling deploy", || fleet.deploy("v2", &["--json"]));
    assert_success(&output, "rolling deploy");
    let order = switched(&output);
    let units: Vec<(&str, &str)> = order
        .iter()
        .map(|(host, role, _)| (host.as_str(), role.as_str()))
        .collect();
    assert_eq!(
        units,
        [
            (fleet.hosts[0].as_str(), "web"),
            (fleet.hosts[1].as_str(), "web"),
            (fleet.hosts[2].as_str(), "jobs")
        ]
    );
    assert!(
        order[1].2 - order[0].2 >= 3.0 && order[2].2 - order[1].2 >= 3.0,
        "boot.wait between batches: {order:?}"
    );
    fleet.assert_everywhere("v2");
    // The old containers stopped only once the whole fleet ran v2.
    assert!(
        fleet
            .containers_on(0)
            .contains(&"hello-web-v1 exited".to_string())
    );

    // Healthy on A, never on B: the deploy fails and A goes back to v2 with zero failed
    // requests; no v3 container is left anywhere; the message names B, the URL and its logs.
    let broken_on_b = format!(
        "[env]\nclear = {{ APP_BROKEN_ON_HOST = \"{}\" }}\n",
        fleet.hosts[1]
    );
    fleet.configure(&broken_on_b);
    let output = under_load(&fleet, "a host that fails", || fleet.deploy("v3", &[]));
    let (_, stderr) = text(&output);
    eprintln!("{stderr}");
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("on `{}` failed", fleet.hosts[1])),
        "{stderr}"
    );
    assert!(stderr.contains("/up"), "the probed URL: {stderr}");
    assert!(
        stderr.contains("health check failing on purpose"),
        "its logs: {stderr}"
    );
    assert!(
        stderr.contains("went back to the previous version"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: web back on v2", fleet.hosts[0])),
        "{stderr}"
    );
    fleet.assert_everywhere("v2");
    for index in 0..3 {
        let left: Vec<String> = fleet
            .containers_on(index)
            .into_iter()
            .filter(|c| c.contains("-v3"))
            .collect();
        assert!(left.is_empty(), "v3 left on host {index}: {left:?}");
    }
    fleet.assert_unlocked();

    // The same with --no-rollback: A stays on v3 and the error says so.
    let output = under_load(&fleet, "--no-rollback", || {
        fleet.deploy("v3", &["--no-rollback"])
    });
    let (_, stderr) = text(&output);
    eprintln!("{stderr}");
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--no-rollback"), "{stderr}");
    assert!(stderr.contains("mixed versions"), "{stderr}");
    assert_eq!(fleet.version_on(0), "v3");
    assert_eq!(fleet.version_on(1), "v2");
    fleet.assert_unlocked();
    let versions = text(&fleet.hoist_ok(&["versions"])).1;
    assert!(versions.contains("the fleet runs 2 versions"), "{versions}");

    // A healthy version converges the fleet again.
    fleet.configure("");
    assert_success(&fleet.deploy("v4", &[]), "deploy v4");
    fleet.assert_everywhere("v4");

    // Ctrl-C after the first batch: A goes back, B was never touched.
    let (success, stderr) = under_load(&fleet, "Ctrl-C after the first batch", || {
        let first = format!("web on {} to v5", fleet.hosts[0]);
        fleet.deploy_and("v5", &first, |pid| {
            let status = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
        })
    });
    assert!(!success, "{stderr}");
    assert!(
        stderr.contains("Interrupted (Ctrl-C) during the switch"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: web back on v4", fleet.hosts[0])),
        "{stderr}"
    );
    fleet.assert_everywhere("v4");
    fleet.assert_unlocked();

    // A canary that passes its first health check and fails 3s later, during --canary-wait:
    // it goes back, and no other host switches.
    fleet.configure("[env]\nclear = { APP_HEALTHY_FOR = \"3\" }\n");
    let output = under_load(&fleet, "a failing canary", || {
        fleet.deploy("v5", &["--canary", "--canary-wait", "8s", "--json"])
    });
    let (_, stderr) = text(&output);
    eprintln!("{stderr}");
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("The canary"), "{stderr}");
    assert!(stderr.contains("--canary-wait"), "{stderr}");
    assert!(
        stderr.contains("APP_HEALTHY_FOR") || stderr.contains("503"),
        "{stderr}"
    );
    fleet.assert_everywhere("v4");
    fleet.configure("");

    // The connection to B cut (its sshd stopped) once A has switched: A goes back, B's state is
    // unknown and reported; with sshd back, the next deploy reports the interrupted release
    // and converges.
    let (success, stderr) = under_load(&fleet, "the connection to B cut", || {
        let first = format!("web on {} to v6", fleet.hosts[0]);
        fleet.deploy_and("v6", &first, |_| {
            let cut = std::process::Command::new("docker")
                .args(["exec", &fleet.container(1), "pkill", "-x", "sshd"])
                .status()
                .expect("docker exec pkill");
            assert!(cut.success());
        })
    });
    assert!(!success, "{stderr}");
    assert!(
        stderr.contains(&format!("{}: web back on v4", fleet.hosts[0])),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: unknown (lost contact", fleet.hosts[1])),
        "{stderr}"
    );
    assert_eq!(fleet.version_on(0), "v4");
    let restart = std::process::Command::new("docker")
        .args([
            "exec",
            &fleet.container(1),
            "sh",
            "-c",
            "/usr/sbin/sshd -E /var/log/sshd.log",
        ])
        .status()
        .expect("docker exec sshd");
    assert!(restart.success());
    fleet.assert_unlocked();
    let versions = text(&fleet.hoist_ok(&["versions"])).1;
    assert!(
        versions.contains(&format!("did not finish on {}", fleet.hosts[1])),
        "{versions}"
    );
    let output = under_load(&fleet, "converging", || fleet.deploy("v7", &[]));
    assert_success(&output, "the deploy after the cut");
    let (_, stderr) = text(&output);
    assert!(
        stderr.contains(&format!("did not finish on `{}`", fleet.hosts[1])),
        "the interrupted release is reported: {stderr}"
    );
    fleet.assert_everywhere("v7");
    let versions = text(&fleet.hoist_ok(&["versions"])).1;
    assert!(
        versions.contains("v7 is live for every role on every host"),
        "{versions}"
    );
    assert!(
        !fleet
            .containers_on(1)
            .iter()
            .any(|c| c.contains("-v6 running")),
        "{:?}",
        fleet.containers_on(1)
    );

    // Rollback goes through the same engine: back to v4 everywhere (v5 and v6 never finished).
    let output = under_load(&fleet, "rollback", || fleet.hoist(&["rollback"]));
    assert_success(&output, "rollback");
    fleet.assert_everywhere("v4");
}
