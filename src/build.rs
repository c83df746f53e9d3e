//! Building the app image and delivering it to the registry, through the local Docker Engine
//! API: the build context is the files git knows in `builder.context` (so ignored files, and
//! `.hoist/` with the secrets, never leave the machine), built from `[builder]` settings, tagged
//! `image:version` with the `service` label, and pushed with the registry credentials passed per
//! call. Before any server is touched, [`check_pushed`] asks the registry, through the local
//! engine, for the image: wrong credentials or a missing tag fail there, with the registry's
//! own message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{BuildImageOptionsBuilder, PushImageOptionsBuilder};
use futures_util::StreamExt;

use crate::config::Config;
use crate::naming::LABEL_SERVICE;
use crate::report::{HintExt, hinted};

/// Build `image:version` from the configuration's `[builder]`; `on_line` gets the builder's
/// output line by line.
pub async fn build(
    docker: &Docker,
    config: &Config,
    version: &str,
    mut on_line: impl FnMut(&str),
) -> Result<()> {
    let builder = &config.builder;
    if !builder.secrets.is_empty() {
        return Err(hinted(
            "`builder.secrets` needs BuildKit, and hoist builds with the Engine API's classic \
             builder for now",
            "build the image yourself (`docker buildx build --secret …`), push it, and deploy \
             it with `hoist deploy --version V --skip-build`",
        ));
    }
    let platform = match builder.arch.as_slice() {
        [] => None,
        [arch] => Some(arch.platform()),
        _ => {
            return Err(hinted(
                "A multi-platform image (`builder.arch` lists several) needs buildx",
                "build and push it with `docker buildx build --platform …`, then deploy it with \
                 `hoist deploy --version V --skip-build`",
            ));
        }
    };
    let context_dir = &builder.context;
    let dockerfile = builder.dockerfile.to_string_lossy().into_owned();
    if !context_dir.join(&builder.dockerfile).is_file() {
        return Err(hinted(
            format!(
                "No Dockerfile at `{}`",
                context_dir.join(&builder.dockerfile).display()
            ),
            "set `builder.dockerfile` (relative to `builder.context`) in deploy.toml",
        ));
    }
    let files = context_files(context_dir)?;
    let archive = tar_context(context_dir, &files)?;
    tracing::debug!(
        files = files.len(),
        bytes = archive.len(),
        "build context ready"
    );

    let tag = format!("{}:{version}", config.image);
    let labels = HashMap::from([(LABEL_SERVICE.to_string(), config.service.clone())]);
    let mut options = BuildImageOptionsBuilder::new()
        .t(&tag)
        .dockerfile(&dockerfile)
        .buildargs(&builder.args.clone().into_iter().collect())
        .labels(&labels)
        .rm(true)
        .forcerm(true);
    if let Some(target) = &builder.target {
        options = options.target(target);
    }
    if let Some(platform) = platform {
        options = options.platform(platform);
    }
    let mut stream = docker.build_image(
        options.build(),
        None,
        Some(bollard::body_full(archive.into())),
    );
    let mut last_lines: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item
            .map_err(|err| anyhow!(docker_message(&err)))
            .with_context(|| format!("Failed to build `{tag}`"))?;
        if let Some(text) = &info.stream {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                on_line(line);
                last_lines.push(line.to_string());
                if last_lines.len() > 10 {
                    last_lines.remove(0);
                }
            }
        }
        if let Some(detail) = info.error_detail {
            let message = detail.message.unwrap_or_default();
            return Err(anyhow!(
                "{message}\n\nLast build output:\n  {}",
                last_lines.join("\n  ")
            ))
            .with_context(|| format!("Failed to build `{tag}` from `{}`", context_dir.display()));
        }
    }
    Ok(())
}

/// Push `image:version`, reporting the number of layers done as they finish (the engine's push
/// stream doesn't say which layer a progress line is about).
pub async fn push(
    docker: &Docker,
    image: &str,
    version: &str,
    credentials: Option<DockerCredentials>,
    mut on_progress: impl FnMut(usize),
) -> Result<()> {
    let options = PushImageOptionsBuilder::new().tag(version).build();
    let mut stream = docker.push_image(image, Some(options), credentials);
    let mut layers_done = 0;
    while let Some(item) = stream.next().await {
        let info = item
            .map_err(|err| anyhow!(docker_message(&err)))
            .with_context(|| format!("Failed to push `{image}:{version}`"))
            .hint("check `[registry]` in deploy.toml and the password secret")?;
        if let Some(detail) = info.error_detail {
            return Err(anyhow!(detail.message.unwrap_or_default()))
                .with_context(|| format!("Failed to push `{image}:{version}`"))
                .hint("check `[registry]` in deploy.toml and the password secret");
        }
        if matches!(
            info.status.as_deref(),
            Some("Pushed" | "Layer already exists" | "Mounted from")
        ) {
            layers_done += 1;
            on_progress(layers_done);
        }
    }
    Ok(())
}

/// Ask the registry, through the local engine, whether `reference` exists and the credentials
/// may read it. Fails with the registry's message (unauthorized, unknown manifest).
pub async fn check_pushed(
    docker: &Docker,
    reference: &str,
    credentials: Option<DockerCredentials>,
) -> Result<()> {
    docker
        .inspect_registry_image(reference, credentials)
        .await
        .map(|_| ())
        .map_err(|err| anyhow!(docker_message(&err)))
        .with_context(|| format!("The registry refused `{reference}`"))
        .hint(
            "check `[registry]` in deploy.toml and its password secret; with `--skip-build`, \
             the version must already be pushed",
        )
}

/// The engine's own message for a server error, without bollard's wrapping.
pub fn docker_message(err: &bollard::errors::Error) -> String {
    match err {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The files of the build context, relative to `dir`: what git tracks or would track there
/// (`.gitignore` honoured), or every file outside a git repository. `.git/` and `.hoist/` (the
/// secrets) are never included.
fn context_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .context("Failed to run `git ls-files`")?;
    let mut files: Vec<PathBuf> = if output.status.success() {
        output
            .stdout
            .split(|b| *b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
            .collect()
    } else {
        let mut files = Vec::new();
        walk(dir, Path::new(""), &mut files)?;
        files
    };
    files.retain(|path| {
        let first = path.components().next();
        !matches!(first, Some(c) if c.as_os_str() == ".hoist" || c.as_os_str() == ".git")
            // Deleted but still tracked: nothing to send.
            && dir.join(path).symlink_metadata().is_ok()
    });
    files.sort();
    Ok(files)
}

fn walk(root: &Path, relative: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(relative);
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("Failed to list `{}`", dir.display()))?
    {
        let entry = entry.with_context(|| format!("Failed to list `{}`", dir.display()))?;
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            walk(root, &path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

fn tar_context(dir: &Path, files: &[PathBuf]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    for file in files {
        builder
            .append_path_with_name(dir.join(file), file)
            .with_context(|| format!("Failed to add `{}` to the build context", file.display()))?;
    }
    builder
        .into_inner()
        .context("Failed to pack the build context")
}
