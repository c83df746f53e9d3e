//! How app containers run, from deploy.toml to the engine on a sandbox server: root and role
//! `volumes`, `options`, `logging` and `stop_timeout` in the container hoist creates (as
//! `docker inspect` shows it), and a role's `readiness_delay` deciding whether a deploy passes.

mod support;

use serde_json::Value;
use support::TestContext;
use support::sandbox::{
    Sandbox, assert_success, git, init_repository, testapp_dir, text, write_testapp_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_options_logging_stop_timeout_and_readiness_delay_reach_the_containers() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "settings", 1);
    let docker = support::docker().await;
    let (_, password) = sandbox.registry_credentials();
    let proxy_image = sandbox.push_proxy_image(&docker, "settings").await;
    let host = sandbox.address(0);
    let dir = testapp_dir(&format!("REGISTRY_PASSWORD={password}\n"));
    std::fs::write(dir.path().join(".gitignore"), ".hoist/secrets*\n").expect("gitignore");
    init_repository(dir.path());
    // The test app's deploy.toml with root keys in front, role keys in [servers.web], and
    // `tables` at the end.
    let configure = |version: &str, web: &str, tables: &str| {
        write_testapp_config(
            dir.path(),
            &sandbox,
            std::slice::from_ref(&host),
            &proxy_image,
            version,
            "",
        );
        let path = dir.path().join("deploy.toml");
        let toml = std::fs::read_to_string(&path)
            .expect("read deploy.toml")
            .replacen("[servers.web]\n", &format!("[servers.web]\n{web}"), 1);
        let toml =
            format!("volumes = [\"settings-data:/data\"]\nstop_timeout = \"7s\"\n{toml}\n{tables}");
        std::fs::write(&path, toml).expect("write deploy.toml");
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", version]);
    };
    let hoist = |args: &[&str]| context.hoist_in(dir.path(), args);

    configure(
        "v1",
        "volumes = [\"/tmp:/host-tmp:ro\"]\nstop_timeout = \"9s\"\n",
        "[servers.web.options]\nmemory = \"256m\"\ncpus = 0.5\ninit = true\n\
         ulimits = { nofile = \"1024:2048\" }\n\n\
         [logging]\ndriver = \"json-file\"\noptions = { max-size = \"5m\", max-file = 2 }\n",
    );
    assert_success(&hoist(&["deploy"]), "hoist deploy v1");
    let inspect = sandbox.ssh(
        0,
        "docker inspect $(docker ps -q --filter label=service=hello --filter label=role=web)",
    );
    assert_success(&inspect, "docker inspect the web container");
    let inspect: Value = serde_json::from_str(&text(&inspect).0).expect("inspect JSON");
    let container = &inspect[0];
    let host_config = &container["HostConfig"];
    assert_eq!(
        host_config["Binds"],
        serde_json::json!(["settings-data:/data", "/tmp:/host-tmp:ro"]),
        "root volumes, then the role's"
    );
    assert_eq!(host_config["Memory"], 256 << 20);
    assert_eq!(host_config["NanoCpus"], 500_000_000);
    assert_eq!(host_config["Init"], true);
    assert_eq!(
        host_config["Ulimits"],
        serde_json::json!([{ "Name": "nofile", "Soft": 1024, "Hard": 2048 }])
    );
    assert_eq!(host_config["LogConfig"]["Type"], "json-file");
    assert_eq!(
        host_config["LogConfig"]["Config"],
        serde_json::json!({ "max-size": "5m", "max-file": "2" })
    );
    assert_eq!(
        container["Config"]["StopTimeout"], 9,
        "the role's stop_timeout over the root's"
    );
    // The named volume is there and mounted.
    let volumes = sandbox.ssh(0, "docker volume ls -q");
    assert!(
        text(&volumes).0.lines().any(|v| v == "settings-data"),
        "{}",
        text(&volumes).0
    );

    // A role without the proxy counts as ready once it has run `readiness_delay`: a process
    // that exits after 3 s fails a 5 s delay (it would pass the default 2 s).
    configure(
        "v2",
        "",
        &format!(
            "[servers.jobs]\nhosts = [\"{host}\"]\ncmd = \"sleep 3000\"\nreadiness_delay = \"5s\"\n"
        ),
    );
    let output = hoist(&["deploy"]);
    let stderr = text(&output).1;
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("stopped (exit code 0)"), "{stderr}");
}
