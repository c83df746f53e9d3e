//! Retention on one server: keep the newest `retain_containers` stopped containers of a role
//! (the versions `hoist rollback` can return to) and remove older ones, then their images and
//! asset volumes once no container uses them.

use std::collections::HashSet;

use anyhow::Result;
use bollard::Docker;
use bollard::query_parameters::RemoveImageOptionsBuilder;

use super::app::{self, AppContainer};
use crate::config::Config;

/// What a prune removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub containers: Vec<String>,
    pub images: Vec<String>,
    /// Asset volumes (`asset_path`) no container uses any more.
    pub asset_volumes: Vec<String>,
}

/// Remove stopped containers of `role` beyond the newest `config.retain_containers`, and the
/// images only they used. `stopping` (ids) count as stopped: they are being stopped meanwhile.
pub async fn prune(
    docker: &Docker,
    config: &Config,
    role: &str,
    stopping: &[String],
) -> Result<Pruned> {
    let mut containers = app::list(docker, config, role).await?;
    for container in &mut containers {
        if stopping.contains(&container.id) {
            container.running = false;
        }
    }
    let (keep, old) = split(&containers, config.retain_containers as usize);
    let mut pruned = Pruned::default();
    for container in &old {
        app::remove(docker, &container.name).await?;
        pruned.containers.push(container.name.clone());
    }
    let kept_versions: HashSet<&str> = keep.iter().map(|c| c.version.as_str()).collect();
    for container in &old {
        if kept_versions.contains(container.version.as_str()) {
            continue;
        }
        let image = format!("{}:{}", config.image, container.version);
        // An image still used elsewhere (another role, another destination) is refused with
        // 409 and stays: that is fine.
        match docker
            .remove_image(&image, Some(RemoveImageOptionsBuilder::new().build()), None)
            .await
        {
            Ok(_) => pruned.images.push(image),
            Err(err) => tracing::debug!(%image, error = %err, "image kept"),
        }
    }
    if !old.is_empty() && super::assets::path(config, role).is_some() {
        let scope = crate::naming::role_scope(&config.service, role, config.destination.as_deref());
        pruned.asset_volumes = super::assets::prune(docker, &scope, false).await?;
    }
    Ok(pruned)
}

/// (kept, removed): running containers and the newest `retain` stopped ones are kept.
fn split(containers: &[AppContainer], retain: usize) -> (Vec<&AppContainer>, Vec<&AppContainer>) {
    let mut keep = Vec::new();
    let mut old = Vec::new();
    let mut stopped = 0;
    for container in containers {
        if container.running {
            keep.push(container);
        } else if stopped < retain {
            stopped += 1;
            keep.push(container);
        } else {
            old.push(container);
        }
    }
    (keep, old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(version: &str, running: bool, created: i64) -> AppContainer {
        AppContainer {
            id: format!("id-{version}"),
            name: format!("hello-web-{version}"),
            version: version.into(),
            running,
            state: if running { "running" } else { "exited" }.into(),
            created,
        }
    }

    #[test]
    fn keeps_running_containers_and_the_newest_stopped_ones() {
        // Newest first, as app::list returns them.
        let containers = vec![
            container("v7", true, 7),
            container("v6", false, 6),
            container("v5", false, 5),
            container("v4", false, 4),
            container("v3", false, 3),
        ];
        let (keep, old) = split(&containers, 2);
        let kept: Vec<&str> = keep.iter().map(|c| c.version.as_str()).collect();
        let removed: Vec<&str> = old.iter().map(|c| c.version.as_str()).collect();
        assert_eq!(kept, ["v7", "v6", "v5"]);
        assert_eq!(removed, ["v4", "v3"]);
    }
}
