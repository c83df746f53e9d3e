//! `hoist init`: start a new app's deployment files. Writes a commented deploy.toml (never over
//! an existing one), `.hoist/secrets` (mode 0600), the sample hooks (mode 0755) and a
//! `.gitignore` line for the secrets; files that already exist are left alone.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::GlobalArgs;
use crate::config::display_path;
use crate::printer::Printer;
use crate::report::hinted;

/// The starter deploy.toml; `{service}` is replaced by a name derived from the directory.
const DEPLOY_TEMPLATE: &str = include_str!("templates/deploy.toml");
/// The starter `.hoist/secrets`: commented examples only.
const SECRETS_TEMPLATE: &str = include_str!("templates/secrets");
/// The line added to `.gitignore`.
const GITIGNORE_LINE: &str = ".hoist/secrets*";

/// Sample hooks, as shipped in the repository's `hooks/`.
const SAMPLE_HOOKS: [(&str, &str); 9] = [
    (
        "pre-connect",
        include_str!("../../hooks/pre-connect.sample"),
    ),
    ("pre-build", include_str!("../../hooks/pre-build.sample")),
    ("pre-deploy", include_str!("../../hooks/pre-deploy.sample")),
    (
        "pre-app-boot",
        include_str!("../../hooks/pre-app-boot.sample"),
    ),
    (
        "post-app-boot",
        include_str!("../../hooks/post-app-boot.sample"),
    ),
    (
        "post-deploy",
        include_str!("../../hooks/post-deploy.sample"),
    ),
    (
        "docker-setup",
        include_str!("../../hooks/docker-setup.sample"),
    ),
    (
        "pre-proxy-reboot",
        include_str!("../../hooks/pre-proxy-reboot.sample"),
    ),
    (
        "post-proxy-reboot",
        include_str!("../../hooks/post-proxy-reboot.sample"),
    ),
];

pub fn run(global: &GlobalArgs, printer: &Printer) -> Result<()> {
    let config_path = global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("deploy.toml"));
    let config_path = std::path::absolute(&config_path)
        .with_context(|| format!("Failed to resolve `{}`", config_path.display()))?;
    let root = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    if config_path.exists() {
        return Err(hinted(
            format!("`{}` already exists", display_path(&config_path)),
            "edit it (`hoist config` shows what hoist reads), or move it away to start over",
        ));
    }

    let service = service_name(&root);
    write_new(
        &config_path,
        &DEPLOY_TEMPLATE.replace("{service}", &service),
        0o644,
        printer,
    )?;
    let hoist_dir = root.join(".hoist");
    fs::create_dir_all(&hoist_dir)
        .with_context(|| format!("Failed to create `{}`", display_path(&hoist_dir)))?;
    write_new(&hoist_dir.join("secrets"), SECRETS_TEMPLATE, 0o600, printer)?;
    let hooks_dir = root.join("hooks");
    fs::create_dir_all(&hooks_dir)
        .with_context(|| format!("Failed to create `{}`", display_path(&hooks_dir)))?;
    for (name, text) in SAMPLE_HOOKS {
        write_new(
            &hooks_dir.join(format!("{name}.sample")),
            text,
            0o755,
            printer,
        )?;
    }
    ignore_secrets(&root.join(".gitignore"), printer)?;
    printer.status(
        "Next",
        "fill in deploy.toml and .hoist/secrets, then run `hoist config`",
    );
    Ok(())
}

/// A service name from the app directory's name: lowercase, other characters as `-`.
fn service_name(root: &Path) -> String {
    let raw = root
        .file_name()
        .map(|name| name.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches(|c| c == '-' || c == '_').to_string();
    if crate::config::check_name(&cleaned).is_ok() {
        cleaned
    } else {
        "app".to_string()
    }
}

/// Create `path` with `text` and `mode` unless it exists.
fn write_new(path: &Path, text: &str, mode: u32, printer: &Printer) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            printer.detail(format!("kept {}", display_path(path)));
            return Ok(());
        }
        Err(err) => {
            return Err(err).with_context(|| format!("Failed to create `{}`", display_path(path)));
        }
    };
    file.write_all(text.as_bytes())
        .with_context(|| format!("Failed to write `{}`", display_path(path)))?;
    printer.status("Created", display_path(path));
    Ok(())
}

/// Add the secrets files to `.gitignore` once, creating it if needed.
fn ignore_secrets(path: &Path, printer: &Printer) -> Result<()> {
    let existing = match fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(err).with_context(|| format!("Failed to read `{}`", display_path(path)));
        }
    };
    let text = existing.clone().unwrap_or_default();
    if text.lines().any(|line| line.trim() == GITIGNORE_LINE) {
        return Ok(());
    }
    let separator = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("Failed to open `{}`", display_path(path)))?;
    file.write_all(format!("{separator}{GITIGNORE_LINE}\n").as_bytes())
        .with_context(|| format!("Failed to write `{}`", display_path(path)))?;
    let verb = if existing.is_some() {
        "Updated"
    } else {
        "Created"
    };
    printer.status(verb, display_path(path));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_comes_from_the_directory() {
        assert_eq!(service_name(Path::new("/src/My App")), "my-app");
        assert_eq!(service_name(Path::new("/src/hello_world")), "hello_world");
        assert_eq!(service_name(Path::new("/")), "app");
        assert_eq!(service_name(Path::new("/src/ü")), "app");
    }
}
