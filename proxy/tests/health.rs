//! Health checks on another port and with their own Host, as `[proxy.healthcheck] port` and
//! `host` ask for: a real `hoist-proxy run` process, real backends, deploys that pass or fail on
//! what the probe sees, and `hoist-proxy probe` with the same flags.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_go_to_their_own_port_and_host() {
    // The app answers traffic but fails its health path; a second listener is healthy.
    let (app, admin) = (Backend::start("app").await, Backend::start("admin").await);
    app.set_healthy(false);
    let proxy = Proxy::start(&[]);
    let control = proxy.control();
    let deploy = |extra: Vec<String>| {
        let mut args = vec![
            "deploy".to_string(),
            "web".into(),
            "--target".into(),
            app.target(),
            "--deploy-timeout=1s".into(),
            "--health-check-interval=100ms".into(),
        ];
        args.extend(extra);
        args
    };
    let refused = cli(&control, &as_strs(&deploy(vec![]))).await;
    assert!(!refused.status.success(), "the app's own /up fails");
    let port = format!("--health-check-port={}", admin.address.port());
    ok(&control, &as_strs(&deploy(vec![port.clone()]))).await;
    assert_eq!(
        get(&proxy.url("/version")).await.body,
        "app",
        "traffic still goes to the app"
    );

    // The Host of the probe: /up-internal passes only with `Host: internal.test`.
    let path = "--health-check-path=/up-internal".to_string();
    let refused = cli(
        &control,
        &as_strs(&deploy(vec![port.clone(), path.clone()])),
    )
    .await;
    assert!(!refused.status.success(), "no Host, no pass");
    let host = "--health-check-host=internal.test".to_string();
    ok(&control, &as_strs(&deploy(vec![port, path, host]))).await;

    // `hoist-proxy probe` takes the same two.
    let probe = |extra: &[&str]| {
        let mut args = vec![
            "probe",
            "127.0.0.1:1",
            "--path=/up-internal",
            "--timeout=1s",
        ];
        args.extend_from_slice(extra);
        proxy.cli(&args)
    };
    let admin_port = format!("--port={}", admin.address.port());
    assert!(!probe(&[&admin_port]).status.success());
    assert!(
        probe(&[&admin_port, "--host=internal.test"])
            .status
            .success()
    );
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
