//! What a sandbox is made of, as recorded on disk (`sandbox.json` in its state directory) and as
//! printed by `hoist sandbox list --json`; where state directories live; names and labels of the
//! Docker objects a sandbox owns.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::report::HintExt;

/// Label on every container, network and volume a sandbox creates; its value is the sandbox name.
pub const SANDBOX_LABEL: &str = "dev.hoist.sandbox";

/// The description of one sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxInfo {
    pub name: String,
    /// Where keys, certificates and credentials live.
    pub state_dir: PathBuf,
    /// Docker network the servers and the registry share.
    pub network: String,
    pub subnet: String,
    pub bare: bool,
    pub servers: Vec<ServerInfo>,
    /// A known_hosts file with every server's host key.
    pub known_hosts_path: PathBuf,
    pub registry: RegistryInfo,
    /// A CA certificate file hoist placed in the local engine's `certs.d` (removed by `down`).
    pub host_ca_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    pub name: String,
    pub container: String,
    pub address: String,
    pub ssh_user: String,
    pub ssh_port: u16,
    pub key_path: PathBuf,
    pub known_hosts_line: String,
    /// Filled in by `list`: the container's state (`running`, `exited`, `missing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryInfo {
    /// `HOST:PORT`, the prefix of image names: `10.231.7.2:5000/hello`.
    pub address: String,
    pub container: String,
    pub username: String,
    /// The CA that signed the registry's certificate (trusted by every sandbox server).
    pub ca_path: PathBuf,
    /// A shell file defining `HOIST_SANDBOX_REGISTRY`, `..._USERNAME`, `..._PASSWORD` (mode 0600).
    pub credentials_path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Names of the Docker objects of sandbox `name`.
pub struct Names<'a> {
    name: &'a str,
}

impl<'a> Names<'a> {
    pub fn new(name: &'a str) -> Self {
        Self { name }
    }

    pub fn network(&self) -> String {
        format!("hoist-sandbox-{}", self.name)
    }

    pub fn server_container(&self, server: &str) -> String {
        format!("hoist-sandbox-{}-{server}", self.name)
    }

    pub fn server_volume(&self, server: &str) -> String {
        format!("hoist-sandbox-{}-{server}-docker", self.name)
    }

    pub fn registry_container(&self) -> String {
        format!("hoist-sandbox-{}-registry", self.name)
    }

    pub fn registry_volume(&self) -> String {
        format!("hoist-sandbox-{}-registry-data", self.name)
    }
}

/// Sandbox names end up in container, network and host names: keep them to `[a-z0-9-]`.
pub fn validate_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(crate::report::hinted(
            format!("Invalid sandbox name `{name}`"),
            "use 1 to 32 lowercase letters, digits and inner dashes, e.g. `--name staging`",
        ))
    }
}

/// Directory holding every sandbox's state: `$HOIST_SANDBOX_HOME`, else
/// `$XDG_DATA_HOME/hoist/sandbox`, else `~/.local/share/hoist/sandbox`.
pub fn sandboxes_root() -> Result<PathBuf> {
    root_from(
        std::env::var_os("HOIST_SANDBOX_HOME"),
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
    )
}

fn root_from(
    explicit: Option<std::ffi::OsString>,
    xdg_data: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf> {
    let non_empty = |v: Option<std::ffi::OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty(explicit) {
        return Ok(dir);
    }
    if let Some(dir) = non_empty(xdg_data) {
        return Ok(dir.join("hoist").join("sandbox"));
    }
    if let Some(home) = non_empty(home) {
        return Ok(home.join(".local/share/hoist/sandbox"));
    }
    Err(crate::report::hinted(
        "Cannot tell where to keep sandbox state: HOME is not set",
        "set HOIST_SANDBOX_HOME to a directory",
    ))
}

pub fn state_file(state_dir: &Path) -> PathBuf {
    state_dir.join("sandbox.json")
}

/// Read a sandbox's description, `None` if it has none.
pub fn load(state_dir: &Path) -> Result<Option<SandboxInfo>> {
    let path = state_file(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(err).with_context(|| format!("Failed to read `{}`", path.display()));
        }
    };
    let info = serde_json::from_str(&text)
        .with_context(|| format!("Failed to parse `{}`", path.display()))
        .hint("the file is damaged; `hoist sandbox down` removes the sandbox by its Docker labels, then `up` starts afresh")?;
    Ok(Some(info))
}

/// Write a sandbox's description atomically (temp file, fsync, rename).
pub fn save(info: &SandboxInfo) -> Result<()> {
    let path = state_file(&info.state_dir);
    let text = serde_json::to_string_pretty(info).context("Failed to encode the sandbox state")?;
    write_atomic(&path, text.as_bytes(), 0o644)
}

/// Write a file atomically with the given mode (created with it, never wider in between).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    // A stale temp file could carry a wider mode: never reuse one.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("Failed to create `{}`", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("Failed to write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("Failed to move `{}` into place", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["hoist", "ci-42", "a"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Upper", "-x", "x-", "a_b", "a.b", &"x".repeat(33)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn root_prefers_explicit_then_xdg_then_home() {
        let root = |a: Option<&str>, b: Option<&str>, c: Option<&str>| {
            root_from(a.map(Into::into), b.map(Into::into), c.map(Into::into)).ok()
        };
        assert_eq!(
            root(Some("/s"), Some("/x"), Some("/h")),
            Some(PathBuf::from("/s"))
        );
        assert_eq!(
            root(None, Some("/x"), Some("/h")),
            Some(PathBuf::from("/x/hoist/sandbox"))
        );
        assert_eq!(
            root(Some(""), None, Some("/h")),
            Some(PathBuf::from("/h/.local/share/hoist/sandbox"))
        );
        assert_eq!(root(None, None, None), None);
    }
}
