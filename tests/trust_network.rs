//! Storage challenges and trust over real UDP on loopback (127.0.0.100–109): a peer that drops
//! every record it receives is scored down and then receives far fewer PUTs than honest peers,
//! its own PUTs are stored but not re-propagated, and honest peers keep a high score. The dropper
//! speaks the routing extension too: once scored down, the honest nodes' routing tables rank it
//! after every reliable contact (seen on the wire, in their NODES answers for its own ID).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use dave::keys::Keypair;
use dave::keys::id_from_pubkey;
use dave::limits::MAX_PACKET_LEN;
use dave::wire::ext::build_salt;
use dave::wire::route::{FindNodeRepr, NodesRepr, RouteMessage, find_node_len_for};
use dave::wire::{DatFields, Features, Message, addr_from_wire};
use dave::{Config, Node};

/// Faster timers than the reference (ping 200 ms, activation 1 s) and frequent challenges, so
/// the test runs in seconds. Every node must know every other within seconds, which the
/// one-second PING round's peer lists give: peers that speak ROUTING stay on it here
/// (`ping_routing_peers`; by default the router watches them and tables fill more slowly).
fn fast_config(ip: [u8; 4], edges: Vec<SocketAddr>) -> Config {
    Config {
        ping_routing_peers: true,
        ping_period_ms: 200,
        deactivate_after_ms: 600,
        drop_after_ms: 2_400,
        activation_delay_ms: 1_000,
        challenge_mean_gap_ms: 40,
        challenge_min_age_ms: 300,
        challenge_timeout_ms: 1_000,
        ..test_config(ip, edges)
    }
}

/// A peer that authenticates properly (answers PINGs with PONGs signed by its own key,
/// advertising ROUTING, and FIND_NODE with an empty NODES) but keeps nothing: every PUT is
/// dropped and every GET answered "not found".
struct Dropper {
    addr: SocketAddr,
    keypair: Keypair,
    socket: UdpSocket,
    stop: Arc<AtomicBool>,
    puts: Arc<AtomicU64>,
    gets: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Dropper {
    fn start(ip: [u8; 4], nodes: Vec<SocketAddr>) -> Dropper {
        let socket = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind dropper");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let keypair = Keypair::generate();
        let stop = Arc::new(AtomicBool::new(false));
        let puts = Arc::new(AtomicU64::new(0));
        let gets = Arc::new(AtomicU64::new(0));
        let thread = {
            let socket = socket.try_clone().expect("clone");
            let keypair = keypair.clone();
            let (stop, puts, gets) = (stop.clone(), puts.clone(), gets.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let mut out = [0u8; MAX_PACKET_LEN];
                let mut last_hello = Instant::now() - Duration::from_secs(10);
                while !stop.load(Ordering::Relaxed) {
                    // Say hello now and then: each node answers with one PING of its own.
                    if last_hello.elapsed() > Duration::from_secs(1) {
                        last_hello = Instant::now();
                        for &n in &nodes {
                            let len = Message::Ping { challenge: [1; 8] }.emit(&mut out);
                            let _ = socket.send_to(&out[..len], n);
                        }
                    }
                    let Ok((len, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Ok(RouteMessage::FindNode(req)) = RouteMessage::parse(&buf[..len]) {
                        let len = RouteMessage::Nodes(NodesRepr::new(req.nonce)).emit(&mut out);
                        let _ = socket.send_to(&out[..len], from);
                        continue;
                    }
                    match Message::parse(&buf[..len]) {
                        Ok(Message::Ping { challenge }) => {
                            let salt = build_salt(rand::random(), Features::ROUTING);
                            let pong = pong_datagram(&keypair, challenge, salt);
                            let _ = socket.send_to(&pong, from);
                        }
                        Ok(Message::Put(_)) => {
                            puts.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Message::Get(get)) => {
                            gets.fetch_add(1, Ordering::Relaxed);
                            let nf = DatFields::not_found(*get.pubkey, get.key).to_dat();
                            let len = Message::GetAck(nf.as_view()).emit(&mut out);
                            let _ = socket.send_to(&out[..len], from);
                        }
                        _ => {}
                    }
                }
            })
        };
        Dropper {
            addr,
            keypair,
            socket,
            stop,
            puts,
            gets,
            thread: Some(thread),
        }
    }

    fn puts(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }
}

impl Drop for Dropper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The contacts `node` lists, in its order, in a NODES answer to a FIND_NODE for `target` from a
/// fresh socket (padded, so the unproven asker gets a full answer).
fn nodes_for(node: &Node, target: u64) -> Vec<(u64, SocketAddr)> {
    let socket = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 105], 0))).expect("bind asker");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let nonce: [u8; 8] = rand::random();
    let req = RouteMessage::FindNode(FindNodeRepr {
        nonce,
        target,
        sender: 0x5EED,
        want: 8,
        padded_len: find_node_len_for(8),
    });
    let mut out = [0u8; MAX_PACKET_LEN];
    let len = req.emit(&mut out);
    let mut buf = [0u8; 2048];
    for _ in 0..10 {
        socket
            .send_to(&out[..len], node.local_addr())
            .expect("send");
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            let Ok((n, _)) = socket.recv_from(&mut buf) else {
                break;
            };
            if let Ok(RouteMessage::Nodes(nodes)) = RouteMessage::parse(&buf[..n])
                && nodes.nonce == nonce
            {
                return nodes
                    .entries()
                    .iter()
                    .map(|(id, addr)| (*id, addr_from_wire(addr)))
                    .collect();
            }
        }
    }
    panic!("no NODES answer from {}", node.local_addr());
}

fn score_of(node: &Node, addr: SocketAddr) -> Option<dave::peer::PeerScore> {
    node.peer_scores().into_iter().find(|s| s.addr == addr)
}

fn put_records(node: &Node, tag: &str, n: usize) {
    for i in 0..n {
        let owner = Keypair::generate();
        let key = format!("{tag}-{i}");
        node.put_as(
            &owner,
            key.as_bytes(),
            b"kept by honest peers",
            TEST_WORK_BITS,
        )
        .expect("put");
    }
}

#[test]
fn a_peer_that_drops_records_is_scored_down_and_avoided() {
    let edge = Node::start(fast_config([127, 0, 0, 100], vec![])).expect("edge");
    let mut honest = vec![edge];
    for i in 1..4u8 {
        let config = fast_config([127, 0, 0, 100 + i], vec![honest[0].local_addr()]);
        honest.push(Node::start(config).expect("node"));
    }
    let dropper = Dropper::start(
        [127, 0, 0, 104],
        honest.iter().map(|n| n.local_addr()).collect(),
    );
    assert!(
        wait_until(Duration::from_secs(15), || honest
            .iter()
            .all(|n| n.stats().peers_active >= 4)),
        "active peers: {:?}",
        honest
            .iter()
            .map(|n| n.stats().peers_active)
            .collect::<Vec<_>>()
    );

    // Routing: the dropper is an authenticated ROUTING peer, hence a routing contact, and the
    // closest possible one to its own ID: listed first.
    let dropper_id = id_from_pubkey(&dropper.keypair.public());
    let asked = &honest[1];
    assert!(
        wait_until(Duration::from_secs(10), || nodes_for(asked, dropper_id)
            .first()
            .is_some_and(|&(id, _)| id == dropper_id)),
        "{:?}",
        nodes_for(asked, dropper_id)
    );

    // Phase 1: nobody has a score yet; the dropper gets its share of records.
    let putter = &honest[0];
    put_records(putter, "phase1", 40);
    std::thread::sleep(Duration::from_millis(300));
    let dropper_phase1 = dropper.puts();
    assert!(dropper_phase1 >= 20, "dropper got {dropper_phase1} PUTs");

    // Challenges find out: every honest node scores the dropper unreliable.
    let unreliable = |n: &Node| {
        score_of(n, dropper.addr)
            .is_some_and(|s| s.successes + s.failures >= 2.5 && s.reliability < 0.5)
    };
    let start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || honest.iter().all(unreliable)),
        "scores of the dropper: {:?}",
        honest
            .iter()
            .map(|n| score_of(n, dropper.addr))
            .collect::<Vec<_>>()
    );
    eprintln!(
        "dropper judged unreliable by all after {:?}; it answered {} challenge GETs",
        start.elapsed(),
        dropper.gets.load(Ordering::Relaxed)
    );

    // Trust applies to routing: the scored-down dropper now comes after every reliable contact
    // in the NODES answer for its own ID (`RoutingTable::set_unreliable`).
    let listed = nodes_for(asked, dropper_id);
    eprintln!("NODES for the dropper's ID once it is unreliable: {listed:?}");
    assert!(listed.len() >= 2, "{listed:?}");
    if let Some(at) = listed.iter().position(|&(id, _)| id == dropper_id) {
        assert_eq!(at, listed.len() - 1, "listed last: {listed:?}");
    }

    // Phase 2: the same load; the dropper is now (almost) never chosen.
    let honest_before: Vec<u64> = honest.iter().map(|n| n.stats().puts_received).collect();
    let dropper_before = dropper.puts();
    put_records(putter, "phase2", 40);
    std::thread::sleep(Duration::from_millis(500));
    let dropper_phase2 = dropper.puts() - dropper_before;
    let honest_phase2: Vec<u64> = honest
        .iter()
        .zip(&honest_before)
        .map(|(n, before)| n.stats().puts_received - before)
        .collect();
    eprintln!(
        "PUTs received: dropper phase 1 {dropper_phase1}, phase 2 {dropper_phase2}; honest phase 2 {honest_phase2:?}"
    );
    let honest_min = honest_phase2[1..].iter().copied().min().unwrap_or(0);
    assert!(
        honest_min >= 40,
        "honest peers keep receiving: {honest_phase2:?}"
    );
    assert!(
        dropper_phase2 * 10 <= honest_min,
        "dropper {dropper_phase2} vs honest {honest_min}"
    );
    assert!(dropper_phase2 * 4 <= dropper_phase1);

    // Honest peers keep a high score in every honest node's eyes. A node challenges a peer only
    // for records it sent that peer, so records keep coming from every honest node in turn while
    // we wait (otherwise a pair that exchanged no sampled PUT in the phases above, more likely on
    // a loaded machine, would never be challenged).
    let mut round = 0usize;
    assert!(
        wait_until(Duration::from_secs(10), || {
            put_records(&honest[round % honest.len()], &format!("phase3-{round}"), 1);
            round += 1;
            honest.iter().all(|n| {
                honest
                    .iter()
                    .filter(|o| o.local_addr() != n.local_addr())
                    .all(|o| score_of(n, o.local_addr()).is_some_and(|s| s.successes >= 1.0))
            })
        }),
        "some honest peer was never challenged"
    );
    // Let the last of those records finish their hops before forwards are counted below.
    std::thread::sleep(Duration::from_millis(500));
    for n in &honest {
        for o in honest.iter().filter(|o| o.local_addr() != n.local_addr()) {
            let s = score_of(n, o.local_addr()).expect("scored");
            assert!(
                s.reliability >= 0.9,
                "{} scores honest {}: {s:?}",
                n.local_addr(),
                o.local_addr()
            );
        }
        let stats = n.stats();
        assert!(stats.challenges_sent > 0);
        assert!(stats.challenges_failed_not_found > 0, "{:?}", stats);
    }

    // A record from the unreliable peer is stored but not re-propagated.
    let receiver = &honest[1];
    let owner = Keypair::generate();
    let dat = dave::pow::make_dat_single(
        &owner,
        b"from-dropper",
        b"v",
        dave::time::unix_now_ms() - 100,
        TEST_WORK_BITS,
    );
    let mut out = [0u8; MAX_PACKET_LEN];
    let len = Message::Put(dat.as_view()).emit(&mut out);
    let forwarded_before = receiver.stats().puts_forwarded;
    dropper
        .socket
        .send_to(&out[..len], receiver.local_addr())
        .expect("send");
    assert!(wait_until(Duration::from_secs(3), || receiver
        .get_local(&owner.public(), b"from-dropper")
        .is_some()));
    assert!(receiver.stats().puts_not_forwarded_unreliable >= 1);
    assert_eq!(receiver.stats().puts_forwarded, forwarded_before);
    std::thread::sleep(Duration::from_millis(300));
    for n in honest
        .iter()
        .filter(|n| n.local_addr() != receiver.local_addr())
    {
        assert!(n.get_local(&owner.public(), b"from-dropper").is_none());
    }
    let _ = dropper.keypair.public();
}
