//! Whole networks in the deterministic simulator (`dave::sim`): replay, activation, storage and
//! retrieval, churn with replica repair, trust against droppers, forgers and Sybils, partitions,
//! attacks on the work rule and on discovery, and updates never read stale from a kept copy.
//! Fixed seeds; every scenario prints its report (`cargo test --test sim_network -- --nocapture`).
//!
//! Sizes are chosen for CI (debug build, optimised dependencies, two cores): every PING costs an
//! Ed25519 signature and a verification, so the node count times the peers per node times the
//! virtual seconds sets each scenario's cost. Scenarios over virtual hours scale the peer
//! table's liveness timers (`SimOptions::scale_peer_timers`) and say so.

mod sim_support;

use dave::sim::{PartitionOptions, SimOptions, SybilBehaviour};
use sim_support::run;

#[test]
fn the_same_seed_replays_the_same_trace_and_another_seed_does_not() {
    // Everything that draws randomness at once: loss, duplication, reordering, skew, an edge
    // restart, churn, a dropper and a poisoner.
    let options = sim_support::replay_options;
    let a = run("seed 7", &options(7));
    let b = run("seed 7 again", &options(7));
    let c = run("seed 8", &options(8));
    assert_eq!(a.trace_hash, b.trace_hash, "same seed, same trace");
    assert_eq!(a.events, b.events);
    assert_eq!(a.net, b.net);
    assert_eq!(a.gets, b.gets);
    assert_eq!(a.final_gets, b.final_gets);
    assert_eq!(a.honest_counters, b.honest_counters);
    assert_ne!(a.trace_hash, c.trace_hash, "another seed, another trace");
    // The run did what it was set up to do.
    assert!(a.net.lost > 0 && a.net.duplicated > 0 && a.net.reordered > 0);
    assert!(a.departures > 0 && a.edge_restarts > 0);
    // (About 9,800 datagrams at seed 7 with replica maintenance by lookup, the default; the v1
    // repair, which re-sends records whenever the peer snapshot changes, delivered 10,900.)
    assert!(a.net.delivered > 5_000);
}

#[test]
fn two_hundred_nodes_from_three_edges_activate_and_serve_a_thousand_records() {
    // A full mesh of 200 (the node's default table of 1000) would cost 40 000 signature checks
    // per virtual second; 24 peers each keeps the test fast and is enough to find every record
    // (with 16, replies withheld by edges' amplification limits lose a few: see the report).
    // "Full activation" here is every node's table full (24 active peers). The full mesh at the
    // node's default table of 1000 also converges: `dave sim --nodes 200 --max-peers 1000
    // --minutes 1 --records 1000 --gets 0` had 199 active peers on every node at 17 s virtual
    // and found all 1000 records, but took 3 CPU minutes (release), too long for CI.
    let mut o = SimOptions {
        seed: 200,
        nodes: 200,
        edges: 3,
        max_peers: 24,
        join_window_ms: 5_000,
        duration_ms: 22_000,
        ..SimOptions::default()
    };
    let w = &mut o.workload;
    w.records = 1_000;
    w.owners = 1_000;
    w.put_start_ms = 15_000;
    w.put_end_ms = 20_000;
    w.gets = 0;
    w.final_check_window_ms = 10_000;
    let r = run("200 nodes, 1000 records", &o);
    let activated = r.time_to_full_activation_ms.expect("full activation");
    assert!(activated <= 15_000, "full activation after {activated} ms");
    assert!(r.active_peers_min >= 20, "{}", r.active_peers_min);
    assert_eq!(r.records_stored, 1_000);
    // Local puts and gets now look the owner up first (`Config::route_lookups`, the default
    // since issue 12), which finds every record here. What follows is about the one-hop path
    // (`--no-lookups`). One-hop GETs from a random node with 24-peer tables depend on which
    // peers its table holds, so the last fraction of a percent is topology luck: with PONGs listing only
    // non-fly-by peers (`PeerConfig::list_after_ms`) this seed finds 998 (1000 before), while
    // `dave sim --nodes 200 --max-peers 24 --records 1000 --gets 0 --minutes 1 --fast-crypto`
    // found 997/999/996 for seeds 1/2/3 against 983/962/986 with every authenticated peer
    // listed. No record is lost (below): every one is held by at least 3 replicas.
    let retrievable = r.records_retrievable.expect("final check ran");
    assert!(
        retrievable >= 995,
        "{retrievable} of 1000 records from a random node"
    );
    assert!(r.final_gets.success_rate() >= 0.995);
    assert_eq!(r.replicas.lost, 0);
    assert!(r.replicas.min >= 3, "replicas {:?}", r.replicas);
    assert!(r.final_gets.latency_quantile_ms(0.99).unwrap() < 1_000);
}

#[test]
fn twenty_percent_churn_per_hour_for_six_hours_keeps_gets_above_99_percent() {
    // Six virtual hours: liveness timers ×60 (a ping a minute, deactivation after 3 min, drop
    // after 12 min, activation after 5 min) and one storage challenge per node per minute keep
    // it affordable; PUT, GET, repair pacing and republish (every 10 min) run at their real
    // speed. Without repair (repair_bytes_per_s = 0) a run like this one finds only ~97 %
    // (measured when this test was written).
    let mut o = SimOptions {
        seed: 6,
        nodes: 20,
        edges: 3,
        duration_ms: 6 * 3_600_000,
        join_window_ms: 10_000,
        ..SimOptions::default()
    };
    o.scale_peer_timers(60);
    o.node.challenge_mean_gap_ms *= 60;
    o.sample_every_ms = 60_000;
    let activation = o.node.activation_delay_ms;
    o.churn.per_hour = 0.2;
    o.churn.start_ms = activation + 5 * 60_000;
    o.churn.edge_restart_every_ms = 3_600_000;
    o.churn.edge_down_ms = 120_000;
    let w = &mut o.workload;
    w.records = 200;
    w.owners = 200;
    w.put_start_ms = activation + 60_000;
    w.put_end_ms = w.put_start_ms + 60_000;
    w.gets = 1_000;
    w.get_start_ms = w.put_end_ms;
    w.final_check_window_ms = 60_000;
    let r = run("churn 20 %/h for 6 h", &o);
    assert!(
        r.departures >= 12,
        "{} departures: the population turned over",
        r.departures
    );
    assert!(r.edge_restarts >= 5);
    assert!(
        r.gets.success_rate() >= 0.99,
        "GET success {:.4}",
        r.gets.success_rate()
    );
    assert!(
        r.final_gets.success_rate() >= 0.99,
        "final check {:.4}",
        r.final_gets.success_rate()
    );
    assert!(r.honest_counters.repair_datagrams_sent > 0, "repair ran");
    assert_eq!(r.replicas.lost, 0);
}

#[test]
fn trust_keeps_gets_above_95_percent_with_twenty_percent_droppers_and_forgers() {
    // 30 nodes, 6 of them (20 %) adversaries: 2 droppers and 1 forger at random IDs, and 3
    // droppers ground next to one owner's ID (a Sybil group: every get of that owner's records
    // asks them first). Liveness timers ×10 make 15 virtual minutes affordable; challenges run at
    // their real rate (one per second per node), so trust builds as fast as in a real network.
    let options = |trust| {
        let mut o = SimOptions {
            seed: 30,
            nodes: 30,
            edges: 3,
            duration_ms: 900_000,
            trust,
            ..SimOptions::default()
        };
        o.scale_peer_timers(10);
        o.adversaries.droppers = 2;
        o.adversaries.forgers = 1;
        o.adversaries.sybils = 3;
        o.adversaries.sybil_behaviour = SybilBehaviour::Drop;
        let w = &mut o.workload;
        w.records = 400;
        w.owners = 20;
        w.put_start_ms = o.node.activation_delay_ms + 15_000;
        w.put_end_ms = 600_000;
        w.gets = 1_000;
        w.get_start_ms = 300_000;
        o
    };
    let on = run("trust on", &options(true));
    let off = run("trust off", &options(false));
    let (s_on, s_off) = (on.gets.success_rate(), off.gets.success_rate());
    assert!(s_on >= 0.95, "GET success with trust {s_on:.4}");
    assert!(on.final_gets.success_rate() >= 0.95);
    assert!(
        s_on > s_off + 0.01,
        "trust must help: {s_on:.4} with, {s_off:.4} without"
    );
    assert!(
        on.victim_gets.success_rate() > off.victim_gets.success_rate() + 0.2,
        "the Sybils' victim: {:.3} with trust, {:.3} without",
        on.victim_gets.success_rate(),
        off.victim_gets.success_rate()
    );
    // The scores separate the two kinds of peer.
    assert!(on.trust_in_adversaries.unwrap() < 0.3);
    assert!(on.trust_in_honest.unwrap() > 0.8);
    // Forged answers are refused by verification, never stored.
    assert!(on.honest_counters.get_ack_invalid[3] > 0, "forgeries seen");
}

#[test]
fn a_lossy_network_split_heals_and_reconverges() {
    // 2 % loss on every link throughout; a clean cut between two halves from 30 s to 70 s.
    let mut o = SimOptions {
        seed: 2,
        nodes: 30,
        edges: 3,
        duration_ms: 120_000,
        ..SimOptions::default()
    };
    o.network.loss = 0.02;
    // The split, the reconnection and the reconvergence are read from the peer tables, which
    // notice a cut through the one-second PINGs: peers that speak ROUTING are kept on that
    // schedule here. By default the router watches them instead, and a peer across a cut stays
    // in a table until the router evicts it or 10 minutes pass (README "Routing at scale").
    o.node.ping_routing_peers = true;
    // Records placed during the split move to the closest nodes of the whole network when the
    // snapshot changes with the v1 repair; replica maintenance by lookup (the default) moves
    // them only at the next republish, 10 minutes later (README "Routing at scale"), past this
    // two-minute run. This scenario measures the snapshot-driven reconvergence.
    o.maintain_by_lookup = false;
    o.partitions.push(PartitionOptions {
        start_ms: 30_000,
        end_ms: 70_000,
        fraction_b: 0.5,
        loss: 1.0,
    });
    let w = &mut o.workload;
    w.records = 200;
    w.owners = 200;
    w.put_start_ms = 15_000; // before, during and after the split
    w.put_end_ms = 80_000;
    w.gets = 200;
    w.get_start_ms = 90_000;
    let r = run("2 % loss, split 30–70 s", &o);
    let p = r.partitions[0];
    assert!(p.split_observed, "the cut split the network");
    let reconnected = p.reconnected_after_ms.expect("reconnected");
    let reconverged = p.reconverged_after_ms.expect("reconverged");
    assert!(reconnected <= 5_000, "reconnected after {reconnected} ms");
    assert!(reconverged <= 45_000, "reconverged after {reconverged} ms");
    assert!(r.net.lost > 0 && r.net.lost_partition > 0);
    // Records put on either side during the split are found from anywhere afterwards.
    assert!(
        r.gets.success_rate() >= 0.99,
        "GET success {:.4}",
        r.gets.success_rate()
    );
    assert!(r.final_gets.success_rate() >= 0.99);
}

#[test]
fn records_without_enough_work_are_stored_by_no_honest_node() {
    // Two nodes PUT records with too little work (or work that does not match its hash) to their
    // closest and random peers; two poisoners list addresses where no node lives in every PONG
    // and flood unsolicited PONGs. Neither may get anything into an honest node.
    let mut o = SimOptions {
        seed: 4,
        nodes: 20,
        edges: 3,
        duration_ms: 40_000,
        ..SimOptions::default()
    };
    o.adversaries.low_work = 2;
    o.adversaries.low_work_puts_per_s = 5;
    o.adversaries.poisoners = 2;
    o.adversaries.poison_flood_per_s = 20;
    o.workload.records = 50;
    o.workload.put_start_ms = 15_000;
    o.workload.put_end_ms = 25_000;
    o.workload.gets = 50;
    o.workload.get_start_ms = 27_000;
    let r = run("low work and poisoned PONGs", &o);
    assert!(r.low_work_sent >= 100, "{} sent", r.low_work_sent);
    assert_eq!(r.low_work_stored_by_honest, 0);
    let c = &r.honest_counters;
    assert!(c.put_invalid[0] > 0, "not enough work refused");
    assert!(c.put_invalid[2] > 0, "false work refused");
    assert_eq!(r.poisoned_peers, 0, "no black hole became a peer");
    assert!(r.time_to_ready_ms.is_some());
    assert_eq!(r.records_retrievable, Some(50));
    assert_eq!(r.gets.success_rate(), 1.0);
}

#[test]
fn updated_records_are_never_read_stale_from_a_cached_copy() {
    // A node keeps the record a get fetched, but unless it is among the FANOUT closest to the
    // owner it never receives the owner's later PUTs (nor does a node that put a version without
    // being a replica). Half the records get a newer version after gets have spread copies of
    // the first; every get, during the run and in the final check, must return the newest.
    // Before a node that is not a replica asked the peers despite its copy, this run read 9 of
    // 600 GETs and 9 of 300 final GETs stale. Telling replicas by the targets picked (which trust
    // may take from farther away) instead of the candidates left 1 final GET stale. ~6 s debug.
    let mut o = SimOptions {
        seed: 11,
        nodes: 40,
        edges: 3,
        join_window_ms: 5_000,
        duration_ms: 34_000,
        ..SimOptions::default()
    };
    let w = &mut o.workload;
    w.records = 300;
    w.owners = 300;
    w.update_fraction = 0.5;
    w.put_start_ms = 8_000;
    w.put_end_ms = 14_000;
    w.gets = 600;
    w.get_start_ms = 11_000;
    w.final_check_window_ms = 3_000;
    let r = run("40 nodes, half the records updated", &o);
    assert_eq!(r.records_stored, 300);
    assert!(r.gets.started >= 500, "{} gets", r.gets.started);
    let (run_stale, final_stale) = (r.gets.stale, r.final_gets.stale);
    assert_eq!((run_stale, final_stale), (0, 0), "stale (run, final)");
    assert_eq!(r.final_gets.success_rate(), 1.0);
    assert!(
        r.gets.success_rate() >= 0.99,
        "{:.4}",
        r.gets.success_rate()
    );
    // Replicas (the nodes closest to the owner) still answer from their own store.
    assert!(r.gets.local > 0 || r.final_gets.local > 0);
}

#[test]
fn in_a_mixed_network_dave_lookups_find_what_v1_nodes_put() {
    // Half the non-edge nodes speak v1 only (`SimOptions::v1_share`), as Go reference nodes do
    // on the wire: they put one hop, to the closest peers they know, so their records start
    // out away from where dave nodes' lookups look. A dave node that stores a record from such
    // a peer (or from a stranger while it is not among the owner's closest it knows) marks its
    // copy Unplaced (`route::maintain::Standing`): replica maintenance looks the owner up at
    // once and pushes the record to the closest found. Seed 3 at this size (`dave sim --nodes
    // 120 --max-peers 24 --minutes 1.5 --records 300 --gets 300 --v1-nodes 50 --fast-crypto
    // --seed 3`): dave nodes' gets found 99.7 % with the mark, 85.1 % without it (seeds 1 and
    // 2: 96.8 / 96.5 % against 90.2 / 91.1 %); v1 nodes' gets 100 %.
    let mut o = SimOptions {
        seed: 3,
        nodes: 120,
        edges: 3,
        max_peers: 24,
        duration_ms: 90_000,
        fast_pong_auth: true,
        v1_share: 0.5,
        ..SimOptions::default()
    };
    let w = &mut o.workload;
    w.records = 300;
    w.gets = 300;
    w.owners = 100;
    w.put_start_ms = 30_000;
    w.put_end_ms = 45_000;
    w.get_start_ms = 32_000;
    let r = run("120 nodes, half of them v1 only", &o);
    assert!(
        r.v1_nodes >= 40 && r.v1_nodes <= 80,
        "{} v1 nodes",
        r.v1_nodes
    );
    assert!(r.v1_gets.started > 0);
    let (all, dave, v1) = (&r.gets, &r.dave_gets, &r.v1_gets);
    assert_eq!(
        dave.ended() + v1.ended(),
        all.ended() + r.final_gets.ended()
    );
    assert!(dave.success_rate() >= 0.95, "dave nodes' gets: {dave:?}");
    assert!(dave.latencies_ms.is_sorted());
    assert!(r.v1_gets.success_rate() >= 0.99, "{:?}", r.v1_gets);
    assert!(
        r.v1_gets.latencies_ms.is_sorted(),
        "quantiles need sorted latencies"
    );
    assert_eq!(r.replicas.lost, 0);
}

#[test]
fn in_a_mixed_network_larger_than_its_tables_v1_nodes_are_proven_and_answered() {
    // 300 nodes with 16-peer tables, half of them v1 only. A v1 node pings every peer it knows
    // every second, and sends them its GETs; a node whose full table has no room for it used to
    // leave it unproven, so the amplification allowance withheld replies to it beyond a few
    // bytes: GET_ACKs withheld and storage challenges failed (at `0598dde`, this run: 801
    // GET_ACKs withheld, 732 of 16,160 challenges failed, dave nodes' gets 99.1 %). Now a
    // stranger that pings a full table is proven (`peer::prover`, one rate-limited PING), and
    // its PONG's salt tells whether it speaks ROUTING: a v1 stranger's PUTs are one-hop
    // placements, marked Unplaced like a v1 peer's (`PeerView::places_one_hop`).
    let mut o = SimOptions {
        seed: 1,
        nodes: 300,
        edges: 3,
        max_peers: 16,
        duration_ms: 120_000,
        fast_pong_auth: true,
        v1_share: 0.5,
        ..SimOptions::default()
    };
    let w = &mut o.workload;
    w.records = 200;
    w.gets = 200;
    let r = run("300 nodes, 16-peer tables, half of them v1 only", &o);
    assert!(r.stranger_proofs > 0, "strangers were proven");
    let get_acks_withheld = r.withheld_by_op[4];
    assert_eq!(get_acks_withheld, 0, "{:?}", r.withheld_by_op);
    let c = &r.honest_counters;
    let failed = c.challenges_failed_not_found
        + c.challenges_failed_invalid
        + c.challenges_failed_stale
        + c.challenges_failed_timeout;
    assert!(
        c.challenges_sent > 1_000,
        "{} challenges",
        c.challenges_sent
    );
    assert_eq!(failed, 0, "honest nodes' challenges failed");
    assert!(
        r.dave_gets.success_rate() >= 0.99,
        "dave nodes' gets: {:?}",
        r.dave_gets
    );
    assert!(r.v1_gets.success_rate() >= 0.99, "{:?}", r.v1_gets);
    assert_eq!(r.replicas.lost, 0);
}

#[test]
fn tables_larger_than_one_ping_burst_ping_in_slices_and_stay_active() {
    // 100 nodes with 90-peer tables, every peer on the v1 ping schedule: each table is above
    // `PING_AT_ONCE_AT_MOST` (64), so its ping rounds go out in slices across the second (issue
    // 14, session 19). With 1 % loss on every link, peers must stay active round after round,
    // each pinged once a second. PONGs by MAC (`fast_pong_auth`) keep the 9,000 checks per
    // virtual second cheap; the decisions are those of Ed25519 (`sim_fast_crypto.rs`).
    let mut o = SimOptions {
        seed: 90,
        nodes: 100,
        edges: 3,
        max_peers: 90,
        fast_pong_auth: true,
        join_window_ms: 5_000,
        duration_ms: 40_000,
        ..SimOptions::default()
    };
    o.node.ping_routing_peers = true;
    o.network.loss = 0.01;
    let w = &mut o.workload;
    w.records = 200;
    w.put_start_ms = 15_000;
    w.put_end_ms = 22_000;
    w.gets = 200;
    w.get_start_ms = 25_000;
    w.final_check_window_ms = 10_000;
    let r = run("100 nodes, 90-peer tables, sliced ping rounds", &o);
    assert!(r.time_to_full_activation_ms.is_some(), "every table full");
    assert!(r.active_peers_min >= 88, "{}", r.active_peers_min);
    // Each node sends about one PING to each of its 90 peers a second and answers their 90
    // PINGs with PONGs; slices that skipped peers or pinged them twice would move this.
    assert!(
        (150.0..=220.0).contains(&r.packets_per_node_s),
        "{} datagrams a second per node",
        r.packets_per_node_s
    );
    assert_eq!(r.records_stored, 200);
    assert!(r.gets.success_rate() >= 0.99, "{:?}", r.gets);
}
