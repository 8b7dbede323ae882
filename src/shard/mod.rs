//! Shards: routing, the record store with its byte budget and eviction order, and the I/O-free
//! shard core that the shard-owner threads drive.

pub mod arena;
pub mod challenge;
pub mod core;
pub mod core2;
pub mod group;
pub mod group2;
pub mod maintain;
pub mod order;
pub mod refused;
pub mod repair;
pub mod route;
pub mod store;
pub mod store2;
#[cfg(test)]
mod test_support;

pub use route::{SHARD_COUNT, Version, compare_versions, record_hash, shard_index, shard_of_hash};
pub use store::{
    Inserted, PruneReport, RecordHasher, Refusal, RouteHasher, Store, StoreConfig,
    record_cost_bytes,
};
