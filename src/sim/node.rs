//! One simulated node: the real [`PeerTable`] and a few real [`Shard`]s, wired the way
//! `node.rs` wires them, minus the threads and sockets.
//!
//! ```text
//!  datagram ─► own address? drop ─► Message::parse ─► PUT      ─► shard.handle_puts
//!                                                    GET      ─► answer_get (+ amplification limit)
//!                                                    GET_ACK  ─► shard.handle_get_ack
//!                                                    PING/PONG/GETMYADDRPORT(_ACK) ─► table.handle
//!                 ─► FIND_NODE/NODES (0x10, 0x11) ─► router.handle (with the ROUTING extension)
//!                 ─► v2 ops (0x18..=0x1f)          ─► Message2::parse ─► GET2 ─► answer_get2
//!                                                    (+ amplification limit); the rest ─►
//!                                                    Group2::handle (with RECORD_V2)
//!  peer tick      ─► table.tick                      (at table.next_tick_ms())
//!  route tick     ─► router.tick                     (at router.next_deadline_ms())
//!  peer events    ─► route::drive::exchange: contacts into the router, its proofs into the table
//!  owner tick     ─► ShardGroup::end_batch at ShardGroup::next_deadline_ms (the same core and
//!                    constants as the node's owner threads: get deadlines, the periodic tick,
//!                    challenges, the replica view, repair steps), then Group2::end_batch (the
//!                    v2 cores' get and CAS deadlines, expiry, v2 repair and maintenance)
//!  outcomes       ─► table.record_challenge          datagrams ─► the world's network
//! ```
//!
//! With `Config::route_lookups`, a local put or get first runs a lookup for the owner's ID (as
//! `Node::put_dat` / `Node::get` do) and then goes to the owner core with the lookup's closest
//! nodes as its targets (`via`, `route::drive::lookup_view`), or with the peer snapshot when the
//! lookup found nobody. A put's result then arrives later, in [`SimNode::take_puts_done`].
//!
//! Where the node has one owner thread per group of shards, a simulated node has one
//! [`ShardGroup`] for all its shards (`groups = 1`): one challenge timer with the node-wide mean
//! gap, one repair pacer, one replica view. Every input ends its batch, as a node owner's batch
//! of one message would. Adversaries are the same struct with a [`Behaviour`] that changes what
//! they store and answer; they run the honest peer table so they authenticate and become targets.
//!
//! v2 records (RECORD_V2, `shard::core2`): a node that speaks the extension has one
//! [`Group2`] beside its v1 group, built from the same `Config` methods the node uses
//! (`rules2`, `store2_config`), fed the same inputs the node's receivers and owners give it
//! (`node::receiver::receive_v2`, `node::owner`), and run at the same points. Its local puts
//! and gets wait for a lookup as v1 ones do; their results arrive in
//! [`SimNode::take_puts2_done`] and [`SimNode::take_gets2_done`]. Adversaries model v1 only: a
//! node whose behaviour does not store honestly ignores v2 datagrams.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::keys::Keypair;
use crate::outbox::Outbox;
use crate::peer::budget::{AmplificationLimiter, Pacer};
use crate::peer::{self, Outgoing, PeerConfig, PeerSnapshot, PeerTable, PongAuth};
use crate::pow;
use crate::route::{Contact, LookupDone, LookupId, Router, RouterEffects};
use crate::shard::core::{
    Effects, GetOutcome, GetRequest, Record, Shard, ShardPolicy, ShardRules, answer_get,
};
use crate::shard::core2::{
    Counters2, Effects2, Get2Outcome, LocalPut2, Put2Error, Put2Report, Shard2, answer_get2,
};
use crate::shard::group::{GroupConfig, GroupEnv, Input, Now, ShardGroup};
use crate::shard::group2::{Group2, Input2, NetworkPut2};
use crate::shard::store::{RecordView, Refusal, Store, StoreConfig};
use crate::shard::store2::Store2;
use crate::stats::{Counters, inc};
use crate::wire::record2::{Message2, OP2_FIRST, OP2_LAST, Record2};
use crate::wire::route::{ROUTE_OPS, RouteMessage};
use crate::wire::{Dat, DatFields, Features, GetRepr, Message, PongRepr};

/// A local get's identity in the simulator.
pub type Ticket = u64;

/// A local put's identity in the simulator (its result may arrive after a lookup).
pub type PutTag = u64;

/// A local put or get waiting for its lookup.
enum Deferred {
    Put {
        dat: Record,
        tag: PutTag,
    },
    /// Replica maintenance asked for the closest nodes of an owner ID (`Effects::lookups`).
    Maintain {
        target: u64,
    },
    /// A local get: of a v1 record (its outcome arrives in `fx.completions`), or with `v2` a
    /// strict get of a v2 record (in `gets2_done`).
    Get {
        pubkey: [u8; 32],
        key: Box<[u8]>,
        timeout_ms: u64,
        ticket: Ticket,
        v2: bool,
    },
    /// A local v2 put (its result arrives in `puts2_done`).
    Put2 {
        put: LocalPut2<PutTag>,
    },
}

/// A local v2 put's result, as [`SimNode::take_puts2_done`] hands it over.
pub type Put2Result = Result<Put2Report, Put2Error>;

/// The lookups a node ran (`Config::route_lookups`): for its local puts and gets, and for
/// replica maintenance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Lookups started (for a local put or get, or for replica maintenance).
    pub started: u64,
    /// The router refused to start one (`router::MAX_LOOKUPS` in progress): peer snapshot used.
    pub refused: u64,
    /// Lookups that ended.
    pub done: u64,
    /// Of those, found nobody: peer snapshot used.
    pub empty: u64,
    /// Hops to the closest node found, per lookup that found someone.
    pub hops: Vec<u32>,
}

/// The Unix time (ms) virtual time 0 corresponds to on every node's wall clock (before skew):
/// 2026-01-01T00:00:00Z. Dat times are wall-clock values, so they must look real.
pub const SIM_EPOCH_MS: i64 = 1_767_225_600_000;

/// A local put dates its record this far back, like `Node::put` (the reference's 100 ms).
pub const PUT_BACKDATE_MS: i64 = 100;

/// Key-cache slots of a simulated node: small (3.2 KB), since a simulation holds thousands of
/// nodes and the cache changes only what verification costs, never its result.
const SIM_KEY_SLOTS: usize = 16;

/// A simulated node's owner: its own repair pacer and key cache, no verification permits (one
/// thread).
struct SimEnv<'a>(&'a mut Pacer, &'a mut pow::KeyCache);

impl GroupEnv for SimEnv<'_> {
    type Permit<'p>
        = &'p mut pow::KeyCache
    where
        Self: 'p;

    fn verify_permit(&mut self) -> &mut pow::KeyCache {
        &mut *self.1
    }

    fn repair_pacer(&mut self) -> impl std::ops::DerefMut<Target = Pacer> + '_ {
        &mut *self.0
    }
}

/// What a node does with records. Every behaviour runs the honest peer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// The real shard cores.
    Honest,
    /// Accepts PUTs, stores nothing, answers every GET "not found".
    Dropper,
    /// Stores nothing, answers every GET with a forged record (valid work, bad signature).
    Forger,
    /// Keeps the first version of each record it is sent, never forwards, answers with it.
    Stale,
    /// Honest storage; PONGs list non-existent addresses; floods unsolicited PONGs.
    Poisoner,
    /// Honest storage; sends PUTs of records without enough (or with false) work.
    LowWork,
}

impl Behaviour {
    /// Whether the node stores and answers through the real shard cores.
    pub fn stores_honestly(self) -> bool {
        matches!(
            self,
            Behaviour::Honest | Behaviour::Poisoner | Behaviour::LowWork
        )
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Honest => "honest",
            Behaviour::Dropper => "dropper",
            Behaviour::Forger => "forger",
            Behaviour::Stale => "stale",
            Behaviour::Poisoner => "poisoner",
            Behaviour::LowWork => "low-work",
        }
    }
}

/// Everything every node of a run shares.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// Protocol, trust, challenge, repair and amplification settings.
    pub config: Config,
    /// Peer-table size.
    pub max_peers: usize,
    /// Shards per node.
    pub shards_per_node: usize,
    /// The edges' addresses.
    pub edges: Vec<SocketAddr>,
    /// Period of the shard tick (`SimOptions::shard_period_ms`).
    pub shard_period_ms: u64,
    /// Replica maintenance by lookup (`SimOptions::maintain_by_lookup`).
    pub maintain_by_lookup: bool,
    /// How PONGs are signed (`SimOptions::fast_pong_auth`): with `SimulatedMac`, every node's key
    /// is registered when the node is created.
    pub pong_auth: PongAuth,
}

impl NodeSetup {
    fn rules(&self) -> ShardRules {
        ShardRules {
            min_work_bits: self.config.min_work_bits,
            fanout: self.config.fanout,
            signature_check: self.config.signature_check,
            get_settle_ms: self.config.get_settle_ms,
        }
    }

    fn policy(&self) -> ShardPolicy {
        self.config.shard_policy()
    }

    /// One group for all the node's shards, scheduled like a node's owner thread.
    fn group_config(&self) -> GroupConfig {
        GroupConfig {
            groups: 1,
            challenge_mean_gap_ms: self.config.challenge_mean_gap_ms,
            repair_enabled: self.config.repair_bytes_per_s > 0,
            repair_scan_records_per_step: self.config.repair_scan_records_per_step,
            tick_period_ms: self.shard_period_ms,
            trust: self.policy().trust,
            // Maintenance by lookup as in the node, unless turned off
            // (`SimOptions::maintain_by_lookup`).
            maintain: self
                .maintain_by_lookup
                .then(|| self.config.maintain_config(1))
                .flatten(),
        }
    }

    /// The node's peer settings (`Config::peer_config`, the one `Node::start` uses: routing
    /// peers watched by the router instead of pinged each second), with the run's table size,
    /// edges and PONG authentication.
    fn peer_config(&self, addr: SocketAddr) -> PeerConfig {
        PeerConfig {
            max_peers: self.max_peers,
            edges: self.edges.iter().copied().filter(|&e| e != addr).collect(),
            pong_auth: self.pong_auth.clone(),
            ..self.config.peer_config(addr)
        }
    }

    /// The node's router, as `Node::start` makes it, when the node speaks ROUTING.
    fn router(&self, keypair: &Keypair, addr: SocketAddr, seed: u64) -> Option<Router> {
        self.config.routing().then(|| {
            let mut router = Router::new(keypair.id(), self.config.router_config(), seed);
            router.set_own_addr(addr);
            router
        })
    }

    /// Whether the nodes speak RECORD_V2 (then each runs a [`Group2`]).
    fn speaks_v2(&self) -> bool {
        self.config.extensions.contains(Features::RECORD_V2)
    }

    /// The node's v2 cores, as `Node::start` makes them (one group for all shards here), holding
    /// `records` (a restart's, as replayed from its backup log); `None` without RECORD_V2.
    fn group2(
        &self,
        keypair: &Keypair,
        records: Vec<Record2>,
        now: Now,
        rng: &mut StdRng,
    ) -> Option<Group2<PutTag, Ticket>> {
        if !self.speaks_v2() {
            return None;
        }
        let shards: Vec<Shard2<PutTag, Ticket>> = (0..self.shards_per_node)
            .map(|_| {
                Shard2::new(
                    Store2::new(self.config.store2_config()),
                    self.config.rules2(),
                    keypair.id(),
                )
                .with_repair(self.policy().repair, rng.r#gen())
            })
            .collect();
        for record in records {
            // `Group2::new` with one group routes by `shard_index % shards` (as v1 does here).
            let local = crate::shard::shard_index(record.pubkey(), record.key()) % shards.len();
            let _expired_if_refused = shards[local].store().write().restore(record, now.wall_ms);
        }
        Some(
            Group2::new(shards, 1, self.shard_period_ms, now).with_repair(self.group_config(), now),
        )
    }
}
/// A record's identity.
pub type RecordKey = ([u8; 32], Box<[u8]>);

/// One simulated node. See the module docs.
pub struct SimNode {
    /// Index in the world's node table; fixes the address.
    pub slot: usize,
    /// Its address (`network::addr_of(slot)`).
    pub addr: SocketAddr,
    /// Its identity.
    pub keypair: Keypair,
    /// What it does with records.
    pub behaviour: Behaviour,
    /// A configured edge.
    pub edge: bool,
    /// Its key was ground next to the Sybil victim's.
    pub sybil: bool,
    /// Running (receives datagrams, ticks).
    pub alive: bool,
    /// Bumped by every restart: timers scheduled before it are stale.
    pub epoch: u32,
    /// When it (last) started.
    pub started_ms: u64,
    /// Virtual milliseconds it has been alive before its current run (restarts).
    pub alive_ms_before: u64,
    /// Wall-clock offset.
    pub skew_ms: i64,
    /// The peer table.
    pub table: PeerTable,
    /// Its shards, as the owner core that runs them (`shard_index % shards`).
    pub group: ShardGroup<Ticket>,
    /// Its counters (all "threads" of the node share one set).
    pub counters: Counters,
    /// Datagrams and bytes it sent.
    pub sent_packets: u64,
    /// Bytes it sent.
    pub sent_bytes: u64,
    /// Peer timer: when its next scheduled tick is (`u64::MAX`: none).
    pub peer_tick_at: u64,
    /// Router timer: when its next deadline is scheduled (`u64::MAX`: none).
    pub route_tick_at: u64,
    /// The routing core (`None` without the ROUTING extension).
    pub router: Option<Router>,
    /// The v2-record cores (`None` without the RECORD_V2 extension).
    pub group2: Option<Group2<PutTag, Ticket>>,
    /// The v2 cores' counters.
    pub counters2: Counters2,
    /// Lookups of local puts and gets.
    pub lookup_stats: LookupStats,
    /// Bytes it sent in FIND_NODE / NODES.
    pub route_bytes_sent: u64,
    /// Bytes it sent in PING / PONG / GETMYADDRPORT(_ACK).
    pub ping_bytes_sent: u64,
    /// Owner timer: when the group's next deadline is scheduled.
    pub shard_tick_at: u64,
    /// Adversary timer.
    pub adversary_at: u64,
    /// Records a low-work adversary sent (to check nobody honest kept them).
    pub low_work_sent: Vec<RecordKey>,
    /// Datagrams the amplification limit withheld, by op byte (PING … GETMYADDRPORT_ACK).
    pub withheld_by_op: [u64; 7],
    own_addrs: Vec<SocketAddr>,
    /// Local puts and gets waiting for their lookup.
    deferred: BTreeMap<LookupId, Deferred>,
    /// Results of deferred local puts, for the world to collect.
    puts_done: Vec<(PutTag, crate::shard::group::LocalPutResult)>,
    /// Results of local v2 puts, for the world to collect.
    puts2_done: Vec<(PutTag, Put2Result)>,
    /// Outcomes of local v2 gets, for the world to collect.
    gets2_done: Vec<(Ticket, Get2Outcome)>,
    /// The v2 cores' effects of the current input (carried out at once).
    fx2: Effects2<PutTag, Ticket>,
    /// Gets that waited for a lookup and were then answered from the own store, for the world
    /// to count as local (their latency is the lookup's, not 0).
    answered_locally: Vec<Ticket>,
    limiter: AmplificationLimiter,
    pacer: Pacer,
    /// Decoded owner keys (a node's permits carry one each).
    keys: pow::KeyCache,
    rng: StdRng,
    /// The Stale adversary's records: first version only.
    stale_held: BTreeMap<RecordKey, Record>,
    setup: Arc<NodeSetup>,
    low_work_made: u64,
}

impl SimNode {
    /// A node starting at `now_ms` with an empty store.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        setup: Arc<NodeSetup>,
        slot: usize,
        keypair: Keypair,
        behaviour: Behaviour,
        edge: bool,
        skew_ms: i64,
        seed: u64,
        now_ms: u64,
    ) -> SimNode {
        let addr = crate::sim::network::addr_of(slot);
        if let PongAuth::SimulatedMac(registry) = &setup.pong_auth {
            registry.register(&keypair);
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let table = PeerTable::new(setup.peer_config(addr), keypair.clone(), rng.r#gen())
            .expect("simulated peer config is valid (SimOptions::validate)");
        let shards = Self::empty_shards(&setup, &keypair, &mut rng);
        let now = Now {
            mono_ms: now_ms,
            wall_ms: SIM_EPOCH_MS + now_ms as i64 + skew_ms,
        };
        let group = ShardGroup::new(shards, setup.group_config(), now, rng.r#gen());
        let router = setup.router(&keypair, addr, rng.r#gen());
        let group2 = setup.group2(&keypair, Vec::new(), now, &mut rng);
        SimNode {
            slot,
            addr,
            behaviour,
            edge,
            sybil: false,
            alive: true,
            epoch: 0,
            started_ms: now_ms,
            alive_ms_before: 0,
            skew_ms,
            table,
            group,
            counters: Counters::default(),
            sent_packets: 0,
            sent_bytes: 0,
            peer_tick_at: u64::MAX,
            route_tick_at: u64::MAX,
            router,
            group2,
            counters2: Counters2::default(),
            lookup_stats: LookupStats::default(),
            route_bytes_sent: 0,
            ping_bytes_sent: 0,
            shard_tick_at: u64::MAX,
            adversary_at: u64::MAX,
            low_work_sent: Vec::new(),
            withheld_by_op: [0; 7],
            own_addrs: vec![addr],
            deferred: BTreeMap::new(),
            puts_done: Vec::new(),
            puts2_done: Vec::new(),
            gets2_done: Vec::new(),
            fx2: Effects2::default(),
            answered_locally: Vec::new(),
            limiter: AmplificationLimiter::new(setup.config.amplification_config(), now_ms),
            pacer: Pacer::new(setup.config.repair_budget(), now_ms),
            keys: pow::KeyCache::new(SIM_KEY_SLOTS, 0),
            rng,
            stale_held: BTreeMap::new(),
            keypair,
            setup,
            low_work_made: 0,
        }
    }

    fn empty_shards(setup: &NodeSetup, keypair: &Keypair, rng: &mut StdRng) -> Vec<Shard<Ticket>> {
        (0..setup.shards_per_node)
            .map(|_| {
                let store = Store::new(StoreConfig {
                    capacity_bytes: setup.config.shard_capacity_bytes,
                    ttl_ms: setup.config.ttl_ms,
                    node_id: keypair.id(),
                });
                Shard::new(store, setup.rules()).with_policy(setup.policy(), rng.r#gen())
            })
            .collect()
    }

    /// Stops the node (its pending gets are the caller's to abort).
    pub fn stop(&mut self, now_ms: u64) {
        self.alive_ms_before += now_ms.saturating_sub(self.started_ms);
        self.alive = false;
        self.epoch += 1;
        self.peer_tick_at = u64::MAX;
        self.route_tick_at = u64::MAX;
        self.shard_tick_at = u64::MAX;
        self.adversary_at = u64::MAX;
        // Its lookups' puts and gets die with it (the world aborts the gets, forgets the puts).
        self.deferred.clear();
        self.puts_done.clear();
        self.puts2_done.clear();
        self.gets2_done.clear();
        self.answered_locally.clear();
    }

    /// Starts a stopped node again with the same key and address: an empty peer table, its
    /// records kept (as replayed from its backup log), pending gets and challenges forgotten.
    pub fn restart(&mut self, now_ms: u64, seed: u64) {
        debug_assert!(!self.alive);
        let mut rng = StdRng::seed_from_u64(seed);
        self.table = PeerTable::new(
            self.setup.peer_config(self.addr),
            self.keypair.clone(),
            rng.r#gen(),
        )
        .expect("simulated peer config is valid");
        let mut shards = Self::empty_shards(&self.setup, &self.keypair, &mut rng);
        let wall = self.wall_ms(now_ms);
        for (old, new) in self.group.shards().iter().zip(shards.iter_mut()) {
            let records: Vec<Record> = old.store().read().iter().map(|r| r.to_boxed()).collect();
            for record in records {
                let _ = new.restore(record, wall);
            }
        }
        let now = Now {
            mono_ms: now_ms,
            wall_ms: wall,
        };
        self.group = ShardGroup::new(shards, self.setup.group_config(), now, rng.r#gen());
        self.router = self.setup.router(&self.keypair, self.addr, rng.r#gen());
        let records2: Vec<Record2> = self
            .group2
            .iter()
            .flat_map(|g| g.shards())
            .flat_map(|s| {
                let store = s.store().read();
                store.iter().map(|r| r.to_boxed()).collect::<Vec<_>>()
            })
            .collect();
        self.group2 = self.setup.group2(&self.keypair, records2, now, &mut rng);
        self.own_addrs = vec![self.addr];
        self.limiter = AmplificationLimiter::new(self.setup.config.amplification_config(), now_ms);
        self.pacer = Pacer::new(self.setup.config.repair_budget(), now_ms);
        self.rng = rng;
        self.started_ms = now_ms;
        self.alive = true;
    }

    /// Virtual milliseconds alive up to `now_ms`.
    pub fn alive_ms(&self, now_ms: u64) -> u64 {
        self.alive_ms_before
            + if self.alive {
                now_ms.saturating_sub(self.started_ms)
            } else {
                0
            }
    }

    /// Whether this node speaks v1 only (no extension: `SimOptions::v1_share`).
    pub fn speaks_v1_only(&self) -> bool {
        self.setup.config.extensions == Features::NONE
    }

    /// This node's wall clock at virtual time `now_ms`.
    pub fn wall_ms(&self, now_ms: u64) -> i64 {
        SIM_EPOCH_MS + now_ms as i64 + self.skew_ms
    }

    /// Both clocks at virtual time `now_ms`.
    fn now(&self, now_ms: u64) -> Now {
        Now {
            mono_ms: now_ms,
            wall_ms: self.wall_ms(now_ms),
        }
    }

    fn shard(&self, pubkey: &[u8; 32], key: &[u8]) -> &Shard<Ticket> {
        &self.group.shards()[self.group.local_index(pubkey, key)]
    }

    /// One input to the owner core, then the end of its batch (timers due, repair), then the
    /// challenge outcomes into the peer table. Returns a local put's result.
    /// `via`: a lookup's targets for a local put or get, used instead of the peer snapshot (as
    /// the node's owner thread does with `OwnerMsg::LocalPut { via }`).
    fn owner_input(
        &mut self,
        now_ms: u64,
        input: Option<Input<'_, Ticket>>,
        via: Option<&Arc<PeerSnapshot>>,
        fx: &mut Effects<Ticket>,
    ) -> Option<crate::shard::group::LocalPutResult> {
        let now = self.now(now_ms);
        let snapshot = self.table.snapshot();
        let peers = via.unwrap_or(&snapshot);
        let result =
            input.and_then(|input| self.group.handle(now, peers, input, &self.counters, fx));
        let mut env = SimEnv(&mut self.pacer, &mut self.keys);
        self.group
            .end_batch(now, &snapshot, &mut env, &self.counters, fx);
        self.apply_outcomes(fx);
        // Replica maintenance's lookups (`route::maintain`), through the router as the node's
        // owners ask its peer thread; one that cannot run is answered `None` at once.
        for target in std::mem::take(&mut fx.lookups) {
            if self
                .start_lookup(now_ms, target, Deferred::Maintain { target }, fx)
                .is_err()
            {
                self.maintain_done(now_ms, target, None, fx);
            }
        }
        result
    }

    /// A replica-maintenance lookup ended (`closest`) or could not run (`None`). As in the
    /// node, one lookup per owner ID serves the v1 and the v2 copies alike: both groups are
    /// told, and each ignores an answer it did not ask for.
    fn maintain_done(
        &mut self,
        now_ms: u64,
        target: u64,
        closest: Option<&[Contact]>,
        fx: &mut Effects<Ticket>,
    ) {
        let now = self.now(now_ms);
        if let Some(group2) = self.group2.as_mut() {
            group2.lookup_done(now, target, closest);
        }
        let input = Input::LookupDone { target, closest };
        self.owner_input(now_ms, Some(input), None, fx);
    }

    /// The version of `(pubkey, key)` this node would answer a GET with: a v1 record's time,
    /// else a v2 record's seq (the world stamps v2 records by seq).
    pub fn held_version(&self, pubkey: &[u8; 32], key: &[u8]) -> Option<i64> {
        match self.behaviour {
            Behaviour::Dropper | Behaviour::Forger => None,
            Behaviour::Stale => self
                .stale_held
                .get(&(*pubkey, Box::<[u8]>::from(key)))
                .map(|r| r.time_ms()),
            _ => self
                .shard(pubkey, key)
                .store()
                .read()
                .get(pubkey, key)
                .map(|r| r.time_ms())
                .or_else(|| self.held_seq2(pubkey, key).map(|seq| seq as i64)),
        }
    }

    /// The seq of the v2 record `(pubkey, key)` the v2 store holds.
    fn held_seq2(&self, pubkey: &[u8; 32], key: &[u8]) -> Option<u64> {
        self.held_work2(pubkey, key).map(|(seq, _)| seq)
    }

    /// The seq and work hash (which names its content) of the v2 record `(pubkey, key)` the
    /// v2 store holds; `None` for a node that does not store honestly.
    pub fn held_work2(&self, pubkey: &[u8; 32], key: &[u8]) -> Option<(u64, [u8; 32])> {
        if !self.behaviour.stores_honestly() {
            return None;
        }
        let group2 = self.group2.as_ref()?;
        let shards = group2.shards();
        let local = crate::shard::shard_index(pubkey, key) % shards.len();
        let store = shards[local].store().read();
        store.get(pubkey, key).map(|r| (r.seq(), *r.work()))
    }

    /// Records held by the real stores.
    pub fn record_count(&self) -> usize {
        self.group
            .shards()
            .iter()
            .map(|s| s.store().read().len())
            .sum()
    }

    /// Every record the real stores hold, as `(pubkey, key, time)`.
    pub fn for_each_record(&self, mut f: impl FnMut(&RecordView<'_>)) {
        for shard in self.group.shards() {
            for record in shard.store().read().iter() {
                f(&record);
            }
        }
    }

    // ----- Inputs -----

    /// One datagram from `from`.
    pub fn on_datagram(
        &mut self,
        now_ms: u64,
        from: SocketAddr,
        bytes: &[u8],
        fx: &mut Effects<Ticket>,
    ) {
        inc(&self.counters.packets_received);
        crate::stats::add(&self.counters.bytes_received, bytes.len() as u64);
        if self.own_addrs.contains(&from) {
            inc(&self.counters.own_packets_dropped);
            return;
        }
        if let Some(router) = self.router.as_mut()
            && bytes.first().is_some_and(|op| ROUTE_OPS.contains(op))
        {
            // The routing extension, as the node's receiver hands it to the peer thread. A
            // v1-only node (no router) falls through to `Message::parse` (`unknown_op`).
            match RouteMessage::parse(bytes) {
                Ok(msg) => {
                    let proven = self.table.is_proven(from);
                    let rfx = router.handle(now_ms, from, proven, bytes.len(), &msg);
                    self.carry_out(now_ms, peer::Effects::default(), rfx, fx);
                }
                Err(e) => inc(&self.counters.malformed[e.index()]),
            }
            return;
        }
        if self.group2.is_some()
            && bytes
                .first()
                .is_some_and(|op| (OP2_FIRST..=OP2_LAST).contains(op))
        {
            // RECORD_V2, as the node's receivers take it (`receive_v2`). A v1-only node falls
            // through to `Message::parse` (`unknown_op`).
            self.on_v2(now_ms, from, bytes, fx);
            return;
        }
        let message = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                inc(&self.counters.malformed[e.index()]);
                return;
            }
        };
        match message {
            Message::Ping { .. }
            | Message::Pong(_)
            | Message::GetMyAddrPort
            | Message::GetMyAddrPortAck(_) => {
                let pfx = self.table.handle(now_ms, from, &message);
                self.carry_out(now_ms, pfx, RouterEffects::default(), fx);
            }
            Message::Put(dat) => self.on_put(now_ms, from, dat, fx),
            Message::Get(get) => self.on_get(now_ms, from, &get, fx),
            Message::GetAck(dat) => {
                if self.behaviour.stores_honestly() {
                    let input = Input::GetAck {
                        from,
                        dat: dat.to_boxed(),
                    };
                    self.owner_input(now_ms, Some(input), None, fx);
                }
            }
        }
    }

    fn on_put(&mut self, now_ms: u64, from: SocketAddr, dat: Dat<&[u8]>, fx: &mut Effects<Ticket>) {
        match self.behaviour {
            Behaviour::Dropper | Behaviour::Forger => {}
            Behaviour::Stale => {
                let id = (*dat.pubkey(), Box::<[u8]>::from(dat.key()));
                self.stale_held.entry(id).or_insert_with(|| dat.to_boxed());
            }
            _ => {
                let input = Input::Put {
                    from,
                    dat: dat.to_boxed(),
                };
                self.owner_input(now_ms, Some(input), None, fx);
            }
        }
    }

    fn on_get(
        &mut self,
        now_ms: u64,
        from: SocketAddr,
        get: &GetRepr<'_>,
        fx: &mut Effects<Ticket>,
    ) {
        match self.behaviour {
            Behaviour::Dropper => {
                inc(&self.counters.gets_received);
                push_not_found(&mut fx.outbox, from, get);
            }
            Behaviour::Forger => {
                inc(&self.counters.gets_received);
                let forged = self.forge(now_ms, get);
                fx.outbox.push(from, &Message::GetAck(forged.as_view()));
            }
            Behaviour::Stale => {
                inc(&self.counters.gets_received);
                match self
                    .stale_held
                    .get(&(*get.pubkey, Box::<[u8]>::from(get.key)))
                {
                    Some(held) => fx.outbox.push(from, &Message::GetAck(held.as_view())),
                    None => push_not_found(&mut fx.outbox, from, get),
                }
            }
            _ => {
                answer_get(
                    &self.shard(get.pubkey, get.key).store().read(),
                    from,
                    get,
                    &self.counters,
                    &mut fx.outbox,
                );
                // The receiver path's amplification limit (`node.rs`: `limit_last_reply`).
                if !self.table.is_proven(from) {
                    self.limit_last(now_ms, from, &mut fx.outbox);
                }
            }
        }
    }

    /// A v2 datagram: parsed (a malformed one counted by reason), GET2 answered from the store's
    /// read view (through the amplification limit to an unproven sender), the rest to the v2
    /// cores: the node's `receive_v2` and its owner's `Input2` in one step.
    fn on_v2(&mut self, now_ms: u64, from: SocketAddr, bytes: &[u8], fx: &mut Effects<Ticket>) {
        let message = match Message2::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                inc(&self.counters.malformed[e.index()]);
                return;
            }
        };
        if !self.behaviour.stores_honestly() {
            return;
        }
        // A GET2_ACK's key, owned (the parsed view's borrow ends with its arm).
        let ack_key: Box<[u8]>;
        let input = match message {
            Message2::Get2 { pubkey, key } => {
                let Some(group2) = self.group2.as_ref() else {
                    return;
                };
                let shards = group2.shards();
                let local = crate::shard::shard_index(pubkey, key) % shards.len();
                answer_get2(
                    &shards[local].store().read(),
                    from,
                    pubkey,
                    key,
                    &self.counters2,
                    &mut fx.outbox,
                );
                if !self.table.is_proven(from) {
                    self.limit_last(now_ms, from, &mut fx.outbox);
                }
                return;
            }
            Message2::Put2(_) | Message2::Put2Cas { .. } | Message2::Put2Commit { .. } => {
                let Some(put) = NetworkPut2::of(from, message) else {
                    return;
                };
                Input2::Put(put)
            }
            Message2::Get2None { pubkey, key } => Input2::GetAck {
                from,
                pubkey: *pubkey,
                key,
                dat: None,
            },
            Message2::Put2Status {
                status,
                held_seq,
                work,
                pubkey,
                key,
            } => Input2::Status {
                from,
                status,
                held_seq,
                work: *work,
                pubkey: *pubkey,
                key,
            },
            Message2::Get2Ack(dat) => {
                ack_key = dat.key().into();
                Input2::GetAck {
                    from,
                    pubkey: *dat.pubkey(),
                    key: &ack_key,
                    dat: Some(dat.to_boxed()),
                }
            }
        };
        self.owner_input2(now_ms, Some(input), None, fx);
    }

    /// One input to the v2 cores, then the end of their batch (deadlines, expiry, repair,
    /// maintenance), as the node's owner thread runs `Group2`; their datagrams join `fx`'s,
    /// their finished puts and gets wait for the world, their lookups go to the router.
    fn owner_input2(
        &mut self,
        now_ms: u64,
        input: Option<Input2<'_, PutTag, Ticket>>,
        via: Option<&Arc<PeerSnapshot>>,
        fx: &mut Effects<Ticket>,
    ) {
        let now = self.now(now_ms);
        let snapshot = self.table.snapshot();
        let Some(group2) = self.group2.as_mut() else {
            return;
        };
        let fx2 = &mut self.fx2;
        if let Some(input) = input {
            group2.handle(now, via.unwrap_or(&snapshot), input, &self.counters2, fx2);
        }
        let mut env = SimEnv(&mut self.pacer, &mut self.keys);
        group2.end_batch(now, &snapshot, &mut env, &self.counters2, fx2);
        for (to, bytes) in fx2.outbox.iter() {
            fx.outbox.push_bytes(to, bytes);
        }
        fx2.outbox.clear();
        // The simulated backup log is the stores themselves (a restart keeps them).
        fx2.backup.clear();
        self.puts2_done.append(&mut fx2.puts_done);
        self.gets2_done.append(&mut fx2.gets_done);
        for target in std::mem::take(&mut fx2.lookups) {
            if self
                .start_lookup(now_ms, target, Deferred::Maintain { target }, fx)
                .is_err()
            {
                self.maintain_done(now_ms, target, None, fx);
            }
        }
    }

    /// A forged answer: the asked owner and key, a fresh value, real work, a random signature.
    fn forge(&mut self, now_ms: u64, get: &GetRepr<'_>) -> Record {
        let time_ms = self.wall_ms(now_ms) - PUT_BACKDATE_MS;
        let value: [u8; 16] = self.rng.r#gen();
        let load = pow::load_hash(get.key, &value, time_ms);
        let (salt, work) = pow::search_single(&load, self.setup.config.min_work_bits);
        let mut sig = [0u8; 64];
        self.rng.fill(&mut sig[..]);
        DatFields {
            time_ms,
            salt,
            work,
            sig,
            pubkey: *get.pubkey,
            key: get.key,
            value: &value,
        }
        .to_dat()
    }

    fn limit_last(&mut self, now_ms: u64, to: SocketAddr, outbox: &mut Outbox) {
        let Some((_, bytes)) = outbox.iter().last() else {
            return;
        };
        let len = bytes.len();
        let op = bytes[0] as usize;
        if self.limiter.allow(now_ms, to, len).is_err() {
            outbox.truncate_last(1);
            self.withheld_by_op[op.min(6)] += 1;
            inc(&self.counters.amplification_withheld);
            crate::stats::add(&self.counters.amplification_withheld_bytes, len as u64);
        }
    }

    /// The peer table's and the router's effects, as the node's peer thread carries them out:
    /// events and proofs exchanged (`route::drive::exchange`), the router's datagrams, finished
    /// lookups handed to their puts and gets, then the table's datagrams (through the
    /// amplification limit, poisoned if this is a poisoner) and the own address.
    fn carry_out(
        &mut self,
        now_ms: u64,
        mut pfx: peer::Effects,
        mut rfx: RouterEffects,
        fx: &mut Effects<Ticket>,
    ) {
        if let Some(router) = self.router.as_mut() {
            crate::route::drive::exchange(router, &mut self.table, now_ms, &mut pfx, &mut rfx);
            let mut buf = [0u8; crate::limits::MAX_PACKET_LEN];
            for (to, msg) in &rfx.sends {
                let n = msg.emit(&mut buf);
                fx.outbox.push_bytes(*to, &buf[..n]);
            }
        }
        self.carry_out_peer(now_ms, pfx, fx);
        for done in rfx.done {
            self.lookup_done(now_ms, done, fx);
        }
    }

    /// A lookup of a local put or get ended: the put or get goes to the owner core with the
    /// lookup's closest nodes as targets, or with the peer snapshot if it found nobody.
    fn lookup_done(&mut self, now_ms: u64, done: LookupDone, fx: &mut Effects<Ticket>) {
        let Some(deferred) = self.deferred.remove(&done.id) else {
            return;
        };
        let stats = &mut self.lookup_stats;
        stats.done += 1;
        if done.closest.is_empty() {
            stats.empty += 1;
        } else {
            stats.hops.push(done.hops);
        }
        if let Deferred::Maintain { target } = deferred {
            self.maintain_done(now_ms, target, Some(&done.closest), fx);
            return;
        }
        let via = crate::route::drive::lookup_view(&done.closest, &self.table.snapshot());
        let ticket = match &deferred {
            Deferred::Get { ticket, .. } => Some(*ticket),
            Deferred::Put { .. } | Deferred::Put2 { .. } | Deferred::Maintain { .. } => None,
        };
        if let Some(put) = self.run_local(now_ms, deferred, via.as_ref(), fx) {
            self.puts_done.push(put);
        }
        if let Some(ticket) = ticket
            && (fx.completions.iter().any(|(t, _)| *t == ticket)
                || self.gets2_done.iter().any(|(t, _)| *t == ticket))
        {
            self.answered_locally.push(ticket);
        }
    }

    /// A local put or get goes to the owner core, with `via` as its targets (`None`: the peer
    /// snapshot). Returns a put's result.
    fn run_local(
        &mut self,
        now_ms: u64,
        local: Deferred,
        via: Option<&Arc<PeerSnapshot>>,
        fx: &mut Effects<Ticket>,
    ) -> Option<(PutTag, crate::shard::group::LocalPutResult)> {
        match local {
            Deferred::Put { dat, tag } => {
                let input = Input::LocalPut { dat };
                self.owner_input(now_ms, Some(input), via, fx)
                    .map(|result| (tag, result))
            }
            Deferred::Get {
                pubkey,
                key,
                timeout_ms,
                ticket,
                v2,
            } => {
                let request = GetRequest {
                    pubkey,
                    key: &key,
                    timeout_ms,
                    waiter: ticket,
                };
                if v2 {
                    self.owner_input2(now_ms, Some(Input2::LocalGet(request)), via, fx);
                } else {
                    self.owner_input(now_ms, Some(Input::LocalGet(request)), via, fx);
                }
                None
            }
            Deferred::Maintain { target } => {
                // Its lookup could not run (`start_lookup` gave it back): answered `None`.
                self.maintain_done(now_ms, target, None, fx);
                None
            }
            Deferred::Put2 { put } => {
                self.owner_input2(now_ms, Some(Input2::LocalPut(put)), via, fx);
                None
            }
        }
    }

    /// With `route_lookups`, starts the lookup of `target` for `deferred`; `Err` gives it back
    /// when there is no lookup to wait for (no router, lookups off, or the router refused).
    fn start_lookup(
        &mut self,
        now_ms: u64,
        target: u64,
        deferred: Deferred,
        fx: &mut Effects<Ticket>,
    ) -> Result<(), Deferred> {
        if !self.setup.config.route_lookups {
            return Err(deferred);
        }
        let Some(router) = self.router.as_mut() else {
            return Err(deferred);
        };
        let (id, rfx) = router.start_lookup(now_ms, target);
        let result = match id {
            Some(id) => {
                self.lookup_stats.started += 1;
                // Before the effects: a lookup with nobody to ask ends in them.
                self.deferred.insert(id, deferred);
                Ok(())
            }
            None => {
                self.lookup_stats.refused += 1;
                Err(deferred)
            }
        };
        self.carry_out(now_ms, peer::Effects::default(), rfx, fx);
        result
    }

    /// Results of local puts that waited for a lookup, in the order they were stored.
    pub fn take_puts_done(&mut self) -> Vec<(PutTag, crate::shard::group::LocalPutResult)> {
        std::mem::take(&mut self.puts_done)
    }

    /// Gets that waited for a lookup and were answered from the own store (no peer asked).
    pub fn take_answered_locally(&mut self) -> Vec<Ticket> {
        std::mem::take(&mut self.answered_locally)
    }

    /// Results of local v2 puts, in the order they ended.
    pub fn take_puts2_done(&mut self) -> Vec<(PutTag, Put2Result)> {
        std::mem::take(&mut self.puts2_done)
    }

    /// Outcomes of local v2 gets, in the order they ended.
    pub fn take_gets2_done(&mut self) -> Vec<(Ticket, Get2Outcome)> {
        std::mem::take(&mut self.gets2_done)
    }

    /// The table's effects: datagrams (through the amplification limit, poisoned if this is a
    /// poisoner) and the own address.
    fn carry_out_peer(&mut self, now_ms: u64, pfx: peer::Effects, fx: &mut Effects<Ticket>) {
        for datagram in &pfx.datagrams {
            let mut outgoing = datagram.message;
            if self.behaviour == Behaviour::Poisoner
                && let Outgoing::Pong(pong) = &mut outgoing
            {
                self.poison(pong);
            }
            let message = outgoing.message();
            if !datagram.to_proven {
                let len = message.buffer_len();
                if self.limiter.allow(now_ms, datagram.to, len).is_err() {
                    self.withheld_by_op[message.op() as usize] += 1;
                    inc(&self.counters.amplification_withheld);
                    crate::stats::add(&self.counters.amplification_withheld_bytes, len as u64);
                    continue;
                }
            }
            fx.outbox.push(datagram.to, &message);
        }
        if let Some(own) = pfx.own_addr()
            && !self.own_addrs.contains(&own)
        {
            self.own_addrs.push(own);
        }
    }

    /// Replaces a PONG's address list with addresses where no node lives (172.16.0.0/12). The
    /// signature covers only the challenge and salt, so the PONG stays valid.
    fn poison(&mut self, pong: &mut PongRepr) {
        pong.addr_count = crate::limits::MAX_PONG_ADDRS;
        for addr in pong.addrs.iter_mut() {
            *addr = crate::wire::addr_to_wire(poisoned_addr(&mut self.rng));
        }
    }

    /// Challenge outcomes become trust in the peer table (`node.rs`: `PeerMsg::Challenge`).
    fn apply_outcomes(&mut self, fx: &mut Effects<Ticket>) {
        let decay = self.setup.config.trust_decay;
        let scored = !fx.challenge_outcomes.is_empty();
        for outcome in fx.challenge_outcomes.drain(..) {
            self.table
                .record_challenge(outcome.peer, outcome.verdict.is_success(), decay);
        }
        if scored && let Some(router) = self.router.as_mut() {
            let trust = self.setup.policy().trust;
            crate::route::drive::apply_trust(router, &self.table.snapshot(), &trust);
        }
    }

    /// The peer timer fired.
    pub fn peer_tick(&mut self, now_ms: u64, fx: &mut Effects<Ticket>) {
        let pfx = self.table.tick(now_ms);
        self.carry_out(now_ms, pfx, RouterEffects::default(), fx);
    }

    /// The router timer fired (lookup and probe timeouts, bucket refresh).
    pub fn route_tick(&mut self, now_ms: u64, fx: &mut Effects<Ticket>) {
        let Some(router) = self.router.as_mut() else {
            return;
        };
        let rfx = router.tick(now_ms);
        self.carry_out(now_ms, peer::Effects::default(), rfx, fx);
    }

    /// When the router wants its next tick (`u64::MAX`: never, or no router).
    pub fn next_route_tick_ms(&self, now_ms: u64) -> u64 {
        self.router
            .as_ref()
            .and_then(Router::next_deadline_ms)
            .map_or(u64::MAX, |d| d.max(now_ms + 1))
    }

    /// When the peer table wants its next tick.
    pub fn next_peer_tick_ms(&self, now_ms: u64) -> u64 {
        self.table.next_tick_ms().max(now_ms + 1)
    }

    /// The owner timer fired: the group runs what is due (get deadlines, the periodic tick,
    /// challenges, the replica view, repair).
    pub fn shard_tick(&mut self, now_ms: u64, fx: &mut Effects<Ticket>) {
        if !self.behaviour.stores_honestly() {
            return;
        }
        self.owner_input(now_ms, None, None, fx);
        self.owner_input2(now_ms, None, None, fx);
    }

    /// When the owner core wants to run next: the group's deadline, or at once when the peer
    /// table has a new snapshot (the node's peer thread wakes its owners when the replica view
    /// changes). `u64::MAX`: nothing scheduled.
    pub fn next_shard_tick_ms(&self, now_ms: u64) -> u64 {
        if !self.behaviour.stores_honestly() {
            return u64::MAX;
        }
        let v2_at = self.group2.as_ref().and_then(Group2::next_deadline_ms);
        let mut at = [self.group.next_deadline_ms(), v2_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(u64::MAX);
        if self.group.snapshot_is_new(&self.table.snapshot()) {
            at = at.min(now_ms);
        }
        at.max(now_ms + 1)
    }

    /// A record made here (the owner's work and signature): store and replicate. `None`: it
    /// waits for a lookup (`Config::route_lookups`) and its result arrives under `tag` in
    /// [`SimNode::take_puts_done`].
    pub fn local_put(
        &mut self,
        now_ms: u64,
        dat: Record,
        tag: PutTag,
        fx: &mut Effects<Ticket>,
    ) -> Option<Result<Vec<SocketAddr>, Refusal>> {
        let target = dat.owner_id();
        match self.start_lookup(now_ms, target, Deferred::Put { dat, tag }, fx) {
            Ok(()) => None,
            Err(put) => self
                .run_local(now_ms, put, None, fx)
                .map(|(_, result)| result),
        }
    }

    /// A local get after the owner's lookup: of a v1 record, its outcome in `fx.completions`
    /// under `ticket`; with `v2`, a strict get of a v2 record, its outcome in
    /// [`SimNode::take_gets2_done`].
    #[allow(clippy::too_many_arguments)]
    pub fn start_get(
        &mut self,
        now_ms: u64,
        pubkey: [u8; 32],
        key: &[u8],
        timeout_ms: u64,
        ticket: Ticket,
        v2: bool,
        fx: &mut Effects<Ticket>,
    ) {
        let deferred = Deferred::Get {
            pubkey,
            key: key.into(),
            timeout_ms,
            ticket,
            v2,
        };
        self.run_after_lookup(now_ms, crate::keys::id_from_pubkey(&pubkey), deferred, fx);
    }

    /// Runs a local put or get once the lookup of `target` ends, or at once when there is no
    /// lookup to wait for.
    fn run_after_lookup(
        &mut self,
        now_ms: u64,
        target: u64,
        deferred: Deferred,
        fx: &mut Effects<Ticket>,
    ) {
        if let Err(local) = self.start_lookup(now_ms, target, deferred, fx) {
            self.run_local(now_ms, local, None, fx);
        }
    }

    /// A v2 record made here (with `put.expect_seq`, a compare-and-swap): store and replicate
    /// after the owner's lookup, as `Node::put_dat2` does. Its result arrives under
    /// `put.waiter` in [`SimNode::take_puts2_done`]; a node without RECORD_V2 drops it.
    pub fn local_put2(&mut self, now_ms: u64, put: LocalPut2<PutTag>, fx: &mut Effects<Ticket>) {
        let target = put.record.owner_id();
        self.run_after_lookup(now_ms, target, Deferred::Put2 { put }, fx);
    }

    // ----- Adversary actions -----

    /// The adversary timer fired: a poisoner floods one unsolicited PONG, a low-work node sends
    /// one bad record. Returns when it wants to act next.
    pub fn adversary_tick(
        &mut self,
        now_ms: u64,
        per_s: u64,
        fx: &mut Effects<Ticket>,
    ) -> Option<u64> {
        if per_s == 0 {
            return None;
        }
        let snapshot = self.table.snapshot();
        match self.behaviour {
            Behaviour::Poisoner => {
                if !snapshot.is_empty() {
                    let to = snapshot.peers()[self.rng.gen_range(0..snapshot.len())].addr;
                    let mut pong = PongRepr {
                        addr_count: 0,
                        addrs: [[0; crate::limits::ADDR_LEN]; crate::limits::MAX_PONG_ADDRS],
                        challenge: self.rng.r#gen(),
                        salt: self.rng.r#gen(),
                        pubkey: self.keypair.public(),
                        sig: [0; 64],
                    };
                    self.rng.fill(&mut pong.sig[..]);
                    self.poison(&mut pong);
                    fx.outbox.push(to, &Message::Pong(pong));
                }
            }
            Behaviour::LowWork => {
                let dat = self.low_work_record(now_ms);
                let mut targets: Vec<SocketAddr> = snapshot
                    .closest(dat.owner_id(), self.setup.config.fanout, None)
                    .into_iter()
                    .map(|p| p.addr)
                    .collect();
                for _ in 0..2 {
                    if !snapshot.is_empty() {
                        targets.push(snapshot.peers()[self.rng.gen_range(0..snapshot.len())].addr);
                    }
                }
                targets.sort_unstable();
                targets.dedup();
                for to in targets {
                    fx.outbox.push(to, &Message::Put(dat.as_view()));
                }
                self.low_work_sent
                    .push((*dat.pubkey(), Box::<[u8]>::from(dat.key())));
            }
            _ => return None,
        }
        Some(now_ms + (1000 / per_s).max(1))
    }

    /// A validly signed record under this node's key whose work is short of the minimum
    /// (even-numbered) or does not match its hash (odd-numbered: all-zero work, "infinite"
    /// difficulty).
    fn low_work_record(&mut self, now_ms: u64) -> Record {
        let n = self.low_work_made;
        self.low_work_made += 1;
        let key = format!("low-work-{}-{n}", self.slot).into_bytes();
        let value: [u8; 16] = self.rng.r#gen();
        let time_ms = self.wall_ms(now_ms) - PUT_BACKDATE_MS;
        let load = pow::load_hash(&key, &value, time_ms);
        let min = self.setup.config.min_work_bits;
        let (salt, work) = if n.is_multiple_of(2) && min > 0 {
            let mut found = None;
            for counter in 0.. {
                let salt = pow::salt_for_counter(counter);
                let work = pow::work_hash(&salt, &load);
                if pow::leading_zero_bits(&work) < min {
                    found = Some((salt, work));
                    break;
                }
            }
            found.unwrap_or(([0; 16], [0xff; 32]))
        } else {
            let mut work = [0u8; 32];
            work[31] = 1;
            (self.rng.r#gen(), work)
        };
        pow::sign_dat(&self.keypair, &key, &value, time_ms, salt, work)
    }

    /// Reliability this node's table gives `addr` (None: not an authenticated peer).
    pub fn trust_in(&self, addr: SocketAddr) -> Option<f32> {
        self.table
            .scores()
            .into_iter()
            .find(|s| s.addr == addr)
            .map(|s| s.reliability)
    }
}

/// A random address in 172.16.0.0/12 (where no simulated node lives) on the node port.
pub fn poisoned_addr(rng: &mut StdRng) -> SocketAddr {
    let x: u32 = rng.gen_range(1..(1 << 20));
    let ip = std::net::Ipv4Addr::from(0xac10_0000 | x);
    SocketAddr::new(ip.into(), crate::sim::network::SIM_PORT)
}

fn push_not_found(outbox: &mut Outbox, to: SocketAddr, get: &GetRepr<'_>) {
    let mut buf = [0u8; crate::limits::DAT_HEADER_LEN + crate::limits::MAX_KEY_LEN];
    let len = DatFields::not_found(*get.pubkey, get.key).emit(&mut buf);
    outbox.push(to, &Message::GetAck(Dat::new_unchecked(&buf[..len])));
}

/// How a local get ended, without the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A record of this version: a v1 record's time, a v2 record's seq.
    Found(i64),
    /// Every asked peer said not found.
    NotFound,
    /// No valid answer by the deadline.
    TimedOut,
}

impl From<&GetOutcome> for Ended {
    fn from(o: &GetOutcome) -> Ended {
        match o {
            GetOutcome::Found(d) => Ended::Found(d.time_ms()),
            GetOutcome::NotFound => Ended::NotFound,
            GetOutcome::TimedOut => Ended::TimedOut,
        }
    }
}

impl From<&Get2Outcome> for Ended {
    fn from(o: &Get2Outcome) -> Ended {
        match o {
            Get2Outcome::Found(d) => Ended::Found(d.seq() as i64),
            Get2Outcome::NotFound => Ended::NotFound,
            Get2Outcome::TimedOut => Ended::TimedOut,
        }
    }
}
