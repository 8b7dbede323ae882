//! Liveness without a full mesh (issue 12) over real UDP on loopback (127.0.1.10–21): in a
//! network of eight routing nodes and four v1-only nodes, routing nodes stop pinging each other
//! every second (the router watches them) while everyone keeps pinging the v1 nodes, which keep
//! seeing every node active; lookups still find every record.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use dave::keys::Keypair;
use dave::wire::Features;
use dave::{Config, Node};

const ROUTING: usize = 8;
const V1: usize = 4;
const NODES: usize = ROUTING + V1;

fn config(i: usize, edges: Vec<SocketAddr>) -> Config {
    Config {
        // Not what is tested here: a shorter warm-up.
        activation_delay_ms: 1_000,
        route_lookups: i < ROUTING,
        extensions: if i < ROUTING {
            Features::ALL
        } else {
            Features::NONE
        },
        ..test_config([127, 0, 1, 10 + i as u8], edges)
    }
}

/// (PINGs sent, PINGs received) of every node.
fn pings(nodes: &[Node]) -> Vec<(u64, u64)> {
    nodes
        .iter()
        .map(|n| {
            let p = n.stats().peer;
            (p.pings_sent, p.pings_received)
        })
        .collect()
}

#[test]
fn routing_peers_are_not_pinged_every_second_and_lookups_still_find_every_record() {
    let first = Node::start(config(0, vec![])).expect("edge starts");
    let edge = first.local_addr();
    let mut nodes = vec![first];
    for i in 1..NODES {
        nodes.push(Node::start(config(i, vec![edge])).expect("node starts"));
    }
    // Everyone active everywhere: the v1 nodes' PONG lists carry discovery on.
    assert!(
        wait_all_active(&nodes, Duration::from_secs(20)),
        "active peers: {:?}",
        nodes
            .iter()
            .map(|n| n.stats().peers_active)
            .collect::<Vec<_>>()
    );
    for (i, n) in nodes.iter().enumerate() {
        for (j, m) in nodes.iter().enumerate() {
            if i != j {
                let both = i < ROUTING && j < ROUTING;
                assert_eq!(
                    n.peers().speaks(m.local_addr(), Features::ROUTING),
                    both,
                    "{i} → {j}"
                );
            }
        }
    }

    // A window of a few ping periods.
    let window = Duration::from_secs(3);
    let before = pings(&nodes);
    let start = Instant::now();
    std::thread::sleep(window);
    let after = pings(&nodes);
    let secs = start.elapsed().as_secs_f64();
    let rate = |range: std::ops::Range<usize>, f: fn(&(u64, u64)) -> u64| {
        let n = range.len() as f64;
        range.map(|i| f(&after[i]) - f(&before[i])).sum::<u64>() as f64 / n / secs
    };
    let routing_sent = rate(0..ROUTING, |p| p.0);
    let v1_sent = rate(ROUTING..NODES, |p| p.0);
    let routing_received = rate(0..ROUTING, |p| p.1);
    let v1_received = rate(ROUTING..NODES, |p| p.1);
    eprintln!(
        "PINGs per node per second: routing nodes sent {routing_sent:.1} and received \
         {routing_received:.1}; v1 nodes sent {v1_sent:.1} and received {v1_received:.1} \
         (schedule: routing nodes ping the {V1} v1 nodes, v1 nodes ping all {} others)",
        NODES - 1
    );
    // On the schedule a routing node pings only the 4 v1 nodes and is pinged only by them (4/s
    // each way), a v1 node pings and is pinged by all 11 others (11/s); a full mesh would be 11
    // everywhere. Margins for a loaded machine: no routing node sends more than the v1 schedule
    // allows plus one round, and the routing nodes receive well under the v1 nodes.
    for (i, (b, a)) in before.iter().zip(&after).enumerate().take(ROUTING) {
        let sent = a.0 - b.0;
        assert!(
            sent as f64 <= V1 as f64 * (secs + 1.0) + 2.0,
            "routing node {i} sent {sent} PINGs in {secs:.1} s"
        );
    }
    assert!(
        routing_received < 0.6 * v1_received,
        "routing nodes received {routing_received:.1}/s, v1 nodes {v1_received:.1}/s"
    );
    assert!(routing_sent < 0.6 * v1_sent);

    // The v1 nodes still see every node active (they ping, everyone answers), and the routing
    // nodes still see each other active without a PING.
    assert!(
        nodes
            .iter()
            .all(|n| n.stats().peers_active == NODES as u64 - 1)
    );

    // Records put from one routing node are found from another, through lookups.
    let owners: Vec<Keypair> = (0..ROUTING).map(|_| Keypair::generate()).collect();
    for (i, owner) in owners.iter().enumerate() {
        let report = nodes[i]
            .put_as(owner, b"lively", format!("v{i}").as_bytes(), TEST_WORK_BITS)
            .expect("put");
        assert!(!report.sent_to.is_empty(), "put {i} reached someone");
    }
    std::thread::sleep(Duration::from_millis(300));
    for (i, owner) in owners.iter().enumerate() {
        let getter = &nodes[(i + 3) % ROUTING];
        let lookups = getter.route_stats().lookups_done;
        let record = getter
            .get(&owner.public(), b"lively", Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("get {i}: {e:?}"));
        assert_eq!(record.value(), format!("v{i}").as_bytes());
        assert!(
            getter.route_stats().lookups_done > lookups,
            "get {i} used a lookup"
        );
    }
    // The lookups' answers reached the peer tables as liveness.
    let heard: u64 = nodes[..ROUTING]
        .iter()
        .map(|n| n.stats().peer.router_heard)
        .sum();
    assert!(heard > 0, "router answers kept routing peers alive");
}
