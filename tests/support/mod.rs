//! Shared harness for hoist's end-to-end tests: the real `hoist` binary run in a private state
//! directory, sandboxes torn down when a test ends (even on panic), the local Docker engine, the
//! test app image, and plain SSH/HTTP clients. Prerequisites that are missing fail the test with
//! what to do; nothing is skipped.

#![allow(dead_code)]

pub mod load;
pub mod pebble;
pub mod pty;
pub mod s3;
pub mod sandbox;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bollard::Docker;
use futures_util::StreamExt;
use serde_json::Value;

/// A private directory for sandbox state, removed at the end of the test.
pub struct TestContext {
    pub home: tempfile::TempDir,
}

impl TestContext {
    pub fn new() -> Self {
        Self {
            home: tempfile::Builder::new()
                .prefix("hoist-test-")
                .tempdir()
                .expect("create a temp dir"),
        }
    }

    /// `hoist ARGS` with this context's state directory.
    pub fn hoist(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hoist"))
            .args(args)
            .env("HOIST_SANDBOX_HOME", self.home.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run hoist")
    }

    /// `hoist ARGS` run in the app directory `dir` (where deploy.toml is), without an ssh-agent so
    /// only the configured keys are offered.
    pub fn hoist_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.hoist_command(dir, args).output().expect("run hoist")
    }

    /// The command [`Self::hoist_in`] runs, to spawn it.
    pub fn hoist_command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hoist"));
        command
            .args(args)
            .current_dir(dir)
            .env("HOIST_SANDBOX_HOME", self.home.path())
            .env("NO_COLOR", "1")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        command
    }

    /// `hoist ARGS`, asserting success; returns stdout.
    pub fn hoist_ok(&self, args: &[&str]) -> String {
        let output = self.hoist(args);
        assert!(
            output.status.success(),
            "`hoist {}` failed with {}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Start a sandbox that is torn down when the guard drops.
    pub fn sandbox_up(&self, name: &str, extra: &[&str]) -> (SandboxGuard<'_>, Output) {
        let guard = SandboxGuard {
            context: self,
            name: name.to_string(),
        };
        let mut args = vec!["sandbox", "up", "--name", name];
        args.extend_from_slice(extra);
        let output = self.hoist(&args);
        assert!(
            output.status.success(),
            "`hoist {}` failed with {}\nstderr:\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        (guard, output)
    }

    /// `hoist sandbox list --json --name NAME`, the sandbox object.
    pub fn sandbox_json(&self, name: &str) -> Value {
        let stdout = self.hoist_ok(&["sandbox", "list", "--json", "--name", name]);
        let mut value: Value = serde_json::from_str(&stdout).expect("list --json is JSON");
        value["sandboxes"][0].take()
    }
}

pub struct SandboxGuard<'a> {
    context: &'a TestContext,
    pub name: String,
}

impl Drop for SandboxGuard<'_> {
    fn drop(&mut self) {
        let output = self
            .context
            .hoist(&["sandbox", "down", "--name", &self.name]);
        if !output.status.success() {
            eprintln!(
                "cleanup of sandbox {} failed: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// A sandbox name unique to this test process.
pub fn unique_name(prefix: &str) -> String {
    format!("t{}-{prefix}", std::process::id() % 100_000)
}

/// The local engine. Its absence fails the test: `scripts/test` starts one.
pub async fn docker() -> Docker {
    let docker = Docker::connect_with_defaults().expect("docker client");
    docker
        .negotiate_version()
        .await
        .expect("a Docker engine must answer (scripts/test starts dockerd)")
}

/// A static binary built by `scripts/build-static` (`hoist-testapp`, `hoist-proxy`).
pub fn static_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-gnu/release")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `scripts/build-static {name}` (scripts/test does)",
        path.display()
    );
    path
}

/// A build context holding `files` as (path in context, contents, mode).
pub fn tar_context(files: &[(&str, Vec<u8>, u32)]) -> Vec<u8> {
    let mut context = tar::Builder::new(Vec::new());
    for (name, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        context
            .append_data(&mut header, name, data.as_slice())
            .expect("tar");
    }
    context.into_inner().expect("tar")
}

/// The local name every test image is built under first (see [`build_image`]); scripts/test
/// removes these images, with every tag given to them, when the suite ends.
pub const BUILD_CACHE: &str = "hoist-test-cache";

/// Build an image through the Engine API (classic builder: nothing is pulled) and name it `tag`.
///
/// The image is built once per content under `hoist-test-cache:<hash>`, a name no test removes,
/// then tagged: tests running side by side build identical images, and one test removing its
/// tag must not delete an image another test is still building on.
pub async fn build_image(
    docker: &Docker,
    context: Vec<u8>,
    tag: &str,
    target: Option<&str>,
    args: &HashMap<String, String>,
) {
    let built = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let mut sorted: Vec<_> = args.iter().collect();
        sorted.sort();
        (&context, target, sorted).hash(&mut hasher);
        format!("{BUILD_CACHE}:{:016x}", hasher.finish())
    };
    if docker.inspect_image(&built).await.is_err() {
        build_uncached(docker, context, &built, target, args).await;
    }
    tag_image(docker, &built, tag).await;
}

async fn build_uncached(
    docker: &Docker,
    context: Vec<u8>,
    tag: &str,
    target: Option<&str>,
    args: &HashMap<String, String>,
) {
    let mut options = bollard::query_parameters::BuildImageOptionsBuilder::new()
        .t(tag)
        .buildargs(args)
        .rm(true);
    if let Some(target) = target {
        options = options.target(target);
    }
    let mut stream = docker.build_image(
        options.build(),
        None,
        Some(bollard::body_full(context.into())),
    );
    while let Some(item) = stream.next().await {
        let info = item.unwrap_or_else(|err| panic!("building `{tag}` failed: {err}"));
        if let Some(detail) = info.error_detail {
            panic!("building `{tag}` failed: {detail:?}");
        }
    }
}

/// Build the hoist-proxy image from the root Dockerfile's offline `local` target as `tag`: the
/// context holds what `.dockerignore` lets through, the Dockerfile, `proxy/image/rootfs` (with its
/// symlinks, without the `.keep` placeholders) and the static binary.
pub async fn build_proxy_image(docker: &Docker, tag: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut context = tar::Builder::new(Vec::new());
    context.follow_symlinks(false);
    context.sparse(false);
    context
        .append_path_with_name(root.join("Dockerfile"), "Dockerfile")
        .expect("tar the Dockerfile");
    let rootfs = "proxy/image/rootfs";
    append_tree(&mut context, &root.join(rootfs), Path::new(rootfs));
    context
        .append_path_with_name(
            static_binary("hoist-proxy"),
            "target/x86_64-unknown-linux-gnu/release/hoist-proxy",
        )
        .expect("tar hoist-proxy");
    let context = context.into_inner().expect("tar");
    build_image(docker, context, tag, Some("local"), &HashMap::new()).await;
}

/// Build the hoist-backup image from backup/Dockerfile's offline `local` target as `tag`, from
/// the files that target packages (the rootfs, the static binary and the CA bundle
/// `scripts/build-static hoist-backup` leaves next to it).
pub async fn build_backup_image(docker: &Docker, tag: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let release = "target/x86_64-unknown-linux-gnu/release";
    let mut context = tar::Builder::new(Vec::new());
    context.follow_symlinks(false);
    context.sparse(false);
    context
        .append_path_with_name(root.join("backup/Dockerfile"), "Dockerfile")
        .expect("tar the Dockerfile");
    let rootfs = "backup/image/rootfs";
    append_tree(&mut context, &root.join(rootfs), Path::new(rootfs));
    context
        .append_path_with_name(
            static_binary("hoist-backup"),
            format!("{release}/hoist-backup"),
        )
        .expect("tar hoist-backup");
    context
        .append_path_with_name(
            root.join(release).join("ca-certificates.crt"),
            format!("{release}/ca-certificates.crt"),
        )
        .expect("tar the CA bundle (scripts/build-static hoist-backup copies it)");
    let context = context.into_inner().expect("tar");
    build_image(docker, context, tag, Some("local"), &HashMap::new()).await;
}

/// The real PostgreSQL 15 image (`scripts/lib/postgres-image` builds it once per machine from
/// Debian's packages); its local tag.
pub fn postgres_image() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(root.join("scripts/lib/postgres-image"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/lib/postgres-image");
    assert!(output.status.success(), "scripts/lib/postgres-image failed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Remove these image names from the local engine (the tags tests pushed), best effort.
pub async fn remove_images(docker: &Docker, images: &[&str]) {
    for image in images {
        let _ = docker
            .remove_image(
                image,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    }
}

/// Give the local image `source` the name `target` (`repo:tag`).
pub async fn tag_image(docker: &Docker, source: &str, target: &str) {
    let (repo, tag) = target.rsplit_once(':').expect("repo:tag");
    docker
        .tag_image(
            source,
            Some(
                bollard::query_parameters::TagImageOptionsBuilder::new()
                    .repo(repo)
                    .tag(tag)
                    .build(),
            ),
        )
        .await
        .unwrap_or_else(|err| panic!("tag {source} as {target}: {err}"));
}

/// `dir` into `context` as `name`, directories, files and symlinks as they are, less the `.keep`
/// files `.dockerignore` leaves out.
fn append_tree(context: &mut tar::Builder<Vec<u8>>, dir: &Path, name: &Path) {
    context
        .append_path_with_name(dir, name)
        .unwrap_or_else(|err| panic!("tar {}: {err}", dir.display()));
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry"))
        .collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let (path, entry_name) = (entry.path(), name.join(entry.file_name()));
        if entry.file_name() == ".keep" {
            continue;
        }
        if entry.file_type().expect("file type").is_dir() {
            append_tree(context, &path, &entry_name);
        } else {
            context
                .append_path_with_name(&path, &entry_name)
                .unwrap_or_else(|err| panic!("tar {}: {err}", path.display()));
        }
    }
}

/// Build the test app image as `tag`, answering `/version` with `version`; `broken` makes `/up`
/// fail.
pub async fn build_testapp_image(docker: &Docker, tag: &str, version: &str, broken: bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read(root.join("tests/testapp/Dockerfile")).expect("read Dockerfile");
    let binary = std::fs::read(static_binary("hoist-testapp")).expect("read test app binary");
    let context = tar_context(&[
        ("Dockerfile", dockerfile, 0o644),
        ("hoist-testapp", binary, 0o755),
    ]);
    let mut args = HashMap::from([("VERSION".to_string(), version.to_string())]);
    if broken {
        args.insert("BROKEN".to_string(), "1".to_string());
    }
    build_image(docker, context, tag, None, &args).await;
}

/// Push `repo:tag` with the given credentials; the error text on failure.
pub async fn push(
    docker: &Docker,
    repo: &str,
    tag: &str,
    server: &str,
    username: &str,
    password: &str,
) -> Result<(), String> {
    let credentials = bollard::auth::DockerCredentials {
        username: Some(username.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(server.to_string()),
        ..Default::default()
    };
    let options = bollard::query_parameters::PushImageOptionsBuilder::new()
        .tag(tag)
        .build();
    let mut stream = docker.push_image(repo, Some(options), Some(credentials));
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(detail) = info.error_detail {
                    return Err(format!("{detail:?}"));
                }
            }
            Err(err) => return Err(err.to_string()),
        }
    }
    Ok(())
}

/// Read `KEY=value` pairs (with or without `export`) from a credentials file.
pub fn read_env_file(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .expect("read credentials file")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let line = line.trim().trim_start_matches("export ");
            let (key, value) = line.split_once('=')?;
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}

/// Run `command` on a sandbox server with the system OpenSSH client, strict host key checking.
pub fn ssh(
    server: &Value,
    key: &Path,
    known_hosts: &Path,
    command: &str,
    stdin: Option<&str>,
) -> Output {
    let address = server["address"].as_str().expect("address");
    let user = server["ssh_user"].as_str().expect("ssh_user");
    let mut child = Command::new("ssh")
        .args(["-i", &key.display().to_string()])
        .args([
            "-o",
            &format!("UserKnownHostsFile={}", known_hosts.display()),
        ])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"])
        .arg(format!("{user}@{address}"))
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ssh (openssh-client)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write ssh stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait for ssh")
}

/// A plain HTTP/1.1 GET; returns (status, body).
pub fn http_get(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Poll `check` until it returns true or `timeout` passes.
/// Start `command` (a `logs -f`), and within `timeout` keep calling `trigger` until a line of
/// its stdout contains `wanted`; whether one did. The command is killed either way.
pub fn follow_until(
    mut command: Command,
    timeout: Duration,
    mut trigger: impl FnMut(),
    wanted: &str,
) -> bool {
    let mut follower = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the follower");
    let (lines, arrived) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let followed = eventually(timeout, || {
        trigger();
        std::iter::from_fn(|| arrived.recv_timeout(Duration::from_millis(500)).ok())
            .any(|line| line.contains(wanted))
    });
    let _ = follower.kill();
    let _ = follower.wait();
    followed
}

pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}
