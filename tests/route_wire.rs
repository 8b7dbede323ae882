//! The routing extension's codec (`wire::route`): the vectors of `tests/data/route_vectors.json`
//! byte for byte, and properties (proptest): every FIND_NODE / NODES round-trips, no input
//! panics, no strict prefix of a valid message parses, the v1 codec refuses every extension op,
//! and an answer sized for an unproven requester is never longer than its request.

use std::net::SocketAddr;

use dave::limits::MAX_PACKET_LEN;
use dave::wire::route::{
    FIND_NODE_HEADER_LEN, FindNodeRepr, MAX_NODES_PER_REPLY, NODE_ENTRY_LEN, NODES_HEADER_LEN,
    NodesRepr, ROUTE_OPS, RouteMessage, find_node_len_for, max_entries_unproven,
};
use dave::wire::{Message, addr_from_wire, addr_to_wire, normalize_addr};
use proptest::prelude::*;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/route_vectors.json");
    let text = std::fs::read_to_string(path).expect("tests/data/route_vectors.json is readable");
    serde_json::from_str(&text).expect("route_vectors.json is valid JSON")
}

fn hex_of(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("valid hex")
}

fn emitted(msg: &RouteMessage) -> Vec<u8> {
    let mut buf = [0u8; MAX_PACKET_LEN];
    let n = msg.emit(&mut buf);
    assert_eq!(n, msg.buffer_len());
    buf[..n].to_vec()
}

#[test]
fn vectors_parse_to_their_fields_and_emit_back() {
    let v = vectors();
    let messages = v["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 4);
    for m in messages {
        let bytes = hex_of(&m["hex"]);
        assert_eq!(
            bytes.len() as u64,
            m["len"].as_u64().unwrap(),
            "{}",
            m["name"]
        );
        assert_eq!(u64::from(bytes[0]), m["op"].as_u64().unwrap());
        assert!(Message::parse(&bytes).is_err(), "v1 refuses {}", m["name"]);
        let msg = RouteMessage::parse(&bytes).expect("a vector parses");
        let f = &m["fields"];
        let nonce: [u8; 8] = hex_of(&f["nonce_hex"]).try_into().unwrap();
        match msg {
            RouteMessage::FindNode(req) => {
                assert_eq!(req.nonce, nonce);
                assert_eq!(req.target, f["target_u64"].as_u64().unwrap());
                assert_eq!(req.sender, f["sender_u64"].as_u64().unwrap());
                assert_eq!(u64::from(req.want), f["want"].as_u64().unwrap());
                assert_eq!(req.padded_len as u64, f["padded_len"].as_u64().unwrap());
                assert_eq!(req.padded_len, find_node_len_for(usize::from(req.want)));
            }
            RouteMessage::Nodes(nodes) => {
                assert_eq!(nodes.nonce, nonce);
                let listed = f["entries"].as_array().unwrap();
                assert_eq!(nodes.entries().len(), listed.len());
                for ((id, wire), e) in nodes.entries().iter().zip(listed) {
                    assert_eq!(*id, e["id_u64"].as_u64().unwrap());
                    let addr: SocketAddr = e["addr"].as_str().unwrap().parse().unwrap();
                    assert_eq!(addr_from_wire(wire), normalize_addr(addr));
                    assert_eq!(addr_to_wire(addr), *wire);
                }
            }
        }
        assert_eq!(emitted(&msg), bytes, "{}", m["name"]);
    }
}

#[test]
fn malformed_vectors_name_their_error() {
    let v = vectors();
    for m in v["malformed"].as_array().expect("malformed") {
        let bytes = hex_of(&m["hex"]);
        let err = RouteMessage::parse(&bytes).expect_err("malformed");
        assert_eq!(err.name(), m["error"].as_str().unwrap(), "{}", m["name"]);
    }
}

fn wire_addr() -> impl Strategy<Value = [u8; 18]> {
    any::<[u8; 18]>()
}

fn find_node() -> impl Strategy<Value = FindNodeRepr> {
    (
        any::<[u8; 8]>(),
        any::<u64>(),
        any::<u64>(),
        any::<u8>(),
        FIND_NODE_HEADER_LEN..=MAX_PACKET_LEN,
    )
        .prop_map(|(nonce, target, sender, want, padded_len)| FindNodeRepr {
            nonce,
            target,
            sender,
            want,
            padded_len,
        })
}

fn nodes() -> impl Strategy<Value = NodesRepr> {
    (
        any::<[u8; 8]>(),
        prop::collection::vec((any::<u64>(), wire_addr()), 0..=MAX_NODES_PER_REPLY),
    )
        .prop_map(|(nonce, entries)| {
            let mut n = NodesRepr::new(nonce);
            for (id, addr) in entries {
                assert!(n.push(id, addr));
            }
            n
        })
}

fn message() -> impl Strategy<Value = RouteMessage> {
    prop_oneof![
        find_node().prop_map(RouteMessage::FindNode),
        nodes().prop_map(RouteMessage::Nodes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips(msg in message()) {
        let bytes = emitted(&msg);
        prop_assert!(bytes.len() <= MAX_PACKET_LEN);
        let parsed = RouteMessage::parse(&bytes).unwrap();
        prop_assert_eq!(parsed, msg);
        prop_assert_eq!(emitted(&parsed), bytes);
    }

    #[test]
    fn no_strict_prefix_parses_and_one_more_byte_is_refused(msg in message()) {
        let bytes = emitted(&msg);
        // A FIND_NODE's zero padding may be cut anywhere down to its header: each cut is a
        // valid, shorter FIND_NODE. Below the header, and for NODES, nothing parses.
        let min = match msg {
            RouteMessage::FindNode(_) => FIND_NODE_HEADER_LEN,
            RouteMessage::Nodes(_) => bytes.len(),
        };
        for cut in 0..min {
            prop_assert!(RouteMessage::parse(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(1);
        prop_assert!(RouteMessage::parse(&longer).is_err());
    }

    #[test]
    fn any_bytes_never_panic(op in ROUTE_OPS, rest in prop::collection::vec(any::<u8>(), 0..1500)) {
        let mut bytes = vec![op];
        bytes.extend(rest);
        if let Ok(msg) = RouteMessage::parse(&bytes) {
            prop_assert_eq!(emitted(&msg), bytes.clone());
        }
        prop_assert!(Message::parse(&bytes).is_err());
    }

    #[test]
    fn unproven_answers_fit_in_their_request(want in 0usize..=MAX_NODES_PER_REPLY, len in FIND_NODE_HEADER_LEN..=MAX_PACKET_LEN) {
        let n = max_entries_unproven(len).min(want);
        prop_assert!(NODES_HEADER_LEN + n * NODE_ENTRY_LEN <= len);
        prop_assert!(max_entries_unproven(find_node_len_for(want)) >= want);
    }
}
