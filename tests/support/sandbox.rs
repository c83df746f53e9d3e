//! A sandbox as end-to-end tests use it: its servers, login key, known_hosts and registry, and
//! the deploy.toml that reaches them.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::{SandboxGuard, TestContext, read_env_file, ssh, unique_name};

/// A sandbox's servers and the paths a deploy.toml needs.
pub struct Sandbox {
    pub json: Value,
}

impl Sandbox {
    /// A sandbox of `servers` servers, removed when the guard drops.
    pub fn up<'a>(
        context: &'a TestContext,
        prefix: &str,
        servers: u8,
    ) -> (SandboxGuard<'a>, Sandbox) {
        let name = unique_name(prefix);
        let (guard, _) = context.sandbox_up(&name, &["--servers", &servers.to_string()]);
        let json = context.sandbox_json(&name);
        (guard, Sandbox { json })
    }

    pub fn server(&self, index: usize) -> &Value {
        &self.json["servers"][index]
    }
    pub fn address(&self, index: usize) -> String {
        self.server(index)["address"]
            .as_str()
            .expect("address")
            .to_string()
    }
    pub fn key(&self) -> PathBuf {
        PathBuf::from(self.server(0)["key_path"].as_str().expect("key_path"))
    }
    pub fn known_hosts(&self) -> PathBuf {
        PathBuf::from(self.json["known_hosts_path"].as_str().expect("known_hosts"))
    }
    pub fn registry(&self) -> String {
        self.json["registry"]["address"]
            .as_str()
            .expect("registry")
            .to_string()
    }
    pub fn registry_credentials(&self) -> (String, String) {
        let path = PathBuf::from(
            self.json["registry"]["credentials_path"]
                .as_str()
                .expect("credentials_path"),
        );
        let values = read_env_file(&path);
        (
            values["HOIST_SANDBOX_REGISTRY_USERNAME"].clone(),
            values["HOIST_SANDBOX_REGISTRY_PASSWORD"].clone(),
        )
    }
    /// Push `image` (`<registry>/<repo>:<tag>`, built in the local engine) to the sandbox
    /// registry with its credentials.
    pub async fn push(&self, docker: &bollard::Docker, image: &str) {
        let (repo, tag) = image.rsplit_once(':').expect("an image with a tag");
        let (username, password) = self.registry_credentials();
        super::push(docker, repo, tag, &self.registry(), &username, &password)
            .await
            .unwrap_or_else(|error| panic!("push {image} to the sandbox registry: {error}"));
    }

    /// hoist-proxy built from this repository, pushed to the sandbox registry as
    /// `<registry>/hoist-proxy:<unique tag>`; returns that image.
    pub async fn push_proxy_image(&self, docker: &bollard::Docker, prefix: &str) -> String {
        let image = format!("{}/hoist-proxy:{}", self.registry(), unique_name(prefix));
        super::build_proxy_image(docker, &image).await;
        self.push(docker, &image).await;
        image
    }

    /// The test app answering `/version` with each of `versions`, pushed as
    /// `<registry>/hello:<version>` and removed from the local engine again.
    pub async fn push_testapp_versions(&self, docker: &bollard::Docker, versions: &[&str]) {
        for version in versions {
            let image = format!("{}/hello:{version}", self.registry());
            super::build_testapp_image(docker, &image, version, false).await;
            self.push(docker, &image).await;
            let _ = docker
                .remove_image(
                    &image,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
    }

    /// hoist-backup built from this repository, pushed as `<registry>/hoist-backup:<unique tag>`.
    pub async fn push_backup_image(&self, docker: &bollard::Docker, prefix: &str) -> String {
        let image = format!("{}/hoist-backup:{}", self.registry(), unique_name(prefix));
        super::build_backup_image(docker, &image).await;
        self.push(docker, &image).await;
        image
    }

    /// The PostgreSQL test image, pushed as `<registry>/postgres:<its hash>`.
    pub async fn push_postgres_image(&self, docker: &bollard::Docker) -> String {
        let local = super::postgres_image();
        let (_, hash) = local.rsplit_once(':').expect("a tag");
        let image = format!("{}/postgres:{hash}", self.registry());
        super::tag_image(docker, &local, &image).await;
        self.push(docker, &image).await;
        image
    }

    /// Run a shell command on server `index` with the OpenSSH client.
    pub fn ssh(&self, index: usize, command: &str) -> Output {
        ssh(
            self.server(index),
            &self.key(),
            &self.known_hosts(),
            command,
            None,
        )
    }
}

/// A deploy.toml for `hosts` of the sandbox (its login key and known_hosts), with lines added to
/// `[ssh]` and extra TOML appended.
pub fn write_config(dir: &Path, sandbox: &Sandbox, hosts: &[String], ssh_extra: &str, extra: &str) {
    let login = SshFiles {
        key: &sandbox.key(),
        known_hosts: &sandbox.known_hosts(),
    };
    write_config_with(dir, sandbox, hosts, login, ssh_extra, extra);
}

/// The test app's deploy.toml for `hosts`: the sandbox registry (its password from the
/// `REGISTRY_PASSWORD` secret), `[builder] args` making the app answer `version`, `proxy_image`
/// on app port 3000 with fast health checks, then `extra` (still in the `[proxy]` table unless
/// it opens another).
pub fn write_testapp_config(
    dir: &Path,
    sandbox: &Sandbox,
    hosts: &[String],
    proxy_image: &str,
    version: &str,
    extra: &str,
) {
    let (username, _) = sandbox.registry_credentials();
    write_config(
        dir,
        sandbox,
        hosts,
        "",
        &format!(
            "[registry]\nserver = \"{registry}\"\nusername = \"{username}\"\n\
             password = \"REGISTRY_PASSWORD\"\n\
             \n[builder]\nargs = {{ VERSION = \"{version}\" }}\n\
             \n[proxy]\nimage = \"{proxy_image}\"\napp_port = 3000\n\
             healthcheck = {{ interval = \"200ms\", timeout = \"1s\" }}\n{extra}",
            registry = sandbox.registry(),
        ),
    );
}

/// The key file and known_hosts file a deploy.toml names.
pub struct SshFiles<'a> {
    pub key: &'a Path,
    pub known_hosts: &'a Path,
}

/// [`write_config`] with another key or known_hosts file.
pub fn write_config_with(
    dir: &Path,
    sandbox: &Sandbox,
    hosts: &[String],
    files: SshFiles<'_>,
    ssh_extra: &str,
    extra: &str,
) {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    let text = format!(
        "service = \"hello\"\n\
         image = \"{registry}/hello\"\n\
         \n\
         [servers.web]\n\
         hosts = [{hosts}]\n\
         \n\
         [ssh]\n\
         keys = [\"{key}\"]\n\
         known_hosts = \"{known_hosts}\"\n\
         connect_timeout = \"3s\"\n\
         {ssh_extra}\n\
         {extra}",
        registry = sandbox.registry(),
        hosts = hosts.join(", "),
        key = files.key.display(),
        known_hosts = files.known_hosts.display(),
    );
    std::fs::write(dir.join("deploy.toml"), text).expect("write deploy.toml");
}

/// A new ed25519 key pair at `path` (OpenSSH's ssh-keygen); returns the base64 public key.
pub fn keygen(path: &Path) -> String {
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    std::fs::read_to_string(path.with_extension("pub"))
        .expect("read the public key")
        .split_whitespace()
        .nth(1)
        .expect("key")
        .to_string()
}

/// An app directory holding the test app (its Dockerfile and static binary) and
/// `.hoist/secrets` with `secrets` (dotenv lines); not yet a git repository.
pub fn testapp_dir(secrets: &str) -> tempfile::TempDir {
    let dir = app_dir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        root.join("tests/testapp/Dockerfile"),
        dir.path().join("Dockerfile"),
    )
    .expect("copy the Dockerfile");
    std::fs::copy(
        super::static_binary("hoist-testapp"),
        dir.path().join("hoist-testapp"),
    )
    .expect("copy the test app");
    std::fs::create_dir_all(dir.path().join(".hoist")).expect("mkdir .hoist");
    std::fs::write(dir.path().join(".hoist/secrets"), secrets).expect("write secrets");
    dir
}

/// Runs `git ARGS` in `dir`, asserting it succeeded; returns its stdout, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert_success(&output, &format!("git {}", args.join(" ")));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Makes `dir` a git repository on `main` with a committer, as an app repository is.
pub fn init_repository(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.email", "deployer@example.com"]);
    git(dir, &["config", "user.name", "Deployer"]);
}

/// An executable hook `name` in `dir/hooks` running `script`.
pub fn write_hook(dir: &Path, name: &str, script: &str) {
    let hooks = dir.join("hooks");
    std::fs::create_dir_all(&hooks).expect("mkdir hooks");
    let path = hooks.join(name);
    std::fs::write(&path, script).expect("write hook");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod hook");
}

pub fn app_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hoist-app-")
        .tempdir()
        .expect("app dir")
}

pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn assert_success(output: &Output, what: &str) {
    let (stdout, stderr) = text(output);
    assert!(
        output.status.success(),
        "{what} failed with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
}
