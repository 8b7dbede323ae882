//! Replica maintenance by lookup (issue 12 item 5, `route::maintain`, `shard::maintain`) over
//! real UDP on loopback: 24 `Node`s with routing tables of k = 4, `route_lookups` on and short
//! maintenance intervals (republish every 2 s, age-out after 4 s). The three nodes closest to a
//! record's owner are stopped; the surviving holders' republish lookups put the record on the
//! new closest nodes, where a GET through a lookup finds it; a copy placed on the node farthest
//! from the owner ages out of it, and in the end only the three closest hold the record. Once
//! with a v1 record (127.0.7.1–24), once with a v2 record, the format `Node::put` makes by
//! default (127.0.8.1–24).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use dave::keys::{Keypair, distance, id_from_pubkey};
use dave::{Config, Node};
use dave::{PutOptions, RecordFormat};

const NODES: usize = 24;

fn node(nodes: &[Option<Node>], i: usize) -> &Node {
    nodes[i].as_ref().expect("a live node")
}
const REPUBLISH_MS: u64 = 2_000;
const EXPIRE_AFTER_MS: u64 = 4_000;

fn maintain_config(ip: [u8; 4], edges: Vec<SocketAddr>) -> Config {
    Config {
        route_bucket_size: 4,
        route_lookups: true,
        republish_interval_ms: REPUBLISH_MS,
        maintain_expire_after_ms: EXPIRE_AFTER_MS,
        maintain_lookups_per_s: 64,
        ..test_config(ip, edges)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    V1,
    V2,
}

/// Whether `node` holds a copy of (owner, key) in `format`.
fn holds(node: &Node, format: Format, owner: &[u8; 32], key: &[u8]) -> bool {
    match format {
        Format::V1 => node.get_local(owner, key).is_some(),
        Format::V2 => node.get_local2(owner, key).is_some(),
    }
}

/// Maintenance counters of `node` for `format`: (lookups started, PUT datagrams pushed, copies
/// aged out).
fn maintenance(node: &Node, format: Format) -> (u64, u64, u64) {
    match format {
        Format::V1 => {
            let s = node.stats();
            (
                s.maintain_lookups_started,
                s.repair_datagrams_sent,
                s.copies_aged_out,
            )
        }
        Format::V2 => {
            let s = node.stats2();
            (
                s.maintain_lookups_started,
                s.repair_datagrams_sent,
                s.copies_aged_out,
            )
        }
    }
}

#[test]
fn republish_moves_v1_records_to_the_new_closest_and_far_copies_age_out() {
    republish_moves_records_to_the_new_closest_and_far_copies_age_out(Format::V1, 7);
}

#[test]
fn republish_moves_v2_records_to_the_new_closest_and_far_copies_age_out() {
    republish_moves_records_to_the_new_closest_and_far_copies_age_out(Format::V2, 8);
}

fn republish_moves_records_to_the_new_closest_and_far_copies_age_out(format: Format, net: u8) {
    let first = Node::start(maintain_config([127, 0, net, 1], vec![])).expect("edge starts");
    let edge = first.local_addr();
    let mut nodes = vec![Some(first)];
    for i in 1..NODES {
        let node = Node::start(maintain_config([127, 0, net, 1 + i as u8], vec![edge]))
            .expect("node starts");
        nodes.push(Some(node));
    }
    let live = |nodes: &[Option<Node>]| -> Vec<usize> {
        (0..nodes.len()).filter(|&i| nodes[i].is_some()).collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || nodes
            .iter()
            .flatten()
            .all(|n| n.route_stats().contacts >= 4)),
        "every node has routing contacts"
    );
    let ids: Vec<u64> = nodes
        .iter()
        .flatten()
        .map(|n| id_from_pubkey(&n.public_key()))
        .collect();
    let owner = Keypair::generate();
    let owner_id = id_from_pubkey(&owner.public());
    let mut by_distance: Vec<usize> = (0..NODES).collect();
    by_distance.sort_by_key(|&i| distance(ids[i], owner_id));
    let closest: Vec<usize> = by_distance[..3].to_vec();
    let far = by_distance[NODES - 1];
    // Put from a node in the middle of the order (not a replica, not the far node).
    let putter = by_distance[NODES / 2];
    let value = b"moved by republish";
    let far_put = match format {
        Format::V1 => {
            let report = node(&nodes, putter)
                .put_as(&owner, b"kept", value, TEST_WORK_BITS)
                .expect("put");
            let record = report.dat.clone();
            Box::new(move |far: &Node| match far.put_dat(record) {
                Ok(_) | Err(dave::PutError::Refused(dave::shard::store::Refusal::Duplicate)) => {}
                Err(e) => panic!("far put: {e:?}"),
            }) as Box<dyn FnOnce(&Node)>
        }
        Format::V2 => {
            let options = PutOptions {
                format: RecordFormat::V2,
                owner: Some(owner.clone()),
                work_bits: Some(TEST_WORK_BITS),
                ..PutOptions::default()
            };
            let outcome = node(&nodes, putter)
                .put_with(b"kept", value, &options)
                .expect("put");
            assert!(outcome.v1.is_none(), "a v2 record only");
            let done = outcome.v2.expect("a v2 record");
            let (record, commit) = (done.record, [0u8; 64]);
            Box::new(move |far: &Node| {
                // A plain put stores the copy there (a duplicate is no error) and pushes it
                // to the closest its lookup finds.
                far.put_dat2(record, None, commit).expect("far put");
            }) as Box<dyn FnOnce(&Node)>
        }
    };
    assert!(
        wait_until(Duration::from_secs(10), || closest.iter().all(|&i| holds(
            node(&nodes, i),
            format,
            &owner.public(),
            b"kept"
        ))),
        "the three closest hold the record"
    );
    // A copy on the node farthest from the owner (a local put: stored there, pushed to the
    // closest its lookup finds). A replica's v1 forwarding may have given it a copy already.
    far_put(node(&nodes, far));
    assert!(holds(node(&nodes, far), format, &owner.public(), b"kept"));

    let holders_before: Vec<usize> = (0..NODES)
        .filter(|&i| holds(node(&nodes, i), format, &owner.public(), b"kept"))
        .map(|i| by_distance.iter().position(|&j| j == i).unwrap())
        .collect();
    eprintln!("holders by rank before the closest leave: {holders_before:?}");
    // The three closest leave.
    for &i in &closest {
        nodes[i] = None;
    }
    let alive = live(&nodes);
    let mut new_closest: Vec<usize> = alive.clone();
    new_closest.sort_by_key(|&i| distance(ids[i], owner_id));
    let new_closest: Vec<usize> = new_closest[..3].to_vec();
    // The survivors' republish lookups (every 2 s) put it on the new closest.
    let moved = wait_until(Duration::from_secs(25), || {
        new_closest
            .iter()
            .all(|&i| holds(node(&nodes, i), format, &owner.public(), b"kept"))
    });
    let held: Vec<bool> = new_closest
        .iter()
        .map(|&i| holds(node(&nodes, i), format, &owner.public(), b"kept"))
        .collect();
    let lookups: u64 = nodes
        .iter()
        .flatten()
        .map(|n| maintenance(n, format).0)
        .sum();
    eprintln!("new closest hold it: {held:?}; maintenance lookups {lookups}");
    assert!(moved, "the new closest hold the record: {held:?}");
    assert!(lookups > 0);
    // Pushed by maintenance: with `route_lookups` the v1 repair passes do not run, so these are
    // the republish pushes.
    let pushes: u64 = nodes
        .iter()
        .flatten()
        .map(|n| maintenance(n, format).1)
        .sum();
    assert!(pushes > 0);

    // A GET through a lookup, from a node that does not hold it, finds it.
    let getter = *alive
        .iter()
        .find(|&&i| {
            i != far && i != putter && !holds(node(&nodes, i), format, &owner.public(), b"kept")
        })
        .expect("a node without a copy");
    let getter = node(&nodes, getter);
    let before = getter.route_stats().lookups_done;
    let got = match format {
        Format::V1 => getter
            .get(&owner.public(), b"kept", Duration::from_secs(3))
            .expect("found after the replicas left")
            .value()
            .to_vec(),
        Format::V2 => getter
            .get2(&owner.public(), b"kept", Duration::from_secs(3))
            .expect("found after the replicas left")
            .value()
            .to_vec(),
    };
    assert_eq!(got, value);
    assert!(
        getter.route_stats().lookups_done > before,
        "through a lookup"
    );

    // The far copy: its holder's lookup finds three closer nodes, so it stops republishing and
    // the copy ages out 4 s after it was last stored.
    let far_node = node(&nodes, far);
    assert!(
        wait_until(Duration::from_secs(20), || !holds(
            far_node,
            format,
            &owner.public(),
            b"kept"
        )),
        "the far copy aged out"
    );
    assert!(maintenance(far_node, format).2 >= 1);
    // Every other copy (the putter's, one a v1 forward left, the getter's) ages out too, and
    // the closest replicas keep theirs (a replica never ages out by this rule): storage ends at
    // the three closest, whatever the network size.
    let holders = |nodes: &[Option<Node>]| -> Vec<usize> {
        live(nodes)
            .into_iter()
            .filter(|&i| holds(node(nodes, i), format, &owner.public(), b"kept"))
            .collect()
    };
    let mut want = new_closest.clone();
    want.sort_unstable();
    let settled = wait_until(Duration::from_secs(20), || holders(&nodes) == want);
    assert!(
        settled,
        "holders {:?}, the three closest {want:?}",
        holders(&nodes)
    );
    std::thread::sleep(Duration::from_millis(EXPIRE_AFTER_MS + 1_000));
    // Past a whole expiry the closest still hold theirs. A republish lookup that a closest node
    // answered too late (a loaded 2-core machine) may have pushed one more copy to the next
    // node found; that copy is not a replica's, so it ages out again and storage settles back
    // on the closest.
    let after_expiry = holders(&nodes);
    assert!(
        want.iter().all(|i| after_expiry.contains(i)),
        "the closest keep their copies: holders {after_expiry:?}, the three closest {want:?}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || holders(&nodes) == want),
        "holders {:?} settle back on the three closest {want:?}",
        holders(&nodes)
    );
    let aged: u64 = nodes
        .iter()
        .flatten()
        .map(|n| maintenance(n, format).2)
        .sum();
    eprintln!("copies aged out: {aged}");
}
