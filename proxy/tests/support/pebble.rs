//! A real ACME server for tests: Pebble (Let's Encrypt's test CA) with pebble-challtestsrv as its
//! DNS server, resolving every name to 127.0.0.1, so Pebble validates challenges against the
//! proxy under test on loopback. Each instance has its own ports, its own HTTPS certificate
//! (from a [`TestCa`]) and a fresh CA of Pebble's own, whose root [`Pebble::root`] returns.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tls::{TestCa, https_get_alpn, roots};

/// How to start Pebble.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// Port Pebble validates HTTP-01 on (the proxy's HTTP port).
    pub http_port: u16,
    /// Port Pebble validates TLS-ALPN-01 on (the proxy's HTTPS port).
    pub tls_port: u16,
    /// Lifetime of issued certificates in seconds (Pebble's default: 5 years).
    pub validity_seconds: Option<u64>,
    /// Port of the ACME directory; a free one when `None`.
    pub listen_port: Option<u16>,
    /// Require external account binding with this key id and HMAC key (base64url).
    pub eab: Option<(String, String)>,
}

/// A running Pebble and its DNS server.
pub struct Pebble {
    pebble: Child,
    dns: Child,
    pub listen_port: u16,
    management_port: u16,
    /// The CA of Pebble's own HTTPS certificate: what `--tls-acme-ca-root` must trust.
    pub https_ca: PathBuf,
    https_ca_pem: String,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("free UDP port")
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

impl Pebble {
    pub fn start(options: PebbleOptions) -> Self {
        require("pebble");
        require("pebble-challtestsrv");
        let dir = tempfile::tempdir().expect("pebble directory");
        let ca = TestCa::new("pebble https test CA");
        let (certificate, key) = ca.issue(&["localhost", "127.0.0.1"]);
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write pebble file");
            path
        };
        let https_ca = write("https-ca.pem", &ca.pem);
        let certificate = write("cert.pem", &certificate);
        let key = write("key.pem", &key);
        let listen_port = options.listen_port.unwrap_or_else(free_port);
        let management_port = free_port();
        let dns_port = free_udp_port();
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen_port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": certificate,
                "privateKey": key,
                "httpPort": options.http_port,
                "tlsPort": options.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let Some((kid, key)) = &options.eab {
            config["pebble"]["externalAccountBindingRequired"] = true.into();
            config["pebble"]["externalAccountMACKeys"] = serde_json::json!({ kid: key });
        }
        if let Some(seconds) = options.validity_seconds {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        let config_path = write("pebble.json", &config.to_string());

        let dns = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
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
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble");
        let stdout = pebble.stdout.take().expect("pebble stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line);
                }
            });
        }
        let pebble = Self {
            pebble,
            dns,
            listen_port,
            management_port,
            https_ca,
            https_ca_pem: ca.pem.clone(),
            log,
            _dir: dir,
        };
        pebble.wait_for_log("ACME directory available");
        pebble
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.listen_port)
    }

    /// The deploy flags that point a service at this Pebble.
    pub fn deploy_flags(&self) -> Vec<String> {
        vec![
            format!("--tls-acme-directory={}", self.directory()),
            format!("--tls-acme-ca-root={}", self.https_ca.display()),
        ]
    }

    /// The root of the certificates Pebble issues (PEM), from its management interface.
    pub async fn root(&self) -> String {
        let got = https_get_alpn(
            self.management_port,
            "localhost",
            "/roots/0",
            &roots(&self.https_ca_pem),
            &[],
        )
        .await
        .expect("Pebble's root certificate");
        assert_eq!(got.status, 200, "{got:?}");
        got.body
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Orders Pebble has received.
    pub fn orders(&self) -> usize {
        self.count("Added order")
    }

    /// Certificates Pebble has issued.
    pub fn issued(&self) -> usize {
        self.count("Issued certificate serial")
    }

    /// Validation attempts with `kind` (`HTTP`, `TLS-ALPN-01`).
    pub fn validations(&self, kind: &str) -> usize {
        self.count(&format!("Attempting to validate w/ {kind}"))
    }

    fn count(&self, needle: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count(needle) == 0 {
            assert!(
                Instant::now() < deadline,
                "Pebble never logged {needle:?}: {:#?}",
                self.log_lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}
