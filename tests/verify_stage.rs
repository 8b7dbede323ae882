//! The PUT verification stage (`Config::put_verify_stage`, `node::verify`) over real UDP on
//! loopback (127.0.0.140–141): two nodes, one screening PUTs in the stage, one on the shard
//! owners (the default), receive the same mix of PUTs (valid records of many owners, copies of them,
//! newer versions, forged signatures, too little work) and come out with the same records and
//! the same counters.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use dave::pow::{VerifyError, make_dat_single};
use dave::stats::verify_error_index;
use dave::wire::Message;
use dave::{Config, Keypair, Node};

/// Distinct owners (so the PUTs spread over the shards and owners).
const OWNERS: usize = 150;

#[test]
fn the_stage_and_the_owners_store_and_refuse_alike() {
    let nodes: Vec<Node> = [true, false]
        .into_iter()
        .zip([140u8, 141])
        .map(|(stage, ip)| {
            Node::start(Config {
                put_verify_stage: stage,
                ..test_config([127, 0, 0, ip], vec![])
            })
            .expect("node")
        })
        .collect();
    let now = dave::time::unix_now_ms() - 1_000;
    let owners: Vec<Keypair> = (0..OWNERS).map(|_| Keypair::generate()).collect();
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    let mut emit = |dat: &dave::wire::Dat<Box<[u8]>>| {
        let mut buf = [0u8; 1424];
        let len = Message::Put(dat.as_view()).emit(&mut buf);
        datagrams.push(buf[..len].to_vec());
    };
    let mut expected = Vec::new();
    for (i, owner) in owners.iter().enumerate() {
        // Keys differ per owner: a v1 record's work does not cover its owner's key, so equal
        // keys, values and times would make equal work (refused as reused).
        let key = format!("k{i}");
        let old = make_dat_single(owner, key.as_bytes(), b"old", now - 10, TEST_WORK_BITS);
        let new = make_dat_single(owner, key.as_bytes(), b"new", now, TEST_WORK_BITS);
        match i % 5 {
            // The old version, then the new one, then the old again (refused: older).
            0 => {
                emit(&old);
                emit(&new);
                emit(&old);
                expected.push((owner.public(), key.clone()));
            }
            // Three copies of one record (two duplicates).
            1 => {
                emit(&new);
                emit(&new);
                emit(&new);
                expected.push((owner.public(), key.clone()));
            }
            // A forged signature, then the real record with the same work.
            2 => {
                let mut forged = new.fields();
                forged.sig = Keypair::generate().sign(&forged.work);
                emit(&forged.to_dat());
                emit(&new);
                expected.push((owner.public(), key.clone()));
            }
            // Not enough work: never stored.
            3 => {
                let mut lazy = new.fields();
                lazy.work = [0xff; 32];
                emit(&lazy.to_dat());
            }
            _ => {
                emit(&new);
                expected.push((owner.public(), key.clone()));
            }
        }
    }
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for node in &nodes {
        // In order, and slowly enough that no queue fills (each waits for the one before).
        for (i, d) in datagrams.iter().enumerate() {
            socket.send_to(d, node.local_addr()).expect("send");
            let deadline = Instant::now() + Duration::from_secs(2);
            while node.stats().puts_received < (i + 1) as u64 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    for node in &nodes {
        assert!(
            wait_until(Duration::from_secs(5), || expected.iter().all(
                |(pk, key)| {
                    node.get_local(pk, key.as_bytes())
                        .is_some_and(|d| d.value() == b"new")
                }
            )),
            "every valid record, newest version, stored on {}: missing {:?}; {:?}",
            node.local_addr(),
            expected
                .iter()
                .enumerate()
                .filter(|(_, (pk, key))| node
                    .get_local(pk, key.as_bytes())
                    .is_none_or(|d| d.value() != b"new"))
                .map(|(i, _)| i)
                .collect::<Vec<_>>(),
            node.stats()
        );
    }
    let stats: Vec<_> = nodes.iter().map(Node::stats).collect();
    let bad_sig = verify_error_index(VerifyError::BadSignature);
    let low_work = verify_error_index(VerifyError::WorkMismatch);
    let not_enough = verify_error_index(VerifyError::NotEnoughWork);
    for s in &stats {
        assert_eq!(s.puts_received, datagrams.len() as u64, "{s:?}");
        assert_eq!(s.shard_channel_full + s.verify_channel_full, 0);
        assert_eq!(s.put_invalid[bad_sig], (OWNERS / 5) as u64, "{s:?}");
        assert_eq!(s.records, expected.len() as u64);
    }
    let (stage, owners_path) = (&stats[0], &stats[1]);
    // The stage's threads may hand an owner two versions of one key in the other order (the
    // newer is stored, the older refused, where the owners' path stores both in turn), and a
    // copy screened while the record before it is still on its way to its owner is refused as
    // a duplicate where the owner would say older: what must agree is that every valid PUT was
    // stored or refused as a version, and the records held (above).
    let versions = |s: &dave::stats::Stats| s.puts_stored + s.puts_duplicate + s.puts_older;
    assert_eq!(versions(stage), versions(owners_path));
    assert_eq!(
        owners_path.puts_stored, OWNERS as u64,
        "one version stored per owner"
    );
    assert_eq!(stage.put_invalid, owners_path.put_invalid);
    assert_eq!(
        stage.put_invalid[low_work] + stage.put_invalid[not_enough],
        (OWNERS / 5) as u64
    );
    assert_eq!(
        owners_path.puts_duplicate + owners_path.puts_older,
        (3 * OWNERS / 5) as u64,
        "two copies of case 1, one older of case 0: {owners_path:?}"
    );
}
