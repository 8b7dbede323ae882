//! [`Prover`]: address proofs and the addresses proven lately, as an I/O-free core owned by the
//! [`PeerTable`](crate::peer::PeerTable).
//!
//! A proof is one v1 PING with a fresh random challenge, answered by a PONG that signs it (the
//! peer table's own PONG check, `PongAuthenticator`, not a second verifier); the proven key is
//! `pong.pubkey`. The address does not become a peer. Proofs are started for two purposes
//! ([`ProofPurpose`]):
//!
//! - **Router**: a NODES entry's ID is only its lister's claim; the router counts it once the key
//!   behind the ID answers at the listed address (`RouterEffects::prove`).
//! - **Stranger**: an address that PINGs us while our table has no room for it (in a network
//!   larger than our table, a v1 node that holds us in its table pings us every second and sends
//!   us its GETs). Until it is proven, the amplification budget withholds our replies to it
//!   beyond a small allowance; once proven, it is answered like a peer.
//!
//! This file owns the outstanding proofs (address → challenge, when sent, purpose), their expiry,
//! the rate limits, and the **proven addresses** (address → key, when): every address proven by
//! either purpose, kept [`PROVEN_TTL_MS`] and counted as proven by the table
//! ([`PeerTable::is_proven`](crate::peer::PeerTable::is_proven)) so replies to it are not
//! limited. The table draws the challenge, sends the PING and checks the signature.
//!
//! Bounds:
//! - Router proofs start at most `proofs_per_s` a second, stranger proofs at most
//!   `stranger_proofs_per_s`, each with a burst of [`PROOF_BURST_S`] seconds' worth (two token
//!   buckets, so strangers that ping us cannot use up the router's proofs). A liar can list any
//!   address, victims' included, and anyone can PING "from" a victim, so every proof is a PING to
//!   an address nobody vouched for: this caps what listings and PINGs can make us send, on top of
//!   the per-prefix amplification budget every PING to an unproven address already draws on. A
//!   PING is 9 bytes, the size of a PING that started a stranger proof and less than a NODES
//!   listing a contact, so neither makes us send more than it cost its sender.
//! - At most [`MAX_PROOFS_PENDING`] proofs are outstanding; one is forgotten `timeout_ms` after
//!   its PING (a late PONG then goes to the table, which counts it as unsolicited).
//! - At most [`MAX_PROVEN_ADDRS`] proven addresses are kept, each for [`PROVEN_TTL_MS`]; when
//!   full, the oldest proof is forgotten first (its address is proven again at its next PING).
//!
//! Refusals are counted in [`PeerStats`] (`proofs_*`), never logged.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use rand::Rng;

use crate::peer::PeerStats;
use crate::peer::budget::{BucketConfig, Pacer};
use crate::wire::ext::salt_features;
use crate::wire::{Features, PongRepr};

/// Outstanding proofs at most. The rate limits alone keep at most `burst + per_s · timeout_s`
/// of each purpose alive (128 + 64 at the defaults: 32/s and 16/s, 2 s bursts, 2 s timeout);
/// this backstop holds for any configured rate and costs at most 256 × ~40 bytes.
pub const MAX_PROOFS_PENDING: usize = 256;
/// Highest configurable `proofs_per_s`: 1024 PINGs of 9 bytes a second is ~9 KiB/s of payload,
/// still below what one lookup-heavy node exchanges in NODES.
pub const MAX_PROOFS_PER_S: u32 = 1024;
/// The rate limit's burst, in seconds of `proofs_per_s`: a node's first lookups (empty proof
/// cache) ask for about `k` proofs each at once.
pub const PROOF_BURST_S: u64 = 2;
/// Proven addresses kept at most (~100 bytes each with both indexes: ~400 KiB). A node in a
/// network larger than its table is pinged by every v1 node that holds it in its table; 4096
/// such strangers is four times a 1,000-node network. Past it the oldest proof is forgotten,
/// and that address proven again at its next PING.
pub const MAX_PROVEN_ADDRS: usize = 4096;
/// A proven address stays proven this long (5 minutes), then is proven again at its next PING
/// (one 9-byte PING per stranger per 5 minutes). Bounded so that an address that changes hands
/// (a NAT mapping reused) is not trusted with unlimited replies for long.
pub const PROVEN_TTL_MS: u64 = 300_000;

/// Why a proof was started: where its answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofPurpose {
    /// The router asked for it (`RouterEffects::prove`): the answer is a `PeerEvent::Proven`.
    Router,
    /// An address outside our table pinged us: the answer only makes it proven.
    Stranger,
}

/// What a PONG meant to the prover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofAnswer {
    /// Not the answer to an outstanding proof: the table's to check.
    NotOurs,
    /// A valid answer: the address holds this key (now among the proven addresses).
    Proven {
        /// The key the address answered with.
        pubkey: [u8; 32],
        /// Why the proof was started.
        purpose: ProofPurpose,
    },
    /// The answer to an outstanding proof, refused (counted); the proof is over.
    Refused,
}

/// One outstanding proof.
#[derive(Debug, Clone, Copy)]
struct Pending {
    challenge: [u8; 8],
    sent_ms: u64,
    purpose: ProofPurpose,
}

/// One proven address.
#[derive(Debug, Clone, Copy)]
struct ProvenAddr {
    pubkey: [u8; 32],
    /// What its PONG's salt advertised, within ours.
    features: Features,
    proven_ms: u64,
}

/// A rate limit of `per_s` proofs a second (capped at [`MAX_PROOFS_PER_S`]) with a burst of
/// [`PROOF_BURST_S`] seconds' worth, starting full: the byte budgets' token bucket, counting
/// proofs.
fn proof_limit(per_s: u32) -> Pacer {
    let per_s = u64::from(per_s.min(MAX_PROOFS_PER_S));
    let shape = BucketConfig {
        burst_bytes: per_s * PROOF_BURST_S,
        refill_bytes_per_s: per_s,
    };
    Pacer::new(shape, 0)
}

/// Outstanding address proofs and their rate limit. See the module docs.
#[derive(Debug)]
pub struct Prover {
    /// Our own public key: a PONG signed with it proves nothing.
    own: [u8; 32],
    /// The extensions we speak: a proven address's features are within them.
    features: Features,
    timeout_ms: u64,
    /// Address (normalised) → its proof. At most `MAX_PROOFS_PENDING`.
    pending: BTreeMap<SocketAddr, Pending>,
    /// Router proofs (`proofs_per_s`).
    router_limit: Pacer,
    /// Stranger proofs (`stranger_proofs_per_s`).
    stranger_limit: Pacer,
    /// Address (normalised) → what it proved and when. At most `MAX_PROVEN_ADDRS`, none older
    /// than `PROVEN_TTL_MS` once `expire` ran.
    proven: HashMap<SocketAddr, ProvenAddr>,
    /// `(proven_ms, address)` of every entry of `proven`, oldest first (time never runs
    /// backwards in the table, so pushing at the back keeps the order); an entry whose time no
    /// longer matches `proven` was replaced and is skipped.
    proven_order: VecDeque<(u64, SocketAddr)>,
    /// Bumped whenever the set of proven addresses changes (the node republishes its
    /// `ProvenSet` when it moves).
    proven_changes: u64,
}

impl Prover {
    /// A prover for the node whose public key is `own` and which speaks `features`, starting
    /// `proofs_per_s` router proofs and `stranger_proofs_per_s` stranger proofs a second at most
    /// (0: none of that purpose; each capped at [`MAX_PROOFS_PER_S`]), each answered within
    /// `timeout_ms`. Starts with full bursts.
    pub fn new(
        own: [u8; 32],
        features: Features,
        proofs_per_s: u32,
        stranger_proofs_per_s: u32,
        timeout_ms: u64,
    ) -> Prover {
        Prover {
            own,
            features,
            timeout_ms,
            pending: BTreeMap::new(),
            router_limit: proof_limit(proofs_per_s),
            stranger_limit: proof_limit(stranger_proofs_per_s),
            proven: HashMap::new(),
            proven_order: VecDeque::new(),
            proven_changes: 0,
        }
    }

    /// Outstanding proofs.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether a proof of `addr` is outstanding.
    pub fn is_pending(&self, addr: SocketAddr) -> bool {
        self.pending.contains_key(&addr)
    }

    /// The key `addr` (normalised) proved at most [`PROVEN_TTL_MS`] before `now_ms`, if any.
    pub fn proven_key(&self, now_ms: u64, addr: SocketAddr) -> Option<[u8; 32]> {
        self.proven
            .get(&addr)
            .filter(|p| now_ms.saturating_sub(p.proven_ms) < PROVEN_TTL_MS)
            .map(|p| p.pubkey)
    }

    /// Every proven address (unordered; some may have outlived [`PROVEN_TTL_MS`] since the
    /// last [`Prover::expire`]).
    pub fn proven_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.proven.keys().copied()
    }

    /// The proven addresses whose PONG did not advertise ROUTING (v1 nodes, such as the Go
    /// reference: they place records one hop), sorted.
    pub fn proven_one_hop_addrs(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = self
            .proven
            .iter()
            .filter(|(_, p)| !p.features.contains(Features::ROUTING))
            .map(|(&addr, _)| addr)
            .collect();
        out.sort_unstable();
        out
    }

    /// Proven addresses kept.
    pub fn proven_count(&self) -> usize {
        self.proven.len()
    }

    /// A counter that moves whenever the set of proven addresses changes.
    pub fn proven_changes(&self) -> u64 {
        self.proven_changes
    }

    /// Starts a proof of `addr` (normalised by the caller) for `purpose`: the challenge to PING
    /// it with, drawn from `rng`, or `None` if it is already outstanding or refused (rate, room:
    /// counted).
    pub fn start(
        &mut self,
        now_ms: u64,
        addr: SocketAddr,
        purpose: ProofPurpose,
        rng: &mut impl Rng,
        stats: &mut PeerStats,
    ) -> Option<[u8; 8]> {
        self.expire(now_ms, stats);
        if self.pending.contains_key(&addr) {
            stats.proofs_already_pending += 1;
            return None;
        }
        if self.pending.len() >= MAX_PROOFS_PENDING {
            stats.proofs_full += 1;
            return None;
        }
        let limit = match purpose {
            ProofPurpose::Router => &mut self.router_limit,
            ProofPurpose::Stranger => &mut self.stranger_limit,
        };
        if !limit.try_take(now_ms, 1) {
            match purpose {
                ProofPurpose::Router => stats.proofs_rate_limited += 1,
                ProofPurpose::Stranger => stats.proofs_of_strangers_rate_limited += 1,
            }
            return None;
        }
        let challenge: [u8; 8] = rng.r#gen();
        self.pending.insert(
            addr,
            Pending {
                challenge,
                sent_ms: now_ms,
                purpose,
            },
        );
        stats.proofs_sent += 1;
        if purpose == ProofPurpose::Stranger {
            stats.proofs_of_strangers += 1;
        }
        Some(challenge)
    }

    /// A PONG from `from` (normalised). If it answers `from`'s outstanding proof, the proof is
    /// over: `pinned` (the key the table pinned to `from`, if any) must match, the key must not be
    /// ours, and `verify` (the table's PONG signature check) must pass.
    pub fn on_pong(
        &mut self,
        now_ms: u64,
        from: SocketAddr,
        pong: &PongRepr,
        pinned: Option<[u8; 32]>,
        verify: impl FnOnce(&PongRepr) -> bool,
        stats: &mut PeerStats,
    ) -> ProofAnswer {
        self.expire(now_ms, stats);
        let purpose = match self.pending.get(&from) {
            Some(p) if p.challenge == pong.challenge => p.purpose,
            _ => return ProofAnswer::NotOurs,
        };
        self.pending.remove(&from);
        if pinned.is_some_and(|key| key != pong.pubkey) || pong.pubkey == self.own {
            stats.proofs_wrong_key += 1;
            return ProofAnswer::Refused;
        }
        if !verify(pong) {
            stats.proofs_bad_signature += 1;
            return ProofAnswer::Refused;
        }
        stats.proofs_succeeded += 1;
        let features = salt_features(&pong.salt).intersect(self.features);
        self.remember(now_ms, from, pong.pubkey, features);
        ProofAnswer::Proven {
            pubkey: pong.pubkey,
            purpose,
        }
    }

    /// Adds `addr` to the proven addresses, forgetting the oldest proof if they are full.
    fn remember(&mut self, now_ms: u64, addr: SocketAddr, pubkey: [u8; 32], features: Features) {
        let entry = ProvenAddr {
            pubkey,
            features,
            proven_ms: now_ms,
        };
        if self.proven.insert(addr, entry).is_none() {
            while self.proven.len() > MAX_PROVEN_ADDRS {
                self.forget_oldest();
            }
        }
        self.proven_order.push_back((now_ms, addr));
        // Replaced entries leave stale order entries behind; never more than the live ones.
        if self.proven_order.len() > 2 * MAX_PROVEN_ADDRS {
            let proven = &self.proven;
            self.proven_order
                .retain(|(ms, a)| proven.get(a).is_some_and(|p| p.proven_ms == *ms));
        }
        self.proven_changes += 1;
    }

    /// Forgets the oldest live proven address (skipping stale order entries).
    fn forget_oldest(&mut self) {
        while let Some((ms, addr)) = self.proven_order.pop_front() {
            if self.proven.get(&addr).is_some_and(|p| p.proven_ms == ms) {
                self.proven.remove(&addr);
                self.proven_changes += 1;
                return;
            }
        }
    }

    /// Forgets proofs older than `timeout_ms` (counted as expired) and proven addresses older
    /// than [`PROVEN_TTL_MS`].
    pub fn expire(&mut self, now_ms: u64, stats: &mut PeerStats) {
        let timeout_ms = self.timeout_ms;
        let before = self.pending.len();
        self.pending
            .retain(|_, p| now_ms.saturating_sub(p.sent_ms) < timeout_ms);
        stats.proofs_expired += (before - self.pending.len()) as u64;
        while let Some(&(ms, addr)) = self.proven_order.front() {
            if now_ms.saturating_sub(ms) < PROVEN_TTL_MS {
                break;
            }
            self.proven_order.pop_front();
            if self.proven.get(&addr).is_some_and(|p| p.proven_ms == ms) {
                self.proven.remove(&addr);
                self.proven_changes += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const OWN: [u8; 32] = [9; 32];

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 10_000 + i))
    }

    fn pong(challenge: [u8; 8], pubkey: [u8; 32]) -> PongRepr {
        PongRepr {
            addr_count: 0,
            addrs: [[0; crate::limits::ADDR_LEN]; crate::limits::MAX_PONG_ADDRS],
            challenge,
            salt: [0; 16],
            pubkey,
            sig: [0; 64],
        }
    }

    #[test]
    fn only_the_right_answer_proves_and_only_once() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut stats = PeerStats::default();
        let mut p = Prover::new(OWN, Features::ALL, 32, 0, 2_000);
        let ch = p
            .start(0, addr(1), ProofPurpose::Router, &mut rng, &mut stats)
            .unwrap();
        // Already outstanding: no second PING.
        assert_eq!(
            p.start(10, addr(1), ProofPurpose::Router, &mut rng, &mut stats),
            None
        );
        assert_eq!(stats.proofs_already_pending, 1);
        let key = [7u8; 32];
        let own = OWN;
        // Another challenge, or another address: the table's.
        let mut wrong = ch;
        wrong[0] ^= 1;
        let ans = p.on_pong(20, addr(1), &pong(wrong, key), None, |_| true, &mut stats);
        assert_eq!(ans, ProofAnswer::NotOurs);
        let ans = p.on_pong(20, addr(2), &pong(ch, key), None, |_| true, &mut stats);
        assert_eq!(ans, ProofAnswer::NotOurs);
        // The right challenge with a bad signature ends the proof, refused.
        let ans = p.on_pong(30, addr(1), &pong(ch, key), None, |_| false, &mut stats);
        assert_eq!(ans, ProofAnswer::Refused);
        assert_eq!(stats.proofs_bad_signature, 1);
        assert!(!p.is_pending(addr(1)));
        // A new proof, answered right.
        let ch = p
            .start(40, addr(1), ProofPurpose::Router, &mut rng, &mut stats)
            .unwrap();
        let ans = p.on_pong(50, addr(1), &pong(ch, key), None, |_| true, &mut stats);
        assert_eq!(
            ans,
            ProofAnswer::Proven {
                pubkey: key,
                purpose: ProofPurpose::Router
            }
        );
        assert_eq!(stats.proofs_succeeded, 1);
        // Replayed: no longer outstanding.
        let ans = p.on_pong(60, addr(1), &pong(ch, key), None, |_| true, &mut stats);
        assert_eq!(ans, ProofAnswer::NotOurs);
        // Our own key, or one other than the pinned key, is refused.
        let ch = p
            .start(70, addr(2), ProofPurpose::Router, &mut rng, &mut stats)
            .unwrap();
        let ans = p.on_pong(80, addr(2), &pong(ch, own), None, |_| true, &mut stats);
        assert_eq!(ans, ProofAnswer::Refused);
        let ch = p
            .start(90, addr(3), ProofPurpose::Router, &mut rng, &mut stats)
            .unwrap();
        let ans = p.on_pong(
            95,
            addr(3),
            &pong(ch, key),
            Some([1; 32]),
            |_| true,
            &mut stats,
        );
        assert_eq!(ans, ProofAnswer::Refused);
        assert_eq!(stats.proofs_wrong_key, 2);
        assert_eq!(stats.proofs_sent, 4);
    }

    #[test]
    fn proofs_expire_after_the_timeout() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut stats = PeerStats::default();
        let mut p = Prover::new(OWN, Features::ALL, 32, 0, 2_000);
        let ch = p
            .start(1_000, addr(1), ProofPurpose::Router, &mut rng, &mut stats)
            .unwrap();
        p.expire(2_999, &mut stats);
        assert_eq!(p.pending(), 1);
        // Answered too late: forgotten first, so the PONG is the table's.
        let ans = p.on_pong(
            3_000,
            addr(1),
            &pong(ch, [7; 32]),
            None,
            |_| true,
            &mut stats,
        );
        assert_eq!(ans, ProofAnswer::NotOurs);
        assert_eq!(stats.proofs_expired, 1);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_proofs_per_second() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut stats = PeerStats::default();
        let mut p = Prover::new(OWN, Features::ALL, 10, 0, 100_000);
        let mut started = 0;
        for i in 0..100 {
            started += usize::from(
                p.start(0, addr(i), ProofPurpose::Router, &mut rng, &mut stats)
                    .is_some(),
            );
        }
        assert_eq!(started as u64, 10 * PROOF_BURST_S);
        assert_eq!(stats.proofs_rate_limited, 100 - started as u64);
        // One second later, ten more.
        let mut more = 0;
        for i in 100..200 {
            more += usize::from(
                p.start(1_000, addr(i), ProofPurpose::Router, &mut rng, &mut stats)
                    .is_some(),
            );
        }
        assert_eq!(more, 10);
        // Zero: no proofs at all.
        let mut none = Prover::new(OWN, Features::ALL, 0, 0, 2_000);
        assert_eq!(
            none.start(5_000, addr(1), ProofPurpose::Router, &mut rng, &mut stats),
            None
        );
    }

    #[test]
    fn outstanding_proofs_are_bounded() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut stats = PeerStats::default();
        let mut p = Prover::new(OWN, Features::ALL, MAX_PROOFS_PER_S, 0, 1_000_000);
        let mut now = 0;
        let mut i = 0u16;
        while stats.proofs_full == 0 {
            if p.start(now, addr(i), ProofPurpose::Router, &mut rng, &mut stats)
                .is_none()
            {
                now += 1_000;
            } else {
                i += 1;
            }
            assert!(p.pending() <= MAX_PROOFS_PENDING);
        }
        assert_eq!(p.pending(), MAX_PROOFS_PENDING);
    }

    /// Proves `addr` with `key` at `now` (the answer checked as the table would).
    fn prove(p: &mut Prover, now: u64, a: SocketAddr, key: [u8; 32], stats: &mut PeerStats) {
        let mut rng = StdRng::seed_from_u64(now);
        let ch = p
            .start(now, a, ProofPurpose::Stranger, &mut rng, stats)
            .expect("a stranger proof");
        let ans = p.on_pong(now, a, &pong(ch, key), None, |_| true, stats);
        assert_eq!(
            ans,
            ProofAnswer::Proven {
                pubkey: key,
                purpose: ProofPurpose::Stranger
            }
        );
    }

    #[test]
    fn strangers_have_their_own_rate_limit() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut stats = PeerStats::default();
        let mut p = Prover::new(OWN, Features::ALL, 4, 2, 100_000);
        let mut strangers = 0;
        for i in 0..50 {
            let purpose = ProofPurpose::Stranger;
            strangers += usize::from(p.start(0, addr(i), purpose, &mut rng, &mut stats).is_some());
        }
        assert_eq!(strangers as u64, 2 * PROOF_BURST_S);
        assert_eq!(stats.proofs_of_strangers, strangers as u64);
        assert_eq!(
            stats.proofs_of_strangers_rate_limited,
            50 - strangers as u64
        );
        assert_eq!(stats.proofs_rate_limited, 0);
        // Strangers used up their bucket, not the router's.
        let mut routed = 0;
        for i in 50..100 {
            let purpose = ProofPurpose::Router;
            routed += usize::from(p.start(0, addr(i), purpose, &mut rng, &mut stats).is_some());
        }
        assert_eq!(routed as u64, 4 * PROOF_BURST_S);
        // Zero: no stranger proofs at all.
        let mut none = Prover::new(OWN, Features::ALL, 32, 0, 2_000);
        let purpose = ProofPurpose::Stranger;
        assert_eq!(none.start(9, addr(1), purpose, &mut rng, &mut stats), None);
    }

    #[test]
    fn proven_addresses_are_kept_for_their_ttl() {
        let mut stats = PeerStats::default();
        let mut p = Prover::new(OWN, Features::ALL, 32, 32, 2_000);
        let changes = p.proven_changes();
        assert_eq!(p.proven_key(0, addr(1)), None);
        prove(&mut p, 1_000, addr(1), [7; 32], &mut stats);
        assert!(p.proven_changes() > changes);
        assert_eq!(p.proven_key(1_000, addr(1)), Some([7; 32]));
        assert_eq!(
            p.proven_key(1_000 + PROVEN_TTL_MS - 1, addr(1)),
            Some([7; 32])
        );
        assert_eq!(p.proven_key(1_000 + PROVEN_TTL_MS, addr(1)), None);
        // A second proof of another address later; expiry forgets only the first.
        prove(&mut p, 5_000, addr(2), [8; 32], &mut stats);
        let changes = p.proven_changes();
        p.expire(1_000 + PROVEN_TTL_MS, &mut stats);
        assert!(p.proven_changes() > changes);
        assert_eq!(p.proven_addrs().collect::<Vec<_>>(), vec![addr(2)]);
        // Proven again after its expiry: kept from the new proof's time.
        prove(&mut p, 400_000, addr(1), [7; 32], &mut stats);
        p.expire(5_000 + PROVEN_TTL_MS, &mut stats);
        assert_eq!(p.proven_addrs().collect::<Vec<_>>(), vec![addr(1)]);
        assert_eq!(
            p.proven_key(400_000 + PROVEN_TTL_MS - 1, addr(1)),
            Some([7; 32])
        );
    }

    #[test]
    fn proven_addresses_are_bounded_oldest_forgotten_first() {
        let mut stats = PeerStats::default();
        let mut p = Prover::new(OWN, Features::ALL, 0, MAX_PROOFS_PER_S, 2_000);
        let extra = 10;
        let mut now = 0;
        for i in 0..MAX_PROVEN_ADDRS + extra {
            // One proof a millisecond stays within the stranger bucket's refill.
            now += 1;
            let a = SocketAddr::from(([127, 0, (i >> 8) as u8, i as u8], 4_000));
            prove(&mut p, now, a, [1; 32], &mut stats);
            assert!(p.proven_count() <= MAX_PROVEN_ADDRS);
        }
        assert_eq!(p.proven_count(), MAX_PROVEN_ADDRS);
        for i in 0..MAX_PROVEN_ADDRS + extra {
            let a = SocketAddr::from(([127, 0, (i >> 8) as u8, i as u8], 4_000));
            assert_eq!(p.proven_key(now, a).is_some(), i >= extra, "address {i}");
        }
    }
}
