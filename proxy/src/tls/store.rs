//! Where ACME accounts and certificates live on disk: one directory per ACME directory URL under
//! the cache path (so a staging certificate is never served as a production one), holding
//! `account.json` and one `<host>.pem` per host (private key, then chain). Every file is written
//! atomically with mode 0600; the directories are 0700.

use std::path::{Path, PathBuf};

use crate::state;
use crate::tls::certs::{self, CertError, Certificate};

/// The files of one ACME directory.
#[derive(Debug, Clone)]
pub struct Store {
    directory: PathBuf,
}

impl Store {
    pub fn new(cache: &Path, acme_directory: &str) -> Self {
        Self {
            directory: cache.join(slug(acme_directory)),
        }
    }

    fn ensure(&self) -> std::io::Result<()> {
        if let Some(parent) = self.directory.parent() {
            state::ensure_directory(parent)?;
        }
        state::ensure_directory(&self.directory)
    }

    pub fn account_path(&self) -> PathBuf {
        self.directory.join("account.json")
    }

    pub fn certificate_path(&self, host: &str) -> PathBuf {
        self.directory.join(format!("{host}.pem"))
    }

    /// The saved account credentials (JSON), if any.
    pub fn load_account(&self) -> Option<Vec<u8>> {
        std::fs::read(self.account_path()).ok()
    }

    pub fn save_account(&self, json: &[u8]) -> std::io::Result<()> {
        self.ensure()?;
        state::write_private(&self.account_path(), json)
    }

    pub fn forget_account(&self) {
        let _ = std::fs::remove_file(self.account_path());
    }

    /// The saved certificate of `host`; `Ok(None)` when there is none.
    pub fn load_certificate(&self, host: &str) -> Result<Option<Certificate>, CertError> {
        let path = self.certificate_path(host);
        match std::fs::read(&path) {
            Ok(pem) => certs::parse_pem(&pem, &pem).map(Some),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CertError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Saves `host`'s key and chain in one file.
    pub fn save_certificate(
        &self,
        host: &str,
        key_pem: &str,
        chain_pem: &str,
    ) -> std::io::Result<()> {
        self.ensure()?;
        let mut pem = String::with_capacity(key_pem.len() + chain_pem.len() + 1);
        pem.push_str(key_pem.trim_end());
        pem.push('\n');
        pem.push_str(chain_pem);
        state::write_private(&self.certificate_path(host), pem.as_bytes())
    }
}

/// A directory name for an ACME directory URL: `https://acme-v02.api.letsencrypt.org/directory`
/// becomes `acme-v02.api.letsencrypt.org_directory`.
fn slug(url: &str) -> String {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let slug: String = rest
        .trim_end_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if slug.is_empty() || slug.starts_with('.') {
        format!("_{slug}")
    } else {
        slug
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn slugs_are_readable_and_safe() {
        assert_eq!(
            slug("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org_directory"
        );
        assert_eq!(slug("https://localhost:14000/dir"), "localhost_14000_dir");
        assert_eq!(slug("https://../x"), "_.._x");
    }

    #[test]
    fn certificates_round_trip_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("certs"), "https://ca.test/dir");
        assert!(store.load_certificate("a.example.com").unwrap().is_none());
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        store
            .save_certificate("a.example.com", &key.serialize_pem(), &cert.pem())
            .unwrap();
        assert!(store.load_certificate("a.example.com").unwrap().is_some());
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.certificate_path("a.example.com")), 0o600);
        assert_eq!(mode(&store.directory), 0o700);
    }
}
