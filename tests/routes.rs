//! Seed 001's shape on one sandbox server: a frontend at `/` and a backend at `/api` of the same
//! host, as two hoist apps (two services on one hoist-proxy), each deployed on its own without
//! disturbing the other; `proxy.path_prefix` and `strip_path_prefix` wired end to end. Then the
//! frontend over HTTPS with its own certificate from secrets (`proxy.ssl_certificate` /
//! `ssl_private_key`), replaced by the next deploy, never in a label or the proxy's state.

mod support;

use std::path::Path;

use support::load::Load;
use support::sandbox::{
    Sandbox, assert_success, git, init_repository, testapp_dir, text, write_testapp_config,
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

    // The frontend over HTTPS with a certificate of its own, from its secrets.
    let pki = tempfile::tempdir().expect("temp dir");
    let issue = |name: &str| {
        let (ca, chain, key) = certificate_for("app.test");
        let dir = pki.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (file, pem) in [("ca.pem", &ca), ("chain.pem", &chain), ("key.pem", &key)] {
            std::fs::write(dir.join(file), pem).expect("write pem");
        }
        let secrets = format!(
            "REGISTRY_PASSWORD={password}\nAPP_CERT=\"$(cat {dir}/chain.pem)\"\n\
             APP_KEY=\"$(cat {dir}/key.pem)\"\n",
            dir = dir.display()
        );
        std::fs::write(front.path().join(".hoist/secrets"), secrets).expect("write secrets");
        (dir.join("ca.pem"), key)
    };
    let tls = "hosts = [\"app.test\"]\ntls = true\n\
               ssl_certificate = \"APP_CERT\"\nssl_private_key = \"APP_KEY\"\n";
    let (first_ca, first_key) = issue("first");
    release(front.path(), "front", "front-v3", tls);
    let proxy_log = || text(&sandbox.ssh(0, "docker logs --tail 30 hoist-proxy 2>&1")).0;
    assert_eq!(
        https_get(&host, &first_ca, "/version"),
        Ok("front-v3".to_string()),
        "{}",
        proxy_log()
    );
    // A new certificate is served from the next deploy on.
    let (second_ca, second_key) = issue("second");
    release(front.path(), "front", "front-v4", tls);
    assert_eq!(
        https_get(&host, &second_ca, "/version"),
        Ok("front-v4".to_string()),
        "{}",
        proxy_log()
    );
    assert!(
        https_get(&host, &first_ca, "/version").is_err(),
        "the first certificate is no longer served"
    );
    // The key is in its file, the proxy's alone, and nowhere else: not in the container's
    // settings or labels, not in the proxy's state.
    let listing = sandbox.ssh(
        0,
        "docker cp hoist-proxy:/var/lib/hoist-proxy - | tar --numeric-owner -tvf - | grep key.pem",
    );
    let listing = text(&listing).0;
    assert!(
        !listing.is_empty()
            && listing
                .lines()
                .all(|line| line.starts_with("-rw------- 65532/65532")),
        "{listing}"
    );
    let key_line = |key: &str| key.lines().nth(1).expect("a PEM body line").to_string();
    for key in [&first_key, &second_key] {
        let found = sandbox.ssh(
            0,
            &format!(
                "{{ docker inspect hoist-proxy; docker cp hoist-proxy:/var/lib/hoist-proxy - \
                 | tar -xOf - --exclude='*/key.pem'; }} | grep -c -F -e '{}' || true",
                key_line(key)
            ),
        );
        assert_eq!(text(&found).0.trim(), "0", "a key outside its file");
    }
}

/// A CA and a certificate it signed for `name`: (CA PEM, chain PEM, key PEM).
fn certificate_for(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Subject names of their own: a leaf named like its issuer looks self-signed to clients.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "routes test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    let leaf = params.signed_by(&key, &issuer).expect("certificate");
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// `GET https://app.test{path}` at `host`, verified against `ca`: the body, or curl's error.
fn https_get(host: &str, ca: &Path, path: &str) -> Result<String, String> {
    let output = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("app.test:443:{host}")])
        .arg(format!("https://app.test{path}"))
        .output()
        .expect("run curl");
    let (stdout, stderr) = text(&output);
    match output.status.success() {
        true => Ok(stdout.trim().to_string()),
        false => Err(stderr),
    }
}
