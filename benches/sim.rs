//! Simulator throughput: simulated node-seconds per wall-clock second on one core, at 1000 nodes.
//!
//! ```text
//! cargo bench --bench sim                                   # 1 virtual minute, 8/16/32 peers
//! SIM_BENCH_MINUTES=10 SIM_BENCH_PEERS=8 cargo bench --bench sim   # the issue's target run
//! SIM_BENCH_TIMER_SCALE=10 cargo bench --bench sim          # peer timers ×10 (a ping per 10 s)
//! SIM_BENCH_FAST_CRYPTO=1 cargo bench --bench sim           # PONGs MACed instead of signed
//! ```
//!
//! `SIM_BENCH_NODES` changes the node count (default 1000); `SIM_BENCH_TIMER_SCALE` applies
//! `SimOptions::scale_peer_timers` (default 1: the protocol's real ping rate);
//! `SIM_BENCH_FAST_CRYPTO=1` sets `SimOptions::fast_pong_auth` (default 0: Ed25519 PONGs).
//!
//! Not criterion: one run of a whole network is the measurement (seconds long, deterministic),
//! and the figure of merit is node-seconds per second, which criterion cannot report. Each line
//! gives the rate per wall second and per CPU second of the simulating thread (the two differ on
//! a shared machine), and projects the CPU time of 1000 nodes × 10 virtual minutes.
//! Results and the machine they came from are in `perf/README.md` ("Simulator (issue 8)").

use dave::sim::{SimOptions, run_timed};

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (Linux; ns). The machine may be
/// shared, so rates are given per wall second and per CPU second.
fn thread_cpu_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => default.to_vec(),
    }
}

fn main() {
    let nodes = env_list("SIM_BENCH_NODES", &[1000])
        .first()
        .copied()
        .unwrap_or(1000);
    let minutes: f64 = std::env::var("SIM_BENCH_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let peers = env_list("SIM_BENCH_PEERS", &[8, 16, 32]);
    let timer_scale = env_list("SIM_BENCH_TIMER_SCALE", &[1])
        .first()
        .copied()
        .unwrap_or(1)
        .max(1) as u64;
    if timer_scale > 1 {
        println!("peer timers ×{timer_scale} (ping period {timer_scale} s)");
    }
    let fast_pong_auth = std::env::var("SIM_BENCH_FAST_CRYPTO").is_ok_and(|v| v.trim() == "1");
    if fast_pong_auth {
        println!("PONGs: simulated MAC (fast_pong_auth); record signatures Ed25519");
    }
    println!(
        "{:>6} {:>6} {:>9} {:>8} {:>8} {:>12} {:>11} {:>11} {:>10} {:>12} {:>9}",
        "nodes",
        "peers",
        "virtual_s",
        "wall_s",
        "cpu_s",
        "node_s",
        "node_s/wall",
        "node_s/cpu",
        "events/s",
        "10min_cpu_s",
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
            fast_pong_auth,
            ..SimOptions::default()
        };
        o.scale_peer_timers(timer_scale);
        let w = &mut o.workload;
        w.records = 1_000;
        w.owners = 1_000;
        // After activation (the join window plus the activation delay and a few pings).
        w.put_start_ms = (20_000 * timer_scale).min(duration_ms / 3);
        w.put_end_ms = (duration_ms / 2).max(w.put_start_ms);
        w.gets = 1_000;
        w.get_start_ms = w.put_start_ms + w.get_min_age_ms;
        w.final_check = false;
        let cpu_before = thread_cpu_s();
        let report = match run_timed(&o) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sim bench: {e}");
                std::process::exit(2);
            }
        };
        let wall_s = report.wall_ms.unwrap_or(1) as f64 / 1000.0;
        let cpu_s = match (cpu_before, thread_cpu_s()) {
            (Some(a), Some(b)) => b - a,
            _ => wall_s,
        };
        let per_cpu = report.node_seconds / cpu_s;
        println!(
            "{:>6} {:>6} {:>9.0} {:>8.1} {:>8.1} {:>12.0} {:>11.0} {:>11.0} {:>10.0} {:>12.0} {:>8.2}%",
            nodes,
            max_peers,
            report.virtual_ms as f64 / 1000.0,
            wall_s,
            cpu_s,
            report.node_seconds,
            report.node_seconds / wall_s,
            per_cpu,
            report.events as f64 / cpu_s,
            nodes as f64 * 600.0 / per_cpu,
            report.gets.success_rate() * 100.0
        );
    }
}
