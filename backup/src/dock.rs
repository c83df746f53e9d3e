//! The server's Docker engine as the agent uses it, over the socket mounted into its container:
//! commands run inside accessories with their output streamed out ([`exec_reader`]) or their
//! input streamed in ([`exec_writer`]), and throwaway helper containers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptions,
};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio_util::io::StreamReader;

use crate::spec::HELPER_LABEL;

/// The most of a command's stderr kept for messages.
const STDERR_TAIL: usize = 8 * 1024;

pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_unix_defaults()
        .context("Can't reach the Docker engine through /var/run/docker.sock")?;
    docker
        .ping()
        .await
        .context("The Docker engine at /var/run/docker.sock does not answer")?;
    Ok(docker)
}

/// How a command ended.
pub struct Ended {
    pub code: i64,
    /// The end of what it printed on stderr (and, for [`exec_writer`] and [`capture`], stdout).
    pub output: String,
}

impl Ended {
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// "exited with status 1: pg_dump: error: …"
    pub fn describe(&self) -> String {
        let output = self.output.trim();
        if output.is_empty() {
            format!("exited with status {}", self.code)
        } else {
            format!("exited with status {}: {output}", self.code)
        }
    }
}

/// A command running in a container, its stdout to be read.
pub struct Running {
    pub stdout: Box<dyn AsyncRead + Unpin + Send>,
    id: String,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Running {
    /// Wait for it to end (after its stdout was read to the end).
    pub async fn ended(self, docker: &Docker) -> Result<Ended> {
        let code = exit_code(docker, &self.id).await?;
        let output = tail(&self.stderr.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(Ended { code, output })
    }
}

async fn create(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    env: &[String],
    stdin: bool,
) -> Result<String> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                env: (!env.is_empty()).then(|| env.to_vec()),
                attach_stdin: Some(stdin),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("Failed to run `{}` in `{container}`", cmd.join(" ")))?;
    Ok(created.id)
}

async fn exit_code(docker: &Docker, id: &str) -> Result<i64> {
    let inspected = docker
        .inspect_exec(id)
        .await
        .context("Failed to read a command's exit status")?;
    Ok(inspected.exit_code.unwrap_or(-1))
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn push_bounded(buffer: &Mutex<Vec<u8>>, bytes: &[u8]) {
    let mut buffer = buffer.lock().unwrap_or_else(|e| e.into_inner());
    buffer.extend_from_slice(bytes);
    if buffer.len() > 4 * STDERR_TAIL {
        let cut = buffer.len() - STDERR_TAIL;
        buffer.drain(..cut);
    }
}

/// Start `cmd` in `container`; its stdout streams, its stderr is kept.
pub async fn exec_reader(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    env: &[String],
) -> Result<Running> {
    let id = create(docker, container, cmd, env, false).await?;
    let StartExecResults::Attached { output, .. } = docker
        .start_exec(&id, None::<StartExecOptions>)
        .await
        .with_context(|| format!("Failed to start `{}` in `{container}`", cmd.join(" ")))?
    else {
        anyhow::bail!("Docker ran `{}` detached", cmd.join(" "));
    };
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let kept = stderr.clone();
    let stdout = output.filter_map(move |chunk| {
        let kept = kept.clone();
        async move {
            match chunk {
                Ok(LogOutput::StdOut { message }) => Some(Ok(message)),
                Ok(LogOutput::StdErr { message }) => {
                    push_bounded(&kept, &message);
                    None
                }
                Ok(_) => None,
                Err(err) => Some(Err(std::io::Error::other(err))),
            }
        }
    });
    Ok(Running {
        stdout: Box::new(StreamReader::new(Box::pin(stdout))),
        id,
        stderr,
    })
}

/// Run `cmd` in `container` with `input` as its stdin, closed at the input's end. An input
/// that fails midway is an error (the command sees its stdin end early).
pub async fn exec_writer(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    env: &[String],
    mut input: impl AsyncRead + Unpin,
) -> Result<Ended> {
    let id = create(docker, container, cmd, env, true).await?;
    let StartExecResults::Attached {
        mut output,
        input: mut stdin,
    } = docker
        .start_exec(&id, None::<StartExecOptions>)
        .await
        .with_context(|| format!("Failed to start `{}` in `{container}`", cmd.join(" ")))?
    else {
        anyhow::bail!("Docker ran `{}` detached", cmd.join(" "));
    };
    let printed = Arc::new(Mutex::new(Vec::new()));
    let kept = printed.clone();
    let reader = tokio::spawn(async move {
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::StdErr { message }) => {
                    push_bounded(&kept, &message)
                }
                Ok(_) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    });
    let copied = async {
        tokio::io::copy(&mut input, &mut stdin).await?;
        stdin.shutdown().await
    }
    .await;
    if let Err(err) = copied {
        drop(stdin);
        reader.abort();
        return Err(err).with_context(|| {
            format!(
                "Streaming into `{}` in `{container}` failed midway",
                cmd.join(" ")
            )
        });
    }
    drop(stdin);
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            return Err(err).with_context(|| format!("Lost the output of `{}`", cmd.join(" ")));
        }
        Err(err) => return Err(anyhow::anyhow!("the output reader stopped: {err}")),
    }
    let code = exit_code(docker, &id).await?;
    let output = tail(&printed.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Ended { code, output })
}

/// Run `cmd` in `container` and keep what it prints.
pub async fn capture(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    env: &[String],
) -> Result<Ended> {
    exec_writer(docker, container, cmd, env, tokio::io::empty()).await
}

/// Run a helper container of `image` to completion: `binds` mounted, `cmd` as its command.
/// Removed afterwards whatever happened.
pub async fn run_helper(
    docker: &Docker,
    name: &str,
    image: &str,
    cmd: &[&str],
    binds: Vec<String>,
) -> Result<Ended> {
    remove(docker, name).await;
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        labels: Some(HashMap::from([(HELPER_LABEL.to_string(), "1".to_string())])),
        user: Some("0:0".to_string()),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some("none".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(name).build()),
            body,
        )
        .await
        .with_context(|| format!("Failed to create the helper container `{name}`"))?;
    let result = async {
        docker
            .start_container(name, None)
            .await
            .with_context(|| format!("Failed to start the helper container `{name}`"))?;
        let mut waits = docker.wait_container(name, None::<WaitContainerOptions>);
        let code = match waits.next().await {
            Some(Ok(response)) => response.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(err)) => return Err(err).context("Waiting for a helper container failed"),
            None => -1,
        };
        let mut logs = docker.logs(
            name,
            Some(
                bollard::query_parameters::LogsOptionsBuilder::new()
                    .stdout(true)
                    .stderr(true)
                    .build(),
            ),
        );
        let mut printed = Vec::new();
        while let Some(Ok(chunk)) = logs.next().await {
            printed.extend_from_slice(&chunk.into_bytes());
        }
        Ok(Ended {
            code,
            output: tail(&printed),
        })
    }
    .await;
    remove(docker, name).await;
    result
}

/// Remove a container if it exists.
pub async fn remove(docker: &Docker, name: &str) {
    let _ = docker
        .remove_container(
            name,
            Some(
                RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await;
}
