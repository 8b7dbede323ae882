//! `Node`: starts, wires and stops every thread of a dave node, and is the library's API.
//!
//! ```text
//!   dave-rx-N  ──PUT/GET_ACK (and GET on the owner path)──►  dave-shard-N  ──► socket
//!      │  GET (receiver path): answered inline from the shard's read view ──► socket
//!      └──PING/PONG/GETMYADDRPORT(_ACK)──► dave-peer ──► socket; publishes the peer snapshot
//!   dave-pruner: ticks the peer table (100 ms) and the shards (1 s)
//!   dave-pow-N: proof-of-work for local puts      dave-backup: the backup log
//! ```
//!
//! Every channel is bounded; receivers `try_send` and count what a full channel drops. Start-up
//! errors (port in use, unreadable backup, bad configuration) are returned, never panicked.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use parking_lot::RwLock;

use crate::backup::{BackupConfig, BackupHandle, BackupWriter, RecoveredEntry, SyncPolicy};
use crate::config::{Config, ConfigError, GetPath};
use crate::keys::Keypair;
use crate::limits::{MAX_KEY_LEN, PONG_MAX_LEN};
use crate::net::{self, RecvBatch, SendBatch, SocketOptions};
use crate::outbox::Outbox;
use crate::peer::budget::{AmplificationLimiter, AmplificationStats, Pacer, ProvenSet};
use crate::peer::{self, PeerTable, SnapshotView};
use crate::permits::Permits;
use crate::pow::{self, PowPool, SearchOutcome};
use crate::shard::challenge::ChallengeTimer;
use crate::shard::core::{
    BackupOp, Effects, GetOutcome, GetRequest, Record, Shard, ShardRules, answer_get,
};
use crate::shard::repair::ReplicaView;
use crate::shard::store::{Refusal, Store, StoreConfig};
use crate::shard::{SHARD_COUNT, shard_index};
use crate::stats::{Counters, Stats, inc};
use crate::time::{MonotonicClock, unix_now_ms};
use crate::wire::{self, GetRepr, Message};
use std::sync::atomic::AtomicU64;

/// Why a node could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is inconsistent.
    Config(ConfigError),
    /// Binding the UDP socket failed (port in use, address not local, …).
    Bind(SocketAddr, io::Error),
    /// The backup log could not be opened or recovered.
    Backup(crate::backup::BackupError),
    /// A thread could not be spawned.
    Spawn(io::Error),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "invalid configuration: {e}"),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Backup(e) => write!(f, "cannot open the backup log: {e}"),
            StartError::Spawn(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Why a local put failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutError {
    /// Key longer than 255 bytes or key + value longer than 1266 bytes.
    TooLong,
    /// The shard refused the record (an equal or newer version is held, or it has the lowest
    /// priority in a full shard).
    Refused(Refusal),
    /// The node is shutting down.
    Shutdown,
}

impl core::fmt::Display for PutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PutError::TooLong => {
                f.write_str("key or value too long (key ≤ 255, key + value ≤ 1266 bytes)")
            }
            PutError::Refused(r) => write!(f, "refused by the store: {r:?}"),
            PutError::Shutdown => f.write_str("node is shutting down"),
        }
    }
}

impl std::error::Error for PutError {}

/// Why a get returned no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetError {
    /// Every asked peer said "not found" (or no peer was active).
    NotFound,
    /// The timeout passed without a valid answer.
    TimedOut,
    /// The node is shutting down.
    Shutdown,
}

impl core::fmt::Display for GetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            GetError::NotFound => "not found",
            GetError::TimedOut => "timed out",
            GetError::Shutdown => "node is shutting down",
        })
    }
}

impl std::error::Error for GetError {}

/// What a local put did.
#[derive(Debug)]
pub struct PutReport {
    /// The stored record.
    pub dat: Record,
    /// Peers the record was sent to.
    pub sent_to: Vec<SocketAddr>,
}

/// What a shard owner answers a local put: the peers the record was sent to.
type PutResult = Result<Vec<SocketAddr>, PutError>;
/// Where a shard owner sends a [`PutResult`].
type PutReply = Sender<PutResult>;

/// Messages to a shard-owner thread. Unboxed on purpose: a boxed GET would cost an allocation
/// per packet on the owner path; the channel's slots are preallocated anyway.
#[allow(clippy::large_enum_variant)]
enum OwnerMsg {
    Put {
        from: SocketAddr,
        dat: Record,
    },
    GetAck {
        from: SocketAddr,
        dat: Record,
    },
    Get {
        from: SocketAddr,
        pubkey: [u8; 32],
        key_len: u8,
        key: [u8; MAX_KEY_LEN],
    },
    LocalPut {
        dat: Record,
        reply: PutReply,
    },
    LocalGet {
        pubkey: [u8; 32],
        key: Box<[u8]>,
        timeout_ms: u64,
        reply: Sender<GetOutcome>,
    },
    Tick,
}

/// Messages to the peer thread (fixed-size: no allocation per packet).
#[allow(clippy::large_enum_variant)]
enum PeerMsg {
    Datagram {
        from: SocketAddr,
        len: u16,
        bytes: [u8; PONG_MAX_LEN],
    },
    /// A storage challenge scored by a shard owner.
    Challenge {
        addr: SocketAddr,
        success: bool,
    },
    Tick,
}

/// The peer set as shard owners see it: published by the peer thread, read lock-free-ish (one
/// short read lock to clone an `Arc`) once per batch.
type SharedSnapshot = Arc<RwLock<Arc<peer::PeerSnapshot>>>;

/// Addresses that are ours: packets from them are dropped (loopback prevention). Replaced
/// whole (copy on write, rarely) so a receiver takes a reference per batch, not a copy.
type OwnAddrs = Arc<RwLock<Arc<Vec<SocketAddr>>>>;

/// Everything the threads share.
struct Shared {
    config: Config,
    shutdown: AtomicBool,
    stores: Vec<Arc<RwLock<Store>>>,
    owners: Vec<Sender<OwnerMsg>>,
    peer_tx: Sender<PeerMsg>,
    snapshot: SharedSnapshot,
    own_addrs: OwnAddrs,
    /// Gauge: peers known to the table (any state), written by the peer thread.
    peers_known: AtomicU64,
    /// The peer table's counters, copied out by the peer thread on every tick.
    peer_stats: parking_lot::Mutex<peer::PeerStats>,
    /// Bytes to unproven addresses draw on this, on every reply path (`peer::budget`).
    limiter: parking_lot::Mutex<AmplificationLimiter>,
    /// Addresses that answered our PING, published by the peer thread on `Authenticated` and
    /// `Dropped` events; receivers read it once per batch.
    proven: RwLock<Arc<ProvenSet>>,
    /// Storage-challenge scores of the authenticated peers, published by the peer thread.
    scores: RwLock<Arc<Vec<peer::PeerScore>>>,
    /// Node-wide byte budget of replica repair and republish.
    repair_pacer: parking_lot::Mutex<Pacer>,
    /// Bounds the owner threads verifying signatures at once (`permits.rs`).
    verify_permits: Permits,
    clock: MonotonicClock,
}

/// A running dave node. Dropping it shuts it down: every thread is joined and the backup synced.
pub struct Node {
    shared: Arc<Shared>,
    keypair: Keypair,
    local_addr: SocketAddr,
    counters: Vec<Arc<Counters>>,
    threads: Vec<JoinHandle<()>>,
    pow: PowPool,
    backup: Option<BackupWriter>,
}

/// How long a blocking receive waits before checking for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);
/// How often the pruner ticks the peer table.
const PEER_TICK: Duration = Duration::from_millis(100);
/// How often the pruner ticks the shards (expiry).
const SHARD_TICK_MS: u64 = 1_000;
/// How often an owner with pending gets checks their deadlines.
const GET_DEADLINE_POLL: Duration = Duration::from_millis(5);
/// Messages an owner drains per wake-up, so PUTs can be verified as a batch.
const OWNER_BATCH: usize = 64;

impl Node {
    /// Binds, recovers the backup, spawns and names every thread.
    pub fn start(config: Config) -> Result<Node, StartError> {
        config.validate().map_err(StartError::Config)?;
        let keypair = config.keypair.clone().unwrap_or_else(Keypair::generate);
        let receiver_count = config.receiver_thread_count();

        // Sockets first: a port in use is the most common start-up error.
        let options = SocketOptions {
            recv_buffer_bytes: config.socket_recv_buffer_bytes,
            send_buffer_bytes: config.socket_send_buffer_bytes,
            read_timeout: SHUTDOWN_POLL,
            ..SocketOptions::default()
        };
        let bound = net::bind_node_sockets(config.listen_addr, receiver_count, &options)
            .map_err(|e| StartError::Bind(config.listen_addr, e))?;
        let local_addr = bound.local_addr;
        let sockets = bound.sockets;

        // Shards, then the backup replayed into them.
        let node_id = keypair.id();
        let rules = ShardRules {
            min_work_bits: config.min_work_bits,
            fanout: config.fanout,
            signature_check: config.signature_check,
            get_settle_ms: config.get_settle_ms,
        };
        let mut shards: Vec<Shard<Sender<GetOutcome>>> = (0..SHARD_COUNT)
            .map(|_| {
                let store = Store::new(StoreConfig {
                    capacity_bytes: config.shard_capacity_bytes,
                    ttl_ms: config.ttl_ms,
                    node_id,
                });
                Shard::new(store, rules).with_policy(config.shard_policy(), rand::random())
            })
            .collect();
        let backup = match &config.backup_path {
            Some(path) => {
                let now = unix_now_ms();
                let backup_config = BackupConfig {
                    sync_policy: config.sync_policy,
                    ..BackupConfig::new(path)
                };
                let (writer, report) = BackupWriter::open(backup_config, |entry| match entry {
                    RecoveredEntry::Put(dat) => {
                        let shard = shard_index(dat.pubkey(), dat.key());
                        let _ = shards[shard].restore(dat, now);
                    }
                    RecoveredEntry::Delete(tombstone) => {
                        let shard = shard_index(&tombstone.pubkey, &tombstone.key);
                        shards[shard].restore_delete(&tombstone);
                    }
                    RecoveredEntry::Put2(_) | RecoveredEntry::Delete2(_) => {}
                })
                .map_err(StartError::Backup)?;
                log::info!(
                    "backup {}: replayed {} entries in {:?} (corrupt regions skipped {}, torn tail bytes {})",
                    path.display(),
                    report.entries_replayed,
                    report.duration,
                    report.corrupt_regions_skipped,
                    report.torn_tail_bytes_truncated
                );
                Some(writer)
            }
            None => None,
        };

        // Channels.
        let owner_count = config.shard_owner_threads;
        let mut owner_rxs = Vec::with_capacity(owner_count);
        let mut owners = Vec::with_capacity(owner_count);
        for _ in 0..owner_count {
            let (tx, rx) = bounded(config.shard_channel_depth);
            owners.push(tx);
            owner_rxs.push(rx);
        }
        let (peer_tx, peer_rx) = bounded(config.peer_channel_depth);
        let peer_table = PeerTable::new(
            peer_config(&config, local_addr),
            keypair.clone(),
            rand::random(),
        )
        .map_err(|e| StartError::Config(ConfigError(format!("peer table: {e:?}"))))?;
        let snapshot: SharedSnapshot = Arc::new(RwLock::new(peer_table.snapshot()));
        let mut own = Vec::new();
        if !local_addr.ip().is_unspecified() {
            own.push(local_addr);
        }
        let shared = Arc::new(Shared {
            stores: shards.iter().map(|s| Arc::clone(s.store())).collect(),
            config: config.clone(),
            shutdown: AtomicBool::new(false),
            owners,
            peer_tx,
            snapshot,
            own_addrs: Arc::new(RwLock::new(Arc::new(own))),
            peers_known: AtomicU64::new(0),
            peer_stats: parking_lot::Mutex::new(peer::PeerStats::default()),
            limiter: parking_lot::Mutex::new(AmplificationLimiter::new(
                config.amplification_config(),
                0,
            )),
            proven: RwLock::new(Arc::new(ProvenSet::default())),
            scores: RwLock::new(Arc::new(Vec::new())),
            repair_pacer: parking_lot::Mutex::new(Pacer::new(config.repair_budget(), 0)),
            verify_permits: Permits::new(config.verify_permit_count()),
            clock: MonotonicClock::new(),
        });

        let mut node = Node {
            shared: Arc::clone(&shared),
            keypair,
            local_addr,
            counters: Vec::new(),
            threads: Vec::new(),
            pow: PowPool::new(config.pow_thread_count()).map_err(StartError::Spawn)?,
            backup,
        };

        // Shard owners: thread i owns shards s with s % owner_count == i.
        let mut per_owner: Vec<Vec<(usize, Shard<Sender<GetOutcome>>)>> =
            (0..owner_count).map(|_| Vec::new()).collect();
        for (index, shard) in shards.into_iter().enumerate() {
            per_owner[index % owner_count].push((index, shard));
        }
        let send_socket = sockets[0].try_clone().map_err(StartError::Spawn)?;
        for (i, (owned, rx)) in per_owner.into_iter().zip(owner_rxs).enumerate() {
            let counters = node.new_counters();
            let shared = Arc::clone(&shared);
            let socket = send_socket.try_clone().map_err(StartError::Spawn)?;
            let backup = node.backup.as_ref().map(BackupWriter::handle);
            node.spawn(format!("dave-shard-{i}"), move || {
                if shared.config.owner_nice > 0
                    && let Err(e) = net::set_current_thread_nice(shared.config.owner_nice)
                {
                    log::warn!("owner thread keeps its priority: setpriority: {e}");
                }
                owner_loop(shared, owned, rx, socket, backup, counters)
            })?;
        }

        // Peer thread.
        {
            let counters = node.new_counters();
            let shared = Arc::clone(&shared);
            let socket = send_socket.try_clone().map_err(StartError::Spawn)?;
            node.spawn("dave-peer".to_string(), move || {
                peer_loop(shared, peer_table, peer_rx, socket, counters)
            })?;
        }

        // Receivers, pinned one per core when asked.
        let cores = if config.pin_cores {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        for (i, socket) in sockets.into_iter().enumerate() {
            let counters = node.new_counters();
            let shared = Arc::clone(&shared);
            let core = if cores.is_empty() {
                None
            } else {
                Some(cores[i % cores.len()])
            };
            node.spawn(format!("dave-rx-{i}"), move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                receiver_loop(shared, socket, counters)
            })?;
        }

        // Pruner.
        {
            let shared = Arc::clone(&shared);
            node.spawn("dave-pruner".to_string(), move || pruner_loop(shared))?;
        }
        Ok(node)
    }

    fn new_counters(&mut self) -> Arc<Counters> {
        let c = Arc::new(Counters::default());
        self.counters.push(Arc::clone(&c));
        c
    }

    fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) -> Result<(), StartError> {
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(f)
            .map_err(StartError::Spawn)?;
        self.threads.push(handle);
        Ok(())
    }

    /// The address the node listens on (with the real port if the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.keypair.public()
    }

    /// This node's identity.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// Computes the work (on the PoW pool, at the node's `min_work_bits`), signs, stores and
    /// replicates a record owned by this node's key.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<PutReport, PutError> {
        self.put_as(
            &self.keypair.clone(),
            key,
            value,
            self.shared.config.min_work_bits,
        )
    }

    /// Like [`Node::put`], for any owner key and difficulty.
    pub fn put_as(
        &self,
        owner: &Keypair,
        key: &[u8],
        value: &[u8],
        work_bits: u32,
    ) -> Result<PutReport, PutError> {
        self.put_with_progress(
            owner,
            key,
            value,
            work_bits,
            &Default::default(),
            &Default::default(),
        )
    }

    /// Like [`Node::put_as`], reporting hashes done to `hashes` and stopping if `cancel` is set.
    pub fn put_with_progress(
        &self,
        owner: &Keypair,
        key: &[u8],
        value: &[u8],
        work_bits: u32,
        cancel: &Arc<AtomicBool>,
        hashes: &Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<PutReport, PutError> {
        if key.len() > MAX_KEY_LEN || key.len() + value.len() > crate::limits::MAX_KEY_VALUE_LEN {
            return Err(PutError::TooLong);
        }
        // As the reference does: a little in the past, so peers with a slightly late clock accept.
        let time_ms = unix_now_ms() - PUT_TIME_BACKDATE_MS;
        let load = pow::load_hash(key, value, time_ms);
        let (salt, work) =
            match self
                .pow
                .search(load, work_bits, Arc::clone(cancel), Arc::clone(hashes))
            {
                SearchOutcome::Found { salt, work } => (salt, work),
                SearchOutcome::Cancelled => return Err(PutError::Shutdown),
            };
        let dat = pow::sign_dat(owner, key, value, time_ms, salt, work);
        self.put_dat(dat)
    }

    /// Stores and replicates an already-made, valid record (e.g. one made by another tool).
    pub fn put_dat(&self, dat: Record) -> Result<PutReport, PutError> {
        let (reply, answer) = bounded(1);
        let owner = self.owner_of(dat.pubkey(), dat.key());
        let copy = dat.to_boxed();
        self.shared.owners[owner]
            .send(OwnerMsg::LocalPut { dat, reply })
            .map_err(|_| PutError::Shutdown)?;
        let sent_to = answer.recv().map_err(|_| PutError::Shutdown)??;
        // Under sync-every-write a put is acknowledged only once its backup entry is on disk.
        if let Some(backup) = &self.backup
            && self.shared.config.sync_policy == SyncPolicy::EveryWrite
        {
            backup.handle().sync().map_err(|_| PutError::Shutdown)?;
        }
        Ok(PutReport { dat: copy, sent_to })
    }

    /// The record of (owner, key). A node among the FANOUT closest to the owner (a replica,
    /// which receives the owner's PUTs) answers from its local store when it holds the record;
    /// otherwise the closest peers are asked, with a copy held locally (kept from an earlier get)
    /// as the answer unless a peer returns a newer one. Every answer is verified; the newest
    /// valid one wins.
    pub fn get(
        &self,
        owner_pubkey: &[u8; 32],
        key: &[u8],
        timeout: Duration,
    ) -> Result<Record, GetError> {
        if key.len() > MAX_KEY_LEN {
            return Err(GetError::NotFound);
        }
        let (reply, answer) = bounded(1);
        let owner = self.owner_of(owner_pubkey, key);
        let msg = OwnerMsg::LocalGet {
            pubkey: *owner_pubkey,
            key: key.into(),
            timeout_ms: timeout.as_millis() as u64,
            reply,
        };
        self.shared.owners[owner]
            .send(msg)
            .map_err(|_| GetError::Shutdown)?;
        match answer.recv_timeout(timeout + Duration::from_millis(500)) {
            Ok(GetOutcome::Found(dat)) => Ok(dat),
            Ok(GetOutcome::NotFound) => Err(GetError::NotFound),
            Ok(GetOutcome::TimedOut) | Err(RecvTimeoutError::Timeout) => Err(GetError::TimedOut),
            Err(RecvTimeoutError::Disconnected) => Err(GetError::Shutdown),
        }
    }

    /// The record of (owner, key) if this node holds it (no network).
    pub fn get_local(&self, owner_pubkey: &[u8; 32], key: &[u8]) -> Option<Record> {
        let store = self.shared.stores[shard_index(owner_pubkey, key)].read();
        store.get(owner_pubkey, key).map(|d| d.to_boxed())
    }

    /// Sums every thread's counters and reads the gauges.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for c in &self.counters {
            stats.add(c);
        }
        let snapshot = Arc::clone(&self.shared.snapshot.read());
        stats.peers_active = snapshot.len() as u64;
        stats.peers_known = self.shared.peers_known.load(Ordering::Relaxed);
        stats.peer = *self.shared.peer_stats.lock();
        for store in &self.shared.stores {
            let store = store.read();
            stats.records += store.len() as u64;
            stats.record_bytes += store.bytes_used() as u64;
        }
        stats
    }

    /// The storage-challenge record (decayed successes and failures, reliability) of every
    /// authenticated peer, as the peer thread last published it (every 100 ms at most).
    pub fn peer_scores(&self) -> Vec<peer::PeerScore> {
        self.shared.scores.read().as_ref().clone()
    }

    /// What the amplification limiter allowed and withheld (replies to unproven addresses).
    pub fn amplification_stats(&self) -> AmplificationStats {
        *self.shared.limiter.lock().stats()
    }

    /// The active peers as the shard owners see them.
    pub fn peers(&self) -> Arc<peer::PeerSnapshot> {
        Arc::clone(&self.shared.snapshot.read())
    }

    fn owner_of(&self, pubkey: &[u8; 32], key: &[u8]) -> usize {
        shard_index(pubkey, key) % self.shared.config.shard_owner_threads
    }
}

/// How far back a local put dates its record (the reference's 100 ms).
const PUT_TIME_BACKDATE_MS: i64 = 100;

impl Drop for Node {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(backup) = self.backup.take() {
            backup.shutdown();
        }
    }
}

fn peer_config(config: &Config, local_addr: SocketAddr) -> peer::PeerConfig {
    peer::PeerConfig {
        ping_period_ms: config.ping_period_ms,
        deactivate_after_ms: config.deactivate_after_ms,
        drop_after_ms: config.drop_after_ms,
        activation_delay_ms: config.activation_delay_ms,
        getmyaddrport_every_ms: config.getmyaddrport_every_ms,
        npeer_limit: config.npeer_limit,
        edges: config.edges.clone(),
        listen_addr: Some(local_addr),
        features: config.extensions,
        ..peer::PeerConfig::default()
    }
}
/// Withholds the last queued datagram of `outbox` (a reply to the unproven address `to`) unless
/// the amplification budget covers it.
fn limit_last_reply(
    shared: &Shared,
    now_ms: u64,
    to: SocketAddr,
    outbox: &mut Outbox,
    counters: &Counters,
) {
    // O(queued) walk, bounded by one batch; only replies to unproven addresses pay it.
    let Some((_, bytes)) = outbox.iter().last() else {
        return;
    };
    let len = bytes.len();
    if shared.limiter.lock().allow(now_ms, to, len).is_err() {
        outbox.truncate_last(1);
        inc(&counters.amplification_withheld);
        crate::stats::add(&counters.amplification_withheld_bytes, len as u64);
    }
}

/// Challenges an owner thread may send in one wake-up (its timer catching up after a stall).
const MAX_CHALLENGES_PER_WAKE: usize = 4;

/// An owner runs a repair step at most this often, however busy it is: a step may examine
/// `repair_scan_records_per_step` records (a few milliseconds with 1000 peers), so under a flood
/// of PUTs repair takes at most a small share of the owner's time. The pacer refills for 10 ms
/// between steps (5 KiB at the default 512 KiB/s), well inside its 64 KiB burst.
const REPAIR_STEP_MS: u64 = 10;

fn send_outbox(socket: &UdpSocket, outbox: &Outbox, batch: &mut SendBatch, counters: &Counters) {
    for (to, bytes) in outbox.iter() {
        if !batch.push(to, bytes) {
            flush(socket, batch, counters);
            batch.push(to, bytes);
        }
        inc(&counters.packets_sent);
        crate::stats::add(&counters.bytes_sent, bytes.len() as u64);
    }
    flush(socket, batch, counters);
}

fn flush(socket: &UdpSocket, batch: &mut SendBatch, counters: &Counters) {
    if let Err(_e) = batch.flush(socket) {
        inc(&counters.send_errors);
    }
}

fn receiver_loop(shared: Arc<Shared>, socket: UdpSocket, counters: Arc<Counters>) {
    let mut batch = RecvBatch::new();
    let mut outbox = Outbox::new();
    let mut send = SendBatch::new();
    let owner_count = shared.config.shard_owner_threads;
    let spin = Duration::from_micros(shared.config.receiver_spin_us);
    let mut traffic = false;
    while !shared.shutdown.load(Ordering::Relaxed) {
        let n = match receive(
            &mut batch,
            &socket,
            if traffic { spin } else { Duration::ZERO },
        ) {
            Ok(n) => n,
            Err(_) => continue, // timeout (shutdown poll) or a transient error
        };
        traffic = n > 0;
        let own_addrs = Arc::clone(&shared.own_addrs.read());
        let proven = Arc::clone(&shared.proven.read());
        let batch_ms = shared.clock.now_ms();
        for i in 0..n {
            let (bytes, from, truncated) = batch.datagram(i);
            let from = wire::normalize_addr(from);
            inc(&counters.packets_received);
            crate::stats::add(&counters.bytes_received, bytes.len() as u64);
            if truncated {
                inc(&counters.malformed[wire::Error::TooLong.index()]);
                continue;
            }
            if own_addrs.contains(&from) {
                inc(&counters.own_packets_dropped);
                continue;
            }
            let message = match Message::parse(bytes) {
                Ok(m) => m,
                Err(e) => {
                    inc(&counters.malformed[e.index()]);
                    continue;
                }
            };
            match message {
                Message::Put(dat) => {
                    let owner = shard_index(dat.pubkey(), dat.key()) % owner_count;
                    if shared.owners[owner].is_full() {
                        // Dropped before the copy: a flood costs the receiver no allocation.
                        inc(&counters.shard_channel_full);
                        continue;
                    }
                    let msg = OwnerMsg::Put {
                        from,
                        dat: dat.to_boxed(),
                    };
                    try_send(&shared.owners[owner], msg, &counters.shard_channel_full);
                }
                Message::GetAck(dat) => {
                    let owner = shard_index(dat.pubkey(), dat.key()) % owner_count;
                    if shared.owners[owner].is_full() {
                        inc(&counters.shard_channel_full);
                        continue;
                    }
                    let msg = OwnerMsg::GetAck {
                        from,
                        dat: dat.to_boxed(),
                    };
                    try_send(&shared.owners[owner], msg, &counters.shard_channel_full);
                }
                Message::Get(get) => {
                    let shard = shard_index(get.pubkey, get.key);
                    match shared.config.get_path {
                        GetPath::Receiver => {
                            answer_get(
                                &shared.stores[shard].read(),
                                from,
                                &get,
                                &counters,
                                &mut outbox,
                            );
                            if !proven.contains(from) {
                                limit_last_reply(&shared, batch_ms, from, &mut outbox, &counters);
                            }
                        }
                        GetPath::Owner => {
                            let mut key = [0u8; MAX_KEY_LEN];
                            key[..get.key.len()].copy_from_slice(get.key);
                            let msg = OwnerMsg::Get {
                                from,
                                pubkey: *get.pubkey,
                                key_len: get.key.len() as u8,
                                key,
                            };
                            try_send(
                                &shared.owners[shard % owner_count],
                                msg,
                                &counters.shard_channel_full,
                            );
                        }
                    }
                }
                Message::Ping { .. }
                | Message::Pong(_)
                | Message::GetMyAddrPort
                | Message::GetMyAddrPortAck(_) => {
                    let mut copy = [0u8; PONG_MAX_LEN];
                    copy[..bytes.len()].copy_from_slice(bytes);
                    let msg = PeerMsg::Datagram {
                        from,
                        len: bytes.len() as u16,
                        bytes: copy,
                    };
                    try_send(&shared.peer_tx, msg, &counters.peer_channel_full);
                }
            }
        }
        if !outbox.is_empty() {
            send_outbox(&socket, &outbox, &mut send, &counters);
            outbox.clear();
        }
    }
}

/// One receive batch: polls without sleeping for up to `spin` (`Config::receiver_spin_us`),
/// then blocks until a datagram or the read timeout.
fn receive(batch: &mut RecvBatch, socket: &UdpSocket, spin: Duration) -> std::io::Result<usize> {
    if !spin.is_zero() {
        let started = Instant::now();
        loop {
            let n = batch.try_recv(socket)?;
            if n > 0 {
                return Ok(n);
            }
            if started.elapsed() >= spin {
                break;
            }
            std::hint::spin_loop();
        }
    }
    batch.recv(socket)
}

fn try_send<T>(tx: &Sender<T>, msg: T, full: &std::sync::atomic::AtomicU64) {
    match tx.try_send(msg) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => inc(full),
        Err(TrySendError::Disconnected(_)) => {}
    }
}

fn owner_loop(
    shared: Arc<Shared>,
    mut owned: Vec<(usize, Shard<Sender<GetOutcome>>)>,
    rx: Receiver<OwnerMsg>,
    socket: UdpSocket,
    backup: Option<BackupHandle>,
    counters: Arc<Counters>,
) {
    let owner_count = shared.config.shard_owner_threads;
    let local = |shard: usize| shard / owner_count;
    let mut effects: Effects<Sender<GetOutcome>> = Effects::default();
    let mut send = SendBatch::new();
    let mut puts: Vec<Vec<(SocketAddr, Record)>> = (0..owned.len()).map(|_| Vec::new()).collect();
    let mut has_pending = false;
    let mut put_replies: Vec<(PutReply, PutResult)> = Vec::new();
    // Challenges: this owner's timer has a mean gap of `challenge_mean_gap_ms × owners`, so the
    // node as a whole challenges once per `challenge_mean_gap_ms` on average.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(rand::random());
    let mean_gap_ms = shared
        .config
        .challenge_mean_gap_ms
        .saturating_mul(owner_count as u64);
    let mut challenge_timer = ChallengeTimer::new(mean_gap_ms, shared.clock.now_ms(), &mut rng);
    let trust_policy = shared.config.shard_policy().trust;
    let mut seen_snapshot: Option<Arc<peer::PeerSnapshot>> = None;
    let mut view = Arc::new(ReplicaView::default());
    let repair_enabled = shared.config.repair_bytes_per_s > 0;
    let mut repair_turn = 0usize;
    let mut repaired_ms = 0u64;
    while !shared.shutdown.load(Ordering::Relaxed) {
        let timeout = if has_pending {
            GET_DEADLINE_POLL
        } else {
            SHUTDOWN_POLL
        };
        let first = match rx.recv_timeout(timeout) {
            Ok(msg) => Some(msg),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let snapshot = Arc::clone(&shared.snapshot.read());
        let peers = SnapshotView(&snapshot);
        let now_ms = shared.clock.now_ms();
        let wall_ms = unix_now_ms();
        let mut tick = false;
        for msg in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()).take(OWNER_BATCH))
        {
            match msg {
                OwnerMsg::Put { from, dat } => {
                    puts[local(shard_index(dat.pubkey(), dat.key()))].push((from, dat));
                }
                OwnerMsg::GetAck { from, dat } => {
                    let s = local(shard_index(dat.pubkey(), dat.key()));
                    owned[s]
                        .1
                        .handle_get_ack(now_ms, wall_ms, from, dat, &counters, &mut effects);
                }
                OwnerMsg::Get {
                    from,
                    pubkey,
                    key_len,
                    key,
                } => {
                    let key = &key[..key_len as usize];
                    let s = local(shard_index(&pubkey, key));
                    owned[s].1.handle_get(
                        from,
                        &GetRepr {
                            pubkey: &pubkey,
                            key,
                        },
                        &counters,
                        &mut effects,
                    );
                    if !shared.proven.read().contains(from) {
                        limit_last_reply(&shared, now_ms, from, &mut effects.outbox, &counters);
                    }
                }
                OwnerMsg::LocalPut { dat, reply } => {
                    let s = local(shard_index(dat.pubkey(), dat.key()));
                    let result =
                        owned[s]
                            .1
                            .local_put(wall_ms, dat, &peers, &counters, &mut effects);
                    // Answered after `carry_out` below has queued the backup entry, so the
                    // caller's `sync()` (under sync-every-write) covers this record.
                    put_replies.push((reply, result.map_err(PutError::Refused)));
                }
                OwnerMsg::LocalGet {
                    pubkey,
                    key,
                    timeout_ms,
                    reply,
                } => {
                    let s = local(shard_index(&pubkey, &key));
                    let request = GetRequest {
                        pubkey,
                        key: &key,
                        timeout_ms,
                        waiter: reply,
                    };
                    owned[s]
                        .1
                        .start_get(now_ms, request, &peers, &counters, &mut effects);
                }
                OwnerMsg::Tick => tick = true,
            }
        }
        if puts.iter().any(|batch| !batch.is_empty()) {
            let _permit = shared.verify_permits.acquire();
            for (s, batch) in puts.iter_mut().enumerate() {
                if !batch.is_empty() {
                    owned[s]
                        .1
                        .handle_puts(wall_ms, batch, &peers, &counters, &mut effects);
                }
            }
        }
        has_pending = false;
        for (_, shard) in owned.iter_mut() {
            if tick {
                shard.tick(now_ms, wall_ms, &counters, &mut effects);
            } else if shard.next_deadline_ms().is_some_and(|d| d <= now_ms) {
                shard.tick_gets(now_ms, wall_ms, &counters, &mut effects);
            }
            has_pending |= shard.next_deadline_ms().is_some();
        }
        let mut sent = 0;
        while sent < MAX_CHALLENGES_PER_WAKE && challenge_timer.due(now_ms, &mut rng) {
            sent += 1;
            let n = owned.len();
            let start = rand::Rng::gen_range(&mut rng, 0..n);
            if let Some(k) = (0..n).find(|k| owned[(start + k) % n].1.challenge_ready(wall_ms)) {
                owned[(start + k) % n]
                    .1
                    .issue_challenge(wall_ms, &peers, &counters, &mut effects);
            }
        }
        if !seen_snapshot
            .as_ref()
            .is_some_and(|seen| Arc::ptr_eq(seen, &snapshot))
        {
            seen_snapshot = Some(Arc::clone(&snapshot));
            let latest = ReplicaView::of_snapshot(&snapshot, &trust_policy);
            if latest != *view {
                view = Arc::new(latest);
                for (_, shard) in owned.iter_mut() {
                    shard.set_replica_view(Arc::clone(&view), &counters);
                }
            }
        }
        if repair_enabled
            && now_ms.saturating_sub(repaired_ms) >= REPAIR_STEP_MS
            && (tick || owned.iter().any(|(_, s)| s.repair_active()))
        {
            repaired_ms = now_ms;
            let mut pacer = shared.repair_pacer.lock();
            let mut scan = shared.config.repair_scan_records_per_step;
            let n = owned.len();
            repair_turn = (repair_turn + 1) % n;
            for k in 0..n {
                let shard = &mut owned[(repair_turn + k) % n].1;
                shard.repair_step(
                    now_ms,
                    wall_ms,
                    &mut pacer,
                    &mut scan,
                    &counters,
                    &mut effects,
                );
                if scan == 0 {
                    break;
                }
            }
        }
        for outcome in effects.challenge_outcomes.drain(..) {
            let msg = PeerMsg::Challenge {
                addr: outcome.peer,
                success: outcome.verdict.is_success(),
            };
            try_send(&shared.peer_tx, msg, &counters.challenge_outcomes_dropped);
        }
        carry_out(&socket, &mut send, &mut effects, backup.as_ref(), &counters);
        for (reply, result) in put_replies.drain(..) {
            let _ = reply.send(result);
        }
    }
}

fn carry_out(
    socket: &UdpSocket,
    send: &mut SendBatch,
    effects: &mut Effects<Sender<GetOutcome>>,
    backup: Option<&BackupHandle>,
    counters: &Counters,
) {
    if !effects.outbox.is_empty() {
        send_outbox(socket, &effects.outbox, send, counters);
    }
    if let Some(backup) = backup {
        for op in effects.backup.drain(..) {
            let queued = match op {
                BackupOp::Put(dat) => backup.append_put(&dat),
                BackupOp::Delete {
                    pubkey,
                    key,
                    time_ms,
                } => backup.append_delete(&pubkey, &key, time_ms),
            };
            if queued.is_err() {
                inc(&counters.backup_errors);
            }
        }
    }
    for (waiter, outcome) in effects.completions.drain(..) {
        let _ = waiter.send(outcome);
    }
    effects.clear();
}

fn peer_loop(
    shared: Arc<Shared>,
    mut table: PeerTable,
    rx: Receiver<PeerMsg>,
    socket: UdpSocket,
    counters: Arc<Counters>,
) {
    let mut outbox = Outbox::new();
    let mut send = SendBatch::new();
    let decay = shared.config.trust_decay;
    let mut scores_dirty = true;
    while !shared.shutdown.load(Ordering::Relaxed) {
        let msg = match rx.recv_timeout(SHUTDOWN_POLL) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let now_ms = shared.clock.now_ms();
        let effects = match msg {
            PeerMsg::Datagram { from, len, bytes } => {
                match Message::parse(&bytes[..len as usize]) {
                    Ok(message) => table.handle(now_ms, from, &message),
                    Err(_) => continue, // checked by the receiver already
                }
            }
            PeerMsg::Challenge { addr, success } => {
                table.record_challenge(addr, success, decay);
                scores_dirty = true;
                continue;
            }
            PeerMsg::Tick => {
                let effects = table.tick(now_ms);
                *shared.snapshot.write() = table.snapshot();
                if scores_dirty {
                    scores_dirty = false;
                    *shared.scores.write() = Arc::new(table.scores());
                }
                shared
                    .peers_known
                    .store(table.peer_count() as u64, Ordering::Relaxed);
                *shared.peer_stats.lock() = *table.stats();
                effects
            }
        };
        if effects.events.iter().any(|e| {
            matches!(
                e,
                peer::PeerEvent::Authenticated { .. } | peer::PeerEvent::Dropped { .. }
            )
        }) {
            *shared.proven.write() = Arc::new(ProvenSet::new(table.proven_addrs()));
            scores_dirty = true;
        }
        for datagram in &effects.datagrams {
            let message = datagram.message.message();
            if !datagram.to_proven {
                let len = message.buffer_len();
                if shared
                    .limiter
                    .lock()
                    .allow(now_ms, datagram.to, len)
                    .is_err()
                {
                    inc(&counters.amplification_withheld);
                    crate::stats::add(&counters.amplification_withheld_bytes, len as u64);
                    continue;
                }
            }
            outbox.push(datagram.to, &message);
        }
        if let Some(own) = effects.own_addr() {
            let mut own_addrs = shared.own_addrs.write();
            if !own_addrs.contains(&own) {
                let mut updated = Vec::clone(&own_addrs);
                updated.push(own);
                *own_addrs = Arc::new(updated);
            }
        }
        if !outbox.is_empty() {
            send_outbox(&socket, &outbox, &mut send, &counters);
            outbox.clear();
        }
    }
}

fn pruner_loop(shared: Arc<Shared>) {
    let mut last_shard_tick = shared.clock.now_ms();
    while !shared.shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(PEER_TICK);
        let _ = shared.peer_tx.try_send(PeerMsg::Tick);
        let now = shared.clock.now_ms();
        if now - last_shard_tick >= SHARD_TICK_MS {
            last_shard_tick = now;
            for owner in &shared.owners {
                let _ = owner.try_send(OwnerMsg::Tick);
            }
        }
    }
}
