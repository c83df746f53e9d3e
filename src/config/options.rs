//! Option values of deploy.toml that `Config` exposes as types: `boot.limit`, `builder.arch`,
//! `ssh.host_key_checking`, `ssh.proxy_jump`, and accessories' `port` and `volumes`. Checked
//! inside `Deserialize` like the scalars in values.rs.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::values::{check_host, checked_str};

/// `boot.limit`: how many hosts switch at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootLimit {
    /// This many hosts at a time.
    Count(usize),
    /// This percentage of the hosts at a time (rounded up, at least one host).
    Percent(u8),
}

impl<'de> Deserialize<'de> for BootLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LimitVisitor;
        impl Visitor<'_> for LimitVisitor {
            type Value = BootLimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of hosts (such as `2`) or a percentage (such as `\"25%\"`)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BootLimit, E> {
                match usize::try_from(v) {
                    Ok(count) if count > 0 => Ok(BootLimit::Count(count)),
                    _ => Err(E::custom(format!(
                        "invalid limit `{v}`: expected at least 1 host, or a percentage such as `\"25%\"`"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<BootLimit, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BootLimit, E> {
                let percent = v
                    .strip_suffix('%')
                    .and_then(|number| number.trim().parse::<u8>().ok())
                    .filter(|percent| (1..=100).contains(percent));
                percent.map(BootLimit::Percent).ok_or_else(|| {
                    E::custom(format!(
                        "invalid limit `{v}`: expected a number of hosts such as `2` or a percentage from `\"1%\"` to `\"100%\"`"
                    ))
                })
            }
        }
        deserializer.deserialize_any(LimitVisitor)
    }
}

impl Serialize for BootLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BootLimit::Count(count) => s.serialize_u64(*count as u64),
            BootLimit::Percent(percent) => s.serialize_str(&format!("{percent}%")),
        }
    }
}

/// A CPU architecture of the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The Docker platform string: `linux/amd64`.
    #[allow(
        dead_code,
        reason = "public API for the deploy commands, which are not wired yet"
    )]
    pub fn platform(self) -> &'static str {
        match self {
            Arch::Amd64 => "linux/amd64",
            Arch::Arm64 => "linux/arm64",
        }
    }

    fn parse(text: &str) -> Result<Arch, String> {
        match text {
            "amd64" => Ok(Arch::Amd64),
            "arm64" => Ok(Arch::Arm64),
            other => Err(format!(
                "invalid architecture `{other}`: expected `amd64` or `arm64`"
            )),
        }
    }
}

/// One element of a `builder.arch` list.
struct ArchItem(Arch);

impl<'de> Deserialize<'de> for ArchItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(deserializer, "`\"amd64\"` or `\"arm64\"`", |text| {
            Arch::parse(text).map(ArchItem)
        })
    }
}

/// `builder.arch`: one architecture or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchList(pub Vec<Arch>);

impl<'de> Deserialize<'de> for ArchList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArchVisitor;
        impl<'de> Visitor<'de> for ArchVisitor {
            type Value = ArchList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`\"amd64\"`, `\"arm64\"` or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ArchList, E> {
                Ok(ArchList(vec![Arch::parse(v).map_err(E::custom)?]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ArchList, A::Error> {
                let mut list = Vec::new();
                while let Some(ArchItem(arch)) = seq.next_element::<ArchItem>()? {
                    if !list.contains(&arch) {
                        list.push(arch);
                    }
                }
                if list.is_empty() {
                    return Err(de::Error::custom(
                        "empty list: expected `\"amd64\"`, `\"arm64\"` or both",
                    ));
                }
                Ok(ArchList(list))
            }
        }
        deserializer.deserialize_any(ArchVisitor)
    }
}

/// `setup.docker`: which packages `hoist setup` installs Docker from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum DockerPackages {
    /// The distribution's own `docker.io` package.
    #[default]
    #[serde(rename = "docker.io")]
    Distribution,
    /// Docker's packages (`docker-ce`) from Docker's apt repository.
    #[serde(rename = "docker-ce")]
    DockerCe,
}

impl<'de> Deserialize<'de> for DockerPackages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(
            deserializer,
            "`\"docker.io\"` or `\"docker-ce\"`",
            |text| match text {
                "docker.io" => Ok(DockerPackages::Distribution),
                "docker-ce" => Ok(DockerPackages::DockerCe),
                other => Err(format!(
                    "invalid value `{other}`: expected `\"docker.io\"` (the distribution's \
                     package) or `\"docker-ce\"` (Docker's own repository)"
                )),
            },
        )
    }
}

/// `ssh.host_key_checking`: what to do with a host key that isn't in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyChecking {
    /// Refuse hosts whose key isn't already known.
    Strict,
    /// Record the key of a host seen for the first time; refuse a changed key.
    AcceptNew,
}

impl<'de> Deserialize<'de> for HostKeyChecking {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(
            deserializer,
            "`\"strict\"` or `\"accept-new\"`",
            |text| match text {
                "strict" => Ok(HostKeyChecking::Strict),
                "accept-new" => Ok(HostKeyChecking::AcceptNew),
                other => Err(format!(
                    "invalid value `{other}`: expected `\"strict\"` or `\"accept-new\"`"
                )),
            },
        )
    }
}

/// `ssh.proxy_jump`: a jump host, as for `ssh -J`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

impl JumpHost {
    /// Parse "[user@]host[:port]"; an IPv6 address with a port is written "[::1]:2222".
    pub fn parse(text: &str) -> Result<JumpHost, String> {
        let invalid = |why: String| format!("invalid jump host `{text}`: {why}");
        let (user, rest) = match text.rsplit_once('@') {
            Some((user, rest)) => {
                if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c == ':') {
                    return Err(invalid(format!("invalid user `{user}`")));
                }
                (Some(user.to_string()), rest)
            }
            None => (None, text),
        };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("missing `]` after the IPv6 address".to_string()))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(invalid(format!("unexpected `{after}`"))),
                },
            }
        } else if rest.parse::<Ipv6Addr>().is_ok() {
            (rest, None)
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        check_host(host).map_err(|why| invalid(why.replacen("invalid host", "host", 1)))?;
        let port = match port {
            None => 22,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| invalid(format!("invalid port `{port}`")))?,
        };
        Ok(JumpHost {
            user,
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for JumpHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if self.port != 22 {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for JumpHost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(
            deserializer,
            "a jump host `\"[user@]host[:port]\"`",
            JumpHost::parse,
        )
    }
}

impl Serialize for JumpHost {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An accessory's published port, from "PORT", "HOST_PORT:CONTAINER_PORT" or
/// "ADDRESS:HOST_PORT:CONTAINER_PORT" (written as a string or a bare integer). Without an
/// address it is published on 127.0.0.1 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// As written, for `hoist config`.
    pub text: String,
    /// Host address to bind, brackets of an IPv6 address removed.
    pub address: String,
    pub host_port: u16,
    pub container_port: u16,
}

impl PublishedPort {
    pub fn parse(text: &str) -> Result<PublishedPort, String> {
        let invalid = || {
            format!(
                "invalid port `{text}`: expected \"PORT\", \"HOST_PORT:CONTAINER_PORT\" or \"ADDRESS:HOST_PORT:CONTAINER_PORT\""
            )
        };
        let port = |part: &str| part.parse::<u16>().ok().filter(|port| *port > 0);
        let parts: Vec<&str> = text.rsplitn(3, ':').collect();
        let (address, host, container) = match parts.as_slice() {
            [only] => ("127.0.0.1", *only, *only),
            [container, host] => ("127.0.0.1", *host, *container),
            [container, host, address] => {
                let address = address.trim_start_matches('[').trim_end_matches(']');
                if address.parse::<Ipv4Addr>().is_err() && address.parse::<Ipv6Addr>().is_err() {
                    return Err(invalid());
                }
                (address, *host, *container)
            }
            _ => return Err(invalid()),
        };
        match (port(host), port(container)) {
            (Some(host_port), Some(container_port)) => Ok(PublishedPort {
                text: text.to_string(),
                address: address.to_string(),
                host_port,
                container_port,
            }),
            _ => Err(invalid()),
        }
    }
}

impl Serialize for PublishedPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for PublishedPort {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PublishedPort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port such as `\"5432\"` or `\"127.0.0.1:5432:5432\"`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PublishedPort, E> {
                PublishedPort::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PublishedPort, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PublishedPort, E> {
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// Check a volume: "SOURCE:/container/path" with an optional ":ro" or ":rw".
pub fn check_volume(text: &str) -> Result<(), String> {
    let invalid = || {
        format!(
            "invalid volume `{text}`: expected \"NAME:/path\" or \"/host/path:/path\", optionally ending in `:ro`"
        )
    };
    let body = text
        .strip_suffix(":ro")
        .or_else(|| text.strip_suffix(":rw"))
        .unwrap_or(text);
    match body.split_once(':') {
        Some((source, target))
            if !source.is_empty()
                && target.starts_with('/')
                && !target.contains(':')
                && !text.chars().any(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(invalid()),
    }
}

/// A volume of an accessory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume(pub String);

impl<'de> Deserialize<'de> for Volume {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(deserializer, "a volume such as `\"name:/path\"`", |text| {
            check_volume(text)?;
            Ok(Volume(text.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_jump_parses_user_host_and_port() {
        let jump = JumpHost::parse("deploy@203.0.113.2").expect("parses");
        assert_eq!(jump.user.as_deref(), Some("deploy"));
        assert_eq!((jump.host.as_str(), jump.port), ("203.0.113.2", 22));
        let jump = JumpHost::parse("bastion.example.com:2222").expect("parses");
        assert_eq!(
            (jump.user, jump.host.as_str(), jump.port),
            (None, "bastion.example.com", 2222)
        );
        let jump = JumpHost::parse("me@[2001:db8::1]:2200").expect("parses");
        assert_eq!((jump.host.as_str(), jump.port), ("2001:db8::1", 2200));
        assert_eq!(jump.to_string(), "me@[2001:db8::1]:2200");
        let jump = JumpHost::parse("2001:db8::1").expect("parses");
        assert_eq!((jump.host.as_str(), jump.port), ("2001:db8::1", 22));
    }

    #[test]
    fn proxy_jump_refuses_bad_values() {
        for bad in [
            "",
            "@host",
            "host:0",
            "host:x",
            "bad host",
            "host:70000",
            "[::1",
        ] {
            assert!(JumpHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn published_ports_and_volumes() {
        for good in ["5432", "15432:5432", "0.0.0.0:5432:5432", "[::1]:5432:5432"] {
            assert!(PublishedPort::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "x", "1:2:3:4", "host:5432:5432", "0"] {
            assert!(PublishedPort::parse(bad).is_err(), "{bad}");
        }
        // Loopback unless an address is given; HOST_PORT:CONTAINER_PORT in that order.
        let port = PublishedPort::parse("5432").expect("port");
        assert_eq!(
            (port.address.as_str(), port.host_port, port.container_port),
            ("127.0.0.1", 5432, 5432)
        );
        let port = PublishedPort::parse("0.0.0.0:6000:5432").expect("port");
        assert_eq!(
            (port.address.as_str(), port.host_port, port.container_port),
            ("0.0.0.0", 6000, 5432)
        );
        let port = PublishedPort::parse("[::1]:6000:5432").expect("port");
        assert_eq!(port.address, "::1");
        assert_eq!(port.text, "[::1]:6000:5432");
        for good in ["pgdata:/var/lib/postgresql/data", "/srv/data:/data:ro"] {
            assert_eq!(check_volume(good), Ok(()), "{good}");
        }
        for bad in ["pgdata", ":/data", "pgdata:data", "a:/b:c"] {
            assert!(check_volume(bad).is_err(), "{bad}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn host_and_port_parsers_never_panic(
                text in any::<String>(),
                like in "([a-z:\\[]{0,4}@)?(\\[[0-9a-f:.]{0,12}\\]?|[a-z0-9.:-]{0,20})(:[0-9a-z]{0,6}){0,2}(:ro|:rw|/[a-z]{0,3})?",
            ) {
                for text in [&text, &like] {
                    let _ = JumpHost::parse(text);
                    let _ = PublishedPort::parse(text);
                    let _ = check_volume(text);
                }
            }

            #[test]
            fn jump_hosts_print_as_they_parse(
                text in "([a-z]{1,4}@)?(\\[[0-9a-f:]{2,12}\\]|[0-9a-f:]{2,12}|[a-z0-9.-]{1,20})(:[0-9]{1,5})?",
            ) {
                if let Ok(jump) = JumpHost::parse(&text) {
                    prop_assert_eq!(JumpHost::parse(&jump.to_string()), Ok(jump));
                }
            }

            #[test]
            fn published_ports_keep_their_numbers(host in 1u16.., container in 1u16..) {
                let port = PublishedPort::parse(&format!("{host}:{container}"));
                prop_assert_eq!(
                    port.map(|port| (port.address, port.host_port, port.container_port)),
                    Ok(("127.0.0.1".to_string(), host, container))
                );
            }
        }
    }
}
