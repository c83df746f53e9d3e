//! `[loadbalancer]` resolved: its host, the address web hosts see it at, and where it reaches
//! each web host. The LB must run on a host of its own (its hoist-proxy holds ports 80 and 443
//! and routes the app's hosts to the web hosts, which a web host's proxy cannot also do), and
//! only in front of roles behind the proxy.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::LoadBalancerConfig;
use super::error::ConfigError;
use super::resolve::Fail;
use super::schema::LoadBalancerSchema;

/// `[loadbalancer]` checked against the roles: `web_hosts` are the hosts of roles behind the
/// proxy, `app_hosts` every role's hosts.
pub(super) fn resolve_loadbalancer(
    schema: LoadBalancerSchema,
    web_hosts: &[String],
    app_hosts: &[String],
    fail: &Fail<'_>,
) -> Result<LoadBalancerConfig, ConfigError> {
    let Some(host) = schema.host.map(|host| host.0) else {
        return Err(fail(
            "loadbalancer",
            "`loadbalancer.host` is required: the server that takes every request on ports 80 \
             and 443"
                .to_string(),
            Some("add `host = \"203.0.113.20\"` under `[loadbalancer]`".to_string()),
        ));
    };
    if app_hosts.contains(&host) {
        return Err(fail(
            "loadbalancer.host",
            format!("`{host}` runs an app role: the load balancer needs a server of its own"),
            Some(
                "its hoist-proxy holds ports 80 and 443 for the app's hosts; pick a host that \
                 is not under `[servers]`"
                    .to_string(),
            ),
        ));
    }
    if web_hosts.is_empty() {
        return Err(fail(
            "loadbalancer",
            "`[loadbalancer]` has nothing to balance: no role runs behind the proxy".to_string(),
            Some(
                "set `proxy = true` on the role that serves HTTP, or remove the table".to_string(),
            ),
        ));
    }
    let private_address = match schema.private_address {
        Some(address) => address.0.parse::<IpAddr>().map_err(|_| {
            fail(
                "loadbalancer.private_address",
                format!("`{}` is not an IP address", address.0),
                Some(
                    "the web hosts trust forwarded headers from this address only, so it must \
                     be the LB's IP address on the network they share"
                        .to_string(),
                ),
            )
        })?,
        None => host.parse::<IpAddr>().map_err(|_| {
            fail(
                "loadbalancer",
                format!(
                    "`loadbalancer.private_address` is required when `host` (`{host}`) is not \
                     an IP address"
                ),
                Some(
                    "add `private_address = \"10.0.0.2\"`: the LB's address as the web hosts \
                     see its connections"
                        .to_string(),
                ),
            )
        })?,
    };
    let mut web_addresses = BTreeMap::new();
    for (web, address) in schema.web_addresses.unwrap_or_default() {
        if !web_hosts.contains(&web) {
            return Err(fail(
                &format!("loadbalancer.web_addresses.{web}"),
                format!("`{web}` is not a host of a role behind the proxy"),
                Some(format!("web hosts: {}", web_hosts.join(", "))),
            ));
        }
        web_addresses.insert(web, address.0);
    }
    Ok(LoadBalancerConfig {
        host,
        private_address,
        web_addresses,
        sticky: schema.sticky.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn load(dir: &Path, extra: &str) -> Result<crate::config::Config, String> {
        std::fs::write(
            dir.join("deploy.toml"),
            format!(
                "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"10.0.0.3\", \
                 \"10.0.0.4\"]\n[servers.jobs]\nhosts = [\"10.0.0.5\"]\nproxy = false\n{extra}"
            ),
        )
        .expect("write");
        crate::config::load(Some(&dir.join("deploy.toml")), None).map_err(|err| format!("{err:#}"))
    }

    #[test]
    fn an_ip_host_is_its_own_private_address_and_web_hosts_keep_theirs_by_default() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = load(dir.path(), "[loadbalancer]\nhost = \"10.0.0.2\"\n").expect("loads");
        let lb = config.loadbalancer.as_ref().expect("a load balancer");
        assert_eq!(lb.private_address.to_string(), "10.0.0.2");
        assert_eq!(lb.web_address("10.0.0.3"), "10.0.0.3");
        assert_eq!(config.hosts().last().map(String::as_str), Some("10.0.0.2"));

        let config = load(
            dir.path(),
            "[loadbalancer]\nhost = \"lb.example.com\"\nprivate_address = \"192.168.0.2\"\n\
             web_addresses = { \"10.0.0.4\" = \"192.168.0.4\" }\n",
        )
        .expect("loads");
        let lb = config.loadbalancer.as_ref().expect("a load balancer");
        assert_eq!(lb.private_address.to_string(), "192.168.0.2");
        assert_eq!(lb.web_address("10.0.0.4"), "192.168.0.4");
        assert_eq!(lb.web_address("10.0.0.3"), "10.0.0.3");
    }

    #[test]
    fn a_load_balancer_on_an_app_host_or_without_an_address_is_refused_with_a_way_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (extra, says) in [
            ("[loadbalancer]\n", "`loadbalancer.host` is required"),
            (
                "[loadbalancer]\nhost = \"10.0.0.5\"\n",
                "`10.0.0.5` runs an app role: the load balancer needs a server of its own",
            ),
            (
                "[loadbalancer]\nhost = \"lb.example.com\"\n",
                "`loadbalancer.private_address` is required when `host` (`lb.example.com`)",
            ),
            (
                "[loadbalancer]\nhost = \"10.0.0.2\"\nprivate_address = \"lb.internal\"\n",
                "`lb.internal` is not an IP address",
            ),
            (
                "[loadbalancer]\nhost = \"10.0.0.2\"\nweb_addresses = { \"10.0.0.5\" = \"x\" }\n",
                "`10.0.0.5` is not a host of a role behind the proxy",
            ),
        ] {
            let err = load(dir.path(), extra).expect_err(extra);
            assert!(err.contains(says), "{extra}: {err}");
        }
    }
}
