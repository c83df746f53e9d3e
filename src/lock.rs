//! The deploy lock: a file `~/.hoist/<service>[-<destination>]/lock.json` on the primary host
//! (the first configured host), holding who took it, when and for what. Taking it writes the
//! JSON to a temporary file beside it, then hard-links that file to `lock.json` (`ln`, which
//! fails if the name exists): one atomic step, so of two deploys started at once exactly one
//! gets it, and a reader sees either no lock or a whole one, never a file still being written.
//! Releasing removes the file only if it is still the one this command wrote. A lock left by a
//! killed deploy stays until `hoist lock release`: it is reported, never silently stolen.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::naming;
use crate::ssh::{Session, quote};

/// Who holds the lock and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub holder: String,
    /// RFC 3339 time the lock was taken.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The command holding it (`deploy`, `rollback`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Random token of the holding process: release removes only its own lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl LockInfo {
    /// A lock for `command` by `holder` now, with a fresh id.
    pub fn new(holder: &str, command: &str, version: Option<&str>) -> Result<Self> {
        Ok(Self {
            holder: holder.to_string(),
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            version: version.map(str::to_string),
            message: None,
            command: Some(command.to_string()),
            id: Some(naming::random_hex()?),
        })
    }

    /// One line for messages: `alice@laptop (deploy of abc123) since 2026-…`.
    pub fn describe(&self) -> String {
        let mut text = self.holder.clone();
        match (&self.command, &self.version) {
            (Some(command), Some(version)) => text.push_str(&format!(" ({command} of {version})")),
            (Some(command), None) => text.push_str(&format!(" ({command})")),
            _ => {}
        }
        text.push_str(&format!(" since {}", self.at));
        if let Some(message) = &self.message {
            text.push_str(&format!(": {message}"));
        }
        text
    }
}

/// The lock file's path on a server, relative to the SSH user's home.
pub fn path(scope: &str) -> String {
    format!("{}/lock.json", naming::state_dir(scope))
}

/// The lock on `session`'s server, if one is held.
pub async fn read(session: &Session, scope: &str) -> Result<Option<LockInfo>> {
    let path = path(scope);
    let command = format!(
        "if [ -e {path} ]; then cat {path}; else exit 3; fi",
        path = quote(&path)?
    );
    let output = session.exec(&command).await?;
    match output.status {
        Some(0) => Ok(Some(parse(session, &path, &output.stdout)?)),
        Some(3) => Ok(None),
        status => bail!(
            "Failed to read `~/{path}` on `{}` (exit status {status:?}): {}",
            session.host(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

fn parse(session: &Session, path: &str, bytes: &[u8]) -> Result<LockInfo> {
    serde_json::from_slice(bytes).with_context(|| {
        format!(
            "The deploy lock `~/{path}` on `{}` is not valid JSON",
            session.host()
        )
    })
}

/// Take the lock with `info`, or return who holds it.
pub async fn try_acquire(
    session: &Session,
    scope: &str,
    info: &LockInfo,
) -> Result<Option<LockInfo>> {
    let path = path(scope);
    let command = acquire_command(scope, info)?;
    let output = session.exec(&command).await?;
    match output.status {
        Some(0) => Ok(None),
        Some(3) => Ok(Some(parse(session, &path, &output.stdout)?)),
        status => bail!(
            "Failed to create the deploy lock `~/{path}` on `{}` (exit status {status:?}): {}",
            session.host(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

/// The remote command taking the lock: write the JSON aside (`lock.json.<id>.tmp`, same
/// directory), hard-link it to `lock.json`, remove the temporary name. Exits 0 when taken,
/// 3 after printing the holder's lock, anything else on failure.
fn acquire_command(scope: &str, info: &LockInfo) -> Result<String> {
    let path = path(scope);
    let json = serde_json::to_string(info).context("Failed to encode the lock")?;
    let token = match &info.id {
        Some(id) => id.clone(),
        None => naming::random_hex()?,
    };
    // `ln` creates the name or fails if it exists (link(2) is atomic on every POSIX system),
    // and the file it names is complete before it has that name.
    Ok(format!(
        "mkdir -p {dir} || exit 4\n\
         printf '%s\\n' {json} > {temp} || {{ rm -f {temp}; exit 4; }}\n\
         if ln {temp} {path} 2>/dev/null; then rm -f {temp}; exit 0; fi\n\
         rm -f {temp}\n\
         if [ -e {path} ]; then cat {path}; exit 3; fi\n\
         exit 4",
        dir = quote(&naming::state_dir(scope))?,
        json = quote(&json)?,
        temp = quote(&format!("{path}.{token}.tmp"))?,
        path = quote(&path)?,
    ))
}

/// A shell command removing the lock if it carries `id`, never failing: for chaining with the
/// last write of a release, in the same round trip.
pub fn release_command(scope: &str, id: &str) -> Result<String> {
    let path_q = quote(&path(scope))?;
    Ok(format!(
        "{{ if grep -qF {needle} {path_q} 2>/dev/null; then rm -f {path_q}; fi; }}",
        needle = quote(&format!("\"id\":\"{id}\""))?
    ))
}

/// Remove the lock: only if it carries `id` when one is given, whoever holds it otherwise.
/// Returns whether a lock was removed.
pub async fn release(session: &Session, scope: &str, id: Option<&str>) -> Result<bool> {
    let path = path(scope);
    let path_q = quote(&path)?;
    let command = match id {
        Some(id) => format!(
            "if grep -qF {needle} {path_q} 2>/dev/null; then rm -f {path_q}; else exit 3; fi",
            needle = quote(&format!("\"id\":\"{id}\""))?
        ),
        None => format!("if [ -e {path_q} ]; then rm -f {path_q}; else exit 3; fi"),
    };
    let output = session.exec(&command).await?;
    match output.status {
        Some(0) => Ok(true),
        Some(3) => Ok(false),
        status => bail!(
            "Failed to remove the deploy lock `~/{path}` on `{}` (exit status {status:?}): {}",
            session.host(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::{Command, Output};

    use super::*;

    fn info(holder: &str) -> LockInfo {
        LockInfo::new(holder, "deploy", Some("abc123")).expect("lock info")
    }

    /// Run a lock command with `sh` in `home`, as the SSH user's shell runs it in theirs.
    fn run(home: &Path, command: &str) -> Output {
        Command::new("sh")
            .args(["-c", command])
            .current_dir(home)
            .output()
            .expect("run sh")
    }

    fn leftovers(home: &Path) -> Vec<String> {
        std::fs::read_dir(home.join(naming::state_dir("hello")))
            .expect("state dir")
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name != "lock.json")
            .collect()
    }

    #[test]
    fn the_lock_is_written_aside_and_linked_into_place() {
        let command = acquire_command("hello", &info("a@example.com")).expect("command");
        assert!(!command.contains("set -C"), "{command}");
        assert!(command.contains("ln .hoist/hello/lock.json."), "{command}");
        assert!(command.contains(".tmp .hoist/hello/lock.json"), "{command}");
    }

    #[test]
    fn the_chained_release_removes_only_our_lock_and_never_fails_the_chain() {
        let home = tempfile::tempdir().expect("temp dir");
        let ours = info("a@example.com");
        let id = ours.id.clone().expect("id");
        let take = acquire_command("hello", &ours).expect("command");
        assert_eq!(run(home.path(), &take).status.code(), Some(0));
        let theirs = release_command("hello", "someone-else").expect("command");
        let output = run(home.path(), &format!("{theirs} && echo after"));
        assert_eq!(String::from_utf8_lossy(&output.stdout), "after\n");
        assert!(
            home.path().join(path("hello")).exists(),
            "another id leaves the lock"
        );
        let mine = release_command("hello", &id).expect("command");
        assert_eq!(run(home.path(), &mine).status.code(), Some(0));
        assert!(
            !home.path().join(path("hello")).exists(),
            "our id removes it"
        );
        assert_eq!(
            run(home.path(), &mine).status.code(),
            Some(0),
            "no lock: still fine"
        );
    }

    #[test]
    fn the_first_taker_gets_the_lock_and_the_second_sees_the_whole_holder() {
        let home = tempfile::tempdir().expect("temp dir");
        let first = info("a@example.com");
        let output = run(
            home.path(),
            &acquire_command("hello", &first).expect("command"),
        );
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        let written = std::fs::read(home.path().join(path("hello"))).expect("lock file");
        let held: LockInfo = serde_json::from_slice(&written).expect("valid JSON");
        assert_eq!((held.holder.as_str(), held.id), ("a@example.com", first.id));
        assert!(
            leftovers(home.path()).is_empty(),
            "{:?}",
            leftovers(home.path())
        );

        let output = run(
            home.path(),
            &acquire_command("hello", &info("b@example.com")).expect("command"),
        );
        assert_eq!(output.status.code(), Some(3), "{output:?}");
        let holder: LockInfo = serde_json::from_slice(&output.stdout).expect("holder JSON");
        assert_eq!(holder.holder, "a@example.com");
        assert_eq!(
            std::fs::read(home.path().join(path("hello"))).ok(),
            Some(written)
        );
        assert!(
            leftovers(home.path()).is_empty(),
            "{:?}",
            leftovers(home.path())
        );
    }

    #[test]
    fn of_deploys_started_at_once_exactly_one_gets_the_lock() {
        let home = tempfile::tempdir().expect("temp dir");
        let children: Vec<_> = (0..8)
            .map(|n| {
                let command =
                    acquire_command("hello", &info(&format!("{n}@example.com"))).expect("command");
                Command::new("sh")
                    .args(["-c", &command])
                    .current_dir(home.path())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn sh")
            })
            .collect();
        let codes: Vec<Option<i32>> = children
            .into_iter()
            .map(|child| child.wait_with_output().expect("wait").status.code())
            .collect();
        assert_eq!(
            codes.iter().filter(|code| **code == Some(0)).count(),
            1,
            "{codes:?}"
        );
        assert_eq!(
            codes.iter().filter(|code| **code == Some(3)).count(),
            7,
            "{codes:?}"
        );
        assert!(
            leftovers(home.path()).is_empty(),
            "{:?}",
            leftovers(home.path())
        );
    }

    #[test]
    fn a_reader_never_sees_a_partial_lock() {
        let home = tempfile::tempdir().expect("temp dir");
        let lock = home.path().join(path("hello"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (lock, stop) = (lock.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(bytes) = std::fs::read(&lock) {
                        if let Err(err) = serde_json::from_slice::<LockInfo>(&bytes) {
                            return Err(format!("{err}: {:?}", String::from_utf8_lossy(&bytes)));
                        }
                        seen += 1;
                    }
                }
                Ok(seen)
            })
        };
        for n in 0..100 {
            let command =
                acquire_command("hello", &info(&format!("{n}@example.com"))).expect("command");
            let output = run(home.path(), &command);
            assert_eq!(output.status.code(), Some(0), "{output:?}");
            std::fs::remove_file(&lock).expect("release");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let read = reader.join().expect("reader thread");
        assert!(read.is_ok(), "{read:?}");
    }
}
