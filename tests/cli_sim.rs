//! `dave sim` as a real child process: the report's fields, the trace hash replayed by the same
//! seed and changed by another, and bad flags ending in one `dave: ` line and exit status 3.
//! Small on purpose (20 nodes, one virtual minute, 100 records): a few seconds in a debug build.

mod cli_support;

use std::time::Duration;

use cli_support::*;

const LIMIT: Duration = Duration::from_secs(120);

/// `dave sim` with a small network and `seed`; returns the whole output (exit status checked).
fn small_sim(seed: &str) -> Output {
    let args = [
        "sim",
        "--nodes",
        "20",
        "--minutes",
        "1",
        "--records",
        "100",
        "--gets",
        "100",
        "--loss",
        "1",
        "--seed",
        seed,
    ];
    let out = dave(&args, LIMIT);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stderr.is_empty(), "nothing on stderr: {out:?}");
    out
}

/// The value after the label `name` on the line starting with it.
fn field<'a>(out: &'a Output, name: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .unwrap_or_else(|| panic!("no line {name:?} in\n{}", out.stdout))
        .trim()
}

#[test]
fn sim_prints_its_figures_and_the_seed_alone_decides_the_trace_hash() {
    let a = small_sim("1");
    let b = small_sim("1");
    let c = small_sim("2");

    // The figures the issue asks for, each on its own labelled line.
    assert!(
        a.stdout.starts_with("dave sim: seed 1, 20 nodes"),
        "{}",
        a.stdout
    );
    // Every node had FANOUT active peers; full activation (every node active in every table)
    // is printed but not expected: peers that speak ROUTING leave the one-second PING round
    // once active (the router watches them), so tables no longer fill to a full mesh.
    let activation = field(&a, "activation");
    let (ready, full) = activation.split_once(", ").expect("two figures");
    assert!(
        ready.starts_with("ready (≥ FANOUT active peers) ") && !ready.ends_with("not reached"),
        "{activation}"
    );
    assert!(full.starts_with("full activation"), "{activation}");
    let records = field(&a, "records");
    assert!(
        records.starts_with("100 stored") && records.contains("retrievable"),
        "{records}"
    );
    let gets = field(&a, "gets");
    assert!(
        gets.contains(" fresh (") && gets.contains('%'),
        "GET success rate: {gets}"
    );
    assert!(
        a.stdout.contains("latency p50 ") && a.stdout.contains("(virtual)"),
        "{}",
        a.stdout
    );
    assert!(field(&a, "replicas per record").starts_with("min "));
    let traffic = field(&a, "traffic");
    assert!(
        traffic.contains("packets/s") && traffic.contains("bytes/s per node"),
        "{traffic}"
    );
    let hash = field(&a, "trace hash");
    assert_eq!(hash.len(), 16, "{hash}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");

    // Only the wall-clock line may differ between two runs of one seed.
    let without_wall = |out: &Output| -> Vec<String> {
        out.stdout
            .lines()
            .filter(|l| !l.contains(" s wall, "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(field(&b, "trace hash"), hash, "same seed, same trace");
    assert_eq!(without_wall(&a), without_wall(&b), "same seed, same report");
    assert_ne!(field(&c, "trace hash"), hash, "another seed, another trace");
}

#[test]
fn sim_refuses_bad_flags_with_one_line_and_status_3() {
    for (args, needle) in [
        (&["sim", "--loss", "150"][..], "--loss"),
        (&["sim", "--churn", "-5"], "--churn"),
        (&["sim", "--minutes", "0"], "--minutes"),
        (
            &["sim", "--nodes", "2"],
            "nodes (2) must cover the edges (3)",
        ),
        (
            &["sim", "--adversaries", "dragons=3"],
            "unknown kind `dragons`",
        ),
        (&["sim", "--partition", "60-120"], "--partition"),
        (&["sim", "--v1-nodes", "101"], "--v1-nodes"),
        (
            &["sim", "--v1-nodes", "50", "--v2"],
            "v1_share needs v1 records",
        ),
        (&["sim", "--nodes", "many"], "--nodes"),
        (&["sim", "--bogus"], "--bogus"),
    ] {
        let out = dave(args, LIMIT);
        assert_eq!(out.code(), 3, "{args:?}: {out:?}");
        out.assert_one_dave_line();
        assert!(out.stderr.contains(needle), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}

#[test]
fn sim_routing_runs_the_lookup_model_and_reports_hops_replicas_and_traffic() {
    let run = |seed: &str| {
        let out = dave(
            &[
                "sim",
                "--routing",
                "--nodes",
                "100",
                "--minutes",
                "1.5",
                "--records",
                "50",
                "--gets",
                "200",
                "--seed",
                seed,
            ],
            LIMIT,
        );
        assert_eq!(out.code(), 0, "{out:?}");
        out
    };
    let a = run("1");
    assert!(
        a.stdout
            .starts_with("routing model: 100 nodes, 1.5 virtual minutes, k 8"),
        "{}",
        a.stdout
    );
    // The figures are indented under the header line.
    let field = |out: &'_ Output, name: &str| -> String {
        out.stdout
            .lines()
            .find_map(|line| line.trim_start().strip_prefix(name))
            .unwrap_or_else(|| panic!("no line {name:?} in\n{}", out.stdout))
            .trim()
            .to_string()
    };
    let fresh = field(&a, "gets fresh:");
    assert!(fresh.ends_with(')') && fresh.contains(" % ("), "{fresh}");
    // A small, loss-free network finds every record.
    assert!(fresh.starts_with("100.00 %"), "{}", a.stdout);
    assert!(field(&a, "lookup hops:").starts_with("p50 "));
    assert!(field(&a, "replicas per record:").starts_with("min "));
    assert!(field(&a, "traffic per node:").starts_with("routing "));
    let without_wall = |out: &Output| -> Vec<String> {
        out.stdout
            .lines()
            .filter(|l| !l.contains("wall time"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        without_wall(&a),
        without_wall(&run("1")),
        "same seed, same report"
    );
    let refused = dave(&["sim", "--routing", "--adversaries", "poison=2"], LIMIT);
    assert_eq!(refused.code(), 3, "{refused:?}");
    refused.assert_one_dave_line();
}
