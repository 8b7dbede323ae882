//! Per-peer trust: the record that storage-challenge scoring will fill in.
//!
//! A node that sends a PUT to a peer may later GET it back; a verified answer is a success,
//! not-found, an invalid record or silence is a failure (PROTOCOL.md, "Storage challenges"). The
//! score is a decaying success ratio: each outcome first multiplies both tallies by a decay
//! factor, so old behaviour fades and a peer can neither bank good behaviour forever nor stay
//! condemned forever. It is kept locally and never gossiped.
//!
//! The challenges themselves are not issued yet; until they are, every peer reports
//! [`UNPROVEN_RELIABILITY`].

/// Reliability of a peer with no recorded outcome: a neutral prior, half way between a peer that
/// always fails (0) and one that always answers (1), so newcomers can be chosen and earn trust.
pub const UNPROVEN_RELIABILITY: f32 = 0.5;

/// Decayed tallies of storage-challenge outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Trust {
    /// Decayed count of successes.
    pub successes: f32,
    /// Decayed count of failures.
    pub failures: f32,
}

impl Trust {
    /// Records one outcome after decaying the history by `decay` (clamped to `0.0..=1.0`; a
    /// non-finite value counts as 0, i.e. only the newest outcome matters).
    pub fn record(&mut self, success: bool, decay: f32) {
        let decay = if decay.is_finite() {
            decay.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.successes *= decay;
        self.failures *= decay;
        if success {
            self.successes += 1.0;
        } else {
            self.failures += 1.0;
        }
    }

    /// True while no outcome has been recorded.
    pub fn is_unproven(&self) -> bool {
        self.successes + self.failures <= 0.0
    }

    /// The decaying success ratio in `0.0..=1.0`, or [`UNPROVEN_RELIABILITY`] with no history.
    pub fn reliability(&self) -> f32 {
        let total = self.successes + self.failures;
        if total > 0.0 {
            (self.successes / total).clamp(0.0, 1.0)
        } else {
            UNPROVEN_RELIABILITY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unproven_until_an_outcome_then_a_decaying_ratio() {
        let mut t = Trust::default();
        assert!(t.is_unproven());
        assert_eq!(t.reliability(), UNPROVEN_RELIABILITY);
        t.record(true, 0.5);
        assert!(!t.is_unproven());
        assert_eq!(t.reliability(), 1.0);
        t.record(false, 0.5);
        // successes 0.5, failures 1.0: recent failures weigh more.
        assert!((t.reliability() - 1.0 / 3.0).abs() < 1e-6);
        t.record(true, f32::NAN);
        assert_eq!(t.reliability(), 1.0);
    }
}
