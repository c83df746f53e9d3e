//! The CLI's reach into servers: `hoist details` over real SSH (russh) to sandbox servers and
//! their Docker engines through streamlocal channels; host key policies; login failures; a jump
//! host; accessories booted with secrets, their logs and exec streamed back.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::sandbox::{
    Sandbox, SshFiles, app_dir, assert_success, keygen, text, write_config, write_config_with,
};
use support::{TestContext, unique_name};

#[test]
fn details_shows_every_server_and_reports_a_stopped_one_unreachable_within_the_timeout() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "details", 3);
    let app = app_dir();
    let (one, two, three) = (sandbox.address(0), sandbox.address(1), sandbox.address(2));

    write_config(app.path(), &sandbox, &[one.clone(), two.clone()], "", "");
    let output = context.hoist_in(app.path(), &["details"]);
    assert_success(&output, "hoist details");
    let (stdout, _) = text(&output);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("HOST"), "{stdout}");
    for address in [&one, &two] {
        let row = lines
            .iter()
            .find(|line| line.starts_with(address.as_str()))
            .unwrap_or_else(|| panic!("no row for {address}:\n{stdout}"));
        assert!(row.contains(" ok "), "{row}");
        assert!(row.contains("20.10"), "Docker version missing: {row}");
        assert!(row.contains("absent"), "proxy state missing: {row}");
    }

    // --json carries the same.
    let output = context.hoist_in(app.path(), &["details", "--json"]);
    assert_success(&output, "hoist details --json");
    let json: Value = serde_json::from_str(&text(&output).0).expect("details --json is JSON");
    let hosts = json["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0]["host"], one.as_str());
    assert_eq!(hosts[0]["reachable"], true);
    assert!(
        hosts[1]["docker_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("20.10"))
    );

    // A stopped server: reported unreachable, exit 1, bounded by connect_timeout (3s).
    let stopped = sandbox.server(2)["container"].as_str().expect("container");
    let status = std::process::Command::new("docker")
        .args(["stop", "-t", "1", stopped])
        .output()
        .expect("docker stop");
    assert!(status.status.success());
    write_config(
        app.path(),
        &sandbox,
        &[one.clone(), two.clone(), three.clone()],
        "",
        "",
    );
    let started = Instant::now();
    let output = context.hoist_in(app.path(), &["details"]);
    let elapsed = started.elapsed();
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        elapsed < Duration::from_secs(12),
        "details took {elapsed:?} with a stopped server"
    );
    let row = stdout
        .lines()
        .find(|line| line.starts_with(three.as_str()))
        .unwrap_or_else(|| panic!("no row for the stopped server:\n{stdout}"));
    assert!(row.contains("unreachable"), "{row}");
    assert!(
        stdout
            .lines()
            .filter(|line| line.starts_with(one.as_str()) || line.starts_with(two.as_str()))
            .all(|line| line.contains(" ok ")),
        "the running servers are still shown:\n{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "error: Timed out after 3s connecting to `root@{three}`"
        )) || stderr.contains(&format!("error: Failed to connect to `root@{three}`")),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
}

#[test]
fn host_keys_are_checked_strictly_recorded_with_accept_new_and_a_changed_key_is_refused() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "hostkeys", 1);
    let app = app_dir();
    let host = sandbox.address(0);
    let known_hosts = app.path().join("known_hosts");

    // Unknown host, strict (the default): refused, the presented fingerprint shown.
    std::fs::write(&known_hosts, "").expect("empty known_hosts");
    write_config_with(
        app.path(),
        &sandbox,
        std::slice::from_ref(&host),
        SshFiles {
            key: &sandbox.key(),
            known_hosts: &known_hosts,
        },
        "",
        "",
    );
    let output = context.hoist_in(app.path(), &["details"]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: Host key of `root@{host}` is not in `{}`",
            known_hosts.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("ED25519 key SHA256:"), "{stderr}");
    assert!(
        stderr.contains("accept-new"),
        "the hint names the option: {stderr}"
    );

    // accept-new: connects and records the key.
    write_config_with(
        app.path(),
        &sandbox,
        std::slice::from_ref(&host),
        SshFiles {
            key: &sandbox.key(),
            known_hosts: &known_hosts,
        },
        "host_key_checking = \"accept-new\"",
        "",
    );
    let output = context.hoist_in(app.path(), &["details"]);
    assert_success(&output, "details with accept-new");
    let recorded = std::fs::read_to_string(&known_hosts).expect("read known_hosts");
    assert!(
        recorded.starts_with(&format!("{host} ssh-ed25519 ")),
        "recorded: {recorded}"
    );
    // The recorded key is the server's real one (the sandbox knows it).
    let real = sandbox.server(0)["known_hosts_line"]
        .as_str()
        .expect("line");
    assert_eq!(
        recorded.split_whitespace().nth(2),
        real.split_whitespace().nth(2)
    );
    // And strict mode now accepts it.
    write_config_with(
        app.path(),
        &sandbox,
        std::slice::from_ref(&host),
        SshFiles {
            key: &sandbox.key(),
            known_hosts: &known_hosts,
        },
        "",
        "",
    );
    assert_success(
        &context.hoist_in(app.path(), &["details"]),
        "details, strict, known",
    );

    // A changed key is refused even in accept-new mode, with both fingerprints.
    let impostor = keygen(&app.path().join("impostor"));
    std::fs::write(
        &known_hosts,
        format!("# a comment line\n{host} ssh-ed25519 {impostor}\n"),
    )
    .expect("write known_hosts");
    write_config_with(
        app.path(),
        &sandbox,
        std::slice::from_ref(&host),
        SshFiles {
            key: &sandbox.key(),
            known_hosts: &known_hosts,
        },
        "host_key_checking = \"accept-new\"",
        "",
    );
    let output = context.hoist_in(app.path(), &["details"]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: Host key of `root@{host}` has CHANGED: `{}` line 2 records ED25519 key SHA256:",
            known_hosts.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("ED25519 key SHA256:").count(),
        2,
        "both fingerprints: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&known_hosts).expect("read"),
        format!("# a comment line\n{host} ssh-ed25519 {impostor}\n"),
        "a changed key is never recorded"
    );
}

#[test]
fn a_key_the_server_does_not_accept_fails_login_naming_user_host_and_key() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "wrongkey", 1);
    let app = app_dir();
    let host = sandbox.address(0);
    let wrong_key = app.path().join("id_wrong");
    keygen(&wrong_key);
    let files = SshFiles {
        key: &wrong_key,
        known_hosts: &sandbox.known_hosts(),
    };
    write_config_with(
        app.path(),
        &sandbox,
        std::slice::from_ref(&host),
        files,
        "",
        "",
    );
    let output = context.hoist_in(app.path(), &["details"]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: Authentication failed for `root@{host}`: the server accepted none of key `{}` (ED25519 key SHA256:",
            wrong_key.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: check that the public key is in"),
        "{stderr}"
    );
}

#[test]
fn a_server_reachable_only_through_a_jump_host_is_reached_with_proxy_jump() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "jump", 2);
    let app = app_dir();
    let (bastion, inner) = (sandbox.address(0), sandbox.address(1));

    // server2 accepts SSH only from server1.
    let output = sandbox.ssh(
        1,
        &format!("iptables -I INPUT -p tcp --dport 22 --syn ! -s {bastion} -j REJECT --reject-with tcp-reset"),
    );
    assert_success(&output, "iptables on server2");

    write_config(app.path(), &sandbox, std::slice::from_ref(&inner), "", "");
    let output = context.hoist_in(app.path(), &["details"]);
    let (_, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "direct access must fail: {stderr}"
    );
    assert!(stderr.contains(&format!("`root@{inner}`")), "{stderr}");

    write_config(
        app.path(),
        &sandbox,
        std::slice::from_ref(&inner),
        &format!("proxy_jump = \"root@{bastion}\""),
        "",
    );
    let output = context.hoist_in(app.path(), &["details"]);
    assert_success(&output, "details through the jump host");
    let (stdout, _) = text(&output);
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with(inner.as_str()) && line.contains(" ok ")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_secret_reaches_the_accessory_environment_and_nothing_else() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "secrets", 1);
    let docker = support::docker().await;
    let registry = sandbox.registry();
    let (username, password) = sandbox.registry_credentials();

    // The accessory image: hoist-proxy, pushed to the sandbox registry.
    let image = format!("{registry}/proxy-accessory");
    let tag = unique_name("v");
    support::build_proxy_image(&docker, &format!("{image}:{tag}")).await;
    support::push(&docker, &image, &tag, &registry, &username, &password)
        .await
        .expect("push the accessory image");

    let app = app_dir();
    let secret_value = format!("s3cr3t-{}", std::process::id());
    let secret_file = app.path().join("token.txt");
    std::fs::write(&secret_file, &secret_value).expect("write token");
    std::fs::create_dir_all(app.path().join(".hoist")).expect("mkdir .hoist");
    std::fs::write(
        app.path().join(".hoist/secrets"),
        format!(
            "REGISTRY_PASSWORD={password}\nAPI_TOKEN=$(sleep 0.3; cat {})\n",
            secret_file.display()
        ),
    )
    .expect("write secrets");
    let host = sandbox.address(0);
    write_config(
        app.path(),
        &sandbox,
        std::slice::from_ref(&host),
        "",
        &format!(
            "[registry]\nserver = \"{registry}\"\nusername = \"{username}\"\npassword = \"REGISTRY_PASSWORD\"\n\
             \n[accessories.edge]\nimage = \"{image}:{tag}\"\nhost = \"{host}\"\n\
             cmd = \"hoist-proxy run --http-port 8080\"\nport = \"0.0.0.0:8080:8080\"\n\
             [accessories.edge.env]\nclear = {{ PLAIN = \"visible\" }}\nsecret = [\"API_TOKEN\"]\n"
        ),
    );

    // Record every argv on the server while the command runs.
    let output = sandbox.ssh(
        0,
        "nohup sh -c 'while :; do for f in /proc/[0-9]*/cmdline; do tr \"\\0\" \" \" < $f; echo; done >> /tmp/argv.log 2>/dev/null; sleep 0.02; done' >/dev/null 2>&1 & echo started",
    );
    assert_success(&output, "start the argv recorder");

    // And every argv here.
    let stop = Arc::new(AtomicBool::new(false));
    let local_argv = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = String::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(entries) = std::fs::read_dir("/proc") {
                    for entry in entries.flatten() {
                        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
                            seen.push_str(&String::from_utf8_lossy(&bytes).replace('\0', " "));
                            seen.push('\n');
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            seen
        })
    };
    let boot = context.hoist_in(app.path(), &["accessory", "boot", "edge", "-vv"]);
    stop.store(true, Ordering::Relaxed);
    let local_argv = local_argv.join().expect("argv thread");
    let _ = sandbox.ssh(0, "pkill -f argv.log; true");
    assert_success(&boot, "hoist accessory boot edge");
    let (boot_stdout, boot_stderr) = text(&boot);

    // The value is in the container's environment, where it belongs.
    let inspect = sandbox.ssh(0, "docker inspect hello-edge");
    assert_success(&inspect, "docker inspect on the server");
    let inspect: Value = serde_json::from_slice(&inspect.stdout).expect("inspect JSON");
    let env: Vec<String> = inspect[0]["Config"]["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert!(
        env.contains(&format!("API_TOKEN={secret_value}")),
        "{env:?}"
    );
    assert!(env.contains(&"PLAIN=visible".to_string()), "{env:?}");
    let labels = inspect[0]["Config"]["Labels"].to_string();
    assert!(labels.contains("\"accessory\":\"edge\""), "{labels}");
    assert!(
        !labels.contains(&secret_value),
        "secret in labels: {labels}"
    );

    // ...and nowhere else.
    assert!(
        local_argv.contains("sleep 0.3"),
        "the recorder saw the secret command run"
    );
    assert!(
        !local_argv.contains(&secret_value),
        "secret in a local argv"
    );
    let remote_argv = sandbox.ssh(0, "cat /tmp/argv.log");
    let remote_argv = String::from_utf8_lossy(&remote_argv.stdout);
    assert!(remote_argv.contains("dockerd"), "the server recorder ran");
    assert!(
        !remote_argv.contains(&secret_value),
        "secret in a server argv"
    );
    assert!(!boot_stdout.contains(&secret_value) && !boot_stderr.contains(&secret_value));
    assert!(
        !boot_stderr.contains(&password),
        "registry password in the logs"
    );
    let config = context.hoist_in(app.path(), &["config", "-vv"]);
    assert_success(&config, "hoist config");
    let (config_stdout, config_stderr) = text(&config);
    assert!(config_stdout.contains("API_TOKEN"));
    assert!(!config_stdout.contains(&secret_value) && !config_stderr.contains(&secret_value));

    // The accessory runs and serves; logs and exec stream back through the SSH connection.
    let answered = support::eventually(Duration::from_secs(10), || {
        support::http_get(&format!("{host}:8080"), "/")
            .map(|(status, _)| status == 404)
            .unwrap_or(false)
    });
    assert!(
        answered,
        "the accessory answers on the server's published port; logs: {:?}; containers: {}",
        text(&context.hoist_in(app.path(), &["accessory", "logs", "edge"])),
        String::from_utf8_lossy(&sandbox.ssh(0, "docker ps -a").stdout)
    );
    let logs = context.hoist_in(app.path(), &["accessory", "logs", "edge"]);
    assert_success(&logs, "accessory logs");
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("Server started")
            || String::from_utf8_lossy(&logs.stderr).contains("Server started"),
        "{:?}",
        text(&logs)
    );
    let exec = context.hoist_in(
        app.path(),
        &["accessory", "exec", "edge", "hoist-proxy", "list"],
    );
    assert_success(&exec, "accessory exec");
    assert!(text(&exec).0.contains("Service"), "{:?}", text(&exec));
    let failing = context.hoist_in(
        app.path(),
        &["accessory", "exec", "edge", "hoist-proxy", "nope"],
    );
    assert_eq!(failing.status.code(), Some(1), "a failing exec fails hoist");

    // stop, start, restart and details act on the container as booted.
    let accessory_details = || {
        let details = context.hoist_in(app.path(), &["accessory", "details", "edge"]);
        assert_success(&details, "accessory details");
        text(&details).0
    };
    let running = accessory_details();
    assert!(
        running.contains("hello-edge  running") && running.contains("->8080/tcp"),
        "{running}"
    );
    let started = |details: &str| {
        details
            .lines()
            .find(|line| line.contains("hello-edge"))
            .and_then(|line| line.split_whitespace().last())
            .map(str::to_string)
            .expect("a STARTED column")
    };
    let first_start = started(&running);
    let serves = || support::http_get(&format!("{host}:8080"), "/").is_ok();
    assert_success(
        &context.hoist_in(app.path(), &["accessory", "stop", "edge"]),
        "accessory stop",
    );
    assert!(accessory_details().contains("hello-edge  exited"));
    assert!(!serves(), "a stopped accessory does not answer");
    assert_success(
        &context.hoist_in(app.path(), &["accessory", "start", "edge"]),
        "accessory start",
    );
    assert!(support::eventually(Duration::from_secs(10), serves));
    assert_success(
        &context.hoist_in(app.path(), &["accessory", "restart", "edge"]),
        "accessory restart",
    );
    assert!(support::eventually(Duration::from_secs(10), serves));
    let restarted = accessory_details();
    assert!(restarted.contains("hello-edge  running"), "{restarted}");
    assert_ne!(started(&restarted), first_start, "restart started it anew");

    // logs -n N: the last N lines; logs -f: lines as they arrive.
    let last = context.hoist_in(app.path(), &["accessory", "logs", "edge", "-n", "1"]);
    assert_success(&last, "accessory logs -n 1");
    let (out, _) = text(&last);
    assert_eq!(out.lines().count(), 1, "{out}");
    let followed = support::follow_until(
        context.hoist_command(app.path(), &["accessory", "logs", "edge", "-f", "-n", "0"]),
        Duration::from_secs(15),
        || drop(support::http_get(&format!("{host}:8080"), "/followed-path")),
        "/followed-path",
    );
    assert!(followed, "logs -f shows a line logged after it started");

    // details lists it; a second boot is refused with a hint; remove removes it.
    let details = context.hoist_in(app.path(), &["details"]);
    assert_success(&details, "details");
    assert!(
        text(&details)
            .0
            .contains("hello-edge [running] accessory edge"),
        "{}",
        text(&details).0
    );
    let again = context.hoist_in(app.path(), &["accessory", "boot", "edge"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).1.contains("hoist accessory reboot edge"),
        "{}",
        text(&again).1
    );
    assert_success(
        &context.hoist_in(app.path(), &["accessory", "remove", "edge"]),
        "accessory remove",
    );
    let gone = sandbox.ssh(0, "docker ps -a --format '{{.Names}}'");
    assert!(!String::from_utf8_lossy(&gone.stdout).contains("hello-edge"));
}
