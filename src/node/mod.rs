//! `Node`: starts, wires and stops every thread of a dave node, and is the library's API.
//!
//! ```text
//!   dave-rx-N  ──PUT/GET_ACK (and GET on the owner path)──►  dave-shard-N  ──► socket
//!      │  GET (receiver path): answered inline from the shard's read view ──► socket
//!      └──PING/PONG/GETMYADDRPORT(_ACK)──► dave-peer ──► socket; publishes the peer snapshot
//!   dave-shard-N: one ShardGroup each; sleeps until a message or the group's next deadline
//!   dave-peer: the peer table; sleeps until a datagram, a challenge score or its next tick
//!   dave-pow-N: proof-of-work for local puts      dave-backup: the backup log
//! ```
//!
//! No thread polls: an idle node's threads block, and `Drop` wakes each one (a shutdown message
//! to the owners and the peer thread, a socket shutdown to the receivers).
//!
//! Every channel is bounded; receivers `try_send` and count what a full channel drops. Start-up
//! errors (port in use, unreadable backup, bad configuration) are returned, never panicked.

mod handoff;
mod owner;
mod peer;
mod pruner;
mod receiver;
mod record2;
mod scaling;
mod verify;

pub use record2::{AnyRecord, GetOptions, Put2Done, PutOptions, PutOutcome, RecordFormat};

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};
use parking_lot::RwLock;

use crate::backup::{BackupConfig, BackupWriter, RecoveredEntry, SyncPolicy};
use crate::config::{Config, ConfigError, ReceiverSockets};
use crate::keys::Keypair;
use crate::limits::MAX_KEY_LEN;
use crate::net::{self, SocketOptions};
use crate::peer::PeerTable;
use crate::peer::budget::{AmplificationLimiter, AmplificationStats, Pacer, ProvenSet};
use crate::permits::Permits;
use crate::pow::{self, PowPool, SearchOutcome};
use crate::shard::core::{GetOutcome, Record, Shard, ShardRules};
use crate::shard::core2::{Counters2, Shard2};
use crate::shard::group::{GroupConfig, Now, SHARD_TICK_MS, ShardGroup};
use crate::shard::group2::Group2;
use crate::shard::store::{Refusal, Store, StoreConfig};
use crate::shard::store2::Store2;
use crate::shard::{SHARD_COUNT, shard_index};
use crate::stats::{Counters, Stats};
use crate::time::{MonotonicClock, unix_now_ms};

use handoff::{LocalGet, OwnAddrs, OwnerMsg, PeerMsg, SharedSnapshot};

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
    /// A v2 put refused by this node or lost at the replicas (compare-and-swap).
    Rejected(crate::shard::core2::Put2Error),
    /// The put needs the v2 format (compare-and-swap, or `RecordFormat::V2`) and this node's
    /// `extensions` do not include RECORD_V2.
    NeedsV2,
    /// The node is shutting down.
    Shutdown,
}

impl core::fmt::Display for PutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PutError::TooLong => {
                f.write_str("key or value too long (key ≤ 255, key + value ≤ 1266 bytes)")
            }
            PutError::Refused(r) => write!(f, "refused by the store: {r}"),
            PutError::Rejected(e) => write!(f, "v2 put refused: {e}"),
            PutError::NeedsV2 => {
                f.write_str("needs the v2 record format (RECORD_V2 is off, or cas without v2)")
            }
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

/// Everything the threads share.
struct Shared {
    config: Config,
    shutdown: AtomicBool,
    stores: Vec<Arc<RwLock<Store>>>,
    /// Each shard's refused-signature slots: receivers drop replays of records whose signature
    /// already failed before copying them (`shard::refused`).
    refused: Vec<Arc<crate::shard::refused::RefusedSlots>>,
    /// The v2 stores, by shard (receivers answer GET2 from them).
    stores2: Vec<Arc<RwLock<Store2>>>,
    /// v2 counters (one set for the node: v2 traffic is light next to v1's).
    counters2: Counters2,
    /// Whether this node speaks RECORD_V2 (`Config::extensions`).
    v2_enabled: bool,
    owners: Vec<Sender<OwnerMsg>>,
    peer_tx: Sender<PeerMsg>,
    /// The PUT verification stage's queue (`Config::put_verify_stage`; `None`: the owners
    /// verify their own PUTs).
    verify_tx: Option<Sender<verify::VerifyMsg>>,
    /// The shard rules, for the verification stage's screening.
    rules: ShardRules,
    snapshot: SharedSnapshot,
    own_addrs: OwnAddrs,
    /// Gauge: peers known to the table (any state), written by the peer thread.
    peers_known: AtomicU64,
    /// The peer table's counters, copied out by the peer thread on every tick.
    peer_stats: parking_lot::Mutex<crate::peer::PeerStats>,
    /// The routing core's counters, copied out by the peer thread after every routing event.
    route_stats: parking_lot::Mutex<crate::route::RouterStats>,
    /// Bytes to unproven addresses draw on this, on every reply path (`crate::peer::budget`).
    limiter: parking_lot::Mutex<AmplificationLimiter>,
    /// Addresses that answered our PING, published by the peer thread on `Authenticated` and
    /// `Dropped` events; receivers read it once per batch.
    proven: RwLock<Arc<ProvenSet>>,
    /// Storage-challenge scores of the authenticated peers, published by the peer thread.
    scores: RwLock<Arc<Vec<crate::peer::PeerScore>>>,
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
    /// The receivers' sockets (clones), shut down on drop to wake the receivers.
    rx_sockets: Vec<std::net::UdpSocket>,
    /// The PUT lane's socket (a clone), for the kernel's drop count (`Config::put_lane`).
    put_lane_socket: Option<std::net::UdpSocket>,
    pow: PowPool,
    backup: Option<BackupWriter>,
    /// Dropped (disconnected) on shutdown to wake the pruner.
    pruner_shutdown: Option<Sender<()>>,
}

/// A receiver's read timeout. Receivers do not poll: `Node::drop` wakes them by shutting their
/// sockets' read side down. The timeout is only a backstop should that wake-up ever be lost (a
/// receiver then notices shutdown within a minute); an idle receiver wakes for it once a minute.
const RECEIVER_BACKSTOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Lowers the calling owner (or verification) thread's priority below the receivers':
/// `SCHED_IDLE` with `Config::owner_sched_idle`, else nice `Config::owner_nice`.
fn lower_owner_priority(config: &Config) {
    let lowered = if config.owner_sched_idle {
        net::set_current_thread_idle_policy()
    } else if config.owner_nice > 0 {
        net::set_current_thread_nice(config.owner_nice)
    } else {
        Ok(())
    };
    if let Err(e) = lowered {
        log::warn!("owner thread keeps its priority: {e}");
    }
}

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
            read_timeout: RECEIVER_BACKSTOP_TIMEOUT,
            ..SocketOptions::default()
        };
        let socket_count = match config.receiver_sockets {
            ReceiverSockets::Shared => 1,
            ReceiverSockets::Hashed | ReceiverSockets::Random => receiver_count,
        };
        // The PUT lane (`Config::put_lane`) is one more socket, bound last: its index in the
        // group is `socket_count`.
        let put_lane = config.put_lane && config.receiver_sockets == ReceiverSockets::Random;
        let bound = net::bind_node_sockets(
            config.listen_addr,
            socket_count + usize::from(put_lane),
            &options,
        )
        .map_err(|e| StartError::Bind(config.listen_addr, e))?;
        let local_addr = bound.local_addr;
        let lane_steer = put_lane.then(|| receiver::put_lane_steer(socket_count));
        let spread_randomly =
            config.receiver_sockets == ReceiverSockets::Random && (socket_count > 1 || put_lane);
        let on_demand_wanted = spread_randomly && config.receivers_on_demand && socket_count > 1;
        if spread_randomly && !on_demand_wanted {
            net::spread_reuseport(&bound.sockets[0], socket_count as u32, lane_steer)
                .map_err(|e| StartError::Bind(local_addr, e))?;
        }
        // Receiver i reads socket i % socket_count (a clone of the one socket when shared).
        let sockets = (0..receiver_count)
            .map(|i| bound.sockets[i % socket_count].try_clone())
            .collect::<Result<Vec<std::net::UdpSocket>, _>>()
            .map_err(StartError::Spawn)?;

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
        let rules2 = config.rules2();
        let shards2: Vec<owner::OwnerShard2> = (0..SHARD_COUNT)
            .map(|_| {
                let store = Store2::new(config.store2_config());
                Shard2::new(store, rules2, node_id)
                    .with_repair(config.shard_policy().repair, rand::random())
            })
            .collect();
        let backup = match &config.backup_path {
            Some(path) => {
                let now = unix_now_ms();
                let backup_config = BackupConfig {
                    sync_policy: config.sync_policy,
                    compact_min_file_bytes: config.backup_compact_min_file_bytes,
                    ..BackupConfig::new(path)
                };
                let (writer, report) = BackupWriter::open(backup_config, |entry| match entry {
                    RecoveredEntry::Put(dat) => {
                        let shard = shard_index(dat.pubkey(), dat.key());
                        let _ = shards[shard].restore(dat, now);
                    }
                    RecoveredEntry::Delete(tombstone) => {
                        let shard = shard_index(&tombstone.pubkey, &tombstone.key);
                        shards[shard].restore_delete(&tombstone.pubkey, &tombstone.key, |held| {
                            tombstone.removes(held)
                        });
                    }
                    RecoveredEntry::Put2(dat) => {
                        let shard = shard_index(dat.pubkey(), dat.key());
                        let _expired_if_refused = shards2[shard].store().write().restore(dat, now);
                    }
                    RecoveredEntry::Delete2(tombstone) => {
                        let shard = shard_index(&tombstone.pubkey, &tombstone.key);
                        let mut store = shards2[shard].store().write();
                        if store
                            .get(&tombstone.pubkey, &tombstone.key)
                            .is_some_and(|held| tombstone.removes(&held))
                        {
                            store.remove(&tombstone.pubkey, &tombstone.key);
                        }
                    }
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
        let (verify_tx, verify_rx) = if config.put_verify_stage {
            let (tx, rx) = bounded(verify::VERIFY_QUEUE_DEPTH);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let peer_table = PeerTable::new(
            config.peer_config(local_addr),
            keypair.clone(),
            rand::random(),
        )
        .map_err(|e| StartError::Config(ConfigError(e.to_string())))?;
        let snapshot: SharedSnapshot = Arc::new(RwLock::new(peer_table.snapshot()));
        let router = config.routing().then(|| {
            let mut router =
                crate::route::Router::new(keypair.id(), config.router_config(), rand::random());
            router.set_own_addr(local_addr);
            router
        });
        let mut own = Vec::new();
        if !local_addr.ip().is_unspecified() {
            own.push(local_addr);
        }
        let shared = Arc::new(Shared {
            stores: shards.iter().map(|s| Arc::clone(s.store())).collect(),
            refused: shards.iter().map(Shard::refused_slots).collect(),
            stores2: shards2.iter().map(|s| Arc::clone(s.store())).collect(),
            counters2: Counters2::default(),
            v2_enabled: config.extensions.contains(crate::wire::Features::RECORD_V2),
            config: config.clone(),
            shutdown: AtomicBool::new(false),
            owners,
            peer_tx,
            verify_tx,
            rules,
            snapshot,
            own_addrs: Arc::new(RwLock::new(Arc::new(own))),
            peers_known: AtomicU64::new(0),
            peer_stats: parking_lot::Mutex::new(crate::peer::PeerStats::default()),
            route_stats: parking_lot::Mutex::new(crate::route::RouterStats::default()),
            limiter: parking_lot::Mutex::new(AmplificationLimiter::new(
                config.amplification_config(),
                0,
            )),
            proven: RwLock::new(Arc::new(ProvenSet::default())),
            scores: RwLock::new(Arc::new(Vec::new())),
            repair_pacer: parking_lot::Mutex::new(Pacer::new(config.repair_budget(), 0)),
            verify_permits: Permits::new(config.verify_permit_count(), crate::pow::KEY_CACHE_SLOTS),
            clock: MonotonicClock::new(),
        });

        let mut node = Node {
            shared: Arc::clone(&shared),
            keypair,
            local_addr,
            counters: Vec::new(),
            threads: Vec::new(),
            rx_sockets: Vec::new(),
            put_lane_socket: None,
            pow: PowPool::new(config.pow_thread_count()).map_err(StartError::Spawn)?,
            backup,
            pruner_shutdown: None,
        };

        // Shard owners: thread i owns shards s with s % owner_count == i, as one `ShardGroup`.
        let mut per_owner: Vec<Vec<Shard<Sender<GetOutcome>>>> =
            (0..owner_count).map(|_| Vec::new()).collect();
        for (index, shard) in shards.into_iter().enumerate() {
            per_owner[index % owner_count].push(shard);
        }
        let mut per_owner2: Vec<Vec<owner::OwnerShard2>> =
            (0..owner_count).map(|_| Vec::new()).collect();
        for (index, shard) in shards2.into_iter().enumerate() {
            per_owner2[index % owner_count].push(shard);
        }
        let group_config = group_config(&config);
        let now = Now {
            mono_ms: shared.clock.now_ms(),
            wall_ms: unix_now_ms(),
        };
        let send_socket = sockets[0].try_clone().map_err(StartError::Spawn)?;
        for (i, ((owned, owned2), rx)) in per_owner
            .into_iter()
            .zip(per_owner2)
            .zip(owner_rxs)
            .enumerate()
        {
            let group = ShardGroup::new(owned, group_config, now, rand::random());
            let group2 =
                Group2::new(owned2, owner_count, SHARD_TICK_MS, now).with_repair(group_config, now);
            let counters = node.new_counters();
            let shared = Arc::clone(&shared);
            let socket = send_socket.try_clone().map_err(StartError::Spawn)?;
            let backup = node.backup.as_ref().map(BackupWriter::handle);
            node.spawn(format!("dave-shard-{i}"), move || {
                lower_owner_priority(&shared.config);
                owner::owner_loop(i, shared, group, group2, rx, socket, backup, counters)
            })?;
        }

        // The PUT verification stage: one thread per verification permit (one per core by
        // default), at the owners' priority.
        if let Some(rx) = verify_rx {
            for i in 0..config.verify_permit_count() {
                let counters = node.new_counters();
                let shared = Arc::clone(&shared);
                let rx = rx.clone();
                node.spawn(format!("dave-verify-{i}"), move || {
                    lower_owner_priority(&shared.config);
                    verify::verify_loop(shared, rx, counters)
                })?;
            }
        }

        // Peer thread.
        {
            let counters = node.new_counters();
            let shared = Arc::clone(&shared);
            let socket = send_socket.try_clone().map_err(StartError::Spawn)?;
            node.spawn("dave-peer".to_string(), move || {
                peer::peer_loop(shared, peer_table, router, peer_rx, socket, counters)
            })?;
        }

        // Receivers, pinned one per core when asked.
        let cores = if config.pin_cores {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        // One shared list of the group's sockets (one descriptor each, whatever the receiver
        // count), read by every receiver that steals, and re-spread on demand. Not the PUT
        // lane's: nobody steals from it.
        let group = if (config.receiver_steal_batches > 0 || on_demand_wanted) && socket_count > 1 {
            let group = bound.sockets[..socket_count]
                .iter()
                .map(|s| s.try_clone())
                .collect::<Result<Vec<_>, _>>()
                .map_err(StartError::Spawn)?;
            Some(Arc::new(group))
        } else {
            None
        };
        let steal_group = group.clone().filter(|_| config.receiver_steal_batches > 0);
        // Receivers on demand (`Config::receivers_on_demand`): the spread starts with one.
        let on_demand = match group.filter(|_| on_demand_wanted) {
            Some(group) => Some(Arc::new(
                receiver::OnDemand::start(group, put_lane)
                    .map_err(|e| StartError::Bind(local_addr, e))?,
            )),
            None => None,
        };
        for (i, socket) in sockets.into_iter().enumerate() {
            node.rx_sockets
                .push(socket.try_clone().map_err(StartError::Spawn)?);
            // The group's sockets, to steal from the others (`Config::receiver_steal_batches`;
            // none with one shared socket).
            let siblings = steal_group.clone().map(|group| receiver::Siblings {
                group,
                own: i % socket_count,
            });
            let on_demand = on_demand.clone();
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
                receiver::receiver_loop(shared, socket, siblings, on_demand, counters)
            })?;
        }

        // The PUT lane's receiver, at the owners' priority, unpinned.
        if put_lane {
            let socket = bound.sockets[socket_count]
                .try_clone()
                .map_err(StartError::Spawn)?;
            node.rx_sockets
                .push(socket.try_clone().map_err(StartError::Spawn)?);
            node.put_lane_socket = Some(socket.try_clone().map_err(StartError::Spawn)?);
            let coalescing = shared.config.put_lane_gro
                && match net::set_receive_coalescing(&socket, true) {
                    Ok(()) => true,
                    Err(e) => {
                        log::warn!(
                            "PUT lane: the kernel refused UDP GRO, reading datagram by datagram: {e}"
                        );
                        false
                    }
                };
            let counters = node.new_counters();
            let shared = Arc::clone(&shared);
            node.spawn("dave-rx-put".to_string(), move || {
                if shared.config.owner_nice > 0
                    && let Err(e) = net::set_current_thread_nice(shared.config.owner_nice)
                {
                    log::warn!("PUT lane: nice {} refused: {e}", shared.config.owner_nice);
                }
                receiver::put_lane_loop(shared, socket, coalescing, counters)
            })?;
        }

        // Pruner: the live size for automatic compaction.
        {
            let shared = Arc::clone(&shared);
            let backup = node.backup.as_ref().map(BackupWriter::handle);
            let (tx, rx) = bounded(1);
            node.pruner_shutdown = Some(tx);
            node.spawn("dave-pruner".to_string(), move || {
                pruner::pruner_loop(shared, backup, rx)
            })?;
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
    /// replicates a record owned by this node's key, in the v2 format by default (and v1 where
    /// needed: see [`RecordFormat::Auto`]).
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<PutOutcome, PutError> {
        self.put_with(key, value, &PutOptions::default())
    }

    /// A v1 record for any owner key and difficulty (the Dave protocol format).
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
        let via = self.lookup_view(dat.owner_id());
        self.shared.owners[owner]
            .send(OwnerMsg::LocalPut { dat, reply, via })
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
        let via = self.lookup_view(crate::keys::id_from_pubkey(owner_pubkey));
        let answer = self.start_get(owner_pubkey, key, timeout, via, OwnerMsg::LocalGet)?;
        match answer.recv_timeout(timeout + Duration::from_millis(500)) {
            Ok(GetOutcome::Found(dat)) => Ok(dat),
            Ok(GetOutcome::NotFound) => Err(GetError::NotFound),
            Ok(GetOutcome::TimedOut) | Err(RecvTimeoutError::Timeout) => Err(GetError::TimedOut),
            Err(RecvTimeoutError::Disconnected) => Err(GetError::Shutdown),
        }
    }

    /// Hands a local get of (owner, key) to the owner of its shard as `message` (`OwnerMsg::
    /// LocalGet` for the v1 record, `LocalGet2` for the v2 one), asking `via` (a lookup's closest
    /// nodes) or else the peer snapshot; the outcome arrives on the returned receiver.
    fn start_get<O>(
        &self,
        owner_pubkey: &[u8; 32],
        key: &[u8],
        timeout: Duration,
        via: Option<Arc<crate::peer::PeerSnapshot>>,
        message: fn(LocalGet<O>) -> OwnerMsg,
    ) -> Result<crossbeam_channel::Receiver<O>, GetError> {
        let (reply, answer) = bounded(1);
        let get = LocalGet {
            pubkey: *owner_pubkey,
            key: key.into(),
            timeout_ms: timeout.as_millis() as u64,
            reply,
            via,
        };
        self.shared.owners[self.owner_of(owner_pubkey, key)]
            .send(message(get))
            .map_err(|_| GetError::Shutdown)?;
        Ok(answer)
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
        stats.proven_v1_strangers = snapshot.one_hop_strangers().len() as u64;
        stats.peer = *self.shared.peer_stats.lock();
        for store in &self.shared.stores {
            let store = store.read();
            stats.records += store.len() as u64;
            stats.record_bytes += store.bytes_used() as u64;
            stats.record_arena_bytes += store.arena_bytes().0 as u64;
        }
        if let Some(lane) = &self.put_lane_socket {
            stats.put_lane_kernel_drops = net::socket_drops(lane).map_or(0, u64::from);
        }
        stats
    }

    /// The storage-challenge record (decayed successes and failures, reliability) of every
    /// authenticated peer, as the peer thread last published it (after every change).
    pub fn peer_scores(&self) -> Vec<crate::peer::PeerScore> {
        self.shared.scores.read().as_ref().clone()
    }

    /// What the amplification limiter allowed and withheld (replies to unproven addresses).
    pub fn amplification_stats(&self) -> AmplificationStats {
        *self.shared.limiter.lock().stats()
    }

    /// The active peers as the shard owners see them.
    pub fn peers(&self) -> Arc<crate::peer::PeerSnapshot> {
        Arc::clone(&self.shared.snapshot.read())
    }

    /// The nodes closest to `target` (a node ID, or a record owner's ID) that answered an
    /// iterative lookup over the routing extension, closest first; empty if this node does not
    /// speak ROUTING, knows no routing peer, or the lookup did not end within `timeout`.
    pub fn lookup(&self, target: u64, timeout: Duration) -> Vec<crate::route::Contact> {
        let (reply, answer) = bounded(1);
        if self
            .shared
            .peer_tx
            .send(PeerMsg::Lookup { target, reply })
            .is_err()
        {
            return Vec::new();
        }
        answer.recv_timeout(timeout).unwrap_or_default()
    }

    /// The routing core's counters (all zero when the extension is off).
    pub fn route_stats(&self) -> crate::route::RouterStats {
        *self.shared.route_stats.lock()
    }

    /// With `route_lookups`, the targets of a local put or get: the lookup's closest nodes as a
    /// snapshot the shard core chooses from (`None`: use the peer snapshot).
    fn lookup_view(&self, target: u64) -> Option<Arc<crate::peer::PeerSnapshot>> {
        let config = &self.shared.config;
        if !config.route_lookups || !config.routing() {
            return None;
        }
        let timeout = Duration::from_millis(config.route_lookup_timeout_ms);
        let found = self.lookup(target, timeout);
        let peers = Arc::clone(&self.shared.snapshot.read());
        crate::route::drive::lookup_view(&found, &peers)
    }

    fn owner_of(&self, pubkey: &[u8; 32], key: &[u8]) -> usize {
        shard_index(pubkey, key) % self.shared.config.shard_owner_threads
    }
}

/// How far back a local put dates its record (the reference's 100 ms).
const PUT_TIME_BACKDATE_MS: i64 = 100;

impl Drop for Node {
    fn drop(&mut self) {
        // No thread polls: each is woken by its shutdown message or its socket's shutdown.
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for owner in &self.shared.owners {
            let _ = owner.send(OwnerMsg::Shutdown);
        }
        let _ = self.shared.peer_tx.send(PeerMsg::Shutdown);
        if let Some(verify) = &self.shared.verify_tx {
            for _ in 0..self.shared.config.verify_permit_count() {
                let _ = verify.send(verify::VerifyMsg::Shutdown);
            }
        }
        self.pruner_shutdown.take();
        for socket in &self.rx_sockets {
            net::shutdown_read(socket);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(backup) = self.backup.take() {
            backup.shutdown();
        }
    }
}

/// The scheduling each owner thread's [`ShardGroup`] gets from the node's `Config`.
fn group_config(config: &Config) -> GroupConfig {
    GroupConfig {
        groups: config.shard_owner_threads,
        challenge_mean_gap_ms: config.challenge_mean_gap_ms,
        repair_enabled: config.repair_bytes_per_s > 0,
        repair_scan_records_per_step: config.repair_scan_records_per_step,
        tick_period_ms: SHARD_TICK_MS,
        trust: config.shard_policy().trust,
        maintain: config.maintain_config(config.shard_owner_threads),
    }
}
