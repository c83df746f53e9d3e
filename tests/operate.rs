//! The commands of the day after, against two sandbox servers running the test app behind
//! hoist-proxy: `hoist logs` (merged, `--grep`, `--since`, `-f` across a deploy), `hoist app
//! maintenance` / `live` under load, `hoist exec` (one-off with the role's secrets, `--reuse`,
//! `--primary`, the command's exit status, `-i` on a terminal and from a pipe), `hoist audit`
//! merging both hosts' logs, `app stop|start|details`, the release command, `prune`, `app
//! remove` and `remove`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::load::Load;
use support::pty::Pty;
use support::sandbox::{
    Sandbox, assert_success, git, init_repository, testapp_dir, text, write_testapp_config,
};
use support::{TestContext, eventually, http_get};

/// A secret only the app's environment may hold.
const SECRET: &str = "s3cret-value-4242";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_maintenance_exec_and_audit_on_two_hosts() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "operate", 2);
    let docker = support::docker().await;
    let (_, password) = sandbox.registry_credentials();
    let proxy_image = sandbox.push_proxy_image(&docker, "operate").await;
    let dir = testapp_dir(&format!(
        "REGISTRY_PASSWORD={password}\nAPP_SECRET={SECRET}\n"
    ));
    let hosts = [sandbox.address(0), sandbox.address(1)];
    // The app's own maintenance page (`error_pages_path`), with the message in it.
    std::fs::create_dir_all(dir.path().join("pages")).expect("mkdir pages");
    std::fs::write(
        dir.path().join("pages/503.html"),
        "<p>Our own page: {{ .Message }}</p>",
    )
    .expect("write 503.html");
    let config = |version: &str| {
        write_testapp_config(
            dir.path(),
            &sandbox,
            &hosts,
            &proxy_image,
            version,
            "\n[env]\nsecret = [\"APP_SECRET\"]\n",
        );
        // The second host tagged `canary`: its containers get `[env.tags.canary]` too.
        let path = dir.path().join("deploy.toml");
        let toml = std::fs::read_to_string(&path)
            .expect("read deploy.toml")
            .replacen(
                "[servers.web]\n",
                &format!(
                    "[servers.web]\ntags = {{ \"{}\" = [\"canary\"] }}\n",
                    hosts[1]
                ),
                1,
            );
        std::fs::write(
            &path,
            format!(
                "error_pages_path = \"pages\"\n{toml}\n[env.tags.canary]\nclear = {{ CANARY = \"yes\" }}\n"
            ),
        )
        .expect("write deploy.toml");
    };
    config("v1");
    std::fs::write(dir.path().join(".gitignore"), ".hoist/secrets*\n").expect("gitignore");
    init_repository(dir.path());
    let commit = |message: &str| {
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", message]);
    };
    commit("v1");
    let hoist = |args: &[&str]| context.hoist_in(dir.path(), args);
    assert_success(&hoist(&["deploy"]), "hoist deploy v1");
    let address = |index: usize| format!("{}:80", hosts[index]);
    let say = |index: usize, text: &str| {
        let (status, _) =
            http_get(&address(index), &format!("/say?text={text}")).expect("GET /say");
        assert_eq!(status, 200);
    };

    // `hoist logs`: both hosts' lines, each with its host.
    say(0, "early-a");
    say(1, "early-b");
    let logs = |args: &[&str]| {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        let output = hoist(&all);
        assert_success(&output, "hoist logs");
        text(&output).0
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            let out = logs(&["-n", "20"]);
            out.lines()
                .any(|l| l.starts_with(&format!("[{}] ", hosts[0])) && l.contains("said early-a"))
                && out.lines().any(|l| {
                    l.starts_with(&format!("[{}] ", hosts[1])) && l.contains("said early-b")
                })
        }),
        "both hosts' lines: {}",
        logs(&["-n", "20"])
    );
    let grepped = logs(&["--grep", "early-b"]);
    assert!(grepped.contains("said early-b"), "{grepped}");
    assert!(!grepped.contains("early-a"), "{grepped}");
    // `--since` a time after the early lines: only what came later.
    let after =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(1))
            .to_string();
    let mut round = 0;
    assert!(
        eventually(Duration::from_secs(15), || {
            round += 1;
            say(0, &format!("late-{round}"));
            let out = logs(&["--since", &after]);
            out.contains("said late-") && !out.contains("early-")
        }),
        "--since {after}: {}",
        logs(&["--since", &after])
    );
    let bad = hoist(&["logs", "--grep", "("]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).1.contains("not a regular expression"),
        "{}",
        text(&bad).1
    );

    // `hoist logs -f` keeps going across a deploy: v2's lines arrive from both hosts.
    let mut follower = context
        .hoist_command(dir.path(), &["logs", "-f", "-n", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hoist logs -f");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let seen = Arc::clone(&seen);
        let stdout = follower.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                seen.lock().unwrap().push(line);
            }
        });
    }
    let has = |needle: &str, host: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .any(|line| line.starts_with(&format!("[{host}] ")) && line.contains(needle))
    };
    assert!(
        eventually(Duration::from_secs(15), || {
            say(0, "followed-a");
            say(1, "followed-b");
            has("said followed-a (v1)", &hosts[0]) && has("said followed-b (v1)", &hosts[1])
        }),
        "-f shows new lines of both hosts: {:?}",
        seen.lock().unwrap()
    );
    config("v2");
    commit("v2");
    assert_success(&hoist(&["deploy"]), "hoist deploy v2");
    assert!(
        eventually(Duration::from_secs(15), || {
            say(0, "after-a");
            say(1, "after-b");
            has("said after-a (v2)", &hosts[0]) && has("said after-b (v2)", &hosts[1])
        }),
        "-f follows the new version's containers: {:?}",
        seen.lock().unwrap()
    );
    let _ = follower.kill();
    let _ = follower.wait();

    // `hoist exec`: a one-off container of the live version on each host, with the secret.
    let output = hoist(&["-vv", "exec", "-e", "EXTRA=1", "--", "env"]);
    assert_success(&output, "hoist exec -- env");
    let (stdout, stderr) = text(&output);
    for host in &hosts {
        for line in [
            format!("[{host}] APP_SECRET={SECRET}"),
            format!("[{host}] HOIST_HOST={host}"),
            format!("[{host}] EXTRA=1"),
            format!("[{host}] APP_VERSION=v2"),
        ] {
            assert!(stdout.lines().any(|l| l == line), "{line} in:\n{stdout}");
        }
    }
    // `[env.tags.canary]` on the tagged host only.
    assert!(
        stdout
            .lines()
            .any(|l| l == format!("[{}] CANARY=yes", hosts[1])),
        "{stdout}"
    );
    assert!(
        !stdout
            .lines()
            .any(|l| l == format!("[{}] CANARY=yes", hosts[0])),
        "{stdout}"
    );
    assert!(
        !stderr.contains(SECRET),
        "the secret reached hoist's log:\n{stderr}"
    );
    for index in 0..2 {
        let left = sandbox.ssh(
            index,
            "docker ps -a --filter label=dev.hoist.exec --format '{{.Names}}'; \
             docker ps -a --format '{{.Command}}' | grep -c s3cret || true",
        );
        assert_eq!(
            text(&left).0.trim(),
            "0",
            "no one-off container left, no secret in a command"
        );
    }
    // `--reuse`: in the live container; `--primary`: one host; the command's exit status.
    let output = hoist(&[
        "exec",
        "--reuse",
        "--primary",
        "--",
        "/hoist-testapp",
        "env",
    ]);
    assert_success(&output, "hoist exec --reuse");
    let stdout = text(&output).0;
    assert!(stdout.lines().any(|l| l == "APP_VERSION=v2"), "{stdout}");
    assert!(!stdout.contains('['), "one host, no prefix: {stdout}");
    assert!(
        !stdout.contains("CANARY"),
        "the primary host is not tagged: {stdout}"
    );
    // The tagged host's live container, as the deploy created it, has its tag's env.
    let output = hoist(&[
        "exec",
        "--reuse",
        "--hosts",
        &hosts[1],
        "--",
        "/hoist-testapp",
        "env",
    ]);
    assert_success(&output, "hoist exec --reuse on the tagged host");
    assert!(
        text(&output).0.lines().any(|l| l == "CANARY=yes"),
        "{}",
        text(&output).0
    );
    let output = hoist(&["exec", "--primary", "--", "exit", "3"]);
    assert_eq!(output.status.code(), Some(3), "{:?}", text(&output));
    assert!(
        text(&output).1.contains("exited with status 3"),
        "{}",
        text(&output).1
    );

    // `hoist exec -i` on a terminal: a one-off container's TTY, its size following the local
    // terminal's, Ctrl-C reaching the command there, and the command's exit status.
    let mut pty = Pty::spawn(
        context.hoist_command(dir.path(), &["exec", "-i", "--", "shell"]),
        30,
        100,
    );
    let wait = Duration::from_secs(60);
    pty.wait_for("testapp$ ", wait);
    pty.type_keys("tty\r");
    pty.wait_for("tty: yes", wait);
    pty.type_keys("size\r");
    pty.wait_for("size: 30x100", wait);
    pty.resize(40, 120);
    let resized = eventually(Duration::from_secs(20), || {
        pty.type_keys("size\r");
        let shown = pty.wait_for("testapp$ ", wait);
        shown.ends_with("size: 40x120\r\ntestapp$ ")
    });
    assert!(
        resized,
        "the remote TTY follows the resize:\n{}",
        pty.screen()
    );
    pty.type_keys("wait\r");
    pty.wait_for("waiting", wait);
    pty.type_keys("\u{3}");
    pty.wait_for("interrupted", wait);
    pty.type_keys("echo typed here\r");
    pty.wait_for("typed here\r\n", wait);
    pty.type_keys("exit 7\r");
    let (status, stderr, screen) = pty.wait(wait);
    assert_eq!(status.code(), Some(7), "{stderr}\n{screen}");
    assert!(!stderr.contains(SECRET), "{stderr}");
    // `-i --reuse` in the live container; stdin not a terminal: no TTY, input to its end.
    let mut piped = context.hoist_command(
        dir.path(),
        &["exec", "-i", "--reuse", "--", "/hoist-testapp", "shell"],
    );
    let mut child = piped
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hoist exec -i --reuse");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        b"tty\necho from a pipe\nexit 4\n",
    )
    .expect("write the script");
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("hoist exec -i --reuse");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("tty: no") && stdout.contains("from a pipe"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("on {} only", hosts[0])),
        "one host of two: {stderr}"
    );
    for index in 0..2 {
        let left = sandbox.ssh(
            index,
            "docker ps -a --filter label=dev.hoist.exec --format '{{.Names}}' | wc -l",
        );
        assert_eq!(text(&left).0.trim(), "0", "no one-off container left");
    }

    // `hoist app maintenance`: every host answers 503 with the message; `live` brings it back.
    let output = hoist(&["app", "maintenance", "--message", "Back at five"]);
    assert_success(&output, "hoist app maintenance");
    for index in 0..2 {
        let (status, body) = http_get(&address(index), "/version").expect("GET in maintenance");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("<p>Our own page: Back at five</p>"), "{body}");
    }
    // A deploy meanwhile goes live behind the maintenance page, and says so.
    let output = hoist(&["deploy"]);
    assert_success(&output, "hoist deploy in maintenance");
    let stderr = text(&output).1;
    assert!(
        stderr.contains("`hello-web` is stopped on") && stderr.contains("until `hoist app live`"),
        "{stderr}"
    );
    assert_eq!(http_get(&address(0), "/version").expect("GET").0, 503);
    let output = hoist(&["app", "live"]);
    assert_success(&output, "hoist app live");
    let loads: Vec<Load> = (0..2).map(|index| Load::start(address(index), 2)).collect();
    for _ in 0..30 {
        for index in 0..2 {
            let (status, body) = http_get(&address(index), "/version").expect("GET after live");
            assert_eq!((status, body.trim()), (200, "v2"));
        }
    }
    for load in loads {
        load.finish_clean("traffic after app live", 20);
    }

    // `hoist audit`: both hosts' lines, merged by time, the latest last.
    let output = hoist(&["audit"]);
    assert_success(&output, "hoist audit");
    let audit = text(&output).0;
    for host in &hosts {
        assert!(
            audit.lines().any(|l| l.contains(host.as_str())
                && l.contains("Maintenance mode for hello-web: Back at five")),
            "{audit}"
        );
    }
    assert!(
        audit
            .lines()
            .last()
            .is_some_and(|l| l.contains("Live again: hello-web")),
        "{audit}"
    );
    let output = hoist(&["audit", "-n", "1"]);
    assert_eq!(text(&output).0.lines().count(), 1, "{}", text(&output).0);

    // `hoist app details`, `stop`, `start`: the live containers stop on both hosts (the proxy
    // answers 503 meanwhile, not a broken connection) and come back serving.
    let app_details = || {
        let output = hoist(&["app", "details"]);
        assert_success(&output, "hoist app details");
        text(&output).0
    };
    let live_row = |table: &str, host: &str| {
        table
            .lines()
            .find(|l| l.starts_with(host) && l.trim_end().ends_with("yes"))
            .map(str::to_string)
    };
    let table = app_details();
    for host in &hosts {
        let row = live_row(&table, host).unwrap_or_else(|| panic!("{host} live in:\n{table}"));
        assert!(row.contains("running"), "{table}");
    }
    assert_success(&hoist(&["app", "stop"]), "hoist app stop");
    for index in 0..2 {
        let (status, body) = http_get(&address(index), "/version").expect("GET while stopped");
        assert_eq!(status, 503, "{body}");
    }
    let table = app_details();
    assert!(!table.contains("running"), "{table}");
    for host in &hosts {
        assert!(live_row(&table, host).is_some(), "{table}");
    }
    assert_success(&hoist(&["app", "start"]), "hoist app start");
    let loads: Vec<Load> = (0..2).map(|index| Load::start(address(index), 2)).collect();
    for _ in 0..30 {
        for index in 0..2 {
            let (status, body) = http_get(&address(index), "/version").expect("GET after start");
            assert_eq!((status, body.trim()), (200, "v2"));
        }
    }
    for load in loads {
        load.finish_clean("traffic after app start", 20);
    }
    let audit = text(&hoist(&["audit"])).0;
    for host in &hosts {
        for what in ["Stopped app: hello-web-", "Started app: hello-web-"] {
            assert!(
                audit
                    .lines()
                    .any(|l| l.contains(host.as_str()) && l.contains(what)),
                "{what} on {host}: {audit}"
            );
        }
    }

    // A failing release command stops the deploy before any switch, its output shown.
    let release = |command: &str, version: &str| {
        config(version);
        let path = dir.path().join("deploy.toml");
        let mut toml = std::fs::read_to_string(&path).expect("read deploy.toml");
        toml.push_str(&format!("\n[deploy]\nrelease_command = \"{command}\"\n"));
        std::fs::write(&path, toml).expect("write deploy.toml");
        commit(version);
    };
    release("exit 4 migration broke", "v3");
    let output = hoist(&["deploy"]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("release] migration broke"),
        "its output: {stderr}"
    );
    assert!(stderr.contains("exited with status 4"), "{stderr}");
    assert!(
        stderr.contains("Nothing was switched on any host"),
        "{stderr}"
    );
    for index in 0..2 {
        let (_, body) = http_get(&address(index), "/version").expect("GET");
        assert_eq!(body.trim(), "v2", "v2 keeps serving");
    }
    // A passing one runs once, with the new version and the role's secrets, then v4 goes live.
    release("env", "v4");
    let output = hoist(&["deploy"]);
    let (_, stderr) = text(&output);
    assert_success(&output, "hoist deploy with a release command");
    let ran: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("release] APP_VERSION="))
        .collect();
    assert_eq!(
        ran,
        [format!("[{} release] APP_VERSION=v4", hosts[0])],
        "once, on the primary host: {stderr}"
    );
    assert!(
        stderr.contains(&format!("release] APP_SECRET={SECRET}")),
        "{stderr}"
    );
    for index in 0..2 {
        let (_, body) = http_get(&address(index), "/version").expect("GET");
        assert_eq!(body.trim(), "v4");
    }

    // `hoist prune`: with retain_containers lowered to 1, each host keeps the live v4 and one
    // stopped version (v2), and says so in its audit log.
    let containers = |index: usize| {
        let output = sandbox.ssh(index, "docker ps -a --filter label=service=hello --filter label=role=web --format '{{.Names}}'");
        text(&output).0.lines().count()
    };
    assert_eq!(containers(0), 3, "v4 live, v2 and v1 stopped");
    let toml = std::fs::read_to_string(dir.path().join("deploy.toml")).expect("read");
    std::fs::write(
        dir.path().join("deploy.toml"),
        format!("retain_containers = 1\n{toml}"),
    )
    .expect("write");
    assert_success(&hoist(&["prune"]), "hoist prune");
    for index in 0..2 {
        assert_eq!(
            containers(index),
            2,
            "host {index} keeps the live one and one stopped"
        );
        let (_, body) = http_get(&address(index), "/version").expect("GET");
        assert_eq!(body.trim(), "v4", "the live version is untouched");
    }
    let (audit, _) = text(&hoist(&["audit"]));
    assert!(audit.contains("Pruned"), "{audit}");

    // `hoist remove`: an accessory with a named volume on the second host, then everything goes.
    sandbox.push_testapp_versions(&docker, &["cache"]).await;
    let path = dir.path().join("deploy.toml");
    let mut toml = std::fs::read_to_string(&path).expect("read deploy.toml");
    toml.push_str(&format!(
        "\n[accessories.cache]\nimage = \"{}/hello:cache\"\nhosts = [\"{}\"]\n\
         volumes = [\"operate-cache:/data\"]\n",
        sandbox.registry(),
        hosts[1]
    ));
    std::fs::write(&path, toml).expect("write deploy.toml");
    assert_success(
        &hoist(&["accessory", "boot", "cache"]),
        "accessory boot cache",
    );
    let what_is_left = |index: usize| {
        let output = sandbox.ssh(
            index,
            "docker ps -aq; docker volume ls -q; docker network ls -q --filter name=^hoist$; \
             docker images -q; ls -A .hoist 2>/dev/null; true",
        );
        text(&output).0.trim().to_string()
    };
    assert!(
        what_is_left(1).contains("operate-cache"),
        "{}",
        what_is_left(1)
    );
    // `hoist app remove`: confirmed, every version goes with its route; the accessory and the
    // proxy stay, and a deploy starts afresh.
    let output = hoist(&["app", "remove"]);
    assert_eq!(output.status.code(), Some(1), "{:?}", text(&output));
    assert!(text(&output).1.contains("--yes"), "{}", text(&output).1);
    assert_eq!(containers(0), 2, "nothing went unconfirmed");
    assert_success(
        &hoist(&["app", "remove", "--yes"]),
        "hoist app remove --yes",
    );
    for index in 0..2 {
        assert_eq!(containers(index), 0, "no version left on host {index}");
        let (status, _) = http_get(&address(index), "/version").expect("GET after app remove");
        assert_eq!(status, 404, "no route left on host {index}");
    }
    let cache = sandbox.ssh(1, "docker ps -q --filter name=^hello-cache$");
    assert!(!text(&cache).0.trim().is_empty(), "the accessory stays");
    commit("v4 with the cache");
    assert_success(&hoist(&["deploy"]), "hoist deploy after app remove");
    for index in 0..2 {
        let (_, body) = http_get(&address(index), "/version").expect("GET");
        assert_eq!(body.trim(), "v4");
    }

    // Without a terminal to confirm on, --yes is needed, and nothing goes.
    let output = hoist(&["remove"]);
    assert_eq!(output.status.code(), Some(1), "{:?}", text(&output));
    assert!(text(&output).1.contains("--yes"), "{}", text(&output).1);
    assert_eq!(http_get(&address(0), "/version").expect("GET").0, 200);
    assert_success(&hoist(&["remove", "--yes"]), "hoist remove --yes");
    for index in 0..2 {
        assert_eq!(what_is_left(index), "", "left on host {index}");
    }
    let output = hoist(&["lock", "status"]);
    assert!(
        text(&output).0.starts_with("Unlocked"),
        "{:?}",
        text(&output)
    );
}
