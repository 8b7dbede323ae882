//! A bounded memory of recently refused records, so a replayed invalid PUT costs a hash and a
//! lookup instead of an Ed25519 verification (about 0.2 µs instead of 25 µs).
//!
//! What is remembered: the **fingerprint** of a dat whose signature failed, 128 bits of a keyed
//! `blake3(pubkey ‖ work ‖ sig)`. Those three fields are everything signature verification
//! depends on, and the work binds key, value, time and salt (the cheap work check runs first),
//! so a fingerprint names one exact record. A different record (the honest owner's, with the
//! same work but its real signature) has a different fingerprint: a forger cannot poison the
//! cache against it without a blake3 second preimage (2^128 work). Only signature failures are
//! remembered; the other refusals (work, version, budget) are cheaper to re-check than to hash.
//!
//! Shape: [`REFUSED_SLOTS`] slots per shard in sets of [`REFUSED_WAYS`] (one 64-byte cache line
//! of four 16-byte fingerprints), no allocation after construction; a set chosen by the
//! fingerprint's high bits, a new entry taking an empty way or else the way a round-robin count
//! of the cache's evictions names (a full set's ways are replaced in turn). The hash is keyed by
//! a secret of each cache (drawn from the shard's seed), so a sender cannot aim its records at
//! one set: with unkeyed fingerprints a forger varies signature bytes for free until five
//! replayed records share a set, and every replay of them is then verified again. Sets of four also keep random
//! collisions from doing the same: of a flood cycling 8,192 forged records (32 per shard), ~11 %
//! shared a slot with another in the direct-mapped table this replaced, pushed each other out,
//! and were verified again on every replay: 34 k checks in a 3.6-second flood, 8.3 k now
//! (`perf/README.md`, "Forged-PUT flood").
//!
//! The owner thread is the only writer. The slots ([`RefusedSlots`]) are shared with the
//! receivers, which drop a replay before it is copied or queued ([`RefusedSlots::knows`]): a
//! flood of replayed bad records then costs a parse and a hash per datagram, no owner wake-up.
//! No lock: each slot is two relaxed `AtomicU64` halves. A reader racing the writer can see one
//! half of the old fingerprint and one of the new; that pair equals the fingerprint of the
//! record being checked only by a 64-bit coincidence, and the cost of one would be one copy of
//! a record dropped (its sender and the other replicas deliver it again), so no ordering is paid
//! for on the hot path.
//!
//! It also drops copies of one record repeated inside a single batch of PUTs: batched
//! verification would otherwise verify every copy before the first failure is remembered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::wire::Dat;

/// Slots per shard: 256 × 16 B = 4 KiB per shard, 1 MiB for the node's 256 shards: 65 536
/// refused records remembered node-wide, 32 per shard with room to spare in every set for the
/// 8,192 records of the issue-14 flood. The cache catches replays only. A forger who sends a new
/// record each time (another signature over the same valid work costs nothing) is not slowed by
/// it at all; that sender is held by what bounds any verification work instead, the
/// verification permits and the owners' bounded channels (counted drops).
pub const REFUSED_SLOTS: usize = 256;

/// Ways per set: four 16-byte fingerprints fill one 64-byte cache line, so a lookup still
/// touches one line, and a set overflows only when five remembered records share it.
pub const REFUSED_WAYS: usize = 4;

const _: () = assert!(REFUSED_SLOTS.is_power_of_two() && REFUSED_SLOTS >= REFUSED_WAYS);

/// Most fingerprints of one batch kept to find repeats in it: the owner (or a verification
/// stage thread) drains at most 64 messages per wake-up; a longer batch checks its first 256
/// only (repeats beyond are verified as before, never wrongly refused).
const BATCH_SCRATCH: usize = 256;

/// One set: [`REFUSED_WAYS`] fingerprints as low and high halves (0 = empty), one cache line.
#[derive(Debug)]
#[repr(align(64))]
struct Set([[AtomicU64; 2]; REFUSED_WAYS]);

impl Set {
    fn empty() -> Set {
        Set(std::array::from_fn(|_| {
            [AtomicU64::new(0), AtomicU64::new(0)]
        }))
    }

    fn way(&self, way: usize) -> u128 {
        let [lo, hi] = &self.0[way];
        u128::from(lo.load(Ordering::Relaxed)) | (u128::from(hi.load(Ordering::Relaxed)) << 64)
    }

    fn store(&self, way: usize, fingerprint: u128) {
        let [lo, hi] = &self.0[way];
        lo.store(fingerprint as u64, Ordering::Relaxed);
        hi.store((fingerprint >> 64) as u64, Ordering::Relaxed);
    }
}

/// Why a PUT was refused without verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Its signature already failed here.
    BadSignature,
    /// The same record is earlier in this batch.
    RepeatInBatch,
}

/// The remembered fingerprints of one cache, shared between its owner (the only writer) and the
/// receivers (readers). See the module docs.
#[derive(Debug)]
pub struct RefusedSlots {
    /// A power of two long.
    sets: Box<[Set]>,
    /// The fingerprint's blake3 key, secret to this cache.
    key: [u8; 32],
}

impl RefusedSlots {
    fn new(slots: usize, key: [u8; 32]) -> RefusedSlots {
        let sets = (slots.max(REFUSED_WAYS) / REFUSED_WAYS).next_power_of_two();
        RefusedSlots {
            sets: (0..sets).map(|_| Set::empty()).collect(),
            key,
        }
    }

    /// The fingerprint of a dat under this cache's key: 128 bits of the keyed
    /// `blake3(pubkey ‖ work ‖ sig)`, never 0 (0 marks an empty slot).
    fn fingerprint<T: AsRef<[u8]>>(&self, dat: &Dat<T>) -> u128 {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(dat.pubkey());
        hasher.update(dat.work());
        hasher.update(dat.sig());
        let bytes = hasher.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&bytes.as_bytes()[..16]);
        u128::from_le_bytes(first) | 1
    }

    fn set(&self, fingerprint: u128) -> &Set {
        // The fingerprint's high bits (the low bit is forced to 1).
        &self.sets[(fingerprint >> 64) as usize & (self.sets.len() - 1)]
    }

    fn contains(&self, fingerprint: u128) -> bool {
        let set = self.set(fingerprint);
        (0..REFUSED_WAYS).any(|way| set.way(way) == fingerprint)
    }

    /// Stores `fingerprint` in its set: in an empty way if there is one, else over the way
    /// `victim` names (modulo the ways). Nothing if it is already there. Whether it replaced a
    /// remembered fingerprint.
    fn insert(&self, fingerprint: u128, victim: usize) -> bool {
        let set = self.set(fingerprint);
        let mut empty = None;
        for way in 0..REFUSED_WAYS {
            match set.way(way) {
                held if held == fingerprint => return false,
                0 if empty.is_none() => empty = Some(way),
                _ => {}
            }
        }
        set.store(empty.unwrap_or(victim % REFUSED_WAYS), fingerprint);
        empty.is_none()
    }

    /// Whether `dat`'s signature already failed here: the exact record (key, work, signature)
    /// was refused. One blake3 of 128 bytes and up to four loads from one cache line; a
    /// receiver asks before copying a PUT.
    pub fn knows<T: AsRef<[u8]>>(&self, dat: &Dat<T>) -> bool {
        self.contains(self.fingerprint(dat))
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct RefusedCache {
    slots: Arc<RefusedSlots>,
    batch: Vec<u128>,
    /// Fingerprints stored over full sets so far: the round-robin victim.
    evictions: usize,
}

impl Default for RefusedCache {
    fn default() -> Self {
        RefusedCache::new()
    }
}

impl RefusedCache {
    /// An empty cache of [`REFUSED_SLOTS`] slots (one shard's) with the fixed key of seed 0;
    /// a node's shards each get their own ([`RefusedCache::keyed`], from the shard's seed).
    pub fn new() -> RefusedCache {
        RefusedCache::keyed(REFUSED_SLOTS, 0)
    }

    /// An empty cache of `slots` slots (rounded up to a power of two, at least one set), its
    /// fingerprints keyed by a secret drawn from `seed` (the node passes a random seed, a
    /// simulation a fixed one). The node's verification stage keeps one for PUTs of every shard.
    pub fn keyed(slots: usize, seed: u64) -> RefusedCache {
        let mut key = [0u8; 32];
        StdRng::seed_from_u64(seed).fill_bytes(&mut key);
        RefusedCache {
            slots: Arc::new(RefusedSlots::new(slots, key)),
            batch: Vec::with_capacity(BATCH_SCRATCH),
            evictions: 0,
        }
    }

    /// The slots, for readers on other threads ([`RefusedSlots::knows`]).
    pub fn shared(&self) -> Arc<RefusedSlots> {
        Arc::clone(&self.slots)
    }

    /// Starts a new batch of PUTs (forgets the previous batch's fingerprints).
    pub fn begin_batch(&mut self) {
        self.batch.clear();
    }

    /// `Some(reason)` if `dat` can be refused without verifying it; otherwise notes it as part
    /// of the current batch.
    pub fn check<T: AsRef<[u8]>>(&mut self, dat: &Dat<T>) -> Option<Known> {
        let fp = self.slots.fingerprint(dat);
        if self.slots.contains(fp) {
            return Some(Known::BadSignature);
        }
        if self.batch.contains(&fp) {
            return Some(Known::RepeatInBatch);
        }
        if self.batch.len() < BATCH_SCRATCH {
            self.batch.push(fp);
        }
        None
    }

    /// Remembers that `dat`'s signature failed.
    pub fn remember_bad_signature<T: AsRef<[u8]>>(&mut self, dat: &Dat<T>) {
        let fp = self.slots.fingerprint(dat);
        if self.slots.insert(fp, self.evictions) {
            self.evictions = self.evictions.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::DatFields;

    fn dat(sig: u8, work: u8) -> Dat<Box<[u8]>> {
        DatFields {
            time_ms: 1,
            salt: [0; 16],
            work: [work; 32],
            sig: [sig; 64],
            pubkey: [3; 32],
            key: b"k",
            value: b"v",
        }
        .to_dat()
    }

    /// The set a record falls in, under `cache`'s key.
    fn set_of(cache: &RefusedCache, d: &Dat<Box<[u8]>>) -> usize {
        let fp = cache.slots.fingerprint(d);
        (fp >> 64) as usize & (cache.slots.sets.len() - 1)
    }

    /// Records other than `avoid`, all in `set`.
    fn records_in_set(
        cache: &RefusedCache,
        set: usize,
        avoid: &Dat<Box<[u8]>>,
    ) -> impl Iterator<Item = Dat<Box<[u8]>>> {
        let avoid = cache.slots.fingerprint(avoid);
        let cache_slots = Arc::clone(&cache.slots);
        let sets = cache.slots.sets.len();
        (0..=u8::MAX)
            .flat_map(|sig| (0..=u8::MAX).map(move |work| dat(sig, work)))
            .filter(move |d| {
                let fp = cache_slots.fingerprint(d);
                (fp >> 64) as usize & (sets - 1) == set && fp != avoid
            })
    }

    #[test]
    fn readers_see_what_the_owner_refused() {
        let mut cache = RefusedCache::new();
        let shared = cache.shared();
        let (bad, good) = (dat(1, 9), dat(2, 9));
        assert!(!shared.knows(&bad));
        cache.remember_bad_signature(&bad);
        assert!(shared.knows(&bad));
        assert!(!shared.knows(&good), "same work, the real signature");
        // A set holds four: three more in bad's set keep it; a fifth replaces the oldest.
        let others: Vec<_> = records_in_set(&cache, set_of(&cache, &bad), &bad)
            .take(REFUSED_WAYS)
            .collect();
        assert_eq!(others.len(), REFUSED_WAYS, "65,536 records fill 64 sets");
        for other in &others[..REFUSED_WAYS - 1] {
            cache.remember_bad_signature(other);
        }
        assert!(shared.knows(&bad), "{REFUSED_WAYS} ways");
        cache.remember_bad_signature(&others[REFUSED_WAYS - 1]);
        assert!(
            !shared.knows(&bad),
            "replaced, the oldest of a set filled in order"
        );
        assert!(others.iter().all(|o| shared.knows(o)));
    }

    #[test]
    fn a_full_set_replaces_its_ways_in_turn() {
        let mut cache = RefusedCache::new();
        let first = dat(0, 0);
        let set: Vec<_> = std::iter::once(dat(0, 0))
            .chain(records_in_set(&cache, set_of(&cache, &first), &first))
            .take(3 * REFUSED_WAYS)
            .collect();
        for d in &set {
            cache.remember_bad_signature(d);
        }
        // Twelve into one set of four, replaced round robin: the last four are the ones held.
        for (i, d) in set.iter().enumerate() {
            assert_eq!(cache.shared().knows(d), i >= 2 * REFUSED_WAYS, "record {i}");
        }
    }

    #[test]
    fn keys_differ_between_caches() {
        let (a, b) = (
            RefusedCache::keyed(REFUSED_SLOTS, 1),
            RefusedCache::keyed(REFUSED_SLOTS, 2),
        );
        let records: Vec<_> = (0..64u8).map(|i| dat(i, i)).collect();
        let same_set = records
            .iter()
            .filter(|d| set_of(&a, d) == set_of(&b, d))
            .count();
        // Independent keys: about 1 in 64 land in the same set by chance.
        assert!(
            same_set < 8,
            "{same_set} of 64 in the same set under both keys"
        );
        let mut a = a;
        a.remember_bad_signature(&records[0]);
        assert!(a.shared().knows(&records[0]));
        assert!(!b.shared().knows(&records[0]), "each cache its own memory");
    }

    #[test]
    fn a_flood_of_replays_is_remembered_whole() {
        // The flood of perf/issue14.sh cycles 8,192 forged records over 256 shards: 32 per
        // shard. In a direct-mapped table of 256 slots ~11 % of them share a slot (each replay
        // of those verified again); in sets of four these 100 caches forget 2 of 3,200.
        let mut lost = 0;
        for seed in 0..100 {
            let mut cache = RefusedCache::keyed(REFUSED_SLOTS, seed);
            let records: Vec<_> = (0..32u8).map(|i| dat(i, seed as u8)).collect();
            for d in &records {
                cache.remember_bad_signature(d);
            }
            lost += records.iter().filter(|d| !cache.shared().knows(d)).count();
        }
        assert!(lost <= 16, "{lost} of 3,200 forgotten");
    }

    #[test]
    fn remembers_exact_records_only() {
        let mut cache = RefusedCache::new();
        let bad = dat(1, 9);
        cache.begin_batch();
        assert_eq!(cache.check(&bad), None);
        cache.remember_bad_signature(&bad);
        cache.begin_batch();
        assert_eq!(cache.check(&bad), Some(Known::BadSignature));
        // Same work, other signature (the honest record): not refused.
        assert_eq!(cache.check(&dat(2, 9)), None);
    }

    #[test]
    fn finds_repeats_within_a_batch() {
        let mut cache = RefusedCache::new();
        cache.begin_batch();
        assert_eq!(cache.check(&dat(1, 1)), None);
        assert_eq!(cache.check(&dat(1, 1)), Some(Known::RepeatInBatch));
        assert_eq!(cache.check(&dat(1, 2)), None);
        cache.begin_batch();
        assert_eq!(cache.check(&dat(1, 1)), None);
    }

    #[test]
    fn is_bounded_and_overwrites() {
        let mut cache = RefusedCache::new();
        let mut last = dat(0, 0);
        for i in 0..(4 * REFUSED_SLOTS) {
            last = dat((i % 251) as u8, (i / 251) as u8);
            cache.remember_bad_signature(&last);
        }
        let sets = &cache.slots.sets;
        assert_eq!(sets.len() * REFUSED_WAYS, REFUSED_SLOTS, "never grows");
        // 1024 fingerprints over 64 sets of 4 fill every way but by a rare chance.
        let filled = sets
            .iter()
            .flat_map(|set| (0..REFUSED_WAYS).map(|way| set.way(way)))
            .filter(|&fp| fp != 0)
            .count();
        assert!(filled > REFUSED_SLOTS * 9 / 10, "{filled} filled");
        cache.begin_batch();
        assert_eq!(cache.check(&last), Some(Known::BadSignature));
    }
}
