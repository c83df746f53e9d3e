//! A process in a container talked to interactively (`hoist exec -i`): an exec or a one-off
//! container's main process, attached with stdin and, when hoist's own stdin and stdout are a
//! terminal, a TTY of its own. Local input goes to it as typed (raw mode: Ctrl-C reaches the
//! remote TTY, which signals the process there), its output is written as it comes, its TTY
//! follows the local terminal's size (SIGWINCH), and the end of local input closes its stdin.
//! Everything travels over the Engine API's hijacked connection, an SSH channel on servers.

use std::pin::Pin;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{AttachContainerOptions, ResizeContainerTTYOptions};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::terminal;

/// What is attached to, for resizing its TTY.
#[derive(Debug, Clone)]
pub enum Process {
    /// An exec, by id.
    Exec(String),
    /// A container's main process, by container name.
    Container(String),
}

/// Both directions of an attached process.
pub struct Attached {
    output: Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// Start exec `id` (created with stdin attached) and attach to it.
pub async fn start_exec(docker: &Docker, id: &str, tty: bool, what: &str) -> Result<Attached> {
    let started = docker
        .start_exec(
            id,
            Some(StartExecOptions {
                detach: false,
                tty,
                output_capacity: None,
            }),
        )
        .await
        .with_context(|| format!("Failed to start {what}"))?;
    match started {
        StartExecResults::Attached { output, input } => Ok(Attached { output, input }),
        StartExecResults::Detached => anyhow::bail!("{what} started detached"),
    }
}

/// Attach to container `name`'s main process (before starting it, so no output is missed).
pub async fn attach_container(docker: &Docker, name: &str) -> Result<Attached> {
    let options = AttachContainerOptions {
        stream: true,
        stdin: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let attached = docker
        .attach_container(name, Some(options))
        .await
        .with_context(|| format!("Failed to attach to `{name}`"))?;
    Ok(Attached {
        output: attached.output,
        input: attached.input,
    })
}

/// Run the conversation until the process's output ends (it exited): local stdin to it, its
/// output to hoist's stdout and stderr, the local terminal's size to its TTY (with `tty`, in
/// raw mode for the duration).
pub async fn converse(
    docker: &Docker,
    process: &Process,
    attached: Attached,
    tty: bool,
) -> Result<()> {
    let Attached {
        mut output,
        mut input,
    } = attached;
    let _raw = if tty {
        Some(terminal::RawMode::enable().context("Failed to put the terminal in raw mode")?)
    } else {
        None
    };
    let mut resized = if tty {
        resize(docker, process).await;
        signal(SignalKind::window_change()).ok()
    } else {
        None
    };
    let mut stdin = terminal::stdin_chunks();
    let mut stdin_open = true;
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                None => break,
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    stdout.write_all(&message).await?;
                    stdout.flush().await?;
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    stderr.write_all(&message).await?;
                    stderr.flush().await?;
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(error)) => return Err(error).context("Lost the connection to the command"),
            },
            chunk = stdin.recv(), if stdin_open => match chunk {
                Some(bytes) => {
                    input.write_all(&bytes).await.context("Lost the command's input")?;
                    input.flush().await.context("Lost the command's input")?;
                }
                None => {
                    // The end of local input is the end of the command's: a piped script runs
                    // to its end and the command sees EOF.
                    stdin_open = false;
                    let _ = input.shutdown().await;
                }
            },
            () = window_change(&mut resized) => resize(docker, process).await,
        }
    }
    Ok(())
}

/// The next SIGWINCH, or never without a signal stream.
async fn window_change(signal: &mut Option<Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Give the process's TTY the local terminal's size. Best effort: a failed resize leaves the
/// session usable at the old size.
async fn resize(docker: &Docker, process: &Process) {
    let Some((rows, columns)) = terminal::size() else {
        return;
    };
    let resized = match process {
        Process::Exec(id) => {
            docker
                .resize_exec(
                    id,
                    ResizeExecOptions {
                        height: rows,
                        width: columns,
                    },
                )
                .await
        }
        Process::Container(name) => {
            docker
                .resize_container_tty(
                    name,
                    ResizeContainerTTYOptions {
                        h: i32::from(rows),
                        w: i32::from(columns),
                    },
                )
                .await
        }
    };
    if let Err(error) = resized {
        tracing::debug!(%error, rows, columns, "resizing the remote TTY failed");
    }
}
