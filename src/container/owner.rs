//! Who owns a hoist-proxy route: before a release switches anything, a proxy service of the
//! release's name must route to one of the release's own containers (or to nothing). Names are
//! `<service>-<role>[-<destination>]`, so two apps can make the same one (`shop` + `web-api`,
//! `shop-web` + `api`); the labels on the routed container tell them apart.

use anyhow::{Context, Result};

use super::{app, proxy};
use crate::naming;
use crate::remote::Server;
use crate::report::hinted;

/// Fail if `service` in hoist-proxy routes to a container that is not `ours` by its labels.
/// `containers` are ours (listed by our labels): a live target among them needs no inspect. A
/// target that no longer exists belongs to nobody.
pub async fn check_route_owner(
    server: &Server,
    services: &[hoist_proxy::router::ServiceSummary],
    service: &str,
    ours: &naming::Owner,
    containers: &[app::AppContainer],
) -> Result<()> {
    let Some(live) = proxy::live_target(services, service) else {
        return Ok(());
    };
    if live.is_empty() || containers.iter().any(|c| c.id.starts_with(&live)) {
        return Ok(());
    }
    let inspect = match server.docker.inspect_container(&live, None).await {
        Ok(inspect) => inspect,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(()),
        Err(err) => {
            return Err(err).with_context(|| {
                format!(
                    "Failed to inspect `{live}`, the container `{service}` routes to on `{}`",
                    server.host
                )
            });
        }
    };
    let labels = inspect
        .config
        .and_then(|config| config.labels)
        .unwrap_or_default();
    let theirs = naming::Owner::from_labels(&labels);
    if theirs == *ours {
        return Ok(());
    }
    let container = inspect
        .name
        .as_deref()
        .map(|name| name.trim_start_matches('/').to_string())
        .unwrap_or(live);
    let (message, hint) = foreign_route(&server.host, service, &container, ours, &theirs);
    Err(hinted(message, hint))
}

/// The error for a proxy service of our name that another app owns, and its hint.
fn foreign_route(
    host: &str,
    service: &str,
    container: &str,
    ours: &naming::Owner,
    theirs: &naming::Owner,
) -> (String, String) {
    (
        format!(
            "hoist-proxy on `{host}` already routes `{service}` to `{container}`, which belongs \
             to {}, not to this deploy's {}; nothing was changed: no container was started and \
             no route switched",
            theirs.describe(),
            ours.describe()
        ),
        "both make the name `<service>-<role>[-<destination>]`; rename this app's `service` or \
         role (`[servers.<role>]` in deploy.toml), or the other app's, so each gets its own route"
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_owned_by_another_app_names_both_owners_and_that_nothing_changed() {
        let (message, hint) = foreign_route(
            "203.0.113.10",
            "shop-web-api",
            "shop-web-api-abc123",
            &naming::Owner::new("shop-web", "api", None),
            &naming::Owner::new("shop", "web-api", None),
        );
        assert_eq!(
            message,
            "hoist-proxy on `203.0.113.10` already routes `shop-web-api` to \
             `shop-web-api-abc123`, which belongs to service `shop`, role `web-api`, not to this \
             deploy's service `shop-web`, role `api`; nothing was changed: no container was \
             started and no route switched"
        );
        assert!(
            hint.contains("rename this app's `service` or role"),
            "{hint}"
        );
    }
}
