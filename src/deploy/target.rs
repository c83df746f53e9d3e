//! Which version `hoist rollback` without a VERSION returns to, chosen on the primary host from
//! its release record and the containers it keeps: the version recorded as live before the
//! current one, if a container of it is still there; otherwise the most recently stopped version
//! that is not running now. A container that never served (left by a deploy that failed) has no
//! record naming it, so it is only chosen when nothing better is left.

use std::time::SystemTime;

use super::state::Record;

/// A container of the primary role, as the choice sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub version: String,
    pub running: bool,
    /// When it stopped, for stopped ones.
    pub finished: Option<SystemTime>,
}

/// The version to go back to, if any.
pub fn rollback_target(candidates: &[Candidate], record: Option<&Record>) -> Option<String> {
    let running: Vec<&str> = candidates
        .iter()
        .filter(|c| c.running)
        .map(|c| c.version.as_str())
        .collect();
    let kept = |version: &str| {
        !running.contains(&version) && candidates.iter().any(|c| c.version == version)
    };
    if let Some(record) = record {
        // Stable or pending (a release that did not finish), `previous` is what was live
        // before that release.
        if let Some(version) = record.previous.as_deref().filter(|version| kept(version)) {
            return Some(version.to_string());
        }
    }
    candidates
        .iter()
        .filter(|c| !c.running && !running.contains(&c.version.as_str()))
        .max_by_key(|c| c.finished.unwrap_or(std::time::UNIX_EPOCH))
        .map(|c| c.version.clone())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn candidate(version: &str, running: bool, finished_secs: u64) -> Candidate {
        Candidate {
            version: version.into(),
            running,
            finished: (!running).then(|| UNIX_EPOCH + Duration::from_secs(finished_secs)),
        }
    }

    #[test]
    fn the_recorded_previous_version_wins_over_a_later_stopped_container() {
        // v3 failed its health check after v2 went live: its container stopped last but never
        // served. The record says v1 was live before v2.
        let candidates = [
            candidate("v2", true, 0),
            candidate("v3", false, 300),
            candidate("v1", false, 200),
        ];
        let record = Record::begin("v2", Some("v1"), "deploy", "a").settle();
        assert_eq!(
            rollback_target(&candidates, Some(&record)).as_deref(),
            Some("v1")
        );
    }

    #[test]
    fn without_a_usable_record_the_most_recently_stopped_version_not_running_wins() {
        let candidates = [
            candidate("v3", true, 0),
            candidate("v1", false, 100),
            candidate("v2", false, 200),
            // A stopped copy of the running version is no way back.
            candidate("v3", false, 300),
        ];
        assert_eq!(rollback_target(&candidates, None).as_deref(), Some("v2"));
        // The recorded previous version was pruned: fall back to the containers.
        let record = Record::begin("v3", Some("v0"), "deploy", "a").settle();
        assert_eq!(
            rollback_target(&candidates, Some(&record)).as_deref(),
            Some("v2")
        );
    }

    #[test]
    fn an_interrupted_release_goes_back_to_what_was_live_before_it() {
        let candidates = [candidate("v2", true, 0), candidate("v1", false, 100)];
        let pending = Record::begin("v2", Some("v1"), "deploy", "a");
        assert_eq!(
            rollback_target(&candidates, Some(&pending)).as_deref(),
            Some("v1")
        );
        // Nothing else kept: no target.
        assert_eq!(rollback_target(&[candidate("v2", true, 0)], None), None);
    }
}
