//! dave: a node of the Dave peer-to-peer key-value store, wire-compatible with the Go reference.
//!
//! Records ("dats") are keyed by (owner public key, key), signed with Ed25519 and carry a BLAKE3
//! proof-of-work. Nodes exchange them over UDP, one message per datagram of at most 1424 bytes.
//!
//! ```text
//!  UDP datagrams
//!    │
//!    ▼
//!  receiver threads  "dave-rx-N"   (one per core, pinned, SO_REUSEPORT, recvmmsg batches)
//!    │  check header · drop own packets · count malformed by reason
//!    │  PUT / GET / GET_ACK ──► shard = xxh64(pubkey ‖ key) >> 56 ──► bounded channel of its owner
//!    │  PING / PONG / GETMYADDRPORT(_ACK) ──► peer thread
//!    ▼
//!  shard-owner threads "dave-shard-N"  (each shard has exactly one owner thread)
//!    │  PUT: cheap checks → verify work + signature → store → forward to FANOUT closest → backup
//!    │  GET: answer; GET_ACK: verify, complete waiting gets, score storage challenges
//!    ▼
//!  replies and forwards leave through the node's socket (sendmmsg batches)
//!
//!  peer thread   "dave-peer"     peer table: pings, PONG checks, discovery, trust; publishes a snapshot
//!  PoW pool      "dave-pow-N"    proof-of-work for local puts
//!  backup writer "dave-backup"   append-only log, group commit, compaction
//! ```
//!
//! The protocol logic lives in I/O-free cores that take `now` as an argument and say when they
//! next need to run ([`shard`], with `shard::group::ShardGroup` for one owner's shards, and
//! [`peer`]); threads are thin loops around them that block until a message or that deadline,
//! and the simulator drives the same cores on a virtual clock. No thread polls. All `unsafe` code is in `net::sys`.

#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod backup;
pub mod config;
pub mod demo;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod node;
pub mod outbox;
pub mod peer;
pub mod permits;
pub mod pow;
pub mod shard;
pub mod sim;
pub mod stats;
pub mod time;
pub mod wire;

pub use config::{Config, GetPath};
pub use keys::Keypair;
pub use node::{
    AnyRecord, GetError, GetOptions, Node, Put2Done, PutError, PutOptions, PutOutcome, PutReport,
    RecordFormat, StartError,
};
pub use stats::Stats;
