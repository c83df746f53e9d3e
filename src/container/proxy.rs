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
use hoist_proxy::control::{ClientError, ControlRequest, ControlResponse};
use hoist_proxy::options::DeployRequest;
use hoist_proxy::router::ServiceSummary;
use russh::ChannelStream;
use russh::client::Msg;

use super::deploy_secrets::DeploySecrets;
use super::proxy_args::{CA_ROOT_PATH, deploy_args_with, probe_args};
use crate::config::{Config, format_duration};
use crate::docker;
use crate::naming::{
    self, NEXT_PROXY_CONTAINER, OLD_PROXY_CONTAINER, PORTS_CONTAINER, PROXY_CONTAINER,
    PROXY_STATE_DIR, PROXY_USER, PROXY_VOLUME,
};
use crate::remote::Server;
use crate::report::hinted;
use hoist_proxy::paths::STATE_DIR_ENV;

/// How long a freshly started proxy has to answer its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The hosts among `hosts` where a role runs behind the proxy, in the order of `hosts`.
pub fn hosts(config: &Config, hosts: &[String]) -> Vec<String> {
    hosts
        .iter()
        .filter(|host| config.behind_proxy(host))
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

/// [`list`] on `server`, through the control socket channel its connection opened when there
/// is one (a round trip), else through `docker exec`.
pub async fn list_on(server: &Server) -> Result<Vec<ServiceSummary>> {
    match server.proxy_call(&ControlRequest::List).await {
        Some(ControlResponse::Services { services }) => Ok(services),
        _ => list(&server.docker).await,
    }
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
    server: &Server,
    config: &Config,
    service: &str,
    id: &str,
    secrets: &DeploySecrets,
) -> Result<()> {
    let prepared = prepare_deploy(server, config, service, id, secrets).await?;
    run_deploy(&server.docker, prepared).await
}

/// A `hoist-proxy deploy` made ready while the new container starts, so that the switch is one
/// round trip: the request, for a channel to the proxy's control socket already open, or
/// (where that socket can't be reached) the command, created in the proxy container.
pub enum PreparedDeploy {
    Socket {
        request: Box<DeployRequest>,
        channel: ChannelStream<Msg>,
    },
    Exec(docker::Exec),
}

/// Which way, never what the request holds (the EAB key).
impl std::fmt::Debug for PreparedDeploy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PreparedDeploy::Socket { .. } => f.write_str("PreparedDeploy::Socket"),
            PreparedDeploy::Exec(exec) => write!(f, "PreparedDeploy::Exec({})", exec.describe()),
        }
    }
}

/// The `hoist-proxy deploy` of [`deploy`], made ready but not run: a release prepares it while
/// the new container starts, and [`run_deploy`] runs it at the switch.
pub async fn prepare_deploy(
    server: &Server,
    config: &Config,
    service: &str,
    id: &str,
    secrets: &DeploySecrets,
) -> Result<PreparedDeploy> {
    let docker = &server.docker;
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
    let env = if edge { secrets.env.as_slice() } else { &[] };
    let (uploaded, channel) = tokio::join!(
        async {
            if config.proxy.tls && edge {
                upload_ca_root(docker, config).await?;
            }
            if let Some(certificate) = certificate {
                certificate.upload(docker).await?;
            }
            if let Some((_, files)) = &pages {
                docker::upload_files(docker, PROXY_CONTAINER, files, &[]).await?;
            }
            anyhow::Ok(())
        },
        server.open_control_channel()
    );
    uploaded?;
    if let Some(channel) = channel {
        return Ok(PreparedDeploy::Socket {
            request: Box::new(deploy_request(&args, env)?),
            channel,
        });
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(PreparedDeploy::Exec(
        docker::create_exec(docker, PROXY_CONTAINER, &args, env).await?,
    ))
}

/// The control request `hoist-proxy deploy …` (`args`, the program name first) would send with
/// `env` (`NAME=value` lines: the EAB key) in its environment: parsed by hoist-proxy's own CLI,
/// so both ways ask the same.
fn deploy_request(args: &[String], env: &[String]) -> Result<DeployRequest> {
    let cli = <hoist_proxy::cli::Cli as clap::Parser>::try_parse_from(args)?;
    let hoist_proxy::cli::Command::Deploy(mut args) = cli.command else {
        bail!("`hoist-proxy deploy` arguments parsed as another command");
    };
    let key = format!("{}=", hoist_proxy::cli::EAB_HMAC_KEY_ENV);
    if let Some(value) = env.iter().find_map(|line| line.strip_prefix(&key)) {
        args.tls_acme_eab_hmac_key = Some(value.to_string());
    }
    Ok(DeployRequest::from_args(&args)?)
}

/// Run a deploy made by [`prepare_deploy`]; errors as [`deploy`]'s.
pub async fn run_deploy(docker: &Docker, prepared: PreparedDeploy) -> Result<()> {
    let exec = match prepared {
        PreparedDeploy::Socket { request, channel } => {
            let request = ControlRequest::Deploy(request);
            return match hoist_proxy::control::call_over(channel, &request).await {
                Ok(_) => Ok(()),
                Err(ClientError::Failed(message)) => Err(Refused(message).into()),
                Err(err) => Err(anyhow::Error::new(err)
                    .context("the answer of hoist-proxy's control socket was lost")),
            };
        }
        PreparedDeploy::Exec(exec) => exec,
    };
    let output = docker::run_created(docker, &exec).await?;
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
mod tests {
    use super::super::proxy_args::tests::config_with;
    use super::*;

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

    #[test]
    fn the_socket_deploy_asks_what_the_command_would_with_the_eab_key_from_the_environment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let acme = "[proxy]\ntls = true\nhosts = [\"a.example.com\"]\n[proxy.acme]\n\
                    directory = \"https://acme.example/dir\"\neab_kid = \"kid-1\"\n\
                    eab_hmac_key = \"EAB_KEY\"\n";
        let config = config_with(dir.path(), acme);
        let args =
            deploy_args_with(&config, "a-web", "0123456789abcdef", None, None).expect("argv");
        let env = [format!("{}=c2VjcmV0", hoist_proxy::cli::EAB_HMAC_KEY_ENV)];
        let request = deploy_request(&args, &env).expect("request");
        assert_eq!(request.service, "a-web");
        assert_eq!(request.targets, ["0123456789ab:80"]);
        assert_eq!(request.tls_acme_eab_hmac_key.as_deref(), Some("c2VjcmV0"));
        // The command line's own parse gives the same request.
        let cli = <hoist_proxy::cli::Cli as clap::Parser>::try_parse_from(&args).expect("parses");
        let hoist_proxy::cli::Command::Deploy(parsed) = cli.command else {
            panic!("not a deploy");
        };
        let mut from_cli = DeployRequest::from_args(&parsed).expect("request");
        from_cli.tls_acme_eab_hmac_key = request.tls_acme_eab_hmac_key.clone();
        assert_eq!(
            serde_json::to_value(&from_cli).expect("json"),
            serde_json::to_value(&request).expect("json")
        );
        // Without a key id the key is not sent, as the command would not.
        let plain = config_with(dir.path(), "");
        let args = deploy_args_with(&plain, "a-web", "0123456789abcdef", None, None).expect("argv");
        assert_eq!(
            deploy_request(&args, &env)
                .expect("request")
                .tls_acme_eab_hmac_key,
            None
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
