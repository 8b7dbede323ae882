//! Shard store throughput on one thread: gets (hit and miss), the replay precheck, puts that
//! replace a held version, and puts into a full store that evict the lowest-ranked record, at
//! 10k and 100k records (16-byte keys, 100-byte values).
//!
//! ```text
//! cargo bench --bench shard
//! ```
//!
//! Records are built from fields with random work and a fixed signature (the store does not
//! verify). Building the record a put consumes happens in criterion's untimed setup.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dave::limits::DAT_HEADER_LEN;
use dave::shard::store::Record;
use dave::shard::{Store, StoreConfig, record_cost_bytes};
use dave::wire::DatFields;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Store sizes measured.
const SIZES: [usize; 2] = [10_000, 100_000];
const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;
/// The reference's TTL (365 days).
const TTL_MS: i64 = 365 * 24 * 3600 * 1000;
const NOW_MS: i64 = 1_750_000_000_000;

/// One record's identity.
struct Identity {
    pubkey: [u8; 32],
    key: [u8; KEY_BYTES],
}

fn identities(rng: &mut StdRng, n: usize) -> Vec<Identity> {
    (0..n)
        .map(|_| {
            let mut pubkey = [0u8; 32];
            let mut key = [0u8; KEY_BYTES];
            rng.fill(&mut pubkey[..]);
            rng.fill(&mut key[..]);
            Identity { pubkey, key }
        })
        .collect()
}

fn record(rng: &mut StdRng, id: &Identity, time_ms: i64) -> Record {
    let mut work = [0u8; 32];
    rng.fill(&mut work[..]);
    let mut value = [0u8; VALUE_BYTES];
    rng.fill(&mut value[..]);
    DatFields {
        time_ms,
        salt: [0; 16],
        work,
        sig: [7; 64],
        pubkey: id.pubkey,
        key: &id.key,
        value: &value,
    }
    .to_dat()
}

/// A store holding one record per identity, with room for exactly that many.
fn filled(rng: &mut StdRng, ids: &[Identity]) -> Store {
    let cost = record_cost_bytes(DAT_HEADER_LEN + KEY_BYTES + VALUE_BYTES);
    let mut store = Store::new(StoreConfig {
        capacity_bytes: cost * ids.len(),
        ttl_ms: TTL_MS,
        node_id: rng.r#gen(),
    });
    for id in ids {
        let time_ms = NOW_MS - rng.gen_range(0..TTL_MS / 2);
        store
            .insert(record(rng, id, time_ms), NOW_MS)
            .expect("room for every identity");
    }
    assert_eq!(store.len(), ids.len());
    store
}

fn bench_store(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard_store");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for n in SIZES {
        let mut rng = StdRng::seed_from_u64(n as u64);
        let ids = identities(&mut rng, n);
        let strangers = identities(&mut rng, 1024);
        let mut store = filled(&mut rng, &ids);

        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("get_hit", n), |b| {
            b.iter(|| {
                i = (i + 7919) % n;
                let id = &ids[i];
                black_box(store.get(&id.pubkey, &id.key)).is_some()
            })
        });
        group.bench_function(BenchmarkId::new("get_miss", n), |b| {
            b.iter(|| {
                i = (i + 1) % strangers.len();
                let id = &strangers[i];
                black_box(store.get(&id.pubkey, &id.key)).is_none()
            })
        });
        // A replayed PUT: the datagram is hot (just received), the held record it duplicates is
        // cold. Untimed setup copies records from all over the store into fresh buffers, 64 at a
        // time (hot in L1/L2); the timed part is the precheck alone.
        let held: Vec<Record> = store.iter().map(|r| r.to_boxed()).collect();
        group.bench_function(BenchmarkId::new("precheck_duplicate", n), |b| {
            b.iter_batched(
                || {
                    i = (i + 7919) % held.len();
                    held[i].clone()
                },
                |dat| store.precheck(&dat.as_view()).is_err(),
                BatchSize::NumIterations(64),
            )
        });

        // Newer versions of held records: replace in place, no eviction.
        let mut time_ms = NOW_MS;
        group.bench_function(BenchmarkId::new("put_replace", n), |b| {
            b.iter_batched(
                || {
                    i = (i + 7919) % n;
                    time_ms += 1;
                    record(&mut rng, &ids[i], time_ms)
                },
                |dat| store.insert(dat, NOW_MS).expect("newer"),
                BatchSize::SmallInput,
            )
        });

        // New identities into the full store: each put evicts the lowest-ranked record.
        let mut fresh = StdRng::seed_from_u64(!(n as u64));
        group.bench_function(BenchmarkId::new("put_evict", n), |b| {
            b.iter_batched(
                || {
                    time_ms += 1;
                    let id = identities(&mut fresh, 1).remove(0);
                    record(&mut fresh, &id, time_ms)
                },
                // A far-away newcomer can rank below the lowest close record: refused, not a bug.
                |dat| store.insert(dat, NOW_MS),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
