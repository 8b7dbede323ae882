//! The routing extension over real UDP on loopback (127.0.0.200–229 and 127.0.0.240–242):
//! thirty `Node`s with routing tables of k = 4 (no table holds the network) find every record
//! through iterative lookups, and a v1-only dave node (extensions off) keeps exchanging PUTs and
//! GETs with extension nodes while never receiving an extension datagram.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use dave::keys::{Keypair, distance, id_from_pubkey};
use dave::wire::{Error, Features};
use dave::{Config, Node};

fn routing_config(ip: [u8; 4], edges: Vec<SocketAddr>) -> Config {
    Config {
        route_bucket_size: 4,
        route_lookups: true,
        ..test_config(ip, edges)
    }
}

#[test]
fn thirty_nodes_with_k_4_find_every_record_through_lookups() {
    const NODES: usize = 30;
    let first = Node::start(routing_config([127, 0, 0, 200], vec![])).expect("edge starts");
    let edge = first.local_addr();
    let mut nodes = vec![first];
    for i in 1..NODES {
        let node = Node::start(routing_config([127, 0, 0, 200 + i as u8], vec![edge]))
            .expect("node starts");
        nodes.push(node);
    }
    // Every node has routing contacts (authenticated peers that advertised ROUTING).
    assert!(
        wait_until(Duration::from_secs(30), || nodes
            .iter()
            .all(|n| n.route_stats().contacts >= 4)),
        "routing contacts: {:?}",
        nodes
            .iter()
            .map(|n| n.route_stats().contacts)
            .collect::<Vec<_>>()
    );
    let max_contacts = nodes
        .iter()
        .map(|n| n.route_stats().contacts)
        .max()
        .unwrap();
    assert!(
        max_contacts < (NODES - 1) as u64,
        "k = 4: no routing table holds the network ({max_contacts} contacts)"
    );
    // A lookup finds the true closest node of any target.
    let ids: Vec<(u64, SocketAddr)> = nodes
        .iter()
        .map(|n| (id_from_pubkey(&n.public_key()), n.local_addr()))
        .collect();
    for (t, node) in nodes.iter().enumerate().take(10) {
        let target = (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let found = node.lookup(target, Duration::from_secs(5));
        let own = id_from_pubkey(&node.public_key());
        let best = ids
            .iter()
            .filter(|(id, _)| *id != own)
            .min_by_key(|(id, _)| distance(*id, target))
            .unwrap();
        assert_eq!(found.first().map(|c| c.addr), Some(best.1), "lookup {t}");
    }
    // Records put from one node are found from another, through lookups.
    let owners: Vec<Keypair> = (0..10).map(|_| Keypair::generate()).collect();
    for (i, owner) in owners.iter().enumerate() {
        let putter = &nodes[(i * 7) % NODES];
        let report = putter
            .put_as(
                owner,
                b"routed",
                format!("value {i}").as_bytes(),
                TEST_WORK_BITS,
            )
            .expect("put");
        assert!(!report.sent_to.is_empty(), "put {i} reached someone");
    }
    std::thread::sleep(Duration::from_millis(500));
    for (i, owner) in owners.iter().enumerate() {
        let getter = &nodes[(i * 11 + 3) % NODES];
        let before = getter.route_stats().lookups_done;
        let record = getter
            .get(&owner.public(), b"routed", Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("get {i}: {e:?}"));
        assert_eq!(record.value(), format!("value {i}").as_bytes());
        assert!(
            getter.route_stats().lookups_done > before,
            "get {i} went through a lookup"
        );
    }
    let answered: u64 = nodes
        .iter()
        .map(|n| n.route_stats().find_node_received)
        .sum();
    assert!(answered > 0);
    // Listed IDs were proven (`route_verify_ids`, on by default): by a proof PING, or at once
    // from a key the peer table had pinned; nothing honest was taken for a forgery.
    let asked: u64 = nodes.iter().map(|n| n.route_stats().proofs_asked).sum();
    let forged: u64 = nodes
        .iter()
        .map(|n| n.route_stats().forged_ids_refused)
        .sum();
    let (sent, known, succeeded, limited) = nodes.iter().fold((0, 0, 0, 0), |acc, n| {
        let p = n.stats().peer;
        (
            acc.0 + p.proofs_sent,
            acc.1 + p.proofs_known,
            acc.2 + p.proofs_succeeded,
            acc.3 + p.proofs_rate_limited,
        )
    });
    eprintln!(
        "proofs: asked {asked}, PINGs {sent}, answered {succeeded}, known {known}, \
         rate-limited {limited}; forged {forged}"
    );
    assert!(asked > 0 && sent + known > 0 && succeeded + known > 0);
    assert_eq!(forged, 0);
}

#[test]
fn a_v1_only_node_exchanges_records_with_extension_nodes() {
    let a = Node::start(routing_config([127, 0, 0, 240], vec![])).expect("a");
    let edge = a.local_addr();
    let b = Node::start(routing_config([127, 0, 0, 241], vec![edge])).expect("b");
    let v1 = Node::start(Config {
        extensions: Features::NONE,
        ..test_config([127, 0, 0, 242], vec![edge])
    })
    .expect("v1-only node");
    let all = [&a, &b, &v1];
    assert!(
        wait_until(Duration::from_secs(15), || all
            .iter()
            .all(|n| n.stats().peers_active >= 2)),
        "all active"
    );
    // The extension nodes know each other as routing peers, and the v1 node as v1 only.
    assert!(a.peers().speaks(b.local_addr(), Features::ROUTING));
    assert!(!a.peers().speaks(v1.local_addr(), Features::ROUTING));
    assert!(!v1.peers().speaks(a.local_addr(), Features::ROUTING));
    assert!(wait_until(Duration::from_secs(5), || a
        .route_stats()
        .contacts
        >= 1));
    assert_eq!(
        a.route_stats().contacts,
        1,
        "only b is a routing contact of a"
    );

    let owner_v1 = Keypair::generate();
    let owner_ext = Keypair::generate();
    v1.put_as(&owner_v1, b"from-v1", b"v1 value", TEST_WORK_BITS)
        .expect("v1 put");
    a.put_as(&owner_ext, b"from-ext", b"ext value", TEST_WORK_BITS)
        .expect("extension put");
    std::thread::sleep(Duration::from_millis(500));
    let t = Duration::from_secs(3);
    assert_eq!(
        b.get(&owner_v1.public(), b"from-v1", t)
            .expect("b gets v1's record")
            .value(),
        b"v1 value"
    );
    assert_eq!(
        v1.get(&owner_ext.public(), b"from-ext", t)
            .expect("v1 gets the extension node's record")
            .value(),
        b"ext value"
    );
    // Nothing with an op of 0x10 or above ever reached the v1-only node.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(v1.stats().malformed[Error::UnknownOp.index()], 0);
    assert_eq!(v1.route_stats().requests_sent, 0);
    assert!(a.route_stats().requests_sent > 0);
}
