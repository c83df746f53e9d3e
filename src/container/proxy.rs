//! hoist-proxy on one server, as a release uses it: make sure the `hoist-proxy` container runs
//! (created from `proxy.image` with its state in the `hoist-proxy` volume if missing), ask it
//! which target a service routes to, and switch a service to a new container, which the proxy
//! health-checks before any request reaches it and after which it drains the old one. Every
//! call is `hoist-proxy <command>` run by Docker exec inside the container.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use hoist_proxy::cli::DeployArgs;
use hoist_proxy::router::ServiceSummary;

use super::deploy_secrets::{Certificate, DeploySecrets};
use crate::config::{AcmeDirectory, Config, format_duration};
use crate::docker;
use crate::naming::{
    self, NEXT_PROXY_CONTAINER, OLD_PROXY_CONTAINER, PORTS_CONTAINER, PROXY_CONTAINER,
    PROXY_STATE_DIR, PROXY_USER, PROXY_VOLUME,
};
use crate::report::hinted;
use hoist_proxy::paths::STATE_DIR_ENV;

/// How long a freshly started proxy has to answer its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The hosts among `hosts` where a role runs behind the proxy, in the order of `hosts`.
pub fn hosts(config: &Config, hosts: &[String]) -> Vec<String> {
    hosts
        .iter()
        .filter(|host| {
            config
                .roles
                .values()
                .any(|role| role.proxy && role.hosts.contains(host))
        })
        .cloned()
        .collect()
}

/// The `hoist-proxy` container as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProxyContainer {
    /// The container id, 12 hex digits.
    pub id: String,
    /// `running`, `exited`, `restarting`, …
    pub state: String,
    /// The image it was created from, as given then (`proxy.image`).
    pub image: String,
    /// When it last started (RFC 3339), if it ever did.
    pub started_at: Option<String>,
    /// The command it runs ([`run_command`] for a proxy of this hoist).
    pub command: Vec<String>,
}

impl ProxyContainer {
    /// Runs `proxy.image` the way this hoist runs it: nothing to upgrade.
    pub fn is_current(&self, config: &Config) -> bool {
        self.image == config.proxy.image && self.command == run_command()
    }
}

/// The `hoist-proxy` container, or `None` when there is none.
pub async fn inspect(docker: &Docker) -> Result<Option<ProxyContainer>> {
    let inspect = match docker.inspect_container(PROXY_CONTAINER, None).await {
        Ok(inspect) => inspect,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(None),
        Err(err) => return Err(err).context("Failed to inspect the `hoist-proxy` container"),
    };
    let state = inspect.state.as_ref();
    Ok(Some(ProxyContainer {
        id: inspect
            .id
            .as_deref()
            .map(|id| id[..id.len().min(12)].to_string())
            .unwrap_or_default(),
        state: state
            .and_then(|state| state.status)
            .map(|status| status.to_string())
            .unwrap_or_else(|| "unknown".into()),
        image: inspect
            .config
            .as_ref()
            .and_then(|config| config.image.clone())
            .unwrap_or_default(),
        command: inspect
            .config
            .and_then(|config| config.cmd)
            .unwrap_or_default(),
        started_at: state
            .and_then(|state| state.started_at.clone())
            .filter(|at| !at.starts_with("0001-")),
    }))
}

/// What [`ensure`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Running,
    Started,
    Created,
}

/// Where the proxy container takes its listening sockets from: `hoist-proxy listen` in the
/// ports container, through the shared volume.
pub fn listeners_socket() -> String {
    format!(
        "{PROXY_STATE_DIR}/{}",
        hoist_proxy::listeners::SOCKET_FILE_NAME
    )
}

/// The command hoist runs the proxy with; a container with another one (an older hoist's,
/// which held the ports itself) is replaced by `hoist proxy reboot` or the next deploy.
pub fn run_command() -> Vec<String> {
    vec![
        "hoist-proxy".into(),
        "run".into(),
        "--listeners-from".into(),
        listeners_socket(),
    ]
}

/// Make sure hoist-proxy runs on this server: the ports container and the proxy container,
/// started if stopped, created from `config.proxy.image` if missing (pulling the image with
/// `credentials` if the engine lacks it). A proxy of an older hoist that holds the ports itself
/// is left running: [`handover::upgrade`](super::handover::upgrade) replaces it.
pub async fn ensure(
    docker: &Docker,
    config: &Config,
    credentials: Option<DockerCredentials>,
) -> Result<Ensured> {
    let proxy = inspect(docker).await?;
    if proxy.as_ref().is_some_and(|proxy| proxy.state == "running") {
        return Ok(Ensured::Running);
    }
    super::handover::recover(docker).await?;
    let proxy = inspect(docker).await?;
    if proxy.as_ref().is_some_and(|proxy| proxy.state == "running") {
        return Ok(Ensured::Running);
    }
    let legacy = proxy
        .as_ref()
        .is_some_and(|proxy| proxy.command != run_command());
    if !legacy {
        pull_if_missing(docker, &config.proxy.image, credentials).await?;
        ensure_ports(docker, config).await?;
    }
    let ensured = match proxy {
        Some(_) => {
            docker
                .start_container(PROXY_CONTAINER, None)
                .await
                .context("Failed to start the stopped `hoist-proxy` container")?;
            Ensured::Started
        }
        None => {
            create(docker, config, PROXY_CONTAINER).await?;
            start(docker, PROXY_CONTAINER).await?;
            Ensured::Created
        }
    };
    wait_answering(docker).await?;
    Ok(ensured)
}

/// Stop hoist-proxy on this server: the ports container first, then the proxy, which lets go of
/// the listening sockets (new connections are refused from then on) and finishes the requests
/// in flight. Stopped or missing already is fine; [`ensure`] starts both again.
pub async fn stop(docker: &Docker) -> Result<()> {
    super::app::stop(docker, PORTS_CONTAINER).await?;
    super::app::stop(docker, PROXY_CONTAINER).await
}

/// Remove hoist-proxy from this server: the ports container first (new connections are
/// refused from then on), the proxy (its requests in flight finish within the stop timeout),
/// any container a handover left, and the state volume with its routes and certificates.
/// Missing already is fine.
pub async fn remove(docker: &Docker) -> Result<()> {
    stop(docker).await?;
    for name in [
        PORTS_CONTAINER,
        PROXY_CONTAINER,
        NEXT_PROXY_CONTAINER,
        OLD_PROXY_CONTAINER,
    ] {
        docker::remove_container_force(docker, name).await?;
    }
    docker::ignore_not_found(
        docker
            .remove_volume(
                PROXY_VOLUME,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await,
    )
    .with_context(|| format!("Failed to remove the `{PROXY_VOLUME}` volume"))
}

/// Every proxy service this configuration makes: one per role behind the proxy, and the load
/// balancer's.
pub fn service_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config
        .roles
        .iter()
        .filter(|(_, role)| role.proxy)
        .map(|(name, _)| naming::role_scope(&config.service, name, config.destination.as_deref()))
        .collect();
    if config.loadbalancer.is_some() {
        names.push(super::loadbalancer::service(config));
    }
    names
}

/// The ports container, created or started if it does not run.
pub(super) async fn ensure_ports(docker: &Docker, config: &Config) -> Result<()> {
    match docker.inspect_container(PORTS_CONTAINER, None).await {
        Ok(inspect)
            if inspect
                .state
                .as_ref()
                .and_then(|s| s.running)
                .unwrap_or(false) =>
        {
            Ok(())
        }
        Ok(_) => start(docker, PORTS_CONTAINER).await,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            create(docker, config, PORTS_CONTAINER).await?;
            start(docker, PORTS_CONTAINER).await
        }
        Err(err) => Err(err).context("Failed to inspect the `hoist-proxy-ports` container"),
    }
}

/// Pull `image` (the proxy's) unless the engine has it.
pub(super) async fn pull_if_missing(
    docker: &Docker,
    image: &str,
    credentials: Option<DockerCredentials>,
) -> Result<()> {
    if !docker::image_exists(docker, image).await? {
        docker::pull(docker, image, credentials, |_| {})
            .await
            .map_err(|err| {
                hinted(
                    format!("{err:#}"),
                    "set `proxy.image` in deploy.toml to a hoist-proxy image the servers can pull",
                )
            })?;
    }
    Ok(())
}

/// Create `name` from `config.proxy.image`, as uid 65532 with its state in the `hoist-proxy`
/// volume on the `hoist` network: the ports container (`hoist-proxy listen`, publishing 80 and
/// 443) or a proxy container (`hoist-proxy run` taking the ports' sockets from it). User,
/// command and state directory are set here rather than taken from the image, whose defaults
/// are the ones Kamal expects.
pub(super) async fn create(docker: &Docker, config: &Config, name: &str) -> Result<()> {
    let ports = name == PORTS_CONTAINER;
    let binding = |port: &str| {
        (
            format!("{port}/tcp"),
            Some(vec![PortBinding {
                host_ip: None,
                host_port: Some(port.to_string()),
            }]),
        )
    };
    let command = if ports {
        vec!["hoist-proxy".into(), "listen".into()]
    } else {
        run_command()
    };
    let body = ContainerCreateBody {
        image: Some(config.proxy.image.clone()),
        user: Some(PROXY_USER.to_string()),
        cmd: Some(command),
        env: Some(vec![format!("{STATE_DIR_ENV}={PROXY_STATE_DIR}")]),
        exposed_ports: ports.then(|| vec!["80/tcp".into(), "443/tcp".into()]),
        host_config: Some(HostConfig {
            port_bindings: ports.then(|| HashMap::from([binding("80"), binding("443")])),
            binds: Some(vec![format!("{PROXY_VOLUME}:{PROXY_STATE_DIR}")]),
            ..docker::long_running()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(name).build()),
            body,
        )
        .await
        .with_context(|| format!("Failed to create the `{name}` container"))?;
    Ok(())
}

/// Start the container `name` (the ports container's start is where ports 80 and 443 are taken).
pub(super) async fn start(docker: &Docker, name: &str) -> Result<()> {
    let started = docker
        .start_container(name, None)
        .await
        .with_context(|| format!("Failed to start the `{name}` container"));
    if name == PORTS_CONTAINER {
        return started.map_err(|err| {
            hinted(
                format!("{err:#}"),
                "ports 80 and 443 must be free on the server (is another web server running?)",
            )
        });
    }
    started
}

/// Wait until the proxy answers on its control socket.
async fn wait_answering(docker: &Docker) -> Result<()> {
    let started = Instant::now();
    loop {
        match list(docker).await {
            Ok(_) => return Ok(()),
            Err(err) if started.elapsed() >= START_TIMEOUT => {
                return Err(err).context(format!(
                    "hoist-proxy did not answer within {}",
                    format_duration(START_TIMEOUT)
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Run a `hoist-proxy` control command (`args` after the program name: `stop web`, `remove web`)
/// in the proxy container; its own error when it fails.
pub async fn control(docker: &Docker, args: &[&str]) -> Result<()> {
    let mut argv = vec!["hoist-proxy"];
    argv.extend_from_slice(args);
    let output = docker::exec(docker, PROXY_CONTAINER, &argv).await?;
    if output.exit_code != 0 {
        let said = output.stderr.trim().trim_start_matches("Error: ");
        bail!("`{}` failed: {said}", argv.join(" "));
    }
    Ok(())
}

/// The services the proxy routes. Its JSON is the proof `hoist-proxy list` worked, so the exit
/// status is not asked for (a round trip less on every deploy).
pub async fn list(docker: &Docker) -> Result<Vec<ServiceSummary>> {
    let output =
        docker::exec_output(docker, PROXY_CONTAINER, &["hoist-proxy", "list", "--json"]).await?;
    serde_json::from_str(output.stdout.trim()).map_err(|_| {
        let stderr = output.stderr.trim().trim_start_matches("Error: ");
        if stderr.is_empty() {
            anyhow::anyhow!("`hoist-proxy list --json` printed no JSON")
        } else {
            anyhow::anyhow!("`hoist-proxy list` failed: {stderr}")
        }
    })
}

/// The container id (12 hex digits) `service` routes to, if the proxy knows the service.
pub fn live_target(services: &[ServiceSummary], service: &str) -> Option<String> {
    services
        .iter()
        .find(|s| s.name == service)
        .and_then(|s| s.targets.first())
        .map(|target| target.split(':').next().unwrap_or_default().to_string())
}

/// The proxy answered and refused a switch (the new target failed its health check, a route
/// conflict): the previous target keeps serving.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Switch `service` to the container `id`: the proxy health-checks it, swaps, drains the old
/// target, then returns. [`Refused`] with the proxy's message (probed URL and last probe error)
/// when it said no; any other error means the answer was lost and the outcome is unknown.
/// `secrets` holds what must not be on the command line (the EAB HMAC key, a custom
/// certificate); they apply where this proxy terminates TLS (no load balancer).
pub async fn deploy(
    docker: &Docker,
    config: &Config,
    service: &str,
    id: &str,
    secrets: &DeploySecrets,
) -> Result<()> {
    let exec = prepare_deploy(docker, config, service, id, secrets).await?;
    run_deploy(docker, &exec).await
}

/// The `hoist-proxy deploy` of [`deploy`], created in the proxy container but not run: a release
/// creates it while the new container starts, and [`run_deploy`] runs it at the switch.
pub async fn prepare_deploy(
    docker: &Docker,
    config: &Config,
    service: &str,
    id: &str,
    secrets: &DeploySecrets,
) -> Result<docker::Exec> {
    let pages = super::error_pages::for_service(config, service)?;
    let edge = config.loadbalancer.is_none();
    let certificate = secrets.certificate.as_ref().filter(|_| edge);
    let args = deploy_args_with(
        config,
        service,
        id,
        pages.as_ref().map(|p| p.0.as_str()),
        certificate,
    )?;
    if config.proxy.tls && edge {
        upload_ca_root(docker, config).await?;
    }
    if let Some(certificate) = certificate {
        certificate.upload(docker).await?;
    }
    if let Some((_, files)) = &pages {
        docker::upload_files(docker, PROXY_CONTAINER, files, &[]).await?;
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = if edge { secrets.env.as_slice() } else { &[] };
    docker::create_exec(docker, PROXY_CONTAINER, &args, env).await
}

/// Run a deploy made by [`prepare_deploy`]; errors as [`deploy`]'s.
pub async fn run_deploy(docker: &Docker, exec: &docker::Exec) -> Result<()> {
    let output = docker::run_created(docker, exec).await?;
    match refusal(output.exit_code, &output.stderr) {
        _ if output.exit_code == 0 => Ok(()),
        Some(message) => Err(Refused(message).into()),
        None => {
            let said = output.stderr.trim();
            anyhow::bail!(
                "`hoist-proxy deploy` exited with {}{}",
                output.exit_code,
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            )
        }
    }
}

/// The proxy's own refusal, from a failed `hoist-proxy deploy`: exit status 1 with
/// `Error: <why>` that the running proxy answered. Anything else (killed, the CLI unable to
/// reach the proxy or losing it mid-answer, no message) says nothing of what the proxy did.
fn refusal(exit_code: i64, stderr: &str) -> Option<String> {
    let message = stderr.trim().strip_prefix("Error: ")?;
    let unanswered = [
        "cannot reach hoist-proxy",
        "lost the connection to hoist-proxy",
        "unexpected answer from hoist-proxy",
    ];
    (exit_code == 1 && !unanswered.iter().any(|start| message.starts_with(start)))
        .then(|| message.to_string())
}

/// The container id `service` routes to once the proxy answers again (it may be restarting),
/// waiting up to [`START_TIMEOUT`]: what decides a switch whose answer was lost.
pub async fn routed_target(docker: &Docker, service: &str) -> Result<Option<String>> {
    let started = Instant::now();
    loop {
        match list(docker).await {
            Ok(services) => return Ok(live_target(&services, service)),
            Err(err) if started.elapsed() >= START_TIMEOUT => {
                return Err(err.context("hoist-proxy did not answer to be asked where it routes"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Probe the container `id` once, from the proxy's network, at `[proxy.healthcheck]`'s path
/// (`hoist-proxy probe`); the error carries the probed URL and what failed.
pub async fn probe(docker: &Docker, config: &Config, id: &str) -> Result<()> {
    let args = probe_args(config, id);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = docker::exec(docker, PROXY_CONTAINER, &args).await?;
    if output.exit_code != 0 {
        bail!("{}", output.stderr.trim().trim_start_matches("Error: "));
    }
    Ok(())
}

/// `hoist-proxy probe` of the container `id` as `[proxy.healthcheck]` says.
fn probe_args(config: &Config, id: &str) -> Vec<String> {
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

/// Copy `[proxy.acme] ca_root` into the proxy's volume at [`CA_ROOT_PATH`], where a deploy
/// with `--tls-acme-ca-root` reads it; nothing to do without one.
pub async fn upload_ca_root(docker: &Docker, config: &Config) -> Result<()> {
    let Some(path) = &config.proxy.acme.ca_root else {
        return Ok(());
    };
    let pem = std::fs::read(path).with_context(|| {
        format!(
            "Failed to read `{}` (`proxy.acme.ca_root`)",
            crate::config::display_path(path)
        )
    })?;
    docker::upload_files(
        docker,
        PROXY_CONTAINER,
        &[docker::FileSpec::new(CA_ROOT_PATH, pem, 0o644)],
        &[],
    )
    .await
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
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

    #[test]
    fn proxy_hosts_are_those_of_roles_behind_it_in_the_given_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let roles = "[servers.jobs]\nhosts = [\"h2\", \"h1\"]\nproxy = false\n\
                     [servers.admin]\nhosts = [\"h3\"]\nproxy = true\n";
        let config = config_with(dir.path(), roles);
        let selected = ["h3", "h2", "h1"].map(String::from);
        assert_eq!(hosts(&config, &selected), ["h3", "h1"]);
        assert!(hosts(&config, &["h2".to_string()]).is_empty());
    }

    #[test]
    fn live_target_is_the_container_id_of_the_first_target() {
        let services = vec![ServiceSummary {
            name: "hello-web".into(),
            hosts: vec![],
            paths: vec!["/".into()],
            targets: vec!["0123456789ab:3000".into()],
            read_targets: vec![],
            state: "running".into(),
            tls: false,
            rollout_targets: vec![],
            unhealthy_targets: vec![],
        }];
        assert_eq!(
            live_target(&services, "hello-web").as_deref(),
            Some("0123456789ab")
        );
        assert_eq!(live_target(&services, "other"), None);
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

    #[test]
    fn only_the_proxys_own_answer_is_a_refusal() {
        let said = "Error: target failed to become healthy within 5s";
        assert_eq!(
            refusal(1, said).as_deref(),
            Some("target failed to become healthy within 5s")
        );
        for (code, stderr) in [
            (137, ""),
            (137, said),
            (1, ""),
            (1, "Error: cannot reach hoist-proxy on /x.sock: refused"),
            (1, "Error: lost the connection to hoist-proxy: broken pipe"),
            (-1, "exec died"),
        ] {
            assert_eq!(refusal(code, stderr), None, "{code} {stderr}");
        }
    }
}
