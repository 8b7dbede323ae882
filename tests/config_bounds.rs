//! `Config::validate` against extreme values: a property test sets every numeric field to values
//! from a list of extremes (0, 1, the bound, the bound + 1, the type's maximum, NaN, …) and
//! asserts that validation never panics and that whatever it accepts builds the node's parts
//! (store, channels, budgets, policies) without panicking; a node at every maximum and one at
//! every minimum really start; and the CLI turns the values the issue found into one line and
//! exit 3.

mod cli_support;

use std::net::SocketAddr;
use std::time::Duration;

use dave::config::*;
use dave::peer::budget::{AmplificationLimiter, Pacer};
use dave::shard::store::{Store, StoreConfig};
use proptest::prelude::*;

/// One of a few extremes for an unsigned field whose ceiling is `bound` (0 when none).
fn pick_u64(choice: u8, bound: u64, default: u64) -> u64 {
    match choice % 9 {
        0 => 0,
        1 => 1,
        2 => default,
        3 => bound,
        4 => bound.saturating_add(1),
        5 => u64::MAX,
        6 => u64::MAX / 2,
        7 => u32::MAX as u64,
        _ => bound / 2,
    }
}

fn pick_usize(choice: u8, bound: usize, default: usize) -> usize {
    usize::try_from(pick_u64(choice, bound as u64, default as u64)).unwrap_or(usize::MAX)
}

fn pick_f64(choice: u8) -> f64 {
    [
        0.0,
        1.0,
        0.5,
        -1.0,
        2.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-300,
    ][usize::from(choice % 9)]
}

/// Fields set from `choices`, in order (one byte per field).
fn extreme_config(choices: &[u8]) -> Config {
    let d = Config::default();
    let mut it = choices.iter().copied();
    let mut next = move || it.next().unwrap_or(2);
    let mut c = Config {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    c.fanout = pick_usize(next(), MAX_FANOUT, d.fanout);
    c.npeer_limit = pick_usize(next(), 5, d.npeer_limit);
    c.max_peers = pick_usize(next(), 1 << 20, d.max_peers);
    c.min_work_bits = pick_u64(next(), 256, 20).min(u32::MAX as u64) as u32;
    c.ping_period_ms = pick_u64(next(), MAX_PERIOD_MS, d.ping_period_ms);
    c.deactivate_after_ms = pick_u64(next(), MAX_PERIOD_MS, d.deactivate_after_ms);
    c.drop_after_ms = pick_u64(next(), MAX_PERIOD_MS, d.drop_after_ms);
    c.activation_delay_ms = pick_u64(next(), MAX_PERIOD_MS, d.activation_delay_ms);
    c.getmyaddrport_every_ms = pick_u64(next(), MAX_PERIOD_MS, d.getmyaddrport_every_ms);
    c.ttl_ms = match next() % 6 {
        0 => 0,
        1 => -1,
        2 => i64::MIN,
        3 => i64::MAX,
        4 => MAX_TTL_MS,
        _ => d.ttl_ms,
    };
    c.shard_capacity_bytes = pick_usize(next(), MAX_SHARD_CAPACITY_BYTES, d.shard_capacity_bytes);
    c.receiver_threads = pick_usize(next(), MAX_THREADS_PER_KIND, 1);
    c.shard_owner_threads = pick_usize(next(), 256, 4);
    c.pow_threads = pick_usize(next(), MAX_THREADS_PER_KIND, 1);
    c.owner_nice = [0, 10, 19, 20, -1, i32::MIN, i32::MAX][usize::from(next() % 7)];
    c.verify_permits = pick_usize(next(), MAX_THREADS_PER_KIND, 1);
    c.receiver_spin_us = pick_u64(next(), MAX_RECEIVER_SPIN_US, 0);
    c.receiver_steal_batches = pick_usize(next(), MAX_RECEIVER_STEAL_BATCHES, 1);
    c.shard_channel_depth = pick_usize(next(), MAX_SHARD_CHANNEL_DEPTH, d.shard_channel_depth);
    c.peer_channel_depth = pick_usize(next(), MAX_PEER_CHANNEL_DEPTH, d.peer_channel_depth);
    c.socket_recv_buffer_bytes = pick_usize(next(), MAX_SOCKET_BUFFER_BYTES, 1 << 20);
    c.socket_send_buffer_bytes = pick_usize(next(), MAX_SOCKET_BUFFER_BYTES, 1 << 20);
    c.get_settle_ms = pick_u64(next(), MAX_PERIOD_MS, d.get_settle_ms);
    c.trust_decay = pick_f64(next()) as f32;
    c.trust_min_samples = pick_f64(next()) as f32;
    c.trust_unreliable_below = pick_f64(next()) as f32;
    c.trust_explore_probability = pick_f64(next());
    c.challenge_sample_probability = pick_f64(next());
    c.challenge_mean_gap_ms = pick_u64(next(), MAX_PERIOD_MS, d.challenge_mean_gap_ms);
    c.challenge_timeout_ms = pick_u64(next(), MAX_PERIOD_MS, d.challenge_timeout_ms);
    c.challenge_min_age_ms = pick_u64(next(), MAX_PERIOD_MS, d.challenge_min_age_ms);
    c.challenge_candidates_per_peer = pick_usize(next(), MAX_CHALLENGE_CANDIDATES, 4);
    c.challenge_candidates_per_shard = pick_usize(next(), MAX_CHALLENGE_CANDIDATES, 32);
    c.challenges_in_flight_per_shard = pick_usize(next(), MAX_CHALLENGES_IN_FLIGHT, 8);
    c.repair_bytes_per_s = pick_u64(next(), MAX_BYTES_PER_S, d.repair_bytes_per_s);
    c.repair_burst_bytes = pick_u64(next(), MAX_BYTES_PER_S, d.repair_burst_bytes);
    c.repair_scan_records_per_step = pick_usize(next(), MAX_REPAIR_SCAN_RECORDS, 1024);
    c.republish_interval_ms = pick_u64(next(), MAX_PERIOD_MS, d.republish_interval_ms);
    c.amplification_prefix_burst_bytes = pick_u64(next(), MAX_BYTES_PER_S, 8192);
    c.amplification_prefix_refill_bytes_per_s = pick_u64(next(), MAX_BYTES_PER_S, 2048);
    c.amplification_global_burst_bytes = pick_u64(next(), MAX_BYTES_PER_S, 65536);
    c.amplification_global_refill_bytes_per_s = pick_u64(next(), MAX_BYTES_PER_S, 32768);
    c.amplification_max_prefixes = pick_usize(next(), MAX_AMPLIFICATION_PREFIXES, 4096);
    c
}

/// Number of fields `extreme_config` sets.
const FIELDS: usize = 41;

/// What `Node::start` builds before it binds or spawns anything, done cheaply: one store, one
/// owner channel and the peer channel, the budgets and the policies.
fn build_parts(c: &Config) {
    let store = Store::new(StoreConfig {
        capacity_bytes: c.shard_capacity_bytes,
        ttl_ms: c.ttl_ms,
        node_id: 7,
    });
    assert!(store.is_empty());
    let (tx, _rx) = crossbeam_channel::bounded::<[u8; 300]>(c.shard_channel_depth);
    assert!(tx.capacity() == Some(c.shard_channel_depth));
    let (tx, _rx) = crossbeam_channel::bounded::<[u8; 250]>(c.peer_channel_depth);
    assert!(tx.capacity() == Some(c.peer_channel_depth));
    let mut limiter = AmplificationLimiter::new(c.amplification_config(), 0);
    let _ = limiter.allow(u64::MAX / 2, SocketAddr::from(([10, 0, 0, 1], 1)), 1424);
    let mut pacer = Pacer::new(c.repair_budget(), 0);
    let _ = pacer.try_take(u64::MAX / 2, 1424);
    let _ = c.shard_policy();
    assert!(c.receiver_thread_count() <= MAX_THREADS_PER_KIND.max(1024));
    assert!(c.pow_thread_count() >= 1);
    assert!(c.verify_permit_count() >= 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn validate_never_panics_and_what_it_accepts_builds(
        choices in prop::collection::vec(any::<u8>(), FIELDS)
    ) {
        let config = extreme_config(&choices);
        if config.validate().is_ok() {
            build_parts(&config);
        }
    }
}

#[test]
fn the_defaults_and_the_issue_values() {
    assert!(Config::default().validate().is_ok());
    let too_big = Config {
        shard_capacity_bytes: 1_100_000_000_000,
        ..Config::default()
    };
    let err = too_big.validate().expect_err("1.1 TB shards refused");
    assert!(err.0.contains("shard_capacity_bytes"), "{err}");
    for config in [
        Config {
            pow_threads: 100_000,
            ..Config::default()
        },
        Config {
            verify_permits: 100_000,
            ..Config::default()
        },
        Config {
            receiver_threads: 100_000,
            ..Config::default()
        },
        Config {
            backup_path: Some("".into()),
            ..Config::default()
        },
    ] {
        assert!(config.validate().is_err(), "{config:?}");
    }
    // Proofs of listed routing IDs: on by default, at 1..=1024 a second.
    assert!(Config::default().route_verify_ids);
    assert!(Config::default().router_config().lookup.verify_ids);
    for (rate, ok) in [
        (0, false),
        (1, true),
        (1024, true),
        (1025, false),
        (u32::MAX, false),
    ] {
        let config = Config {
            route_proofs_per_s: rate,
            ..Config::default()
        };
        assert_eq!(config.validate().is_ok(), ok, "route_proofs_per_s {rate}");
        if !ok {
            let err = config.validate().unwrap_err();
            assert!(err.0.contains("route_proofs_per_s"), "{err}");
        }
    }
    for (rate, ok) in [(0, true), (1024, true), (1025, false), (u32::MAX, false)] {
        let config = Config {
            stranger_proofs_per_s: rate,
            ..Config::default()
        };
        assert_eq!(
            config.validate().is_ok(),
            ok,
            "stranger_proofs_per_s {rate}"
        );
        if !ok {
            let err = config.validate().unwrap_err();
            assert!(err.0.contains("stranger_proofs_per_s"), "{err}");
        }
    }
    // Replica maintenance by lookup: 1..=1024 lookups a second, age-out within a year; it runs
    // only with routing lookups, and a short age-out counts as the republish interval.
    for (rate, ok) in [(0, false), (1, true), (1024, true), (1025, false)] {
        let config = Config {
            maintain_lookups_per_s: rate,
            ..Config::default()
        };
        assert_eq!(
            config.validate().is_ok(),
            ok,
            "maintain_lookups_per_s {rate}"
        );
    }
    let long = Config {
        maintain_expire_after_ms: MAX_PERIOD_MS + 1,
        ..Config::default()
    };
    assert!(
        long.validate()
            .unwrap_err()
            .0
            .contains("maintain_expire_after_ms")
    );
    let off = Config {
        route_lookups: false,
        ..Config::default()
    };
    assert_eq!(off.maintain_config(4), None, "route_lookups off");
    let v1_only = Config {
        extensions: dave::wire::Features::NONE,
        ..Config::default()
    };
    assert_eq!(v1_only.maintain_config(4), None, "no routing extension");
    let on = Config {
        maintain_expire_after_ms: 1,
        ..Config::default()
    };
    assert!(
        on.route_lookups,
        "lookups (and maintenance by lookup) by default"
    );
    let m = on.maintain_config(4).expect("maintenance by lookup");
    assert_eq!(m.expire_after_ms, on.republish_interval_ms);
    assert_eq!(m.lookups_per_s, 1, "4 a second over 4 owners");
    assert!(m.validate().is_ok());
}

/// Every field at its ceiling (thread counts included) and then at its floor: the node starts,
/// answers `stats`, and stops.
#[test]
fn nodes_at_the_bounds_start_and_stop() {
    let max = Config {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        fanout: MAX_FANOUT,
        ping_period_ms: MAX_PERIOD_MS - 1,
        deactivate_after_ms: MAX_PERIOD_MS - 1,
        drop_after_ms: MAX_PERIOD_MS,
        activation_delay_ms: MAX_PERIOD_MS,
        getmyaddrport_every_ms: MAX_PERIOD_MS,
        ttl_ms: MAX_TTL_MS,
        shard_capacity_bytes: MAX_SHARD_CAPACITY_BYTES,
        receiver_threads: MAX_THREADS_PER_KIND,
        shard_owner_threads: 256,
        pow_threads: MAX_THREADS_PER_KIND,
        pin_cores: false,
        verify_permits: MAX_THREADS_PER_KIND,
        receiver_spin_us: 0, // the spin bound is checked below; spinning 1024 threads is not
        shard_channel_depth: MAX_SHARD_CHANNEL_DEPTH,
        peer_channel_depth: MAX_PEER_CHANNEL_DEPTH,
        socket_recv_buffer_bytes: MAX_SOCKET_BUFFER_BYTES,
        socket_send_buffer_bytes: MAX_SOCKET_BUFFER_BYTES,
        get_settle_ms: MAX_PERIOD_MS,
        challenge_mean_gap_ms: MAX_PERIOD_MS,
        challenge_timeout_ms: MAX_PERIOD_MS,
        challenge_min_age_ms: MAX_PERIOD_MS,
        challenge_candidates_per_peer: MAX_CHALLENGE_CANDIDATES,
        challenge_candidates_per_shard: MAX_CHALLENGE_CANDIDATES,
        challenges_in_flight_per_shard: MAX_CHALLENGES_IN_FLIGHT,
        repair_bytes_per_s: MAX_BYTES_PER_S,
        repair_burst_bytes: MAX_BYTES_PER_S,
        repair_scan_records_per_step: MAX_REPAIR_SCAN_RECORDS,
        republish_interval_ms: MAX_PERIOD_MS,
        amplification_prefix_burst_bytes: MAX_BYTES_PER_S,
        amplification_prefix_refill_bytes_per_s: MAX_BYTES_PER_S,
        amplification_global_burst_bytes: MAX_BYTES_PER_S,
        amplification_global_refill_bytes_per_s: MAX_BYTES_PER_S,
        amplification_max_prefixes: MAX_AMPLIFICATION_PREFIXES,
        ..Config::default()
    };
    max.validate().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        Config {
            receiver_spin_us: MAX_RECEIVER_SPIN_US,
            ..max.clone()
        }
        .validate()
        .is_ok()
    );
    let node = dave::Node::start(max).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.stats().records, 0);
    drop(node);

    let min = Config {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        fanout: 1,
        npeer_limit: 0,
        min_work_bits: 0,
        ping_period_ms: 1,
        deactivate_after_ms: 1,
        drop_after_ms: 2,
        activation_delay_ms: 0,
        getmyaddrport_every_ms: 1,
        ttl_ms: 1,
        shard_capacity_bytes: 2 * dave::shard::store::MAX_RECORD_COST_BYTES,
        receiver_threads: 1,
        shard_owner_threads: 1,
        pow_threads: 1,
        pin_cores: false,
        owner_nice: 0,
        verify_permits: 1,
        shard_channel_depth: 1,
        peer_channel_depth: 1,
        socket_recv_buffer_bytes: 0,
        socket_send_buffer_bytes: 0,
        get_settle_ms: 0,
        challenge_mean_gap_ms: 0,
        challenge_timeout_ms: 1,
        challenge_min_age_ms: 0,
        challenge_candidates_per_peer: 0,
        challenge_candidates_per_shard: 0,
        challenges_in_flight_per_shard: 0,
        repair_bytes_per_s: 0,
        repair_burst_bytes: 0,
        repair_scan_records_per_step: 1,
        republish_interval_ms: 0,
        amplification_prefix_burst_bytes: 212,
        amplification_prefix_refill_bytes_per_s: 0,
        amplification_global_burst_bytes: 212,
        amplification_global_refill_bytes_per_s: 0,
        amplification_max_prefixes: 0,
        ..Config::default()
    };
    min.validate().unwrap_or_else(|e| panic!("{e}"));
    let node = dave::Node::start(min).unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(node.stats().records, 0);
    drop(node);
}

#[test]
fn the_cli_refuses_extreme_values_in_one_line() {
    use cli_support::*;
    let quick = Duration::from_secs(20);
    let out = dave(
        &[
            "node",
            "--listen",
            "127.0.0.1:0",
            "--shard-capacity",
            "1100000000000",
        ],
        quick,
    );
    assert_eq!(out.code(), 3, "{out:?}");
    out.assert_one_dave_line();
    assert!(out.stderr.contains("shard_capacity_bytes"), "{out:?}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, "pow_threads = 100000\n").unwrap();
    let out = dave(
        &[
            "node",
            "--listen",
            "127.0.0.1:0",
            "--config",
            file.to_str().unwrap(),
        ],
        quick,
    );
    assert_eq!(out.code(), 3, "{out:?}");
    out.assert_one_dave_line();
    assert!(out.stderr.contains("pow_threads"), "{out:?}");
}
