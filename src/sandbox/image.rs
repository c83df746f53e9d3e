//! The sandbox server images, built without pulling anything: `debootstrap` a Debian rootfs with
//! sshd, Docker and a registry, import it into the local engine, and derive a `bare` variant (sshd
//! only) by purging Docker. Both are cached under a tag made from a hash of the recipe, so only the
//! first `hoist sandbox up` on a machine pays for the build.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::docker;
use crate::printer::Printer;
use crate::report::{HintExt, hinted};

/// Bump when the build steps below change in a way the package lists don't show.
const RECIPE_VERSION: u32 = 1;
const SUITE: &str = "bookworm";
/// What every server has: sshd, Docker, and the registry binary (the sandbox registry runs from
/// this image too), plus what a fresh cloud box usually has.
const PACKAGES: &[&str] = &[
    "openssh-server",
    "docker.io",
    "docker-registry",
    "iproute2",
    "ca-certificates",
    "sudo",
    "curl",
    "procps",
];
/// Removed from the bare variant (sshd only, for `hoist setup` to install Docker).
const BARE_PURGE: &[&str] = &["docker.io", "containerd", "runc", "docker-registry"];
/// sshd settings of every sandbox server: key-only root login, one host key given per server.
pub const SSHD_CONFIG: &str = "\
# Written by `hoist sandbox`: key-only logins; each server gets its own ed25519 host key.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
";
/// Label on cached images (not the sandbox label: images outlive sandboxes).
pub const IMAGE_LABEL: &str = "dev.hoist.sandbox-image";
pub const SERVER_REPO: &str = "hoist-sandbox-server";
pub const BARE_REPO: &str = "hoist-sandbox-bare";

/// The two images of the current recipe.
pub struct ServerImages {
    pub server: String,
    pub bare: String,
}

/// The cache key: a short hash of everything that decides the image's content.
pub fn recipe_hash() -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "v{RECIPE_VERSION}\n{SUITE}\nminbase\n{}\n{}\n{SSHD_CONFIG}",
        PACKAGES.join(","),
        BARE_PURGE.join(",")
    ));
    let digest = hasher.finalize();
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Make sure both images exist, building what is missing. Serialised across processes by a lock
/// file in the machine's hoist cache directory, so parallel `up`s build once.
pub async fn ensure(
    docker: &Docker,
    mirror: Option<&str>,
    printer: &Printer,
) -> Result<ServerImages> {
    let hash = recipe_hash();
    let images = ServerImages {
        server: format!("{SERVER_REPO}:{hash}"),
        bare: format!("{BARE_REPO}:{hash}"),
    };
    if docker::image_exists(docker, &images.server).await?
        && docker::image_exists(docker, &images.bare).await?
    {
        printer.status("Using", format!("cached server image `{}`", images.server));
        return Ok(images);
    }

    let work_root = &cache_dir()?;
    std::fs::create_dir_all(work_root)
        .with_context(|| format!("Failed to create `{}`", work_root.display()))?;
    let lock_path = work_root.join(".image-build.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("Failed to create `{}`", lock_path.display()))?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await
        .context("Image build lock task failed")?
        .with_context(|| format!("Failed to lock `{}`", lock_path.display()))?;

    let started = Instant::now();
    if !docker::image_exists(docker, &images.server).await? {
        let mirror = match mirror {
            Some(mirror) => mirror.to_string(),
            None => detect_mirror()?,
        };
        printer.status(
            "Building",
            format!(
                "server image `{}` with debootstrap from {mirror} (about a minute, once per machine)",
                images.server
            ),
        );
        build_server_image(docker, work_root, &mirror, &hash, &images.server).await?;
    }
    if !docker::image_exists(docker, &images.bare).await? {
        build_bare_image(docker, &images.server, &hash).await?;
    }
    drop(lock);
    printer.status(
        "Built",
        format!(
            "server images `{}` and `{}` in {:.1}s",
            images.server,
            images.bare,
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(images)
}

/// Where image builds happen: `$HOIST_CACHE_DIR`, else `$XDG_CACHE_HOME/hoist`, else
/// `~/.cache/hoist`. Shared by every sandbox on the machine, like the images themselves.
fn cache_dir() -> Result<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HOIST_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|dir| dir.join("hoist")))
        .or_else(|| var("HOME").map(|dir| dir.join(".cache/hoist")))
        .ok_or_else(|| {
            hinted(
                "Cannot tell where to build the sandbox image: HOME is not set",
                "set HOIST_CACHE_DIR to a directory",
            )
        })
}

/// The Debian mirror this machine's apt uses (deb822 `.sources` files or `sources.list`).
pub fn detect_mirror() -> Result<String> {
    let mut texts = Vec::new();
    for path in ["/etc/apt/sources.list"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            texts.push(text);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in entries.flatten() {
            let path = entry.path();
            let wanted = path
                .extension()
                .is_some_and(|ext| ext == "sources" || ext == "list");
            if wanted && let Ok(text) = std::fs::read_to_string(&path) {
                texts.push(text);
            }
        }
    }
    texts
        .iter()
        .find_map(|text| mirror_from_sources(text))
        .ok_or_else(|| {
            hinted(
                "Cannot find a Debian mirror in /etc/apt to build the sandbox server image from",
                "pass one with `--mirror URL` or HOIST_SANDBOX_MIRROR",
            )
        })
}

/// The first Debian archive URI (not the security archive) in an apt sources text.
pub fn mirror_from_sources(text: &str) -> Option<String> {
    let candidates = text.lines().filter_map(|line| {
        let line = line.trim();
        if let Some(uris) = line.strip_prefix("URIs:") {
            uris.split_whitespace().next()
        } else if line.starts_with("deb ") {
            line.split_whitespace()
                .skip(1)
                .find(|word| !word.starts_with('['))
        } else {
            None
        }
    });
    candidates
        .map(|uri| uri.trim_end_matches('/'))
        .find(|uri| uri.ends_with("/debian") && uri.starts_with("http"))
        .map(str::to_string)
}

async fn build_server_image(
    docker: &Docker,
    work_root: &Path,
    mirror: &str,
    hash: &str,
    reference: &str,
) -> Result<()> {
    let debootstrap = find_program("debootstrap").hint(
        "install it (`apt-get install debootstrap`); the test command `scripts/test` does this for you",
    )?;
    let rootfs = work_root.join(format!(".rootfs-{hash}"));
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)
            .with_context(|| format!("Failed to remove a stale `{}`", rootfs.display()))?;
    }
    let log_path = work_root.join(format!(".debootstrap-{hash}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("Failed to create `{}`", log_path.display()))?;
    let status = tokio::process::Command::new(&debootstrap)
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&rootfs)
        .arg(mirror)
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .context("Failed to share the debootstrap log")?,
        )
        .stderr(log)
        .status()
        .await
        .context("Failed to run debootstrap")?;
    if !status.success() {
        let tail = last_lines(&log_path, 15);
        let _ = std::fs::remove_dir_all(&rootfs);
        return Err(anyhow::anyhow!(
            "debootstrap exited with {status}; last lines of `{}`:\n{tail}",
            log_path.display()
        ))
        .context("Failed to build the sandbox server image")
        .hint("debootstrap needs root and a reachable Debian mirror (`--mirror URL`)");
    }
    prepare_rootfs(&rootfs)?;
    import_rootfs(docker, &rootfs, reference, hash).await?;
    std::fs::remove_dir_all(&rootfs)
        .with_context(|| format!("Failed to remove `{}`", rootfs.display()))?;
    let _ = std::fs::remove_file(&log_path);
    Ok(())
}

/// Per-machine leftovers out, sandbox settings in: host keys are generated per server.
fn prepare_rootfs(rootfs: &Path) -> Result<()> {
    let ssh_dir = rootfs.join("etc/ssh");
    for entry in std::fs::read_dir(&ssh_dir)
        .with_context(|| format!("Failed to read `{}`", ssh_dir.display()))?
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("Failed to remove `{}`", entry.path().display()))?;
        }
    }
    let conf = ssh_dir.join("sshd_config.d/hoist-sandbox.conf");
    std::fs::write(&conf, SSHD_CONFIG)
        .with_context(|| format!("Failed to write `{}`", conf.display()))?;
    let archives = rootfs.join("var/cache/apt/archives");
    if let Ok(entries) = std::fs::read_dir(&archives) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|ext| ext == "deb") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

/// `tar -c` the rootfs straight into the engine's import endpoint (`docker import`).
async fn import_rootfs(docker: &Docker, rootfs: &Path, reference: &str, hash: &str) -> Result<()> {
    let (repo, tag) = reference.split_once(':').unwrap_or((reference, "latest"));
    let mut tar = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["--numeric-owner", "-c", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("Failed to run tar")?;
    let stdout = tar.stdout.take().context("tar has no stdout")?;
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(stdout));
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(vec![
            format!("LABEL {IMAGE_LABEL}={hash}"),
            "CMD [\"/bin/bash\"]".to_string(),
        ])
        .build();
    let mut stream = docker.create_image(Some(options), Some(body), None);
    while let Some(item) = stream.next().await {
        item.with_context(|| format!("Failed to import the sandbox rootfs as `{reference}`"))?;
    }
    let output = tar
        .wait_with_output()
        .await
        .context("Failed to wait for tar")?;
    if !output.status.success() {
        bail!(
            "tar of `{}` failed: {}",
            rootfs.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The bare variant: a container of the server image purges Docker, and is committed.
async fn build_bare_image(docker: &Docker, server_image: &str, hash: &str) -> Result<()> {
    let bare = format!("{BARE_REPO}:{hash}");
    let builder = format!("hoist-sandbox-build-bare-{hash}");
    docker::remove_container_force(docker, &builder).await?;
    let script = format!(
        "set -e; DEBIAN_FRONTEND=noninteractive apt-get purge -y --auto-remove {} >/tmp/purge.log 2>&1 || {{ cat /tmp/purge.log; exit 1; }}; rm -rf /var/lib/docker /etc/docker /tmp/purge.log",
        BARE_PURGE.join(" ")
    );
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&builder).build()),
            ContainerCreateBody {
                image: Some(server_image.to_string()),
                cmd: Some(vec!["/bin/sh".into(), "-c".into(), script]),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("Failed to create `{builder}`"))?;
    let result = async {
        docker
            .start_container(
                &builder,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .with_context(|| format!("Failed to start `{builder}`"))?;
        let mut wait = docker.wait_container(
            &builder,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        while let Some(item) = wait.next().await {
            item.with_context(|| format!("Purging Docker from `{bare}` failed"))?;
        }
        let (repo, tag) = bare.split_once(':').unwrap_or((&bare, "latest"));
        docker
            .commit_container(
                CommitContainerOptionsBuilder::new()
                    .container(&builder)
                    .repo(repo)
                    .tag(tag)
                    .changes("CMD [\"/bin/bash\"]")
                    .build(),
                bollard::models::ContainerConfig::default(),
            )
            .await
            .with_context(|| format!("Failed to commit `{bare}`"))?;
        anyhow::Ok(())
    }
    .await;
    let removed = docker::remove_container_force(docker, &builder).await;
    result.and(removed)
}

fn find_program(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow::anyhow!("`{name}` is not installed"))
}

fn last_lines(path: &Path, count: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_deb822_skips_security() {
        let text = "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n";
        assert_eq!(
            mirror_from_sources(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn mirror_from_one_line_format() {
        let text = "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_from_sources(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_from_sources("deb cdrom:/ bookworm main"), None);
    }

    #[test]
    fn recipe_hash_is_stable_and_short() {
        assert_eq!(recipe_hash(), recipe_hash());
        assert_eq!(recipe_hash().len(), 12);
    }
}
