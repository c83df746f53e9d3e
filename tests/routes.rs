//! Seed 001's shape on one sandbox server: a frontend at `/` and a backend at `/api` of the same
//! host, as two hoist apps (two services on one hoist-proxy), each deployed on its own without
//! disturbing the other; `proxy.path_prefix` and `strip_path_prefix` wired end to end.

mod support;

use std::path::Path;

use support::load::Load;
use support::sandbox::{
    Sandbox, assert_success, git, init_repository, testapp_dir, write_testapp_config,
};
use support::{TestContext, http_get};

/// The test app's deploy.toml under another service name, with `extra` appended.
fn app_config(
    dir: &Path,
    sandbox: &Sandbox,
    host: &str,
    proxy_image: &str,
    service: &str,
    version: &str,
    extra: &str,
) {
    write_testapp_config(
        dir,
        sandbox,
        &[host.to_string()],
        proxy_image,
        version,
        extra,
    );
    let path = dir.join("deploy.toml");
    let toml = std::fs::read_to_string(&path)
        .expect("read deploy.toml")
        .replacen(
            "service = \"hello\"",
            &format!("service = \"{service}\""),
            1,
        )
        .replacen("/hello\"", &format!("/{service}\""), 1);
    std::fs::write(&path, toml).expect("write deploy.toml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontend_at_the_root_and_an_api_under_a_prefix_deploy_apart() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "routes", 1);
    let docker = support::docker().await;
    let (_, password) = sandbox.registry_credentials();
    let proxy_image = sandbox.push_proxy_image(&docker, "routes").await;
    let host = sandbox.address(0);
    let address = format!("{host}:80");
    let secrets = format!("REGISTRY_PASSWORD={password}\n");
    let (front, api) = (testapp_dir(&secrets), testapp_dir(&secrets));
    let commit = |dir: &Path, message: &str| {
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", message]);
    };
    for dir in [front.path(), api.path()] {
        std::fs::write(dir.join(".gitignore"), ".hoist/secrets*\n").expect("gitignore");
        init_repository(dir);
    }
    // Configure, commit and deploy `version` of `service` from `dir`.
    let release = |dir: &Path, service: &str, version: &str, extra: &str| {
        app_config(dir, &sandbox, &host, &proxy_image, service, version, extra);
        commit(dir, version);
        assert_success(
            &context.hoist_in(dir, &["deploy"]),
            &format!("deploy {version}"),
        );
    };
    let api_extra = "path_prefix = \"/api\"\n";
    release(front.path(), "front", "front-v1", "");
    release(api.path(), "api", "api-v1", api_extra);
    let get = |path: &str| {
        let (status, body) = http_get(&address, path).expect("GET");
        (status, body.trim().to_string())
    };
    assert_eq!(get("/version"), (200, "front-v1".into()));
    assert_eq!(
        get("/api/version"),
        (200, "api-v1".into()),
        "the prefix is stripped"
    );

    // A new api under load on both paths: nothing fails, the frontend never changes.
    let (on_front, on_api) = (
        Load::start_on(address.clone(), "/version", 2),
        Load::start_on(address.clone(), "/api/version", 2),
    );
    release(api.path(), "api", "api-v2", api_extra);
    assert_eq!(on_front.finish_clean("the frontend", 20), ["front-v1"]);
    assert_eq!(
        on_api
            .finish_clean("the api", 20)
            .last()
            .map(String::as_str),
        Some("api-v2")
    );

    // A new frontend leaves the api alone.
    let on_api = Load::start_on(address.clone(), "/api/version", 2);
    release(front.path(), "front", "front-v2", "");
    assert_eq!(on_api.finish_clean("the api", 20), ["api-v2"]);
    assert_eq!(get("/version"), (200, "front-v2".into()));

    // `strip_path_prefix = false`: the app sees `/api/version`, which it does not know.
    let unstripped = format!("{api_extra}strip_path_prefix = false\n");
    release(api.path(), "api", "api-v3", &unstripped);
    assert_eq!(get("/api/version").0, 404, "the prefix reached the app");
    assert_eq!(get("/version"), (200, "front-v2".into()));
}
