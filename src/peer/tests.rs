//! One-thread tests of the peer table with a simulated clock: real tables talking through a
//! hand-driven network (every datagram is emitted to bytes and parsed back), and scripted remote
//! nodes that answer with real signed PONGs from their own key pairs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use super::*;
use crate::keys::{DecodedKey, Keypair, verify_signature};
use crate::limits::{ADDR_LEN, MAX_PACKET_LEN, MAX_PONG_ADDRS};
use crate::peer::pong_auth::PongAuthenticator;
use crate::peer::table::{CheckedPong, signature_ok};
use crate::wire::{Features, Message, PongRepr, addr_from_wire, addr_to_wire, pong_signed_hash};

// ----- Helpers -----

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn key(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

/// A config with these edges and listen address, otherwise the defaults.
fn config(listen: &str, edges: &[&str]) -> PeerConfig {
    PeerConfig {
        listen_addr: Some(sa(listen)),
        edges: edges.iter().map(|e| sa(e)).collect(),
        ..PeerConfig::default()
    }
}

fn table(listen: &str, edges: &[&str], seed: u64) -> PeerTable {
    PeerTable::new(config(listen, edges), key(seed as u8 + 100), seed).unwrap()
}

/// A PONG from `responder` answering `challenge`, listing `addrs`.
fn pong(responder: &Keypair, challenge: [u8; 8], addrs: &[SocketAddr]) -> PongRepr {
    let salt = [7u8; 16];
    let mut repr = PongRepr {
        addr_count: 0,
        addrs: [[0; ADDR_LEN]; MAX_PONG_ADDRS],
        challenge,
        salt,
        pubkey: responder.public(),
        sig: responder.sign(&pong_signed_hash(&challenge, &salt)),
    };
    for &a in addrs {
        repr.addrs[repr.addr_count] = addr_to_wire(a);
        repr.addr_count += 1;
    }
    repr
}

/// The challenge of the last PING in `fx` to `to`.
fn ping_to(fx: &Effects, to: SocketAddr) -> Option<[u8; 8]> {
    fx.datagrams.iter().rev().find_map(|d| match d.message {
        Outgoing::Ping { challenge } if d.to == to => Some(challenge),
        _ => None,
    })
}

fn pings_to(fx: &Effects, to: SocketAddr) -> usize {
    fx.datagrams
        .iter()
        .filter(|d| d.to == to && matches!(d.message, Outgoing::Ping { .. }))
        .count()
}

/// Sends `pong` from `from` to `t` through the wire codec.
fn deliver_pong(t: &mut PeerTable, now: u64, from: SocketAddr, pong: PongRepr) -> Effects {
    t.handle(now, from, &Message::Pong(pong))
}

/// A table with one edge `E` (scripted by the test) that has authenticated it at time 0.
/// Returns the table, E's address and E's key pair.
fn table_with_authenticated_edge() -> (PeerTable, SocketAddr, Keypair) {
    let e = sa("10.0.1.1:4000");
    let ek = key(1);
    let mut t = table("10.0.0.1:4000", &["10.0.1.1:4000"], 1);
    let fx = t.tick(0);
    let c = ping_to(&fx, e).unwrap();
    let fx = deliver_pong(&mut t, 0, e, pong(&ek, c, &[]));
    assert!(fx.events.contains(&PeerEvent::Authenticated {
        addr: e,
        pubkey: ek.public()
    }));
    (t, e, ek)
}

/// Lets E answer the next ping round at `now` with `addrs`.
fn edge_answers(
    t: &mut PeerTable,
    now: u64,
    e: SocketAddr,
    ek: &Keypair,
    addrs: &[SocketAddr],
) -> Effects {
    let fx = t.tick(now);
    let c = ping_to(&fx, e).expect("edge pinged this round");
    deliver_pong(t, now, e, pong(ek, c, addrs))
}

/// Tables exchanging datagrams instantly through the codec; nodes in `down` neither send nor
/// receive. The clock advances in `STEP_MS` steps, ticking every table at each step.
struct Net {
    nodes: Vec<(SocketAddr, PeerTable)>,
    now_ms: u64,
    down: BTreeSet<SocketAddr>,
    /// Every datagram sent (sender, datagram), delivered or not.
    sent: Vec<(SocketAddr, Datagram)>,
    /// Every event (node, event).
    events: Vec<(SocketAddr, PeerEvent)>,
}

const STEP_MS: u64 = 100;
/// A bound on datagrams per delivery burst (a loop would otherwise hang the test).
const MAX_BURST: usize = 100_000;

impl Net {
    fn new(nodes: Vec<(SocketAddr, PeerTable)>) -> Net {
        Net {
            nodes,
            now_ms: 0,
            down: BTreeSet::new(),
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    fn table(&self, addr: SocketAddr) -> &PeerTable {
        &self.nodes.iter().find(|(a, _)| *a == addr).unwrap().1
    }

    fn deliver(&mut self, from: SocketAddr, fx: Effects) {
        let mut queue: VecDeque<(SocketAddr, Effects)> = VecDeque::from([(from, fx)]);
        let mut burst = 0;
        while let Some((src, fx)) = queue.pop_front() {
            self.events.extend(fx.events.iter().map(|e| (src, *e)));
            for d in fx.datagrams {
                burst += 1;
                assert!(burst < MAX_BURST, "datagram storm");
                self.sent.push((src, d));
                if self.down.contains(&src) || self.down.contains(&d.to) {
                    continue;
                }
                let Some(i) = self.nodes.iter().position(|(a, _)| *a == d.to) else {
                    continue;
                };
                let mut buf = [0u8; MAX_PACKET_LEN];
                let n = d.message.emit(&mut buf);
                let msg = Message::parse(&buf[..n]).unwrap();
                let reply = self.nodes[i].1.handle(self.now_ms, src, &msg);
                queue.push_back((d.to, reply));
            }
        }
    }

    fn tick_all(&mut self) {
        for i in 0..self.nodes.len() {
            let (addr, _) = self.nodes[i];
            if self.down.contains(&addr) {
                continue;
            }
            let fx = self.nodes[i].1.tick(self.now_ms);
            self.deliver(addr, fx);
        }
    }

    /// Ticks at the current time, then at every step up to and including `t`.
    fn run_until(&mut self, t: u64) {
        self.tick_all();
        while self.now_ms + STEP_MS <= t {
            self.now_ms += STEP_MS;
            self.tick_all();
        }
    }
}

// ----- Handshake and life cycle -----

/// A (no edges) and B (edge A) at time 0. Returns the net and both addresses.
fn two_nodes() -> (Net, SocketAddr, SocketAddr) {
    let a = sa("10.0.0.1:4000");
    let b = sa("10.0.2.1:4000");
    let ta = table("10.0.0.1:4000", &[], 1);
    let tb = table("10.0.2.1:4000", &["10.0.0.1:4000"], 2);
    (Net::new(vec![(a, ta), (b, tb)]), a, b)
}

#[test]
fn handshake_authenticates_then_activates_after_the_delay() {
    let (mut net, a, b) = two_nodes();
    net.run_until(0);
    // B pinged its edge A; A answered, pinged the stranger B once; B answered.
    let ta = net.table(a);
    assert!(ta.is_peer(b));
    assert!(ta.is_proven(b));
    assert_eq!(ta.pubkey_of(b), Some(key(102).public()));
    assert!(!ta.is_active(b), "not before the activation delay");
    assert!(ta.snapshot().is_empty());
    // The edge activates at once on B's side.
    let tb = net.table(b);
    assert!(tb.is_active(a));
    assert_eq!(tb.snapshot().peers()[0].id, key(101).id());
    assert!(net.events.contains(&(
        a,
        PeerEvent::Authenticated {
            addr: b,
            pubkey: key(102).public()
        }
    )));

    net.run_until(4900);
    assert!(!net.table(a).is_active(b));
    net.run_until(5000);
    assert!(net.table(a).is_active(b));
    assert!(net.events.contains(&(a, PeerEvent::Activated { addr: b })));
    let snap = net.table(a).snapshot();
    assert_eq!(snap.len(), 1);
    let info = snap.peers()[0];
    assert_eq!(info.addr, b);
    assert_eq!(info.pubkey, key(102).public());
    assert_eq!(info.id, key(102).id());
    assert_eq!(info.reliability, UNPROVEN_RELIABILITY);
    assert!(!info.edge);
}

#[test]
fn deactivation_and_drop_follow_the_last_answer() {
    let (mut net, a, b) = two_nodes();
    net.run_until(6000); // B answered the round at 6000.
    assert!(net.table(a).is_active(b));
    net.down.insert(b);
    net.now_ms += STEP_MS;
    net.run_until(8900);
    assert!(net.table(a).is_active(b));
    net.run_until(9000);
    assert!(!net.table(a).is_active(b), "3 s without an answer");
    assert!(net.table(a).is_peer(b));
    assert!(
        net.events
            .contains(&(a, PeerEvent::Deactivated { addr: b }))
    );
    net.run_until(17_900);
    assert!(net.table(a).is_peer(b));
    net.run_until(18_000);
    assert!(!net.table(a).is_peer(b), "12 s without an answer");
    assert!(!net.table(a).is_proven(b));
    assert!(net.events.contains(&(a, PeerEvent::Dropped { addr: b })));
    // Deactivated once, dropped once.
    let count = |e: PeerEvent| net.events.iter().filter(|x| **x == (a, e)).count();
    assert_eq!(count(PeerEvent::Deactivated { addr: b }), 1);
    assert_eq!(count(PeerEvent::Dropped { addr: b }), 1);
    assert_eq!(net.table(a).stats().dropped, 1);
}

#[test]
fn silent_peers_are_dropped_but_edges_stay_and_keep_being_pinged() {
    let (mut net, a, b) = two_nodes();
    net.run_until(2000);
    net.down.insert(a);
    net.now_ms += STEP_MS;
    net.run_until(60_000);
    let tb = net.table(b);
    // A is B's edge: it answered until 2000, so its key was forgotten at 14000, but it stays.
    assert!(tb.is_peer(a));
    assert_eq!(tb.pubkey_of(a), None);
    assert!(!tb.is_proven(a));
    assert!(!tb.is_active(a));
    assert!(net.events.contains(&(b, PeerEvent::Dropped { addr: a })));
    // Pinged once per second all along: rounds at 0, 1000, …, 60000.
    let pings = net
        .sent
        .iter()
        .filter(|(src, d)| *src == b && d.to == a && matches!(d.message, Outgoing::Ping { .. }))
        .count();
    assert_eq!(pings, 61);
    // A comes back: it re-authenticates and is active again at once (an edge).
    net.down.remove(&a);
    net.now_ms += STEP_MS;
    net.run_until(61_000);
    assert!(net.table(b).is_active(a));
    assert_eq!(net.table(b).pubkey_of(a), Some(key(101).public()));
}

#[test]
fn an_edge_that_never_answers_is_never_dropped() {
    let mut t = table("10.0.0.1:4000", &["10.0.1.1:4000"], 1);
    let e = sa("10.0.1.1:4000");
    let mut pings = 0;
    for now in (0..=60_000).step_by(500) {
        pings += pings_to(&t.tick(now), e);
    }
    assert_eq!(pings, 61);
    assert!(t.is_peer(e));
    assert_eq!(t.stats().dropped, 0);
    // Pings to an unauthenticated edge are unproven.
    let fx = t.tick(61_000);
    assert!(fx.datagrams.iter().all(|d| !d.to_proven));
}

#[test]
fn an_edge_reauthenticates_with_a_new_key_after_silence() {
    let (mut t, e, _ek) = table_with_authenticated_edge();
    let mut fx = Effects::default();
    for now in (1000..=12_000).step_by(1000) {
        fx.append(&mut t.tick(now));
    }
    assert!(fx.events.contains(&PeerEvent::Dropped { addr: e }));
    assert!(t.is_peer(e));
    let new_key = key(9);
    let fx = edge_answers(&mut t, 13_000, e, &new_key, &[]);
    assert!(fx.events.contains(&PeerEvent::Authenticated {
        addr: e,
        pubkey: new_key.public()
    }));
    assert_eq!(t.pubkey_of(e), Some(new_key.public()));
}

// ----- PONG checks -----

#[test]
fn junk_pongs_neither_clear_the_challenge_nor_authenticate() {
    let e = sa("10.0.1.1:4000");
    let ek = key(1);
    let mut t = table("10.0.0.1:4000", &["10.0.1.1:4000"], 1);
    let c = ping_to(&t.tick(0), e).unwrap();
    let mut wrong = c;
    wrong[0] ^= 1;
    let mut bad_sig = pong(&ek, c, &[]);
    bad_sig.sig[10] ^= 1;
    let mut signed_by_other = pong(&key(2), c, &[]);
    signed_by_other.pubkey = ek.public();
    let own = pong(&key(101), c, &[]); // Our own key: we pinged ourselves.
    let junk = [
        pong(&ek, wrong, &[]),
        bad_sig,
        signed_by_other,
        own,
        pong_with_count(&ek, c, 6), // more than the wire's 5
    ];
    for j in junk {
        let fx = deliver_pong(&mut t, 10, e, j);
        assert!(fx.is_empty());
        assert!(t.has_outstanding_challenge(e));
        assert!(!t.is_proven(e));
        assert_eq!(t.pubkey_of(e), None);
    }
    let s = *t.stats();
    assert_eq!(s.wrong_challenge, 1);
    assert_eq!(s.bad_signature, 2);
    assert_eq!(s.own_pubkey, 1);
    assert_eq!(s.too_many_addrs, 1);
    assert_eq!(s.pongs_accepted, 0);
    // The right answer still works, and clears the challenge.
    deliver_pong(&mut t, 20, e, pong(&ek, c, &[]));
    assert!(t.is_proven(e));
    assert!(!t.has_outstanding_challenge(e));
    // Replaying it is unsolicited.
    let fx = deliver_pong(&mut t, 30, e, pong(&ek, c, &[]));
    assert!(fx.is_empty());
    assert_eq!(t.stats().unsolicited_pong, 1);
}

fn pong_with_count(responder: &Keypair, challenge: [u8; 8], count: usize) -> PongRepr {
    let mut p = pong(responder, challenge, &[]);
    p.addr_count = count;
    p
}

#[test]
fn a_pong_from_nowhere_is_unsolicited() {
    let mut t = table("10.0.0.1:4000", &[], 1);
    let fx = deliver_pong(&mut t, 0, sa("10.9.0.1:1"), pong(&key(3), [1; 8], &[]));
    assert!(fx.is_empty());
    assert_eq!(t.stats().unsolicited_pong, 1);
    assert_eq!(t.peer_count() + t.candidate_count(), 0);
    // An absurd addr_count (a hand-made repr) is refused too, without panicking.
    let fx = deliver_pong(
        &mut t,
        0,
        sa("10.9.0.1:1"),
        pong_with_count(&key(3), [1; 8], usize::MAX),
    );
    assert!(fx.is_empty());
    assert_eq!(t.stats().too_many_addrs, 1);
}

#[test]
fn the_pinned_key_refuses_a_different_one() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    let fx = t.tick(1000);
    let c = ping_to(&fx, e).unwrap();
    // A valid signature over the right challenge, but by another key.
    let fx = deliver_pong(&mut t, 1000, e, pong(&key(2), c, &[sa("10.7.0.1:1")]));
    assert!(fx.is_empty(), "no side effect, no candidate");
    assert_eq!(t.stats().pubkey_mismatch, 1);
    assert!(t.has_outstanding_challenge(e));
    assert_eq!(t.pubkey_of(e), Some(ek.public()));
    deliver_pong(&mut t, 1000, e, pong(&ek, c, &[]));
    assert!(!t.has_outstanding_challenge(e));
}

#[test]
fn a_key_is_pinned_to_one_address() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    let c1 = sa("10.7.0.1:1");
    let c2 = sa("10.8.0.1:1");
    let fx = edge_answers(&mut t, 1000, e, &ek, &[c1, c2]);
    let twin = key(5);
    deliver_pong(
        &mut t,
        1000,
        c1,
        pong(&twin, ping_to(&fx, c1).unwrap(), &[]),
    );
    assert!(t.is_proven(c1));
    deliver_pong(
        &mut t,
        1000,
        c2,
        pong(&twin, ping_to(&fx, c2).unwrap(), &[]),
    );
    assert!(!t.is_peer(c2));
    assert!(
        t.is_candidate(c2),
        "refused, still waiting for a proper answer"
    );
    assert_eq!(t.stats().pubkey_in_use, 1);
}

#[test]
fn too_many_addresses_are_refused_before_any_side_effect() {
    let e = sa("10.0.1.1:4000");
    let ek = key(1);
    let mut cfg = config("10.0.0.1:4000", &["10.0.1.1:4000"]);
    cfg.npeer_limit = 3;
    let mut t = PeerTable::new(cfg, key(101), 1).unwrap();
    let c = ping_to(&t.tick(0), e).unwrap();
    let four: Vec<SocketAddr> = (1..=4).map(|i| sa(&format!("10.{i}.9.9:1"))).collect();
    let fx = deliver_pong(&mut t, 0, e, pong(&ek, c, &four));
    assert!(fx.is_empty());
    assert_eq!(t.stats().too_many_addrs, 1);
    assert!(!t.is_proven(e));
    assert!(t.has_outstanding_challenge(e));
    assert_eq!(t.candidate_count(), 0);
    // Three are fine.
    let fx = deliver_pong(&mut t, 0, e, pong(&ek, c, &four[..3]));
    assert!(t.is_proven(e));
    assert_eq!(t.candidate_count(), 3);
    assert_eq!(fx.datagrams.len(), 3);
    // And a PONG we send lists at most 3.
    assert_eq!(t.config().npeer_limit, 3);
}

// ----- Discovery -----

#[test]
fn listed_addresses_that_are_ours_are_refused() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    // Learn our own address from the edge.
    // The request went out with the first round, at 0.
    let own = sa("203.0.113.7:5555");
    t.handle(1, e, &Message::GetMyAddrPortAck(addr_to_wire(own)));
    assert_eq!(t.own_addr(), Some(own));
    let listen = sa("10.0.0.1:4000");
    let mapped_own = sa("[::ffff:203.0.113.7]:5555");
    let fx = edge_answers(&mut t, 1000, e, &ek, &[own, listen, mapped_own]);
    assert!(fx.datagrams.is_empty());
    assert_eq!(t.stats().own_addr, 3);
    assert_eq!(t.candidate_count(), 0);
    // Our own packets are ignored.
    assert!(
        t.handle(1001, own, &Message::Ping { challenge: [0; 8] })
            .is_empty()
    );
    assert!(t.handle(1001, listen, &Message::GetMyAddrPort).is_empty());
    assert_eq!(t.stats().own_source, 2);
}

#[test]
fn listening_on_an_unspecified_ip_refuses_loopback_with_our_port() {
    let mut cfg = PeerConfig {
        listen_addr: Some(sa("0.0.0.0:4000")),
        edges: vec![sa("127.0.0.2:5000")],
        ..PeerConfig::default()
    };
    cfg.max_peers = 10;
    let mut t = PeerTable::new(cfg, key(101), 1).unwrap();
    let e = sa("127.0.0.2:5000");
    let ek = key(1);
    let c = ping_to(&t.tick(0), e).unwrap();
    let fx = deliver_pong(
        &mut t,
        0,
        e,
        pong(&ek, c, &[sa("127.0.0.1:4000"), sa("127.0.0.1:4001")]),
    );
    assert_eq!(t.stats().own_addr, 1);
    assert!(
        t.is_candidate(sa("127.0.0.1:4001")),
        "loopback listed by loopback is fine"
    );
    assert_eq!(pings_to(&fx, sa("127.0.0.1:4001")), 1);
    assert!(
        t.handle(1, sa("127.0.0.1:4000"), &Message::GetMyAddrPort)
            .is_empty()
    );
}

#[test]
fn unusable_listed_addresses_are_refused() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    let bad1 = [
        sa("0.0.0.0:7"),
        sa("[::]:7"),
        sa("224.0.0.1:7"),
        sa("[ff02::1]:7"),
        sa("10.9.9.9:0"),
    ];
    let bad2 = [
        sa("255.255.255.255:7"),
        sa("127.0.0.1:7"), // loopback listed by a remote peer
        sa("[::1]:7"),
        sa("0.1.2.3:7"),
    ];
    let fx = edge_answers(&mut t, 1000, e, &ek, &bad1);
    assert!(fx.datagrams.is_empty());
    let fx = edge_answers(&mut t, 2000, e, &ek, &bad2);
    assert!(fx.datagrams.is_empty());
    assert_eq!(t.stats().bad_addr, 9);
    assert_eq!(t.candidate_count(), 0);
    assert_eq!(t.peer_count(), 1);
}

#[test]
fn fifty_addresses_on_one_prefix_fill_at_most_the_prefix_limit() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    let addrs: Vec<SocketAddr> = (1..=50)
        .map(|i| sa(&format!("198.51.100.{i}:7000")))
        .collect();
    let mut pinged = 0;
    for (round, chunk) in addrs.chunks(5).enumerate() {
        let fx = edge_answers(&mut t, 1000 * (round as u64 + 1), e, &ek, chunk);
        pinged += fx
            .datagrams
            .iter()
            .filter(|d| matches!(d.message, Outgoing::Ping { .. }))
            .count();
    }
    assert_eq!(t.candidate_count(), 16);
    assert_eq!(pinged, 16, "refused addresses cost no PING");
    assert_eq!(t.stats().per_prefix_limit, 34);
    // One IP, many ports: the per-IP limit.
    let one_ip: Vec<SocketAddr> = (1..=10).map(|p| sa(&format!("192.0.2.1:{p}"))).collect();
    edge_answers(&mut t, 11_000, e, &ek, &one_ip[..5]);
    edge_answers(&mut t, 12_000, e, &ek, &one_ip[5..]);
    assert_eq!(t.stats().per_ip_limit, 6);
    for (i, &a) in one_ip.iter().enumerate() {
        assert_eq!(t.is_candidate(a), i < 4, "{a}");
    }
}

#[test]
fn the_prefix_limit_also_bounds_authenticated_peers() {
    let mut cfg = config("10.0.0.1:4000", &["10.0.1.1:4000"]);
    cfg.max_peers_per_ip = 1;
    cfg.max_peers_per_prefix = 2;
    let mut t = PeerTable::new(cfg, key(101), 1).unwrap();
    let e = sa("10.0.1.1:4000");
    let ek = key(1);
    let c = ping_to(&t.tick(0), e).unwrap();
    // Two more on the edge's /24 would exceed 2 peers there; only one fits.
    let same_net = [sa("10.0.1.2:1"), sa("10.0.1.3:1")];
    let fx = deliver_pong(&mut t, 0, e, pong(&ek, c, &same_net));
    assert_eq!(t.candidate_count(), 2, "candidates are counted separately");
    for (i, &a) in same_net.iter().enumerate() {
        let c = ping_to(&fx, a).unwrap();
        deliver_pong(&mut t, 0, a, pong(&key(20 + i as u8), c, &[]));
    }
    assert!(t.is_peer(same_net[0]));
    assert!(!t.is_peer(same_net[1]));
    assert!(!t.is_candidate(same_net[1]));
    assert_eq!(t.stats().per_prefix_limit, 1);
}

#[test]
fn candidates_must_answer_before_they_count() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    let c1 = sa("10.11.0.1:1");
    let c2 = sa("10.12.0.1:1");
    let c3 = sa("10.13.0.1:1");
    let fx = edge_answers(&mut t, 1000, e, &ek, &[c1, c2, c3]);
    for c in [c1, c2, c3] {
        assert_eq!(pings_to(&fx, c), 1);
        assert!(t.is_candidate(c));
        assert!(!t.is_peer(c));
        assert!(!t.is_proven(c));
    }
    assert!(fx.datagrams.iter().all(|d| !d.to_proven));
    assert_eq!(t.peer_count(), 1);
    let c1_challenge = ping_to(&fx, c1).unwrap();
    let c2_challenge = ping_to(&fx, c2).unwrap();
    // Listed again, and through later rounds: no second PING.
    let mut later = Effects::default();
    for now in (2000..=9000).step_by(1000) {
        later.append(&mut edge_answers(&mut t, now, e, &ek, &[c1, c2, c3]));
    }
    for c in [c1, c2, c3] {
        assert_eq!(pings_to(&later, c), 0);
    }
    // c1 answers (late, but its challenge is still the outstanding one): a peer, not active yet.
    deliver_pong(&mut t, 9000, c1, pong(&key(11), c1_challenge, &[]));
    assert!(t.is_peer(c1));
    assert!(!t.is_active(c1));
    assert!(t.snapshot().get(c1).is_none());
    // c2 answers wrongly: still a candidate.
    let mut wrong = c2_challenge;
    wrong[7] ^= 0xff;
    deliver_pong(&mut t, 9000, c2, pong(&key(12), wrong, &[]));
    assert!(t.is_candidate(c2));
    // After the candidate TTL (10 s from 1000) the silent ones are forgotten.
    t.tick(10_999);
    assert_eq!(t.candidate_count(), 2);
    t.tick(11_000);
    assert_eq!(t.candidate_count(), 0);
    assert_eq!(t.stats().candidates_expired, 2);
    // Heard of again: one more PING.
    let fx = edge_answers(&mut t, 12_000, e, &ek, &[c2]);
    assert_eq!(pings_to(&fx, c2), 1);
}

#[test]
fn a_stranger_that_pings_gets_one_ping_until_it_answers() {
    let mut t = table("10.0.0.1:4000", &[], 1);
    let s = sa("10.20.0.1:9000");
    let sk = key(20);
    let mut all = Effects::default();
    for i in 0..10u64 {
        all.append(&mut t.tick(i * 1000));
        all.append(&mut t.handle(
            i * 1000 + 1,
            s,
            &Message::Ping {
                challenge: [i as u8; 8],
            },
        ));
    }
    let pongs: Vec<&Datagram> = all
        .datagrams
        .iter()
        .filter(|d| d.to == s && matches!(d.message, Outgoing::Pong(_)))
        .collect();
    assert_eq!(pongs.len(), 10);
    assert!(pongs.iter().all(|d| !d.to_proven));
    assert_eq!(pings_to(&all, s), 1);
    let c = ping_to(&all, s).unwrap();
    // It answers: now a peer, pinged every period, and proven.
    deliver_pong(&mut t, 9500, s, pong(&sk, c, &[]));
    assert!(t.is_proven(s));
    let mut rounds = Effects::default();
    for now in (10_000..15_000).step_by(500) {
        rounds.append(&mut t.tick(now));
        // Keep answering so it stays.
        if let Some(c) = ping_to(&rounds, s) {
            deliver_pong(&mut t, now, s, pong(&sk, c, &[]));
        }
    }
    assert_eq!(pings_to(&rounds, s), 5);
    assert!(rounds.datagrams.iter().all(|d| d.to_proven));
    let fx = t.handle(15_000, s, &Message::Ping { challenge: [1; 8] });
    assert!(fx.datagrams[0].to_proven);
    assert_eq!(
        fx.datagrams.len(),
        1,
        "a peer pinging us gets no extra PING"
    );
}

#[test]
fn strangers_fill_at_most_their_share_of_the_candidate_list() {
    let mut cfg = config("10.0.0.1:4000", &[]);
    cfg.max_candidates = 4;
    cfg.max_pinger_candidates = 2;
    let mut t = PeerTable::new(cfg, key(101), 1).unwrap();
    for i in 1..=5 {
        let fx = t.handle(
            0,
            sa(&format!("10.{i}.0.1:1")),
            &Message::Ping { challenge: [0; 8] },
        );
        assert!(
            matches!(fx.datagrams[0].message, Outgoing::Pong(_)),
            "every ping is answered"
        );
    }
    assert_eq!(t.candidate_count(), 2);
    assert_eq!(t.stats().candidates_full, 3);
    assert_eq!(t.stats().pongs_sent, 5);
}

#[test]
fn a_full_table_refuses_new_peers() {
    let mut cfg = config("10.0.0.1:4000", &["10.0.1.1:4000"]);
    cfg.max_peers = 2;
    let mut t = PeerTable::new(cfg, key(101), 1).unwrap();
    let e = sa("10.0.1.1:4000");
    let ek = key(1);
    let c = ping_to(&t.tick(0), e).unwrap();
    let c1 = sa("10.31.0.1:1");
    let c2 = sa("10.32.0.1:1");
    let fx = deliver_pong(&mut t, 0, e, pong(&ek, c, &[c1, c2]));
    deliver_pong(
        &mut t,
        0,
        c1,
        pong(&key(31), ping_to(&fx, c1).unwrap(), &[]),
    );
    assert_eq!(t.peer_count(), 2);
    deliver_pong(
        &mut t,
        0,
        c2,
        pong(&key(32), ping_to(&fx, c2).unwrap(), &[]),
    );
    assert_eq!(t.peer_count(), 2);
    assert!(!t.is_candidate(c2));
    assert_eq!(t.stats().table_full, 1);
    // While full, new addresses do not even get a PING.
    let fx = edge_answers(&mut t, 1000, e, &ek, &[sa("10.33.0.1:1")]);
    assert_eq!(fx.datagrams.len(), 0);
    let fx = t.handle(
        1000,
        sa("10.34.0.1:1"),
        &Message::Ping { challenge: [0; 8] },
    );
    assert_eq!(
        fx.datagrams.len(),
        2,
        "the PONG and a proof PING, no candidate"
    );
    assert!(!t.is_candidate(sa("10.34.0.1:1")));
    assert_eq!(t.stats().proofs_of_strangers, 1);
    assert_eq!(t.stats().table_full, 3);
}

/// A stranger that pings a full table is proven (one PING, rate-limited, not repeated while
/// outstanding or proven): once it answers, replies to it are not limited, it is no peer and no
/// routing contact (no event), and after `PROVEN_TTL_MS` its next PING proves it again.
#[test]
fn a_stranger_pinging_a_full_table_is_proven_without_becoming_a_peer() {
    use crate::peer::prover::PROVEN_TTL_MS;
    // Full: its one place is the edge's.
    let mut cfg = config("10.0.0.1:4000", &["10.0.1.1:4000"]);
    cfg.max_peers = 1;
    let mut t = PeerTable::new(cfg, key(101), 1).unwrap();
    let s = sa("10.20.0.1:9000");
    let sk = key(20);
    let ping = |t: &mut PeerTable, now: u64| t.handle(now, s, &Message::Ping { challenge: [7; 8] });
    let fx = ping(&mut t, 1_000);
    assert!(matches!(fx.datagrams[0].message, Outgoing::Pong(_)));
    assert!(!fx.datagrams[0].to_proven);
    let c = ping_to(&fx, s).expect("a proof PING");
    assert!(
        !fx.datagrams[1].to_proven,
        "draws on the amplification limit"
    );
    // Pinging again while the proof is outstanding: the PONG only.
    assert_eq!(ping(&mut t, 1_500).datagrams.len(), 1);
    let changes = t.proven_changes();
    let fx = deliver_pong(&mut t, 1_600, s, pong(&sk, c, &[]));
    assert!(
        fx.events.is_empty(),
        "not a routing contact: {:?}",
        fx.events
    );
    assert!(t.is_proven(s) && !t.is_peer(s) && !t.is_candidate(s));
    assert!(t.proven_changes() > changes);
    assert!(t.proven_addrs().any(|a| a == s));
    assert_eq!(t.proven_strangers(), 1);
    // Its PONG advertised no ROUTING: the snapshot names it as a one-hop placer.
    assert_eq!(t.snapshot().one_hop_strangers(), &[s]);
    assert!(t.snapshot().get(s).is_none());
    // Proven: its PONGs are not limited, no second proof.
    let fx = ping(&mut t, 2_000);
    assert_eq!(fx.datagrams.len(), 1);
    assert!(fx.datagrams[0].to_proven);
    // The router asking about it is answered at once.
    let fx = t.prove(2_100, s);
    assert!(fx.datagrams.is_empty());
    assert_eq!(
        fx.events,
        vec![PeerEvent::Proven {
            addr: s,
            pubkey: sk.public()
        }]
    );
    // Forgotten after its time; its next PING proves it again.
    t.tick(1_600 + PROVEN_TTL_MS);
    assert!(!t.is_proven(s));
    assert_eq!(t.proven_strangers(), 0);
    assert!(t.snapshot().one_hop_strangers().is_empty());
    let fx = ping(&mut t, 1_700 + PROVEN_TTL_MS);
    assert!(!fx.datagrams[0].to_proven);
    assert!(ping_to(&fx, s).is_some(), "proven again");
    assert_eq!(t.stats().proofs_of_strangers, 2);
    assert_eq!(t.stats().proofs_succeeded, 1);
}

/// A proven stranger whose PONG advertises ROUTING is proven but not a one-hop placer (a dave
/// node that found us by a lookup places records where lookups look).
#[test]
fn a_stranger_that_speaks_routing_is_no_one_hop_placer() {
    let mut cfg = config("10.0.0.1:4000", &["10.0.1.1:4000"]);
    cfg.max_peers = 1;
    let mut t = PeerTable::new(cfg, key(101), 1).unwrap();
    let s = sa("10.20.0.1:9000");
    let sk = key(20);
    let fx = t.handle(1_000, s, &Message::Ping { challenge: [7; 8] });
    let c = ping_to(&fx, s).expect("a proof PING");
    let mut answer = pong(&sk, c, &[]);
    answer.salt = crate::wire::ext::build_salt([3; 8], crate::wire::Features::ALL);
    answer.sig = sk.sign(&pong_signed_hash(&c, &answer.salt));
    deliver_pong(&mut t, 1_100, s, answer);
    assert!(t.is_proven(s));
    assert!(t.snapshot().one_hop_strangers().is_empty());
}

/// Stranger proofs are rate-limited apart from the router's: many strangers pinging a full
/// table get at most `stranger_proofs_per_s` (with its burst) PINGs, and the router's proofs
/// are still available; 0 proves no stranger.
#[test]
fn stranger_proofs_are_rate_limited_apart_from_the_routers() {
    use crate::peer::prover::PROOF_BURST_S;
    for rate in [0u32, 3] {
        let mut cfg = config("10.0.0.1:4000", &["10.0.1.1:4000"]);
        cfg.max_peers = 1;
        cfg.stranger_proofs_per_s = rate;
        let mut t = PeerTable::new(cfg, key(101), 1).unwrap();
        let mut proofs = 0;
        for i in 0..100u32 {
            let from = sa(&format!("10.{}.{}.1:9000", 40 + i / 200, i % 200));
            let fx = t.handle(500, from, &Message::Ping { challenge: [1; 8] });
            proofs += pings_to(&fx, from);
        }
        assert_eq!(
            proofs as u64,
            u64::from(rate) * PROOF_BURST_S,
            "rate {rate}"
        );
        assert_eq!(t.stats().proofs_of_strangers, proofs as u64);
        let x = sa("10.90.0.1:4000");
        assert!(
            ping_to(&t.prove(500, x), x).is_some(),
            "the router's proofs remain"
        );
    }
}

/// A table whose `n` peers were strangers that pinged it at time 0 and answered its PING at
/// once (authenticated at 0, not active yet), with their addresses and key pairs.
fn table_of_strangers(n: usize) -> (PeerTable, Vec<SocketAddr>, Vec<Keypair>) {
    let mut t = table("10.0.0.1:4000", &[], 1);
    let addrs: Vec<SocketAddr> = (0..n)
        .map(|i| sa(&format!("10.{}.{}.1:9000", 50 + i / 200, i % 200)))
        .collect();
    let keys: Vec<Keypair> = (0..n)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..2].copy_from_slice(&(i as u16 + 300).to_le_bytes());
            Keypair::from_seed(&seed)
        })
        .collect();
    // Each stranger pings once and answers the table's PING: a peer.
    for (i, &a) in addrs.iter().enumerate() {
        let fx = t.handle(0, a, &Message::Ping { challenge: [1; 8] });
        let c = ping_to(&fx, a).expect("a candidate PING");
        deliver_pong(&mut t, 0, a, pong(&keys[i], c, &[]));
    }
    assert_eq!(t.peer_count(), n);
    (t, addrs, keys)
}

/// Ticks `t` every slice from `from_ms` to before `to_ms`; the peers `answering` (indexes into
/// `addrs`) answer each PING at once, the others stay silent.
fn run_slices(
    t: &mut PeerTable,
    addrs: &[SocketAddr],
    keys: &[Keypair],
    answering: impl Fn(usize) -> bool,
    from_ms: u64,
    to_ms: u64,
) {
    let slice_ms = 1000 / crate::peer::table::PING_ROUND_SLICES;
    let mut now = from_ms;
    while now < to_ms {
        let fx = t.tick(now);
        for d in &fx.datagrams {
            if let Outgoing::Ping { challenge } = d.message {
                let i = addrs.iter().position(|&x| x == d.to).unwrap();
                if answering(i) {
                    deliver_pong(t, now, d.to, pong(&keys[i], challenge, &[]));
                }
            }
        }
        now += slice_ms;
    }
}

/// The addresses listed by the PONG in `fx`.
fn listed(fx: &Effects) -> Vec<SocketAddr> {
    let pong = fx
        .datagrams
        .iter()
        .find_map(|d| match &d.message {
            Outgoing::Pong(p) => Some(p),
            _ => None,
        })
        .expect("a PONG");
    pong.addrs().iter().map(addr_from_wire).collect()
}

/// A table of more than [`LIST_BY_SCAN_AT_MOST`] peers lists peers drawn at random rather than
/// by a scan: each PONG lists `npeer_limit` distinct listable peers, never the asker, every
/// listable peer about equally often; with fewer listable peers than that (here 3 of 200: the
/// others fell silent) it lists exactly those.
#[test]
fn a_large_tables_pongs_list_random_listable_peers() {
    use crate::peer::table::LIST_BY_SCAN_AT_MOST;
    let n = 200usize;
    assert!(n > LIST_BY_SCAN_AT_MOST);
    let (mut t, addrs, keys) = table_of_strangers(n);
    // Everyone answers the round at 1000: listable (answering 500 ms after authenticating).
    run_slices(&mut t, &addrs, &keys, |_| true, 1000, 2000);
    let asker = addrs[0];
    let mut times: BTreeMap<SocketAddr, u32> = BTreeMap::new();
    const PINGS: u32 = 4000;
    for _ in 0..PINGS {
        let fx = t.handle(2000, asker, &Message::Ping { challenge: [2; 8] });
        let list = listed(&fx);
        assert_eq!(list.len(), MAX_PONG_ADDRS);
        let distinct: BTreeSet<SocketAddr> = list.iter().copied().collect();
        assert_eq!(distinct.len(), list.len(), "{list:?}");
        for a in list {
            assert_ne!(a, asker);
            assert!(t.is_peer(a));
            *times.entry(a).or_default() += 1;
        }
    }
    // 4,000 × 5 listings over 199 peers: 100.5 each on average, standard deviation ~10.
    assert_eq!(times.len(), n - 1, "every listable peer listed");
    let (least, most) = (times.values().min().unwrap(), times.values().max().unwrap());
    assert!(*least >= 55 && *most <= 150, "{least}..={most}");
    // Only peers 1, 2 and 3 answer from 2000 on; at 5000 the others' last answers (before 2000)
    // are more than `deactivate_after_ms` (3000) old.
    run_slices(&mut t, &addrs, &keys, |i| (1..=3).contains(&i), 2000, 5000);
    for _ in 0..20 {
        let fx = t.handle(5000, asker, &Message::Ping { challenge: [3; 8] });
        let list: BTreeSet<SocketAddr> = listed(&fx).into_iter().collect();
        assert_eq!(list, addrs[1..=3].iter().copied().collect());
    }
}

/// A table of more than [`PING_AT_ONCE_AT_MOST`] peers sends its ping round in slices across
/// the period (200 peers: 4 at a time, one slice every 20 ms); each peer is still pinged once
/// per period, at the same offset, and peers that answer stay active.
#[test]
fn a_large_tables_ping_round_goes_out_in_slices() {
    use crate::peer::table::{PING_AT_ONCE_AT_MOST, PING_ROUND_SLICES};
    let n = 200usize;
    assert!(n > PING_AT_ONCE_AT_MOST);
    let (mut t, addrs, keys) = table_of_strangers(n);
    let slice_ms = 1000 / PING_ROUND_SLICES;
    let per_slice = n.div_ceil(PING_ROUND_SLICES as usize);
    let mut pinged_at: BTreeMap<SocketAddr, Vec<u64>> = BTreeMap::new();
    let mut now = 1000;
    while now < 6000 {
        let fx = t.tick(now);
        let pings: Vec<(SocketAddr, [u8; 8])> = fx
            .datagrams
            .iter()
            .filter_map(|d| match d.message {
                Outgoing::Ping { challenge } => Some((d.to, challenge)),
                _ => None,
            })
            .collect();
        assert_eq!(pings.len(), per_slice, "at {now}");
        for (a, c) in pings {
            pinged_at.entry(a).or_default().push(now);
            let i = addrs.iter().position(|&x| x == a).unwrap();
            deliver_pong(&mut t, now, a, pong(&keys[i], c, &[]));
        }
        // The driver is asked back for the next slice (the last one is followed by the round).
        assert_eq!(t.next_tick_ms(), now + slice_ms, "at {now}");
        now += slice_ms;
    }
    assert_eq!(pinged_at.len(), n);
    for (a, times) in &pinged_at {
        assert_eq!(times.len(), 5, "{a}: {times:?}");
        assert!(
            times.windows(2).all(|w| w[1] - w[0] == 1000),
            "{a}: {times:?}"
        );
    }
    assert_eq!(t.snapshot().len(), n, "every answering peer active");
}

// ----- PING answers -----

#[test]
fn our_pong_is_signed_and_lists_active_peers_except_the_asker() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    // Seven more peers, listed at the rounds of 1000 and 2000 and answering at once.
    let others: Vec<SocketAddr> = (1..=7)
        .map(|i| sa(&format!("10.{}.0.1:1", 40 + i)))
        .collect();
    let keys: Vec<Keypair> = (0..7).map(|i| key(50 + i)).collect();
    let mut fx = edge_answers(&mut t, 1000, e, &ek, &others[..5]);
    fx.append(&mut edge_answers(&mut t, 2000, e, &ek, &others[5..]));
    for (i, &o) in others.iter().enumerate() {
        deliver_pong(
            &mut t,
            2000,
            o,
            pong(&keys[i], ping_to(&fx, o).unwrap(), &[]),
        );
    }
    // Everyone keeps answering until all are past the activation delay.
    for now in (3000..=7000).step_by(1000) {
        let fx = t.tick(now);
        for (i, &o) in others.iter().enumerate() {
            deliver_pong(
                &mut t,
                now,
                o,
                pong(&keys[i], ping_to(&fx, o).unwrap(), &[]),
            );
        }
        deliver_pong(&mut t, now, e, pong(&ek, ping_to(&fx, e).unwrap(), &[]));
    }
    assert_eq!(t.snapshot().len(), 8);
    let asker = others[0];
    for _ in 0..20 {
        let fx = t.handle(7000, asker, &Message::Ping { challenge: [9; 8] });
        assert_eq!(fx.datagrams.len(), 1);
        let d = fx.datagrams[0];
        assert_eq!(d.to, asker);
        assert!(d.to_proven);
        let Outgoing::Pong(p) = d.message else {
            panic!("expected a PONG")
        };
        assert_eq!(p.challenge, [9; 8]);
        assert_eq!(p.pubkey, t.public_key());
        assert!(verify_signature(
            &p.pubkey,
            &pong_signed_hash(&p.challenge, &p.salt),
            &p.sig
        ));
        assert_eq!(p.addr_count, 5);
        let listed: BTreeSet<SocketAddr> = p.addrs().iter().map(addr_from_wire).collect();
        assert_eq!(listed.len(), 5, "no duplicates");
        assert!(!listed.contains(&asker));
        assert!(listed.iter().all(|a| t.is_active(*a)));
        // And it survives the wire.
        let mut buf = [0u8; MAX_PACKET_LEN];
        let n = d.message.emit(&mut buf);
        assert_eq!(n, d.message.buffer_len());
        assert!(matches!(Message::parse(&buf[..n]), Ok(Message::Pong(q)) if q == p));
    }
    // A stranger's PONG is unproven but still lists peers.
    let fx = t.handle(
        7000,
        sa("10.99.0.1:1"),
        &Message::Ping { challenge: [1; 8] },
    );
    assert!(!fx.datagrams[0].to_proven);
}

/// The addresses our PONG lists to a stranger at `now`.
fn listed_at(t: &mut PeerTable, now: u64) -> BTreeSet<SocketAddr> {
    let fx = t.handle(now, sa("10.98.0.1:1"), &Message::Ping { challenge: [5; 8] });
    let Outgoing::Pong(p) = fx.datagrams[0].message else {
        panic!("expected a PONG")
    };
    p.addrs().iter().map(addr_from_wire).collect()
}

#[test]
fn a_fly_by_peer_is_never_listed_a_staying_one_is() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    // Two peers, introduced by E at 1000; both answer our first PING at once.
    let (flyby, stayer) = (sa("10.61.0.1:1"), sa("10.62.0.1:1"));
    let (fk, sk) = (key(61), key(62));
    let fx = edge_answers(&mut t, 1000, e, &ek, &[flyby, stayer]);
    deliver_pong(
        &mut t,
        1000,
        flyby,
        pong(&fk, ping_to(&fx, flyby).unwrap(), &[]),
    );
    deliver_pong(
        &mut t,
        1000,
        stayer,
        pong(&sk, ping_to(&fx, stayer).unwrap(), &[]),
    );
    // Just authenticated: neither is listed yet (the edge, active, is).
    let listed = listed_at(&mut t, 1000);
    assert!(
        !listed.contains(&flyby) && !listed.contains(&stayer),
        "{listed:?}"
    );
    assert!(listed.contains(&e));
    // The stayer answers the next round; the fly-by is gone.
    let fx = t.tick(2000);
    deliver_pong(
        &mut t,
        2000,
        stayer,
        pong(&sk, ping_to(&fx, stayer).unwrap(), &[]),
    );
    deliver_pong(&mut t, 2000, e, pong(&ek, ping_to(&fx, e).unwrap(), &[]));
    for now in [2000, 2500, 3500] {
        let listed = listed_at(&mut t, now);
        assert!(listed.contains(&stayer), "at {now}: {listed:?}");
        assert!(!listed.contains(&flyby), "at {now}: {listed:?}");
    }
}

#[test]
fn a_pong_with_no_active_peers_lists_nothing() {
    let mut t = table("10.0.0.1:4000", &[], 1);
    let fx = t.handle(0, sa("10.9.0.1:1"), &Message::Ping { challenge: [3; 8] });
    let Outgoing::Pong(p) = fx.datagrams[0].message else {
        panic!("expected a PONG")
    };
    assert_eq!(p.addr_count, 0);
    assert_eq!(
        fx.datagrams[0].message.buffer_len(),
        crate::limits::PONG_MIN_LEN
    );
}

// ----- Own address -----

#[test]
fn getmyaddrport_flow() {
    let e1 = sa("10.0.1.1:4000");
    let e2 = sa("10.0.1.2:4000");
    let mut t = table("10.0.0.1:4000", &["10.0.1.1:4000", "10.0.1.2:4000"], 1);
    let fx = t.tick(0);
    let asked: Vec<SocketAddr> = fx
        .datagrams
        .iter()
        .filter(|d| d.message == Outgoing::GetMyAddrPort)
        .map(|d| d.to)
        .collect();
    assert_eq!(asked, vec![e1, e2]);
    let own = sa("203.0.113.7:5555");
    // Not from someone we asked.
    let fx = t.handle(
        10,
        sa("10.66.0.1:1"),
        &Message::GetMyAddrPortAck(addr_to_wire(own)),
    );
    assert!(fx.is_empty());
    assert_eq!(t.stats().unsolicited_myaddr_ack, 1);
    // A junk address does not clear the request.
    t.handle(
        10,
        e1,
        &Message::GetMyAddrPortAck(addr_to_wire(sa("0.0.0.0:1"))),
    );
    assert_eq!(t.stats().bad_myaddr_ack, 1);
    assert_eq!(t.own_addr(), None);
    let fx = t.handle(20, e1, &Message::GetMyAddrPortAck(addr_to_wire(own)));
    assert_eq!(fx.events, vec![PeerEvent::OwnAddrLearned { addr: own }]);
    assert_eq!(fx.own_addr(), Some(own));
    assert_eq!(t.own_addr(), Some(own));
    // Answered: a second ACK from e1 is unsolicited.
    t.handle(
        30,
        e1,
        &Message::GetMyAddrPortAck(addr_to_wire(sa("203.0.113.8:1"))),
    );
    assert_eq!(t.stats().unsolicited_myaddr_ack, 2);
    assert_eq!(t.own_addr(), Some(own));
    // e2 answers after the timeout: refused.
    t.tick(3000);
    t.handle(3000, e2, &Message::GetMyAddrPortAck(addr_to_wire(own)));
    assert_eq!(t.stats().unsolicited_myaddr_ack, 3);
    // The next request goes out only after getmyaddrport_every_ms.
    let mut requests = 0;
    for now in (1000..=600_000).step_by(1000) {
        requests += t
            .tick(now)
            .datagrams
            .iter()
            .filter(|d| d.message == Outgoing::GetMyAddrPort)
            .count();
    }
    assert_eq!(requests, 2, "both edges once, at 600000");
    assert_eq!(t.stats().myaddr_requests_sent, 4);
    // An edge now sees another address for us: it replaces the node-wide one.
    let moved = sa("203.0.113.9:5555");
    let fx = t.handle(600_001, e2, &Message::GetMyAddrPortAck(addr_to_wire(moved)));
    assert_eq!(fx.events, vec![PeerEvent::OwnAddrLearned { addr: moved }]);
    assert_eq!(t.stats().own_addr_changes, 2);
}

#[test]
fn getmyaddrport_is_retried_until_answered() {
    let e = sa("10.0.1.1:4000");
    let mut t = table("10.0.0.1:4000", &["10.0.1.1:4000"], 1);
    let mut at = Vec::new();
    for now in (0..=30_000).step_by(500) {
        if t.tick(now)
            .datagrams
            .iter()
            .any(|d| d.message == Outgoing::GetMyAddrPort)
        {
            at.push(now);
        }
    }
    assert_eq!(at, vec![0, 10_000, 20_000, 30_000]);
    // Next: the ping round at 31000 (the next request is at 40000).
    assert_eq!(t.next_tick_ms(), 31_000);
    // Answered at 30001: the next request is 10 minutes after the answered one.
    t.handle(
        30_001,
        e,
        &Message::GetMyAddrPortAck(addr_to_wire(sa("203.0.113.7:1"))),
    );
    let mut next = None;
    for now in (30_500..=700_000).step_by(500) {
        if t.tick(now)
            .datagrams
            .iter()
            .any(|d| d.message == Outgoing::GetMyAddrPort)
        {
            next = Some(now);
            break;
        }
    }
    assert_eq!(next, Some(630_000));
}

#[test]
fn getmyaddrport_is_answered_with_the_source_address() {
    let mut t = table("10.0.0.1:4000", &[], 1);
    let from = sa("[::ffff:192.0.2.10]:6000");
    let fx = t.handle(0, from, &Message::GetMyAddrPort);
    assert_eq!(
        fx.datagrams,
        vec![Datagram {
            to: sa("192.0.2.10:6000"),
            to_proven: false,
            message: Outgoing::GetMyAddrPortAck(addr_to_wire(sa("192.0.2.10:6000"))),
        }]
    );
    let from6 = sa("[2001:db8::7]:6000");
    let fx = t.handle(0, from6, &Message::GetMyAddrPort);
    assert_eq!(
        fx.datagrams[0].message,
        Outgoing::GetMyAddrPortAck(addr_to_wire(from6))
    );
}

#[test]
fn a_learned_own_address_leaves_the_table() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    let me = sa("10.77.0.1:4000");
    // We are listed (under the address the world sees) before we know it: a candidate.
    edge_answers(&mut t, 1000, e, &ek, &[me]);
    assert!(t.is_candidate(me));
    t.tick(600_000);
    t.handle(600_000, e, &Message::GetMyAddrPortAck(addr_to_wire(me)));
    assert!(!t.is_candidate(me));
}

// ----- Robustness -----

#[test]
fn unusable_sources_and_other_ops_are_ignored() {
    let mut t = table("10.0.0.1:4000", &[], 1);
    for from in [
        "0.0.0.0:5",
        "10.1.1.1:0",
        "224.0.0.1:5",
        "255.255.255.255:5",
        "[::]:5",
    ] {
        assert!(
            t.handle(0, sa(from), &Message::Ping { challenge: [0; 8] })
                .is_empty()
        );
        assert!(t.handle(0, sa(from), &Message::GetMyAddrPort).is_empty());
    }
    assert_eq!(t.stats().bad_source, 10);
    let mut get = vec![3u8];
    get.extend_from_slice(&[1; 32]);
    get.push(0);
    let msg = Message::parse(&get).unwrap();
    assert!(t.handle(0, sa("10.1.1.1:5"), &msg).is_empty());
    assert_eq!(t.stats().wrong_op, 1);
    assert_eq!(t.stats().refused_total(), 11);
    assert_eq!(t.candidate_count(), 0);
}

#[test]
fn time_running_backwards_is_harmless() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    edge_answers(&mut t, 10_000, e, &ek, &[]);
    // The clock jumps back: the table keeps its own latest time.
    let fx = t.tick(5);
    assert!(ping_to(&fx, e).is_none(), "the round at 10000 was the last");
    t.handle(0, sa("10.9.0.1:1"), &Message::Ping { challenge: [0; 8] });
    assert!(t.is_active(e));
    let fx = t.tick(11_000);
    assert!(ping_to(&fx, e).is_some());
    t.tick(u64::MAX);
    t.tick(0);
    assert!(t.is_peer(e));
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let run = || {
        let a = sa("10.0.0.1:4000");
        let b = sa("10.0.2.1:4000");
        let c = sa("10.0.3.1:4000");
        let mut net = Net::new(vec![
            (a, table("10.0.0.1:4000", &[], 1)),
            (b, table("10.0.2.1:4000", &["10.0.0.1:4000"], 2)),
            (c, table("10.0.3.1:4000", &["10.0.0.1:4000"], 3)),
        ]);
        net.run_until(20_000);
        (net.sent, net.events)
    };
    let (sent1, events1) = run();
    let (sent2, events2) = run();
    assert!(!sent1.is_empty());
    assert_eq!(sent1, sent2);
    assert_eq!(events1, events2);
}

#[test]
fn three_nodes_discover_each_other_through_their_edge() {
    let a = sa("10.0.0.1:4000");
    let b = sa("10.0.2.1:4000");
    let c = sa("10.0.3.1:4000");
    let mut net = Net::new(vec![
        (a, table("10.0.0.1:4000", &[], 1)),
        (b, table("10.0.2.1:4000", &["10.0.0.1:4000"], 2)),
        (c, table("10.0.3.1:4000", &["10.0.0.1:4000"], 3)),
    ]);
    net.run_until(20_000);
    for (x, others) in [(a, [b, c]), (b, [a, c]), (c, [a, b])] {
        let snap = net.table(x).snapshot();
        assert_eq!(snap.len(), 2, "{x} sees both others");
        for o in others {
            assert!(net.table(x).is_active(o), "{x} → {o}");
        }
    }
    // b and c learned their addresses from their edge.
    assert_eq!(net.table(b).own_addr(), Some(b));
    assert_eq!(net.table(c).own_addr(), Some(c));
    // Nothing was refused in a healthy network.
    for (x, t) in &net.nodes {
        assert_eq!(t.stats().refused_total(), 0, "{x}: {:?}", t.stats());
    }
    // closest() on a real snapshot: ordered by XOR distance to the target, never the excluded.
    let snap = net.table(a).snapshot();
    let target = key(102).id();
    let got = snap.closest(target, 2, None);
    assert_eq!(got[0].addr, b);
    assert!(got[0].id ^ target <= got[1].id ^ target);
    assert_eq!(snap.closest(target, 2, Some(b)).len(), 1);
}

#[test]
fn trust_outcomes_reach_the_snapshot() {
    let (mut t, e, _ek) = table_with_authenticated_edge();
    assert_eq!(t.snapshot().peers()[0].reliability, UNPROVEN_RELIABILITY);
    assert!(t.record_challenge(e, false, 0.9));
    assert_eq!(t.snapshot().peers()[0].reliability, 0.0);
    assert!(!t.record_challenge(sa("10.1.2.3:4"), true, 0.9));
}

#[test]
fn snapshot_is_shared_until_the_active_set_changes() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    let before = t.snapshot();
    edge_answers(&mut t, 1000, e, &ek, &[]);
    assert!(std::sync::Arc::ptr_eq(&before, &t.snapshot()));
    // Silence: deactivated at 4000, a new snapshot without it.
    t.tick(4000);
    assert!(!std::sync::Arc::ptr_eq(&before, &t.snapshot()));
    assert!(t.snapshot().is_empty());
}

// ----- PONG authentication modes -----

/// Both modes through real tables: B's PONG (made by its table) is accepted; with a flipped
/// signature byte, or "signed" by C and claiming B's key, it is refused. Returns B's PONG.
fn pong_auth_round(auth: &PongAuth) -> PongRepr {
    let a_addr = sa("10.0.0.1:4000");
    let b_addr = sa("10.0.1.1:4000");
    let with = |listen: &str, edges: &[&str], seed: u64| {
        let mut cfg = config(listen, edges);
        cfg.pong_auth = auth.clone();
        PeerTable::new(cfg, key(seed as u8 + 100), seed).unwrap()
    };
    let mut a = with("10.0.0.1:4000", &["10.0.1.1:4000"], 1);
    let mut b = with("10.0.1.1:4000", &[], 2);
    let mut c = with("10.0.2.1:4000", &[], 3);
    let challenge = ping_to(&a.tick(0), b_addr).unwrap();
    let answer = |t: &mut PeerTable| {
        let fx = t.handle(0, a_addr, &Message::Ping { challenge });
        fx.datagrams
            .iter()
            .find_map(|d| match d.message {
                Outgoing::Pong(p) if d.to == a_addr => Some(p),
                _ => None,
            })
            .expect("a PING is answered")
    };
    let b_pong = answer(&mut b);
    assert_eq!(b_pong.pubkey, key(102).public());
    let mut flipped = b_pong;
    flipped.sig[3] ^= 1;
    let mut flipped_tail = b_pong;
    flipped_tail.sig[63] ^= 0x40;
    let mut by_c = answer(&mut c);
    by_c.pubkey = b_pong.pubkey;
    for junk in [flipped, flipped_tail, by_c] {
        let fx = deliver_pong(&mut a, 10, b_addr, junk);
        assert!(fx.is_empty());
        assert!(a.has_outstanding_challenge(b_addr));
        assert!(!a.is_proven(b_addr));
    }
    assert_eq!(a.stats().bad_signature, 3);
    deliver_pong(&mut a, 20, b_addr, b_pong);
    assert!(a.is_proven(b_addr));
    assert_eq!(a.pubkey_of(b_addr), Some(b_pong.pubkey));
    assert_eq!(a.stats().pongs_accepted, 1);
    b_pong
}

#[test]
fn ed25519_pongs_are_checked_by_signature() {
    assert_eq!(PeerConfig::default().pong_auth, PongAuth::Ed25519);
    let p = pong_auth_round(&PongAuth::Ed25519);
    assert!(verify_signature(
        &p.pubkey,
        &pong_signed_hash(&p.challenge, &p.salt),
        &p.sig
    ));
}

#[test]
fn simulated_mac_pongs_are_checked_against_the_registry() {
    let registry = Arc::new(MacKeyRegistry::new());
    for n in [101, 102, 103] {
        registry.register(&key(n));
    }
    let auth = PongAuth::SimulatedMac(Arc::clone(&registry));
    let p = pong_auth_round(&auth);
    // A MAC, not a signature: zero tail, not Ed25519-valid.
    assert_eq!(p.sig[32..], [0; 32]);
    let hash = pong_signed_hash(&p.challenge, &p.salt);
    assert!(!verify_signature(&p.pubkey, &hash, &p.sig));
    // An Ed25519 PONG, and a MAC PONG from a key the registry does not know, are refused.
    let e = sa("10.0.1.1:4000");
    let mut cfg = config("10.0.0.1:4000", &["10.0.1.1:4000"]);
    cfg.pong_auth = auth.clone();
    let mut t = PeerTable::new(cfg, key(101), 1).unwrap();
    let c = ping_to(&t.tick(0), e).unwrap();
    let mut unknown = PeerTable::new(
        PeerConfig {
            pong_auth: auth,
            ..config("10.0.1.1:4000", &[])
        },
        key(9),
        9,
    )
    .unwrap();
    let fx = unknown.handle(0, sa("10.0.0.1:4000"), &Message::Ping { challenge: c });
    let unknown_pong = fx
        .datagrams
        .iter()
        .find_map(|d| match d.message {
            Outgoing::Pong(p) => Some(p),
            _ => None,
        })
        .unwrap();
    for junk in [pong(&key(1), c, &[]), unknown_pong] {
        assert!(deliver_pong(&mut t, 10, e, junk).is_empty());
        assert!(!t.is_proven(e));
    }
    assert_eq!(t.stats().bad_signature, 2);
    // Once registered, the same key's MAC is accepted.
    registry.register(&key(1));
    let mut good = pong(&key(1), c, &[]);
    good.sig = [0; 64];
    good.sig[..32].copy_from_slice(
        blake3::keyed_hash(
            &simulated_mac_key(&key(1)),
            &pong_signed_hash(&c, &good.salt),
        )
        .as_bytes(),
    );
    deliver_pong(&mut t, 20, e, good);
    assert!(t.is_proven(e));
}

// ----- Address proofs (`PeerTable::prove`, `peer::prover`) -----

/// A proof is one PING to an unproven address; its right answer is a `Proven` event, the address
/// does not become a candidate or peer, and the table counts no refusal for it. A wrong key or
/// signature proves nothing.
#[test]
fn a_proof_pings_once_and_its_pong_proves_the_key_without_making_a_peer() {
    let (mut t, _e, _ek) = table_with_authenticated_edge();
    let x = sa("10.0.2.1:4000");
    let xk = key(2);
    let fx = t.prove(100, x);
    assert_eq!(fx.datagrams.len(), 1);
    assert!(
        !fx.datagrams[0].to_proven,
        "draws on the amplification limit"
    );
    let c = ping_to(&fx, x).expect("a proof PING");
    // Asked again while outstanding: no second PING.
    assert!(t.prove(110, x).datagrams.is_empty());
    let before = *t.stats();
    let fx = deliver_pong(&mut t, 120, x, pong(&xk, c, &[]));
    assert_eq!(
        fx.events,
        vec![PeerEvent::Proven {
            addr: x,
            pubkey: xk.public()
        }]
    );
    assert!(!t.is_peer(x) && !t.is_candidate(x));
    assert!(
        t.is_proven(x),
        "replies to it no longer draw on the allowance"
    );
    assert_eq!(t.stats().refused_total(), before.refused_total());
    assert_eq!(t.stats().proofs_succeeded, 1);
    assert_eq!(t.stats().proofs_already_pending, 1);
    // A replay is no longer a proof: the table's, unsolicited.
    let fx = deliver_pong(&mut t, 130, x, pong(&xk, c, &[]));
    assert!(fx.events.is_empty());
    assert_eq!(t.stats().unsolicited_pong, before.unsolicited_pong + 1);
    // A bad signature proves nothing.
    let y = sa("10.0.3.1:4000");
    let c = ping_to(&t.prove(140, y), y).unwrap();
    let mut forged = pong(&key(3), c, &[]);
    forged.pubkey = key(4).public();
    assert!(deliver_pong(&mut t, 150, y, forged).events.is_empty());
    assert_eq!(t.stats().proofs_bad_signature, 1);
    // Our own key proves nothing either.
    let z = sa("10.0.4.1:4000");
    let c = ping_to(&t.prove(160, z), z).unwrap();
    let own = key(101);
    assert!(
        deliver_pong(&mut t, 170, z, pong(&own, c, &[]))
            .events
            .is_empty()
    );
    assert_eq!(t.stats().proofs_wrong_key, 1);
}

/// An address with a pinned key is proven at once, without a PING; a bad address or ours is
/// refused; proofs expire on the table's tick.
#[test]
fn a_pinned_key_proves_at_once_and_unanswered_proofs_expire() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    let fx = t.prove(100, e);
    assert!(fx.datagrams.is_empty());
    assert_eq!(
        fx.events,
        vec![PeerEvent::Proven {
            addr: e,
            pubkey: ek.public()
        }]
    );
    assert_eq!(t.stats().proofs_known, 1);
    assert!(t.prove(100, sa("0.0.0.0:4000")).is_empty());
    assert!(t.prove(100, sa("10.0.0.1:4000")).is_empty());
    assert_eq!(t.stats().proofs_bad_addr, 2);
    let x = sa("10.0.2.1:4000");
    let c = ping_to(&t.prove(200, x), x).unwrap();
    t.tick(200 + t.config().proof_timeout_ms);
    assert_eq!(t.stats().proofs_expired, 1);
    // Late: the table's (unsolicited), not a proof.
    assert!(
        deliver_pong(&mut t, 2_300, x, pong(&key(2), c, &[]))
            .events
            .is_empty()
    );
    assert_eq!(t.stats().proofs_succeeded, 0);
}

/// A proof of an address that is also the table's candidate: each PONG goes to whoever sent its
/// challenge, and both succeed.
#[test]
fn a_proof_and_a_candidate_ping_of_one_address_do_not_disturb_each_other() {
    let (mut t, e, ek) = table_with_authenticated_edge();
    let x = sa("10.0.2.1:4000");
    let xk = key(2);
    // E lists X: the table pings it as a candidate.
    let fx = edge_answers(&mut t, 1_000, e, &ek, &[x]);
    let candidate_challenge = ping_to(&fx, x).expect("candidate PING");
    let proof_challenge = ping_to(&t.prove(1_010, x), x).expect("proof PING");
    assert_ne!(candidate_challenge, proof_challenge);
    let fx = deliver_pong(&mut t, 1_020, x, pong(&xk, proof_challenge, &[]));
    assert!(fx.events.contains(&PeerEvent::Proven {
        addr: x,
        pubkey: xk.public()
    }));
    let fx = deliver_pong(&mut t, 1_030, x, pong(&xk, candidate_challenge, &[]));
    assert!(fx.events.contains(&PeerEvent::Authenticated {
        addr: x,
        pubkey: xk.public()
    }));
    assert_eq!(t.stats().wrong_challenge, 0);
}

// ----- Peers the router watches (issue 12, "liveness without a full mesh") -----

/// A table whose driver runs a router (`router_liveness`), with short `routed_*` bounds so the
/// test can run through them.
fn routed_table(listen: &str, edges: &[&str], seed: u64, features: Features) -> PeerTable {
    let config = PeerConfig {
        router_liveness: true,
        routed_deactivate_after_ms: 20_000,
        routed_drop_after_ms: 60_000,
        features,
        ..config(listen, edges)
    };
    PeerTable::new(config, key(seed as u8 + 100), seed).unwrap()
}

/// PINGs `from` sent to `to` in `net` from `since` on (every datagram is recorded in `sent`).
fn pings_sent(net: &Net, since: usize, from: SocketAddr, to: SocketAddr) -> usize {
    net.sent[since..]
        .iter()
        .filter(|(src, d)| *src == from && d.to == to && matches!(d.message, Outgoing::Ping { .. }))
        .count()
}

/// A (router liveness, no edges), B (router liveness, edge A) and V (v1-only, edge A): A and B
/// stop pinging each other once authenticated and stay active on router answers, while A and V
/// keep the exact v1 schedule both ways; a router eviction drops a routed peer at once and
/// leaves a v1 peer alone; a routed peer nobody hears is deactivated and dropped by the
/// `routed_*` bounds.
#[test]
fn routing_peers_leave_the_ping_schedule_and_v1_peers_keep_it() {
    let a = sa("10.0.0.1:4000");
    let b = sa("10.0.2.1:4000");
    let v = sa("10.0.3.1:4000");
    let mut net = Net::new(vec![
        (a, routed_table("10.0.0.1:4000", &[], 1, Features::ALL)),
        (
            b,
            routed_table("10.0.2.1:4000", &["10.0.0.1:4000"], 2, Features::ALL),
        ),
        (
            v,
            routed_table("10.0.3.1:4000", &["10.0.0.1:4000"], 3, Features::NONE),
        ),
    ]);
    net.run_until(6_000);
    for (x, y) in [(a, b), (b, a), (a, v), (v, a)] {
        assert!(net.table(x).is_active(y), "{x} sees {y} active");
    }
    assert!(net.table(a).is_routed(b) && net.table(b).is_routed(a));
    assert!(!net.table(a).is_routed(v) && !net.table(v).is_routed(a));
    // Ten seconds, more than the v1 drop bound of 12 s minus the 3 s already passed.
    let since = net.sent.len();
    net.run_until(16_000);
    assert_eq!(pings_sent(&net, since, a, b), 0, "A does not ping B");
    assert_eq!(
        pings_sent(&net, since, b, a),
        0,
        "B does not ping its edge A"
    );
    assert_eq!(pings_sent(&net, since, a, v), 10, "A pings V once a second");
    assert_eq!(pings_sent(&net, since, v, a), 10, "V pings A once a second");
    // Silent for 10 s (over the v1 deactivation and close to the v1 drop), still active; the
    // v1 peer answered every ping and is active both ways.
    for (x, y) in [(a, b), (b, a), (a, v), (v, a)] {
        assert!(net.table(x).is_active(y), "{x} sees {y} active at 16 s");
    }

    // Router answers keep a routed peer alive; they mean nothing for a v1 peer.
    let heard_at = 18_000;
    net.run_until(heard_at);
    let t = &mut net.nodes[0].1;
    assert!(t.router_heard(heard_at, b).is_empty(), "already active");
    assert!(t.router_heard(heard_at, v).is_empty());
    assert_eq!(t.stats().router_heard, 1);
    // B last answered a PING at 4 s (the v1 schedule runs until it is active, at 5 s): without
    // the router's answer it would be deactivated at 24 s.
    net.run_until(heard_at + 19_900);
    assert!(net.table(a).is_active(b));
    net.run_until(heard_at + 20_000);
    assert!(
        !net.table(a).is_active(b),
        "20 s after the router last heard it"
    );
    assert!(net.table(a).is_peer(b), "deactivated, not dropped");
    let t = &mut net.nodes[0].1;
    let fx = t.router_heard(heard_at + 20_100, b);
    assert_eq!(fx.events, vec![PeerEvent::Activated { addr: b }]);
    let drops = |net: &Net| {
        net.events
            .iter()
            .filter(|(x, e)| *x == a && *e == PeerEvent::Dropped { addr: b })
            .count()
    };
    net.run_until(heard_at + 20_100 + 59_900);
    assert!(net.table(a).is_peer(b));
    assert_eq!(drops(&net), 0);
    net.run_until(heard_at + 20_100 + 60_000);
    // (V, pinging B on the v1 schedule, lists it in its PONGs: A may find B again at once, as
    // a new candidate.)
    assert_eq!(drops(&net), 1, "dropped 60 s after it was last heard");
    // Meanwhile V stayed active on the v1 schedule all along (and was never dropped).
    assert!(net.table(a).is_active(v) && net.table(v).is_active(a));
    assert_eq!(
        net.events
            .iter()
            .filter(|(x, e)| *x == a && *e == PeerEvent::Deactivated { addr: v })
            .count(),
        0
    );

    // B's own side: A is its edge and routed; a router eviction forgets A's key, and A goes back
    // on the ping schedule (and re-authenticates at the next round).
    let now = net.now_ms;
    let tb = &mut net.nodes[1].1;
    assert!(tb.is_routed(a));
    let fx = tb.router_evicted(now, a);
    assert!(fx.events.contains(&PeerEvent::Dropped { addr: a }));
    assert!(tb.is_peer(a) && !tb.is_proven(a) && !tb.is_routed(a));
    assert_eq!(tb.stats().router_evicted, 1);
    let since = net.sent.len();
    net.run_until(now + 1_000);
    assert!(
        pings_sent(&net, since, b, a) >= 1,
        "the edge is pinged again"
    );
    assert!(net.table(b).is_proven(a) && net.table(b).is_routed(a));

    // A router eviction of a v1 peer changes nothing.
    let now = net.now_ms;
    let ta = &mut net.nodes[0].1;
    assert!(ta.router_evicted(now, v).is_empty());
    assert!(ta.is_active(v));
    assert_eq!(ta.stats().router_evicted, 0);
}

/// Without `router_liveness` (the default: no router to feed the table) a routing peer keeps the
/// v1 schedule.
#[test]
fn without_a_router_routing_peers_keep_the_v1_schedule() {
    let (mut net, a, b) = two_nodes();
    net.run_until(6_000);
    assert!(net.table(a).features_of(b).contains(Features::ROUTING));
    assert!(!net.table(a).is_routed(b));
    let since = net.sent.len();
    net.run_until(16_000);
    assert_eq!(pings_sent(&net, since, a, b), 10);
    let t = &mut net.nodes[0].1;
    assert!(t.router_evicted(16_000, b).is_empty(), "not the router's");
    assert!(t.is_active(b));
}

/// A routing peer that answers once and leaves (a `dave put` client) is never watched by the
/// router: it stays on the v1 schedule, never becomes active, and is dropped by the v1 bound.
#[test]
fn a_fly_by_routing_peer_is_never_handed_to_the_router() {
    let a = sa("10.0.0.1:4000");
    let x = sa("10.0.2.1:4000");
    let mut net = Net::new(vec![
        (a, routed_table("10.0.0.1:4000", &[], 1, Features::ALL)),
        (
            x,
            routed_table("10.0.2.1:4000", &["10.0.0.1:4000"], 2, Features::ALL),
        ),
    ]);
    net.run_until(0);
    assert!(net.table(a).is_proven(x));
    assert!(!net.table(a).is_routed(x), "not before it has been active");
    net.down.insert(x);
    let since = net.sent.len();
    net.run_until(11_900);
    assert!(!net.table(a).is_active(x) && !net.table(a).is_routed(x));
    assert!(
        pings_sent(&net, since, a, x) >= 10,
        "still on the v1 schedule"
    );
    net.run_until(12_000);
    assert!(
        !net.table(a).is_peer(x),
        "dropped 12 s after its only answer"
    );
}

// ----- PONG signatures checked together -----

/// Stats with the batch counters zeroed, to compare a table that checked PONGs together with
/// one that did not.
fn without_batch_counts(mut s: PeerStats) -> PeerStats {
    s.pong_signatures_batched = 0;
    s.pong_batches_failed = 0;
    s
}

/// Two tables built alike: `batched` checks each round's PONGs together before handling them,
/// `single` only handles them. Rounds 1–2 every edge answers; from round 3 edge 3 answers with a
/// bad signature. Both tables must end every round with the same events, stats, snapshot and
/// outgoing datagrams; the batch passes when all verify, fails once for edge 3 (then every PONG
/// is checked on its own, as without a batch), and leaves edge 3 out afterwards.
#[test]
fn pongs_checked_together_are_answered_as_pongs_checked_one_by_one() {
    const EDGES: usize = 8;
    const BAD: usize = 3;
    let edges: Vec<SocketAddr> = (1..=EDGES)
        .map(|i| sa(&format!("10.0.{i}.1:4000")))
        .collect();
    let edge_names: Vec<String> = edges.iter().map(|e| e.to_string()).collect();
    let edge_refs: Vec<&str> = edge_names.iter().map(String::as_str).collect();
    let keys: Vec<Keypair> = (1..=EDGES as u8).map(key).collect();
    let mut batched = table("10.0.0.1:4000", &edge_refs, 1);
    let mut single = table("10.0.0.1:4000", &edge_refs, 1);
    let period = PeerConfig::default().ping_period_ms;
    for round in 0..5u64 {
        let now = round * period;
        let (fx_b, fx_s) = (batched.tick(now), single.tick(now));
        assert_eq!(fx_b.datagrams, fx_s.datagrams, "round {round}: same PINGs");
        let pongs: Vec<(SocketAddr, PongRepr)> = edges
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (&e, k))| {
                let c = ping_to(&fx_b, e).expect("every edge pinged each round");
                let mut p = pong(k, c, &[]);
                if i == BAD && round >= 2 {
                    p.sig = k.sign(&[9u8; 32]); // its key's signature, over the wrong hash
                }
                (e, p)
            })
            .collect();
        batched.check_pongs_together(pongs.iter().map(|(e, p)| (*e, p)));
        for (e, p) in &pongs {
            let (a, b) = (
                deliver_pong(&mut batched, now, *e, *p),
                deliver_pong(&mut single, now, *e, *p),
            );
            assert_eq!(a.events, b.events, "round {round}, {e}");
            assert_eq!(a.datagrams, b.datagrams, "round {round}, {e}");
        }
        assert_eq!(
            without_batch_counts(*batched.stats()),
            *single.stats(),
            "round {round}"
        );
        assert_eq!(batched.snapshot().peers(), single.snapshot().peers());
        let s = batched.stats();
        match round {
            // The first answers authenticate the edges: their keys were not pinned yet.
            0 => assert_eq!((s.pong_signatures_batched, s.pong_batches_failed), (0, 0)),
            1 => assert_eq!((s.pong_signatures_batched, s.pong_batches_failed), (8, 0)),
            // Edge 3's bad signature spoils the batch once; then it is left out.
            2 => assert_eq!((s.pong_signatures_batched, s.pong_batches_failed), (8, 1)),
            3 => assert_eq!((s.pong_signatures_batched, s.pong_batches_failed), (15, 1)),
            _ => assert_eq!((s.pong_signatures_batched, s.pong_batches_failed), (22, 1)),
        }
    }
    assert_eq!(single.stats().bad_signature, 3);
    assert_eq!(single.stats().pongs_accepted, 5 * EDGES as u64 - 3);
}

/// A signature checked in a batch vouches for exactly its PONG: the same key and signature over
/// another hash (another salt) is checked again, and fails.
#[test]
fn a_batch_checked_signature_vouches_only_for_its_own_hash() {
    let k = key(1);
    let p = pong(&k, [1; 8], &[]);
    let checked = [CheckedPong {
        key: DecodedKey::decode(&p.pubkey).unwrap(),
        hash: pong_signed_hash(&p.challenge, &p.salt),
        sig: p.sig,
    }];
    let auth = PongAuthenticator::new(&PongAuth::Ed25519, &k);
    assert!(signature_ok(&auth, &checked, None, &p));
    let mut other_salt = p;
    other_salt.salt = [8; 16];
    assert!(!signature_ok(&auth, &checked, None, &other_salt));
    // A checked entry is trusted as it is: that is what the batch proved.
    let mut forged = p;
    forged.sig = [0; 64];
    let vouched = [CheckedPong {
        sig: forged.sig,
        ..checked[0]
    }];
    assert!(signature_ok(&auth, &vouched, None, &forged));
    assert!(!signature_ok(&auth, &checked, None, &forged));
}
