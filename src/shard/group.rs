//! `ShardGroup`: the I/O-free core of one shard owner (a group of shards), driven the same way by
//! the node's owner threads and by the simulator.
//!
//! It owns every decision the owner makes around the shards: which shard a message goes to, the
//! batch of network PUTs verified together (under a verification permit the driver hands out),
//! the periodic tick (expiry, challenge deadlines), get deadlines, the storage-challenge timer,
//! the replica view taken from the peer snapshot, and repair pacing. Like quinn-proto's
//! `Endpoint`, it is fed inputs with `now` ([`ShardGroup::handle`]), asked to run its timers at
//! the end of a batch ([`ShardGroup::end_batch`]), and says when it next needs to run
//! ([`ShardGroup::next_deadline_ms`]); a driver sleeps until then or the next message. An idle
//! group (no records, no pending get, no challenge in flight, no repair pass) has no deadline but
//! the challenge timer's, so an idle owner thread sleeps.
//!
//! Each constant of the owner's scheduling is defined here, once, and so is the replica view and
//! repair schedule the v1 and v2 groups share ([`RepairSchedule`]).
//!
//! Replica maintenance has two modes. Without routing lookups (the v1 path) the group hands the
//! shards the replica view of the peer snapshot and steps their repair passes
//! (`shard::repair`). With `GroupConfig::maintain` (the node's `route_lookups`), maintenance is
//! by lookup ([`crate::route::maintain`]): on each periodic tick the group walks its shards'
//! slabs (a bounded number of records per tick, from a cursor), drops copies that age out, and
//! for each copy due for a republish asks for a lookup of its owner ID through
//! `Effects::lookups` (paced, one per owner ID in flight, recent answers reused); the answer
//! ([`Input::LookupDone`]) pushes the waiting copies to the closest nodes found and marks where
//! this node stands. The v1 repair passes then serve only the peers that do not speak ROUTING
//! (a mixed network's v1 peers, which lookups never find): their view leaves routing peers out.

use std::net::SocketAddr;
use std::ops::DerefMut;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::peer::budget::Pacer;
use crate::peer::{PeerSnapshot, SnapshotView, TrustPolicy};
use crate::pow::KeyCache;
use crate::route::Contact;
use crate::route::maintain::MaintainConfig;
use crate::shard::challenge::ChallengeTimer;
use crate::shard::core::{Effects, GetRequest, Record, Shard};
use crate::shard::maintain::{MaintainWalk, MaintainedStore};
use crate::shard::repair::ReplicaView;
use crate::shard::route::shard_index;
use crate::shard::store::Refusal;
use crate::stats::{Counters, add};
use crate::wire::GetRepr;

/// Period of the shards' periodic tick (record expiry, challenge deadlines, the republish check)
/// while a group holds anything. Expiry is measured in days, challenge deadlines in seconds: a
/// second is fine-grained enough for both and costs one wake-up per second per busy owner.
pub const SHARD_TICK_MS: u64 = 1_000;

/// A group runs a repair step at most this often, however busy it is: a step may examine
/// `repair_scan_records_per_step` records (a few milliseconds with 1000 peers), so under a flood
/// of PUTs repair takes at most a small share of the owner's time. The pacer refills for 20 ms
/// between steps (10 KiB at the default 512 KiB/s), well inside its 64 KiB burst. While a pass
/// runs, the group asks to be woken this often, unless the pacer cut its last step short: then
/// at the turn the pacer gave it ([`RepairClock`]). (The node used 10 ms and the simulator 20 ms
/// before they shared this core. 10 ms doubles the repair wake-ups of every owner and the records
/// a pass may examine per second; in the simulator's 200-node scenario it also added repair and
/// challenge traffic, which draws on the peers' amplification budgets, and lost more final
/// gets to withheld answers: 1–4 of 1000 on each of 9 seeds, against 0–3 with 20 ms.)
pub const REPAIR_STEP_MS: u64 = 20;

/// When a group's next repair step is due: [`REPAIR_STEP_MS`] after its last one, or, when the
/// repair pacer cut that step short, at the turn the pacer handed out ([`Pacer::next_turn_ms`]).
/// The node's 256 owners share one pacer; each stepping every 20 ms while its pass waits on the
/// pacer woke the owners 12.8 k times a second to find the bucket empty (`perf/README.md`,
/// "Repair steps in turns"). Shared by the v1 and v2 groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairClock {
    /// When repair last stepped (monotonic ms).
    last_ms: Option<u64>,
    /// The pacer's turn, after a step it cut short.
    turn_ms: Option<u64>,
}

impl RepairClock {
    /// When the next step is due (monotonic ms; 0 before the first).
    pub fn next_ms(&self) -> u64 {
        match (self.turn_ms, self.last_ms) {
            (Some(turn), _) => turn,
            (None, Some(last)) => last.saturating_add(REPAIR_STEP_MS),
            (None, None) => 0,
        }
    }

    /// Records a step at `now_ms`; `paced`: the pacer could not cover a send (then the next step
    /// waits for a turn from `pacer`).
    pub fn stepped(&mut self, now_ms: u64, paced: bool, pacer: &mut Pacer) {
        self.last_ms = Some(now_ms);
        self.turn_ms = paced.then(|| pacer.next_turn_ms(now_ms));
    }
}

/// A group's replica view, taken from each new peer snapshot, and the schedule of its repair
/// steps ([`RepairClock`], and the shard each step starts at, so that no shard's pass starves the
/// others'): kept the same way by the v1 and v2 groups, which differ only in the view they take
/// and the shards they step.
#[derive(Debug, Default)]
pub struct RepairSchedule {
    /// The snapshot the view was last taken from.
    seen_snapshot: Option<Arc<PeerSnapshot>>,
    /// The replica view the shards were last given.
    view: Arc<ReplicaView>,
    /// When repair next steps.
    clock: RepairClock,
    /// Which shard the last repair step started at.
    turn: usize,
}

impl RepairSchedule {
    /// The replica view the shards were last given.
    pub fn view(&self) -> &Arc<ReplicaView> {
        &self.view
    }

    /// Whether `snapshot` is not the one the view was last taken from.
    pub fn snapshot_is_new(&self, snapshot: &Arc<PeerSnapshot>) -> bool {
        !self
            .seen_snapshot
            .as_ref()
            .is_some_and(|seen| Arc::ptr_eq(seen, snapshot))
    }

    /// Takes the view `latest` makes of `peers` if that snapshot is new. Returns the view when
    /// it differs from the one the shards hold (hand it to them), else `None`.
    pub fn take_view(
        &mut self,
        peers: &Arc<PeerSnapshot>,
        latest: impl FnOnce(&PeerSnapshot) -> ReplicaView,
    ) -> Option<&Arc<ReplicaView>> {
        if !self.snapshot_is_new(peers) {
            return None;
        }
        self.seen_snapshot = Some(Arc::clone(peers));
        let latest = latest(peers);
        if latest == *self.view {
            return None;
        }
        self.view = Arc::new(latest);
        Some(&self.view)
    }

    /// When the next repair step is due (monotonic ms), while a pass runs.
    pub fn next_step_ms(&self) -> u64 {
        self.clock.next_ms()
    }

    /// Whether a repair step is due at `now_ms`: its time has come, and it is the periodic tick
    /// (which may start passes) or `passes_running` says a pass goes on.
    pub fn due(&self, now_ms: u64, periodic: bool, passes_running: impl FnOnce() -> bool) -> bool {
        now_ms >= self.clock.next_ms() && (periodic || passes_running())
    }

    /// One repair step at `now_ms` over `shards` (non-empty): from the shard after the one the
    /// last step started at, `step` steps each in turn (examining at most the records left of
    /// `scan_budget`, and saying whether `pacer` cut it short) until the budget is spent; then
    /// the clock records the step.
    pub fn step<S>(
        &mut self,
        now_ms: u64,
        pacer: &mut Pacer,
        mut scan_budget: usize,
        shards: &mut [S],
        mut step: impl FnMut(&mut S, &mut Pacer, &mut usize) -> bool,
    ) {
        let mut paced = false;
        let n = shards.len();
        self.turn = (self.turn + 1) % n;
        for k in 0..n {
            paced |= step(&mut shards[(self.turn + k) % n], pacer, &mut scan_budget);
            if scan_budget == 0 {
                break;
            }
        }
        self.clock.stepped(now_ms, paced, pacer);
    }
}

/// Challenges a group may send in one run of its timers (its timer catching up after a stall).
pub const MAX_CHALLENGES_PER_WAKE: usize = 4;

/// The two clocks a group reads: monotonic milliseconds (deadlines, pacing) and the wall clock
/// (record times, expiry, challenge deadlines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds (the node's `MonotonicClock`, the simulator's virtual time).
    pub mono_ms: u64,
    /// Unix milliseconds as this node's wall clock reads them.
    pub wall_ms: i64,
}

/// How a group schedules its work (copied from the node's `Config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupConfig {
    /// Groups in the node. Shard `s` belongs to group `s % groups` and is its shard
    /// `(s / groups) % shards` (the node: 1..=256 owner threads; the simulator: 1).
    pub groups: usize,
    /// Node-wide mean gap between storage challenges; a group's own timer has `groups` times
    /// that mean, so the node as a whole challenges at the configured rate. 0 disables.
    pub challenge_mean_gap_ms: u64,
    /// Whether replica repair and republish run (`repair_bytes_per_s > 0`).
    pub repair_enabled: bool,
    /// Records a repair step may examine, over all the group's shards.
    pub repair_scan_records_per_step: usize,
    /// Period of the shards' periodic tick ([`SHARD_TICK_MS`] in the node).
    pub tick_period_ms: u64,
    /// Which peers count as unreliable (kept out of the replica view).
    pub trust: TrustPolicy,
    /// Replica maintenance by lookup (`route::maintain`) instead of the v1 repair passes; `None`
    /// keeps the v1 path. Its `lookups_per_s` is this group's share of the node's.
    pub maintain: Option<MaintainConfig>,
}

/// What a group needs from its surroundings for the work it shares with other groups: the
/// verification permit (bounds the owners verifying signatures at once) and the node-wide repair
/// byte budget.
pub trait GroupEnv {
    /// Held while a batch of PUTs is verified; its key cache decodes the owners' keys.
    type Permit<'a>: DerefMut<Target = KeyCache>
    where
        Self: 'a;
    /// Waits for a verification permit.
    fn verify_permit(&mut self) -> Self::Permit<'_>;
    /// The repair pacer, held for one repair step.
    fn repair_pacer(&mut self) -> impl DerefMut<Target = Pacer> + '_;
}

/// One input to a group. Room for more variants (routing messages) as the protocol grows.
pub enum Input<'a, W> {
    /// A network PUT: queued, verified with the rest of the batch in [`ShardGroup::end_batch`].
    Put {
        /// Sender.
        from: SocketAddr,
        /// The record as received.
        dat: Record,
    },
    /// A network PUT that already passed `core::screen_puts` (the node's verification stage):
    /// stored and forwarded now, with no second verification.
    ScreenedPut {
        /// Sender.
        from: SocketAddr,
        /// The record, verified.
        dat: Record,
    },
    /// A duplicate PUT the verification stage refused: the held copy's clock restarts.
    Restored {
        /// The owner's public key.
        pubkey: [u8; 32],
        /// The key.
        key: &'a [u8],
    },
    /// An answer to one of our GETs (a local get or a storage challenge).
    GetAck {
        /// Sender.
        from: SocketAddr,
        /// The record as received.
        dat: Record,
    },
    /// A network GET on the owner path.
    Get {
        /// Sender.
        from: SocketAddr,
        /// What it asks for.
        get: GetRepr<'a>,
    },
    /// A record made on this node: stored and replicated now; the result is returned.
    LocalPut {
        /// The record.
        dat: Record,
    },
    /// The lookup of `target` asked for in `Effects::lookups` ended: the closest nodes found,
    /// closest first (`None`: it could not run).
    LookupDone {
        /// The owner ID looked up.
        target: u64,
        /// The closest nodes found.
        closest: Option<&'a [Contact]>,
    },
    /// A get asked on this node; its outcome arrives in `Effects::completions` under the
    /// request's `waiter`.
    LocalGet(GetRequest<'a, W>),
}

/// What a local put returns: the peers the record was sent to, or why it was refused.
pub type LocalPutResult = Result<Vec<SocketAddr>, Refusal>;

/// The I/O-free core of one owner. See the module docs.
pub struct ShardGroup<W> {
    shards: Vec<Shard<W>>,
    config: GroupConfig,
    /// Network PUTs of this batch, per local shard.
    puts: Vec<Vec<(SocketAddr, Record)>>,
    challenge_timer: ChallengeTimer,
    rng: StdRng,
    repair: RepairSchedule,
    next_periodic_ms: u64,
    maintain: Option<MaintainWalk>,
}

impl<W> ShardGroup<W> {
    /// A group of `shards` (non-empty), starting at `now`.
    pub fn new(shards: Vec<Shard<W>>, config: GroupConfig, now: Now, seed: u64) -> ShardGroup<W> {
        assert!(!shards.is_empty(), "a shard group owns at least one shard");
        assert!(config.groups > 0);
        let mut rng = StdRng::seed_from_u64(seed);
        let mean_gap_ms = config
            .challenge_mean_gap_ms
            .saturating_mul(config.groups as u64);
        let challenge_timer = ChallengeTimer::new(mean_gap_ms, now.mono_ms, &mut rng);
        let shards_node_id = shards[0].store().read().config().node_id;
        if config.maintain.is_some() {
            // Replica maintenance by lookup keeps 4 B of copy state per slot.
            for shard in &shards {
                shard.store().write().track_copies();
            }
        }
        ShardGroup {
            puts: (0..shards.len()).map(|_| Vec::new()).collect(),
            shards,
            config,
            challenge_timer,
            rng,
            repair: RepairSchedule::default(),
            next_periodic_ms: now.mono_ms.saturating_add(config.tick_period_ms),
            maintain: config
                .maintain
                .map(|c| MaintainWalk::new(c, shards_node_id, now.mono_ms)),
        }
    }

    /// Maintenance counters (zero without `GroupConfig::maintain`).
    pub fn maintain_stats(&self) -> crate::route::maintain::MaintainStats {
        self.maintain
            .as_ref()
            .map(|m| m.stats())
            .unwrap_or_default()
    }

    /// The shards, by local index.
    pub fn shards(&self) -> &[Shard<W>] {
        &self.shards
    }

    /// The local index of the shard holding `(pubkey, key)`.
    pub fn local_index(&self, pubkey: &[u8; 32], key: &[u8]) -> usize {
        (shard_index(pubkey, key) / self.config.groups) % self.shards.len()
    }

    /// The replica view the shards were last given.
    pub fn view(&self) -> &Arc<ReplicaView> {
        self.repair.view()
    }

    /// Whether `snapshot` is not the one the group last looked at (it will pick it up at the end
    /// of the next batch).
    pub fn snapshot_is_new(&self, snapshot: &Arc<PeerSnapshot>) -> bool {
        self.repair.snapshot_is_new(snapshot)
    }

    /// One input. `peers` is the peer snapshot the driver holds for this batch. Returns the
    /// result of a [`Input::LocalPut`] (answer it only after the effects are carried out, so the
    /// backup entry is queued first); `None` for every other input.
    pub fn handle(
        &mut self,
        now: Now,
        peers: &Arc<PeerSnapshot>,
        input: Input<'_, W>,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) -> Option<LocalPutResult> {
        match input {
            Input::Put { from, dat } => {
                let s = self.local_index(dat.pubkey(), dat.key());
                self.puts[s].push((from, dat));
            }
            Input::ScreenedPut { from, dat } => {
                let s = self.local_index(dat.pubkey(), dat.key());
                let view = SnapshotView(peers);
                self.shards[s].store_screened(now.wall_ms, from, dat, &view, counters, effects);
            }
            Input::Restored { pubkey, key } => {
                let s = self.local_index(&pubkey, key);
                self.shards[s].restored(&pubkey, key);
            }
            Input::GetAck { from, dat } => {
                let s = self.local_index(dat.pubkey(), dat.key());
                self.shards[s].handle_get_ack(
                    now.mono_ms,
                    now.wall_ms,
                    from,
                    dat,
                    counters,
                    effects,
                );
            }
            Input::Get { from, get } => {
                let s = self.local_index(get.pubkey, get.key);
                self.shards[s].handle_get(from, &get, counters, effects);
            }
            Input::LookupDone { target, closest } => {
                if let Some(m) = &mut self.maintain {
                    m.answer(now.mono_ms, target, closest);
                }
            }
            Input::LocalPut { dat } => {
                let s = self.local_index(dat.pubkey(), dat.key());
                self.shards[s].set_copy_clock(now.mono_ms);
                let view = SnapshotView(peers);
                return Some(self.shards[s].local_put(now.wall_ms, dat, &view, counters, effects));
            }
            Input::LocalGet(request) => {
                let s = self.local_index(&request.pubkey, request.key);
                let view = SnapshotView(peers);
                self.shards[s].start_get(now.mono_ms, request, &view, counters, effects);
            }
        }
        None
    }

    /// Ends a batch of inputs: verifies the queued PUTs (under one permit), then runs whatever
    /// is due at `now` (get deadlines, the periodic tick, challenges), picks up a changed peer
    /// snapshot, and steps repair. Call it after every batch, and when
    /// [`ShardGroup::next_deadline_ms`] passes.
    pub fn end_batch(
        &mut self,
        now: Now,
        peers: &Arc<PeerSnapshot>,
        env: &mut impl GroupEnv,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        let view = SnapshotView(peers);
        if self.puts.iter().any(|batch| !batch.is_empty()) {
            let mut permit = env.verify_permit();
            for (shard, batch) in self.shards.iter_mut().zip(self.puts.iter_mut()) {
                if !batch.is_empty() {
                    shard.set_copy_clock(now.mono_ms);
                    let keys = &mut *permit;
                    shard.handle_puts(now.wall_ms, batch, &view, keys, counters, effects);
                }
            }
        }
        let periodic = now.mono_ms >= self.next_periodic_ms;
        if periodic {
            self.next_periodic_ms = now.mono_ms.saturating_add(self.config.tick_period_ms);
        }
        for shard in &mut self.shards {
            if periodic {
                shard.tick(now.mono_ms, now.wall_ms, counters, effects);
            } else if shard.next_deadline_ms().is_some_and(|d| d <= now.mono_ms) {
                shard.tick_gets(now.mono_ms, now.wall_ms, counters, effects);
            }
        }
        let mut sent = 0;
        while sent < MAX_CHALLENGES_PER_WAKE && self.challenge_timer.due(now.mono_ms, &mut self.rng)
        {
            sent += 1;
            let n = self.shards.len();
            let start = self.rng.gen_range(0..n);
            if let Some(k) =
                (0..n).find(|k| self.shards[(start + k) % n].challenge_ready(now.wall_ms))
            {
                self.shards[(start + k) % n].issue_challenge(now.wall_ms, &view, counters, effects);
            }
        }
        if self.maintain.is_some() && self.config.repair_enabled {
            self.maintain_step(now, periodic, env, counters, effects);
        }
        // With maintenance by lookup, the v1 repair serves only the peers lookups cannot find
        // (v1-only peers of a mixed network).
        let trust = &self.config.trust;
        let by_lookup = self.maintain.is_some();
        let latest = |peers: &PeerSnapshot| {
            if by_lookup {
                ReplicaView::of_snapshot_v1_only(peers, trust)
            } else {
                ReplicaView::of_snapshot(peers, trust)
            }
        };
        if let Some(view) = self.repair.take_view(peers, latest) {
            for shard in &mut self.shards {
                shard.set_replica_view(Arc::clone(view), counters);
            }
        }
        if self.repair_due(now.mono_ms, periodic) {
            let mut pacer = env.repair_pacer();
            let scan = self.config.repair_scan_records_per_step;
            let shards = &mut self.shards;
            self.repair.step(
                now.mono_ms,
                &mut pacer,
                scan,
                shards,
                |shard, pacer, scan| {
                    shard.repair_step(now.mono_ms, now.wall_ms, pacer, scan, counters, effects)
                },
            );
        }
    }

    /// Maintenance by lookup (`shard::maintain`): carries out the answers that came in, then
    /// (on the periodic tick) walks up to `repair_scan_records_per_step` slots from the cursor.
    fn maintain_step(
        &mut self,
        now: Now,
        periodic: bool,
        env: &mut impl GroupEnv,
        counters: &Counters,
        effects: &mut Effects<W>,
    ) {
        let Some(m) = self.maintain.as_mut() else {
            return;
        };
        let mut pacer = env.repair_pacer();
        let backup = &mut effects.backup;
        // Pushes are storage-challenge candidates like every PUT sent (sampled after the walk,
        // which holds the shards' stores while it runs).
        let mut pushed: Vec<(usize, SocketAddr, Record)> = Vec::new();
        let tally = m.step(
            now.mono_ms,
            periodic,
            &self.shards,
            |shard| &**shard.store(),
            self.config.repair_scan_records_per_step,
            &mut pacer,
            &mut effects.outbox,
            &mut effects.lookups,
            |gone| {
                backup.push(crate::shard::core::BackupOp::Delete {
                    pubkey: *gone.pubkey(),
                    key: gone.key().into(),
                    time_ms: gone.time_ms(),
                })
            },
            |s, to, record| pushed.push((s, to, record.to_boxed())),
        );
        for (s, to, record) in pushed {
            self.shards[s].remember_challenge(now.wall_ms, to, &record);
        }
        add(&counters.copies_aged_out, tally.aged_out);
        add(&counters.maintain_cache_hits, tally.cache_hits);
        add(&counters.maintain_lookups_started, tally.lookups_started);
        add(&counters.maintain_paced, tally.paced);
        add(&counters.repair_datagrams_sent, tally.datagrams_sent);
        add(&counters.repair_bytes_sent, tally.bytes_sent);
    }

    fn repair_due(&self, now_ms: u64, periodic: bool) -> bool {
        self.config.repair_enabled
            && self.repair.due(now_ms, periodic, || {
                self.shards.iter().any(|s| s.repair_active())
            })
    }

    /// Whether no shard holds anything that needs the periodic tick: no record, no pending get,
    /// no remembered or in-flight challenge, no repair pass.
    fn idle(&self) -> bool {
        self.shards.iter().all(|s| {
            s.next_deadline_ms().is_none()
                && s.challenge_counts() == (0, 0)
                && !s.repair_active()
                && s.store().read().is_empty()
        })
    }

    /// When the group next needs [`ShardGroup::end_batch`] without an input (monotonic ms):
    /// the earliest get deadline, the challenge timer, the next repair step while a pass runs,
    /// and the periodic tick unless the group is idle. `None`: only an input can give it work.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let mut at = None::<u64>;
        let mut consider = |t: u64| at = Some(at.map_or(t, |a| a.min(t)));
        for shard in &self.shards {
            if let Some(d) = shard.next_deadline_ms() {
                consider(d);
            }
        }
        let challenge = self.challenge_timer.next_ms();
        if challenge != u64::MAX {
            consider(challenge);
        }
        if self.config.repair_enabled && self.shards.iter().any(|s| s.repair_active()) {
            consider(self.repair.next_step_ms());
        }
        if !self.idle() {
            consider(self.next_periodic_ms);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Keypair, id_from_pubkey};
    use crate::peer::PeerInfo;
    use crate::pow::SignatureCheck;
    use crate::shard::core::{GetOutcome, ShardRules};
    use crate::shard::store::{Store, StoreConfig};
    use crate::shard::test_support::{
        WALL_MS, at, closest_three, env, maintain_config, peers_with,
    };

    fn group(shards: usize, challenge_mean_gap_ms: u64) -> ShardGroup<u32> {
        group_with(shards, challenge_mean_gap_ms, None)
    }

    fn group_with(
        shards: usize,
        challenge_mean_gap_ms: u64,
        maintain: Option<MaintainConfig>,
    ) -> ShardGroup<u32> {
        let shards = (0..shards)
            .map(|_| {
                let store = Store::new(StoreConfig {
                    capacity_bytes: 1 << 20,
                    ttl_ms: i64::MAX / 4,
                    node_id: 7,
                });
                Shard::new(
                    store,
                    ShardRules {
                        min_work_bits: 4,
                        fanout: 3,
                        signature_check: SignatureCheck::Single,
                        get_settle_ms: 50,
                    },
                )
            })
            .collect();
        let config = GroupConfig {
            groups: 1,
            challenge_mean_gap_ms,
            repair_enabled: true,
            repair_scan_records_per_step: 4,
            tick_period_ms: SHARD_TICK_MS,
            trust: TrustPolicy::default(),
            maintain,
        };
        ShardGroup::new(shards, config, at(0), 1)
    }

    /// Peers 1..=n, all v1-only.
    fn peers(n: u8) -> Arc<PeerSnapshot> {
        peers_with(n, |_| crate::wire::Features::NONE)
    }

    #[test]
    fn an_idle_group_has_no_deadline_and_stays_quiet() {
        let mut g = group(4, 0);
        assert_eq!(g.next_deadline_ms(), None, "nothing held, challenges off");
        let counters = Counters::default();
        let mut fx = Effects::default();
        let none = Arc::new(PeerSnapshot::default());
        g.end_batch(at(5_000), &none, &mut env(), &counters, &mut fx);
        assert!(fx.outbox.is_empty() && fx.backup.is_empty() && fx.completions.is_empty());
        assert_eq!(g.next_deadline_ms(), None);
        // With challenges on, the timer is the only deadline of an idle group.
        let g = group(4, 1_000);
        let due = g.next_deadline_ms().expect("the challenge timer");
        assert_eq!(due, g.challenge_timer.next_ms());
    }

    #[test]
    fn a_local_get_sets_the_deadline_and_ends_there() {
        let mut g = group(2, 0);
        let counters = Counters::default();
        let mut fx = Effects::default();
        let snapshot = peers(3);
        let input = Input::LocalGet(GetRequest {
            pubkey: [9; 32],
            key: b"k",
            timeout_ms: 300,
            waiter: 42,
        });
        assert!(
            g.handle(at(100), &snapshot, input, &counters, &mut fx)
                .is_none()
        );
        g.end_batch(at(100), &snapshot, &mut env(), &counters, &mut fx);
        assert_eq!(fx.outbox.len(), 3, "asked the three peers");
        assert_eq!(g.next_deadline_ms(), Some(400));
        fx.clear();
        g.end_batch(at(399), &snapshot, &mut env(), &counters, &mut fx);
        assert!(fx.completions.is_empty(), "not before its deadline");
        g.end_batch(at(400), &snapshot, &mut env(), &counters, &mut fx);
        assert!(matches!(fx.completions[..], [(42, GetOutcome::TimedOut)]));
        assert_eq!(g.next_deadline_ms(), None, "idle again");
    }

    #[test]
    fn puts_wait_for_the_batch_and_a_held_record_brings_the_periodic_tick() {
        let mut g = group(2, 0);
        let counters = Counters::default();
        let mut fx = Effects::default();
        let none = Arc::new(PeerSnapshot::default());
        let owner = Keypair::generate();
        let dat = crate::pow::make_dat_single(&owner, b"k", b"v", WALL_MS, 4);
        let from = SocketAddr::from(([10, 0, 0, 9], 1618));
        g.handle(at(10), &none, Input::Put { from, dat }, &counters, &mut fx);
        let stored = |g: &ShardGroup<u32>| -> usize {
            g.shards().iter().map(|s| s.store().read().len()).sum()
        };
        assert_eq!(stored(&g), 0, "queued until the batch ends");
        let mut env = env();
        g.end_batch(at(10), &none, &mut env, &counters, &mut fx);
        assert_eq!(stored(&g), 1);
        assert_eq!(env.permits_taken, 1, "one permit for the batch");
        assert_eq!(fx.backup.len(), 1);
        assert_eq!(g.next_deadline_ms(), Some(SHARD_TICK_MS));
    }

    #[test]
    fn a_new_replica_view_starts_repair_paced_by_the_step() {
        let mut g = group(2, 0);
        let counters = Counters::default();
        let mut fx = Effects::default();
        let none = Arc::new(PeerSnapshot::default());
        let owner = Keypair::generate();
        for i in 0..20u8 {
            let dat = crate::pow::make_dat_single(&owner, &[i], b"v", WALL_MS, 4);
            let input = Input::LocalPut { dat };
            assert!(g.handle(at(0), &none, input, &counters, &mut fx).is_some());
        }
        let mut env = env();
        g.end_batch(at(0), &none, &mut env, &counters, &mut fx);
        fx.clear();
        let snapshot = peers(4);
        assert!(g.snapshot_is_new(&snapshot));
        g.end_batch(at(5), &snapshot, &mut env, &counters, &mut fx);
        assert!(!g.snapshot_is_new(&snapshot));
        assert_eq!(g.view().len(), 4);
        assert!(
            !fx.outbox.is_empty(),
            "records re-sent to the new closest peers"
        );
        // 20 records, 4 examined per step: the pass goes on, one step per REPAIR_STEP_MS.
        assert!(g.shards().iter().any(|s| s.repair_active()));
        assert_eq!(g.next_deadline_ms(), Some(5 + REPAIR_STEP_MS));
        let sent = fx.outbox.len();
        g.end_batch(
            at(5 + REPAIR_STEP_MS - 1),
            &snapshot,
            &mut env,
            &counters,
            &mut fx,
        );
        assert_eq!(fx.outbox.len(), sent, "no step before the pacing interval");
        g.end_batch(
            at(5 + REPAIR_STEP_MS),
            &snapshot,
            &mut env,
            &counters,
            &mut fx,
        );
        assert!(fx.outbox.len() > sent, "the next step");
    }

    #[test]
    fn a_pass_the_pacer_cuts_short_waits_for_its_turn() {
        // Two groups (two owners) sharing one pacer whose burst covers eight records' sends (so
        // a turn, an eighth of a burst apart, finds one record's), and records enough that
        // every step runs out of budget.
        let counters = Counters::default();
        let none = Arc::new(PeerSnapshot::default());
        let owner = Keypair::generate();
        let mut env = env();
        let record_bytes = {
            let dat = crate::pow::make_dat_single(&owner, &[0, 0], b"v", WALL_MS, 4);
            crate::wire::Message::Put(dat.as_view()).buffer_len() as u64
        };
        env.pacer = Pacer::new(
            crate::peer::budget::BucketConfig {
                burst_bytes: record_bytes * 3 * 8,
                refill_bytes_per_s: record_bytes * 3 * 8 * 5,
            },
            0,
        );
        let gap_ms = env.pacer.turn_gap_ms();
        assert!(gap_ms > REPAIR_STEP_MS, "a turn is further off than a step");
        let mut groups: Vec<ShardGroup<u32>> = (0..2).map(|_| group(1, 0)).collect();
        let snapshot = peers(4);
        let mut fx = Effects::default();
        for (n, g) in groups.iter_mut().enumerate() {
            for i in 0..20u8 {
                let dat = crate::pow::make_dat_single(&owner, &[n as u8, i], b"v", WALL_MS, 4);
                let input = Input::LocalPut { dat };
                assert!(g.handle(at(0), &none, input, &counters, &mut fx).is_some());
            }
            g.end_batch(at(0), &none, &mut env, &counters, &mut fx);
        }
        fx.clear();
        // Half the burst spent elsewhere; then both see the new view at 5 ms: the first sends
        // what is left (fewer records than its step may examine) and is cut short, the second
        // finds the bucket empty. Each is given a turn, one gap apart.
        assert!(env.pacer.try_take(5, record_bytes * 3 * 6));
        for g in &mut groups {
            g.end_batch(at(5), &snapshot, &mut env, &counters, &mut fx);
            assert!(g.shards()[0].repair_active());
        }
        let sent = fx.outbox.len();
        assert!(
            (3..=6).contains(&sent),
            "half a burst's worth: {sent} sends"
        );
        assert_eq!(groups[0].next_deadline_ms(), Some(5 + gap_ms));
        assert_eq!(groups[1].next_deadline_ms(), Some(5 + 2 * gap_ms));
        // No step before the turn, however often the group runs.
        for ms in [5 + REPAIR_STEP_MS, 4 + gap_ms] {
            groups[0].end_batch(at(ms), &snapshot, &mut env, &counters, &mut fx);
        }
        assert_eq!(fx.outbox.len(), sent);
        // At its turn the bucket has refilled: more goes, and the next turn comes after the
        // other group's.
        groups[0].end_batch(at(5 + gap_ms), &snapshot, &mut env, &counters, &mut fx);
        let sent_first_turn = fx.outbox.len();
        assert!(sent_first_turn > sent);
        assert_eq!(groups[0].next_deadline_ms(), Some(5 + 3 * gap_ms));
        groups[1].end_batch(at(5 + 2 * gap_ms), &snapshot, &mut env, &counters, &mut fx);
        assert!(fx.outbox.len() > sent_first_turn, "the second group's turn");
        assert_eq!(groups[1].next_deadline_ms(), Some(5 + 4 * gap_ms));
    }

    fn held(g: &ShardGroup<u32>) -> usize {
        g.shards().iter().map(|s| s.store().read().len()).sum()
    }

    #[test]
    fn maintenance_by_lookup_pushes_to_the_closest_found_and_lets_far_copies_age_out() {
        let maintain = maintain_config();
        // The group's node ID is 7 (`group_with`). Owner `far_owner`'s closest are three other
        // nodes; owner `near_owner` has nobody closer than us.
        let mut g = group_with(2, 0, Some(maintain));
        let counters = Counters::default();
        let mut fx = Effects::default();
        let none = Arc::new(PeerSnapshot::default());
        let far_owner = Keypair::generate();
        let near_owner = Keypair::generate();
        for key in [&b"a"[..], b"b", b"c"] {
            let dat = crate::pow::make_dat_single(&far_owner, key, b"v", WALL_MS, 4);
            g.handle(at(0), &none, Input::LocalPut { dat }, &counters, &mut fx);
        }
        let dat = crate::pow::make_dat_single(&near_owner, b"n", b"v", WALL_MS, 4);
        g.handle(at(0), &none, Input::LocalPut { dat }, &counters, &mut fx);
        let mut env = env();
        g.end_batch(at(0), &none, &mut env, &counters, &mut fx);
        assert_eq!(held(&g), 4);
        fx.clear();
        // Not due before the interval (less its jitter of at most an eighth, and the stamps'
        // second granularity).
        g.end_batch(at(7_500), &none, &mut env, &counters, &mut fx);
        assert!(fx.lookups.is_empty() && fx.outbox.is_empty());
        // Due: one lookup per owner ID, not per record; no v1 repair datagrams to routing peers.
        let routing_peers = Arc::new(PeerSnapshot::new(
            peers(4)
                .peers()
                .iter()
                .map(|p| PeerInfo {
                    features: crate::wire::Features::ROUTING,
                    ..*p
                })
                .collect(),
        ));
        g.end_batch(at(10_000), &routing_peers, &mut env, &counters, &mut fx);
        let far_id = id_from_pubkey(&far_owner.public());
        let near_id = id_from_pubkey(&near_owner.public());
        let mut asked = fx.lookups.clone();
        asked.sort_unstable();
        let mut want = vec![far_id, near_id];
        want.sort_unstable();
        assert_eq!(asked, want);
        assert!(
            fx.outbox.is_empty(),
            "no v1 repair while maintaining by lookup"
        );
        fx.clear();
        // The answers: three nodes closer to `far_owner` than we are; nobody for `near_owner`.
        let closer = closest_three(far_id);
        let input = Input::LookupDone {
            target: far_id,
            closest: Some(&closer),
        };
        g.handle(at(10_100), &none, input, &counters, &mut fx);
        let input = Input::LookupDone {
            target: near_id,
            closest: Some(&[]),
        };
        g.handle(at(10_100), &none, input, &counters, &mut fx);
        g.end_batch(at(10_100), &none, &mut env, &counters, &mut fx);
        assert_eq!(
            fx.outbox.len(),
            9,
            "three records to each of the three closest"
        );
        assert!(
            fx.outbox
                .iter()
                .all(|(to, _)| closer.iter().any(|c| c.addr == to))
        );
        fx.clear();
        // We are not among the closest for `far_owner`: no more lookups of it, and its copies
        // age out 20 s after they were stored; `near_owner`'s (a replica) stays.
        g.end_batch(at(19_500), &none, &mut env, &counters, &mut fx);
        assert_eq!(held(&g), 4, "not yet");
        assert!(!fx.lookups.contains(&far_id));
        // (The walk runs on the periodic tick, a second after the last.)
        g.end_batch(at(20_500), &none, &mut env, &counters, &mut fx);
        assert_eq!(held(&g), 1, "the far copies aged out");
        assert_eq!(
            counters
                .copies_aged_out
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        assert_eq!(fx.backup.len(), 3, "their deletes are backed up");
        fx.clear();
        // The replica copy is republished again when due, and never ages out.
        g.end_batch(at(25_000), &none, &mut env, &counters, &mut fx);
        assert_eq!(fx.lookups, vec![near_id]);
        g.end_batch(at(1_000_000), &none, &mut env, &counters, &mut fx);
        assert_eq!(held(&g), 1);
        assert_eq!(g.maintain_stats().answers, 2);
        // v1-only peers (lookups cannot find them) still get the v1 repair.
        fx.clear();
        g.end_batch(at(1_000_100), &peers(4), &mut env, &counters, &mut fx);
        assert_eq!(g.view().len(), 4);
        assert_eq!(
            fx.outbox.len(),
            3,
            "the near record to its FANOUT closest v1 peers"
        );
    }
}
