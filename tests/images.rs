//! The images hoist ships or tests with, built here without pulling anything: the hoist-proxy
//! image from the root Dockerfile's `local` target (with Kamal's defaults), and the test app
//! (healthy and broken).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use futures_util::StreamExt;
use support::{docker, eventually, http_get, unique_name};

async fn create_and_start(docker: &bollard::Docker, name: &str, body: ContainerCreateBody) {
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(name).build()),
            body,
        )
        .await
        .expect("create container");
    docker
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .expect("start container");
}

async fn remove(docker: &bollard::Docker, container: &str, image: &str) {
    let _ = docker
        .remove_container(
            container,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
    let _ = docker
        .remove_image(
            image,
            Some(RemoveImageOptionsBuilder::new().force(true).build()),
            None,
        )
        .await;
}

#[tokio::test]
async fn proxy_image_builds_offline_and_runs_as_non_root() {
    let docker = docker().await;
    let name = unique_name("proxy-image");
    let tag = format!("hoist-proxy-test:{name}");
    support::build_proxy_image(&docker, &tag).await;

    let image = docker.inspect_image(&tag).await.expect("inspect image");
    let config = image.config.expect("image config");
    // Kamal's defaults (hoist passes its own user, command and state directory).
    assert_eq!(config.user.as_deref(), Some("1001:1001"));
    assert_eq!(
        config.cmd,
        Some(vec!["kamal-proxy".to_string(), "run".to_string()])
    );
    assert_eq!(
        config
            .labels
            .as_ref()
            .and_then(|labels| labels.get("org.opencontainers.image.title"))
            .map(String::as_str),
        Some("kamal-proxy"),
        "the label Kamal prunes its proxy by"
    );
    assert!(
        image.size.unwrap_or(i64::MAX) < 20 * 1024 * 1024,
        "the proxy image should stay small: {:?} bytes",
        image.size
    );

    create_and_start(
        &docker,
        &name,
        ContainerCreateBody {
            image: Some(tag.clone()),
            // The second name, as Kamal runs it.
            cmd: Some(vec!["kamal-proxy".into(), "--help".into()]),
            ..Default::default()
        },
    )
    .await;
    let mut wait = docker.wait_container(
        &name,
        None::<bollard::query_parameters::WaitContainerOptions>,
    );
    while let Some(item) = wait.next().await {
        item.expect("hoist-proxy --help exits 0");
    }
    let mut logs = docker.logs(
        &name,
        Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
    );
    let mut output = String::new();
    while let Some(chunk) = logs.next().await {
        output.push_str(&chunk.expect("logs").to_string());
    }
    remove(&docker, &name, &tag).await;
    for command in [
        "run", "deploy", "remove", "pause", "stop", "resume", "list", "rollout",
    ] {
        assert!(
            output.contains(command),
            "`{command}` missing from:\n{output}"
        );
    }
}

#[tokio::test]
async fn testapp_image_serves_its_version_and_the_broken_variant_fails_health() {
    let docker = docker().await;
    for (broken, expected_up) in [(false, 200), (true, 503)] {
        let name = unique_name(if broken { "testapp-broken" } else { "testapp" });
        let tag = format!("hoist-testapp-test:{name}");
        support::build_testapp_image(&docker, &tag, "v7", broken).await;
        create_and_start(
            &docker,
            &name,
            ContainerCreateBody {
                image: Some(tag.clone()),
                host_config: Some(HostConfig {
                    port_bindings: Some(HashMap::from([(
                        "3000/tcp".to_string(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some(String::new()),
                        }]),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await;
        let inspected = docker
            .inspect_container(&name, None)
            .await
            .expect("inspect");
        let port = inspected
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|p| p.get("3000/tcp").cloned().flatten())
            .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
            .expect("published port");
        let address = format!("127.0.0.1:{port}");
        let answered = eventually(Duration::from_secs(10), || {
            http_get(&address, "/version").is_ok()
        });
        let version = http_get(&address, "/version");
        let up = http_get(&address, "/up");
        remove(&docker, &name, &tag).await;
        assert!(answered, "the test app did not answer on {address}");
        assert_eq!(version.expect("GET /version"), (200, "v7\n".to_string()));
        assert_eq!(up.expect("GET /up").0, expected_up, "broken = {broken}");
    }
}
