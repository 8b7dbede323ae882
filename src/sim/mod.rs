//! Deterministic simulation of whole dave networks: hundreds or thousands of nodes on one
//! thread, with a virtual clock, a seeded lossy network, churn and adversaries. Every run is a
//! pure function of its [`SimOptions`] (seed included); the trace hash over every delivered
//! datagram proves it, and a failing seed replays exactly (STYLE habit 4: TigerBeetle's
//! packet simulator, quinn-proto's `Pair`, smoltcp's fault injector).
//!
//! ```text
//!  SimOptions ──► World (scenario.rs)
//!                   ├─ EventQueue: BinaryHeap of (time, seq); the clock jumps to the next event
//!                   ├─ Network (network.rs): per-link delay + jitter, loss, duplication,
//!                   │    reordering, partitions; real encoded datagrams; trace hash
//!                   ├─ SimNode × N (node.rs): the real PeerTable + k real Shards + a Router,
//!                   │    wired like node.rs (amplification limiter, challenges, trust, repair,
//!                   │    lookups before local puts and gets), one thread
//!                   ├─ workload: puts, updates, gets, final retrievability check
//!                   ├─ churn: departures + fresh joins, edge restarts
//!                   └─ adversaries (adversary.rs): droppers, forgers, stale, poisoners,
//!                        low-work putters, Sybils ground next to a victim's ID
//!                 ──► Report (report.rs): activation, stored vs retrievable, GET success and
//!                     virtual latency, replicas, packets and bytes per node-second, trace hash
//! ```
//!
//! # What is real and what is not
//!
//! Real: the peer-table, routing and shard cores, the wire codec (nodes exchange encoded bytes), Ed25519
//! signatures and BLAKE3 proof-of-work (at [`SIM_MIN_WORK_BITS`] instead of 20), the trust,
//! challenge, repair and amplification code. With [`SimOptions::fast_pong_auth`]
//! (`--fast-crypto`), PONGs carry a keyed BLAKE3 MAC instead of an Ed25519 signature
//! (`crate::peer::PongAuth::SimulatedMac`): the key comes from the responder's secret seed and
//! checkers look it up in a registry of the run's nodes, so a node can still answer only for its
//! own key. Record signatures stay Ed25519. Simulated: sockets, threads (one "owner" per
//! node), the wall clock (virtual time plus a per-node skew), the backup log (a restarted edge
//! keeps its records as if replayed). Each node has [`SimOptions::shards_per_node`] shards
//! instead of 256; routing is `shard_index % k`.
//!
//! # Cost
//!
//! Signatures dominate: every peer is pinged every second, and each PING costs the answering
//! node an Ed25519 signature and the asking node a verification (~50 µs together on a modern
//! core). A full mesh of `n` nodes therefore costs `n²` of them per virtual second; large runs
//! use a smaller `max_peers`. With `Config::route_lookups` (the default) local puts and gets
//! find the owner's closest nodes by lookup, so a partial mesh still finds every record; without
//! it GET is one hop (the FANOUT closest peers the asker knows) and a partial mesh finds fewer. [`SimOptions::fast_pong_auth`] removes most of that cost.
//! `perf/README.md` has the measured figures.
//!
//! # Entry points
//!
//! [`run`] runs options and returns a [`Report`]; [`run_cli`] parses `dave sim` flags
//! ([`SimArgs`]) first and also records the wall time.

pub mod adversary;
pub mod cli;
pub mod network;
pub mod node;
pub mod options;
pub mod report;
pub mod scenario;

pub use cli::{SimArgs, run_cli, run_timed, run_timed_observed};
pub use network::NetStats;
pub use options::{
    AdversaryOptions, ChurnOptions, NetworkOptions, OptionsError, PartitionOptions,
    SIM_MIN_WORK_BITS, SimOptions, SybilBehaviour, WorkloadOptions,
};
pub use report::{GetStats, PartitionReport, ReplicaStats, Report};

/// Runs a simulation to its end. Deterministic: equal options give equal reports (wall time
/// aside, which this does not measure; see [`run_timed`]).
pub fn run(options: &SimOptions) -> Result<Report, OptionsError> {
    Ok(scenario::World::new(options.clone())?.run())
}

/// Like [`run`], calling `progress(now_ms, end_ms)` on the virtual clock now and then (for a
/// progress bar); the report is the same as [`run`]'s.
pub fn run_observed(
    options: &SimOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, OptionsError> {
    Ok(scenario::World::new(options.clone())?.run_observed(progress))
}
