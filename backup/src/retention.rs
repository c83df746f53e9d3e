//! Which backups a retention policy keeps: restic's `forget` rules (the newest N, then the
//! newest of each of the last N days, ISO weeks and months that have a backup), plus one rule
//! of ours: the newest good backup is always kept, whatever the policy says. Pure: the agent
//! lists the backups, asks [`keep`], and deletes the rest.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

impl Retention {
    /// No rule set: every backup is kept.
    pub fn keeps_everything(&self) -> bool {
        *self == Retention::default()
    }

    /// "keep_last 3, keep_daily 7" for listings.
    pub fn describe(&self) -> String {
        let rules: Vec<String> = [
            ("keep_last", self.keep_last),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| format!("{name} {value}")))
        .collect();
        if rules.is_empty() {
            "keep everything".to_string()
        } else {
            rules.join(", ")
        }
    }
}

/// One complete backup, as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// False when a verify of it failed.
    pub good: bool,
}

/// The calendar bucket (year, and day, week or month) a time falls in.
type BucketOf = fn(&DateTime<Utc>) -> (i32, u32);

/// The ids of `backups` that `policy` keeps.
pub fn keep(policy: &Retention, backups: &[Candidate]) -> BTreeSet<String> {
    let mut newest_first: Vec<&Candidate> = backups.iter().collect();
    newest_first.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    if policy.keeps_everything() {
        return newest_first.iter().map(|b| b.id.clone()).collect();
    }
    let mut kept = BTreeSet::new();
    if let Some(n) = policy.keep_last {
        kept.extend(newest_first.iter().take(n as usize).map(|b| b.id.clone()));
    }
    let buckets: [(Option<u32>, BucketOf); 3] = [
        (policy.keep_daily, |t| (t.year(), t.ordinal())),
        (policy.keep_weekly, |t| {
            let week = t.iso_week();
            (week.year(), week.week())
        }),
        (policy.keep_monthly, |t| (t.year(), t.month())),
    ];
    for (count, bucket_of) in buckets {
        let Some(count) = count else { continue };
        let mut last_bucket = None;
        let mut taken = 0;
        for backup in &newest_first {
            if taken >= count {
                break;
            }
            let bucket = bucket_of(&backup.created_at);
            if last_bucket != Some(bucket) {
                kept.insert(backup.id.clone());
                last_bucket = Some(bucket);
                taken += 1;
            }
        }
    }
    if let Some(newest_good) = newest_first.iter().find(|b| b.good) {
        kept.insert(newest_good.id.clone());
    }
    kept
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(day: u32, hour: u32) -> Candidate {
        let created_at = Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap();
        Candidate {
            id: format!("{day:02}-{hour:02}"),
            created_at,
            good: true,
        }
    }

    fn ids(set: BTreeSet<String>) -> Vec<String> {
        set.into_iter().collect()
    }

    #[test]
    fn no_policy_keeps_everything() {
        let backups = [at(1, 0), at(2, 0), at(3, 0)];
        assert_eq!(keep(&Retention::default(), &backups).len(), 3);
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let backups = [at(1, 0), at(3, 0), at(2, 0), at(4, 0)];
        let policy = Retention {
            keep_last: Some(2),
            ..Default::default()
        };
        assert_eq!(ids(keep(&policy, &backups)), ["03-00", "04-00"]);
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_day() {
        // Four backups a day for five days; keep 3 days.
        let backups: Vec<Candidate> = (1..=5)
            .flat_map(|day| [0, 6, 12, 18].map(|hour| at(day, hour)))
            .collect();
        let policy = Retention {
            keep_daily: Some(3),
            ..Default::default()
        };
        assert_eq!(ids(keep(&policy, &backups)), ["03-18", "04-18", "05-18"]);
    }

    #[test]
    fn rules_are_a_union() {
        let backups: Vec<Candidate> = (1..=20).map(|day| at(day, 3)).collect();
        let policy = Retention {
            keep_last: Some(2),
            keep_weekly: Some(2),
            ..Default::default()
        };
        // 2026-03-20 is a Friday: the newest of this ISO week (16–22) and of the week before.
        assert_eq!(ids(keep(&policy, &backups)), ["15-03", "19-03", "20-03"]);
    }

    #[test]
    fn keep_monthly_spans_months() {
        let mut backups = vec![at(1, 0), at(31, 0)];
        backups.push(Candidate {
            id: "feb".to_string(),
            created_at: Utc.with_ymd_and_hms(2026, 2, 10, 0, 0, 0).unwrap(),
            good: true,
        });
        let policy = Retention {
            keep_monthly: Some(2),
            ..Default::default()
        };
        assert_eq!(ids(keep(&policy, &backups)), ["31-00", "feb"]);
    }

    #[test]
    fn the_newest_good_backup_survives_any_policy() {
        let mut newest = at(5, 0);
        newest.good = false;
        let backups = [at(3, 0), at(4, 0), newest];
        let policy = Retention {
            keep_last: Some(1),
            ..Default::default()
        };
        // keep_last keeps the bad newest one; the newest good one is kept too.
        assert_eq!(ids(keep(&policy, &backups)), ["04-00", "05-00"]);
    }
}
