//! Talking to an ACME server (Let's Encrypt, ZeroSSL, step-ca, Pebble) with instant-acme: the
//! account of each directory (created once, with external account binding when asked, kept in
//! the [`Store`]), the challenge answers in flight (HTTP-01 tokens, TLS-ALPN-01 certificates),
//! and one certificate order from start to chain. When and how often to order is the
//! [`manager`](super::manager)'s business.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType,
    ExternalAccountKey, HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::options::ChallengeKind;
use crate::tls::certs::{self, Certificate, Resolver};
use crate::tls::store::Store;

/// Where and how certificates for one host are ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub directory: String,
    /// Trust only these roots for the directory's HTTPS (a private ACME server).
    pub ca_root: Option<PathBuf>,
    /// External account binding key id; its HMAC key is held apart, see [`Acme::add_eab_key`].
    pub eab_kid: Option<String>,
    pub challenge: ChallengeKind,
    /// Directory for accounts and certificates.
    pub cache: PathBuf,
}

impl AcmeSettings {
    pub fn store(&self) -> Store {
        Store::new(&self.cache, &self.directory)
    }
}

/// How an order failed, which decides how soon to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueError {
    /// The ACME server could not be reached or had trouble (network, 5xx, timeouts).
    Unreachable(String),
    /// The server said no: a failed validation, a rate limit, a refused account.
    Refused(String),
    /// Our side is misconfigured (unreadable CA root, a missing EAB key).
    Setup(String),
}

impl IssueError {
    pub fn detail(&self) -> &str {
        match self {
            IssueError::Unreachable(detail)
            | IssueError::Refused(detail)
            | IssueError::Setup(detail) => detail,
        }
    }

    /// What the operator should check.
    pub fn hint(&self, host: &str, settings: &AcmeSettings) -> String {
        match self {
            IssueError::Unreachable(_) => format!(
                "check that this server can reach {} over HTTPS{}",
                settings.directory,
                if settings.ca_root.is_some() {
                    " and that --tls-acme-ca-root is the CA that signed it"
                } else {
                    " (for a private ACME server, pass its CA with --tls-acme-ca-root)"
                }
            ),
            IssueError::Refused(_) => match settings.challenge {
                ChallengeKind::Http01 => format!(
                    "check that DNS for {host} points at this server and that port 80 reaches \
                     hoist-proxy from the internet (a CDN or firewall answering port 80 breaks \
                     HTTP-01), or use --tls-acme-challenge=tls-alpn-01"
                ),
                ChallengeKind::TlsAlpn01 => format!(
                    "check that DNS for {host} points at this server and that port 443 reaches \
                     hoist-proxy directly (a CDN terminating TLS breaks TLS-ALPN-01), or use \
                     --tls-acme-challenge=http-01"
                ),
            },
            IssueError::Setup(_) => {
                "fix the TLS flags of `hoist-proxy run` or the deploy, then deploy again".to_owned()
            }
        }
    }
}

impl std::fmt::Display for IssueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.detail())
    }
}

fn classify(error: instant_acme::Error) -> IssueError {
    match error {
        instant_acme::Error::Api(problem) => {
            if problem.status.is_some_and(|status| status >= 500) {
                IssueError::Unreachable(problem.to_string())
            } else {
                IssueError::Refused(problem.to_string())
            }
        }
        other => IssueError::Unreachable(error_chain(&other)),
    }
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Accounts, challenge answers and orders, shared by every host.
pub struct Acme {
    resolver: Arc<Resolver>,
    /// HTTP-01 token to key authorization, answered on the HTTP port before routing.
    http01: Mutex<HashMap<String, String>>,
    /// EAB key id to HMAC key (base64url), from `run` and from deploys; never written to disk.
    eab_keys: Mutex<HashMap<String, String>>,
    accounts: tokio::sync::Mutex<HashMap<String, Account>>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme").finish_non_exhaustive()
    }
}

impl Acme {
    pub fn new(resolver: Arc<Resolver>) -> Self {
        Self {
            resolver,
            http01: Mutex::new(HashMap::new()),
            eab_keys: Mutex::new(HashMap::new()),
            accounts: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The key authorization for an HTTP-01 token in flight.
    pub fn http01(&self, token: &str) -> Option<String> {
        lock(&self.http01).get(token).cloned()
    }

    /// Keeps the HMAC key of external account binding key id `kid` (in memory only); refuses
    /// a key that is not base64url.
    pub fn add_eab_key(&self, kid: &str, hmac_key: &str) -> Result<(), String> {
        decode_hmac(hmac_key).map_err(|error| error.to_string())?;
        lock(&self.eab_keys).insert(kid.to_owned(), hmac_key.to_owned());
        Ok(())
    }

    pub fn has_eab_key(&self, kid: &str) -> bool {
        lock(&self.eab_keys).contains_key(kid)
    }

    /// The directory's account: from memory, from disk, or created.
    async fn account(&self, settings: &AcmeSettings) -> Result<Account, IssueError> {
        let mut accounts = self.accounts.lock().await;
        if let Some(account) = accounts.get(&settings.directory) {
            return Ok(account.clone());
        }
        let store = settings.store();
        let saved = store
            .load_account()
            .and_then(|json| serde_json::from_slice::<AccountCredentials>(&json).ok());
        let account = match saved {
            Some(credentials) => Account::builder_with_http(http_client(settings)?)
                .from_credentials(credentials)
                .await
                .map_err(classify)?,
            None => {
                let eab = match &settings.eab_kid {
                    Some(kid) => {
                        let hmac = lock(&self.eab_keys).get(kid).cloned().ok_or_else(|| {
                            IssueError::Setup(format!(
                                "the ACME server needs external account binding, but no HMAC key \
                                 is known for key id {kid}: pass --tls-acme-eab-hmac-key (or \
                                 HOIST_PROXY_TLS_ACME_EAB_HMAC_KEY) to the deploy or to `run`"
                            ))
                        })?;
                        Some(ExternalAccountKey::new(kid.clone(), &decode_hmac(&hmac)?))
                    }
                    None => None,
                };
                let (account, credentials) = Account::builder_with_http(http_client(settings)?)
                    .create(
                        &NewAccount {
                            contact: &[],
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        settings.directory.clone(),
                        eab.as_ref(),
                    )
                    .await
                    .map_err(classify)?;
                let json = serde_json::to_vec(&credentials)
                    .map_err(|error| IssueError::Setup(error.to_string()))?;
                if let Err(error) = store.save_account(&json) {
                    tracing::error!(path = %store.account_path().display(), %error, "Cannot save the ACME account; a new one is created after a restart");
                }
                tracing::info!(directory = %settings.directory, account = account.id(), "Created ACME account");
                account
            }
        };
        accounts.insert(settings.directory.clone(), account.clone());
        Ok(account)
    }

    /// Forgets the directory's account (the server no longer knows it), so the next order
    /// creates a new one.
    async fn forget_account(&self, settings: &AcmeSettings) {
        self.accounts.lock().await.remove(&settings.directory);
        settings.store().forget_account();
    }

    /// Orders a certificate for `host` and returns it with its key PEM.
    pub async fn issue(
        &self,
        host: &str,
        settings: &AcmeSettings,
    ) -> Result<(Certificate, String, String), IssueError> {
        match self.order(host, settings).await {
            Err(IssueError::Refused(detail)) if detail.contains("accountDoesNotExist") => {
                tracing::info!(directory = %settings.directory, "The ACME server no longer knows our account; creating a new one");
                self.forget_account(settings).await;
                self.order(host, settings).await
            }
            other => other,
        }
    }

    async fn order(
        &self,
        host: &str,
        settings: &AcmeSettings,
    ) -> Result<(Certificate, String, String), IssueError> {
        let account = self.account(settings).await?;
        let identifiers = [Identifier::Dns(host.to_owned())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(classify)?;
        let kind = match settings.challenge {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut answers = Answers {
            acme: self,
            tokens: Vec::new(),
            alpn_host: None,
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(classify)?;
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                status => {
                    return Err(IssueError::Refused(format!(
                        "the authorization for {host} is {status:?}"
                    )));
                }
            }
            let mut challenge = authorization.challenge(kind.clone()).ok_or_else(|| {
                IssueError::Refused(format!(
                    "the ACME server offers no {} challenge for {host}",
                    settings.challenge
                ))
            })?;
            let key_authorization = challenge.key_authorization();
            match settings.challenge {
                ChallengeKind::Http01 => {
                    lock(&self.http01).insert(
                        challenge.token.clone(),
                        key_authorization.as_str().to_owned(),
                    );
                    answers.tokens.push(challenge.token.clone());
                }
                ChallengeKind::TlsAlpn01 => {
                    let key =
                        certs::challenge_certificate(host, key_authorization.digest().as_ref())
                            .map_err(IssueError::Setup)?;
                    self.resolver.set_challenge(host, key);
                    answers.alpn_host = Some(host.to_owned());
                }
            }
            challenge.set_ready().await.map_err(classify)?;
        }
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(90));
        let status = order.poll_ready(&retries).await.map_err(classify)?;
        if status != OrderStatus::Ready {
            return Err(IssueError::Refused(
                failed_challenge(&mut order, &kind)
                    .await
                    .unwrap_or_else(|| format!("the order for {host} is {status:?}")),
            ));
        }
        let key_pem = order.finalize().await.map_err(classify)?;
        let chain = order.poll_certificate(&retries).await.map_err(classify)?;
        drop(answers);
        let certificate =
            certs::parse_pem(chain.as_bytes(), key_pem.as_bytes()).map_err(|error| {
                IssueError::Refused(format!(
                    "the ACME server sent an unusable certificate: {error}"
                ))
            })?;
        Ok((certificate, key_pem, chain))
    }
}

/// The error the server recorded on the failed challenge, e.g. "connection refused".
async fn failed_challenge(order: &mut instant_acme::Order, kind: &ChallengeType) -> Option<String> {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        for challenge in &state.challenges {
            if &challenge.r#type == kind
                && let Some(problem) = &challenge.error
            {
                return Some(problem.to_string());
            }
        }
    }
    None
}

/// Takes the challenge answers down when the order ends, whichever way.
struct Answers<'a> {
    acme: &'a Acme,
    tokens: Vec<String>,
    alpn_host: Option<String>,
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        let mut http01 = lock(&self.acme.http01);
        for token in &self.tokens {
            http01.remove(token);
        }
        if let Some(host) = &self.alpn_host {
            self.acme.resolver.clear_challenge(host);
        }
    }
}

/// An HTTPS-only client for the ACME directory: Mozilla's roots (the proxy image has no CA
/// bundle), or only `--tls-acme-ca-root`'s.
fn http_client(settings: &AcmeSettings) -> Result<Box<dyn HttpClient>, IssueError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let builder = HttpsConnectorBuilder::new();
    let builder = match &settings.ca_root {
        None => builder.with_webpki_roots(),
        Some(path) => builder.with_tls_config(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|error| IssueError::Setup(error.to_string()))?
            .with_root_certificates(roots_from(path)?)
            .with_no_client_auth(),
        ),
    };
    let connector = builder
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Box::new(
        Client::builder(TokioExecutor::new()).build::<_, BodyWrapper<Bytes>>(connector),
    ))
}

fn roots_from(path: &Path) -> Result<RootCertStore, IssueError> {
    let unreadable = |detail: String| {
        IssueError::Setup(format!(
            "cannot use --tls-acme-ca-root {}: {detail}",
            path.display()
        ))
    };
    let mut roots = RootCertStore::empty();
    for certificate in
        CertificateDer::pem_file_iter(path).map_err(|error| unreadable(error.to_string()))?
    {
        let certificate = certificate.map_err(|error| unreadable(error.to_string()))?;
        roots
            .add(certificate)
            .map_err(|error| unreadable(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unreadable("no certificate in the file".to_owned()));
    }
    Ok(roots)
}

/// EAB HMAC keys come base64url-encoded (ZeroSSL, Google); padding and the standard alphabet are
/// accepted too.
fn decode_hmac(key: &str) -> Result<Vec<u8>, IssueError> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let trimmed = key.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD.decode(key.trim()))
        .map_err(|_| {
            IssueError::Setup(
                "--tls-acme-eab-hmac-key is not base64url, as ACME servers hand it out".to_owned(),
            )
        })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eab_keys_decode_from_base64url() {
        assert_eq!(decode_hmac("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_hmac("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_hmac("-_-_").unwrap(), vec![0xfb, 0xff, 0xbf]);
        assert!(matches!(decode_hmac("!!"), Err(IssueError::Setup(_))));
    }
}
