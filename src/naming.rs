//! Names and labels of what hoist creates on servers, in one place so every command finds what
//! the others made: app containers `<service>-<role>[-<destination>]-<version>`, accessory
//! containers `<service>-<accessory>`, backup agents `hoist-backup-<service>`, the `hoist-proxy`
//! container and the `hoist` network.

/// Label holding the service name, on app and accessory containers.
pub const LABEL_SERVICE: &str = "service";
/// Label holding the role, on app containers.
pub const LABEL_ROLE: &str = "role";
/// Label holding the destination (empty without one).
pub const LABEL_DESTINATION: &str = "destination";
/// Label holding the version (the git commit), on app containers.
pub const LABEL_VERSION: &str = "version";
/// Label holding the accessory name, on accessory containers.
pub const LABEL_ACCESSORY: &str = "accessory";

/// The proxy container on every server.
pub const PROXY_CONTAINER: &str = "hoist-proxy";
/// The container holding ports 80 and 443 for every proxy version (`hoist-proxy listen`).
pub const PORTS_CONTAINER: &str = "hoist-proxy-ports";
/// A new proxy while it takes over from [`PROXY_CONTAINER`], renamed to it once it has.
pub const NEXT_PROXY_CONTAINER: &str = "hoist-proxy-next";
/// The replaced proxy while it drains, removed once it has exited.
pub const OLD_PROXY_CONTAINER: &str = "hoist-proxy-old";
/// The Docker network app, accessory and proxy containers share.
pub const NETWORK: &str = "hoist";

/// `<service>-<accessory>`: also the name the app reaches it by on the `hoist` network.
pub fn accessory_container(service: &str, accessory: &str) -> String {
    format!("{service}-{accessory}")
}

/// `hoist-backup-<service>`: the backup agent of a service's accessories on one server, and
/// the named volume of its state (last success and failure), mounted at
/// `hoist_backup::spec::STATE_DIR`.
pub fn backup_container(service: &str) -> String {
    format!("hoist-backup-{service}")
}

/// The named volume holding hoist-proxy's state (routes, certificates), mounted at
/// [`PROXY_STATE_DIR`].
pub const PROXY_VOLUME: &str = "hoist-proxy";
/// hoist-proxy's control socket as the server sees it: in [`PROXY_VOLUME`] under Docker's
/// default data root. Where Docker keeps volumes elsewhere (or the SSH user may not enter
/// `/var/lib/docker`), nothing answers there and hoist asks through `docker exec` instead.
pub fn proxy_control_socket_on_host() -> String {
    format!(
        "/var/lib/docker/volumes/{PROXY_VOLUME}/_data/{}",
        hoist_proxy::paths::SOCKET_FILE_NAME
    )
}
/// Where hoist's proxy container keeps its state (the image's defaults are Kamal's).
pub const PROXY_STATE_DIR: &str = "/var/lib/hoist-proxy";
/// The user hoist's proxy container runs as, the owner of [`PROXY_STATE_DIR`] in the image.
pub const PROXY_USER: &str = "65532:65532";
/// Its user (and group) id, for files hoist places in its volume.
pub const PROXY_UID: u64 = 65532;

/// `<service>[-<destination>]`: what the lock, the audit log and a destination's containers are
/// scoped by, so staging and production of one app on a host stay apart.
pub fn scope(service: &str, destination: Option<&str>) -> String {
    match destination {
        Some(destination) => format!("{service}-{destination}"),
        None => service.to_string(),
    }
}

/// `<service>-<role>[-<destination>]`: a role's prefix for container names and its service name
/// inside hoist-proxy.
pub fn role_scope(service: &str, role: &str, destination: Option<&str>) -> String {
    match destination {
        Some(destination) => format!("{service}-{role}-{destination}"),
        None => format!("{service}-{role}"),
    }
}

/// `<service>-<role>[-<destination>]-<version>`: an app container.
pub fn app_container(
    service: &str,
    role: &str,
    destination: Option<&str>,
    version: &str,
) -> String {
    format!("{}-{version}", role_scope(service, role, destination))
}

/// Two (role, destination) pairs of one service whose containers and proxy service would have
/// the same name, `<service>-<role>[-<destination>]`: `web` with destination `staging` and the
/// role `web-staging` without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeCollision {
    /// The shared name.
    pub name: String,
    pub first: (String, Option<String>),
    pub second: (String, Option<String>),
}

/// The first collision among `roles` of `service`, each deployed without a destination or to one
/// of `destinations`. Pairs come in the order of `roles`, then `None`, then `destinations`.
pub fn scope_collision(
    service: &str,
    roles: &[&str],
    destinations: &[&str],
) -> Option<ScopeCollision> {
    let targets: Vec<Option<&str>> = std::iter::once(None)
        .chain(destinations.iter().copied().map(Some))
        .collect();
    let mut seen: Vec<(String, (&str, Option<&str>))> = Vec::new();
    for role in roles {
        for destination in &targets {
            let name = role_scope(service, role, *destination);
            if let Some((_, (first_role, first_destination))) = seen
                .iter()
                .find(|(known, (known_role, _))| *known == name && known_role != role)
            {
                return Some(ScopeCollision {
                    name,
                    first: (
                        first_role.to_string(),
                        first_destination.map(str::to_string),
                    ),
                    second: (role.to_string(), destination.map(str::to_string)),
                });
            }
            seen.push((name, (role, *destination)));
        }
    }
    None
}

/// Who a container belongs to, by its `service`, `role` and `destination` labels (a missing
/// label reads as empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub service: String,
    pub role: String,
    /// Empty without a destination.
    pub destination: String,
}

impl Owner {
    pub fn new(service: &str, role: &str, destination: Option<&str>) -> Self {
        Self {
            service: service.to_string(),
            role: role.to_string(),
            destination: destination.unwrap_or_default().to_string(),
        }
    }

    /// The owner its labels name.
    pub fn from_labels(labels: &std::collections::HashMap<String, String>) -> Self {
        let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
        Self {
            service: label(LABEL_SERVICE),
            role: label(LABEL_ROLE),
            destination: label(LABEL_DESTINATION),
        }
    }

    /// For messages: "service `shop`, role `web-api`" (", destination `staging`"), or "no hoist
    /// service (no `service` label)".
    pub fn describe(&self) -> String {
        if self.service.is_empty() {
            return "no hoist service (it has no `service` label)".to_string();
        }
        let mut text = format!("service `{}`, role `{}`", self.service, self.role);
        if !self.destination.is_empty() {
            text.push_str(&format!(", destination `{}`", self.destination));
        }
        text
    }
}

/// 16 random hex digits: the suffix of a container renamed aside, the id of a deploy lock.
pub fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|err| anyhow::anyhow!("Failed to draw random bytes: {err}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `~/.hoist/<scope>`, relative to the SSH user's home: the lock and the audit log.
pub fn state_dir(scope: &str) -> String {
    format!(".hoist/{scope}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_destination_only_when_there_is_one() {
        assert_eq!(app_container("hello", "web", None, "abc"), "hello-web-abc");
        assert_eq!(
            app_container("hello", "web", Some("staging"), "abc"),
            "hello-web-staging-abc"
        );
        assert_eq!(role_scope("hello", "jobs", None), "hello-jobs");
        assert_eq!(scope("hello", Some("prod")), "hello-prod");
        assert_eq!(state_dir("hello"), ".hoist/hello");
    }

    #[test]
    fn a_role_named_like_another_role_with_a_destination_collides() {
        let collision =
            scope_collision("hello", &["web", "web-staging"], &["staging"]).expect("a collision");
        assert_eq!(collision.name, "hello-web-staging");
        assert_eq!(
            collision.first,
            ("web".to_string(), Some("staging".to_string()))
        );
        assert_eq!(collision.second, ("web-staging".to_string(), None));

        // Two destinations that make one role's name another's: `web-a` + `b` and `web` + `a-b`.
        let collision =
            scope_collision("hello", &["web", "web-a"], &["a-b", "b"]).expect("a collision");
        assert_eq!(collision.name, "hello-web-a-b");
        assert_eq!(
            collision.first,
            ("web".to_string(), Some("a-b".to_string()))
        );
        assert_eq!(
            collision.second,
            ("web-a".to_string(), Some("b".to_string()))
        );
    }

    #[test]
    fn distinct_names_do_not_collide() {
        assert_eq!(
            scope_collision("hello", &["web", "jobs"], &["staging", "prod"]),
            None
        );
        assert_eq!(
            scope_collision("hello", &["web", "web-staging"], &["prod"]),
            None
        );
        assert_eq!(
            scope_collision("hello", &["web", "web_staging"], &["staging"]),
            None
        );
        assert_eq!(scope_collision("hello", &["web"], &[]), None);
    }

    #[test]
    fn owners_come_from_labels_and_describe_themselves() {
        let labels = std::collections::HashMap::from([
            (LABEL_SERVICE.to_string(), "shop".to_string()),
            (LABEL_ROLE.to_string(), "web-api".to_string()),
            (LABEL_DESTINATION.to_string(), String::new()),
            (LABEL_VERSION.to_string(), "abc".to_string()),
        ]);
        let owner = Owner::from_labels(&labels);
        assert_eq!(owner, Owner::new("shop", "web-api", None));
        assert_ne!(owner, Owner::new("shop-web", "api", None));
        assert_eq!(owner.describe(), "service `shop`, role `web-api`");
        assert_eq!(
            Owner::new("shop", "web", Some("staging")).describe(),
            "service `shop`, role `web`, destination `staging`"
        );
        assert_eq!(
            Owner::from_labels(&Default::default()).describe(),
            "no hoist service (it has no `service` label)"
        );
    }
}
