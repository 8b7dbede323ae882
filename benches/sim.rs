//! Simulator throughput: simulated node-seconds per wall-clock second on one core, at 1000 nodes.
//!
//! ```text
//! cargo bench --bench sim                                   # 1 virtual minute, 8/16/32 peers
//! SIM_BENCH_MINUTES=10 SIM_BENCH_PEERS=8 cargo bench --bench sim   # the issue's target run
//! ```
//!
//! Not criterion: one run of a whole network is the measurement (seconds long, deterministic),
//! and the figure of merit is node-seconds per wall second, which criterion cannot report. Each
//! line also projects the wall time of 1000 nodes × 10 virtual minutes at the measured rate.
//! Results and the machine they came from are in `perf/README.md` ("Simulator (issue 8)").

use dave::sim::{SimOptions, run_timed};

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => default.to_vec(),
    }
}

fn main() {
    let nodes = env_list("SIM_BENCH_NODES", &[1000])[0];
    let minutes: f64 = std::env::var("SIM_BENCH_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let peers = env_list("SIM_BENCH_PEERS", &[8, 16, 32]);
    println!(
        "{:>6} {:>6} {:>9} {:>8} {:>12} {:>11} {:>10} {:>13} {:>10}",
        "nodes",
        "peers",
        "virtual_s",
        "wall_s",
        "node_s",
        "node_s/s",
        "events/s",
        "10min_wall_s",
        "get_ok"
    );
    for max_peers in peers {
        let duration_ms = (minutes * 60_000.0) as u64;
        let mut o = SimOptions {
            seed: 1,
            nodes,
            edges: 3,
            max_peers,
            duration_ms,
            join_window_ms: 10_000,
            ..SimOptions::default()
        };
        let w = &mut o.workload;
        w.records = 1_000;
        w.owners = 1_000;
        w.put_start_ms = 20_000.min(duration_ms / 3);
        w.put_end_ms = (duration_ms / 2).max(w.put_start_ms);
        w.gets = 1_000;
        w.get_start_ms = w.put_start_ms + w.get_min_age_ms;
        w.final_check = false;
        let report = match run_timed(&o) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sim bench: {e}");
                std::process::exit(2);
            }
        };
        let wall_s = report.wall_ms.unwrap_or(1) as f64 / 1000.0;
        let rate = report.node_seconds / wall_s;
        println!(
            "{:>6} {:>6} {:>9.0} {:>8.1} {:>12.0} {:>11.0} {:>10.0} {:>13.0} {:>9.2}%",
            nodes,
            max_peers,
            report.virtual_ms as f64 / 1000.0,
            wall_s,
            report.node_seconds,
            rate,
            report.events as f64 / wall_s,
            nodes as f64 * 600.0 / rate,
            report.gets.success_rate() * 100.0
        );
    }
}
