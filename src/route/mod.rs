//! Routing at scale (issue 12): Kademlia-style k-bucket routing and iterative lookups, beside the
//! v1 protocol. Everything here is I/O-free: time comes in as `now_ms`, requests go out as values.
//!
//! - [`table`]: the routing table (k-buckets, keep-long-lived eviction, IP limits).
//! - [`lookup`]: the iterative lookup (α parallel requests, per-request timeout, disjoint paths).
//! - [`router`]: one node's routing core (table + lookups + nonces + FIND_NODE answers).
//! - [`maintain`]: replica maintenance by lookup (republish to the closest, age-out of copies
//!   elsewhere), the decisions shared by `world` and the node's shard groups.
//! - [`drive`]: what every driver does beside its peer table, written once for the node and the
//!   simulator: verified contacts and proofs into the router, its answers and evictions into the
//!   table (the liveness of peers that speak ROUTING), trust scores, and a lookup's result as the
//!   targets of a put or get.
//! - `world` (feature `sim`): a deterministic virtual network of routers with a record store per node: the
//!   routing-level simulator (hops, replicas, background traffic, freshness).
//!
//! Layering: `route` sits beside `peer` and `shard` and imports only `wire`, `keys` and the
//! peer module's address limits (`peer::IpCounts`), plus the peer table and snapshot in `drive`
//! (the glue both drivers share); nothing below imports it.
//! Messages: `wire::route` (FIND_NODE / NODES, ops 0x10 and 0x11, feature bit ROUTING).

pub mod drive;
pub mod lookup;
pub mod maintain;
pub mod router;
pub mod table;
#[cfg(feature = "sim")]
pub mod world;

use std::net::SocketAddr;

pub use lookup::{Lookup, LookupConfig, LookupRequest};
pub use router::{LookupDone, LookupId, Router, RouterConfig, RouterEffects, RouterStats};
pub use table::{Heard, RoutingTable};

/// Smallest bucket size accepted.
pub const MIN_BUCKET_SIZE: usize = 2;
/// Largest bucket size accepted: NODES answers carry up to `wire::route::MAX_NODES_PER_REPLY`
/// (32) contacts, and the issue asks for k in 8..=20.
pub const MAX_BUCKET_SIZE: usize = 20;
/// Largest replacement cache per bucket (memory bound: 64 × (20 + 20) contacts ≈ 100 KiB).
pub const MAX_REPLACEMENT_CACHE_SIZE: usize = 20;

const _: () = assert!(MAX_BUCKET_SIZE <= crate::wire::route::MAX_NODES_PER_REPLY);

/// A node as routing knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Contact {
    /// Its node ID (first 8 bytes of its public key, little-endian).
    pub id: u64,
    /// Its address (normal form).
    pub addr: SocketAddr,
    /// The ID comes from a key pinned by a PONG (not merely claimed in a NODES list).
    pub verified: bool,
    /// A configured edge: never evicted, not bound by IP limits.
    pub pinned: bool,
}

/// Routing settings. Units in names; every default justified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// k: contacts per bucket, and how many closest nodes a lookup must hear from. Default 8:
    /// mainline uses 8 for 10 M nodes; larger k costs traffic per refresh (O(k log N)).
    pub bucket_size: usize,
    /// Newcomers remembered per full bucket. Default 8 (= k).
    pub replacement_cache_size: usize,
    /// A full bucket probes its least-recently-seen contact only if silent this long. Default
    /// 60 000 ms: at most one probe per bucket per minute.
    pub stale_after_ms: u64,
    /// A probe unanswered this long counts as a failure. Default 2000 ms.
    pub probe_timeout_ms: u64,
    /// Unanswered requests in a row before eviction. Default 2 (one lost datagram never evicts).
    pub max_failures: u32,
    /// An idle bucket is refreshed by a lookup into its range this often. Default 300 000 ms.
    pub refresh_after_ms: u64,
    /// Contacts per IP address. Default 2.
    pub max_per_ip: usize,
    /// Contacts per prefix. Default 8 (a /24 cannot take a whole bucket of 8… plus IP limits).
    pub max_per_prefix: usize,
    /// IPv4 prefix length of `max_per_prefix`. Default 24.
    pub ipv4_prefix_len_bits: u8,
    /// IPv6 prefix length of `max_per_prefix`. Default 48.
    pub ipv6_prefix_len_bits: u8,
    /// Loopback addresses are exempt from the IP limits (tests on 127.0.0.x). Default true.
    pub exempt_loopback: bool,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            bucket_size: 8,
            replacement_cache_size: 8,
            stale_after_ms: 60_000,
            probe_timeout_ms: 2_000,
            max_failures: 2,
            refresh_after_ms: 300_000,
            max_per_ip: 2,
            max_per_prefix: 8,
            ipv4_prefix_len_bits: 24,
            ipv6_prefix_len_bits: 48,
            exempt_loopback: true,
        }
    }
}

impl RouteConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), &'static str> {
        if !(MIN_BUCKET_SIZE..=MAX_BUCKET_SIZE).contains(&self.bucket_size) {
            return Err("bucket_size must be between 2 and 20");
        }
        if self.replacement_cache_size > MAX_REPLACEMENT_CACHE_SIZE {
            return Err("replacement_cache_size must be at most 20");
        }
        if self.max_failures == 0 || self.probe_timeout_ms == 0 || self.refresh_after_ms == 0 {
            return Err("max_failures, probe_timeout_ms and refresh_after_ms must be positive");
        }
        if self.max_per_ip == 0 || self.max_per_prefix < self.max_per_ip {
            return Err("max_per_ip must be positive and at most max_per_prefix");
        }
        Ok(())
    }
}
