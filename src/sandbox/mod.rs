//! `hoist sandbox`: local throw-away servers to deploy to. Each server is a container with sshd
//! and its own dockerd on a private network, reached by SSH with a generated key; a registry with
//! TLS and htpasswd stands in for GHCR. This module orchestrates up/down/list; the pieces live in
//! image (the cached server image), network, server, registry, pki (keys and certificates) and
//! state (what is recorded on disk).

mod image;
mod network;
mod pki;
mod registry;
mod server;
pub mod state;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    ListImagesOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveImageOptions,
};
use futures_util::future::join_all;

use crate::docker::{self, FileSpec};
use crate::printer::Printer;
use crate::report::hinted;
use state::{Names, RegistryInfo, SANDBOX_LABEL, SandboxInfo, ServerInfo};

pub use registry::ENV_PASSWORD;

/// What `up` was asked for.
pub struct UpOptions<'a> {
    pub name: &'a str,
    pub servers: u8,
    pub bare: bool,
    pub mirror: Option<&'a str>,
}

/// The result of `up`: the sandbox, and whether it was already running.
pub struct UpOutcome {
    pub info: SandboxInfo,
    pub already_up: bool,
}

/// Start a sandbox, or report the one already running under that name.
pub async fn up(options: UpOptions<'_>, printer: &Printer) -> Result<UpOutcome> {
    state::validate_name(options.name)?;
    let root = state::sandboxes_root()?;
    let state_dir = root.join(options.name);
    let docker = docker::connect_local().await?;
    let _lock = lock_name(&root, options.name).await?;

    if let Some(info) = state::load(&state_dir)? {
        return reuse_existing(&docker, info, &options).await;
    }
    // An interrupted `up` or a deleted state directory leaves labelled objects behind.
    if !owned_containers(&docker, options.name).await?.is_empty()
        || !owned_networks(&docker, options.name).await?.is_empty()
    {
        return Err(hinted(
            format!(
                "Containers or networks of sandbox `{}` exist but its state in `{}` is gone",
                options.name,
                state_dir.display()
            ),
            format!(
                "remove them with `hoist sandbox down --name {}`, then run `up` again",
                options.name
            ),
        ));
    }

    let images = image::ensure(&docker, options.mirror, printer).await?;
    let started = Instant::now();
    match create(&docker, &options, &state_dir, &images, printer).await {
        Ok(info) => {
            printer.status(
                "Ready",
                format!(
                    "sandbox `{}`: {} server{} and a registry in {:.1}s",
                    info.name,
                    info.servers.len(),
                    if info.servers.len() == 1 { "" } else { "s" },
                    started.elapsed().as_secs_f64()
                ),
            );
            Ok(UpOutcome {
                info,
                already_up: false,
            })
        }
        Err(err) => {
            printer.warn(format!(
                "`sandbox up` failed; removing what it created for `{}`",
                options.name
            ));
            if let Err(cleanup) = remove_everything(&docker, options.name, &state_dir).await {
                printer.warn(format!("cleanup incomplete: {cleanup:#}"));
            }
            Err(err)
        }
    }
}

async fn reuse_existing(
    docker: &Docker,
    mut info: SandboxInfo,
    options: &UpOptions<'_>,
) -> Result<UpOutcome> {
    fill_status(docker, &mut info).await?;
    let all_running = info
        .servers
        .iter()
        .all(|s| s.status.as_deref() == Some("running"))
        && info.registry.status.as_deref() == Some("running");
    let same_shape =
        info.servers.len() == usize::from(options.servers) && info.bare == options.bare;
    if all_running && same_shape {
        return Ok(UpOutcome {
            info,
            already_up: true,
        });
    }
    let why = if same_shape {
        "some of its containers are not running"
    } else {
        "it has a different number or kind of servers"
    };
    Err(hinted(
        format!("Sandbox `{}` already exists and {why}", info.name),
        format!(
            "recreate it: `hoist sandbox down --name {0}`, then `hoist sandbox up --name {0} ...`",
            info.name
        ),
    ))
}

async fn create(
    docker: &Docker,
    options: &UpOptions<'_>,
    state_dir: &Path,
    images: &image::ServerImages,
    printer: &Printer,
) -> Result<SandboxInfo> {
    let name = options.name;
    let names = Names::new(name);
    create_private_dir(state_dir)?;
    printer.detail(format!("keys and credentials in `{}`", state_dir.display()));

    // Keys and certificates first: every file a container needs is placed before it starts.
    let login_key = pki::ssh_key(&format!("hoist-sandbox-{name}"))?;
    let key_path = state_dir.join("id_ed25519");
    state::write_atomic(&key_path, login_key.private_openssh.as_bytes(), 0o600)?;
    state::write_atomic(
        &state_dir.join("id_ed25519.pub"),
        format!("{}\n", login_key.public_openssh).as_bytes(),
        0o644,
    )?;

    let network = names.network();
    let layout = network::create(docker, &network, name).await?;
    printer.status(
        "Created",
        format!("network `{network}` ({})", layout.subnet),
    );

    let registry_ip = IpAddr::V4(layout.registry());
    let registry_address = format!("{registry_ip}:{}", registry::REGISTRY_PORT);
    let tls = pki::registry_tls(name, registry_ip)?;
    let password = pki::password()?;
    let ca_path = state_dir.join("ca.crt");
    state::write_atomic(&ca_path, tls.ca_cert_pem.as_bytes(), 0o644)?;
    let credentials_path = state_dir.join("registry.env");
    state::write_atomic(
        &credentials_path,
        registry::credentials_file(&registry_address, &password).as_bytes(),
        0o600,
    )?;

    let registry_container = names.registry_container();
    registry::start(
        docker,
        registry::RegistrySpec {
            sandbox: name,
            container: &registry_container,
            volume: &names.registry_volume(),
            image: &images.server,
            network: &network,
            address: registry_ip,
            tls: &tls,
            htpasswd: &pki::htpasswd_line(registry::REGISTRY_USERNAME, &password)?,
        },
    )
    .await?;
    printer.status("Started", format!("registry at {registry_address}"));

    // Every server either starts or fails before cleanup looks for what to remove.
    let servers = join_all((1..=options.servers).map(|number| {
        let server_name = format!("server{number}");
        let container = names.server_container(&server_name);
        let volume = names.server_volume(&server_name);
        let address = IpAddr::V4(layout.server(number));
        let public_key = login_key.public_openssh.clone();
        let ca_pem = tls.ca_cert_pem.clone();
        let registry_address = registry_address.clone();
        let key_path = key_path.clone();
        let image = if options.bare {
            images.bare.clone()
        } else {
            images.server.clone()
        };
        let network = network.clone();
        async move {
            let host_key = pki::ssh_key(&format!("root@{server_name}"))?;
            let files = [
                FileSpec::new(
                    "/root/.ssh/authorized_keys",
                    format!("{public_key}\n"),
                    0o600,
                ),
                FileSpec::new(
                    "/etc/ssh/ssh_host_ed25519_key",
                    host_key.private_openssh.clone(),
                    0o600,
                ),
                FileSpec::new(
                    "/etc/ssh/ssh_host_ed25519_key.pub",
                    format!("{}\n", host_key.public_openssh),
                    0o644,
                ),
                FileSpec::new(
                    format!("/etc/docker/certs.d/{registry_address}/ca.crt"),
                    ca_pem.clone(),
                    0o644,
                ),
                FileSpec::new(
                    format!("/usr/local/share/ca-certificates/hoist-sandbox-{name}.crt"),
                    ca_pem,
                    0o644,
                ),
            ];
            server::create_and_start(
                docker,
                server::ContainerSpec {
                    sandbox: name,
                    role: "server",
                    name: &container,
                    hostname: &server_name,
                    image: &image,
                    network: &network,
                    address,
                    cmd: server::start_command(options.bare),
                    volumes: vec![(volume, "/var/lib/docker")],
                    labels: Vec::new(),
                    nested_docker: true,
                },
                &files,
                &["/root/.ssh"],
            )
            .await?;
            server::wait_ready(docker, &container, address, options.bare).await?;
            printer.status(
                "Started",
                format!(
                    "{server_name} at {address}{}",
                    if options.bare {
                        " (bare: no Docker)"
                    } else {
                        ""
                    }
                ),
            );
            // The host key's comment is not part of a known_hosts line.
            let key_fields: Vec<&str> =
                host_key.public_openssh.split_whitespace().take(2).collect();
            anyhow::Ok(ServerInfo {
                name: server_name,
                container,
                address: address.to_string(),
                ssh_user: "root".to_string(),
                ssh_port: 22,
                key_path,
                known_hosts_line: format!("{address} {}", key_fields.join(" ")),
                status: None,
            })
        }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>>>()?;

    let known_hosts_path = state_dir.join("known_hosts");
    let known_hosts: String = servers
        .iter()
        .map(|s| format!("{}\n", s.known_hosts_line))
        .collect();
    state::write_atomic(&known_hosts_path, known_hosts.as_bytes(), 0o644)?;

    let host_ca_path = match registry::trust_on_host(
        &registry::host_certs_dir(),
        &registry_address,
        &tls.ca_cert_pem,
    ) {
        Ok(path) => Some(path),
        Err(err) => {
            printer.warn(format!(
                "{err:#}; the local Docker engine will refuse to push to {registry_address} until `{}` is copied to `{}`",
                ca_path.display(),
                registry::host_ca_path(&registry_address).display()
            ));
            None
        }
    };

    let info = SandboxInfo {
        name: name.to_string(),
        state_dir: state_dir.to_path_buf(),
        network,
        subnet: layout.subnet.to_string(),
        bare: options.bare,
        servers,
        known_hosts_path,
        registry: RegistryInfo {
            address: registry_address,
            container: registry_container,
            username: registry::REGISTRY_USERNAME.to_string(),
            ca_path,
            credentials_path,
            status: None,
        },
        host_ca_path,
    };
    state::save(&info)?;
    Ok(info)
}

/// What `down` removed.
#[derive(Debug, Default)]
pub struct Removed {
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
    pub images: usize,
    /// Cached images kept because containers still use them.
    pub images_in_use: Vec<String>,
    pub state: bool,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.containers + self.networks + self.volumes + self.images == 0 && !self.state
    }
}

/// Remove every container, network and volume labelled with the sandbox's name, the host's trust
/// of its CA and its state directory; with `images`, the cached server images too.
pub async fn down(name: &str, images: bool) -> Result<Removed> {
    state::validate_name(name)?;
    let root = state::sandboxes_root()?;
    let state_dir = root.join(name);
    let docker = docker::connect_local().await?;
    let _lock = lock_name(&root, name).await?;
    let mut removed = remove_everything(&docker, name, &state_dir).await?;
    if images {
        let filters = HashMap::from([("label".to_string(), vec![image::IMAGE_LABEL.to_string()])]);
        let list = docker
            .list_images(Some(
                ListImagesOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .context("Failed to list images")?;
        for image in list {
            for tag in image.repo_tags {
                // Not forced: an image another sandbox's servers still use stays.
                match docker
                    .remove_image(&tag, None::<RemoveImageOptions>, None)
                    .await
                {
                    Ok(_) => removed.images += 1,
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404 | 409,
                        ..
                    }) => removed.images_in_use.push(tag),
                    Err(err) => {
                        return Err(err).with_context(|| format!("Failed to remove image `{tag}`"));
                    }
                }
            }
        }
    }
    Ok(removed)
}

async fn remove_everything(docker: &Docker, name: &str, state_dir: &Path) -> Result<Removed> {
    let mut removed = Removed::default();
    // The host's trust of the CA is found from the registry's label, so a lost or damaged
    // sandbox.json does not leave it behind.
    for address in registry_addresses(docker, name).await? {
        registry::untrust_on_host(&registry::host_ca_path(&address))?;
    }
    for container in owned_containers(docker, name).await? {
        docker::remove_container_force(docker, &container).await?;
        removed.containers += 1;
    }
    for network in owned_networks(docker, name).await? {
        docker::ignore_not_found(docker.remove_network(&network).await)
            .with_context(|| format!("Failed to remove network `{network}`"))?;
        removed.networks += 1;
    }
    let filters = docker::label_filter(SANDBOX_LABEL, name);
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .context("Failed to list volumes")?;
    for volume in volumes.volumes.unwrap_or_default() {
        docker::ignore_not_found(
            docker
                .remove_volume(
                    &volume.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await,
        )
        .with_context(|| format!("Failed to remove volume `{}`", volume.name))?;
        removed.volumes += 1;
    }
    if let Ok(Some(info)) = state::load(state_dir)
        && let Some(path) = &info.host_ca_path
    {
        registry::untrust_on_host(path)?;
    }
    if state_dir.exists() {
        std::fs::remove_dir_all(state_dir)
            .with_context(|| format!("Failed to remove `{}`", state_dir.display()))?;
        removed.state = true;
    }
    Ok(removed)
}

/// Every sandbox with recorded state (or only `name`), with container statuses filled in.
pub async fn list(name: Option<&str>) -> Result<Vec<SandboxInfo>> {
    let root = state::sandboxes_root()?;
    let mut dirs = Vec::new();
    match name {
        Some(name) => {
            state::validate_name(name)?;
            dirs.push(root.join(name));
        }
        None => {
            if let Ok(entries) = std::fs::read_dir(&root) {
                for entry in entries.flatten() {
                    if entry.path().is_dir()
                        && !entry.file_name().to_string_lossy().starts_with('.')
                    {
                        dirs.push(entry.path());
                    }
                }
            }
        }
    }
    dirs.sort();
    let mut sandboxes = Vec::new();
    for dir in dirs {
        if let Some(info) = state::load(&dir)? {
            sandboxes.push(info);
        }
    }
    if let Some(name) = name
        && sandboxes.is_empty()
    {
        return Err(hinted(
            format!("Sandbox `{name}` does not exist"),
            format!("start it: `hoist sandbox up --name {name}`"),
        ));
    }
    if !sandboxes.is_empty() {
        let docker = docker::connect_local().await?;
        for info in &mut sandboxes {
            fill_status(&docker, info).await?;
        }
    }
    Ok(sandboxes)
}

async fn fill_status(docker: &Docker, info: &mut SandboxInfo) -> Result<()> {
    let states = container_states(docker, &info.name).await?;
    let status_of = |container: &str| {
        Some(
            states
                .get(container)
                .cloned()
                .unwrap_or_else(|| "missing".to_string()),
        )
    };
    for server in &mut info.servers {
        server.status = status_of(&server.container);
    }
    info.registry.status = status_of(&info.registry.container);
    Ok(())
}

/// Every container labelled with the sandbox's name, running or not.
async fn labelled_containers(docker: &Docker, name: &str) -> Result<Vec<ContainerSummary>> {
    let filters = docker::label_filter(SANDBOX_LABEL, name);
    docker::list_containers(docker, &filters).await
}

async fn container_states(docker: &Docker, name: &str) -> Result<HashMap<String, String>> {
    Ok(labelled_containers(docker, name)
        .await?
        .into_iter()
        .filter_map(|c| {
            let name = c.names?.first()?.trim_start_matches('/').to_string();
            let state = c
                .state
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".to_string());
            Some((name, state))
        })
        .collect())
}

/// Serialise `up` and `down` of one sandbox name across processes.
async fn lock_name(root: &Path, name: &str) -> Result<std::fs::File> {
    std::fs::create_dir_all(root)
        .with_context(|| format!("Failed to create `{}`", root.display()))?;
    let path = root.join(format!(".{name}.lock"));
    let file = std::fs::File::create(&path)
        .with_context(|| format!("Failed to create `{}`", path.display()))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .context("Sandbox lock task failed")?
        .with_context(|| format!("Failed to lock `{}`", path.display()))
}

async fn registry_addresses(docker: &Docker, name: &str) -> Result<Vec<String>> {
    Ok(labelled_containers(docker, name)
        .await?
        .into_iter()
        .filter_map(|c| c.labels?.remove(registry::ADDRESS_LABEL))
        .collect())
}

async fn owned_networks(docker: &Docker, name: &str) -> Result<Vec<String>> {
    let filters = docker::label_filter(SANDBOX_LABEL, name);
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .context("Failed to list networks")?;
    Ok(networks.into_iter().filter_map(|n| n.name).collect())
}

async fn owned_containers(docker: &Docker, name: &str) -> Result<Vec<String>> {
    Ok(container_states(docker, name).await?.into_keys().collect())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("Failed to create `{}`", dir.display()))
}
