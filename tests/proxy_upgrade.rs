//! hoist-proxy replaced under traffic on one sandbox server, with no load balancer: the image
//! built from this repository's Dockerfile, retagged so `proxy.image` changes.
//!
//! - `hoist proxy reboot` to a new image under load: zero failed requests; the routes, a TLS
//!   service with its certificate stored in the volume and a paused service survive.
//! - A new image that exits at once: the reboot fails with its message, the old proxy serves on.
//! - `hoist deploy` with a changed `proxy.image`: the proxy is handed over first, then the app is
//!   deployed, zero failed.
//! - The proxy restarted (`docker restart`) right after a switch, while the old version drains:
//!   hoist asks the proxy where it routes, reports the switch, and the new version serves.

mod support;

use std::process::Command;
use std::time::Duration;

use support::load::Load;
use support::sandbox::{
    Sandbox, assert_success, git, init_repository, testapp_dir, text, write_testapp_config,
};
use support::{TestContext, eventually, http_get};

/// The state volume's directory on the server.
const VOLUME_DIR: &str = "/var/lib/docker/volumes/hoist-proxy/_data";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_is_replaced_under_load_without_a_failed_request() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "upgrade", 1);
    let docker = support::docker().await;
    let (_, password) = sandbox.registry_credentials();
    let first = sandbox.push_proxy_image(&docker, "upgrade").await;
    let (repository, _) = first.rsplit_once(':').expect("a tag");
    let retag = |tag: &str| format!("{repository}:{tag}");
    let (second, third) = (retag("second"), retag("third"));
    for image in [&second, &third] {
        support::tag_image(&docker, &first, image).await;
        sandbox.push(&docker, image).await;
    }
    let exits = retag("exits");
    build_exiting_image(&docker, &exits).await;
    sandbox.push(&docker, &exits).await;

    let dir = testapp_dir(&format!("REGISTRY_PASSWORD={password}\n"));
    let host = sandbox.address(0);
    let config = |proxy_image: &str, version: &str| {
        write_testapp_config(
            dir.path(),
            &sandbox,
            std::slice::from_ref(&host),
            proxy_image,
            version,
            "",
        );
    };
    config(&first, "v1");
    std::fs::write(dir.path().join(".gitignore"), ".hoist/secrets*\n").expect("gitignore");
    init_repository(dir.path());
    let commit = |message: &str| {
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", message]);
    };
    commit("v1");
    let hoist = |args: &[&str]| context.hoist_in(dir.path(), args);
    assert_success(&hoist(&["deploy"]), "hoist deploy v1");
    let address = format!("{host}:80");
    let ssh = |what: &str, command: &str| {
        let output = sandbox.ssh(0, command);
        assert_success(&output, what);
        text(&output).0
    };
    let listed = || ssh("list", "docker exec hoist-proxy hoist-proxy list");

    // A TLS service whose certificate is stored in the volume, and a paused service.
    let certs = tempfile::tempdir().expect("temporary directory");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=tls.test"])
        .args(["-addext", "subjectAltName=DNS:tls.test", "-keyout"])
        .arg(certs.path().join("key.pem"))
        .arg("-out")
        .arg(certs.path().join("cert.pem"))
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for file in ["cert.pem", "key.pem"] {
        let contents = std::fs::read_to_string(certs.path().join(file)).expect("read pem");
        let output = support::ssh(
            sandbox.server(0),
            &sandbox.key(),
            &sandbox.known_hosts(),
            &format!(
                "mkdir -p {VOLUME_DIR}/custom && cat > {VOLUME_DIR}/custom/{file} && \
                 chown -R 65532:65532 {VOLUME_DIR}/custom"
            ),
            Some(&contents),
        );
        assert_success(&output, "upload the certificate");
    }
    let v1_id = ssh(
        "v1 id",
        "docker ps --filter label=service=hello --filter label=role=web --format '{{.ID}}'",
    );
    ssh(
        "TLS service",
        &format!(
            "docker exec hoist-proxy hoist-proxy deploy tls-web --target={}:3000 --host=tls.test \
             --tls --tls-certificate-path=/var/lib/hoist-proxy/custom/cert.pem \
             --tls-private-key-path=/var/lib/hoist-proxy/custom/key.pem",
            v1_id.trim()
        ),
    );
    ssh(
        "paused service",
        "docker exec hoist-proxy hoist-proxy deploy paused-web --target=paused-web:3000 \
         --host=paused.test --force && docker exec hoist-proxy hoist-proxy pause paused-web",
    );
    let https = || {
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(certs.path().join("cert.pem"))
            .args([
                "--resolve",
                &format!("tls.test:443:{host}"),
                "https://tls.test/version",
            ])
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(https(), "v1", "the TLS service with its stored certificate");

    // `hoist proxy reboot` to another image, under load.
    let before = ssh("proxy id", "docker inspect hoist-proxy --format '{{.Id}}'");
    config(&second, "v1");
    let load = Load::start(address.clone(), 4);
    let output = hoist(&["proxy", "reboot"]);
    let versions = load.finish_clean("hoist proxy reboot", 50);
    assert_success(&output, "hoist proxy reboot");
    assert!(
        text(&output).1.contains("no request refused"),
        "{}",
        text(&output).1
    );
    assert_eq!(versions, ["v1"]);
    let after = ssh(
        "proxy",
        "docker inspect hoist-proxy --format '{{.Id}} {{.Config.Image}}'",
    );
    assert!(after.contains(&second), "{after}");
    assert!(!after.contains(before.trim()), "a new container: {after}");
    let routes = listed();
    assert!(
        routes.contains("hello-web") && routes.contains("tls-web"),
        "{routes}"
    );
    assert!(
        routes
            .lines()
            .any(|line| line.contains("paused-web") && line.contains("paused")),
        "{routes}"
    );
    assert_eq!(https(), "v1", "the certificate is served by the new proxy");
    let left = ssh(
        "leftovers",
        "docker ps -a --format '{{.Names}}' | grep -E '^hoist-proxy-(next|old)$' || true",
    );
    assert_eq!(left.trim(), "", "no container left from the handover");

    // A new image that exits at once: the reboot fails and says why; the old proxy serves on.
    config(&exits, "v1");
    let output = hoist(&["proxy", "reboot"]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("did not take over"), "{stderr}");
    assert!(
        stderr.contains("PORT"),
        "its own message is shown: {stderr}"
    );
    assert!(stderr.contains("keeps serving"), "{stderr}");
    let still = ssh(
        "proxy",
        "docker inspect hoist-proxy --format '{{.Config.Image}}'",
    );
    assert_eq!(still.trim(), second);
    assert_eq!(http_get(&address, "/version").expect("GET").1.trim(), "v1");
    let names = ssh("names", "docker ps -a --format '{{.Names}}'");
    assert!(!names.contains("hoist-proxy-next"), "{names}");

    // `hoist deploy` with a changed `proxy.image`: the proxy first, then v2, zero failed.
    config(&third, "v2");
    commit("v2");
    let load = Load::start(address.clone(), 4);
    let output = hoist(&["deploy"]);
    let versions = load.finish_clean("hoist deploy with a new proxy image", 50);
    assert_success(&output, "hoist deploy v2");
    assert!(
        text(&output).1.contains("handed over"),
        "{}",
        text(&output).1
    );
    assert_eq!(versions.last().map(String::as_str), Some("v2"));
    let image = ssh(
        "proxy",
        "docker inspect hoist-proxy --format '{{.Config.Image}}'",
    );
    assert_eq!(image.trim(), third);

    // The proxy restarted right after the switch to v3, while v2 drains slow requests.
    config(&third, "v3");
    commit("v3");
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || http_get(&address, "/slow?ms=8000"))
        })
        .collect();
    let deploy = context
        .hoist_command(dir.path(), &["deploy"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start hoist deploy v3");
    assert!(
        eventually(Duration::from_secs(60), || {
            http_get(&address, "/version").is_ok_and(|(_, body)| body.trim() == "v3")
        }),
        "v3 never served"
    );
    // Switched; the proxy is draining v2's slow requests while hoist waits for its answer.
    // Killed, not stopped: its answer to hoist is lost.
    ssh("restart the proxy", "docker restart -t 0 hoist-proxy");
    let output = deploy.wait_with_output().expect("wait for hoist deploy v3");
    let (stdout, stderr) = text(&output);
    assert_success(&output, "hoist deploy v3 across a proxy restart");
    assert!(
        stderr.contains("the proxy routes to it"),
        "hoist asked the proxy where it routes:\n{stdout}\n{stderr}"
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            http_get(&address, "/version")
                .is_ok_and(|(status, body)| status == 200 && body.trim() == "v3")
        }),
        "v3 serves after the restart"
    );
    let routes = listed();
    let routed = routes
        .lines()
        .find(|line| line.starts_with("hello-web"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|target| target.split(':').next())
        .expect("hello-web routes somewhere")
        .to_string();
    let exists = ssh(
        "routed container",
        &format!("docker inspect {routed} --format '{{{{.State.Running}}}}'"),
    );
    assert_eq!(
        exists.trim(),
        "true",
        "the container the proxy routes to runs"
    );
    for request in slow {
        let _ = request.join();
    }
}

/// An image that exits at once with a message, standing in for a broken hoist-proxy: the test
/// app under the proxy's name, with a `PORT` it refuses.
async fn build_exiting_image(docker: &bollard::Docker, tag: &str) {
    let binary = std::fs::read(support::static_binary("hoist-testapp")).expect("read the test app");
    let dockerfile = "FROM scratch\nCOPY hoist-testapp /usr/local/bin/hoist-proxy\n\
                      ENV PATH=/usr/local/bin PORT=not-a-port\nUSER 65532:65532\n";
    let context = support::tar_context(&[
        ("Dockerfile", dockerfile.as_bytes().to_vec(), 0o644),
        ("hoist-testapp", binary, 0o755),
    ]);
    support::build_image(
        docker,
        context,
        tag,
        None,
        &std::collections::HashMap::new(),
    )
    .await;
}
