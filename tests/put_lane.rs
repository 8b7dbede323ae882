//! The PUT lane (`Config::put_lane`): the SO_REUSEPORT group's program steers the ops that carry
//! a record to verify to a socket of their own and spreads the rest over the other sockets; a
//! node reads PUTs only on that socket, GETs never; and a flood of fresh forgeries larger than
//! the owners can verify is left in the kernel, which drops it at the lane's full queue, while
//! every GET sent meanwhile is answered. Every datagram is accounted for: read by the lane, read
//! by the receivers, or dropped by the kernel. PUTs sent in segmented runs (UDP GSO) reach a
//! lane with UDP GRO on as whole runs, and every PUT of them is stored. Real UDP on loopback.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use dave::limits::MAX_PACKET_LEN;
use dave::net::{SocketOptions, SteerOps, bind_node_sockets, set_udp_segment, spread_reuseport};
use dave::pow::make_dat_single;
use dave::wire::{GetRepr, Message};
use dave::{Config, Keypair, Node};

/// Datagrams of each kind sent to the steered group.
const STEER_DATAGRAMS: usize = 300;
/// Fewest non-steered datagrams each spread socket must get: Binomial(600, 1/2) falls below 200
/// with probability about 1e-16; a program that steered everything elsewhere would give 0.
const SPREAD_MIN_EACH: usize = 200;

/// Drains every socket of `sockets` without waiting, returning the first bytes of what each held.
fn drain(sockets: &[UdpSocket]) -> Vec<Vec<Option<u8>>> {
    let mut buf = [0u8; 64];
    sockets
        .iter()
        .map(|s| {
            s.set_nonblocking(true).expect("nonblocking");
            let mut firsts = Vec::new();
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                firsts.push(buf[..n].first().copied());
            }
            firsts
        })
        .collect()
}

#[test]
fn the_program_steers_its_ops_to_their_socket_and_spreads_the_rest() {
    let options = SocketOptions {
        read_timeout: Duration::from_millis(50),
        ..SocketOptions::default()
    };
    let group =
        bind_node_sockets(SocketAddr::from(([127, 0, 0, 30], 0)), 3, &options).expect("bind group");
    let steer = SteerOps {
        socket_index: 2,
        ops: &[2, 4],
    };
    spread_reuseport(&group.sockets[0], 2, Some(steer)).expect("attach program");
    let sender = UdpSocket::bind("127.0.0.31:0").expect("bind sender");
    let mut got = vec![Vec::new(); 3];
    // First bytes: two steered ops, two that are not (a GET and a neighbour of a steered op).
    let kinds: [u8; 4] = [2, 3, 4, 5];
    for i in 0..STEER_DATAGRAMS {
        for op in kinds {
            sender
                .send_to(&[op, i as u8, 0, 0], group.local_addr)
                .expect("send");
        }
        if i % 32 == 31 {
            // Drain as we go: loopback delivers synchronously, the buffers never fill.
            for (all, new) in got.iter_mut().zip(drain(&group.sockets)) {
                all.extend(new);
            }
        }
    }
    for (all, new) in got.iter_mut().zip(drain(&group.sockets)) {
        all.extend(new);
    }
    let count = |socket: usize, op: u8| got[socket].iter().filter(|&&f| f == Some(op)).count();
    for op in [2, 4] {
        assert_eq!(count(2, op), STEER_DATAGRAMS, "every op {op} on the lane");
    }
    assert_eq!(
        got[2].len(),
        2 * STEER_DATAGRAMS,
        "nothing else on the lane"
    );
    for (socket, firsts) in got[..2].iter().enumerate() {
        assert!(
            firsts.len() >= SPREAD_MIN_EACH,
            "the other ops spread over both sockets: {} on socket {socket}",
            firsts.len()
        );
    }
    assert_eq!(
        count(0, 3) + count(1, 3) + count(0, 5) + count(1, 5),
        2 * STEER_DATAGRAMS,
        "every other datagram arrived"
    );
    // An empty datagram has no first byte: the program aborts, which names socket 0.
    sender.send_to(&[], group.local_addr).expect("send");
    let mut buf = [0u8; 8];
    group.sockets[0]
        .set_nonblocking(false)
        .expect("blocking again");
    group.sockets[0]
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    assert_eq!(
        group.sockets[0].recv_from(&mut buf).map(|(n, _)| n).ok(),
        Some(0),
        "an empty datagram is still delivered"
    );
}

/// A GET datagram for `owner`'s `key`.
fn get_datagram(owner: &Keypair, key: &[u8]) -> Vec<u8> {
    let mut get = [0u8; MAX_PACKET_LEN];
    let len = Message::Get(GetRepr {
        pubkey: &owner.public(),
        key,
    })
    .emit(&mut get);
    get[..len].to_vec()
}

/// PUTs sent in the routing test.
const ROUTED_PUTS: usize = 40;
/// GETs sent in the routing test.
const ROUTED_GETS: usize = 60;

/// Sends ROUTED_PUTS valid PUTs and ROUTED_GETS GETs to a node with two receivers and
/// `put_lane`; returns (datagrams the lane read, datagrams received in all, records stored).
fn routed(ip: u8, put_lane: bool) -> (u64, u64, u64) {
    let config = Config {
        receiver_threads: 2,
        put_lane,
        ..test_config([127, 0, 0, ip], vec![])
    };
    let node = Node::start(config).expect("node starts");
    let owner = Keypair::from_seed(&[ip; 32]);
    let now = dave::time::unix_now_ms() - 1_000;
    let sender = UdpSocket::bind(SocketAddr::from(([127, 0, 0, ip + 1], 0))).expect("bind");
    let mut datagram = [0u8; MAX_PACKET_LEN];
    for i in 0..ROUTED_PUTS {
        let key = format!("key-{i}");
        let dat = make_dat_single(&owner, key.as_bytes(), b"value", now, TEST_WORK_BITS);
        let len = Message::Put(dat.as_view()).emit(&mut datagram);
        sender
            .send_to(&datagram[..len], node.local_addr())
            .expect("send");
    }
    let get = get_datagram(&owner, b"key-0");
    for _ in 0..ROUTED_GETS {
        sender.send_to(&get, node.local_addr()).expect("send");
    }
    let want = (ROUTED_PUTS + ROUTED_GETS) as u64;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = node.stats();
            s.packets_received >= want && s.records >= ROUTED_PUTS as u64
        }),
        "every datagram received and every PUT stored"
    );
    let stats = node.stats();
    (
        stats.put_lane_datagrams,
        stats.packets_received,
        stats.records,
    )
}

#[test]
fn a_node_reads_puts_on_their_lane_and_gets_elsewhere() {
    let all = (ROUTED_PUTS + ROUTED_GETS) as u64;
    assert_eq!(
        routed(40, true),
        (ROUTED_PUTS as u64, all, ROUTED_PUTS as u64),
        "with the lane: the PUTs and only they on the lane"
    );
    assert_eq!(
        routed(42, false),
        (0, all, ROUTED_PUTS as u64),
        "without: no lane"
    );
}

/// Forged PUTs sent in the flood test: far more than one owner with a 4-deep queue verifies
/// while they arrive, and than a 256 KiB receive queue holds (each ~1 KiB of kernel memory).
const FLOOD_PUTS: usize = 20_000;
/// GETs sent during the flood, one after each FLOOD_PUTS / FLOOD_GETS forgeries, each waited for.
const FLOOD_GETS: usize = 50;
/// Receive buffer asked for: small, so the lane's queue fills on any machine.
const FLOOD_RECV_BUFFER_BYTES: usize = 256 << 10;

#[test]
fn a_flood_the_owners_cannot_take_stays_in_the_kernel_and_gets_are_answered() {
    let ip = 50;
    let config = Config {
        receiver_threads: 2,
        shard_owner_threads: 1,
        shard_channel_depth: 4,
        socket_recv_buffer_bytes: FLOOD_RECV_BUFFER_BYTES,
        // The client is unproven: let the amplification budget answer all its GETs.
        amplification_prefix_burst_bytes: 1 << 20,
        amplification_global_burst_bytes: 1 << 20,
        ..test_config([127, 0, 0, ip], vec![])
    };
    let node = Node::start(config).expect("node starts");
    let owner = Keypair::from_seed(&[ip; 32]);
    let now = dave::time::unix_now_ms() - 1_000;
    let stored = make_dat_single(&owner, b"stored", b"value", now, TEST_WORK_BITS);
    node.put_dat(stored.clone()).expect("local put");
    // Valid work, a signature by someone else: every copy with another first 8 signature bytes
    // is a record never seen before, and costs an owner a verification.
    let valid = make_dat_single(&owner, b"forged", b"value", now, TEST_WORK_BITS);
    let forged = {
        let mut f = valid.fields();
        f.sig = Keypair::generate().sign(&f.work);
        f.to_dat()
    };
    let flooder = UdpSocket::bind(SocketAddr::from(([127, 0, 0, ip + 1], 0))).expect("bind");
    let client = UdpSocket::bind(SocketAddr::from(([127, 0, 0, ip + 2], 0))).expect("bind");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let get = get_datagram(&owner, b"stored");
    let mut datagram = [0u8; MAX_PACKET_LEN];
    let mut reply = [0u8; MAX_PACKET_LEN];
    let mut answered = 0;
    for i in 0..FLOOD_PUTS {
        let mut f = forged.fields();
        f.sig[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let len = Message::Put(f.to_dat().as_view()).emit(&mut datagram);
        flooder
            .send_to(&datagram[..len], node.local_addr())
            .expect("send");
        if i % (FLOOD_PUTS / FLOOD_GETS) == 0 {
            client.send_to(&get, node.local_addr()).expect("send");
            if let Ok((n, _)) = client.recv_from(&mut reply)
                && matches!(Message::parse(&reply[..n]), Ok(Message::GetAck(d)) if d.value() == b"value")
            {
                answered += 1;
            }
        }
    }
    assert_eq!(answered, FLOOD_GETS, "every GET answered during the flood");
    // Every forgery is read by the lane or dropped by the kernel at its full queue; the other
    // receivers read the GETs only.
    let accounted = wait_until(Duration::from_secs(10), || {
        let s = node.stats();
        s.put_lane_datagrams + s.put_lane_kernel_drops >= FLOOD_PUTS as u64
    });
    let stats = node.stats();
    assert!(accounted, "forgeries unaccounted for: {stats:?}");
    assert_eq!(
        stats.put_lane_datagrams + stats.put_lane_kernel_drops,
        FLOOD_PUTS as u64
    );
    assert_eq!(
        stats.packets_received - stats.put_lane_datagrams,
        FLOOD_GETS as u64,
        "the GET receivers read nothing but the GETs"
    );
    assert!(stats.put_lane_backoffs > 0, "the owner's queue filled");
    assert!(
        stats.put_lane_kernel_drops > 0,
        "the kernel dropped what the owner could not take"
    );
    // What the lane read was shed at the full queue, refused, or is still being verified.
    assert!(stats.shard_channel_full > 0);
    assert_eq!(stats.records, 1, "no forgery stored");
}

/// PUTs sent in segmented runs in the coalescing test: two sends of 32.
const SEGMENTED_PUTS: usize = 64;

/// Sends SEGMENTED_PUTS valid PUTs of one length as UDP GSO sends of 32 to a node with the
/// lane and `put_lane_gro`; returns (datagrams the lane read, of them coalesced, records).
fn segmented(ip: u8, put_lane_gro: bool) -> (u64, u64, u64) {
    let config = Config {
        receiver_threads: 2,
        put_lane_gro,
        ..test_config([127, 0, 0, ip], vec![])
    };
    let node = Node::start(config).expect("node starts");
    let owner = Keypair::from_seed(&[ip; 32]);
    let now = dave::time::unix_now_ms() - 1_000;
    let mut puts: Vec<Vec<u8>> = Vec::new();
    for i in 0..SEGMENTED_PUTS {
        let key = format!("key-{i:03}"); // one length for all, as GSO needs
        let dat = make_dat_single(&owner, key.as_bytes(), b"value", now, TEST_WORK_BITS);
        let mut datagram = [0u8; MAX_PACKET_LEN];
        let len = Message::Put(dat.as_view()).emit(&mut datagram);
        puts.push(datagram[..len].to_vec());
    }
    let segment = puts[0].len();
    assert!(puts.iter().all(|p| p.len() == segment));
    let sender = UdpSocket::bind(SocketAddr::from(([127, 0, 0, ip + 1], 0))).expect("bind");
    set_udp_segment(&sender, segment as u16).expect("UDP GSO");
    for run in puts.chunks(32) {
        sender
            .send_to(&run.concat(), node.local_addr())
            .expect("send");
    }
    assert!(
        wait_until(Duration::from_secs(10), || node.stats().records
            >= SEGMENTED_PUTS as u64),
        "every PUT stored: {:?}",
        node.stats()
    );
    let stats = node.stats();
    (
        stats.put_lane_datagrams,
        stats.put_lane_coalesced,
        stats.records,
    )
}

#[test]
fn segmented_runs_of_puts_reach_the_lane_whole_and_every_put_is_stored() {
    let all = SEGMENTED_PUTS as u64;
    assert_eq!(
        segmented(60, true),
        (all, all, all),
        "with UDP GRO: each run read whole, each PUT in it stored"
    );
    assert_eq!(
        segmented(62, false),
        (all, 0, all),
        "without: the kernel cuts the runs, each PUT stored all the same"
    );
}
