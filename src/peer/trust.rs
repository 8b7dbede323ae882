//! Per-peer trust: storage-challenge outcomes, the reliability score they add up to, and how the
//! score steers the choice of targets.
//!
//! A node that sends a record to a peer may later GET it back (`shard::challenge`); a verified
//! answer is a success, not-found, an invalid record or silence is a failure (PROTOCOL.md,
//! "Storage challenges"). The score is a decaying success ratio: each outcome first multiplies
//! both tallies by a decay factor, so old behaviour fades and a peer can neither bank good
//! behaviour forever nor stay condemned forever. It is kept locally and never gossiped.
//!
//! [`choose_targets`] is the one place where scores become decisions: among the `2 × FANOUT`
//! XOR-closest peers it picks FANOUT by weighted sampling without replacement (weight =
//! reliability² halved per rank of distance), except that each pick, with a small probability,
//! goes to the closest *unscored* peer instead, so newcomers get records and can earn a score.
//! Unscored peers fill in when no trusted peer is left; unreliable peers never fill in (a record
//! is better sent to fewer peers than to one known to drop it) and are drawn only at their tiny
//! weight next to trusted ones. Deterministic for a given RNG state (the simulator replays it).

use std::net::SocketAddr;

use rand::Rng;

/// Reliability of a peer with no recorded outcome: a neutral prior, half way between a peer that
/// always fails (0) and one that always answers (1), so newcomers can be chosen and earn trust.
pub const UNPROVEN_RELIABILITY: f32 = 0.5;

/// Smallest reliability a scored peer weighs with in [`choose_targets`]. Not zero, so a peer
/// condemned by a bad patch is still drawn now and then next to trusted peers (about once in
/// 10⁴ picks next to an honest one: `0.01²`) and its later answers can lift it again.
pub const MIN_SELECTION_RELIABILITY: f32 = 0.01;

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
        self.samples() <= 0.0
    }

    /// The decayed number of outcomes behind the score (at most `1 / (1 − decay)`).
    pub fn samples(&self) -> f32 {
        self.successes + self.failures
    }

    /// The decaying success ratio in `0.0..=1.0`, or [`UNPROVEN_RELIABILITY`] with no history.
    pub fn reliability(&self) -> f32 {
        let total = self.samples();
        if total > 0.0 {
            (self.successes / total).clamp(0.0, 1.0)
        } else {
            UNPROVEN_RELIABILITY
        }
    }
}

/// How scores are turned into decisions (copied from the node's `Config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrustPolicy {
    /// Decay applied to the tallies before each new outcome (`Trust::record`).
    pub decay: f32,
    /// Decayed outcomes a peer needs before its score is used ("scored"); below it the peer is
    /// a newcomer, chosen by exploration and never judged unreliable.
    pub min_samples: f32,
    /// A scored peer below this reliability is unreliable: its PUTs are stored but not
    /// re-propagated, and it is no replica-repair target.
    pub unreliable_below: f32,
    /// Probability that one pick goes to the closest unscored candidate instead of a weighted
    /// choice among the scored ones.
    pub explore_probability: f64,
}

impl Default for TrustPolicy {
    /// The node's defaults (see `Config` for the reasoning): decay 0.9 (a memory of about ten
    /// outcomes), scored after 2.5 decayed outcomes (three challenges), unreliable below 0.5,
    /// exploration 0.1.
    fn default() -> Self {
        TrustPolicy {
            decay: 0.9,
            min_samples: 2.5,
            unreliable_below: 0.5,
            explore_probability: 0.1,
        }
    }
}

impl TrustPolicy {
    /// Whether `trust` has enough outcomes for its score to be used.
    pub fn is_scored(&self, trust: &Trust) -> bool {
        trust.samples() >= self.min_samples
    }

    /// Whether `trust` is scored and below the reliability threshold.
    pub fn is_unreliable(&self, trust: &Trust) -> bool {
        self.is_scored(trust) && trust.reliability() < self.unreliable_below
    }
}

/// A candidate target with its trust record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPeer {
    /// The peer.
    pub addr: SocketAddr,
    /// Its storage-challenge record.
    pub trust: Trust,
}

/// What [`choose_targets`] did, for counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Choice {
    /// Picks that went to an unscored peer while trusted ones were left (exploration).
    pub explored: usize,
    /// Picks that went to an unscored peer because no trusted one was left.
    pub unscored_fill: usize,
    /// Picks left empty because only unreliable candidates were left.
    pub unreliable_skipped: usize,
}

/// Largest candidate list [`choose_targets`] considers (extra candidates are ignored): bounds its
/// stack scratch. `2 × FANOUT` is 6 with the reference's FANOUT of 3.
pub const MAX_SELECTION_CANDIDATES: usize = 64;

/// Picks up to `n` targets from `candidates` (closest first) into `out`, without replacement.
/// Each pick, while a *trusted* candidate (scored and not unreliable) is left, is drawn among the
/// remaining scored candidates with weight `max(reliability, MIN_SELECTION_RELIABILITY)² ·
/// 2^-rank` (rank = position in `candidates`) — except that with probability
/// `explore_probability` it is the closest remaining unscored candidate instead. With no trusted
/// candidate left it is the closest unscored one; with only unreliable ones left, nothing. With
/// every peer unscored this is plain XOR-closest order, the reference's behaviour.
pub fn choose_targets<R: Rng + ?Sized>(
    candidates: &[ScoredPeer],
    n: usize,
    policy: &TrustPolicy,
    rng: &mut R,
    out: &mut Vec<SocketAddr>,
) -> Choice {
    let candidates = &candidates[..candidates.len().min(MAX_SELECTION_CANDIDATES)];
    let mut taken = [false; MAX_SELECTION_CANDIDATES];
    let mut choice = Choice::default();
    let explore = policy.explore_probability.clamp(0.0, 1.0);
    for _ in 0..n.min(candidates.len()) {
        let remaining = |scored: bool| {
            candidates
                .iter()
                .enumerate()
                .filter(move |&(i, p)| !taken[i] && policy.is_scored(&p.trust) == scored)
        };
        let first_unscored = remaining(false).map(|(i, _)| i).next();
        let any_trusted = remaining(true).any(|(_, p)| !policy.is_unreliable(&p.trust));
        let pick = match first_unscored {
            Some(i) if !any_trusted => {
                choice.unscored_fill += 1;
                i
            }
            Some(i) if explore > 0.0 && rng.gen_bool(explore) => {
                choice.explored += 1;
                i
            }
            None if !any_trusted => {
                choice.unreliable_skipped += 1;
                break;
            }
            _ => {
                let weight = |i: usize, p: &ScoredPeer| {
                    let r = f64::from(p.trust.reliability().max(MIN_SELECTION_RELIABILITY));
                    r * r * 0.5f64.powi(i as i32)
                };
                let total: f64 = remaining(true).map(|(i, p)| weight(i, p)).sum();
                let mut x = rng.gen_range(0.0..1.0) * total;
                let mut pick = None;
                for (i, p) in remaining(true) {
                    pick = Some(i);
                    x -= weight(i, p);
                    if x < 0.0 {
                        break;
                    }
                }
                match pick {
                    Some(i) => i,
                    None => break, // unreachable: a trusted candidate is left
                }
            }
        };
        taken[pick] = true;
        out.push(candidates[pick].addr);
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

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

    #[test]
    fn policy_scores_after_min_samples_and_judges_only_scored_peers() {
        let p = TrustPolicy::default();
        let mut t = Trust::default();
        for _ in 0..2 {
            t.record(false, p.decay);
            assert!(!p.is_scored(&t) && !p.is_unreliable(&t));
        }
        t.record(false, p.decay);
        assert!(p.is_scored(&t) && p.is_unreliable(&t));
        // A decayed past: good answers lift it again.
        for _ in 0..10 {
            t.record(true, p.decay);
        }
        assert!(!p.is_unreliable(&t), "{}", t.reliability());
    }

    fn peer(i: u8, successes: f32, failures: f32) -> ScoredPeer {
        ScoredPeer {
            addr: SocketAddr::from(([10, 0, 0, i], 1)),
            trust: Trust {
                successes,
                failures,
            },
        }
    }

    #[test]
    fn unscored_peers_are_taken_closest_first() {
        let cands: Vec<ScoredPeer> = (1..=6).map(|i| peer(i, 0.0, 0.0)).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let mut out = Vec::new();
        let c = choose_targets(&cands, 3, &TrustPolicy::default(), &mut rng, &mut out);
        assert_eq!(out, vec![cands[0].addr, cands[1].addr, cands[2].addr]);
        assert_eq!(c.unscored_fill, 3);
        // Fewer candidates than asked: all of them, once each.
        out.clear();
        choose_targets(&cands[..2], 3, &TrustPolicy::default(), &mut rng, &mut out);
        assert_eq!(out.len(), 2);
        out.clear();
        choose_targets(&[], 3, &TrustPolicy::default(), &mut rng, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn unreliable_closest_peer_is_avoided_and_newcomers_are_explored() {
        // Rank 0 fails every challenge, ranks 1..=4 answer, rank 5 is new.
        let mut cands = vec![peer(1, 0.0, 10.0)];
        cands.extend((2..=5).map(|i| peer(i, 10.0, 0.0)));
        cands.push(peer(6, 0.0, 0.0));
        let policy = TrustPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        let (mut bad, mut new, mut rank1) = (0, 0, 0);
        let rounds = 10_000;
        for _ in 0..rounds {
            let mut out = Vec::new();
            choose_targets(&cands, 3, &policy, &mut rng, &mut out);
            assert_eq!(out.len(), 3);
            let mut dedup = out.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), 3, "without replacement");
            bad += out.contains(&cands[0].addr) as u32;
            new += out.contains(&cands[5].addr) as u32;
            rank1 += out.contains(&cands[1].addr) as u32;
        }
        assert!(bad < rounds / 100, "unreliable chosen {bad} times");
        // Three picks at 0.1 each: about 27 % of rounds include the newcomer.
        assert!((2_000..3_500).contains(&new), "newcomer chosen {new} times");
        assert!(
            rank1 > rounds * 8 / 10,
            "closest reliable chosen {rank1} times"
        );
    }

    #[test]
    fn unreliable_peers_never_fill_in() {
        let policy = TrustPolicy::default();
        let mut rng = StdRng::seed_from_u64(9);
        // Closest is unreliable, then two trusted: two targets, not three.
        let cands = [peer(1, 0.0, 10.0), peer(2, 10.0, 0.0), peer(3, 10.0, 0.0)];
        let mut out = Vec::new();
        let c = choose_targets(&cands, 3, &policy, &mut rng, &mut out);
        assert_eq!(out.len(), 2);
        assert!(!out.contains(&cands[0].addr));
        assert_eq!(c.unreliable_skipped, 1);
        // An unreliable peer and newcomers: the newcomers, closest first.
        let cands = [
            peer(1, 0.0, 10.0),
            peer(2, 0.0, 0.0),
            peer(3, 0.0, 0.0),
            peer(4, 0.0, 0.0),
        ];
        out.clear();
        let c = choose_targets(&cands, 3, &policy, &mut rng, &mut out);
        assert_eq!(out, vec![cands[1].addr, cands[2].addr, cands[3].addr]);
        assert_eq!(c.unscored_fill, 3);
    }

    #[test]
    fn same_seed_same_choice() {
        let cands: Vec<ScoredPeer> = (1..=6).map(|i| peer(i, 5.0, i as f32)).collect();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut out = Vec::new();
            for _ in 0..50 {
                choose_targets(&cands, 3, &TrustPolicy::default(), &mut rng, &mut out);
            }
            out
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
