//! A real ACME server for sandbox tests: Pebble (Let's Encrypt's test CA) listening on the
//! sandbox network's gateway, so a sandbox server's hoist-proxy can order certificates from it,
//! with pebble-challtestsrv as its DNS server resolving every name to one sandbox server, where
//! Pebble validates the challenges. Its HTTPS certificate comes from a throw-away CA made with
//! the openssl CLI ([`Pebble::https_ca`] is what `[proxy.acme] ca_root` must name); the root of
//! the certificates it issues comes from its management interface ([`Pebble::issuing_root`]).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running Pebble and its DNS server.
pub struct Pebble {
    pebble: Child,
    dns: Child,
    address: String,
    management: String,
    /// The CA of Pebble's own HTTPS certificate (PEM file).
    pub https_ca: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn require(binary: &str) {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| directory.join(binary).is_file())
    });
    assert!(
        found,
        "{binary} is not installed: scripts/test installs it (Debian package pebble), \
         or run `apt-get install pebble`"
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Pebble {
    /// Pebble on `gateway` (an address of this machine that sandbox servers reach), validating
    /// every name at `validate_at` on ports 80 and 443.
    pub fn start(gateway: &str, validate_at: &str) -> Self {
        require("pebble");
        require("pebble-challtestsrv");
        require("openssl");
        let dir = tempfile::tempdir().expect("pebble directory");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=pebble https test CA",
        ];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "https-ca.pem"]);
        openssl(dir.path(), &ca);
        let mut request = vec!["req", "-subj", "/CN=pebble"];
        request.extend(ec);
        request.extend(["-keyout", "key.pem", "-out", "cert.csr"]);
        openssl(dir.path(), &request);
        std::fs::write(
            dir.path().join("san.ext"),
            format!("subjectAltName=IP:{gateway},DNS:localhost\n"),
        )
        .expect("write san.ext");
        openssl(
            dir.path(),
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                "cert.csr",
                "-CA",
                "https-ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "san.ext",
                "-out",
                "cert.pem",
            ],
        );

        let port = free_port(gateway);
        let address = format!("{gateway}:{port}");
        let management = format!("{gateway}:{}", free_port(gateway));
        let dns_port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .expect("a free UDP port")
            .port();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": address,
                "managementListenAddress": management,
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": 80,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write pebble.json");

        let dns = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args([
                "-management",
                &format!("127.0.0.1:{}", free_port("127.0.0.1")),
            ])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", validate_at, "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv");
        let mut pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble");
        let stdout = pebble.stdout.take().expect("pebble stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    log.lock().expect("log").push(line);
                }
            });
        }
        let pebble = Self {
            pebble,
            dns,
            address,
            management,
            https_ca: dir.path().join("https-ca.pem"),
            log,
            dir,
        };
        pebble.wait_for_log("ACME directory available");
        pebble
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://{}/dir", self.address)
    }

    /// The root of the certificates Pebble issues, written to a PEM file.
    pub fn issuing_root(&self) -> PathBuf {
        let path = self.dir.path().join("issuing-root.pem");
        let output = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(&self.https_ca)
            .arg(format!("https://{}/roots/0", self.management))
            .arg("-o")
            .arg(&path)
            .output()
            .expect("run curl");
        assert!(
            output.status.success(),
            "Pebble's root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        path
    }

    /// Certificates Pebble has issued.
    pub fn issued(&self) -> usize {
        self.count("Issued certificate serial")
    }

    fn count(&self, needle: &str) -> usize {
        let log = self.log.lock().expect("log");
        log.iter().filter(|line| line.contains(needle)).count()
    }

    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count(needle) == 0 {
            assert!(
                Instant::now() < deadline,
                "Pebble never logged {needle:?}: {:#?}",
                self.log.lock().expect("log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
