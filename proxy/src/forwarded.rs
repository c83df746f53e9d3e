//! The headers that tell a target who the client is and how it came in: `X-Forwarded-For`,
//! `-Proto` and `-Host`. They are only as good as whoever set them, so incoming ones are kept
//! (and extended) only from trusted peers: every peer with `--forward-headers` (kamal-proxy's
//! meaning), or the addresses in `--trusted-proxies` (a load balancer, a CDN). From anyone else
//! every forwarding header (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`) is removed and the three
//! set fresh, so a client cannot forge its address or scheme.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::options::TargetOptions;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// What the proxy knows about how a request arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// The client's address as the proxy sees it (the peer, or `--client-ip-header`'s value).
    pub client_ip: IpAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The host the request was routed by.
    pub host: &'a str,
}

/// True when `peer`'s forwarding headers are believed.
pub fn trusts(options: &TargetOptions, peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    options.forward_headers
        || options
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer))
}

/// A header value formatted on the stack (one allocation, the value's): `{ip}`, `t={millis}`;
/// `None` past 48 bytes or for bytes a header can't hold.
pub fn header_value(text: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
    use std::io::Write as _;
    let mut buffer = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    cursor.write_fmt(text).ok()?;
    let written = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(&buffer[..written]).ok()
}

/// Rewrites the forwarding headers of a request about to go to a target; returns whether the
/// peer was trusted (its headers kept and extended).
pub fn prepare(headers: &mut HeaderMap, options: &TargetOptions, arrival: Arrival<'_>) -> bool {
    let trusted = trusts(options, arrival.peer);
    if !trusted {
        remove_forwarding_headers(headers);
    }
    if let Some(ip) = header_value(format_args!("{}", arrival.client_ip)) {
        append_or_set(headers, X_FORWARDED_FOR, ip, trusted);
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(arrival.scheme));
    }
    if !headers.contains_key(X_FORWARDED_HOST)
        && let Ok(host) = HeaderValue::from_str(arrival.host)
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
    trusted
}

/// Appends `value` to `name` as one comma list (`a, b`) with `extend`; otherwise replaces it.
pub fn append_or_set(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue, extend: bool) {
    if extend {
        let existing: Vec<&str> = headers
            .get_all(&name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        if !existing.is_empty() {
            let joined = format!("{}, {}", existing.join(", "), value.to_str().unwrap_or(""));
            if let Ok(joined) = HeaderValue::from_str(&joined) {
                headers.insert(name, joined);
                return;
            }
        }
    }
    headers.insert(name, value);
}

/// Removes `Forwarded`, `X-Real-IP` and every `X-Forwarded-*` header.
fn remove_forwarding_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-forwarded-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
    headers.remove(FORWARDED);
    headers.remove(X_REAL_IP);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forged() -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.test"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-ssl", "on"),
            ("x-forwarded-scheme", "https"),
            ("forwarded", "for=1.2.3.4;proto=https"),
            ("x-real-ip", "1.2.3.4"),
            ("x-kept", "1"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    fn arrival(peer: &str) -> Arrival<'static> {
        let peer: IpAddr = peer.parse().unwrap();
        Arrival {
            peer,
            client_ip: peer,
            scheme: "http",
            host: "app.test",
        }
    }

    #[test]
    fn untrusted_peers_cannot_forge_forwarding_headers() {
        let options = TargetOptions {
            forward_headers: false,
            ..TargetOptions::default()
        };
        let mut headers = forged();
        prepare(&mut headers, &options, arrival("203.0.113.9"));
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "app.test");
        for gone in [
            "x-forwarded-port",
            "x-forwarded-ssl",
            "x-forwarded-scheme",
            "forwarded",
            "x-real-ip",
        ] {
            assert!(!headers.contains_key(gone), "{gone} must be removed");
        }
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn trusted_peers_are_kept_and_extended() {
        let options = TargetOptions {
            forward_headers: false,
            trusted_proxies: vec!["10.0.0.0/24".parse().unwrap()],
            ..TargetOptions::default()
        };
        let mut headers = forged();
        prepare(&mut headers, &options, arrival("10.0.0.7"));
        assert_eq!(headers["x-forwarded-for"], "1.2.3.4, 10.0.0.7");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["forwarded"], "for=1.2.3.4;proto=https");
        // An IPv4 peer seen as IPv4-mapped IPv6 is the same peer.
        assert!(trusts(&options, "::ffff:10.0.0.7".parse().unwrap()));
        assert!(!trusts(&options, "10.0.1.7".parse().unwrap()));
    }

    #[test]
    fn forward_headers_trusts_everyone() {
        let options = TargetOptions::default();
        assert!(options.forward_headers);
        let mut headers = forged();
        prepare(&mut headers, &options, arrival("203.0.113.9"));
        assert_eq!(headers["x-forwarded-for"], "1.2.3.4, 203.0.113.9");
        assert!(headers.contains_key("x-real-ip"));
    }
}
