//! Hostile input against a running node over real UDP (127.0.0.130–137): mutations of every
//! message the protocol and its extensions define — the v1 vectors, the routing extension's
//! (0x10..=0x17, well formed and malformed) and the v2 records' (0x18..=0x1e), an extended PONG,
//! plus datagrams that are valid right now (a GET and a PUT for live records) — sent from an
//! address that never proved itself and from a proven peer that advertises every extension;
//! the unproven address also sends runs of them as UDP GSO sends, which reach the PUT lane
//! whole (UDP GRO) when led by a PUT.
//!
//! Where `tests/node_safety.rs` shows each malformed v1 datagram is dropped and counted, this
//! shows the whole dispatch (peer table, routing, v2 records, limiter, owners) under a bounded
//! barrage of near-valid input: no thread of the node panics, the unproven sender gets back no
//! more than the documented amplification budget (and less than it sent), the node keeps
//! answering, and the record it held before reads back byte for byte. A node with its
//! extensions off takes the same barrage and answers no extension op at all.
//!
//! CI runs one seed at 12,000 datagrams per sender. Longer runs by hand:
//! `DAVE_HOSTILE_DATAGRAMS=100000 DAVE_HOSTILE_SEED=N cargo test --test hostile_live --
//! --nocapture` (see the README's "Amplification limit" for what was run).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use dave::limits::MAX_PACKET_LEN;
use dave::net::set_udp_segment;
use dave::wire::ext::build_salt;
use dave::wire::record2::Op2;
use dave::wire::route::{OP_FIND_NODE, OP_NODES};
use dave::wire::{Features, GetRepr, Message, Op};
use dave::{Config, Keypair, Node};
use serde_json::Value;

/// Panics anywhere in this test process (the node's threads included).
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Datagrams each attacker sends. With bursts of `BURST` and `BURST_PAUSE` between them the
/// barrage lasts ~2.5 s, slow enough that the node's receivers read nearly all of it (what is
/// measured is what the node does with the input, not what a full socket buffer sheds).
const DATAGRAMS_PER_ATTACKER: usize = 12_000;
const BURST: usize = 200;
const BURST_PAUSE: Duration = Duration::from_millis(20);

/// Every `RUN_EVERY`-th turn of the unproven attacker also sends a run of `RUN_LEN` mutated
/// datagrams of one length as one UDP GSO send, half of them led by a PUT: the kernel steers a
/// run by its first datagram, and hands a run led by a PUT to the PUT lane whole (UDP GRO), so
/// the lane's coalescing read takes runs of anything. 1 in 25 turns adds ~60 % more datagrams.
const RUN_EVERY: usize = 25;
const RUN_LEN: usize = 16;

/// The seed of the mutations in CI.
const DEFAULT_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Longer or other barrages by hand: `DAVE_HOSTILE_DATAGRAMS` (per attacker, at most
/// `MAX_DATAGRAMS_BY_HAND`: ~3.5 minutes at the paced rate) and `DAVE_HOSTILE_SEED` (a
/// nonzero u64) replace the defaults above; a value that does not parse is refused loudly.
const MAX_DATAGRAMS_BY_HAND: usize = 1_000_000;

fn barrage_size() -> (usize, u64) {
    let datagrams = std::env::var("DAVE_HOSTILE_DATAGRAMS").map_or(DATAGRAMS_PER_ATTACKER, |v| {
        let n: usize = v.parse().expect("DAVE_HOSTILE_DATAGRAMS: a count");
        assert!(
            (1..=MAX_DATAGRAMS_BY_HAND).contains(&n),
            "DAVE_HOSTILE_DATAGRAMS: 1..={MAX_DATAGRAMS_BY_HAND}"
        );
        n
    });
    let seed = std::env::var("DAVE_HOSTILE_SEED").map_or(DEFAULT_SEED, |v| {
        let seed: u64 = v.parse().expect("DAVE_HOSTILE_SEED: a u64");
        assert_ne!(seed, 0, "DAVE_HOSTILE_SEED: xorshift needs a nonzero seed");
        seed
    });
    (datagrams, seed)
}

/// A xorshift64 generator: the barrage is the same on every run of one seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("valid hex")
}

fn load(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors")).expect("json")
}

/// Every datagram the repository's vectors hold, across v1 and the extensions.
fn vector_datagrams() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let v1 = load("vectors.json");
    for m in v1["messages"].as_array().expect("messages") {
        out.push(hex(m["hex"].as_str().expect("hex")));
    }
    let route = load("route_vectors.json");
    for list in ["messages", "malformed"] {
        for m in route[list].as_array().expect("route list") {
            out.push(hex(m["hex"].as_str().expect("hex")));
        }
    }
    let record2 = load("record2_vectors.json");
    for (name, m) in record2["messages"].as_object().expect("record2 messages") {
        if name != "commit_sig_hex" {
            out.push(hex(m.as_str().expect("hex")));
        }
    }
    for r in record2["records"].as_array().expect("records") {
        out.push(hex(r["put2_hex"].as_str().expect("hex")));
    }
    let ext = load("ext_vectors.json");
    out.push(hex(ext["pong"]["hex"].as_str().expect("hex")));
    out
}

/// One hostile variant of `seed`: as it is, bits flipped, cut short, lengthened, another op,
/// a run overwritten, a length-like byte set to an extreme, or random bytes behind a known op.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = seed.to_vec();
    match rng.below(8) {
        0 => {}
        1 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
        }
        2 => d.truncate(rng.below(d.len())),
        3 => {
            let extra = 1 + rng.below(MAX_PACKET_LEN + 64 - d.len().min(MAX_PACKET_LEN));
            d.extend((0..extra).map(|_| rng.byte()));
        }
        4 => d[0] = rng.below(0x20) as u8,
        5 => {
            let start = rng.below(d.len());
            let end = (start + 1 + rng.below(64)).min(d.len());
            for b in &mut d[start..end] {
                *b = rng.byte();
            }
        }
        6 => {
            let i = rng.below(d.len());
            d[i] = if rng.below(2) == 0 { 0 } else { 0xff };
        }
        _ => {
            let len = 1 + rng.below(MAX_PACKET_LEN);
            d = (0..len).map(|_| rng.byte()).collect();
            d[0] = rng.below(0x20) as u8;
        }
    }
    d
}

/// `RUN_LEN` mutated datagrams cut or padded to the first one's length (the last may be
/// shorter, as a run's last may be), the first a PUT half the time; `None` if that length is 0
/// or the run would pass what one send may carry.
fn segmented_run(seeds: &[Vec<u8>], rng: &mut Rng) -> Option<Vec<Vec<u8>>> {
    let mut run: Vec<Vec<u8>> = (0..RUN_LEN)
        .map(|_| mutate(&seeds[rng.below(seeds.len())], rng))
        .collect();
    if rng.below(2) == 0
        && let Some(op) = run[0].first_mut()
    {
        *op = Op::Put as u8;
    }
    let segment = run[0].len();
    if segment == 0 || segment * RUN_LEN > 60_000 {
        return None;
    }
    let last = 1 + rng.below(segment);
    for (i, d) in run.iter_mut().enumerate().skip(1) {
        let len = if i == RUN_LEN - 1 { last } else { segment };
        d.resize_with(len, || rng.byte());
    }
    Some(run)
}

/// Bytes per op byte (the first byte of a datagram; an empty datagram counts under 0xff).
type BytesByOp = [u64; 256];

fn op_of(datagram: &[u8]) -> usize {
    datagram.first().map_or(0xff, |&op| usize::from(op))
}

/// Reads what arrived at `socket` without waiting, adding its bytes to `got` by op, and answers
/// PINGs with `pong` when given one (so a proven attacker stays proven).
fn drain_now(socket: &UdpSocket, got: &mut BytesByOp, pong: Option<&dyn Fn([u8; 8], SocketAddr)>) {
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        got[op_of(&buf[..n])] += n as u64;
        if let (Some(pong), Ok(Message::Ping { challenge })) = (pong, Message::parse(&buf[..n])) {
            pong(challenge, from);
        }
    }
}

/// Counts every panic of the process in [`PANICS`] (installed once; the default hook still
/// prints).
fn count_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous_hook(info);
        }));
    });
}

#[test]
fn a_barrage_of_mutated_messages_of_every_kind_breaks_nothing() {
    barrage(Features::ALL, 130);
}

/// A node with its extensions off is a v1 node: the same barrage, and not one byte answers an
/// extension op (they are unknown ops to it, counted and dropped).
#[test]
fn a_v1_only_node_answers_no_extension_op_under_the_barrage() {
    let back = barrage(Features::NONE, 134);
    let extension_ops = &back[0x10..=0x1f];
    assert_eq!(
        extension_ops, &[0; 16],
        "bytes a v1-only node answered with ops 0x10..=0x1f"
    );
}

/// Runs the barrage against a node with `extensions`, on 127.0.0.`ip`..=`ip + 3` (node, proven
/// attacker, unproven attacker, client); returns the bytes the unproven attacker got back, by op.
fn barrage(extensions: Features, ip: u8) -> BytesByOp {
    count_panics();

    // The proven attacker: a peer the node is told about, answering PINGs with PONGs that
    // advertise every extension, so the node treats its routing and v2 messages as a dave peer's.
    let proven = UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 0, ip + 1), 0)).expect("bind");
    proven.set_nonblocking(true).expect("nonblocking");
    let proven_key = Keypair::generate();
    let config = Config {
        // Deep enough for a burst (what a full channel drops is not the subject here).
        peer_channel_depth: 8192,
        extensions,
        ..test_config([127, 0, 0, ip], vec![proven.local_addr().expect("addr")])
    };
    let node = Node::start(config).expect("node");
    let to = node.local_addr();
    let send_pong = |challenge: [u8; 8], from: SocketAddr| {
        let salt = build_salt(rand::random(), Features::ALL);
        let _ = proven.send_to(&pong_datagram(&proven_key, challenge, salt), from);
    };
    assert!(
        wait_until(Duration::from_secs(10), || {
            drain_now(&proven, &mut [0; 256], Some(&send_pong));
            node.stats().peers_active >= 1
        }),
        "the proven attacker became an active peer"
    );

    // A record held before the barrage, and datagrams valid right now.
    let owner = Keypair::generate();
    let value = b"held before the barrage".to_vec();
    node.put_as(&owner, b"held", &value, TEST_WORK_BITS)
        .expect("put");
    let mut buf = [0u8; MAX_PACKET_LEN];
    let mut seeds = vector_datagrams();
    let n = Message::Get(GetRepr {
        pubkey: &owner.public(),
        key: b"held",
    })
    .emit(&mut buf);
    seeds.push(buf[..n].to_vec());
    let fresh = dave::pow::make_dat_single(
        &owner,
        b"fresh",
        b"a valid put",
        dave::time::unix_now_ms() - 1_000,
        TEST_WORK_BITS,
    );
    let n = Message::Put(fresh.as_view()).emit(&mut buf);
    seeds.push(buf[..n].to_vec());
    assert!(seeds.len() >= 30, "every vector file was read");

    let unproven = UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 0, ip + 2), 0)).expect("bind");
    unproven.set_nonblocking(true).expect("nonblocking");
    // The same address (so the same amplification budget), another port: segmented runs.
    let unproven_runs =
        UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 0, ip + 2), 0)).expect("bind");
    unproven_runs.set_nonblocking(true).expect("nonblocking");
    let mut runs_sent = 0u64;
    let before = node.stats();
    let (datagrams_per_attacker, seed) = barrage_size();
    let mut rng = Rng(seed);
    let (mut sent_unproven, mut sent_proven): (BytesByOp, BytesByOp) = ([0; 256], [0; 256]);
    let (mut back_unproven, mut back_proven): (BytesByOp, BytesByOp) = ([0; 256], [0; 256]);
    let mut sent_datagrams = 0u64;
    let start = Instant::now();
    for i in 0..2 * datagrams_per_attacker {
        let seed = &seeds[rng.below(seeds.len())];
        let datagram = mutate(seed, &mut rng);
        // A datagram over the socket's limit is the kernel's to refuse, not the node's input.
        if i % 2 == 0 {
            if unproven.send_to(&datagram, to).is_ok() {
                sent_unproven[op_of(&datagram)] += datagram.len() as u64;
                sent_datagrams += 1;
            }
            if i % (2 * RUN_EVERY) == 0
                && let Some(run) = segmented_run(&seeds, &mut rng)
            {
                let segment = run[0].len() as u16;
                if set_udp_segment(&unproven_runs, segment).is_ok()
                    && unproven_runs.send_to(&run.concat(), to).is_ok()
                {
                    for d in &run {
                        sent_unproven[op_of(d)] += d.len() as u64;
                    }
                    sent_datagrams += run.len() as u64;
                    runs_sent += 1;
                }
            }
        } else if proven.send_to(&datagram, to).is_ok() {
            sent_proven[op_of(&datagram)] += datagram.len() as u64;
            sent_datagrams += 1;
        }
        if i % BURST == BURST - 1 {
            std::thread::sleep(BURST_PAUSE);
            drain_now(&unproven, &mut back_unproven, None);
            drain_now(&unproven_runs, &mut back_unproven, None);
            drain_now(&proven, &mut back_proven, Some(&send_pong));
        }
    }
    // Let the node finish what it read; collect the last replies.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        drain_now(&unproven, &mut back_unproven, None);
        drain_now(&unproven_runs, &mut back_unproven, None);
        drain_now(&proven, &mut back_proven, Some(&send_pong));
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let after = node.stats();
    let read = after.packets_received - before.packets_received;
    let malformed = after.malformed_total() - before.malformed_total();
    let total = |by_op: &BytesByOp| by_op.iter().sum::<u64>();
    eprintln!(
        "barrage (seed {seed}): unproven sent {} B, got {} B back; proven sent {} B, got {} B; \
         node read {read} datagrams, {malformed} malformed, over {elapsed_s:.2} s",
        total(&sent_unproven),
        total(&back_unproven),
        total(&sent_proven),
        total(&back_proven),
    );

    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
    // The barrage reached the node: nearly all of it was read, and much of it was refused.
    let sent = sent_datagrams;
    assert!(read >= sent * 9 / 10, "read {read} of {sent}");
    assert!(malformed >= sent / 4, "malformed {malformed} of {sent}");
    // The segmented runs led by a PUT reached the lane whole and were read datagram by datagram.
    assert!(runs_sent >= 100, "{runs_sent} segmented runs sent");
    let coalesced = after.put_lane_coalesced - before.put_lane_coalesced;
    assert!(
        coalesced >= runs_sent * RUN_LEN as u64 / 4,
        "{coalesced} datagrams read from coalesced runs of {runs_sent} runs sent"
    );

    // No amplification toward the address that never proved itself. Replies that are never
    // longer than their request (README, "Amplification limit") skip the budget: NODES (capped
    // to the FIND_NODE's length), GET2_NONE (the GET2's size) and PUT2_STATUS (75 + K bytes,
    // answering a PUT2_CAS or PUT2_COMMIT of 174 + K or more). Each kind returns less than its
    // requests carried; everything else drew on the prefix's budget.
    let (nodes, get2_none, status) = (
        usize::from(OP_NODES),
        Op2::Get2None as usize,
        Op2::Put2Status as usize,
    );
    let requests_of = |ops: &[usize]| ops.iter().map(|&op| sent_unproven[op]).sum::<u64>();
    for (reply, requests) in [
        (nodes, requests_of(&[usize::from(OP_FIND_NODE)])),
        (get2_none, requests_of(&[Op2::Get2 as usize])),
        (
            status,
            requests_of(&[Op2::Put2Cas as usize, Op2::Put2Commit as usize]),
        ),
    ] {
        assert!(
            back_unproven[reply] <= requests,
            "op {reply:#x}: {} B back for {requests} B of requests",
            back_unproven[reply]
        );
    }
    let budgeted = total(&back_unproven)
        - back_unproven[nodes]
        - back_unproven[get2_none]
        - back_unproven[status];
    let c = Config::default();
    let budget = c.amplification_prefix_burst_bytes as f64
        + c.amplification_prefix_refill_bytes_per_s as f64 * elapsed_s;
    assert!(
        budgeted as f64 <= budget,
        "{budgeted} B > budget {budget:.0} B"
    );
    assert!(budgeted > 0, "the budget's replies were answered");
    assert!(
        total(&back_unproven) < total(&sent_unproven) / 10,
        "the node answered a tenth or more of what it was sent"
    );

    // Still serving: a fresh client's GET reads back the held record byte for byte.
    let client = UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 0, ip + 3), 0)).expect("bind");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let n = Message::Get(GetRepr {
        pubkey: &owner.public(),
        key: b"held",
    })
    .emit(&mut buf);
    client.send_to(&buf[..n], to).expect("send");
    let mut reply = [0u8; 2048];
    let (n, _) = client
        .recv_from(&mut reply)
        .expect("the node still answers");
    match Message::parse(&reply[..n]) {
        Ok(Message::GetAck(dat)) => {
            assert!(!dat.is_not_found(), "the held record is gone");
            assert_eq!(dat.value(), &value[..]);
            assert_eq!(dat.pubkey(), &owner.public());
        }
        other => panic!("unexpected reply {other:?}"),
    }
    assert_eq!(
        node.get_local(&owner.public(), b"held")
            .expect("held locally")
            .value(),
        &value[..]
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
    back_unproven
}
