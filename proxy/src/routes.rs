//! The routing table: which service answers a (host, path) pair. Built whole from the list of
//! services after every change and swapped in as one pointer, so a lookup never takes a lock.
//!
//! Rules, as kamal-proxy's: the exact host first, then a one-level wildcard (`a.b.com` tries
//! `*.b.com`), then the default services (deployed without `--host`). Choosing a host bucket is
//! final. Inside a bucket the longest matching prefix wins, matched by whole segments (`/api`
//! matches `/api` and `/api/x`, not `/apix`). Two services may not own the same (host, prefix).

use std::collections::HashMap;

/// Where a request goes: the value stored for the matching binding and the prefix that matched.
#[derive(Debug, PartialEq, Eq)]
pub struct Match<'a, T> {
    pub value: &'a T,
    pub prefix: &'a str,
}

/// A (host, prefix) pair that two services both claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "host settings conflict with another service: `{other}` already serves {} with path prefix {prefix}",
    if host.is_empty() { "the default host".to_owned() } else { format!("host {host}") }
)]
pub struct Conflict {
    pub host: String,
    pub prefix: String,
    pub other: String,
}

/// Bindings of one host key, longest prefix first.
#[derive(Debug)]
struct Bucket<T> {
    bindings: Vec<(String, T)>,
}

/// The routing table. `T` is what a match yields (a service handle in the server, anything in
/// tests).
#[derive(Debug)]
pub struct RouteTable<T> {
    buckets: HashMap<String, Bucket<T>>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            buckets: HashMap::new(),
        }
    }
}

impl<T: Clone> RouteTable<T> {
    /// Builds a table from `(service name, hosts, prefixes, value)` entries, refusing any (host,
    /// prefix) pair claimed twice. An empty host list means the default bucket.
    pub fn build<'a, I>(entries: I) -> Result<Self, Conflict>
    where
        I: IntoIterator<Item = (&'a str, &'a [String], &'a [String], T)>,
    {
        let mut owners: HashMap<(String, String), &'a str> = HashMap::new();
        let mut buckets: HashMap<String, Bucket<T>> = HashMap::new();
        for (name, hosts, prefixes, value) in entries {
            let default_host = [String::new()];
            let hosts = if hosts.is_empty() {
                &default_host[..]
            } else {
                hosts
            };
            for host in hosts {
                for prefix in prefixes {
                    let key = (host.clone(), prefix.clone());
                    if let Some(other) = owners.get(&key)
                        && *other != name
                    {
                        return Err(Conflict {
                            host: host.clone(),
                            prefix: prefix.clone(),
                            other: (*other).to_owned(),
                        });
                    }
                    owners.insert(key, name);
                    buckets
                        .entry(host.clone())
                        .or_insert_with(|| Bucket {
                            bindings: Vec::new(),
                        })
                        .bindings
                        .push((prefix.clone(), value.clone()));
                }
            }
        }
        for bucket in buckets.values_mut() {
            bucket
                .bindings
                .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        }
        Ok(Self { buckets })
    }
}

impl<T> RouteTable<T> {
    /// Finds the binding for a request's `Host` (port allowed, any case) and path.
    pub fn lookup(&self, host: &str, path: &str) -> Option<Match<'_, T>> {
        let bucket = self.bucket(host)?;
        bucket
            .bindings
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|(prefix, value)| Match { value, prefix })
    }

    /// True when no service is routed.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn bucket(&self, host: &str) -> Option<&Bucket<T>> {
        let host = strip_port(host);
        let lowered;
        let host = if host.bytes().any(|byte| byte.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        if !host.is_empty() {
            if let Some(bucket) = self.buckets.get(host) {
                return Some(bucket);
            }
            if let Some((_, parent)) = host.split_once('.') {
                let mut wildcard = String::with_capacity(parent.len() + 2);
                wildcard.push_str("*.");
                wildcard.push_str(parent);
                if let Some(bucket) = self.buckets.get(&wildcard) {
                    return Some(bucket);
                }
            }
        }
        self.buckets.get("")
    }
}

/// `a.com:8080` → `a.com`; `[::1]:80` → `[::1]`; a bare name is returned as is.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Segment-aware prefix match: `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The path a target sees when its service strips `prefix`: `/api/users` → `/users`, `/api` → `/`.
pub fn strip_prefix<'a>(prefix: &str, path: &'a str) -> &'a str {
    if prefix == "/" {
        return path;
    }
    match path.strip_prefix(prefix) {
        Some("") => "/",
        Some(rest) => rest,
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    fn table(
        services: &[(&'static str, &[&str], &[&str])],
    ) -> Result<RouteTable<&'static str>, Conflict> {
        let owned: Vec<(&str, Vec<String>, Vec<String>)> = services
            .iter()
            .map(|(name, hosts, prefixes)| (*name, strings(hosts), strings(prefixes)))
            .collect();
        RouteTable::build(
            owned
                .iter()
                .map(|(name, hosts, prefixes)| (*name, &hosts[..], &prefixes[..], *name)),
        )
    }

    fn route(table: &RouteTable<&'static str>, host: &str, path: &str) -> Option<&'static str> {
        table.lookup(host, path).map(|found| *found.value)
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let table = table(&[
            ("exact", &["app.example.com"], &["/"]),
            ("wild", &["*.example.com"], &["/"]),
            ("default", &[], &["/"]),
        ])
        .unwrap();
        assert_eq!(route(&table, "app.example.com", "/"), Some("exact"));
        assert_eq!(route(&table, "APP.example.com:8080", "/x"), Some("exact"));
        assert_eq!(route(&table, "other.example.com", "/"), Some("wild"));
        // One level only.
        assert_eq!(route(&table, "a.b.example.com", "/"), Some("default"));
        assert_eq!(route(&table, "example.com", "/"), Some("default"));
        assert_eq!(route(&table, "", "/"), Some("default"));
        assert_eq!(route(&table, "10.0.0.1:80", "/"), Some("default"));
    }

    #[test]
    fn no_default_means_not_found() {
        let table = table(&[("exact", &["a.com"], &["/"])]).unwrap();
        assert_eq!(route(&table, "b.com", "/"), None);
    }

    #[test]
    fn longest_segment_prefix_wins_without_fall_through() {
        let table = table(&[
            ("root", &["a.com"], &["/"]),
            ("api", &["a.com"], &["/api"]),
            ("v2", &["a.com"], &["/api/v2"]),
            ("only-prefix", &["b.com"], &["/admin"]),
            ("default", &[], &["/"]),
        ])
        .unwrap();
        assert_eq!(route(&table, "a.com", "/api"), Some("api"));
        assert_eq!(route(&table, "a.com", "/api/"), Some("api"));
        assert_eq!(route(&table, "a.com", "/api/users"), Some("api"));
        assert_eq!(route(&table, "a.com", "/apix"), Some("root"));
        assert_eq!(route(&table, "a.com", "/api/v2/x"), Some("v2"));
        assert_eq!(route(&table, "a.com", "/api/v22"), Some("api"));
        assert_eq!(route(&table, "b.com", "/admin/x"), Some("only-prefix"));
        // The host bucket is chosen first; no fall-through to the default service.
        assert_eq!(route(&table, "b.com", "/other"), None);
        assert_eq!(table.lookup("a.com", "/api/x").unwrap().prefix, "/api");
    }

    #[test]
    fn conflicts_are_refused_but_a_service_may_redeploy_itself() {
        let error = table(&[
            ("one", &["a.com"], &["/"]),
            ("two", &["a.com", "b.com"], &["/"]),
        ])
        .unwrap_err();
        assert_eq!(error.other, "one");
        assert_eq!(error.host, "a.com");
        assert!(table(&[("one", &[], &["/"]), ("two", &[], &["/"])]).is_err());
        assert!(table(&[("one", &["a.com"], &["/"]), ("two", &["a.com"], &["/api"])]).is_ok());
        assert!(table(&[("one", &["*.a.com"], &["/"]), ("two", &["x.a.com"], &["/"])]).is_ok());
        assert!(table(&[("one", &[], &["/"]), ("two", &["a.com"], &["/"])]).is_ok());
    }

    #[test]
    fn stripping_keeps_a_leading_slash() {
        assert_eq!(strip_prefix("/api", "/api/users"), "/users");
        assert_eq!(strip_prefix("/api", "/api"), "/");
        assert_eq!(strip_prefix("/", "/x"), "/x");
        assert!(prefix_matches("/", "/anything"));
        assert!(!prefix_matches("/api", "/ap"));
    }
}
