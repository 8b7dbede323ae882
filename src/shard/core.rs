//! The I/O-free shard core: what a shard-owner thread does with PUTs, GETs and GET_ACKs, and with
//! local puts and gets. Time is an argument; effects (datagrams, backup entries, completed gets)
//! are values the caller carries out. The simulator drives the same code.
//!
//! The store sits behind a `parking_lot::RwLock` so receiver threads can answer GETs from the
//! shard's read view; this core's owner thread is the only writer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::keys::id_from_pubkey;
use crate::outbox::Outbox;
use crate::pow::{SignatureCheck, check_work, verify_signatures};
use crate::shard::store::{Inserted, Refusal, Store};
use crate::shard::{Version, compare_versions};
use crate::stats::{Counters, inc, verify_error_index};
use crate::wire::{Dat, DatFields, GetRepr, Message};

/// A stored record.
pub type Record = Dat<Box<[u8]>>;

/// Picks replica targets: the `n` active peers XOR-closest to `target_id`, never `exclude`.
pub trait PeerView {
    /// Appends up to `n` addresses to `out`, closest first.
    fn closest(
        &self,
        target_id: u64,
        n: usize,
        exclude: Option<SocketAddr>,
        out: &mut Vec<SocketAddr>,
    );
}

/// Rules the core applies (a subset of the node's `Config`).
#[derive(Debug, Clone, Copy)]
pub struct ShardRules {
    /// Leading zero bits a received dat needs.
    pub min_work_bits: u32,
    /// Replicas per PUT, peers per GET.
    pub fanout: usize,
    /// Single or batched signature checks.
    pub signature_check: SignatureCheck,
    /// After the first valid answer to a local get, wait at most this long for the others.
    pub get_settle_ms: u64,
}

/// What the backup log must record.
#[derive(Debug)]
pub enum BackupOp {
    /// A stored record (new or newer).
    Put(Record),
    /// A record evicted or expired: it must stay gone after a restart.
    Delete {
        /// Owner.
        pubkey: [u8; 32],
        /// Key.
        key: Box<[u8]>,
        /// Time of the removed version.
        time_ms: i64,
    },
}

/// How a local get ended.
#[derive(Debug)]
pub enum GetOutcome {
    /// The newest valid record found.
    Found(Record),
    /// Every asked peer said "not found" (or there was nobody to ask).
    NotFound,
    /// The deadline passed with no valid answer.
    TimedOut,
}

/// Effects of one call, reused across calls.
#[derive(Debug)]
pub struct Effects<W> {
    /// Datagrams to send.
    pub outbox: Outbox,
    /// Entries for the backup log.
    pub backup: Vec<BackupOp>,
    /// Local gets that ended.
    pub completions: Vec<(W, GetOutcome)>,
}

impl<W> Default for Effects<W> {
    fn default() -> Self {
        Effects {
            outbox: Outbox::new(),
            backup: Vec::new(),
            completions: Vec::new(),
        }
    }
}

impl<W> Effects<W> {
    /// Empties every list, keeping the memory.
    pub fn clear(&mut self) {
        self.outbox.clear();
        self.backup.clear();
        self.completions.clear();
    }
}

/// A local get waiting for answers.
struct PendingGet<W> {
    waiters: Vec<W>,
    /// Peers asked and not yet answered.
    awaiting: Vec<SocketAddr>,
    best: Option<Record>,
    deadline_ms: u64,
}

/// A record's identity: (owner public key, key).
pub type RecordId = ([u8; 32], Box<[u8]>);

/// A local get to start.
#[derive(Debug)]
pub struct GetRequest<'a, W> {
    /// Owner public key.
    pub pubkey: [u8; 32],
    /// Key.
    pub key: &'a [u8],
    /// How long to wait for answers.
    pub timeout_ms: u64,
    /// Who to tell.
    pub waiter: W,
}

/// One shard's state and logic.
pub struct Shard<W> {
    store: Arc<RwLock<Store>>,
    rules: ShardRules,
    pending: HashMap<RecordId, PendingGet<W>>,
    /// Scratch space reused by every call.
    targets: Vec<SocketAddr>,
}

/// Largest number of local gets one shard tracks at once; more are answered `TimedOut` at once
/// (a bound on memory under a flood of local gets).
pub const MAX_PENDING_GETS: usize = 4096;

impl<W> Shard<W> {
    /// A shard around a store.
    pub fn new(store: Store, rules: ShardRules) -> Shard<W> {
        Shard {
            store: Arc::new(RwLock::new(store)),
            rules,
            pending: HashMap::new(),
            targets: Vec::new(),
        }
    }

    /// The shared store (receivers read it to answer GETs).
    pub fn store(&self) -> &Arc<RwLock<Store>> {
        &self.store
    }

    /// Puts a record from the backup log straight into the store (already trusted).
    pub fn restore(&mut self, record: Record, now_ms: i64) -> Result<Inserted, Refusal> {
        self.store.write().insert(record, now_ms)
    }

    /// Removes a record named by a backup tombstone, if the tombstone covers the held version.
    pub fn restore_delete(&mut self, tombstone: &crate::backup::Tombstone) {
        let mut store = self.store.write();
        if store
            .get(&tombstone.pubkey, &tombstone.key)
            .is_some_and(|held| tombstone.removes(held))
        {
            store.remove(&tombstone.pubkey, &tombstone.key);
        }
    }

    /// PUTs from the network: cheap checks first, then signatures (batched if configured), then
    /// store, forward and back up. `puts` is drained.
    pub fn handle_puts(
        &mut self,
        now_ms: i64,
        puts: &mut Vec<(SocketAddr, Record)>,
        peers: &dyn PeerView,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        // Cheap checks: replace rules and work, under the read lock / without locks.
        {
            let store = self.store.read();
            puts.retain(|(_, dat)| {
                inc(&counters.puts_received);
                if let Err(refusal) = store.precheck(&dat.as_view()) {
                    count_refusal(refusal, counters);
                    return false;
                }
                if let Err(e) = check_work(dat, self.rules.min_work_bits, now_ms) {
                    inc(&counters.put_invalid[verify_error_index(e)]);
                    return false;
                }
                true
            });
        }
        if puts.is_empty() {
            return;
        }
        let dats: Vec<&Record> = puts.iter().map(|(_, d)| d).collect();
        let mut ok = vec![false; dats.len()];
        verify_dats(&dats, self.rules.signature_check, &mut ok);
        for ((from, dat), ok) in puts.drain(..).zip(ok) {
            if !ok {
                inc(&counters.put_invalid
                    [verify_error_index(crate::pow::VerifyError::BadSignature)]);
                continue;
            }
            let _refused_and_counted =
                self.store_and_forward(dat, Some(from), now_ms, peers, counters, effects);
        }
    }

    /// A record made by this node (its work and signature are ours): store, replicate, back up.
    /// Returns the peers it was sent to.
    pub fn local_put(
        &mut self,
        now_ms: i64,
        dat: Record,
        peers: &dyn PeerView,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let sent_before = effects.outbox.len();
        self.store_and_forward(dat, None, now_ms, peers, counters, effects)?;
        inc(&counters.local_puts);
        Ok(effects
            .outbox
            .iter()
            .skip(sent_before)
            .map(|(to, _)| to)
            .collect())
    }

    fn store_and_forward(
        &mut self,
        dat: Record,
        from: Option<SocketAddr>,
        now_ms: i64,
        peers: &dyn PeerView,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) -> Result<(), Refusal> {
        self.targets.clear();
        peers.closest(dat.owner_id(), self.rules.fanout, from, &mut self.targets);
        for &to in &self.targets {
            effects.outbox.push(to, &Message::Put(dat.as_view()));
            inc(&counters.puts_forwarded);
        }
        let backup_copy = dat.to_boxed();
        let inserted = self.store.write().insert(dat, now_ms);
        match inserted {
            Ok(inserted) => {
                inc(&counters.puts_stored);
                effects.backup.push(BackupOp::Put(backup_copy));
                for evicted in inserted.evicted {
                    inc(&counters.records_evicted);
                    effects.backup.push(delete_op(&evicted));
                }
                Ok(())
            }
            Err(refusal) => {
                // Lost a race with another version between precheck and insert: unsend.
                let n = self.targets.len();
                effects.outbox.truncate_last(n);
                count_refusal(refusal, counters);
                Err(refusal)
            }
        }
    }

    /// A GET handed to the owner thread (the `GetPath::Owner` configuration).
    pub fn handle_get(
        &self,
        from: SocketAddr,
        get: &GetRepr<'_>,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        answer_get(&self.store.read(), from, get, counters, &mut effects.outbox);
    }

    /// Starts a local get: answers from the store, or asks the closest peers.
    pub fn start_get(
        &mut self,
        now_ms: u64,
        request: GetRequest<'_, W>,
        peers: &dyn PeerView,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        let GetRequest {
            pubkey,
            key,
            timeout_ms,
            waiter,
        } = request;
        if let Some(found) = self.store.read().get(&pubkey, key) {
            inc(&counters.local_gets_found);
            effects
                .completions
                .push((waiter, GetOutcome::Found(found.to_boxed())));
            return;
        }
        let id = (pubkey, Box::<[u8]>::from(key));
        if let Some(pending) = self.pending.get_mut(&id) {
            pending.waiters.push(waiter);
            return;
        }
        if self.pending.len() >= MAX_PENDING_GETS {
            inc(&counters.local_gets_timed_out);
            effects.completions.push((waiter, GetOutcome::TimedOut));
            return;
        }
        self.targets.clear();
        peers.closest(
            id_from_pubkey(&pubkey),
            self.rules.fanout,
            None,
            &mut self.targets,
        );
        if self.targets.is_empty() {
            inc(&counters.local_gets_not_found);
            effects.completions.push((waiter, GetOutcome::NotFound));
            return;
        }
        let get = Message::Get(GetRepr { pubkey, key });
        for &to in &self.targets {
            effects.outbox.push(to, &get);
            inc(&counters.gets_sent);
        }
        self.pending.insert(
            id,
            PendingGet {
                waiters: vec![waiter],
                awaiting: self.targets.clone(),
                best: None,
                deadline_ms: now_ms + timeout_ms,
            },
        );
    }

    /// A GET_ACK from the network: trusted only if it answers an outstanding get from a peer we
    /// asked, and verifies like a PUT. A valid record is stored (never forwarded).
    pub fn handle_get_ack(
        &mut self,
        now_ms: u64,
        wall_ms: i64,
        from: SocketAddr,
        dat: Record,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        inc(&counters.get_acks_received);
        let id = (*dat.pubkey(), Box::<[u8]>::from(dat.key()));
        let Some(pending) = self.pending.get_mut(&id) else {
            inc(&counters.get_acks_unsolicited);
            return;
        };
        let Some(at) = pending.awaiting.iter().position(|&a| a == from) else {
            inc(&counters.get_acks_unsolicited);
            return;
        };
        pending.awaiting.swap_remove(at);
        if dat.is_not_found() {
            inc(&counters.get_acks_not_found);
        } else if let Err(e) = crate::pow::verify_dat(&dat, self.rules.min_work_bits, wall_ms) {
            inc(&counters.get_ack_invalid[verify_error_index(e)]);
        } else {
            inc(&counters.get_acks_valid);
            let better = match &pending.best {
                None => true,
                Some(best) => compare_versions(&dat, best) == Version::Newer,
            };
            if better {
                pending.best = Some(dat);
                pending.deadline_ms = pending.deadline_ms.min(now_ms + self.rules.get_settle_ms);
            }
        }
        if pending.awaiting.is_empty() {
            self.finish_get(&id, wall_ms, counters, effects);
        }
    }

    /// Timers: expires records, ends local gets past their deadline.
    pub fn tick(
        &mut self,
        now_ms: u64,
        wall_ms: i64,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        let report = self.store.write().tick(wall_ms);
        for expired in &report.expired {
            inc(&counters.records_expired);
            effects.backup.push(delete_op(expired));
        }
        self.tick_gets(now_ms, wall_ms, counters, effects);
    }

    /// Ends local gets past their deadline.
    pub fn tick_gets(
        &mut self,
        now_ms: u64,
        wall_ms: i64,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        if self.pending.is_empty() {
            return;
        }
        let due: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.finish_get(&id, wall_ms, counters, effects);
        }
    }

    /// The earliest deadline of a pending get, for the owner's receive timeout.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.pending.values().map(|p| p.deadline_ms).min()
    }

    fn finish_get(
        &mut self,
        id: &RecordId,
        wall_ms: i64,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        let Some(pending) = self.pending.remove(id) else {
            return;
        };
        let outcome = match pending.best {
            Some(best) => {
                // Keep the answer: store it like a verified PUT (no forwarding).
                let copy = best.to_boxed();
                if let Ok(inserted) = self.store.write().insert(copy, wall_ms) {
                    effects.backup.push(BackupOp::Put(best.to_boxed()));
                    for evicted in inserted.evicted {
                        inc(&counters.records_evicted);
                        effects.backup.push(delete_op(&evicted));
                    }
                }
                inc(&counters.local_gets_found);
                GetOutcome::Found(best)
            }
            None if pending.awaiting.is_empty() => {
                inc(&counters.local_gets_not_found);
                GetOutcome::NotFound
            }
            None => {
                inc(&counters.local_gets_timed_out);
                GetOutcome::TimedOut
            }
        };
        let mut waiters = pending.waiters.into_iter();
        if let Some(last) = waiters.next_back() {
            for w in waiters {
                effects.completions.push((w, clone_outcome(&outcome)));
            }
            effects.completions.push((last, outcome));
        }
    }
}

fn clone_outcome(o: &GetOutcome) -> GetOutcome {
    match o {
        GetOutcome::Found(d) => GetOutcome::Found(d.to_boxed()),
        GetOutcome::NotFound => GetOutcome::NotFound,
        GetOutcome::TimedOut => GetOutcome::TimedOut,
    }
}

/// Answers a GET from a store (shared by the receiver read path and the owner path).
pub fn answer_get(
    store: &Store,
    from: SocketAddr,
    get: &GetRepr<'_>,
    counters: &Counters,
    outbox: &mut Outbox,
) {
    inc(&counters.gets_received);
    match store.get(&get.pubkey, get.key) {
        Some(dat) => {
            inc(&counters.gets_found);
            outbox.push(from, &Message::GetAck(dat.as_view()));
        }
        None => {
            inc(&counters.gets_not_found);
            let mut buf = [0u8; crate::limits::DAT_HEADER_LEN + crate::limits::MAX_KEY_LEN];
            let len = DatFields::not_found(get.pubkey, get.key).emit(&mut buf);
            outbox.push(from, &Message::GetAck(Dat::new_unchecked(&buf[..len])));
        }
    }
}

fn verify_dats(dats: &[&Record], mode: SignatureCheck, ok: &mut [bool]) {
    let views: Vec<Dat<&[u8]>> = dats.iter().map(|d| d.as_view()).collect();
    verify_signatures(&views, mode, ok);
}

fn delete_op(dat: &Record) -> BackupOp {
    BackupOp::Delete {
        pubkey: *dat.pubkey(),
        key: dat.key().into(),
        time_ms: dat.time_ms(),
    }
}

fn count_refusal(refusal: Refusal, counters: &Counters) {
    match refusal {
        Refusal::Duplicate => inc(&counters.puts_duplicate),
        Refusal::Older => inc(&counters.puts_older),
        Refusal::WorkReused => inc(&counters.puts_work_reused),
        Refusal::TooLowPriority => inc(&counters.puts_low_priority),
    }
}
