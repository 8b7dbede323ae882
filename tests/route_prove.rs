//! Listed routing IDs are proven by the node (issue 12, `Config::route_verify_ids`) over real UDP
//! on loopback (127.0.0.250–253): a fake routing peer (raw sockets in this test, speaking the
//! wire format) answers FIND_NODE with forged contacts — a made-up ID at an honest node's address,
//! and the honest node's ID at an address the faker owns — and the node's lookup returns neither,
//! while its router counts the forgeries and its peer table the proof PINGs and PONGs. And under
//! attack: a liar listing a fresh address for every contact of every answer, against a node
//! running lookups as fast as it can, gets no more proof PINGs out of it than
//! `route_proofs_per_s` allows, and fewer bytes than its listings cost it.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use dave::keys::{Keypair, id_from_pubkey};
use dave::limits::MAX_PACKET_LEN;
use dave::wire::ext::build_salt;
use dave::wire::route::{MAX_NODES_PER_REPLY, NodesRepr, RouteMessage};
use dave::wire::{Features, Message, addr_to_wire};
use dave::{Config, Node};

fn routing_config(ip: [u8; 4], edges: Vec<SocketAddr>) -> Config {
    Config {
        route_bucket_size: 4,
        route_lookups: true,
        ..test_config(ip, edges)
    }
}

/// What a fake lists in its NODES answers once lying.
enum Listing {
    /// These contacts, every time.
    Fixed(Vec<(u64, SocketAddr)>),
    /// As many contacts as asked for, each a random ID at the next of these addresses in turn.
    Rotate(Vec<SocketAddr>),
}

/// A raw socket answering as `keypair`: every PING with a valid PONG that advertises ROUTING,
/// every FIND_NODE with a NODES listing `listed` once `lying` is set (nothing before). Counts
/// the NODES bytes it sent. Runs until dropped.
struct Fake {
    addr: SocketAddr,
    lying: Arc<AtomicBool>,
    nodes_bytes_sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(ip: [u8; 4], keypair: Keypair, listed: Vec<(u64, SocketAddr)>) -> Fake {
        Fake::start_listing(ip, keypair, Listing::Fixed(listed))
    }

    fn start_listing(ip: [u8; 4], keypair: Keypair, listing: Listing) -> Fake {
        let socket = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind fake");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let lying = Arc::new(AtomicBool::new(false));
        let lies = Arc::clone(&lying);
        let nodes_bytes_sent = Arc::new(AtomicU64::new(0));
        let sent = Arc::clone(&nodes_bytes_sent);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; MAX_PACKET_LEN];
            let mut out = [0u8; MAX_PACKET_LEN];
            let mut nonce = 0u64;
            let mut next = 0usize;
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let bytes = &buf[..n];
                if let Ok(Message::Ping { challenge }) = Message::parse(bytes) {
                    nonce += 1;
                    let salt = build_salt(nonce.to_le_bytes(), Features::ALL);
                    let _ = socket.send_to(&pong_datagram(&keypair, challenge, salt), from);
                } else if let Ok(RouteMessage::FindNode(req)) = RouteMessage::parse(bytes) {
                    let mut nodes = NodesRepr::new(req.nonce);
                    if lies.load(Ordering::Relaxed) {
                        match &listing {
                            Listing::Fixed(listed) => {
                                for &(id, at) in listed {
                                    nodes.push(id, addr_to_wire(at));
                                }
                            }
                            Listing::Rotate(addrs) => {
                                for _ in 0..req.want.min(MAX_NODES_PER_REPLY as u8) {
                                    let at = addrs[next % addrs.len()];
                                    next += 1;
                                    nodes.push(rand::random(), addr_to_wire(at));
                                }
                            }
                        }
                    }
                    let len = RouteMessage::Nodes(nodes).emit(&mut out);
                    if socket.send_to(&out[..len], from).is_ok() {
                        sent.fetch_add(len as u64, Ordering::Relaxed);
                    }
                }
            }
        });
        Fake {
            addr,
            lying,
            nodes_bytes_sent,
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

/// Sockets that answer every FIND_NODE with an empty NODES (so a lookup takes them for live
/// contacts and asks for their proof) and never answer a PING (so every proof fails), counting
/// the bytes they receive: what the node under attack sends to the addresses a liar lists.
struct Accomplices {
    addrs: Vec<SocketAddr>,
    bytes_received: Arc<AtomicU64>,
    pings_received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Accomplices {
    /// `count` sockets on `ip`, served by `count / PER_THREAD` threads.
    fn start(ip: [u8; 4], count: usize) -> Accomplices {
        const PER_THREAD: usize = 32;
        let stop = Arc::new(AtomicBool::new(false));
        let bytes_received = Arc::new(AtomicU64::new(0));
        let pings_received = Arc::new(AtomicU64::new(0));
        let sockets: Vec<UdpSocket> = (0..count)
            .map(|_| {
                let s = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind accomplice");
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let addrs = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        let mut threads = Vec::new();
        let mut sockets = sockets.into_iter().peekable();
        while sockets.peek().is_some() {
            let group: Vec<UdpSocket> = sockets.by_ref().take(PER_THREAD).collect();
            let (stop, bytes, pings) = (
                Arc::clone(&stop),
                Arc::clone(&bytes_received),
                Arc::clone(&pings_received),
            );
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; MAX_PACKET_LEN];
                let mut out = [0u8; MAX_PACKET_LEN];
                while !stop.load(Ordering::Relaxed) {
                    let mut idle = true;
                    for socket in &group {
                        while let Ok((n, from)) = socket.recv_from(&mut buf) {
                            idle = false;
                            bytes.fetch_add(n as u64, Ordering::Relaxed);
                            if let Ok(RouteMessage::FindNode(req)) = RouteMessage::parse(&buf[..n])
                            {
                                let nodes = RouteMessage::Nodes(NodesRepr::new(req.nonce));
                                let len = nodes.emit(&mut out);
                                let _ = socket.send_to(&out[..len], from);
                            } else if let Ok(Message::Ping { .. }) = Message::parse(&buf[..n]) {
                                pings.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if idle {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }));
        }
        Accomplices {
            addrs,
            bytes_received,
            pings_received,
            stop,
            threads,
        }
    }
}

impl Drop for Accomplices {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn a_listing_flood_gets_no_more_proofs_than_the_rate_limit() {
    const PROOFS_PER_S: u32 = 32;
    const ATTACK: Duration = Duration::from_secs(3);
    const ASKERS: usize = 16;
    // 256 answering addresses: each is asked for a proof at most once per proof timeout, so
    // they can ask for ~128 proofs a second, four times the limit.
    let accomplices = Accomplices::start([127, 0, 0, 247], 256);
    let liar = Fake::start_listing(
        [127, 0, 0, 248],
        Keypair::generate(),
        Listing::Rotate(accomplices.addrs.clone()),
    );
    let node = Node::start(Config {
        route_proofs_per_s: PROOFS_PER_S,
        ..routing_config([127, 0, 0, 249], vec![liar.addr])
    })
    .expect("node");
    assert!(
        wait_until(Duration::from_secs(10), || node.route_stats().contacts >= 1),
        "the liar becomes a routing contact"
    );
    // Let the join's refreshes (through the liar, listing nothing yet) end and the burst refill.
    std::thread::sleep(Duration::from_millis(2_500));
    let (peer0, route0) = (node.stats().peer, node.route_stats());
    let (bytes0, pings0) = (
        accomplices.bytes_received.load(Ordering::Relaxed),
        accomplices.pings_received.load(Ordering::Relaxed),
    );
    liar.lying.store(true, Ordering::Relaxed);
    let started = Instant::now();
    // Askers run lookups of random targets for the attack's length (each waits at most 200 ms;
    // the lookup goes on in the router, up to its own bound of lookups in progress).
    let lookups_asked = std::thread::scope(|scope| {
        let askers: Vec<_> = (0..ASKERS)
            .map(|_| {
                scope.spawn(|| {
                    let mut asked = 0u64;
                    while started.elapsed() < ATTACK && asked < 1_000 {
                        node.lookup(rand::random(), Duration::from_millis(200));
                        asked += 1;
                    }
                    asked
                })
            })
            .collect();
        askers.into_iter().map(|a| a.join().unwrap()).sum::<u64>()
    });
    let elapsed = started.elapsed();
    liar.lying.store(false, Ordering::Relaxed);
    let (peer, route) = (node.stats().peer, node.route_stats());
    let listed_bytes = liar.nodes_bytes_sent.load(Ordering::Relaxed);
    // Give PINGs sent at the window's end time to land.
    std::thread::sleep(Duration::from_millis(100));
    let to_listed_bytes = accomplices.bytes_received.load(Ordering::Relaxed) - bytes0;
    let pings_seen = accomplices.pings_received.load(Ordering::Relaxed) - pings0;
    let proofs_sent = peer.proofs_sent - peer0.proofs_sent;
    let rate_limited = peer.proofs_rate_limited - peer0.proofs_rate_limited;
    let asked = route.proofs_asked - route0.proofs_asked;
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "listing flood for {elapsed:?}: {lookups_asked} lookups asked, {} NODES bytes listed \
         ({:.0} B/s); router asked {asked} proofs ({:.0}/s); proof PINGs sent {proofs_sent} \
         ({:.1}/s, limit {PROOFS_PER_S}/s + a {}-proof burst), rate-limited {rate_limited}, \
         pending-full {}; the listed addresses received {pings_seen} PINGs and \
         {to_listed_bytes} B in all ({:.0} B/s)",
        listed_bytes,
        listed_bytes as f64 / secs,
        asked as f64 / secs,
        proofs_sent as f64 / secs,
        u64::from(PROOFS_PER_S) * dave::peer::prover::PROOF_BURST_S,
        peer.proofs_full - peer0.proofs_full,
        to_listed_bytes as f64 / secs,
    );
    // The flood asked for more than the limit allows, and the limit held: the burst plus the
    // refill over the attack (one extra second of refill for the measuring window's edges).
    assert!(
        asked > proofs_sent,
        "the flood asked for more: {asked} vs {proofs_sent}"
    );
    assert!(rate_limited > 0, "the limit was hit");
    let allowed = u64::from(PROOFS_PER_S) * (dave::peer::prover::PROOF_BURST_S + 1)
        + (f64::from(PROOFS_PER_S) * secs).ceil() as u64;
    assert!(proofs_sent <= allowed, "{proofs_sent} proofs > {allowed}");
    // What arrived is what was counted (the outsider's view agrees with the node's). Counted
    // after the PINGs landed: a proof asked for during the window may leave after the snapshot
    // above (the rate limit refills), so the window's count can trail what was seen by one.
    let proofs_sent_by_now = node.stats().peer.proofs_sent - peer0.proofs_sent;
    assert!(
        pings_seen <= proofs_sent_by_now,
        "{pings_seen} PINGs seen, {proofs_sent_by_now} sent"
    );
    // No amplification: each proof is a 9-byte PING, far less than the listing that caused it.
    let ping_len = Message::Ping { challenge: [0; 8] }.buffer_len() as u64;
    assert!(
        proofs_sent * ping_len <= listed_bytes,
        "{proofs_sent} PINGs of {ping_len} B vs {listed_bytes} B listed"
    );
    // The node still works: its lookups end and it answers as before.
    assert!(route.lookups_done > route0.lookups_done, "{route:?}");
}
