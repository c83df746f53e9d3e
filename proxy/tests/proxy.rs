//! End-to-end tests of hoist-proxy on loopback: a real `hoist-proxy run` process, its control
//! commands run as processes, real backends and real HTTP and WebSocket clients.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_redeploy_and_remove() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let proxy = Proxy::start(&[]);
    let control = proxy.control();

    assert_eq!(
        get(&proxy.url("/version")).await.status,
        404,
        "nothing deployed yet"
    );
    deploy(&control, "web", &v1, &[]).await;
    assert_eq!(get(&proxy.url("/version")).await.body, "v1");
    deploy(&control, "web", &v2, &[]).await;
    assert_eq!(get(&proxy.url("/version")).await.body, "v2");

    let listing = ok(&control, &["list"]).await;
    let row = listing
        .lines()
        .find(|line| line.starts_with("web"))
        .expect("web listed");
    assert!(
        row.contains(&v2.target()) && row.contains("running"),
        "{listing}"
    );

    ok(&control, &["rm", "web"]).await;
    let got = get(&proxy.url("/version")).await;
    assert_eq!(got.status, 404);
    assert!(got.body.contains("Not found"), "{}", got.body);
    assert!(!ok(&control, &["list"]).await.contains("web"));

    let output = cli(&control, &["remove", "web"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("Error: service not found: web"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_check_keeps_the_old_target_and_explains_why() {
    let (v1, broken) = (Backend::start("v1").await, Backend::start("broken").await);
    broken.set_healthy(false);
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(&control, "web", &v1, &[]).await;

    let started = Instant::now();
    let target = broken.target();
    let output = cli(
        &control,
        &[
            "deploy",
            "web",
            "--target",
            &target,
            "--deploy-timeout=1s",
            "--health-check-interval=200ms",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message
            .starts_with("Error: target failed to become healthy within configured timeout (1s)"),
        "{message}"
    );
    assert!(
        message.contains(&format!("GET http://{target}/up")),
        "probed URL missing: {message}"
    );
    assert!(message.contains("503"), "probe error missing: {message}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        get(&proxy.url("/version")).await.body,
        "v1",
        "old target still serves"
    );

    // A target that refuses connections names the refusal.
    let output = cli(
        &control,
        &[
            "deploy",
            "web",
            "--target=127.0.0.1:1",
            "--deploy-timeout=500ms",
        ],
    )
    .await;
    assert!(stderr(&output).contains("refused"), "{}", stderr(&output));
    assert_eq!(get(&proxy.url("/version")).await.body, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_drain_within_the_timeout_and_are_cut_beyond_it() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(&control, "web", &v1, &[]).await;

    // Finishes within the drain timeout: 200, and deploy waits for it.
    let slow = tokio::spawn(get(proxy.url("/slow?ms=1500").leak()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    deploy(&control, "web", &v2, &["--drain-timeout=5s"]).await;
    let deploy_took = started.elapsed();
    let got = slow.await.unwrap();
    assert_eq!((got.status, got.body.as_str()), (200, "v1 slow 1500"));
    assert!(
        deploy_took >= Duration::from_millis(1000),
        "deploy returned before the drain: {deploy_took:?}"
    );
    assert_eq!(get(&proxy.url("/version")).await.body, "v2");

    // Outlives the drain timeout: 504, and deploy returns at the timeout.
    let slow = tokio::spawn(get(proxy.url("/slow?ms=6000").leak()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    deploy(&control, "web", &v1, &["--drain-timeout=500ms"]).await;
    let deploy_took = started.elapsed();
    let got = slow.await.unwrap();
    assert_eq!(got.status, 504);
    assert!(deploy_took < Duration::from_secs(3), "{deploy_took:?}");
    proxy.wait_for_log("Request cancelled due to draining");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_deploys_under_continuous_load_fail_no_request() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(&control, "web", &blue, &[]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (succeeded, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (stop, succeeded, failed, failures) = (
            Arc::clone(&stop),
            Arc::clone(&succeeded),
            Arc::clone(&failed),
            Arc::clone(&failures),
        );
        let url = proxy.url("/version");
        let client = client();
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let request = Request::get(&url).body(Full::new(Bytes::new())).unwrap();
                match client.request(request).await {
                    Ok(response) if response.status() == 200 => {
                        let body = response
                            .into_body()
                            .collect()
                            .await
                            .map(|body| body.to_bytes());
                        match body {
                            Ok(body) if !body.is_empty() => {
                                succeeded.fetch_add(1, Ordering::Relaxed)
                            }
                            other => {
                                failures.lock().unwrap().push(format!("body: {other:?}"));
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                    other => {
                        failures.lock().unwrap().push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for round in 0..50 {
        let target = if round % 2 == 0 { &green } else { &blue };
        deploy(&control, "web", target, &["--health-check-interval=100ms"]).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let (succeeded, failed) = (
        succeeded.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert_eq!(failed, 0, "failed requests: {:?}", failures.lock().unwrap());
    assert!(
        succeeded > 500,
        "too little load to prove anything: {succeeded}"
    );
    assert!(
        blue.requests.load(Ordering::Relaxed) > 0 && green.requests.load(Ordering::Relaxed) > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_pass_through_and_survive_a_deploy_within_the_grace() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(&control, "web", &v1, &[]).await;

    let url = format!("ws://127.0.0.1:{}/ws", proxy.port);
    let mut socket = websocket(&url).await;
    assert_eq!(echo(&mut socket, "hello").await.unwrap(), "hello");

    // With a grace, the connection keeps working after the switch until the grace ends.
    let deploying = {
        let control = control.clone();
        let target = v2.target();
        tokio::spawn(async move {
            ok(
                &control,
                &["deploy", "web", "--target", &target, "--websocket-grace=2s"],
            )
            .await;
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        get(&proxy.url("/version")).await.body,
        "v2",
        "traffic switched"
    );
    assert_eq!(
        echo(&mut socket, "during the grace").await.unwrap(),
        "during the grace"
    );
    deploying.await.unwrap();
    assert!(
        echo(&mut socket, "after the grace").await.is_err(),
        "cut when the grace ends"
    );

    // Without a grace (kamal-proxy's behaviour), the deploy cuts it at once.
    let mut socket = websocket(&url).await;
    assert_eq!(echo(&mut socket, "on v2").await.unwrap(), "on v2");
    deploy(&control, "web", &v1, &[]).await;
    assert!(echo(&mut socket, "after").await.is_err());
}

/// Reads a streamed response through the proxy; returns the time to the first chunk, the total
/// time and the body.
async fn stream_timing(url: &str) -> (Duration, Duration, String) {
    let started = Instant::now();
    let response = client()
        .request(Request::get(url).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut first = None;
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            first.get_or_insert_with(|| started.elapsed());
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    (first.unwrap_or_default(), started.elapsed(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_arrive_incrementally_even_with_response_buffering() {
    let app = Backend::start("app").await;
    let proxy = Proxy::start(&[]);
    deploy(
        &proxy.control(),
        "web",
        &app,
        &["--buffer-responses", "--buffer-requests"],
    )
    .await;

    for path in ["/stream?chunks=3&ms=600", "/sse?chunks=3&ms=600"] {
        let (first, total, body) = stream_timing(&proxy.url(path)).await;
        assert!(
            first < Duration::from_millis(400),
            "{path}: first byte after {first:?}"
        );
        assert!(total >= Duration::from_millis(1100), "{path}: {total:?}");
        assert!(body.matches('\n').count() >= 3, "{body}");
    }
    // Fixed-length responses are buffered and still arrive whole.
    assert_eq!(get(&proxy.url("/version")).await.body, "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_wildcard_default_and_path_prefix() {
    let names = ["exact", "wild", "default", "api", "v2"];
    let mut backends = Vec::new();
    for name in names {
        backends.push(Backend::start(name).await);
    }
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(
        &control,
        "exact",
        &backends[0],
        &["--host=app.example.com,www.example.com"],
    )
    .await;
    deploy(&control, "wild", &backends[1], &["--host", "*.example.com"]).await;
    deploy(&control, "default", &backends[2], &[]).await;
    deploy(
        &control,
        "api",
        &backends[3],
        &["--host=app.example.com", "--path-prefix=/api"],
    )
    .await;
    deploy(
        &control,
        "v2",
        &backends[4],
        &[
            "--host=app.example.com",
            "--path-prefix=/api/v2",
            "--strip-path-prefix=false",
        ],
    )
    .await;

    let on = |host: &'static str, path: &'static str| {
        let url = proxy.url(path);
        async move { get_with(&url, &[("host", host)]).await }
    };
    assert_eq!(on("app.example.com", "/").await.body, "exact");
    assert_eq!(on("WWW.example.com", "/x").await.body, "exact");
    assert_eq!(on("other.example.com", "/").await.body, "wild");
    assert_eq!(on("a.b.example.com", "/").await.body, "default");
    assert_eq!(on("elsewhere.org", "/").await.body, "default");
    assert_eq!(on("app.example.com", "/apix").await.body, "exact");
    // Prefix stripped: /api/version reaches the target as /version.
    assert_eq!(on("app.example.com", "/api/version").await.body, "api");
    assert!(
        on("app.example.com", "/api/headers?q=1")
            .await
            .body
            .starts_with("GET /headers?q=1\n")
    );
    assert!(on("app.example.com", "/api").await.status == 200);
    // Not stripped for v2: the backend sees /api/v2/headers, which it answers with its name.
    assert_eq!(on("app.example.com", "/api/v2/headers").await.body, "v2");

    // (host, prefix) conflicts are refused and change nothing.
    let output = cli(
        &control,
        &[
            "deploy",
            "other",
            "--target",
            &backends[2].target(),
            "--host=www.example.com",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("conflict"), "{}", stderr(&output));
    assert_eq!(on("www.example.com", "/").await.body, "exact");
    let output = cli(
        &control,
        &["deploy", "other", "--target", &backends[2].target()],
    )
    .await;
    assert!(stderr(&output).contains("conflict"), "{}", stderr(&output));

    // A host with services only below a prefix does not fall through to the default service.
    ok(&control, &["rm", "exact"]).await;
    assert_eq!(on("app.example.com", "/").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stop_and_resume() {
    let app = Backend::start("app").await;
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(&control, "web", &app, &[]).await;

    ok(&control, &["pause", "web", "--max-pause=500ms"]).await;
    let started = Instant::now();
    assert_eq!(get(&proxy.url("/version")).await.status, 504);
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(
        get(&proxy.url("/up")).await.status,
        200,
        "health path answers while paused"
    );

    ok(&control, &["pause", "web", "--max-pause=10s"]).await;
    let waiting = tokio::spawn(get(proxy.url("/version").leak()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "paused request waits");
    ok(&control, &["resume", "web"]).await;
    assert_eq!(waiting.await.unwrap().body, "app");

    ok(&control, &["stop", "web", "--message", "Back <soon>"]).await;
    let got = get(&proxy.url("/version")).await;
    assert_eq!(got.status, 503);
    assert!(got.body.contains("Back &lt;soon&gt;"), "{}", got.body);
    assert!(ok(&control, &["list"]).await.contains("stopped"));
    assert_eq!(get(&proxy.url("/up")).await.status, 200);
    ok(&control, &["resume", "web"]).await;
    assert_eq!(get(&proxy.url("/version")).await.body, "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_splits_by_cookie() {
    let (stable, canary) = (
        Backend::start("stable").await,
        Backend::start("canary").await,
    );
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(&control, "web", &stable, &[]).await;

    let output = cli(&control, &["rollout", "set", "web", "--percent=50"]).await;
    assert!(
        stderr(&output).contains("rollout targets not set"),
        "{}",
        stderr(&output)
    );

    ok(
        &control,
        &["rollout", "deploy", "web", "--target", &canary.target()],
    )
    .await;
    ok(
        &control,
        &["rollout", "set", "web", "--percent=0", "--list=beta-user"],
    )
    .await;
    let as_user = |user: &'static str| {
        let url = proxy.url("/version");
        async move {
            get_with(&url, &[("cookie", &format!("kamal-rollout={user}"))])
                .await
                .body
        }
    };
    assert_eq!(as_user("beta-user").await, "canary");
    assert_eq!(as_user("someone").await, "stable");
    assert_eq!(get(&proxy.url("/version")).await.body, "stable");

    ok(&control, &["rollout", "set", "web", "--percent=100"]).await;
    assert_eq!(as_user("someone").await, "canary");
    ok(&control, &["rollout", "stop", "web"]).await;
    assert_eq!(as_user("beta-user").await, "stable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_kill_9_and_a_corrupt_file_is_kept_aside() {
    let app = Backend::start("app").await;
    let mut proxy = Proxy::start(&[]);
    let state_dir = proxy.state_dir.clone();
    deploy(&proxy.control(), "web", &app, &["--host=app.example.com"]).await;
    ok(&proxy.control(), &["stop", "web", "--message=maintenance"]).await;
    ok(&proxy.control(), &["resume", "web"]).await;
    ok(&proxy.control(), &["pause", "web"]).await;
    ok(&proxy.control(), &["resume", "web"]).await;
    proxy.kill(); // SIGKILL: no chance to save anything on the way out

    let restarted = Proxy::start_in(&state_dir, &[]);
    restarted.wait_for_log("Restored saved state");
    let got = get_with(&restarted.url("/version"), &[("host", "app.example.com")]).await;
    assert_eq!(
        got.body, "app",
        "restored without waiting for a health check"
    );
    assert!(
        ok(&restarted.control(), &["list"])
            .await
            .contains("app.example.com")
    );
    drop(restarted);

    let state_file = state_dir.join("hoist-proxy.state");
    std::fs::write(&state_file, b"{\"version\":1,\"services\":[{\"name\":").unwrap();
    let fresh = Proxy::start_in(&state_dir, &[]);
    let line = fresh.wait_for_log("Saved state is unreadable");
    assert!(line.contains("corrupt"), "{line}");
    let kept: Vec<_> = std::fs::read_dir(&state_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "the unreadable file is kept aside");
    assert_eq!(
        std::fs::read(kept[0].path()).unwrap(),
        b"{\"version\":1,\"services\":[{\"name\":"
    );
    assert_eq!(get(&fresh.url("/")).await.status, 404);
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamal_command_lines_are_accepted() {
    let app = Backend::start("app").await;
    let proxy = Proxy::start(&["--metrics-port=0", "--debug"]);
    let control = proxy.control();
    let target = format!("--target={}", app.target());
    // As basecamp/kamal's proxy commands build them.
    ok(
        &control,
        &[
            "deploy",
            "hello-web",
            &target,
            "--host=hello.example.com",
            "--deploy-timeout=30s",
            "--drain-timeout=30s",
            "--health-check-interval=1s",
            "--health-check-timeout=5s",
            "--health-check-path=/up",
            "--target-timeout=30s",
            "--buffer-requests",
            "--buffer-responses",
            "--buffer-memory=1048576",
            "--max-request-body=0",
            "--max-response-body=0",
            "--path-prefix=/",
            "--strip-path-prefix=true",
            "--forward-headers=false",
            "--tls-redirect=true",
            "--log-request-header=Cache-Control",
            "--log-request-header=Last-Modified",
            "--log-request-header=User-Agent",
            "--log-response-header=Cache-Control",
        ],
    )
    .await;
    let got = get_with(
        &proxy.url("/version"),
        &[("host", "hello.example.com"), ("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(got.body, "app");
    let line = proxy.wait_for_log("\"req_cache-control\":\"no-cache\"");
    assert!(
        line.contains("\"service\":\"hello-web\"") && line.contains("\"status\":200"),
        "{line}"
    );
    ok(
        &control,
        &[
            "stop",
            "hello-web",
            "--drain-timeout=30s",
            "--message=Upgrading",
        ],
    )
    .await;
    ok(&control, &["resume", "hello-web"]).await;
    ok(&control, &["remove", "hello-web"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_bodies_and_limits() {
    let app = Backend::start("app").await;
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(
        &control,
        "web",
        &app,
        &["--buffer-requests", "--max-request-body=64"],
    )
    .await;

    let got = get_with(
        &proxy.url("/headers?b=2&a=1;x=%41"),
        &[
            ("host", "site.example"),
            ("x-request-id", "given-id"),
            ("x-forwarded-for", "203.0.113.9"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "secret"),
        ],
    )
    .await;
    let seen = got.body.to_ascii_lowercase();
    assert!(
        seen.starts_with("get /headers?b=2&a=1;x=%41\n"),
        "query verbatim: {seen}"
    );
    assert!(seen.contains("host: site.example\n"), "host kept: {seen}");
    assert!(seen.contains("x-request-id: given-id\n"));
    assert!(seen.contains("x-request-start: t="));
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(
        seen.contains("x-forwarded-proto: http\n")
            && seen.contains("x-forwarded-host: site.example\n")
    );
    assert!(
        !seen.contains("x-hop"),
        "hop-by-hop header listed in Connection removed: {seen}"
    );

    let generated = get(&proxy.url("/headers")).await.body;
    let id_line = generated
        .lines()
        .find(|line| line.starts_with("x-request-id: "))
        .unwrap();
    assert_eq!(
        id_line.len(),
        "x-request-id: ".len() + 36,
        "a UUID is generated: {id_line}"
    );

    let post = |size: usize| {
        let url = proxy.url("/echo");
        async move {
            send(
                Request::post(&url)
                    .body(Full::new(Bytes::from(vec![b'x'; size])))
                    .unwrap(),
            )
            .await
        }
    };
    let small = post(64).await;
    assert_eq!((small.status, small.body.len()), (200, 64));
    assert_eq!(post(65).await.status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_targets_balance_and_a_blip_does_not_eject_one() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    let targets = format!("{},{}", a.target(), b.target());
    ok(
        &control,
        &[
            "deploy",
            "web",
            "--target",
            &targets,
            "--health-check-interval=100ms",
            "--health-check-fall=3",
            "--health-check-rise=2",
        ],
    )
    .await;

    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(get(&proxy.url("/version")).await.body);
    }
    assert!(
        seen.contains(&"a".to_owned()) && seen.contains(&"b".to_owned()),
        "{seen:?}"
    );

    // One failed check (a blip, shorter than 3 intervals) keeps the target in rotation.
    b.set_healthy(false);
    tokio::time::sleep(Duration::from_millis(150)).await;
    b.set_healthy(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !proxy.log_lines().iter().any(
            |line| line.contains("Target health updated") && line.contains("\"healthy\":false")
        )
    );

    // A lasting failure takes it out; traffic goes to the other.
    b.set_healthy(false);
    proxy.wait_for_log("\"healthy\":false");
    for _ in 0..6 {
        assert_eq!(get(&proxy.url("/version")).await.body, "a");
    }
    // And it comes back after `rise` good checks.
    let recovered_before = proxy.count_log("\"healthy\":true");
    b.set_healthy(true);
    proxy.wait_for_log_count("\"healthy\":true", recovered_before + 1);
    let mut back = false;
    for _ in 0..6 {
        back |= get(&proxy.url("/version")).await.body == "b";
    }
    assert!(back, "target back in rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_h2c_timeouts_and_graceful_shutdown() {
    let app = Backend::start("app").await;
    let metrics_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let metrics_flag = format!("--metrics-port={metrics_port}");
    let mut proxy = Proxy::start(&[&metrics_flag, "--read-header-timeout=1s"]);
    let control = proxy.control();
    deploy(&control, "web", &app, &["--target-timeout=300ms"]).await;

    // HTTP/2 with prior knowledge (h2c).
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let response = h2
        .request(
            Request::get(proxy.url("/version"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "app"
    );

    // Upstream response header timeout: 504.
    assert_eq!(get(&proxy.url("/slow?ms=2000")).await.status, 504);

    // Metrics by service, method and status.
    let metrics = get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .body;
    assert!(
        metrics.contains(
            "kamal_proxy_http_requests_total{service=\"web\",method=\"GET\",status=\"200\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("status=\"504\""), "{metrics}");
    assert!(metrics.contains("kamal_proxy_http_request_duration_seconds_bucket"));
    assert!(metrics.contains("kamal_proxy_http_in_flight_requests{service=\"web\"}"));

    // A client that never finishes its headers is cut after the header timeout.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slowloris = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    slowloris
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(5), slowloris.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "connection closed by the proxy");

    // SIGTERM: the request in flight completes, then the proxy exits cleanly.
    deploy(&control, "web", &app, &["--target-timeout=30s"]).await;
    let slow = tokio::spawn(get(proxy.url("/slow?ms=800").leak()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.signal_terminate();
    assert_eq!(slow.await.unwrap().status, 200);
    let status = blocking(move || proxy.child.wait().unwrap()).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_goes_away_costs_no_request_retried_elsewhere_and_ejected() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let proxy = Proxy::start(&[&format!("--metrics-port={metrics_port}")]);
    let control = proxy.control();
    let targets = format!("{},{}", a.target(), b.target());
    // Checks far apart, so only failed requests can take b out before the test ends.
    ok(
        &control,
        &[
            "deploy",
            "web",
            "--target",
            &targets,
            "--buffer-requests",
            "--health-check-interval=30s",
        ],
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(get(&proxy.url("/version")).await.body);
    }
    assert!(seen.contains(&"b".to_owned()), "{seen:?}");

    b.stop();
    for _ in 0..10 {
        let got = get(&proxy.url("/version")).await;
        assert_eq!((got.status, got.body.as_str()), (200, "a"));
    }
    let post = send(
        Request::post(proxy.url("/echo"))
            .body(Full::new(Bytes::from_static(b"kept for a retry")))
            .expect("request"),
    )
    .await;
    assert_eq!((post.status, post.body.as_str()), (200, "kept for a retry"));
    proxy.wait_for_log("Target taken out of rotation after a connection error");
    proxy.wait_for_log("Retrying the request on another target");
    let metrics = get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .body;
    let retries = metrics
        .lines()
        .find_map(|line| line.strip_prefix("hoist_proxy_upstream_retries_total "))
        .and_then(|count| count.trim().parse::<u64>().ok())
        .expect("retries counter");
    assert!(retries >= 1, "{metrics}");
}
