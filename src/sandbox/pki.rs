//! Key material a sandbox generates: its certificate authority and the registry's certificate
//! (rcgen), SSH keys for logging in and for each server's host identity (ed25519), and the
//! registry password with its htpasswd entry (bcrypt). Nothing here touches Docker or the disk.

use std::net::IpAddr;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use russh::keys::ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};

/// A CA and a server certificate it signed, PEM-encoded.
pub struct TlsMaterial {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

/// A throw-away CA for sandbox `name` and a certificate for the registry at `address`.
pub fn registry_tls(name: &str, address: IpAddr) -> Result<TlsMaterial> {
    let ca_key = KeyPair::generate().context("Failed to generate the sandbox CA key")?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).context("Failed to prepare the sandbox CA")?;
    ca_params.distinguished_name = distinguished_name(&format!("hoist sandbox {name} CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("Failed to sign the sandbox CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().context("Failed to generate the registry key")?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .context("Failed to prepare the registry certificate")?;
    params.distinguished_name = distinguished_name(&format!("hoist sandbox {name} registry"));
    params.subject_alt_names = vec![SanType::IpAddress(address)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .context("Failed to sign the registry certificate")?;

    Ok(TlsMaterial {
        ca_cert_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// An ed25519 key pair in OpenSSH formats.
pub struct SshKeyPair {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----` ...
    pub private_openssh: String,
    /// `ssh-ed25519 AAAA... comment`
    pub public_openssh: String,
}

pub fn ssh_key(comment: &str) -> Result<SshKeyPair> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).context("Failed to get random bytes from the OS")?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let private_openssh = key
        .to_openssh(LineEnding::LF)
        .context("Failed to encode an SSH private key")?
        .to_string();
    let public_openssh = key
        .public_key()
        .to_openssh()
        .context("Failed to encode an SSH public key")?;
    Ok(SshKeyPair {
        private_openssh,
        public_openssh,
    })
}

/// A random password of 32 characters from `[A-Za-z0-9]` (safe in shell files and URLs).
pub fn password() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Six random bits per character, rejecting the two values past the alphabet: no bias.
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).context("Failed to get random bytes from the OS")?;
        out.extend(
            bytes
                .iter()
                .map(|b| usize::from(b & 0x3f))
                .filter(|&i| i < ALPHABET.len())
                .map(|i| char::from(ALPHABET[i])),
        );
    }
    out.truncate(32);
    Ok(out)
}

/// bcrypt cost of the registry password: `htpasswd -B`'s default. The registry verifies the hash
/// on every request, and at bcrypt's default cost (12, about 250 ms) each pull or push would
/// spend most of its time there; the password is 32 random characters, which the cost adds
/// nothing to.
const HTPASSWD_COST: u32 = 5;

/// An htpasswd line (`user:$2b$...`) as the registry's htpasswd auth expects: bcrypt only.
pub fn htpasswd_line(username: &str, password: &str) -> Result<String> {
    let hash = bcrypt::hash(password, HTPASSWD_COST).context("Failed to hash a password")?;
    Ok(format!("{username}:{hash}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys_are_openssh_ed25519_and_distinct() {
        let a = ssh_key("a").expect("key");
        let b = ssh_key("b").expect("key");
        assert!(
            a.private_openssh
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        assert!(a.public_openssh.starts_with("ssh-ed25519 AAAA"));
        assert!(a.public_openssh.ends_with(" a"));
        assert_ne!(a.public_openssh, b.public_openssh);
    }

    #[test]
    fn passwords_are_long_and_plain() {
        let p = password().expect("password");
        assert_eq!(p.len(), 32);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(p, password().expect("password"));
    }

    #[test]
    fn htpasswd_verifies() {
        let line = htpasswd_line("hoist", "secret").expect("hash");
        let (user, hash) = line.trim_end().split_once(':').expect("user:hash");
        assert_eq!(user, "hoist");
        assert!(bcrypt::verify("secret", hash).expect("verify"));
    }

    #[test]
    fn registry_certificate_names_its_address() {
        let tls = registry_tls("t", "10.1.2.3".parse().expect("ip")).expect("tls");
        assert!(tls.ca_cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(tls.server_cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(tls.server_key_pem.contains("PRIVATE KEY"));
    }
}
