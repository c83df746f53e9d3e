//! What `hoist-proxy deploy` is given that must never be on a command line, in a label or in a
//! log: the EAB HMAC key of `[proxy.acme]` (in the exec's environment) and the app's own
//! certificate (`proxy.ssl_certificate` / `ssl_private_key`: files in the proxy's volume, one
//! directory per certificate, so a new certificate is a new path and the proxy loads it at that
//! deploy). Resolved once per command, before any server is touched.

use anyhow::Result;
use bollard::Docker;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::docker::{self, FileSpec};
use crate::naming::{PROXY_CONTAINER, PROXY_STATE_DIR, PROXY_UID};
use crate::secrets::Secrets;

/// The secrets of the proxy that terminates TLS (a web host's, or the load balancer's).
#[derive(Debug, Default, Clone)]
pub struct DeploySecrets {
    /// `NAME=value` lines for the exec's environment.
    pub env: Vec<String>,
    pub certificate: Option<Certificate>,
}

/// A custom certificate on its way into the proxy's volume.
#[derive(Clone)]
pub struct Certificate {
    /// Its directory there, named by the certificate's digest.
    dir: String,
    chain: Vec<u8>,
    key: Vec<u8>,
}

/// Where the certificate is, never what it holds.
impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    pub fn certificate_path(&self) -> String {
        format!("{}/cert.pem", self.dir)
    }

    pub fn private_key_path(&self) -> String {
        format!("{}/key.pem", self.dir)
    }

    /// Place both files in the running proxy's volume, readable by the proxy's user only.
    pub async fn upload(&self, docker: &Docker) -> Result<()> {
        let owned = |path: String, contents: &[u8]| {
            FileSpec::new(path, contents.to_vec(), 0o600).owned_by(PROXY_UID)
        };
        let files = [
            owned(self.certificate_path(), &self.chain),
            owned(self.private_key_path(), &self.key),
        ];
        docker::upload_files(docker, PROXY_CONTAINER, &files, &[]).await
    }
}

impl DeploySecrets {
    /// The secrets `config` gives the TLS-terminating proxy; empty without TLS.
    pub fn for_config(config: &Config, secrets: &Secrets) -> Result<Self> {
        let mut deploy = DeploySecrets::default();
        if !config.proxy.tls {
            return Ok(deploy);
        }
        if let Some(reference) = &config.proxy.acme.eab_hmac_key {
            let key = secrets.resolve(reference)?;
            deploy.env.push(format!(
                "{}={}",
                hoist_proxy::cli::EAB_HMAC_KEY_ENV,
                key.expose()
            ));
        }
        if let Some(pair) = &config.proxy.certificate {
            let chain = secrets
                .resolve(&pair.certificate)?
                .expose()
                .as_bytes()
                .to_vec();
            let key = secrets
                .resolve(&pair.private_key)?
                .expose()
                .as_bytes()
                .to_vec();
            // The certificate is public: its digest names the directory without telling
            // anything of the key.
            let digest = Sha256::digest(&chain);
            let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            deploy.certificate = Some(Certificate {
                dir: format!("{PROXY_STATE_DIR}/certificates/{name}"),
                chain,
                key,
            });
        }
        Ok(deploy)
    }
}

#[cfg(test)]
mod tests {
    use super::super::proxy_args::deploy_args_with;
    use super::super::proxy_args::tests::{config_with, parse};
    use super::*;

    #[test]
    fn a_custom_certificate_goes_to_a_directory_per_certificate_named_by_path_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config_with(
            dir.path(),
            "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\n\
             ssl_certificate = \"CERT\"\nssl_private_key = \"KEY\"\n",
        );
        std::fs::create_dir_all(dir.path().join(".hoist")).expect("mkdir");
        let write = |chain: &str| {
            std::fs::write(
                dir.path().join(".hoist/secrets"),
                format!("CERT=\"{chain}\"\nKEY=\"-----BEGIN PRIVATE KEY-----\\nsecret-key\"\n"),
            )
            .expect("write secrets");
            let secrets = Secrets::load(dir.path(), None).expect("secrets");
            DeploySecrets::for_config(&config, &secrets).expect("resolve")
        };
        let first = write("-----BEGIN CERTIFICATE-----\\none");
        let certificate = first.certificate.as_ref().expect("a certificate");
        assert!(first.env.is_empty());
        assert!(
            certificate
                .certificate_path()
                .starts_with("/var/lib/hoist-proxy/certificates/"),
            "{certificate:?}"
        );
        assert!(!format!("{first:?}").contains("secret-key"), "{first:?}");
        let args = deploy_args_with(&config, "a-web", "0123456789ab", None, Some(certificate))
            .expect("argv");
        let parsed = parse(&args);
        assert_eq!(
            parsed.tls_certificate_path,
            Some(certificate.certificate_path().into())
        );
        assert_eq!(
            parsed.tls_private_key_path,
            Some(certificate.private_key_path().into())
        );
        assert!(
            !args.iter().any(|arg| arg.contains("secret-key")),
            "{args:?}"
        );
        // Another certificate, another directory: the proxy loads it at the next deploy.
        let second = write("-----BEGIN CERTIFICATE-----\\ntwo");
        assert_ne!(
            second
                .certificate
                .expect("a certificate")
                .certificate_path(),
            certificate.certificate_path()
        );
    }
}
