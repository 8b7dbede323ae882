//! Test helpers the v1 and v2 group tests (`shard::group`, `shard::group2`) share: the clocks a
//! group reads, a driver environment, peer snapshots, and the settings and answers of
//! maintenance by lookup.

use std::net::SocketAddr;
use std::ops::DerefMut;
use std::sync::Arc;

use crate::keys::id_from_pubkey;
use crate::peer::budget::{BucketConfig, Pacer};
use crate::peer::{PeerInfo, PeerSnapshot, Trust};
use crate::pow::KeyCache;
use crate::route::Contact;
use crate::route::maintain::MaintainConfig;
use crate::shard::group::{GroupEnv, Now};
use crate::wire::Features;

/// The wall clock (Unix ms) at monotonic time 0.
pub const WALL_MS: i64 = 1_700_000_000_000;

/// Both clocks at `mono_ms` monotonic milliseconds (the wall clock runs from [`WALL_MS`]).
pub fn at(mono_ms: u64) -> Now {
    Now {
        mono_ms,
        wall_ms: WALL_MS + mono_ms as i64,
    }
}

/// A driver's environment: the repair pacer, and the key cache it hands out as the
/// verification permit, counting the permits taken.
pub struct TestEnv {
    /// The repair pacer.
    pub pacer: Pacer,
    /// Verification permits taken so far.
    pub permits_taken: usize,
    /// The key cache a permit carries.
    pub keys: KeyCache,
}

impl GroupEnv for TestEnv {
    type Permit<'a> = &'a mut KeyCache;

    fn verify_permit(&mut self) -> &mut KeyCache {
        self.permits_taken += 1;
        &mut self.keys
    }

    fn repair_pacer(&mut self) -> impl DerefMut<Target = Pacer> + '_ {
        &mut self.pacer
    }
}

/// An environment with the node's default repair budget (64 KiB burst, 512 KiB/s).
pub fn env() -> TestEnv {
    TestEnv {
        pacer: Pacer::new(
            BucketConfig {
                burst_bytes: 64 << 10,
                refill_bytes_per_s: 512 << 10,
            },
            0,
        ),
        permits_taken: 0,
        keys: KeyCache::new(16, 0),
    }
}

/// Peers 1..=n at 10.0.0.i:1618 (public key `[i; 32]`), unproven, each advertising
/// `features(i)`.
pub fn peers_with(n: u8, features: impl Fn(u8) -> Features) -> Arc<PeerSnapshot> {
    Arc::new(PeerSnapshot::new(
        (1..=n)
            .map(|i| {
                let pubkey = [i; 32];
                PeerInfo {
                    addr: SocketAddr::from(([10, 0, 0, i], 1618)),
                    pubkey,
                    id: id_from_pubkey(&pubkey),
                    edge: false,
                    reliability: crate::peer::UNPROVEN_RELIABILITY,
                    trust: Trust::default(),
                    features: features(i),
                }
            })
            .collect(),
    ))
}

/// Maintenance by lookup with short times: a republish every 10 s, copies not among the
/// closest age out after 20 s, three replicas.
pub fn maintain_config() -> MaintainConfig {
    MaintainConfig {
        republish_ms: 10_000,
        expire_after_ms: 20_000,
        lookups_per_s: 2,
        lookup_timeout_ms: 5_000,
        answers_cached: 8,
        replicas: 3,
    }
}

/// A lookup's answer for `target`: three nodes (IDs `target ^ 1..=3`, at 10.0.9.1..=3:1618)
/// closer to it than any other.
pub fn closest_three(target: u64) -> Vec<Contact> {
    (1..=3u64)
        .map(|d| Contact {
            id: target ^ d,
            addr: SocketAddr::from(([10, 0, 9, d as u8], 1618)),
            verified: true,
            pinned: false,
        })
        .collect()
}
