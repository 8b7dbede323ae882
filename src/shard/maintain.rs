//! The holder's walk of replica maintenance by lookup ([`crate::route::maintain`]) over one
//! owner's stores, written once for the v1 records (`shard::group`) and the v2 records
//! (`shard::group2`).
//!
//! On each periodic tick the walk visits a bounded number of slots from its cursor (local shard,
//! slot): a copy that ages out is removed (its driver logs the deletion), a copy due for a
//! republish asks the [`Maintainer`] for a lookup of its owner ID (the driver sends the lookups
//! it returns, the node's peer thread or the world runs them). An answer ([`MaintainWalk::answer`])
//! is carried out at the next step: the waiting copies are pushed, as the store's own PUT
//! datagram ([`RepairStore::emit_put`]: PUT for v1, PUT2 for v2), to the replica set found, as
//! far as the node-wide repair pacer allows, and each copy's standing is recorded.

use std::net::SocketAddr;

use parking_lot::RwLock;

use crate::outbox::Outbox;
use crate::peer::budget::Pacer;
use crate::route::Contact;
use crate::route::maintain::{
    Ask, CopyBook, CopyState, MaintainConfig, MaintainStats, Maintainer, Placement,
};
use crate::shard::repair::RepairStore;

/// A store whose copies are maintained by lookup: the repair walk's view of the slab plus the
/// per-slot copy states ([`CopyBook`], kept beside the slab once [`MaintainedStore::track_copies`]
/// is called). Implemented by the v1 `Store` and the v2 `Store2`; the copy-state methods are
/// written once, here.
pub trait MaintainedStore: RepairStore {
    /// The slab's copy states.
    fn copy_book(&self) -> &CopyBook;
    /// The slab's copy states, to change.
    fn copy_book_mut(&mut self) -> &mut CopyBook;
    /// Removes and returns the record in `slot`.
    fn remove_slot(&mut self, slot: usize) -> Option<Self::Record>;

    /// Keeps a copy state per slot from now on: 4 bytes per slot. Records already held are
    /// stamped as stored now (the clock of [`MaintainedStore::set_copy_clock`]).
    fn track_copies(&mut self) {
        let slots = self.slot_count();
        self.copy_book_mut().track(slots);
    }

    /// Sets the monotonic clock (ms) new and re-stored copies are stamped with; the owner sets
    /// it before each batch that may store (maintenance measures a copy's age by it).
    fn set_copy_clock(&mut self, now_ms: u64) {
        self.copy_book_mut().set_clock(now_ms);
    }

    /// The maintenance state of the copy in `slot`, if the slot is in use and copies are tracked.
    fn copy_in_slot(&self, slot: usize) -> Option<CopyState> {
        self.record_in_slot(slot)?;
        self.copy_book().get(slot)
    }

    /// Replaces the state of the copy in `slot` (no-op for a free slot).
    fn set_copy(&mut self, slot: usize, copy: CopyState) {
        if self.record_in_slot(slot).is_some() {
            self.copy_book_mut().set(slot, copy);
        }
    }
}

impl MaintainedStore for crate::shard::store::Store {
    fn copy_book(&self) -> &CopyBook {
        crate::shard::store::Store::copy_book(self)
    }
    fn copy_book_mut(&mut self) -> &mut CopyBook {
        crate::shard::store::Store::copy_book_mut(self)
    }
    fn remove_slot(&mut self, slot: usize) -> Option<Self::Record> {
        crate::shard::store::Store::remove_slot(self, slot)
    }
}

impl MaintainedStore for crate::shard::store2::Store2 {
    fn copy_book(&self) -> &CopyBook {
        crate::shard::store2::Store2::copy_book(self)
    }
    fn copy_book_mut(&mut self) -> &mut CopyBook {
        crate::shard::store2::Store2::copy_book_mut(self)
    }
    fn remove_slot(&mut self, slot: usize) -> Option<Self::Record> {
        crate::shard::store2::Store2::remove_slot(self, slot)
    }
}

/// A copy as the walk names it to the [`Maintainer`]: (local shard, slot).
pub type CopyRef = (u16, u32);

/// What one [`MaintainWalk::step`] did, for the driver's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkTally {
    /// Copies that aged out (removed).
    pub aged_out: u64,
    /// Due copies handled from a recent answer (no lookup).
    pub cache_hits: u64,
    /// Lookups asked for (in the step's `lookups`).
    pub lookups_started: u64,
    /// Asks or pushes refused by the pacing or the bounds (the copy is met again later).
    pub paced: u64,
    /// PUT datagrams pushed.
    pub datagrams_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
}

/// One holder's maintenance walk. See the module docs.
pub struct MaintainWalk {
    maintainer: Maintainer<CopyRef>,
    /// The cursor: local shard and slot.
    shard: usize,
    slot: usize,
    /// Answers to carry out at the next step (at most `MAX_LOOKUPS_IN_FLIGHT`: one per lookup
    /// in flight).
    answered: Vec<(u64, Placement, Vec<CopyRef>)>,
}

impl MaintainWalk {
    /// The walk of the holder `own_id` (its node ID), starting at `now_ms`.
    pub fn new(config: MaintainConfig, own_id: u64, now_ms: u64) -> MaintainWalk {
        MaintainWalk {
            maintainer: Maintainer::new(config, own_id, now_ms),
            shard: 0,
            slot: 0,
            answered: Vec::new(),
        }
    }

    /// The maintainer's counters.
    pub fn stats(&self) -> MaintainStats {
        self.maintainer.stats()
    }

    /// A lookup of `target` ended (`None`: it could not run). An answer for a lookup this walk
    /// did not ask for (the other record kind's, or one after its timeout) is ignored.
    pub fn answer(&mut self, now_ms: u64, target: u64, closest: Option<&[Contact]>) {
        if let Some((placement, waiting)) = self.maintainer.answer(now_ms, target, closest) {
            self.answered.push((target, placement, waiting));
        }
    }

    /// Carries out the answers that came in, then (when `periodic`) walks up to `scan_budget`
    /// slots of `shards` from the cursor. Lookups to start are appended to `lookups`, datagrams
    /// to `outbox`; each aged-out record goes to `aged_out` (for the backup log), and each push
    /// to `pushed` (local shard, receiver, record: v1 samples them as storage challenges, as it
    /// samples every PUT it sends).
    #[allow(clippy::too_many_arguments)]
    pub fn step<T, S: MaintainedStore>(
        &mut self,
        now_ms: u64,
        periodic: bool,
        shards: &[T],
        store_of: impl Fn(&T) -> &RwLock<S>,
        scan_budget: usize,
        pacer: &mut Pacer,
        outbox: &mut Outbox,
        lookups: &mut Vec<u64>,
        mut aged_out: impl FnMut(S::Record),
        mut pushed: impl FnMut(usize, SocketAddr, S::View<'_>),
    ) -> WalkTally {
        let mut tally = WalkTally::default();
        for (target, placement, waiting) in std::mem::take(&mut self.answered) {
            for (s, slot) in waiting {
                let Some(shard) = shards.get(usize::from(s)) else {
                    continue;
                };
                let mut store = store_of(shard).write();
                let slot = slot as usize;
                if store.record_in_slot(slot).map(S::owner_id) == Some(target) {
                    let at = (usize::from(s), slot);
                    push_copy(
                        now_ms,
                        &mut *store,
                        at,
                        &placement,
                        pacer,
                        outbox,
                        &mut tally,
                        &mut pushed,
                    );
                }
            }
        }
        if !periodic || shards.is_empty() {
            return tally;
        }
        // Copies that waited on a forgotten lookup are unchanged: this walk meets them again.
        let _forgotten = self.maintainer.expire(now_ms);
        let expire_after_ms = self.maintainer.config().expire_after_ms;
        let n = shards.len();
        let mut budget = scan_budget;
        // Each shard's slab is walked once per round at most; a round ends where it started.
        let mut shards_left = n + 1;
        'walk: while budget > 0 && shards_left > 0 {
            let s = self.shard % n;
            let mut store = store_of(&shards[s]).write();
            let slots = store.slot_count();
            while self.slot < slots {
                if budget == 0 {
                    break 'walk;
                }
                budget -= 1;
                let slot = self.slot;
                let Some(copy) = store.copy_in_slot(slot) else {
                    self.slot += 1;
                    continue;
                };
                if copy.ages_out(now_ms, expire_after_ms) {
                    if let Some(gone) = store.remove_slot(slot) {
                        tally.aged_out += 1;
                        aged_out(gone);
                    }
                    self.slot += 1;
                    continue;
                }
                let Some(owner) = store.record_in_slot(slot).map(S::owner_id) else {
                    self.slot += 1;
                    continue;
                };
                if !copy.republish_due(now_ms, self.maintainer.republish_after_ms(owner)) {
                    self.slot += 1;
                    continue;
                }
                match self.maintainer.ask(now_ms, owner, (s as u16, slot as u32)) {
                    Ask::Answered(placement) => {
                        tally.cache_hits += 1;
                        let placement = placement.clone();
                        push_copy(
                            now_ms,
                            &mut *store,
                            (s, slot),
                            &placement,
                            pacer,
                            outbox,
                            &mut tally,
                            &mut pushed,
                        );
                    }
                    Ask::Start => {
                        tally.lookups_started += 1;
                        lookups.push(owner);
                    }
                    Ask::Waiting => {}
                    Ask::Paced => {
                        // Resume at this copy on the next tick.
                        tally.paced += 1;
                        break 'walk;
                    }
                }
                self.slot += 1;
            }
            self.shard = (s + 1) % n;
            self.slot = 0;
            shards_left -= 1;
        }
        tally
    }
}

/// Pushes the copy in (local `shard`, `slot`) to `placement.push_to` (as far as `pacer` allows: a copy not sent
/// stays due and is met again) and records where this node stands for it.
#[allow(clippy::too_many_arguments)]
fn push_copy<S: MaintainedStore>(
    now_ms: u64,
    store: &mut S,
    (shard, slot): (usize, usize),
    placement: &Placement,
    pacer: &mut Pacer,
    outbox: &mut Outbox,
    tally: &mut WalkTally,
    pushed: &mut impl FnMut(usize, SocketAddr, S::View<'_>),
) {
    let Some(record) = store.record_in_slot(slot) else {
        return;
    };
    let mut buf = [0u8; crate::shard::repair::MAX_REPAIR_DATAGRAM_LEN];
    let len = S::emit_put(record, &mut buf);
    let bytes = len as u64 * placement.push_to.len() as u64;
    if !pacer.try_take(now_ms, bytes) {
        tally.paced += 1;
        return;
    }
    for &to in &placement.push_to {
        outbox.push_bytes(to, &buf[..len]);
        pushed(shard, to, record);
    }
    tally.datagrams_sent += placement.push_to.len() as u64;
    tally.bytes_sent += bytes;
    if let Some(copy) = store.copy_in_slot(slot) {
        store.set_copy(slot, copy.answered(now_ms, placement));
    }
}
