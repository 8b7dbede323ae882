//! Whole nodes over real UDP on loopback: discovery, replication, gets, restarts, shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use dave::Node;

#[test]
fn five_nodes_activate_replicate_and_answer_gets() {
    let nodes = start_network(10, 5);
    // ACTIVATION_DELAY (5 s) plus a few ping periods.
    let limit = Duration::from_millis(5_000 + 4 * 1_000);
    let start = Instant::now();
    assert!(
        wait_all_active(&nodes, limit),
        "not all active: {:?}",
        nodes
            .iter()
            .map(|n| n.stats().peers_active)
            .collect::<Vec<_>>()
    );
    eprintln!("all five active after {:?}", start.elapsed());

    let owner = &nodes[2];
    let report = owner
        .put_as(owner.keypair(), b"hello", b"world", TEST_WORK_BITS)
        .expect("put");
    assert_eq!(report.sent_to.len(), 3, "sent to FANOUT peers");

    for (i, node) in nodes.iter().enumerate() {
        let dat = node
            .get(&owner.public_key(), b"hello", Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("get on node {i}: {e}"));
        assert_eq!(dat.value(), b"world");
    }

    // The copies sit on the FANOUT XOR-closest nodes (of the owner's peers).
    let owner_id = dave::keys::id_from_pubkey(&owner.public_key());
    let mut others: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.local_addr() != owner.local_addr())
        .collect();
    others.sort_by_key(|n| dave::keys::id_from_pubkey(&n.public_key()) ^ owner_id);
    for closest in &others[..3] {
        let held = closest.get_local(&owner.public_key(), b"hello");
        assert!(
            held.is_some(),
            "closest replica {} holds the record",
            closest.local_addr()
        );
    }
    for n in &nodes {
        assert_eq!(n.stats().malformed_total(), 0);
    }
}

#[test]
fn dropping_a_node_joins_its_threads_within_a_second() {
    let node = Node::start(test_config([127, 0, 0, 30], vec![])).expect("start");
    let start = Instant::now();
    drop(node);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "shutdown took {:?}",
        start.elapsed()
    );
}

#[test]
fn port_in_use_is_a_clear_start_error() {
    let node = Node::start(test_config([127, 0, 0, 31], vec![])).expect("start");
    let mut config = test_config([127, 0, 0, 31], vec![]);
    config.listen_addr = node.local_addr();
    let err = Node::start(config).err().expect("second bind fails");
    let msg = err.to_string();
    assert!(
        msg.contains("in use") || msg.contains("use"),
        "message: {msg}"
    );
}
