//! hoist-proxy against clients that do not play by the rules, on loopback: a real `hoist-proxy
//! run`, real backends, raw sockets where a well-behaved client library would not send what an
//! attacker does. What the app receives is asserted, not just the status.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes `request` as is on a new connection and reads until the proxy closes it (or 5 s pass).
async fn raw(port: u16, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the proxy");
    stream.write_all(request).await.expect("send");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of the first response in `answer`.
fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// An HTTP/2 client with prior knowledge.
fn h2_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

async fn h2_get(url: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).expect("request");
    let response = h2_client()
        .request(request)
        .await
        .map_err(|error| format!("{error:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_sees_the_host_the_request_was_routed_by() {
    let (app, evil) = (Backend::start("app").await, Backend::start("evil").await);
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(&control, "app", &app, &["--host", "app.test"]).await;
    deploy(&control, "evil", &evil, &["--host", "evil.test"]).await;

    // Absolute form wins over Host (RFC 9112 3.2.2), and the app is told the same host.
    let answer = raw(
        proxy.port,
        b"GET http://app.test/headers HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    let seen = answer.to_ascii_lowercase();
    assert!(
        seen.contains("\nhost: app.test\n"),
        "routed host forwarded: {answer}"
    );
    assert!(
        !seen.contains("evil.test"),
        "the other host never reaches the app: {answer}"
    );
    assert!(
        seen.contains(&format!("x-kamal-target: {}", app.target())),
        "{answer}"
    );

    for (case, request) in [
        ("no Host", &b"GET /headers HTTP/1.1\r\nConnection: close\r\n\r\n"[..]),
        (
            "two Hosts",
            b"GET /headers HTTP/1.1\r\nHost: app.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
        ),
        (
            "a list",
            b"GET /headers HTTP/1.1\r\nHost: app.test, evil.test\r\nConnection: close\r\n\r\n",
        ),
        (
            "userinfo",
            b"GET /headers HTTP/1.1\r\nHost: evil.test@app.test\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let answer = raw(proxy.port, request).await;
        assert_eq!(status(&answer), 400, "{case}: {answer}");
    }

    // HTTP/2: `:authority` and a Host naming another host is malformed (RFC 9113 8.3.1).
    let url = format!("http://app.test:{}/headers", proxy.port);
    let url = url.replace("app.test", "127.0.0.1");
    let agree = h2_get(&url, &[("host", &format!("127.0.0.1:{}", proxy.port))]).await;
    assert_eq!(
        agree.map(|(status, _)| status),
        Ok(404),
        "no service for 127.0.0.1"
    );
    let mismatch = h2_get(&url, &[("host", "evil.test")]).await;
    assert_eq!(mismatch.map(|(status, _)| status), Ok(400));

    // CONNECT is not tunnelled to an app.
    let answer = raw(
        proxy.port,
        b"CONNECT app.test:80 HTTP/1.1\r\nHost: app.test:80\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 405, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_believed_only_from_trusted_peers() {
    let app = Backend::start("app").await;
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    let target = app.target();
    let forged = [
        ("host", "app.test"),
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-ssl", "on"),
        ("forwarded", "for=1.2.3.4;proto=https"),
        ("x-real-ip", "1.2.3.4"),
    ];

    // hoist's default: nobody is trusted.
    deploy(&control, "app", &app, &["--forward-headers=false"]).await;
    let seen = get_with(&proxy.url("/headers"), &forged).await.body;
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    for gone in [
        "1.2.3.4",
        "x-forwarded-port",
        "x-forwarded-ssl",
        "forwarded:",
        "x-real-ip",
    ] {
        assert!(!seen.contains(gone), "{gone} reached the app: {seen}");
    }

    // Trusted proxies elsewhere: loopback is still a stranger, and the default is off.
    deploy(&control, "app", &app, &["--trusted-proxies=10.0.0.0/8"]).await;
    let seen = get_with(&proxy.url("/headers"), &forged).await.body;
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(!seen.contains("x-real-ip"), "{seen}");

    // Loopback trusted: kept and extended.
    deploy(
        &control,
        "app",
        &app,
        &["--trusted-proxies=10.0.0.0/8,127.0.0.1"],
    )
    .await;
    let seen = get_with(&proxy.url("/headers"), &forged).await.body;
    assert!(
        seen.contains("x-forwarded-for: 1.2.3.4, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
    assert!(
        seen.contains("forwarded: for=1.2.3.4;proto=https\n"),
        "{seen}"
    );
    assert!(seen.contains("x-real-ip: 1.2.3.4\n"), "{seen}");

    let bad = cli(
        &control,
        &[
            "deploy",
            "app",
            "--target",
            &target,
            "--trusted-proxies=10.0.0.300/8",
        ],
    )
    .await;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("10.0.0.300/8"), "{}", stderr(&bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cookies_reach_the_app_as_one_header() {
    let app = Backend::start("app").await;
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(&control, "app", &app, &[]).await;
    let (status, seen) = h2_get(
        &proxy.url("/headers"),
        &[("cookie", "a=1"), ("cookie", "b=2")],
    )
    .await
    .expect("h2 request");
    assert_eq!(status, 200);
    let cookies: Vec<&str> = seen
        .lines()
        .filter(|line| line.starts_with("cookie:"))
        .collect();
    assert_eq!(cookies, ["cookie: a=1; b=2"], "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_are_refused_or_forwarded_safely() {
    let app = Backend::start("app").await;
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(&control, "app", &app, &["--host", "app.test"]).await;

    // Content-Length and Transfer-Encoding: the chunked body wins, the connection closes, and
    // what follows the body is never taken for a second request.
    let answer = raw(
        proxy.port,
        b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 40\r\n\
          Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nabc"),
        "the app got the chunked body only: {answer}"
    );
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "one response: {answer}"
    );

    for (case, request) in [
        (
            "two Content-Lengths",
            &b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..],
        ),
        (
            "obs-fold",
            b"GET /headers HTTP/1.1\r\nHost: app.test\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n",
        ),
        (
            "a transfer coding other than chunked",
            b"POST /echo HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        ),
    ] {
        let answer = raw(proxy.port, request).await;
        assert_eq!(status(&answer), 400, "{case}: {answer}");
    }

    // h2c upgrade: answered as a plain HTTP/1.1 request; the app sees no upgrade.
    let answer = raw(
        proxy.port,
        b"GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    let seen = answer.to_ascii_lowercase();
    assert!(
        !seen.contains("upgrade") && !seen.contains("http2-settings"),
        "{answer}"
    );

    // HTTP/2 with a connection-specific header (`te: gzip`): malformed, the stream is reset
    // and nothing reaches the app.
    let before = app.requests.load(std::sync::atomic::Ordering::SeqCst);
    let reset = h2_with_te_gzip(proxy.port).await;
    assert!(reset, "the proxy must reset a stream carrying `te: gzip`");
    let seen = get_with(
        &format!("http://127.0.0.1:{}/headers", proxy.port),
        &[("host", "app.test")],
    )
    .await;
    assert_eq!(seen.status, 200);
    let after = app.requests.load(std::sync::atomic::Ordering::SeqCst);
    // Health checks also count; the malformed request must not be among the requests, which
    // the access log tells apart.
    assert!(after > before);
    assert_eq!(
        proxy.count_log("\"path\":\"/te\""),
        0,
        "the malformed request reached routing"
    );
}

/// Sends an HTTP/2 request with `te: gzip` by hand (client libraries refuse to) and reports
/// whether the proxy answered with RST_STREAM or GOAWAY rather than a response.
async fn h2_with_te_gzip(port: u16) -> bool {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&frame(0x4, 0, 0, &[])); // SETTINGS
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/te"),
        (":authority", "app.test"),
        ("te", "gzip"),
    ] {
        // Literal header field without indexing, new name (RFC 7541 6.2.2), no Huffman.
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    bytes.extend_from_slice(&frame(0x1, 0x4 | 0x1, 1, &block)); // HEADERS, END_HEADERS|END_STREAM
    stream.write_all(&bytes).await.expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buffer = Vec::new();
    loop {
        // Frames: 3-byte length, type, flags, 4-byte stream id, payload.
        while buffer.len() >= 9 {
            let length =
                usize::from(buffer[0]) << 16 | usize::from(buffer[1]) << 8 | usize::from(buffer[2]);
            if buffer.len() < 9 + length {
                break;
            }
            let kind = buffer[3];
            let stream_id = u32::from_be_bytes([buffer[5] & 0x7f, buffer[6], buffer[7], buffer[8]]);
            match (kind, stream_id) {
                (0x3, 1) | (0x7, _) => return true, // RST_STREAM on our stream, or GOAWAY
                (0x1, 1) => return false,           // a response HEADERS
                _ => {}
            }
            buffer.drain(..9 + length);
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true, // closed on us
            Ok(Ok(read)) => buffer.extend_from_slice(&chunk[..read]),
            Err(_) => return false,
        }
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut frame = length.to_be_bytes()[1..].to_vec();
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_follow_redirects_only_on_the_target() {
    let (app, elsewhere) = (
        Backend::start("app").await,
        Backend::start("elsewhere").await,
    );
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    let target = app.target();

    let on_target = "--health-check-path=/redirect?to=/up";
    deploy(&control, "app", &app, &[on_target]).await;

    let away = format!(
        "--health-check-path=/redirect?to=http://{}/up",
        elsewhere.target()
    );
    let refused = cli(
        &control,
        &[
            "deploy",
            "app",
            "--target",
            &target,
            &away,
            "--deploy-timeout=2s",
        ],
    )
    .await;
    assert!(
        !refused.status.success(),
        "a redirect off the target is not healthy"
    );
    let message = stderr(&refused);
    assert!(message.contains("away from the container"), "{message}");
    assert!(
        message.contains(&elsewhere.target()),
        "names where it went: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_write_that_fails_undoes_the_deploy() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    deploy(&control, "web", &v1, &[]).await;
    assert_eq!(get(&proxy.url("/version")).await.body, "v1");

    // A directory where the state file goes: the rename onto it fails, even as root.
    let state_file = proxy.state_dir.join("hoist-proxy.state");
    std::fs::remove_file(&state_file).expect("remove state file");
    std::fs::create_dir_all(state_file.join("blocker")).expect("block the state file");

    let refused = cli(&control, &["deploy", "web", "--target", &v2.target()]).await;
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(message.contains("cannot write state file"), "{message}");
    assert!(message.contains("nothing switched"), "{message}");
    assert_eq!(
        get(&proxy.url("/version")).await.body,
        "v1",
        "v1 keeps serving"
    );
    let listed = ok(&control, &["list", "--json"]).await;
    assert!(
        listed.contains(&v1.target()) && !listed.contains(&v2.target()),
        "{listed}"
    );

    let stop = cli(&control, &["stop", "web", "--drain-timeout=1s"]).await;
    assert!(!stop.status.success());
    assert!(stderr(&stop).contains("stays running"), "{}", stderr(&stop));
    assert_eq!(get(&proxy.url("/version")).await.status, 200, "not stopped");

    std::fs::remove_dir_all(&state_file).expect("unblock");
    deploy(&control, "web", &v2, &[]).await;
    assert_eq!(get(&proxy.url("/version")).await.body, "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_uploads_and_downloads_spill_into_the_buffer_directory() {
    let app = Backend::start("app").await;
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    // The flags hoist passes.
    deploy(
        &control,
        "web",
        &app,
        &[
            "--buffer-requests",
            "--buffer-responses",
            "--buffer-memory=1000000",
            "--max-request-body=10000000",
        ],
    )
    .await;
    assert!(proxy.state_dir.join("buffers").is_dir(), "made on start");
    for size in [2_000_000usize, 5_000_000] {
        let body: Vec<u8> = (0..size).map(|index| (index % 251) as u8).collect();
        let request = Request::post(proxy.url("/echo"))
            .body(Full::new(Bytes::from(body.clone())))
            .expect("request");
        let response = client().request(request).await.expect("upload");
        assert_eq!(response.status(), 200);
        let length = response.headers().get("content-length").cloned();
        let echoed = response
            .into_body()
            .collect()
            .await
            .expect("download")
            .to_bytes();
        assert!(echoed[..] == body[..], "{size} bytes up and back intact");
        assert_eq!(
            length.as_ref().and_then(|v| v.to_str().ok()),
            Some(&*size.to_string())
        );
    }
    // Refused from the announced length, before the body is read (a client library would
    // still be writing it and see the connection close; curl shows the 413).
    let too_big = raw(
        proxy.port,
        b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10000001\r\n\r\n",
    )
    .await;
    assert_eq!(status(&too_big), 413, "{too_big}");
}

#[test]
fn unsupported_flags_are_refused_not_ignored() {
    let home = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hoist-proxy"))
        .args([
            "run",
            "--http3",
            "--http-port=0",
            "--https-port=0",
            "--state-dir",
        ])
        .arg(home.path())
        .output()
        .expect("run hoist-proxy");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--http3 is not supported"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hoist-proxy"))
        .args([
            "deploy",
            "web",
            "--target=web:3000",
            "--tls-on-demand-url=http://x/ok",
            "--state-dir",
        ])
        .arg(home.path())
        .output()
        .expect("run hoist-proxy");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--tls-on-demand-url is not supported"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_time_out_and_big_heads_are_refused() {
    let app = Backend::start("app").await;
    let metrics_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("address").port()
    };
    let metrics_flag = format!("--metrics-port={metrics_port}");
    // Short idle timeouts so the test sees them; the defaults are 30 s and 60 s.
    let proxy = Proxy::start(&[
        &metrics_flag,
        "--read-header-timeout=1s",
        "--http2-idle-timeout=1s",
    ]);
    let control = proxy.control();
    deploy(&control, "app", &app, &[]).await;

    // A connection that never sends anything is closed (before hyper even sees it).
    let started = std::time::Instant::now();
    let silent = raw(proxy.port, b"").await;
    assert!(silent.is_empty(), "{silent}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );

    // An HTTP/2 connection with no stream open is closed after its idle timeout, with GOAWAY
    // (hyper's graceful close pings first; this client answers like a real one).
    let (goaway, closed) =
        tokio::time::timeout(Duration::from_secs(5), idle_h2_session(proxy.port))
            .await
            .expect("an idle HTTP/2 connection stays open");
    assert!(goaway && closed, "GOAWAY {goaway}, closed {closed}");

    let metrics = get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .body;
    let closed_idle = metrics
        .lines()
        .find(|line| {
            line.starts_with(
                "hoist_proxy_connections_closed_total{listener=\"http\",reason=\"idle_timeout\"}",
            )
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|count| count.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(closed_idle >= 2, "{metrics}");

    // A request head over 16 KiB is refused with 431 rather than buffered.
    let big = format!(
        "GET /headers HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let answer = raw(proxy.port, big.as_bytes()).await;
    assert_eq!(status(&answer), 431, "{answer}");
    let fits = format!(
        "GET /headers HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(12 * 1024)
    );
    assert_eq!(status(&raw(proxy.port, fits.as_bytes()).await), 200);
}

/// Opens an HTTP/2 connection, opens no stream, answers pings, and reports whether the proxy sent
/// GOAWAY and then closed the connection.
async fn idle_h2_session(port: u16) -> (bool, bool) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&frame(0x4, 0, 0, &[]));
    stream.write_all(&hello).await.expect("preface");
    let (mut buffer, mut goaway) = (Vec::new(), false);
    loop {
        while buffer.len() >= 9 {
            let length =
                usize::from(buffer[0]) << 16 | usize::from(buffer[1]) << 8 | usize::from(buffer[2]);
            if buffer.len() < 9 + length {
                break;
            }
            let (kind, flags) = (buffer[3], buffer[4]);
            let payload = buffer[9..9 + length].to_vec();
            match kind {
                0x7 => goaway = true,
                0x4 if flags & 0x1 == 0 => {
                    let _ = stream.write_all(&frame(0x4, 0x1, 0, &[])).await; // SETTINGS ack
                }
                0x6 if flags & 0x1 == 0 => {
                    let _ = stream.write_all(&frame(0x6, 0x1, 0, &payload)).await; // PING ack
                }
                _ => {}
            }
            buffer.drain(..9 + length);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return (goaway, true),
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}
