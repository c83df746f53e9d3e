//! What can go wrong reaching a server over SSH, worded for the person at the keyboard: which
//! host, which user, which key, and (through [`SshError::hint`]) what to do about it.

use std::path::PathBuf;
use std::time::Duration;

/// A failure to reach, verify, log in to or use one server.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("Failed to connect to `{target}`")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },

    #[error("Timed out after {}s connecting to `{target}` ({stage})", after.as_secs_f64())]
    Timeout {
        target: String,
        after: Duration,
        /// What was under way: "TCP connect", "SSH handshake", "login".
        stage: &'static str,
    },

    #[error(
        "Host key of `{target}` is not in `{}` (host key checking is strict); it presented {presented}",
        known_hosts.display()
    )]
    UnknownHostKey {
        target: String,
        presented: String,
        known_hosts: PathBuf,
    },

    #[error(
        "Host key of `{target}` has CHANGED: `{}` line {line} records {expected}, the server presented {presented}",
        known_hosts.display()
    )]
    HostKeyChanged {
        target: String,
        expected: String,
        presented: String,
        known_hosts: PathBuf,
        line: usize,
    },

    #[error("Failed to read known hosts file `{}`", path.display())]
    KnownHosts {
        path: PathBuf,
        #[source]
        source: Box<russh::keys::Error>,
    },

    #[error("Authentication failed for `{user}@{host}`: the server accepted none of {tried}")]
    AuthFailed {
        user: String,
        host: String,
        /// The keys offered, e.g. "key `~/.ssh/id_ed25519` (SHA256:...)".
        tried: String,
        /// Keys that could not be used at all (encrypted, unreadable), with why.
        skipped: Vec<String>,
    },

    #[error("Failed to load SSH key `{}`", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: Box<russh::keys::Error>,
    },

    #[error("No SSH key to log in with: no agent (`SSH_AUTH_SOCK` unset) and none of {searched}")]
    NoKeys { searched: String },

    #[error("Failed to reach `{target}` through jump host `{jump}`")]
    Jump {
        target: String,
        jump: String,
        #[source]
        source: Box<russh::Error>,
    },

    #[error("Failed to open a connection to `{socket}` on `{host}`")]
    Streamlocal {
        host: String,
        socket: String,
        #[source]
        source: Box<russh::Error>,
    },

    #[error("SSH session with `{target}` failed")]
    Protocol {
        target: String,
        #[source]
        source: Box<russh::Error>,
    },
}

impl SshError {
    /// Advice for the user, printed after the causes.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            SshError::Connect { .. } => {
                "check the address, that sshd runs on the server and that a firewall lets port \
                 `ssh.port` through"
                    .into()
            }
            SshError::Timeout { .. } => {
                "check that the server is up and reachable from here; raise `ssh.connect_timeout` \
                 for slow links"
                    .into()
            }
            SshError::UnknownHostKey {
                target,
                known_hosts,
                ..
            } => format!(
                "compare the fingerprint with the server's (`ssh-keygen -lf \
                 /etc/ssh/ssh_host_ed25519_key.pub` on it), then add it with `ssh-keyscan {} >> {}`, \
                 or set `ssh.host_key_checking = \"accept-new\"` to record keys of new hosts",
                target.rsplit('@').next().unwrap_or(target),
                known_hosts.display()
            ),
            SshError::HostKeyChanged {
                line, known_hosts, ..
            } => format!(
                "if the server was reinstalled, remove line {line} of `{}` and connect again; \
                 otherwise someone may be intercepting the connection",
                known_hosts.display()
            ),
            SshError::AuthFailed { user, skipped, .. } => {
                let mut hint = format!(
                    "check that the public key is in `~{user}/.ssh/authorized_keys` on the server, \
                     that `ssh.user` is right, and `ssh.keys` lists the key"
                );
                if !skipped.is_empty() {
                    hint.push_str(&format!("; skipped: {}", skipped.join("; ")));
                }
                hint
            }
            SshError::NoKeys { .. } => {
                "start ssh-agent and `ssh-add` your key, or list key files in `ssh.keys`".into()
            }
            SshError::Key { .. } => "check the path in `ssh.keys`".into(),
            SshError::Streamlocal { socket, .. } => format!(
                "check that Docker runs on the server (`hoist setup` installs it), that the SSH \
                 user may open `{socket}` (root or the docker group), and that sshd allows \
                 forwarding (`AllowStreamLocalForwarding`)"
            ),
            SshError::KnownHosts { .. } | SshError::Jump { .. } | SshError::Protocol { .. } => {
                return None;
            }
        })
    }

    /// A short reason for tables: "timed out", "connection refused", "host key changed".
    pub fn summary(&self) -> String {
        match self {
            SshError::Connect { source, .. } => source.to_string(),
            SshError::Timeout { after, stage, .. } => {
                format!("timed out after {}s ({stage})", after.as_secs_f64())
            }
            SshError::UnknownHostKey { .. } => "unknown host key".into(),
            SshError::HostKeyChanged { .. } => "host key changed".into(),
            SshError::AuthFailed { .. } | SshError::NoKeys { .. } => "authentication failed".into(),
            SshError::Jump { .. } => "unreachable through the jump host".into(),
            SshError::Streamlocal { .. } => "Docker socket unreachable".into(),
            SshError::Key { .. } | SshError::KnownHosts { .. } | SshError::Protocol { .. } => {
                let mut text = self.to_string();
                let mut source = std::error::Error::source(self);
                while let Some(cause) = source {
                    text = cause.to_string();
                    source = cause.source();
                }
                text
            }
        }
    }
}
