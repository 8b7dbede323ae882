//! Extension discovery (`wire::ext`, README "Wire compatibility"): the PONG salt marker against
//! the vectors in `tests/data/ext_vectors.json`, and peer tables learning each other's features
//! from real signed PONGs, including a v1-only table (`features = NONE`) whose salts stay random.

use std::net::SocketAddr;

use dave::keys::{Keypair, verify_signature};
use dave::peer::{Effects, Outgoing, PeerConfig, PeerTable};
use dave::wire::ext::{build_salt, parse_salt};
use dave::wire::{Features, Message, pong_signed_hash};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ext_vectors.json");
    let text = std::fs::read_to_string(path).expect("tests/data/ext_vectors.json is readable");
    serde_json::from_str(&text).expect("ext_vectors.json is valid JSON")
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    hex::decode(v.as_str().expect("a hex string"))
        .expect("valid hex")
        .try_into()
        .expect("hex of the expected length")
}

fn bits(v: &Value) -> Features {
    Features::from_bits(u32::try_from(v.as_u64().expect("an integer")).expect("a u32"))
}

#[test]
fn salt_vectors_build_and_parse() {
    let v = vectors();
    let m = &v["salt_marker"];
    assert_eq!(m["features"]["ROUTING"], Features::ROUTING.bits());
    assert_eq!(m["features"]["RECORD_V2"], Features::RECORD_V2.bits());
    let list = m["vectors"].as_array().expect("vectors");
    assert!(list.len() >= 4);
    for vec in list {
        let nonce: [u8; 8] = arr(&vec["nonce_hex"]);
        let features = bits(&vec["features"]);
        let salt: [u8; 16] = arr(&vec["salt_hex"]);
        assert_eq!(build_salt(nonce, features), salt, "{}", vec["name"]);
        assert_eq!(parse_salt(&salt), Some(features), "{}", vec["name"]);
    }
    for vec in m["v1_salts"].as_array().expect("v1_salts") {
        let salt: [u8; 16] = arr(&vec["salt_hex"]);
        assert_eq!(parse_salt(&salt), None, "{}", vec["name"]);
    }
}

#[test]
fn pong_vector_is_a_valid_v1_pong_carrying_features() {
    let v = vectors();
    let p = &v["pong"];
    let bytes = hex::decode(p["hex"].as_str().unwrap()).unwrap();
    let Ok(Message::Pong(pong)) = Message::parse(&bytes) else {
        panic!("the vector parses as a PONG");
    };
    let a = Keypair::from_seed(&arr(&p["seed_hex"]));
    assert_eq!(pong.pubkey, a.public());
    assert_eq!(pong.challenge, arr::<8>(&p["challenge_hex"]));
    assert_eq!(pong.salt, arr::<16>(&p["salt_hex"]));
    assert_eq!(
        build_salt(arr(&p["nonce_hex"]), bits(&p["features"])),
        pong.salt
    );
    assert_eq!(parse_salt(&pong.salt), Some(Features::ALL));
    // What a v1 node checks: the signature over blake3(challenge ‖ salt).
    let hash = pong_signed_hash(&pong.challenge, &pong.salt);
    assert!(verify_signature(&pong.pubkey, &hash, &pong.sig));
    // And the bytes are what we emit.
    let mut buf = [0u8; dave::limits::MAX_PACKET_LEN];
    let n = Message::Pong(pong).emit(&mut buf);
    assert_eq!(&buf[..n], &bytes[..]);
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn table(listen: SocketAddr, edges: &[SocketAddr], features: Features, seed: u8) -> PeerTable {
    let config = PeerConfig {
        listen_addr: Some(listen),
        edges: edges.to_vec(),
        features,
        ..PeerConfig::default()
    };
    PeerTable::new(config, Keypair::from_seed(&[seed; 32]), u64::from(seed)).unwrap()
}

/// Delivers every datagram of `fx` (sent by `from`) to whichever of `nodes` it is addressed,
/// through the wire codec, until no datagram is left (bounded).
fn run(nodes: &mut [(SocketAddr, PeerTable)], now_ms: u64, from: SocketAddr, fx: Effects) {
    let mut queue = vec![(from, fx)];
    let mut steps = 0;
    while let Some((src, fx)) = queue.pop() {
        for d in fx.datagrams {
            steps += 1;
            assert!(steps < 10_000, "bounded exchange");
            let mut buf = [0u8; dave::limits::MAX_PACKET_LEN];
            let n = d.message.emit(&mut buf);
            let msg = Message::parse(&buf[..n]).expect("we emit valid messages");
            if let Some((addr, t)) = nodes.iter_mut().find(|(a, _)| *a == d.to) {
                let reply = t.handle(now_ms, src, &msg);
                queue.push((*addr, reply));
            }
        }
    }
}

/// Runs ping rounds until every table has had time to authenticate and activate its peers.
fn settle(nodes: &mut [(SocketAddr, PeerTable)]) {
    for step in 0..80u64 {
        let now_ms = step * 100;
        for i in 0..nodes.len() {
            let addr = nodes[i].0;
            let fx = nodes[i].1.tick(now_ms);
            run(nodes, now_ms, addr, fx);
        }
    }
}

#[test]
fn tables_learn_features_from_signed_pongs_and_v1_only_stays_v1() {
    let (a, b, c) = (
        sa("10.0.0.1:4000"),
        sa("10.0.0.2:4000"),
        sa("10.0.0.3:4000"),
    );
    // A knows B and C as edges; B speaks everything, C is a v1-only dave node.
    let mut nodes = vec![
        (a, table(a, &[b, c], Features::ALL, 1)),
        (b, table(b, &[a], Features::ALL, 2)),
        (c, table(c, &[a], Features::NONE, 3)),
    ];
    settle(&mut nodes);
    let ta = &nodes[0].1;
    assert!(ta.is_active(b) && ta.is_active(c));
    assert_eq!(ta.features_of(b), Features::ALL);
    assert_eq!(ta.features_of(c), Features::NONE, "C advertises nothing");
    assert_eq!(nodes[1].1.features_of(a), Features::ALL);
    assert_eq!(
        nodes[2].1.features_of(a),
        Features::NONE,
        "a v1-only table records no feature even from a peer that advertises some"
    );
    // The published snapshot answers "does this peer speak ROUTING / RECORD_V2?".
    let snap = ta.snapshot();
    assert!(snap.speaks(b, Features::ROUTING));
    assert!(snap.speaks(b, Features::RECORD_V2));
    assert!(!snap.speaks(c, Features::ROUTING));
    assert!(
        !snap.speaks(b, Features::NONE),
        "the empty set is never 'spoken'"
    );
    let routing: Vec<SocketAddr> = snap.speaking(Features::ROUTING).map(|p| p.addr).collect();
    assert_eq!(routing, vec![b]);
}

#[test]
fn a_peer_advertising_less_later_is_downgraded() {
    let (a, b) = (sa("10.0.0.1:4000"), sa("10.0.0.2:4000"));
    let mut nodes = vec![
        (a, table(a, &[b], Features::ALL, 1)),
        (b, table(b, &[], Features::ROUTING, 2)),
    ];
    settle(&mut nodes);
    assert_eq!(nodes[0].1.features_of(b), Features::ROUTING);
    // B restarts as a v1-only node under the same key: A follows its latest signed PONG.
    nodes[1].1 = table(b, &[], Features::NONE, 2);
    let fx = nodes[0].1.tick(9_000);
    run(&mut nodes, 9_000, a, fx);
    assert!(nodes[0].1.is_active(b));
    assert_eq!(nodes[0].1.features_of(b), Features::NONE);
    assert!(!nodes[0].1.snapshot().speaks(b, Features::ROUTING));
}

#[test]
fn pong_salts_carry_the_marker_only_when_extensions_are_on() {
    let (me, asker) = (sa("10.0.0.1:4000"), sa("10.0.0.9:4000"));
    for (features, marked) in [
        (Features::ALL, true),
        (Features::ROUTING, true),
        (Features::NONE, false),
    ] {
        let mut t = table(me, &[], features, 1);
        for i in 0..64u8 {
            let fx = t.handle(u64::from(i), asker, &Message::Ping { challenge: [i; 8] });
            let pong = fx
                .datagrams
                .iter()
                .find_map(|d| match d.message {
                    Outgoing::Pong(p) => Some(p),
                    _ => None,
                })
                .expect("a PING is answered");
            if marked {
                assert_eq!(parse_salt(&pong.salt), Some(features));
            } else {
                // Random salts: a false match has probability 2^-32 per PONG.
                assert_eq!(parse_salt(&pong.salt), None);
            }
        }
    }
}
