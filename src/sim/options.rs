//! What a simulation run is made of: plain data with units in the names (STYLE habit 9). The
//! command line (`cli.rs`) and the tests fill these in; nothing here parses or runs anything.
//!
//! Every random choice of a run is drawn from generators seeded by [`SimOptions::seed`], so the
//! options and the seed together determine the run exactly (the trace hash proves it).

use std::fmt;

use crate::config::Config;

/// A whole scenario: the network, the nodes, the workload, churn and adversaries.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Seeds every random choice of the run (keys, delays, losses, workload, churn, core RNGs).
    pub seed: u64,
    /// Nodes at the start, edges and adversaries included (churn keeps the count constant).
    pub nodes: usize,
    /// Of `nodes`, how many are edges (bootstrap peers every node is configured with). At
    /// least 1.
    pub edges: usize,
    /// Virtual time simulated before the final retrievability check.
    pub duration_ms: u64,
    /// Non-edge nodes start at uniformly random times in `[0, join_window_ms]` (edges at 0).
    pub join_window_ms: u64,
    /// Protocol constants, trust, challenge, repair and amplification settings every node runs
    /// with (`listen_addr`, `keypair`, `edges` and the thread counts are ignored: the simulator
    /// sets or does not need them). The default lowers `min_work_bits` to
    /// [`SIM_MIN_WORK_BITS`]; everything else is the node's default.
    pub node: Config,
    /// Peer-table size of every node (`PeerConfig::max_peers`, edges included). The node's
    /// default is 1000 (a full mesh up to 1000 nodes); smaller tables make large runs cheap.
    /// Without `Config::route_lookups` GET is one hop, so a partial mesh finds fewer records
    /// (see `sim/mod.rs`).
    pub max_peers: usize,
    /// Shard instances per node: records are routed to `shard_index(pubkey, key) % k`. Fewer
    /// than the node's 256 so thousands of nodes fit in memory; the cores do not care.
    pub shards_per_node: usize,
    /// Storage challenges steer target choice. `false` makes every peer "unscored" forever
    /// (`trust_min_samples = f32::MAX`): plain XOR order, the reference's behaviour. Challenges
    /// still run, so traffic is comparable.
    pub trust: bool,
    /// Each node's wall clock is off by a uniform draw from `[-max, +max]` ms (dat times and the
    /// "from the future" check use it; timers use virtual time, which has no skew).
    pub clock_skew_ms_max: u64,
    /// Links: delay, jitter, loss, duplication, reordering.
    pub network: NetworkOptions,
    /// Network splits, each with its own start, end and loss across the cut.
    pub partitions: Vec<PartitionOptions>,
    /// Puts, updates and gets.
    pub workload: WorkloadOptions,
    /// Nodes leaving and joining, edges restarting.
    pub churn: ChurnOptions,
    /// Misbehaving nodes.
    pub adversaries: AdversaryOptions,
    /// Activation and convergence are checked this often (virtual time).
    pub sample_every_ms: u64,
    /// Each node's periodic shard tick (record and challenge expiry, the repair and republish
    /// timer) runs this often; the node uses `shard::group::SHARD_TICK_MS` (1000). Long runs raise it to save events.
    pub shard_period_ms: u64,
    /// PONGs carry a keyed BLAKE3 MAC instead of an Ed25519 signature ([`PongAuth::SimulatedMac`],
    /// `dave sim --fast-crypto`): a node can still answer only for its own key, but a PONG costs
    /// well under a microsecond instead of ~50 µs. Record signatures stay Ed25519. Default false
    /// (real Ed25519 everywhere).
    ///
    /// [`PongAuth::SimulatedMac`]: crate::peer::PongAuth::SimulatedMac
    pub fast_pong_auth: bool,
    /// Replica maintenance by lookup (`route::maintain`, the node's default with
    /// `route_lookups`) instead of the v1 repair toward the peer snapshot. Default true, as in
    /// the node. With it, records placed during a partition reach the closest nodes of the
    /// whole network one republish interval after it heals (the v1 repair moves them when the
    /// peer snapshot changes; `tests/sim_network.rs`'s partition scenario turns it off);
    /// README "Routing at scale".
    pub maintain_by_lookup: bool,
    /// Share of the non-edge honest nodes that speak v1 only, as a Go reference node does on
    /// the wire: `Config::extensions` empty (no routing or v2 records; their PONG salts look
    /// random), puts and gets one hop through the peer snapshot, the v1 repair. Which nodes
    /// they are follows from the seed and the slot alone ([`SimOptions::is_v1_slot`]), so a
    /// run without them draws exactly what it drew before. Default 0.
    pub v1_share: f64,
}

/// Leading zero bits the simulated nodes require (and put with). The node's default is 20 (a
/// second of hashing per record); 8 bits costs ~256 BLAKE3 calls, so a scenario's records are
/// made in milliseconds while the checks still run on every PUT and GET_ACK.
pub const SIM_MIN_WORK_BITS: u32 = 8;

/// Most nodes one run may hold (every slot ever used, joins included): addresses are
/// `10.a.b.c` with one node per /24, and the event queue and node table are sized by it.
pub const MAX_SIM_NODES: usize = 65_536;

/// Longest span any time option may have (one virtual year: the records' TTL): run length, windows,
/// delays, partitions and clock skew. Keeps every sum of times far from overflowing.
pub const MAX_SIM_SPAN_MS: u64 = 365 * 24 * 3_600_000;

/// Most records one run may put, and most gets it may make: each costs memory and events up
/// front.
pub const MAX_SIM_RECORDS: usize = 1_000_000;

/// Most gets one run may make during the run (the final check adds one per record).
pub const MAX_SIM_GETS: usize = 10_000_000;

/// Per-link behaviour. Every datagram is independently delayed, lost, duplicated or reordered
/// with these parameters; a link's base delay is fixed for the run (drawn from the seed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkOptions {
    /// Smallest one-way base delay of a link.
    pub delay_min_ms: u64,
    /// Largest one-way base delay of a link. Default 60: a continent-sized network.
    pub delay_max_ms: u64,
    /// Each datagram adds a uniform `[0, jitter_ms]` to its link's base delay.
    pub jitter_ms: u64,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a delivered datagram arrives twice (the copy with its own delay).
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay_ms` more, so later datagrams
    /// on the same link overtake it.
    pub reorder: f64,
    /// Extra delay of a reordered datagram.
    pub reorder_delay_ms: u64,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            delay_min_ms: 5,
            delay_max_ms: 60,
            jitter_ms: 10,
            loss: 0.0,
            duplicate: 0.001,
            reorder: 0.01,
            reorder_delay_ms: 40,
        }
    }
}

/// A network split: while it lasts, datagrams between the two sides are lost with probability
/// `loss` (1.0: a clean cut). Nodes are put on side B with probability `fraction_b` (from the
/// seed and their slot, so joiners get a side too).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionOptions {
    /// When the split starts.
    pub start_ms: u64,
    /// When it heals.
    pub end_ms: u64,
    /// Share of nodes on side B.
    pub fraction_b: f64,
    /// Probability that a datagram crossing the cut is lost.
    pub loss: f64,
}

/// Records and requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkloadOptions {
    /// Records put, each from a random live honest node.
    pub records: usize,
    /// Owner keys the records are spread over (record `i` belongs to owner `i % owners`).
    /// Owner 0 is the Sybil attack's victim.
    pub owners: usize,
    /// Value bytes of each record.
    pub value_len: usize,
    /// Share of records that get a second, newer version later (so stale answers can be told
    /// from fresh ones).
    pub update_fraction: f64,
    /// Puts happen at uniform times in `[put_start_ms, put_end_ms]`.
    pub put_start_ms: u64,
    /// End of the put window.
    pub put_end_ms: u64,
    /// GETs of random records already put, from random live honest nodes, at uniform times in
    /// `[get_start_ms, duration_ms]`.
    pub gets: usize,
    /// Start of the get window.
    pub get_start_ms: u64,
    /// A record is asked for only once it is this old (its replicas had time to receive it).
    pub get_min_age_ms: u64,
    /// Timeout of every get.
    pub get_timeout_ms: u64,
    /// After `duration_ms`, every record is asked for once from a random live honest node,
    /// spread over `final_check_window_ms` ("retrievable").
    pub final_check: bool,
    /// Window of the final check.
    pub final_check_window_ms: u64,
    /// Records are v2 (RECORD_V2, `shard::core2`): puts write v2 records (seq = the record's
    /// time, as `Node::put_with` does) and every get is a strict v2 get. Needs the nodes to
    /// speak RECORD_V2 (`node.extensions`, the default).
    pub v2_records: bool,
    /// With `v2_records`: every put is a compare-and-swap expecting the seq of the newest
    /// version the world saw stored (0 before the first), at that seq + 1.
    pub v2_cas: bool,
    /// With `v2_cas`: every put comes from two live honest nodes at the same moment, expecting
    /// the same seq and writing the same next seq with different values (one owner on two
    /// devices racing). At most one of the two may win ([`Report::v2_double_wins`]).
    ///
    /// [`Report::v2_double_wins`]: crate::sim::Report::v2_double_wins
    pub v2_racing_writers: bool,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            records: 200,
            owners: 50,
            value_len: 64,
            update_fraction: 0.0,
            put_start_ms: 30_000,
            put_end_ms: 60_000,
            gets: 200,
            get_start_ms: 60_000,
            get_min_age_ms: 2_000,
            get_timeout_ms: 3_000,
            final_check: true,
            final_check_window_ms: 5_000,
            v2_records: false,
            v2_cas: false,
            v2_racing_writers: false,
        }
    }
}

/// Nodes leaving and joining.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChurnOptions {
    /// Share of the non-edge nodes that leave per virtual hour (a Poisson process); each leaver
    /// is replaced at once by a fresh node (new key, new address, empty store), so the
    /// population stays constant. 0.2 = 20 % per hour.
    pub per_hour: f64,
    /// Churn starts here (after activation, usually).
    pub start_ms: u64,
    /// Every this often one edge (round robin) goes down for `edge_down_ms` and comes back with
    /// its address, key and records (as from its backup log) but an empty peer table. 0: never.
    pub edge_restart_every_ms: u64,
    /// How long a restarting edge is down.
    pub edge_down_ms: u64,
}

impl Default for ChurnOptions {
    fn default() -> Self {
        ChurnOptions {
            per_hour: 0.0,
            start_ms: 60_000,
            edge_restart_every_ms: 0,
            edge_down_ms: 30_000,
        }
    }
}

/// How a Sybil node misbehaves once it sits closest to its victim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SybilBehaviour {
    /// Accepts records and keeps none: answers "not found".
    Drop,
    /// Answers GETs with forged records.
    Forge,
}

/// Misbehaving nodes, counted within [`SimOptions::nodes`]. They run the real peer table (so
/// they authenticate and become targets) and misbehave in what they store and answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdversaryOptions {
    /// Accept PUTs, store nothing, answer every GET "not found".
    pub droppers: usize,
    /// Store nothing, answer every GET with a forged record (valid work, bad signature).
    pub forgers: usize,
    /// Keep the first version of each record, never a newer one; never forward.
    pub stale: usize,
    /// Answer PINGs with PONGs listing non-existent addresses, and send unsolicited PONGs.
    pub poisoners: usize,
    /// Unsolicited poisoned PONGs each poisoner sends per second (to random nodes).
    pub poison_flood_per_s: u64,
    /// Put records whose work is below the minimum (or does not match its hash).
    pub low_work: usize,
    /// Low-work records each such node sends per second (to its closest and random peers).
    pub low_work_puts_per_s: u64,
    /// Nodes with keys ground so their IDs sit next to owner 0's ID.
    pub sybils: usize,
    /// What the Sybils do with owner 0's records.
    pub sybil_behaviour: SybilBehaviour,
    /// Leading ID bits a Sybil shares with its victim; 0 picks `log2(nodes) + 4` (closer than
    /// any honest node, almost surely). Costs about `2^bits` key generations per Sybil.
    pub sybil_prefix_bits: u32,
}

impl Default for AdversaryOptions {
    fn default() -> Self {
        AdversaryOptions {
            droppers: 0,
            forgers: 0,
            stale: 0,
            poisoners: 0,
            poison_flood_per_s: 20,
            low_work: 0,
            low_work_puts_per_s: 2,
            sybils: 0,
            sybil_behaviour: SybilBehaviour::Drop,
            sybil_prefix_bits: 0,
        }
    }
}

impl AdversaryOptions {
    /// All adversaries.
    pub fn total(&self) -> usize {
        self.droppers + self.forgers + self.stale + self.poisoners + self.low_work + self.sybils
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 1,
            nodes: 50,
            edges: 3,
            duration_ms: 120_000,
            join_window_ms: 10_000,
            node: Config {
                min_work_bits: SIM_MIN_WORK_BITS,
                ..Config::default()
            },
            max_peers: 1000,
            shards_per_node: 4,
            trust: true,
            clock_skew_ms_max: 50,
            network: NetworkOptions::default(),
            partitions: Vec::new(),
            workload: WorkloadOptions::default(),
            churn: ChurnOptions::default(),
            adversaries: AdversaryOptions::default(),
            sample_every_ms: 1_000,
            shard_period_ms: 1_000,
            fast_pong_auth: false,
            maintain_by_lookup: true,
            v1_share: 0.0,
        }
    }
}

/// Why options cannot be simulated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError(pub String);

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sim options: {}", self.0)
    }
}

impl std::error::Error for OptionsError {}

impl SimOptions {
    /// Multiplies the peer table's liveness timers (ping period, deactivation, drop, activation
    /// delay) and the shard period by `factor`.
    ///
    /// Every PING costs a signature and a verification, so the ping rate sets a run's cost. Runs
    /// over virtual hours (churn) scale these timers so they stay affordable: nodes then notice a
    /// departed peer `factor` times later, while the data path (PUT forwarding, GET timeouts,
    /// storage challenges, repair pacing) keeps its real speed. A test that scales says so.
    pub fn scale_peer_timers(&mut self, factor: u64) {
        let c = &mut self.node;
        c.ping_period_ms *= factor;
        c.deactivate_after_ms *= factor;
        c.drop_after_ms *= factor;
        c.activation_delay_ms *= factor;
        self.shard_period_ms *= factor;
    }

    /// Whether the node in `slot` speaks v1 only ([`SimOptions::v1_share`]; edges never do): a
    /// hash of the seed and the slot against the share, so it uses no random stream.
    pub fn is_v1_slot(&self, slot: usize) -> bool {
        if self.v1_share <= 0.0 || slot < self.edges {
            return false;
        }
        let draw = xxhash_rust::xxh64::xxh64(&(slot as u64).to_le_bytes(), self.seed);
        (draw as f64) < self.v1_share * u64::MAX as f64
    }

    /// Checks the relations the simulator relies on; every error names the field.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let fail = |m: &str| Err(OptionsError(m.to_string()));
        if self.edges == 0 {
            return fail("edges must be at least 1");
        }
        if self.nodes < self.edges + self.adversaries.total() {
            return Err(OptionsError(format!(
                "nodes ({}) must cover the edges ({}) and the adversaries ({})",
                self.nodes,
                self.edges,
                self.adversaries.total()
            )));
        }
        if self.nodes > MAX_SIM_NODES / 2 {
            return fail("nodes must be at most 32768 (joins need free slots)");
        }
        if self.shards_per_node == 0 || self.shards_per_node > crate::shard::SHARD_COUNT {
            return fail("shards_per_node must be in 1..=256");
        }
        if self.max_peers == 0 || self.max_peers > crate::peer::MAX_TABLE_ENTRIES {
            return fail("max_peers must be in 1..=1048576");
        }
        if self.sample_every_ms == 0 || self.shard_period_ms == 0 {
            return fail("sample_every_ms and shard_period_ms must be positive");
        }
        let w = &self.workload;
        let c = &self.churn;
        let n = &self.network;
        let spans = [
            self.duration_ms,
            self.join_window_ms,
            self.clock_skew_ms_max,
            self.sample_every_ms,
            self.shard_period_ms,
            n.delay_max_ms,
            n.jitter_ms,
            n.reorder_delay_ms,
            w.put_end_ms,
            w.get_start_ms,
            w.get_min_age_ms,
            w.get_timeout_ms,
            w.final_check_window_ms,
            c.start_ms,
            c.edge_restart_every_ms,
            c.edge_down_ms,
        ];
        if spans.iter().any(|&ms| ms > MAX_SIM_SPAN_MS)
            || self.partitions.iter().any(|p| p.end_ms > MAX_SIM_SPAN_MS)
        {
            return fail("every time (duration, windows, delays, skew) must be at most 365 days");
        }
        if w.records > MAX_SIM_RECORDS || w.gets > MAX_SIM_GETS {
            return fail("workload: at most 1000000 records and 10000000 gets");
        }
        if n.delay_min_ms > n.delay_max_ms {
            return fail("network.delay_min_ms must not exceed delay_max_ms");
        }
        for p in [n.loss, n.duplicate, n.reorder] {
            if !(0.0..=1.0).contains(&p) {
                return fail("network probabilities must be in [0, 1]");
            }
        }
        for p in &self.partitions {
            if p.start_ms > p.end_ms
                || !(0.0..=1.0).contains(&p.fraction_b)
                || !(0.0..=1.0).contains(&p.loss)
            {
                return fail("a partition needs start_ms <= end_ms and fractions in [0, 1]");
            }
        }
        let w = &self.workload;
        if w.owners == 0 {
            return fail("workload.owners must be positive");
        }
        if w.put_start_ms > w.put_end_ms {
            return fail("workload.put_start_ms must not exceed put_end_ms");
        }
        if !(0.0..=1.0).contains(&w.update_fraction) {
            return fail("workload.update_fraction must be in [0, 1]");
        }
        if w.value_len + 16 > crate::limits::MAX_KEY_VALUE_LEN {
            return fail("workload.value_len too long for one datagram");
        }
        if w.v2_records
            && (w.value_len + 16 > crate::wire::record2::MAX_KEY_VALUE_LEN2
                || !self
                    .node
                    .extensions
                    .contains(crate::wire::Features::RECORD_V2))
        {
            return fail("workload.v2_records needs RECORD_V2 nodes and a value that fits a dat2");
        }
        if !(0.0..=1.0).contains(&self.v1_share) {
            return fail("v1_share must be in [0, 1]");
        }
        if self.v1_share > 0.0 && w.v2_records {
            return fail("v1_share needs v1 records (a v1 node cannot put or get v2 records)");
        }
        if w.v2_cas && !w.v2_records {
            return fail("workload.v2_cas needs workload.v2_records");
        }
        if w.v2_racing_writers && !w.v2_cas {
            return fail("workload.v2_racing_writers needs workload.v2_cas");
        }
        if !(self.churn.per_hour >= 0.0 && self.churn.per_hour.is_finite()) {
            return fail("churn.per_hour must be a non-negative number");
        }
        if self.adversaries.sybil_prefix_bits > 24 {
            return fail("adversaries.sybil_prefix_bits must be at most 24 (2^24 key generations)");
        }
        self.node
            .validate()
            .map_err(|e| OptionsError(format!("node config: {e}")))?;
        Ok(())
    }
}
