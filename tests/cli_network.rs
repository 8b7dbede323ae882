//! The `dave` binary on a real loopback network: `dave node` processes on 127.0.0.x, `dave put`
//! and `dave get` through different nodes (including one that does not hold the record), the
//! metrics endpoint, SIGTERM and backup recovery, and `dave demo`.

mod cli_support;

use std::time::{Duration, Instant};

use cli_support::*;

/// Bound on any one client command (joining, work, get): generous for a loaded 2-core machine.
const CLIENT_LIMIT: Duration = Duration::from_secs(30);

fn node(ip: &str, extra: &[&str]) -> NodeProcess {
    let listen = format!("{ip}:0");
    let mut args = vec!["--listen", &listen];
    args.extend(SMALL);
    args.extend(extra);
    NodeProcess::start(&args)
}

fn keygen(dir: &std::path::Path) -> (String, String) {
    let path = dir.join("owner.key");
    let out = dave(&["keygen", "--out", path.to_str().unwrap()], CLIENT_LIMIT);
    assert_eq!(out.code(), 0, "{out:?}");
    (
        path.to_str().unwrap().to_string(),
        out.stdout.trim().to_string(),
    )
}

fn put(edge: &str, key_file: &str, key: &str, value: &str) -> Output {
    dave(
        &[
            "put", "--edge", edge, "--key", key_file, "--work", WORK, key, value,
        ],
        CLIENT_LIMIT,
    )
}

fn get(edge: &str, owner: &str, key: &str) -> Output {
    dave(
        &["get", "--edge", edge, "--owner", owner, key],
        CLIENT_LIMIT,
    )
}

#[test]
fn put_through_one_node_get_through_others_and_metrics_move() {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, owner) = keygen(dir.path());
    let mut a = node("127.0.0.70", &["--metrics", "127.0.0.70:0"]);
    let a_metrics = a.metrics_addr();
    let b = node("127.0.0.71", &["--edge", &a.edge()]);
    let c = node("127.0.0.72", &["--edge", &a.edge()]);
    let before = scrape(a_metrics);

    let out = put(&a.edge(), &key_file, "hello", "world");
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("sent to"), "{out:?}");
    assert!(out.stdout.contains(&owner), "prints the owner: {out:?}");

    // Through another node than the one the put went through.
    let got = get(&b.edge(), &owner, "hello");
    assert_eq!(got.code(), 0, "{got:?}");
    assert_eq!(got.stdout, "world\n");

    // A node that joined after the put holds nothing; a get through it still finds the record
    // (the client asks the peers its edge introduces).
    let mut d = node(
        "127.0.0.73",
        &["--edge", &b.edge(), "--metrics", "127.0.0.73:0"],
    );
    let d_metrics = d.metrics_addr();
    d.wait_for_line("(edge) active", Duration::from_secs(5));
    assert_eq!(
        metric(&scrape(d_metrics), "dave_records"),
        0,
        "d holds nothing"
    );
    let got = get(&d.edge(), &owner, "hello");
    assert_eq!(got.code(), 0, "{got:?}\nd's log:\n{}", d.log());
    assert_eq!(got.stdout, "world\n");
    assert_eq!(
        metric(&scrape(d_metrics), "dave_records"),
        0,
        "still nothing"
    );

    // A key nobody stored: exit status 1, one line.
    let missing = get(&c.edge(), &owner, "no-such-key");
    assert_eq!(missing.code(), 1, "{missing:?}");
    missing.assert_one_dave_line();
    assert!(missing.stderr.contains("not found"), "{missing:?}");

    // The counters moved with the traffic.
    let after = scrape(a_metrics);
    assert!(after.contains("# TYPE dave_packets_received counter"));
    assert!(after.contains("dave_malformed{reason=\""));
    for name in [
        "dave_packets_received",
        "dave_packets_sent",
        "dave_puts_received",
    ] {
        assert!(
            metric(&after, name) > metric(&before, name),
            "{name} moved: {} -> {}",
            metric(&before, name),
            metric(&after, name)
        );
    }
    assert!(metric(&after, "dave_records") >= 1);
    // A held record lives in a shard's arena: at least one whole segment is reported.
    assert!(metric(&after, "dave_record_arena_bytes") >= dave::shard::arena::SEGMENT_BYTES as u64);
    assert!(after.contains("# TYPE dave_record_arena_bytes gauge"));
    // The v2-record and routing families are exported too (routing is on by default, and the
    // three nodes are routing contacts of each other by now).
    assert!(
        after.contains("# TYPE dave_v2_puts_received counter"),
        "{after}"
    );
    assert!(
        after.contains("# TYPE dave_route_contacts gauge"),
        "{after}"
    );
    assert!(metric(&after, "dave_route_contacts") >= 1, "{after}");
    // Anything else is refused, and the exporter keeps serving.
    assert!(http(a_metrics, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(a_metrics, b"\x00\xff garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    let oversized = http_lossy(a_metrics, &[b'A'; 20_000]);
    assert!(
        oversized.is_empty() || oversized.starts_with("HTTP/1.1 400"),
        "{oversized}"
    );
    scrape(a_metrics);
    drop(c);
}

#[test]
fn put_from_a_jsonl_file() {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, owner) = keygen(dir.path());
    let a = node("127.0.0.75", &[]);
    let file = dir.path().join("records.jsonl");
    std::fs::write(
        &file,
        "{\"key\": \"one\", \"value\": \"1\"}\n\n{\"key\": \"two\", \"value\": \"2\"}\n",
    )
    .unwrap();
    let out = dave(
        &[
            "put",
            "--edge",
            &a.edge(),
            "--key",
            &key_file,
            "--work",
            WORK,
            "--file",
            file.to_str().unwrap(),
        ],
        CLIENT_LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout.matches("sent to").count(), 2, "{out:?}");
    assert_eq!(get(&a.edge(), &owner, "two").stdout, "2\n");

    std::fs::write(&file, "{\"key\": \"one\"}\n").unwrap();
    let bad = dave(
        &[
            "put",
            "--edge",
            &a.edge(),
            "--key",
            &key_file,
            "--file",
            file.to_str().unwrap(),
        ],
        CLIENT_LIMIT,
    );
    assert_ne!(bad.code(), 0);
    bad.assert_one_dave_line();
    assert!(bad.stderr.contains("line 1"), "{bad:?}");
}

#[test]
fn sigterm_stops_a_node_within_a_second_and_its_backup_restores_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, owner) = keygen(dir.path());
    let backup = dir.path().join("node.backup");
    let backup = backup.to_str().unwrap();
    let flags = ["--backup", backup, "--sync", "every-write"];
    let mut e = node("127.0.0.80", &flags);
    let listen = e.edge();

    let out = put(&listen, &key_file, "durable", "kept across restarts");
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(get(&listen, &owner, "durable").code(), 0);

    let start = Instant::now();
    sigterm(e.guard.pid());
    let status = e
        .guard
        .wait_for(Duration::from_secs(5))
        .expect("node exits on SIGTERM");
    let took = start.elapsed();
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(status.success(), "clean exit: {status:?}\n{}", e.log());
    assert!(took < Duration::from_secs(1), "stopped in {took:?}");
    assert!(e.log().contains("stopped in"), "{}", e.log());

    // The same address, the same backup: the record is back, and this node is the only one.
    let mut args = vec!["--listen", listen.as_str()];
    args.extend(SMALL);
    args.extend(flags);
    let restarted = NodeProcess::start(&args);
    assert_eq!(restarted.edge(), listen);
    let got = get(&listen, &owner, "durable");
    assert_eq!(got.code(), 0, "{got:?}\n{}", restarted.log());
    assert_eq!(got.stdout, "kept across restarts\n");
}

#[test]
fn demo_exits_zero_and_shows_every_node_active() {
    let out = dave(&["demo"], Duration::from_secs(60));
    assert_eq!(out.code(), 0, "{out:?}");
    let rows: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains(" 127.0.0.") && l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 5, "five node rows:\n{}", out.stdout);
    for row in rows {
        assert!(
            row.contains(" 4/4 "),
            "every node sees the 4 others active: {row}"
        );
    }
    assert!(
        out.stdout.contains("12/12 returned the value"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("3/3 returned the value"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("replica placement"), "{}", out.stdout);
}
