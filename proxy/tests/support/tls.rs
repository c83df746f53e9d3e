//! TLS test support: a throw-away CA that signs certificates for custom-certificate tests, and a
//! real HTTPS client (rustls, verifying the chain against given roots, sending SNI) that opens a
//! new connection per request and speaks HTTP/2 or HTTP/1.1 as ALPN decides.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

/// A certificate authority for tests.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let certificate = params.self_signed(&key).expect("sign CA");
        Self {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names` (DNS names, or IP addresses): (chain PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("test"));
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().expect("DNS name")),
            })
            .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let certificate = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (certificate.pem(), key.serialize_pem())
    }

    /// Writes a leaf for `names` to `certificate` and `key`.
    pub fn write(&self, names: &[&str], certificate: &Path, key: &Path) -> Vec<u8> {
        let (chain, key_pem) = self.issue(names);
        std::fs::write(key, key_pem).expect("write key");
        std::fs::write(certificate, &chain).expect("write certificate");
        leaf_der(&chain)
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        roots(&self.pem)
    }
}

/// The DER of the first certificate in a PEM chain.
pub fn leaf_der(chain_pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("valid PEM")
        .to_vec()
}

/// A root store of the certificates in `pem`.
pub fn roots(pem: &str) -> Arc<RootCertStore> {
    let mut store = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        store.add(certificate.expect("root PEM")).expect("add root");
    }
    assert!(!store.is_empty(), "no root certificate in {pem:?}");
    Arc::new(store)
}

/// What an HTTPS request got.
#[derive(Debug)]
pub struct HttpsGot {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    /// The protocol ALPN chose (`h2`, `http/1.1`), if any.
    pub alpn: Option<String>,
    pub version: http::Version,
    /// The server's leaf certificate (DER).
    pub leaf: Vec<u8>,
}

/// GET `https://host:port/path` on a new connection to 127.0.0.1:port, offering h2 and
/// http/1.1, verifying the chain against `roots`. Errors (handshake, verification, I/O) come
/// back as text.
pub async fn https_get(
    port: u16,
    host: &str,
    path: &str,
    roots: &Arc<RootCertStore>,
) -> Result<HttpsGot, String> {
    https_get_alpn(port, host, path, roots, &["h2", "http/1.1"]).await
}

/// As [`https_get`], offering only `alpn` (none: no ALPN extension).
pub async fn https_get_alpn(
    port: u16,
    host: &str,
    path: &str,
    roots: &Arc<RootCertStore>,
    alpn: &[&str],
) -> Result<HttpsGot, String> {
    tokio::time::timeout(
        Duration::from_secs(10),
        exchange(port, host, path, roots, alpn),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
}

async fn exchange(
    port: u16,
    host: &str,
    path: &str,
    roots: &Arc<RootCertStore>,
    alpn: &[&str],
) -> Result<HttpsGot, String> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| error.to_string())?
    .with_root_certificates(Arc::clone(roots))
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|name| name.as_bytes().to_vec()).collect();
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(host.to_owned()).map_err(|error| error.to_string())?;
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    let (_, session) = stream.get_ref();
    let negotiated = session
        .alpn_protocol()
        .map(|protocol| String::from_utf8_lossy(protocol).into_owned());
    let leaf = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.to_vec())
        .unwrap_or_default();
    let io = TokioIo::new(stream);
    let authority = format!("{host}:{port}");
    let response = if negotiated.as_deref() == Some("h2") {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|error| format!("h2 handshake: {error}"))?;
        tokio::spawn(connection);
        let request = Request::get(format!("https://{authority}{path}"))
            .body(Empty::<Bytes>::new())
            .map_err(|error| error.to_string())?;
        sender
            .send_request(request)
            .await
            .map_err(|error| format!("request: {error}"))?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|error| format!("http/1.1 handshake: {error}"))?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header("host", &authority)
            .body(Empty::<Bytes>::new())
            .map_err(|error| error.to_string())?;
        sender
            .send_request(request)
            .await
            .map_err(|error| format!("request: {error}"))?
    };
    let status = response.status().as_u16();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("body: {error}"))?
        .to_bytes();
    Ok(HttpsGot {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        alpn: negotiated,
        version,
        leaf,
    })
}
