//! A replayed bad-signature PUT costs a lookup, not a verification: 20,000 copies of one PUT
//! whose work is valid and whose signature is not, sent over real UDP to a node, are refused
//! with at most a few Ed25519 verifications, every copy accounted for by a counter. The node's
//! CPU time over the replay (sum of its threads' `/proc/self/task/*/schedstat` run times) is
//! printed; see README ("Refused-record cache") for the figure.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use dave::pow::make_dat_single;
use dave::stats::{VERIFY_ERRORS, verify_error_index};
use dave::wire::Message;
use dave::{Config, Keypair, Node};

/// Copies replayed.
const REPLAYS: usize = 20_000;

/// Copies sent back to back before a pause, well under the owner channel's depth, so no copy is
/// shed for a full channel (which would make the test easy): each reaches the receiver's check
/// of the refused-signature slots or, before the first refusal is remembered, the owner.
const BURST: usize = 200;

/// CPU time, ns, of this process's threads whose name starts with `dave-` (the node's).
fn node_cpu_ns() -> u64 {
    let mut total = 0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("dave-") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

#[test]
fn replays_of_a_bad_signature_cost_a_lookup() {
    let config = Config {
        shard_channel_depth: 1024,
        ..test_config([127, 0, 0, 1], vec![])
    };
    let node = Node::start(config).expect("start");
    let owner = Keypair::generate();
    let now = dave::time::unix_now_ms() - 1_000;
    let good = make_dat_single(&owner, b"replayed", b"value", now, TEST_WORK_BITS);
    let bad = {
        let mut f = good.fields();
        f.sig = Keypair::generate().sign(&f.work);
        f.to_dat()
    };
    let mut datagram = [0u8; 1424];
    let len = Message::Put(bad.as_view()).emit(&mut datagram);
    let datagram = &datagram[..len];

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let to = node.local_addr();
    let cpu_before = node_cpu_ns();
    let started = Instant::now();
    for burst in 0..REPLAYS / BURST {
        for _ in 0..BURST {
            socket.send_to(datagram, to).expect("send");
        }
        // Let the node drain the burst (bounded wait: never longer than 200 ms per burst).
        let want = ((burst + 1) * BURST) as u64;
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline {
            let s = node.stats();
            if s.puts_received + s.shard_channel_full + s.verify_channel_full >= want {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    let all_counted = wait_until(Duration::from_secs(5), || {
        let s = node.stats();
        s.puts_received + s.shard_channel_full + s.verify_channel_full >= REPLAYS as u64
    });
    let cpu_ms = (node_cpu_ns() - cpu_before) as f64 / 1e6;
    let stats = node.stats();
    assert!(all_counted, "every replay reached a counter: {stats:?}");

    let bad_signature = verify_error_index(dave::pow::VerifyError::BadSignature);
    assert_eq!(
        VERIFY_ERRORS[bad_signature],
        dave::pow::VerifyError::BadSignature
    );
    let verified_bad = stats.put_invalid[bad_signature];
    let by_cache = stats.puts_refused_known_bad_signature;
    let by_batch = stats.puts_refused_repeat_in_batch;
    eprintln!(
        "{REPLAYS} replays in {:?}: signature verifications failed {verified_bad}, refused by \
         the cache {by_cache}, repeats in a batch {by_batch}, shed at the receiver {}, node CPU \
         {cpu_ms:.1} ms",
        started.elapsed(),
        stats.shard_channel_full + stats.verify_channel_full
    );
    // The first batch verifies the record once; everything after is a lookup.
    assert!(
        (1..=3).contains(&verified_bad),
        "verifications: {verified_bad}"
    );
    assert_eq!(
        verified_bad + by_cache + by_batch,
        stats.puts_received,
        "every received copy is a verification failure, a cache hit or a batch repeat"
    );
    assert!(
        stats.puts_received >= (REPLAYS as u64) * 9 / 10,
        "most replays reached the owner (not shed): {stats:?}"
    );
    assert_eq!(stats.puts_stored, 0);
    assert!(node.get_local(&owner.public(), b"replayed").is_none());

    // The honest record with the same work is not poisoned by the forgery.
    let mut datagram = [0u8; 1424];
    let len = Message::Put(good.as_view()).emit(&mut datagram);
    socket.send_to(&datagram[..len], to).expect("send");
    assert!(
        wait_until(Duration::from_secs(5), || node
            .get_local(&owner.public(), b"replayed")
            .is_some()),
        "the genuine record is stored"
    );
}
