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
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::keys::{distance, id_from_pubkey};
use crate::outbox::Outbox;
use crate::peer::budget::Pacer;
use crate::peer::{ScoredPeer, TrustPolicy, choose_targets};
use crate::pow::{KeyCache, SignatureCheck, check_work, verify_signatures};
use crate::shard::challenge::{Answer, ChallengeBook, ChallengeConfig, ChallengeOutcome, Verdict};
use crate::shard::maintain::MaintainedStore;
use crate::shard::refused::{Known, REFUSED_SLOTS, RefusedCache};
use crate::shard::repair::{Repair, RepairConfig, ReplicaView};
use crate::shard::store::{Inserted, Refusal, Store};
use crate::shard::{Version, compare_versions};
use crate::stats::{Counters, add, inc, verify_error_index};
use crate::wire::{Dat, DatFields, GetRepr, Message};

pub use crate::peer::PeerView;
pub use crate::shard::store::{Record, RecordView};

/// Trust, challenge and repair settings of a shard (copied from the node's `Config`). Kept apart
/// from [`ShardRules`] so existing constructions of the rules stay valid.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ShardPolicy {
    /// How reliability steers target choice and re-propagation.
    pub trust: TrustPolicy,
    /// The storage-challenge book's bounds and timings.
    pub challenge: ChallengeConfig,
    /// Replica repair and republish.
    pub repair: RepairConfig,
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
    /// Storage challenges scored (for the peer table).
    pub challenge_outcomes: Vec<ChallengeOutcome>,
    /// Owner IDs to find the closest nodes of by a routing lookup, for replica maintenance
    /// (`route::maintain`); the answer comes back as `group::Input::LookupDone`.
    pub lookups: Vec<u64>,
}

impl<W> Default for Effects<W> {
    fn default() -> Self {
        Effects {
            outbox: Outbox::new(),
            backup: Vec::new(),
            completions: Vec::new(),
            challenge_outcomes: Vec::new(),
            lookups: Vec::new(),
        }
    }
}

impl<W> Effects<W> {
    /// Empties every list, keeping the memory.
    pub fn clear(&mut self) {
        self.outbox.clear();
        self.backup.clear();
        self.completions.clear();
        self.challenge_outcomes.clear();
        self.lookups.clear();
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
    policy: ShardPolicy,
    /// Target choice and challenge sampling. Seeded ([`Shard::with_policy`]), so a simulation
    /// replays exactly.
    rng: StdRng,
    /// Republish jitter (apart from `rng` so a repair step can sample challenges meanwhile).
    repair_rng: StdRng,
    challenges: ChallengeBook,
    repair: Repair,
    /// Scratch space reused by every call.
    targets: Vec<SocketAddr>,
    scored: Vec<ScoredPeer>,
    /// Recently refused signatures: a replayed bad PUT costs a lookup (`refused.rs`).
    refused: RefusedCache,
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
            policy: ShardPolicy::default(),
            rng: StdRng::seed_from_u64(0),
            repair_rng: StdRng::seed_from_u64(1),
            challenges: ChallengeBook::new(ChallengeConfig::default()),
            repair: Repair::new(RepairConfig::default()),
            targets: Vec::new(),
            scored: Vec::new(),
            refused: RefusedCache::new(),
        }
    }

    /// Sets the trust, challenge and repair policy and seeds the shard's RNGs and the key of its
    /// refused-signature cache (the node passes a random seed; a simulation a fixed one). Call
    /// before use and before [`Shard::refused_slots`]: it forgets challenges, repair state and
    /// refused records.
    pub fn with_policy(mut self, policy: ShardPolicy, seed: u64) -> Shard<W> {
        self.policy = policy;
        self.rng = StdRng::seed_from_u64(seed);
        self.repair_rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        self.refused = RefusedCache::keyed(REFUSED_SLOTS, seed ^ 0x5851_f42d_4c95_7f2d);
        self.challenges = ChallengeBook::new(policy.challenge);
        self.repair = Repair::new(policy.repair);
        self
    }

    /// The policy in use.
    pub fn policy(&self) -> &ShardPolicy {
        &self.policy
    }

    /// Picks up to FANOUT targets for `target_id` into `self.targets`: the `2 × FANOUT` closest
    /// active peers weighed by reliability, with exploration of unscored ones
    /// ([`choose_targets`]). Returns how many picks explored an unscored peer (for
    /// `targets_explored`, counted by the caller only when it sends).
    fn choose(
        &mut self,
        target_id: u64,
        exclude: Option<SocketAddr>,
        peers: &dyn PeerView,
    ) -> usize {
        self.targets.clear();
        self.scored.clear();
        let n = self.rules.fanout;
        peers.closest_scored(target_id, n.saturating_mul(2), exclude, &mut self.scored);
        let choice = choose_targets(
            &self.scored,
            n,
            &self.policy.trust,
            &mut self.rng,
            &mut self.targets,
        );
        choice.explored
    }

    /// Sets the clock the store stamps new and re-stored copies with (monotonic ms).
    pub fn set_copy_clock(&mut self, now_ms: u64) {
        self.store.write().set_copy_clock(now_ms);
    }

    /// The shared store (receivers read it to answer GETs).
    pub fn store(&self) -> &Arc<RwLock<Store>> {
        &self.store
    }

    /// The shard's refused-signature slots, for receivers that drop replays of records whose
    /// signature already failed here before queueing them (`RefusedSlots::knows`).
    pub fn refused_slots(&self) -> Arc<crate::shard::refused::RefusedSlots> {
        self.refused.shared()
    }

    /// Puts a record from the backup log straight into the store (already trusted).
    pub fn restore(&mut self, record: Record, now_ms: i64) -> Result<Inserted, Refusal> {
        self.store.write().insert(record, now_ms)
    }

    /// Removes the held record of `(pubkey, key)` if `removes` says so (replaying a backup
    /// tombstone: `Tombstone::removes` is the rule).
    pub fn restore_delete(
        &mut self,
        pubkey: &[u8; 32],
        key: &[u8],
        removes: impl FnOnce(&RecordView<'_>) -> bool,
    ) {
        let mut store = self.store.write();
        if store.get(pubkey, key).is_some_and(|held| removes(&held)) {
            store.remove(pubkey, key);
        }
    }

    /// PUTs from the network: [`screen_puts`] (cheap checks first, then signatures, batched if
    /// configured), then store, forward and back up. `puts` is drained.
    pub fn handle_puts(
        &mut self,
        now_ms: i64,
        puts: &mut Vec<(SocketAddr, Record)>,
        peers: &dyn PeerView,
        keys: &mut KeyCache,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        // A duplicate (the record held, re-stored unchanged) restarts its copy's clock
        // (`route::maintain`: a copy someone keeps re-storing does not age out).
        let mut restored: Vec<([u8; 32], Box<[u8]>)> = Vec::new();
        {
            let store = self.store.read();
            screen_puts(
                now_ms,
                puts,
                |dat| {
                    let checked = store.precheck(&dat.as_view());
                    if checked == Err(Refusal::Duplicate) {
                        restored.push((*dat.pubkey(), dat.key().into()));
                    }
                    checked
                },
                &mut self.refused,
                keys,
                &self.rules,
                counters,
            );
        }
        for (pubkey, key) in &restored {
            self.restored(pubkey, key);
        }
        for (from, dat) in puts.drain(..) {
            let _refused_and_counted =
                self.store_and_forward(dat, Some(from), now_ms, peers, counters, effects);
        }
    }

    /// A network PUT of a record held unchanged (a duplicate) arrived: its copy's clock restarts
    /// (`route::maintain`: a copy someone keeps re-storing does not age out). The verification
    /// stage reports the duplicates its screening refused this way.
    pub fn restored(&self, pubkey: &[u8; 32], key: &[u8]) {
        self.store.write().restored(pubkey, key);
    }

    /// A network PUT that already passed [`screen_puts`] (the node's verification stage ran it):
    /// store, forward and back up, as [`Shard::handle_puts`] does after its own screening. The
    /// store's replace rules are applied again on insert (another copy may have been stored
    /// since the screening); a refusal is counted.
    pub fn store_screened(
        &mut self,
        now_ms: i64,
        from: SocketAddr,
        dat: Record,
        peers: &dyn PeerView,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        let _refused_and_counted =
            self.store_and_forward(dat, Some(from), now_ms, peers, counters, effects);
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
        // Stored but not re-propagated when its sender is a scored, unreliable peer: a peer that
        // does not keep records should not decide where they go either.
        let unreliable_sender = from.is_some_and(|f| {
            peers
                .trust_of(f)
                .is_some_and(|t| self.policy.trust.is_unreliable(&t))
        });
        if unreliable_sender {
            self.targets.clear();
            inc(&counters.puts_not_forwarded_unreliable);
        } else {
            let explored = self.choose(dat.owner_id(), from, peers);
            add(&counters.targets_explored, explored as u64);
        }
        for &to in &self.targets {
            effects.outbox.push(to, &Message::Put(dat.as_view()));
        }
        let backup_copy = dat.to_boxed();
        let owner_id = dat.owner_id();
        let inserted = {
            let mut store = self.store.write();
            let node_id = store.config().node_id;
            let inserted = store.insert(dat, now_ms);
            let placed_one_hop = !unreliable_sender
                && from.is_some_and(|f| self.placed_one_hop(f, node_id, owner_id, peers));
            if inserted.is_ok() && placed_one_hop {
                // A lookup of the owner puts the record where dave nodes' lookups look
                // (replica maintenance, when it is on; a no-op otherwise).
                store.unplaced(backup_copy.pubkey(), backup_copy.key());
            }
            inserted
        };
        match inserted {
            Ok(inserted) => {
                inc(&counters.puts_stored);
                // Counted only now: a refused insert takes its forwards back (below).
                add(&counters.puts_forwarded, self.targets.len() as u64);
                for &to in &self.targets {
                    self.challenges
                        .remember(now_ms, to, &backup_copy, &mut self.rng);
                }
                effects.backup.push(BackupOp::Put(backup_copy));
                if !inserted.evicted.is_empty() {
                    log::debug!(
                        "shard full: {} lower-priority records evicted for a new one",
                        inserted.evicted.len()
                    );
                }
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

    /// Starts a local get. A replica (this node is among the FANOUT closest to the owner's ID,
    /// so it receives the owner's PUTs) holding the record answers from its store at once.
    /// Otherwise the closest peers are asked, as for a record not held: a copy this node holds
    /// (kept from an earlier get, or a version it put) may have been replaced since, so it only
    /// starts the get as the best answer, and the newest valid record wins (a "not found" from
    /// the peers never hides it). With nobody to ask, the held copy (if any) is the answer.
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
        let (held, node_id) = {
            let store = self.store.read();
            (
                store.get(&pubkey, key).map(|d| d.to_boxed()),
                store.config().node_id,
            )
        };
        let owner_id = id_from_pubkey(&pubkey);
        let mut explored = 0;
        if held.is_some() {
            explored = self.choose(owner_id, None, peers);
            if self.is_replica(node_id, owner_id, peers)
                && let Some(held) = held
            {
                inc(&counters.local_gets_found);
                effects.completions.push((waiter, GetOutcome::Found(held)));
                return;
            }
        }
        let id = (pubkey, Box::<[u8]>::from(key));
        if let Some(pending) = self.pending.get_mut(&id) {
            if let Some(held) = held {
                keep_newer(&mut pending.best, held);
            }
            pending.waiters.push(waiter);
            return;
        }
        if self.pending.len() >= MAX_PENDING_GETS {
            let outcome = match held {
                Some(held) => {
                    inc(&counters.local_gets_found);
                    GetOutcome::Found(held)
                }
                None => {
                    inc(&counters.local_gets_timed_out);
                    GetOutcome::TimedOut
                }
            };
            effects.completions.push((waiter, outcome));
            return;
        }
        if held.is_none() {
            explored = self.choose(owner_id, None, peers);
        }
        if self.targets.is_empty() {
            let outcome = match held {
                Some(held) => {
                    inc(&counters.local_gets_found);
                    GetOutcome::Found(held)
                }
                None => {
                    inc(&counters.local_gets_not_found);
                    GetOutcome::NotFound
                }
            };
            effects.completions.push((waiter, outcome));
            return;
        }
        add(&counters.targets_explored, explored as u64);
        if held.is_some() {
            inc(&counters.local_gets_held_asked);
        }
        let get = Message::Get(GetRepr {
            pubkey: &pubkey,
            key,
        });
        for &to in &self.targets {
            effects.outbox.push(to, &get);
            inc(&counters.gets_sent);
        }
        self.pending.insert(
            id,
            PendingGet {
                waiters: vec![waiter],
                awaiting: self.targets.clone(),
                best: held,
                deadline_ms: now_ms + timeout_ms,
            },
        );
    }

    /// Whether a record of `owner_id` that `from` sent us was most likely placed by a one-hop
    /// view (the closest peers its sender knows) rather than by a lookup: the sender does not
    /// speak ROUTING (a v1 node, such as the Go reference), or it is not an active peer of ours
    /// (peer tables are not symmetric: a v1 sender may not be in ours) and this node is not
    /// among the FANOUT closest to the owner in our view. Such a copy is marked Unplaced, so
    /// replica maintenance looks the owner up and pushes the record to the closest found.
    /// Needs [`Shard::choose`] to have run for `owner_id` excluding `from` (`self.scored`).
    fn placed_one_hop(
        &self,
        from: SocketAddr,
        node_id: u64,
        owner_id: u64,
        peers: &dyn PeerView,
    ) -> bool {
        peers.places_one_hop(from)
            || (!peers.is_active(from) && !self.is_replica(node_id, owner_id, peers))
    }

    /// Whether this node (`node_id`) is among the FANOUT closest to `owner_id`: fewer than
    /// FANOUT of the candidates [`Shard::choose`] just looked at (the `2 × FANOUT` active peers
    /// closest to the owner, in XOR order) are closer. Compared with the candidates rather than
    /// the picks: reliability weighting may pick a peer farther than this node while closer
    /// ones are left, which does not make this node one that receives the owner's PUTs. A peer
    /// of unknown ID counts as closer.
    fn is_replica(&self, node_id: u64, owner_id: u64, peers: &dyn PeerView) -> bool {
        let ours = distance(node_id, owner_id);
        let closer = self
            .scored
            .iter()
            .filter(|p| {
                peers
                    .id_of(p.addr)
                    .is_none_or(|id| distance(id, owner_id) <= ours)
            })
            .count();
        closer < self.rules.fanout
    }

    /// A GET_ACK from the network: trusted only if it answers an outstanding get or storage
    /// challenge sent to that peer, and verifies like a PUT. It scores the challenge; for a local
    /// get a valid record is kept as the best answer and stored when the get ends (never
    /// forwarded). An answer that matches neither is counted as unsolicited and ignored.
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
        let challenged = self.challenges.is_awaited(from, dat.pubkey(), dat.key());
        let id = (*dat.pubkey(), Box::<[u8]>::from(dat.key()));
        let asked = self
            .pending
            .get(&id)
            .is_some_and(|p| p.awaiting.contains(&from));
        if !challenged && !asked {
            inc(&counters.get_acks_unsolicited);
            return;
        }
        let answer = if dat.is_not_found() {
            inc(&counters.get_acks_not_found);
            Answer::NotFound
        } else if let Err(e) = crate::pow::verify_dat(&dat, self.rules.min_work_bits, wall_ms) {
            inc(&counters.get_ack_invalid[verify_error_index(e)]);
            Answer::Invalid
        } else {
            inc(&counters.get_acks_valid);
            Answer::Valid {
                time_ms: dat.time_ms(),
            }
        };
        if challenged {
            let outcome = self.challenges.answer(
                wall_ms,
                from,
                dat.pubkey(),
                dat.key(),
                answer,
                &mut self.rng,
            );
            if let Some(outcome) = outcome {
                count_verdict(&outcome, counters);
                effects.challenge_outcomes.push(outcome);
            }
        }
        if !asked {
            return;
        }
        let Some(pending) = self.pending.get_mut(&id) else {
            return;
        };
        if let Some(at) = pending.awaiting.iter().position(|&a| a == from) {
            pending.awaiting.swap_remove(at);
        }
        if let Answer::Valid { .. } = answer {
            // The first valid answer from a peer starts the settle time, even when a held copy
            // (the best answer from the start) is as new.
            keep_newer(&mut pending.best, dat);
            pending.deadline_ms = pending.deadline_ms.min(now_ms + self.rules.get_settle_ms);
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
        let report = {
            let mut store = self.store.write();
            // Copies stored outside a batch of PUTs (a get's answer) are stamped at most a tick
            // late.
            store.set_copy_clock(now_ms);
            store.tick(wall_ms)
        };
        for expired in &report.expired {
            inc(&counters.records_expired);
            effects.backup.push(delete_op(expired));
        }
        self.tick_gets(now_ms, wall_ms, counters, effects);
        self.expire_challenges(wall_ms, counters, effects);
    }

    /// Fails storage challenges past their deadline (called by [`Shard::tick`]).
    pub fn expire_challenges(
        &mut self,
        wall_ms: i64,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        let before = effects.challenge_outcomes.len();
        self.challenges
            .expire(wall_ms, &mut effects.challenge_outcomes);
        for outcome in &effects.challenge_outcomes[before..] {
            count_verdict(outcome, counters);
        }
    }

    /// Whether [`Shard::issue_challenge`] has something to send at `wall_ms`.
    pub fn challenge_ready(&self, wall_ms: i64) -> bool {
        self.challenges.ready(wall_ms)
    }

    /// Sends one storage challenge, if one is eligible: a GET, to a peer that is still active,
    /// for a record we sent it. Returns whether one was sent. The owner thread calls this when its
    /// `ChallengeTimer` fires.
    pub fn issue_challenge(
        &mut self,
        wall_ms: i64,
        peers: &dyn PeerView,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) -> bool {
        let Some(get) = self
            .challenges
            .issue(wall_ms, |a| peers.is_active(a), &mut self.rng)
        else {
            return false;
        };
        let message = Message::Get(GetRepr {
            pubkey: &get.pubkey,
            key: &get.key,
        });
        effects.outbox.push(get.peer, &message);
        inc(&counters.gets_sent);
        inc(&counters.challenges_sent);
        true
    }

    /// `record` (one of ours) was sent to `to` by someone else than this core (replica
    /// maintenance by lookup, `shard::maintain`): sampled as a storage challenge like the PUTs
    /// the core sends itself.
    pub fn remember_challenge(&mut self, wall_ms: i64, to: SocketAddr, record: &Record) {
        self.challenges.remember(wall_ms, to, record, &mut self.rng);
    }

    /// Storage challenges remembered and in flight.
    pub fn challenge_counts(&self) -> (usize, usize) {
        (self.challenges.candidates(), self.challenges.in_flight())
    }

    /// The peers records may be placed on changed: starts (or re-aims) a repair pass.
    pub fn set_replica_view(&mut self, view: Arc<ReplicaView>, counters: &Counters) {
        if self.repair.set_view(view) {
            inc(&counters.repair_passes_started);
        }
    }

    /// Whether a repair or republish pass is running.
    pub fn repair_active(&self) -> bool {
        self.repair.is_active()
    }

    /// Advances replica repair (and starts a republish when due): looks at up to `*scan_budget`
    /// records (decremented) and re-sends those whose FANOUT closest peers changed, as far as
    /// `pacer` allows. Sends are sampled as storage challenges like any other. Returns whether
    /// the pacer stopped the step (a send it could not cover).
    #[allow(clippy::too_many_arguments)]
    pub fn repair_step(
        &mut self,
        now_ms: u64,
        wall_ms: i64,
        pacer: &mut Pacer,
        scan_budget: &mut usize,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) -> bool {
        let store = self.store.read();
        let challenges = &mut self.challenges;
        let rng = &mut self.rng;
        let report = self.repair.step(
            now_ms,
            &*store,
            self.rules.fanout,
            pacer,
            scan_budget,
            &mut self.repair_rng,
            &mut effects.outbox,
            |to, record| challenges.remember(wall_ms, to, &record, rng),
        );
        add(&counters.repair_passes_started, report.passes_started);
        add(
            &counters.republish_passes_started,
            report.republishes_started,
        );
        add(&counters.repair_passes_completed, report.passes_completed);
        add(&counters.repair_datagrams_sent, report.datagrams);
        add(&counters.repair_bytes_sent, report.bytes);
        report.paced
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

/// Makes `dat` the best answer if there is none yet or it is newer ([`compare_versions`]).
fn keep_newer(best: &mut Option<Record>, dat: Record) {
    let better = match best {
        None => true,
        Some(best) => compare_versions(&dat, best) == Version::Newer,
    };
    if better {
        *best = Some(dat);
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
    match store.get(get.pubkey, get.key) {
        Some(dat) => {
            inc(&counters.gets_found);
            outbox.push(from, &Message::GetAck(dat.as_view()));
        }
        None => {
            inc(&counters.gets_not_found);
            let mut buf = [0u8; crate::limits::DAT_HEADER_LEN + crate::limits::MAX_KEY_LEN];
            let len = DatFields::not_found(*get.pubkey, get.key).emit(&mut buf);
            outbox.push(from, &Message::GetAck(Dat::new_unchecked(&buf[..len])));
        }
    }
}

/// The checks a network PUT passes before it may be stored, cheapest first: the store's replace
/// rules (`precheck`: a duplicate or an older version costs no verification), the proof of work,
/// the refused-signature cache (a replayed bad record, or a repeat inside this batch), then the
/// signatures of all that is left at once (batched if `rules` say so; a failed one is
/// remembered in `refused`). Counts every PUT it is given (`puts_received`) and every refusal by
/// reason; leaves in `puts` only the PUTs that passed, in order.
///
/// One decision for both places it runs: a shard owner screens its own shard's batch
/// ([`Shard::handle_puts`]), and the node's verification stage screens a batch drawn from every
/// shard, so batches are long even when each shard sees one PUT at a time.
pub fn screen_puts(
    now_ms: i64,
    puts: &mut Vec<(SocketAddr, Record)>,
    mut precheck: impl FnMut(&Record) -> Result<(), Refusal>,
    refused: &mut RefusedCache,
    keys: &mut KeyCache,
    rules: &ShardRules,
    counters: &Counters,
) {
    refused.begin_batch();
    puts.retain(|(_, dat)| {
        inc(&counters.puts_received);
        if let Err(refusal) = precheck(dat) {
            count_refusal(refusal, counters);
            return false;
        }
        if let Err(e) = check_work(dat, rules.min_work_bits, now_ms) {
            inc(&counters.put_invalid[verify_error_index(e)]);
            return false;
        }
        match refused.check(dat) {
            None => true,
            Some(Known::BadSignature) => {
                inc(&counters.puts_refused_known_bad_signature);
                false
            }
            Some(Known::RepeatInBatch) => {
                inc(&counters.puts_refused_repeat_in_batch);
                false
            }
        }
    });
    if puts.is_empty() {
        return;
    }
    let mut ok = vec![false; puts.len()];
    {
        let views: Vec<Dat<&[u8]>> = puts.iter().map(|(_, d)| d.as_view()).collect();
        verify_signatures(&views, rules.signature_check, &mut ok, keys);
    }
    let mut verdicts = ok.into_iter();
    puts.retain(|(_, dat)| {
        let ok = verdicts.next().unwrap_or(false);
        if !ok {
            inc(&counters.put_invalid[verify_error_index(crate::pow::VerifyError::BadSignature)]);
            refused.remember_bad_signature(dat);
        }
        ok
    });
}

fn delete_op(dat: &Record) -> BackupOp {
    BackupOp::Delete {
        pubkey: *dat.pubkey(),
        key: dat.key().into(),
        time_ms: dat.time_ms(),
    }
}

fn count_verdict(outcome: &ChallengeOutcome, counters: &Counters) {
    if outcome.verdict != Verdict::Success {
        log::debug!(
            "storage challenge to {} failed: {}",
            outcome.peer,
            match outcome.verdict {
                Verdict::NotFound => "answered not found",
                Verdict::Invalid => "answered an invalid record",
                Verdict::Stale => "answered an older version",
                Verdict::TimedOut => "no answer in time",
                Verdict::Success => "passed",
            }
        );
    }
    inc(match outcome.verdict {
        Verdict::Success => &counters.challenges_succeeded,
        Verdict::NotFound => &counters.challenges_failed_not_found,
        Verdict::Invalid => &counters.challenges_failed_invalid,
        Verdict::Stale => &counters.challenges_failed_stale,
        Verdict::TimedOut => &counters.challenges_failed_timeout,
    });
}

fn count_refusal(refusal: Refusal, counters: &Counters) {
    match refusal {
        Refusal::Duplicate => inc(&counters.puts_duplicate),
        Refusal::Older => inc(&counters.puts_older),
        Refusal::WorkReused => inc(&counters.puts_work_reused),
        Refusal::TooLowPriority => inc(&counters.puts_low_priority),
    }
}
