//! Replacing a running hoist-proxy without refusing a connection: real `hoist-proxy listen` and
//! `hoist-proxy run --listeners-from` processes on loopback, real clients. Twenty upgrades under
//! continuous load (keep-alive and new-connection clients, a WebSocket and a slow request
//! started before each upgrade) fail nothing; a successor that fails after freezing the old
//! proxy leaves it serving and taking changes.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::{Backend, Proxy, deploy, echo, get, websocket};

/// A running `hoist-proxy listen` on loopback, on free ports.
struct Owner {
    child: Child,
    socket: PathBuf,
    http_port: u16,
}

impl Owner {
    fn start(state_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hoist-proxy"))
            .args(["listen", "--bind", "127.0.0.1", "--http-port", "0"])
            .args(["--https-port", "0", "--listeners", "2", "--state-dir"])
            .arg(state_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hoist-proxy listen");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("\"Holding the listeners\"") {
                    let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    let _ = sender.send(value["http_port"].as_u64().unwrap_or(0) as u16);
                }
            }
        });
        let http_port = receiver
            .recv_timeout(Duration::from_secs(20))
            .expect("hoist-proxy listen did not report its ports");
        Self {
            child,
            socket: state_dir.join("listeners.sock"),
            http_port,
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A proxy taking its listeners from `owner`; returns once it serves (and its predecessor, if
/// any, has let go).
fn successor(state_dir: &Path, owner: &Owner) -> Proxy {
    let socket = owner.socket.display().to_string();
    Proxy::start_at(state_dir, (0, 0), &["--listeners-from", &socket])
}

/// Clients that GET `/version` until stopped and count what fails.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `keep_alive` clients reusing connections and `fresh` clients opening one per request.
    fn start(url: String, keep_alive: usize, fresh: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for index in 0..keep_alive + fresh {
            let mut builder = Client::builder(TokioExecutor::new());
            if index >= keep_alive {
                builder.pool_max_idle_per_host(0);
            }
            let client: Client<HttpConnector, Full<Bytes>> = builder.build(HttpConnector::new());
            let (stop, ok, failures, url) = (
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failures),
                url.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let request = http::Request::get(&url)
                        .body(Full::new(Bytes::new()))
                        .expect("request");
                    let outcome = match client.request(request).await {
                        Ok(response) if response.status() == 200 => {
                            match response.into_body().collect().await {
                                Ok(_) => Ok(()),
                                Err(error) => Err(format!("body: {error}")),
                            }
                        }
                        Ok(response) => Err(format!("status {}", response.status())),
                        Err(error) => Err(format!("{error:?}")),
                    };
                    match outcome {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => failures.lock().unwrap().push(error),
                    }
                }
            }));
        }
        Self {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_upgrades_under_load_refuse_and_fail_nothing() {
    let home = tempfile::tempdir().expect("temporary directory");
    let state_dir = home.path().join("state");
    let owner = Owner::start(&state_dir);
    let mut proxy = successor(&state_dir, &owner);
    assert_eq!(proxy.port, owner.http_port, "the owner's port is served");
    let backend = Backend::start("v1").await;
    deploy(&proxy.control(), "web", &backend, &[]).await;
    let base = format!("http://127.0.0.1:{}", owner.http_port);
    let load = Load::start(format!("{base}/version"), 3, 3);

    let mut slow = Vec::new();
    let mut sockets = Vec::new();
    let mut retired = Vec::new();
    for round in 0..20 {
        // Started before the upgrade, finished after it, on the old process.
        let url = format!("{base}/slow?ms=2000");
        slow.push(tokio::spawn(async move { get(&url).await }));
        let mut socket = websocket(&format!("ws://127.0.0.1:{}/ws", owner.http_port)).await;
        assert_eq!(echo(&mut socket, "before").await.as_deref(), Ok("before"));
        let next = successor(&state_dir, &owner);
        assert_eq!(
            echo(&mut socket, &format!("after {round}")).await,
            Ok(format!("after {round}")),
            "a WebSocket opened before upgrade {round} keeps working after it"
        );
        sockets.push(socket);
        retired.push(std::mem::replace(&mut proxy, next));
    }
    for mut socket in sockets {
        assert_eq!(echo(&mut socket, "last").await.as_deref(), Ok("last"));
        let _ = futures_util::SinkExt::close(&mut socket).await;
    }
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across 20 upgrades: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(ok > 200, "only {ok} requests got through");
    for request in slow {
        let got = request.await.expect("slow request task");
        assert_eq!(
            got.status, 200,
            "a slow request in flight across an upgrade"
        );
        assert_eq!(got.body, "v1 slow 2000");
    }
    // Each old process exits by itself once drained, with status 0.
    for mut old in retired {
        let status = wait_exit(&mut old.child, Duration::from_secs(20));
        assert!(status.is_some_and(|status| status.success()), "{status:?}");
    }
    let got = get(&format!("{base}/version")).await;
    assert_eq!((got.status, got.body.as_str()), (200, "v1"));
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_fails_leaves_the_old_proxy_serving_and_taking_changes() {
    let home = tempfile::tempdir().expect("temporary directory");
    let state_dir = home.path().join("state");
    let owner = Owner::start(&state_dir);
    let proxy = successor(&state_dir, &owner);
    let backend = Backend::start("v1").await;
    deploy(&proxy.control(), "web", &backend, &[]).await;

    // Fails after freezing the old proxy: its buffer directory cannot be made.
    let output = Command::new(env!("CARGO_BIN_EXE_hoist-proxy"))
        .args(["run", "--listeners-from"])
        .arg(&owner.socket)
        .args([
            "--buffer-dir",
            "/proc/hoist-proxy-cannot-be-here",
            "--state-dir",
        ])
        .arg(&state_dir)
        .output()
        .expect("run the failing successor");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot prepare the buffer directory"),
        "{stderr}"
    );

    let url = format!("http://127.0.0.1:{}/version", owner.http_port);
    let got = get(&url).await;
    assert_eq!((got.status, got.body.as_str()), (200, "v1"));
    // Unfrozen: a deploy on the old proxy goes through.
    let v2 = Backend::start("v2").await;
    deploy(&proxy.control(), "web", &v2, &[]).await;
    let got = get(&url).await;
    assert_eq!((got.status, got.body.as_str()), (200, "v2"));
    let status = proxy.cli(&["status", "--json"]);
    assert!(status.status.success());
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["protocol"], 1);
    assert_eq!(status["pid"], proxy.child.id());
}

/// The child's exit status, if it exits within `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
