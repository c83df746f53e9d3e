//! `hoist-backup agent`: the long-running side. Sleeps until the earliest scheduled backup is
//! due, takes it, records when the next one is, and goes back to sleep; a failure is logged
//! and recorded and the schedule goes on. Runs without the laptop: hoist only (re)creates the
//! container when the configuration changes.

use std::collections::HashMap;

use anyhow::Result;
use chrono::Utc;

use crate::engine::Agent;
use crate::schedule::Schedule;

pub async fn run(agent: Agent) -> Result<()> {
    let mut schedules = Vec::new();
    for accessory in &agent.spec.accessories {
        let Some(text) = &accessory.schedule else {
            tracing::info!(
                accessory = accessory.name,
                "no schedule: backups only when asked"
            );
            continue;
        };
        let schedule: Schedule = text.parse()?;
        tracing::info!(accessory = accessory.name, schedule = text, "scheduled");
        schedules.push((accessory.name.clone(), schedule));
    }
    if schedules.is_empty() {
        tracing::info!("nothing scheduled; waiting for commands");
        std::future::pending::<()>().await;
    }
    // When each accessory last had a backup attempted: from the state, so a restart of the
    // agent doesn't re-run a backup an interval hasn't come round for.
    let mut previous: HashMap<String, chrono::DateTime<Utc>> = HashMap::new();
    for (name, _) in &schedules {
        let status = agent.state.load(name);
        let last = [
            status.last_success.map(|s| s.at),
            status.last_failure.map(|f| f.at),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(last) = last {
            previous.insert(name.clone(), last);
        }
    }
    loop {
        let now = Utc::now();
        let mut due: Vec<(chrono::DateTime<Utc>, &str)> = schedules
            .iter()
            .map(|(name, schedule)| {
                (
                    schedule.next(previous.get(name).copied(), now),
                    name.as_str(),
                )
            })
            .collect();
        due.sort();
        for (at, name) in &due {
            agent
                .state
                .update(name, |status| status.next_run = Some(*at))?;
        }
        let (at, name) = due[0];
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        previous.insert(name.to_string(), Utc::now());
        match agent.backup(name).await {
            Ok(manifest) => tracing::info!(
                accessory = name,
                id = manifest.id,
                bytes = manifest.size(),
                "scheduled backup done"
            ),
            Err(err) => tracing::error!(accessory = name, "scheduled backup failed: {err:#}"),
        }
    }
}
