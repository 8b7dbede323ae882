//! [`Prover`]: the address proofs the routing extension asks for (`RouterEffects::prove`), as an
//! I/O-free core owned by the [`PeerTable`](crate::peer::PeerTable).
//!
//! A NODES entry's ID is only its lister's claim; the router counts it once the key behind the ID
//! answers at the listed address. A proof is one v1 PING with a fresh random challenge, answered
//! by a PONG that signs it (the peer table's own PONG check, `PongAuthenticator`, not a second
//! verifier); the proven ID is `id_from_pubkey(pong.pubkey)`. The address does not become a peer.
//!
//! This file owns the outstanding proofs (address → challenge, when sent), their expiry and the
//! rate limit; the table draws the challenge, sends the PING and checks the signature.
//!
//! Bounds:
//! - Proofs start at most `proofs_per_s` a second, with a burst of [`PROOF_BURST_S`] seconds'
//!   worth (a token bucket). A liar can list any address, victims' included, so every proof is a
//!   PING to an address nobody vouched for: this caps what listings can make us send, on top of
//!   the per-prefix amplification budget every PING to an unproven address already draws on. A
//!   PING is 9 bytes and a NODES listing a contact is larger than that, so listings never make us
//!   send more than they cost their sender.
//! - At most [`MAX_PROOFS_PENDING`] proofs are outstanding; one is forgotten `timeout_ms` after
//!   its PING (a late PONG then goes to the table, which counts it as unsolicited).
//!
//! Refusals are counted in [`PeerStats`] (`proofs_*`), never logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rand::Rng;

use crate::peer::PeerStats;
use crate::wire::PongRepr;

/// Outstanding proofs at most. The rate limit alone keeps at most `burst + proofs_per_s ·
/// timeout_s` alive (128 at the defaults: 32/s, 2 s burst, 2 s timeout); this backstop holds for
/// any configured rate and costs at most 256 × ~40 bytes.
pub const MAX_PROOFS_PENDING: usize = 256;
/// Highest configurable `proofs_per_s`: 1024 PINGs of 9 bytes a second is ~9 KiB/s of payload,
/// still below what one lookup-heavy node exchanges in NODES.
pub const MAX_PROOFS_PER_S: u32 = 1024;
/// The rate limit's burst, in seconds of `proofs_per_s`: a node's first lookups (empty proof
/// cache) ask for about `k` proofs each at once.
pub const PROOF_BURST_S: u64 = 2;

/// What a PONG meant to the prover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofAnswer {
    /// Not the answer to an outstanding proof: the table's to check.
    NotOurs,
    /// A valid answer: the address holds this key.
    Proven([u8; 32]),
    /// The answer to an outstanding proof, refused (counted); the proof is over.
    Refused,
}

/// One outstanding proof.
#[derive(Debug, Clone, Copy)]
struct Pending {
    challenge: [u8; 8],
    sent_ms: u64,
}

/// Outstanding address proofs and their rate limit. See the module docs.
#[derive(Debug)]
pub struct Prover {
    /// Our own public key: a PONG signed with it proves nothing.
    own: [u8; 32],
    proofs_per_s: u32,
    timeout_ms: u64,
    /// Address (normalised) → its proof. At most `MAX_PROOFS_PENDING`.
    pending: BTreeMap<SocketAddr, Pending>,
    /// Token bucket in thousandths of a proof (refill: `proofs_per_s` per millisecond).
    tokens_milli: u64,
    refilled_ms: u64,
}

impl Prover {
    /// A prover for the node whose public key is `own`, starting `proofs_per_s` proofs a second
    /// at most (0: none), each answered within `timeout_ms`. Starts with a full burst.
    pub fn new(own: [u8; 32], proofs_per_s: u32, timeout_ms: u64) -> Prover {
        let proofs_per_s = proofs_per_s.min(MAX_PROOFS_PER_S);
        Prover {
            own,
            proofs_per_s,
            timeout_ms,
            pending: BTreeMap::new(),
            tokens_milli: Self::capacity_milli(proofs_per_s),
            refilled_ms: 0,
        }
    }

    fn capacity_milli(proofs_per_s: u32) -> u64 {
        u64::from(proofs_per_s) * PROOF_BURST_S * 1000
    }

    /// Outstanding proofs.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether a proof of `addr` is outstanding.
    pub fn is_pending(&self, addr: SocketAddr) -> bool {
        self.pending.contains_key(&addr)
    }

    /// Starts a proof of `addr` (normalised by the caller): the challenge to PING it with, drawn
    /// from `rng`, or `None` if it is already outstanding or refused (rate, room: counted).
    pub fn start(
        &mut self,
        now_ms: u64,
        addr: SocketAddr,
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
        self.refill(now_ms);
        if self.tokens_milli < 1000 {
            stats.proofs_rate_limited += 1;
            return None;
        }
        self.tokens_milli -= 1000;
        let challenge: [u8; 8] = rng.r#gen();
        self.pending.insert(
            addr,
            Pending {
                challenge,
                sent_ms: now_ms,
            },
        );
        stats.proofs_sent += 1;
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
        match self.pending.get(&from) {
            Some(p) if p.challenge == pong.challenge => {}
            _ => return ProofAnswer::NotOurs,
        }
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
        ProofAnswer::Proven(pong.pubkey)
    }

    /// Forgets proofs older than `timeout_ms` (counted as expired).
    pub fn expire(&mut self, now_ms: u64, stats: &mut PeerStats) {
        let timeout_ms = self.timeout_ms;
        let before = self.pending.len();
        self.pending
            .retain(|_, p| now_ms.saturating_sub(p.sent_ms) < timeout_ms);
        stats.proofs_expired += (before - self.pending.len()) as u64;
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed_ms = now_ms.saturating_sub(self.refilled_ms);
        self.refilled_ms = self.refilled_ms.max(now_ms);
        self.tokens_milli = self
            .tokens_milli
            .saturating_add(elapsed_ms.saturating_mul(u64::from(self.proofs_per_s)))
            .min(Self::capacity_milli(self.proofs_per_s));
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
        let mut p = Prover::new(OWN, 32, 2_000);
        let ch = p.start(0, addr(1), &mut rng, &mut stats).unwrap();
        // Already outstanding: no second PING.
        assert_eq!(p.start(10, addr(1), &mut rng, &mut stats), None);
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
        let ch = p.start(40, addr(1), &mut rng, &mut stats).unwrap();
        let ans = p.on_pong(50, addr(1), &pong(ch, key), None, |_| true, &mut stats);
        assert_eq!(ans, ProofAnswer::Proven(key));
        assert_eq!(stats.proofs_succeeded, 1);
        // Replayed: no longer outstanding.
        let ans = p.on_pong(60, addr(1), &pong(ch, key), None, |_| true, &mut stats);
        assert_eq!(ans, ProofAnswer::NotOurs);
        // Our own key, or one other than the pinned key, is refused.
        let ch = p.start(70, addr(2), &mut rng, &mut stats).unwrap();
        let ans = p.on_pong(80, addr(2), &pong(ch, own), None, |_| true, &mut stats);
        assert_eq!(ans, ProofAnswer::Refused);
        let ch = p.start(90, addr(3), &mut rng, &mut stats).unwrap();
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
        let mut p = Prover::new(OWN, 32, 2_000);
        let ch = p.start(1_000, addr(1), &mut rng, &mut stats).unwrap();
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
        let mut p = Prover::new(OWN, 10, 100_000);
        let mut started = 0;
        for i in 0..100 {
            started += usize::from(p.start(0, addr(i), &mut rng, &mut stats).is_some());
        }
        assert_eq!(started as u64, 10 * PROOF_BURST_S);
        assert_eq!(stats.proofs_rate_limited, 100 - started as u64);
        // One second later, ten more.
        let mut more = 0;
        for i in 100..200 {
            more += usize::from(p.start(1_000, addr(i), &mut rng, &mut stats).is_some());
        }
        assert_eq!(more, 10);
        // Zero: no proofs at all.
        let mut none = Prover::new(OWN, 0, 2_000);
        assert_eq!(none.start(5_000, addr(1), &mut rng, &mut stats), None);
    }

    #[test]
    fn outstanding_proofs_are_bounded() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut stats = PeerStats::default();
        let mut p = Prover::new(OWN, MAX_PROOFS_PER_S, 1_000_000);
        let mut now = 0;
        let mut i = 0u16;
        while stats.proofs_full == 0 {
            if p.start(now, addr(i), &mut rng, &mut stats).is_none() {
                now += 1_000;
            } else {
                i += 1;
            }
            assert!(p.pending() <= MAX_PROOFS_PENDING);
        }
        assert_eq!(p.pending(), MAX_PROOFS_PENDING);
    }
}
