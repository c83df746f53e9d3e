//! Which host a request is for, decided once so that the host it is routed by is the host the
//! app sees. HTTP/1.1: the authority of an absolute-form target wins over `Host` (RFC 9112
//! §3.2.2), and a request with no `Host`, several, or an invalid one is refused (§3.2). HTTP/2:
//! `:authority`, else `Host`; both present and naming different hosts is malformed (RFC 9113
//! §8.3.1). HTTP/1.0 may have no host at all. The forwarder then sets `Host` to the result.

use http::header::{self, HeaderMap};
use http::{Request, Version};

/// Why a request's host was refused; each is a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    Missing,
    Repeated,
    Invalid,
    Mismatch,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.to_str())
    }
}

impl std::error::Error for HostError {}

impl HostError {
    /// The message, for the log.
    pub fn to_str(&self) -> &'static str {
        match self {
            HostError::Missing => "the request has no Host header",
            HostError::Repeated => "the request has more than one Host header",
            HostError::Invalid => "the Host header is not a valid host[:port]",
            HostError::Mismatch => {
                "the Host header names another host than the request's authority"
            }
        }
    }
}

/// The host (with its port, if one was given) the request is for, lower-cased; empty for an
/// HTTP/1.0 request without one.
pub fn request_host<B>(request: &Request<B>) -> Result<String, HostError> {
    let from_header = host_header(request.headers())?;
    let authority = request
        .uri()
        .authority()
        .map(|authority| authority.as_str())
        .filter(|authority| !authority.is_empty());
    let host = match (request.version(), authority, from_header) {
        (Version::HTTP_2, Some(authority), Some(header))
            if !same_host(authority, header, request.uri().scheme_str()) =>
        {
            return Err(HostError::Mismatch);
        }
        (_, Some(authority), _) => {
            if authority.contains('@') {
                return Err(HostError::Invalid);
            }
            authority
        }
        (_, None, Some(header)) => header,
        (Version::HTTP_09 | Version::HTTP_10, None, None) => "",
        (_, None, None) => return Err(HostError::Missing),
    };
    Ok(host.to_ascii_lowercase())
}

/// The one `Host` header, checked; `None` when there is none.
fn host_header(headers: &HeaderMap) -> Result<Option<&str>, HostError> {
    let mut values = headers.get_all(header::HOST).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HostError::Repeated);
    }
    let text = value.to_str().map_err(|_| HostError::Invalid)?.trim();
    let valid = !text.is_empty()
        && !text.contains(['@', ',', ' ', '/', '\\', '?', '#'])
        && text.parse::<http::uri::Authority>().is_ok();
    if valid {
        Ok(Some(text))
    } else {
        Err(HostError::Invalid)
    }
}

/// True when two `host[:port]` name the same host and port, the port defaulting by scheme.
fn same_host(a: &str, b: &str, scheme: Option<&str>) -> bool {
    let default_port = if scheme == Some("http") { "80" } else { "443" };
    let split = |value: &str| -> (String, String) {
        let value = value.to_ascii_lowercase();
        let (host, port) = if value.starts_with('[') {
            match value.split_once("]:") {
                Some((host, port)) => (format!("{host}]"), port.to_owned()),
                None => (value.clone(), String::new()),
            }
        } else {
            match value.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), port.to_owned()),
                None => (value.clone(), String::new()),
            }
        };
        let port = if port.is_empty() {
            default_port.to_owned()
        } else {
            port
        };
        (host, port)
    };
    split(a) == split(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::get(uri).version(version);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn http1_uses_host_or_the_absolute_form_authority() {
        let plain = request(Version::HTTP_11, "/x", &["App.Test:8080"]);
        assert_eq!(request_host(&plain).unwrap(), "app.test:8080");
        let absolute = request(Version::HTTP_11, "http://app.test/x", &["evil.test"]);
        assert_eq!(
            request_host(&absolute).unwrap(),
            "app.test",
            "RFC 9112 3.2.2"
        );
        let old = request(Version::HTTP_10, "/x", &[]);
        assert_eq!(request_host(&old).unwrap(), "");
    }

    #[test]
    fn http1_refuses_missing_repeated_and_invalid_hosts() {
        let missing = request(Version::HTTP_11, "/x", &[]);
        assert_eq!(request_host(&missing), Err(HostError::Missing));
        let repeated = request(Version::HTTP_11, "/x", &["a.test", "b.test"]);
        assert_eq!(request_host(&repeated), Err(HostError::Repeated));
        for bad in ["a.test, b.test", "user@a.test", "a test", "a.test/x", ""] {
            let invalid = request(Version::HTTP_11, "/x", &[bad]);
            assert_eq!(request_host(&invalid), Err(HostError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn http2_authority_and_host_must_agree() {
        let agree = request(Version::HTTP_2, "https://app.test/x", &["APP.test:443"]);
        assert_eq!(request_host(&agree).unwrap(), "app.test");
        let differ = request(Version::HTTP_2, "https://app.test/x", &["evil.test"]);
        assert_eq!(request_host(&differ), Err(HostError::Mismatch));
        let host_only = request(Version::HTTP_2, "/x", &["app.test"]);
        assert_eq!(request_host(&host_only).unwrap(), "app.test");
    }
}
