//! Logging in: the keys hoist offers (ssh-agent identities first, then key files) and the
//! public-key authentication exchange. Key files are read once per command, not once per host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};

use super::error::SshError;
use super::host_keys::describe;

/// Key files tried when `ssh.keys` is empty, after the agent (OpenSSH's order).
const DEFAULT_KEY_FILES: &[&str] = &["id_ed25519", "id_ecdsa", "id_rsa"];

/// The identities one command offers to every server.
#[derive(Debug, Clone)]
pub struct Credentials {
    keys: Vec<KeyFile>,
    agent: Option<PathBuf>,
    /// Keys that could not be used, with why ("`~/.ssh/id_rsa` is encrypted: add it to ssh-agent").
    skipped: Vec<String>,
}

#[derive(Debug, Clone)]
struct KeyFile {
    path: PathBuf,
    key: Arc<PrivateKey>,
}

impl Credentials {
    /// Read the key files: `keys` if given (each must exist), else the default files that exist.
    /// The agent comes from `SSH_AUTH_SOCK`.
    pub fn load(keys: &[PathBuf]) -> Result<Self, SshError> {
        let agent = std::env::var_os("SSH_AUTH_SOCK")
            .filter(|socket| !socket.is_empty())
            .map(PathBuf::from);
        let explicit = !keys.is_empty();
        let candidates: Vec<PathBuf> = if explicit {
            keys.to_vec()
        } else {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            DEFAULT_KEY_FILES
                .iter()
                .map(|name| home.join(".ssh").join(name))
                .filter(|path| path.is_file())
                .collect()
        };
        let mut credentials = Credentials {
            keys: Vec::new(),
            agent,
            skipped: Vec::new(),
        };
        for path in candidates {
            match russh::keys::load_secret_key(&path, None) {
                Ok(key) => credentials.keys.push(KeyFile {
                    path,
                    key: Arc::new(key),
                }),
                Err(russh::keys::Error::KeyIsEncrypted) => credentials.skipped.push(format!(
                    "`{}` is encrypted: add it to ssh-agent with `ssh-add {}`",
                    path.display(),
                    path.display()
                )),
                Err(source) if explicit => {
                    return Err(SshError::Key {
                        path,
                        source: Box::new(source),
                    });
                }
                Err(source) => credentials
                    .skipped
                    .push(format!("`{}`: {source}", path.display())),
            }
        }
        if credentials.keys.is_empty() && credentials.agent.is_none() {
            let searched = if explicit {
                keys.iter()
                    .map(|p| format!("`{}`", p.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                DEFAULT_KEY_FILES
                    .iter()
                    .map(|name| format!("`~/.ssh/{name}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(SshError::NoKeys { searched });
        }
        Ok(credentials)
    }

    /// Authenticate `user` on an established session: agent identities, then key files.
    pub async fn authenticate<H: russh::client::Handler>(
        &self,
        handle: &mut Handle<H>,
        user: &str,
        host: &str,
    ) -> Result<(), SshError> {
        let protocol = |source: russh::Error| SshError::Protocol {
            target: format!("{user}@{host}"),
            source: Box::new(source),
        };
        let mut tried = Vec::new();
        let rsa_hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(protocol)?
            .flatten();

        if let Some(socket) = &self.agent {
            match AgentClient::connect_uds(socket).await {
                Ok(mut agent) => {
                    let identities = agent.request_identities().await.unwrap_or_default();
                    for identity in identities {
                        let AgentIdentity::PublicKey { key, comment } = identity else {
                            continue;
                        };
                        let hash = hash_for(key.algorithm().is_rsa(), rsa_hash);
                        tried.push(format!("agent key `{comment}` ({})", describe(&key)));
                        match handle
                            .authenticate_publickey_with(user, key, hash, &mut agent)
                            .await
                        {
                            Ok(result) if result.success() => return Ok(()),
                            Ok(_) => {}
                            Err(err) => tracing::debug!(error = %err, "agent could not sign"),
                        }
                    }
                }
                Err(err) => {
                    tracing::debug!(socket = %socket.display(), error = %err, "ssh-agent unavailable");
                }
            }
        }

        for file in &self.keys {
            let hash = hash_for(file.key.algorithm().is_rsa(), rsa_hash);
            tried.push(format!(
                "key `{}` ({})",
                display_path(&file.path),
                describe(file.key.public_key())
            ));
            let key = PrivateKeyWithHashAlg::new(file.key.clone(), hash);
            let result = handle
                .authenticate_publickey(user, key)
                .await
                .map_err(protocol)?;
            if result.success() {
                return Ok(());
            }
        }

        Err(SshError::AuthFailed {
            user: user.to_string(),
            host: host.to_string(),
            tried: if tried.is_empty() {
                "no keys (the agent holds none)".to_string()
            } else {
                tried.join(", ")
            },
            skipped: self.skipped.clone(),
        })
    }
}

fn hash_for(is_rsa: bool, best: Option<HashAlg>) -> Option<HashAlg> {
    if is_rsa { best } else { None }
}

/// A path with the home directory shown as `~`.
fn display_path(path: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
        && let Ok(rest) = path.strip_prefix(&home)
    {
        return format!("~/{}", rest.display());
    }
    path.display().to_string()
}
