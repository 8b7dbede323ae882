//! Node configuration: plain data with units in the names and the reference's values as defaults.
//!
//! A library user fills in [`Config`] in code; the `dave` binary builds one from flags and TOML.
//! [`Config::validate`] refuses combinations that cannot work, with a message naming the field.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::backup::SyncPolicy;
use crate::keys::Keypair;
use crate::pow::SignatureCheck;

/// How a GET from the network is answered (see `perf/README.md` for the measurements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetPath {
    /// The receiver thread answers from the shard's read view (a read lock; the owner thread
    /// stays the only writer). No thread hop: the fastest.
    Receiver,
    /// The receiver hands the GET to the shard's owner thread, which answers.
    Owner,
}

/// How the receiver threads share the node's port (issue 14; measured in `perf/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverSockets {
    /// One SO_REUSEPORT socket per receiver; the kernel picks the socket by a hash of the
    /// sender's address and port, so each sender stays on one receiver and a few busy senders
    /// can all land on one (run-to-run bimodal GET rates, `perf/reuseport_spread.py`).
    Hashed,
    /// One SO_REUSEPORT socket per receiver; a classic BPF program hands each datagram to one of
    /// them at random (`net::spread_reuseport_randomly`), so the receivers share the load
    /// whatever the senders' ports, in equal parts: a receiver waiting for a CPU holds up its
    /// share. The default: it is the design's shape (pinned receivers, each on its own
    /// SO_REUSEPORT socket) without the hash's dependence on the senders' ports.
    Random,
    /// All receivers read one socket, bound without SO_REUSEPORT; the kernel wakes one waiting
    /// receiver per arrival (exclusive wait), so whichever receiver is free takes the next batch
    /// and a receiver that is descheduled holds up nobody, and nobody else can join the port
    /// later. Measured level with `Hashed` and ahead of `Random` on a heavily loaded machine
    /// (`perf/README.md`, issue 14), a comparison still to be repeated on a quiet one.
    Shared,
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    // ---- identity and network ----
    /// UDP address to listen on. Port 0 picks a free port (see `Node::local_addr`).
    pub listen_addr: SocketAddr,
    /// The node's identity; `None` makes a fresh one at start.
    pub keypair: Option<Keypair>,
    /// Bootstrap peers. Edges are pinged like any peer and never dropped.
    pub edges: Vec<SocketAddr>,

    // ---- protocol constants (PROTOCOL.md section 5) ----
    /// FANOUT: replicas a PUT is forwarded to; peers a GET asks. Reference: 3.
    pub fanout: usize,
    /// NPEER_LIMIT: addresses per PONG. Reference: 5.
    pub npeer_limit: usize,
    /// Authenticated peers (edges included) the peer table holds (`PeerConfig::max_peers`).
    /// Default 1000: a full mesh up to 1,000 nodes. Every peer that does not speak ROUTING is
    /// pinged every `ping_period_ms` (a signature and a verification each), so a node in a
    /// larger network holds a part of it; strangers that ping a full table are proven instead
    /// (`stranger_proofs_per_s`). 1..=1 Mi (`peer::MAX_TABLE_ENTRIES`), and at least the number
    /// of edges.
    pub max_peers: usize,
    /// MIN_WORK: leading zero bits required on a received dat. Reference: 20.
    pub min_work_bits: u32,
    /// PING: every peer is pinged with a fresh challenge this often. Reference: 1 s.
    pub ping_period_ms: u64,
    /// DEACTIVATE_AFTER: a peer silent this long is no longer a target. Reference: 3 s.
    pub deactivate_after_ms: u64,
    /// DROP: a peer silent this long is forgotten (edges never are). Reference: 12 s.
    pub drop_after_ms: u64,
    /// ACTIVATION_DELAY: a new peer becomes a target only after this long. Reference: 5 s.
    pub activation_delay_ms: u64,
    /// GETMYADDRPORT_EVERY: own-address refresh from an edge (and once at start). Reference: 10 min.
    pub getmyaddrport_every_ms: u64,
    /// TTL: a record older than this expires (used in the storage priority). Reference: 365 days.
    pub ttl_ms: i64,

    // ---- storage ----
    /// Byte budget of each of the 256 shards (real in-memory cost of the records).
    pub shard_capacity_bytes: usize,
    /// Backup log file; `None` keeps data in memory only.
    pub backup_path: Option<PathBuf>,
    /// When the backup log is fsynced.
    pub sync_policy: SyncPolicy,
    /// The backup log is compacted automatically once it exceeds `2 × live + this` (live: the
    /// log size of the records held). Default 64 MiB
    /// ([`crate::backup::DEFAULT_COMPACT_MIN_FILE_BYTES`]): a smaller log replays in well under
    /// half a second, so rewriting it costs more than it saves. At least 1 MiB.
    pub backup_compact_min_file_bytes: u64,

    // ---- engine ----
    /// Receiver threads. 0 = one per core.
    pub receiver_threads: usize,
    /// How the receivers share the port: their own SO_REUSEPORT sockets spread at random (the
    /// default) or by the kernel's hash, or one shared socket.
    pub receiver_sockets: ReceiverSockets,
    /// Shard-owner threads; shard `s` is owned by thread `s % shard_owner_threads`. 1..=256.
    pub shard_owner_threads: usize,
    /// Proof-of-work worker threads for local puts. 0 = one per core.
    pub pow_threads: usize,
    /// Pin receiver threads to cores.
    pub pin_cores: bool,
    /// Nice value (0..=19) of the shard-owner threads, so receivers (nice 0) win a core when
    /// both want it: GETs stay answered while PUT verification saturates the machine. 0 leaves
    /// them at the receivers' priority. See `permits.rs` and `perf/README.md` (flood).
    pub owner_nice: i32,
    /// The shard-owner threads (and the verification stage's) run under `SCHED_IDLE` instead of
    /// at `owner_nice`: only on CPU time no other thread wants, preempted at once by any
    /// receiver or other normal thread that wakes. Default false (perf/README, issue 14).
    pub owner_sched_idle: bool,
    /// Owner threads that may verify signatures at the same time. 0 = one per core.
    pub verify_permits: usize,
    /// Network PUTs are screened (replace rules, work, signatures) by a verification stage of
    /// `verify_permits` threads that batch PUTs of every shard, before the owners store them
    /// (`node::verify`). Default false: each owner screens its own PUTs (the simulator's path).
    /// Measured at 2x the verification rate (perf/README, "A PUT verification stage"), the stage
    /// stored 0.80x as many PUTs as the owners: at overload an owner's queue already holds a
    /// long batch, and the stage adds a hop and an owner wake-up per PUT.
    pub put_verify_stage: bool,
    /// After a receive batch, a receiver polls its socket without sleeping for up to this long
    /// before it blocks, so a request that follows soon finds it awake (on a VM an idle vCPU
    /// takes tens of µs to wake). It polls only while requests come closer together than this
    /// (its last wait was shorter), and not while an owner verifies signatures, so sparse
    /// traffic never polls and an idle node never does; dense traffic costs up to a core per
    /// fed receiver.
    /// 20 (the default), on 2 vCPUs: one request in flight answered at a p50 of 9.6 µs instead
    /// of 21.3 µs (every run 8.8–9.6 µs), with no measurable cost to PUTs stored or to GETs
    /// during a PUT flood in the same rounds (perf/README, issue 14, "Polling by default"). 0 =
    /// always block.
    pub receiver_spin_us: u64,
    /// Scheduler slice the receivers ask for, µs (`sched_setattr` runtime; Linux 6.12+ lets a
    /// waking thread whose slice is shorter than the running thread's preempt it, so a
    /// receiver woken by a GET need not wait for an owner's slice to end). 0 = the kernel's;
    /// at most [`MAX_RECEIVER_SLICE_US`].
    pub receiver_slice_us: u64,
    /// With one socket per receiver (`receiver_sockets` Random or Hashed), a receiver that woke
    /// for its own datagrams also takes what is already queued on another receiver's socket
    /// (without waiting), up to this many batches of 32 in a row, so a receiver waiting for a
    /// CPU does not hold up its share of the requests. 0 = no stealing. Default 1: at 128 GETs
    /// in flight, 1 and 4 both gave 2.0–2.2x the rate of 0 in the same rounds, and 4 no lower
    /// p99 than 1 (perf/README, issue 14). At most [`MAX_RECEIVER_STEAL_BATCHES`].
    pub receiver_steal_batches: usize,
    /// With `receiver_sockets` Random: spread datagrams over only as many receivers as the
    /// traffic needs, starting with one and adding one whenever a receiver's socket queue
    /// reaches an eighth of its buffer, dropping one when the others would be at most half
    /// busy (`node::scaling`). A busy receiver takes full batches and rarely sleeps; two
    /// half-busy ones each wake for a few datagrams: on 2 vCPUs at 128 GETs in flight one
    /// receiver served 1.2x the rate of two at 0.8x the CPU per GET and a p99 under 1 ms, and
    /// a flood still gets every receiver (perf/README, issue 14). Default true.
    pub receivers_on_demand: bool,
    /// With `receiver_sockets` Random: the datagrams that carry a record for an owner to verify
    /// (PUT, GET_ACK, and the v2 PUT2, GET2_ACK, PUT2_CAS, PUT2_COMMIT) get a socket of their
    /// own in the node's SO_REUSEPORT group, steered there by the group's BPF program, and one
    /// receiver (`dave-rx-put`) at the owners' priority (`owner_nice`) that reads it only as fast
    /// as the owners take PUTs. GETs are never queued behind a PUT flood, and the PUTs the owners
    /// could not verify anyway are dropped by the kernel at the full queue, never read
    /// (counted: `put_lane_kernel_drops`). Default true (perf/README, issue 14, "A lane for
    /// PUTs").
    pub put_lane: bool,
    /// With `put_lane`: the lane's socket takes runs of datagrams from one sender as one
    /// message (UDP GRO, `net::set_receive_coalescing`) and its receiver reads them with
    /// `net::RecvBatch::coalescing`, one datagram at a time as if each had come alone: runs a
    /// network device coalesced on arrival, and a local sender's segmented sends, which then
    /// cross the kernel's receive path once per run instead of once per datagram. Nothing
    /// changes on the wire. A kernel that refuses it (before Linux 5.0) leaves the lane reading
    /// datagram by datagram (logged). Default true (perf/README, issue 14, "The PUT lane takes
    /// coalesced runs").
    pub put_lane_gro: bool,
    /// Replies of one length to one address within a send batch leave as one segmented send
    /// (UDP GSO, `net::SendBatch`): the kernel's network stack is crossed once for the run
    /// instead of once per datagram, what a client with many requests in flight costs the
    /// node's receivers. The datagrams on the wire are the same. A kernel or route that cannot
    /// segment refuses it once per sending thread, which then sends one by one (counted:
    /// `send_segmentation_refused`). Default true (perf/README, issue 14, "Replies sent
    /// segmented").
    pub udp_segmentation: bool,
    /// Where network GETs are answered.
    pub get_path: GetPath,
    /// Single or batched Ed25519 verification of received dats. Batch (the default) verifies
    /// an owner's batch of PUTs 1.8x cheaper and falls back to single verification whenever a
    /// batch fails, so each dat gets the single answer unless its own owner crafted a signature
    /// with small-order parts (README, "Wire compatibility"); `Single` agrees with the reference
    /// on every signature.
    pub signature_check: SignatureCheck,
    /// Depth of each shard-owner channel. A full channel drops (and counts) the datagram.
    pub shard_channel_depth: usize,
    /// Depth of the peer thread's channel.
    pub peer_channel_depth: usize,
    /// Socket receive buffer requested from the kernel.
    pub socket_recv_buffer_bytes: usize,
    /// Socket send buffer requested from the kernel.
    pub socket_send_buffer_bytes: usize,
    /// After the first valid GET_ACK, wait at most this long for the other asked peers (a newer
    /// version wins) before returning.
    pub get_settle_ms: u64,

    // ---- trust: storage challenges (PROTOCOL.md §6) ----
    /// Each challenge outcome first multiplies a peer's tallies by this. Default 0.9: a memory of
    /// about ten outcomes (the tallies converge to at most 1 / (1 − 0.9) = 10), so a peer that
    /// turns bad falls below `trust_unreliable_below` after about seven failures, and a peer
    /// that recovers climbs back as fast. In `(0, 1]`.
    pub trust_decay: f32,
    /// Decayed outcomes a peer needs before its score is used. Default 2.5, i.e. three
    /// challenges (1 + 0.9 + 0.81): one lost datagram does not condemn a newcomer. Until then a
    /// peer is "unscored": chosen by exploration, never judged unreliable.
    pub trust_min_samples: f32,
    /// A scored peer below this reliability is unreliable: its PUTs are stored but not
    /// re-propagated, and it is no replica-repair target. Default 0.5: it loses more of the
    /// records we check than it keeps. In `[0, 1]`.
    pub trust_unreliable_below: f32,
    /// Probability that one target pick goes to the closest unscored peer (among the 2 × FANOUT
    /// closest) instead of a reliability-weighted choice among the scored ones, so newcomers
    /// receive records and can earn a score. Default 0.1: with FANOUT 3, about one PUT in four
    /// includes a newcomer when one is near. In `[0, 1]`.
    pub trust_explore_probability: f64,
    /// Probability that a record sent to a peer is remembered as a challenge candidate. Default
    /// 0.5: plenty of candidates at any traffic, and the peer cannot tell which records will be
    /// checked. In `[0, 1]`.
    pub challenge_sample_probability: f64,
    /// Mean gap between two challenges, node-wide (exponentially distributed, so a peer cannot
    /// anticipate them); 0 disables challenges. Default 1000: at most one GET (≤ 289 B) and its
    /// GET_ACK (≤ 1424 B) per second on average, negligible next to the ping traffic; with ten
    /// peers each is checked every ten seconds, with a hundred every hundred seconds (challenges
    /// fall on peers in proportion to the records we sent them).
    pub challenge_mean_gap_ms: u64,
    /// An unanswered challenge fails after this long. Default 3000, the reference's
    /// DEACTIVATE_AFTER: a peer that does not answer within it is not answering pings either.
    pub challenge_timeout_ms: u64,
    /// A record is challenged only once it has been with the peer this long (its owner thread
    /// may be behind its receivers). Default 1000.
    pub challenge_min_age_ms: u64,
    /// Challenge candidates per peer in one shard. Default 4.
    pub challenge_candidates_per_peer: usize,
    /// Challenge candidates per shard. Default 32: with 256 shards at most 8192 entries of
    /// 130 to 400 bytes (the key is kept, up to 255 bytes), 3 MiB at worst.
    pub challenge_candidates_per_shard: usize,
    /// Challenges awaiting their answer per shard. Default 8: with one challenge a second and a
    /// 3 s timeout, far more than are ever in flight.
    pub challenges_in_flight_per_shard: usize,

    // ---- replica repair ----
    /// Bytes per second replica repair and republish may send, node-wide; 0 disables both.
    /// Default 512 KiB/s (4 Mbit/s): a departed replica's share of 1 GiB of records (≈ 1/3 of
    /// it re-sent to one peer) moves in about ten minutes, while the node's normal traffic keeps
    /// the link.
    pub repair_bytes_per_s: u64,
    /// Burst of the repair budget. Default 64 KiB. At least `fanout × 1424` so one record's
    /// sends always fit.
    pub repair_burst_bytes: u64,
    /// Records each owner thread examines per repair step (each costs two closest-peer
    /// searches). Default 1024: a few milliseconds per step with 1000 peers, so repair never
    /// delays an owner's PUTs and GETs by much.
    pub repair_scan_records_per_step: usize,
    /// Every record is re-sent to all of its FANOUT closest peers this often (paced like
    /// repair, staggered by shard); 0 disables it. Default 600000 (10 minutes).
    pub republish_interval_ms: u64,

    // ---- amplification limit (PROTOCOL.md §6) ----
    /// Burst of bytes toward one unproven prefix (the IP for loopback, /24 for IPv4, /48 for
    /// IPv6). Default 8192: 34 handshake answers (PONG ≤ 212 B + PING 9 B + GETMYADDRPORT_ACK
    /// 19 B) or five full GET_ACKs. At least 212 (one largest PONG).
    pub amplification_prefix_burst_bytes: u64,
    /// Refill of each prefix's bucket. Default 2048 B/s: nine handshakes per second per prefix.
    pub amplification_prefix_refill_bytes_per_s: u64,
    /// Burst of bytes toward all unproven addresses together. Default 65536.
    pub amplification_global_burst_bytes: u64,
    /// Refill of the global bucket. Default 32768 B/s: ~150 handshakes per second for joining
    /// nodes, and at most 32 KiB/s of reflection however many prefixes are spoofed.
    pub amplification_global_refill_bytes_per_s: u64,
    /// Prefixes the limiter tracks; beyond it, sends to new unproven prefixes are refused.
    /// Default 4096 (about 200 KiB).
    pub amplification_max_prefixes: usize,

    // ---- protocol extensions (README "Wire compatibility", `wire::ext`) ----
    /// Extensions this node advertises in its PONG salts and speaks with peers that advertise
    /// them too. Default [`Features::ALL`](crate::wire::Features::ALL).
    /// [`Features::NONE`](crate::wire::Features::NONE) makes a v1-only node: fully random PONG
    /// salts and no message with an op of 0x10 or above, ever.
    pub extensions: crate::wire::Features,
    /// Routing extension (`route`, issue 12): k, contacts per bucket of the routing table and the
    /// nodes a lookup must hear from. Default 8 (mainline's k); 2..=20.
    pub route_bucket_size: usize,
    /// Local puts and gets find their targets by an iterative lookup over the routing table
    /// (FIND_NODE / NODES with peers that advertise ROUTING) instead of the peer snapshot; a
    /// lookup that finds nobody (no routing peer yet, or a v1-only network) falls back to the
    /// peer snapshot. Default true: with tables smaller than the network, one hop through the
    /// peer snapshot misses records (issue 12; `dave sim`, README "Routing at scale"), and peers
    /// that speak ROUTING are no longer pinged every second (`ping_routing_peers`), so the
    /// snapshot of an all-dave network no longer holds every node. Without the ROUTING extension
    /// (`extensions`) it has no effect.
    pub route_lookups: bool,
    /// A lookup gives up after this long (then the peer snapshot is used). Default 3000 ms.
    pub route_lookup_timeout_ms: u64,
    /// A contact whose ID was only listed in a NODES answer counts in a lookup, and enters the
    /// routing table, only once the node has proved the ID's key at its address (a PING answered
    /// by a PONG signed with that key; `LookupConfig::verify_ids`, `peer::prover`). Default true.
    pub route_verify_ids: bool,
    /// Ping peers that speak ROUTING every `ping_period_ms` too, as v1 peers are. Default false:
    /// the router watches their liveness (its answers keep them alive, its evictions drop
    /// them, and a silent one is deactivated after 10 min and dropped after 30; see
    /// `PeerConfig::router_liveness`), so background PING/PONG traffic does not grow with the
    /// network (README "Routing at scale"). True restores the full-mesh schedule, for a small
    /// network that stores through the peer snapshot and wants a departed peer noticed within
    /// `deactivate_after_ms` (replica repair reacts to that).
    pub ping_routing_peers: bool,
    /// Those proofs started per second at most (each is one 9-byte PING to an address a lister
    /// named), with a burst of 2 s worth. Default 32; 1..=1024.
    pub route_proofs_per_s: u32,
    /// Proofs of strangers started per second at most: a stranger is an address that PINGs us
    /// while our peer table has no room for it (in a network larger than the table, a v1 node
    /// that holds us in its table); one 9-byte PING, and once it answers, replies to it are no
    /// longer held to the amplification allowance for `peer::prover::PROVEN_TTL_MS`. A bucket
    /// apart from `route_proofs_per_s`, with a burst of 2 s worth. Default 16; 0 proves no
    /// stranger; at most 1024.
    pub stranger_proofs_per_s: u32,
    /// With `route_lookups`, replica maintenance is by lookup (`route::maintain`): a copy not
    /// re-stored for `republish_interval_ms` is looked up and pushed to the `fanout` closest
    /// nodes found; a copy not re-stored for this long, whose last lookup did not find this
    /// node among the `fanout` closest, is dropped. Default 1 800 000 (30 minutes, three
    /// republish intervals: two lost republish rounds do not lose a copy); a value below
    /// `republish_interval_ms` counts as `republish_interval_ms`. At most 1 year.
    pub maintain_expire_after_ms: u64,
    /// Republish lookups the node starts per second at most: enforced node-wide by the peer
    /// thread, which also runs one lookup per owner ID for all owner threads asking and reuses
    /// answers for up to 30 s (`route::maintain::LookupShare`); each owner thread asks at most
    /// its share (at least 1 a second). Default 4: each costs O(k log N) FIND_NODE datagrams (about 2–3 KB at
    /// k = 8), so maintenance stays near 10 KB/s at most, and 14,400 owner IDs can be republished
    /// per hour; a node holding records of more owners republishes each less often than
    /// `republish_interval_ms` (the pacer spreads them). 1..=1024.
    pub maintain_lookups_per_s: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 1618)),
            keypair: None,
            edges: Vec::new(),
            fanout: 3,
            npeer_limit: 5,
            max_peers: 1000,
            min_work_bits: 20,
            ping_period_ms: 1_000,
            deactivate_after_ms: 3_000,
            drop_after_ms: 12_000,
            activation_delay_ms: 5_000,
            getmyaddrport_every_ms: 600_000,
            ttl_ms: 365 * 24 * 3_600 * 1_000,
            // 4 MiB x 256 shards = 1 GiB of records at most by default.
            shard_capacity_bytes: 4 << 20,
            backup_path: None,
            sync_policy: SyncPolicy::default(),
            backup_compact_min_file_bytes: crate::backup::DEFAULT_COMPACT_MIN_FILE_BYTES,
            receiver_threads: 0,
            receiver_sockets: ReceiverSockets::Random,
            shard_owner_threads: 256,
            pow_threads: 0,
            pin_cores: true,
            owner_nice: 10,
            owner_sched_idle: false,
            verify_permits: 0,
            put_verify_stage: false,
            receiver_spin_us: DEFAULT_RECEIVER_SPIN_US,
            receiver_steal_batches: 1,
            receivers_on_demand: true,
            receiver_slice_us: 0,
            put_lane: true,
            put_lane_gro: true,
            udp_segmentation: true,
            get_path: GetPath::Receiver,
            signature_check: SignatureCheck::Batch,
            // 64 slots x 256 owners bounds queued work; a burst beyond that is shed and counted.
            shard_channel_depth: 64,
            peer_channel_depth: 1024,
            socket_recv_buffer_bytes: 4 << 20,
            socket_send_buffer_bytes: 1 << 20,
            get_settle_ms: 50,
            trust_decay: 0.9,
            trust_min_samples: 2.5,
            trust_unreliable_below: 0.5,
            trust_explore_probability: 0.1,
            challenge_sample_probability: 0.5,
            challenge_mean_gap_ms: 1_000,
            challenge_timeout_ms: 3_000,
            challenge_min_age_ms: 1_000,
            challenge_candidates_per_peer: 4,
            challenge_candidates_per_shard: 32,
            challenges_in_flight_per_shard: 8,
            repair_bytes_per_s: 512 * 1024,
            repair_burst_bytes: 64 * 1024,
            repair_scan_records_per_step: 1024,
            republish_interval_ms: 600_000,
            amplification_prefix_burst_bytes: 8 * 1024,
            amplification_prefix_refill_bytes_per_s: 2 * 1024,
            amplification_global_burst_bytes: 64 * 1024,
            amplification_global_refill_bytes_per_s: 32 * 1024,
            amplification_max_prefixes: 4096,
            extensions: crate::wire::Features::ALL,
            route_bucket_size: 8,
            route_lookups: true,
            route_lookup_timeout_ms: 3_000,
            route_verify_ids: true,
            route_proofs_per_s: 32,
            stranger_proofs_per_s: 16,
            maintain_expire_after_ms: 1_800_000,
            maintain_lookups_per_s: 4,
            ping_routing_peers: false,
        }
    }
}

// ---- bounds checked by `Config::validate` ----
//
// Every numeric field whose extreme value could panic, exhaust memory or spawn threads without
// bound has a ceiling here, each with its reason. They are far above any useful setting: their
// job is to turn a typo (an extra zero, a negative number read as huge) into a clear error.

/// Largest FANOUT. Every stored PUT is sent to this many peers, so it is the node's forwarding
/// amplification; 32 is ten times the reference's 3, and keeps `fanout × 1424` far from overflow.
pub const MAX_FANOUT: usize = 32;

/// Longest period, delay or timeout in milliseconds (ping, deactivate, drop, activation,
/// address refresh, challenge timings, republish, get settle): one year. Longer values mean
/// "never" in practice, and the cap keeps `now_ms + period` far from `u64` overflow.
pub const MAX_PERIOD_MS: u64 = 365 * 24 * 3_600 * 1_000;

/// Longest TTL: 100 years. Record times are Unix ms in `i64`; `time_ms + ttl_ms` stays far from
/// overflow for any time a signed record can carry without being "from the future".
pub const MAX_TTL_MS: i64 = 100 * 365 * 24 * 3_600 * 1_000;

/// Largest per-shard budget: 64 GiB, i.e. 16 TiB for the 256 shards, beyond any one machine's
/// memory, and (asserted below) far below the 2^32 records a shard's u32 slot indices can name.
/// The budget is not allocated up front; records fill it.
pub const MAX_SHARD_CAPACITY_BYTES: usize = 64 << 30;

const _: () = assert!(
    MAX_SHARD_CAPACITY_BYTES / crate::shard::store::MIN_RECORD_COST_BYTES <= u32::MAX as usize
);

/// Most threads of one kind (receivers, PoW workers) and most verification permits: 1024,
/// twice the hardware threads of the largest common servers. Each thread has a stack (2 MiB of
/// address space) and each receiver a socket, so a typo of 100000 must not spawn them.
pub const MAX_THREADS_PER_KIND: usize = 1024;

/// Default receiver poll window: 20 µs, about what a blocked receiver takes to wake on a VM
/// (the echo server's one-in-flight p50 is 16–21 µs on the 2-vCPU VM of perf/README), so a
/// request that comes within it is taken without that wake; 50 µs measured no lower p50 and
/// cost more polling (perf/README, issue 14).
pub const DEFAULT_RECEIVER_SPIN_US: u64 = 20;

/// Longest receiver spin: 10 ms. Spinning costs a core for that long after every batch; beyond
/// a few hundred µs it buys nothing (a VM's vCPU wakes in tens of µs).
pub const MAX_RECEIVER_SPIN_US: u64 = 10_000;

/// Longest receiver slice: 100 ms, the longest slice Linux keeps (it clamps to 0.1–100 ms).
pub const MAX_RECEIVER_SLICE_US: u64 = 100_000;

/// Most batches a receiver steals in a row: 64 × 32 = 2048 datagrams, a few ms of work, after
/// which it must return to its own socket.
pub const MAX_RECEIVER_STEAL_BATCHES: usize = 64;

/// Deepest shard-owner channel. crossbeam allocates a bounded channel's slots up front: an
/// owner message is about 300 bytes, so 256 owners × 4096 × 300 B ≈ 315 MB at most.
pub const MAX_SHARD_CHANNEL_DEPTH: usize = 4096;

/// Deepest peer channel: 65536 messages of about 250 bytes, 16 MB allocated up front.
pub const MAX_PEER_CHANNEL_DEPTH: usize = 65_536;

/// Largest socket buffer asked of the kernel: 1 GiB. The value goes to `setsockopt` as a C
/// `int`; the kernel caps it at `net.core.rmem_max`/`wmem_max` anyway.
pub const MAX_SOCKET_BUFFER_BYTES: usize = 1 << 30;

/// Most challenge candidates per shard (and per peer per shard): 4096 entries of up to 400
/// bytes, 420 MB for 256 shards at worst.
pub const MAX_CHALLENGE_CANDIDATES: usize = 4096;

/// Most challenges in flight per shard: 1024, far more than one a second times a 3 s timeout.
pub const MAX_CHALLENGES_IN_FLIGHT: usize = 1024;

/// Lookup answers each owner thread keeps for reuse by maintenance (`route::maintain`): 64
/// answers × (≤ 20 addresses) ≈ 45 KiB per owner at most; one owner's records met in one walk
/// share an answer.
pub const MAINTAIN_ANSWERS_CACHED: usize = 64;

/// Largest byte rate or burst (repair, amplification buckets): 1 TiB/s. Token arithmetic is in
/// milli-bytes (`× 1000`) and saturating; this keeps it exact.
pub const MAX_BYTES_PER_S: u64 = 1 << 40;

/// Most records one repair step examines: 1 Mi. Each costs two closest-peer searches, so a
/// bigger step would hold an owner thread for seconds.
pub const MAX_REPAIR_SCAN_RECORDS: usize = 1 << 20;

/// Most prefixes the amplification limiter tracks: 1 Mi entries of about 50 bytes, 50 MB.
pub const MAX_AMPLIFICATION_PREFIXES: usize = 1 << 20;

/// Smallest floor of the automatic compaction bound: 1 MiB. Below it a busy node would rewrite
/// its log after every few hundred records (each compaction reads and rewrites the live set).
pub const MIN_BACKUP_COMPACT_FLOOR_BYTES: u64 = 1 << 20;

/// How long a compare-and-swap put waits for the replicas' statuses. One round trip between
/// nodes plus a signature check is well under a second on any network dave runs on; past this,
/// missing statuses count as refusals and the put fails (the owner retries with seq + 1).
pub const PUT2_CAS_TIMEOUT_MS: u64 = 2_000;

/// v2 records have a budget of their own per shard: `shard_capacity_bytes / V2_BUDGET_DIVISOR`
/// on top of the v1 budget (so turning v2 on adds at most a quarter to a node's memory for
/// records; v1 eviction is unchanged).
pub const V2_BUDGET_DIVISOR: usize = 4;

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks relations between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: &str| Err(ConfigError(msg.to_string()));
        self.validate_bounds()?;
        if self.fanout == 0 {
            return fail("fanout must be at least 1");
        }
        if self.npeer_limit > crate::limits::MAX_PONG_ADDRS {
            return fail("npeer_limit must be at most 5 (a PONG carries at most 5 addresses)");
        }
        if !(1..=crate::peer::MAX_TABLE_ENTRIES).contains(&self.max_peers) {
            return fail("max_peers must be between 1 and 1048576");
        }
        if self.edges.len() > self.max_peers {
            return fail("max_peers must be at least the number of edges");
        }
        if self.min_work_bits > 256 {
            return fail("min_work_bits must be at most 256");
        }
        if self.ping_period_ms == 0 {
            return fail("ping_period_ms must be positive");
        }
        if self.deactivate_after_ms < self.ping_period_ms {
            return fail("deactivate_after_ms must be at least ping_period_ms");
        }
        if self.drop_after_ms <= self.deactivate_after_ms {
            return fail("drop_after_ms must be more than deactivate_after_ms");
        }
        if self.getmyaddrport_every_ms == 0 {
            return fail("getmyaddrport_every_ms must be positive");
        }
        if self.ttl_ms <= 0 {
            return fail("ttl_ms must be positive");
        }
        if !(0..=19).contains(&self.owner_nice) {
            return fail("owner_nice must be between 0 and 19");
        }
        if self.shard_owner_threads == 0 || self.shard_owner_threads > crate::shard::SHARD_COUNT {
            return fail("shard_owner_threads must be between 1 and 256");
        }
        if self.shard_capacity_bytes < 2 * crate::shard::store::MAX_RECORD_COST_BYTES {
            return fail("shard_capacity_bytes must hold at least two of the largest records");
        }
        if self.shard_channel_depth == 0 || self.peer_channel_depth == 0 {
            return fail("channel depths must be positive");
        }
        if !(self.trust_decay > 0.0 && self.trust_decay <= 1.0) {
            return fail("trust_decay must be in (0, 1]");
        }
        if !(self.trust_min_samples >= 0.0 && self.trust_min_samples.is_finite()) {
            return fail("trust_min_samples must be a non-negative number");
        }
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if !unit(f64::from(self.trust_unreliable_below))
            || !unit(self.trust_explore_probability)
            || !unit(self.challenge_sample_probability)
        {
            return fail(
                "trust_unreliable_below, trust_explore_probability and \
                 challenge_sample_probability must be in [0, 1]",
            );
        }
        if self.challenge_timeout_ms == 0 {
            return fail("challenge_timeout_ms must be positive");
        }
        if self.repair_bytes_per_s > 0
            && self.repair_burst_bytes < (self.fanout * crate::limits::MAX_PACKET_LEN) as u64
        {
            return fail("repair_burst_bytes must be at least fanout × 1424 (one record's sends)");
        }
        if self.repair_scan_records_per_step == 0 {
            return fail("repair_scan_records_per_step must be positive");
        }
        if self.amplification_prefix_burst_bytes < crate::limits::PONG_MAX_LEN as u64
            || self.amplification_global_burst_bytes < self.amplification_prefix_burst_bytes
        {
            return fail(
                "amplification_prefix_burst_bytes must be at least 212 (one PONG) and at most \
                 amplification_global_burst_bytes",
            );
        }
        if !(crate::route::MIN_BUCKET_SIZE..=crate::route::MAX_BUCKET_SIZE)
            .contains(&self.route_bucket_size)
        {
            return fail("route_bucket_size must be between 2 and 20");
        }
        if !(1..=crate::peer::prover::MAX_PROOFS_PER_S).contains(&self.route_proofs_per_s) {
            return fail("route_proofs_per_s must be between 1 and 1024");
        }
        if self.stranger_proofs_per_s > crate::peer::prover::MAX_PROOFS_PER_S {
            return fail("stranger_proofs_per_s must be at most 1024");
        }
        if !(1..=crate::route::maintain::MAX_LOOKUPS_PER_S).contains(&self.maintain_lookups_per_s) {
            return fail("maintain_lookups_per_s must be between 1 and 1024");
        }
        Ok(())
    }

    /// Replica maintenance by lookup for one of `groups` owner threads, when routing lookups are
    /// on (`route_lookups` and the ROUTING extension); `None`: the v1 repair.
    pub fn maintain_config(&self, groups: usize) -> Option<crate::route::maintain::MaintainConfig> {
        if !self.route_lookups || !self.routing() {
            return None;
        }
        let groups = groups.max(1) as u32;
        Some(crate::route::maintain::MaintainConfig {
            republish_ms: self.republish_interval_ms,
            expire_after_ms: self
                .maintain_expire_after_ms
                .max(self.republish_interval_ms),
            lookups_per_s: self.maintain_lookups_per_s.div_ceil(groups).max(1),
            lookup_timeout_ms: self.route_lookup_timeout_ms.saturating_mul(2),
            answers_cached: MAINTAIN_ANSWERS_CACHED,
            replicas: self.fanout.clamp(1, crate::route::MAX_BUCKET_SIZE),
        })
    }

    /// The peer table's settings for a node listening at `local_addr` (the node and the
    /// simulator both start from this).
    pub fn peer_config(&self, local_addr: std::net::SocketAddr) -> crate::peer::PeerConfig {
        let config = self;
        // A peer the router watches is never given up on sooner than a pinged one (`Config` allows
        // v1 bounds up to a year; the routed ones must stay at least as long and in order).
        let defaults = crate::peer::PeerConfig::default();
        let routed_deactivate_after_ms = defaults
            .routed_deactivate_after_ms
            .max(config.deactivate_after_ms);
        let routed_drop_after_ms = defaults
            .routed_drop_after_ms
            .max(config.drop_after_ms)
            .max(routed_deactivate_after_ms.saturating_add(1));
        crate::peer::PeerConfig {
            ping_period_ms: config.ping_period_ms,
            deactivate_after_ms: config.deactivate_after_ms,
            drop_after_ms: config.drop_after_ms,
            activation_delay_ms: config.activation_delay_ms,
            getmyaddrport_every_ms: config.getmyaddrport_every_ms,
            npeer_limit: config.npeer_limit,
            max_peers: config.max_peers,
            edges: config.edges.clone(),
            listen_addr: Some(local_addr),
            features: config.extensions,
            proofs_per_s: config.route_proofs_per_s,
            stranger_proofs_per_s: config.stranger_proofs_per_s,
            // The peer thread runs a router exactly when the node speaks ROUTING, and feeds it
            // (`route::drive`): peers that speak it too leave the one-second ping schedule.
            router_liveness: config.routing() && !config.ping_routing_peers,
            // No more PONGs signed for unproven addresses than the global amplification bucket
            // could send them.
            unproven_pong_budget: crate::peer::budget::BucketConfig {
                burst_bytes: config.amplification_global_burst_bytes,
                refill_bytes_per_s: config.amplification_global_refill_bytes_per_s,
            },
            routed_deactivate_after_ms,
            routed_drop_after_ms,
            ..defaults
        }
    }

    /// The routing core's settings.
    pub fn router_config(&self) -> crate::route::RouterConfig {
        let mut c = crate::route::RouterConfig::default();
        c.table.bucket_size = self.route_bucket_size;
        c.lookup.k = self.route_bucket_size;
        c.lookup.verify_ids = self.route_verify_ids;
        c
    }

    /// Whether this node speaks the routing extension.
    pub fn routing(&self) -> bool {
        self.extensions.contains(crate::wire::Features::ROUTING)
    }

    /// Ceilings of the numeric fields (the `MAX_*` constants) and the backup path's form.
    fn validate_bounds(&self) -> Result<(), ConfigError> {
        fn at_most<T: PartialOrd + core::fmt::Display>(
            name: &str,
            value: T,
            max: T,
        ) -> Result<(), ConfigError> {
            if value > max {
                return Err(ConfigError(format!("{name} is {value}; at most {max}")));
            }
            Ok(())
        }
        at_most("fanout", self.fanout, MAX_FANOUT)?;
        for (name, value) in [
            ("ping_period_ms", self.ping_period_ms),
            ("deactivate_after_ms", self.deactivate_after_ms),
            ("drop_after_ms", self.drop_after_ms),
            ("activation_delay_ms", self.activation_delay_ms),
            ("getmyaddrport_every_ms", self.getmyaddrport_every_ms),
            ("get_settle_ms", self.get_settle_ms),
            ("challenge_mean_gap_ms", self.challenge_mean_gap_ms),
            ("challenge_timeout_ms", self.challenge_timeout_ms),
            ("challenge_min_age_ms", self.challenge_min_age_ms),
            ("republish_interval_ms", self.republish_interval_ms),
            ("maintain_expire_after_ms", self.maintain_expire_after_ms),
        ] {
            at_most(name, value, MAX_PERIOD_MS)?;
        }
        at_most("ttl_ms", self.ttl_ms, MAX_TTL_MS)?;
        at_most(
            "shard_capacity_bytes",
            self.shard_capacity_bytes,
            MAX_SHARD_CAPACITY_BYTES,
        )?;
        at_most(
            "receiver_threads",
            self.receiver_threads,
            MAX_THREADS_PER_KIND,
        )?;
        at_most("pow_threads", self.pow_threads, MAX_THREADS_PER_KIND)?;
        at_most("verify_permits", self.verify_permits, MAX_THREADS_PER_KIND)?;
        at_most(
            "receiver_spin_us",
            self.receiver_spin_us,
            MAX_RECEIVER_SPIN_US,
        )?;
        at_most(
            "receiver_slice_us",
            self.receiver_slice_us,
            MAX_RECEIVER_SLICE_US,
        )?;
        at_most(
            "receiver_steal_batches",
            self.receiver_steal_batches,
            MAX_RECEIVER_STEAL_BATCHES,
        )?;
        at_most(
            "shard_channel_depth",
            self.shard_channel_depth,
            MAX_SHARD_CHANNEL_DEPTH,
        )?;
        at_most(
            "peer_channel_depth",
            self.peer_channel_depth,
            MAX_PEER_CHANNEL_DEPTH,
        )?;
        at_most(
            "socket_recv_buffer_bytes",
            self.socket_recv_buffer_bytes,
            MAX_SOCKET_BUFFER_BYTES,
        )?;
        at_most(
            "socket_send_buffer_bytes",
            self.socket_send_buffer_bytes,
            MAX_SOCKET_BUFFER_BYTES,
        )?;
        at_most(
            "challenge_candidates_per_peer",
            self.challenge_candidates_per_peer,
            MAX_CHALLENGE_CANDIDATES,
        )?;
        at_most(
            "challenge_candidates_per_shard",
            self.challenge_candidates_per_shard,
            MAX_CHALLENGE_CANDIDATES,
        )?;
        at_most(
            "challenges_in_flight_per_shard",
            self.challenges_in_flight_per_shard,
            MAX_CHALLENGES_IN_FLIGHT,
        )?;
        for (name, value) in [
            ("repair_bytes_per_s", self.repair_bytes_per_s),
            ("repair_burst_bytes", self.repair_burst_bytes),
            (
                "amplification_prefix_burst_bytes",
                self.amplification_prefix_burst_bytes,
            ),
            (
                "amplification_prefix_refill_bytes_per_s",
                self.amplification_prefix_refill_bytes_per_s,
            ),
            (
                "amplification_global_burst_bytes",
                self.amplification_global_burst_bytes,
            ),
            (
                "amplification_global_refill_bytes_per_s",
                self.amplification_global_refill_bytes_per_s,
            ),
        ] {
            at_most(name, value, MAX_BYTES_PER_S)?;
        }
        at_most(
            "repair_scan_records_per_step",
            self.repair_scan_records_per_step,
            MAX_REPAIR_SCAN_RECORDS,
        )?;
        at_most(
            "amplification_max_prefixes",
            self.amplification_max_prefixes,
            MAX_AMPLIFICATION_PREFIXES,
        )?;
        if self.backup_compact_min_file_bytes < MIN_BACKUP_COMPACT_FLOOR_BYTES {
            return Err(ConfigError(format!(
                "backup_compact_min_file_bytes must be at least {MIN_BACKUP_COMPACT_FLOOR_BYTES} \
                 (1 MiB)"
            )));
        }
        if self
            .backup_path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError(
                "backup_path is empty; give a file path or leave the backup off".into(),
            ));
        }
        Ok(())
    }

    /// The rules of this node's v2-record cores (`shard::core2`), as the node and the simulator
    /// build them.
    pub fn rules2(&self) -> crate::shard::core2::Rules2 {
        crate::shard::core2::Rules2 {
            min_work_bits: self.min_work_bits,
            fanout: self.fanout,
            get_settle_ms: self.get_settle_ms,
            put_timeout_ms: PUT2_CAS_TIMEOUT_MS,
        }
    }

    /// One shard's v2 store: its own budget, `shard_capacity_bytes / V2_BUDGET_DIVISOR`.
    pub fn store2_config(&self) -> crate::shard::store2::Store2Config {
        crate::shard::store2::Store2Config {
            capacity_bytes: self.shard_capacity_bytes / V2_BUDGET_DIVISOR,
            ttl_ms: self.ttl_ms,
        }
    }

    /// The trust, challenge and repair settings shards apply.
    pub fn shard_policy(&self) -> crate::shard::core::ShardPolicy {
        crate::shard::core::ShardPolicy {
            trust: crate::peer::TrustPolicy {
                decay: self.trust_decay,
                min_samples: self.trust_min_samples,
                unreliable_below: self.trust_unreliable_below,
                explore_probability: self.trust_explore_probability,
            },
            challenge: crate::shard::challenge::ChallengeConfig {
                sample_probability: self.challenge_sample_probability,
                max_per_peer: self.challenge_candidates_per_peer,
                max_candidates: self.challenge_candidates_per_shard,
                max_in_flight: self.challenges_in_flight_per_shard,
                min_age_ms: self.challenge_min_age_ms,
                timeout_ms: self.challenge_timeout_ms,
            },
            repair: crate::shard::repair::RepairConfig {
                republish_interval_ms: self.republish_interval_ms,
            },
        }
    }

    /// The amplification limiter's bounds.
    pub fn amplification_config(&self) -> crate::peer::budget::AmplificationConfig {
        use crate::peer::budget::BucketConfig;
        crate::peer::budget::AmplificationConfig {
            prefix: BucketConfig {
                burst_bytes: self.amplification_prefix_burst_bytes,
                refill_bytes_per_s: self.amplification_prefix_refill_bytes_per_s,
            },
            global: BucketConfig {
                burst_bytes: self.amplification_global_burst_bytes,
                refill_bytes_per_s: self.amplification_global_refill_bytes_per_s,
            },
            max_prefixes: self.amplification_max_prefixes,
            ipv4_prefix_len_bits: 24,
            ipv6_prefix_len_bits: 48,
        }
    }

    /// The node-wide repair budget.
    pub fn repair_budget(&self) -> crate::peer::budget::BucketConfig {
        crate::peer::budget::BucketConfig {
            burst_bytes: self.repair_burst_bytes,
            refill_bytes_per_s: self.repair_bytes_per_s,
        }
    }

    /// Receiver threads to start (resolving 0 to the number of cores).
    pub fn receiver_thread_count(&self) -> usize {
        resolve_cores(self.receiver_threads)
    }

    /// PoW workers to start (resolving 0 to the number of cores).
    pub fn pow_thread_count(&self) -> usize {
        resolve_cores(self.pow_threads)
    }

    /// Verification permits (resolving 0 to the number of cores).
    pub fn verify_permit_count(&self) -> usize {
        resolve_cores(self.verify_permits)
    }
}

fn resolve_cores(n: usize) -> usize {
    if n > 0 {
        return n;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
