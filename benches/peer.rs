//! Replica choice: `PeerSnapshot::closest` (the walk over peers sorted by ID) against
//! `PeerSnapshot::closest_by_scan` (a scan of every peer, as before the walk), at 16, 100 and
//! 1,000 active peers (1,000 is the default `max_peers`). A stored PUT calls it once to pick its
//! FANOUT (3) replicas, so at 1,000 peers the scan was paid on every stored PUT.
//!
//! Run: `cargo bench --bench peer -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dave::peer::{PeerInfo, PeerSnapshot, Trust, UNPROVEN_RELIABILITY};
use dave::wire::Features;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Replicas a stored PUT is sent to (the reference's FANOUT).
const FANOUT: usize = 3;

fn peers(n: usize, rng: &mut StdRng) -> Vec<PeerInfo> {
    (0..n)
        .map(|i| PeerInfo {
            addr: SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8 + 1], 9000)),
            pubkey: rng.r#gen(),
            id: rng.r#gen(),
            edge: false,
            reliability: UNPROVEN_RELIABILITY,
            trust: Trust::default(),
            features: Features::NONE,
        })
        .collect()
}

fn bench_closest(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let mut group = c.benchmark_group("closest");
    for n in [16usize, 100, 1000] {
        let snap = PeerSnapshot::new(peers(n, &mut rng));
        let exclude = Some(snap.peers()[n / 2].addr);
        let targets: Vec<u64> = (0..1024).map(|_| rng.r#gen()).collect();
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("walk", n), &snap, |b, snap| {
            b.iter(|| {
                i = (i + 1) % targets.len();
                black_box(snap.closest(targets[i], FANOUT, exclude))
            })
        });
        group.bench_with_input(BenchmarkId::new("scan", n), &snap, |b, snap| {
            b.iter(|| {
                i = (i + 1) % targets.len();
                black_box(snap.closest_by_scan(targets[i], FANOUT, exclude))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_closest);
criterion_main!(benches);
