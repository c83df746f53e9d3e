//! Which certificates the proxy holds, and keeping each one current: for every host of every
//! `--tls` service, one task that either watches a custom certificate's files (reloading them
//! when they change) or keeps an ACME certificate (the stored one if still good, ordered
//! otherwise, renewed at two thirds of its lifetime, retried with backoff after failures). Tasks
//! run beside request serving: an ACME outage delays only its own host's certificate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::options::{ChallengeKind, ServiceOptions};
use crate::tls::acme::{Acme, AcmeSettings, IssueError};
use crate::tls::certs::{self, ACME_TLS_ALPN, Certificate, Resolver};

/// How often custom certificate files are checked for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Longest one ACME order may take before it counts as failed.
const ORDER_TIMEOUT: Duration = Duration::from_secs(180);

/// ACME settings `hoist-proxy run` gives every service that sets none of its own.
#[derive(Debug, Clone, Default)]
pub struct TlsDefaults {
    pub directory: Option<String>,
    pub ca_root: Option<PathBuf>,
    pub eab_kid: Option<String>,
    pub challenge: Option<ChallengeKind>,
    /// Where accounts and certificates are kept (`certs` in the state directory by default).
    pub cache: PathBuf,
}

/// Where a host's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Custom { certificate: PathBuf, key: PathBuf },
    Acme(AcmeSettings),
}

struct Task {
    source: Source,
    handle: tokio::task::JoinHandle<()>,
    /// Wakes an ACME task waiting out a backoff: a deploy retries at once.
    retry: Arc<Notify>,
}

/// The proxy's certificates and the tasks that keep them.
pub struct Tls {
    pub resolver: Arc<Resolver>,
    pub acme: Arc<Acme>,
    defaults: TlsDefaults,
    tasks: Mutex<HashMap<String, Task>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl Tls {
    pub fn new(defaults: TlsDefaults, metrics: Arc<Metrics>) -> Arc<Self> {
        let resolver = Arc::new(Resolver::default());
        Arc::new(Self {
            acme: Arc::new(Acme::new(Arc::clone(&resolver))),
            resolver,
            defaults,
            tasks: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// The rustls configuration of the HTTPS listener: TLS 1.2 and 1.3 only (aws-lc-rs's
    /// default suites: AEAD ciphers with forward secrecy), ALPN h2 and http/1.1 (and
    /// acme-tls/1 for validations), certificates from the resolver, session tickets.
    pub fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
                .with_no_client_auth()
                .with_cert_resolver(Arc::clone(&self.resolver) as _);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        config.ticketer = aws_lc_rs::Ticketer::new()?;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(8192);
        Ok(Arc::new(config))
    }

    /// Whether `host` (no port) has a certificate to serve.
    pub fn ready(&self, host: &str) -> bool {
        self.resolver.has(host)
    }

    /// Checks what a deploy can check at once: custom certificate files load and match, and
    /// wildcard hosts have one (ACME cannot validate wildcards over HTTP-01 or TLS-ALPN-01).
    pub fn check(options: &ServiceOptions) -> Result<(), String> {
        if !options.tls {
            return Ok(());
        }
        match (&options.tls_certificate_path, &options.tls_private_key_path) {
            (Some(certificate), Some(key)) => certs::load_files(certificate, key)
                .map(drop)
                .map_err(|error| {
                    format!(
                        "cannot use the TLS certificate {}: {error}",
                        certificate.display()
                    )
                }),
            _ => match options.hosts.iter().find(|host| host.starts_with("*.")) {
                Some(wildcard) => Err(format!(
                    "host {wildcard} needs a custom certificate (--tls-certificate-path and \
                     --tls-private-key-path): HTTP-01 and TLS-ALPN-01 cannot validate wildcard names"
                )),
                None => Ok(()),
            },
        }
    }

    /// Makes the tasks match the services: one per TLS host, started, kept, or stopped (its
    /// certificate is then no longer served). Hosts whose task is waiting to retry retry now.
    pub fn sync<'a>(self: &Arc<Self>, services: impl IntoIterator<Item = &'a ServiceOptions>) {
        let mut desired: HashMap<String, Source> = HashMap::new();
        for options in services.into_iter().filter(|options| options.tls) {
            for host in &options.hosts {
                desired.insert(host.clone(), self.source_for(options));
            }
        }
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tasks.retain(|host, task| {
            let keep = desired.get(host) == Some(&task.source);
            if !keep {
                task.handle.abort();
                if !desired.contains_key(host) {
                    self.resolver.remove(host);
                    tracing::info!(host = %host, "Stopped serving the certificate");
                }
            }
            keep
        });
        for (host, source) in desired {
            if let Some(task) = tasks.get(&host) {
                task.retry.notify_waiters();
                continue;
            }
            let retry = Arc::new(Notify::new());
            let handle = match &source {
                Source::Custom { certificate, key } => tokio::spawn(keep_custom(
                    Arc::clone(self),
                    host.clone(),
                    certificate.clone(),
                    key.clone(),
                )),
                Source::Acme(settings) => tokio::spawn(keep_acme(
                    Arc::clone(self),
                    host.clone(),
                    settings.clone(),
                    Arc::clone(&retry),
                )),
            };
            tasks.insert(
                host,
                Task {
                    source,
                    handle,
                    retry,
                },
            );
        }
    }

    fn source_for(&self, options: &ServiceOptions) -> Source {
        if let (Some(certificate), Some(key)) =
            (&options.tls_certificate_path, &options.tls_private_key_path)
        {
            return Source::Custom {
                certificate: certificate.clone(),
                key: key.clone(),
            };
        }
        let defaults = &self.defaults;
        Source::Acme(AcmeSettings {
            directory: options
                .tls_acme_directory
                .clone()
                .or_else(|| defaults.directory.clone())
                .unwrap_or_else(|| instant_acme::LetsEncrypt::Production.url().to_owned()),
            ca_root: options
                .tls_acme_ca_root
                .clone()
                .or_else(|| defaults.ca_root.clone()),
            eab_kid: options
                .tls_acme_eab_kid
                .clone()
                .or_else(|| defaults.eab_kid.clone()),
            challenge: options
                .tls_acme_challenge
                .or(defaults.challenge)
                .unwrap_or(ChallengeKind::Http01),
            cache: options
                .tls_acme_cache_path
                .clone()
                .unwrap_or_else(|| defaults.cache.clone()),
        })
    }
}

/// Size and modification time of both files: a change to either triggers a reload.
type Stamp = [(u64, Option<SystemTime>); 2];

fn stamp(certificate: &std::path::Path, key: &std::path::Path) -> Option<Stamp> {
    let one = |path: &std::path::Path| {
        std::fs::metadata(path)
            .ok()
            .map(|meta| (meta.len(), meta.modified().ok()))
    };
    Some([one(certificate)?, one(key)?])
}

/// Serves a custom certificate and reloads it when its files change. A file that does not load
/// (half written, mismatched) leaves the previous certificate in place; the error is logged once.
async fn keep_custom(tls: Arc<Tls>, host: String, certificate: PathBuf, key: PathBuf) {
    let mut loaded: Option<Stamp> = None;
    let mut failing: Option<String> = None;
    loop {
        let current = stamp(&certificate, &key);
        if current != loaded {
            match certs::load_files(&certificate, &key) {
                Ok(certificate_loaded) => {
                    tls.resolver.set(&host, Arc::clone(&certificate_loaded.key));
                    tracing::info!(
                        host = %host,
                        path = %certificate.display(),
                        not_after = %humantime::format_rfc3339_seconds(certificate_loaded.not_after),
                        "{}",
                        if loaded.is_some() { "Reloaded certificate" } else { "Loaded certificate" }
                    );
                    loaded = current;
                    failing = None;
                }
                Err(error) => {
                    let message = error.to_string();
                    if failing.as_deref() != Some(message.as_str()) {
                        tracing::warn!(
                            host = %host,
                            path = %certificate.display(),
                            error = %message,
                            hint = "write the certificate and key files so they match; the previous certificate (if any) is still served",
                            "Cannot load certificate"
                        );
                    }
                    failing = Some(message);
                }
            }
        }
        tokio::time::sleep(RELOAD_INTERVAL).await;
    }
}

/// How long to wait after the `failures`-th failure in a row: unreachable servers are retried
/// soon (2 s doubling to 5 min); refusals slowly (1 min doubling to 1 h), to stay within the
/// CA's failed-validation limits.
fn backoff(error: &IssueError, failures: u32) -> Duration {
    let (first, cap) = match error {
        IssueError::Unreachable(_) => (Duration::from_secs(2), Duration::from_secs(300)),
        IssueError::Refused(_) | IssueError::Setup(_) => {
            (Duration::from_secs(60), Duration::from_secs(3600))
        }
    };
    let exponent = failures.saturating_sub(1).min(16);
    first.saturating_mul(1 << exponent).min(cap)
}

/// Keeps an ACME certificate for `host`: stored, ordered, renewed, retried.
async fn keep_acme(tls: Arc<Tls>, host: String, settings: AcmeSettings, retry: Arc<Notify>) {
    let store = settings.store();
    let mut current: Option<Certificate> = match store.load_certificate(&host) {
        Ok(Some(stored)) if !stored.expired(SystemTime::now()) => {
            tls.resolver.set(&host, Arc::clone(&stored.key));
            tracing::info!(
                host = %host,
                not_after = %humantime::format_rfc3339_seconds(stored.not_after),
                "Using stored certificate"
            );
            Some(stored)
        }
        Ok(_) => None,
        Err(error) => {
            tracing::warn!(host = %host, %error, "Ignoring unreadable stored certificate");
            None
        }
    };
    let mut failures = 0u32;
    let mut last_error: Option<String> = None;
    loop {
        if let Some(certificate) = &current
            && failures == 0
        {
            let wait = certificate
                .renew_at()
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(wait).await;
        }
        let renewal = current.is_some();
        tracing::info!(
            host = %host,
            challenge = %settings.challenge,
            directory = %settings.directory,
            renewal,
            "Requesting certificate"
        );
        let started = Instant::now();
        let outcome = tokio::time::timeout(ORDER_TIMEOUT, tls.acme.issue(&host, &settings))
            .await
            .unwrap_or_else(|_| {
                Err(IssueError::Unreachable(format!(
                    "no certificate within {}s",
                    ORDER_TIMEOUT.as_secs()
                )))
            });
        match outcome {
            Ok((certificate, key_pem, chain)) => {
                if let Err(error) = store.save_certificate(&host, &key_pem, &chain) {
                    tracing::error!(host = %host, %error, "Cannot save the certificate; it is served, but ordered again after a restart");
                }
                tls.resolver.set(&host, Arc::clone(&certificate.key));
                tls.metrics.acme_order("success");
                tracing::info!(
                    host = %host,
                    not_after = %humantime::format_rfc3339_seconds(certificate.not_after),
                    took_ms = started.elapsed().as_millis() as u64,
                    failed_attempts = failures,
                    renewal,
                    "Certificate obtained"
                );
                current = Some(certificate);
                failures = 0;
                last_error = None;
            }
            Err(error) => {
                tls.metrics.acme_order("failure");
                failures += 1;
                let delay = backoff(&error, failures);
                if last_error.as_deref() != Some(error.detail()) {
                    tracing::warn!(
                        host = %host,
                        challenge = %settings.challenge,
                        directory = %settings.directory,
                        error = %error,
                        hint = %error.hint(&host, &settings),
                        retry_in_s = delay.as_secs(),
                        "Certificate request failed"
                    );
                } else {
                    tracing::debug!(host = %host, error = %error, retry_in_s = delay.as_secs(), "Certificate request failed again");
                }
                last_error = Some(error.detail().to_owned());
                if current
                    .as_ref()
                    .is_some_and(|certificate| certificate.expired(SystemTime::now()))
                {
                    tls.resolver.remove(&host);
                    current = None;
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = retry.notified() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let down = IssueError::Unreachable(String::new());
        let refused = IssueError::Refused(String::new());
        assert_eq!(backoff(&down, 1), Duration::from_secs(2));
        assert_eq!(backoff(&down, 3), Duration::from_secs(8));
        assert_eq!(backoff(&down, 40), Duration::from_secs(300));
        assert_eq!(backoff(&refused, 1), Duration::from_secs(60));
        assert_eq!(backoff(&refused, 12), Duration::from_secs(3600));
    }

    #[test]
    fn wildcards_need_a_custom_certificate() {
        let options = ServiceOptions {
            tls: true,
            hosts: vec!["*.example.com".to_owned()],
            ..ServiceOptions::default()
        };
        let error = Tls::check(&options).unwrap_err();
        assert!(error.contains("--tls-certificate-path"), "{error}");
    }
}
