//! Registry credentials from `[registry]`: the user name from deploy.toml, the password from the
//! secret it names. They travel with each pull or push call (`X-Registry-Auth`) and are never
//! stored on servers or written to a log.

use anyhow::Result;
use bollard::auth::DockerCredentials;

use crate::config::Config;
use crate::secrets::Secrets;

/// Credentials for pulling `image`, if it lives on the configured registry and a login is set.
pub fn credentials_for(
    config: &Config,
    secrets: &Secrets,
    image: &str,
) -> Result<Option<DockerCredentials>> {
    let registry = &config.registry;
    let (Some(username), Some(password)) = (&registry.username, &registry.password) else {
        return Ok(None);
    };
    if !on_registry(image, &registry.server) {
        return Ok(None);
    }
    let password = secrets.resolve(password)?;
    Ok(Some(DockerCredentials {
        username: Some(username.clone()),
        password: Some(password.expose().to_string()),
        serveraddress: Some(registry.server.clone()),
        ..Default::default()
    }))
}

/// Whether `image` names a repository on `server` (`ghcr.io/acme/app:v1` on `ghcr.io`).
fn on_registry(image: &str, server: &str) -> bool {
    image
        .strip_prefix(server)
        .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::on_registry;

    #[test]
    fn images_match_their_registry_host_exactly() {
        assert!(on_registry("ghcr.io/acme/app:v1", "ghcr.io"));
        assert!(on_registry("10.0.0.2:5000/app", "10.0.0.2:5000"));
        assert!(!on_registry("ghcr.io.evil/app", "ghcr.io"));
        assert!(!on_registry("postgres:16", "ghcr.io"));
    }
}
