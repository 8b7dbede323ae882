//! What a run measured, and how `dave sim` prints it.

use std::fmt;

use crate::sim::network::NetStats;
use crate::sim::node::LookupStats;
use crate::stats::Stats;

/// Outcomes of a group of local gets. A get succeeds when it returns the newest version put
/// before it started (or a newer one); an older valid version is *stale*.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct GetStats {
    /// Gets started.
    pub started: u64,
    /// Found the newest version (or newer).
    pub fresh: u64,
    /// Found only an older version.
    pub stale: u64,
    /// Every asked peer said "not found" (or there was nobody to ask).
    pub not_found: u64,
    /// No valid answer before the timeout.
    pub timed_out: u64,
    /// The asking node left or restarted before the get ended (not counted either way).
    pub aborted: u64,
    /// Answered from the asking node's own store without asking a peer (latency 0, or the
    /// lookup's time with `Config::route_lookups`).
    pub local: u64,
    /// Virtual latency of each fresh answer, ms (sorted when the report is made).
    pub latencies_ms: Vec<u64>,
}

impl GetStats {
    /// Gets that ended (started minus aborted and still pending).
    pub fn ended(&self) -> u64 {
        self.fresh + self.stale + self.not_found + self.timed_out
    }

    /// Fresh answers over gets that ended; 1.0 when none ended.
    pub fn success_rate(&self) -> f64 {
        let ended = self.ended();
        if ended == 0 {
            1.0
        } else {
            self.fresh as f64 / ended as f64
        }
    }

    /// The `q`-quantile (0..=1) of the fresh answers' latency, ms.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<u64> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let i = ((self.latencies_ms.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        self.latencies_ms.get(i).copied()
    }

    pub(crate) fn finish(&mut self) {
        self.latencies_ms.sort_unstable();
    }
}

/// Live honest replicas of each record's newest version at the end of the run.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// Records counted (put successfully at least once).
    pub records: u64,
    /// Records with no live honest replica of their newest version.
    pub lost: u64,
    /// Fewest replicas of one record.
    pub min: u64,
    /// Median.
    pub median: u64,
    /// Mean.
    pub mean: f64,
    /// Most replicas of one record.
    pub max: u64,
}

/// One partition: whether it split the network and how long the network took to heal after it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct PartitionReport {
    /// When it started.
    pub start_ms: u64,
    /// When it healed.
    pub end_ms: u64,
    /// At some sample during the partition the honest active graph was not strongly connected.
    pub split_observed: bool,
    /// From the heal until the honest active graph was strongly connected again with every node
    /// ready (at least FANOUT active peers); `None` if that never happened before the end.
    pub reconnected_after_ms: Option<u64>,
    /// From the heal until every live honest node again had its full complement of active peers
    /// (min(max_peers, n−1), as for full activation): the tables have reconverged.
    pub reconverged_after_ms: Option<u64>,
}

/// Everything a run measured. `Display` prints the `dave sim` summary.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Nodes at the start (edges and adversaries included).
    pub nodes: usize,
    /// Edges.
    pub edges: usize,
    /// Adversaries.
    pub adversaries: usize,
    /// Peer-table size.
    pub max_peers: usize,
    /// Trust steered target choice.
    pub trust: bool,
    /// Virtual time simulated, the final check included.
    pub virtual_ms: u64,
    /// Sum over nodes of the virtual seconds each was up.
    pub node_seconds: f64,
    /// First sample (once every initial node has started: after the join window) at which every
    /// live honest node had at least min(FANOUT, n−1) active peers. Measured from time 0.
    pub time_to_ready_ms: Option<u64>,
    /// First sample at which every live honest node had min(max_peers, n−1) active peers (a full
    /// mesh when the tables are large enough): full activation.
    pub time_to_full_activation_ms: Option<u64>,
    /// Active peers of the live honest nodes at the end: fewest.
    pub active_peers_min: usize,
    /// Active peers at the end: mean.
    pub active_peers_mean: f64,
    /// Record versions put (updates included).
    pub puts: u64,
    /// Of those, accepted by the putting node's store.
    pub puts_stored: u64,
    /// Distinct records stored at least once.
    pub records_stored: u64,
    /// Records found (newest version) by the final check; `None` without a final check.
    pub records_retrievable: Option<u64>,
    /// The gets during the run.
    pub gets: GetStats,
    /// The final check (one get per record).
    pub final_gets: GetStats,
    /// Gets (during the run and final) of the Sybil victim's records (owner 0).
    pub victim_gets: GetStats,
    /// Nodes that speak v1 only (`SimOptions::v1_share`), joiners included.
    pub v1_nodes: usize,
    /// The gets (during the run and the final check) that v1-only nodes asked.
    pub v1_gets: GetStats,
    /// With v1-only nodes in the run, the gets (during the run and the final check) that the
    /// other nodes asked (they speak the extensions and look records up); empty otherwise.
    pub dave_gets: GetStats,
    /// Replicas per record at the end.
    pub replicas: ReplicaStats,
    /// Datagrams sent per node per second.
    pub packets_per_node_s: f64,
    /// Bytes sent per node per second.
    pub bytes_per_node_s: f64,
    /// Of those, FIND_NODE / NODES (the routing extension).
    pub route_bytes_per_node_s: f64,
    /// Of those, PING / PONG / GETMYADDRPORT(_ACK) (the v1 liveness schedule and address proofs).
    pub ping_bytes_per_node_s: f64,
    /// Local puts and gets find their targets by lookup (`Config::route_lookups`).
    pub route_lookups: bool,
    /// Their lookups, summed over every node (hops sorted).
    pub lookups: LookupStats,
    /// The routers' counters, summed over the live honest nodes.
    pub router: crate::route::RouterStats,
    /// Address proofs the routers asked for (`PeerTable::prove`), summed over the live honest
    /// nodes: (PINGs sent, answered, expired unanswered, refused by the rate limit).
    pub proofs: (u64, u64, u64, u64),
    /// Of the proof PINGs sent, those to strangers (addresses that pinged a node whose table had
    /// no room for them, `peer::prover`), summed over the live honest nodes.
    pub stranger_proofs: u64,
    /// The network's counters.
    pub net: NetStats,
    /// The partitions.
    pub partitions: Vec<PartitionReport>,
    /// Nodes that left (churn).
    pub departures: u64,
    /// Nodes that joined (churn replacements).
    pub joins: u64,
    /// Edge restarts.
    pub edge_restarts: u64,
    /// Records with too little or false work the low-work adversaries sent.
    pub low_work_sent: u64,
    /// (low-work record, live honest node) pairs where the node holds it: must be 0.
    pub low_work_stored_by_honest: u64,
    /// Authenticated peers of live honest nodes at addresses where no node lives: must be 0.
    pub poisoned_peers: u64,
    /// Mean reliability live honest nodes give their honest peers (scored or not).
    pub trust_in_honest: Option<f64>,
    /// Mean reliability live honest nodes give adversaries.
    pub trust_in_adversaries: Option<f64>,
    /// Counters summed over the live honest nodes.
    pub honest_counters: Stats,
    /// Their v2 cores' counters, summed (all zero unless the records are v2).
    pub honest_counters2: crate::shard::core2::Stats2,
    /// v2 compare-and-swap: record versions (record, seq) that more than one racing writer was
    /// told it won. The protocol promises 0 while writers agree on the replica set.
    pub v2_double_wins: u64,
    /// v2 records whose live honest holders hold different contents at the newest seq held:
    /// replicas that did not converge on one winner.
    pub v2_split_records: u64,
    /// Strict gets that returned a race's loser: a record at a seq some writer won, with other
    /// content than the winner's (what a reader sees of a split).
    pub v2_loser_reads: u64,
    /// Datagrams live honest nodes' amplification limits withheld, by op (PING, PONG, PUT, GET,
    /// GET_ACK, GETMYADDRPORT, GETMYADDRPORT_ACK).
    pub withheld_by_op: [u64; 7],
    /// Events processed.
    pub events: u64,
    /// xxh64 over every delivered datagram's (time, from, to, bytes): equal seeds, equal hashes.
    pub trace_hash: u64,
    /// Wall-clock time the run took (outside the simulation; not part of the trace).
    pub wall_ms: Option<u64>,
}

impl Report {
    /// Simulated node-seconds per wall-clock second (the benchmark figure).
    pub fn node_seconds_per_wall_s(&self) -> Option<f64> {
        self.wall_ms
            .filter(|&ms| ms > 0)
            .map(|ms| self.node_seconds / (ms as f64 / 1000.0))
    }
}

fn secs(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
        None => "not reached".to_string(),
    }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

fn write_gets(f: &mut fmt::Formatter<'_>, name: &str, g: &GetStats) -> fmt::Result {
    if g.started == 0 {
        return Ok(());
    }
    let q = |x| {
        g.latency_quantile_ms(x)
            .map_or("-".to_string(), |v| format!("{v}"))
    };
    writeln!(
        f,
        "{name:<22}{} of {} fresh ({}); stale {}, not found {}, timed out {}, aborted {}, local {}",
        g.fresh,
        g.ended(),
        pct(g.success_rate()),
        g.stale,
        g.not_found,
        g.timed_out,
        g.aborted,
        g.local
    )?;
    writeln!(
        f,
        "{:<22}latency p50 {} ms, p90 {} ms, p99 {} ms, max {} ms (virtual)",
        "",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "dave sim: seed {}, {} nodes ({} edges, {} adversaries), max_peers {}, trust {}",
            self.seed,
            self.nodes,
            self.edges,
            self.adversaries,
            self.max_peers,
            if self.trust { "on" } else { "off" }
        )?;
        writeln!(
            f,
            "{:<22}{:.1} s virtual, {:.0} node-seconds, {} events",
            "simulated",
            self.virtual_ms as f64 / 1000.0,
            self.node_seconds,
            self.events
        )?;
        if let Some(wall) = self.wall_ms {
            writeln!(
                f,
                "{:<22}{:.2} s wall, {:.0} node-seconds per wall second",
                "",
                wall as f64 / 1000.0,
                self.node_seconds_per_wall_s().unwrap_or(0.0)
            )?;
        }
        writeln!(
            f,
            "{:<22}ready (≥ FANOUT active peers) {}, full activation {}",
            "activation",
            secs(self.time_to_ready_ms),
            secs(self.time_to_full_activation_ms)
        )?;
        writeln!(
            f,
            "{:<22}min {}, mean {:.1} at the end",
            "active peers", self.active_peers_min, self.active_peers_mean
        )?;
        let retrievable = match self.records_retrievable {
            Some(n) => format!("{n}"),
            None => "-".to_string(),
        };
        writeln!(
            f,
            "{:<22}{} stored ({} of {} versions accepted), {} retrievable",
            "records", self.records_stored, self.puts_stored, self.puts, retrievable
        )?;
        write_gets(f, "gets", &self.gets)?;
        write_gets(f, "final check", &self.final_gets)?;
        write_gets(f, "victim's records", &self.victim_gets)?;
        if self.v1_nodes > 0 {
            writeln!(
                f,
                "{:<22}{} nodes speak v1 only (no extension; one-hop puts and gets)",
                "v1 nodes", self.v1_nodes
            )?;
            write_gets(f, "gets by v1 nodes", &self.v1_gets)?;
            write_gets(f, "gets by dave nodes", &self.dave_gets)?;
        }
        let r = &self.replicas;
        writeln!(
            f,
            "{:<22}min {}, median {}, mean {:.1}, max {}; lost {}",
            "replicas per record", r.min, r.median, r.mean, r.max, r.lost
        )?;
        writeln!(
            f,
            "{:<22}{:.1} packets/s, {:.0} bytes/s per node; routing {:.0} B/s, ping {:.0} B/s",
            "traffic",
            self.packets_per_node_s,
            self.bytes_per_node_s,
            self.route_bytes_per_node_s,
            self.ping_bytes_per_node_s
        )?;
        if self.route_lookups {
            let l = &self.lookups;
            let q = |x: f64| {
                if l.hops.is_empty() {
                    return "-".to_string();
                }
                let i = ((l.hops.len() - 1) as f64 * x).round() as usize;
                l.hops.get(i).map_or("-".to_string(), |h| format!("{h}"))
            };
            writeln!(
                f,
                "{:<22}{} started, {} done, {} found nobody, {} refused; hops p50 {}, p99 {}, \
                 max {}",
                "lookups",
                l.started,
                l.done,
                l.empty,
                l.refused,
                q(0.5),
                q(0.99),
                q(1.0)
            )?;
        } else {
            writeln!(f, "{:<22}off (peer snapshot)", "lookups")?;
        }
        let (r, p) = (&self.router, &self.proofs);
        if r.requests_sent > 0 {
            writeln!(
                f,
                "{:<22}requests {}, timed out {}; proofs asked {}: sent {} (+ {} to strangers), \
                 answered {}, expired {}, rate-limited {}",
                "router",
                r.requests_sent,
                r.requests_timed_out,
                r.proofs_asked,
                p.0.saturating_sub(self.stranger_proofs),
                self.stranger_proofs,
                p.1,
                p.2,
                p.3
            )?;
        }
        let n = &self.net;
        writeln!(
            f,
            "{:<22}sent {}, delivered {}, lost {} + {} (partition), duplicated {}, reordered {}, \
             to nowhere {}",
            "network",
            n.sent,
            n.delivered,
            n.lost,
            n.lost_partition,
            n.duplicated,
            n.reordered,
            n.to_nowhere
        )?;
        for p in &self.partitions {
            let after = |t: Option<u64>| match t {
                Some(ms) => format!("{:.1} s after healing", ms as f64 / 1000.0),
                None => "never".to_string(),
            };
            writeln!(
                f,
                "{:<22}{:.0}–{:.0} s: split {}, reconnected {}, reconverged {}",
                "partition",
                p.start_ms as f64 / 1000.0,
                p.end_ms as f64 / 1000.0,
                if p.split_observed { "yes" } else { "no" },
                after(p.reconnected_after_ms),
                after(p.reconverged_after_ms)
            )?;
        }
        if self.departures + self.joins + self.edge_restarts > 0 {
            writeln!(
                f,
                "{:<22}{} left, {} joined, {} edge restarts",
                "churn", self.departures, self.joins, self.edge_restarts
            )?;
        }
        let c = &self.honest_counters;
        writeln!(
            f,
            "{:<22}sent {}, passed {}, failed {}; repair datagrams {}",
            "challenges",
            c.challenges_sent,
            c.challenges_succeeded,
            c.challenges_failed_not_found
                + c.challenges_failed_invalid
                + c.challenges_failed_stale
                + c.challenges_failed_timeout,
            c.repair_datagrams_sent
        )?;
        writeln!(
            f,
            "{:<22}by lookup: {} lookups, {} answers reused, {} paced, {} copies aged out",
            "maintenance",
            c.maintain_lookups_started,
            c.maintain_cache_hits,
            c.maintain_paced,
            c.copies_aged_out
        )?;
        let c2 = &self.honest_counters2;
        if c2.local_puts + c2.puts_received > 0 {
            writeln!(
                f,
                "{:<22}PUT2s received {}, stored {}, refused {}, invalid {}; CAS won {}, lost {}, \
                 commits {}",
                "v2 records",
                c2.puts_received,
                c2.puts_stored,
                c2.puts_refused,
                c2.puts_invalid,
                c2.cas_won,
                c2.cas_lost,
                c2.commits_sent
            )?;
            writeln!(
                f,
                "{:<22}by lookup: {} lookups, {} answers reused, {} paced, {} copies aged out; \
                 repair datagrams {}",
                "v2 maintenance",
                c2.maintain_lookups_started,
                c2.maintain_cache_hits,
                c2.maintain_paced,
                c2.copies_aged_out,
                c2.repair_datagrams_sent
            )?;
            writeln!(
                f,
                "{:<22}versions won by two racing writers {}, records split between replicas {}, \
                 gets that read a loser {}",
                "v2 races", self.v2_double_wins, self.v2_split_records, self.v2_loser_reads
            )?;
        }
        let trust = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{t:.2}"));
        if self.adversaries > 0 {
            writeln!(
                f,
                "{:<22}honest peers {}, adversaries {} (mean reliability)",
                "trust",
                trust(self.trust_in_honest),
                trust(self.trust_in_adversaries)
            )?;
            writeln!(
                f,
                "{:<22}low-work records sent {}, kept by honest nodes {}; poisoned peers {}",
                "attacks", self.low_work_sent, self.low_work_stored_by_honest, self.poisoned_peers
            )?;
        }
        let w = &self.withheld_by_op;
        writeln!(
            f,
            "{:<22}{} datagrams to unproven addresses withheld ({} bytes): PING {}, PONG {}, \
             GET_ACK {}, GETMYADDRPORT(_ACK) {}",
            "amplification limit",
            c.amplification_withheld,
            c.amplification_withheld_bytes,
            w[0],
            w[1],
            w[4],
            w[5] + w[6]
        )?;
        writeln!(
            f,
            "{:<22}PUT not enough work {}, from the future {}, work mismatch {}, bad signature {}",
            "refused", c.put_invalid[0], c.put_invalid[1], c.put_invalid[2], c.put_invalid[3]
        )?;
        write!(f, "{:<22}{:016x}", "trace hash", self.trace_hash)
    }
}
