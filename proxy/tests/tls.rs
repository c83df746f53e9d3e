//! End-to-end tests of HTTPS in hoist-proxy: a real `hoist-proxy run` process, a real ACME server
//! (Pebble, validating challenges against the proxy on loopback), real backends, and a real TLS
//! client that verifies the chain against Pebble's root (or a test CA) and sends SNI.

mod support;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::RootCertStore;
use support::pebble::{Pebble, PebbleOptions, free_port};
use support::tls::{HttpsGot, TestCa, https_get, https_get_alpn, roots};
use support::*;

const HOST: &str = "app.hoist.test";

/// Runs a control command off the runtime and asserts it succeeded.
async fn ok(control: &Control, args: Vec<String>) -> String {
    let control = control.clone();
    blocking(move || control.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())).await
}

async fn cli(control: &Control, args: Vec<String>) -> std::process::Output {
    let control = control.clone();
    blocking(move || control.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())).await
}

/// `deploy web --target T --host HOST --tls` plus `extra`.
fn tls_deploy(target: &Backend, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "deploy",
        "web",
        "--target",
        &target.target(),
        "--host",
        HOST,
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.push("--tls".to_owned());
    args.extend_from_slice(extra);
    args
}

/// Polls HTTPS until a request succeeds, within `limit`.
async fn wait_for_https(
    proxy: &Proxy,
    path: &str,
    roots: &Arc<RootCertStore>,
    limit: Duration,
) -> HttpsGot {
    let deadline = Instant::now() + limit;
    loop {
        match https_get(proxy.https_port, HOST, path, roots).await {
            Ok(got) => return got,
            Err(error) => assert!(
                Instant::now() < deadline,
                "HTTPS never answered within {limit:?}; last error: {error}; proxy log: {:#?}",
                proxy.log_lines()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET on the HTTP port with `Host: HOST:<http port>`.
async fn http_get(proxy: &Proxy, path: &str) -> Got {
    let host = format!("{HOST}:{}", proxy.port);
    get_with(&proxy.url(path), &[("host", host.as_str())]).await
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The certificate a client without SNI gets, as `openssl x509 -subject` prints it.
fn subject_without_sni(port: u16) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -noservername </dev/null 2>/dev/null \
         | openssl x509 -noout -subject"
    );
    let output = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("run openssl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_certificate_is_verified_served_over_h2_and_kept_across_restarts() {
    let backend = Backend::start("v1").await;
    let mut proxy = Proxy::start(&[]);
    let pebble = Pebble::start(PebbleOptions {
        http_port: proxy.port,
        tls_port: proxy.https_port,
        ..PebbleOptions::default()
    });
    let control = proxy.control();

    // Before any certificate exists, plain HTTP is served as usual.
    ok(&control, tls_deploy(&backend, &pebble.deploy_flags())).await;
    let pebble_roots = roots(&pebble.root().await);
    let got = wait_for_https(&proxy, "/version", &pebble_roots, Duration::from_secs(30)).await;
    assert_eq!((got.status, got.body.as_str()), (200, "v1"));
    assert_eq!(got.alpn.as_deref(), Some("h2"), "HTTP/2 through ALPN");
    assert_eq!(got.version, http::Version::HTTP_2);
    assert!(
        pebble.validations("HTTP") > 0,
        "Pebble validated over HTTP-01"
    );
    proxy.wait_for_log("Answered ACME HTTP-01 challenge");
    let leaf = got.leaf.clone();

    // HTTP/1.1 clients too, and the app learns the request was HTTPS.
    let got = https_get_alpn(
        proxy.https_port,
        HOST,
        "/headers",
        &pebble_roots,
        &["http/1.1"],
    )
    .await
    .expect("HTTPS over HTTP/1.1");
    assert_eq!(got.version, http::Version::HTTP_11);
    assert!(
        got.body.contains("x-forwarded-proto: https"),
        "{}",
        got.body
    );

    // Plain HTTP now redirects, keeping path, query and the HTTPS port.
    let got = http_get(&proxy, "/version?x=1").await;
    assert_eq!(got.status, 301);
    assert_eq!(
        got.headers["location"],
        format!("https://{HOST}:{}/version?x=1", proxy.https_port).as_str()
    );

    // A client without SNI gets the one certificate there is, not a failed handshake.
    assert!(
        subject_without_sni(proxy.https_port).contains(HOST),
        "{}",
        subject_without_sni(proxy.https_port)
    );

    // Account and certificate are on disk, readable by the owner only.
    let store = proxy
        .state_dir
        .join("certs")
        .join(format!("127.0.0.1_{}_dir", pebble.listen_port));
    assert_eq!(mode(&store.join("account.json")), 0o600);
    assert_eq!(mode(&store.join(format!("{HOST}.pem"))), 0o600);
    assert_eq!(mode(&store), 0o700);
    let orders = pebble.orders();
    assert_eq!(orders, 1, "one order: {:#?}", pebble.log_lines());

    // Restart on the same state: the stored certificate is served at once, no new order.
    let ports = (proxy.port, proxy.https_port);
    proxy.kill();
    let restarted = Proxy::start_at(&proxy.state_dir, ports, &[]);
    let got = wait_for_https(
        &restarted,
        "/version",
        &pebble_roots,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!((got.status, got.body.as_str()), (200, "v1"));
    assert_eq!(got.leaf, leaf, "the stored certificate");
    restarted.wait_for_log("Using stored certificate");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pebble.orders(), orders, "no order after the restart");
    assert_eq!(restarted.count_log("Requesting certificate"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_certificate_needs_only_the_https_port() {
    let backend = Backend::start("v1").await;
    let proxy = Proxy::start(&[]);
    // Pebble's HTTP-01 validations would go to a port nobody listens on.
    let pebble = Pebble::start(PebbleOptions {
        http_port: free_port(),
        tls_port: proxy.https_port,
        ..PebbleOptions::default()
    });
    let control = proxy.control();
    let mut flags = pebble.deploy_flags();
    flags.push("--tls-acme-challenge=tls-alpn-01".to_owned());
    ok(&control, tls_deploy(&backend, &flags)).await;

    let pebble_roots = roots(&pebble.root().await);
    let got = wait_for_https(&proxy, "/version", &pebble_roots, Duration::from_secs(30)).await;
    assert_eq!(
        (got.status, got.body.as_str(), got.alpn.as_deref()),
        (200, "v1", Some("h2"))
    );
    assert_eq!(pebble.validations("HTTP"), 0, "no HTTP-01 validation");
    assert_eq!(proxy.count_log("Answered ACME HTTP-01 challenge"), 0);
    let obtained = proxy.wait_for_log("Certificate obtained");
    assert!(obtained.contains(HOST), "{obtained}");
    assert_eq!(http_get(&proxy, "/version").await.status, 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_renew_without_a_failed_request() {
    let backend = Backend::start("v1").await;
    let proxy = Proxy::start(&[]);
    // 12 s certificates: renewed at two thirds, 8 s in.
    let pebble = Pebble::start(PebbleOptions {
        http_port: proxy.port,
        tls_port: proxy.https_port,
        validity_seconds: Some(12),
        ..PebbleOptions::default()
    });
    let control = proxy.control();
    ok(&control, tls_deploy(&backend, &pebble.deploy_flags())).await;
    let pebble_roots = roots(&pebble.root().await);
    let first = wait_for_https(&proxy, "/version", &pebble_roots, Duration::from_secs(30)).await;

    // A new connection (full handshake, chain verified) every few milliseconds for 14 s.
    let mut leaves = HashSet::from([first.leaf]);
    let (mut served, mut failures) = (0, Vec::new());
    let until = Instant::now() + Duration::from_secs(14);
    while Instant::now() < until {
        match https_get(proxy.https_port, HOST, "/version", &pebble_roots).await {
            Ok(got) if got.status == 200 => {
                served += 1;
                leaves.insert(got.leaf);
            }
            Ok(got) => failures.push(format!("status {}", got.status)),
            Err(error) => failures.push(error),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(served > 100, "only {served} requests");
    assert!(
        leaves.len() >= 2,
        "the certificate was not renewed: {:#?}",
        proxy.log_lines()
    );
    assert!(pebble.issued() >= 2);
    let renewals = proxy
        .log_lines()
        .into_iter()
        .filter(|line| line.contains("Certificate obtained") && line.contains("\"renewal\":true"))
        .count();
    assert!(renewals >= 1, "{:#?}", proxy.log_lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_outage_keeps_http_serving_and_issuance_recovers() {
    let backend = Backend::start("v1").await;
    let metrics_port = free_port();
    let proxy = Proxy::start(&["--metrics-port", &metrics_port.to_string()]);
    let control = proxy.control();
    let listen_port = free_port();
    let directory = format!("https://127.0.0.1:{listen_port}/dir");

    // Nothing answers at the ACME directory yet.
    let ca = TestCa::new("unused");
    let ca_path = proxy.state_dir.with_file_name("pebble-https-ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let flags = vec![
        format!("--tls-acme-directory={directory}"),
        format!("--tls-acme-ca-root={}", ca_path.display()),
    ];
    ok(&control, tls_deploy(&backend, &flags)).await;
    let failed = proxy.wait_for_log("Certificate request failed");
    for expected in [HOST, "http-01", &directory, "Connection refused", "hint"] {
        assert!(failed.contains(expected), "{expected:?} missing: {failed}");
    }

    // HTTP serves, not redirected while there is no certificate; HTTPS fails cleanly.
    let got = http_get(&proxy, "/version").await;
    assert_eq!((got.status, got.body.as_str()), (200, "v1"));
    let error = https_get(proxy.https_port, HOST, "/version", &ca.roots())
        .await
        .expect_err("no certificate yet");
    assert!(error.starts_with("handshake"), "{error}");
    let metrics = get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .body;
    assert!(
        metrics.contains("hoist_proxy_tls_handshake_errors_total{reason=\"no_certificate\"} 1"),
        "{metrics}"
    );

    // Retries (2 s, then 4 s) fail again, and the same error is logged only once.
    proxy.wait_for_log_count("Requesting certificate", 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(proxy.count_log("Certificate request failed"), 1);

    // Pebble comes up with that CA's certificate: the next retry gets the certificate.
    let pebble = Pebble::start(PebbleOptions {
        http_port: proxy.port,
        tls_port: proxy.https_port,
        listen_port: Some(listen_port),
        ..PebbleOptions::default()
    });
    std::fs::copy(&pebble.https_ca, &ca_path).unwrap();
    let pebble_roots = roots(&pebble.root().await);
    let got = wait_for_https(&proxy, "/version", &pebble_roots, Duration::from_secs(40)).await;
    assert_eq!((got.status, got.body.as_str()), (200, "v1"));
    let obtained = proxy.wait_for_log("Certificate obtained");
    assert!(!obtained.contains("\"failed_attempts\":0"), "{obtained}");
    assert_eq!(http_get(&proxy, "/version").await.status, 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding_creates_the_account_with_the_deploys_key() {
    const KID: &str = "kid-1";
    const HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let backend = Backend::start("v1").await;
    let proxy = Proxy::start(&[]);
    let pebble = Pebble::start(PebbleOptions {
        http_port: proxy.port,
        tls_port: proxy.https_port,
        eab: Some((KID.to_owned(), HMAC.to_owned())),
        ..PebbleOptions::default()
    });
    let control = proxy.control();

    // A key id without a key is refused before anything changes.
    let mut flags = pebble.deploy_flags();
    flags.push(format!("--tls-acme-eab-kid={KID}"));
    let output = cli(&control, tls_deploy(&backend, &flags)).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output)
            .contains("no HMAC key is known for the external account binding key id kid-1"),
        "{}",
        stderr(&output)
    );
    assert!(!proxy.ok(&["list"]).contains("web"));

    // Without binding, Pebble refuses the account; the log says why.
    ok(&control, tls_deploy(&backend, &pebble.deploy_flags())).await;
    let failed = proxy.wait_for_log("Certificate request failed");
    assert!(
        failed.contains("externalAccountRequired") || failed.contains("external account"),
        "{failed}"
    );

    // The key travels in the environment, never on the command line; the redeploy retries at once.
    let args = tls_deploy(&backend, &flags);
    let control_env = control.clone();
    let output = blocking(move || {
        control_env.cli_with_env(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &[("HOIST_PROXY_TLS_ACME_EAB_HMAC_KEY", HMAC)],
        )
    })
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let pebble_roots = roots(&pebble.root().await);
    let got = wait_for_https(&proxy, "/version", &pebble_roots, Duration::from_secs(20)).await;
    assert_eq!((got.status, got.body.as_str()), (200, "v1"));
    assert!(
        proxy.log_lines().iter().all(|line| !line.contains(HMAC)),
        "the HMAC key reached the log"
    );
    let state = std::fs::read_to_string(proxy.state_dir.join("hoist-proxy.state")).unwrap();
    assert!(!state.contains(HMAC), "the HMAC key reached the state file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_certificates_are_served_and_reloaded_when_they_change() {
    let backend = Backend::start("v1").await;
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    let ca = TestCa::new("custom test CA");
    let directory = tempfile::tempdir().unwrap();
    let (certificate, key) = (
        directory.path().join("cert.pem"),
        directory.path().join("key.pem"),
    );
    let first = ca.write(&[HOST], &certificate, &key);
    let flags = vec![
        format!("--tls-certificate-path={}", certificate.display()),
        format!("--tls-private-key-path={}", key.display()),
    ];

    // A key that does not belong to the certificate is refused at deploy time.
    let other_key = directory.path().join("other-key.pem");
    std::fs::write(&other_key, ca.issue(&[HOST]).1).unwrap();
    let output = cli(
        &control,
        tls_deploy(
            &backend,
            &[
                format!("--tls-certificate-path={}", certificate.display()),
                format!("--tls-private-key-path={}", other_key.display()),
            ],
        ),
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("does not belong to the certificate"),
        "{}",
        stderr(&output)
    );

    ok(&control, tls_deploy(&backend, &flags)).await;
    let got = wait_for_https(&proxy, "/version", &ca.roots(), Duration::from_secs(5)).await;
    assert_eq!((got.status, got.body.as_str()), (200, "v1"));
    assert_eq!(got.leaf, first);

    // A broken file keeps the current certificate and is reported once.
    std::fs::write(&certificate, "not a certificate").unwrap();
    proxy.wait_for_log("Cannot load certificate");
    let got = https_get(proxy.https_port, HOST, "/version", &ca.roots())
        .await
        .expect("still served");
    assert_eq!(got.leaf, first);

    // A new pair on disk is picked up.
    let second = ca.write(&[HOST], &certificate, &key);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = https_get(proxy.https_port, HOST, "/version", &ca.roots())
            .await
            .expect("HTTPS while reloading");
        if got.leaf == second {
            break;
        }
        assert_eq!(got.leaf, first);
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.wait_for_log("Reloaded certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_clients_are_served_throughout_tls_deploys() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let proxy = Proxy::start(&[]);
    let pebble = Pebble::start(PebbleOptions {
        http_port: proxy.port,
        tls_port: proxy.https_port,
        ..PebbleOptions::default()
    });
    let control = proxy.control();
    let flags = pebble.deploy_flags();
    ok(&control, tls_deploy(&blue, &flags)).await;
    let pebble_roots = roots(&pebble.root().await);
    wait_for_https(&proxy, "/version", &pebble_roots, Duration::from_secs(30)).await;

    // HTTPS load: each request a new connection and handshake, HTTP/2 and HTTP/1.1 alike.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (stop, served, failures, roots) = (
            Arc::clone(&stop),
            Arc::clone(&served),
            Arc::clone(&failures),
            Arc::clone(&pebble_roots),
        );
        let port = proxy.https_port;
        let alpn: &'static [&'static str] = if worker % 2 == 0 {
            &["h2"]
        } else {
            &["http/1.1"]
        };
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match https_get_alpn(port, HOST, "/version", &roots, alpn).await {
                    Ok(got) if got.status == 200 && !got.body.is_empty() => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(got) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{} {}", got.status, got.body)),
                    Err(error) => failures.lock().unwrap().push(error),
                }
            }
        }));
    }
    for round in 0..10 {
        let target = if round % 2 == 0 { &green } else { &blue };
        ok(&control, tls_deploy(target, &flags)).await;
        let got = https_get(proxy.https_port, HOST, "/version", &pebble_roots)
            .await
            .expect("HTTPS after a deploy");
        assert_eq!(got.body, target.name);
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(served.load(Ordering::Relaxed) > 50, "{served:?}");
    assert_eq!(pebble.issued(), 1, "redeploys keep the certificate");
}
