//! `puts_forwarded` counts PUT datagrams that leave the shard, never forwards that were taken
//! back: a batch in which several versions of one record race (each passes the cheap checks
//! against the same store, the older ones lose on insert) counts exactly the datagrams left in
//! the outbox.

use std::net::SocketAddr;

use dave::keys::Keypair;
use dave::pow::SignatureCheck;
use dave::shard::core::{Effects, PeerView, Record, Shard, ShardRules};
use dave::shard::store::{Store, StoreConfig};
use dave::stats::{Counters, Stats};

const NOW: i64 = 1_700_000_000_000;

/// Five peers, all closest.
struct Five;

impl PeerView for Five {
    fn closest(
        &self,
        _target: u64,
        n: usize,
        exclude: Option<SocketAddr>,
        out: &mut Vec<SocketAddr>,
    ) {
        out.extend(
            (1..=5u8)
                .map(|i| SocketAddr::from(([10, 0, 0, i], 1618)))
                .filter(|a| Some(*a) != exclude)
                .take(n),
        );
    }
}

fn record(owner: &Keypair, time_ms: i64) -> Record {
    dave::pow::make_dat_single(owner, b"raced", b"value", time_ms, 4)
}

#[test]
fn forwards_taken_back_are_not_counted() {
    let store = Store::new(StoreConfig {
        capacity_bytes: 1 << 20,
        ttl_ms: i64::MAX / 4,
        node_id: 0,
    });
    let rules = ShardRules {
        min_work_bits: 4,
        fanout: 3,
        signature_check: SignatureCheck::Single,
        get_settle_ms: 50,
    };
    let mut shard: Shard<u32> = Shard::new(store, rules);
    let owner = Keypair::generate();
    let from = SocketAddr::from(([10, 0, 0, 9], 1618));
    // v1 and v2 are stored (each forwarded to 3 peers); v0 and v1' (older than v2 by then)
    // pass the cheap checks against the empty store, are pushed, then refused on insert.
    let mut batch = vec![
        (from, record(&owner, NOW - 3_000)),
        (from, record(&owner, NOW - 1_000)),
        (from, record(&owner, NOW - 4_000)),
        (from, record(&owner, NOW - 2_000)),
    ];
    let counters = Counters::default();
    let mut effects = Effects::default();
    let mut keys = dave::pow::KeyCache::new(16, 0);
    shard.handle_puts(NOW, &mut batch, &Five, &mut keys, &counters, &mut effects);
    let mut stats = Stats::default();
    stats.add(&counters);
    assert_eq!(stats.puts_stored, 2, "{stats:?}");
    assert_eq!(effects.outbox.len(), 6, "two records to three peers");
    assert_eq!(
        stats.puts_forwarded,
        effects.outbox.len() as u64,
        "counted = left in the outbox"
    );
}
