//! A named volume's files: a tar of the accessory's mount point from Docker's archive API,
//! with the accessory stopped meanwhile (`consistency = "stop"`, the default) or running
//! (`"live"`). Put back by stopping the accessory, emptying the volume in a helper container
//! of the agent's image, extracting the tar through the archive API, and starting it again.

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::TryStreamExt;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use super::{Job, say};
use crate::dock;
use crate::manifest::{Manifest, Part};
use crate::pipeline;
use crate::spec::Consistency;

pub async fn backup(job: &Job<'_>, path: &str, consistency: Consistency) -> Result<Vec<Part>> {
    let stopped = match consistency {
        Consistency::Stop => stop(job.docker, job.container).await?,
        Consistency::Live => false,
    };
    let result = async {
        say(format!("{}: reading {path}", job.accessory));
        let tar = job
            .docker
            .download_from_container(
                job.container,
                Some(
                    DownloadFromContainerOptionsBuilder::new()
                        .path(path)
                        .build(),
                ),
            )
            .map_err(std::io::Error::other);
        let mut reader = StreamReader::new(Box::pin(tar));
        let pending = pipeline::upload(
            job.store,
            job.id,
            "files",
            "files.tar.zst",
            &mut reader,
            job.level,
            job.key,
        )
        .await?;
        pending.commit(job.store).await
    }
    .await;
    if stopped {
        start(job.docker, job.container).await?;
    }
    Ok(vec![result?])
}

pub async fn restore(job: &Job<'_>, manifest: &Manifest, volume: &str, path: &str) -> Result<()> {
    let part = manifest
        .part("files")
        .with_context(|| format!("Backup {} has no `files` part", manifest.id))?;
    let was_running = stop(job.docker, job.container).await?;
    say(format!("{}: emptying volume `{volume}`", job.accessory));
    let wiped = dock::run_helper(
        job.docker,
        &format!("{}-backup-wipe", job.container),
        job.agent_image,
        &["hoist-backup", "wipe", "/volume"],
        vec![format!("{volume}:/volume")],
    )
    .await?;
    if !wiped.ok() {
        bail!("emptying volume `{volume}` {}", wiped.describe());
    }
    say(format!("{}: writing the files back", job.accessory));
    let reader = pipeline::download(job.store, &manifest.id, part, job.key).await?;
    let parent = match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((parent, _)) => parent.to_string(),
    };
    job.docker
        .upload_to_container(
            job.container,
            Some(UploadToContainerOptionsBuilder::new().path(&parent).build()),
            bollard::body_try_stream(ReaderStream::new(reader)),
        )
        .await
        .with_context(|| format!("Writing the files into `{}` failed", job.container))?;
    if was_running {
        start(job.docker, job.container).await?;
    }
    Ok(())
}

/// Read the tar back whole and count its entries.
pub async fn verify(job: &Job<'_>, manifest: &Manifest) -> Result<String> {
    let part = manifest
        .part("files")
        .with_context(|| format!("Backup {} has no `files` part", manifest.id))?;
    let reader = pipeline::download(job.store, &manifest.id, part, job.key).await?;
    let bridge = SyncIoBridge::new(reader);
    let (files, bytes) = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
        let mut archive = tar::Archive::new(bridge);
        let mut files = 0;
        let mut bytes = 0;
        for entry in archive.entries().context("not a tar archive")? {
            let mut entry = entry.context("a damaged tar entry")?;
            bytes += std::io::copy(&mut entry, &mut std::io::sink())?;
            files += 1;
        }
        // Drain the padding so the stream reaches its end and the checksum check runs.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink())?;
        Ok((files, bytes))
    })
    .await
    .context("the tar reader stopped")??;
    Ok(format!(
        "read back: {files} entries, {bytes} bytes of file data"
    ))
}

/// Stop `container` if it runs; whether it did.
async fn stop(docker: &Docker, container: &str) -> Result<bool> {
    let inspected = docker
        .inspect_container(container, None)
        .await
        .with_context(|| format!("Failed to inspect `{container}`"))?;
    if inspected.state.and_then(|s| s.running) != Some(true) {
        return Ok(false);
    }
    say(format!("stopping {container}"));
    docker
        .stop_container(
            container,
            Some(StopContainerOptionsBuilder::new().t(30).build()),
        )
        .await
        .with_context(|| format!("Failed to stop `{container}`"))?;
    Ok(true)
}

async fn start(docker: &Docker, container: &str) -> Result<()> {
    say(format!("starting {container}"));
    docker
        .start_container(container, None)
        .await
        .with_context(|| format!("Failed to start `{container}` again"))
}

/// Used by `hoist-backup wipe DIR`: remove everything inside `dir`, keeping `dir`.
pub fn wipe(dir: &std::path::Path) -> Result<()> {
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("Can't read `{}`", dir.display()))?
    {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("Can't remove `{}`", path.display()))?;
    }
    Ok(())
}
