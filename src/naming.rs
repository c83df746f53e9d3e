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
