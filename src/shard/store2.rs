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
//! before the candidate; otherwise it is refused (`Refused`, counted). Expiry: `time + ttl`.

use std::collections::{BTreeSet, HashMap};

use crate::route::maintain::CopyBook;
use crate::shard::store::record_cost_bytes;
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
    /// Where each held record is in `slots`.
    index: HashMap<RecordId2, usize>,
    /// The slab: `None` for free slots. A held record never moves, so a repair pass walks it
    /// with a stable cursor (as it walks the v1 store).
    slots: Vec<Option<Record2>>,
    /// Free slots, reused last-freed first.
    free_slots: Vec<usize>,
    /// `(expiry_ms, id)`: expiry and eviction order.
    expiry: BTreeSet<(i64, RecordId2)>,
    bytes_used: usize,
    /// Sum of the records' wire lengths (what their backup entries hold).
    dat_bytes: usize,
    /// The maintenance state of the copy in each slot (`route::maintain`), beside `slots`;
    /// empty unless [`MaintainedStore::track_copies`](crate::shard::maintain::MaintainedStore::track_copies) was called.
    copies: CopyBook,
}

fn id_of<T: AsRef<[u8]>>(dat: &Dat2<T>) -> RecordId2 {
    (*dat.pubkey(), dat.key().into())
}

impl Store2 {
    /// An empty store. Panics if `ttl_ms` is not positive (a configuration error).
    pub fn new(config: Store2Config) -> Store2 {
        assert!(config.ttl_ms > 0, "ttl_ms must be positive");
        Store2 {
            config,
            index: HashMap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
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
        self.index.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Budget bytes in use.
    pub fn bytes_used(&self) -> usize {
        self.bytes_used
    }

    /// Sum of the records' wire lengths.
    pub fn dat_bytes(&self) -> usize {
        self.dat_bytes
    }

    /// Every record (no particular order).
    pub fn iter(&self) -> impl Iterator<Item = &Record2> {
        self.slots.iter().flatten()
    }

    /// The record of `(pubkey, key)`.
    pub fn get(&self, pubkey: &[u8; 32], key: &[u8]) -> Option<&Record2> {
        // A lookup key without allocating would need the raw-entry API; a GET allocates one
        // key copy here (v2 traffic is small next to v1's).
        let slot = *self.index.get(&(*pubkey, Box::<[u8]>::from(key)))?;
        self.slots[slot].as_ref()
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
            self.get(candidate.pubkey(), candidate.key()),
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
            Status2::Stored => self.put(record, now_ms),
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
        self.put(record, now_ms)
    }

    fn expiry_ms<T: AsRef<[u8]>>(&self, dat: &Dat2<T>) -> i64 {
        dat.time_ms().saturating_add(self.config.ttl_ms)
    }

    fn put(&mut self, record: Record2, now_ms: i64) -> Result<Inserted2, Status2> {
        let id = id_of(&record);
        let expiry_ms = self.expiry_ms(&record);
        if expiry_ms <= now_ms {
            return Err(Status2::Refused);
        }
        let held_cost = self
            .held(&id)
            .map_or(0, |held| record_cost_bytes(held.len()));
        let cost = record_cost_bytes(record.len());
        let mut need =
            (self.bytes_used - held_cost + cost).saturating_sub(self.config.capacity_bytes);
        let mut victims = Vec::new();
        if need > 0 {
            for (victim_expiry, victim) in &self.expiry {
                if *victim == id {
                    continue;
                }
                if *victim_expiry >= expiry_ms || victims.len() == MAX_EVICTIONS2_PER_INSERT {
                    return Err(Status2::Refused);
                }
                victims.push(victim.clone());
                let freed = record_cost_bytes(self.held(victim).map_or(0, |r| r.len()));
                need = need.saturating_sub(freed);
                if need == 0 {
                    break;
                }
            }
            if need > 0 {
                return Err(Status2::Refused);
            }
        }
        let evicted = victims.iter().filter_map(|v| self.take(v)).collect();
        let replaced = self.take(&id);
        self.bytes_used += cost;
        self.dat_bytes += record.len();
        self.expiry.insert((expiry_ms, id.clone()));
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(record);
                slot
            }
            None => {
                self.slots.push(Some(record));
                self.slots.len() - 1
            }
        };
        self.index.insert(id, slot);
        self.copies.stored(slot);
        assert!(self.bytes_used <= self.config.capacity_bytes);
        Ok(Inserted2 { replaced, evicted })
    }

    fn held(&self, id: &RecordId2) -> Option<&Record2> {
        self.slots[*self.index.get(id)?].as_ref()
    }

    /// Slots in the slab, free ones included: the end of a cursor walk. Never decreases.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The record in `slot`, if any. Slots never move: a walk from 0 to
    /// [`Store2::slot_count`] sees every record held throughout.
    pub fn record_in_slot(&self, slot: usize) -> Option<&Record2> {
        self.slots.get(slot)?.as_ref()
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
        let Some(&slot) = self.index.get(&(*pubkey, Box::<[u8]>::from(key))) else {
            return false;
        };
        self.copies.restored(slot);
        true
    }

    /// Removes and returns the record in `slot` (a copy that aged out).
    pub fn remove_slot(&mut self, slot: usize) -> Option<Record2> {
        let record = self.slots.get(slot)?.as_ref()?;
        let id = id_of(record);
        self.take(&id)
    }

    fn take(&mut self, id: &RecordId2) -> Option<Record2> {
        let slot = self.index.remove(id)?;
        let record = self.slots[slot].take()?;
        self.free_slots.push(slot);
        let expiry_ms = self.expiry_ms(&record);
        let removed = self.expiry.remove(&(expiry_ms, id.clone()));
        assert!(removed, "expiry order out of step with the records");
        self.bytes_used -= record_cost_bytes(record.len());
        self.dat_bytes -= record.len();
        Some(record)
    }

    /// Removes and returns the record of `(pubkey, key)`.
    pub fn remove(&mut self, pubkey: &[u8; 32], key: &[u8]) -> Option<Record2> {
        self.take(&(*pubkey, key.into()))
    }

    /// Removes every record expired at `now_ms`.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Record2> {
        let mut due = Vec::new();
        for (expiry_ms, id) in &self.expiry {
            if *expiry_ms > now_ms {
                break;
            }
            due.push(id.clone());
        }
        due.iter().filter_map(|id| self.take(id)).collect()
    }
}

impl crate::shard::repair::RepairStore for Store2 {
    type Record = Record2;
    type View<'a> = &'a Record2;
    fn is_empty(&self) -> bool {
        Store2::is_empty(self)
    }
    fn slot_count(&self) -> usize {
        Store2::slot_count(self)
    }
    fn record_in_slot(&self, slot: usize) -> Option<&Record2> {
        Store2::record_in_slot(self, slot)
    }
    fn owner_id(record: &Record2) -> u64 {
        record.owner_id()
    }
    /// A PUT2 (op 0x18): only ever sent to peers that advertise RECORD_V2.
    fn emit_put(record: &Record2, buf: &mut [u8]) -> usize {
        crate::wire::record2::Message2::Put2(record.as_view()).emit(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::record2::Dat2Fields;

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
}
