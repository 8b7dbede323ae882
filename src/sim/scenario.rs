//! The world: every node, the network, the event queue, the workload, churn and the measurements,
//! driven one event at a time on one thread (quinn-proto's test `Pair`, scaled up).
//!
//! ```text
//!  init: owners, nodes (edges, honest, adversaries, Sybil keys ground), workload and churn
//!        events, partitions, the first sample
//!  loop: pop the earliest (time, seq) ──► Deliver / timer / Put / Get / Depart / EdgeDown|Up /
//!        Partition / Sample ──► the node's effects: datagrams to the network, get completions to
//!        the metrics, timers re-armed
//!  end:  replicas, retrievability, attack checks ──► Report
//! ```
//!
//! Timers are armed one at a time per node and kind: a node remembers when its next peer, owner
//! (its `ShardGroup`'s next deadline, the same one a node's owner thread sleeps until) and
//! adversary event is due, and an event that no longer matches (re-armed earlier,
//! or the node restarted since: `epoch`) is skipped. So the queue holds O(nodes) timers, not one
//! per wish.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xxhash_rust::xxh64::xxh64;

use crate::keys::Keypair;
use crate::peer::{MacKeyRegistry, PongAuth};
use crate::pow;
use crate::shard::core::Effects;
use crate::shard::core2::{Get2Outcome, LocalPut2};
use crate::sim::adversary::{self, Role};
use crate::sim::network::{EventQueue, Network, addr_of, slot_of};
use crate::sim::node::{Behaviour, Ended, NodeSetup, PUT_BACKDATE_MS, PutTag, SimNode, Ticket};
use crate::sim::options::{OptionsError, SimOptions};
use crate::sim::report::{GetStats, PartitionReport, ReplicaStats, Report};
use crate::stats::{Stats, inc};

/// Events between two progress calls of [`World::run_observed`]. Each event does at least a
/// datagram's parse and a core's decision; one call per 65,536 of them (a few per second of wall
/// time) is invisible next to that, and often enough to move a progress bar smoothly.
pub const PROGRESS_EVERY_EVENTS: u64 = 1 << 16;

/// What happens at an event.
#[derive(Debug)]
enum Ev {
    /// A datagram arrives at `to`.
    Deliver {
        to: usize,
        from: SocketAddr,
        bytes: Box<[u8]>,
    },
    /// A node boots.
    Start {
        slot: usize,
    },
    /// Timers (skipped unless they match the node's armed time and epoch).
    PeerTick {
        slot: usize,
        epoch: u32,
    },
    ShardTick {
        slot: usize,
        epoch: u32,
    },
    RouteTick {
        slot: usize,
        epoch: u32,
    },
    Adversary {
        slot: usize,
        epoch: u32,
    },
    /// Version `version` of record `record` is put from a random live honest node.
    Put {
        record: usize,
        version: u32,
    },
    /// A get from a random live honest node: of `record`, or of a random record already put.
    Get {
        record: Option<usize>,
        final_check: bool,
    },
    /// Churn: a node leaves (and a fresh one takes its place).
    Depart,
    /// Edge `edge` (index into the edges) goes down / comes back.
    EdgeDown {
        edge: usize,
    },
    EdgeUp {
        edge: usize,
    },
    /// Partition `index` starts / heals.
    PartitionStart {
        index: usize,
    },
    PartitionEnd {
        index: usize,
    },
    /// Activation and convergence are measured.
    Sample,
}

/// A record of the workload.
#[derive(Debug)]
struct RecordState {
    owner: usize,
    key: Box<[u8]>,
    /// Version of the newest version stored (by its putting node): a v1 record's time, a v2
    /// record's seq.
    latest_time_ms: Option<i64>,
    /// When it was first stored (virtual).
    first_put_ms: Option<u64>,
}

/// A get in flight.
#[derive(Debug, Clone, Copy)]
struct PendingGet {
    slot: usize,
    record: usize,
    expected_time_ms: i64,
    started_ms: u64,
    final_check: bool,
    /// Answered from the asking node's own store after its lookup.
    local: bool,
    /// Asked by a node that speaks v1 only (`SimOptions::v1_share`).
    by_v1_node: bool,
}

/// A local put waiting for its lookup (`Config::route_lookups`).
#[derive(Debug, Clone, Copy)]
struct PendingPut {
    slot: usize,
    record: usize,
    /// The version put: v1 time, v2 seq.
    time_ms: i64,
    /// A v2 put's work hash (names its content).
    work2: Option<[u8; 32]>,
}

/// The node in `slot` if it is running (a free function so callers can borrow other fields).
fn live_node(nodes: &mut [Option<SimNode>], slot: usize) -> Option<&mut SimNode> {
    nodes
        .get_mut(slot)
        .and_then(|n| n.as_mut())
        .filter(|n| n.alive)
}

/// Independent random streams: adding a draw to one never shifts another.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Network = 1,
    Workload = 2,
    Churn = 3,
    Keys = 4,
    NodeSeeds = 5,
}

fn stream_seed(seed: u64, stream: Stream) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..].copy_from_slice(&(stream as u64).to_le_bytes());
    xxh64(&bytes, 0x5eed)
}

/// The simulated world. See the module docs.
pub struct World {
    options: SimOptions,
    setup: Arc<NodeSetup>,
    /// The setup of the nodes that speak v1 only (`SimOptions::v1_share`).
    setup_v1: Arc<NodeSetup>,
    queue: EventQueue<Ev>,
    net: Network,
    /// By slot; `None` until the slot's node is created.
    nodes: Vec<Option<SimNode>>,
    /// Slots of the edges, in configuration order.
    edge_slots: Vec<usize>,
    /// Live honest nodes (edges included): where puts and gets come from.
    live_honest: BTreeSet<usize>,
    /// Roles of the initial slots (honest for edges and honest nodes).
    roles: Vec<Role>,
    owners: Vec<Keypair>,
    records: Vec<RecordState>,
    /// Records in the order they were first stored, with that time (for "put at least
    /// `get_min_age_ms` ago" choices).
    put_order: Vec<(u64, usize)>,
    pending: BTreeMap<Ticket, PendingGet>,
    next_ticket: Ticket,
    pending_puts: BTreeMap<PutTag, PendingPut>,
    next_put_tag: PutTag,
    /// v2 puts that ended well, by (record, seq): how many, and the first winner's work.
    v2_wins: BTreeMap<(usize, i64), (u32, [u8; 32])>,
    workload_rng: StdRng,
    churn_rng: StdRng,
    keys_rng: StdRng,
    seeds_rng: StdRng,
    effects: Effects<Ticket>,
    report: Report,
    end_ms: u64,
    events: u64,
    /// Partitions with a reconvergence time still to find.
    partitions_open: Vec<usize>,
    /// Sum of all nodes' sent datagrams and bytes (dead nodes included).
    victim_owner: usize,
}

impl World {
    /// Builds the world: owners, nodes, the workload and churn schedules.
    pub fn new(options: SimOptions) -> Result<World, OptionsError> {
        options.validate()?;
        let seed = options.seed;
        let mut node_config = options.node.clone();
        if !options.trust {
            // Never "scored": choose_targets is plain XOR order and nobody is judged unreliable.
            node_config.trust_min_samples = f32::MAX;
        }
        let edge_addrs: Vec<SocketAddr> = (0..options.edges).map(addr_of).collect();
        let setup = Arc::new(NodeSetup {
            config: node_config,
            max_peers: options.max_peers,
            shards_per_node: options.shards_per_node,
            edges: edge_addrs,
            shard_period_ms: options.shard_period_ms,
            maintain_by_lookup: options.maintain_by_lookup,
            pong_auth: if options.fast_pong_auth {
                PongAuth::SimulatedMac(Arc::new(MacKeyRegistry::new()))
            } else {
                PongAuth::Ed25519
            },
        });
        let setup_v1 = Arc::new(NodeSetup {
            config: crate::config::Config {
                extensions: crate::wire::Features::NONE,
                route_lookups: false,
                ..setup.config.clone()
            },
            maintain_by_lookup: false,
            ..(*setup).clone()
        });
        let mut keys_rng = StdRng::seed_from_u64(stream_seed(seed, Stream::Keys));
        let owners: Vec<Keypair> = (0..options.workload.owners)
            .map(|_| Keypair::from_seed(&keys_rng.r#gen()))
            .collect();
        let honest = options.nodes - options.adversaries.total();
        let mut roles = vec![
            Role {
                behaviour: Behaviour::Honest,
                sybil: false,
            };
            honest
        ];
        roles.extend(adversary::roles(&options.adversaries));
        let records = (0..options.workload.records)
            .map(|i| RecordState {
                owner: i % options.workload.owners,
                key: format!("record-{i}").into_bytes().into_boxed_slice(),
                latest_time_ms: None,
                first_put_ms: None,
            })
            .collect();
        let report = Report {
            seed,
            nodes: options.nodes,
            edges: options.edges,
            adversaries: options.adversaries.total(),
            max_peers: options.max_peers,
            trust: options.trust,
            partitions: options
                .partitions
                .iter()
                .map(|p| PartitionReport {
                    start_ms: p.start_ms,
                    end_ms: p.end_ms,
                    ..PartitionReport::default()
                })
                .collect(),
            ..Report::default()
        };
        let w = &options.workload;
        let end_ms = options.duration_ms
            + if w.final_check {
                w.final_check_window_ms + w.get_timeout_ms + 1_000
            } else {
                0
            };
        let mut world = World {
            setup,
            setup_v1,
            queue: EventQueue::default(),
            net: Network::new(
                options.network,
                seed,
                StdRng::seed_from_u64(stream_seed(seed, Stream::Network)),
            ),
            nodes: Vec::new(),
            edge_slots: (0..options.edges).collect(),
            live_honest: BTreeSet::new(),
            roles,
            owners,
            records,
            put_order: Vec::new(),
            pending: BTreeMap::new(),
            next_ticket: 0,
            pending_puts: BTreeMap::new(),
            next_put_tag: 0,
            v2_wins: BTreeMap::new(),
            workload_rng: StdRng::seed_from_u64(stream_seed(seed, Stream::Workload)),
            churn_rng: StdRng::seed_from_u64(stream_seed(seed, Stream::Churn)),
            seeds_rng: StdRng::seed_from_u64(stream_seed(seed, Stream::NodeSeeds)),
            keys_rng,
            effects: Effects::default(),
            report,
            end_ms,
            events: 0,
            partitions_open: (0..options.partitions.len()).collect(),
            victim_owner: 0,
            options,
        };
        world.create_initial_nodes();
        world.schedule_workload();
        world.schedule_churn_and_partitions();
        world.queue.schedule(0, Ev::Sample);
        Ok(world)
    }

    fn create_initial_nodes(&mut self) {
        let victim_id = self.owners[self.victim_owner].id();
        let sybil_bits = match self.options.adversaries.sybil_prefix_bits {
            0 => adversary::default_prefix_bits(self.options.nodes),
            bits => bits,
        };
        for slot in 0..self.options.nodes {
            let role = self.roles[slot];
            let keypair = if role.sybil {
                adversary::grind_keypair(victim_id, sybil_bits, &mut self.keys_rng)
            } else {
                Keypair::from_seed(&self.keys_rng.r#gen())
            };
            let edge = slot < self.options.edges;
            let start_ms = if edge {
                0
            } else {
                self.keys_rng.gen_range(0..=self.options.join_window_ms)
            };
            self.create_node(slot, keypair, role, edge, start_ms);
        }
    }

    fn create_node(&mut self, slot: usize, keypair: Keypair, role: Role, edge: bool, at_ms: u64) {
        let max = self.options.clock_skew_ms_max as i64;
        let skew_ms = self.keys_rng.gen_range(-max..=max);
        let seed = self.seeds_rng.r#gen();
        let v1 =
            role.behaviour == Behaviour::Honest && !role.sybil && self.options.is_v1_slot(slot);
        let setup = if v1 { &self.setup_v1 } else { &self.setup };
        if v1 {
            self.report.v1_nodes += 1;
        }
        let mut node = SimNode::new(
            Arc::clone(setup),
            slot,
            keypair,
            role.behaviour,
            edge,
            skew_ms,
            seed,
            at_ms,
        );
        node.sybil = role.sybil;
        node.alive = false;
        if self.nodes.len() <= slot {
            self.nodes.resize_with(slot + 1, || None);
        }
        self.nodes[slot] = Some(node);
        self.queue.schedule(at_ms, Ev::Start { slot });
    }

    fn schedule_workload(&mut self) {
        let w = self.options.workload;
        let rng = &mut self.workload_rng;
        for record in 0..w.records {
            let at = rng.gen_range(w.put_start_ms..=w.put_end_ms);
            self.queue.schedule(at, Ev::Put { record, version: 0 });
            if rng.gen_bool(w.update_fraction) {
                let earliest = at + 10_000;
                let latest = self
                    .options
                    .duration_ms
                    .saturating_sub(10_000)
                    .max(earliest);
                let update = rng.gen_range(earliest..=latest);
                self.queue.schedule(update, Ev::Put { record, version: 1 });
            }
        }
        if w.get_start_ms < self.options.duration_ms {
            for _ in 0..w.gets {
                let at = rng.gen_range(w.get_start_ms..self.options.duration_ms);
                self.queue.schedule(
                    at,
                    Ev::Get {
                        record: None,
                        final_check: false,
                    },
                );
            }
        }
        if w.final_check && w.records > 0 {
            for record in 0..w.records {
                let at = self.options.duration_ms
                    + w.final_check_window_ms * record as u64 / w.records as u64;
                self.queue.schedule(
                    at,
                    Ev::Get {
                        record: Some(record),
                        final_check: true,
                    },
                );
            }
        }
    }

    fn schedule_churn_and_partitions(&mut self) {
        let c = self.options.churn;
        if c.per_hour > 0.0 {
            let first = c.start_ms + self.churn_gap_ms();
            self.queue.schedule(first, Ev::Depart);
        }
        if c.edge_restart_every_ms > 0 {
            self.queue.schedule(
                c.start_ms + c.edge_restart_every_ms,
                Ev::EdgeDown { edge: 0 },
            );
        }
        for (index, p) in self.options.partitions.iter().enumerate() {
            self.queue
                .schedule(p.start_ms, Ev::PartitionStart { index });
            self.queue.schedule(p.end_ms, Ev::PartitionEnd { index });
        }
    }

    /// Exponential gap to the next departure: `per_hour` of the non-edge honest population.
    fn churn_gap_ms(&mut self) -> u64 {
        let honest = self.options.nodes - self.options.adversaries.total();
        let churnable = honest.saturating_sub(self.options.edges).max(1) as f64;
        let per_ms = self.options.churn.per_hour * churnable / 3_600_000.0;
        let u: f64 = 1.0 - self.churn_rng.r#gen::<f64>();
        ((-u.ln() / per_ms).min(1e15) as u64).max(1)
    }

    /// Runs every event up to the end and returns the report.
    pub fn run(self) -> Report {
        self.run_observed(&mut |_, _| {})
    }

    /// Like [`World::run`], calling `progress(now_ms, end_ms)` (virtual time) every
    /// [`PROGRESS_EVERY_EVENTS`] events. The observer sees the clock only; it cannot change the
    /// run, so the report is the same with or without it.
    pub fn run_observed(mut self, progress: &mut dyn FnMut(u64, u64)) -> Report {
        while let Some(event) = self.queue.pop_until(self.end_ms) {
            self.events += 1;
            if self.events.is_multiple_of(PROGRESS_EVERY_EVENTS) {
                progress(event.time_ms, self.end_ms);
            }
            self.handle(event.time_ms, event.kind);
        }
        progress(self.end_ms, self.end_ms);
        self.finish()
    }

    fn node(&mut self, slot: usize) -> Option<&mut SimNode> {
        self.nodes.get_mut(slot).and_then(|n| n.as_mut())
    }

    fn handle(&mut self, now: u64, ev: Ev) {
        match ev {
            Ev::Deliver { to, from, bytes } => {
                let Some(node) = self.nodes.get_mut(to).and_then(|n| n.as_mut()) else {
                    self.net.count_to_nowhere();
                    return;
                };
                if !node.alive {
                    self.net.count_to_nowhere();
                    return;
                }
                self.net.record_delivery(now, from, node.addr, &bytes);
                node.on_datagram(now, from, &bytes, &mut self.effects);
                self.after(now, to);
            }
            Ev::Start { slot } => self.start(now, slot),
            Ev::PeerTick { slot, epoch } => {
                let Some(node) = live_node(&mut self.nodes, slot) else {
                    return;
                };
                if node.epoch != epoch || node.peer_tick_at != now {
                    return;
                }
                node.peer_tick(now, &mut self.effects);
                let next = node.next_peer_tick_ms(now);
                node.peer_tick_at = next;
                self.queue.schedule(next, Ev::PeerTick { slot, epoch });
                self.after(now, slot);
            }
            Ev::ShardTick { slot, epoch } => {
                let Some(node) = live_node(&mut self.nodes, slot) else {
                    return;
                };
                if node.epoch != epoch || node.shard_tick_at != now {
                    return;
                }
                node.shard_tick_at = u64::MAX;
                node.shard_tick(now, &mut self.effects);
                self.after(now, slot);
            }
            Ev::RouteTick { slot, epoch } => {
                let Some(node) = live_node(&mut self.nodes, slot) else {
                    return;
                };
                if node.epoch != epoch || node.route_tick_at != now {
                    return;
                }
                node.route_tick_at = u64::MAX;
                node.route_tick(now, &mut self.effects);
                self.after(now, slot);
            }
            Ev::Adversary { slot, epoch } => {
                let per_s = self.adversary_rate(slot);
                let Some(node) = live_node(&mut self.nodes, slot) else {
                    return;
                };
                if node.epoch != epoch || node.adversary_at != now {
                    return;
                }
                let next = node.adversary_tick(now, per_s, &mut self.effects);
                node.adversary_at = next.unwrap_or(u64::MAX);
                if let Some(next) = next {
                    self.queue.schedule(next, Ev::Adversary { slot, epoch });
                }
                self.after(now, slot);
            }
            Ev::Put { record, version } => self.put(now, record, version),
            Ev::Get {
                record,
                final_check,
            } => self.get(now, record, final_check),
            Ev::Depart => self.depart(now),
            Ev::EdgeDown { edge } => self.edge_down(now, edge),
            Ev::EdgeUp { edge } => self.edge_up(now, edge),
            Ev::PartitionStart { index } => {
                let p = self.options.partitions[index];
                self.net.start_partition(index, &p);
            }
            Ev::PartitionEnd { index } => self.net.end_partition(index),
            Ev::Sample => {
                self.sample(now);
                self.queue
                    .schedule(now + self.options.sample_every_ms, Ev::Sample);
            }
        }
    }

    fn adversary_rate(&self, slot: usize) -> u64 {
        let a = &self.options.adversaries;
        match self
            .nodes
            .get(slot)
            .and_then(|n| n.as_ref())
            .map(|n| n.behaviour)
        {
            Some(Behaviour::Poisoner) => a.poison_flood_per_s,
            Some(Behaviour::LowWork) => a.low_work_puts_per_s,
            _ => 0,
        }
    }

    fn start(&mut self, now: u64, slot: usize) {
        let per_s = self.adversary_rate(slot);
        let Some(node) = self.node(slot) else { return };
        if node.alive {
            return;
        }
        node.alive = true;
        node.started_ms = now;
        let honest = node.behaviour == Behaviour::Honest;
        self.arm_all(now, slot, per_s);
        if honest {
            self.live_honest.insert(slot);
        }
    }

    /// Arms every timer of a node that just (re)started.
    fn arm_all(&mut self, now: u64, slot: usize, adversary_per_s: u64) {
        let Some(node) = live_node(&mut self.nodes, slot) else {
            return;
        };
        let epoch = node.epoch;
        node.peer_tick_at = now;
        node.route_tick_at = u64::MAX;
        node.adversary_at = u64::MAX;
        let adversary = adversary_per_s > 0
            && matches!(node.behaviour, Behaviour::Poisoner | Behaviour::LowWork);
        if adversary {
            node.adversary_at = now + 1_000;
        }
        self.queue.schedule(now, Ev::PeerTick { slot, epoch });
        if adversary {
            self.queue
                .schedule(now + 1_000, Ev::Adversary { slot, epoch });
        }
        self.arm_owner(now, slot);
    }

    fn arm_owner(&mut self, now: u64, slot: usize) {
        let Some(node) = self.nodes.get_mut(slot).and_then(|n| n.as_mut()) else {
            return;
        };
        if !node.alive {
            return;
        }
        let epoch = node.epoch;
        let shard_at = node.next_shard_tick_ms(now);
        if shard_at < node.shard_tick_at {
            node.shard_tick_at = shard_at;
            self.queue.schedule(shard_at, Ev::ShardTick { slot, epoch });
        }
        // The router's deadline, like the node's peer thread sleeping until the earlier of the
        // table's tick and the router's deadline (a separate timer here, so the table's schedule
        // is the same with and without routing).
        let route_at = node.next_route_tick_ms(now);
        if route_at < node.route_tick_at {
            node.route_tick_at = route_at;
            self.queue.schedule(route_at, Ev::RouteTick { slot, epoch });
        }
    }

    /// Carries out a node's effects: datagrams into the network, completions into the metrics,
    /// timers re-armed.
    fn after(&mut self, now: u64, slot: usize) {
        let in_flight = self.queue.len();
        let fx = &mut self.effects;
        if let Some(node) = self.nodes.get_mut(slot).and_then(|n| n.as_mut()) {
            for (to, bytes) in fx.outbox.iter() {
                node.sent_packets += 1;
                node.sent_bytes += bytes.len() as u64;
                match bytes.first() {
                    Some(op) if crate::wire::route::ROUTE_OPS.contains(op) => {
                        node.route_bytes_sent += bytes.len() as u64;
                    }
                    // PING, PONG, GETMYADDRPORT, GETMYADDRPORT_ACK (wire::Op 0, 1, 5, 6).
                    Some(0 | 1 | 5 | 6) => node.ping_bytes_sent += bytes.len() as u64,
                    _ => {}
                }
                inc(&node.counters.packets_sent);
                crate::stats::add(&node.counters.bytes_sent, bytes.len() as u64);
                let to_slot = slot_of(to);
                let arrivals = self.net.send(now, slot, to_slot, bytes.len(), in_flight);
                if let Some(to_slot) = to_slot {
                    for at in arrivals.into_iter().flatten() {
                        self.queue.schedule(
                            at,
                            Ev::Deliver {
                                to: to_slot,
                                from: node.addr,
                                bytes: bytes.into(),
                            },
                        );
                    }
                }
            }
        }
        let puts_done = self
            .nodes
            .get_mut(slot)
            .and_then(|n| n.as_mut())
            .map(SimNode::take_puts_done)
            .unwrap_or_default();
        for (tag, result) in puts_done {
            if let Some(put) = self.pending_puts.remove(&tag) {
                self.put_stored(now, put.record, put.time_ms, result.is_ok());
            }
        }
        let (mut puts2_done, mut gets2_done) = self
            .nodes
            .get_mut(slot)
            .and_then(|n| n.as_mut())
            .map(|n| (n.take_puts2_done(), n.take_gets2_done()))
            .unwrap_or_default();
        // As for v1 gets below: their order must not depend on the v2 core's hash maps.
        puts2_done.sort_by_key(|(tag, _)| *tag);
        for (tag, result) in puts2_done {
            if let Some(put) = self.pending_puts.remove(&tag) {
                if result.is_ok()
                    && let Some(work) = put.work2
                {
                    let entry = self.v2_wins.entry((put.record, put.time_ms));
                    entry.or_insert((0, work)).0 += 1;
                }
                self.put_stored(now, put.record, put.time_ms, result.is_ok());
            }
        }
        if let Some(node) = self.nodes.get_mut(slot).and_then(|n| n.as_mut()) {
            for ticket in node.take_answered_locally() {
                if let Some(get) = self.pending.get_mut(&ticket) {
                    get.local = true;
                }
            }
        }
        gets2_done.sort_by_key(|(ticket, _)| *ticket);
        for (ticket, outcome) in gets2_done {
            // A found record at a raced seq must be the winner's content.
            if let (Some(get), Get2Outcome::Found(found)) = (self.pending.get(&ticket), &outcome)
                && let Some(&(_, winner)) = self.v2_wins.get(&(get.record, found.seq() as i64))
                && *found.work() != winner
            {
                self.report.v2_loser_reads += 1;
            }
            self.complete(now, ticket, Ended::from(&outcome));
        }
        let fx = &mut self.effects;
        fx.outbox.clear();
        fx.backup.clear();
        fx.challenge_outcomes.clear();
        let mut completions = std::mem::take(&mut fx.completions);
        // One call can end several gets; their order must not depend on the core's hash maps.
        completions.sort_by_key(|(ticket, _)| *ticket);
        for (ticket, outcome) in completions.drain(..) {
            self.complete(now, ticket, Ended::from(&outcome));
        }
        self.effects.completions = completions;
        self.arm_owner(now, slot);
    }

    fn complete(&mut self, now: u64, ticket: Ticket, ended: Ended) {
        let Some(get) = self.pending.remove(&ticket) else {
            return;
        };
        let victim = self.records[get.record].owner == self.victim_owner
            && self.options.adversaries.sybils > 0;
        let latency = now - get.started_ms;
        let mut groups: Vec<&mut GetStats> = Vec::with_capacity(3);
        if get.final_check {
            groups.push(&mut self.report.final_gets);
        } else {
            groups.push(&mut self.report.gets);
        }
        if victim {
            groups.push(&mut self.report.victim_gets);
        }
        if get.by_v1_node {
            groups.push(&mut self.report.v1_gets);
        } else if self.options.v1_share > 0.0 {
            groups.push(&mut self.report.dave_gets);
        }
        for g in groups {
            match ended {
                Ended::Found(t) if t >= get.expected_time_ms => {
                    g.fresh += 1;
                    g.latencies_ms.push(latency);
                    if latency == 0 || get.local {
                        g.local += 1;
                    }
                }
                Ended::Found(_) => g.stale += 1,
                Ended::NotFound => g.not_found += 1,
                Ended::TimedOut => g.timed_out += 1,
            }
        }
    }

    fn random_live_honest(&mut self, rng_is_churn: bool) -> Option<usize> {
        if self.live_honest.is_empty() {
            return None;
        }
        let rng = if rng_is_churn {
            &mut self.churn_rng
        } else {
            &mut self.workload_rng
        };
        let k = rng.gen_range(0..self.live_honest.len());
        self.live_honest.iter().nth(k).copied()
    }

    fn put(&mut self, now: u64, record: usize, version: u32) {
        self.report.puts += 1;
        let Some(slot) = self.random_live_honest(false) else {
            return;
        };
        let mut value = vec![0u8; self.options.workload.value_len];
        self.workload_rng.fill(&mut value[..]);
        if let Some(first) = value.first_mut() {
            *first = version as u8;
        }
        if self.options.workload.v2_records {
            self.put2(now, record, slot, value);
            return;
        }
        let min_work = self.setup.config.min_work_bits;
        let state = &self.records[record];
        let owner = &self.owners[state.owner];
        let Some(node) = live_node(&mut self.nodes, slot) else {
            return;
        };
        let time_ms = node.wall_ms(now) - PUT_BACKDATE_MS;
        let tag = self.next_put_tag;
        self.next_put_tag += 1;
        let dat = pow::make_dat_single(owner, &state.key, &value, time_ms, min_work);
        match node.local_put(now, dat, tag, &mut self.effects) {
            Some(result) => self.put_stored(now, record, time_ms, result.is_ok()),
            None => {
                let put = PendingPut {
                    slot,
                    record,
                    time_ms,
                    work2: None,
                };
                self.pending_puts.insert(tag, put);
            }
        }
        self.after(now, slot);
    }

    /// A v2 put from `slot` (and, with racing writers, at the same moment from a second live
    /// honest node with another value), as `Node::put_with` makes it: seq = the record's time,
    /// or under CAS the newest seq the world saw stored + 1, expecting that seq. Results arrive
    /// through [`SimNode::take_puts2_done`].
    fn put2(&mut self, now: u64, record: usize, slot: usize, mut value: Vec<u8>) {
        let w = self.options.workload;
        let mut writers = vec![slot];
        if w.v2_racing_writers {
            let others: Vec<usize> = self
                .live_honest
                .iter()
                .copied()
                .filter(|&s| s != slot)
                .collect();
            if !others.is_empty() {
                writers.push(others[self.workload_rng.gen_range(0..others.len())]);
            }
        }
        let expect_seq = w.v2_cas.then(|| {
            self.records[record]
                .latest_time_ms
                .map_or(0, |seq| seq as u64)
        });
        let min_work = self.setup.config.min_work_bits;
        for (writer, &slot) in writers.iter().enumerate() {
            // Racing writers differ in their value (so in their work hash).
            if let Some(last) = value.last_mut() {
                *last = last.wrapping_add(writer as u8);
            }
            let state = &self.records[record];
            let owner = &self.owners[state.owner];
            let Some(node) = live_node(&mut self.nodes, slot) else {
                continue;
            };
            let time_ms = node.wall_ms(now) - PUT_BACKDATE_MS;
            let seq = expect_seq.map_or(time_ms as u64, |e| e + 1);
            let dat2 = pow::make_dat2_single(owner, &state.key, &value, time_ms, seq, min_work);
            let commit = pow::sign_commit2(owner, dat2.work());
            let tag = self.next_put_tag;
            self.next_put_tag += 1;
            let pending = PendingPut {
                slot,
                record,
                time_ms: seq as i64,
                work2: Some(*dat2.work()),
            };
            self.pending_puts.insert(tag, pending);
            let put = LocalPut2 {
                record: dat2,
                expect_seq,
                commit,
                waiter: tag,
            };
            node.local_put2(now, put, &mut self.effects);
            self.after(now, slot);
        }
    }

    /// A local put's result: an accepted version becomes the one gets must find.
    fn put_stored(&mut self, now: u64, record: usize, time_ms: i64, ok: bool) {
        if !ok {
            return;
        }
        self.report.puts_stored += 1;
        let state = &mut self.records[record];
        if state.latest_time_ms.is_none_or(|t| time_ms > t) {
            state.latest_time_ms = Some(time_ms);
        }
        if state.first_put_ms.is_none() {
            state.first_put_ms = Some(now);
            self.put_order.push((now, record));
        }
    }

    fn get(&mut self, now: u64, record: Option<usize>, final_check: bool) {
        let record = match record {
            Some(r) => r,
            None => {
                let min_age = self.options.workload.get_min_age_ms;
                let eligible = self
                    .put_order
                    .partition_point(|&(at, _)| at + min_age <= now);
                if eligible == 0 {
                    return;
                }
                self.put_order[self.workload_rng.gen_range(0..eligible)].1
            }
        };
        let Some(expected) = self.records[record].latest_time_ms else {
            return; // never stored: nothing to find
        };
        let Some(slot) = self.random_live_honest(false) else {
            return;
        };
        let by_v1_node = self.node(slot).is_some_and(|n| n.speaks_v1_only());
        let state = &self.records[record];
        let owner = state.owner;
        let pubkey = self.owners[owner].public();
        let key = state.key.clone();
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.insert(
            ticket,
            PendingGet {
                slot,
                record,
                expected_time_ms: expected,
                started_ms: now,
                final_check,
                local: false,
                by_v1_node,
            },
        );
        let victim = owner == self.victim_owner && self.options.adversaries.sybils > 0;
        let group = if final_check {
            &mut self.report.final_gets
        } else {
            &mut self.report.gets
        };
        group.started += 1;
        if victim {
            self.report.victim_gets.started += 1;
        }
        if by_v1_node {
            self.report.v1_gets.started += 1;
        } else if self.options.v1_share > 0.0 {
            self.report.dave_gets.started += 1;
        }
        let timeout = self.options.workload.get_timeout_ms;
        let v2 = self.options.workload.v2_records;
        let Some(node) = live_node(&mut self.nodes, slot) else {
            return;
        };
        node.start_get(now, pubkey, &key, timeout, ticket, v2, &mut self.effects);
        self.after(now, slot);
    }

    /// Aborts the gets a stopping node was waiting for.
    fn abort_gets_of(&mut self, slot: usize) {
        let tickets: Vec<Ticket> = self
            .pending
            .iter()
            .filter(|(_, g)| g.slot == slot)
            .map(|(&t, _)| t)
            .collect();
        for t in tickets {
            if let Some(g) = self.pending.remove(&t) {
                let victim = self.records[g.record].owner == self.victim_owner
                    && self.options.adversaries.sybils > 0;
                if g.final_check {
                    self.report.final_gets.aborted += 1;
                } else {
                    self.report.gets.aborted += 1;
                }
                if victim {
                    self.report.victim_gets.aborted += 1;
                }
                if g.by_v1_node {
                    self.report.v1_gets.aborted += 1;
                } else if self.options.v1_share > 0.0 {
                    self.report.dave_gets.aborted += 1;
                }
            }
        }
    }

    fn depart(&mut self, now: u64) {
        let edges = self.options.edges;
        let candidates: Vec<usize> = self
            .live_honest
            .iter()
            .copied()
            .filter(|&s| s >= edges)
            .collect();
        if !candidates.is_empty() {
            let slot = candidates[self.churn_rng.gen_range(0..candidates.len())];
            self.stop(now, slot);
            self.report.departures += 1;
            // A fresh node takes its place: new key, new address, empty store.
            let new_slot = self.nodes.len();
            if new_slot < crate::sim::options::MAX_SIM_NODES {
                let keypair = Keypair::from_seed(&self.keys_rng.r#gen());
                let role = Role {
                    behaviour: Behaviour::Honest,
                    sybil: false,
                };
                self.create_node(new_slot, keypair, role, false, now);
                self.report.joins += 1;
            }
        }
        let next = now + self.churn_gap_ms();
        self.queue.schedule(next, Ev::Depart);
    }

    fn stop(&mut self, now: u64, slot: usize) {
        if let Some(node) = live_node(&mut self.nodes, slot) {
            node.stop(now);
        }
        self.live_honest.remove(&slot);
        self.abort_gets_of(slot);
        // Puts still waiting for their lookup were never stored.
        self.pending_puts.retain(|_, p| p.slot != slot);
    }

    fn edge_down(&mut self, now: u64, edge: usize) {
        let slot = self.edge_slots[edge];
        self.stop(now, slot);
        self.report.edge_restarts += 1;
        let c = self.options.churn;
        self.queue
            .schedule(now + c.edge_down_ms, Ev::EdgeUp { edge });
        let next = (edge + 1) % self.edge_slots.len();
        self.queue
            .schedule(now + c.edge_restart_every_ms, Ev::EdgeDown { edge: next });
    }

    fn edge_up(&mut self, now: u64, edge: usize) {
        let slot = self.edge_slots[edge];
        let seed = self.seeds_rng.r#gen();
        let Some(node) = self.node(slot) else { return };
        if node.alive {
            return;
        }
        node.restart(now, seed);
        self.arm_all(now, slot, 0);
        self.live_honest.insert(slot);
    }

    /// Active peers of every live honest node; readiness, full activation, convergence.
    fn sample(&mut self, now: u64) {
        let live_total = self.nodes.iter().flatten().filter(|n| n.alive).count();
        if live_total < 2 {
            return;
        }
        let fanout = self.setup.config.fanout;
        let ready_at = fanout.min(live_total - 1);
        let full_at = self.options.max_peers.min(live_total - 1);
        let mut min_active = usize::MAX;
        for &slot in &self.live_honest {
            if let Some(node) = self.nodes[slot].as_ref() {
                min_active = min_active.min(node.table.snapshot().len());
            }
        }
        // Activation is a property of the whole initial network: not before everyone started.
        let all_started = now >= self.options.join_window_ms;
        let ready = all_started && min_active >= ready_at && min_active != usize::MAX;
        let full = all_started && min_active >= full_at && min_active != usize::MAX;
        if ready && self.report.time_to_ready_ms.is_none() {
            self.report.time_to_ready_ms = Some(now);
        }
        if full && self.report.time_to_full_activation_ms.is_none() {
            self.report.time_to_full_activation_ms = Some(now);
        }
        if self.partitions_open.is_empty() {
            return;
        }
        let connected = ready && self.honest_graph_strongly_connected();
        let mut still_open = Vec::new();
        for &index in &self.partitions_open {
            let p = self.options.partitions[index];
            let r = &mut self.report.partitions[index];
            if now < p.start_ms {
                still_open.push(index);
            } else if now < p.end_ms {
                r.split_observed |= !connected;
                still_open.push(index);
            } else {
                if connected && r.reconnected_after_ms.is_none() {
                    r.reconnected_after_ms = Some(now - p.end_ms);
                }
                if connected && full && r.reconverged_after_ms.is_none() {
                    r.reconverged_after_ms = Some(now - p.end_ms);
                }
                if r.reconverged_after_ms.is_none() {
                    still_open.push(index);
                }
            }
        }
        self.partitions_open = still_open;
    }

    /// Whether every live honest node reaches every other along "is an active peer of" edges,
    /// both ways (forward and reverse search from one node).
    fn honest_graph_strongly_connected(&self) -> bool {
        let slots: Vec<usize> = self.live_honest.iter().copied().collect();
        let Some(&root) = slots.first() else {
            return true;
        };
        let index: BTreeMap<usize, usize> =
            slots.iter().enumerate().map(|(i, &s)| (s, i)).collect();
        let mut forward = vec![Vec::new(); slots.len()];
        let mut reverse = vec![Vec::new(); slots.len()];
        for (i, &slot) in slots.iter().enumerate() {
            let Some(node) = self.nodes[slot].as_ref() else {
                continue;
            };
            for peer in node.table.snapshot().peers() {
                if let Some(&j) = slot_of(peer.addr).and_then(|s| index.get(&s)) {
                    forward[i].push(j);
                    reverse[j].push(i);
                }
            }
        }
        let reaches_all = |adjacency: &Vec<Vec<usize>>| {
            let mut seen = vec![false; slots.len()];
            let mut stack = vec![index[&root]];
            seen[index[&root]] = true;
            let mut count = 1;
            while let Some(i) = stack.pop() {
                for &j in &adjacency[i] {
                    if !seen[j] {
                        seen[j] = true;
                        count += 1;
                        stack.push(j);
                    }
                }
            }
            count == slots.len()
        };
        reaches_all(&forward) && reaches_all(&reverse)
    }

    fn finish(mut self) -> Report {
        let now = self.queue.now_ms().max(self.end_ms);
        // Gets still pending at the end count as timed out (the end leaves them no time).
        let leftover: Vec<Ticket> = self.pending.keys().copied().collect();
        for t in leftover {
            self.complete(now, t, Ended::TimedOut);
        }
        let mut report = std::mem::take(&mut self.report);
        report.virtual_ms = now;
        report.events = self.events;
        report.trace_hash = self.net.trace_hash();
        report.net = *self.net.stats();

        let mut node_ms = 0u64;
        let mut sent_packets = 0u64;
        let mut sent_bytes = 0u64;
        let (mut route_bytes, mut ping_bytes) = (0u64, 0u64);
        report.route_lookups = self.setup.config.route_lookups && self.setup.config.routing();
        for node in self.nodes.iter().flatten() {
            node_ms += node.alive_ms(now);
            sent_packets += node.sent_packets;
            sent_bytes += node.sent_bytes;
            route_bytes += node.route_bytes_sent;
            ping_bytes += node.ping_bytes_sent;
            let (l, n) = (&mut report.lookups, &node.lookup_stats);
            l.started += n.started;
            l.refused += n.refused;
            l.done += n.done;
            l.empty += n.empty;
            l.hops.extend_from_slice(&n.hops);
        }
        report.lookups.hops.sort_unstable();
        report.node_seconds = node_ms as f64 / 1000.0;
        if report.node_seconds > 0.0 {
            report.packets_per_node_s = sent_packets as f64 / report.node_seconds;
            report.bytes_per_node_s = sent_bytes as f64 / report.node_seconds;
            report.route_bytes_per_node_s = route_bytes as f64 / report.node_seconds;
            report.ping_bytes_per_node_s = ping_bytes as f64 / report.node_seconds;
        }

        let honest: Vec<&SimNode> = self
            .live_honest
            .iter()
            .filter_map(|&s| self.nodes[s].as_ref())
            .collect();
        let mut stats = Stats::default();
        let mut active_sum = 0usize;
        let mut active_min = usize::MAX;
        let mut stats2 = crate::shard::core2::Stats2::default();
        for node in &honest {
            stats.add(&node.counters);
            stats2.add(&node.counters2);
            if let Some(router) = &node.router {
                let (sum, n) = (&mut report.router, router.stats());
                sum.requests_sent += n.requests_sent;
                sum.requests_timed_out += n.requests_timed_out;
                sum.proofs_asked += n.proofs_asked;
                sum.lookups_done += n.lookups_done;
            }
            let t = node.table.stats();
            report.proofs.0 += t.proofs_sent;
            report.proofs.1 += t.proofs_succeeded;
            report.proofs.2 += t.proofs_expired;
            report.proofs.3 += t.proofs_rate_limited;
            report.stranger_proofs += t.proofs_of_strangers;
            for (sum, n) in report.withheld_by_op.iter_mut().zip(node.withheld_by_op) {
                *sum += n;
            }
            let active = node.table.snapshot().len();
            active_sum += active;
            active_min = active_min.min(active);
        }
        report.active_peers_min = if honest.is_empty() { 0 } else { active_min };
        report.active_peers_mean = active_sum as f64 / honest.len().max(1) as f64;
        report.honest_counters = stats;
        report.honest_counters2 = stats2;

        // Replicas of each record's newest version among the live honest nodes.
        let mut replicas = Vec::new();
        for state in &self.records {
            let Some(latest) = state.latest_time_ms else {
                continue;
            };
            let pubkey = self.owners[state.owner].public();
            let n = honest
                .iter()
                .filter(|node| {
                    node.held_version(&pubkey, &state.key)
                        .is_some_and(|t| t >= latest)
                })
                .count() as u64;
            replicas.push(n);
        }
        replicas.sort_unstable();
        report.records_stored = replicas.len() as u64;
        if !replicas.is_empty() {
            report.replicas = ReplicaStats {
                records: replicas.len() as u64,
                lost: replicas.iter().filter(|&&n| n == 0).count() as u64,
                min: replicas[0],
                median: replicas[replicas.len() / 2],
                mean: replicas.iter().sum::<u64>() as f64 / replicas.len() as f64,
                max: replicas[replicas.len() - 1],
                ..ReplicaStats::default()
            };
        }
        if self.options.workload.final_check {
            report.records_retrievable = Some(report.final_gets.fresh);
        }
        report.v2_double_wins = self.v2_wins.values().filter(|&&(n, _)| n > 1).count() as u64;
        if self.options.workload.v2_records {
            for state in &self.records {
                let pubkey = self.owners[state.owner].public();
                let held: Vec<(u64, [u8; 32])> = honest
                    .iter()
                    .filter_map(|node| node.held_work2(&pubkey, &state.key))
                    .collect();
                let Some(newest) = held.iter().map(|&(seq, _)| seq).max() else {
                    continue;
                };
                let mut contents = held
                    .iter()
                    .filter(|&&(seq, _)| seq == newest)
                    .map(|(_, w)| w);
                let first = contents.next();
                if contents.any(|w| Some(w) != first) {
                    report.v2_split_records += 1;
                }
            }
        }

        // Attack checks.
        let low_work: Vec<_> = self
            .nodes
            .iter()
            .flatten()
            .flat_map(|n| n.low_work_sent.iter())
            .collect();
        report.low_work_sent = low_work.len() as u64;
        report.low_work_stored_by_honest = low_work
            .iter()
            .map(|(pubkey, key)| {
                honest
                    .iter()
                    .filter(|n| n.held_version(pubkey, key).is_some())
                    .count() as u64
            })
            .sum();
        let mut trust_honest = (0.0, 0u64);
        let mut trust_adversary = (0.0, 0u64);
        for node in &honest {
            for score in node.table.scores() {
                let Some(peer_slot) = slot_of(score.addr) else {
                    report.poisoned_peers += 1;
                    continue;
                };
                let adversarial = self
                    .nodes
                    .get(peer_slot)
                    .and_then(|n| n.as_ref())
                    .is_some_and(|n| n.behaviour != Behaviour::Honest);
                let acc = if adversarial {
                    &mut trust_adversary
                } else {
                    &mut trust_honest
                };
                acc.0 += f64::from(score.reliability);
                acc.1 += 1;
            }
        }
        report.trust_in_honest =
            (trust_honest.1 > 0).then(|| trust_honest.0 / trust_honest.1 as f64);
        report.trust_in_adversaries =
            (trust_adversary.1 > 0).then(|| trust_adversary.0 / trust_adversary.1 as f64);
        report.gets.finish();
        report.final_gets.finish();
        report.victim_gets.finish();
        report.v1_gets.finish();
        report.dave_gets.finish();
        report
    }
}
