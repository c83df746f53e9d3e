//! One sandbox server: a container of the sandbox image running sshd (and, unless bare, its own
//! dockerd), at a fixed address on the sandbox network, with the sandbox's login key, its own
//! ed25519 host key and the sandbox CA placed before it starts. Also the wait until it answers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, NetworkingConfig,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use tokio::io::AsyncReadExt;

use super::state::SANDBOX_LABEL;
use crate::docker::{self, FileSpec};

/// How long a server gets to answer SSH (and Docker) after it starts.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// sshd, then dockerd in the foreground. The registry CA is made known to the system store too.
/// Pid files left by a previous run (container restart) would stop dockerd from starting.
const START_FULL: &str = "update-ca-certificates >/dev/null 2>&1; rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid; mkdir -p /run/sshd && /usr/sbin/sshd -E /var/log/sshd.log && exec dockerd >/var/log/dockerd.log 2>&1";
/// sshd only, in the foreground.
const START_BARE: &str =
    "update-ca-certificates >/dev/null 2>&1; mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e";

/// What a container on the sandbox network is.
pub struct ContainerSpec<'a> {
    pub sandbox: &'a str,
    pub role: &'a str,
    pub name: &'a str,
    pub hostname: &'a str,
    pub image: &'a str,
    pub network: &'a str,
    pub address: IpAddr,
    pub cmd: Vec<String>,
    /// Named volumes (`name`, mount path), created with the sandbox label so `down` finds them.
    pub volumes: Vec<(String, &'a str)>,
    /// Labels besides the sandbox's own.
    pub labels: Vec<(String, String)>,
    /// Capabilities and unconfined profiles for a nested dockerd (`--privileged` fails here).
    pub nested_docker: bool,
}

/// Create a container on the sandbox network, copy `files` in, start it.
pub async fn create_and_start(
    docker: &Docker,
    spec: ContainerSpec<'_>,
    files: &[FileSpec],
    private_dirs: &[&str],
) -> Result<()> {
    let mut labels = HashMap::from([
        (SANDBOX_LABEL.to_string(), spec.sandbox.to_string()),
        (format!("{SANDBOX_LABEL}.role"), spec.role.to_string()),
    ]);
    let volume_labels = labels.clone();
    labels.extend(spec.labels.iter().cloned());
    let mut binds = Vec::new();
    for (volume, mount) in &spec.volumes {
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(volume_labels.clone()),
                ..Default::default()
            })
            .await
            .with_context(|| format!("Failed to create volume `{volume}`"))?;
        binds.push(format!("{volume}:{mount}"));
    }
    let mut host_config = HostConfig {
        binds: Some(binds),
        network_mode: Some(spec.network.to_string()),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        init: Some(true),
        ..Default::default()
    };
    if spec.nested_docker {
        // SYS_PTRACE: `docker exec` into a container running as a non-root user (hoist-proxy
        // runs as 65532) opens that process's namespaces, which root may do only with it.
        host_config.cap_add = Some(vec![
            "SYS_ADMIN".into(),
            "NET_ADMIN".into(),
            "SYS_PTRACE".into(),
        ]);
        host_config.security_opt = Some(vec![
            "apparmor=unconfined".into(),
            "seccomp=unconfined".into(),
        ]);
        host_config
            .binds
            .get_or_insert_with(Vec::new)
            .push("/sys/fs/cgroup:/sys/fs/cgroup:rw".into());
    }
    let body = ContainerCreateBody {
        image: Some(spec.image.to_string()),
        hostname: Some(spec.hostname.to_string()),
        cmd: Some(spec.cmd.clone()),
        labels: Some(labels),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.to_string(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(spec.address.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(spec.name).build()),
            body,
        )
        .await
        .with_context(|| format!("Failed to create container `{}`", spec.name))?;
    docker::upload_files(docker, spec.name, files, private_dirs).await?;
    docker
        .start_container(
            spec.name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .with_context(|| format!("Failed to start container `{}`", spec.name))?;
    Ok(())
}

/// The start command of a server.
pub fn start_command(bare: bool) -> Vec<String> {
    let script = if bare { START_BARE } else { START_FULL };
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// Wait until sshd greets on `address:22`, and (unless bare) the server's dockerd answers.
pub async fn wait_ready(
    docker: &Docker,
    container: &str,
    address: IpAddr,
    bare: bool,
) -> Result<()> {
    let deadline = Instant::now() + SERVER_START_TIMEOUT;
    let ssh = SocketAddr::new(address, 22);
    loop {
        match ssh_banner(ssh).await {
            Ok(banner) if banner.starts_with("SSH-2.0") => break,
            result => {
                if Instant::now() > deadline {
                    let why = match result {
                        Ok(banner) => format!("unexpected greeting {banner:?}"),
                        Err(err) => err.to_string(),
                    };
                    bail!(
                        "Server `{container}` did not answer SSH on {ssh} within {}s: {why}",
                        SERVER_START_TIMEOUT.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    if bare {
        return Ok(());
    }
    loop {
        let probe = docker::exec(
            docker,
            container,
            &["docker", "version", "--format", "{{.Server.Version}}"],
        )
        .await;
        if probe.is_ok_and(|output| output.exit_code == 0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = docker::exec(
                docker,
                container,
                &["tail", "-n", "15", "/var/log/dockerd.log"],
            )
            .await
            .map(|output| output.stdout)
            .unwrap_or_default();
            bail!(
                "The Docker engine in server `{container}` did not start within {}s; last lines of its log:\n{log}",
                SERVER_START_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn ssh_banner(address: SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no greeting"))??;
    Ok(String::from_utf8_lossy(&buf[..read]).trim().to_string())
}
