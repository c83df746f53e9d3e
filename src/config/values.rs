//! Validating value types of deploy.toml: durations, hosts, names, ports, `boot.limit`,
//! `builder.arch`, `ssh.host_key_checking` and `ssh.proxy_jump`. Each one checks its value
//! inside `Deserialize`, so toml reports the span of the bad value; the table layout is in
//! schema.rs.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// What to write for a duration, shared by every duration error.
const DURATION_HELP: &str = "expected a number with a unit such as `500ms`, `5s`, `1m30s` or `1h`";

/// Parse "500ms", "5s", "1m30s", "1h": one or more `<integer><unit>` parts, units `ms`, `s`,
/// `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration `{text}`: {DURATION_HELP}");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            _ => return Err(invalid()),
        };
        total = part
            .and_then(|part| total.checked_add(part))
            .ok_or_else(invalid)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// The inverse of [`parse_duration`], at millisecond precision: "1m30s", "500ms", "0s".
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    for (value, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// Deserialize a string and check it inside the deserializer, so toml gives the error the span
/// of the value itself (an array element rather than the whole array).
fn checked_str<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct CheckedVisitor<F> {
        expecting: &'static str,
        check: F,
    }
    impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for CheckedVisitor<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.check)(v).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(CheckedVisitor { expecting, check })
}

/// A duration written as a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(
            deserializer,
            "a duration string with a unit, such as `\"5s\"`",
            |text| parse_duration(text).map(DurationValue),
        )
    }
}

/// Serialize a duration the way deploy.toml writes it.
pub fn serialize_duration<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*value))
}

/// An optional duration where `None` is written "0s" (ssh.keepalive).
pub fn serialize_optional_duration<S: Serializer>(
    value: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(value.unwrap_or_default()))
}

/// Check a host: an IPv4 or IPv6 address, or a DNS name. No scheme, user, port or spaces.
pub fn check_host(text: &str) -> Result<(), String> {
    let invalid = |why: &str| format!("invalid host `{text}`: {why}");
    if text.is_empty() {
        return Err(invalid("it is empty"));
    }
    if text.contains("://") {
        return Err(invalid("write the bare address or name, without a scheme"));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(invalid("hosts can't contain spaces"));
    }
    if text.contains('@') {
        return Err(invalid(
            "write the user in [ssh] `user`, not in the host (`user@` is only for `proxy_jump`)",
        ));
    }
    if text.parse::<Ipv4Addr>().is_ok() || text.parse::<Ipv6Addr>().is_ok() {
        return Ok(());
    }
    if text.contains(':') {
        return Err(invalid(
            "no port here; the SSH port is [ssh] `port` (IPv6 addresses are written without brackets)",
        ));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if text.len() > 253 || !text.split('.').all(valid_label) {
        return Err(invalid(
            "expected an IP address or a DNS name (letters, digits, `-` and `.`)",
        ));
    }
    Ok(())
}

/// A host name or address, checked by [`check_host`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host(pub String);

impl<'de> Deserialize<'de> for Host {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(deserializer, "a host name or IP address", |text| {
            check_host(text)?;
            Ok(Host(text.to_string()))
        })
    }
}

/// Check a name of service, role, accessory or destination: `[a-z0-9][a-z0-9_-]*`.
pub fn check_name(text: &str) -> Result<(), String> {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok && text.len() <= 63 {
        Ok(())
    } else {
        Err(format!(
            "invalid name `{text}`: use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
        ))
    }
}

/// A service, role or accessory name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Name(pub String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(
            deserializer,
            "a name (lowercase letters, digits, `-` and `_`)",
            |text| {
                check_name(text)?;
                Ok(Name(text.to_string()))
            },
        )
    }
}

/// Check an environment variable (and secret) name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_env_name(text: &str) -> Result<(), String> {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!(
            "invalid variable name `{text}`: use letters, digits and `_`, not starting with a digit"
        ))
    }
}

/// An environment variable or secret name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EnvName(pub String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(deserializer, "a variable name", |text| {
            check_env_name(text)?;
            Ok(EnvName(text.to_string()))
        })
    }
}

/// A plain value (env `clear`, labels, build args): a string, or a number or boolean written
/// without quotes, kept as the string it would be in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainValue(pub String);

impl<'de> Deserialize<'de> for PlainValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PlainVisitor;
        impl Visitor<'_> for PlainVisitor {
            type Value = PlainValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PlainValue, E> {
                Ok(PlainValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PlainValue, E> {
                Ok(PlainValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PlainValue, E> {
                Ok(PlainValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PlainValue, E> {
                Ok(PlainValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<PlainValue, E> {
                Ok(PlainValue(v.to_string()))
            }
        }
        deserializer.deserialize_any(PlainVisitor)
    }
}

/// A TCP port from 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer (a port from 1 to 65535)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                match u16::try_from(v) {
                    Ok(port) if port > 0 => Ok(Port(port)),
                    _ => Err(E::custom(format!(
                        "invalid port `{v}`: expected a port from 1 to 65535"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

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
            |text| JumpHost::parse(text),
        )
    }
}

impl Serialize for JumpHost {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Check an accessory's published port: "PORT", "HOST_PORT:CONTAINER_PORT" or
/// "ADDRESS:HOST_PORT:CONTAINER_PORT".
pub fn check_published_port(text: &str) -> Result<(), String> {
    let invalid = || {
        format!(
            "invalid port `{text}`: expected \"PORT\", \"HOST_PORT:CONTAINER_PORT\" or \"ADDRESS:HOST_PORT:CONTAINER_PORT\""
        )
    };
    let is_port = |part: &str| part.parse::<u16>().is_ok_and(|port| port > 0);
    let parts: Vec<&str> = text.rsplitn(3, ':').collect();
    let ok = match parts.as_slice() {
        [port] => is_port(port),
        [container, host] => is_port(container) && is_port(host),
        [container, host, address] => {
            let address = address.trim_start_matches('[').trim_end_matches(']');
            is_port(container)
                && is_port(host)
                && (address.parse::<Ipv4Addr>().is_ok() || address.parse::<Ipv6Addr>().is_ok())
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(invalid()) }
}

/// An accessory's published port, written as a string or a bare integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort(pub String);

impl<'de> Deserialize<'de> for PublishedPort {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PublishedPort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port such as `\"5432\"` or `\"127.0.0.1:5432:5432\"`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PublishedPort, E> {
                check_published_port(v).map_err(E::custom)?;
                Ok(PublishedPort(v.to_string()))
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

/// Check an image reference: no spaces, no uppercase (Docker refuses both).
pub fn check_image(text: &str, with_tag: bool) -> Result<(), String> {
    if text.is_empty()
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
    {
        return Err(format!(
            "invalid image `{text}`: expected a repository such as `ghcr.io/acme/hello` (lowercase, no spaces)"
        ));
    }
    let last = text.rsplit('/').next().unwrap_or(text);
    if !with_tag && (last.contains(':') || text.contains('@')) {
        return Err(format!(
            "invalid image `{text}`: write the repository without a tag; hoist tags each version with its git commit"
        ));
    }
    Ok(())
}

/// The app's image repository, without a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository(pub String);

impl<'de> Deserialize<'de> for Repository {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(
            deserializer,
            "an image repository such as `\"ghcr.io/acme/hello\"`",
            |text| {
                check_image(text, false)?;
                Ok(Repository(text.to_string()))
            },
        )
    }
}

/// An accessory's image, with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image(pub String);

impl<'de> Deserialize<'de> for Image {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(deserializer, "an image such as `\"postgres:16\"`", |text| {
            check_image(text, true)?;
            Ok(Image(text.to_string()))
        })
    }
}

/// A health check path: starts with `/`, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPath(pub String);

impl<'de> Deserialize<'de> for UrlPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(deserializer, "a path such as `\"/up\"`", |text| {
            if !text.starts_with('/') || text.chars().any(char::is_whitespace) {
                return Err(format!(
                    "invalid path `{text}`: expected a path starting with `/`, such as `/up`"
                ));
            }
            Ok(UrlPath(text.to_string()))
        })
    }
}

/// A string that must not be empty (a user name, a command, a file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonEmpty(pub String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(deserializer, "a string", |text| {
            if text.trim().is_empty() {
                return Err("empty string: expected a value".to_string());
            }
            Ok(NonEmpty(text.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn durations_without_unit_or_with_unknown_unit_are_refused() {
        for bad in ["", "30", "30x", "s", "1.5s", "-1s", "5 s", "1d"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains(&format!("`{bad}`")), "{err}");
            assert!(err.contains("`1m30s`"), "{err}");
        }
    }

    #[test]
    fn durations_format_back() {
        for text in ["500ms", "5s", "1m30s", "1h", "0s", "2h1m", "1s500ms"] {
            let duration = parse_duration(text).expect(text);
            assert_eq!(format_duration(duration), text);
        }
    }

    #[test]
    fn hosts_accept_addresses_and_names() {
        for good in [
            "203.0.113.10",
            "2001:db8::1",
            "::1",
            "web1",
            "app.example.com",
        ] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn hosts_refuse_schemes_ports_spaces_and_users() {
        for (bad, why) in [
            ("bad host", "spaces"),
            ("ssh://web1", "scheme"),
            ("web1:22", "port"),
            ("root@web1", "user"),
            ("-web", "DNS name"),
            ("web_1", "DNS name"),
            ("", "empty"),
            ("[::1]", "DNS name"),
        ] {
            let err = check_host(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn names_are_lowercase_words() {
        assert!(check_name("web").is_ok());
        assert!(check_name("web-2_a").is_ok());
        assert!(check_name("0web").is_ok());
        for bad in ["Web", "-web", "_web", "web app", "", "wéb"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names() {
        assert!(check_env_name("DATABASE_URL").is_ok());
        assert!(check_env_name("_x1").is_ok());
        for bad in ["1X", "A-B", "", "A B"] {
            assert!(check_env_name(bad).is_err(), "{bad}");
        }
    }

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
            assert_eq!(check_published_port(good), Ok(()), "{good}");
        }
        for bad in ["", "x", "1:2:3:4", "host:5432:5432", "0"] {
            assert!(check_published_port(bad).is_err(), "{bad}");
        }
        for good in ["pgdata:/var/lib/postgresql/data", "/srv/data:/data:ro"] {
            assert_eq!(check_volume(good), Ok(()), "{good}");
        }
        for bad in ["pgdata", ":/data", "pgdata:data", "a:/b:c"] {
            assert!(check_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images() {
        assert!(check_image("ghcr.io/acme/hello", false).is_ok());
        assert!(check_image("localhost:5000/hello", false).is_ok());
        assert!(check_image("ghcr.io/acme/hello:v1", false).is_err());
        assert!(check_image("postgres:16", true).is_ok());
        assert!(check_image("Hello", true).is_err());
    }
}
