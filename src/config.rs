//! Node configuration: plain data with units in the names and the reference's values as defaults.
//!
//! A library user fills in [`Config`] in code; the `dave` binary builds one from flags and TOML.
//! [`Config::validate`] refuses combinations that cannot work, with a message naming the field.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::backup::SyncPolicy;
use crate::keys::Keypair;
use crate::pow::SignatureCheck;

/// How a GET from the network is answered (see `perf/README.md` for the measurements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetPath {
    /// The receiver thread answers from the shard's read view (a read lock; the owner thread
    /// stays the only writer). No thread hop: the fastest.
    Receiver,
    /// The receiver hands the GET to the shard's owner thread, which answers.
    Owner,
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    // ---- identity and network ----
    /// UDP address to listen on. Port 0 picks a free port (see `Node::local_addr`).
    pub listen_addr: SocketAddr,
    /// The node's identity; `None` makes a fresh one at start.
    pub keypair: Option<Keypair>,
    /// Bootstrap peers. Edges are pinged like any peer and never dropped.
    pub edges: Vec<SocketAddr>,

    // ---- protocol constants (PROTOCOL.md section 5) ----
    /// FANOUT: replicas a PUT is forwarded to; peers a GET asks. Reference: 3.
    pub fanout: usize,
    /// NPEER_LIMIT: addresses per PONG. Reference: 5.
    pub npeer_limit: usize,
    /// MIN_WORK: leading zero bits required on a received dat. Reference: 20.
    pub min_work_bits: u32,
    /// PING: every peer is pinged with a fresh challenge this often. Reference: 1 s.
    pub ping_period_ms: u64,
    /// DEACTIVATE_AFTER: a peer silent this long is no longer a target. Reference: 3 s.
    pub deactivate_after_ms: u64,
    /// DROP: a peer silent this long is forgotten (edges never are). Reference: 12 s.
    pub drop_after_ms: u64,
    /// ACTIVATION_DELAY: a new peer becomes a target only after this long. Reference: 5 s.
    pub activation_delay_ms: u64,
    /// GETMYADDRPORT_EVERY: own-address refresh from an edge (and once at start). Reference: 10 min.
    pub getmyaddrport_every_ms: u64,
    /// TTL: a record older than this expires (used in the storage priority). Reference: 365 days.
    pub ttl_ms: i64,

    // ---- storage ----
    /// Byte budget of each of the 256 shards (real in-memory cost of the records).
    pub shard_capacity_bytes: usize,
    /// Backup log file; `None` keeps data in memory only.
    pub backup_path: Option<PathBuf>,
    /// When the backup log is fsynced.
    pub sync_policy: SyncPolicy,

    // ---- engine ----
    /// Receiver threads, each on its own SO_REUSEPORT socket. 0 = one per core.
    pub receiver_threads: usize,
    /// Shard-owner threads; shard `s` is owned by thread `s % shard_owner_threads`. 1..=256.
    pub shard_owner_threads: usize,
    /// Proof-of-work worker threads for local puts. 0 = one per core.
    pub pow_threads: usize,
    /// Pin receiver threads to cores.
    pub pin_cores: bool,
    /// Where network GETs are answered.
    pub get_path: GetPath,
    /// Single or batched Ed25519 verification of received dats.
    pub signature_check: SignatureCheck,
    /// Depth of each shard-owner channel. A full channel drops (and counts) the datagram.
    pub shard_channel_depth: usize,
    /// Depth of the peer thread's channel.
    pub peer_channel_depth: usize,
    /// Socket receive buffer requested from the kernel.
    pub socket_recv_buffer_bytes: usize,
    /// Socket send buffer requested from the kernel.
    pub socket_send_buffer_bytes: usize,
    /// After the first valid GET_ACK, wait at most this long for the other asked peers (a newer
    /// version wins) before returning.
    pub get_settle_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 1618)),
            keypair: None,
            edges: Vec::new(),
            fanout: 3,
            npeer_limit: 5,
            min_work_bits: 20,
            ping_period_ms: 1_000,
            deactivate_after_ms: 3_000,
            drop_after_ms: 12_000,
            activation_delay_ms: 5_000,
            getmyaddrport_every_ms: 600_000,
            ttl_ms: 365 * 24 * 3_600 * 1_000,
            // 4 MiB x 256 shards = 1 GiB of records at most by default.
            shard_capacity_bytes: 4 << 20,
            backup_path: None,
            sync_policy: SyncPolicy::default(),
            receiver_threads: 0,
            shard_owner_threads: 256,
            pow_threads: 0,
            pin_cores: true,
            get_path: GetPath::Receiver,
            signature_check: SignatureCheck::Single,
            // 64 slots x 256 owners bounds queued work; a burst beyond that is shed and counted.
            shard_channel_depth: 64,
            peer_channel_depth: 1024,
            socket_recv_buffer_bytes: 4 << 20,
            socket_send_buffer_bytes: 1 << 20,
            get_settle_ms: 50,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks relations between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: &str| Err(ConfigError(msg.to_string()));
        if self.fanout == 0 {
            return fail("fanout must be at least 1");
        }
        if self.npeer_limit > crate::limits::MAX_PONG_ADDRS {
            return fail("npeer_limit must be at most 5 (a PONG carries at most 5 addresses)");
        }
        if self.min_work_bits > 256 {
            return fail("min_work_bits must be at most 256");
        }
        if self.ping_period_ms == 0 {
            return fail("ping_period_ms must be positive");
        }
        if self.deactivate_after_ms < self.ping_period_ms {
            return fail("deactivate_after_ms must be at least ping_period_ms");
        }
        if self.drop_after_ms < self.deactivate_after_ms {
            return fail("drop_after_ms must be at least deactivate_after_ms");
        }
        if self.ttl_ms <= 0 {
            return fail("ttl_ms must be positive");
        }
        if self.shard_owner_threads == 0 || self.shard_owner_threads > crate::shard::SHARD_COUNT {
            return fail("shard_owner_threads must be between 1 and 256");
        }
        if self.shard_capacity_bytes < crate::limits::MAX_PACKET_LEN * 2 {
            return fail("shard_capacity_bytes must hold at least two of the largest records");
        }
        if self.shard_channel_depth == 0 || self.peer_channel_depth == 0 {
            return fail("channel depths must be positive");
        }
        Ok(())
    }

    /// Receiver threads to start (resolving 0 to the number of cores).
    pub fn receiver_thread_count(&self) -> usize {
        resolve_cores(self.receiver_threads)
    }

    /// PoW workers to start (resolving 0 to the number of cores).
    pub fn pow_thread_count(&self) -> usize {
        resolve_cores(self.pow_threads)
    }
}

fn resolve_cores(n: usize) -> usize {
    if n > 0 {
        return n;
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
