//! The peer table through its public API: a small network that discovers itself, and property
//! tests that no sequence of datagrams can panic the table, authenticate a forger, or grow the
//! table past its bounds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use dave::keys::Keypair;
use dave::limits::{ADDR_LEN, MAX_PACKET_LEN, MAX_PONG_ADDRS};
use dave::peer::{Effects, IpPrefix, Outgoing, PeerConfig, PeerTable, check_addr};
use dave::wire::{Message, PongRepr, addr_from_wire, addr_to_wire, pong_signed_hash};
use proptest::prelude::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn node(addr: SocketAddr, edges: &[SocketAddr], seed: u64) -> PeerTable {
    let config = PeerConfig {
        listen_addr: Some(addr),
        edges: edges.to_vec(),
        ..PeerConfig::default()
    };
    PeerTable::new(config, Keypair::from_seed(&[seed as u8; 32]), seed).unwrap()
}

/// Instant delivery through the codec; returns every (sender, datagram).
fn run(
    nodes: &mut [(SocketAddr, PeerTable)],
    until_ms: u64,
) -> Vec<(SocketAddr, dave::peer::Datagram)> {
    let mut log = Vec::new();
    let mut now = 0;
    while now <= until_ms {
        for i in 0..nodes.len() {
            let fx = nodes[i].1.tick(now);
            let mut queue = VecDeque::from([(nodes[i].0, fx)]);
            while let Some((src, fx)) = queue.pop_front() {
                for d in fx.datagrams {
                    log.push((src, d));
                    assert!(log.len() < 1_000_000, "datagram storm");
                    if let Some(j) = nodes.iter().position(|(a, _)| *a == d.to) {
                        let mut buf = [0u8; MAX_PACKET_LEN];
                        let n = d.message.emit(&mut buf);
                        let msg = Message::parse(&buf[..n]).unwrap();
                        let reply = nodes[j].1.handle(now, src, &msg);
                        queue.push_back((d.to, reply));
                    }
                }
            }
        }
        now += 100;
    }
    log
}

#[test]
fn eight_nodes_bootstrapped_from_one_edge_form_a_full_mesh() {
    let addrs: Vec<SocketAddr> = (0..8).map(|i| sa(&format!("10.0.{i}.1:4000"))).collect();
    let mut nodes: Vec<(SocketAddr, PeerTable)> = addrs
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let edges = if i == 0 { vec![] } else { vec![addrs[0]] };
            (a, node(a, &edges, i as u64 + 1))
        })
        .collect();
    let log = run(&mut nodes, 30_000);
    for (a, t) in &nodes {
        let snap = t.snapshot();
        assert_eq!(snap.len(), 7, "{a} sees everyone else");
        assert!(snap.peers().iter().all(|p| p.addr != *a));
        assert_eq!(t.stats().refused_total(), 0, "{a}: {:?}", t.stats());
    }
    // Amplification rule: an address that is neither proven nor an edge got at most one PING.
    let mut unproven_pings: BTreeMap<(SocketAddr, SocketAddr), usize> = BTreeMap::new();
    for (src, d) in &log {
        let is_edge = d.to == addrs[0] && *src != addrs[0];
        if !d.to_proven && !is_edge && matches!(d.message, Outgoing::Ping { .. }) {
            *unproven_pings.entry((*src, d.to)).or_default() += 1;
        }
    }
    assert!(!unproven_pings.is_empty());
    assert!(
        unproven_pings.values().all(|&n| n == 1),
        "{unproven_pings:?}"
    );
}

/// A table with edges at 10.0.1.1:4000 and 10.0.1.2:4000 that nobody can impersonate.
fn target() -> (PeerTable, usize) {
    let config = PeerConfig {
        listen_addr: Some(sa("10.0.0.1:4000")),
        edges: vec![sa("10.0.1.1:4000"), sa("10.0.1.2:4000")],
        max_candidates: 32,
        max_pinger_candidates: 16,
        max_peers_per_ip: 2,
        max_peers_per_prefix: 4,
        ..PeerConfig::default()
    };
    (
        PeerTable::new(config, Keypair::from_seed(&[42; 32]), 7).unwrap(),
        2,
    )
}

fn source() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        Just(sa("10.0.1.1:4000")),
        Just(sa("10.0.1.2:4000")),
        Just(sa("10.0.0.1:4000")),
        Just(sa("0.0.0.0:1")),
        (0u8..4, any::<u8>(), 0u16..3).prop_map(|(c, d, p)| sa(&format!("10.9.{c}.{d}:{p}"))),
        any::<[u8; ADDR_LEN]>().prop_map(|w| addr_from_wire(&w)),
    ]
}

fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        // Well-formed PONGs with junk solutions, and their neighbours.
        (0usize..7, prop::collection::vec(any::<u8>(), 120)).prop_map(|(n, sol)| {
            let mut b = vec![1u8, (n * ADDR_LEN) as u8];
            b.extend((0..n * ADDR_LEN).map(|i| i as u8));
            b.extend(sol);
            b
        }),
        any::<[u8; 9]>().prop_map(|mut b| {
            b[0] = 0;
            b.to_vec()
        }),
        any::<[u8; 19]>().prop_map(|mut b| {
            b[0] = 6;
            b.to_vec()
        }),
        Just(vec![5u8]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary datagrams from arbitrary sources at arbitrary times: no panic, no forged peer,
    /// bounds hold, and every refusal is counted.
    #[test]
    fn arbitrary_datagrams_cannot_panic_or_authenticate(
        steps in prop::collection::vec((source(), datagram(), 0u64..2500, any::<bool>()), 1..60)
    ) {
        let (mut t, edges) = target();
        let mut now = 0u64;
        for (from, bytes, dt, tick) in steps {
            now += dt;
            if tick {
                t.tick(now);
            }
            if let Ok(msg) = Message::parse(&bytes) {
                let refused_before = t.stats().refused_total();
                let fx = t.handle(now, from, &msg);
                // Silence means a counted refusal (or a repeated, accepted own-address answer).
                if fx.is_empty() && !matches!(msg, Message::GetMyAddrPortAck(_)) {
                    prop_assert_eq!(t.stats().refused_total(), refused_before + 1);
                }
                for d in &fx.datagrams {
                    prop_assert!(!d.to_proven);
                    prop_assert!(check_addr(d.to).is_ok());
                    prop_assert!(d.message.buffer_len() <= MAX_PACKET_LEN);
                }
            }
            // Only the edges: nobody can sign our challenges.
            prop_assert_eq!(t.peer_count(), edges);
            prop_assert!(t.candidate_count() <= 16, "strangers use at most their share");
            prop_assert!(t.snapshot().is_empty());
        }
    }

    /// A genuine edge answering every round with arbitrary address lists: candidates stay within
    /// every bound, and no unusable address ever becomes one.
    #[test]
    fn listed_addresses_respect_every_bound(
        lists in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    any::<[u8; ADDR_LEN]>().prop_map(|w| addr_from_wire(&w)),
                    (0u8..3, 0u8..6, 0u16..3)
                        .prop_map(|(c, d, p)| sa(&format!("10.9.{c}.{d}:{p}"))),
                    Just(sa("10.0.0.1:4000")),
                    Just(sa("127.0.0.1:4000")),
                    Just(sa("224.0.0.1:4000")),
                ],
                0..=MAX_PONG_ADDRS,
            ),
            1..40,
        )
    ) {
        let (mut t, _) = target();
        let e = sa("10.0.1.1:4000");
        let ek = Keypair::from_seed(&[1; 32]);
        let mut listed = BTreeSet::new();
        let mut pinged: BTreeMap<SocketAddr, usize> = BTreeMap::new();
        for (round, list) in lists.iter().enumerate() {
            let now = round as u64 * 1000;
            let mut fx = t.tick(now);
            let Some(challenge) = fx.datagrams.iter().find_map(|d| match d.message {
                Outgoing::Ping { challenge } if d.to == e => Some(challenge),
                _ => None,
            }) else {
                return Err(TestCaseError::fail("edge not pinged"));
            };
            let salt = [round as u8; 16];
            let mut pong = PongRepr {
                addr_count: list.len(),
                addrs: [[0; ADDR_LEN]; MAX_PONG_ADDRS],
                challenge,
                salt,
                pubkey: ek.public(),
                sig: ek.sign(&pong_signed_hash(&challenge, &salt)),
            };
            for (i, &a) in list.iter().enumerate() {
                pong.addrs[i] = addr_to_wire(a);
                listed.insert(addr_from_wire(&addr_to_wire(a)));
            }
            let mut answer: Effects = t.handle(now, e, &Message::Pong(pong));
            prop_assert!(t.is_proven(e));
            fx.append(&mut answer);
            for d in &fx.datagrams {
                let to_edge = d.to == e || d.to == sa("10.0.1.2:4000");
                if matches!(d.message, Outgoing::Ping { .. }) && !to_edge {
                    *pinged.entry(d.to).or_default() += 1;
                }
            }
            prop_assert!(t.candidate_count() <= 32);
            let candidates: Vec<SocketAddr> =
                listed.iter().copied().filter(|&a| t.is_candidate(a)).collect();
            prop_assert_eq!(candidates.len(), t.candidate_count());
            let mut per_ip: BTreeMap<_, usize> = BTreeMap::new();
            let mut per_prefix: BTreeMap<IpPrefix, usize> = BTreeMap::new();
            for a in &candidates {
                prop_assert!(check_addr(*a).is_ok());
                prop_assert!(!a.ip().is_loopback(), "listed by a non-loopback peer");
                prop_assert!(*a != sa("10.0.0.1:4000"), "our own address");
                *per_ip.entry(a.ip()).or_default() += 1;
                *per_prefix.entry(IpPrefix::of(a.ip(), 24, 48)).or_default() += 1;
            }
            prop_assert!(per_ip.values().all(|&n| n <= 2));
            prop_assert!(per_prefix.values().all(|&n| n <= 4));
        }
        // Candidate TTL is 10 s: within 40 rounds an address is pinged at most once per 10 s.
        let rounds = lists.len();
        let most = rounds.div_ceil(10);
        prop_assert!(pinged.values().all(|&n| n <= most), "{:?}", pinged);
    }
}

/// What a stranger does to a full table in [`a_full_table_proves_only_strangers_that_answer`].
#[derive(Debug, Clone)]
enum StrangerStep {
    /// Stranger `who` PINGs the table.
    Ping(usize),
    /// Stranger `who` answers the last PING the table sent it, signed with its own key.
    Answer(usize),
    /// Stranger `from` sends the answer another stranger `of` would give (a relayed PONG).
    Relay { from: usize, of: usize },
    /// A PONG with an arbitrary key and signature from stranger `who`'s address, signing the
    /// challenge last sent to `who` or an arbitrary one.
    Junk {
        who: usize,
        challenge: Option<[u8; 8]>,
        seed: u8,
    },
    /// Only the clock moves (the table's tick runs).
    Tick,
}

fn stranger_step() -> impl Strategy<Value = StrangerStep> {
    prop_oneof![
        3 => (0usize..8).prop_map(StrangerStep::Ping),
        3 => (0usize..8).prop_map(StrangerStep::Answer),
        1 => (0usize..8, 1usize..8).prop_map(|(from, d)| StrangerStep::Relay { from, of: (from + d) % 8 }),
        1 => (0usize..8, any::<Option<[u8; 8]>>(), any::<u8>())
            .prop_map(|(who, challenge, seed)| StrangerStep::Junk { who, challenge, seed }),
        1 => Just(StrangerStep::Tick),
    ]
}

/// The clock's steps: mostly within a proof's timeout, sometimes past a proven address's time.
fn stranger_dt() -> impl Strategy<Value = u64> {
    use dave::peer::prover::PROVEN_TTL_MS;
    prop_oneof![8 => 0u64..1500, 1 => Just(PROVEN_TTL_MS)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A full table pinged, answered, relayed to and lied to by eight strangers (session 18's
    /// stranger proofs): an address becomes proven only by a PONG from that address signing a
    /// challenge the table sent it, and stays so only for the proven time; an honest answer in
    /// time, with no other PONG from that address since the PING, always proves; the table sends at most `stranger_proofs_per_s` proof PINGs a second (with its
    /// burst) and never a second one to an address while its first is outstanding; no stranger
    /// becomes a peer or candidate; replies marked `to_proven` go only to proven addresses.
    #[test]
    fn a_full_table_proves_only_strangers_that_answer(
        steps in prop::collection::vec((stranger_step(), stranger_dt()), 1..80)
    ) {
        use dave::peer::prover::{PROOF_BURST_S, PROVEN_TTL_MS};
        const RATE_PER_S: u64 = 3;
        let edge = sa("10.0.1.1:4000");
        let config = PeerConfig {
            listen_addr: Some(sa("10.0.0.1:4000")),
            edges: vec![edge],
            max_peers: 1,
            stranger_proofs_per_s: RATE_PER_S as u32,
            ..PeerConfig::default()
        };
        let timeout_ms = config.proof_timeout_ms;
        let mut t = PeerTable::new(config, Keypair::from_seed(&[42; 32]), 7).unwrap();
        let addrs: Vec<SocketAddr> =
            (0..8).map(|i| sa(&format!("10.{}.0.1:9000", 50 + i))).collect();
        let keys: Vec<Keypair> = (0..8).map(|i| Keypair::from_seed(&[60 + i as u8; 32])).collect();
        let signed = |who: usize, challenge: [u8; 8]| {
            let salt = [9u8; 16];
            PongRepr {
                addr_count: 0,
                addrs: [[0; ADDR_LEN]; MAX_PONG_ADDRS],
                challenge,
                salt,
                pubkey: keys[who].public(),
                sig: keys[who].sign(&pong_signed_hash(&challenge, &salt)),
            }
        };
        // The model: per stranger, the last PING the table sent it (challenge, when), whether a
        // PONG came from its address since, and when it last answered that PING truly.
        let mut last_ping: Vec<Option<([u8; 8], u64)>> = vec![None; 8];
        let mut pong_since_ping = [false; 8];
        let mut proven_at: Vec<Option<u64>> = vec![None; 8];
        let mut proof_pings = 0u64;
        let mut now = 0u64;
        for (step, dt) in steps {
            now += dt;
            let mut expect_proven = None;
            let was_proven: Vec<bool> = addrs.iter().map(|&a| t.is_proven(a)).collect();
            let (from, fx) = match step {
                StrangerStep::Ping(who) => {
                    (Some(who), t.handle(now, addrs[who], &Message::Ping { challenge: [1; 8] }))
                }
                StrangerStep::Answer(who) => {
                    let Some((challenge, sent)) = last_ping[who] else { continue };
                    // In time and not answered (or spoiled) since: this answer must prove it.
                    if now - sent < timeout_ms && !pong_since_ping[who] {
                        expect_proven = Some(who);
                    }
                    pong_since_ping[who] = true;
                    let fx = t.handle(now, addrs[who], &Message::Pong(signed(who, challenge)));
                    (Some(who), fx)
                }
                StrangerStep::Relay { from, of } => {
                    let Some((challenge, _)) = last_ping[of] else { continue };
                    pong_since_ping[from] = true;
                    let was = t.is_proven(addrs[from]);
                    let fx = t.handle(now, addrs[from], &Message::Pong(signed(of, challenge)));
                    prop_assert!(!t.is_proven(addrs[from]) || was, "a relayed PONG proves nothing");
                    (Some(from), fx)
                }
                StrangerStep::Junk { who, challenge, seed } => {
                    pong_since_ping[who] = true;
                    let liar = Keypair::from_seed(&[seed; 32]);
                    let challenge = challenge
                        .or(last_ping[who].map(|(c, _)| c))
                        .unwrap_or_default();
                    let mut pong = signed(who, challenge);
                    pong.pubkey = liar.public();
                    pong.sig[0] ^= seed | 1;
                    let was = t.is_proven(addrs[who]);
                    let fx = t.handle(now, addrs[who], &Message::Pong(pong));
                    prop_assert!(!t.is_proven(addrs[who]) || was, "a junk PONG proves nothing");
                    (Some(who), fx)
                }
                StrangerStep::Tick => (None, t.tick(now)),
            };
            // Only a true answer from the address itself makes it proven.
            for (who, &a) in addrs.iter().enumerate() {
                if t.is_proven(a) && !was_proven[who] {
                    prop_assert!(
                        matches!(step, StrangerStep::Answer(w) if w == who),
                        "{} proven by {:?}", a, step
                    );
                    proven_at[who] = Some(now);
                }
            }
            let _ = from;
            if let Some(who) = expect_proven {
                prop_assert!(t.is_proven(addrs[who]), "an answer in time proves {}", addrs[who]);
            }
            for d in &fx.datagrams {
                prop_assert!(!d.to_proven || t.is_proven(d.to), "to_proven to {}", d.to);
                if let Outgoing::Ping { challenge } = d.message {
                    let Some(who) = addrs.iter().position(|&a| a == d.to) else {
                        prop_assert_eq!(d.to, edge);
                        continue;
                    };
                    if let Some((_, sent)) = last_ping[who] {
                        prop_assert!(
                            now - sent >= timeout_ms || pong_since_ping[who],
                            "a second proof PING to {} while the first was outstanding", d.to
                        );
                    }
                    last_ping[who] = Some((challenge, now));
                    pong_since_ping[who] = false;
                    proof_pings += 1;
                }
            }
            // The rate limit: the burst, then RATE_PER_S a second.
            prop_assert!(proof_pings <= RATE_PER_S * PROOF_BURST_S + RATE_PER_S * now / 1000);
            prop_assert_eq!(t.stats().proofs_of_strangers, proof_pings);
            for (who, &a) in addrs.iter().enumerate() {
                prop_assert!(!t.is_peer(a) && !t.is_candidate(a));
                // Proven only for the proven time.
                if t.is_proven(a) {
                    let at = proven_at[who];
                    prop_assert!(
                        at.is_some_and(|at| now - at < PROVEN_TTL_MS),
                        "{} still proven (at {:?}, now {})", a, at, now
                    );
                    prop_assert_eq!(t.pubkey_of(a), None, "a proven stranger is no peer");
                }
            }
            prop_assert_eq!(t.peer_count(), 1);
            prop_assert!(t.proven_strangers() <= 8);
        }
    }
}
