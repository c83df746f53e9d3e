//! The Docker Engine API, through bollard: connecting to an engine (with API version negotiation)
//! and the few compound operations hoist needs everywhere: upload files into a container, run a
//! command in one and collect its output, check an image exists. Engines on servers are reached the
//! same way through ssh_transport.rs; what to do with them lives in the callers.

pub mod attach;
mod pull;
pub mod ssh_transport;

pub use pull::pull;

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{LogsOptionsBuilder, UploadToContainerOptionsBuilder};
use futures_util::StreamExt;

use crate::report::HintExt;

/// Connect to the engine on this machine (`DOCKER_HOST`, else the local unix socket) and agree
/// on an API version.
pub async fn connect_local() -> Result<Docker> {
    let docker = Docker::connect_with_defaults()
        .context("Failed to set up a connection to the local Docker engine")?;
    let docker = docker
        .negotiate_version()
        .await
        .context("Failed to reach the local Docker engine")
        .hint("start it (`dockerd &`, `systemctl start docker`) or point DOCKER_HOST at one")?;
    tracing::debug!(api_version = %docker.client_version(), "connected to the local Docker engine");
    Ok(docker)
}

/// One file to place in a container.
pub struct FileSpec {
    /// Absolute path inside the container.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
    /// Owner (user and group id); root by default.
    pub owner: u64,
}

/// The path and size only: a file's contents may be a secret.
impl std::fmt::Debug for FileSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSpec")
            .field("path", &self.path)
            .field("bytes", &self.contents.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

impl FileSpec {
    pub fn new(path: impl Into<String>, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        Self {
            path: path.into(),
            contents: contents.into(),
            mode,
            owner: 0,
        }
    }

    /// The same file owned by user and group `id`.
    pub fn owned_by(self, id: u64) -> Self {
        Self { owner: id, ..self }
    }
}

/// A tar archive holding `files`, each with its owner (root unless said). Missing parent
/// directories are created 0755 by the engine when it unpacks; `private_dirs` (absolute) are
/// created 0700 instead.
pub fn tar_files(files: &[FileSpec], private_dirs: &[&str]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in private_dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o700);
        header.set_size(0);
        builder
            .append_data(
                &mut header,
                format!("{}/", dir.trim_start_matches('/')),
                std::io::empty(),
            )
            .context("Failed to build a tar archive")?;
    }
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(file.mode);
        header.set_uid(file.owner);
        header.set_gid(file.owner);
        header.set_size(file.contents.len() as u64);
        builder
            .append_data(
                &mut header,
                file.path.trim_start_matches('/'),
                file.contents.as_slice(),
            )
            .context("Failed to build a tar archive")?;
    }
    builder
        .into_inner()
        .context("Failed to build a tar archive")
}

/// Place files into a container (created or running) at their absolute paths.
pub async fn upload_files(
    docker: &Docker,
    container: &str,
    files: &[FileSpec],
    private_dirs: &[&str],
) -> Result<()> {
    let archive = tar_files(files, private_dirs)?;
    docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptionsBuilder::new().path("/").build()),
            bollard::body_full(archive.into()),
        )
        .await
        .with_context(|| format!("Failed to copy files into container `{container}`"))
}

/// What a command run with [`exec`] printed, and how it ended.
#[derive(Debug)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Run a command in a running container and collect its output.
pub async fn exec(docker: &Docker, container: &str, cmd: &[&str]) -> Result<ExecOutput> {
    let exec = create_exec(docker, container, cmd, &[]).await?;
    collect(docker, &exec, true).await
}

/// Run a command in a running container and collect its output without asking for its exit
/// status (`exit_code` is -1): a round trip less, for commands whose output says whether they
/// worked (`list --json` prints JSON or fails).
pub async fn exec_output(docker: &Docker, container: &str, cmd: &[&str]) -> Result<ExecOutput> {
    let exec = create_exec(docker, container, cmd, &[]).await?;
    collect(docker, &exec, false).await
}

/// Which stream a chunk of exec or log output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStream {
    Stdout,
    Stderr,
}

/// Run a command in a running container, handing output to `sink` as it arrives; returns the
/// exit code.
pub async fn exec_streaming(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    sink: impl FnMut(ExecStream, &[u8]),
) -> Result<i64> {
    let exec = create_exec(docker, container, cmd, &[]).await?;
    start_exec(docker, &exec, true, sink).await
}

/// Output of a container (logs, exec) to this process's stdout or stderr, as it came.
pub fn write_output(stream: ExecStream, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    match stream {
        ExecStream::Stdout => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(data);
            let _ = out.flush();
        }
        ExecStream::Stderr => {
            let _ = std::io::stderr().write_all(data);
        }
    }
}

/// The last `lines` lines a container logged (stdout and stderr, the app's and the engine's
/// order), handed to `sink` as they arrive.
pub async fn logs(
    docker: &Docker,
    container: &str,
    lines: usize,
    sink: impl FnMut(ExecStream, &[u8]),
) -> Result<()> {
    let query = LogQuery {
        tail: Some(lines),
        ..LogQuery::default()
    };
    read_log(docker, container, query, false, sink).await
}

/// The part of a container's log `query` asks for, as Docker sends it (with its timestamps in
/// front of each line when `timestamps`), handed to `sink` chunk by chunk with its stream.
pub async fn read_log(
    docker: &Docker,
    container: &str,
    query: LogQuery,
    timestamps: bool,
    mut sink: impl FnMut(ExecStream, &[u8]),
) -> Result<()> {
    let mut options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .timestamps(timestamps)
        .follow(query.follow);
    if let Some(tail) = query.tail {
        options = options.tail(&tail.to_string());
    }
    if let Some(since) = query.since {
        options = options.since(i32::try_from(since).unwrap_or(i32::MAX));
    }
    let mut stream = docker.logs(container, Some(options.build()));
    while let Some(item) = stream.next().await {
        match item.with_context(|| format!("Failed to read the logs of `{container}`"))? {
            bollard::container::LogOutput::StdErr { message } => sink(ExecStream::Stderr, &message),
            bollard::container::LogOutput::StdOut { message }
            | bollard::container::LogOutput::Console { message } => {
                sink(ExecStream::Stdout, &message)
            }
            bollard::container::LogOutput::StdIn { .. } => {}
        }
    }
    Ok(())
}

/// Container output on its way to this process's stdout and stderr, each line prefixed (with
/// the host, when several hosts speak at once); call [`PrefixedOutput::finish`] at the end for a
/// last line without its newline.
pub struct PrefixedOutput {
    out: crate::printer::LinePrefixer,
    err: crate::printer::LinePrefixer,
}

impl PrefixedOutput {
    pub fn new(prefix: Option<String>) -> Self {
        Self {
            out: crate::printer::LinePrefixer::new(prefix.clone()),
            err: crate::printer::LinePrefixer::new(prefix),
        }
    }

    /// Writes the complete lines of `data` from `stream`.
    pub fn write(&mut self, stream: ExecStream, data: &[u8]) {
        match stream {
            ExecStream::Stdout => write_output(stream, &self.out.push(data)),
            ExecStream::Stderr => write_output(stream, &self.err.push(data)),
        }
    }

    /// Writes what is held back of a last line.
    pub fn finish(&mut self) {
        write_output(ExecStream::Stdout, &self.out.finish());
        write_output(ExecStream::Stderr, &self.err.finish());
    }
}

/// Which part of a container's log [`log_lines`] reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogQuery {
    /// Lines from the end (`None`: all).
    pub tail: Option<usize>,
    /// Only lines since this Unix time.
    pub since: Option<i64>,
    /// Keep reading until the container stops.
    pub follow: bool,
}

/// A container's log, line by line, each with Docker's timestamp in front (`2026-…Z text`),
/// handed to `sink` with the stream it came on.
pub async fn log_lines(
    docker: &Docker,
    container: &str,
    query: LogQuery,
    mut sink: impl FnMut(ExecStream, &str),
) -> Result<()> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    fn emit(
        stream: ExecStream,
        buffer: &mut Vec<u8>,
        data: &[u8],
        sink: &mut dyn FnMut(ExecStream, &str),
    ) {
        buffer.extend_from_slice(data);
        while let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            sink(
                stream,
                String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r'),
            );
        }
    }
    read_log(
        docker,
        container,
        query,
        true,
        |stream, data| match stream {
            ExecStream::Stdout => emit(stream, &mut out, data, &mut sink),
            ExecStream::Stderr => emit(stream, &mut err, data, &mut sink),
        },
    )
    .await?;
    for (stream, rest) in [(ExecStream::Stdout, out), (ExecStream::Stderr, err)] {
        if !rest.is_empty() {
            sink(stream, String::from_utf8_lossy(&rest).trim_end());
        }
    }
    Ok(())
}

/// An exec created in a container and not started yet: creating it ahead saves its round trip
/// when it runs.
#[derive(Debug, Clone)]
pub struct Exec {
    id: String,
    container: String,
    /// The command, for messages.
    command: String,
}

/// Create (not start) `cmd` in `container`, with extra environment `env` (`NAME=value`).
pub async fn create_exec(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    env: &[String],
) -> Result<Exec> {
    create_exec_with(docker, container, cmd, env, None).await
}

/// Create (not start) `cmd` in `container` with its stdin attached, and a TTY with `tty`, for
/// [`attach::converse`].
pub async fn create_interactive_exec(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    env: &[String],
    tty: bool,
) -> Result<Exec> {
    create_exec_with(docker, container, cmd, env, Some(tty)).await
}

/// `interactive`: `None` for output only, `Some(tty)` for stdin attached too.
async fn create_exec_with(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    env: &[String],
    interactive: Option<bool>,
) -> Result<Exec> {
    let command = cmd.join(" ");
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                env: (!env.is_empty()).then(|| env.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                attach_stdin: interactive.map(|_| true),
                tty: interactive,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("Failed to run `{command}` in `{container}`"))?;
    Ok(Exec {
        id: created.id,
        container: container.to_string(),
        command,
    })
}

impl Exec {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The command and its container, for messages.
    pub fn describe(&self) -> String {
        format!("`{}` in `{}`", self.command, self.container)
    }
}

/// The exit code of `exec` once it has stopped (its output has ended; the engine may take a
/// moment more to record the exit).
pub async fn exec_exit_code(docker: &Docker, exec: &Exec) -> Result<i64> {
    for _ in 0..100 {
        let inspected = docker
            .inspect_exec(&exec.id)
            .await
            .with_context(|| format!("Failed to inspect {}", exec.describe()))?;
        if !inspected.running.unwrap_or(false) {
            return Ok(inspected.exit_code.unwrap_or(-1));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!("{} still runs after its output ended", exec.describe())
}

/// Start `exec`, hand its output to `sink`, and return its exit code (-1 without `status`).
pub async fn start_exec(
    docker: &Docker,
    exec: &Exec,
    status: bool,
    mut sink: impl FnMut(ExecStream, &[u8]),
) -> Result<i64> {
    let Exec {
        id,
        container,
        command,
    } = exec;
    if let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(id, None)
        .await
        .with_context(|| format!("Failed to run `{command}` in `{container}`"))?
    {
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(bollard::container::LogOutput::StdOut { message }) => {
                    sink(ExecStream::Stdout, &message)
                }
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    sink(ExecStream::Stderr, &message)
                }
                Ok(_) => {}
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!("Lost the output of `{command}` in `{container}`")
                    });
                }
            }
        }
    }
    if !status {
        return Ok(-1);
    }
    exec_exit_code(docker, exec).await
}

/// Run an exec created with [`create_exec`] and collect its output and exit code.
pub async fn run_created(docker: &Docker, exec: &Exec) -> Result<ExecOutput> {
    collect(docker, exec, true).await
}

/// Start `exec` and collect its output (and, with `status`, its exit code; -1 without).
async fn collect(docker: &Docker, exec: &Exec, status: bool) -> Result<ExecOutput> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let exit_code = start_exec(docker, exec, status, |stream, data| match stream {
        ExecStream::Stdout => stdout.extend_from_slice(data),
        ExecStream::Stderr => stderr.extend_from_slice(data),
    })
    .await?;
    Ok(ExecOutput {
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Whether an image with this reference exists in the engine.
pub async fn image_exists(docker: &Docker, reference: &str) -> Result<bool> {
    match docker.inspect_image(reference).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(err) => Err(err).with_context(|| format!("Failed to inspect image `{reference}`")),
    }
}

/// Remove a container whether or not it runs, with its anonymous volumes; gone already is fine.
pub async fn remove_container_force(docker: &Docker, container: &str) -> Result<()> {
    ignore_not_found(
        docker
            .remove_container(
                container,
                Some(
                    bollard::query_parameters::RemoveContainerOptionsBuilder::new()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await,
    )
    .with_context(|| format!("Failed to remove container `{container}`"))
}

/// Every container `filters` (Docker's list filters) match, running or not.
pub async fn list_containers(
    docker: &Docker,
    filters: &HashMap<String, Vec<String>>,
) -> Result<Vec<bollard::models::ContainerSummary>> {
    docker
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::new()
                .all(true)
                .filters(filters)
                .build(),
        ))
        .await
        .context("Failed to list containers")
}

/// A `label=value` filter for list calls.
pub fn label_filter(label: &str, value: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{label}={value}")])])
}

/// Treat "no such object" as success when removing things.
pub fn ignore_not_found(
    result: Result<(), bollard::errors::Error>,
) -> Result<(), bollard::errors::Error> {
    match result {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        other => other,
    }
}

/// Host settings every container hoist runs for good shares (app, proxy, accessories): restart
/// `unless-stopped`, on the `hoist` network. Extend with `..long_running()`.
pub fn long_running() -> bollard::models::HostConfig {
    bollard::models::HostConfig {
        restart_policy: Some(bollard::models::RestartPolicy {
            name: Some(bollard::models::RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        network_mode: Some(crate::naming::NETWORK.to_string()),
        ..Default::default()
    }
}

/// The `hoist` network, created if missing.
pub async fn ensure_network(docker: &Docker) -> Result<()> {
    if docker
        .inspect_network(crate::naming::NETWORK, None)
        .await
        .is_ok()
    {
        return Ok(());
    }
    match docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: crate::naming::NETWORK.to_string(),
            driver: Some("bridge".into()),
            ..Default::default()
        })
        .await
    {
        Ok(_) => Ok(()),
        // Created meanwhile by another command.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(err) => Err(err).context("Failed to create the `hoist` Docker network"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_holds_parents_and_modes() {
        let archive = tar_files(
            &[
                FileSpec::new("/root/.ssh/authorized_keys", "key", 0o600),
                FileSpec::new("/root/.ssh/other", "x", 0o644),
            ],
            &["/root/.ssh"],
        )
        .expect("tar");
        let mut reader = tar::Archive::new(archive.as_slice());
        let entries: Vec<(String, u32)> = reader
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.path().expect("path").display().to_string(),
                    e.header().mode().expect("mode"),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("root/.ssh/".to_string(), 0o700),
                ("root/.ssh/authorized_keys".to_string(), 0o600),
                ("root/.ssh/other".to_string(), 0o644),
            ]
        );
    }
}
