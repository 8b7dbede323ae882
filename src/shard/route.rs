//! Which shard a record belongs to, and which of two versions of a record wins.
//!
//! Both are protocol-wide decisions: every node must route and resolve the same way, and the
//! store, the backup log's compaction and recovery all use these two functions.

use core::cmp::Ordering;

use xxhash_rust::xxh64::Xxh64;

use crate::wire::Dat;

/// Number of shards (the top byte of the routing hash).
pub const SHARD_COUNT: usize = 256;

/// `xxh64(pubkey ‖ key, seed 0)`: the routing hash and the store's fast hash (never the identity:
/// records are always compared by their full (pubkey, key)).
#[inline]
pub fn record_hash(pubkey: &[u8; 32], key: &[u8]) -> u64 {
    let mut h = Xxh64::new(0);
    h.update(pubkey);
    h.update(key);
    h.digest()
}

/// Shard index of a record: the top 8 bits of its hash.
#[inline]
pub fn shard_of_hash(hash: u64) -> usize {
    (hash >> 56) as usize
}

/// Shard index of (pubkey, key).
#[inline]
pub fn shard_index(pubkey: &[u8; 32], key: &[u8]) -> usize {
    shard_of_hash(record_hash(pubkey, key))
}

/// How a candidate version of a record compares with the held one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The candidate wins and should replace the held record.
    Newer,
    /// Byte-identical: a duplicate, needs no verification and no storage.
    Same,
    /// The held record wins; the candidate is refused.
    Older,
}

/// Decides between two versions of the same (pubkey, key).
///
/// Rules: the later `time` wins. At equal time with different bytes, the version whose `work`
/// hash is lexicographically smaller wins (it tends to carry more proof-of-work, and every node
/// computes the same answer, so the network converges on one record); if the work hashes are
/// equal too, the lexicographically smaller dat bytes win.
pub fn compare_versions<A: AsRef<[u8]>, B: AsRef<[u8]>>(
    candidate: &Dat<A>,
    held: &Dat<B>,
) -> Version {
    match candidate.time_ms().cmp(&held.time_ms()) {
        Ordering::Greater => return Version::Newer,
        Ordering::Less => return Version::Older,
        Ordering::Equal => {}
    }
    let by_work = candidate.work().cmp(held.work());
    let order = by_work.then_with(|| candidate.as_bytes().cmp(held.as_bytes()));
    match order {
        Ordering::Less => Version::Newer,
        Ordering::Equal => Version::Same,
        Ordering::Greater => Version::Older,
    }
}
