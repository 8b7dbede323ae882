//! The peer thread (`dave-peer`): a thin driver of the [`PeerTable`]. It blocks on its channel
//! until a datagram, a challenge score, or the table's next tick; carries out the table's
//! effects (through the amplification limit); and publishes what the other threads read: the
//! peer snapshot, the proven set, the scores, the own addresses. When the replica view of the
//! snapshot changes, it wakes the shard owners (they sleep otherwise).

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::net::SendBatch;
use crate::outbox::Outbox;
use crate::peer::budget::ProvenSet;
use crate::peer::{self, PeerTable, TrustPolicy};
use crate::shard::repair::ReplicaView;
use crate::stats::{Counters, inc};
use crate::wire::Message;

use super::Shared;
use super::handoff::{OwnerMsg, PeerMsg, send_outbox};

pub(super) fn peer_loop(
    shared: Arc<Shared>,
    mut table: PeerTable,
    rx: Receiver<PeerMsg>,
    socket: UdpSocket,
    counters: Arc<Counters>,
) {
    let mut outbox = Outbox::new();
    let mut send = SendBatch::new();
    let decay = shared.config.trust_decay;
    let trust: TrustPolicy = shared.config.shard_policy().trust;
    let mut view = ReplicaView::default();
    let mut scores_dirty = true;
    loop {
        let wait_ms = table.next_tick_ms().saturating_sub(shared.clock.now_ms());
        let msg = match rx.recv_timeout(Duration::from_millis(wait_ms)) {
            Ok(PeerMsg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(msg) => Some(msg),
            Err(RecvTimeoutError::Timeout) => None,
        };
        let now_ms = shared.clock.now_ms();
        let effects = match msg {
            Some(PeerMsg::Datagram { from, len, bytes }) => {
                match Message::parse(&bytes[..len as usize]) {
                    Ok(message) => table.handle(now_ms, from, &message),
                    Err(_) => continue, // checked by the receiver already
                }
            }
            Some(PeerMsg::Challenge { addr, success }) => {
                table.record_challenge(addr, success, decay);
                scores_dirty = true;
                peer::Effects::default()
            }
            Some(PeerMsg::Shutdown) => break,
            None => table.tick(now_ms),
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
        // Publish what changed.
        let snapshot = table.snapshot();
        if !Arc::ptr_eq(&snapshot, &shared.snapshot.read()) {
            *shared.snapshot.write() = Arc::clone(&snapshot);
            let latest = ReplicaView::of_snapshot(&snapshot, &trust);
            if latest != view {
                view = latest;
                // A full channel needs no wake-up: that owner runs its timers, with the new
                // snapshot, after the batch it is about to take.
                for owner in &shared.owners {
                    let _ = owner.try_send(OwnerMsg::PeersChanged);
                }
            }
        }
        if scores_dirty {
            scores_dirty = false;
            *shared.scores.write() = Arc::new(table.scores());
        }
        shared
            .peers_known
            .store(table.peer_count() as u64, Ordering::Relaxed);
        *shared.peer_stats.lock() = *table.stats();
    }
}
