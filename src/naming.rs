//! Names and labels of what hoist creates on servers, in one place so every command finds what
//! the others made: app containers `<service>-<role>[-<destination>]-<version>`, accessory
//! containers `<service>-<accessory>`, the `hoist-proxy` container and the `hoist` network.

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
/// The Docker network app, accessory and proxy containers share.
pub const NETWORK: &str = "hoist";

/// `<service>-<accessory>`: also the name the app reaches it by on the `hoist` network.
pub fn accessory_container(service: &str, accessory: &str) -> String {
    format!("{service}-{accessory}")
}

/// The named volume holding hoist-proxy's state (routes, certificates), mounted at
/// [`PROXY_STATE_DIR`].
pub const PROXY_VOLUME: &str = "hoist-proxy";
/// Where the proxy image keeps its state.
pub const PROXY_STATE_DIR: &str = "/var/lib/hoist-proxy";

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
}
