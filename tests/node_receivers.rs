//! The receivers' socket layouts (`Config::receiver_sockets`): with each layout a node with two
//! receivers answers GETs from many senders; the random spread hands one sender's datagrams to
//! both sockets of a group (the kernel's hash gives them all to one); the shared socket keeps
//! the port the node's alone; with one socket per receiver, a receiver takes datagrams queued on
//! the other's socket (`Config::receiver_steal_batches`), each handled once; with receivers on
//! demand (`Config::receivers_on_demand`) the spread feeds one receiver until a queue builds,
//! then both, and one again once the load is gone. Real UDP on loopback.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::test_config;
use dave::limits::MAX_PACKET_LEN;
use dave::net::{SocketOptions, bind_node_sockets, spread_reuseport_randomly};
use dave::wire::{GetRepr, Message};
use dave::{Keypair, Node, ReceiverSockets};
use socket2::{Domain, Protocol, Socket, Type};

/// Senders, each on its own source address: more than receivers, so that with per-receiver
/// sockets some receivers would share senders.
const SENDERS: u8 = 8;
/// GETs per sender: few enough that an unproven sender's amplification budget answers them all
/// (a 39-byte GET against a ~170-byte GET_ACK).
const GETS_PER_SENDER: usize = 3;
/// Datagrams one sender sends to a randomly spread group of two sockets.
const SPREAD_DATAGRAMS: usize = 400;
/// Fewest of them each socket must get. Binomial(400, 1/2) falls below 100 with probability
/// about 1e-24; the kernel's hash would give one socket all 400 and the other none.
const SPREAD_MIN_EACH: usize = 100;

fn node(ip: [u8; 4], sockets: ReceiverSockets) -> Node {
    let config = dave::Config {
        receiver_threads: 2,
        receiver_sockets: sockets,
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
            if let Ok(Message::GetAck(dat)) = Message::parse(&buf[..n])
                && dat.key() == key
                && !dat.is_not_found()
            {
                mine += 1;
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

fn every_sender_answered(ip: u8, sockets: ReceiverSockets) -> Node {
    let n = node([127, 0, 0, ip], sockets);
    let owner = Keypair::from_seed(&[ip; 32]);
    n.put_as(&owner, b"layout", b"value", common::TEST_WORK_BITS)
        .expect("put");
    let got = answered(&n, &owner, b"layout", ip + 1);
    assert_eq!(got, SENDERS as usize * GETS_PER_SENDER, "{sockets:?}");
    n
}

#[test]
fn random_spread_receivers_answer_every_sender() {
    every_sender_answered(150, ReceiverSockets::Random);
}

#[test]
fn hashed_receivers_answer_every_sender() {
    // No exclusivity assertion for the SO_REUSEPORT layouts: a socket of the same user can join
    // a group after the node's bind-time check (`net::bind_udp` docs); the shared layout closes
    // that.
    every_sender_answered(170, ReceiverSockets::Hashed);
}

#[test]
fn shared_socket_receivers_answer_every_sender_and_keep_the_port() {
    let n = every_sender_answered(190, ReceiverSockets::Shared);
    // One socket bound without SO_REUSEPORT: nobody can join the port, now or later.
    assert!(
        !port_joinable(n.local_addr()),
        "the port is the node's alone"
    );
}

#[test]
fn random_spread_hands_one_sender_to_every_socket() {
    let options = SocketOptions {
        read_timeout: Duration::from_millis(50),
        ..SocketOptions::default()
    };
    let group = bind_node_sockets(SocketAddr::from(([127, 0, 0, 210], 0)), 2, &options)
        .expect("bind group");
    spread_reuseport_randomly(&group.sockets[0], 2).expect("attach program");
    let sender = UdpSocket::bind("127.0.0.211:0").expect("bind sender");
    let mut got = [0usize; 2];
    let mut buf = [0u8; 64];
    for i in 0..SPREAD_DATAGRAMS {
        sender
            .send_to(&(i as u32).to_le_bytes(), group.local_addr)
            .expect("send");
        if i % 64 == 63 {
            // Drain as we go: loopback delivers synchronously, the buffers never fill.
            for (s, n) in group.sockets.iter().zip(got.iter_mut()) {
                s.set_nonblocking(true).expect("nonblocking");
                while s.recv_from(&mut buf).is_ok() {
                    *n += 1;
                }
            }
        }
    }
    for (s, n) in group.sockets.iter().zip(got.iter_mut()) {
        s.set_nonblocking(true).expect("nonblocking");
        while s.recv_from(&mut buf).is_ok() {
            *n += 1;
        }
    }
    assert_eq!(got[0] + got[1], SPREAD_DATAGRAMS, "every datagram arrived");
    assert!(
        got.iter().all(|&n| n >= SPREAD_MIN_EACH),
        "one sender spread over both sockets: {got:?}"
    );
}

#[test]
fn spreading_over_no_socket_is_refused() {
    let s = UdpSocket::bind("127.0.0.212:0").expect("bind");
    assert_eq!(
        spread_reuseport_randomly(&s, 0).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::InvalidInput)
    );
}

/// Datagrams per burst in the stealing test: enough that both sockets of a randomly spread pair
/// hold a queue while both receivers run (a 39-byte GET; the 4 MiB receive buffers hold them all).
const STEAL_BURST: usize = 2_000;
/// Bursts at most before the test gives up on seeing a steal.
const STEAL_BURSTS: usize = 5;

/// A GET for a key nobody stored (owner seeded with `ip`), and a sender bound on
/// 127.0.0.`ip + 1`.
fn absent_get_sender(ip: u8) -> (Vec<u8>, UdpSocket) {
    let owner = Keypair::from_seed(&[ip; 32]);
    let mut get = [0u8; MAX_PACKET_LEN];
    let len = Message::Get(GetRepr {
        pubkey: &owner.public(),
        key: b"absent",
    })
    .emit(&mut get);
    let sender = UdpSocket::bind(SocketAddr::from(([127, 0, 0, ip + 1], 0))).expect("bind");
    (get[..len].to_vec(), sender)
}

/// Sends bursts of GETs from one sender to a node with two randomly spread receiver sockets and
/// returns (datagrams sent, datagrams the receivers counted, datagrams stolen), stopping at the
/// first burst with a steal when `until_stolen`.
fn steal_bursts(ip: u8, steal_batches: usize, until_stolen: bool) -> (u64, u64, u64) {
    let config = dave::Config {
        receiver_threads: 2,
        receiver_sockets: ReceiverSockets::Random,
        receiver_steal_batches: steal_batches,
        // Both sockets fed from the start (on demand, one would be until a queue builds).
        receivers_on_demand: false,
        ..test_config([127, 0, 0, ip], vec![])
    };
    let node = Node::start(config).expect("node starts");
    let (get, sender) = absent_get_sender(ip);
    let get = &get[..];
    let before = node.stats().packets_received;
    let mut sent = 0u64;
    for _ in 0..STEAL_BURSTS {
        for _ in 0..STEAL_BURST {
            sender.send_to(get, node.local_addr()).expect("send");
        }
        sent += STEAL_BURST as u64;
        common::wait_until(Duration::from_secs(5), || {
            node.stats().packets_received - before >= sent
        });
        if until_stolen && node.stats().datagrams_stolen > 0 {
            break;
        }
    }
    let stats = node.stats();
    (
        sent,
        stats.packets_received - before,
        stats.datagrams_stolen,
    )
}

#[test]
fn a_receiver_takes_what_waits_on_the_other_receivers_socket_once() {
    let (sent, received, stolen) = steal_bursts(220, 4, true);
    assert!(stolen > 0, "no steal in {sent} datagrams");
    // Stolen datagrams are handled once, by whichever receiver took them.
    assert_eq!(received, sent, "every datagram handled exactly once");
    let (sent, received, stolen) = steal_bursts(230, 0, false);
    assert_eq!((received, stolen), (sent, 0), "stealing off");
}

/// Receive buffer asked for in the on-demand test: small, so that a queue of a few hundred
/// datagrams (an eighth of it, as the kernel counts their true size) is a backlog on any
/// machine whatever its `net.core.rmem_max` (the kernel grants at most that, doubled).
const ON_DEMAND_RECV_BUFFER_BYTES: usize = 256 << 10;
/// Datagrams per burst in the on-demand test, and bursts at most: a debug-build receiver takes
/// GETs far slower than one thread sends them, so the first burst queues hundreds.
const ON_DEMAND_BURST: usize = 2_000;
const ON_DEMAND_BURSTS: usize = 5;

#[test]
fn receivers_join_the_spread_when_a_queue_builds_and_leave_when_it_is_gone() {
    let ip = 240;
    let config = dave::Config {
        receiver_threads: 2,
        receiver_sockets: ReceiverSockets::Random,
        receivers_on_demand: true,
        socket_recv_buffer_bytes: ON_DEMAND_RECV_BUFFER_BYTES,
        ..test_config([127, 0, 0, ip], vec![])
    };
    let node = Node::start(config).expect("node starts");
    let (get, sender) = absent_get_sender(ip);
    let get = &get[..];
    let send = |n: usize| {
        for _ in 0..n {
            sender.send_to(get, node.local_addr()).expect("send");
        }
    };
    // A trickle, one GET every 5 ms, never queues: one receiver takes it all. (A backlog of an
    // eighth of the buffer, tens of GETs, would take a stall of that receiver of hundreds of
    // milliseconds; at one GET a millisecond a loaded machine's stall was nearly enough.)
    let before = node.stats().packets_received;
    for _ in 0..200 {
        send(1);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(common::wait_until(Duration::from_secs(5), || {
        node.stats().packets_received - before >= 200
    }));
    let stats = node.stats();
    assert_eq!(
        (stats.receiver_scale_ups, stats.datagrams_stolen),
        (0, 0),
        "a trickle neither adds a receiver nor leaves anything to steal"
    );
    // Bursts queue: the second receiver joins the spread.
    for _ in 0..ON_DEMAND_BURSTS {
        send(ON_DEMAND_BURST);
        std::thread::sleep(Duration::from_millis(100));
        if node.stats().receiver_scale_ups > 0 {
            break;
        }
    }
    assert_eq!(
        node.stats().receiver_scale_ups,
        1,
        "one burst queue adds the second receiver (and there are only two)"
    );
    // Light traffic again: after the hold (1 s) a window with slack takes it out. A receiver
    // decides when it wakes, so keep a GET coming every 50 ms.
    let left = common::wait_until(Duration::from_secs(10), || {
        send(1);
        node.stats().receiver_scale_downs > 0
    });
    let stats = node.stats();
    assert!(left, "the second receiver stays fed: {stats:?}");
    assert_eq!(
        (stats.receiver_scale_ups, stats.receiver_scale_downs),
        (1, 1)
    );
}
