//! Measures what the shard store costs per record in real memory: fills 256 stores (one per
//! shard, as the node routes them) with `--records` records of 16-byte keys and 100-byte values,
//! and reports the growth of the process's resident set per record, beyond key and value.
//!
//! ```text
//! cargo run --release --example shard_memory -- [--records N] [--key-bytes K] [--value-bytes V]
//!                                               [--ascending-times 1] [--track-copies 1]
//!                                               [--store-budget-bytes B] [--v2 1]
//! ```
//!
//! Record times are random over half a TTL by default; `--ascending-times 1` makes each record
//! newer than the last (how records arrive in a live node), which fills the order's B-tree
//! leaves only about half, the worst case for its memory. `--track-copies 1` keeps the 4-byte
//! copy state per slot of a node with replica maintenance by lookup (`Store::track_copies`).
//! `--store-budget-bytes B` gives each store a budget of B bytes (default: far more than the run
//! needs): with less than the records need, inserts evict and the arenas carry garbage and
//! compact, the case where the budget must still bound the memory. `--v2 1` fills v2 stores
//! (`Store2`, RECORD_V2 records with a seq) instead; they count against their budget with the
//! same `record_cost_bytes`.
//!
//! Records are built from fields with random work, a fixed signature and random owners: the
//! store does not verify, so no proof-of-work or signing is needed. RSS is read from
//! `/proc/self/statm` (Linux) before the first insert and after the last, so it counts every
//! allocation the records and the store's structures made, as glibc's malloc laid them out.

use std::time::Instant;

use dave::shard::maintain::MaintainedStore;
use dave::shard::store::RECORD_OVERHEAD_BYTES;
use dave::shard::store2::{Store2, Store2Config};
use dave::shard::{SHARD_COUNT, Store, StoreConfig, shard_index};
use dave::wire::DatFields;
use dave::wire::record2::Dat2Fields;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The reference's TTL (365 days).
const TTL_MS: i64 = 365 * 24 * 3600 * 1000;

/// Budget per store: far more than the run needs, so nothing is evicted.
const CAPACITY_BYTES_PER_STORE: usize = 1 << 30;

/// A fixed "now" so runs are comparable.
const NOW_MS: i64 = 1_750_000_000_000;

fn main() {
    let mut records: usize = 1_000_000;
    let mut key_bytes: usize = 16;
    let mut value_bytes: usize = 100;
    let mut ascending_times = false;
    let mut track_copies = false;
    let mut store_budget_bytes = CAPACITY_BYTES_PER_STORE;
    let mut v2 = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse().ok());
        match (arg.as_str(), value) {
            ("--records", Some(v)) => records = v,
            ("--key-bytes", Some(v)) => key_bytes = v,
            ("--value-bytes", Some(v)) => value_bytes = v,
            ("--ascending-times", Some(v)) => ascending_times = v != 0,
            ("--track-copies", Some(v)) => track_copies = v != 0,
            ("--store-budget-bytes", Some(v)) => store_budget_bytes = v,
            ("--v2", Some(v)) => v2 = v != 0,
            _ => {
                eprintln!(
                    "shard_memory: usage: shard_memory [--records N] [--key-bytes K] [--value-bytes V] [--ascending-times 0|1] [--track-copies 0|1] [--store-budget-bytes B] [--v2 0|1]"
                );
                std::process::exit(2);
            }
        }
    }

    if v2 {
        measure_v2(records, key_bytes, value_bytes, store_budget_bytes);
        return;
    }
    let mut rng = StdRng::seed_from_u64(1);
    let node_id: u64 = rng.r#gen();
    let config = StoreConfig {
        capacity_bytes: store_budget_bytes,
        ttl_ms: TTL_MS,
        node_id,
    };
    let mut stores: Vec<Store> = (0..SHARD_COUNT)
        .map(|_| {
            let mut store = Store::new(config);
            if track_copies {
                store.track_copies();
            }
            store
        })
        .collect();

    let mut key = vec![0u8; key_bytes];
    let mut value = vec![0u8; value_bytes];
    let rss_before_bytes = rss_bytes();
    let started = Instant::now();
    let mut refused = 0usize;
    for i in 0..records {
        let (pubkey, work) = fill_random(&mut rng, &mut key, &mut value);
        let fields = DatFields {
            time_ms: if ascending_times {
                NOW_MS - (records - i) as i64
            } else {
                NOW_MS - rng.gen_range(0..TTL_MS / 2)
            },
            salt: [0; 16],
            work,
            sig: [7; 64],
            pubkey,
            key: &key,
            value: &value,
        };
        let dat = fields.to_dat();
        let shard = shard_index(&pubkey, &key);
        if let Err(refusal) = stores[shard].insert(dat, NOW_MS) {
            if store_budget_bytes == CAPACITY_BYTES_PER_STORE {
                eprintln!("shard_memory: insert refused: {refusal}");
                std::process::exit(1);
            }
            refused += 1;
        }
    }
    let elapsed = started.elapsed();
    let rss_after_bytes = rss_bytes();

    let stored: usize = stores.iter().map(Store::len).sum();
    let budget_bytes: usize = stores.iter().map(Store::bytes_used).sum();
    let dat_bytes: usize = stores.iter().map(Store::dat_bytes).sum();
    let grown_bytes = rss_after_bytes.saturating_sub(rss_before_bytes);
    let per_record = grown_bytes as f64 / stored as f64;
    let key_value_bytes = (key_bytes + value_bytes) as f64;
    let (arena_reserved_bytes, arena_live_bytes) = stores
        .iter()
        .map(Store::arena_bytes)
        .fold((0, 0), |(r, l), (ar, al)| (r + ar, l + al));
    let structures_per_record = (grown_bytes as f64 - arena_reserved_bytes as f64) / stored as f64;
    let min_len = stores.iter().map(Store::len).min().unwrap_or(0);
    let max_len = stores.iter().map(Store::len).max().unwrap_or(0);

    println!(
        "records stored          {stored} in {SHARD_COUNT} stores ({min_len}..={max_len} each)"
    );
    println!("key + value             {key_bytes} + {value_bytes} bytes");
    if store_budget_bytes != CAPACITY_BYTES_PER_STORE {
        println!(
            "offered                 {records} records into budgets of {store_budget_bytes} bytes per store ({refused} refused, {} evicted)",
            records - refused - stored
        );
    }
    println!(
        "insert time             {:.0} ns/record offered",
        elapsed.as_nanos() as f64 / records as f64
    );
    println!("RSS growth              {grown_bytes} bytes");
    println!("  per record            {per_record:.1} bytes");
    println!(
        "  beyond key + value    {:.1} bytes",
        per_record - key_value_bytes
    );
    println!(
        "  beyond the dat        {:.1} bytes (the dat: {:.1} bytes of wire record)",
        per_record - dat_bytes as f64 / stored as f64,
        dat_bytes as f64 / stored as f64
    );
    println!(
        "record arenas           {:.1} bytes/record ({:.1} of them entries: record + 6-byte header)",
        arena_reserved_bytes as f64 / stored as f64,
        arena_live_bytes as f64 / stored as f64
    );
    println!(
        "store structures        {structures_per_record:.1} bytes/record (RSS growth minus the arenas)"
    );
    println!(
        "budget accounting       {:.1} bytes/record (record_cost_bytes, overhead constant {RECORD_OVERHEAD_BYTES}); RSS growth / budget used {:.3}",
        budget_bytes as f64 / stored as f64,
        grown_bytes as f64 / budget_bytes as f64
    );
}

/// Resident set size of this process, from `/proc/self/statm` (field 2, in pages).
fn rss_bytes() -> usize {
    /// Linux's page size on x86_64 and most aarch64 kernels.
    const PAGE_BYTES: usize = 4096;
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * PAGE_BYTES
}

/// `--v2 1`: the same fill into 256 `Store2`s (random owners, seq 1, times over half a TTL).
fn measure_v2(records: usize, key_bytes: usize, value_bytes: usize, store_budget_bytes: usize) {
    let mut rng = StdRng::seed_from_u64(1);
    let config = Store2Config {
        capacity_bytes: store_budget_bytes,
        ttl_ms: TTL_MS,
    };
    let mut stores: Vec<Store2> = (0..SHARD_COUNT).map(|_| Store2::new(config)).collect();
    let mut key = vec![0u8; key_bytes];
    let mut value = vec![0u8; value_bytes];
    let rss_before_bytes = rss_bytes();
    for _ in 0..records {
        let (pubkey, work) = fill_random(&mut rng, &mut key, &mut value);
        let time_ms = NOW_MS - rng.gen_range(0..TTL_MS / 2);
        let fields = Dat2Fields {
            time_ms,
            seq: 1,
            salt: [0; 16],
            work,
            sig: [7; 64],
            pubkey,
            key: &key,
            value: &value,
        };
        let record = fields.to_record();
        let shard = shard_index(&pubkey, &key);
        // Refusals (a full budget) are what `--store-budget-bytes` asks for.
        let _ = stores[shard].insert(record, None, false, NOW_MS);
    }
    let rss_after_bytes = rss_bytes();
    let stored: usize = stores.iter().map(Store2::len).sum();
    let budget_bytes: usize = stores.iter().map(Store2::bytes_used).sum();
    let dat_bytes: usize = stores.iter().map(Store2::dat_bytes).sum();
    let grown_bytes = rss_after_bytes.saturating_sub(rss_before_bytes);
    let per_record = grown_bytes as f64 / stored as f64;
    println!("v2 records stored       {stored} in {SHARD_COUNT} stores");
    println!("key + value             {key_bytes} + {value_bytes} bytes");
    println!("RSS growth              {grown_bytes} bytes");
    println!("  per record            {per_record:.1} bytes");
    println!(
        "  beyond key + value    {:.1} bytes",
        per_record - (key_bytes + value_bytes) as f64
    );
    println!(
        "  beyond the dat2       {:.1} bytes (the dat2: {:.1} bytes of wire record)",
        per_record - dat_bytes as f64 / stored as f64,
        dat_bytes as f64 / stored as f64
    );
    println!(
        "budget accounting       {:.1} bytes/record; RSS growth / budget used {:.3}",
        budget_bytes as f64 / stored as f64,
        grown_bytes as f64 / budget_bytes as f64
    );
}

/// Fills `key` and `value` with random bytes; returns a random owner key and work hash (the
/// store does not verify, so any will do).
fn fill_random(rng: &mut StdRng, key: &mut [u8], value: &mut [u8]) -> ([u8; 32], [u8; 32]) {
    let mut pubkey = [0u8; 32];
    rng.fill(&mut pubkey[..]);
    rng.fill(key);
    rng.fill(value);
    let mut work = [0u8; 32];
    rng.fill(&mut work[..]);
    (pubkey, work)
}
