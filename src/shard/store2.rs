//! The v2 records of one shard, and the v2 replacement rule ([`decide2`]). I/O-free and
//! clock-free: `now_ms` is always an argument.
//!
//! # Replacement rule (one pure function, [`decide2`])
//!
//! Against the held record of the same `(pubkey, key)`, in this order:
//!
//! 1. nothing held: stored (a compare-and-swap does not block a replica that missed the earlier
//!    writes: the quorum decides, see `shard::core2`);
//! 2. byte-identical: a duplicate (a retried put succeeds);
//! 3. compare-and-swap with an expected seq other than the held one: refused (`CasMismatch`);
//! 4. higher seq: replaces; lower seq: refused (`Older`);
//! 5. equal seq, other bytes: refused (`Conflict`, first come wins), unless the candidate carries
//!    the owner's commit signature (it won a compare-and-swap at a majority of replicas), which
//!    replaces the equal-seq loser.
//!
//! v2 work is bound to the owner and the exact record, so the v1 rule "one record per work hash"
//! is not needed: no other record can verify with the same work.
//!
//! # Budget
//!
//! Records cost [`record_cost_bytes`] like v1 records, against a budget of their own. When a
//! record does not fit, the records that expire first are evicted, but only those expiring
//! before the candidate (ties by slot); otherwise it is refused (`Refused`, counted). Expiry:
//! `time + ttl`.
//!
//! # Layout
//!
//! As the v1 store's: the wire bytes in the shard's own arena (`shard::arena`), an 8-byte
//! `Place` per slot, one `hashbrown` table of `u32` slots hashed by `(pubkey, key)`, and the
//! expiry order as `(expiry_ms, slot)` entries. Measured (`shard_memory --v2 1`, 1 M records of
//! 16-byte keys and 100-byte values): 340.5 B per record, 0.84 of what the budget charges (406 B);
//! the store it replaces (records boxed, identities copied into a `HashMap` and a `BTreeSet`)
//! took 576 B, 1.42x its budget.

use std::collections::BTreeSet;

use hashbrown::HashTable;

use crate::route::maintain::CopyBook;
use crate::shard::arena::{self, RecordSlab};
use crate::shard::route::record_hash;
use crate::shard::store::{TABLE_HASH_MIX, record_cost_bytes};
use crate::wire::record2::{Dat2, MAX_DAT2_LEN, Record2, Status2};

/// A record's identity: (owner public key, key).
pub type RecordId2 = ([u8; 32], Box<[u8]>);

/// Most records one insert evicts: a full-size record frees at least the cheapest record's cost
/// per victim.
pub const MAX_EVICTIONS2_PER_INSERT: usize = record_cost_bytes(MAX_DAT2_LEN)
    .div_ceil(record_cost_bytes(crate::wire::record2::DAT2_HEADER_LEN));

const _: () = assert!(MAX_EVICTIONS2_PER_INSERT <= 16);

/// Decides what a replica does with `candidate` given what it holds (see the module docs).
/// `Status2::Stored` means: write it.
pub fn decide2<A: AsRef<[u8]>, B: AsRef<[u8]>>(
    held: Option<&Dat2<A>>,
    candidate: &Dat2<B>,
    expect_seq: Option<u64>,
    committed: bool,
) -> Status2 {
    let Some(held) = held else {
        return Status2::Stored;
    };
    if held.as_bytes() == candidate.as_bytes() {
        return Status2::Duplicate;
    }
    if expect_seq.is_some_and(|expected| expected != held.seq()) {
        return Status2::CasMismatch;
    }
    match candidate.seq().cmp(&held.seq()) {
        core::cmp::Ordering::Greater => Status2::Stored,
        core::cmp::Ordering::Less => Status2::Older,
        core::cmp::Ordering::Equal if committed => Status2::Stored,
        core::cmp::Ordering::Equal => Status2::Conflict,
    }
}

/// Settings of a v2 store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Store2Config {
    /// Byte budget, counted with [`record_cost_bytes`].
    pub capacity_bytes: usize,
    /// Records expire `ttl_ms` after their time. Must be positive.
    pub ttl_ms: i64,
}

/// What an accepted insert changed.
#[derive(Debug, Default)]
pub struct Inserted2 {
    /// The replaced version, now gone.
    pub replaced: Option<Record2>,
    /// Records evicted to make room (log them as deletions).
    pub evicted: Vec<Record2>,
}

/// The v2 records of one shard.
#[derive(Debug)]
pub struct Store2 {
    config: Store2Config,
    /// Slot of each held record, hashed by `(pubkey, key)` (the routing hash, mixed); lookups
    /// compare the full identity.
    index: HashTable<u32>,
    /// The records by slot, their bytes in this shard's own segments (`shard::arena`, as v1
    /// records). A held record keeps its slot, so a repair pass walks it with a stable cursor
    /// (as it walks the v1 store).
    slab: RecordSlab,
    /// `(expiry_ms, slot)`: expiry and eviction order (ties by slot).
    expiry: BTreeSet<(i64, u32)>,
    bytes_used: usize,
    /// Sum of the records' wire lengths (what their backup entries hold).
    dat_bytes: usize,
    /// The maintenance state of the copy in each slot (`route::maintain`), beside `slots`;
    /// empty unless [`MaintainedStore::track_copies`](crate::shard::maintain::MaintainedStore::track_copies) was called.
    copies: CopyBook,
}

/// A held v2 record, borrowed from its store.
pub type Record2View<'a> = Dat2<&'a [u8]>;

const _: () = assert!(MAX_DAT2_LEN <= arena::MAX_RECORD_BYTES);

#[inline]
fn index_hash(pubkey: &[u8; 32], key: &[u8]) -> u64 {
    // Every record of a shard shares the routing hash's top 8 bits, and hashbrown takes its tag
    // from the top bits: mix, as the v1 store does.
    record_hash(pubkey, key).wrapping_mul(TABLE_HASH_MIX)
}

impl Store2 {
    /// An empty store. Panics if `ttl_ms` is not positive (a configuration error).
    pub fn new(config: Store2Config) -> Store2 {
        assert!(config.ttl_ms > 0, "ttl_ms must be positive");
        Store2 {
            config,
            index: HashTable::new(),
            slab: RecordSlab::new(),
            expiry: BTreeSet::new(),
            bytes_used: 0,
            dat_bytes: 0,
            copies: CopyBook::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Store2Config {
        &self.config
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    /// Budget bytes in use.
    pub fn bytes_used(&self) -> usize {
        self.bytes_used
    }

    /// Sum of the records' wire lengths.
    pub fn dat_bytes(&self) -> usize {
        self.dat_bytes
    }

    /// Every record, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = Record2View<'_>> {
        self.slab.iter().map(Dat2::new_unchecked)
    }

    /// The record of `(pubkey, key)`.
    pub fn get(&self, pubkey: &[u8; 32], key: &[u8]) -> Option<Record2View<'_>> {
        Some(self.record(self.find(pubkey, key)?))
    }

    /// What [`Store2::insert`] would answer, without changing anything (run before the
    /// signature is verified, so a refused record costs no signature check).
    pub fn check<T: AsRef<[u8]>>(
        &self,
        candidate: &Dat2<T>,
        expect_seq: Option<u64>,
        committed: bool,
    ) -> Status2 {
        decide2(
            self.get(candidate.pubkey(), candidate.key()).as_ref(),
            candidate,
            expect_seq,
            committed,
        )
    }

    /// Stores a verified record under the replacement rule. `Err` carries the refusal.
    pub fn insert(
        &mut self,
        record: Record2,
        expect_seq: Option<u64>,
        committed: bool,
        now_ms: i64,
    ) -> Result<Inserted2, Status2> {
        match self.check(&record, expect_seq, committed) {
            Status2::Stored => self.put(&record, now_ms),
            refusal => Err(refusal),
        }
    }

    /// Restores a record from the backup log: the log is this node's own decisions in order, so
    /// a later entry replaces an earlier one of the same or a lower seq.
    pub fn restore(&mut self, record: Record2, now_ms: i64) -> Result<Inserted2, Status2> {
        if let Some(held) = self.get(record.pubkey(), record.key())
            && held.seq() > record.seq()
        {
            return Err(Status2::Older);
        }
        self.put(&record, now_ms)
    }

    fn expiry_ms<T: AsRef<[u8]>>(&self, dat: &Dat2<T>) -> i64 {
        dat.time_ms().saturating_add(self.config.ttl_ms)
    }

    fn put(&mut self, record: &Record2, now_ms: i64) -> Result<Inserted2, Status2> {
        let expiry_ms = self.expiry_ms(record);
        if expiry_ms <= now_ms {
            return Err(Status2::Refused);
        }
        let held = self.find(record.pubkey(), record.key());
        let held_cost = held.map_or(0, |slot| record_cost_bytes(self.record(slot).len()));
        let cost = record_cost_bytes(record.len());
        let mut need =
            (self.bytes_used - held_cost + cost).saturating_sub(self.config.capacity_bytes);
        let mut victims = Vec::new();
        if need > 0 {
            for &(victim_expiry, victim) in &self.expiry {
                if Some(victim) == held {
                    continue;
                }
                if victim_expiry >= expiry_ms || victims.len() == MAX_EVICTIONS2_PER_INSERT {
                    return Err(Status2::Refused);
                }
                victims.push(victim);
                need = need.saturating_sub(record_cost_bytes(self.record(victim).len()));
                if need == 0 {
                    break;
                }
            }
            if need > 0 {
                return Err(Status2::Refused);
            }
        }
        let evicted = victims.iter().map(|&slot| self.take(slot)).collect();
        let replaced = held.map(|slot| self.take(slot));
        self.add(record, expiry_ms);
        assert!(self.bytes_used <= self.config.capacity_bytes);
        Ok(Inserted2 { replaced, evicted })
    }

    /// Puts a record into a slot, the arena, the index and the order. The caller made room.
    fn add(&mut self, record: &Record2, expiry_ms: i64) {
        let slot = self.slab.insert(record.as_bytes());
        self.bytes_used += record_cost_bytes(record.len());
        self.dat_bytes += record.len();
        let slab = &self.slab;
        let rehash = |&s: &u32| match slab.get(s as usize) {
            Some(bytes) => {
                let held = Dat2::new_unchecked(bytes);
                index_hash(held.pubkey(), held.key())
            }
            None => 0,
        };
        self.index
            .insert_unique(index_hash(record.pubkey(), record.key()), slot, rehash);
        let added = self.expiry.insert((expiry_ms, slot));
        assert!(added, "expiry entry of slot {slot} already present");
        self.copies.stored(slot as usize);
    }

    /// The record in an occupied slot. Panics if the slot is free: the index and the order only
    /// ever name occupied slots.
    fn record(&self, slot: u32) -> Record2View<'_> {
        match self.slab.get(slot as usize) {
            Some(bytes) => Dat2::new_unchecked(bytes),
            None => panic!("index names free slot {slot}"),
        }
    }

    fn find(&self, pubkey: &[u8; 32], key: &[u8]) -> Option<u32> {
        self.index
            .find(index_hash(pubkey, key), |&slot| {
                let held = self.record(slot);
                held.pubkey() == pubkey && held.key() == key
            })
            .copied()
    }

    /// Slots in the slab, free ones included: the end of a cursor walk. Never decreases.
    pub fn slot_count(&self) -> usize {
        self.slab.slot_count()
    }

    /// The record in `slot`, if any. Slots never change: a walk from 0 to
    /// [`Store2::slot_count`] sees every record held throughout.
    pub fn record_in_slot(&self, slot: usize) -> Option<Record2View<'_>> {
        self.slab.get(slot).map(Dat2::new_unchecked)
    }

    /// The copy states of the slab (`shard::maintain::MaintainedStore` reads and sets them).
    pub fn copy_book(&self) -> &CopyBook {
        &self.copies
    }

    /// The copy states of the slab, to change.
    pub fn copy_book_mut(&mut self) -> &mut CopyBook {
        &mut self.copies
    }

    /// Someone stored the held record of `(pubkey, key)` again, byte for byte (a duplicate
    /// PUT2): restarts its copy's clock ([`crate::route::maintain::CopyState::restored`]). Returns whether it is held.
    pub fn restored(&mut self, pubkey: &[u8; 32], key: &[u8]) -> bool {
        let Some(slot) = self.find(pubkey, key) else {
            return false;
        };
        self.copies.restored(slot as usize);
        true
    }

    /// Removes and returns the record in `slot` (a copy that aged out).
    pub fn remove_slot(&mut self, slot: usize) -> Option<Record2> {
        self.record_in_slot(slot)?;
        Some(self.take(slot as u32))
    }

    /// Takes the record in an occupied slot out of the slab, the arena, the index and the order.
    fn take(&mut self, slot: u32) -> Record2 {
        let record: Record2 = match self.slab.remove(slot) {
            Some(bytes) => Dat2::new_unchecked(bytes),
            None => panic!("taking free slot {slot}"),
        };
        let in_index = self
            .index
            .find_entry(index_hash(record.pubkey(), record.key()), |&s| s == slot)
            .map(|entry| entry.remove());
        assert!(in_index.is_ok(), "slot {slot} missing from the index");
        let removed = self.expiry.remove(&(self.expiry_ms(&record), slot));
        assert!(removed, "expiry order out of step with the records");
        self.bytes_used -= record_cost_bytes(record.len());
        self.dat_bytes -= record.len();
        record
    }

    /// Removes and returns the record of `(pubkey, key)`.
    pub fn remove(&mut self, pubkey: &[u8; 32], key: &[u8]) -> Option<Record2> {
        let slot = self.find(pubkey, key)?;
        Some(self.take(slot))
    }

    /// Removes every record expired at `now_ms`.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Record2> {
        let due: Vec<u32> = self
            .expiry
            .iter()
            .take_while(|&&(expiry_ms, _)| expiry_ms <= now_ms)
            .map(|&(_, slot)| slot)
            .collect();
        due.into_iter().map(|slot| self.take(slot)).collect()
    }
}

impl crate::shard::repair::RepairStore for Store2 {
    type Record = Record2;
    type View<'a> = Record2View<'a>;
    fn is_empty(&self) -> bool {
        Store2::is_empty(self)
    }
    fn slot_count(&self) -> usize {
        Store2::slot_count(self)
    }
    fn record_in_slot(&self, slot: usize) -> Option<Record2View<'_>> {
        Store2::record_in_slot(self, slot)
    }
    fn owner_id(record: Record2View<'_>) -> u64 {
        record.owner_id()
    }
    /// A PUT2 (op 0x18): only ever sent to peers that advertise RECORD_V2.
    fn emit_put(record: Record2View<'_>, buf: &mut [u8]) -> usize {
        crate::wire::record2::Message2::Put2(record).emit(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::record2::{DAT2_HEADER_LEN, Dat2Fields};

    fn rec(key: &[u8], value: &[u8], seq: u64, time_ms: i64) -> Record2 {
        Dat2Fields {
            time_ms,
            seq,
            salt: [0; 16],
            work: [seq as u8; 32],
            sig: [0; 64],
            pubkey: [1; 32],
            key,
            value,
        }
        .to_record()
    }

    #[test]
    fn records_keep_their_slot_and_freed_slots_are_reused() {
        let mut store = Store2::new(Store2Config {
            capacity_bytes: 1 << 20,
            ttl_ms: 1_000,
        });
        for k in [b"a", b"b", b"c"] {
            store
                .insert(rec(k, b"v", 1, 10), None, false, 0)
                .expect("insert");
        }
        assert_eq!(store.slot_count(), 3);
        let slot_of = |store: &Store2, k: &[u8]| {
            (0..store.slot_count()).find(|&s| store.record_in_slot(s).is_some_and(|r| r.key() == k))
        };
        let c = slot_of(&store, b"c");
        // A replacement stays in the slab; a removal frees its slot and moves nothing else.
        store
            .insert(rec(b"b", b"w", 2, 10), None, false, 0)
            .expect("replace");
        assert!(store.remove(&[1; 32], b"a").is_some());
        assert_eq!(slot_of(&store, b"c"), c);
        assert_eq!(store.len(), 2);
        assert_eq!(store.iter().count(), 2);
        store
            .insert(rec(b"d", b"v", 1, 10), None, false, 0)
            .expect("insert");
        assert_eq!(store.slot_count(), 3, "a freed slot is reused");
        assert_eq!(store.get(&[1; 32], b"b").map(|r| r.seq()), Some(2));
        assert_eq!(store.tick(2_000).len(), 3);
        assert!(store.is_empty() && (0..3).all(|s| store.record_in_slot(s).is_none()));
    }

    #[test]
    fn the_rule_in_every_case() {
        let held = rec(b"k", b"a", 5, 10);
        let none: Option<&Record2> = None;
        assert_eq!(decide2(none, &held, None, false), Status2::Stored);
        assert_eq!(decide2(none, &held, Some(4), false), Status2::Stored);
        assert_eq!(decide2(Some(&held), &held, None, false), Status2::Duplicate);
        assert_eq!(
            decide2(Some(&held), &held, Some(1), false),
            Status2::Duplicate
        );
        let higher = rec(b"k", b"b", 6, 10);
        assert_eq!(decide2(Some(&held), &higher, None, false), Status2::Stored);
        assert_eq!(
            decide2(Some(&held), &higher, Some(5), false),
            Status2::Stored
        );
        assert_eq!(
            decide2(Some(&held), &higher, Some(4), false),
            Status2::CasMismatch
        );
        let lower = rec(b"k", b"b", 4, 10);
        assert_eq!(decide2(Some(&held), &lower, None, false), Status2::Older);
        assert_eq!(decide2(Some(&held), &lower, None, true), Status2::Older);
        let rival = rec(b"k", b"c", 5, 10);
        assert_eq!(decide2(Some(&held), &rival, None, false), Status2::Conflict);
        assert_eq!(
            decide2(Some(&held), &rival, Some(4), false),
            Status2::CasMismatch
        );
        assert_eq!(decide2(Some(&held), &rival, None, true), Status2::Stored);
        // Higher seq wins even with an older time: seq, not time, orders v2 versions.
        let higher_but_earlier = rec(b"k", b"d", 9, 1);
        assert_eq!(
            decide2(Some(&held), &higher_but_earlier, None, false),
            Status2::Stored
        );
    }

    #[test]
    fn insert_replaces_and_keeps_the_budget() {
        let cost = record_cost_bytes(rec(b"k", b"a", 1, 10).len());
        let mut store = Store2::new(Store2Config {
            capacity_bytes: 2 * cost,
            ttl_ms: 1_000,
        });
        assert!(
            store
                .insert(rec(b"k", b"a", 1, 10), None, false, 20)
                .is_ok()
        );
        assert_eq!(
            store.insert(rec(b"k", b"b", 1, 10), None, false, 20).err(),
            Some(Status2::Conflict)
        );
        let inserted = store
            .insert(rec(b"k", b"b", 2, 10), None, false, 20)
            .unwrap();
        assert_eq!(inserted.replaced.unwrap().value(), b"a");
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes_used(), cost);
        assert!(
            store
                .insert(rec(b"j", b"x", 1, 11), None, false, 20)
                .is_ok()
        );
        // Full: a record expiring later evicts the one expiring first.
        let inserted = store
            .insert(rec(b"i", b"y", 1, 12), None, false, 20)
            .unwrap();
        assert_eq!(inserted.evicted.len(), 1);
        assert_eq!(inserted.evicted[0].key(), b"k");
        // One expiring before everything held is refused.
        assert_eq!(
            store.insert(rec(b"h", b"z", 1, 5), None, false, 20).err(),
            Some(Status2::Refused)
        );
        assert_eq!(store.tick(1_011).len(), 1);
        assert_eq!(store.len(), 1);
        assert!(store.bytes_used() <= store.config().capacity_bytes);
    }

    #[test]
    fn restore_replays_the_log_in_order() {
        let mut store = Store2::new(Store2Config {
            capacity_bytes: 1 << 20,
            ttl_ms: 1_000,
        });
        store.restore(rec(b"k", b"a", 3, 10), 20).unwrap();
        // The log says this node later took the committed equal-seq winner.
        store.restore(rec(b"k", b"b", 3, 10), 20).unwrap();
        assert_eq!(store.get(&[1; 32], b"k").unwrap().value(), b"b");
        assert!(store.restore(rec(b"k", b"c", 2, 10), 20).is_err());
    }

    /// Random inserts, replacements, removals and expiries into a store small enough to evict
    /// and to compact its arena: the store holds exactly what its answers said (every record it
    /// stored, minus what it reported replaced, evicted, removed or expired), each readable by
    /// its identity and by its slot, with the budget's counters equal to the sums over them.
    #[test]
    fn the_store_holds_exactly_what_it_reported() {
        use std::collections::HashMap;

        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        for seed in 0..6 {
            let mut rng = StdRng::seed_from_u64(seed);
            let ttl_ms = 10_000;
            let capacity_bytes = 40 * record_cost_bytes(DAT2_HEADER_LEN + 120);
            let mut store = Store2::new(Store2Config {
                capacity_bytes,
                ttl_ms,
            });
            // What the store should hold, by identity.
            let mut held: HashMap<([u8; 32], Vec<u8>), Record2> = HashMap::new();
            let forget = |held: &mut HashMap<([u8; 32], Vec<u8>), Record2>, r: &Record2| {
                let gone = held.remove(&(*r.pubkey(), r.key().to_vec()));
                assert_eq!(gone.as_ref(), Some(r), "reported gone but not held");
            };
            let mut now_ms = 0i64;
            for step in 0..3000u64 {
                now_ms += rng.gen_range(0..20);
                let key = [rng.gen_range(0..60u8)];
                let pubkey = [rng.gen_range(1..4u8); 32];
                match rng.gen_range(0..10) {
                    0 => {
                        let removed = store.remove(&pubkey, &key);
                        if let Some(r) = &removed {
                            forget(&mut held, r);
                        }
                        assert!(!held.contains_key(&(pubkey, key.to_vec())));
                    }
                    1 => {
                        for r in store.tick(now_ms) {
                            assert!(r.time_ms() + ttl_ms <= now_ms);
                            forget(&mut held, &r);
                        }
                    }
                    _ => {
                        let value = vec![step as u8; rng.gen_range(0..200)];
                        let record = Dat2Fields {
                            time_ms: now_ms - rng.gen_range(0..ttl_ms / 2),
                            seq: rng.gen_range(0..8),
                            salt: [0; 16],
                            work: [step as u8; 32],
                            sig: [0; 64],
                            pubkey,
                            key: &key,
                            value: &value,
                        }
                        .to_record();
                        if let Ok(inserted) = store.insert(record.clone(), None, false, now_ms) {
                            for r in inserted.evicted.iter().chain(&inserted.replaced) {
                                forget(&mut held, r);
                            }
                            held.insert((pubkey, key.to_vec()), record);
                        }
                    }
                }
                assert_eq!(store.len(), held.len(), "seed {seed} step {step}");
                for (id, r) in &held {
                    assert_eq!(store.get(&id.0, &id.1), Some(r.as_view()));
                }
                let by_slot: Vec<Record2View<'_>> = (0..store.slot_count())
                    .filter_map(|s| store.record_in_slot(s))
                    .collect();
                assert_eq!(by_slot.len(), held.len());
                let cost: usize = by_slot.iter().map(|r| record_cost_bytes(r.len())).sum();
                let bytes: usize = by_slot.iter().map(|r| r.len()).sum();
                assert_eq!(store.bytes_used(), cost);
                assert_eq!(store.dat_bytes(), bytes);
                assert!(store.bytes_used() <= capacity_bytes);
            }
        }
    }
}
