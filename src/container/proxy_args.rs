//! What hoist asks of hoist-proxy, as its command lines: `hoist-proxy deploy` from `[proxy]`
//! (hoist-proxy's own typed [`DeployArgs`], filled here and written out by the proxy crate, so
//! no flag name or value syntax is spelled twice; round-trip tested against its CLI) for a web
//! host's service or the load balancer's, and `hoist-proxy probe` for a container.

use anyhow::Result;
use hoist_proxy::cli::DeployArgs;

use super::deploy_secrets::Certificate;
use crate::config::{AcmeDirectory, Config, format_duration};

/// `hoist-proxy probe` of the container `id` as `[proxy.healthcheck]` says.
pub(super) fn probe_args(config: &Config, id: &str) -> Vec<String> {
    let check = &config.proxy.healthcheck;
    let target = format!("{}:{}", &id[..id.len().min(12)], config.proxy.app_port);
    let mut args = vec![
        "hoist-proxy".to_string(),
        "probe".into(),
        target,
        format!("--path={}", check.path),
        format!("--timeout={}", format_duration(check.timeout)),
    ];
    if let Some(port) = check.port {
        args.push(format!("--port={port}"));
    }
    if let Some(host) = &check.host {
        args.push(format!("--host={host}"));
    }
    args
}

/// `hoist-proxy deploy SERVICE --target ID:PORT …` from `[proxy]`: hoist-proxy's own typed
/// flags ([`DeployArgs`]), filled here and written out by the proxy crate, so no flag name or
/// value syntax is spelled twice. Behind a load balancer the web proxy serves plain HTTP (the
/// LB terminates TLS) and trusts forwarded headers from the LB alone.
#[cfg(test)]
pub(super) fn deploy_args(config: &Config, service: &str, id: &str) -> Result<Vec<String>> {
    deploy_args_with(config, service, id, None, None)
}

/// [`deploy_args`] with the error pages directory (in the proxy's volume) the service answers
/// with, and the custom certificate it serves.
pub(super) fn deploy_args_with(
    config: &Config,
    service: &str,
    id: &str,
    error_pages: Option<&str>,
    certificate: Option<&Certificate>,
) -> Result<Vec<String>> {
    let proxy = &config.proxy;
    let short_id = &id[..id.len().min(12)];
    let target = format!("{short_id}:{}", proxy.app_port);
    let edge = config.loadbalancer.is_none();
    let mut args = service_args(config, service, &[target], edge, certificate)?;
    args.strip_path_prefix = proxy.strip_path_prefix;
    // The app's own health check port and Host (the LB probes web hosts on port 80).
    args.health_check_port = proxy.healthcheck.port.unwrap_or(0);
    args.health_check_host = proxy.healthcheck.host.clone();
    // One passing probe puts a new container in service, as with kamal-proxy.
    args.health_check_rise = 1;
    if let Some(lb) = &config.loadbalancer {
        args.trusted_proxies = vec![ipnet::IpNet::from(lb.private_address)];
    }
    args.error_pages = error_pages.map(Into::into);
    Ok(args.to_args()?)
}

/// Where the ACME CA root of `[proxy.acme] ca_root` is kept in the proxy's volume.
pub const CA_ROOT_PATH: &str = "/var/lib/hoist-proxy/acme-ca-root.pem";

/// The flags every service hoist deploys shares, on a web host or the load balancer: the app's
/// hosts and paths, timeouts, health checks, forwarded headers and buffering from `[proxy]`,
/// and with `edge` (where TLS is terminated) `proxy.tls` with `[proxy.acme]` or the custom
/// `certificate`'s files (uploaded by the caller).
pub(super) fn service_args(
    config: &Config,
    service: &str,
    targets: &[String],
    edge: bool,
    certificate: Option<&Certificate>,
) -> Result<DeployArgs> {
    let proxy = &config.proxy;
    let mut args = DeployArgs::new(service, targets)?;
    args.host = proxy.hosts.clone();
    args.path_prefix = proxy.path_prefixes.clone();
    if edge && proxy.tls {
        args.tls = true;
        let acme = &proxy.acme;
        match &acme.directory {
            AcmeDirectory::Letsencrypt => {}
            AcmeDirectory::LetsencryptStaging => args.tls_staging = true,
            AcmeDirectory::Url(url) => args.tls_acme_directory = Some(url.clone()),
        }
        args.tls_acme_challenge = acme.challenge;
        // Its HMAC key goes in the exec's environment, see [`deploy`].
        args.tls_acme_eab_kid = acme.eab_kid.clone();
        if acme.ca_root.is_some() {
            args.tls_acme_ca_root = Some(CA_ROOT_PATH.into());
        }
        if let Some(certificate) = certificate {
            args.tls_certificate_path = Some(certificate.certificate_path().into());
            args.tls_private_key_path = Some(certificate.private_key_path().into());
        }
    }
    args.deploy_timeout = proxy.deploy_timeout;
    args.drain_timeout = proxy.drain_timeout;
    args.target_timeout = proxy.response_timeout;
    args.log_request_header = proxy.log_request_headers.clone();
    args.log_response_header = proxy.log_response_headers.clone();
    args.health_check_path = proxy.healthcheck.path.clone();
    args.health_check_interval = proxy.healthcheck.interval;
    args.health_check_timeout = proxy.healthcheck.timeout;
    args.forward_headers = Some(proxy.forward_headers);
    args.trusted_proxies = proxy
        .trusted_proxies
        .iter()
        .map(|peer| hoist_proxy::cli::parse_trusted_proxy(peer).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let buffering = &proxy.buffering;
    args.buffer_requests = buffering.requests;
    args.buffer_responses = buffering.responses;
    args.buffer_memory = buffering.memory;
    // The limits apply to buffered bodies only (hoist-proxy refuses them otherwise).
    if buffering.requests {
        args.max_request_body = buffering.max_request_body;
    }
    if buffering.responses {
        args.max_response_body = buffering.max_response_body;
    }
    Ok(args)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::container::deploy_secrets::DeploySecrets;
    use crate::secrets::Secrets;

    pub(in crate::container) fn config_with(dir: &std::path::Path, proxy: &str) -> Config {
        std::fs::write(
            dir.join("deploy.toml"),
            format!("service = \"a\"\nimage = \"r/a\"\n[servers.web]\nhosts = [\"h1\"]\n{proxy}"),
        )
        .expect("write deploy.toml");
        crate::config::load(Some(&dir.join("deploy.toml")), None).expect("config loads")
    }

    #[test]
    fn acme_settings_become_flags_and_the_eab_key_stays_off_the_command_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\n";
        let args =
            deploy_args(&config_with(dir.path(), tls), "a-web", "0123456789abcdef").expect("argv");
        assert!(args.contains(&"--tls=true".to_string()), "{args:?}");
        assert!(
            !args.iter().any(|arg| arg.starts_with("--tls-acme")),
            "{args:?}"
        );

        let staging = format!("{tls}[proxy.acme]\ndirectory = \"letsencrypt-staging\"\n");
        let args =
            deploy_args(&config_with(dir.path(), &staging), "a-web", "0123456789ab").expect("argv");
        assert!(args.contains(&"--tls-staging=true".to_string()), "{args:?}");

        let zerossl = format!(
            "{tls}[proxy.acme]\ndirectory = \"https://acme.zerossl.com/v2/DV90\"\n\
             challenge = \"tls-alpn-01\"\neab_kid = \"kid-1\"\neab_hmac_key = \"EAB_KEY\"\n"
        );
        let config = config_with(dir.path(), &zerossl);
        let args = deploy_args(&config, "a-web", "0123456789ab").expect("argv");
        for flag in [
            "--tls-acme-directory=https://acme.zerossl.com/v2/DV90",
            "--tls-acme-challenge=tls-alpn-01",
            "--tls-acme-eab-kid=kid-1",
        ] {
            assert!(args.contains(&flag.to_string()), "{flag} missing: {args:?}");
        }
        std::fs::create_dir_all(dir.path().join(".hoist")).expect("mkdir");
        std::fs::write(
            dir.path().join(".hoist/secrets"),
            "EAB_KEY=c2VjcmV0LWhtYWM\n",
        )
        .expect("write");
        let secrets = Secrets::load(dir.path(), None).expect("secrets");
        let deploy = DeploySecrets::for_config(&config, &secrets).expect("secrets");
        assert_eq!(
            deploy.env,
            ["HOIST_PROXY_TLS_ACME_EAB_HMAC_KEY=c2VjcmV0LWhtYWM"]
        );
        assert!(deploy.certificate.is_none());
        assert!(!args.iter().any(|arg| arg.contains("c2VjcmV0LWhtYWM")));
    }

    /// `deploy_args` of `config`, parsed by hoist-proxy's own command line.
    fn parsed(config: &Config) -> hoist_proxy::cli::DeployArgs {
        use clap::Parser;
        let args = deploy_args(config, "a-web", "0123456789abcdef").expect("argv");
        match hoist_proxy::cli::Cli::try_parse_from(&args) {
            Ok(hoist_proxy::cli::Cli {
                command: hoist_proxy::cli::Command::Deploy(deploy),
                ..
            }) => *deploy,
            Ok(other) => panic!("{args:?} parsed as {other:?}"),
            Err(err) => panic!("hoist-proxy refuses {args:?}:\n{err}"),
        }
    }

    #[test]
    fn every_deploy_command_line_parses_with_hoist_proxys_own_cli() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = "[proxy]\ntls = true\nhosts = [\"a.example.com\", \"b.example.com\"]\n";
        let cases = [
            String::new(),
            "[proxy]\napp_port = 3000\nforward_headers = true\n".to_string(),
            tls.to_string(),
            format!("{tls}[proxy.acme]\ndirectory = \"letsencrypt-staging\"\n"),
            format!(
                "{tls}deploy_timeout = \"1m30s\"\ndrain_timeout = \"0s\"\n\
                 response_timeout = \"500ms\"\n\
                 [proxy.healthcheck]\npath = \"/health\"\ninterval = \"250ms\"\n\
                 timeout = \"2s\"\n\
                 [proxy.acme]\ndirectory = \"https://acme.zerossl.com/v2/DV90\"\n\
                 challenge = \"tls-alpn-01\"\neab_kid = \"kid-1\"\neab_hmac_key = \"EAB_KEY\"\n"
            ),
            "[proxy.buffering]\nrequests = false\nresponses = false\n".to_string(),
            "[proxy.buffering]\nmemory = 4096\nmax_request_body = 1\nmax_response_body = 7\n"
                .to_string(),
            "[proxy]\ntrusted_proxies = [\"10.0.0.5\", \"10.0.0.0/24\", \"2001:db8::/32\"]\n"
                .to_string(),
        ];
        for case in cases {
            let config = config_with(dir.path(), &case);
            let proxy = &config.proxy;
            let args = parsed(&config);
            assert_eq!(args.service, "a-web", "{case}");
            assert_eq!(
                args.target,
                [format!("0123456789ab:{}", proxy.app_port)],
                "{case}"
            );
            assert_eq!(args.host, proxy.hosts, "{case}");
            assert_eq!(args.tls, proxy.tls, "{case}");
            assert_eq!(
                args.tls_staging,
                proxy.acme.directory == AcmeDirectory::LetsencryptStaging,
                "{case}"
            );
            let directory = match &proxy.acme.directory {
                AcmeDirectory::Url(url) => Some(url.clone()),
                _ => None,
            };
            assert_eq!(args.tls_acme_directory, directory, "{case}");
            assert_eq!(args.tls_acme_challenge, proxy.acme.challenge, "{case}");
            assert_eq!(args.tls_acme_eab_kid, proxy.acme.eab_kid, "{case}");
            assert_eq!(args.deploy_timeout, proxy.deploy_timeout, "{case}");
            assert_eq!(args.drain_timeout, proxy.drain_timeout, "{case}");
            assert_eq!(args.target_timeout, proxy.response_timeout, "{case}");
            assert_eq!(args.health_check_path, proxy.healthcheck.path, "{case}");
            assert_eq!(
                args.health_check_interval, proxy.healthcheck.interval,
                "{case}"
            );
            assert_eq!(
                args.health_check_timeout, proxy.healthcheck.timeout,
                "{case}"
            );
            assert_eq!(args.health_check_rise, 1, "{case}");
            assert_eq!(args.forward_headers, Some(proxy.forward_headers), "{case}");
            let trusted: Vec<String> = args.trusted_proxies.iter().map(|p| p.to_string()).collect();
            assert_eq!(trusted, proxy.trusted_proxies, "{case}");
            let buffering = &proxy.buffering;
            assert_eq!(args.buffer_requests, buffering.requests, "{case}");
            assert_eq!(args.buffer_responses, buffering.responses, "{case}");
            assert_eq!(args.buffer_memory, buffering.memory, "{case}");
            let limit = |on: bool, limit: u64| if on { limit } else { 0 };
            assert_eq!(
                args.max_request_body,
                limit(buffering.requests, buffering.max_request_body),
                "{case}"
            );
            assert_eq!(
                args.max_response_body,
                limit(buffering.responses, buffering.max_response_body),
                "{case}"
            );
        }
    }

    #[test]
    fn defaults_trust_no_forwarded_headers_and_cap_request_bodies_at_100_mb() {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = parsed(&config_with(dir.path(), ""));
        assert_eq!(args.forward_headers, Some(false));
        assert!(args.trusted_proxies.is_empty());
        assert_eq!(args.max_request_body, 104_857_600);
        let with_tls = parsed(&config_with(
            dir.path(),
            "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\n",
        ));
        assert_eq!(with_tls.forward_headers, Some(false));
        let args = parsed(&config_with(
            dir.path(),
            "[proxy]\ntrusted_proxies = [\"10.0.0.5\", \"10.0.0.0/24\", \"2001:db8::/32\"]\n",
        ));
        let trusted: Vec<String> = args.trusted_proxies.iter().map(|p| p.to_string()).collect();
        assert_eq!(trusted, ["10.0.0.5/32", "10.0.0.0/24", "2001:db8::/32"]);
    }

    /// The argv as hoist-proxy parses it.
    pub(in crate::container) fn parse(args: &[String]) -> DeployArgs {
        let cli = <hoist_proxy::cli::Cli as clap::Parser>::try_parse_from(args)
            .expect("hoist-proxy parses the argv");
        match cli.command {
            hoist_proxy::cli::Command::Deploy(args) => *args,
            other => panic!("not a deploy: {}", other.name()),
        }
    }

    #[test]
    fn path_prefixes_and_their_stripping_reach_the_proxy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config_with(
            dir.path(),
            "[proxy]\npath_prefix = [\"/api\", \"/v2\"]\nstrip_path_prefix = false\n",
        );
        let args = deploy_args(&config, "a-web", "0123456789abcdef").expect("args");
        let parsed = parse(&args);
        assert_eq!(parsed.path_prefix, ["/api", "/v2"]);
        assert!(!parsed.strip_path_prefix);
        let config = config_with(dir.path(), "[proxy]\npath_prefix = \"/api\"\n");
        let args = deploy_args(&config, "a-web", "0123456789abcdef").expect("args");
        let parsed = parse(&args);
        assert_eq!(parsed.path_prefix, ["/api"]);
        assert!(parsed.strip_path_prefix, "stripped by default");
    }

    #[test]
    fn logged_headers_reach_the_proxy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config_with(
            dir.path(),
            "[proxy.logging]\nrequest_headers = [\"X-Request-Id\", \"User-Agent\"]\n\
             response_headers = [\"X-Runtime\"]\n",
        );
        let parsed = parse(&deploy_args(&config, "a-web", "0123456789ab").expect("args"));
        assert_eq!(parsed.log_request_header, ["X-Request-Id", "User-Agent"]);
        assert_eq!(parsed.log_response_header, ["X-Runtime"]);
    }

    #[test]
    fn the_health_check_port_and_host_reach_the_deploy_and_the_probe() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config_with(
            dir.path(),
            "[proxy]\nhealthcheck = { port = 9090, host = \"internal.test\" }\n",
        );
        let parsed = parse(&deploy_args(&config, "a-web", "0123456789ab").expect("args"));
        assert_eq!(parsed.health_check_port, 9090);
        assert_eq!(parsed.health_check_host.as_deref(), Some("internal.test"));
        let probe = probe_args(&config, "0123456789abcdef");
        let cli = <hoist_proxy::cli::Cli as clap::Parser>::try_parse_from(&probe)
            .expect("hoist-proxy parses the probe");
        let hoist_proxy::cli::Command::Probe(probe) = cli.command else {
            panic!("not a probe");
        };
        assert_eq!(probe.target, "0123456789ab:80");
        assert_eq!(
            (probe.port, probe.host.as_deref()),
            (9090, Some("internal.test"))
        );
        // Unset: the target's own port, no Host.
        let parsed = parse(
            &deploy_args(&config_with(dir.path(), ""), "a-web", "0123456789ab").expect("args"),
        );
        assert_eq!(
            (parsed.health_check_port, parsed.health_check_host),
            (0, None)
        );
    }
}
