//! The version being deployed and who deploys it, from the app's git repository: the version is
//! the commit (`git rev-parse HEAD`), and a tree with uncommitted changes is refused unless the
//! user allows it, in which case the version says so (`<commit>_uncommitted_<hash>`). The
//! performer (lock holder, audit log, hooks) is `git config user.email`, else the login name.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::report::hinted;

/// Files listed by `git status` when the tree is dirty, at most this many in the message.
const DIRTY_FILES_SHOWN: usize = 5;

/// The version to deploy: `--version` as given, else the commit of the repository at `root`.
pub fn resolve(root: &Path, flag: Option<&str>, allow_dirty: bool) -> Result<String> {
    if let Some(version) = flag {
        check(version)?;
        return Ok(version.to_string());
    }
    let commit = git(root, &["rev-parse", "HEAD"]).map_err(|err| {
        hinted(
            format!("Can't tell the version to deploy: {err:#}"),
            "deploy from a git repository with at least one commit, or name an image already \
             pushed with `--version V --skip-build`",
        )
    })?;
    let status = git(root, &["status", "--porcelain", "--untracked-files=normal"])?;
    if status.is_empty() {
        return Ok(commit);
    }
    if !allow_dirty {
        let files: Vec<&str> = status.lines().take(DIRTY_FILES_SHOWN).collect();
        let more = status.lines().count().saturating_sub(DIRTY_FILES_SHOWN);
        let mut listing = files.join("\n  ");
        if more > 0 {
            listing.push_str(&format!("\n  … and {more} more"));
        }
        return Err(hinted(
            format!(
                "The working tree at `{}` has uncommitted changes, so commit {} would not \
                 describe what gets deployed:\n  {listing}",
                root.display(),
                &commit[..commit.len().min(12)]
            ),
            "commit them, or pass `--allow-dirty` to deploy them as \
             `<commit>_uncommitted_<hash>`",
        ));
    }
    // The same changes give the same version, so a retried dirty deploy reuses its image.
    let diff = git(root, &["diff", "HEAD"])?;
    let mut hash = Sha256::new();
    hash.update(status.as_bytes());
    hash.update(diff.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{commit}_uncommitted_{hex}"))
}

/// A version must be a valid Docker tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check(version: &str) -> Result<()> {
    let valid = !version.is_empty()
        && version.len() <= 128
        && !version.starts_with(['.', '-'])
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(hinted(
            format!("`{version}` can't be a version: it becomes an image tag"),
            "use letters, digits, `_`, `.` and `-` (at most 128, not starting with `.` or `-`)",
        ));
    }
    Ok(())
}

/// Who deploys: `git config user.email`, else `$USER`, else "unknown".
pub fn performer(root: &Path) -> String {
    git(root, &["config", "user.email"])
        .ok()
        .filter(|email| !email.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|user| !user.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// Run git in `root`; its trimmed stdout.
pub fn git(root: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .context("Failed to run `git` (is it installed?)")?;
    if !output.status.success() {
        bail!(
            "`git {}` failed in `{}`: {}",
            args.join(" "),
            root.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn versions_are_docker_tags() {
        assert!(check("3f2a9c1").is_ok());
        assert!(check("v1.2.3_rc-1").is_ok());
        assert!(check("").is_err());
        assert!(check("-x").is_err());
        assert!(check("a/b").is_err());
        assert!(check(&"a".repeat(129)).is_err());
    }
}
