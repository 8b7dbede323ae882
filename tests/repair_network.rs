//! Replica repair over real UDP on loopback (127.0.0.110–119, 130–135): a record (v1, and a v2
//! record made by the default put) survives its three closest replicas leaving one after
//! another, and repair traffic stays within its byte budget (the test prints the bandwidth it
//! measured).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use dave::keys::{Keypair, id_from_pubkey};
use dave::{AnyRecord, Config, GetOptions, Node, PutOptions};

/// Faster peer timers than the reference, so churn is noticed within a second. This file tests
/// the v1 repair, which reacts to the peer snapshot: local puts and gets use the snapshot
/// (`route_lookups` off; with lookups on, v1 records are maintained by lookup instead,
/// `tests/maintain_network.rs`), and peers that speak ROUTING are pinged on the v1 schedule too
/// (`ping_routing_peers`; by default the router watches them and a departed one is noticed only
/// when the router evicts it, README "Routing at scale").
fn fast_config(ip: [u8; 4], keypair: Keypair, edges: Vec<SocketAddr>) -> Config {
    Config {
        keypair: Some(keypair),
        route_lookups: false,
        ping_routing_peers: true,
        ping_period_ms: 200,
        deactivate_after_ms: 600,
        drop_after_ms: 2_400,
        activation_delay_ms: 1_000,
        ..test_config(ip, edges)
    }
}

fn holds(node: &Node, owner: &Keypair, key: &[u8]) -> bool {
    node.get_local(&owner.public(), key).is_some()
}

#[test]
fn a_record_outlives_its_three_closest_replicas() {
    // Six identities ranked by XOR distance to the record's owner: r1..r3 are the three closest,
    // x (the putter) the fourth, a and b the farthest.
    let owner = Keypair::generate();
    let owner_id = id_from_pubkey(&owner.public());
    let mut keys: Vec<Keypair> = (0..6).map(|_| Keypair::generate()).collect();
    keys.sort_by_key(|k| k.id() ^ owner_id);
    let ip = |i: u8| [127, 0, 0, 110 + i];
    let r1 = Node::start(fast_config(ip(0), keys[0].clone(), vec![])).expect("r1");
    let edge = r1.local_addr();
    let r2 = Node::start(fast_config(ip(1), keys[1].clone(), vec![edge])).expect("r2");
    let r3 = Node::start(fast_config(ip(2), keys[2].clone(), vec![edge])).expect("r3");
    let x = Node::start(fast_config(ip(3), keys[3].clone(), vec![edge])).expect("x");
    let first = [&r1, &r2, &r3, &x];
    assert!(
        wait_until(Duration::from_secs(10), || first
            .iter()
            .all(|n| n.stats().peers_active >= 3)),
        "first four active"
    );
    let key = b"survivor";
    let report = x
        .put_as(&owner, key, b"still here", TEST_WORK_BITS)
        .expect("put");
    assert_eq!(report.sent_to.len(), 3);
    assert!(wait_until(Duration::from_secs(3), || [&r1, &r2, &r3]
        .iter()
        .all(|n| holds(n, &owner, key))));

    // a and b join: farther than x, so nobody sends them the record.
    let a = Node::start(fast_config(ip(4), keys[4].clone(), vec![r2.local_addr()])).expect("a");
    let b = Node::start(fast_config(ip(5), keys[5].clone(), vec![r2.local_addr()])).expect("b");
    let all = [&r1, &r2, &r3, &x, &a, &b];
    assert!(
        wait_until(Duration::from_secs(10), || all
            .iter()
            .all(|n| n.stats().peers_active >= 5)),
        "all six active: {:?}",
        all.iter()
            .map(|n| n.stats().peers_active)
            .collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!holds(&a, &owner, key) && !holds(&b, &owner, key));

    // The putter leaves: a is now among the three closest peers and receives a copy by repair.
    let start = Instant::now();
    drop(x);
    assert!(
        wait_until(Duration::from_secs(5), || holds(&a, &owner, key)),
        "a repaired"
    );
    eprintln!("x left: a holds the record after {:?}", start.elapsed());
    // Then the three closest replicas, one after another. (b may already hold a copy: a
    // forwards what it stores to its own closest peers.)
    let start = Instant::now();
    drop(r1);
    assert!(
        wait_until(Duration::from_secs(5), || holds(&b, &owner, key)),
        "b repaired"
    );
    eprintln!("r1 left: b holds the record after {:?}", start.elapsed());
    std::thread::sleep(Duration::from_secs(1));
    let survivors = [&r2, &r3, &a, &b];
    let repair_bytes: u64 = survivors.iter().map(|n| n.stats().repair_bytes_sent).sum();
    let repair_datagrams: u64 = survivors
        .iter()
        .map(|n| n.stats().repair_datagrams_sent)
        .sum();
    drop(r2);
    std::thread::sleep(Duration::from_secs(2));
    drop(r3);
    std::thread::sleep(Duration::from_secs(2));

    for (name, n) in [("a", &a), ("b", &b)] {
        let dat = n
            .get(&owner.public(), key, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("get on {name}: {e}"));
        assert_eq!(dat.value(), b"still here");
    }
    eprintln!(
        "repair traffic of the survivors until r1 had left: {repair_datagrams} datagrams, \
         {repair_bytes} bytes"
    );
    assert!(repair_datagrams >= 2);
}

fn holds2(node: &Node, owner: &Keypair, key: &[u8]) -> bool {
    node.get_local2(&owner.public(), key).is_some()
}

/// The same churn as [`a_record_outlives_its_three_closest_replicas`], for a v2 record written
/// by the default put (every node speaks RECORD_V2, so no v1 copy is made): repair re-sends it
/// as PUT2, and a strict get finds it after its first three replicas and its putter are gone.
#[test]
fn a_v2_record_outlives_its_three_closest_replicas() {
    let owner = Keypair::generate();
    let owner_id = id_from_pubkey(&owner.public());
    let mut keys: Vec<Keypair> = (0..6).map(|_| Keypair::generate()).collect();
    keys.sort_by_key(|k| k.id() ^ owner_id);
    let ip = |i: u8| [127, 0, 0, 130 + i];
    let r1 = Node::start(fast_config(ip(0), keys[0].clone(), vec![])).expect("r1");
    let edge = r1.local_addr();
    let r2 = Node::start(fast_config(ip(1), keys[1].clone(), vec![edge])).expect("r2");
    let r3 = Node::start(fast_config(ip(2), keys[2].clone(), vec![edge])).expect("r3");
    let x = Node::start(fast_config(ip(3), keys[3].clone(), vec![edge])).expect("x");
    let first = [&r1, &r2, &r3, &x];
    assert!(
        wait_until(Duration::from_secs(10), || first
            .iter()
            .all(|n| n.stats().peers_active >= 3)),
        "first four active"
    );
    let key = b"survivor2";
    // The default put (`Node::put` is `put_with` with default options), under the owner's key.
    let options = PutOptions {
        owner: Some(owner.clone()),
        ..PutOptions::default()
    };
    let outcome = x.put_with(key, b"still here", &options).expect("put");
    assert!(outcome.v1.is_none(), "an all-v2 network gets no v1 copy");
    let report = outcome.v2.expect("a v2 record").report;
    assert_eq!(report.sent_to.len(), 3);
    assert!(wait_until(Duration::from_secs(3), || [&r1, &r2, &r3]
        .iter()
        .all(|n| holds2(n, &owner, key))));

    let a = Node::start(fast_config(ip(4), keys[4].clone(), vec![r2.local_addr()])).expect("a");
    let b = Node::start(fast_config(ip(5), keys[5].clone(), vec![r2.local_addr()])).expect("b");
    let all = [&r1, &r2, &r3, &x, &a, &b];
    assert!(
        wait_until(Duration::from_secs(10), || all
            .iter()
            .all(|n| n.stats().peers_active >= 5)),
        "all six active"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!holds2(&a, &owner, key) && !holds2(&b, &owner, key));

    // The putter leaves: a is now among the three closest peers and receives a copy by repair.
    let start = Instant::now();
    drop(x);
    assert!(
        wait_until(Duration::from_secs(5), || holds2(&a, &owner, key)),
        "a repaired"
    );
    eprintln!("x left: a holds the v2 record after {:?}", start.elapsed());
    let start = Instant::now();
    drop(r1);
    assert!(
        wait_until(Duration::from_secs(5), || holds2(&b, &owner, key)),
        "b repaired"
    );
    eprintln!("r1 left: b holds the v2 record after {:?}", start.elapsed());
    std::thread::sleep(Duration::from_secs(1));
    let survivors = [&r2, &r3, &a, &b];
    let repair_datagrams: u64 = survivors
        .iter()
        .map(|n| n.stats2().repair_datagrams_sent)
        .sum();
    let v1_repair: u64 = survivors
        .iter()
        .map(|n| n.stats().repair_datagrams_sent)
        .sum();
    drop(r2);
    std::thread::sleep(Duration::from_secs(2));
    drop(r3);
    std::thread::sleep(Duration::from_secs(2));

    for (name, n) in [("a", &a), ("b", &b)] {
        let found = n
            .get_with(
                &owner.public(),
                key,
                Duration::from_secs(2),
                GetOptions { strict: true },
            )
            .unwrap_or_else(|e| panic!("strict get on {name}: {e}"));
        assert!(matches!(found, AnyRecord::V2(_)), "a v2 record");
        assert_eq!(found.value(), b"still here");
    }
    eprintln!(
        "v2 repair traffic of the survivors until r1 had left: {repair_datagrams} PUT2 \
         datagrams (v1 repair: {v1_repair})"
    );
    assert!(repair_datagrams >= 2);
    assert_eq!(v1_repair, 0, "no v1 record to repair");
}

#[test]
fn repair_traffic_stays_within_its_budget() {
    const RECORDS: usize = 200;
    let budget = |ip: [u8; 4], edges| Config {
        repair_bytes_per_s: 64 * 1024,
        repair_burst_bytes: 8 * 1024,
        ..fast_config(ip, Keypair::generate(), edges)
    };
    // A node alone with 200 records (nobody to replicate to yet).
    let source = Node::start(budget([127, 0, 0, 116], vec![])).expect("source");
    let owners: Vec<Keypair> = (0..RECORDS).map(|_| Keypair::generate()).collect();
    let value = vec![0xA5u8; 300];
    for (i, owner) in owners.iter().enumerate() {
        let report = source
            .put_as(owner, format!("r{i}").as_bytes(), &value, TEST_WORK_BITS)
            .expect("put");
        assert!(report.sent_to.is_empty());
    }
    // Three peers join: every record now belongs on all three, and only repair can move it.
    let peers: Vec<Node> = (0..3u8)
        .map(|i| {
            Node::start(budget([127, 0, 0, 117 + i], vec![source.local_addr()])).expect("peer")
        })
        .collect();
    // (just before reading the counter, the counter, just after): the read happened between the
    // two instants, so a pair of samples is judged over the longest interval it can span.
    let mut samples: Vec<(Instant, u64, Instant)> = Vec::new();
    let held = |n: &Node| {
        owners
            .iter()
            .enumerate()
            .filter(|(i, o)| {
                n.get_local(&o.public(), format!("r{i}").as_bytes())
                    .is_some()
            })
            .count()
    };
    let start = Instant::now();
    let done = wait_until(Duration::from_secs(30), || {
        let before = Instant::now();
        let sent = source.stats().repair_bytes_sent;
        samples.push((before, sent, Instant::now()));
        peers.iter().all(|p| held(p) == RECORDS)
    });
    assert!(
        done,
        "records held by the peers: {:?}",
        peers.iter().map(held).collect::<Vec<_>>()
    );
    let stats = source.stats();
    let first = samples
        .iter()
        .find(|(_, b, _)| *b > 0)
        .copied()
        .expect("repair sent");
    let last = samples.last().copied().expect("samples");
    let secs = last.0.duration_since(first.0).as_secs_f64().max(0.001);
    let sent = last.1 - first.1;
    // One PUT is 3 + 155 + key + 300 bytes; each record goes to three peers.
    let minimum: u64 = (0..RECORDS)
        .map(|i| 3 * (3 + 155 + format!("r{i}").len() as u64 + 300))
        .sum();
    eprintln!(
        "repair: {} datagrams, {} bytes ({} needed) in {:.2} s after the first send ({:.1} KiB/s; \
         budget 64 KiB/s, burst 8 KiB); passes started {} completed {}; all records placed \
         {:.2} s after the peers started",
        stats.repair_datagrams_sent,
        stats.repair_bytes_sent,
        minimum,
        secs,
        sent as f64 / secs / 1024.0,
        stats.repair_passes_started,
        stats.repair_passes_completed,
        start.elapsed().as_secs_f64(),
    );
    assert!(stats.repair_bytes_sent >= minimum);
    // Between any two samples the source never sent more than the budget allows (plus one
    // record's sends, taken whole).
    for (i, &(t1, b1, _)) in samples.iter().enumerate() {
        for &(_, b2, t2) in &samples[i + 1..] {
            let allowed =
                8.0 * 1024.0 + 64.0 * 1024.0 * t2.duration_since(t1).as_secs_f64() + 3.0 * 462.0;
            assert!(
                (b2 - b1) as f64 <= allowed,
                "{} bytes in {:?}",
                b2 - b1,
                t2.duration_since(t1)
            );
        }
    }
    for p in &peers {
        assert!(p.stats().repair_bytes_sent as f64 <= 8192.0 + 65536.0 * 31.0);
    }
}
