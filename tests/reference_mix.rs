//! A mixed network with the Go reference (godave `eaa61da`) on real loopback sockets: dave
//! nodes and reference nodes bootstrap through each other, see each other active, pass each
//! other's storage challenges, and PUT and GET each other's records; dave counts nothing the
//! reference sends as malformed or refused, and the reference logs no error about anything dave
//! sends.
//!
//! Ignored: it needs a reference node program, which this repository does not carry (the
//! reference's code stays out of it). Run by hand, with the program's path:
//!
//! ```text
//! DAVE_REFERENCE_NODE=/path/to/refnode cargo test --release --test reference_mix -- --ignored
//! ```
//!
//! The program is a thin `main` around godave's `NewDave`, `Dave::Put` and `Dave::Get` (an IPv4
//! socket bound to the `-listen` address, so each node has its own 127.0.0.x; the reference's
//! IPv4-mapped IPv6 addresses are unmapped before sending; the reference logs at its ERROR
//! level to stdout). Its interface:
//!
//! ```text
//! flags   -listen IP:PORT   -edge IP:PORT (repeatable)   -for DURATION (then exit)
//!         -wait-peers N     (before puts and gets: until N peers are active)
//!         -put KEY=VALUE    (repeatable: 20 bits of work, signed by the node's key, Dave::Put)
//!         -get OWNER_HEX:KEY (repeatable: Dave::Get, 5 s each)   -get-attempts N
//! stdout  LISTEN IP:PORT PUBKEY HEX     PEERS active
//!         PUT-OK KEY | PUT-ERR KEY WHY  GET-OK KEY=VALUE | GET-ERR KEY WHY
//!         and the reference's own log lines ("YAYY!! STORAGE CHALLENGE COMPLETED", ...)
//! ```
//!
//! A second test gives a dave node a one-place table: the reference nodes that ping it anyway
//! are proven as strangers (`peer::prover`) and read from the network through it.
//!
//! Last run: see README "Wire compatibility" (2026-12-07: passed, 3 dave and 4 reference nodes).

mod cli_support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::*;

/// Bound on one client command (joining, 20 bits of work, a get).
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// How long a reference node runs: longer than the whole test (it is killed at the end).
const REFERENCE_LIFETIME: &str = "180s";

/// How long the nodes may take to see each other active: the reference activates a peer 5 s
/// after adding it, pings once a second and prunes every 3 s.
const ACTIVE_LIMIT: Duration = Duration::from_secs(60);

/// Work of every record: the reference refuses PUTs with less than its MIN_WORK of 20 bits.
const REFERENCE_WORK: &str = "20";

/// Lines of the reference's log that mean it refused something dave sent.
const REFERENCE_ERRORS: [&str; 4] = [
    "failed to unmarshal packet",
    "failed to handle PONG",
    "failed to handle GET_ACK",
    "rejected MYADDRPORT_ACK",
];

fn reference_program() -> String {
    std::env::var("DAVE_REFERENCE_NODE").unwrap_or_else(|_| {
        panic!(
            "set DAVE_REFERENCE_NODE to a reference node program (interface: the top of \
             tests/reference_mix.rs)"
        )
    })
}

/// A reference node at `ip` (port chosen by the kernel), with its public key.
struct Reference {
    process: NodeProcess,
    pubkey: String,
}

impl Reference {
    fn start(ip: &str, args: &[&str]) -> Reference {
        let mut command = Command::new(reference_program());
        command
            .args(["-listen", &format!("{ip}:0"), "-for", REFERENCE_LIFETIME])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut process = NodeProcess::spawn(command, Stream::Stdout);
        let line = process.wait_for_line("LISTEN ", Duration::from_secs(10));
        let mut words = line.split_whitespace().skip(1);
        let addr: SocketAddr = words
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("address in {line:?}"));
        let pubkey = words.nth(1).expect("public key").to_string();
        assert_eq!(pubkey.len(), 64, "{line:?}");
        process.addr = addr;
        Reference { process, pubkey }
    }

    fn edge(&self) -> String {
        self.process.edge()
    }
}

/// A reference node that puts `from-reference-{i}` once it sees four peers active.
fn writing_reference(ip: &str, edge: &str, i: usize) -> Reference {
    let record = format!("from-reference-{i}=a value written by reference node {i}");
    Reference::start(ip, &["-edge", edge, "-wait-peers", "4", "-put", &record])
}

fn dave_node(ip: &str, edge: Option<&str>) -> (NodeProcess, SocketAddr) {
    dave_node_with(ip, edge, &[])
}

/// A dave node at `ip` with `extra` flags.
fn dave_node_with(ip: &str, edge: Option<&str>, extra: &[&str]) -> (NodeProcess, SocketAddr) {
    let listen = format!("{ip}:0");
    let metrics = format!("{ip}:0");
    // Default work (20 bits), as the reference requires of what it stores.
    let mut args = vec![
        "--listen",
        &listen,
        "--metrics",
        &metrics,
        "--receivers",
        "1",
        "--owners",
        "4",
        "--no-pin",
    ];
    if let Some(edge) = edge {
        args.extend(["--edge", edge]);
    }
    args.extend(extra);
    let mut node = NodeProcess::start(&args);
    let metrics = node.metrics_addr();
    (node, metrics)
}

/// The sum of every sample of a labelled family, e.g. `dave_malformed{reason="…"}`.
fn metric_family_sum(text: &str, family: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(family)?.strip_prefix('{'))
        .map(|rest| {
            let value = rest.rsplit(' ').next().expect("sample value");
            value.trim().parse::<u64>().expect("integer sample")
        })
        .sum()
}

/// Waits until `done` holds, polling every 200 ms; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs the Go reference node program: DAVE_REFERENCE_NODE (see the file's top)"]
fn dave_and_reference_nodes_share_peers_records_and_challenges() {
    let dir = tempfile::tempdir().unwrap();
    let writer_key = dir.path().join("writer.key");
    let out = dave(
        &["keygen", "--out", writer_key.to_str().unwrap()],
        CLIENT_LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let writer = pubkey_hex(&writer_key);

    // A chain that alternates implementations, so each learns of the others only through
    // peers of the other kind: D1 <- R1 <- D2 <- R2 <- D3 <- R3.
    let (d1, d1_metrics) = dave_node("127.0.0.81", None);
    let r1 = writing_reference("127.0.0.91", &d1.edge(), 1);
    let (d2, d2_metrics) = dave_node("127.0.0.82", Some(&r1.edge()));
    let r2 = writing_reference("127.0.0.92", &d2.edge(), 2);
    let (d3, d3_metrics) = dave_node("127.0.0.83", Some(&r2.edge()));
    let r3 = writing_reference("127.0.0.93", &d3.edge(), 3);
    let mut references = [r1, r2, r3];
    let daves = [(&d1, d1_metrics), (&d2, d2_metrics), (&d3, d3_metrics)];

    // Every dave node sees at least two reference nodes active (a dave node has at most two
    // dave peers here).
    for (node, metrics) in daves {
        wait_until(
            ACTIVE_LIMIT,
            &format!("{} with 4 active peers", node.edge()),
            || metric(&scrape(metrics), "dave_peers_active") >= 4,
        );
    }

    // reference -> dave: each reference node's record, read through D3 and through D1.
    for (i, reference) in references.iter_mut().enumerate() {
        let i = i + 1;
        let key = format!("from-reference-{i}");
        reference
            .process
            .wait_for_line(&format!("PUT-OK {key}"), ACTIVE_LIMIT);
        for edge in [d3.edge(), d1.edge()] {
            let got = dave(
                &["get", "--edge", &edge, "--owner", &reference.pubkey, &key],
                CLIENT_LIMIT,
            );
            assert_eq!(got.code(), 0, "{key} through {edge}: {got:?}");
            assert_eq!(
                got.stdout,
                format!("a value written by reference node {i}\n"),
                "{key} through {edge}"
            );
        }
    }

    // dave -> reference: a record put through D1 is read by a new reference node that joins
    // through D2 (its get is tried again after a "not found": the reference's get ends at the
    // first answer, and a peer that holds no copy yet may answer first).
    let put = dave(
        &[
            "put",
            "--edge",
            &d1.edge(),
            "--key",
            writer_key.to_str().unwrap(),
            "--work",
            REFERENCE_WORK,
            "from-dave",
            "a value written by dave",
        ],
        CLIENT_LIMIT,
    );
    assert_eq!(put.code(), 0, "{put:?}");
    assert!(put.stdout.contains("stored on 3 of 3"), "{put:?}");
    let get_arg = format!("{writer}:from-dave");
    let mut reader = Reference::start(
        "127.0.0.94",
        &[
            "-edge",
            &d2.edge(),
            "-wait-peers",
            "4",
            "-get-attempts",
            "3",
            "-get",
            &get_arg,
        ],
    );
    let got = reader.process.wait_for_line("GET-", ACTIVE_LIMIT);
    assert_eq!(got, "GET-OK from-dave=a value written by dave", "{put:?}");

    // Storage challenges both ways: the reference challenges every 10 s; dave challenges the
    // peers it forwarded records to. A challenge a reference node fails is counted as
    // not_found or invalid; timeouts are left out (a `dave` client that joined and left is a
    // peer for a while).
    wait_until(ACTIVE_LIMIT, "a reference challenge completed", || {
        references
            .iter()
            .map(|r| {
                r.process
                    .log()
                    .matches("STORAGE CHALLENGE COMPLETED")
                    .count()
            })
            .sum::<usize>()
            >= 1
    });
    wait_until(ACTIVE_LIMIT, "a dave challenge succeeded", || {
        daves
            .iter()
            .map(|(_, m)| metric(&scrape(*m), "dave_challenges_succeeded"))
            .sum::<u64>()
            >= 1
    });

    for (node, metrics) in daves {
        let text = scrape(metrics);
        assert_eq!(metric_family_sum(&text, "dave_malformed"), 0, "{text}");
        assert_eq!(metric_family_sum(&text, "dave_peer_refused"), 0, "{text}");
        for failed in [
            "dave_challenges_failed_not_found",
            "dave_challenges_failed_invalid",
        ] {
            assert_eq!(metric(&text, failed), 0, "{}: {failed}", node.edge());
        }
    }
    for reference in references.iter().chain([&reader]) {
        let log = reference.process.log();
        for error in REFERENCE_ERRORS {
            assert!(!log.contains(error), "{error}:\n{log}");
        }
    }
    // The reference nodes keep the dave nodes active: each counts at least five active peers
    // in its latest prune ("/peers pruned, active: A/K"), and it has at most three reference
    // peers (the other two and the reader).
    wait_until(ACTIVE_LIMIT, "reference nodes with 5 active peers", || {
        references
            .iter()
            .all(|r| latest_active_count(&r.process.log()).is_some_and(|active| active >= 5))
    });
}

#[test]
#[ignore = "needs the Go reference node program: DAVE_REFERENCE_NODE (see the file's top)"]
fn a_dave_node_with_a_full_table_proves_the_reference_nodes_that_ping_it() {
    // D's table has one place, its edge R1's; R2 joins through R1, learns of D from R1's PONGs
    // and pings D every second as one of its peers: D has no room for it, so it proves R2 (one
    // PING, answered by the reference's signed PONG, whose random salt says v1) without making
    // it a peer. Then a record put through D is read by R3, a reference node that takes D as
    // its edge: another stranger to D, proven in turn, whose GETs D answers.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "max_peers = 1\n").unwrap();
    let r1 = Reference::start("127.0.0.95", &[]);
    let (d, d_metrics) = dave_node_with(
        "127.0.0.85",
        Some(&r1.edge()),
        &["--config", config.to_str().unwrap()],
    );
    wait_until(ACTIVE_LIMIT, "D with its edge active", || {
        metric(&scrape(d_metrics), "dave_peers_active") >= 1
    });
    let r2 = Reference::start("127.0.0.96", &["-edge", &r1.edge()]);
    // R2 is the only address that pings D besides its edge.
    wait_until(ACTIVE_LIMIT, "D proved R2, a v1 stranger", || {
        metric(&scrape(d_metrics), "dave_proven_v1_strangers") == 1
    });
    let text = scrape(d_metrics);
    assert_eq!(metric(&text, "dave_proofs_of_strangers"), 1, "{text}");
    assert_eq!(metric(&text, "dave_proofs_succeeded"), 1, "{text}");
    assert_eq!(metric(&text, "dave_peers_known"), 1, "{text}");

    let writer_key = dir.path().join("writer.key");
    let out = dave(
        &["keygen", "--out", writer_key.to_str().unwrap()],
        CLIENT_LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let put = dave(
        &[
            "put",
            "--edge",
            &d.edge(),
            "--key",
            writer_key.to_str().unwrap(),
            "--work",
            REFERENCE_WORK,
            "through-a-full-table",
            "a value put through a node with a full table",
        ],
        CLIENT_LIMIT,
    );
    assert_eq!(put.code(), 0, "{put:?}");
    let get_arg = format!("{}:through-a-full-table", pubkey_hex(&writer_key));
    let mut r3 = Reference::start(
        "127.0.0.97",
        &[
            "-edge",
            &d.edge(),
            "-wait-peers",
            "2",
            "-get-attempts",
            "3",
            "-get",
            &get_arg,
        ],
    );
    let got = r3.process.wait_for_line("GET-", ACTIVE_LIMIT);
    assert_eq!(
        got,
        "GET-OK through-a-full-table=a value put through a node with a full table"
    );
    let text = scrape(d_metrics);
    assert_eq!(metric(&text, "dave_proven_v1_strangers"), 2, "{text}");
    assert_eq!(metric(&text, "dave_peers_known"), 1, "{text}");
    assert_eq!(metric_family_sum(&text, "dave_malformed"), 0, "{text}");
    for reference in [&r1, &r2, &r3] {
        let log = reference.process.log();
        for error in REFERENCE_ERRORS {
            assert!(!log.contains(error), "{error}:\n{log}");
        }
    }
}

/// The active count of the reference's latest "/peers pruned, active: A/K" log line.
fn latest_active_count(log: &str) -> Option<usize> {
    log.lines()
        .rev()
        .find_map(|line| line.split("pruned, active: ").nth(1))
        .and_then(|counts| counts.split('/').next())
        .and_then(|active| active.trim().parse().ok())
}
