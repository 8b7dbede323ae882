//! The simulator's fast PONG authentication (`SimOptions::fast_pong_auth`, `dave sim
//! --fast-crypto`): PONGs carry a keyed BLAKE3 MAC instead of an Ed25519 signature. Runs stay
//! replayable by seed, and the stand-in changes no decision: every PONG that one mode accepts the
//! other accepts too, so a run makes the same events, losses and GET outcomes in both modes; only
//! the signature bytes (and so the trace hash) differ.

use std::time::Instant;

use dave::sim::{self, Report, SimOptions};

fn run(name: &str, options: &SimOptions) -> Report {
    let started = Instant::now();
    let report = sim::run(options).expect("valid options");
    eprintln!(
        "--- {name}: {:.1} s wall\n{report}\n",
        started.elapsed().as_secs_f64()
    );
    report
}

/// Loss, duplication, reordering, churn, an edge restart, a dropper and a poisoner (whose
/// unsolicited PONGs carry random signature bytes), with puts, updates and gets.
fn options(seed: u64, fast: bool) -> SimOptions {
    let mut o = SimOptions {
        seed,
        nodes: 16,
        edges: 2,
        duration_ms: 30_000,
        fast_pong_auth: fast,
        ..SimOptions::default()
    };
    o.network.loss = 0.01;
    o.network.duplicate = 0.01;
    o.network.reorder = 0.05;
    o.adversaries.droppers = 1;
    o.adversaries.poisoners = 1;
    o.churn.per_hour = 20.0;
    o.churn.start_ms = 15_000;
    o.churn.edge_restart_every_ms = 10_000;
    o.churn.edge_down_ms = 5_000;
    o.workload.records = 40;
    o.workload.put_start_ms = 8_000;
    o.workload.put_end_ms = 20_000;
    o.workload.gets = 40;
    o.workload.get_start_ms = 12_000;
    o.workload.update_fraction = 0.3;
    o.workload.final_check_window_ms = 2_000;
    o
}

#[test]
fn fast_pong_auth_replays_by_seed_and_decides_as_ed25519_does() {
    let a = run("fast, seed 7", &options(7, true));
    let b = run("fast, seed 7 again", &options(7, true));
    let c = run("fast, seed 8", &options(8, true));
    assert_eq!(a.trace_hash, b.trace_hash, "same seed, same trace");
    assert_eq!(a.events, b.events);
    assert_eq!(a.net, b.net);
    assert_eq!(a.gets, b.gets);
    assert_eq!(a.final_gets, b.final_gets);
    assert_eq!(a.honest_counters, b.honest_counters);
    assert_ne!(a.trace_hash, c.trace_hash, "another seed, another trace");
    assert!(a.net.lost > 0 && a.net.duplicated > 0 && a.net.reordered > 0);
    assert!(a.departures > 0 && a.edge_restarts > 0);
    assert!(a.net.delivered > 10_000);
    assert!(a.time_to_ready_ms.is_some());

    // The same seed with Ed25519 PONGs: other bytes on the wire, the same run.
    let ed = run("Ed25519, seed 7", &options(7, false));
    assert_ne!(a.trace_hash, ed.trace_hash, "the PONG signatures differ");
    assert_eq!(a.events, ed.events);
    assert_eq!(a.net, ed.net);
    assert_eq!(a.gets, ed.gets);
    assert_eq!(a.final_gets, ed.final_gets);
    assert_eq!(a.honest_counters, ed.honest_counters);
    assert_eq!(a.time_to_full_activation_ms, ed.time_to_full_activation_ms);
}
