//! `hoist proxy boot|reboot|stop|start|remove|details|logs` end to end against one sandbox
//! server: hoist-proxy built from the repo's Dockerfile and pushed to the sandbox registry (with
//! a password), booted, inspected, rebooted (handed over) with its routes kept, stopped and
//! started, its logs read (and followed), and removed.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::TestContext;
use support::sandbox::{Sandbox, app_dir, assert_success, text, write_config, write_hook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_boots_once_shows_its_routes_reboots_keeping_them_and_prints_its_logs() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "proxycmd", 1);
    let docker = support::docker().await;
    let registry = sandbox.registry();
    let (username, password) = sandbox.registry_credentials();
    let image = sandbox.push_proxy_image(&docker, "proxycmd").await;

    let dir = app_dir();
    std::fs::create_dir_all(dir.path().join(".hoist")).expect("mkdir .hoist");
    std::fs::write(
        dir.path().join(".hoist/secrets"),
        format!("REGISTRY_PASSWORD={password}\n"),
    )
    .expect("write secrets");
    let markers = dir.path().join("markers");
    for hook in ["pre-proxy-reboot", "post-proxy-reboot"] {
        write_hook(
            dir.path(),
            hook,
            &format!(
                "#!/bin/sh\necho \"$HOIST_HOOK $HOIST_COMMAND $HOIST_SUBCOMMAND $HOIST_HOSTS\" \
                 >> '{}'\n",
                markers.display()
            ),
        );
    }
    let host = sandbox.address(0);
    write_config(
        dir.path(),
        &sandbox,
        std::slice::from_ref(&host),
        "",
        &format!(
            "[registry]\nserver = \"{registry}\"\nusername = \"{username}\"\n\
             password = \"REGISTRY_PASSWORD\"\n\n[proxy]\nimage = \"{image}\"\n"
        ),
    );
    let hoist = |args: &[&str]| context.hoist_in(dir.path(), args);
    let details = || {
        let output = hoist(&["proxy", "details", "--json"]);
        assert_success(&output, "hoist proxy details --json");
        let json: Value = serde_json::from_str(&text(&output).0).expect("details --json is JSON");
        json["hosts"][0].clone()
    };

    // Nothing yet: details says so, exits 1 and hints at boot.
    let output = hoist(&["proxy", "details"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&host) && stdout.contains("missing"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("error: hoist-proxy is missing on `{host}`"))
            && stderr.contains("hint: start it with `hoist proxy boot`"),
        "{stderr}"
    );

    // Boot creates it from the configured image (pulled with the registry password).
    let output = hoist(&["proxy", "boot"]);
    assert_success(&output, "hoist proxy boot");
    let stderr = text(&output).1;
    assert!(
        stderr.contains(&format!("hoist-proxy created from {image}")),
        "{stderr}"
    );
    let booted = details();
    assert_eq!(booted["state"], "running", "{booted}");
    assert_eq!(booted["image"], image.as_str(), "{booted}");
    let first_id = booted["id"].as_str().expect("container id").to_string();
    let output = hoist(&["proxy", "details"]);
    assert_success(&output, "hoist proxy details");
    let stdout = text(&output).0;
    assert!(
        stdout.contains("running") && stdout.contains(&image) && stdout.contains(&first_id),
        "{stdout}"
    );

    // A second boot finds it running and changes nothing.
    let output = hoist(&["proxy", "boot"]);
    assert_success(&output, "second hoist proxy boot");
    assert!(
        text(&output).1.contains("hoist-proxy already running"),
        "{}",
        text(&output).1
    );
    assert_eq!(details()["id"], first_id.as_str());

    // A route, as a deploy would leave it (forced: its target need not exist).
    let output = sandbox.ssh(
        0,
        "docker exec hoist-proxy hoist-proxy deploy probe-web --target=probe-web:3000 --force",
    );
    assert_success(&output, "hoist-proxy deploy on the server");
    let routed = |proxy: &Value| {
        proxy["services"]
            .as_array()
            .is_some_and(|services| services.iter().any(|s| s["name"] == "probe-web"))
    };
    assert!(routed(&details()), "{}", details());
    let output = hoist(&["proxy", "details"]);
    assert!(
        text(&output).0.contains("probe-web:3000"),
        "{}",
        text(&output).0
    );

    // Reboot: a new container, the route kept in the volume, the hooks around it.
    let output = hoist(&["proxy", "reboot"]);
    assert_success(&output, "hoist proxy reboot");
    let stderr = text(&output).1;
    assert!(
        stderr.contains(&format!("hoist-proxy {first_id} handed over to "))
            && stderr.contains("no request refused"),
        "{stderr}"
    );
    let rebooted = details();
    assert_eq!(rebooted["state"], "running", "{rebooted}");
    assert_ne!(rebooted["id"], first_id.as_str(), "{rebooted}");
    assert!(routed(&rebooted), "the route was lost: {rebooted}");
    let hooks = std::fs::read_to_string(&markers).expect("the hooks ran");
    assert_eq!(
        hooks,
        format!("pre-proxy-reboot proxy reboot {host}\npost-proxy-reboot proxy reboot {host}\n")
    );
    // `-H` runs no hook.
    assert_success(&hoist(&["proxy", "reboot", "-H"]), "hoist proxy reboot -H");
    assert_eq!(
        std::fs::read_to_string(&markers).expect("markers"),
        hooks,
        "a hook ran under -H"
    );
    let rebooted = details();
    let output = hoist(&["lock", "status"]);
    assert!(
        text(&output).0.starts_with("Unlocked"),
        "{:?}",
        text(&output)
    );

    // Stop: nothing listens on port 80 any more; start: the same container serves its routes.
    let output = hoist(&["proxy", "stop"]);
    assert_success(&output, "hoist proxy stop");
    let stopped = hoist(&["proxy", "details", "--json"]);
    assert_eq!(
        stopped.status.code(),
        Some(1),
        "details fails on a stopped proxy"
    );
    let json: Value = serde_json::from_str(&text(&stopped).0).expect("details --json is JSON");
    assert_eq!(json["hosts"][0]["state"], "exited", "{json}");
    let refused = std::net::TcpStream::connect(format!("{host}:80"));
    assert!(refused.is_err(), "port 80 still answers after proxy stop");
    let output = hoist(&["proxy", "start"]);
    assert_success(&output, "hoist proxy start");
    let started = details();
    assert_eq!(started["state"], "running", "{started}");
    assert_eq!(started["id"], rebooted["id"], "{started}");
    assert!(routed(&started), "the route was lost: {started}");

    // Logs: the new proxy's start.
    let output = hoist(&["proxy", "logs"]);
    assert_success(&output, "hoist proxy logs");
    let (stdout, stderr) = text(&output);
    assert!(
        stdout.contains("Server started") || stderr.contains("Server started"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // `-f`: request lines as they are logged.
    let followed = support::follow_until(
        context.hoist_command(dir.path(), &["proxy", "logs", "-f", "-n", "0"]),
        Duration::from_secs(15),
        || drop(support::http_get(&format!("{host}:80"), "/followed-path")),
        "/followed-path",
    );
    assert!(
        followed,
        "proxy logs -f shows a request logged after it started"
    );

    // Remove: refused while another app's service routes through the proxy, and nothing goes;
    // with --force, its containers and its state volume go, and the lock is free again.
    let output = hoist(&["proxy", "remove"]);
    let stderr = text(&output).1;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("also routes probe-web") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(details()["state"], "running");
    let output = hoist(&["proxy", "remove", "--force"]);
    assert_success(&output, "hoist proxy remove --force");
    let left = sandbox.ssh(
        0,
        "docker ps -a --format '{{.Names}}' | grep hoist-proxy; \
         docker volume ls -q | grep -x hoist-proxy; true",
    );
    assert_eq!(text(&left).0.trim(), "", "left behind");
    let output = hoist(&["lock", "status"]);
    assert!(
        text(&output).0.starts_with("Unlocked"),
        "{:?}",
        text(&output)
    );
    // Boot makes a fresh one: the old routes went with the volume.
    assert_success(&hoist(&["proxy", "boot"]), "hoist proxy boot after remove");
    let fresh = details();
    assert_eq!(fresh["state"], "running", "{fresh}");
    assert!(!routed(&fresh), "{fresh}");
}
