//! The release record on each app host, `~/.hoist/<service>[-<destination>]/release.json`: the
//! version a release is putting live there, the version that was live before, and whether the
//! release is still `pending` (it began on this host and has not finished) or `stable` (it
//! finished there, or was undone). A deploy killed mid-fleet leaves `pending` records; the next
//! `hoist deploy` or `hoist rollback` reports them and converges, and rollback returns to the
//! recorded previous version. It is read with what runs at the start, and each write is one
//! round trip (the last goes with the audit line).

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::audit;
use crate::naming;
use crate::ssh::{Session, quote};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Begun here, not finished: what runs may be either version.
    Pending,
    /// Finished here: `version` is live.
    Stable,
}

/// One host's release record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: String,
    /// The version live before this release, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub phase: Phase,
    /// `deploy`, `redeploy`, `rollback`.
    pub command: String,
    pub performer: String,
    /// RFC 3339, when the record was written.
    pub at: String,
}

impl Record {
    /// The record of a release of `version` beginning on a host where `live` is live.
    pub fn begin(version: &str, live: Option<&str>, command: &str, performer: &str) -> Record {
        Record {
            version: version.to_string(),
            previous: live.filter(|live| *live != version).map(str::to_string),
            phase: Phase::Pending,
            command: command.to_string(),
            performer: performer.to_string(),
            at: now(),
        }
    }

    /// The release finished on this host.
    pub fn settle(&self) -> Record {
        Record {
            phase: Phase::Stable,
            at: now(),
            ..self.clone()
        }
    }

    /// The release was undone on this host (or never got going): `before` is what the host
    /// had, or without one, `live` is stable.
    pub fn undo(&self, before: Option<&Record>, live: Option<&str>) -> Option<Record> {
        match before {
            Some(before) if before.phase == Phase::Stable => Some(before.clone()),
            _ => live.map(|live| Record {
                version: live.to_string(),
                previous: None,
                phase: Phase::Stable,
                command: self.command.clone(),
                performer: self.performer.clone(),
                at: now(),
            }),
        }
    }

    /// For messages: `deploy of abc123 by alice@laptop at …`.
    pub fn describe(&self) -> String {
        format!(
            "{} of {} by {} at {}",
            self.command,
            super::short(&self.version),
            self.performer,
            self.at
        )
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The record's path on a server, relative to the SSH user's home.
pub fn path(scope: &str) -> String {
    format!("{}/release.json", naming::state_dir(scope))
}

/// Write `record` (or leave the file alone with `None`), append `audit_line` to the audit log
/// and run `then` (releasing the lock), in one round trip.
pub async fn write(
    session: &Session,
    scope: &str,
    record: Option<&Record>,
    audit_line: Option<&str>,
    then: Option<&str>,
) -> Result<()> {
    let mut parts = vec![format!("mkdir -p {}", quote(&naming::state_dir(scope))?)];
    if let Some(record) = record {
        parts.push(write_command(scope, record)?);
    }
    if let Some(line) = audit_line {
        parts.push(audit::append_command(scope, line)?);
    }
    if let Some(command) = then {
        parts.push(command.to_string());
    }
    let output = session.exec(&parts.join(" && ")).await?;
    if output.status != Some(0) {
        bail!(
            "Failed to write the release record and audit log under `~/{}` on `{}`: {}",
            naming::state_dir(scope),
            session.host(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The record on a server, if there is a readable one.
pub async fn read(session: &Session, scope: &str) -> Result<Option<Record>> {
    let output = session
        .exec(&format!("cat {} 2>/dev/null || true", quote(&path(scope))?))
        .await?;
    Ok(serde_json::from_slice(&output.stdout).ok())
}

/// A shell command replacing the record atomically (a temporary file renamed over it).
fn write_command(scope: &str, record: &Record) -> Result<String> {
    let json = serde_json::to_string(record)?;
    let path = path(scope);
    Ok(format!(
        "printf '%s\\n' {json} > {tmp} && mv -f {tmp} {path}",
        json = quote(&json)?,
        tmp = quote(&format!("{path}.tmp"))?,
        path = quote(&path)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_begins_pending_with_the_live_version_as_previous_and_settles_stable() {
        let record = Record::begin("v2", Some("v1"), "deploy", "alice");
        assert_eq!(record.phase, Phase::Pending);
        assert_eq!(record.previous.as_deref(), Some("v1"));
        let settled = record.settle();
        assert_eq!(settled.phase, Phase::Stable);
        assert_eq!(
            (settled.version.as_str(), settled.previous.as_deref()),
            ("v2", Some("v1"))
        );
        // A redeploy of the live version has no other previous version.
        assert_eq!(
            Record::begin("v1", Some("v1"), "redeploy", "a").previous,
            None
        );
        assert_eq!(Record::begin("v1", None, "deploy", "a").previous, None);
    }

    #[test]
    fn undoing_restores_the_stable_record_before_or_records_what_is_live() {
        let before = Record::begin("v1", Some("v0"), "deploy", "bob").settle();
        let record = Record::begin("v2", Some("v1"), "deploy", "alice");
        assert_eq!(record.undo(Some(&before), Some("v1")), Some(before.clone()));
        // Before was itself pending (an interrupted deploy): what is live now becomes stable.
        let interrupted = Record::begin("v9", Some("v1"), "deploy", "carol");
        let undone = record
            .undo(Some(&interrupted), Some("v1"))
            .expect("a record");
        assert_eq!(
            (undone.version.as_str(), undone.phase),
            ("v1", Phase::Stable)
        );
        // Nothing was live (a first deploy that failed): no record.
        assert_eq!(record.undo(None, None), None);
    }

    #[test]
    fn records_round_trip_through_json_and_the_phase_is_lowercase() {
        let record = Record::begin("v2", Some("v1"), "deploy", "alice");
        let json = serde_json::to_string(&record).expect("serializes");
        assert!(json.contains("\"phase\":\"pending\""), "{json}");
        let back: Record = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, record);
    }
}
