//! Counters: each thread owns one [`Counters`] (relaxed atomics on their own cache lines), and
//! [`crate::Node::stats`] sums them into a [`Stats`] snapshot. Nothing is shared between threads
//! on the packet path, so counting costs one uncontended add.
//!
//! Every way a datagram can be dropped has its own counter; the Prometheus exporter walks
//! [`Stats::for_each`] so a new counter is exported without further code.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::pow::VerifyError;
use crate::wire;

/// Verification failures, by [`VerifyError`], in this order.
pub const VERIFY_ERRORS: [VerifyError; 4] = [
    VerifyError::NotEnoughWork,
    VerifyError::FromTheFuture,
    VerifyError::WorkMismatch,
    VerifyError::BadSignature,
];

/// Dense index of a verification failure.
pub fn verify_error_index(e: VerifyError) -> usize {
    match e {
        VerifyError::NotEnoughWork => 0,
        VerifyError::FromTheFuture => 1,
        VerifyError::WorkMismatch => 2,
        VerifyError::BadSignature => 3,
    }
}

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident ),* $(,)?) => {
        /// One thread's counters (write side).
        #[derive(Default)]
        #[repr(align(128))]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $name: AtomicU64, )*
            /// Malformed datagrams by [`wire::Error`] index.
            pub malformed: [AtomicU64; wire::Error::COUNT],
            /// Received PUTs refused by verification, by [`VERIFY_ERRORS`] index.
            pub put_invalid: [AtomicU64; 4],
            /// Received GET_ACKs refused by verification, by [`VERIFY_ERRORS`] index.
            pub get_ack_invalid: [AtomicU64; 4],
        }

        /// A sum of all threads' counters at one moment (read side).
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Stats {
            $( $(#[doc = $doc])* pub $name: u64, )*
            /// Malformed datagrams by [`wire::Error`] index.
            pub malformed: [u64; wire::Error::COUNT],
            /// Received PUTs refused by verification, by [`VERIFY_ERRORS`] index.
            pub put_invalid: [u64; 4],
            /// Received GET_ACKs refused by verification, by [`VERIFY_ERRORS`] index.
            pub get_ack_invalid: [u64; 4],
            /// Gauge: peers currently active.
            pub peers_active: u64,
            /// Gauge: peers known (any state).
            pub peers_known: u64,
            /// Gauge: addresses outside the peer table proven lately whose PONG advertised no
            /// ROUTING (v1 nodes that ping a full table, `peer::prover`).
            pub proven_v1_strangers: u64,
            /// Gauge: records held.
            pub records: u64,
            /// Gauge: bytes of records held (their in-memory cost).
            pub record_bytes: u64,
            /// Gauge: bytes the shard stores' record arenas take (whole segments, garbage
            /// and free room included): the record memory that `record_bytes` budgets for.
            pub record_arena_bytes: u64,
            /// Datagrams the kernel dropped at the PUT lane's full queue (`Config::put_lane`),
            /// read from the socket when the snapshot is taken (a 32-bit kernel count). The
            /// kernel counts a coalesced run (`Config::put_lane_gro`) it drops whole as one.
            pub put_lane_kernel_drops: u64,
            /// The peer table's own counters (PINGs, PONGs, and every reason it refused one).
            pub peer: crate::peer::PeerStats,
        }

        impl Stats {
            /// Adds one thread's counters.
            pub fn add(&mut self, c: &Counters) {
                $( self.$name += c.$name.load(Ordering::Relaxed); )*
                for (sum, c) in self.malformed.iter_mut().zip(&c.malformed) {
                    *sum += c.load(Ordering::Relaxed);
                }
                for (sum, c) in self.put_invalid.iter_mut().zip(&c.put_invalid) {
                    *sum += c.load(Ordering::Relaxed);
                }
                for (sum, c) in self.get_ack_invalid.iter_mut().zip(&c.get_ack_invalid) {
                    *sum += c.load(Ordering::Relaxed);
                }
            }

            /// Calls `f(name, label, value)` for every counter and gauge; `label` is the reason
            /// for per-reason counters.
            pub fn for_each(&self, mut f: impl FnMut(&'static str, Option<&'static str>, u64)) {
                $( f(stringify!($name), None, self.$name); )*
                for (e, v) in wire::Error::ALL.iter().zip(&self.malformed) {
                    f("malformed", Some(e.name()), *v);
                }
                for (e, v) in VERIFY_ERRORS.iter().zip(&self.put_invalid) {
                    f("put_invalid", Some(e.name()), *v);
                }
                for (e, v) in VERIFY_ERRORS.iter().zip(&self.get_ack_invalid) {
                    f("get_ack_invalid", Some(e.name()), *v);
                }
                f("peers_active", None, self.peers_active);
                f("peers_known", None, self.peers_known);
                f("proven_v1_strangers", None, self.proven_v1_strangers);
                f("records", None, self.records);
                f("record_bytes", None, self.record_bytes);
                f("record_arena_bytes", None, self.record_arena_bytes);
                f("put_lane_kernel_drops", None, self.put_lane_kernel_drops);
                for (reason, v) in self.peer.refusals() {
                    f("peer_refused", Some(reason), v);
                }
                f("pings_received", None, self.peer.pings_received);
                f("pongs_received", None, self.peer.pongs_received);
                f("pongs_accepted", None, self.peer.pongs_accepted);
                f("pings_sent", None, self.peer.pings_sent);
                f("pongs_sent", None, self.peer.pongs_sent);
                f("ping_pong_bytes_sent", None, self.peer.ping_pong_bytes_sent);
                f("peers_router_heard", None, self.peer.router_heard);
                f("peers_router_evicted", None, self.peer.router_evicted);
                f("proofs_sent", None, self.peer.proofs_sent);
                f("proofs_of_strangers", None, self.peer.proofs_of_strangers);
                f("proofs_known", None, self.peer.proofs_known);
                f("proofs_succeeded", None, self.peer.proofs_succeeded);
                f("proofs_expired", None, self.peer.proofs_expired);
                for (reason, v) in self.peer.proof_refusals() {
                    f("proof_refused", Some(reason), v);
                }
            }
        }
    };
}

counters! {
    /// Datagrams received.
    packets_received,
    /// Bytes received.
    bytes_received,
    /// Datagrams sent.
    packets_sent,
    /// Bytes sent.
    bytes_sent,
    /// Datagrams whose send failed.
    send_errors,
    /// Of `packets_sent`, datagrams sent in segmented sends (UDP GSO, `Config::udp_segmentation`).
    packets_sent_segmented,
    /// Segmented sends the kernel refused; each sending thread then sends one by one
    /// (`Config::udp_segmentation`).
    send_segmentation_refused,
    /// Datagrams from our own address (loopback prevention).
    own_packets_dropped,
    /// Datagrams dropped because a shard-owner channel was full.
    shard_channel_full,
    /// PUTs dropped because the verification stage's queue was full (`node::verify`).
    verify_channel_full,
    /// Datagrams dropped because the peer channel was full.
    peer_channel_full,
    /// Replies withheld by the amplification budget (unproven destination over its budget).
    amplification_withheld,
    /// PUTs received.
    puts_received,
    /// PUTs stored (new or newer).
    puts_stored,
    /// PUTs identical to the held record.
    puts_duplicate,
    /// PUTs older than the held record.
    puts_older,
    /// PUTs whose work hash is already used by another record.
    puts_work_reused,
    /// PUTs refused because they had the lowest priority in a full shard.
    puts_low_priority,
    /// PUT datagrams sent to replicas for records stored (forwards taken back because the
    /// record lost a race on insert are not counted).
    puts_forwarded,
    /// PUTs refused without verification: this shard found the same record's signature bad
    /// recently (`shard/refused.rs`).
    puts_refused_known_bad_signature,
    /// PUTs refused without verification: a copy of a record earlier in the same batch.
    puts_refused_repeat_in_batch,
    /// GETs received from the network.
    gets_received,
    /// GETs answered with a record.
    gets_found,
    /// GETs answered with "not found".
    gets_not_found,
    /// GET_ACKs received.
    get_acks_received,
    /// GET_ACKs with no matching outstanding request (never trusted, never stored).
    get_acks_unsolicited,
    /// GET_ACKs saying "not found".
    get_acks_not_found,
    /// GET_ACKs verified and used.
    get_acks_valid,
    /// GET requests sent to peers (local gets, challenges).
    gets_sent,
    /// Local puts completed.
    local_puts,
    /// Local gets answered with a record.
    local_gets_found,
    /// Local gets that found nothing (every asked peer said so).
    local_gets_not_found,
    /// Local gets that hit their deadline.
    local_gets_timed_out,
    /// Local gets that held a copy but asked the peers for a newer version: this node is not
    /// among the FANOUT closest to the owner, so the owner's later PUTs do not reach it.
    local_gets_held_asked,
    /// Records evicted for space.
    records_evicted,
    /// Records removed by TTL.
    records_expired,
    /// Backup entries that could not be queued or written.
    backup_errors,
    /// Bytes of replies withheld by the amplification budget.
    amplification_withheld_bytes,
    /// Storage challenges sent (a GET for a record we sent to that peer).
    challenges_sent,
    /// Challenges answered with a verified record at least as new as the one we sent.
    challenges_succeeded,
    /// Challenges answered "not found".
    challenges_failed_not_found,
    /// Challenges answered with a record that failed verification.
    challenges_failed_invalid,
    /// Challenges answered with a valid record older than the one we sent.
    challenges_failed_stale,
    /// Challenges unanswered by their deadline.
    challenges_failed_timeout,
    /// Challenge outcomes dropped because the peer thread's channel was full.
    challenge_outcomes_dropped,
    /// Datagrams a receiver took from another receiver's socket (`Config::receiver_steal_batches`).
    datagrams_stolen,
    /// Receivers added to the spread because a socket's queue built up
    /// (`Config::receivers_on_demand`).
    receiver_scale_ups,
    /// Receivers taken out of the spread because the others had the slack.
    receiver_scale_downs,
    /// Datagrams the PUT lane's receiver read (`Config::put_lane`).
    put_lane_datagrams,
    /// Of `put_lane_datagrams`, those that came in runs the kernel coalesced
    /// (`Config::put_lane_gro`).
    put_lane_coalesced,
    /// Pauses of the PUT lane after a batch met a full owner queue: what arrives meanwhile
    /// waits in the kernel, which drops it if the lane's queue fills (`put_lane_kernel_drops`).
    put_lane_backoffs,
    /// Stored PUTs not re-propagated because their sender is judged unreliable.
    puts_not_forwarded_unreliable,
    /// Target picks (PUT forwards, GETs) that explored an unscored peer while scored ones were left.
    targets_explored,
    /// Replica-repair passes started (a change of the closest peers, or a republish).
    repair_passes_started,
    /// Of those, periodic republishes.
    republish_passes_started,
    /// Replica-repair passes completed.
    repair_passes_completed,
    /// PUT datagrams sent by replica repair and republish.
    repair_datagrams_sent,
    /// Bytes of those datagrams.
    repair_bytes_sent,
    /// Republish lookups the owners asked the peer thread for (`route::maintain`, with
    /// `route_lookups`).
    maintain_lookups_started,
    /// Due copies handled with a recent lookup answer instead of a new lookup.
    maintain_cache_hits,
    /// Due copies put off by the lookup pacer or its bounds (met again on a later walk).
    maintain_paced,
    /// Copies dropped because nobody re-stored them for `maintain_expire_after_ms` and the
    /// last lookup did not find this node among the closest.
    copies_aged_out,
}

/// Increments a counter by one.
#[inline(always)]
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds to a counter.
#[inline(always)]
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    /// All malformed datagrams, whatever the reason.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}
