//! Listed routing IDs are proven by the node (issue 12, `Config::route_verify_ids`) over real UDP
//! on loopback (127.0.0.250–253): a fake routing peer (raw sockets in this test, speaking the
//! wire format) answers FIND_NODE with forged contacts — a made-up ID at an honest node's address,
//! and the honest node's ID at an address the faker owns — and the node's lookup returns neither,
//! while its router counts the forgeries and its peer table the proof PINGs and PONGs.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use dave::keys::{Keypair, id_from_pubkey};
use dave::limits::{ADDR_LEN, MAX_PACKET_LEN, MAX_PONG_ADDRS};
use dave::wire::ext::build_salt;
use dave::wire::route::{NodesRepr, RouteMessage};
use dave::wire::{Features, Message, PongRepr, addr_to_wire, pong_signed_hash};
use dave::{Config, Node};

fn routing_config(ip: [u8; 4], edges: Vec<SocketAddr>) -> Config {
    Config {
        route_bucket_size: 4,
        route_lookups: true,
        ..test_config(ip, edges)
    }
}

/// A raw socket answering as `keypair`: every PING with a valid PONG that advertises ROUTING,
/// every FIND_NODE with a NODES listing `listed` once `lying` is set (nothing before). Runs
/// until dropped.
struct Fake {
    addr: SocketAddr,
    lying: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(ip: [u8; 4], keypair: Keypair, listed: Vec<(u64, SocketAddr)>) -> Fake {
        let socket = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind fake");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let lying = Arc::new(AtomicBool::new(false));
        let lies = Arc::clone(&lying);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; MAX_PACKET_LEN];
            let mut out = [0u8; MAX_PACKET_LEN];
            let mut nonce = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let bytes = &buf[..n];
                if let Ok(Message::Ping { challenge }) = Message::parse(bytes) {
                    nonce += 1;
                    let salt = build_salt(nonce.to_le_bytes(), Features::ALL);
                    let pong = PongRepr {
                        addr_count: 0,
                        addrs: [[0; ADDR_LEN]; MAX_PONG_ADDRS],
                        challenge,
                        salt,
                        pubkey: keypair.public(),
                        sig: keypair.sign(&pong_signed_hash(&challenge, &salt)),
                    };
                    let len = Message::Pong(pong).emit(&mut out);
                    let _ = socket.send_to(&out[..len], from);
                } else if let Ok(RouteMessage::FindNode(req)) = RouteMessage::parse(bytes) {
                    let mut nodes = NodesRepr::new(req.nonce);
                    if lies.load(Ordering::Relaxed) {
                        for &(id, at) in &listed {
                            nodes.push(id, addr_to_wire(at));
                        }
                    }
                    let len = RouteMessage::Nodes(nodes).emit(&mut out);
                    let _ = socket.send_to(&out[..len], from);
                }
            }
        });
        Fake {
            addr,
            lying,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn forged_listings_never_come_out_of_a_lookup() {
    let target: u64 = 0x5A5A_5A5A_5A5A_5A5A;
    // An honest node nobody told about the others.
    let honest = Node::start(routing_config([127, 0, 0, 250], vec![])).expect("honest node");
    let honest_id = id_from_pubkey(&honest.public_key());
    // A sock puppet holding its own key: it answers FIND_NODE (listing nothing) and PINGs.
    let puppet = Fake::start([127, 0, 0, 251], Keypair::generate(), Vec::new());
    // The liar: the node's edge and routing contact, listing a made-up ID (the target itself,
    // the closest possible) at the honest node's address, and the honest ID at the puppet's.
    let liar = Fake::start(
        [127, 0, 0, 252],
        Keypair::generate(),
        vec![(target, honest.local_addr()), (honest_id, puppet.addr)],
    );
    let node = Node::start(routing_config([127, 0, 0, 253], vec![liar.addr])).expect("node");
    assert!(
        wait_until(Duration::from_secs(10), || node.route_stats().contacts >= 1),
        "the liar becomes a routing contact"
    );
    // The join's bucket refreshes went through the liar while it listed nothing; from now on
    // it lies, so the forged contacts reach the node in this test's lookup and are proven there.
    std::thread::sleep(Duration::from_millis(300));
    let asked_before = node.route_stats().proofs_asked;
    liar.lying.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let found = node.lookup(target, Duration::from_secs(5));
    let took = started.elapsed();
    for c in &found {
        assert_ne!(c.id, target, "the made-up ID came out: {found:?}");
        assert!(
            !(c.id == honest_id && c.addr == puppet.addr),
            "the honest ID at the puppet's address came out: {found:?}"
        );
        assert!(c.verified, "only proven contacts come out: {found:?}");
    }
    let route = node.route_stats();
    let peer = node.stats().peer;
    eprintln!(
        "lookup {took:?}: {found:?}; router proofs asked {}, forged {}; peer table proof PINGs \
         {}, answered {}, known {}",
        route.proofs_asked,
        route.forged_ids_refused,
        peer.proofs_sent,
        peer.proofs_succeeded,
        peer.proofs_known
    );
    assert!(route.proofs_asked > asked_before, "{route:?}");
    assert!(
        route.forged_ids_refused >= 1,
        "the router counted a forgery: {route:?}"
    );
    // Listed addresses were proven by PINGs (the honest node's at least: the puppet's may be
    // dropped with its liar first; the honest node may also have become a peer, pinged by the
    // table, when it introduced itself back), answered with their own keys.
    assert!(peer.proofs_sent + peer.proofs_known >= 1, "{peer:?}");
    assert!(peer.proofs_succeeded + peer.proofs_known >= 1, "{peer:?}");
    assert_eq!(peer.proofs_bad_signature, 0);
    // A proof PONG is not an error of the peer table.
    assert_eq!(peer.unsolicited_pong, 0, "{peer:?}");
    assert_eq!(peer.wrong_challenge, 0, "{peer:?}");
    assert!(took < Duration::from_secs(5), "lookup took {took:?}");
    // The honest node's real ID is what its address proved: a later lookup of its ID finds it.
    let again = node.lookup(honest_id, Duration::from_secs(5));
    assert!(
        again
            .iter()
            .all(|c| c.addr != honest.local_addr() || c.id == honest_id),
        "{again:?}"
    );
    drop(liar);
    drop(puppet);
}
