//! Adversaries: which slots misbehave and how, and the Sybil key grinder.
//!
//! The misbehaviour itself lives in `node.rs` ([`Behaviour`]): every adversary runs the honest
//! peer table (so it authenticates, stays active and is chosen as a target) and misbehaves only
//! in what it stores, answers and sends. What each attack tests:
//!
//! | adversary | does | the protocol's defence |
//! |---|---|---|
//! | dropper | accepts PUTs, keeps nothing, answers "not found" | storage challenges → trust-weighted targets, replica repair |
//! | forger | answers GETs with records under the asked key, bad signature | GET_ACK verification; challenges |
//! | stale | keeps the first version, never the update | newest valid answer wins; challenges (stale verdict) |
//! | poisoner | PONGs list addresses where nobody lives; unsolicited PONGs | candidates need to answer our PING; bounded candidates |
//! | low-work | PUTs records with too little or false work | work checked before the signature, on every node |
//! | Sybil | keys ground next to a victim owner's ID, then drops or forges | trust: challenges expose them, targets move on |

use rand::Rng;
use rand::rngs::StdRng;

use crate::keys::Keypair;
use crate::sim::node::Behaviour;
use crate::sim::options::{AdversaryOptions, SybilBehaviour};

/// What the adversary in one slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// Its behaviour.
    pub behaviour: Behaviour,
    /// Its key is ground next to the victim's.
    pub sybil: bool,
}

/// The adversaries of a run, in slot order after the honest nodes: droppers, forgers, stale,
/// poisoners, low-work, Sybils.
pub fn roles(options: &AdversaryOptions) -> Vec<Role> {
    let plain = |behaviour, n| {
        std::iter::repeat_n(
            Role {
                behaviour,
                sybil: false,
            },
            n,
        )
    };
    let sybil = Role {
        behaviour: match options.sybil_behaviour {
            SybilBehaviour::Drop => Behaviour::Dropper,
            SybilBehaviour::Forge => Behaviour::Forger,
        },
        sybil: true,
    };
    plain(Behaviour::Dropper, options.droppers)
        .chain(plain(Behaviour::Forger, options.forgers))
        .chain(plain(Behaviour::Stale, options.stale))
        .chain(plain(Behaviour::Poisoner, options.poisoners))
        .chain(plain(Behaviour::LowWork, options.low_work))
        .chain(std::iter::repeat_n(sybil, options.sybils))
        .collect()
}

/// Leading ID bits a Sybil shares with its victim when the options leave it to us: about
/// `log2(nodes)` bits separate the closest honest node from the victim, four more make the
/// Sybils closer than every honest node with probability ~15/16 each.
pub fn default_prefix_bits(nodes: usize) -> u32 {
    let log2 = usize::BITS - nodes.max(2).leading_zeros();
    (log2 + 4).min(24)
}

/// Most key generations one Sybil may try: `2^24`, the `sybil_prefix_bits` limit (about a
/// minute of key generation); beyond it the grinder gives up with the closest key found.
const MAX_GRIND_ATTEMPTS: u64 = 1 << 24;

/// A key whose ID shares its top `bits` bits with `victim_id` (and is not the victim), ground
/// by trying seeds from `rng`: on average `2^bits` key generations.
pub fn grind_keypair(victim_id: u64, bits: u32, rng: &mut StdRng) -> Keypair {
    let shift = 64 - bits.min(63);
    let mut best: Option<(u64, Keypair)> = None;
    for _ in 0..MAX_GRIND_ATTEMPTS {
        let pair = Keypair::from_seed(&rng.r#gen());
        let id = pair.id();
        if id == victim_id {
            continue;
        }
        let distance = id ^ victim_id;
        if bits == 0 || distance >> shift == 0 {
            return pair;
        }
        if best.as_ref().is_none_or(|(d, _)| distance < *d) {
            best = Some((distance, pair));
        }
    }
    match best {
        Some((_, pair)) => pair,
        None => Keypair::from_seed(&rng.r#gen()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ground_keys_share_the_prefix() {
        let mut rng = StdRng::seed_from_u64(5);
        let victim = Keypair::from_seed(&[9; 32]).id();
        for _ in 0..3 {
            let pair = grind_keypair(victim, 8, &mut rng);
            assert_eq!((pair.id() ^ victim) >> 56, 0);
        }
        assert_eq!(default_prefix_bits(200), 12);
        assert_eq!(default_prefix_bits(1000), 14);
    }

    #[test]
    fn roles_follow_the_options() {
        let r = roles(&AdversaryOptions {
            droppers: 2,
            sybils: 1,
            ..AdversaryOptions::default()
        });
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].behaviour, Behaviour::Dropper);
        assert!(r[2].sybil);
    }
}
