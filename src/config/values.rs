//! Validating scalar types of deploy.toml: durations, hosts, names, variable names, ports,
//! images, paths. Each one checks its value inside `Deserialize`, so toml reports the span of
//! the bad value. Choices and compound values (`boot.limit`, `builder.arch`, `proxy_jump`,
//! accessories' ports and volumes) are in options.rs; the table layout is in schema.rs.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

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
pub(super) fn checked_str<'de, D, T>(
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

/// A registry address: a host, optionally with `:port` (`ghcr.io`, `10.0.0.2:5000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryServer(pub String);

impl<'de> Deserialize<'de> for RegistryServer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(
            deserializer,
            "a registry host, optionally with `:port`",
            |text| {
                let host = match text.rsplit_once(':') {
                    Some((host, port)) if text.parse::<Ipv6Addr>().is_err() => {
                        port.parse::<u16>()
                            .ok()
                            .filter(|port| *port > 0)
                            .ok_or_else(|| {
                                format!("invalid registry `{text}`: `{port}` is not a port number")
                            })?;
                        host
                    }
                    _ => text,
                };
                check_host(host)
                    .map_err(|why| why.replacen("invalid host", "invalid registry host", 1))?;
                Ok(RegistryServer(text.to_string()))
            },
        )
    }
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

/// `proxy.path_prefix`: one path or a list of them (`"/api"`, `["/api", "/v2"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefixes(pub Vec<String>);

impl<'de> Deserialize<'de> for PathPrefixes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(UrlPath),
            Many(Vec<UrlPath>),
        }
        let paths = match OneOrMany::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected a path starting with `/` (`\"/api\"`) or a list of them",
            )
        })? {
            OneOrMany::One(path) => vec![path.0],
            OneOrMany::Many(paths) => paths.into_iter().map(|path| path.0).collect(),
        };
        if paths.is_empty() {
            return Err(serde::de::Error::custom(
                "empty list: leave `path_prefix` out to route every path",
            ));
        }
        Ok(PathPrefixes(paths))
    }
}

/// Check a trusted proxy: an IP address or a CIDR range (`10.0.0.5`, `10.0.0.0/24`,
/// `2001:db8::/32`); returns it as a CIDR range with the host bits cleared (`10.0.0.5/32`).
pub fn check_trusted_proxy(text: &str) -> Result<String, String> {
    if let Ok(address) = text.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(address).to_string());
    }
    text.parse::<ipnet::IpNet>()
        .map(|net| net.trunc().to_string())
        .map_err(|_| {
            format!(
                "invalid trusted proxy `{text}`: expected an IP address such as `10.0.0.5` or a \
                 CIDR range such as `10.0.0.0/24` or `2001:db8::/32`"
            )
        })
}

/// An entry of `proxy.trusted_proxies`, as the CIDR range [`check_trusted_proxy`] makes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxy(pub String);

impl<'de> Deserialize<'de> for TrustedProxy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(
            deserializer,
            "an IP address or CIDR range such as `\"10.0.0.0/24\"`",
            |text| check_trusted_proxy(text).map(TrustedProxy),
        )
    }
}

/// An HTTP header name (`X-Request-Id`): letters, digits and `!#$%&'*+-.^_`|~`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNameValue(pub String);

impl<'de> Deserialize<'de> for HeaderNameValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if text.is_empty() || !text.chars().all(token) {
            return Err(de::Error::custom(format!(
                "`{text}` is not a header name such as `X-Request-Id`"
            )));
        }
        Ok(HeaderNameValue(text))
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
    fn registry_servers_take_an_optional_port() {
        let parse = |text: &str| {
            toml::from_str::<std::collections::BTreeMap<String, RegistryServer>>(&format!(
                "s = \"{text}\""
            ))
        };
        assert!(parse("ghcr.io").is_ok());
        assert!(parse("10.0.0.2:5000").is_ok());
        assert!(parse("10.0.0.2:x").is_err());
        assert!(parse("https://ghcr.io").is_err());
    }

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
            ("[::1]", "without brackets"),
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
    fn trusted_proxies_are_addresses_or_ranges() {
        for (good, cidr) in [
            ("10.0.0.5", "10.0.0.5/32"),
            ("10.0.0.0/24", "10.0.0.0/24"),
            ("10.0.0.7/24", "10.0.0.0/24"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("::1", "::1/128"),
        ] {
            assert_eq!(check_trusted_proxy(good).as_deref(), Ok(cidr), "{good}");
        }
        for bad in [
            "",
            "10.0.0",
            "10.0.0.0/33",
            "lb.example.com",
            "[::1]",
            " 10.0.0.1",
            "10.0.0.0/",
        ] {
            let err = check_trusted_proxy(bad).expect_err(bad);
            assert!(err.contains(&format!("`{bad}`")), "{err}");
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

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn duration_parsing_never_panics(
                text in any::<String>(),
                like in "[0-9]{0,25}((ms|s|m|h|d|µ| )[0-9]{0,25}){0,4}",
            ) {
                let _ = parse_duration(&text);
                let _ = parse_duration(&like);
            }

            #[test]
            fn durations_format_and_parse_back(millis in any::<u64>()) {
                let duration = Duration::from_millis(millis);
                prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
            }

            #[test]
            fn scalar_checks_never_panic(
                text in any::<String>(),
                like in "[a-zA-Z0-9.:@/%\\[\\] _-]{0,80}",
            ) {
                for text in [&text, &like] {
                    let _ = check_host(text);
                    let _ = check_name(text);
                    let _ = check_env_name(text);
                    let _ = check_image(text, true);
                    let _ = check_image(text, false);
                    let _ = check_trusted_proxy(text);
                }
            }

            #[test]
            fn trusted_proxies_are_accepted_as_hoist_proxy_reads_them(
                address in any::<std::net::IpAddr>(),
                prefix in 0u8..=128,
            ) {
                let prefix = if address.is_ipv4() { prefix % 33 } else { prefix };
                for text in [address.to_string(), format!("{address}/{prefix}")] {
                    let cidr = check_trusted_proxy(&text);
                    prop_assert!(cidr.is_ok(), "{text}: {cidr:?}");
                    let cidr = cidr.unwrap_or_default();
                    prop_assert_eq!(
                        hoist_proxy::cli::parse_trusted_proxy(&cidr).map(|net| net.to_string()),
                        Ok(cidr.clone())
                    );
                }
            }
        }
    }
}
