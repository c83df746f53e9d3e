//! hoist-proxy as Kamal's proxy: the image built from this repository's Dockerfile, driven on a
//! sandbox server by the Docker command lines Kamal 2.12 runs (copied from what `kamal deploy`,
//! `kamal rollback`, `kamal app maintenance/live`, `kamal proxy reboot`, `kamal proxy details`
//! and `kamal remove` printed against this image; Kamal's source: `lib/kamal/commands/proxy.rb`,
//! `app/proxy.rb`, `configuration/proxy/run.rb`, `boot.rb`). Only `docker login` differs: the
//! password goes on stdin, not argv.
//!
//! It starts from a `kamal-proxy-config` volume as kamal-proxy leaves it (uid 1001, its own
//! `kamal-proxy.state`), boots with `proxy.run`'s lines, deploys two versions under load, pauses
//! and resumes, reboots twice (the `proxy.run` lines with metrics and debug, then the
//! `boot_config` default lines, which use the image's own command) keeping routes in Kamal's
//! volume, and removes everything by Kamal's label filters.

mod support;

use std::time::Duration;

use support::load::Load;
use support::sandbox::{Sandbox, assert_success, text};
use support::{TestContext, eventually, http_get};

/// The volume's directory on the server.
const VOLUME_DIR: &str = "/var/lib/docker/volumes/kamal-proxy-config/_data";

/// kamal-proxy's own state file, as a switching user has it; hoist-proxy must leave it alone.
const KAMAL_STATE: &str = "{\"kept\":\"by kamal-proxy\"}";

/// `docker run` of the proxy as Kamal's `proxy.run` writes it, with `extra` docker options and
/// `command` after the image.
fn proxy_run(image: &str, extra: &str, command: &str) -> String {
    format!(
        "docker run --name kamal-proxy --network kamal --detach --restart unless-stopped \
         --volume kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy \
         --volume $PWD/.kamal/proxy/apps-config:/home/kamal-proxy/.apps-config \
         --publish 80:80 --publish 443:443 --log-opt max-size=10m{extra} {image} {command}"
    )
}

/// Kamal's `kamal-proxy deploy` for `target` (a container id) with its default options.
fn proxy_deploy(target: &str) -> String {
    format!(
        "docker exec kamal-proxy kamal-proxy deploy hello-web --target=\"{target}:3000\" \
         --deploy-timeout=\"30s\" --drain-timeout=\"30s\" --health-check-interval=\"1s\" \
         --buffer-requests --buffer-responses --log-request-header=\"Cache-Control\" \
         --log-request-header=\"Last-Modified\" --log-request-header=\"User-Agent\""
    )
}

/// Kamal's `docker run` of the app container for `version`.
fn app_run(registry: &str, host: &str, version: &str) -> String {
    format!(
        "docker run --detach --restart unless-stopped --name hello-web-{version} --network kamal \
         --hostname {host}-12831d67d500 --env KAMAL_CONTAINER_NAME=\"hello-web-{version}\" \
         --env KAMAL_VERSION=\"{version}\" --env KAMAL_HOST=\"{host}\" \
         --env-file .kamal/apps/hello/env/roles/web.env --log-opt max-size=\"10m\" \
         --label service=\"hello\" --label role=\"web\" --label destination \
         {registry}/hello:{version}"
    )
}

/// Kamal's reboot, before its `docker run`: stop, remove by label, the apps-config directory.
const REBOOT_STOP: &str = "docker container stop kamal-proxy; \
     docker container prune --force --filter label=org.opencontainers.image.title=kamal-proxy \
     && mkdir -p .kamal/proxy/apps-config";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamal_drives_the_shipped_image_with_its_own_command_lines() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "kamal", 1);
    let docker = support::docker().await;
    let registry = sandbox.registry();
    let (username, password) = sandbox.registry_credentials();
    let host = sandbox.address(0);
    let address = format!("{host}:80");
    let run = |what: &str, command: &str| -> String {
        let output = sandbox.ssh(0, command);
        assert_success(&output, what);
        text(&output).0
    };

    // The image under the tag Kamal's version check accepts, and the app's two versions.
    let tag = hoist_proxy::kamal::image_tag(env!("CARGO_PKG_VERSION")).expect("a release");
    let image = format!("{registry}/hoist-proxy:{tag}");
    support::build_proxy_image(&docker, &image).await;
    sandbox.push(&docker, &image).await;
    for version in ["v1", "v2"] {
        let app = format!("{registry}/hello:{version}");
        support::build_testapp_image(&docker, &app, version, false).await;
        sandbox.push(&docker, &app).await;
    }

    // What kamal-proxy leaves behind: its volume, owned by its uid, with its state file.
    run(
        "a kamal-proxy volume",
        &format!(
            "docker volume create kamal-proxy-config >/dev/null && \
             printf '%s' '{KAMAL_STATE}' > {VOLUME_DIR}/kamal-proxy.state && \
             chmod 0600 {VOLUME_DIR}/kamal-proxy.state && chown -R 1001:1001 {VOLUME_DIR}"
        ),
    );

    // `kamal deploy`: network, login, version check, boot, app v1, deploy.
    run("network", "docker network create kamal");
    let login = sandbox_login(&sandbox, &registry, &username, &password);
    assert_success(&login, "docker login");
    let version = "docker inspect kamal-proxy --format '{{.Config.Image}}' | awk -F: '{print $NF}'";
    assert_eq!(run("version before boot", version).trim(), "");
    run("apps-config", "mkdir -p .kamal/proxy/apps-config");
    run(
        "boot",
        &format!(
            "docker container start kamal-proxy || {}",
            proxy_run(&image, "", "kamal-proxy run")
        ),
    );
    let seen = run("version after boot", version);
    assert!(
        hoist_proxy::kamal::kamal_accepts(seen.trim(), "v0.9.2"),
        "Kamal 2.12's minimum-version check refuses `{}`",
        seen.trim()
    );
    wait_answering(&sandbox);
    run(
        "env file",
        "mkdir -p .kamal/apps/hello/env/roles && touch .kamal/apps/hello/env/roles/web.env",
    );
    run("app v1", &app_run(&registry, &host, "v1"));
    let v1 = run(
        "v1 id",
        "docker container ls --all --filter 'name=^hello-web-v1$' --quiet",
    );
    run("deploy v1", &proxy_deploy(v1.trim()));
    assert_eq!(get(&address, "/version"), (200, "v1".into()));

    // A second version under load, then Kamal stops the old container.
    let load = Load::start(address.clone(), 4);
    run("app v2", &app_run(&registry, &host, "v2"));
    let v2 = run(
        "v2 id",
        "docker container ls --all --filter 'name=^hello-web-v2$' --quiet",
    );
    run("deploy v2", &proxy_deploy(v2.trim()));
    run(
        "stop v1",
        "docker container ls --all --filter 'name=^hello-web-v1$' --quiet | xargs docker stop",
    );
    let versions = load.finish_clean("kamal deploy of v2", 50);
    assert_eq!(versions.last().map(String::as_str), Some("v2"));

    // `kamal rollback v1`: start the old container, deploy it, stop v2.
    run("start v1", "docker start hello-web-v1");
    run("rollback", &proxy_deploy(v1.trim()));
    assert_eq!(get(&address, "/version"), (200, "v1".into()));
    run(
        "stop v2",
        "docker container ls --all --filter 'name=^hello-web-v2$' --quiet | xargs docker stop",
    );

    // `kamal app maintenance --message` and `kamal app live`.
    run(
        "maintenance",
        "docker exec kamal-proxy kamal-proxy stop hello-web --drain-timeout=\"30s\" \
         --message=\"Back soon\"",
    );
    let (status, body) = http_get(&address, "/version").expect("GET during maintenance");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Back soon"), "{body}");
    run(
        "live",
        "docker exec kamal-proxy kamal-proxy resume hello-web",
    );
    assert_eq!(get(&address, "/version"), (200, "v1".into()));

    // `kamal proxy details`.
    let details = run("details", "docker ps --filter 'name=^kamal-proxy$'");
    assert!(
        details.contains("kamal-proxy") && details.contains("Up"),
        "{details}"
    );

    // `kamal proxy reboot` with `proxy.run` metrics_port and debug: the label prune removes the
    // stopped container, the new one restores the route from Kamal's volume.
    run("reboot: stop and prune", REBOOT_STOP);
    run(
        "reboot: run",
        &proxy_run(
            &image,
            " --expose=9090",
            "kamal-proxy run --debug --metrics-port \"9090\"",
        ),
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            http_get(&address, "/version").is_ok_and(|answer| answer == (200, "v1\n".into()))
        }),
        "the route survives the reboot"
    );
    let metrics = run(
        "metrics",
        "curl -sS \"$(docker inspect kamal-proxy --format \
         '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'):9090/metrics\"",
    );
    assert!(
        metrics.contains("kamal_proxy_http_requests_total{service=\"hello-web\""),
        "{metrics}"
    );

    // `kamal proxy reboot` with boot_config's files (the deprecated default): no run command,
    // so the image's own command runs, and must keep state in Kamal's volume too.
    run(
        "boot_config files",
        &format!(
            "mkdir -p .kamal/proxy && printf '%s' '{}' > .kamal/proxy/image && \
             printf '%s' '{tag}' > .kamal/proxy/image_version",
            image.rsplit_once(':').expect("a tag").0
        ),
    );
    run("reboot: stop and prune", REBOOT_STOP);
    run(
        "reboot: boot_config run",
        "echo $(cat .kamal/proxy/options 2> /dev/null || echo \"--publish 80:80 --publish \
         443:443 --log-opt max-size=10m\") $(cat .kamal/proxy/image 2> /dev/null || echo \
         \"basecamp/kamal-proxy\"):$(cat .kamal/proxy/image_version 2> /dev/null || echo \
         \"v0.9.2\") $(cat .kamal/proxy/run_command 2> /dev/null || echo \"\") | xargs docker \
         run --name kamal-proxy --network kamal --detach --restart unless-stopped --volume \
         kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy --volume \
         $PWD/.kamal/proxy/apps-config:/home/kamal-proxy/.apps-config",
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            http_get(&address, "/version").is_ok_and(|answer| answer == (200, "v1\n".into()))
        }),
        "the route survives a reboot with the image's own command"
    );
    let volume = run(
        "volume",
        &format!(
            "cat {VOLUME_DIR}/kamal-proxy.state; echo; stat -c '%u:%g %n' {VOLUME_DIR}/*.state"
        ),
    );
    assert!(
        volume.starts_with(KAMAL_STATE),
        "kamal-proxy's state untouched: {volume}"
    );
    assert!(
        volume.contains(&format!("1001:1001 {VOLUME_DIR}/hoist-proxy.state")),
        "hoist-proxy keeps its state in Kamal's volume, as kamal-proxy's user: {volume}"
    );

    // `kamal remove`: the service, then the proxy container and image by Kamal's label.
    run(
        "app remove",
        "docker exec kamal-proxy kamal-proxy remove hello-web",
    );
    assert_eq!(get(&address, "/version").0, 404);
    run(
        "proxy remove",
        "docker container stop kamal-proxy && docker container prune --force --filter \
         label=org.opencontainers.image.title=kamal-proxy && docker image prune --all --force \
         --filter label=org.opencontainers.image.title=kamal-proxy && rm -r .kamal/proxy",
    );
    let left = run(
        "what is left",
        &format!(
            "docker ps -a --filter name=kamal-proxy --quiet; docker image ls --quiet {}",
            image.rsplit_once(':').expect("a tag").0
        ),
    );
    assert_eq!(left.trim(), "", "no proxy container or image left");

    remove_local(&docker, &image, &registry).await;
}

/// `docker login` on the server as Kamal does it, with the password on stdin.
fn sandbox_login(
    sandbox: &Sandbox,
    registry: &str,
    username: &str,
    password: &str,
) -> std::process::Output {
    support::ssh(
        sandbox.server(0),
        &sandbox.key(),
        &sandbox.known_hosts(),
        &format!("docker login {registry} -u {username} --password-stdin"),
        Some(password),
    )
}

/// Wait until the proxy answers on its socket: Kamal boots the app container in between.
fn wait_answering(sandbox: &Sandbox) {
    assert!(
        eventually(Duration::from_secs(20), || {
            sandbox
                .ssh(0, "docker exec kamal-proxy kamal-proxy list")
                .status
                .success()
        }),
        "the proxy never answered `kamal-proxy list`"
    );
}

/// GET `path`, with the body trimmed.
fn get(address: &str, path: &str) -> (u16, String) {
    let (status, body) = http_get(address, path).expect("GET through the proxy");
    (status, body.trim().to_string())
}

/// The images this test built in the local engine.
async fn remove_local(docker: &bollard::Docker, image: &str, registry: &str) {
    let options = bollard::query_parameters::RemoveImageOptionsBuilder::new()
        .force(true)
        .build();
    for name in [
        image.to_string(),
        format!("{registry}/hello:v1"),
        format!("{registry}/hello:v2"),
    ] {
        let _ = docker
            .remove_image(&name, Some(options.clone()), None)
            .await;
    }
}
