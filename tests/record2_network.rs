//! v2 records between whole nodes over real UDP on loopback (issue 16): a re-cut v2 record is
//! refused, a re-cut v1 record is never returned by a strict get, two writers racing a
//! compare-and-swap through different nodes end with exactly one winner that every node
//! converges on, and a v1-only dave node still exchanges v1 records with v2 nodes.

mod common;

use std::sync::Barrier;
use std::time::Duration;

use common::*;
use dave::keys::Keypair;
use dave::pow::{make_dat_single, make_dat2_single};
use dave::wire::record2::Message2;
use dave::wire::{Features, Message};
use dave::{AnyRecord, GetError, GetOptions, Node, PutError, PutOptions, RecordFormat};

const STRICT: GetOptions = GetOptions { strict: true };
const LOOSE: GetOptions = GetOptions { strict: false };

fn now_ms() -> i64 {
    dave::time::unix_now_ms() - 1_000
}

fn send(socket: &std::net::UdpSocket, to: std::net::SocketAddr, bytes: &[u8]) {
    socket.send_to(bytes, to).expect("send");
}

#[test]
fn a_recut_v2_record_is_refused_and_a_strict_get_never_returns_a_recut_v1_record() {
    let node = Node::start(test_config([127, 0, 0, 160], vec![])).expect("start");
    let attacker = std::net::UdpSocket::bind("127.0.0.161:0").expect("bind");
    let owner = Keypair::from_seed(&[16; 32]);

    // v2: the owner's record is stored; the same signature re-cut at the boundary is refused.
    let signed = make_dat2_single(
        &owner,
        b"config",
        b"Xsafe=true",
        now_ms(),
        1,
        TEST_WORK_BITS,
    );
    send(
        &attacker,
        node.local_addr(),
        &Message2::Put2(signed.as_view()).to_vec(),
    );
    assert!(
        wait_until(Duration::from_secs(2), || node
            .get_local2(&owner.public(), b"config")
            .is_some()),
        "the owner's v2 record is stored"
    );
    let mut recut = signed.fields();
    recut.key = b"configX";
    recut.value = b"safe=true";
    let recut = recut.to_record();
    let invalid_before = node.stats2().puts_invalid;
    send(
        &attacker,
        node.local_addr(),
        &Message2::Put2(recut.as_view()).to_vec(),
    );
    assert!(
        wait_until(Duration::from_secs(2), || node.stats2().puts_invalid
            == invalid_before + 1),
        "the re-cut v2 record is a counted drop: {:?}",
        node.stats2()
    );
    assert!(node.get_local2(&owner.public(), b"configX").is_none());
    let got = node.get_with(
        &owner.public(),
        b"config",
        Duration::from_millis(300),
        STRICT,
    );
    assert!(
        matches!(got, Ok(AnyRecord::V2(ref d)) if d.value() == b"Xsafe=true"),
        "{got:?}"
    );

    // v1: the same re-cut of a v1 record verifies, so a v1 node stores it (the flaw) ...
    let v1 = make_dat_single(&owner, b"config", b"Xsafe=true", now_ms(), TEST_WORK_BITS);
    let mut v1_recut = v1.fields();
    v1_recut.key = b"configX";
    v1_recut.value = b"safe=true";
    let v1_recut = v1_recut.to_dat();
    let mut buf = [0u8; 1424];
    for dat in [&v1, &v1_recut] {
        let n = Message::Put(dat.as_view()).emit(&mut buf);
        send(&attacker, node.local_addr(), &buf[..n]);
    }
    assert!(
        wait_until(Duration::from_secs(2), || node
            .get_local(&owner.public(), b"configX")
            .is_some()),
        "the re-cut v1 record is stored, as a v1 node must"
    );
    let loose = node.get_with(
        &owner.public(),
        b"configX",
        Duration::from_millis(300),
        LOOSE,
    );
    assert!(
        matches!(loose, Ok(AnyRecord::V1(ref d)) if d.value() == b"safe=true"),
        "{loose:?}"
    );
    // ... but a strict get never returns it.
    let strict = node.get_with(
        &owner.public(),
        b"configX",
        Duration::from_millis(300),
        STRICT,
    );
    assert_eq!(strict, Err(GetError::NotFound));
    assert_eq!(node.stats().malformed_total(), 0);
}

/// Five fully meshed nodes (fanout 3): two writers race a compare-and-swap on one key through
/// two different nodes.
#[test]
fn two_writers_racing_a_cas_through_different_nodes_one_wins_and_all_converge() {
    let nodes = start_network(170, 5);
    assert!(
        wait_all_active(&nodes, Duration::from_secs(12)),
        "all active: {:?}",
        nodes
            .iter()
            .map(|n| n.stats().peers_active)
            .collect::<Vec<_>>()
    );
    assert!(
        wait_until(Duration::from_secs(3), || nodes.iter().all(|n| n
            .peers()
            .speaking(Features::RECORD_V2)
            .count()
            == 4)),
        "every node knows every other speaks RECORD_V2"
    );
    let owner = Keypair::from_seed(&[17; 32]);
    let options = |seq: Option<u64>, cas: Option<u64>| PutOptions {
        format: RecordFormat::V2,
        seq,
        cas,
        owner: Some(owner.clone()),
        ..PutOptions::default()
    };
    let base = nodes[0]
        .put_with(b"counter", b"5", &options(Some(5), None))
        .expect("base put");
    assert!(base.v2.is_some() && base.v1.is_none());
    assert!(
        wait_until(Duration::from_secs(3), || nodes.iter().all(|n| matches!(
            n.get2(&owner.public(), b"counter", Duration::from_millis(500)),
            Ok(d) if d.seq() == 5
        ))),
        "everyone reads seq 5"
    );

    let barrier = Barrier::new(2);
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            barrier.wait();
            nodes[1].put_with(b"counter", b"writer-a", &options(None, Some(5)))
        });
        let b = scope.spawn(|| {
            barrier.wait();
            nodes[2].put_with(b"counter", b"writer-b", &options(None, Some(5)))
        });
        (a.join().expect("a"), b.join().expect("b"))
    });
    let (winner, loser) = match (&a, &b) {
        (Ok(_), Err(e)) => (&b"writer-a"[..], e),
        (Err(e), Ok(_)) => (&b"writer-b"[..], e),
        _ => panic!("exactly one CAS wins: a {a:?}, b {b:?}"),
    };
    assert!(matches!(loser, PutError::Rejected(_)), "{loser:?}");
    let message = loser.to_string();
    assert!(
        message.contains("conflict")
            || message.contains("mismatch")
            || message.contains("concurrent"),
        "the loser is told why: {message}"
    );
    eprintln!(
        "winner {:?}; loser: {message}",
        String::from_utf8_lossy(winner)
    );
    // Every node converges on the winner (the minority by the winner's commit).
    assert!(
        wait_until(Duration::from_secs(5), || nodes.iter().all(|n| matches!(
            n.get_with(&owner.public(), b"counter", Duration::from_millis(500), STRICT),
            Ok(AnyRecord::V2(ref d)) if d.value() == winner && d.seq() == 6
        ))),
        "every node reads the winner"
    );
    for n in &nodes {
        if let Some(held) = n.get_local2(&owner.public(), b"counter") {
            assert!(
                held.seq() == 5 || held.value() == winner,
                "{} holds no loser: {held:?}",
                n.local_addr()
            );
        }
    }
    let won: u64 = nodes.iter().map(|n| n.stats2().cas_won).sum();
    let lost: u64 = nodes.iter().map(|n| n.stats2().cas_lost).sum();
    assert_eq!((won, lost), (1, 1));
}

/// A v1-only dave node (`extensions = NONE`) beside v2 nodes: v1 records still flow both ways,
/// and a default put on a v2 node also writes v1 because a v1-only peer is among the closest.
#[test]
fn a_v1_only_node_still_exchanges_v1_records_with_v2_nodes() {
    let edge = Node::start(test_config([127, 0, 0, 180], vec![])).expect("edge");
    let mut v1_config = test_config([127, 0, 0, 181], vec![edge.local_addr()]);
    v1_config.extensions = Features::NONE;
    let v1_node = Node::start(v1_config).expect("v1 node");
    let nodes = [edge, v1_node];
    assert!(wait_all_active(&nodes, Duration::from_secs(12)), "active");
    let [edge, v1_node] = &nodes;
    assert_eq!(edge.peers().speaking(Features::RECORD_V2).count(), 0);

    let outcome = edge.put(b"mixed", b"from-v2-node").expect("put");
    assert!(
        outcome.v2.is_some(),
        "v2 written for v2 peers and this node"
    );
    assert!(outcome.v1.is_some(), "v1 written for the v1-only peer");
    let got = v1_node
        .get(&edge.public_key(), b"mixed", Duration::from_secs(2))
        .expect("the v1-only node reads the v1 record");
    assert_eq!(got.value(), b"from-v2-node");

    let report = v1_node
        .put_as(v1_node.keypair(), b"old", b"v1-record", TEST_WORK_BITS)
        .expect("v1 put");
    assert_eq!(report.sent_to, vec![edge.local_addr()]);
    let loose = edge.get_with(&v1_node.public_key(), b"old", Duration::from_secs(2), LOOSE);
    assert!(
        matches!(loose, Ok(AnyRecord::V1(ref d)) if d.value() == b"v1-record"),
        "{loose:?}"
    );
    // A v1-only node refuses to write v2.
    let strict_put = v1_node.put_with(
        b"x",
        b"y",
        &PutOptions {
            format: RecordFormat::V2,
            ..PutOptions::default()
        },
    );
    assert_eq!(strict_put.err(), Some(PutError::NeedsV2));
    // Nothing the v1-only node received was an extension datagram it had to drop.
    assert_eq!(v1_node.stats().malformed_total(), 0);
}
