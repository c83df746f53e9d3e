//! `hoist sandbox`: real servers (containers with sshd and their own dockerd), a real registry
//! with TLS and htpasswd, driven through the real `hoist` binary, the OpenSSH client and the
//! local Docker engine.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};
use support::{TestContext, docker, eventually, http_get, read_env_file, ssh, unique_name};

/// No container, network or volume matches the list filter `key=value`.
async fn assert_no_docker_objects(docker: &bollard::Docker, key: &str, value: &str) {
    let filters = HashMap::from([(key.to_string(), vec![value.to_string()])]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .expect("list containers");
    assert!(
        containers.is_empty(),
        "containers left ({key}={value}): {containers:?}"
    );
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .expect("list networks");
    assert!(
        networks.is_empty(),
        "networks left ({key}={value}): {networks:?}"
    );
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .expect("list volumes")
        .volumes
        .unwrap_or_default();
    assert!(
        volumes.is_empty(),
        "volumes left ({key}={value}): {volumes:?}"
    );
}

fn path(value: &serde_json::Value) -> PathBuf {
    PathBuf::from(value.as_str().expect("a path"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_servers_take_ssh_run_containers_and_pull_from_the_registry() {
    let context = TestContext::new();
    let name = unique_name("full");
    let docker = docker().await;

    let started = Instant::now();
    let (guard, output) = context.sandbox_up(&name, &["--servers", "2"]);
    let first_up = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);

    let sandbox = context.sandbox_json(&name);
    let servers = sandbox["servers"].as_array().expect("servers").clone();
    assert_eq!(servers.len(), 2);
    let registry = &sandbox["registry"];
    let registry_address = registry["address"]
        .as_str()
        .expect("registry address")
        .to_string();
    assert_eq!(registry["status"], "running");
    // `up` prints what a deploy.toml needs, but never the registry password.
    for server in &servers {
        assert_eq!(server["status"], "running");
        assert!(
            stdout.contains(server["address"].as_str().expect("address")),
            "{stdout}"
        );
    }
    assert!(stdout.contains(&registry_address), "{stdout}");
    let ca = std::fs::read_to_string(path(&registry["ca_path"])).expect("read the sandbox CA");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let credentials = read_env_file(&path(&registry["credentials_path"]));
    let password = credentials["HOIST_SANDBOX_REGISTRY_PASSWORD"].clone();
    let username = credentials["HOIST_SANDBOX_REGISTRY_USERNAME"].clone();
    assert!(
        !stdout.contains(&password) && !String::from_utf8_lossy(&output.stderr).contains(&password)
    );
    assert!(
        !sandbox.to_string().contains(&password),
        "list --json shows the password"
    );
    let mode = std::fs::metadata(path(&registry["credentials_path"]))
        .expect("stat")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // SSH: the generated key logs in, with the recorded host key checked strictly.
    let key = path(&servers[0]["key_path"]);
    let known_hosts = path(&sandbox["known_hosts_path"]);
    for (index, server) in servers.iter().enumerate() {
        let command = "hostname && id -un && docker info --format '{{.Driver}}'";
        let out = ssh(server, &key, &known_hosts, command, None);
        assert!(
            out.status.success(),
            "ssh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("server{}\nroot\noverlay2\n", index + 1)
        );
        let line = server["known_hosts_line"]
            .as_str()
            .expect("known_hosts_line");
        assert!(line.starts_with(&format!(
            "{} ssh-ed25519 ",
            server["address"].as_str().expect("address")
        )));
    }
    let line_a = servers[0]["known_hosts_line"].as_str().expect("line");
    let line_b = servers[1]["known_hosts_line"].as_str().expect("line");
    assert_ne!(
        line_a.split(' ').nth(2),
        line_b.split(' ').nth(2),
        "each server has its own host key"
    );

    // A key the server does not know is refused.
    let wrong = context.home.path().join("wrong_key");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong)
        .status()
        .expect("ssh-keygen");
    assert!(keygen.success());
    let out = ssh(&servers[0], &wrong, &known_hosts, "true", None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Registry: a push with wrong credentials is refused with the registry's own error...
    let repo = format!("{registry_address}/testapp");
    let tag = format!("v1-{name}");
    support::build_testapp_image(&docker, &format!("{repo}:{tag}"), "v1", false).await;
    let refused = support::push(
        &docker,
        &repo,
        &tag,
        &registry_address,
        &username,
        "wrong-password",
    )
    .await;
    let refused = refused.expect_err("push with a wrong password must fail");
    assert!(refused.contains("unauthorized"), "{refused}");
    // ...and succeeds with the sandbox's credentials.
    support::push(
        &docker,
        &repo,
        &tag,
        &registry_address,
        &username,
        &password,
    )
    .await
    .expect("push with the sandbox credentials");

    // A server pulls it only with credentials, runs it, and its published port answers from here.
    let image = format!("{repo}:{tag}");
    let out = ssh(
        &servers[0],
        &key,
        &known_hosts,
        &format!("docker pull {image}"),
        None,
    );
    assert!(!out.status.success(), "pull without credentials must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no basic auth credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = format!(
        "docker login -u {username} --password-stdin {registry_address} >/dev/null && docker pull -q {image} && docker run -d --name app -p 8080:3000 {image}"
    );
    let out = ssh(&servers[0], &key, &known_hosts, &script, Some(&password));
    assert!(
        out.status.success(),
        "pull and run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = format!("{}:8080", servers[0]["address"].as_str().expect("address"));
    assert!(
        eventually(
            Duration::from_secs(20),
            || matches!(http_get(&app, "/version"), Ok((200, ref body)) if body == "v1\n")
        ),
        "the app in server1 answers /version through its published port: {:?}",
        http_get(&app, "/version")
    );

    // `up` again while it runs: nothing rebuilt, the same sandbox reported.
    let again = context.hoist_ok(&["sandbox", "up", "--name", &name, "--servers", "2"]);
    assert!(again.contains(&registry_address));

    // `down` leaves no container, network or volume behind, nor the host's trust of the CA.
    drop(guard);
    assert_no_docker_objects(&docker, "label", &format!("dev.hoist.sandbox={name}")).await;
    // Nothing named after the sandbox is left either, labelled or not.
    assert_no_docker_objects(&docker, "name", &format!("hoist-sandbox-{name}")).await;
    assert!(
        !context.home.path().join(&name).exists(),
        "state directory left"
    );
    assert!(
        !PathBuf::from("/etc/docker/certs.d")
            .join(&registry_address)
            .exists(),
        "host CA trust left"
    );
    let _ = docker
        .remove_image(
            &image,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;

    // A second `up` reuses the cached server image: no debootstrap.
    let started = Instant::now();
    let (_guard, output) = context.sandbox_up(&name, &["--servers", "2"]);
    let second_up = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Using cached server image"), "{stderr}");
    assert!(!stderr.contains("debootstrap"), "{stderr}");
    eprintln!(
        "timing: sandbox up (2 servers): first {:.1}s, second {:.1}s (cached image)",
        first_up.as_secs_f64(),
        second_up.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_sandbox_servers_have_ssh_and_sudo_but_no_docker() {
    let context = TestContext::new();
    let name = unique_name("bare");
    let (_guard, _) = context.sandbox_up(&name, &["--bare"]);
    let sandbox = context.sandbox_json(&name);
    assert_eq!(sandbox["bare"], true);
    let server = &sandbox["servers"][0];
    let out = ssh(
        server,
        &path(&server["key_path"]),
        &path(&sandbox["known_hosts_path"]),
        "command -v docker dockerd || echo no-docker; sudo -n true && echo sudo-ok; . /etc/os-release; echo $ID",
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no-docker\nsudo-ok\ndebian\n"
    );
}

#[test]
fn sandbox_commands_explain_bad_input() {
    let context = TestContext::new();
    let output = context.hoist(&["sandbox", "list", "--name", "missing"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: Sandbox `missing` does not exist\n\nhint: start it: `hoist sandbox up --name missing`\n"
    );

    let output = context.hoist(&["sandbox", "up", "--name", "Bad_Name"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: Invalid sandbox name `Bad_Name`\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: use 1 to 32 lowercase letters"),
        "{stderr}"
    );

    let output = context.hoist(&["sandbox", "down", "--name", "never-created"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
}

#[test]
fn help_lists_the_commands() {
    let context = TestContext::new();
    let help = context.hoist_ok(&["--help"]);
    for command in [
        "init",
        "setup",
        "deploy",
        "redeploy",
        "rollback",
        "versions",
        "details",
        "logs",
        "exec",
        "app",
        "proxy",
        "accessory",
        "lock",
        "prune",
        "backup",
        "audit",
        "config",
        "sandbox",
    ] {
        assert!(
            help.contains(&format!("  {command} ")),
            "`{command}` missing from:\n{help}"
        );
    }
    // Every command listed is implemented: without a deploy.toml, prune asks for one.
    let output = context.hoist(&["prune"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("deploy.toml"),
        "{stderr}"
    );
    assert!(!stderr.contains("not implemented"), "{stderr}");
}

#[tokio::test]
async fn leftovers_of_an_interrupted_up_are_reported_and_removed_by_down() {
    let context = TestContext::new();
    let name = unique_name("leftover");
    let docker = docker().await;
    let network = format!("hoist-sandbox-{name}");
    docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: network.clone(),
            labels: Some(HashMap::from([(
                "dev.hoist.sandbox".to_string(),
                name.clone(),
            )])),
            ..Default::default()
        })
        .await
        .expect("create a leftover network");

    let output = context.hoist(&["sandbox", "up", "--name", &name]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exist but its state"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "hint: remove them with `hoist sandbox down --name {name}`"
        )),
        "{stderr}"
    );

    let output = context.hoist(&["sandbox", "down", "--name", &name]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let gone = docker
        .inspect_network(
            &network,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await;
    assert!(gone.is_err(), "network `{network}` left behind");
}
