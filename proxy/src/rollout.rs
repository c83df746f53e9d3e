//! The rollout (canary) split: which requests go to a service's rollout targets, by the value of
//! the `kamal-rollout` cookie. A value on the allowlist always goes; otherwise the value goes when
//! its FNV-1a 32-bit hash falls under the percentage, so a user or account stays on one side.

use serde::{Deserialize, Serialize};

/// The cookie whose value decides the split.
pub const ROLLOUT_COOKIE: &str = "kamal-rollout";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RolloutSplit {
    pub percentage: u8,
    pub allowlist: Vec<String>,
}

impl RolloutSplit {
    /// True when a request with this cookie value goes to the rollout targets.
    pub fn selects(&self, value: &str) -> bool {
        if self.allowlist.iter().any(|allowed| allowed == value) {
            return true;
        }
        let split_point = (f64::from(self.percentage) / 100.0 * f64::from(u32::MAX)) as u32;
        self.percentage > 0 && fnv1a_32(value.as_bytes()) <= split_point
    }
}

/// FNV-1a, 32 bits.
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_values() {
        assert_eq!(fnv1a_32(b""), 0x811c9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn allowlist_and_percentage() {
        let split = RolloutSplit {
            percentage: 0,
            allowlist: vec!["beta".into()],
        };
        assert!(split.selects("beta"));
        assert!(!split.selects("other"));
        let all = RolloutSplit {
            percentage: 100,
            allowlist: vec![],
        };
        assert!(all.selects("anyone"));
        let half = RolloutSplit {
            percentage: 50,
            allowlist: vec![],
        };
        let chosen = (0..1000)
            .filter(|n| half.selects(&format!("user-{n}")))
            .count();
        assert!((400..600).contains(&chosen), "{chosen}");
    }
}
