//! The hoist-proxy users run, with the defaults users get: the image built from this
//! repository's Dockerfile (scratch, uid 65532, state in the `hoist-proxy` volume), created by
//! `hoist deploy` on a sandbox server with the flags hoist passes and deploy.toml's buffering
//! defaults, then fed what production traffic brings: uploads and downloads past the in-memory
//! buffer, one over the body limit, a restart with files left in the spill directory, and a
//! state directory it cannot write.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::TestContext;
use support::sandbox::{
    Sandbox, assert_success, git, init_repository, testapp_dir, text, write_config,
};

/// The state volume's directory on the server.
const VOLUME_DIR: &str = "/var/lib/docker/volumes/hoist-proxy/_data";

/// FNV-1a, as the test app's `POST /upload` reports it.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The test app's `/bytes` pattern.
fn pattern(length: usize) -> Vec<u8> {
    (0..length).map(|index| (index % 251) as u8).collect()
}

/// One HTTP/1.1 exchange on a new connection: `head` (without the final blank line), then
/// `body`; returns the status, the response headers (lower-cased) and the body.
fn exchange(address: &str, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "{head}\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("head");
    // The proxy may answer (413) before the body is sent; a failed write is then expected.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head, response[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_image_handles_big_bodies_restarts_and_unwritable_state() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "image", 1);
    let docker = support::docker().await;
    let proxy_image = sandbox.push_proxy_image(&docker, "image").await;
    let (username, password) = sandbox.registry_credentials();
    let registry = sandbox.registry();
    let dir = testapp_dir(&format!("REGISTRY_PASSWORD={password}\n"));
    let host = sandbox.address(0);
    // No [proxy.buffering]: the defaults users get.
    write_config(
        dir.path(),
        &sandbox,
        std::slice::from_ref(&host),
        "",
        &format!(
            "[registry]\nserver = \"{registry}\"\nusername = \"{username}\"\n\
             password = \"REGISTRY_PASSWORD\"\n\
             \n[builder]\nargs = {{ VERSION = \"v1\" }}\n\
             \n[proxy]\nimage = \"{proxy_image}\"\napp_port = 3000\ndeploy_timeout = \"5s\"\n\
             [proxy.healthcheck]\ninterval = \"200ms\"\ntimeout = \"1s\"\n"
        ),
    );
    std::fs::write(dir.path().join(".gitignore"), ".hoist/secrets*\n").expect("gitignore");
    init_repository(dir.path());
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "v1"]);
    let deployed = context.hoist_in(dir.path(), &["deploy"]);
    assert_success(&deployed, "hoist deploy v1");
    let address = format!("{host}:80");

    // Uploads past the 1 MB in-memory buffer spill to the volume and reach the app intact.
    for size in [2_000_000, 20_000_000] {
        let body = pattern(size);
        let head = format!("POST /upload HTTP/1.1\r\nContent-Length: {size}");
        let (status, _, answer) = exchange(&address, &head, &body);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert_eq!(status, 200, "upload of {size} bytes: {answer}");
        assert_eq!(
            answer.trim(),
            format!("received {size} bytes fnv1a {:016x}", fnv1a(&body)),
            "the app got every byte"
        );
    }
    // A fixed-length download past the buffer, buffered whole and sent intact.
    let (status, head, body) = exchange(&address, "GET /bytes?n=5000000 HTTP/1.1", &[]);
    assert_eq!(status, 200);
    assert!(head.contains("content-length: 5000000"), "{head}");
    assert!(body == pattern(5_000_000), "5 MB download intact");
    // Over deploy.toml's default limit (100 MB): refused from the announced length.
    let (status, _, _) = exchange(
        &address,
        "POST /upload HTTP/1.1\r\nContent-Length: 104857601",
        b"x",
    );
    assert_eq!(status, 413);

    // A restart empties the spill directory.
    let buffers = format!("{VOLUME_DIR}/buffers");
    let planted = sandbox.ssh(0, &format!("touch {buffers}/left-over && ls -A {buffers}"));
    assert_success(&planted, "plant a left-over spill file");
    assert!(text(&planted).0.contains("left-over"));
    let restarted = sandbox.ssh(0, "docker restart hoist-proxy");
    assert_success(&restarted, "docker restart hoist-proxy");
    assert!(
        support::eventually(Duration::from_secs(20), || {
            support::http_get(&address, "/version")
                .is_ok_and(|(status, body)| status == 200 && body.trim() == "v1")
        }),
        "the proxy comes back with its route"
    );
    let listed = sandbox.ssh(0, &format!("ls -A {buffers}"));
    assert_success(&listed, "list the spill directory");
    assert_eq!(
        text(&listed).0.trim(),
        "",
        "left-over files removed on start"
    );

    // A state directory the proxy cannot write: the deploy fails, nothing switches, v1 serves.
    let locked = sandbox.ssh(0, &format!("chmod 0500 {VOLUME_DIR}"));
    assert_success(&locked, "make the state directory read-only");
    std::fs::write(
        dir.path().join("deploy.toml"),
        std::fs::read_to_string(dir.path().join("deploy.toml"))
            .expect("read deploy.toml")
            .replace("VERSION = \"v1\"", "VERSION = \"v2\""),
    )
    .expect("write deploy.toml");
    git(dir.path(), &["commit", "-q", "-am", "v2"]);
    let refused = context.hoist_in(dir.path(), &["deploy"]);
    let (stdout, stderr) = text(&refused);
    assert!(
        !refused.status.success(),
        "deploy must fail\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("cannot write state file"), "{stderr}");
    assert!(stderr.contains("nothing switched"), "{stderr}");
    assert!(stderr.contains("keeps serving"), "{stderr}");
    let (status, body) = support::http_get(&address, "/version").expect("GET /version");
    assert_eq!((status, body.trim()), (200, "v1"), "v1 keeps serving");
    let unlocked = sandbox.ssh(0, &format!("chmod 0700 {VOLUME_DIR}"));
    assert_success(&unlocked, "make the state directory writable again");
    let deployed = context.hoist_in(dir.path(), &["deploy"]);
    assert_success(&deployed, "hoist deploy v2");
    let (status, body) = support::http_get(&address, "/version").expect("GET /version");
    assert_eq!((status, body.trim()), (200, "v2"));
}
