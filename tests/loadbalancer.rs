//! The load balancer end to end on five sandbox servers: web hosts A and B (and E, added and
//! removed), the `[loadbalancer]` host C, a database accessory on D. Every step runs under
//! continuous load through the LB and counts every failed request: the first deploy, a deploy
//! of v2, a version failing on B (the fleet goes back), draining and undraining A, A's proxy
//! stopped and booted again, a third web host added and removed, and last B's whole server
//! stopped. The app sees the client's address in `X-Forwarded-For`, and a forged one never
//! reaches it.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::load::Load;
use support::sandbox::{Sandbox, assert_success, testapp_dir, text, write_config};
use support::{TestContext, eventually, http_get};

const VERSIONS: [&str; 3] = ["v1", "v2", "v3"];

struct Setup<'a> {
    context: &'a TestContext,
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    /// A, B (web), C (LB), D (db), E (a third web host, for a while).
    hosts: [String; 5],
    base: String,
    password: String,
}

impl Setup<'_> {
    /// deploy.toml with `web` as the web role's hosts and `extra` appended.
    fn configure(&self, web: &[usize], extra: &str) {
        let web: Vec<String> = web.iter().map(|index| self.hosts[*index].clone()).collect();
        write_config(
            self.dir.path(),
            &self.sandbox,
            &web,
            "",
            &format!("{}\n{extra}", self.base),
        );
    }

    fn hoist(&self, args: &[&str]) -> Output {
        self.context.hoist_in(self.dir.path(), args)
    }

    fn hoist_ok(&self, args: &[&str]) -> Output {
        let output = self.hoist(args);
        assert_success(&output, &format!("hoist {}", args.join(" ")));
        output
    }

    fn deploy(&self, version: &str) -> Output {
        self.hoist(&["deploy", "--skip-build", "--version", version])
    }

    fn lb(&self) -> String {
        format!("{}:80", self.hosts[2])
    }

    /// `(host, in_rotation, healthy, drained)` per web host, from `hoist lb details --json`.
    fn rotation(&self) -> Vec<(String, bool, Option<bool>, bool)> {
        let output = self.hoist_ok(&["lb", "details", "--json"]);
        let json: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        json["web_hosts"]
            .as_array()
            .expect("web_hosts")
            .iter()
            .map(|row| {
                (
                    row["host"].as_str().expect("host").to_string(),
                    row["in_rotation"].as_bool().expect("in_rotation"),
                    row["healthy"].as_bool(),
                    row["drained"].as_bool().expect("drained"),
                )
            })
            .collect()
    }

    /// The hosts in rotation and healthy.
    fn serving(&self) -> Vec<String> {
        self.rotation()
            .into_iter()
            .filter(|(_, in_rotation, healthy, _)| *in_rotation && *healthy == Some(true))
            .map(|(host, ..)| host)
            .collect()
    }

    /// The version each web host's own proxy answers.
    fn version_on(&self, index: usize) -> String {
        let (status, body) =
            http_get(&format!("{}:80", self.hosts[index]), "/version").expect("GET /version");
        assert_eq!(status, 200, "{body}");
        body.trim().to_string()
    }

    /// Run `docker …` inside server `index`.
    fn docker_on(&self, index: usize, command: &str) {
        let output = self.sandbox.ssh(index, &format!("docker {command}"));
        assert_success(&output, &format!("docker {command} on host {index}"));
    }
}

/// Load through the LB while `action` runs; asserts zero failed requests.
fn through_lb<T>(setup: &Setup, what: &str, action: impl FnOnce() -> T) -> T {
    let load = Load::start(setup.lb(), 2);
    std::thread::sleep(Duration::from_millis(300));
    let result = action();
    std::thread::sleep(Duration::from_millis(300));
    load.finish_clean(&format!("{what}, through the load balancer"), 20);
    result
}

/// A GET through `address` with `Host: host` and extra header lines; the body of its 200.
fn get_with(address: &str, host: &str, path: &str, headers: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The trimmed body of a GET through `address` with `Host: host`.
fn get_host(address: &str, host: &str, path: &str) -> String {
    get_with(address, host, path, "").trim().to_string()
}

/// The value of header `name` in a `/headers` body.
fn header<'b>(body: &'b str, name: &str) -> Option<&'b str> {
    body.lines().find_map(|line| {
        let (key, value) = line.split_once(": ")?;
        key.eq_ignore_ascii_case(name).then_some(value)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_in_front_of_two_web_hosts_costs_no_request_through_deploys_and_failures() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "lb", 5);
    let docker = support::docker().await;
    let registry = sandbox.registry();
    let proxy_image = sandbox.push_proxy_image(&docker, "lb").await;
    sandbox.push_testapp_versions(&docker, &VERSIONS).await;
    let (username, password) = sandbox.registry_credentials();
    let hosts = [0, 1, 2, 3, 4].map(|index| sandbox.address(index));
    let base = format!(
        "[registry]\nserver = \"{registry}\"\nusername = \"{username}\"\n\
         password = \"REGISTRY_PASSWORD\"\n\
         [proxy]\nimage = \"{proxy_image}\"\napp_port = 3000\ndeploy_timeout = \"6s\"\n\
         drain_timeout = \"2s\"\n\
         [proxy.healthcheck]\ninterval = \"250ms\"\ntimeout = \"1s\"\n\
         [accessories.db]\nimage = \"{registry}/hello:v1\"\nhost = \"{db}\"\n\
         [loadbalancer]\nhost = \"{lb}\"\n",
        db = hosts[3],
        lb = hosts[2],
    );
    let setup = Setup {
        context: &context,
        dir: testapp_dir(&format!("REGISTRY_PASSWORD={password}\n")),
        sandbox,
        hosts,
        base,
        password,
    };
    let [a, b, _, _, e] = setup.hosts.clone();
    setup.configure(&[0, 1], "");

    // v1: the LB sends to both web hosts, each answering with its own container.
    setup.hoist_ok(&["accessory", "boot", "db"]);
    assert_success(&setup.deploy("v1"), "first deploy");
    let (status, body) = http_get(&setup.lb(), "/version").expect("GET through the LB");
    assert_eq!((status, body.trim()), (200, "v1"));
    let answered: BTreeSet<String> = (0..40)
        .map(|_| http_get(&setup.lb(), "/").expect("GET /").1)
        .collect();
    assert_eq!(answered.len(), 2, "both web hosts answer: {answered:?}");
    assert_eq!(setup.serving(), [a.clone(), b.clone()]);
    let details = text(&setup.hoist_ok(&["details"])).0;
    assert!(details.contains("Load balancer"), "{details}");

    // The app sees the client as the LB saw it, over plain HTTP, and never a forged address.
    let seen = get_with(
        &setup.lb(),
        "hello.test",
        "/headers",
        "X-Forwarded-For: 6.6.6.6\r\n",
    );
    let forwarded = header(&seen, "X-Forwarded-For").expect("X-Forwarded-For");
    assert!(!forwarded.contains("6.6.6.6"), "{seen}");
    let client = forwarded.split(',').next().unwrap_or_default().trim();
    assert_ne!(client, setup.hosts[2], "the client, not the LB: {seen}");
    assert_eq!(header(&seen, "X-Forwarded-Proto"), Some("http"), "{seen}");
    // Straight to a web host, a forged header is not trusted either.
    let direct = get_with(
        &format!("{a}:80"),
        "hello.test",
        "/headers",
        "X-Forwarded-For: 6.6.6.6\r\n",
    );
    assert!(!direct.contains("6.6.6.6"), "{direct}");

    // v2 under load; both hosts then serve it.
    let output = through_lb(&setup, "deploy v2", || setup.deploy("v2"));
    assert_success(&output, "deploy v2");
    assert_eq!(
        (setup.version_on(0), setup.version_on(1)),
        ("v2".into(), "v2".into())
    );

    // v3 never healthy on B: the fleet goes back to v2, and the LB never noticed.
    setup.configure(
        &[0, 1],
        &format!("[env]\nclear = {{ APP_BROKEN_ON_HOST = \"{b}\" }}\n"),
    );
    let output = through_lb(&setup, "a version failing on B", || setup.deploy("v3"));
    assert!(!output.status.success(), "{}", text(&output).1);
    assert_eq!(
        (setup.version_on(0), setup.version_on(1)),
        ("v2".into(), "v2".into())
    );
    setup.configure(&[0, 1], "");

    // Drained for maintenance and back.
    through_lb(&setup, "drain and undrain A", || {
        setup.hoist_ok(&["lb", "drain", &a]);
        let rotation = setup.rotation();
        assert_eq!(rotation[0], (a.clone(), false, None, true), "{rotation:?}");
        assert_eq!(setup.serving(), std::slice::from_ref(&b));
        setup.hoist_ok(&["lb", "undrain", &a]);
    });
    assert_eq!(setup.serving(), [a.clone(), b.clone()]);

    // A's proxy stopped: the LB takes it out (a refused connection, then its health checks)
    // and puts it back once it passes them again.
    through_lb(&setup, "A's proxy stopped and booted", || {
        setup.docker_on(0, "stop hoist-proxy-ports");
        setup.docker_on(0, "stop hoist-proxy");
        assert!(
            eventually(Duration::from_secs(10), || setup.serving() == [b.clone()]),
            "A leaves rotation: {:?}",
            setup.rotation()
        );
        setup.hoist_ok(&["proxy", "boot", "--hosts", &a]);
        assert!(
            eventually(Duration::from_secs(10), || setup.serving().len() == 2),
            "A comes back: {:?}",
            setup.rotation()
        );
    });

    // A third web host joins the rotation with a deploy, and leaves it with the next.
    through_lb(&setup, "a third web host added", || {
        setup.configure(&[0, 1, 4], "");
        assert_success(&setup.deploy("v2"), "deploy with E");
    });
    assert_eq!(setup.serving(), [a.clone(), b.clone(), e.clone()]);
    through_lb(&setup, "the third web host removed", || {
        setup.configure(&[0, 1], "");
        assert_success(&setup.deploy("v2"), "deploy without E");
    });
    assert_eq!(setup.serving(), [a.clone(), b.clone()]);

    // hoist proxy reboot on A: A leaves the rotation while its proxy is replaced, then returns.
    let reboot = through_lb(&setup, "proxy reboot of A", || {
        setup.hoist_ok(&["proxy", "reboot", "--hosts", &a])
    });
    let said = text(&reboot).1;
    assert!(said.contains(&format!("{a} out of rotation")), "{said}");
    assert!(said.contains("back in rotation"), "{said}");
    assert_eq!(setup.serving(), [a.clone(), b.clone()]);

    // A second app behind the same LB, on the same web hosts, routed by its own host name.
    let other = testapp_dir(&format!("REGISTRY_PASSWORD={}\n", setup.password));
    let text_of = std::fs::read_to_string(setup.dir.path().join("deploy.toml")).expect("read");
    let other_config = text_of
        .replace("service = \"hello\"", "service = \"other\"")
        .replace(
            "app_port = 3000\n",
            "app_port = 3000\nhosts = [\"other.test\"]\n",
        );
    std::fs::write(other.path().join("deploy.toml"), other_config).expect("write");
    let deployed = context.hoist_in(other.path(), &["deploy", "--skip-build", "--version", "v3"]);
    assert_success(&deployed, "deploy a second app behind the LB");
    assert_eq!(get_host(&setup.lb(), "other.test", "/version"), "v3");
    assert_eq!(get_host(&setup.lb(), "hello.test", "/version"), "v2");

    // B's whole server stopped: not one GET fails, and B is out.
    let server_b = setup.sandbox.server(1)["container"]
        .as_str()
        .expect("container")
        .to_string();
    through_lb(&setup, "B's server stopped", || {
        let stopped = std::process::Command::new("docker")
            .args(["stop", &server_b])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("docker stop");
        assert!(stopped.success());
        assert!(
            eventually(Duration::from_secs(15), || setup.serving() == [a.clone()]),
            "B leaves rotation: {:?}",
            setup.rotation()
        );
    });
}

/// `curl` through the LB at `https://app.test{path}` (resolved to the LB, verified against
/// `root`), with extra arguments; (HTTP version, body), or curl's error.
fn curl_https(
    lb: &str,
    root: &std::path::Path,
    path: &str,
    extra: &[&str],
) -> Result<(String, String), String> {
    let output = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--http2", "--max-time", "10", "--cacert"])
        .arg(root)
        .args(["--resolve", &format!("app.test:443:{lb}")])
        .args(extra)
        .args(["-w", "\n%{http_version}"])
        .arg(format!("https://app.test{path}"))
        .output()
        .expect("run curl");
    let (stdout, stderr) = text(&output);
    if !output.status.success() {
        return Err(stderr);
    }
    let (body, version) = stdout.rsplit_once('\n').unwrap_or_default();
    Ok((version.to_string(), body.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_balancer_serves_https_over_h2_with_a_certificate_from_pebble() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "lbtls", 3);
    let docker = support::docker().await;
    let registry = sandbox.registry();
    let proxy_image = sandbox.push_proxy_image(&docker, "lbtls").await;
    sandbox.push_testapp_versions(&docker, &["v1"]).await;
    let hosts = [0, 1, 2].map(|index| sandbox.address(index));
    let subnet = sandbox.json["subnet"].as_str().expect("subnet");
    let gateway = {
        let base = subnet.split('/').next().expect("an address");
        let (prefix, _) = base.rsplit_once('.').expect("IPv4");
        format!("{prefix}.1")
    };
    let pebble = support::pebble::Pebble::start(&gateway, &hosts[2]);
    let (username, password) = sandbox.registry_credentials();
    let dir = testapp_dir(&format!("REGISTRY_PASSWORD={password}\n"));
    write_config(
        dir.path(),
        &sandbox,
        &hosts[..2],
        "",
        &format!(
            "[registry]\nserver = \"{registry}\"\nusername = \"{username}\"\n\
             password = \"REGISTRY_PASSWORD\"\n\
             [proxy]\nimage = \"{proxy_image}\"\napp_port = 3000\ntls = true\n\
             hosts = [\"app.test\"]\n\
             [proxy.healthcheck]\ninterval = \"250ms\"\ntimeout = \"1s\"\n\
             [proxy.acme]\ndirectory = \"{directory}\"\nca_root = \"{ca_root}\"\n\
             [loadbalancer]\nhost = \"{lb}\"\n",
            directory = pebble.directory(),
            ca_root = pebble.https_ca.display(),
            lb = hosts[2],
        ),
    );
    let deploy = context.hoist_in(dir.path(), &["deploy", "--skip-build", "--version", "v1"]);
    assert_success(&deploy, "deploy with TLS at the LB");

    // A certificate from Pebble, verified by the client, over h2; the app sees https and the
    // client's address (the gateway, as the LB sees this machine), never a forged one.
    let root = pebble.issuing_root();
    let mut last = String::new();
    let answered = eventually(Duration::from_secs(30), || {
        match curl_https(
            &hosts[2],
            &root,
            "/headers",
            &["-H", "X-Forwarded-For: 6.6.6.6"],
        ) {
            Ok(got) => {
                last = format!("{got:?}");
                true
            }
            Err(err) => {
                last = err;
                false
            }
        }
    });
    assert!(answered, "no HTTPS answer through the LB: {last}");
    let (version, body) = curl_https(
        &hosts[2],
        &root,
        "/headers",
        &["-H", "X-Forwarded-For: 6.6.6.6"],
    )
    .expect("HTTPS through the LB");
    assert_eq!(version, "2", "{body}");
    assert!(pebble.issued() >= 1, "Pebble issued the certificate");
    assert_eq!(header(&body, "X-Forwarded-Proto"), Some("https"), "{body}");
    let forwarded = header(&body, "X-Forwarded-For").expect("X-Forwarded-For");
    assert!(!forwarded.contains("6.6.6.6"), "{body}");
    assert_eq!(
        forwarded.split(',').next().map(str::trim),
        Some(gateway.as_str()),
        "{body}"
    );
    let answered: BTreeSet<String> = (0..20)
        .map(|_| curl_https(&hosts[2], &root, "/", &[]).expect("GET /").1)
        .collect();
    assert_eq!(answered.len(), 2, "both web hosts answer: {answered:?}");

    // The web hosts' proxies serve plain HTTP (no redirect, no certificate of their own).
    let direct = std::process::Command::new("curl")
        .args(["-sS", "--fail", "-H", "Host: app.test"])
        .arg(format!("http://{}:80/version", hosts[0]))
        .output()
        .expect("curl");
    assert_eq!(text(&direct).0.trim(), "v1", "{}", text(&direct).1);
}
