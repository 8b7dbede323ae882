//! dave: a node of the Dave peer-to-peer key-value store, wire-compatible with the Go reference.
//!
//! Records ("dats") are keyed by (owner public key, key), signed with Ed25519 and carry a BLAKE3
//! proof-of-work. Nodes exchange them over UDP, one message per datagram of at most 1424 bytes.
//!
//! ```text
//!  UDP datagrams
//!    │
//!    ▼
//!  receiver threads  "dave-rx-N"   (one per core, pinned, one shared socket, recvmmsg batches)
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
//! and the simulator drives the same cores on a virtual clock. No thread polls.
//! All `unsafe` code is in `net::sys`.
//!
//! # Embedding a node
//!
//! A service links the library, fills in a [`Config`] and calls [`Node::start`]; the node runs
//! on its own threads until it is dropped. [`Node::put`] computes the proof of work, signs with
//! the node's key, stores and replicates; [`Node::get_with`] answers from the local store or asks
//! the peers closest to the owner; [`Node::stats`] sums every thread's counters.
//!
//! ```
//! use std::time::Duration;
//!
//! use dave::{Config, GetOptions, Node};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config {
//!     listen_addr: "127.0.0.1:0".parse()?, // port 0: any free port
//!     edges: vec![],                        // bootstrap peers, e.g. "192.0.2.1:1618"
//!     min_work_bits: 8,                     // the network requires 20; 8 keeps this quick
//!     receiver_threads: 1,
//!     shard_owner_threads: 4,
//!     pin_cores: false,
//!     ..Config::default()
//! };
//! let node = Node::start(config)?;
//! println!("listening on {}", node.local_addr());
//!
//! // A v2 record by default: the signature covers the owner, key and value with their lengths,
//! // the time and a sequence number (README, "v2 records").
//! let outcome = node.put(b"greeting", b"hello")?;
//! assert!(outcome.v2.is_some());
//!
//! // `strict`: only a v2 record will do, so a re-cut v1 record can never be returned.
//! let strict = GetOptions { strict: true };
//! let record = node.get_with(&node.public_key(), b"greeting", Duration::from_secs(2), strict)?;
//! assert_eq!(record.value(), b"hello");
//!
//! let stats = node.stats();
//! println!("{} datagrams received", stats.packets_received);
//! drop(node); // shutdown: joins every thread, syncs and closes the backup log if any
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embedded_service.rs` embeds a node in a small request/response service and
//! reports its latency.
//!
//! # Cargo features
//!
//! With `default-features = false` the library depends only on what a node needs (the crates of
//! the design card, `log`, `rand`, `libc`, `hashbrown`). The features add:
//!
//! - `cli` (default): the `dave` binary's dependencies (clap, TOML, progress bars, logging,
//!   signals, JSON); turns on `sim` and `metrics`.
//! - `sim`: the deterministic network simulator, `dave::sim` (and clap, for its flag parser).
//! - `metrics`: the Prometheus exporter, `dave::metrics`; no extra dependency.

#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod backup;
pub mod config;
pub mod demo;
pub mod keys;
pub mod limits;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod net;
pub mod node;
pub mod outbox;
pub mod peer;
pub mod permits;
pub mod pow;
pub mod route;
pub mod shard;
#[cfg(feature = "sim")]
pub mod sim;
pub mod stats;
pub mod time;
pub mod wire;

pub use config::{Config, GetPath, ReceiverSockets};
pub use keys::Keypair;
pub use node::{
    AnyRecord, GetError, GetOptions, Node, Put2Done, PutError, PutOptions, PutOutcome, PutReport,
    RecordFormat, StartError,
};
pub use stats::Stats;
