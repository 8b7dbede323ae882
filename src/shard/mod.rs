//! Shards: routing, the record store with its byte budget and eviction order, and the I/O-free
//! shard core that the shard-owner threads drive.

pub mod route;

pub use route::{SHARD_COUNT, Version, compare_versions, record_hash, shard_index, shard_of_hash};
