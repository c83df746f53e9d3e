//! The sandbox registry that stands in for GHCR: Debian's `docker-registry` in a container on the
//! sandbox network, TLS with a certificate from the sandbox CA, htpasswd auth. Also what makes it
//! usable: the local engine's trust of the CA (`certs.d`) and a credentials file to `source`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::Docker;

use super::pki::TlsMaterial;
use super::server::{self, ContainerSpec};
use crate::docker::{self, FileSpec};

pub const REGISTRY_PORT: u16 = 5000;
pub const REGISTRY_USERNAME: &str = "hoist";
const CONFIG_DIR: &str = "/etc/docker/registry";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variable names in the credentials file.
pub const ENV_ADDRESS: &str = "HOIST_SANDBOX_REGISTRY";
pub const ENV_USERNAME: &str = "HOIST_SANDBOX_REGISTRY_USERNAME";
pub const ENV_PASSWORD: &str = "HOIST_SANDBOX_REGISTRY_PASSWORD";

fn config_yaml() -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: /var/lib/docker-registry\n  delete:\n    enabled: true\n\
         http:\n  addr: 0.0.0.0:{REGISTRY_PORT}\n  tls:\n    certificate: {CONFIG_DIR}/registry.crt\n    key: {CONFIG_DIR}/registry.key\n\
         auth:\n  htpasswd:\n    realm: hoist-sandbox\n    path: {CONFIG_DIR}/htpasswd\n"
    )
}

pub struct RegistrySpec<'a> {
    pub sandbox: &'a str,
    pub container: &'a str,
    pub volume: &'a str,
    pub image: &'a str,
    pub network: &'a str,
    pub address: IpAddr,
    pub tls: &'a TlsMaterial,
    pub htpasswd: &'a str,
}

/// Start the registry and wait until it answers `/v2/` with 401 (auth required) over TLS.
pub async fn start(docker: &Docker, spec: RegistrySpec<'_>) -> Result<()> {
    let files = [
        FileSpec::new(format!("{CONFIG_DIR}/config.yml"), config_yaml(), 0o644),
        FileSpec::new(
            format!("{CONFIG_DIR}/registry.crt"),
            spec.tls.server_cert_pem.clone(),
            0o644,
        ),
        FileSpec::new(
            format!("{CONFIG_DIR}/registry.key"),
            spec.tls.server_key_pem.clone(),
            0o600,
        ),
        FileSpec::new(
            format!("{CONFIG_DIR}/ca.crt"),
            spec.tls.ca_cert_pem.clone(),
            0o644,
        ),
        FileSpec::new(format!("{CONFIG_DIR}/htpasswd"), spec.htpasswd, 0o600),
    ];
    server::create_and_start(
        docker,
        ContainerSpec {
            sandbox: spec.sandbox,
            role: "registry",
            name: spec.container,
            hostname: "registry",
            image: spec.image,
            network: spec.network,
            address: spec.address,
            cmd: vec![
                "docker-registry".into(),
                "serve".into(),
                format!("{CONFIG_DIR}/config.yml"),
            ],
            volumes: vec![(spec.volume.to_string(), "/var/lib/docker-registry")],
            labels: vec![(
                ADDRESS_LABEL.to_string(),
                format!("{}:{REGISTRY_PORT}", spec.address),
            )],
            nested_docker: false,
        },
        &files,
        &[],
    )
    .await?;

    let url = format!("https://{}:{REGISTRY_PORT}/v2/", spec.address);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let probe = docker::exec(
            docker,
            spec.container,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                &format!("{CONFIG_DIR}/ca.crt"),
                &url,
            ],
        )
        .await?;
        if probe.stdout.trim() == "401" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "The sandbox registry did not answer {url} with 401 within {}s (last answer: {:?} {})",
                READY_TIMEOUT.as_secs(),
                probe.stdout.trim(),
                probe.stderr.trim()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Label on the registry container naming its `HOST:PORT`, so `down` can undo the host's trust
/// even when the sandbox's state file is lost.
pub const ADDRESS_LABEL: &str = "dev.hoist.sandbox.registry";

/// Where the local engine looks for the CA of the registry at `address`.
pub fn host_ca_path(address: &str) -> PathBuf {
    host_certs_dir().join(address).join("ca.crt")
}

/// Make the local engine trust the sandbox CA for pushes to `address` (`certs.d`, read per request
/// by dockerd: no restart). Returns the file written.
pub fn trust_on_host(certs_dir: &Path, address: &str, ca_pem: &str) -> Result<PathBuf> {
    let dir = certs_dir.join(address);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("Failed to create `{}`", dir.display()))?;
    let path = dir.join("ca.crt");
    std::fs::write(&path, ca_pem)
        .with_context(|| format!("Failed to write `{}`", path.display()))?;
    Ok(path)
}

/// Undo [`trust_on_host`].
pub fn untrust_on_host(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("Failed to remove `{}`", path.display()));
        }
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// Where dockerd looks for per-registry CAs: `$HOIST_DOCKER_CERTS_DIR`, else `/etc/docker/certs.d`.
pub fn host_certs_dir() -> PathBuf {
    std::env::var_os("HOIST_DOCKER_CERTS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/docker/certs.d"))
}

/// The credentials file: shell syntax, `export` lines, also readable as dotenv.
pub fn credentials_file(address: &str, password: &str) -> String {
    format!(
        "# Sandbox registry credentials (`source` this file). Keep it private.\n\
         export {ENV_ADDRESS}={address}\n\
         export {ENV_USERNAME}={REGISTRY_USERNAME}\n\
         export {ENV_PASSWORD}={password}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_uses_tls_and_htpasswd() {
        let config = config_yaml();
        assert!(config.contains("addr: 0.0.0.0:5000"));
        assert!(config.contains("certificate: /etc/docker/registry/registry.crt"));
        assert!(config.contains("path: /etc/docker/registry/htpasswd"));
    }

    #[test]
    fn trust_round_trip() {
        let dir = std::env::temp_dir().join(format!("hoist-trust-test-{}", std::process::id()));
        let path = trust_on_host(&dir, "10.231.1.2:5000", "PEM").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "PEM");
        untrust_on_host(&path).expect("remove");
        assert!(!path.exists() && !dir.join("10.231.1.2:5000").exists());
        let _ = std::fs::remove_dir(&dir);
    }
}
