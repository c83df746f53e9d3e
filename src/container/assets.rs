//! Asset bridging (`asset_path`, Kamal's): during a deploy, pages served by either version can
//! ask for the other version's fingerprinted assets, so both are served by both. Each version of
//! a role behind the proxy mounts a named volume of its own at `asset_path`
//! (`<service>-<role>[-<destination>]-<version>-assets`, labelled with the role's scope):
//! Docker fills an empty volume with the image's files there when the container starts. Once the
//! new container runs, a one-off container of the proxy image (on every proxy host) gives each of
//! the old and new volumes the files only the other has (`hoist-proxy merge-assets`), before
//! any switch. A volume goes once no container uses it any more (pruning, `hoist remove`).

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::ListVolumesOptionsBuilder;

use super::app;
use crate::config::Config;
use crate::docker::{self, ExecStream};
use crate::naming;

/// The label on asset volumes: the role scope they belong to.
pub const LABEL: &str = "dev.hoist.assets";

/// The asset volume of `role` at `version`.
pub fn volume(config: &Config, role: &str, version: &str) -> String {
    let container = naming::app_container(
        &config.service,
        role,
        config.destination.as_deref(),
        version,
    );
    format!("{container}-assets")
}

/// `asset_path` of `role`, when it has one (roles behind the proxy only).
pub fn path<'a>(config: &'a Config, role: &str) -> Option<&'a str> {
    config
        .roles
        .get(role)
        .and_then(|role| role.container.asset_path.as_deref())
}

/// Create (if missing) the asset volume of `role` at `version`; the mount for its container.
pub async fn prepare(
    docker: &Docker,
    config: &Config,
    role: &str,
    version: &str,
) -> Result<String> {
    let Some(path) = path(config, role) else {
        bail!("`{role}` has no asset_path");
    };
    let name = volume(config, role, version);
    let scope = naming::role_scope(&config.service, role, config.destination.as_deref());
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(HashMap::from([(LABEL.to_string(), scope)])),
            ..Default::default()
        })
        .await
        .with_context(|| format!("Failed to create the asset volume `{name}`"))?;
    Ok(format!("{name}:{path}"))
}

/// Give the asset volumes of `role` at `old` and at `new` each the files only the other has.
/// `new`'s container must have started (Docker fills its volume then). An `old` without a
/// volume (deployed before `asset_path` was set) has nothing to give: skipped.
pub async fn bridge(
    docker: &Docker,
    config: &Config,
    role: &str,
    old: &str,
    new: &str,
) -> Result<()> {
    let (from, to) = (volume(config, role, old), volume(config, role, new));
    if from == to {
        return Ok(());
    }
    match docker.inspect_volume(&from).await {
        Ok(_) => {}
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("Failed to inspect `{from}`")),
    }
    let scope = naming::role_scope(&config.service, role, config.destination.as_deref());
    let name = format!("{scope}-assets-{}", naming::random_hex()?);
    let body = ContainerCreateBody {
        image: Some(config.proxy.image.clone()),
        cmd: Some(vec![
            "hoist-proxy".to_string(),
            "merge-assets".to_string(),
            "/old".to_string(),
            "/new".to_string(),
        ]),
        // Root, to write into volumes the app's user owns and keep their owners.
        user: Some("0:0".to_string()),
        labels: Some(HashMap::from([(LABEL.to_string(), scope)])),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{from}:/old"), format!("{to}:/new")]),
            network_mode: Some("none".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    app::create(docker, &name, body).await?;
    let mut said = Vec::new();
    let code = app::run_to_end(docker, &name, |_: ExecStream, data: &[u8]| {
        said.extend_from_slice(data)
    })
    .await?;
    if code != 0 {
        bail!(
            "merging the assets of {old} and {new} failed ({code}): {}",
            String::from_utf8_lossy(&said).trim()
        );
    }
    Ok(())
}

/// Remove the asset volumes of `scope` no container uses; `all`: every one of them (the
/// containers are gone). Returns their names.
pub async fn prune(docker: &Docker, scope: &str, all: bool) -> Result<Vec<String>> {
    let mut filters = docker::label_filter(LABEL, scope);
    if !all {
        filters.insert("dangling".to_string(), vec!["true".to_string()]);
    }
    let listed = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .context("Failed to list asset volumes")?;
    let mut removed = Vec::new();
    for volume in listed.volumes.unwrap_or_default() {
        match docker
            .remove_volume(
                &volume.name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(()) => removed.push(volume.name),
            // Gone already, or used by a container after all (kept).
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => {}
            Err(err) => {
                return Err(err).with_context(|| format!("Failed to remove `{}`", volume.name));
            }
        }
    }
    Ok(removed)
}
