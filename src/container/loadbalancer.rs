//! The load balancer on the `[loadbalancer]` host: hoist-proxy there (the same image and
//! containers as on a web host) with one service per app, `<scope>-lb`, routed by the app's
//! `proxy.hosts` and balancing over every web host's proxy on port 80. TLS is terminated here
//! (`proxy.tls` with `[proxy.acme]`); the LB health-checks each web host at the app's health
//! path with the app's Host, retries a request whose connection failed on another web host,
//! and takes a refusing host out of rotation. Web hosts drained for maintenance
//! (`hoist lb drain`) are listed on the LB host in `~/.hoist/<scope>/lb-drained.json` and left
//! out of the target set until undrained. Several apps share one LB as services share a proxy.

use anyhow::{Context, Result, bail};

use super::deploy_secrets::{Certificate, DeploySecrets};
use super::proxy::{self, Refused};
use crate::config::Config;
use crate::docker;
use crate::naming::{self, PROXY_CONTAINER};
use crate::remote::Server;
use crate::ssh::{Session, quote};

/// The app's service on the LB's proxy.
pub fn service(config: &Config) -> String {
    format!(
        "{}-lb",
        naming::scope(&config.service, config.destination.as_deref())
    )
}

/// The hosts the LB balances over: those of roles behind the proxy, in config order, each once.
pub fn web_hosts(config: &Config) -> Vec<String> {
    proxy::hosts(config, &config.hosts())
}

/// The hosts among `hosts` where hoist-proxy runs: those of roles behind it, then the load
/// balancer.
pub fn proxy_hosts(config: &Config, hosts: &[String]) -> Vec<String> {
    let mut all = proxy::hosts(config, hosts);
    if let Some(lb) = &config.loadbalancer
        && hosts.contains(&lb.host)
    {
        all.push(lb.host.clone());
    }
    all
}

/// The LB's target for web host `host`: its proxy's port 80 at its `web_addresses` entry.
pub fn target(config: &Config, host: &str) -> String {
    let address = config
        .loadbalancer
        .as_ref()
        .map_or(host, |lb| lb.web_address(host));
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]:80")
    } else {
        format!("{address}:80")
    }
}

/// The web hosts in rotation: every one but the drained.
pub fn rotation(config: &Config, drained: &[String]) -> Vec<String> {
    web_hosts(config)
        .into_iter()
        .filter(|host| !drained.contains(host))
        .collect()
}

/// `hoist-proxy deploy <scope>-lb` over `hosts`: `[proxy]`'s routes, TLS, timeouts and
/// buffering, health checks at the app's health path with its first host as Host (the web
/// proxies route by it), the path kept whole (the web proxies strip prefixes).
fn deploy_args(
    config: &Config,
    hosts: &[String],
    certificate: Option<&Certificate>,
) -> Result<Vec<String>> {
    let targets: Vec<String> = hosts.iter().map(|host| target(config, host)).collect();
    let mut args =
        super::proxy_args::service_args(config, &service(config), &targets, true, certificate)?;
    let proxy = &config.proxy;
    args.strip_path_prefix = false;
    args.health_check_host = proxy.hosts.first().cloned();
    args.sticky_sessions = config.loadbalancer.as_ref().is_some_and(|lb| lb.sticky);
    if let Some(prefix) = proxy.path_prefixes.first()
        && proxy.strip_path_prefix
    {
        args.health_check_path =
            format!("{}{}", prefix.trim_end_matches('/'), proxy.healthcheck.path);
    }
    Ok(args.to_args()?)
}

/// The drained set's path on the LB host, relative to the SSH user's home.
fn drained_path(config: &Config) -> String {
    let scope = naming::scope(&config.service, config.destination.as_deref());
    format!("{}/lb-drained.json", naming::state_dir(&scope))
}

/// The web hosts drained on the LB (none if the file is missing or unreadable).
pub async fn drained(session: &Session, config: &Config) -> Result<Vec<String>> {
    let output = session
        .exec(&format!(
            "cat {} 2>/dev/null || true",
            quote(&drained_path(config))?
        ))
        .await?;
    Ok(serde_json::from_slice(&output.stdout).unwrap_or_default())
}

/// Replace the drained set on the LB host.
pub async fn write_drained(session: &Session, config: &Config, hosts: &[String]) -> Result<()> {
    let path = drained_path(config);
    let dir = path.rsplit_once('/').map_or(".", |(dir, _)| dir);
    let command = format!(
        "mkdir -p {dir} && printf '%s\\n' {json} > {tmp} && mv -f {tmp} {path}",
        dir = quote(dir)?,
        json = quote(&serde_json::to_string(hosts)?)?,
        tmp = quote(&format!("{path}.tmp"))?,
        path = quote(&path)?,
    );
    let output = session.exec(&command).await?;
    if output.status != Some(0) {
        bail!(
            "Failed to write `~/{path}` on `{}`: {}",
            session.host(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Point the LB's service at `hosts`: the LB health-checks them off to the side, swaps, and
/// drains what it sent to the hosts left out. `secrets` are the deploy's (the EAB HMAC key, a
/// custom certificate). A [`Refused`] error leaves the previous target set serving.
pub async fn sync(
    server: &Server,
    config: &Config,
    hosts: &[String],
    secrets: &DeploySecrets,
) -> Result<()> {
    if hosts.is_empty() {
        bail!("the load balancer needs at least one web host in rotation");
    }
    if config.proxy.tls {
        proxy::upload_ca_root(&server.docker, config).await?;
    }
    if let Some(certificate) = &secrets.certificate {
        certificate.upload(&server.docker).await?;
    }
    let args = deploy_args(config, hosts, secrets.certificate.as_ref())?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exec = docker::create_exec(&server.docker, PROXY_CONTAINER, &args, &secrets.env).await?;
    proxy::run_deploy(&server.docker, proxy::PreparedDeploy::Exec(exec))
        .await
        .with_context(|| format!("on the load balancer `{}`", server.host))
}

/// Point the LB at every web host neither drained nor among `out` (none: all back), if it
/// routes this app yet; returns whether it does.
pub async fn sync_without(
    server: &Server,
    config: &Config,
    out: &[String],
    secrets: &DeploySecrets,
) -> Result<bool> {
    let name = service(config);
    if !proxy::list(&server.docker)
        .await?
        .iter()
        .any(|summary| summary.name == name)
    {
        return Ok(false);
    }
    let mut drained = drained(&server.session, config).await?;
    drained.extend(out.iter().cloned());
    sync(server, config, &rotation(config, &drained), secrets).await?;
    Ok(true)
}

/// One web host as the load balancer sees it, for `hoist lb details` and `hoist details`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WebHost {
    /// As in `[servers]`; a target the LB has that no longer is in deploy.toml shows as its
    /// address.
    pub host: String,
    /// The LB's target for it (`address:80`).
    pub target: String,
    /// The LB sends it requests when healthy.
    pub in_rotation: bool,
    /// Passing its health checks (and not taken out after a connection error); `None` when
    /// the LB does not check it.
    pub healthy: Option<bool>,
    /// Taken out with `hoist lb drain`.
    pub drained: bool,
}

/// Every web host in deploy.toml, then any other target the LB's service has, as the LB sees
/// them; `None` when the LB routes no service for this app yet.
pub async fn status(server: &Server, config: &Config) -> Result<Option<Vec<WebHost>>> {
    let (services, drained) = tokio::join!(
        proxy::list(&server.docker),
        drained(&server.session, config)
    );
    let (services, drained) = (services?, drained?);
    let name = service(config);
    let Some(summary) = services.iter().find(|summary| summary.name == name) else {
        return Ok(None);
    };
    Ok(Some(web_host_rows(config, summary, &drained)))
}

/// [`status`]'s rows from the LB's summary of the app's service.
fn web_host_rows(
    config: &Config,
    summary: &hoist_proxy::router::ServiceSummary,
    drained: &[String],
) -> Vec<WebHost> {
    let row = |host: String, target: String| {
        let in_rotation = summary.targets.contains(&target);
        WebHost {
            healthy: in_rotation.then(|| !summary.unhealthy_targets.contains(&target)),
            drained: drained.contains(&host),
            host,
            target,
            in_rotation,
        }
    };
    let mut rows: Vec<WebHost> = web_hosts(config)
        .into_iter()
        .map(|host| {
            let target = target(config, &host);
            row(host, target)
        })
        .collect();
    for target in &summary.targets {
        if !rows.iter().any(|known| known.target == *target) {
            let host = target.trim_end_matches(":80").trim_matches(['[', ']']);
            rows.push(row(host.to_string(), target.clone()));
        }
    }
    rows
}

/// Whether `err` is the LB's proxy saying no (the previous target set keeps serving).
pub fn refused(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<Refused>())
}

#[cfg(test)]
mod tests {
    use super::super::proxy_args::tests::parse;
    use super::*;

    fn config(extra: &str) -> Config {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("deploy.toml"),
            format!(
                "service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"10.0.0.3\", \
                 \"10.0.0.4\"]\n[servers.jobs]\nhosts = [\"10.0.0.5\"]\nproxy = false\n\
                 [loadbalancer]\nhost = \"10.0.0.2\"\n\
                 web_addresses = {{ \"10.0.0.4\" = \"fd00::4\" }}\n{extra}"
            ),
        )
        .expect("write");
        crate::config::load(Some(&dir.path().join("deploy.toml")), None).expect("loads")
    }

    #[test]
    fn sticky_sessions_are_asked_of_the_lb_only_when_configured() {
        let plain = parse(&deploy_args(&config(""), &["10.0.0.3".into()], None).expect("argv"));
        assert!(!plain.sticky_sessions);
        let sticky = config("sticky = true\n");
        let args = parse(&deploy_args(&sticky, &web_hosts(&sticky), None).expect("argv"));
        assert!(args.sticky_sessions);
    }

    #[test]
    fn the_lb_balances_over_the_web_hosts_not_drained_and_terminates_tls() {
        let config = config(
            "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\npath_prefix = \"/api\"\n\
             trusted_proxies = [\"192.0.2.0/24\"]\n",
        );
        assert_eq!(web_hosts(&config), ["10.0.0.3", "10.0.0.4"]);
        assert_eq!(rotation(&config, &["10.0.0.3".to_string()]), ["10.0.0.4"]);
        let args = parse(&deploy_args(&config, &web_hosts(&config), None).expect("argv"));
        assert_eq!(args.service, "a-lb");
        assert_eq!(args.target, ["10.0.0.3:80", "[fd00::4]:80"]);
        assert!(args.tls);
        assert_eq!(args.host, ["a.example.com"]);
        assert_eq!(args.health_check_host.as_deref(), Some("a.example.com"));
        assert_eq!(args.health_check_path, "/api/up");
        assert!(!args.strip_path_prefix, "the web proxies strip the prefix");
        let trusted: Vec<String> = args.trusted_proxies.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            trusted,
            ["192.0.2.0/24"],
            "the LB trusts what the user listed"
        );
    }

    #[test]
    fn a_custom_certificate_is_served_by_the_lb_not_the_web_proxies() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config(
            "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\n\
             ssl_certificate = \"CERT\"\nssl_private_key = \"KEY\"\n",
        );
        std::fs::create_dir_all(dir.path().join(".hoist")).expect("mkdir");
        std::fs::write(dir.path().join(".hoist/secrets"), "CERT=chain\nKEY=key\n")
            .expect("secrets");
        let secrets = crate::secrets::Secrets::load(dir.path(), None).expect("secrets");
        let deploy = DeploySecrets::for_config(&config, &secrets).expect("resolve");
        let certificate = deploy.certificate.as_ref().expect("a certificate");
        let lb =
            parse(&deploy_args(&config, &web_hosts(&config), Some(certificate)).expect("argv"));
        assert_eq!(
            lb.tls_certificate_path,
            Some(certificate.certificate_path().into())
        );
        let web = parse(
            &super::super::proxy_args::deploy_args_with(
                &config,
                "a-web",
                "0123456789ab",
                None,
                Some(certificate),
            )
            .expect("argv"),
        );
        assert!(!web.tls && web.tls_certificate_path.is_none(), "{web:?}");
    }

    #[test]
    fn status_rows_say_which_hosts_are_in_rotation_healthy_and_drained() {
        let config = config("");
        let summary = hoist_proxy::router::ServiceSummary {
            name: "a-lb".into(),
            hosts: vec![],
            paths: vec!["/".into()],
            targets: vec!["[fd00::4]:80".into(), "10.0.0.9:80".into()],
            read_targets: vec![],
            state: "running".into(),
            tls: false,
            rollout_targets: vec![],
            unhealthy_targets: vec!["10.0.0.9:80".into()],
        };
        let rows = web_host_rows(&config, &summary, &["10.0.0.3".to_string()]);
        let seen: Vec<(&str, bool, Option<bool>, bool)> = rows
            .iter()
            .map(|row| (row.host.as_str(), row.in_rotation, row.healthy, row.drained))
            .collect();
        assert_eq!(
            seen,
            [
                ("10.0.0.3", false, None, true),
                ("10.0.0.4", true, Some(true), false),
                ("10.0.0.9", true, Some(false), false),
            ]
        );
    }

    #[test]
    fn behind_the_lb_web_proxies_serve_plain_http_and_trust_only_the_lb() {
        let config = config("[proxy]\ntls = true\nhosts = [\"a.example.com\"]\n");
        let args = parse(
            &super::super::proxy_args::deploy_args(&config, "a-web", "0123456789ab").expect("argv"),
        );
        assert!(!args.tls);
        let trusted: Vec<String> = args.trusted_proxies.iter().map(|p| p.to_string()).collect();
        assert_eq!(trusted, ["10.0.0.2/32"]);
        assert_eq!(args.forward_headers, Some(false));
    }
}
