//! Replica choice: `PeerSnapshot::closest` (the walk over peers sorted by ID) against
//! `PeerSnapshot::closest_by_scan` (a scan of every peer, as before the walk), at 16, 100 and
//! 1,000 active peers (1,000 is the default `max_peers`). A stored PUT calls it once to pick its
//! FANOUT (3) replicas, so at 1,000 peers the scan was paid on every stored PUT.
//!
//! Run: `cargo bench --bench peer -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dave::keys::{DecodedKey, Keypair, SignedMessage, verify_batch, verify_signature};
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

/// The batch of `signed` (key bytes, hash, signature) with `keys` decoded from those bytes.
fn batch_of<'a>(
    keys: &'a [DecodedKey],
    signed: &'a [([u8; 32], [u8; 32], [u8; 64])],
) -> Vec<SignedMessage<'a>> {
    keys.iter()
        .zip(signed)
        .map(|(key, (_, hash, sig))| SignedMessage {
            key,
            message: hash,
            sig,
        })
        .collect()
}

/// PONG checks, per signature, for batches of the sizes a peer thread meets (a 1,000-peer table
/// pings 20 peers per slice): each signature on its own from the key's bytes
/// (`keys::verify_signature`, as the peer table checked every PONG before batches) and with the
/// key decoded once (`DecodedKey::verify`, a pinned peer's lone PONG now); `keys::verify_batch`
/// decoding every key first (batches as session 20 built them) and with the keys decoded when
/// pinned (the table now).
fn bench_pong_check(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    let mut group = c.benchmark_group("pong_check");
    for n in [1usize, 4, 20, 64] {
        let signed: Vec<([u8; 32], [u8; 32], [u8; 64])> = (0..n)
            .map(|_| {
                let pair = Keypair::from_seed(&rng.r#gen());
                let hash: [u8; 32] = rng.r#gen();
                (pair.public(), hash, pair.sign(&hash))
            })
            .collect();
        let keys: Vec<DecodedKey> = signed
            .iter()
            .map(|(pubkey, ..)| DecodedKey::decode(pubkey).unwrap())
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("single", n), &signed, |b, signed| {
            b.iter(|| {
                for (pubkey, hash, sig) in signed {
                    assert!(verify_signature(pubkey, hash, sig));
                }
            })
        });
        group.bench_with_input(
            BenchmarkId::new("single_decoded", n),
            &signed,
            |b, signed| {
                b.iter(|| {
                    for (key, (_, hash, sig)) in keys.iter().zip(signed) {
                        assert!(black_box(key).verify(hash, sig));
                    }
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("batch_decoding", n),
            &signed,
            |b, signed| {
                b.iter(|| {
                    let decoded: Vec<DecodedKey> = signed
                        .iter()
                        .map(|(pubkey, ..)| DecodedKey::decode(black_box(pubkey)).unwrap())
                        .collect();
                    assert!(verify_batch(&batch_of(&decoded, signed)))
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("batch", n), &signed, |b, signed| {
            b.iter(|| assert!(verify_batch(black_box(&batch_of(&keys, signed)))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_closest, bench_pong_check);
criterion_main!(benches);
