//! The receiver threads (`dave-rx-N`): each blocks on its socket, checks each datagram's header,
//! answers GETs on the receiver path from the shard's read view, and hands everything else to
//! the shard owners or the peer thread with `try_send` (a full channel is a counted drop).
//!
//! The PUT lane's receiver (`dave-rx-put`, `Config::put_lane`) runs the same code on the socket
//! the group's BPF program steers [`PUT_LANE_OPS`] to, at the owners' priority, and pauses while
//! the owners' queues are full, so that what they could not take stays in the kernel.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::GetPath;
use crate::limits::{MAX_KEY_LEN, PONG_MAX_LEN};
use crate::net::{RecvBatch, SendBatch};
use crate::outbox::Outbox;
use crate::shard::core::answer_get;
use crate::shard::core2::answer_get2;
use crate::shard::group2::NetworkPut2;
use crate::shard::shard_index;
use crate::stats::{Counters, inc};
use crate::wire::record2::{self, Message2, Op2};
use crate::wire::route::{ROUTE_OPS, RouteMessage};
use crate::wire::{self, Message, Op};

use super::Shared;
use super::handoff::{OwnerMsg, PeerMsg, limit_last_reply, send_batch, send_outbox, try_send};
use super::scaling::{ReceiverScaling, WINDOW_NS};
use super::verify::VerifyMsg;

/// The ops the PUT lane takes (`Config::put_lane`): those whose datagram carries a record for an
/// owner to verify (PUT, GET_ACK; PUT2, GET2_ACK, PUT2_CAS, PUT2_COMMIT), the costly ones a
/// flood would send. Everything else, GETs first, is spread over the other receivers.
const PUT_LANE_OPS: [u8; 6] = [
    Op::Put as u8,
    Op::GetAck as u8,
    Op2::Put2 as u8,
    Op2::Get2Ack as u8,
    Op2::Put2Cas as u8,
    Op2::Put2Commit as u8,
];

/// The group program's steering of [`PUT_LANE_OPS`] to the PUT lane, the group's socket
/// `socket_index` (bound right after the receivers' sockets).
pub(super) fn put_lane_steer(socket_index: usize) -> crate::net::SteerOps<'static> {
    crate::net::SteerOps {
        socket_index: socket_index as u32,
        ops: &PUT_LANE_OPS,
    }
}

/// How long the PUT lane pauses after a batch that met a full owner queue before it reads again.
/// Meanwhile the kernel holds what arrives and, once the lane's queue is full, drops it without
/// our reading it. 1 ms is about what an owner takes to verify a full queue (64 PUTs batched at
/// ~18 µs each: perf/README, issue 14), so a paused lane finds room again when it wakes; it adds
/// at most 1,000 wake-ups a second, and only while the owners are overloaded.
const PUT_LANE_BACKOFF: Duration = Duration::from_millis(1);

/// A receiver under traffic tries to steal at least every this many wake-ups even when its own
/// batches hold one datagram and its last attempt found nothing: one extra `recvmmsg` in 8
/// wake-ups at one request in flight (measured: stealing on every wake-up cost 2.2 µs of CPU per
/// GET there, perf/README), while a sibling starved of CPU is found within 8 of our wake-ups.
const STEAL_PROBE_WAKES: u32 = 8;

/// The sockets of a receiver's SO_REUSEPORT group, for stealing: every receiver holds the same
/// list and skips its own socket.
pub(super) struct Siblings {
    /// The group's sockets, by index.
    pub group: Arc<Vec<UdpSocket>>,
    /// The index of the receiver's own socket in `group`.
    pub own: usize,
}

impl Siblings {
    /// The `turn`-th socket among the group's first `fed` that is not our own (turns wrap
    /// around); none when there is no other.
    fn nth_other(&self, turn: usize, fed: usize) -> Option<&UdpSocket> {
        let fed = fed.min(self.group.len());
        let others = if self.own < fed { fed - 1 } else { fed };
        if others == 0 {
            return None;
        }
        let k = turn % others;
        Some(
            &self.group[if self.own < fed && k >= self.own {
                k + 1
            } else {
                k
            }],
        )
    }
}

/// What the receivers share for `Config::receivers_on_demand`: how many sockets the random
/// spread feeds (sockets `0..active`), their summed busy time, and the decision
/// ([`ReceiverScaling`]), taken by whichever receiver sees a reason first.
pub(super) struct OnDemand {
    /// The SO_REUSEPORT group's sockets in bind order (the spread program's indices).
    group: Arc<Vec<UdpSocket>>,
    /// Sockets the spread feeds now; read at every steal.
    active: AtomicUsize,
    /// Wall time the receivers spent between a wake-up and their next wait, summed, ns.
    busy_ns: AtomicU64,
    /// When the current busy window ends, ns since `epoch` (read at every wake-up).
    window_end_ns: AtomicU64,
    scaling: Mutex<ReceiverScaling>,
    epoch: Instant,
    /// The PUT lane is the group's next socket (index `group.len()`), and every re-spread keeps
    /// steering [`PUT_LANE_OPS`] to it.
    put_lane: bool,
}

impl OnDemand {
    /// Feeds one receiver of `group` (attaches the spread program for one socket), and with
    /// `put_lane` the PUT lane, bound right after the group.
    pub(super) fn start(group: Arc<Vec<UdpSocket>>, put_lane: bool) -> std::io::Result<OnDemand> {
        let on_demand = OnDemand {
            active: AtomicUsize::new(1),
            busy_ns: AtomicU64::new(0),
            window_end_ns: AtomicU64::new(WINDOW_NS),
            scaling: Mutex::new(ReceiverScaling::new(group.len(), 0)),
            epoch: Instant::now(),
            group,
            put_lane,
        };
        on_demand.spread(1)?;
        Ok(on_demand)
    }

    /// Attaches the group's program: the first `active` sockets fed at random, the PUT lane's
    /// ops steered to it.
    fn spread(&self, active: usize) -> std::io::Result<()> {
        let steer = self.put_lane.then(|| put_lane_steer(self.group.len()));
        crate::net::spread_reuseport(&self.group[0], active as u32, steer)
    }

    /// Sockets the spread feeds now.
    fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// After a receiver's work for one wake-up (`received` datagrams from its own `socket`,
    /// woken at `woke`): counts the busy time and, on a full batch (a queue may be building)
    /// or at the end of a window, lets the decision change the fed count.
    fn after_wake(&self, socket: &UdpSocket, received: usize, woke: Instant, counters: &Counters) {
        let now = Instant::now();
        let busy = now.duration_since(woke).as_nanos() as u64;
        let busy_total = self.busy_ns.fetch_add(busy, Ordering::Relaxed) + busy;
        let now_ns = now.duration_since(self.epoch).as_nanos() as u64;
        let full = received >= crate::net::BATCH;
        let window_due = now_ns >= self.window_end_ns.load(Ordering::Relaxed);
        if !full && !window_due {
            return;
        }
        // One getsockopt per full batch: cheap beside the 32 datagrams it follows.
        let queue = if full {
            crate::net::receive_queue_bytes(socket).ok()
        } else {
            None
        };
        let Some(mut scaling) = self.scaling.try_lock() else {
            return; // another receiver is deciding
        };
        let mut changed = None;
        if let Some((queued, buffer)) = queue
            && let Some(active) = scaling.on_queue(queued, buffer, now_ns)
        {
            inc(&counters.receiver_scale_ups);
            changed = Some(active);
        }
        if changed.is_none() && scaling.window_due(now_ns) {
            if let Some(active) = scaling.end_window(busy_total, now_ns) {
                inc(&counters.receiver_scale_downs);
                changed = Some(active);
            }
            self.window_end_ns
                .store(now_ns.saturating_add(WINDOW_NS), Ordering::Relaxed);
        }
        if let Some(active) = changed {
            match self.spread(active) {
                Ok(()) => self.active.store(active, Ordering::Relaxed),
                Err(e) => log::warn!("receivers: the spread keeps {} sockets: {e}", self.active()),
            }
        }
    }
}

pub(super) fn receiver_loop(
    shared: Arc<Shared>,
    socket: UdpSocket,
    siblings: Option<Siblings>,
    on_demand: Option<Arc<OnDemand>>,
    counters: Arc<Counters>,
) {
    let mut batch = RecvBatch::new();
    let mut outbox = Outbox::new();
    let mut send = send_batch(&shared.config);
    let spin = Duration::from_micros(shared.config.receiver_spin_us);
    if shared.config.receiver_slice_us > 0
        && let Err(e) =
            crate::net::set_current_thread_slice(shared.config.receiver_slice_us * 1_000, 0)
    {
        log::warn!("receiver keeps the kernel's slice: {e}");
    }
    let mut traffic = false;
    let mut last_wait_short = false;
    let mut next_sibling = 0usize;
    let mut stole_last = false;
    let steal_batches = shared.config.receiver_steal_batches;
    let mut wakes_since_steal = 0u32;
    while !shared.shutdown.load(Ordering::Relaxed) {
        // Poll first only while requests come close together: after traffic, and only if the
        // last wait was shorter than the poll window (a wait that outlasted it would have been
        // polled for nothing). A burst's first datagram then costs one blocking wake, and
        // sparse traffic never polls. Never while an owner verifies signatures: polling would
        // take the CPU that PUT verification needs (measured: 16-21 % fewer PUTs stored).
        let poll = if traffic && last_wait_short && !shared.verify_permits.any_held() {
            spin
        } else {
            Duration::ZERO
        };
        // Clock reads only for the features that use them (none by default).
        let waited_from = (!spin.is_zero()).then(Instant::now);
        let received = receive(&mut batch, &socket, poll, || {
            shared.verify_permits.any_held()
        });
        last_wait_short = waited_from.is_some_and(|t| t.elapsed() < spin);
        // `Node::drop` sets the flag, then shuts the sockets' read side down, which wakes this
        // receive (it returns empty datagrams from then on): nothing after the flag is real.
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let n = match received {
            Ok(n) => n,
            Err(_) => continue, // the read timeout (a backstop) or a transient error
        };
        traffic = n > 0;
        let woke = on_demand.as_ref().map(|_| Instant::now());
        handle_batch(&shared, &batch, n, &counters, &mut outbox);
        flush(&socket, &mut outbox, &mut send, &counters);
        // Stealing (`Config::receiver_steal_batches`): with one socket per receiver, a datagram
        // waits in its socket until that socket's receiver runs. A receiver that has a CPU now
        // takes what is already queued on the other receivers' sockets (one batch from one
        // sibling per wake-up, in turn, without waiting), so a receiver that waits for a CPU
        // (pinned to a core something else keeps busy) does not hold up its share of the
        // requests. Only after our own replies went out, and only when it is likely to find
        // something: our own batch held more than one datagram (queues are building), the last
        // attempt found some, or every STEAL_PROBE_WAKES-th wake-up. One request at a time then
        // costs no extra call in most wake-ups, and an idle node none at all.
        wakes_since_steal += 1;
        let worth_trying = n > 1 || stole_last || wakes_since_steal >= STEAL_PROBE_WAKES;
        let fed = on_demand.as_ref().map_or(usize::MAX, |d| d.active());
        if let Some(siblings) = siblings.as_ref().filter(|_| traffic && worth_trying)
            && let Some(sibling) = siblings.nth_other(next_sibling.wrapping_add(1), fed)
        {
            wakes_since_steal = 0;
            next_sibling = next_sibling.wrapping_add(1);
            stole_last = false;
            // A full batch means more may wait there: take up to `steal_batches` in a row.
            for _ in 0..steal_batches {
                let stolen = batch.try_recv(sibling).unwrap_or(0);
                if stolen == 0 {
                    break;
                }
                stole_last = true;
                crate::stats::add(&counters.datagrams_stolen, stolen as u64);
                handle_batch(&shared, &batch, stolen, &counters, &mut outbox);
                flush(&socket, &mut outbox, &mut send, &counters);
                if stolen < crate::net::BATCH {
                    break;
                }
            }
        }
        if let (Some(on_demand), Some(woke)) = (on_demand.as_ref().filter(|_| traffic), woke) {
            on_demand.after_wake(&socket, n, woke, &counters);
        }
    }
}

/// The PUT lane's receiver (`Config::put_lane`): reads its socket, where the group's program
/// steers [`PUT_LANE_OPS`], handles each batch as any receiver does, and after a batch that met
/// a full owner (or verification) queue pauses [`PUT_LANE_BACKOFF`] before reading again. No
/// polling and no stealing: it runs at the owners' priority and reads no faster than they store.
/// With `coalescing` (`Config::put_lane_gro`, the socket's UDP GRO on) it reads runs the kernel
/// coalesced, datagram by datagram.
pub(super) fn put_lane_loop(
    shared: Arc<Shared>,
    socket: UdpSocket,
    coalescing: bool,
    counters: Arc<Counters>,
) {
    let mut batch = if coalescing {
        RecvBatch::coalescing()
    } else {
        RecvBatch::new()
    };
    let mut outbox = Outbox::new();
    let mut send = send_batch(&shared.config);
    let queues_full = |c: &Counters| {
        c.shard_channel_full.load(Ordering::Relaxed) + c.verify_channel_full.load(Ordering::Relaxed)
    };
    while !shared.shutdown.load(Ordering::Relaxed) {
        let received = batch.recv(&socket);
        // As in `receiver_loop`: after the flag, the shut-down socket returns empty datagrams.
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let n = match received {
            Ok(n) if n > 0 => n,
            _ => continue, // the read timeout (a backstop) or a transient error
        };
        crate::stats::add(&counters.put_lane_datagrams, n as u64);
        crate::stats::add(&counters.put_lane_coalesced, batch.coalesced() as u64);
        let full_before = queues_full(&counters);
        handle_batch(&shared, &batch, n, &counters, &mut outbox);
        // A datagram the kernel's hash fallback placed here may be a GET: answer it.
        flush(&socket, &mut outbox, &mut send, &counters);
        if queues_full(&counters) > full_before {
            inc(&counters.put_lane_backoffs);
            std::thread::sleep(PUT_LANE_BACKOFF);
        }
    }
}

/// Sends the replies queued in `outbox`, if any, and empties it.
fn flush(socket: &UdpSocket, outbox: &mut Outbox, send: &mut SendBatch, counters: &Counters) {
    if !outbox.is_empty() {
        send_outbox(socket, outbox, send, counters);
        outbox.clear();
    }
}

/// Checks and routes the first `n` datagrams of `batch`; replies go to `outbox`.
fn handle_batch(
    shared: &Shared,
    batch: &RecvBatch,
    n: usize,
    counters: &Counters,
    outbox: &mut Outbox,
) {
    let owner_count = shared.config.shard_owner_threads;
    let routing = shared.config.routing();
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
        if routing && bytes.first().is_some_and(|op| ROUTE_OPS.contains(op)) {
            // The routing extension (the peer thread's). A v1-only node (extensions off)
            // falls through to `Message::parse`, which counts these as `unknown_op`.
            match RouteMessage::parse(bytes) {
                Ok(msg) => {
                    let msg = PeerMsg::Route {
                        from,
                        len: bytes.len() as u16,
                        msg: Box::new(msg),
                    };
                    try_send(&shared.peer_tx, msg, &counters.peer_channel_full);
                }
                Err(e) => inc(&counters.malformed[e.index()]),
            }
            continue;
        }
        if shared.v2_enabled
            && bytes
                .first()
                .is_some_and(|op| (record2::OP2_FIRST..=record2::OP2_LAST).contains(op))
        {
            let proven = proven.contains(from);
            receive_v2(shared, from, bytes, proven, batch_ms, counters, outbox);
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
                let shard = shard_index(dat.pubkey(), dat.key());
                let owner = shard % owner_count;
                // The cheapest drop first: a full queue drops any PUT, before its fingerprint,
                // its copy and an owner's wake-up. A flood of fresh forgeries (which no cache
                // can recognise) keeps the queues full; each of its datagrams then costs a
                // parse and two loads.
                let (queue_full, full_counter) = match &shared.verify_tx {
                    Some(verify) => (verify.is_full(), &counters.verify_channel_full),
                    None => (shared.owners[owner].is_full(), &counters.shard_channel_full),
                };
                if queue_full {
                    inc(full_counter);
                    continue;
                }
                if shared.refused[shard].knows(&dat) {
                    // A replay of a record whose signature failed: dropped here, before the
                    // copy, the queue and the owner's wake-up (counted as the owner would).
                    inc(&counters.puts_received);
                    inc(&counters.puts_refused_known_bad_signature);
                    continue;
                }
                if let Some(verify) = &shared.verify_tx {
                    let msg = VerifyMsg::Put {
                        from,
                        dat: dat.to_boxed(),
                    };
                    try_send(verify, msg, &counters.verify_channel_full);
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
                        answer_get(&shared.stores[shard].read(), from, &get, counters, outbox);
                        if !proven.contains(from) {
                            limit_last_reply(&shared.limiter, batch_ms, from, outbox, counters);
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
}

/// A v2 datagram (RECORD_V2, ops 0x18..=0x1f): parsed (a malformed one, or the reserved op
/// 0x1f, is counted by reason and dropped); GET2 is answered here from the shard's read view (a
/// GET2_ACK to an unproven address draws on the amplification budget; GET2_NONE has exactly the
/// request's size); everything else goes to the shard's owner.
fn receive_v2(
    shared: &Shared,
    from: std::net::SocketAddr,
    bytes: &[u8],
    proven: bool,
    batch_ms: u64,
    counters: &Counters,
    outbox: &mut Outbox,
) {
    let message = match Message2::parse(bytes) {
        Ok(m) => m,
        Err(e) => {
            inc(&counters.malformed[e.index()]);
            return;
        }
    };
    let Some((pubkey, key)) = message.record_key() else {
        return;
    };
    let shard = shard_index(pubkey, key);
    let msg = match message {
        Message2::Get2 { pubkey, key } => {
            answer_get2(
                &shared.stores2[shard].read(),
                from,
                pubkey,
                key,
                &shared.counters2,
                outbox,
            );
            if !proven {
                limit_last_reply(&shared.limiter, batch_ms, from, outbox, counters);
            }
            return;
        }
        Message2::Put2(_) | Message2::Put2Cas { .. } | Message2::Put2Commit { .. } => {
            let Some(put) = NetworkPut2::of(from, message) else {
                return;
            };
            OwnerMsg::Put2(put)
        }
        Message2::Get2None { pubkey, key } => OwnerMsg::GetAck2 {
            from,
            pubkey: *pubkey,
            key: key.into(),
            dat: None,
        },
        Message2::Put2Status {
            status,
            held_seq,
            work,
            pubkey,
            key,
        } => OwnerMsg::Status2 {
            from,
            status,
            held_seq,
            work: *work,
            pubkey: *pubkey,
            key: key.into(),
        },
        Message2::Get2Ack(dat) => OwnerMsg::GetAck2 {
            from,
            pubkey: *dat.pubkey(),
            key: dat.key().into(),
            dat: Some(dat.to_boxed()),
        },
    };
    let owner = shard % shared.config.shard_owner_threads;
    try_send(&shared.owners[owner], msg, &counters.shard_channel_full);
}

/// One receive batch: polls without sleeping for up to `spin` (`Config::receiver_spin_us`)
/// unless `stop_polling` says so, then blocks until a datagram, the socket's shutdown, or the
/// read timeout.
fn receive(
    batch: &mut RecvBatch,
    socket: &UdpSocket,
    spin: Duration,
    stop_polling: impl Fn() -> bool,
) -> std::io::Result<usize> {
    if !spin.is_zero() {
        let started = Instant::now();
        loop {
            let n = batch.try_recv(socket)?;
            if n > 0 {
                return Ok(n);
            }
            if started.elapsed() >= spin || stop_polling() {
                break;
            }
            std::hint::spin_loop();
        }
    }
    batch.recv(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_turn_names_another_socket_of_the_group_in_rotation() {
        let group: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let addrs: Vec<_> = group.iter().map(|s| s.local_addr().unwrap()).collect();
        let group = Arc::new(group);
        for own in 0..3 {
            let siblings = Siblings {
                group: Arc::clone(&group),
                own,
            };
            let named: Vec<_> = (0..4)
                .map(|turn| siblings.nth_other(turn, 3).unwrap().local_addr().unwrap())
                .collect();
            let others: Vec<_> = (0..3).filter(|&j| j != own).map(|j| addrs[j]).collect();
            assert_eq!(named, [others[0], others[1], others[0], others[1]]);
        }
    }

    #[test]
    fn only_fed_sockets_are_stolen_from() {
        let group: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let addrs: Vec<_> = group.iter().map(|s| s.local_addr().unwrap()).collect();
        let group = Arc::new(group);
        let of = |own| Siblings {
            group: Arc::clone(&group),
            own,
        };
        let named = |own: usize, fed: usize| -> Vec<_> {
            let siblings = of(own);
            (0..4)
                .filter_map(|turn| siblings.nth_other(turn, fed))
                .map(|s| s.local_addr().unwrap())
                .collect()
        };
        // One socket fed: its receiver has nobody to steal from.
        assert!(named(0, 1).is_empty());
        // Two fed: they steal from each other only.
        assert_eq!(named(0, 2), [addrs[1]; 4]);
        assert_eq!(named(1, 2), [addrs[0]; 4]);
        // A receiver left out of the spread (draining its queue) may help the fed ones.
        assert_eq!(named(2, 2), [addrs[0], addrs[1], addrs[0], addrs[1]]);
    }
}
