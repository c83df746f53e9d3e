//! Pulling an image into an engine, with registry credentials passed per call (nothing is stored
//! on the server) and progress reported per layer as the engine streams it.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use crate::report::HintExt;

/// Bytes done and total over the layers seen so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct PullProgress {
    pub layers: usize,
    pub layers_done: usize,
    pub current: u64,
    pub total: u64,
}

impl std::fmt::Display for PullProgress {
    /// `3/5 layers, 12.0/40.2 MB`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} layers, {:.1}/{:.1} MB",
            self.layers_done,
            self.layers,
            self.current as f64 / 1e6,
            self.total as f64 / 1e6
        )
    }
}

/// Pull `image` (`repo:tag`) into `docker`, calling `on_progress` as layers advance.
pub async fn pull(
    docker: &Docker,
    image: &str,
    credentials: Option<DockerCredentials>,
    mut on_progress: impl FnMut(PullProgress),
) -> Result<()> {
    let (repository, tag) = split_reference(image);
    let options = CreateImageOptionsBuilder::new()
        .from_image(repository)
        .tag(tag)
        .build();
    let mut stream = docker.create_image(Some(options), None, credentials);
    let mut layers: HashMap<String, (u64, u64, bool)> = HashMap::new();
    while let Some(item) = stream.next().await {
        let info = item
            .with_context(|| format!("Failed to pull `{image}`"))
            .hint("check the image name and tag, and the `[registry]` credentials")?;
        if let Some(detail) = info.error_detail {
            return Err(anyhow!(detail.message.unwrap_or_default()))
                .with_context(|| format!("Failed to pull `{image}`"));
        }
        if let Some(id) = info.id {
            let entry = layers.entry(id).or_default();
            if let Some(detail) = info.progress_detail {
                entry.0 = detail.current.unwrap_or(0).max(0) as u64;
                entry.1 = detail.total.unwrap_or(0).max(0) as u64;
            }
            if matches!(
                info.status.as_deref(),
                Some("Pull complete" | "Already exists" | "Download complete")
            ) {
                entry.2 = true;
            }
            on_progress(PullProgress {
                layers: layers.len(),
                layers_done: layers.values().filter(|l| l.2).count(),
                current: layers.values().map(|l| l.0).sum(),
                total: layers.values().map(|l| l.1).sum(),
            });
        }
    }
    Ok(())
}

/// `registry:5000/app:v1` → (`registry:5000/app`, `v1`); no tag means `latest`. A digest
/// (`app@sha256:…`) is passed whole as the repository.
fn split_reference(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(colon) => (
            &image[..name_start + colon],
            &image[name_start + colon + 1..],
        ),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn references_split_at_the_tag_not_the_registry_port() {
        assert_eq!(
            split_reference("10.0.0.2:5000/app:v1"),
            ("10.0.0.2:5000/app", "v1")
        );
        assert_eq!(
            split_reference("10.0.0.2:5000/app"),
            ("10.0.0.2:5000/app", "latest")
        );
        assert_eq!(split_reference("postgres:16"), ("postgres", "16"));
    }
}
