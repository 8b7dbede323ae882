//! The shard-owner thread (`dave-shard-N`): a thin driver of one [`ShardGroup`]. It blocks on
//! its channel until a message or the group's next deadline, feeds the batch to the group, and
//! carries out the effects (datagrams, backup entries, answers to local callers). Every decision
//! is the group's.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::backup::BackupHandle;
use crate::net::SendBatch;
use crate::peer::budget::Pacer;
use crate::permits::Permit;
use crate::shard::core::{BackupOp, Effects, GetOutcome};
use crate::shard::core2::{BackupOp2, Effects2, Get2Outcome};
use crate::shard::group::{GroupEnv, Input, Now, ShardGroup};
use crate::shard::group2::{Group2, Input2};
use crate::stats::{Counters, inc};
use crate::time::unix_now_ms;
use crate::wire::GetRepr;

use super::PutError;
use super::Shared;
use super::handoff::{
    OwnerMsg, PeerMsg, Put2Reply, PutReply, PutResult, limit_last_reply, send_batch, send_outbox,
    try_send,
};

/// Messages an owner drains per wake-up, so PUTs can be verified as a batch.
const OWNER_BATCH: usize = 64;

/// What the owners share: the verification permits and the node-wide repair budget.
struct NodeEnv<'a>(&'a Shared);

impl GroupEnv for NodeEnv<'_> {
    type Permit<'p>
        = Permit<'p>
    where
        Self: 'p;

    fn verify_permit(&mut self) -> Permit<'_> {
        self.0.verify_permits.acquire()
    }

    fn repair_pacer(&mut self) -> impl std::ops::DerefMut<Target = Pacer> + '_ {
        self.0.repair_pacer.lock()
    }
}

/// The v2 half of an owner's state.
pub(super) type OwnerGroup2 = Group2<Put2Reply, Sender<Get2Outcome>>;
/// One v2 shard as the node's owners hold it.
pub(super) type OwnerShard2 = crate::shard::core2::Shard2<Put2Reply, Sender<Get2Outcome>>;

#[allow(clippy::too_many_arguments)]
pub(super) fn owner_loop(
    index: usize,
    shared: Arc<Shared>,
    mut group: ShardGroup<Sender<GetOutcome>>,
    mut group2: OwnerGroup2,
    rx: Receiver<OwnerMsg>,
    socket: UdpSocket,
    backup: Option<BackupHandle>,
    counters: Arc<Counters>,
) {
    let mut effects: Effects<Sender<GetOutcome>> = Effects::default();
    let mut effects2: Effects2<Put2Reply, Sender<Get2Outcome>> = Effects2::default();
    let counters2 = &shared.counters2;
    let mut send = send_batch(&shared.config);
    let mut put_replies: Vec<(PutReply, PutResult)> = Vec::new();
    let mut stop = false;
    while !stop {
        let deadline = match (group.next_deadline_ms(), group2.next_deadline_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let first = match deadline {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at_ms) => {
                let wait_ms = at_ms.saturating_sub(shared.clock.now_ms());
                rx.recv_timeout(Duration::from_millis(wait_ms))
            }
        };
        let first = match first {
            Ok(msg) => Some(msg),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let snapshot = Arc::clone(&shared.snapshot.read());
        let now = Now {
            mono_ms: shared.clock.now_ms(),
            wall_ms: unix_now_ms(),
        };
        for msg in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()).take(OWNER_BATCH))
        {
            let input = match msg {
                OwnerMsg::Put { from, dat } => Input::Put { from, dat },
                OwnerMsg::ScreenedPut { from, dat } => Input::ScreenedPut { from, dat },
                OwnerMsg::Restored { pubkey, key } => {
                    let input = Input::Restored { pubkey, key: &key };
                    group.handle(now, &snapshot, input, &counters, &mut effects);
                    continue;
                }
                OwnerMsg::GetAck { from, dat } => Input::GetAck { from, dat },
                OwnerMsg::Get {
                    from,
                    pubkey,
                    key_len,
                    key,
                } => {
                    let get = GetRepr {
                        pubkey: &pubkey,
                        key: &key[..key_len as usize],
                    };
                    let input = Input::Get { from, get };
                    group.handle(now, &snapshot, input, &counters, &mut effects);
                    if !shared.proven.read().contains(from) {
                        let outbox = &mut effects.outbox;
                        limit_last_reply(&shared.limiter, now.mono_ms, from, outbox, &counters);
                    }
                    continue;
                }
                OwnerMsg::LocalPut { dat, reply, via } => {
                    let input = Input::LocalPut { dat };
                    let peers = via.as_ref().unwrap_or(&snapshot);
                    if let Some(result) = group.handle(now, peers, input, &counters, &mut effects) {
                        // Answered after the effects below have queued the backup entry, so
                        // the caller's `sync()` (under sync-every-write) covers this record.
                        put_replies.push((reply, result.map_err(PutError::Refused)));
                    }
                    continue;
                }
                OwnerMsg::LocalGet(get) => {
                    get.start(&snapshot, |peers, request| {
                        let input = Input::LocalGet(request);
                        group.handle(now, peers, input, &counters, &mut effects)
                    });
                    continue;
                }
                OwnerMsg::Put2(put) => {
                    let input = Input2::Put(put);
                    // Its signature is checked on this thread, under a verification permit
                    // like a batch of v1 PUTs (one v2 PUT at a time: v2 traffic is light).
                    let _permit = shared.verify_permits.acquire();
                    group2.handle(now, &snapshot, input, counters2, &mut effects2);
                    continue;
                }
                OwnerMsg::Status2 {
                    from,
                    status,
                    held_seq,
                    work,
                    pubkey,
                    key,
                } => {
                    let input = Input2::Status {
                        from,
                        status,
                        held_seq,
                        work,
                        pubkey,
                        key: &key,
                    };
                    group2.handle(now, &snapshot, input, counters2, &mut effects2);
                    continue;
                }
                OwnerMsg::GetAck2 {
                    from,
                    pubkey,
                    key,
                    dat,
                } => {
                    let input = Input2::GetAck {
                        from,
                        pubkey,
                        key: &key,
                        dat,
                    };
                    group2.handle(now, &snapshot, input, counters2, &mut effects2);
                    continue;
                }
                OwnerMsg::LocalPut2 { put, via } => {
                    let input = Input2::LocalPut(put);
                    let peers = via.as_ref().unwrap_or(&snapshot);
                    group2.handle(now, peers, input, counters2, &mut effects2);
                    continue;
                }
                OwnerMsg::LocalGet2(get) => {
                    get.start(&snapshot, |peers, request| {
                        let input = Input2::LocalGet(request);
                        group2.handle(now, peers, input, counters2, &mut effects2)
                    });
                    continue;
                }
                OwnerMsg::LookupDone { target, closest } => {
                    // One lookup per owner ID serves the v1 and the v2 copies alike; each group
                    // ignores an answer it did not ask for.
                    group2.lookup_done(now, target, closest.as_deref());
                    let input = Input::LookupDone {
                        target,
                        closest: closest.as_deref(),
                    };
                    group.handle(now, &snapshot, input, &counters, &mut effects);
                    continue;
                }
                OwnerMsg::PeersChanged => continue,
                OwnerMsg::Shutdown => {
                    stop = true;
                    continue;
                }
            };
            group.handle(now, &snapshot, input, &counters, &mut effects);
        }
        let mut env = NodeEnv(&shared);
        group.end_batch(now, &snapshot, &mut env, &counters, &mut effects);
        for outcome in effects.challenge_outcomes.drain(..) {
            let msg = PeerMsg::Challenge {
                addr: outcome.peer,
                success: outcome.verdict.is_success(),
            };
            try_send(&shared.peer_tx, msg, &counters.challenge_outcomes_dropped);
        }
        // Replica maintenance's lookups: a full peer channel drops the ask, and the group forgets
        // the lookup after its timeout (the copies are met again by a later walk).
        group2.end_batch(now, &snapshot, &mut env, counters2, &mut effects2);
        for target in effects.lookups.drain(..).chain(effects2.lookups.drain(..)) {
            let msg = PeerMsg::MaintainLookup {
                target,
                owner: index,
            };
            let _ = shared.peer_tx.try_send(msg);
        }
        carry_out(&socket, &mut send, &mut effects, backup.as_ref(), &counters);
        carry_out2(
            &socket,
            &mut send,
            &mut effects2,
            backup.as_ref(),
            &counters,
        );
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
                BackupOp::Put(dat) => backup.append_put_owned(dat),
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

fn carry_out2(
    socket: &UdpSocket,
    send: &mut SendBatch,
    effects: &mut Effects2<Put2Reply, Sender<Get2Outcome>>,
    backup: Option<&BackupHandle>,
    counters: &Counters,
) {
    if !effects.outbox.is_empty() {
        send_outbox(socket, &effects.outbox, send, counters);
        effects.outbox.clear();
    }
    if let Some(backup) = backup {
        for op in effects.backup.drain(..) {
            let queued = match op {
                BackupOp2::Put(dat) => backup.append_put2_owned(dat),
                BackupOp2::Delete { pubkey, key, seq } => backup.append_delete2(&pubkey, &key, seq),
            };
            if queued.is_err() {
                inc(&counters.backup_errors);
            }
        }
    }
    effects.backup.clear();
    // Answered after the backup entries are queued, as for v1 puts.
    for (waiter, result) in effects.puts_done.drain(..) {
        let _ = waiter.send(result);
    }
    for (waiter, outcome) in effects.gets_done.drain(..) {
        let _ = waiter.send(outcome);
    }
}
