//! A release's local side, before any server is touched: the secrets and credentials it needs
//! (a missing secret stops here), and the image: built and pushed with the local Docker engine,
//! or with `--skip-build` confirmed in the registry.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use bollard::auth::DockerCredentials;

use super::Timings;
use crate::build;
use crate::config::Config;
use crate::container::deploy_secrets::DeploySecrets;
use crate::docker;
use crate::printer::Printer;
use crate::registry;
use crate::reporter::Reporter;
use crate::secrets::Secrets;
use crate::version;

/// Everything secret or remote a release needs, resolved before the first connection.
pub struct Prepared {
    /// (role, host) → the environment of that role's containers there (secret values
    /// included; a host's `[env.tags]` over the role's).
    pub env: BTreeMap<(String, String), Vec<String>>,
    pub app_credentials: Option<DockerCredentials>,
    pub proxy_credentials: Option<DockerCredentials>,
    /// What `hoist-proxy deploy` must not get as flags (the EAB key, a custom certificate).
    /// Empty behind a load balancer: TLS is terminated there.
    pub proxy_secrets: DeploySecrets,
    /// The same for the load balancer's `hoist-proxy deploy`.
    pub lb_secrets: DeploySecrets,
    pub performer: String,
}

impl Prepared {
    /// The environment of `role`'s containers on `host`.
    pub fn env_for(&self, role: &str, host: &str) -> Vec<String> {
        self.env
            .get(&(role.to_string(), host.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

/// Resolve everything secret for the release's `roles`.
pub fn prepare(
    config: &Config,
    secrets: &Secrets,
    roles: &[(String, Vec<String>)],
) -> Result<Prepared> {
    let mut env = BTreeMap::new();
    let primary = &config.primary_role;
    let every_host: Vec<&String> = roles.iter().flat_map(|(_, hosts)| hosts).collect();
    for (role, hosts) in roles {
        // The primary role's on every host too: the release command may run on any of them.
        let on: Vec<&String> = if role == primary {
            every_host.clone()
        } else {
            hosts.iter().collect()
        };
        for host in on {
            let values = secrets.container_env(&config.host_env(role, host))?;
            env.insert((role.clone(), host.clone()), values);
        }
    }
    Ok(Prepared {
        env,
        app_credentials: registry::credentials_for(config, secrets, &config.image)?,
        proxy_credentials: registry::credentials_for(config, secrets, &config.proxy.image)?,
        proxy_secrets: match config.loadbalancer {
            Some(_) => DeploySecrets::default(),
            None => DeploySecrets::for_config(config, secrets)?,
        },
        lb_secrets: match config.loadbalancer {
            Some(_) => DeploySecrets::for_config(config, secrets)?,
            None => DeploySecrets::default(),
        },
        performer: version::performer(&config.root),
    })
}

/// Confirm `image:version` is in the registry (a `--skip-build` deploy), if the local engine
/// can ask: started at once, awaited before the first change to a server, so it costs no time
/// of its own.
pub fn check_registry(
    config: &Config,
    version: &str,
    credentials: Option<DockerCredentials>,
    printer: &Printer,
) -> tokio::task::JoinHandle<Result<()>> {
    let reference = format!("{}:{version}", config.image);
    let printer = *printer;
    tokio::spawn(async move { check_pushed(reference, credentials, printer).await })
}

async fn check_pushed(
    reference: String,
    credentials: Option<DockerCredentials>,
    printer: Printer,
) -> Result<()> {
    match docker::connect_local().await {
        Ok(local) => {
            printer.status("Checking", format!("{reference} in the registry"));
            build::check_pushed(&local, &reference, credentials).await
        }
        Err(err) => {
            printer.warn(format!(
                "can't check `{reference}` in the registry before deploying ({err:#}); the \
                 servers will find out when they pull"
            ));
            Ok(())
        }
    }
}

/// Build `image:version` and push it.
pub async fn build_and_push(
    config: &Config,
    version: &str,
    prepared: &Prepared,
    printer: &Printer,
    timings: &mut Timings,
) -> Result<()> {
    let local = docker::connect_local().await?;
    let reference = format!("{}:{version}", config.image);
    let phase = Instant::now();
    printer.status(
        "Building",
        format!("{reference} with the local Docker engine"),
    );
    build::build(&local, config, version, |line| printer.detail(line)).await?;
    timings.add("build", phase);
    let phase = Instant::now();
    printer.status("Pushing", &reference);
    let reporter = Reporter::new(*printer);
    let progress = reporter.host("registry");
    build::push(
        &local,
        &config.image,
        version,
        prepared.app_credentials.clone(),
        |layers| progress.step(format!("pushing ({layers} layers done)")),
    )
    .await
    .inspect_err(|_| progress.failed("push failed"))?;
    progress.done(format!("pushed {reference}"));
    timings.add("push", phase);
    Ok(())
}
