//! Decoded owner keys, kept between verifications.
//!
//! Checking an Ed25519 signature starts by decoding the owner's 32-byte public key into a curve
//! point: a square root in the field. Skipping it made single checks 1.14x and batched checks
//! 1.29x faster on the 2-vCPU VM (`perf/README.md`, "PUT capacity: owners' keys kept
//! decoded"). An owner who stores many
//! records pays it on every PUT. [`KeyCache`] keeps the decoded keys of recent owners, so a
//! repeat owner's PUT skips it. The result of a verification never depends on the cache: a hit
//! is the very key `VerifyingKey::from_bytes` returns for those bytes (the slot is compared
//! on all 32 bytes), and keys that do not decode are never kept.
//!
//! Direct-mapped: a key's slot is a seeded hash of its bytes, a newcomer replaces whatever held
//! its slot. No bookkeeping per hit; an attacker who grinds keys into one slot only costs itself
//! (and whoever shares the slot) the decoding a cache-less node pays on every PUT.

use ed25519_dalek::VerifyingKey;
use xxhash_rust::xxh64::xxh64;

/// Slots of a node's cache: 4096 × 200 B ≈ 800 KB per verification permit (one per core).
/// Enough that a few thousand owners writing at once keep their keys decoded; an owner seen
/// once per slot turnover gains nothing and loses nothing.
pub const KEY_CACHE_SLOTS: usize = 4096;

/// A decoded key and whether it is weak (of small order: the batch check refuses it).
#[derive(Clone, Copy)]
struct Entry {
    key: VerifyingKey,
    weak: bool,
}

/// A direct-mapped cache of decoded Ed25519 public keys. Not shared: each verifying thread holds
/// one (the node keeps one per verification permit).
pub struct KeyCache {
    slots: Box<[Option<Entry>]>,
    seed: u64,
    hits: u64,
    decoded: u64,
}

impl core::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyCache")
            .field("slots", &self.slots.len())
            .field("hits", &self.hits)
            .field("decoded", &self.decoded)
            .finish()
    }
}

impl KeyCache {
    /// A cache of `slots` slots, rounded up to a power of two; 0 keeps nothing (every lookup
    /// decodes). `seed` places keys in slots (use a random one where keys come from outside).
    pub fn new(slots: usize, seed: u64) -> KeyCache {
        let slots = if slots == 0 {
            0
        } else {
            slots.next_power_of_two()
        };
        KeyCache {
            slots: vec![None; slots].into_boxed_slice(),
            seed,
            hits: 0,
            decoded: 0,
        }
    }

    /// The decoded key for `pubkey` and whether it is weak; `None` if the bytes are not a
    /// point (such a key verifies nothing, and is not kept).
    pub fn key(&mut self, pubkey: &[u8; 32]) -> Option<(VerifyingKey, bool)> {
        let slot = if self.slots.is_empty() {
            None
        } else {
            // The mask keeps the index below the power-of-two length.
            Some(xxh64(pubkey, self.seed) as usize & (self.slots.len() - 1))
        };
        if let Some(entry) = slot
            .and_then(|i| self.slots[i])
            .filter(|e| e.key.as_bytes() == pubkey)
        {
            self.hits += 1;
            return Some((entry.key, entry.weak));
        }
        self.decoded += 1;
        let key = VerifyingKey::from_bytes(pubkey).ok()?;
        let entry = Entry {
            key,
            weak: key.is_weak(),
        };
        if let Some(i) = slot {
            self.slots[i] = Some(entry);
        }
        Some((entry.key, entry.weak))
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that decoded the key (misses, and keys that do not decode).
    pub fn decoded(&self) -> u64 {
        self.decoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn a_hit_is_the_key_from_bytes_decodes() {
        let mut cache = KeyCache::new(64, 7);
        for seed in 0..40u8 {
            let public = Keypair::from_seed(&[seed; 32]).public();
            let (first, weak) = cache.key(&public).unwrap();
            let (again, _) = cache.key(&public).unwrap();
            let direct = VerifyingKey::from_bytes(&public).unwrap();
            assert_eq!(first, direct);
            assert_eq!(again, direct);
            assert!(!weak);
        }
        assert!(
            cache.hits() >= 40,
            "every second lookup of a key just decoded is a hit"
        );
    }

    #[test]
    fn keys_sharing_a_slot_never_answer_for_each_other() {
        // One slot: every key collides with every other.
        let mut cache = KeyCache::new(1, 0);
        let a = Keypair::from_seed(&[1; 32]).public();
        let b = Keypair::from_seed(&[2; 32]).public();
        for _ in 0..3 {
            assert_eq!(cache.key(&a).unwrap().0.as_bytes(), &a);
            assert_eq!(cache.key(&b).unwrap().0.as_bytes(), &b);
        }
        assert_eq!(cache.hits(), 0);
        assert_eq!(cache.decoded(), 6);
    }

    #[test]
    fn bytes_that_are_no_point_are_refused_and_not_kept() {
        let mut cache = KeyCache::new(16, 0);
        // y = 2 is not the y-coordinate of a curve point.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert!(VerifyingKey::from_bytes(&not_a_point).is_err());
        assert!(cache.key(&not_a_point).is_none());
        assert!(cache.key(&not_a_point).is_none());
        assert_eq!(cache.hits(), 0);
    }

    #[test]
    fn weak_keys_are_marked() {
        let mut cache = KeyCache::new(16, 0);
        // The identity point (y = 1): of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let (_, weak) = cache.key(&identity).unwrap();
        assert!(weak);
        let (_, weak) = cache.key(&identity).unwrap();
        assert!(weak, "a hit keeps the mark");
    }

    #[test]
    fn no_slots_decodes_every_time() {
        let mut cache = KeyCache::new(0, 0);
        let a = Keypair::from_seed(&[1; 32]).public();
        assert!(cache.key(&a).is_some());
        assert!(cache.key(&a).is_some());
        assert_eq!((cache.hits(), cache.decoded()), (0, 2));
    }
}
