//! The record store of one shard: records indexed by their full `(pubkey, key)`, one record per
//! proof-of-work hash, a byte budget, and eviction in the order of [`super::order`]. I/O-free
//! and clock-free: `now_ms` is always an argument.
//!
//! # Rules (applied alike by [`Store::precheck`] and [`Store::insert`])
//!
//! 1. Against the held version of the same `(pubkey, key)` ([`compare_versions`]): `Older` is
//!    refused ([`Refusal::Older`]), `Same` is a [`Refusal::Duplicate`] (costs one lookup).
//! 2. A work hash already used by a *different* `(pubkey, key)` is refused
//!    ([`Refusal::WorkReused`]): at most one record per work hash.
//! 3. If the record does not fit the budget (after its held version is freed), the records that
//!    rank below it ([`super::order`]: expired first, then lowest priority) are evicted, lowest
//!    first, until it fits. If that would need a record ranking at or above it, or there is not
//!    enough below it, nothing changes and it is refused ([`Refusal::TooLowPriority`]).
//!
//! # Layout
//!
//! ```text
//! slab:     RecordSlab                     8 B per slot (where its bytes are) and a free list
//!                                          over the arena: the records' wire bytes, packed in
//!                                          this shard's own segments (6 B header each; arena.rs)
//! copies:   Vec<CopyState>                 4 B per slot, only with `track_copies` (replica
//!                                          maintenance by lookup): when the copy was last
//!                                          stored, where this node stands for it
//! by_key:   HashTable<u32>                 slot, hashed by record_hash(pubkey, key)   4 B + 1 ctrl
//! by_work:  HashTable<u32>                 slot, hashed by xxh64(work)                4 B + 1 ctrl
//! order:    65 × BTreeSet<OrderKey>        16 B entry; see order.rs
//! ```
//!
//! `record_hash` is only the fast hash: both tables compare the full `(pubkey, key)` (or the full
//! work) on lookup, so records whose hashes collide are stored side by side. A crafted collision
//! set only lengthens one probe chain, and each member costs its owner a proof-of-work.
//!
//! # Cost of a record
//!
//! See [`record_cost_bytes`]: the record's arena entry, with the most garbage a segment may
//! carry, plus [`RECORD_OVERHEAD_BYTES`] for the slot, the two table entries and the order entry,
//! amortised. `examples/shard_memory.rs` measures it (RSS of 1M records over 256 stores).

use std::marker::PhantomData;

use hashbrown::HashTable;

use crate::keys::id_from_pubkey;
use crate::limits::{DAT_HEADER_LEN, MAX_DAT_LEN};
use crate::route::maintain::CopyBook;
use crate::shard::arena::{self, RecordSlab};
use crate::shard::order::{EvictionOrder, OrderKey, Placement, Rank};
use crate::shard::route::{Version, compare_versions, record_hash};
use crate::wire::Dat;

/// A record taken out of a store (or about to go in): exactly the wire bytes of the dat, in one
/// allocation. Held records are [`RecordView`]s into the store's arena.
pub type Record = Dat<Box<[u8]>>;

/// A held record, borrowed from its store.
pub type RecordView<'a> = Dat<&'a [u8]>;

/// Per-record bytes of the store's own structures (beside the arena), amortised over their
/// growth:
///
/// ```text
/// slot            8 B × slots/len                (Vec doubling: 1.0 .. 2.0)
/// by_key          5 B × buckets/len              (hashbrown: 4 B entry + 1 B control; load ≤ 7/8, doubling)
/// by_work         5 B × buckets/len
/// order entry    16 B / leaf fill + node header  (B-tree leaves: 11 × 16 B in a 208 B chunk;
///                                                 ~70 % full for random arrival, ~55 % when
///                                                 records arrive in time order)
/// copy state      4 B × slots/len                (only with track_copies)
/// ```
///
/// Measured with `examples/shard_memory.rs` (256 stores, RSS growth minus the arenas' segments;
/// 16-byte keys, 100-byte values): at 1 M records 60.5 B per record for random arrival times
/// untracked, 71.1 B when each record is newer than the last (half-full B-tree leaves) with copy
/// states tracked; 78.7 B in the worst case measured, stores of 1 k records kept full by
/// eviction (`--store-budget-bytes 397000 --ascending-times 1 --track-copies 1`), where each
/// store's open segment weighs most. The constant covers that worst case. Results:
/// `perf/README.md`.
pub const RECORD_OVERHEAD_BYTES: usize = 80;

/// What a record of `dat_len` wire bytes costs against the budget: its arena entry with the
/// garbage a sealed segment may carry ([`arena::charged_bytes`]) and the structures'
/// [`RECORD_OVERHEAD_BYTES`]. A store that never removes carries no garbage, so there the budget
/// over-counts by about 1/7 of the entry.
pub const fn record_cost_bytes(dat_len: usize) -> usize {
    arena::charged_bytes(dat_len) + RECORD_OVERHEAD_BYTES
}

/// The cheapest record (empty key and value).
pub const MIN_RECORD_COST_BYTES: usize = record_cost_bytes(DAT_HEADER_LEN);

/// The dearest record (a full datagram).
pub const MAX_RECORD_COST_BYTES: usize = record_cost_bytes(MAX_DAT_LEN);

/// Most records one insert can evict: it needs at most its own cost freed, and each victim frees
/// at least the cheapest cost.
pub const MAX_EVICTIONS_PER_INSERT: usize = MAX_RECORD_COST_BYTES.div_ceil(MIN_RECORD_COST_BYTES);

const _: () = assert!(MIN_RECORD_COST_BYTES <= MAX_RECORD_COST_BYTES);
const _: () = assert!(MAX_EVICTIONS_PER_INSERT <= 16);

/// Slot indices are u32: a budget must not allow more records than that.
const MAX_SLOTS: usize = u32::MAX as usize;

/// The multiplier that spreads the routing hash before it indexes the table. All records of one
/// shard share the top 8 bits of `record_hash` (that is how they were routed here), and
/// hashbrown takes its 7-bit control tag from the top bits: without mixing every tag in a shard
/// would be equal. An odd constant keeps the low bits random and mixes all bits into the top.
pub(crate) const TABLE_HASH_MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// How a store hashes `(pubkey, key)` and work hashes for its tables. The hash is only a fast
/// filter: equality is always checked on the full bytes, so any function is correct.
pub trait RecordHasher {
    /// Hash of a record's identity.
    fn record_hash(pubkey: &[u8; 32], key: &[u8]) -> u64;
    /// Hash of a work hash.
    fn work_hash(work: &[u8; 32]) -> u64;
}

/// The node's hasher: the routing hash ([`record_hash`]) and xxh64 of the work.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteHasher;

impl RecordHasher for RouteHasher {
    #[inline]
    fn record_hash(pubkey: &[u8; 32], key: &[u8]) -> u64 {
        record_hash(pubkey, key)
    }

    #[inline]
    fn work_hash(work: &[u8; 32]) -> u64 {
        xxhash_rust::xxh64::xxh64(work, 0)
    }
}

/// A store's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Byte budget of this shard, counted with [`record_cost_bytes`].
    pub capacity_bytes: usize,
    /// Records expire `ttl_ms` after their `time` (the reference: 365 days). Must be positive.
    pub ttl_ms: i64,
    /// This node's ID: records of owners XOR-closer to it are kept longer.
    pub node_id: u64,
}

/// Why a record was not stored. Each is counted, never logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Byte-identical to the held record.
    Duplicate,
    /// The held version wins ([`compare_versions`]).
    Older,
    /// Another `(pubkey, key)` already holds this work hash.
    WorkReused,
    /// Does not fit, and everything it would have to evict ranks at or above it (or the budget
    /// is smaller than the record).
    TooLowPriority,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Refusal::Duplicate => "duplicate of the held record",
            Refusal::Older => "older than the held record",
            Refusal::WorkReused => "work hash already used by another record",
            Refusal::TooLowPriority => "store full of records with higher priority",
        })
    }
}

impl std::error::Error for Refusal {}

/// What an accepted insert changed.
#[derive(Debug, Default)]
pub struct Inserted {
    /// The older version of the same `(pubkey, key)`, now gone.
    pub replaced: Option<Record>,
    /// Records evicted to make room, lowest rank first (log them as deletions).
    pub evicted: Vec<Record>,
}

/// What a tick removed.
#[derive(Debug, Default)]
pub struct PruneReport {
    /// The expired records, now gone.
    pub expired: Vec<Record>,
    /// Budget bytes they freed.
    pub bytes_freed: usize,
}

/// What an accepted write will do, decided before anything changes.
struct Plan {
    held: Option<u32>,
    victims: Vec<u32>,
}

/// The records of one shard. See the module docs.
#[derive(Debug)]
pub struct Store<H: RecordHasher = RouteHasher> {
    config: StoreConfig,
    /// The records, by slot (the tables and the order name slots).
    slab: RecordSlab,
    /// The maintenance state of the copy in each slot (`route::maintain`), beside `slots`;
    /// empty unless [`MaintainedStore::track_copies`](crate::shard::maintain::MaintainedStore::track_copies) was called.
    copies: CopyBook,
    /// Slot of each record, hashed by `(pubkey, key)`.
    by_key: HashTable<u32>,
    /// Slot of each record, hashed by work.
    by_work: HashTable<u32>,
    /// Eviction order.
    order: EvictionOrder,
    /// Sum of [`record_cost_bytes`] over the records; at most `config.capacity_bytes`.
    bytes_used: usize,
    /// Sum of the records' dat lengths (what a backup log of them holds, minus framing).
    dat_bytes: usize,
    /// The last `now_ms` given to `insert` or `tick`: what `precheck` judges expiry by.
    last_now_ms: i64,
    hasher: PhantomData<fn() -> H>,
}

impl Store {
    /// An empty store with the node's hasher.
    ///
    /// Panics if `ttl_ms` is not positive or the budget could hold more than 2^32 records
    /// (configuration errors, checked once at start).
    pub fn new(config: StoreConfig) -> Store {
        Store::with_hasher(config)
    }
}

impl<H: RecordHasher> Store<H> {
    /// An empty store hashing with `H` (tests use colliding hashers).
    pub fn with_hasher(config: StoreConfig) -> Store<H> {
        assert!(config.ttl_ms > 0, "ttl_ms must be positive");
        assert!(
            config.capacity_bytes / MIN_RECORD_COST_BYTES <= MAX_SLOTS,
            "capacity_bytes allows more records than u32 slot indices"
        );
        Store {
            config,
            slab: RecordSlab::new(),
            copies: CopyBook::default(),
            by_key: HashTable::new(),
            by_work: HashTable::new(),
            order: EvictionOrder::new(config.ttl_ms),
            bytes_used: 0,
            dat_bytes: 0,
            last_now_ms: i64::MIN,
            hasher: PhantomData,
        }
    }

    /// The settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Budget bytes in use (sum of [`record_cost_bytes`]).
    pub fn bytes_used(&self) -> usize {
        self.bytes_used
    }

    /// Sum of the held records' dat lengths in bytes (the backup's live size, minus framing).
    pub fn dat_bytes(&self) -> usize {
        self.dat_bytes
    }

    /// The record of `(pubkey, key)`.
    pub fn get(&self, pubkey: &[u8; 32], key: &[u8]) -> Option<RecordView<'_>> {
        let slot = self.find_key(pubkey, key)?;
        Some(self.record(slot))
    }

    /// Every record, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = RecordView<'_>> {
        self.slab.iter().map(Dat::new_unchecked)
    }

    /// Bytes the arena's segments take, and bytes of live entries in them (records and their
    /// headers): what the records cost in memory, and how much of it holds records.
    pub fn arena_bytes(&self) -> (usize, usize) {
        self.slab.arena_bytes()
    }

    /// Slots in the slab, free ones included: the end of a cursor walk. Never decreases.
    pub fn slot_count(&self) -> usize {
        self.slab.slot_count()
    }

    /// The record in `slot`, if the slot is in use. Slots are stable (a record keeps its slot
    /// until it is removed), so a slot index is a cursor that survives inserts and removals
    /// between calls: a walk from 0 to [`Store::slot_count`] sees every record held throughout.
    pub fn record_in_slot(&self, slot: usize) -> Option<RecordView<'_>> {
        self.slab.get(slot).map(Dat::new_unchecked)
    }

    /// The copy states of the slab (`shard::maintain::MaintainedStore` reads and sets them).
    pub fn copy_book(&self) -> &CopyBook {
        &self.copies
    }

    /// The copy states of the slab, to change.
    pub fn copy_book_mut(&mut self) -> &mut CopyBook {
        &mut self.copies
    }

    /// Someone stored the held record of `(pubkey, key)` again (a duplicate PUT): restarts its
    /// copy's clock ([`crate::route::maintain::CopyState::restored`]). Returns whether it is held.
    pub fn restored(&mut self, pubkey: &[u8; 32], key: &[u8]) -> bool {
        let Some(slot) = self.find_key(pubkey, key) else {
            return false;
        };
        self.copies.restored(slot as usize);
        true
    }

    /// The held record of `(pubkey, key)` came from a sender that placed it one hop: its copy
    /// is due for a republish lookup at once
    /// ([`crate::route::maintain::Standing::Unplaced`]). Returns whether it is held.
    pub fn unplaced(&mut self, pubkey: &[u8; 32], key: &[u8]) -> bool {
        let Some(slot) = self.find_key(pubkey, key) else {
            return false;
        };
        self.copies.unplaced(slot as usize);
        true
    }

    /// Removes and returns the record in `slot` (a copy that aged out).
    pub fn remove_slot(&mut self, slot: usize) -> Option<Record> {
        self.record_in_slot(slot)?;
        Some(self.take_slot(slot as u32))
    }

    /// The cheap checks, before the signature is verified: version, work reuse, budget.
    ///
    /// Expiry is judged at the last `now_ms` given to [`Store::insert`] or [`Store::tick`] (the
    /// owner ticks a store that holds records every second, so this lags by at most that).
    pub fn precheck(&self, dat: &Dat<&[u8]>) -> Result<(), Refusal> {
        self.plan(dat, self.last_now_ms).map(|_| ())
    }

    /// Stores a record (its work and signature already verified, or trusted from the backup).
    pub fn insert(&mut self, dat: Record, now_ms: i64) -> Result<Inserted, Refusal> {
        self.last_now_ms = now_ms;
        let plan = self.plan(&dat.as_view(), now_ms)?;
        let replaced = plan.held.map(|slot| self.take_slot(slot));
        let evicted: Vec<Record> = plan
            .victims
            .iter()
            .map(|&slot| self.take_slot(slot))
            .collect();
        self.add(&dat);
        assert!(self.bytes_used <= self.config.capacity_bytes);
        Ok(Inserted { replaced, evicted })
    }

    /// Removes and returns the record of `(pubkey, key)`.
    pub fn remove(&mut self, pubkey: &[u8; 32], key: &[u8]) -> Option<Record> {
        let slot = self.find_key(pubkey, key)?;
        Some(self.take_slot(slot))
    }

    /// Removes every record expired at `now_ms` (`time_ms + ttl_ms <= now_ms`).
    pub fn tick(&mut self, now_ms: i64) -> PruneReport {
        self.last_now_ms = now_ms;
        let mut slots = Vec::new();
        self.order.expired_slots(now_ms, &mut slots);
        let bytes_before = self.bytes_used;
        let expired: Vec<Record> = slots.iter().map(|&slot| self.take_slot(slot)).collect();
        PruneReport {
            expired,
            bytes_freed: bytes_before - self.bytes_used,
        }
    }

    /// Decides a write without changing anything.
    fn plan(&self, dat: &Dat<&[u8]>, now_ms: i64) -> Result<Plan, Refusal> {
        let held = self.find_key(dat.pubkey(), dat.key());
        let mut held_cost_bytes = 0;
        if let Some(slot) = held {
            let held_record = self.record(slot);
            match compare_versions(dat, &held_record) {
                Version::Newer => {}
                Version::Same => return Err(Refusal::Duplicate),
                Version::Older => return Err(Refusal::Older),
            }
            held_cost_bytes = record_cost_bytes(held_record.len());
        }
        if let Some(slot) = self.find_work(dat.work())
            && Some(slot) != held
        {
            return Err(Refusal::WorkReused);
        }
        let cost_bytes = record_cost_bytes(dat.len());
        let used_after_bytes = self.bytes_used - held_cost_bytes + cost_bytes;
        if used_after_bytes <= self.config.capacity_bytes {
            return Ok(Plan {
                held,
                victims: Vec::new(),
            });
        }
        let need_bytes = used_after_bytes - self.config.capacity_bytes;
        // The candidate ranks as if held; its slot is not yet known and not compared (see
        // `rank_at_or_above`: it loses ties to records already held).
        let candidate = self.order.rank(&self.placement(dat, 0), now_ms);
        let mut victims = Vec::new();
        let mut freed_bytes = 0;
        for (placement, rank) in self.order.ascending(now_ms) {
            let slot = placement.key.slot();
            if Some(slot) == held {
                continue;
            }
            if rank_at_or_above(&rank, &candidate) {
                return Err(Refusal::TooLowPriority);
            }
            victims.push(slot);
            freed_bytes += record_cost_bytes(self.record(slot).len());
            if freed_bytes >= need_bytes {
                assert!(victims.len() <= MAX_EVICTIONS_PER_INSERT);
                return Ok(Plan { held, victims });
            }
        }
        Err(Refusal::TooLowPriority)
    }

    /// The record in an occupied slot. Panics if the slot is free: the indexes and the order
    /// only ever name occupied slots.
    fn record(&self, slot: u32) -> RecordView<'_> {
        match self.slab.get(slot as usize) {
            Some(bytes) => Dat::new_unchecked(bytes),
            None => panic!("index names free slot {slot}"),
        }
    }

    fn find_key(&self, pubkey: &[u8; 32], key: &[u8]) -> Option<u32> {
        let hash = table_hash(H::record_hash(pubkey, key));
        self.by_key
            .find(hash, |&slot| {
                let record = self.record(slot);
                record.pubkey() == pubkey && record.key() == key
            })
            .copied()
    }

    fn find_work(&self, work: &[u8; 32]) -> Option<u32> {
        let hash = H::work_hash(work);
        self.by_work
            .find(hash, |&slot| self.record(slot).work() == work)
            .copied()
    }

    /// The order entry of a record (about to be) held in `slot`.
    fn placement<T: AsRef<[u8]>>(&self, dat: &Dat<T>, slot: u32) -> Placement {
        let distance = id_from_pubkey(dat.pubkey()) ^ self.config.node_id;
        let work = dat.work();
        let work_tail = u32::from_le_bytes([work[28], work[29], work[30], work[31]]);
        Placement {
            closeness: distance.leading_zeros() as u8,
            key: OrderKey::new(
                dat.time_ms().saturating_add(self.config.ttl_ms),
                work_tail,
                slot,
            ),
        }
    }

    /// Puts a record into a slot and every index. The caller made room.
    fn add(&mut self, dat: &Record) {
        let slot = self.slab.insert(dat.as_bytes());
        let placement = self.placement(dat, slot);
        let key_hash = table_hash(H::record_hash(dat.pubkey(), dat.key()));
        let work_hash = H::work_hash(dat.work());
        self.bytes_used += record_cost_bytes(dat.len());
        self.dat_bytes += dat.len();
        self.copies.stored(slot as usize);
        let slab = &self.slab;
        let view = |s: u32| slab.get(s as usize).map(Dat::new_unchecked);
        let slot_key_hash = |&s: &u32| match view(s) {
            Some(r) => table_hash(H::record_hash(r.pubkey(), r.key())),
            None => 0,
        };
        let slot_work_hash = |&s: &u32| match view(s) {
            Some(r) => H::work_hash(r.work()),
            None => 0,
        };
        self.by_key.insert_unique(key_hash, slot, slot_key_hash);
        self.by_work.insert_unique(work_hash, slot, slot_work_hash);
        let added = self.order.insert(placement);
        assert!(added, "order entry of slot {slot} already present");
    }

    /// Takes a record out of its slot and every index.
    fn take_slot(&mut self, slot: u32) -> Record {
        let dat: Record = match self.slab.remove(slot) {
            Some(bytes) => Dat::new_unchecked(bytes),
            None => panic!("taking free slot {slot}"),
        };
        let key_hash = table_hash(H::record_hash(dat.pubkey(), dat.key()));
        let work_hash = H::work_hash(dat.work());
        let in_by_key = self
            .by_key
            .find_entry(key_hash, |&s| s == slot)
            .map(|e| e.remove());
        let in_by_work = self
            .by_work
            .find_entry(work_hash, |&s| s == slot)
            .map(|e| e.remove());
        assert!(in_by_key.is_ok(), "slot {slot} missing from by_key");
        assert!(in_by_work.is_ok(), "slot {slot} missing from by_work");
        let removed = self.order.remove(&self.placement(&dat, slot));
        assert!(removed, "slot {slot} missing from the order");
        self.bytes_used -= record_cost_bytes(dat.len());
        self.dat_bytes -= dat.len();
        dat
    }
}

/// True if `rank` would be evicted no earlier than `candidate` (ties, by slot aside, count as at
/// or above: the held record keeps its place).
fn rank_at_or_above(rank: &Rank, candidate: &Rank) -> bool {
    (rank.live, rank.priority, rank.work_tail)
        >= (candidate.live, candidate.priority, candidate.work_tail)
}

#[inline]
fn table_hash(record_hash: u64) -> u64 {
    record_hash.wrapping_mul(TABLE_HASH_MIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;
    use crate::pow::make_dat_single;
    use crate::wire::DatFields;

    const TTL_MS: i64 = 6400;
    const NODE_ID: u64 = 0;

    /// A record with an owner ID, a work hash made from `work_seed` (not a valid proof: the
    /// store does not verify), and a fake signature.
    fn dat(owner_id: u64, key: &[u8], value: &[u8], time_ms: i64, work_seed: u64) -> Record {
        let pubkey = owner(owner_id);
        let mut work = [0u8; 32];
        work[..8].copy_from_slice(&work_seed.to_le_bytes());
        work[28..].copy_from_slice(&(work_seed as u32).to_le_bytes());
        DatFields {
            time_ms,
            salt: [1; 16],
            work,
            sig: [2; 64],
            pubkey,
            key,
            value,
        }
        .to_dat()
    }

    /// A public key whose ID is `owner_id`.
    fn owner(owner_id: u64) -> [u8; 32] {
        let mut pubkey = [0u8; 32];
        pubkey[..8].copy_from_slice(&owner_id.to_le_bytes());
        pubkey
    }

    fn store(capacity_bytes: usize) -> Store {
        Store::new(StoreConfig {
            capacity_bytes,
            ttl_ms: TTL_MS,
            node_id: NODE_ID,
        })
    }

    /// Budget for exactly `n` records with 1-byte keys and empty values.
    fn room_for(n: usize) -> usize {
        n * record_cost_bytes(DAT_HEADER_LEN + 1)
    }

    #[test]
    fn a_record_costs_its_entry_its_garbage_allowance_and_the_structures() {
        // 271-byte dat (16-byte key, 100-byte value): 277-byte entry, 40 B garbage allowance.
        assert_eq!(record_cost_bytes(271), 277 + 40 + RECORD_OVERHEAD_BYTES);
        assert_eq!(MIN_RECORD_COST_BYTES, 161 + 23 + RECORD_OVERHEAD_BYTES);
    }

    #[test]
    fn signed_records_round_trip() {
        let owner = Keypair::from_seed(&[7; 32]);
        let a = make_dat_single(&owner, b"alpha", b"one", 1000, 4);
        let b = make_dat_single(&owner, b"beta", b"two", 1000, 4);
        let mut s = store(room_for(100));
        assert!(s.precheck(&a.as_view()).is_ok());
        let inserted = s.insert(a.clone(), 1000).expect("fits");
        assert!(inserted.replaced.is_none() && inserted.evicted.is_empty());
        s.insert(b.clone(), 1000).expect("fits");
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.bytes_used(),
            record_cost_bytes(a.len()) + record_cost_bytes(b.len())
        );
        assert_eq!(s.get(&owner.public(), b"alpha"), Some(a.as_view()));
        assert_eq!(s.get(&owner.public(), b"beta"), Some(b.as_view()));
        assert_eq!(s.get(&owner.public(), b"gamma"), None);
        assert_eq!(s.iter().count(), 2);
        assert_eq!(s.remove(&owner.public(), b"alpha"), Some(a));
        assert_eq!(s.remove(&owner.public(), b"alpha"), None);
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes_used(), record_cost_bytes(b.len()));
    }

    #[test]
    fn versions_newer_replaces_older_and_same_are_refused() {
        let mut s = store(room_for(100));
        let v1 = dat(1, b"k", b"one", 1000, 10);
        let v2 = dat(1, b"k", b"two", 2000, 11);
        s.insert(v1.clone(), 2000).expect("fits");
        assert_eq!(s.precheck(&v1.as_view()), Err(Refusal::Duplicate));
        assert_eq!(s.insert(v1.clone(), 2000).err(), Some(Refusal::Duplicate));
        let inserted = s.insert(v2.clone(), 2000).expect("newer");
        assert_eq!(inserted.replaced, Some(v1.clone()));
        assert_eq!(s.precheck(&v1.as_view()), Err(Refusal::Older));
        assert_eq!(s.insert(v1, 2000).err(), Some(Refusal::Older));
        assert_eq!(
            s.get(
                &[
                    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0
                ],
                b"k"
            ),
            Some(v2.as_view())
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn equal_time_goes_to_the_smaller_work() {
        let mut s = store(room_for(100));
        let high = dat(1, b"k", b"a", 1000, 20);
        let low = dat(1, b"k", b"b", 1000, 5);
        s.insert(high.clone(), 1000).expect("fits");
        let inserted = s.insert(low.clone(), 1000).expect("smaller work wins");
        assert_eq!(inserted.replaced, Some(high.clone()));
        assert_eq!(s.insert(high, 1000).err(), Some(Refusal::Older));
    }

    #[test]
    fn work_reused_by_another_key_is_refused() {
        let mut s = store(room_for(100));
        s.insert(dat(1, b"k", b"v", 1000, 42), 1000).expect("fits");
        let thief = dat(2, b"k", b"v", 1000, 42);
        assert_eq!(s.precheck(&thief.as_view()), Err(Refusal::WorkReused));
        assert_eq!(s.insert(thief, 1000).err(), Some(Refusal::WorkReused));
        let other_key = dat(1, b"j", b"v", 1000, 42);
        assert_eq!(s.insert(other_key, 1000).err(), Some(Refusal::WorkReused));
        // The same key may keep its work in a newer version (bytes differ, work equal).
        let same_key = dat(1, b"k", b"v", 2000, 42);
        assert!(s.insert(same_key, 2000).is_ok());
        // Once the holder is gone, the work is free again.
        assert!(s.remove(&owner(1), b"k").is_some());
        assert!(s.insert(dat(2, b"k", b"v", 1000, 42), 2000).is_ok());
    }

    /// Every record collides: one probe chain, full comparisons decide.
    struct Colliding;

    impl RecordHasher for Colliding {
        fn record_hash(_: &[u8; 32], _: &[u8]) -> u64 {
            7
        }
        fn work_hash(_: &[u8; 32]) -> u64 {
            7
        }
    }

    #[test]
    fn colliding_hashes_are_stored_side_by_side() {
        let mut s: Store<Colliding> = Store::with_hasher(StoreConfig {
            capacity_bytes: room_for(100),
            ttl_ms: TTL_MS,
            node_id: NODE_ID,
        });
        let records: Vec<Record> = (0..20u64)
            .map(|i| dat(i % 4, &[i as u8 / 4], b"v", 1000, i + 1))
            .collect();
        for r in &records {
            s.insert(r.clone(), 1000).expect("fits");
        }
        for r in &records {
            assert_eq!(s.get(r.pubkey(), r.key()), Some(r.as_view()));
        }
        assert_eq!(
            s.remove(records[5].pubkey(), records[5].key()),
            Some(records[5].clone())
        );
        assert_eq!(s.get(records[5].pubkey(), records[5].key()), None);
        for (i, r) in records.iter().enumerate().filter(|(i, _)| *i != 5) {
            assert_eq!(s.get(r.pubkey(), r.key()), Some(r.as_view()), "record {i}");
        }
        let thief = dat(9, b"x", b"v", 1000, 3);
        assert_eq!(s.insert(thief, 1000).err(), Some(Refusal::WorkReused));
    }

    #[test]
    fn copy_states_are_kept_only_when_tracked_and_restamped_by_a_restore() {
        use crate::route::maintain::Standing;
        use crate::shard::maintain::MaintainedStore;
        let mut s = store(room_for(8));
        s.insert(dat(1, b"a", b"", 10, 1), 10).expect("insert");
        assert_eq!(s.copy_in_slot(0), None, "not tracked: no memory spent");
        s.set_copy_clock(5_000);
        s.track_copies();
        let copy = s.copy_in_slot(0).expect("tracked");
        assert_eq!((copy.stamp_s(), copy.standing()), (5, Standing::Holder));
        s.set_copy_clock(9_000);
        s.insert(dat(2, b"b", b"", 10, 2), 10).expect("insert");
        assert_eq!(s.copy_in_slot(1).map(|c| c.stamp_s()), Some(9));
        // A duplicate re-store restarts the clock of the copy it repeats.
        s.set_copy_clock(12_000);
        assert!(s.restored(&owner(1), b"a"));
        assert_eq!(s.copy_in_slot(0).map(|c| c.stamp_s()), Some(12));
        assert!(!s.restored(&owner(3), b"a"));
        // An aged-out copy is removed by slot; the slot reads empty.
        assert!(s.remove_slot(0).is_some());
        assert_eq!((s.copy_in_slot(0), s.len()), (None, 1));
        assert!(s.remove_slot(0).is_none());
    }

    #[test]
    fn full_store_evicts_the_lowest_priority_or_refuses() {
        let mut s = store(room_for(3));
        // Far owner (closeness 0) is lowest; equal times.
        let far = dat(u64::MAX, b"a", b"", 1000, 1);
        let mid = dat(1 << 40, b"b", b"", 1000, 2);
        let near = dat(1, b"c", b"", 1000, 3);
        for r in [&far, &mid, &near] {
            s.insert(r.clone(), 1000).expect("fits");
        }
        assert_eq!(s.bytes_used(), s.config().capacity_bytes);
        // Another far record, same age, larger work tail: it ranks above `far` and evicts it.
        let far2 = dat(u64::MAX - 1, b"d", b"", 1000, 4);
        let inserted = s.insert(far2.clone(), 1000).expect("evicts far");
        assert_eq!(inserted.evicted, vec![far.clone()]);
        // An older far record ranks lowest: refused, nothing changes.
        let old_far = dat(u64::MAX, b"e", b"", 900, 5);
        assert_eq!(s.precheck(&old_far.as_view()), Err(Refusal::TooLowPriority));
        assert_eq!(s.insert(old_far, 1000).err(), Some(Refusal::TooLowPriority));
        assert_eq!(s.len(), 3);
        assert!(s.get(far2.pubkey(), b"d").is_some());
        // A record bigger than the budget is refused.
        let huge = dat(NODE_ID, b"h", &[0; 1000], 5000, 6);
        assert_eq!(s.insert(huge, 1000).err(), Some(Refusal::TooLowPriority));
    }

    #[test]
    fn closeness_outweighs_age_by_ttl_over_64_per_bit() {
        // ttl 6400 → 100 ms per bit. Owner 1<<62 has closeness 1, owner 1 has 63.
        let mut s = store(room_for(1));
        let young_far = dat(1 << 62, b"a", b"", 5000, 1);
        s.insert(young_far.clone(), 5000).expect("fits");
        // 62 bits closer is worth 6200 ms: a close record 6000 ms older still wins.
        let old_close = dat(1, b"b", b"", -1000, 2);
        let inserted = s.insert(old_close.clone(), 5000).expect("closer wins");
        assert_eq!(inserted.evicted, vec![young_far.clone()]);
        // ... but not one 6300 ms older than the far one.
        let mut s = store(room_for(1));
        s.insert(young_far, 5000).expect("fits");
        let older_close = dat(1, b"b", b"", -1300, 2);
        assert_eq!(
            s.insert(older_close, 5000).err(),
            Some(Refusal::TooLowPriority)
        );
    }

    #[test]
    fn expired_records_go_first_even_if_close() {
        let mut s = store(room_for(2));
        let expired_close = dat(NODE_ID, b"a", b"", 0, 1);
        let live_far = dat(u64::MAX, b"b", b"", 5000, 2);
        s.insert(expired_close.clone(), 0).expect("fits");
        s.insert(live_far.clone(), 5000).expect("fits");
        // At 6400 the close record (expiry 6400) is expired; a far newcomer evicts it.
        let newcomer = dat(u64::MAX, b"c", b"", 6000, 3);
        let inserted = s.insert(newcomer, 6400).expect("expired goes first");
        assert_eq!(inserted.evicted, vec![expired_close]);
        assert!(s.get(live_far.pubkey(), b"b").is_some());
    }

    #[test]
    fn replacement_frees_the_held_record_first() {
        let mut s = store(room_for(2));
        let a = dat(1, b"a", b"", 1000, 1);
        let b = dat(2, b"b", b"", 1000, 2);
        s.insert(a.clone(), 1000).expect("fits");
        s.insert(b.clone(), 1000).expect("fits");
        let a2 = dat(1, b"a", b"", 2000, 3);
        let inserted = s.insert(a2, 2000).expect("same size replaces");
        assert_eq!(inserted.replaced, Some(a));
        assert!(inserted.evicted.is_empty());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn tick_removes_exactly_the_expired() {
        let mut s = store(room_for(10));
        let records: Vec<Record> = (0..6u64)
            .map(|i| dat(i * 1000, &[i as u8], b"", i as i64 * 1000, i + 1))
            .collect();
        for r in &records {
            s.insert(r.clone(), 0).expect("fits");
        }
        // Expiry of record i is i*1000 + 6400: at 8400, records 0, 1, 2 are expired.
        let report = s.tick(8400);
        let mut expired = report.expired.clone();
        expired.sort_by_key(|r| r.time_ms());
        assert_eq!(expired, records[..3].to_vec());
        assert_eq!(report.bytes_freed, 3 * record_cost_bytes(records[0].len()));
        assert_eq!(s.len(), 3);
        assert!(s.tick(8400).expired.is_empty());
        // Slots are reused.
        for r in &records[..3] {
            s.insert(r.clone(), 0).expect("fits again");
        }
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let mut s = store(room_for(4));
        for (i, t) in [i64::MIN, i64::MAX, -1, 0].into_iter().enumerate() {
            let r = dat(i as u64, b"k", b"", t, i as u64 + 1);
            let _ = s.precheck(&r.as_view());
            let _ = s.insert(r, t);
        }
        let _ = s.tick(i64::MIN);
        let _ = s.tick(i64::MAX);
        assert!(s.len() <= 4);
        let r = dat(9, b"z", b"", i64::MAX, 99);
        let _ = s.insert(r, i64::MIN);
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let mut s = store(0);
        let r = dat(1, b"k", b"", 0, 1);
        assert_eq!(s.precheck(&r.as_view()), Err(Refusal::TooLowPriority));
        assert_eq!(s.insert(r, 0).err(), Some(Refusal::TooLowPriority));
        assert!(s.is_empty());
    }
}
