//! The order a release switches hosts in, worked out before anything is touched: the primary
//! role first (a barrier: no other role switches until it is live everywhere), then the other
//! roles one after the other (all at once with `boot.parallel_roles`). Each role's hosts go in
//! batches of `boot.limit` in their configured order, `boot.wait` apart; with `--canary N` the
//! first batch of the primary role is its first N hosts, watched for `--canary-wait` before
//! the rest go.

use crate::config::BootLimit;

/// One role on one host: the unit a release switches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unit {
    pub host: String,
    pub role: String,
}

/// Units switched at the same time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub units: Vec<Unit>,
    /// The canary batch, watched before the rest go.
    pub canary: bool,
}

/// How a release goes, from the configuration and the command line.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub limit: Option<BootLimit>,
    pub parallel_roles: bool,
    /// `--canary N`: the first N hosts of the primary role first.
    pub canary: Option<usize>,
}

/// The batches, in order. `roles` are the release's roles with their hosts (configured order),
/// `primary` the primary role's name.
pub fn batches(roles: &[(String, Vec<String>)], primary: &str, pace: Pace) -> Vec<Batch> {
    let split = |role: &str, hosts: &[String], canary: Option<usize>| -> Vec<Batch> {
        let mut batches = Vec::new();
        let mut rest = hosts;
        if let Some(count) = canary {
            let count = count.clamp(1, hosts.len());
            batches.push(batch(role, &hosts[..count], true));
            rest = &hosts[count..];
        }
        let size = batch_size(pace.limit, hosts.len());
        batches.extend(rest.chunks(size).map(|hosts| batch(role, hosts, false)));
        batches
    };
    let mut plan = Vec::new();
    let (primary_roles, others): (Vec<_>, Vec<_>) =
        roles.iter().partition(|(role, _)| role == primary);
    for (role, hosts) in primary_roles {
        plan.extend(split(role, hosts, pace.canary));
    }
    // A canary without the primary role in this release goes first on the first other role.
    let mut canary = if plan.is_empty() { pace.canary } else { None };
    let per_role: Vec<Vec<Batch>> = others
        .iter()
        .map(|(role, hosts)| split(role, hosts, canary.take()))
        .collect();
    if pace.parallel_roles {
        let rounds = per_role.iter().map(Vec::len).max().unwrap_or(0);
        for round in 0..rounds {
            let mut merged = Batch {
                units: Vec::new(),
                canary: false,
            };
            for batches in &per_role {
                if let Some(batch) = batches.get(round) {
                    merged.units.extend(batch.units.iter().cloned());
                    merged.canary |= batch.canary;
                }
            }
            plan.push(merged);
        }
    } else {
        plan.extend(per_role.into_iter().flatten());
    }
    plan
}

/// Hosts per batch out of `hosts`: every one without a limit, a percentage rounded up, never
/// fewer than one.
pub fn batch_size(limit: Option<BootLimit>, hosts: usize) -> usize {
    let size = match limit {
        None => hosts,
        Some(BootLimit::Count(count)) => count,
        Some(BootLimit::Percent(percent)) => (hosts * usize::from(percent)).div_ceil(100),
    };
    size.clamp(1, hosts.max(1))
}

fn batch(role: &str, hosts: &[String], canary: bool) -> Batch {
    Batch {
        units: hosts
            .iter()
            .map(|host| Unit {
                host: host.clone(),
                role: role.to_string(),
            })
            .collect(),
        canary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(spec: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        spec.iter()
            .map(|(role, hosts)| {
                (
                    role.to_string(),
                    hosts.iter().map(|h| h.to_string()).collect(),
                )
            })
            .collect()
    }

    /// Each batch as "role@host,role@host", canaries marked with a `*`.
    fn shape(plan: &[Batch]) -> Vec<String> {
        plan.iter()
            .map(|batch| {
                let units: Vec<String> = batch
                    .units
                    .iter()
                    .map(|u| format!("{}@{}", u.role, u.host))
                    .collect();
                format!("{}{}", if batch.canary { "*" } else { "" }, units.join(","))
            })
            .collect()
    }

    const PACE: Pace = Pace {
        limit: None,
        parallel_roles: false,
        canary: None,
    };

    #[test]
    fn without_a_limit_each_role_goes_at_once_primary_first() {
        let roles = roles(&[
            ("api", &["a1"]),
            ("jobs", &["j1", "j2"]),
            ("web", &["w1", "w2"]),
        ]);
        assert_eq!(
            shape(&batches(&roles, "web", PACE)),
            ["web@w1,web@w2", "api@a1", "jobs@j1,jobs@j2"]
        );
    }

    #[test]
    fn a_limit_splits_each_role_in_configured_host_order() {
        let roles = roles(&[("web", &["w3", "w1", "w2"]), ("jobs", &["j1", "j2"])]);
        let pace = Pace {
            limit: Some(BootLimit::Count(2)),
            ..PACE
        };
        assert_eq!(
            shape(&batches(&roles, "web", pace)),
            ["web@w3,web@w1", "web@w2", "jobs@j1,jobs@j2"]
        );
    }

    #[test]
    fn parallel_roles_merge_the_other_roles_round_by_round_after_the_primary() {
        let roles = roles(&[("api", &["a1", "a2"]), ("jobs", &["j1"]), ("web", &["w1"])]);
        let pace = Pace {
            limit: Some(BootLimit::Count(1)),
            parallel_roles: true,
            canary: None,
        };
        assert_eq!(
            shape(&batches(&roles, "web", pace)),
            ["web@w1", "api@a1,jobs@j1", "api@a2"]
        );
    }

    #[test]
    fn a_canary_is_the_first_hosts_of_the_primary_role_then_the_rest_by_limit() {
        let roles = roles(&[("web", &["w1", "w2", "w3", "w4"]), ("jobs", &["j1"])]);
        let pace = Pace {
            limit: Some(BootLimit::Count(2)),
            canary: Some(1),
            ..PACE
        };
        assert_eq!(
            shape(&batches(&roles, "web", pace)),
            ["*web@w1", "web@w2,web@w3", "web@w4", "jobs@j1"]
        );
        // More canaries than hosts: the whole role is the canary.
        let pace = Pace {
            canary: Some(9),
            ..PACE
        };
        let one = self::roles(&[("web", &["w1", "w2"])]);
        assert_eq!(shape(&batches(&one, "web", pace)), ["*web@w1,web@w2"]);
    }

    #[test]
    fn a_canary_without_the_primary_role_goes_to_the_first_other_role() {
        let roles = roles(&[("jobs", &["j1", "j2"])]);
        let pace = Pace {
            canary: Some(1),
            ..PACE
        };
        assert_eq!(
            shape(&batches(&roles, "web", pace)),
            ["*jobs@j1", "jobs@j2"]
        );
    }

    #[test]
    fn percentages_round_up_and_never_go_below_one_host() {
        assert_eq!(batch_size(Some(BootLimit::Percent(25)), 10), 3);
        assert_eq!(batch_size(Some(BootLimit::Percent(1)), 3), 1);
        assert_eq!(batch_size(Some(BootLimit::Percent(100)), 3), 3);
        assert_eq!(batch_size(Some(BootLimit::Count(5)), 3), 3);
        assert_eq!(batch_size(None, 4), 4);
        assert_eq!(batch_size(None, 0), 1);
    }
}
