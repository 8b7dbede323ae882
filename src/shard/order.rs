//! The eviction order of one shard's store: which record goes first when the byte budget is full,
//! and which records have expired. It owns only order entries (16 bytes each); the records live in
//! the store's slab and are named here by their slot index.
//!
//! # The rule
//!
//! ```text
//! expiry_ms(r)   = r.time_ms + ttl_ms                                   (saturating)
//! closeness(r)   = leading_zeros(id(r.owner) ^ node_id)                 0 (far) ..= 64 (our own ID)
//! priority(r)    = expiry_ms(r) + closeness(r) * (ttl_ms / 64)          (in i128: cannot overflow)
//! rank(r, now)   = (expiry_ms(r) > now, priority(r), work_tail(r), slot(r))    smaller = evicted first
//! ```
//!
//! Expired records (`expiry_ms <= now`) rank below every live one, so they go first; then the
//! lowest priority goes. Priority grows with the time a record has left and with its owner's
//! closeness to us: one more leading zero bit of closeness is worth `ttl_ms / 64` of remaining
//! life (with the reference's 365-day TTL, 5.7 days per bit; our own ID's records get a full TTL).
//! The time left is `expiry_ms - now`, and every record shares the same `now`, so ranking by
//! `expiry_ms + bonus` ranks by `time_left + bonus`: **the key never changes as time passes** and
//! the order stays valid without ever being rebuilt.
//!
//! Ties: equal priorities go to the smaller `work_tail` (the last 4 bytes of the record's work
//! hash, read LE), a content-derived value every node computes alike; the work hash is unique
//! among stored records (at most one record per work), so a tie beyond that needs two stored
//! records with equal priority and equal 32-bit work tails (about 2^-32 per such pair), and is
//! broken by the lower slot index: still deterministic for a given history of operations.
//!
//! # Layout
//!
//! Closeness takes 65 values, and within one closeness value priority is monotone in
//! `expiry_ms`. So the order is 65 `BTreeSet`s ("buckets"), one per closeness value, each sorted
//! by `(expiry_ms, work_tail, slot)`. Each bucket is ascending in rank, so:
//! - the expired records are a prefix of every bucket (`tick` pops prefixes, O(k log n) for k);
//! - the lowest-ranked record is the least of the 65 bucket heads (a k-way merge walks the
//!   order lazily for eviction). A bit mask of the non-empty buckets keeps the merge to the
//!   buckets in use (about log2(n) of them for randomly spread owners).
//!
//! One entry per record, 16 bytes, no pointers: the closeness is the bucket's index.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::collections::btree_set;

/// Closeness values: `leading_zeros` of a u64 distance is 0..=64.
pub const BUCKET_COUNT: usize = 65;

/// Closeness bonus per leading zero bit is `ttl_ms / CLOSENESS_STEPS`: the closest possible owner
/// (our own ID, 64 leading zeros) gets exactly one TTL of extra life.
pub const CLOSENESS_STEPS: i64 = 64;

const _: () = assert!(BUCKET_COUNT == u64::BITS as usize + 1);
const _: () = assert!(CLOSENESS_STEPS == u64::BITS as i64);
// The non-empty mask has one bit per bucket.
const _: () = assert!(BUCKET_COUNT <= u128::BITS as usize);

/// Flips the sign bit so that i64 order equals u64 order.
const SIGN_FLIP: u64 = 1 << 63;

/// One record's entry: `(expiry_ms, work_tail, slot)` packed into two words; derived `Ord` is the
/// in-bucket order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey {
    /// `expiry_ms` with its sign bit flipped (so unsigned order is signed order).
    expiry_biased: u64,
    /// `work_tail << 32 | slot`.
    tie: u64,
}

const _: () = assert!(core::mem::size_of::<OrderKey>() == 16);

impl OrderKey {
    /// The entry of the record in `slot`.
    pub fn new(expiry_ms: i64, work_tail: u32, slot: u32) -> OrderKey {
        OrderKey {
            expiry_biased: (expiry_ms as u64) ^ SIGN_FLIP,
            tie: (u64::from(work_tail) << 32) | u64::from(slot),
        }
    }

    /// Unix milliseconds at which the record expires.
    pub fn expiry_ms(&self) -> i64 {
        (self.expiry_biased ^ SIGN_FLIP) as i64
    }

    /// The last 4 bytes of the record's work hash (LE), the first tie-breaker.
    pub fn work_tail(&self) -> u32 {
        (self.tie >> 32) as u32
    }

    /// The record's slot in the store's slab.
    pub fn slot(&self) -> u32 {
        self.tie as u32
    }
}

/// Where a record stands in the eviction order at some `now`: smaller is evicted first.
///
/// Field order is the comparison order (derived `Ord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// False for an expired record (`expiry_ms <= now`): expired records rank lowest.
    pub live: bool,
    /// `expiry_ms + closeness * (ttl_ms / 64)`.
    pub priority: i128,
    /// Last 4 bytes of the work hash, LE.
    pub work_tail: u32,
    /// Slab slot; the final tie-breaker.
    pub slot: u32,
}

/// A record's place in the order: its bucket (closeness) and its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// `leading_zeros(id(owner) ^ node_id)`, 0..=64.
    pub closeness: u8,
    /// The entry in that bucket.
    pub key: OrderKey,
}

/// The 65 buckets, and the constant that turns closeness into priority.
#[derive(Debug)]
pub struct EvictionOrder {
    /// One set per closeness value, each in ascending rank order.
    buckets: [BTreeSet<OrderKey>; BUCKET_COUNT],
    /// Bit `c` set iff `buckets[c]` is non-empty.
    nonempty_mask: u128,
    /// Closeness bonus per leading zero bit, `ttl_ms / 64`.
    closeness_step_ms: i64,
    /// Entries held, summed over buckets.
    len: usize,
}

impl EvictionOrder {
    /// An empty order for records living `ttl_ms`.
    pub fn new(ttl_ms: i64) -> EvictionOrder {
        EvictionOrder {
            buckets: std::array::from_fn(|_| BTreeSet::new()),
            nonempty_mask: 0,
            closeness_step_ms: ttl_ms / CLOSENESS_STEPS,
            len: 0,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `expiry_ms + closeness * step`, exact.
    pub fn priority(&self, closeness: u8, expiry_ms: i64) -> i128 {
        i128::from(expiry_ms) + i128::from(closeness) * i128::from(self.closeness_step_ms)
    }

    /// The rank of an entry at `now_ms`.
    pub fn rank(&self, placement: &Placement, now_ms: i64) -> Rank {
        let expiry_ms = placement.key.expiry_ms();
        Rank {
            live: expiry_ms > now_ms,
            priority: self.priority(placement.closeness, expiry_ms),
            work_tail: placement.key.work_tail(),
            slot: placement.key.slot(),
        }
    }

    /// Adds an entry; returns false if it was already there (a caller bug).
    pub fn insert(&mut self, placement: Placement) -> bool {
        let Some(bucket) = self.buckets.get_mut(usize::from(placement.closeness)) else {
            return false;
        };
        let added = bucket.insert(placement.key);
        if added {
            self.nonempty_mask |= 1 << placement.closeness;
            self.len += 1;
        }
        added
    }

    /// Removes an entry; returns false if it was not there (a caller bug).
    pub fn remove(&mut self, placement: &Placement) -> bool {
        let Some(bucket) = self.buckets.get_mut(usize::from(placement.closeness)) else {
            return false;
        };
        let removed = bucket.remove(&placement.key);
        if removed {
            if bucket.is_empty() {
                self.nonempty_mask &= !(1 << placement.closeness);
            }
            self.len -= 1;
        }
        removed
    }

    /// Slots of every record expired at `now_ms` (`expiry_ms <= now_ms`), bucket by bucket, each
    /// bucket in ascending expiry. Visits only the expired prefixes.
    pub fn expired_slots(&self, now_ms: i64, out: &mut Vec<u32>) {
        for closeness in self.nonempty() {
            let bucket = &self.buckets[usize::from(closeness)];
            out.extend(
                bucket
                    .iter()
                    .take_while(|key| key.expiry_ms() <= now_ms)
                    .map(OrderKey::slot),
            );
        }
    }

    /// The records in ascending rank at `now_ms` (lowest first): a lazy k-way merge of the bucket
    /// heads. Each step costs O(non-empty buckets).
    pub fn ascending(&self, now_ms: i64) -> Ascending<'_> {
        let cursors = self
            .nonempty()
            .map(|closeness| {
                let mut iter = self.buckets[usize::from(closeness)].iter();
                let head = iter.next().copied();
                Cursor {
                    closeness,
                    head,
                    iter,
                }
            })
            .collect();
        Ascending {
            order: self,
            now_ms,
            cursors,
        }
    }

    /// Indices of the non-empty buckets, ascending.
    fn nonempty(&self) -> impl Iterator<Item = u8> + use<> {
        let mut mask = self.nonempty_mask;
        std::iter::from_fn(move || {
            if mask == 0 {
                return None;
            }
            let closeness = mask.trailing_zeros() as u8;
            mask &= mask - 1;
            Some(closeness)
        })
    }
}

/// One bucket's position in the merge.
#[derive(Debug)]
struct Cursor<'a> {
    closeness: u8,
    head: Option<OrderKey>,
    iter: btree_set::Iter<'a, OrderKey>,
}

/// Records in ascending rank; see [`EvictionOrder::ascending`].
#[derive(Debug)]
pub struct Ascending<'a> {
    order: &'a EvictionOrder,
    now_ms: i64,
    cursors: Vec<Cursor<'a>>,
}

impl Iterator for Ascending<'_> {
    type Item = (Placement, Rank);

    fn next(&mut self) -> Option<(Placement, Rank)> {
        let mut best: Option<(usize, Placement, Rank)> = None;
        for (index, cursor) in self.cursors.iter().enumerate() {
            let Some(key) = cursor.head else { continue };
            let placement = Placement {
                closeness: cursor.closeness,
                key,
            };
            let rank = self.order.rank(&placement, self.now_ms);
            let better = match &best {
                None => true,
                Some((_, _, best_rank)) => rank.cmp(best_rank) == Ordering::Less,
            };
            if better {
                best = Some((index, placement, rank));
            }
        }
        let (index, placement, rank) = best?;
        let cursor = &mut self.cursors[index];
        cursor.head = cursor.iter.next().copied();
        Some((placement, rank))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(closeness: u8, expiry_ms: i64, work_tail: u32, slot: u32) -> Placement {
        Placement {
            closeness,
            key: OrderKey::new(expiry_ms, work_tail, slot),
        }
    }

    #[test]
    fn order_key_round_trips_and_orders_signed_expiry() {
        let key = OrderKey::new(-5, 0xdead_beef, 7);
        assert_eq!(key.expiry_ms(), -5);
        assert_eq!(key.work_tail(), 0xdead_beef);
        assert_eq!(key.slot(), 7);
        assert!(OrderKey::new(-1, 0, 0) < OrderKey::new(0, 0, 0));
        assert!(OrderKey::new(i64::MIN, u32::MAX, u32::MAX) < OrderKey::new(i64::MAX, 0, 0));
        assert!(OrderKey::new(3, 1, 0) < OrderKey::new(3, 2, 0));
        assert!(OrderKey::new(3, 1, 0) < OrderKey::new(3, 1, 1));
    }

    #[test]
    fn ascending_merges_buckets_by_priority_and_puts_expired_first() {
        // ttl 6400 → step 100 per closeness bit.
        let mut order = EvictionOrder::new(6400);
        // priority: 1000 + 0, 900 + 200 = 1100, 1050 + 0 = 1050, 100 + 6400 = 6500 (expired at 500).
        let entries = [
            placement(0, 1000, 1, 0),
            placement(2, 900, 2, 1),
            placement(0, 1050, 3, 2),
            placement(64, 100, 4, 3),
        ];
        for p in entries {
            assert!(order.insert(p));
        }
        assert!(!order.insert(entries[0]));
        assert_eq!(order.len(), 4);
        let slots: Vec<u32> = order.ascending(500).map(|(p, _)| p.key.slot()).collect();
        assert_eq!(slots, [3, 0, 2, 1]);
        // Before anything expires, the closest record (bucket 64) ranks highest.
        let slots: Vec<u32> = order.ascending(0).map(|(p, _)| p.key.slot()).collect();
        assert_eq!(slots, [0, 2, 1, 3]);
        let mut expired = Vec::new();
        order.expired_slots(1000, &mut expired);
        expired.sort_unstable();
        assert_eq!(expired, [0, 1, 3]);
    }

    #[test]
    fn remove_clears_the_mask_of_an_emptied_bucket() {
        let mut order = EvictionOrder::new(6400);
        let p = placement(5, 10, 0, 0);
        assert!(order.insert(p));
        assert!(order.remove(&p));
        assert!(!order.remove(&p));
        assert!(order.is_empty());
        assert_eq!(order.ascending(0).count(), 0);
        let mut expired = Vec::new();
        order.expired_slots(i64::MAX, &mut expired);
        assert!(expired.is_empty());
    }

    #[test]
    fn ties_go_to_the_smaller_work_tail_then_slot() {
        let mut order = EvictionOrder::new(6400);
        // Equal priority 1100 in two buckets.
        order.insert(placement(1, 1000, 9, 0));
        order.insert(placement(0, 1100, 3, 1));
        order.insert(placement(0, 1100, 3, 0));
        let slots: Vec<(u8, u32)> = order
            .ascending(0)
            .map(|(p, _)| (p.closeness, p.key.slot()))
            .collect();
        assert_eq!(slots, [(0, 0), (0, 1), (1, 0)]);
    }
}
