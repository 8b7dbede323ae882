//! The peer thread (`dave-peer`): a thin driver of the [`PeerTable`]. It blocks on its channel
//! until a datagram, a challenge score, or the table's next tick, then takes what else is
//! waiting (up to `DRAIN_AT_MOST`) and hands the PONGs among it to the table to be checked in one
//! batch before handling each message in order (a due deadline runs before the next message,
//! so a flood that keeps the channel full cannot stop the ping rounds); carries out the table's
//! effects (through the amplification limit); and publishes what the other threads read: the
//! peer snapshot, the proven set, the scores, the own addresses. When the replica view of the
//! snapshot changes, it wakes the shard owners (they sleep otherwise). It carries out the
//! router's effects too, address proofs included (`RouterEffects::prove` → `PeerTable::prove`,
//! whose PINGs draw on the amplification limit like every PING to an unproven address; a proof
//! PONG arrives as any PONG does, and the table hands it to its prover). The router's answers and
//! evictions go back into the table (`route::drive::exchange`): peers that speak ROUTING are
//! watched by the router instead of being pinged every second.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::collections::{BTreeMap, VecDeque};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::limits::MAX_PACKET_LEN;
use crate::route::maintain::{LookupShare, Share};
use crate::route::{Contact, LookupId, Router, RouterEffects};

use crate::outbox::Outbox;
use crate::peer::budget::ProvenSet;
use crate::peer::{self, PeerTable, TrustPolicy};
use crate::shard::repair::ReplicaView;
use crate::stats::{Counters, inc};
use crate::wire::{Message, PongRepr};

use super::Shared;
use super::handoff::{OwnerMsg, PeerMsg, send_batch, send_outbox};

pub(super) fn peer_loop(
    shared: Arc<Shared>,
    mut table: PeerTable,
    mut router: Option<Router>,
    rx: Receiver<PeerMsg>,
    socket: UdpSocket,
    counters: Arc<Counters>,
) {
    let mut outbox = Outbox::new();
    let mut send = send_batch(&shared.config);
    let decay = shared.config.trust_decay;
    let trust: TrustPolicy = shared.config.shard_policy().trust;
    let mut view = ReplicaView::default();
    let mut scores_dirty = true;
    // The table's `proven_changes` when the receivers' `ProvenSet` was last published.
    let mut proven_published = table.proven_changes();
    // Lookups asked for by `Node` (bounded by `route::router::MAX_LOOKUPS`: beyond it the router
    // refuses and the asker gets an empty answer at once).
    let mut lookups: BTreeMap<LookupId, Sender<Vec<Contact>>> = BTreeMap::new();
    // Lookups asked for by the owners' replica maintenance (`route::maintain`): one per target
    // for every owner asking, paced node-wide, recent answers reused (`LookupShare`; at most
    // `MAX_SHARED_IN_FLIGHT` in flight). Lookup → target.
    let mut share = shared
        .config
        .maintain_config(1)
        .map(|c| LookupShare::new(&c, shared.clock.now_ms()));
    let mut maintain_lookups: BTreeMap<LookupId, u64> = BTreeMap::new();
    // Messages taken from the channel with the last one waited for, handled in order before the
    // next wait (at most `DRAIN_AT_MOST`).
    let mut drained: VecDeque<PeerMsg> = VecDeque::with_capacity(DRAIN_AT_MOST);
    // The last turn ran the timers. A due deadline goes before the next message, so a channel
    // that never empties (a flood) cannot starve the ping rounds; but never two timer turns in
    // a row, so a deadline that a tick leaves due cannot starve the channel either.
    let mut ticked_last = false;
    loop {
        let msg = match drained.pop_front() {
            Some(msg) => Some(msg),
            None => {
                let next_ms = router
                    .as_ref()
                    .and_then(Router::next_deadline_ms)
                    .map_or(table.next_tick_ms(), |r| r.min(table.next_tick_ms()));
                let wait_ms = next_ms.saturating_sub(shared.clock.now_ms());
                if wait_ms == 0 && !ticked_last {
                    None
                } else {
                    match rx.recv_timeout(Duration::from_millis(wait_ms)) {
                        Ok(PeerMsg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                        Ok(msg) => {
                            drained.extend(rx.try_iter().take(DRAIN_AT_MOST - 1));
                            check_pongs_together(&mut table, &msg, &drained);
                            Some(msg)
                        }
                        Err(RecvTimeoutError::Timeout) => None,
                    }
                }
            }
        };
        ticked_last = msg.is_none();
        let now_ms = shared.clock.now_ms();
        let mut route_fx = RouterEffects::default();
        let mut effects = match msg {
            Some(PeerMsg::Route { from, len, msg }) => {
                if let Some(router) = router.as_mut() {
                    let proven = table.is_proven(from);
                    route_fx = router.handle(now_ms, from, proven, usize::from(len), &msg);
                }
                peer::Effects::default()
            }
            Some(PeerMsg::Lookup { target, reply }) => {
                match router.as_mut() {
                    Some(router) => {
                        let (id, fx) = router.start_lookup(now_ms, target);
                        route_fx = fx;
                        match id {
                            Some(id) => {
                                lookups.insert(id, reply);
                            }
                            None => {
                                let _ = reply.send(Vec::new());
                            }
                        }
                    }
                    None => {
                        let _ = reply.send(Vec::new());
                    }
                }
                peer::Effects::default()
            }
            Some(PeerMsg::MaintainLookup { target, owner }) => {
                match (share.as_mut(), router.as_mut()) {
                    (Some(share), Some(router)) => match share.ask(now_ms, target, owner) {
                        Share::Cached(closest) => {
                            answer_owner(&shared, owner, target, Some(closest.to_vec()));
                        }
                        Share::Joined => {}
                        Share::Refused => answer_owner(&shared, owner, target, None),
                        Share::Start => {
                            let (id, fx) = router.start_lookup(now_ms, target);
                            route_fx = fx;
                            match id {
                                Some(id) => {
                                    maintain_lookups.insert(id, target);
                                }
                                None => {
                                    for owner in share.done(now_ms, target, None) {
                                        answer_owner(&shared, owner, target, None);
                                    }
                                }
                            }
                        }
                    },
                    _ => answer_owner(&shared, owner, target, None),
                }
                peer::Effects::default()
            }
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
            None => {
                if let Some(router) = router.as_mut()
                    && router.next_deadline_ms().is_some_and(|d| d <= now_ms)
                {
                    route_fx = router.tick(now_ms);
                }
                if table.next_tick_ms() <= now_ms {
                    table.tick(now_ms)
                } else {
                    peer::Effects::default()
                }
            }
        };
        if let Some(router) = router.as_mut() {
            // Verified contacts and proofs into the router, its answers and evictions into the
            // table (the liveness of peers that speak ROUTING): `route::drive::exchange`, shared
            // with the simulator.
            crate::route::drive::exchange(router, &mut table, now_ms, &mut effects, &mut route_fx);
            let mut buf = [0u8; MAX_PACKET_LEN];
            for (to, msg) in &route_fx.sends {
                let n = msg.emit(&mut buf);
                outbox.push_bytes(*to, &buf[..n]);
            }
            // Counters first: an asker that reads them after its answer sees its lookup done.
            *shared.route_stats.lock() = router.stats();
            for done in route_fx.done.drain(..) {
                if let Some(reply) = lookups.remove(&done.id) {
                    let _ = reply.send(done.closest);
                } else if let Some(target) = maintain_lookups.remove(&done.id)
                    && let Some(share) = share.as_mut()
                {
                    for owner in share.done(now_ms, target, Some(&done.closest)) {
                        answer_owner(&shared, owner, target, Some(done.closest.clone()));
                    }
                }
            }
        }
        let peers_changed = effects.events.iter().any(|e| {
            matches!(
                e,
                peer::PeerEvent::Authenticated { .. } | peer::PeerEvent::Dropped { .. }
            )
        });
        if peers_changed || table.proven_changes() != proven_published {
            proven_published = table.proven_changes();
            *shared.proven.write() = Arc::new(ProvenSet::new(table.proven_addrs()));
        }
        if peers_changed {
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
            if let Some(router) = router.as_mut() {
                crate::route::drive::apply_trust(router, &snapshot, &trust);
            }
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

/// Messages the thread takes from its channel at once: the PONGs among them are checked in one
/// batch ([`PeerTable::check_pongs_together`], which takes at most `keys::MAX_VERIFY_BATCH`). A
/// 1,000-peer table pings 20 peers per slice (`peer::PING_ROUND_SLICES`), whose PONGs arrive
/// together.
const DRAIN_AT_MOST: usize = 64;

/// Hands the PONGs among `first` and `rest` (datagrams the receivers passed on) to the table to
/// be checked together before each is handled.
fn check_pongs_together(table: &mut PeerTable, first: &PeerMsg, rest: &VecDeque<PeerMsg>) {
    if rest.is_empty() {
        // A lone message (the usual case off a burst): nothing to batch, no second parse.
        return;
    }
    let pongs: Vec<(SocketAddr, PongRepr)> = std::iter::once(first)
        .chain(rest)
        .filter_map(|msg| match msg {
            PeerMsg::Datagram { from, len, bytes } => {
                match Message::parse(&bytes[..usize::from(*len)]) {
                    Ok(Message::Pong(pong)) => Some((*from, pong)),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    if pongs.len() >= 2 {
        table.check_pongs_together(pongs.iter().map(|(from, pong)| (*from, pong)));
    }
}

/// Hands a maintenance lookup's answer to its owner thread (a full channel drops it: the owner
/// forgets the lookup after its timeout).
fn answer_owner(shared: &Shared, owner: usize, target: u64, closest: Option<Vec<Contact>>) {
    if let Some(tx) = shared.owners.get(owner) {
        let _ = tx.try_send(OwnerMsg::LookupDone { target, closest });
    }
}
