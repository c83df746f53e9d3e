//! When scheduled backups run: `@daily`/`@hourly`/`@weekly`/`@monthly`, an interval (`6h`,
//! `30m`, `10s`: humantime syntax, measured from the previous backup), or a five-field cron
//! expression (`0 3 * * *`, in UTC). hoist parses the schedule too, so a typo is a config error
//! on the laptop rather than a crash on the server.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;

#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<Cron>),
}

#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a schedule: {reason}")]
pub struct ScheduleError {
    pub text: String,
    pub reason: String,
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, ScheduleError> {
        let trimmed = text.trim();
        let error = |reason: String| ScheduleError {
            text: text.to_string(),
            reason,
        };
        if trimmed.starts_with(|c: char| c.is_ascii_digit()) && !trimmed.contains(' ') {
            let every = humantime::parse_duration(trimmed).map_err(|err| error(err.to_string()))?;
            if every < Duration::from_secs(1) {
                return Err(error("the interval must be at least 1s".to_string()));
            }
            return Ok(Schedule::Every(every));
        }
        let fields = trimmed.split_whitespace().count();
        if !trimmed.starts_with('@') && fields != 5 {
            return Err(error(format!(
                "a cron expression has 5 fields (minute hour day month weekday), this one has {fields}"
            )));
        }
        Cron::from_str(trimmed)
            .map(|cron| Schedule::Cron(Box::new(cron)))
            .map_err(|err| error(err.to_string()))
    }
}

impl Schedule {
    /// The first run after `now`, given when the previous backup ran (if ever).
    pub fn next(&self, previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(every) => {
                let every = chrono::Duration::from_std(*every).unwrap_or(chrono::Duration::MAX);
                match previous {
                    Some(previous) => previous.checked_add_signed(every).unwrap_or(now).max(now),
                    None => now,
                }
            }
            Schedule::Cron(cron) => cron
                .find_next_occurrence(&now, false)
                .unwrap_or_else(|_| now + chrono::Duration::days(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, s).unwrap()
    }

    #[test]
    fn intervals_count_from_the_previous_backup() {
        let schedule: Schedule = "6h".parse().unwrap();
        assert_eq!(schedule.next(None, t(10, 0, 0)), t(10, 0, 0));
        assert_eq!(schedule.next(Some(t(5, 0, 0)), t(10, 0, 0)), t(11, 0, 0));
        // Overdue: now.
        assert_eq!(schedule.next(Some(t(1, 0, 0)), t(10, 0, 0)), t(10, 0, 0));
    }

    #[test]
    fn cron_and_nicknames() {
        let daily: Schedule = "@daily".parse().unwrap();
        assert_eq!(
            daily.next(None, t(10, 0, 0)),
            Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
        );
        let at_three: Schedule = "0 3 * * *".parse().unwrap();
        assert_eq!(at_three.next(Some(t(1, 0, 0)), t(2, 59, 0)), t(3, 0, 0));
    }

    #[test]
    fn nonsense_is_refused_with_the_reason() {
        let err = "every day".parse::<Schedule>().unwrap_err();
        assert!(err.to_string().contains("5 fields"), "{err}");
        let err = "6 hours please".parse::<Schedule>().unwrap_err();
        assert!(
            err.to_string().contains("5 fields") || err.to_string().contains("not a schedule"),
            "{err}"
        );
        assert!("0s".parse::<Schedule>().is_err());
        assert!("61 * * * *".parse::<Schedule>().is_err());
    }
}
