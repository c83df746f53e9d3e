//! Running a command on a server over a session channel, for the few things the Docker Engine API
//! cannot do (files in `~/.hoist`, installing Docker). Output streams as it arrives; the exit
//! status is returned. Commands are one shell string: quote arguments with `shlex`.

use russh::ChannelMsg;

use super::{Session, SshError};

/// `text` quoted as one shell word for a remote command line; fails only on a NUL byte.
pub fn quote(text: &str) -> anyhow::Result<String> {
    shlex::try_quote(text)
        .map(|quoted| quoted.into_owned())
        .map_err(|_| {
            anyhow::anyhow!(
                "`{}` can't be passed to a remote shell: it holds a NUL byte",
                text.escape_debug()
            )
        })
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// A finished command: exit status (`None` if killed by a signal) and captured output.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Session {
    /// Run `command` and collect its output.
    pub async fn exec(&self, command: &str) -> Result<ExecOutput, SshError> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let status = self
            .exec_streaming(command, |stream, data| match stream {
                OutputStream::Stdout => stdout.extend_from_slice(data),
                OutputStream::Stderr => stderr.extend_from_slice(data),
            })
            .await?;
        Ok(ExecOutput {
            status,
            stdout,
            stderr,
        })
    }

    /// Run `command`, handing each chunk of output to `sink` as it arrives.
    pub async fn exec_streaming(
        &self,
        command: &str,
        mut sink: impl FnMut(OutputStream, &[u8]),
    ) -> Result<Option<u32>, SshError> {
        let protocol = |source: russh::Error| SshError::Protocol {
            target: self.to_string(),
            source: Box::new(source),
        };
        tracing::debug!(host = %self.host, command, "remote exec");
        let started = std::time::Instant::now();
        let mut channel = self.session_channel().await.map_err(protocol)?;
        channel.exec(true, command).await.map_err(protocol)?;
        let mut status = None;
        // Data may still arrive after the exit status: read until the channel closes.
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => sink(OutputStream::Stdout, &data),
                ChannelMsg::ExtendedData { data, ext: 1 } => sink(OutputStream::Stderr, &data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        tracing::debug!(host = %self.host, ?status, took = ?started.elapsed(), "remote exec finished");
        Ok(status)
    }
}
