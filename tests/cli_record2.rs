//! `dave put --seq/--cas` and `dave get --strict` with real `dave node` processes on loopback:
//! a v2 record is read back strictly, a compare-and-swap on the held seq succeeds, a stale one
//! fails with exit status 3 and says why, and a v1-only record is not found by a strict get.

mod cli_support;

use std::time::Duration;

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

fn put(edge: &str, key_file: &str, extra: &[&str], key: &str, value: &str) -> Output {
    let mut args = vec!["put", "--edge", edge, "--key", key_file, "--work", WORK];
    args.extend(extra);
    args.extend([key, value]);
    dave(&args, CLIENT_LIMIT)
}

fn get(edge: &str, owner: &str, extra: &[&str], key: &str) -> Output {
    let mut args = vec!["get", "--edge", edge, "--owner", owner, "--timeout", "3000"];
    args.extend(extra);
    args.push(key);
    dave(&args, CLIENT_LIMIT)
}

#[test]
fn put_seq_and_cas_then_get_strict() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("owner.key");
    let out = dave(
        &["keygen", "--out", key_path.to_str().unwrap()],
        CLIENT_LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let owner = out.stdout.trim().to_string();
    let key_file = key_path.to_str().unwrap();
    let a = node("127.0.0.190", &[]);
    let b = node("127.0.0.191", &["--edge", &a.edge()]);

    let out = put(&a.edge(), key_file, &["--seq", "1"], "counter", "one");
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("v2, seq 1"), "{out:?}");
    let got = get(&b.edge(), &owner, &["--strict"], "counter");
    assert_eq!(got.code(), 0, "{got:?}");
    assert_eq!(got.stdout, "one\n");

    let out = put(&a.edge(), key_file, &["--cas", "1"], "counter", "two");
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("v2, seq 2"), "{out:?}");
    let stale = put(&a.edge(), key_file, &["--cas", "1"], "counter", "three");
    assert_eq!(stale.code(), 3, "{stale:?}");
    // One error line (after the low-work warning this test's --work draws).
    let last = stale.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("dave: put"), "{stale:?}");
    assert!(last.contains("mismatch"), "says why: {stale:?}");
    let got = get(&b.edge(), &owner, &["--strict"], "counter");
    assert_eq!(got.stdout, "two\n", "{got:?}");

    // A v1 record (no --seq/--cas) is found by a plain get, never by a strict one.
    let out = put(&a.edge(), key_file, &[], "legacy", "v1");
    assert_eq!(out.code(), 0, "{out:?}");
    let got = get(&b.edge(), &owner, &[], "legacy");
    assert_eq!(got.stdout, "v1\n", "{got:?}");
    let strict = get(&b.edge(), &owner, &["--strict"], "legacy");
    assert_eq!(strict.code(), 1, "{strict:?}");
    assert!(strict.stderr.contains("not found"), "{strict:?}");
}
