//! Fuzz target for `Message::parse`: any bytes, never a panic, and a property on success.
//!
//! When a datagram parses, emitting the parsed message must give back exactly the input bytes
//! (parse is a bijection on what it accepts: no two inputs share a parse, nothing is dropped or
//! smuggled), every accessor must work, and addresses and dats must survive their own
//! owned-form round trips. Datagrams with a routing-extension op (0x10..=0x17) go to
//! `wire::route::RouteMessage::parse` under the same bijection property.

#![no_main]

use dave::limits::MAX_PACKET_LEN;
use dave::wire::route::{ROUTE_OPS, RouteMessage};
use dave::wire::{Dat, Message, addr_from_wire, addr_to_wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.first().is_some_and(|op| ROUTE_OPS.contains(op)) {
        assert!(
            Message::parse(data).is_err(),
            "v1 never parses an extension op"
        );
        let Ok(msg) = RouteMessage::parse(data) else {
            return;
        };
        assert!(data.len() <= MAX_PACKET_LEN);
        assert_eq!(msg.buffer_len(), data.len());
        let mut buf = [0u8; MAX_PACKET_LEN];
        let n = msg.emit(&mut buf);
        assert_eq!(&buf[..n], data, "emit(parse(x)) != x");
        if let RouteMessage::Nodes(nodes) = msg {
            for (_, wire) in nodes.entries() {
                assert_eq!(&addr_to_wire(addr_from_wire(wire)), wire);
            }
        }
        return;
    }
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    assert!(data.len() <= MAX_PACKET_LEN);
    assert_eq!(msg.buffer_len(), data.len());
    let mut buf = [0u8; MAX_PACKET_LEN];
    let n = msg.emit(&mut buf);
    assert_eq!(&buf[..n], data, "emit(parse(x)) != x");
    match msg {
        Message::Put(dat) | Message::GetAck(dat) => {
            // The fields re-emit to the same dat, and the owned copy is the same record.
            let fields = dat.fields();
            assert_eq!(fields.buffer_len(), dat.len());
            let owned = fields.to_dat();
            assert_eq!(owned.as_bytes(), dat.as_bytes());
            assert_eq!(Dat::new_checked(owned.as_bytes()).ok(), Some(dat));
            assert_eq!(msg.record_key(), Some((dat.pubkey(), dat.key())));
            let _ = (dat.is_not_found(), dat.owner_id(), format!("{dat:?}"));
        }
        Message::Pong(pong) => {
            assert!(pong.addrs().len() <= 5);
            for wire in pong.addrs() {
                assert_eq!(&addr_to_wire(addr_from_wire(wire)), wire);
            }
        }
        Message::GetMyAddrPortAck(wire) => {
            assert_eq!(addr_to_wire(addr_from_wire(&wire)), wire);
        }
        Message::Get(get) => {
            let mut again = [0u8; MAX_PACKET_LEN];
            let n = get.emit(&mut again);
            assert_eq!(&again[..n], data);
        }
        Message::Ping { .. } | Message::GetMyAddrPort => {}
    }
});
