//! What the node's threads hand each other: the messages on their channels, the state they
//! publish for each other, and the small send helpers every thread uses.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::{Mutex, RwLock};

use crate::config::Config;
use crate::limits::{MAX_KEY_LEN, PONG_MAX_LEN};
use crate::net::SendBatch;
use crate::outbox::Outbox;
use crate::peer::{self, budget::AmplificationLimiter};
use crate::shard::core::{GetOutcome, GetRequest, Record};
use crate::shard::core2::{Get2Outcome, LocalPut2, Put2Error, Put2Report};
use crate::shard::group2::NetworkPut2;
use crate::stats::{Counters, inc};
use crate::wire::record2::{Record2, Status2};

use super::PutError;

/// What a shard owner answers a local put: the peers the record was sent to.
pub(super) type PutResult = Result<Vec<SocketAddr>, PutError>;
/// Where a shard owner sends a [`PutResult`].
pub(super) type PutReply = Sender<PutResult>;

/// What a shard owner answers a local v2 put.
pub(super) type Put2Result = Result<Put2Report, Put2Error>;
/// Where a shard owner sends a [`Put2Result`].
pub(super) type Put2Reply = Sender<Put2Result>;

/// Messages to a shard-owner thread. Unboxed on purpose: a boxed GET would cost an allocation
/// per packet on the owner path; the channel's slots are preallocated anyway.
#[allow(clippy::large_enum_variant)]
pub(super) enum OwnerMsg {
    Put {
        from: SocketAddr,
        dat: Record,
    },
    /// A PUT the verification stage screened (`node::verify`): stored without verifying again.
    ScreenedPut {
        from: SocketAddr,
        dat: Record,
    },
    /// A duplicate PUT the verification stage refused: the held copy's clock restarts.
    Restored {
        pubkey: [u8; 32],
        key: Box<[u8]>,
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
        /// Targets found by a routing lookup (`Config::route_lookups`), used instead of the
        /// peer snapshot for this record.
        via: Option<Arc<peer::PeerSnapshot>>,
    },
    /// A local v1 get.
    LocalGet(LocalGet<GetOutcome>),
    /// PUT2 / PUT2_CAS / PUT2_COMMIT (`shard::group2`).
    Put2(NetworkPut2),
    /// PUT2_STATUS.
    Status2 {
        from: SocketAddr,
        status: Status2,
        held_seq: u64,
        work: [u8; 32],
        pubkey: [u8; 32],
        key: Box<[u8]>,
    },
    /// GET2_ACK (`dat: Some`) or GET2_NONE.
    GetAck2 {
        from: SocketAddr,
        pubkey: [u8; 32],
        key: Box<[u8]>,
        dat: Option<Record2>,
    },
    /// A local v2 put.
    LocalPut2 {
        put: LocalPut2<Put2Reply>,
        /// As for `LocalPut`.
        via: Option<Arc<peer::PeerSnapshot>>,
    },
    /// A local v2 get.
    LocalGet2(LocalGet<Get2Outcome>),
    /// The answer to a [`PeerMsg::MaintainLookup`]: the closest nodes found (`None`: the lookup
    /// could not run).
    LookupDone {
        target: u64,
        closest: Option<Vec<crate::route::Contact>>,
    },
    /// The replica view may have changed: run the group's timers with the new snapshot.
    PeersChanged,
    /// The node is shutting down: finish this batch and return.
    Shutdown,
}

/// A get asked on this node, for the owner of its record's shard; `O` is the outcome the caller
/// waits for on `reply` (v1 [`GetOutcome`], v2 [`Get2Outcome`]).
pub(super) struct LocalGet<O> {
    /// The record's owner.
    pub pubkey: [u8; 32],
    /// The record's key.
    pub key: Box<[u8]>,
    /// How long the owner waits for peers.
    pub timeout_ms: u64,
    /// Where the outcome goes.
    pub reply: Sender<O>,
    /// As for [`OwnerMsg::LocalPut`].
    pub via: Option<Arc<peer::PeerSnapshot>>,
}

impl<O> LocalGet<O> {
    /// Starts the get in a shard core: `start` is given the peers to ask (`via`, else
    /// `snapshot`) and the request, whose outcome goes to `reply`.
    #[inline]
    pub fn start<R>(
        self,
        snapshot: &Arc<peer::PeerSnapshot>,
        start: impl FnOnce(&Arc<peer::PeerSnapshot>, GetRequest<'_, Sender<O>>) -> R,
    ) -> R {
        let request = GetRequest {
            pubkey: self.pubkey,
            key: &self.key,
            timeout_ms: self.timeout_ms,
            waiter: self.reply,
        };
        start(self.via.as_ref().unwrap_or(snapshot), request)
    }
}

/// Messages to the peer thread (fixed-size: no allocation per packet).
#[allow(clippy::large_enum_variant)]
pub(super) enum PeerMsg {
    Datagram {
        from: SocketAddr,
        len: u16,
        bytes: [u8; PONG_MAX_LEN],
    },
    /// A routing-extension datagram (ops 0x10..=0x17), parsed by the receiver.
    Route {
        from: SocketAddr,
        len: u16,
        msg: Box<crate::wire::route::RouteMessage>,
    },
    /// Find the nodes closest to `target` by a lookup; the answer (closest first) goes to `reply`.
    Lookup {
        target: u64,
        reply: Sender<Vec<crate::route::Contact>>,
    },
    /// A shard owner's replica maintenance asks for the closest nodes of `target`; the answer
    /// goes back to owner `owner` as [`OwnerMsg::LookupDone`].
    MaintainLookup { target: u64, owner: usize },
    /// A storage challenge scored by a shard owner.
    Challenge { addr: SocketAddr, success: bool },
    /// The node is shutting down.
    Shutdown,
}

/// The peer set as shard owners see it: published by the peer thread, read lock-free-ish (one
/// short read lock to clone an `Arc`) once per batch.
pub(super) type SharedSnapshot = Arc<RwLock<Arc<peer::PeerSnapshot>>>;

/// Addresses that are ours: packets from them are dropped (loopback prevention). Replaced
/// whole (copy on write, rarely) so a receiver takes a reference per batch, not a copy.
pub(super) type OwnAddrs = Arc<RwLock<Arc<Vec<SocketAddr>>>>;

/// Withholds the last queued datagram of `outbox` (a reply to the unproven address `to`) unless
/// the amplification budget covers it.
pub(super) fn limit_last_reply(
    limiter: &Mutex<AmplificationLimiter>,
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
    if limiter.lock().allow(now_ms, to, len).is_err() {
        outbox.truncate_last(1);
        inc(&counters.amplification_withheld);
        crate::stats::add(&counters.amplification_withheld_bytes, len as u64);
    }
}

pub(super) fn send_outbox(
    socket: &UdpSocket,
    outbox: &Outbox,
    batch: &mut SendBatch,
    counters: &Counters,
) {
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
    let before = *batch.stats();
    if let Err(_e) = batch.flush(socket) {
        inc(&counters.send_errors);
    }
    let after = batch.stats();
    let segmented = after.sent_segmented - before.sent_segmented;
    if segmented > 0 {
        crate::stats::add(&counters.packets_sent_segmented, segmented);
    }
    if after.segmentation_refused > before.segmentation_refused {
        crate::stats::add(
            &counters.send_segmentation_refused,
            after.segmentation_refused - before.segmentation_refused,
        );
    }
}

/// A send batch for one of the node's sending threads, segmenting as `config` says.
pub(super) fn send_batch(config: &Config) -> SendBatch {
    let mut batch = SendBatch::new();
    batch.set_segmentation(config.udp_segmentation);
    batch
}

/// Sends without blocking; a full channel counts a drop in `full`.
pub(super) fn try_send<T>(tx: &Sender<T>, msg: T, full: &AtomicU64) {
    match tx.try_send(msg) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => inc(full),
        Err(TrySendError::Disconnected(_)) => {}
    }
}
