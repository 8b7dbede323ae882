//! The full-node simulator with the routing extension (issue 12): every simulated node drives a
//! real `Router` beside its peer table, and with `Config::route_lookups` (the node's default) its
//! local puts and gets look up the record owner's ID first and go to the closest nodes found.
//! Here no table holds the network (8-peer tables and k = 4 buckets among 80 nodes), so records
//! are found through lookups, and the run replays by seed.

mod sim_support;

use dave::sim::SimOptions;
use sim_support::run;

/// 80 nodes with 8-peer tables and k = 4, PONGs MACed (`fast_pong_auth`) to keep CI quick.
fn options(seed: u64) -> SimOptions {
    let mut o = SimOptions {
        seed,
        nodes: 80,
        edges: 3,
        max_peers: 8,
        join_window_ms: 5_000,
        duration_ms: 40_000,
        fast_pong_auth: true,
        ..SimOptions::default()
    };
    o.node.route_bucket_size = 4;
    let w = &mut o.workload;
    w.records = 200;
    w.owners = 100;
    w.put_start_ms = 15_000;
    w.put_end_ms = 25_000;
    w.gets = 200;
    w.get_start_ms = 17_000;
    w.final_check_window_ms = 5_000;
    o
}

#[test]
fn with_tables_smaller_than_the_network_gets_find_their_records_through_lookups() {
    let o = options(12);
    assert!(o.node.route_lookups, "lookups are the node's default");
    assert!(o.max_peers < o.nodes);
    let r = run("80 nodes, 8-peer tables, k = 4, lookups", &o);
    assert!(r.route_lookups);
    assert_eq!(r.records_stored, 200);
    // Every put and get looked up its owner (one lookup each, none refused) and every lookup
    // found someone, through more than the contacts it started with for some. The other
    // lookups are replica maintenance's: copies that a forward placed on a node that is not
    // among the owner's closest it knows are looked up at once (`Standing::Unplaced`).
    let l = &r.lookups;
    let maintenance = r.honest_counters.maintain_lookups_started;
    assert!(maintenance > 0, "{:?}", r.honest_counters);
    assert_eq!(
        l.started,
        r.puts + r.gets.started + r.final_gets.started + maintenance,
        "{l:?}"
    );
    assert_eq!((l.done, l.refused, l.empty), (l.started, 0, 0), "{l:?}");
    assert!(l.hops.iter().all(|&h| h >= 1), "{l:?}");
    assert!(l.hops.last().is_some_and(|&h| h >= 2), "{l:?}");
    assert!(r.route_bytes_per_node_s > 0.0);
    assert!(r.gets.success_rate() >= 0.99, "{:?}", r.gets);
    assert!(r.final_gets.success_rate() >= 0.99, "{:?}", r.final_gets);
    assert_eq!(r.replicas.lost, 0);

    let again = run("the same seed again", &o);
    assert_eq!(r.trace_hash, again.trace_hash, "same seed, same trace");
    assert_eq!(r.gets, again.gets);
    assert_eq!(r.lookups, again.lookups);
}

#[test]
fn maintenance_by_lookup_republishes_through_the_router_and_ages_far_copies_out() {
    // The same network with replica maintenance by lookup (`route::maintain`), short intervals
    // so copies come due and age out within the run.
    let mut o = options(13);
    o.maintain_by_lookup = true;
    o.duration_ms = 90_000;
    o.node.republish_interval_ms = 15_000;
    o.node.maintain_expire_after_ms = 30_000;
    o.workload.final_check_window_ms = 10_000;
    let r = run("80 nodes, k = 4, maintenance by lookup", &o);
    let c = &r.honest_counters;
    assert!(
        c.maintain_lookups_started > 0,
        "maintenance looked up owners"
    );
    assert!(
        c.copies_aged_out > 0,
        "copies away from the closest aged out"
    );
    // More lookups than puts and gets: the maintenance ones went through the router too.
    assert!(
        r.lookups.started > r.puts + r.gets.started + r.final_gets.started,
        "{:?}",
        r.lookups
    );
    assert!(r.gets.success_rate() >= 0.99, "{:?}", r.gets);
    assert!(r.final_gets.success_rate() >= 0.99, "{:?}", r.final_gets);
    assert_eq!(r.replicas.lost, 0);
    let again = run("the same seed again", &o);
    assert_eq!(r.trace_hash, again.trace_hash, "same seed, same trace");
}
