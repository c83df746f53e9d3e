//! Server host key verification against a known_hosts file, like OpenSSH's
//! `StrictHostKeyChecking`: `strict` refuses hosts not in the file, `accept-new` records them on
//! first contact; both refuse a key that differs from the recorded one, naming both fingerprints.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::HostKeyChecking;
use super::error::SshError;
use russh::keys::{Algorithm, HashAlg, PublicKey, known_hosts};

/// The known_hosts file and the policy, shared by every connection of one command.
#[derive(Debug)]
pub struct HostKeyVerifier {
    path: PathBuf,
    checking: HostKeyChecking,
    /// Serialises appends from hosts connecting in parallel.
    learn: Mutex<()>,
}

impl HostKeyVerifier {
    pub fn new(path: PathBuf, checking: HostKeyChecking) -> Self {
        Self {
            path,
            checking,
            learn: Mutex::new(()),
        }
    }

    /// Key algorithms recorded for `host`, to ask the server for a key we can check (a server
    /// offering ed25519 and ECDSA would otherwise look unknown when only one is recorded).
    pub fn recorded_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let mut algorithms = Vec::new();
        for (_, key) in
            known_hosts::known_host_keys_path(host, port, &self.path).unwrap_or_default()
        {
            if !algorithms.contains(&key.algorithm()) {
                algorithms.push(key.algorithm());
            }
        }
        algorithms
    }

    /// Accept `presented` for `host:port`, record it (accept-new), or say why not.
    pub fn verify(
        &self,
        target: &str,
        host: &str,
        port: u16,
        presented: &PublicKey,
    ) -> Result<(), SshError> {
        let recorded =
            known_hosts::known_host_keys_path(host, port, &self.path).map_err(|source| {
                SshError::KnownHosts {
                    path: self.path.clone(),
                    source: Box::new(source),
                }
            })?;
        if recorded.iter().any(|(_, key)| key == presented) {
            return Ok(());
        }
        // A different key for this host: same algorithm or not, it is not the server we know.
        let mismatch = recorded
            .iter()
            .find(|(_, key)| key.algorithm() == presented.algorithm())
            .or_else(|| recorded.first());
        if let Some((_, expected)) = mismatch {
            return Err(SshError::HostKeyChanged {
                target: target.to_string(),
                expected: describe(expected),
                presented: describe(presented),
                known_hosts: self.path.clone(),
                line: line_of(&self.path, expected).unwrap_or(0),
            });
        }
        match self.checking {
            HostKeyChecking::Strict => Err(SshError::UnknownHostKey {
                target: target.to_string(),
                presented: describe(presented),
                known_hosts: self.path.clone(),
            }),
            HostKeyChecking::AcceptNew => {
                let _guard = self
                    .learn
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                append(&self.path, host, port, presented).map_err(|source| {
                    SshError::KnownHosts {
                        path: self.path.clone(),
                        source: Box::new(source),
                    }
                })?;
                tracing::info!(host, key = %describe(presented), path = %self.path.display(), "recorded new host key");
                Ok(())
            }
        }
    }
}

/// "ED25519 key SHA256:…", the way OpenSSH names a key.
pub fn describe(key: &PublicKey) -> String {
    let kind = match key.algorithm() {
        Algorithm::Ed25519 => "ED25519".to_string(),
        Algorithm::Rsa { .. } => "RSA".to_string(),
        Algorithm::Ecdsa { .. } => "ECDSA".to_string(),
        other => other.to_string(),
    };
    format!("{kind} key {}", key.fingerprint(HashAlg::Sha256))
}

/// Add `host key` as a line of `path` (created 0600 with its directory if missing), as OpenSSH
/// writes it: `[host]:port` for ports other than 22.
fn append(path: &Path, host: &str, port: u16, key: &PublicKey) -> Result<(), russh::keys::Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let existing = std::fs::read(path).unwrap_or_default();
    let mut line = String::new();
    if existing.last().is_some_and(|last| *last != b'\n') {
        line.push('\n');
    }
    if port == 22 {
        line.push_str(host);
    } else {
        line.push_str(&format!("[{host}]:{port}"));
    }
    line.push(' ');
    line.push_str(&key.to_openssh()?);
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(line.as_bytes())?;
    Ok(())
}

/// The 1-based line of `path` that records `key` (the library's own count skips comments).
fn line_of(path: &Path, key: &PublicKey) -> Option<usize> {
    let encoded = key.to_openssh().ok()?;
    let base64 = encoded.split_whitespace().nth(1)?.to_string();
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .position(|line| line.split_whitespace().any(|field| field == base64))
        .map(|index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::private::Ed25519Keypair;

    fn key() -> PublicKey {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("random");
        PrivateKey::from(Ed25519Keypair::from_seed(&seed))
            .public_key()
            .clone()
    }

    #[test]
    fn strict_refuses_unknown_and_accept_new_records_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        let presented = key();
        let strict = HostKeyVerifier::new(path.clone(), HostKeyChecking::Strict);
        assert!(matches!(
            strict.verify("root@10.0.0.1", "10.0.0.1", 22, &presented),
            Err(SshError::UnknownHostKey { .. })
        ));
        let accept = HostKeyVerifier::new(path.clone(), HostKeyChecking::AcceptNew);
        accept
            .verify("root@10.0.0.1", "10.0.0.1", 22, &presented)
            .expect("recorded");
        strict
            .verify("root@10.0.0.1", "10.0.0.1", 22, &presented)
            .expect("now known");
        let other = key();
        match accept.verify("root@10.0.0.1", "10.0.0.1", 22, &other) {
            Err(SshError::HostKeyChanged {
                expected,
                presented: shown,
                line,
                ..
            }) => {
                assert_eq!(expected, describe(&presented));
                assert_eq!(shown, describe(&other));
                assert_eq!(line, 1);
            }
            other => panic!("expected a changed key, got {other:?}"),
        }
    }

    #[test]
    fn non_default_port_is_recorded_in_brackets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        let accept = HostKeyVerifier::new(path.clone(), HostKeyChecking::AcceptNew);
        accept
            .verify("root@10.0.0.1:2222", "10.0.0.1", 2222, &key())
            .expect("recorded");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("[10.0.0.1]:2222 ssh-ed25519 "), "{text}");
    }
}
