//! Taking an app off one server, for `hoist remove`: its routes in hoist-proxy, every container
//! labelled with its service (app versions, one-off execs, accessories, the backup agent), the
//! named volumes its accessories and backup agent mount, the images of its repository, then
//! hoist-proxy and the `hoist` network when no other app uses them. The files under
//! `~/.hoist/<scope>` go last, with the lock (see [`files_command`]). For `hoist app remove`,
//! only the app's versions ([`remove_versions`]): accessories, the proxy and the files stay.

use std::collections::HashMap;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::query_parameters::{
    ListImagesOptionsBuilder, RemoveImageOptionsBuilder, RemoveVolumeOptions,
};

use super::proxy;
use crate::config::Config;
use crate::docker;
use crate::naming::{self, LABEL_DESTINATION, LABEL_SERVICE, NETWORK};

/// What [`remove_app`] removed on one server.
#[derive(Debug, Default)]
pub struct Removed {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub images: usize,
    /// hoist-proxy went too (no other app routes through it).
    pub proxy: bool,
    /// Services of other apps that keep hoist-proxy (and the network) on this server.
    pub others: Vec<String>,
    /// hoist-proxy is there but did not answer, so whom it routes is unknown: it stays.
    pub proxy_silent: bool,
}

/// Everything of `config`'s app on this server but its files (see the module doc).
pub async fn remove_app(docker: &Docker, config: &Config) -> Result<Removed> {
    let mut removed = Removed::default();
    let routed = remove_routes(docker, config, &mut removed).await?;

    for name in containers(docker, config).await? {
        docker::remove_container_force(docker, &name).await?;
        removed.containers.push(name);
    }
    for volume in volumes(config) {
        match docker
            .remove_volume(&volume, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => removed.volumes.push(volume),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(err) => {
                return Err(err).with_context(|| format!("Failed to remove the volume `{volume}`"));
            }
        }
    }
    for role in config.roles.keys() {
        let scope = naming::role_scope(&config.service, role, config.destination.as_deref());
        removed
            .volumes
            .extend(super::assets::prune(docker, &scope, true).await?);
    }
    removed.images = remove_images(docker, &config.image).await;
    if config.accessories.values().any(|a| a.backup.is_some()) {
        removed.images += remove_images(docker, &config.backup.image).await;
    }

    // hoist-proxy and the network stay for the apps that still use them.
    if routed.is_some() && removed.others.is_empty() {
        proxy::remove(docker).await?;
        removed.proxy = true;
        removed.images += remove_images(docker, &config.proxy.image).await;
    } else if routed.is_none() {
        removed.proxy_silent = proxy::inspect(docker).await?.is_some();
    }
    if removed.others.is_empty() && !removed.proxy_silent {
        // Refused while another container is attached: it stays for that one.
        let _ = docker.remove_network(NETWORK).await;
    }
    Ok(removed)
}

/// The app's versions on this server, for `hoist app remove`: its routes, every container of
/// its roles (all versions) and its one-off execs, their asset volumes, the images of its
/// repository. Accessories, hoist-proxy and hoist's files stay: the next deploy starts afresh.
pub async fn remove_versions(docker: &Docker, config: &Config) -> Result<Removed> {
    let mut removed = Removed::default();
    remove_routes(docker, config, &mut removed).await?;
    for role in config.roles.keys() {
        let scope = naming::role_scope(&config.service, role, config.destination.as_deref());
        let mut names: Vec<String> = super::app::list(docker, config, role)
            .await?
            .into_iter()
            .map(|container| container.name)
            .collect();
        names.extend(labelled(docker, super::oneoff::LABEL, &scope).await?);
        for name in names {
            docker::remove_container_force(docker, &name).await?;
            removed.containers.push(name);
        }
        removed
            .volumes
            .extend(super::assets::prune(docker, &scope, true).await?);
    }
    removed.images = remove_images(docker, &config.image).await;
    Ok(removed)
}

/// Remove the app's services from hoist-proxy; the proxy's services (None when it did not
/// answer), other apps' noted in `removed`.
async fn remove_routes(
    docker: &Docker,
    config: &Config,
    removed: &mut Removed,
) -> Result<Option<Vec<hoist_proxy::router::ServiceSummary>>> {
    let ours = proxy::service_names(config);
    let routed = proxy::list(docker).await.ok();
    for service in routed.iter().flatten() {
        if ours.contains(&service.name) {
            proxy::control(docker, &["remove", service.name.as_str()]).await?;
        } else {
            removed.others.push(service.name.clone());
        }
    }
    Ok(routed)
}

/// Names of the containers labelled `label=value`, stopped ones included.
async fn labelled(docker: &Docker, label: &str, value: &str) -> Result<Vec<String>> {
    let filters = docker::label_filter(label, value);
    let listed = docker::list_containers(docker, &filters).await?;
    Ok(listed
        .into_iter()
        .filter_map(|summary| summary.names?.into_iter().next())
        .map(|name| name.trim_start_matches('/').to_string())
        .collect())
}

/// A shell command removing the app's files on a server (`~/.hoist/<scope>`: the release
/// record, the audit log, the lock), and `~/.hoist` itself once empty.
pub fn files_command(config: &Config) -> Result<String> {
    let scope = naming::scope(&config.service, config.destination.as_deref());
    let dir = crate::ssh::quote(&naming::state_dir(&scope))?;
    Ok(format!(
        "rm -rf {dir} && (rmdir .hoist 2>/dev/null || true)"
    ))
}

/// Names of every container labelled with the service, in this destination (the backup agent,
/// which serves every destination, carries none).
async fn containers(docker: &Docker, config: &Config) -> Result<Vec<String>> {
    let filters = docker::label_filter(LABEL_SERVICE, &config.service);
    let listed = docker::list_containers(docker, &filters).await?;
    let destination = config.destination.clone().unwrap_or_default();
    Ok(listed
        .into_iter()
        .filter(|summary| {
            let labels = summary.labels.clone().unwrap_or_default();
            labels.get(LABEL_DESTINATION).cloned().unwrap_or_default() == destination
                || !labels.contains_key(LABEL_DESTINATION)
        })
        .filter_map(|summary| summary.names?.into_iter().next())
        .map(|name| name.trim_start_matches('/').to_string())
        .collect())
}

/// The named volumes the app's containers mount: its accessories' (`name:/path`, not host
/// paths) and the backup agent's state.
fn volumes(config: &Config) -> Vec<String> {
    let mut volumes: Vec<String> = config
        .accessories
        .values()
        .flat_map(|accessory| &accessory.volumes)
        .filter_map(|volume| volume.split_once(':').map(|(source, _)| source))
        .filter(|source| !source.starts_with('/') && !source.starts_with('.'))
        .map(str::to_string)
        .collect();
    if config.accessories.values().any(|a| a.backup.is_some()) {
        volumes.push(naming::backup_container(&config.service));
    }
    volumes.sort();
    volumes.dedup();
    volumes
}

/// Remove every tag of `repository` (`registry/name`, or an image reference whose tag is
/// ignored); how many went. An image another container still uses stays.
async fn remove_images(docker: &Docker, repository: &str) -> usize {
    let repository = match repository.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => repository,
    };
    let filters = HashMap::from([("reference".to_string(), vec![repository.to_string()])]);
    let Ok(images) = docker
        .list_images(Some(
            ListImagesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
    else {
        return 0;
    };
    let mut count = 0;
    for image in images {
        for tag in &image.repo_tags {
            let options = RemoveImageOptionsBuilder::new().build();
            if docker.remove_image(tag, Some(options), None).await.is_ok() {
                count += 1;
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_named_volumes_of_accessories_are_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("deploy.toml"),
            "service = \"shop\"\nimage = \"r/shop\"\n[servers.web]\nhosts = [\"10.0.0.1\"]\n\
             [accessories.db]\nimage = \"postgres:15\"\nhosts = [\"10.0.0.1\"]\n\
             volumes = [\"db-data:/var/lib/postgresql/data\", \"/srv/db:/backup\", \
             \"./conf:/etc/conf\"]\n",
        )
        .expect("write");
        let config =
            crate::config::load(Some(&dir.path().join("deploy.toml")), None).expect("loads");
        assert_eq!(volumes(&config), ["db-data"]);
    }
}
