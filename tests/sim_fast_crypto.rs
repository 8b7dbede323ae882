//! The simulator's fast PONG authentication (`SimOptions::fast_pong_auth`, `dave sim
//! --fast-crypto`): PONGs carry a keyed BLAKE3 MAC instead of an Ed25519 signature. Runs stay
//! replayable by seed, and the stand-in changes no decision: every PONG that one mode accepts the
//! other accepts too, so a run makes the same events, losses and GET outcomes in both modes; only
//! the signature bytes (and so the trace hash) differ.

mod sim_support;

use dave::sim::SimOptions;
use sim_support::run;

/// The replay scenario of `sim_network.rs` (whose poisoner's unsolicited PONGs carry random
/// signature bytes), with PONGs authenticated by MAC or by Ed25519.
fn options(seed: u64, fast: bool) -> SimOptions {
    SimOptions {
        fast_pong_auth: fast,
        ..sim_support::replay_options(seed)
    }
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
    assert!(a.net.delivered > 5_000);
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
