//! The node's safety rules over real UDP: forged answers are never trusted, malformed datagrams
//! are dropped and counted without a reply, PONGs cannot poison the peer table, and stored data
//! survives losing a replica and a restart.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use dave::pow::make_dat_single;
use dave::wire::{DatFields, Message};
use dave::{Keypair, Node};

fn send_get_ack(socket: &std::net::UdpSocket, to: SocketAddr, dat: &[u8]) {
    let mut buf = [0u8; 1424];
    let view = dave::wire::Dat::new_checked(dat).expect("test dat is well formed");
    let n = Message::GetAck(view).emit(&mut buf);
    socket.send_to(&buf[..n], to).expect("send");
}

/// A node whose only peer is a fake that answers every GET with a forgery: nothing forged is
/// ever returned or stored, and every kind of forgery is counted.
#[test]
fn forged_get_acks_are_never_returned_or_stored() {
    let fake = FakePeer::bind([127, 0, 0, 40]);
    let node = Node::start(test_config([127, 0, 0, 41], vec![fake.addr()])).expect("start");
    // The edge is active as soon as it answers a PING.
    fake.serve_pings(Duration::from_millis(1_500));
    assert!(wait_until(Duration::from_secs(3), || {
        fake.serve_pings(Duration::from_millis(50));
        node.stats().peers_active == 1
    }));

    let owner = Keypair::generate();
    let now = dave::time::unix_now_ms() - 1_000;
    let good = make_dat_single(&owner, b"k", b"genuine", now, TEST_WORK_BITS);
    // Forgery 1: not enough work (salt whose work has too few zero bits, correctly signed).
    let weak = {
        let load = dave::pow::load_hash(b"k", b"weak", now);
        let mut n = 0u64;
        loop {
            let salt = dave::pow::salt_for_counter(n);
            let work = dave::pow::work_hash(&salt, &load);
            if dave::pow::leading_zero_bits(&work) < TEST_WORK_BITS {
                break dave::pow::sign_dat(&owner, b"k", b"weak", now, salt, work);
            }
            n += 1;
        }
    };
    // Forgery 2: bad signature (signed by someone else, claiming the owner's key).
    let bad_sig = {
        let mut f = good.fields();
        f.sig = Keypair::generate().sign(&f.work);
        f.value = b"genuine";
        f.to_dat()
    };
    // Forgery 3: value changed after signing (work no longer matches).
    let tampered = {
        let mut f = good.fields();
        f.value = b"tampered";
        f.to_dat()
    };
    // Forgery 4: a valid record, but for another key (not what was asked).
    let wrong_key = make_dat_single(&owner, b"other", b"x", now, TEST_WORK_BITS);

    // One get per forgery: each asked peer gets one answer, so each forgery needs its own get.
    // The last round answers "not found" from the peer and the genuine record from a stranger.
    let stranger = std::net::UdpSocket::bind("127.0.0.42:0").expect("stranger");
    let not_found = DatFields::not_found(owner.public(), b"k").to_dat();
    let rounds: [(&[u8], Option<&[u8]>); 5] = [
        (weak.as_bytes(), None),
        (bad_sig.as_bytes(), None),
        (tampered.as_bytes(), None),
        (wrong_key.as_bytes(), None),
        (not_found.as_bytes(), Some(good.as_bytes())),
    ];
    for (answer, from_stranger) in rounds {
        let result = std::thread::scope(|scope| {
            let handle =
                scope.spawn(|| node.get(&owner.public(), b"k", Duration::from_millis(800)));
            let mut answered = false;
            for _ in 0..20 {
                if let Some((bytes, from)) = fake.serve_until_other(Duration::from_millis(100))
                    && matches!(Message::parse(&bytes), Ok(Message::Get(_)))
                {
                    if let Some(genuine) = from_stranger {
                        send_get_ack(&stranger, from, genuine);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    send_get_ack(&fake.socket, from, answer);
                    answered = true;
                    break;
                }
            }
            assert!(answered, "the node asked its only peer");
            handle.join().expect("get thread")
        });
        assert!(
            result.is_err(),
            "a forged or unsolicited answer was returned: {result:?}"
        );
    }
    assert!(
        node.get_local(&owner.public(), b"k").is_none(),
        "nothing forged is stored"
    );
    assert!(
        node.get_local(&owner.public(), b"other").is_none(),
        "an unasked record is not stored"
    );
    let stats = node.stats();
    let invalid: u64 = stats.get_ack_invalid.iter().sum();
    assert_eq!(
        invalid, 3,
        "weak work, bad signature, tampered value: {:?}",
        stats.get_ack_invalid
    );
    assert!(
        stats.get_acks_unsolicited >= 2,
        "wrong key and stranger: {}",
        stats.get_acks_unsolicited
    );
    assert_eq!(stats.get_acks_valid, 0);
}

/// Every malformed datagram of a corpus is dropped and counted, the node sends nothing back, and
/// keeps answering a well-formed GET afterwards.
#[test]
fn malformed_datagrams_are_dropped_counted_and_never_answered() {
    let node = Node::start(test_config([127, 0, 0, 45], vec![])).expect("start");
    let to = node.local_addr();
    let attacker = std::net::UdpSocket::bind("127.0.0.46:0").expect("attacker");
    attacker
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");

    let owner = Keypair::generate();
    let dat = make_dat_single(
        &owner,
        b"key",
        b"value",
        dave::time::unix_now_ms() - 1_000,
        TEST_WORK_BITS,
    );
    let mut valid: Vec<Vec<u8>> = Vec::new();
    let mut buf = [0u8; 1424];
    let pong = dave::wire::PongRepr {
        addr_count: 2,
        addrs: [[7; 18]; 5],
        challenge: [1; 8],
        salt: [2; 16],
        pubkey: owner.public(),
        sig: [3; 64],
    };
    for message in [
        Message::Ping { challenge: [9; 8] },
        Message::Pong(pong),
        Message::Put(dat.as_view()),
        Message::Get(dave::wire::GetRepr {
            pubkey: &owner.public(),
            key: b"key",
        }),
        Message::GetAck(dat.as_view()),
        Message::GetMyAddrPort,
        Message::GetMyAddrPortAck([5; 18]),
    ] {
        let n = message.emit(&mut buf);
        valid.push(buf[..n].to_vec());
    }
    let mut corpus: Vec<Vec<u8>> = vec![Vec::new()];
    // Each op truncated at every length (the full length is valid and left out), and one byte long.
    for v in &valid {
        for len in 1..v.len() {
            corpus.push(v[..len].to_vec());
        }
        let mut long = v.clone();
        long.push(0);
        corpus.push(long);
    }
    // Wrong length fields.
    let mut put = valid[2].clone();
    put[1] ^= 1;
    corpus.push(put);
    for l in [200u8, 254, 255, 17, 19, 108] {
        let mut p = valid[1].clone();
        p[1] = l;
        corpus.push(p);
    }
    // Unknown ops, a 4000-byte datagram, random bytes.
    corpus.push(vec![7]);
    corpus.push(vec![255; 40]);
    corpus.push(vec![2; 4000]);
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    for len in [3usize, 50, 300, 1424] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                // Random bytes, but never a valid op byte first (those are covered above).
                rng_state as u8
            })
            .collect();
        let mut bytes = bytes;
        bytes[0] = 7 + (bytes[0] % 200);
        corpus.push(bytes);
    }
    for datagram in &corpus {
        attacker.send_to(datagram, to).expect("send");
    }
    let expected = corpus.len() as u64;
    assert!(
        wait_until(Duration::from_secs(3), || node.stats().malformed_total()
            >= expected),
        "counted {} of {expected}",
        node.stats().malformed_total()
    );
    let mut reply = [0u8; 2048];
    assert!(
        attacker.recv_from(&mut reply).is_err(),
        "the node answered a malformed datagram"
    );
    let stats = node.stats();
    assert_eq!(stats.malformed_total(), expected);
    assert_eq!(stats.packets_sent, 0, "nothing was sent at all");

    // Still serving: a well-formed GET from another socket gets its (not-found) answer.
    let client = std::net::UdpSocket::bind("127.0.0.47:0").expect("client");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let n = Message::Get(dave::wire::GetRepr {
        pubkey: &owner.public(),
        key: b"key",
    })
    .emit(&mut buf);
    client.send_to(&buf[..n], to).expect("send");
    let (n, _) = client
        .recv_from(&mut reply)
        .expect("the node still answers");
    match Message::parse(&reply[..n]) {
        Ok(Message::GetAck(dat)) => assert!(dat.is_not_found()),
        other => panic!("unexpected reply {other:?}"),
    }
    let not_found = DatFields::not_found(owner.public(), b"key").to_dat();
    assert_eq!(&reply[3..n], not_found.as_bytes());
}

/// PONGs listing our own address, too many addresses, or many on one prefix do not fill the
/// table: the node only ever adds peers that answered its own PING.
#[test]
fn poisoned_pongs_do_not_fill_the_table() {
    let fake = FakePeer::bind([127, 0, 0, 50]);
    let node = Node::start(test_config([127, 0, 0, 51], vec![fake.addr()])).expect("start");
    let own = node.local_addr();
    let mut buf = [0u8; 2048];
    let mut pinged_by_node = 0;
    let start = std::time::Instant::now();
    // For 2.5 s, answer every PING with a PONG listing our node's own address and four made-up
    // addresses on one /24 (nobody listens there).
    while start.elapsed() < Duration::from_millis(2_500) {
        let Ok((n, from)) = fake.socket.recv_from(&mut buf) else {
            continue;
        };
        if let Ok(Message::Ping { challenge }) = Message::parse(&buf[..n]) {
            pinged_by_node += 1;
            let salt = [4u8; 16];
            let sig = fake
                .keypair
                .sign(&dave::wire::pong_signed_hash(&challenge, &salt));
            let mut addrs = [[0u8; 18]; 5];
            addrs[0] = dave::wire::addr_to_wire(own);
            for (i, a) in addrs.iter_mut().enumerate().skip(1) {
                *a = dave::wire::addr_to_wire(SocketAddr::from(([10, 9, 8, i as u8], 4000)));
            }
            let pong = dave::wire::PongRepr {
                addr_count: 5,
                addrs,
                challenge,
                salt,
                pubkey: fake.keypair.public(),
                sig,
            };
            let n = Message::Pong(pong).emit(&mut buf);
            fake.socket.send_to(&buf[..n], from).expect("send");
            // A PONG with six addresses cannot even be encoded; send one by hand.
            let mut six = buf[..n].to_vec();
            six[1] = 6 * 18;
            six.splice(2..2, [0u8; 18]);
            fake.socket.send_to(&six, from).expect("send");
        }
    }
    assert!(pinged_by_node >= 2);
    let stats = node.stats();
    assert_eq!(stats.peers_active, 1, "only the real edge is a peer");
    assert!(
        stats.peers_known <= 1,
        "listed addresses never became peers: {}",
        stats.peers_known
    );
    assert!(stats.malformed[dave::wire::Error::TooManyAddrs.index()] >= 1);
    assert!(node.peers().get(own).is_none());
}

/// A record survives losing one replica, and a node's backup brings its records back after a
/// restart.
#[test]
fn records_survive_a_lost_replica_and_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_network(60, 5);
    assert!(wait_all_active(&nodes, Duration::from_secs(9)));
    let report = nodes[1]
        .put_as(nodes[1].keypair(), b"durable", b"data", TEST_WORK_BITS)
        .expect("put");
    let owner = nodes[1].public_key();
    // Stop one replica.
    let victim = nodes
        .iter()
        .position(|n| n.local_addr() == report.sent_to[0])
        .expect("replica");
    nodes.remove(victim);
    let asker = nodes
        .iter()
        .find(|n| n.public_key() != owner)
        .expect("another node");
    let got = asker
        .get(&owner, b"durable", Duration::from_secs(3))
        .expect("still returned");
    assert_eq!(got.value(), b"data");

    // Restart with a backup.
    let path = dir.path().join("node.log");
    let mut config = test_config([127, 0, 0, 70], vec![]);
    config.backup_path = Some(path.clone());
    config.sync_policy = dave::backup::SyncPolicy::EveryWrite;
    let keypair = Keypair::generate();
    config.keypair = Some(keypair.clone());
    let node = Node::start(config.clone()).expect("start");
    // `put` writes v2 records by default (and v1 only where a peer needs it: none here).
    node.put(b"a", b"1").expect("put a");
    node.put(b"b", b"2").expect("put b");
    let v1_only = dave::PutOptions {
        format: dave::RecordFormat::V1,
        ..Default::default()
    };
    node.put_with(b"c", b"3", &v1_only).expect("put c");
    drop(node);
    let node = Node::start(config).expect("restart");
    assert_eq!(
        node.get_local2(&keypair.public(), b"a")
            .expect("a back")
            .value(),
        b"1"
    );
    assert_eq!(
        node.get_local2(&keypair.public(), b"b")
            .expect("b back")
            .value(),
        b"2"
    );
    assert_eq!(
        node.get_local(&keypair.public(), b"c")
            .expect("c back")
            .value(),
        b"3"
    );
}

/// The peer table's refusals reach `Node::stats()`: an unsolicited PONG is counted there.
#[test]
fn peer_table_refusals_are_visible_in_node_stats() {
    let node = Node::start(test_config([127, 0, 0, 75], vec![])).expect("start");
    let stranger = FakePeer::bind([127, 0, 0, 76]);
    stranger.pong(node.local_addr(), [1; 8]);
    assert!(
        wait_until(Duration::from_secs(2), || node
            .stats()
            .peer
            .unsolicited_pong
            == 1),
        "unsolicited PONG counted: {:?}",
        node.stats().peer
    );
}

/// The PONGs of one ping round reach the peer thread together and are checked in one batch
/// (`PeerTable::check_pongs_together`); a peer that answers with a bad signature spoils at most
/// one batch, is refused as before, and the others stay accepted. Sixteen edges answer each
/// round's PINGs all at once, from one thread; edge 0 signs the wrong hash from its second answer
/// on.
#[test]
fn a_rounds_pongs_are_checked_together_and_a_bad_signer_spoils_at_most_one_batch() {
    const EDGES: u8 = 16;
    let fakes: Vec<FakePeer> = (1..=EDGES)
        .map(|i| FakePeer::bind([127, 0, 3, i]))
        .collect();
    let node = Node::start(test_config(
        [127, 0, 3, 100],
        fakes.iter().map(FakePeer::addr).collect(),
    ))
    .expect("start");
    for fake in &fakes {
        fake.socket.set_nonblocking(true).expect("nonblocking");
    }
    let mut answered = [0u32; EDGES as usize];
    let mut buf = [0u8; 2048];
    let start = std::time::Instant::now();
    // Four ping rounds (one a second): the first authenticates the edges, the later ones are
    // batched.
    while start.elapsed() < Duration::from_millis(3_600) {
        let mut pongs = Vec::new();
        for (i, fake) in fakes.iter().enumerate() {
            while let Ok((n, from)) = fake.socket.recv_from(&mut buf) {
                if let Ok(Message::Ping { challenge }) = Message::parse(&buf[..n]) {
                    let mut pong = pong_datagram(&fake.keypair, challenge, rand::random());
                    if i == 0 && answered[0] > 0 {
                        // Its own key's signature, over another hash (the last 64 bytes).
                        let sig = fake.keypair.sign(&[9u8; 32]);
                        let at = pong.len() - 64;
                        pong[at..].copy_from_slice(&sig);
                    }
                    answered[i] += 1;
                    pongs.push((i, pong, from));
                }
            }
        }
        for (i, pong, to) in &pongs {
            fakes[*i].socket.send_to(pong, *to).expect("send");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent: u32 = answered.iter().sum();
    assert!(
        wait_until(Duration::from_secs(2), || node.stats().peer.pongs_received
            == u64::from(sent)),
        "every PONG sent was handled: {:?}",
        node.stats().peer
    );
    let stats = node.stats().peer;
    eprintln!(
        "batched {} failed {} of {sent} PONGs",
        stats.pong_signatures_batched, stats.pong_batches_failed
    );
    assert!(
        answered.iter().all(|&n| n >= 3),
        "pinged each round: {answered:?}"
    );
    assert!(
        stats.pong_signatures_batched >= 2,
        "PONGs checked together: {stats:?}"
    );
    assert!(
        stats.pong_batches_failed <= 1,
        "one spoiled batch at most: {stats:?}"
    );
    assert_eq!(
        stats.bad_signature,
        u64::from(answered[0] - 1),
        "edge 0's later PONGs refused: {stats:?}"
    );
    let good: u32 = answered[1..].iter().sum();
    assert_eq!(
        stats.pongs_accepted,
        u64::from(good + 1),
        "every good PONG accepted: {stats:?}"
    );
}
