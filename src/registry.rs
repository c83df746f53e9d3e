//! Registry credentials: the user name from `[registry]` with the password from the secret it
//! names, or else what `docker login` stored for the registry (`~/.docker/config.json`, its
//! `auths` entry or a credential helper). They travel with each push or pull call
//! (`X-Registry-Auth`) and are never stored on servers or written to a log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use base64::Engine;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

use crate::config::Config;
use crate::secrets::Secrets;

/// Credentials for pulling or pushing `image`, if it lives on the configured registry and a
/// login is known for it.
pub fn credentials_for(
    config: &Config,
    secrets: &Secrets,
    image: &str,
) -> Result<Option<DockerCredentials>> {
    let registry = &config.registry;
    if !on_registry(image, &registry.server) {
        return Ok(None);
    }
    if let (Some(username), Some(password)) = (&registry.username, &registry.password) {
        let password = secrets.resolve(password)?;
        return Ok(Some(DockerCredentials {
            username: Some(username.clone()),
            password: Some(password.expose().to_string()),
            serveraddress: Some(registry.server.clone()),
            ..Default::default()
        }));
    }
    match docker_config_path() {
        Some(path) if path.is_file() => from_docker_config(&path, &registry.server),
        _ => Ok(None),
    }
}

/// Whether `image` names a repository on `server` (`ghcr.io/acme/app:v1` on `ghcr.io`).
fn on_registry(image: &str, server: &str) -> bool {
    image
        .strip_prefix(server)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// What a credential helper answers to `get`.
#[derive(Debug, Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// The login `docker login SERVER` stored in the Docker config file at `path`.
fn from_docker_config(path: &Path, server: &str) -> Result<Option<DockerCredentials>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Failed to read `{}`", path.display()))?;
    let config: DockerConfig = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a Docker config file", path.display()))?;
    let helper = config
        .cred_helpers
        .get(server)
        .or(config.creds_store.as_ref());
    let entry = config
        .auths
        .iter()
        .find(|(key, _)| registry_host(key) == server)
        .map(|(_, entry)| entry);
    if let Some(entry) = entry {
        if let Some(token) = &entry.identitytoken {
            return Ok(Some(DockerCredentials {
                identitytoken: Some(token.clone()),
                serveraddress: Some(server.to_string()),
                ..Default::default()
            }));
        }
        if let Some(auth) = &entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .with_context(|| {
                    format!(
                        "The `auth` of `{server}` in `{}` is not base64 of user:password",
                        path.display()
                    )
                })?;
            let Some((username, password)) = decoded.split_once(':') else {
                bail!(
                    "The `auth` of `{server}` in `{}` is not user:password",
                    path.display()
                );
            };
            return Ok(Some(DockerCredentials {
                username: Some(username.to_string()),
                password: Some(password.to_string()),
                serveraddress: Some(server.to_string()),
                ..Default::default()
            }));
        }
    }
    match helper {
        Some(helper) => from_helper(helper, server),
        None => Ok(None),
    }
}

/// `docker-credential-<helper> get` with the server on stdin.
fn from_helper(helper: &str, server: &str) -> Result<Option<DockerCredentials>> {
    let program = format!("docker-credential-{helper}");
    let mut child = match Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("Failed to run `{program}`")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let output = child
        .wait_with_output()
        .with_context(|| format!("Failed to run `{program}`"))?;
    if !output.status.success() {
        // "credentials not found in native keychain": no login for this server.
        return Ok(None);
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("`{program} get` printed no credentials JSON"))?;
    Ok(Some(if answer.username == "<token>" {
        DockerCredentials {
            identitytoken: Some(answer.secret),
            serveraddress: Some(server.to_string()),
            ..Default::default()
        }
    } else {
        DockerCredentials {
            username: Some(answer.username),
            password: Some(answer.secret),
            serveraddress: Some(server.to_string()),
            ..Default::default()
        }
    }))
}

/// The host of an `auths` key, which may be a URL (`https://ghcr.io/v1/`).
fn registry_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_match_their_registry_host_exactly() {
        assert!(on_registry("ghcr.io/acme/app:v1", "ghcr.io"));
        assert!(on_registry("10.0.0.2:5000/app", "10.0.0.2:5000"));
        assert!(!on_registry("ghcr.io.evil/app", "ghcr.io"));
        assert!(!on_registry("postgres:16", "ghcr.io"));
    }

    #[test]
    fn docker_login_entries_are_read_by_host() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("acme:tok:en");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{"https://ghcr.io/v1/": {{"auth": "{auth}"}}, "other.io": {{}}}}}}"#
            ),
        )
        .expect("write");
        let found = from_docker_config(&path, "ghcr.io")
            .expect("read")
            .expect("found");
        assert_eq!(found.username.as_deref(), Some("acme"));
        assert_eq!(found.password.as_deref(), Some("tok:en"));
        assert!(
            from_docker_config(&path, "quay.io")
                .expect("read")
                .is_none()
        );
        assert!(
            from_docker_config(&path, "other.io")
                .expect("read")
                .is_none()
        );
    }
}
