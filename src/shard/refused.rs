//! A bounded memory of recently refused records, so a replayed invalid PUT costs a hash and a
//! lookup instead of an Ed25519 verification (about 0.2 µs instead of 25 µs).
//!
//! What is remembered: the **fingerprint** of a dat whose signature failed, the first 128 bits
//! of `blake3(pubkey ‖ work ‖ sig)`. Those three fields are everything signature verification
//! depends on, and the work binds key, value, time and salt (the cheap work check runs first),
//! so a fingerprint names one exact record. A different record (the honest owner's, with the
//! same work but its real signature) has a different fingerprint: a forger cannot poison the
//! cache against it without a blake3 second preimage (2^128 work). Only signature failures are
//! remembered; the other refusals (work, version, budget) are cheaper to re-check than to hash.
//!
//! Shape: direct-mapped, [`REFUSED_SLOTS`] slots per shard, one 16-byte fingerprint each, no
//! allocation after construction; a new entry overwrites whatever shared its slot. The owner
//! thread is the only writer. The slots ([`RefusedSlots`]) are shared with the receivers, which
//! drop a replay before it is copied or queued ([`RefusedSlots::knows`]): a flood of replayed
//! bad records then costs a parse and a hash per datagram, no owner wake-up. No lock: each slot
//! is two relaxed `AtomicU64` halves. A reader racing the writer can see one half of the old
//! fingerprint and one of the new; that pair equals the fingerprint of the record being checked
//! only by a 64-bit coincidence, and the cost of one would be one copy of a record dropped (its
//! sender and the other replicas deliver it again), so no ordering is paid for on the hot path.
//!
//! It also drops copies of one record repeated inside a single batch of PUTs: batched
//! verification would otherwise verify every copy before the first failure is remembered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::Dat;

/// Slots per shard: 256 × 16 B = 4 KiB per shard, 1 MiB for the node's 256 shards. A bad record
/// costs its sender a proof of work (the work check comes first), so distinct bad records are
/// rare and expensive; the cache only has to catch replays, and 65 536 remembered node-wide
/// covers any replay set a sender can afford to build.
pub const REFUSED_SLOTS: usize = 256;

const _: () = assert!(REFUSED_SLOTS.is_power_of_two());

/// Most fingerprints of one batch kept to find repeats in it: the owner (or a verification
/// stage thread) drains at most 64 messages per wake-up; a longer batch checks its first 256 only (repeats beyond are verified
/// as before, never wrongly refused).
const BATCH_SCRATCH: usize = 256;

/// The fingerprint of a dat: 128 bits of `blake3(pubkey ‖ work ‖ sig)`, never 0 (0 marks an
/// empty slot).
pub fn fingerprint<T: AsRef<[u8]>>(dat: &Dat<T>) -> u128 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(dat.pubkey());
    hasher.update(dat.work());
    hasher.update(dat.sig());
    let bytes = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&bytes.as_bytes()[..16]);
    u128::from_le_bytes(first) | 1
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
    /// Low and high halves of each slot's fingerprint (0 = empty). A power of two long.
    slots: Box<[[AtomicU64; 2]]>,
}

impl RefusedSlots {
    fn new(slots: usize) -> RefusedSlots {
        RefusedSlots {
            slots: (0..slots.max(1).next_power_of_two())
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
        }
    }

    fn slot(&self, fingerprint: u128) -> &[AtomicU64; 2] {
        // The fingerprint's high bits (the low bit is forced to 1).
        &self.slots[(fingerprint >> 64) as usize & (self.slots.len() - 1)]
    }

    fn contains(&self, fingerprint: u128) -> bool {
        let [lo, hi] = self.slot(fingerprint);
        let held =
            u128::from(lo.load(Ordering::Relaxed)) | (u128::from(hi.load(Ordering::Relaxed)) << 64);
        held == fingerprint
    }

    fn insert(&self, fingerprint: u128) {
        let [lo, hi] = self.slot(fingerprint);
        lo.store(fingerprint as u64, Ordering::Relaxed);
        hi.store((fingerprint >> 64) as u64, Ordering::Relaxed);
    }

    /// Whether `dat`'s signature already failed here: the exact record (key, work, signature)
    /// was refused. One blake3 of 128 bytes and a load; a receiver asks before copying a PUT.
    pub fn knows<T: AsRef<[u8]>>(&self, dat: &Dat<T>) -> bool {
        self.contains(fingerprint(dat))
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct RefusedCache {
    slots: Arc<RefusedSlots>,
    batch: Vec<u128>,
}

impl Default for RefusedCache {
    fn default() -> Self {
        RefusedCache::new()
    }
}

impl RefusedCache {
    /// An empty cache of [`REFUSED_SLOTS`] slots (one shard's).
    pub fn new() -> RefusedCache {
        RefusedCache::with_slots(REFUSED_SLOTS)
    }

    /// An empty cache of `slots` slots (rounded up to a power of two, at least one): the
    /// node's verification stage keeps one for PUTs of every shard.
    pub fn with_slots(slots: usize) -> RefusedCache {
        RefusedCache {
            slots: Arc::new(RefusedSlots::new(slots)),
            batch: Vec::with_capacity(BATCH_SCRATCH),
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
        let fp = fingerprint(dat);
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
        self.slots.insert(fingerprint(dat));
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

    #[test]
    fn readers_see_what_the_owner_refused() {
        let mut cache = RefusedCache::new();
        let shared = cache.shared();
        let (bad, good) = (dat(1, 9), dat(2, 9));
        assert!(!shared.knows(&bad));
        cache.remember_bad_signature(&bad);
        assert!(shared.knows(&bad));
        assert!(!shared.knows(&good), "same work, the real signature");
        // A newer refusal in the same slot replaces it for readers too.
        let slot_of = |d: &Dat<Box<[u8]>>| (fingerprint(d) >> 64) as usize % REFUSED_SLOTS;
        let other = (0..=u8::MAX)
            .flat_map(|sig| (0..=u8::MAX).map(move |work| dat(sig, work)))
            .find(|d| slot_of(d) == slot_of(&bad) && fingerprint(d) != fingerprint(&bad))
            .expect("65,536 records fill 256 slots");
        cache.remember_bad_signature(&other);
        assert!(shared.knows(&other));
        assert!(!shared.knows(&bad), "overwritten");
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
        assert_eq!(cache.slots.slots.len(), REFUSED_SLOTS, "never grows");
        // 1024 fingerprints over 256 slots leave about 256 × e^-4 ≈ 5 slots empty.
        let filled = cache
            .slots
            .slots
            .iter()
            .filter(|[lo, hi]| lo.load(Ordering::Relaxed) | hi.load(Ordering::Relaxed) != 0)
            .count();
        assert!(filled > REFUSED_SLOTS * 9 / 10, "{filled} filled");
        cache.begin_batch();
        assert_eq!(cache.check(&last), Some(Known::BadSignature));
    }
}
