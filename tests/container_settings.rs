//! How app containers run, from deploy.toml to the engine on a sandbox server: root and role
//! `volumes`, `options`, `logging` and `stop_timeout` in the container hoist creates (as
//! `docker inspect` shows it), asset bridging (`asset_path`: old and new assets served by both
//! versions, volumes pruned with their containers), and a role's `readiness_delay` deciding
//! whether a deploy passes.

mod support;

use serde_json::Value;
use support::sandbox::{
    Sandbox, assert_success, git, init_repository, testapp_dir, text, write_testapp_config,
};
use support::{TestContext, http_get};

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
    // The image carries its assets: one file per version in /assets.
    let dockerfile = dir.path().join("Dockerfile");
    let mut lines = std::fs::read_to_string(&dockerfile).expect("read Dockerfile");
    lines.push_str("COPY assets /assets\n");
    std::fs::write(&dockerfile, lines).expect("write Dockerfile");
    let assets = |name: &str| {
        let _ = std::fs::remove_dir_all(dir.path().join("assets"));
        std::fs::create_dir_all(dir.path().join("assets")).expect("mkdir assets");
        std::fs::write(
            dir.path().join("assets").join(format!("{name}.txt")),
            format!("asset of {name}\n"),
        )
        .expect("write asset");
    };
    assets("v1");
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
        let toml = format!(
            "volumes = [\"settings-data:/data\"]\nstop_timeout = \"7s\"\nasset_path = \"/assets\"\n\
             {toml}\n{tables}"
        );
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
    let binds = host_config["Binds"].as_array().expect("binds");
    assert_eq!(
        binds[..2],
        [
            serde_json::json!("settings-data:/data"),
            serde_json::json!("/tmp:/host-tmp:ro")
        ],
        "root volumes, then the role's"
    );
    let mount = binds.get(2).and_then(Value::as_str).unwrap_or_default();
    assert!(
        binds.len() == 3 && mount.starts_with("hello-web-") && mount.ends_with("-assets:/assets"),
        "then the version's asset volume: {binds:?}"
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

    // Asset bridging: v1's assets from its image, then after v1b both sets on both versions'
    // volumes (the new container serves v1's, the old one had v1b's before the switch).
    let address = format!("{host}:80");
    let get = |path: &str| http_get(&address, path).expect("GET");
    assert_eq!(get("/assets/v1.txt"), (200, "asset of v1\n".to_string()));
    let web = "volumes = [\"/tmp:/host-tmp:ro\"]\n";
    assets("v1b");
    configure("v1b", web, "");
    assert_success(&hoist(&["deploy"]), "hoist deploy v1b");
    assert_eq!(get("/assets/v1b.txt"), (200, "asset of v1b\n".to_string()));
    assert_eq!(
        get("/assets/v1.txt"),
        (200, "asset of v1\n".to_string()),
        "the old version's asset, from the new container"
    );
    let volumes = "docker volume ls -q --filter label=dev.hoist.assets=hello-web";
    let listed = sandbox.ssh(
        0,
        &format!(
            "for v in $({volumes}); do echo \"$v: $(ls $(docker volume inspect -f '{{{{.Mountpoint}}}}' $v) | tr '\\n' ' ')\"; done"
        ),
    );
    let listed = text(&listed).0;
    assert_eq!(
        listed.lines().count(),
        2,
        "one volume per version: {listed}"
    );
    for line in listed.lines() {
        assert!(
            line.ends_with(": v1.txt v1b.txt "),
            "both sets everywhere: {listed}"
        );
    }
    // Pruned with its container: retain none, and v1's volume goes.
    let path = dir.path().join("deploy.toml");
    let toml = std::fs::read_to_string(&path).expect("read deploy.toml");
    std::fs::write(&path, format!("retain_containers = 0\n{toml}")).expect("write deploy.toml");
    assert_success(&hoist(&["prune"]), "hoist prune");
    let left = text(&sandbox.ssh(0, volumes)).0;
    assert_eq!(left.lines().count(), 1, "the live version's only: {left}");

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
