//! `dave sim` flags: a clap `Args` struct the binary can embed as its `sim` subcommand, turned
//! into [`SimOptions`] here (STYLE habit 9: parsing is a separate layer over plain options).
//!
//! ```text
//! dave sim --nodes 200 --seed 7 --minutes 10 --churn 20 --loss 2 \
//!          --adversaries drop=10%,forge=10%,poison=2,lowwork=1,sybil=8
//! dave sim --nodes 50 --minutes 360 --churn 20 --peer-timer-scale 60   # six virtual hours
//! dave sim --nodes 1000 --max-peers 8 --minutes 10 --fast-crypto       # PONGs MACed, not signed
//! dave sim --routing --nodes 10000 --minutes 10 --churn 120 --loss 1     # lookups (route::world)
//! dave sim --nodes 50 --minutes 5 --churn 20 --v2 --cas --race           # v2 records, CAS races
//! ```

use std::time::Instant;

use clap::Parser;

use crate::sim::options::{MAX_SIM_SPAN_MS, PartitionOptions, SimOptions, SybilBehaviour};
use crate::sim::report::Report;

/// Simulate a whole dave network on one thread, deterministically from a seed.
#[derive(Debug, Clone, Parser)]
#[command(name = "dave sim", allow_negative_numbers = true)]
pub struct SimArgs {
    /// Nodes, edges and adversaries included.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Seed of every random choice: the same seed gives the same run and trace hash.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Virtual minutes to simulate (before the final retrievability check).
    #[arg(long, default_value_t = 2.0)]
    pub minutes: f64,
    /// Share of the non-edge honest nodes that leave (and are replaced) per virtual hour, in
    /// percent.
    #[arg(long, value_name = "PCT_PER_HOUR", default_value_t = 0.0)]
    pub churn: f64,
    /// Datagram loss on every link, in percent.
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    pub loss: f64,
    /// Misbehaving nodes: comma-separated KIND=N or KIND=P% with KIND one of drop, forge, stale,
    /// poison, lowwork, sybil, sybil-forge (e.g. `drop=10%,sybil=8`).
    #[arg(long, value_name = "SPEC")]
    pub adversaries: Option<String>,
    /// Edges (bootstrap nodes every node is configured with).
    #[arg(long, default_value_t = 3)]
    pub edges: usize,
    /// Peer-table size of every node. The node's default is 1000 (a full mesh up to 1000
    /// nodes), but every peer costs a signature and a verification per second, so the simulator
    /// defaults to 32; with --no-lookups GET is one hop, so smaller tables find fewer records.
    #[arg(long, default_value_t = 32)]
    pub max_peers: usize,
    /// Records to put (spread over the first half of the run).
    #[arg(long, default_value_t = 500)]
    pub records: usize,
    /// Gets of random records during the run (plus one final get per record).
    #[arg(long, default_value_t = 500)]
    pub gets: usize,
    /// Turn trust (storage-challenge scores steering target choice) off: the reference's plain
    /// XOR order.
    #[arg(long)]
    pub no_trust: bool,
    /// A network split `START_S:END_S:LOSS_PCT` (half the nodes on each side), e.g. `60:180:100`.
    #[arg(long, value_name = "START_S:END_S:LOSS_PCT")]
    pub partition: Option<String>,
    /// Largest clock skew of a node, in ms (each node draws from ±this).
    #[arg(long, default_value_t = 50)]
    pub skew_ms: u64,
    /// Multiply the peer table's liveness timers (ping period, deactivation, drop, activation
    /// delay) and the shard tick by N. Every PING costs a signature and a verification, so this
    /// divides a run's cost by about N; nodes then notice departed peers N times later, while
    /// PUT, GET, challenges and repair keep their real speed. For runs over virtual hours.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub peer_timer_scale: u64,
    /// Sign PONGs with a keyed BLAKE3 MAC instead of Ed25519 (simulation only; a node can still
    /// answer only for its own key). Makes large runs several times cheaper; record signatures
    /// stay Ed25519.
    #[arg(long)]
    pub fast_crypto: bool,
    /// Local puts and gets use the peer snapshot (the v1 one-hop path) instead of a lookup over
    /// the routing extension (the node's default, `Config::route_lookups`).
    #[arg(long)]
    pub no_lookups: bool,
    /// Replica maintenance by lookup (republish to the closest found, age-out elsewhere), as the
    /// node does with lookups on. The default; the flag is kept so older command lines run.
    #[arg(long)]
    pub maintain: bool,
    /// The v1 repair (re-send to the FANOUT closest of the peer snapshot when it changes, and
    /// republish every interval) instead of maintenance by lookup (also implied by
    /// --no-lookups).
    #[arg(long, conflicts_with = "maintain")]
    pub v1_repair: bool,
    /// Share of the non-edge honest nodes, in percent, that speak v1 only, as a Go reference
    /// node does on the wire: no extension (no routing, no v2 records), puts and gets one hop
    /// through the peer snapshot, the v1 repair. The report adds the gets those nodes asked.
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    pub v1_nodes: f64,
    /// Records are v2 (RECORD_V2): puts write v2 records and every get is strict (v2 only),
    /// through the nodes' v2 cores (`shard::core2`). Adversaries model v1 only.
    #[arg(long)]
    pub v2: bool,
    /// With --v2: every put is a compare-and-swap expecting the newest seq the run saw stored.
    #[arg(long, requires = "v2")]
    pub cas: bool,
    /// With --cas: every put comes from two nodes at once, racing at the same seq (at most one
    /// may win; the report counts double wins and records whose replicas disagree).
    #[arg(long, requires = "cas")]
    pub race: bool,
    /// Run the routing-level model instead (`dave::route::world`): every node a real routing
    /// core (k-buckets, iterative lookups, FIND_NODE / NODES through the real codec), records
    /// stored on and read from the closest nodes a lookup finds; signatures, proof of work and
    /// the shard stores are not modelled. Prints lookup hops, replicas per record and routing
    /// traffic per node. Takes --nodes, --seed, --minutes, --churn, --loss, --records, --gets
    /// and --adversaries with drop, forge, stale (misbehaving record holders) and sybil (IDs
    /// ground next to record targets, forging honest IDs in their answers).
    #[arg(long)]
    pub routing: bool,
    /// With --routing: the k-bucket size k (nodes a lookup must hear from).
    #[arg(long, default_value_t = 8)]
    pub bucket_size: usize,
    /// With --routing: nodes a record is stored on (and a get asks).
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// With --routing: disjoint lookup paths (S/Kademlia).
    #[arg(long, default_value_t = 1)]
    pub paths: usize,
}

impl SimArgs {
    /// The options these flags describe.
    pub fn options(&self) -> Result<SimOptions, String> {
        let max_minutes = (MAX_SIM_SPAN_MS / 60_000) as f64;
        if !(self.minutes > 0.0 && self.minutes <= max_minutes) {
            return Err(format!(
                "--minutes must be a positive number of at most {max_minutes} (365 days)"
            ));
        }
        let pct = |name: &str, v: f64| {
            if (0.0..=100.0).contains(&v) {
                Ok(v / 100.0)
            } else {
                Err(format!("--{name} must be a percentage in 0..=100"))
            }
        };
        let mut o = SimOptions {
            seed: self.seed,
            nodes: self.nodes,
            edges: self.edges,
            duration_ms: (self.minutes * 60_000.0) as u64,
            max_peers: self.max_peers,
            trust: !self.no_trust,
            clock_skew_ms_max: self.skew_ms,
            fast_pong_auth: self.fast_crypto,
            maintain_by_lookup: !self.v1_repair && !self.no_lookups,
            ..SimOptions::default()
        };
        o.scale_peer_timers(self.peer_timer_scale);
        o.node.route_lookups &= !self.no_lookups;
        o.network.loss = pct("loss", self.loss)?;
        o.churn.per_hour = pct("churn", self.churn)?;
        o.v1_share = pct("v1-nodes", self.v1_nodes)?;
        let duration = o.duration_ms;
        let w = &mut o.workload;
        w.records = self.records;
        w.gets = self.gets;
        w.v2_records = self.v2;
        w.v2_cas = self.cas;
        w.v2_racing_writers = self.race;
        w.owners = self.records.clamp(1, 100);
        // Puts once the network has activated (~15 s at the real timers: the join window, the
        // activation delay and a few pings), over the first half of the run; churn after that.
        let activated_ms = 10_000 + 20_000 * self.peer_timer_scale;
        w.put_start_ms = activated_ms.min(duration / 3);
        w.put_end_ms = (duration / 2).max(w.put_start_ms);
        w.get_start_ms = w.put_start_ms + w.get_min_age_ms;
        o.churn.start_ms = (2 * activated_ms).min(duration / 3);
        if let Some(spec) = &self.adversaries {
            parse_adversaries(spec, self.nodes, &mut o)?;
        }
        if let Some(spec) = &self.partition {
            o.partitions.push(parse_partition(spec)?);
        }
        o.validate().map_err(|e| e.0)?;
        Ok(o)
    }
}

impl SimArgs {
    /// The routing-level model's options these flags describe (`--routing`).
    pub fn world_options(&self) -> Result<crate::route::world::WorldOptions, String> {
        let max_minutes = (MAX_SIM_SPAN_MS / 60_000) as f64;
        if !(self.minutes > 0.0 && self.minutes <= max_minutes) {
            return Err(format!(
                "--minutes must be a positive number of at most {max_minutes} (365 days)"
            ));
        }
        if !(0.0..=100.0).contains(&self.churn) || !(0.0..=100.0).contains(&self.loss) {
            return Err("--churn and --loss must be percentages in 0..=100".into());
        }
        let mut o = crate::route::world::WorldOptions {
            nodes: self.nodes,
            seed: self.seed,
            duration_ms: (self.minutes * 60_000.0) as u64,
            replicas: self.replicas,
            loss: self.loss / 100.0,
            // --churn is per virtual hour; the model takes the share replaced over the run.
            churn_fraction: (self.churn / 100.0 * self.minutes / 60.0).min(1.0),
            records: self.records.max(1),
            ..crate::route::world::WorldOptions::default()
        };
        o.router.table.bucket_size = self.bucket_size;
        o.router.lookup.paths = self.paths;
        // The gets spread over the run after the warm-up, as in the full simulator.
        let span_ms = o.duration_ms.saturating_sub(o.warmup_ms).max(1);
        o.get_every_ms = (span_ms / self.gets.max(1) as u64).max(1);
        if let Some(spec) = &self.adversaries {
            let mut full = SimOptions::default();
            parse_adversaries(spec, self.nodes, &mut full)?;
            let a = &full.adversaries;
            if a.poisoners + a.low_work > 0 || a.sybil_behaviour == SybilBehaviour::Forge {
                return Err("--routing models the adversaries drop, forge, stale and sybil".into());
            }
            let share = |n: usize| n as f64 / self.nodes.max(1) as f64;
            o.droppers = share(a.droppers);
            o.forgers = share(a.forgers);
            o.stale = share(a.stale);
            if o.droppers + o.forgers + o.stale > 1.0 {
                return Err("--adversaries: drop, forge and stale exceed the nodes".into());
            }
            o.sybils = a.sybils;
        }
        o.router.table.validate().map_err(|e| e.to_string())?;
        if o.nodes < 3 || o.nodes + o.sybils >= crate::route::world::MAX_WORLD_NODES {
            return Err(format!(
                "--nodes must be in 3..{} with --routing",
                crate::route::world::MAX_WORLD_NODES
            ));
        }
        if o.replicas == 0 {
            return Err("--replicas must be at least 1".into());
        }
        Ok(o)
    }
}

fn parse_adversaries(spec: &str, nodes: usize, o: &mut SimOptions) -> Result<(), String> {
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (kind, count) = item
            .split_once('=')
            .ok_or_else(|| format!("--adversaries: `{item}` is not KIND=N or KIND=P%"))?;
        let count = match count.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p
                    .parse()
                    .ok()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| format!("--adversaries: bad percentage in `{item}`"))?;
                (nodes as f64 * p / 100.0).round() as usize
            }
            None => count
                .parse()
                .map_err(|_| format!("--adversaries: bad count in `{item}`"))?,
        };
        let a = &mut o.adversaries;
        match kind {
            "drop" => a.droppers += count,
            "forge" => a.forgers += count,
            "stale" => a.stale += count,
            "poison" => a.poisoners += count,
            "lowwork" => a.low_work += count,
            "sybil" => a.sybils += count,
            "sybil-forge" => {
                a.sybils += count;
                a.sybil_behaviour = SybilBehaviour::Forge;
            }
            _ => return Err(format!("--adversaries: unknown kind `{kind}`")),
        }
    }
    if o.adversaries.stale > 0 {
        // Stale answers are only visible when records change.
        o.workload.update_fraction = o.workload.update_fraction.max(0.5);
    }
    Ok(())
}

fn parse_partition(spec: &str) -> Result<PartitionOptions, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [start, end, loss] = parts.as_slice() else {
        return Err("--partition must be START_S:END_S:LOSS_PCT".into());
    };
    let num = |s: &str| {
        s.parse::<f64>()
            .map_err(|_| format!("--partition: `{s}` is not a number"))
    };
    Ok(PartitionOptions {
        start_ms: (num(start)? * 1000.0) as u64,
        end_ms: (num(end)? * 1000.0) as u64,
        fraction_b: 0.5,
        loss: num(loss)? / 100.0,
    })
}

/// Parses `dave sim` flags (`args` without the program name and subcommand), runs the
/// simulation and returns its report (`Display` prints the summary). Errors are messages for
/// the user (bad flags, inconsistent options); `--help` comes back as an error holding the help
/// text.
pub fn run_cli<I, S>(args: I) -> Result<Report, String>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let args = SimArgs::try_parse_from(
        std::iter::once(std::ffi::OsString::from("dave sim"))
            .chain(args.into_iter().map(Into::into)),
    )
    .map_err(|e| e.to_string())?;
    run_timed(&args.options()?)
}

/// Runs `options` and records the wall-clock time in the report (measured outside the
/// simulation: it never influences the run).
pub fn run_timed(options: &SimOptions) -> Result<Report, String> {
    run_timed_observed(options, &mut |_, _| {})
}

/// [`run_timed`] with a progress observer (see [`crate::sim::run_observed`]).
pub fn run_timed_observed(
    options: &SimOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, String> {
    let started = Instant::now();
    let mut report = crate::sim::run_observed(options, progress).map_err(|e| e.to_string())?;
    report.wall_ms = Some(started.elapsed().as_millis() as u64);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_options() {
        let args = SimArgs::try_parse_from([
            "dave sim",
            "--nodes",
            "100",
            "--minutes",
            "3",
            "--churn",
            "20",
            "--loss",
            "2",
            "--adversaries",
            "drop=10%,sybil-forge=4,stale=1",
            "--partition",
            "60:120:100",
        ])
        .unwrap();
        let o = args.options().unwrap();
        assert_eq!(o.duration_ms, 180_000);
        assert!((o.churn.per_hour - 0.2).abs() < 1e-9);
        assert!((o.network.loss - 0.02).abs() < 1e-9);
        assert_eq!(o.adversaries.droppers, 10);
        assert_eq!(o.adversaries.sybils, 4);
        assert_eq!(o.adversaries.sybil_behaviour, SybilBehaviour::Forge);
        assert_eq!(o.workload.update_fraction, 0.5);
        assert_eq!(o.partitions[0].end_ms, 120_000);
        assert_eq!(o.workload.put_start_ms, 30_000);
        assert_eq!(o.churn.start_ms, 60_000);
        assert_eq!(o.node.ping_period_ms, 1_000);
        assert!(!o.fast_pong_auth);
        let fast = SimArgs::try_parse_from(["dave sim", "--fast-crypto"]).unwrap();
        assert!(fast.options().unwrap().fast_pong_auth);
        let scaled =
            SimArgs::try_parse_from(["dave sim", "--minutes", "60", "--peer-timer-scale", "10"])
                .unwrap()
                .options()
                .unwrap();
        assert_eq!(scaled.node.ping_period_ms, 10_000);
        assert_eq!(scaled.node.activation_delay_ms, 50_000);
        assert_eq!(scaled.workload.put_start_ms, 210_000);
        assert!(run_cli(["--adversaries", "nonsense=1"]).is_err());
        let routing = SimArgs::try_parse_from([
            "dave sim",
            "--routing",
            "--nodes",
            "1000",
            "--minutes",
            "30",
            "--churn",
            "20",
            "--loss",
            "1",
            "--adversaries",
            "sybil=40",
        ])
        .unwrap()
        .world_options()
        .unwrap();
        assert_eq!(routing.nodes, 1000);
        assert!((routing.churn_fraction - 0.1).abs() < 1e-9);
        assert!((routing.loss - 0.01).abs() < 1e-9);
        assert_eq!(routing.sybils, 40);
        let misbehaving = SimArgs::try_parse_from([
            "dave sim",
            "--routing",
            "--nodes",
            "1000",
            "--adversaries",
            "drop=10%,forge=100",
        ])
        .unwrap()
        .world_options()
        .unwrap();
        assert!((misbehaving.droppers - 0.1).abs() < 1e-9);
        assert!((misbehaving.forgers - 0.1).abs() < 1e-9);
        assert!(
            SimArgs::try_parse_from(["dave sim", "--routing", "--adversaries", "poison=1"])
                .unwrap()
                .world_options()
                .is_err()
        );
        assert!(run_cli(["--loss", "200"]).is_err());
    }
}
