//! Certificates as the handshake sees them: loading a PEM chain and key into a rustls
//! [`CertifiedKey`] with its validity, the TLS-ALPN-01 challenge certificate, and the SNI
//! [`Resolver`] that every HTTPS handshake asks. The resolver's map sits behind one pointer that
//! changes swap whole, so a renewal or reload never touches a handshake in progress.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of TLS-ALPN-01 validation handshakes (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A certificate ready to serve, with the dates renewal is planned from.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub key: Arc<CertifiedKey>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Certificate {
    /// When to renew: two thirds into the certificate's lifetime.
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + lifetime * 2 / 3
    }

    pub fn expired(&self, now: SystemTime) -> bool {
        now >= self.not_after
    }
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("no certificate (BEGIN CERTIFICATE) found in the PEM data")]
    NoCertificate,
    #[error("no private key (BEGIN PRIVATE KEY, EC or RSA) found in the PEM data")]
    NoKey,
    #[error(
        "the private key does not belong to the certificate, or is of an unsupported type: {0}"
    )]
    Mismatch(rustls::Error),
    #[error("the certificate cannot be parsed: {0}")]
    Unparsable(String),
}

/// Loads a certificate chain and its key from two PEM files.
pub fn load_files(certificate: &Path, key: &Path) -> Result<Certificate, CertError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    parse_pem(&read(certificate)?, &read(key)?)
}

/// Parses a PEM certificate chain (leaf first) and a PEM private key, checking they match.
pub fn parse_pem(chain: &[u8], key: &[u8]) -> Result<Certificate, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .filter_map(Result::ok)
        .collect();
    let leaf = chain.first().ok_or(CertError::NoCertificate)?;
    let (not_before, not_after) = validity(leaf)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| CertError::NoKey)?;
    let key = CertifiedKey::from_der(chain, key, &aws_lc_rs::default_provider())
        .map_err(CertError::Mismatch)?;
    Ok(Certificate {
        key: Arc::new(key),
        not_before,
        not_after,
    })
}

fn validity(leaf: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime), CertError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|error| CertError::Unparsable(error.to_string()))?;
    let at = |time: x509_parser::time::ASN1Time| {
        let seconds = time.timestamp();
        if seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
        } else {
            UNIX_EPOCH
        }
    };
    let validity = parsed.validity();
    Ok((at(validity.not_before), at(validity.not_after)))
}

/// The self-signed certificate that answers a TLS-ALPN-01 validation for `host`: it carries the
/// key authorization's digest in the critical acmeIdentifier extension.
pub fn challenge_certificate(host: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![host.to_owned()]).map_err(|error| error.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key_pair = rcgen::KeyPair::generate().map_err(|error| error.to_string())?;
    let certificate = params
        .self_signed(&key_pair)
        .map_err(|error| error.to_string())?;
    let key =
        PrivateKeyDer::try_from(key_pair.serialize_der()).map_err(|error| error.to_string())?;
    // `CertifiedKey::from_der` refuses the critical extension; `new` does not check it.
    let signing = aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|error| error.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![certificate.der().clone()],
        signing,
    )))
}

/// What the resolver serves, swapped whole.
#[derive(Debug, Default, Clone)]
struct Map {
    /// Host name (or `*.parent`) to certificate.
    hosts: HashMap<String, Arc<CertifiedKey>>,
    /// Host name to its pending TLS-ALPN-01 challenge certificate.
    challenges: HashMap<String, Arc<CertifiedKey>>,
    /// For clients that send no SNI: the certificate of the first host in name order.
    fallback: Option<Arc<CertifiedKey>>,
}

/// The SNI certificate resolver.
#[derive(Debug, Default)]
pub struct Resolver {
    current: ArcSwap<Map>,
    /// Serialises changes; the sorted copy of the hosts makes the fallback deterministic.
    edits: Mutex<BTreeMap<String, Arc<CertifiedKey>>>,
}

impl Resolver {
    fn edit(&self, change: impl FnOnce(&mut BTreeMap<String, Arc<CertifiedKey>>, &mut Map)) {
        let mut hosts = self
            .edits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut map = Map::clone(&self.current.load());
        change(&mut hosts, &mut map);
        map.hosts = hosts
            .iter()
            .map(|(host, key)| (host.clone(), Arc::clone(key)))
            .collect();
        map.fallback = hosts.values().next().cloned();
        self.current.store(Arc::new(map));
    }

    /// Serves `key` for `host` from the next handshake on.
    pub fn set(&self, host: &str, key: Arc<CertifiedKey>) {
        self.edit(|hosts, _| {
            hosts.insert(host.to_owned(), key);
        });
    }

    pub fn remove(&self, host: &str) {
        self.edit(|hosts, _| {
            hosts.remove(host);
        });
    }

    /// Whether `host` (without port) has a certificate.
    pub fn has(&self, host: &str) -> bool {
        self.lookup(&self.current.load(), host).is_some()
    }

    pub fn set_challenge(&self, host: &str, key: Arc<CertifiedKey>) {
        self.edit(|_, map| {
            map.challenges.insert(host.to_owned(), key);
        });
    }

    pub fn clear_challenge(&self, host: &str) {
        self.edit(|_, map| {
            map.challenges.remove(host);
        });
    }

    fn lookup(&self, map: &Map, host: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(key) = map.hosts.get(host) {
            return Some(Arc::clone(key));
        }
        let (_, parent) = host.split_once('.')?;
        map.hosts.get(&format!("*.{parent}")).cloned()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let map = self.current.load();
        let name = hello.server_name().map(str::to_ascii_lowercase);
        let validation = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|protocol| protocol == ACME_TLS_ALPN));
        if validation {
            return map.challenges.get(name.as_deref()?).cloned();
        }
        match name {
            Some(name) => self.lookup(&map, &name),
            None => map.fallback.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(host: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        (certificate.pem(), key.serialize_pem())
    }

    #[test]
    fn pem_pairs_load_and_mismatches_are_refused() {
        let (cert, key) = self_signed("a.example.com");
        let loaded = parse_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert!(loaded.not_after > loaded.not_before);
        assert!(loaded.renew_at() > loaded.not_before && loaded.renew_at() < loaded.not_after);
        let (_, other_key) = self_signed("b.example.com");
        assert!(matches!(
            parse_pem(cert.as_bytes(), other_key.as_bytes()),
            Err(CertError::Mismatch(_))
        ));
        assert!(matches!(
            parse_pem(b"", key.as_bytes()),
            Err(CertError::NoCertificate)
        ));
        assert!(matches!(
            parse_pem(cert.as_bytes(), b"nothing"),
            Err(CertError::NoKey)
        ));
    }

    #[test]
    fn resolver_matches_names_wildcards_and_a_deterministic_fallback() {
        let resolver = Resolver::default();
        let load = |host: &str| {
            let (cert, key) = self_signed(host);
            parse_pem(cert.as_bytes(), key.as_bytes()).unwrap().key
        };
        let b = load("b.example.com");
        let a = load("a.example.com");
        let wild = load("*.example.org");
        resolver.set("b.example.com", Arc::clone(&b));
        resolver.set("a.example.com", Arc::clone(&a));
        resolver.set("*.example.org", Arc::clone(&wild));
        let map = resolver.current.load();
        assert!(Arc::ptr_eq(
            &resolver.lookup(&map, "b.example.com").unwrap(),
            &b
        ));
        assert!(Arc::ptr_eq(
            &resolver.lookup(&map, "x.example.org").unwrap(),
            &wild
        ));
        assert!(resolver.lookup(&map, "example.org").is_none());
        assert!(resolver.lookup(&map, "c.example.com").is_none());
        // "*.example.org" sorts before "a.example.com"; the fallback is the first name.
        assert!(Arc::ptr_eq(map.fallback.as_ref().unwrap(), &wild));
        resolver.remove("*.example.org");
        assert!(Arc::ptr_eq(
            resolver.current.load().fallback.as_ref().unwrap(),
            &a
        ));
        assert!(resolver.has("a.example.com") && !resolver.has("x.example.org"));
    }

    #[test]
    fn challenge_certificates_build() {
        let key = challenge_certificate("a.example.com", &[7; 32]).unwrap();
        assert_eq!(key.cert.len(), 1);
    }
}
