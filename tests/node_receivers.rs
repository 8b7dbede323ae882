//! The receivers' socket layout (`Config::shared_receiver_socket`): several receiver threads on
//! one shared socket answer GETs from many senders (as do per-receiver SO_REUSEPORT sockets), and
//! the shared socket keeps the port the node's alone. Real UDP on loopback.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::test_config;
use dave::limits::MAX_PACKET_LEN;
use dave::wire::{Dat, GetRepr, Message};
use dave::{Keypair, Node};
use socket2::{Domain, Protocol, Socket, Type};

/// Senders, each on its own source address: more than receivers, so that with per-receiver
/// sockets some receivers would share senders.
const SENDERS: u8 = 8;
/// GETs per sender: few enough that an unproven sender's amplification budget answers them all
/// (a 39-byte GET against a ~170-byte GET_ACK).
const GETS_PER_SENDER: usize = 3;

fn node(ip: [u8; 4], shared: bool) -> Node {
    let config = dave::Config {
        receiver_threads: 2,
        shared_receiver_socket: shared,
        ..test_config(ip, vec![])
    };
    Node::start(config).expect("node starts")
}

/// Sends GETS_PER_SENDER GETs from each sender and counts the GET_ACKs carrying the record.
fn answered(node: &Node, owner: &Keypair, key: &[u8], base: u8) -> usize {
    let mut get = [0u8; MAX_PACKET_LEN];
    let len = Message::Get(GetRepr {
        pubkey: &owner.public(),
        key,
    })
    .emit(&mut get);
    let senders: Vec<UdpSocket> = (0..SENDERS)
        .map(|i| {
            let s = UdpSocket::bind(SocketAddr::from(([127, 0, 0, base + i], 0))).expect("bind");
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            s
        })
        .collect();
    for _ in 0..GETS_PER_SENDER {
        for s in &senders {
            s.send_to(&get[..len], node.local_addr()).expect("send");
        }
    }
    let mut found = 0;
    let mut buf = [0u8; MAX_PACKET_LEN + 1];
    for s in &senders {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut mine = 0;
        while mine < GETS_PER_SENDER && Instant::now() < deadline {
            let Ok((n, _)) = s.recv_from(&mut buf) else {
                continue;
            };
            if let Ok(Message::GetAck(dat)) = Message::parse(&buf[..n]) {
                let dat: Dat<&[u8]> = dat;
                if dat.key() == key && !dat.is_not_found() {
                    mine += 1;
                }
            }
        }
        found += mine;
    }
    found
}

/// Whether another socket can join the node's port with SO_REUSEPORT.
fn port_joinable(addr: SocketAddr) -> bool {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    s.set_reuse_port(true).expect("reuseport");
    s.bind(&addr.into()).is_ok()
}

#[test]
fn shared_socket_receivers_answer_every_sender() {
    let n = node([127, 0, 0, 160], true);
    let owner = Keypair::from_seed(&[3; 32]);
    n.put_as(&owner, b"shared", b"value", common::TEST_WORK_BITS)
        .expect("put");
    let got = answered(&n, &owner, b"shared", 161);
    assert_eq!(got, SENDERS as usize * GETS_PER_SENDER);
    // One socket bound without SO_REUSEPORT: nobody can join the port, now or later.
    assert!(!port_joinable(n.local_addr()), "the port is the node's alone");
}

#[test]
fn reuseport_receivers_answer_every_sender() {
    let n = node([127, 0, 0, 170], false);
    let owner = Keypair::from_seed(&[4; 32]);
    n.put_as(&owner, b"per-socket", b"value", common::TEST_WORK_BITS)
        .expect("put");
    let got = answered(&n, &owner, b"per-socket", 171);
    assert_eq!(got, SENDERS as usize * GETS_PER_SENDER);
    // No exclusivity assertion here: a socket of the same user can join an SO_REUSEPORT group
    // after the node's bind-time check (`net::bind_udp` docs); the shared layout closes that.
}
