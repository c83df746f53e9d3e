//! hoist-proxy in front of hoist-proxies, as hoist's load balancer runs it: when a web host's
//! proxy answers that the request reached no application there (its app stopped, or none in
//! rotation), the balancer sends the request to another web host instead of passing the error on.
//! Real `hoist-proxy run` processes on loopback, real backends and clients.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

/// Two web proxies, one backend each, and a balancer proxy in front of both. Health checks on
/// the balancer are far apart, so only the retry can keep a request from failing.
struct Tiers {
    _a: Backend,
    b: Backend,
    web_a: Proxy,
    web_b: Proxy,
    lb: Proxy,
}

impl Tiers {
    async fn start() -> Self {
        let (a, b) = (Backend::start("a").await, Backend::start("b").await);
        let (web_a, web_b) = (Proxy::start(&[]), Proxy::start(&[]));
        for (web, backend) in [(&web_a, &a), (&web_b, &b)] {
            deploy(
                &web.control(),
                "web",
                backend,
                &[
                    "--health-check-interval=100ms",
                    "--health-check-fall=1",
                    "--buffer-requests",
                ],
            )
            .await;
        }
        let lb = Proxy::start(&[]);
        let targets = format!("127.0.0.1:{},127.0.0.1:{}", web_a.port, web_b.port);
        ok(
            &lb.control(),
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
        Self {
            _a: a,
            b,
            web_a,
            web_b,
            lb,
        }
    }

    async fn versions(&self, count: usize) -> Vec<(u16, String)> {
        let mut seen = Vec::new();
        for _ in 0..count {
            let got = get(&self.lb.url("/version")).await;
            seen.push((got.status, got.body));
        }
        seen
    }
}

fn post_echo(url: String, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(url)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_host_whose_app_is_gone_costs_no_request_through_the_balancer() {
    let tiers = Tiers::start().await;
    let seen = tiers.versions(6).await;
    assert!(
        seen.contains(&(200, "a".into())) && seen.contains(&(200, "b".into())),
        "both web hosts serve: {seen:?}"
    );

    // B's app crashes; B's proxy is still up and answers 502, marked as its own.
    tiers.b.stop();
    let direct = get(&tiers.web_b.url("/version")).await;
    assert_eq!(direct.status, 502, "{direct:?}");
    assert_eq!(direct.headers["x-hoist-proxy-error"], "unreachable");
    // Through the balancer, every GET is served by A.
    let seen = tiers.versions(10).await;
    assert!(
        seen.iter().all(|got| *got == (200, "a".to_owned())),
        "{seen:?}"
    );
    tiers
        .lb
        .wait_for_log("the target's proxy could not reach its application");

    // A POST is not sent twice after a 502 (the app may have got it): whichever host it goes
    // to first answers. B's 502 passes through with its mark; A serves it.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let got = send(post_echo(tiers.lb.url("/echo"), "once")).await;
        statuses.push(got.status);
        match got.status {
            200 => assert_eq!(got.body, "once"),
            _ => assert_eq!(got.headers["x-hoist-proxy-error"], "unreachable"),
        }
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&502),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_host_with_no_app_in_rotation_hands_any_request_to_another() {
    let tiers = Tiers::start().await;
    // B runs two app containers (a lone target is never taken out of rotation); both fail
    // their health checks, so B's proxy has nothing in rotation and answers 503.
    let b2 = Backend::start("b2").await;
    let targets = format!("{},{}", tiers.b.target(), b2.target());
    ok(
        &tiers.web_b.control(),
        &[
            "deploy",
            "web",
            "--target",
            &targets,
            "--health-check-interval=100ms",
            "--health-check-fall=1",
            "--buffer-requests",
        ],
    )
    .await;
    tiers.b.set_healthy(false);
    b2.set_healthy(false);
    tiers.web_b.wait_for_log_count("\"healthy\":false", 2);
    let direct = get(&tiers.web_b.url("/version")).await;
    assert_eq!(direct.status, 503, "{direct:?}");
    assert_eq!(direct.headers["x-hoist-proxy-error"], "no-target");

    // No application saw the request there, so any method goes to A, body and all.
    for _ in 0..4 {
        let got = send(post_echo(tiers.lb.url("/echo"), "kept for a retry")).await;
        assert_eq!((got.status, got.body.as_str()), (200, "kept for a retry"));
    }
    let seen = tiers.versions(6).await;
    assert!(
        seen.iter().all(|got| *got == (200, "a".to_owned())),
        "{seen:?}"
    );
    tiers
        .lb
        .wait_for_log("the target's proxy has no application in rotation");

    // A maintenance page is not a failure: the balancer passes it on, unmarked.
    ok(
        &tiers.web_a.control(),
        &["stop", "web", "--message", "back soon"],
    )
    .await;
    let paused = get(&tiers.lb.url("/version")).await;
    assert_eq!(paused.status, 503, "{paused:?}");
    assert!(paused.body.contains("back soon"), "{paused:?}");
    assert!(!paused.headers.contains_key("x-hoist-proxy-error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_sessions_keep_a_client_on_its_web_host_while_it_is_healthy() {
    let tiers = Tiers::start().await;
    ok(
        &tiers.lb.control(),
        &[
            "deploy",
            "web",
            "--target",
            &format!(
                "127.0.0.1:{},127.0.0.1:{}",
                tiers.web_a.port, tiers.web_b.port
            ),
            "--sticky-sessions",
            "--health-check-interval=100ms",
            "--health-check-fall=1",
        ],
    )
    .await;
    // The first answer says where to come back to; every request with the cookie goes there.
    let first = get(&tiers.lb.url("/version")).await;
    let cookie = first.headers["set-cookie"]
        .to_str()
        .expect("text")
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    assert!(cookie.starts_with("hoist-target="), "{cookie}");
    for _ in 0..10 {
        let again = get_with(&tiers.lb.url("/version"), &[("cookie", &cookie)]).await;
        assert_eq!(again.body, first.body, "the same web host");
        assert!(
            !again.headers.contains_key("set-cookie"),
            "nothing new to say"
        );
    }
    // Without the cookie, round-robin as before.
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(get(&tiers.lb.url("/version")).await.body);
    }
    assert!(
        seen.contains(&"a".into()) && seen.contains(&"b".into()),
        "{seen:?}"
    );

    // Its host gone, the client moves to the other and is told so.
    let (gone, other) = if first.body == "a" {
        (&tiers.web_a, "b")
    } else {
        (&tiers.web_b, "a")
    };
    ok(&gone.control(), &["remove", "web"]).await;
    tiers.lb.wait_for_log("\"healthy\":false");
    let moved = get_with(&tiers.lb.url("/version"), &[("cookie", &cookie)]).await;
    assert_eq!(moved.body, other);
    let new_cookie = moved.headers["set-cookie"].to_str().expect("text");
    assert!(
        new_cookie.starts_with("hoist-target=") && !new_cookie.starts_with(&cookie),
        "{new_cookie}"
    );
}
