//! `[proxy]` from the file to [`ProxyConfig`]: the app's routes (hosts, path prefixes),
//! timeouts, health checks, forwarded headers, buffering, logged headers, and where `tls = true`
//! gets its certificates: ACME (`[proxy.acme]`) or the app's own (`ssl_certificate` /
//! `ssl_private_key`).

use std::path::Path;

use super::error::ConfigError;
use super::resolve::{
    DEFAULT_BUFFER_MEMORY, DEFAULT_HEALTHCHECK_INTERVAL, DEFAULT_HEALTHCHECK_TIMEOUT,
    DEFAULT_MAX_REQUEST_BODY, DEFAULT_PROXY_IMAGE, DEFAULT_PROXY_TIMEOUT, Fail, MakeSecret,
    absolute, positive,
};
use super::schema::{AcmeSchema, ProxySchema};
use super::{
    AcmeConfig, AcmeDirectory, BufferingConfig, CertificateSecrets, HealthcheckConfig, ProxyConfig,
};

pub(super) fn resolve_proxy(
    proxy: ProxySchema,
    root: &Path,
    fail: &Fail,
    secret: &MakeSecret,
) -> Result<ProxyConfig, ConfigError> {
    let tls = proxy.tls.unwrap_or(false);
    let proxy_hosts: Vec<String> = proxy
        .hosts
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.0)
        .collect();
    if tls && proxy_hosts.is_empty() {
        return Err(fail(
            "proxy.tls",
            "`proxy.tls = true` needs `proxy.hosts`, the names to get certificates for".to_string(),
            Some("add `hosts = [\"app.example.com\"]` under `[proxy]`".to_string()),
        ));
    }
    let healthcheck = proxy.healthcheck.unwrap_or_default();
    let buffering = proxy.buffering.unwrap_or_default();
    let proxy_logging = proxy.logging.unwrap_or_default();
    let certificate = resolve_certificate(
        proxy.ssl_certificate,
        proxy.ssl_private_key,
        tls,
        proxy.acme.is_some(),
        fail,
        secret,
    )?;
    let acme = resolve_acme(proxy.acme, tls, root, fail, secret)?;
    Ok(ProxyConfig {
        image: proxy
            .image
            .map_or_else(|| DEFAULT_PROXY_IMAGE.to_string(), |image| image.0),
        hosts: proxy_hosts,
        app_port: proxy.app_port.map_or(80, |port| port.0),
        tls,
        deploy_timeout: positive(
            proxy.deploy_timeout,
            DEFAULT_PROXY_TIMEOUT,
            "proxy.deploy_timeout",
            fail,
        )?,
        drain_timeout: proxy.drain_timeout.map_or(DEFAULT_PROXY_TIMEOUT, |d| d.0),
        response_timeout: positive(
            proxy.response_timeout,
            DEFAULT_PROXY_TIMEOUT,
            "proxy.response_timeout",
            fail,
        )?,
        // Trusting every client lets anyone forge the client's address; behind a load
        // balancer or CDN, `trusted_proxies` names whose headers to keep.
        forward_headers: proxy.forward_headers.unwrap_or(false),
        trusted_proxies: proxy
            .trusted_proxies
            .unwrap_or_default()
            .into_iter()
            .map(|proxy| proxy.0)
            .collect(),
        path_prefixes: proxy.path_prefix.map(|paths| paths.0).unwrap_or_default(),
        strip_path_prefix: proxy.strip_path_prefix.unwrap_or(true),
        healthcheck: HealthcheckConfig {
            path: healthcheck
                .path
                .map_or_else(|| "/up".to_string(), |path| path.0),
            interval: positive(
                healthcheck.interval,
                DEFAULT_HEALTHCHECK_INTERVAL,
                "proxy.healthcheck.interval",
                fail,
            )?,
            timeout: positive(
                healthcheck.timeout,
                DEFAULT_HEALTHCHECK_TIMEOUT,
                "proxy.healthcheck.timeout",
                fail,
            )?,
            port: healthcheck.port.map(|port| port.0),
            host: healthcheck.host.map(|host| host.0),
        },
        log_request_headers: proxy_logging
            .request_headers
            .unwrap_or_default()
            .into_iter()
            .map(|name| name.0)
            .collect(),
        log_response_headers: proxy_logging
            .response_headers
            .unwrap_or_default()
            .into_iter()
            .map(|name| name.0)
            .collect(),
        certificate,
        buffering: BufferingConfig {
            requests: buffering.requests.unwrap_or(true),
            responses: buffering.responses.unwrap_or(true),
            memory: buffering.memory.unwrap_or(DEFAULT_BUFFER_MEMORY),
            max_request_body: buffering
                .max_request_body
                .unwrap_or(DEFAULT_MAX_REQUEST_BODY),
            max_response_body: buffering.max_response_body.unwrap_or(0),
        },
        acme,
    })
}

/// `ssl_certificate` / `ssl_private_key`: both or neither, only with `tls = true`, and instead
/// of `[proxy.acme]` (a custom certificate is never renewed by ACME).
fn resolve_certificate(
    certificate: Option<super::values::EnvName>,
    private_key: Option<super::values::EnvName>,
    tls: bool,
    acme: bool,
    fail: &Fail,
    secret: &MakeSecret,
) -> Result<Option<CertificateSecrets>, ConfigError> {
    let (certificate, private_key) = match (certificate, private_key) {
        (None, None) => return Ok(None),
        (Some(certificate), Some(private_key)) => (certificate, private_key),
        (Some(_), None) => {
            return Err(fail(
                "proxy.ssl_certificate",
                "`ssl_certificate` needs `ssl_private_key`, the name of the secret holding the \
                 certificate's private key"
                    .to_string(),
                Some("add `ssl_private_key = \"SSL_PRIVATE_KEY\"` under `[proxy]`".to_string()),
            ));
        }
        (None, Some(_)) => {
            return Err(fail(
                "proxy.ssl_private_key",
                "`ssl_private_key` needs `ssl_certificate`, the name of the secret holding the \
                 certificate chain"
                    .to_string(),
                Some("add `ssl_certificate = \"SSL_CERTIFICATE\"` under `[proxy]`".to_string()),
            ));
        }
    };
    if !tls {
        return Err(fail(
            "proxy.ssl_certificate",
            "`ssl_certificate` only applies with `proxy.tls = true`".to_string(),
            Some("set `tls = true` under `[proxy]`".to_string()),
        ));
    }
    if acme {
        return Err(fail(
            "proxy.acme",
            "`[proxy.acme]` and `ssl_certificate` exclude each other: with your own \
             certificate, nothing is asked of an ACME CA"
                .to_string(),
            Some("remove `[proxy.acme]`, or `ssl_certificate` and `ssl_private_key`".to_string()),
        ));
    }
    Ok(Some(CertificateSecrets {
        certificate: secret("proxy.ssl_certificate".to_string(), certificate.0),
        private_key: secret("proxy.ssl_private_key".to_string(), private_key.0),
    }))
}

/// `[proxy.acme]`: only with `tls = true`; a directory is a known name or an https URL; an EAB
/// key id and its HMAC key come together.
fn resolve_acme(
    acme: Option<AcmeSchema>,
    tls: bool,
    root: &Path,
    fail: &Fail,
    secret: &MakeSecret,
) -> Result<AcmeConfig, ConfigError> {
    let Some(acme) = acme else {
        return Ok(AcmeConfig::default());
    };
    if !tls {
        return Err(fail(
            "proxy.acme",
            "`[proxy.acme]` only applies with `proxy.tls = true`".to_string(),
            Some("set `tls = true` under `[proxy]`, or remove `[proxy.acme]`".to_string()),
        ));
    }
    let directory = match acme.directory.map(|d| d.0) {
        None => AcmeDirectory::Letsencrypt,
        Some(name) if name == "letsencrypt" => AcmeDirectory::Letsencrypt,
        Some(name) if name == "letsencrypt-staging" => AcmeDirectory::LetsencryptStaging,
        Some(url) if url.starts_with("https://") && url.len() > "https://".len() => {
            AcmeDirectory::Url(url)
        }
        Some(other) => {
            return Err(fail(
                "proxy.acme.directory",
                format!("`{other}` is not an ACME directory"),
                Some(
                    "use `letsencrypt`, `letsencrypt-staging`, or the https:// URL of an ACME \
                     directory (e.g. https://acme.zerossl.com/v2/DV90)"
                        .to_string(),
                ),
            ));
        }
    };
    let eab_kid = acme.eab_kid.map(|kid| kid.0);
    let eab_hmac_key = acme
        .eab_hmac_key
        .map(|name| secret("proxy.acme.eab_hmac_key".to_string(), name.0));
    match (&eab_kid, &eab_hmac_key) {
        (Some(_), None) => {
            return Err(fail(
                "proxy.acme.eab_kid",
                "`eab_kid` needs `eab_hmac_key`, the name of the secret holding its HMAC key"
                    .to_string(),
                Some("add `eab_hmac_key = \"ACME_EAB_HMAC_KEY\"` and define that secret in .hoist/secrets".to_string()),
            ));
        }
        (None, Some(_)) => {
            return Err(fail(
                "proxy.acme.eab_hmac_key",
                "`eab_hmac_key` needs `eab_kid`, the key id your ACME provider gave you"
                    .to_string(),
                None,
            ));
        }
        _ => {}
    }
    let ca_root = match acme.ca_root {
        Some(path) => {
            let path = absolute(root, &path.0);
            if let Err(err) = std::fs::metadata(&path) {
                return Err(fail(
                    "proxy.acme.ca_root",
                    format!("can't read `{}`: {err}", path.display()),
                    Some(
                        "give the path, on this machine, of the PEM root certificate of your                          ACME server's HTTPS (relative paths start at deploy.toml)"
                            .to_string(),
                    ),
                ));
            }
            Some(path)
        }
        None => None,
    };
    Ok(AcmeConfig {
        directory,
        challenge: acme.challenge,
        eab_kid,
        eab_hmac_key,
        ca_root,
    })
}
