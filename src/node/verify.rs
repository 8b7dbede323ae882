//! The PUT verification stage (`dave-verify-N`, `Config::put_verify_stage`, off by default):
//! threads between the receivers and the shard owners that screen network PUTs in batches drawn
//! from every shard.
//!
//! Measured (perf/README, "A PUT verification stage"): at twice the verification rate the stage
//! stores 0.80x what the owners store by themselves, because an overloaded owner's queue already
//! holds a long batch and the stage adds a hop and an owner wake-up per PUT. Kept as an option
//! for loads where owners see PUTs one at a time and CPU per PUT matters more than the peak.
//!
//! Why it was tried: signatures verify 1.8x cheaper in batches, but a PUT goes to one of 256
//! owners by its shard, and the guess was that an owner rarely finds two PUTs queued and
//! verifies each alone (issue 14 measured stored PUTs at 0.32 of the batched verification rate). One stage thread per core
//! takes whatever PUTs are queued, of any shard, up to [`VERIFY_BATCH`], runs the same screening
//! the owners run (`shard::core::screen_puts`: replace rules against the shard's read view, work,
//! refused-signature cache, then the signatures), and hands the PUTs that passed to their
//! owners, which store and forward them without verifying again.
//!
//! A thin driver: the decision is `screen_puts`; this file owns the threads, the queue and the
//! handoff. Each thread keeps its own refused-signature cache ([`STAGE_REFUSED_SLOTS`]), so a
//! replayed bad record costs at most one verification per stage thread (the receivers' early
//! drop of replays reads the owners' caches, which the stage does not fill).

use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::shard::core::{Record, screen_puts};
use crate::shard::refused::{REFUSED_SLOTS, RefusedCache};
use crate::shard::store::Refusal;
use crate::shard::{SHARD_COUNT, shard_index};
use crate::stats::Counters;
use crate::time::unix_now_ms;

use super::Shared;
use super::handoff::{OwnerMsg, try_send};

/// PUTs a stage thread screens at once: the longest batch `pow::verify` checks in one call, and
/// at ~22 µs per batched signature about 1.4 ms of work, so a PUT waits at most that long
/// behind the others of its batch.
pub(super) const VERIFY_BATCH: usize = 64;

/// Depth of the stage's queue (shared by its threads). At the batched rate of one core
/// (~45 k PUTs/s) 2,048 queued PUTs are ~45 ms of work: enough to ride out a burst, short enough
/// that a PUT is never stored long after it arrived; beyond it the receivers drop and count
/// (`verify_channel_full`) before copying the datagram.
pub(super) const VERIFY_QUEUE_DEPTH: usize = 2048;

/// Refused-signature slots per stage thread: the same node-wide coverage as the owners' caches
/// (256 slots for each of the 256 shards), 1 MiB.
const STAGE_REFUSED_SLOTS: usize = REFUSED_SLOTS * SHARD_COUNT;

/// Messages to the stage.
pub(super) enum VerifyMsg {
    /// A PUT from the network, parsed and copied, not yet checked.
    Put { from: SocketAddr, dat: Record },
    /// Stop (one per stage thread).
    Shutdown,
}

pub(super) fn verify_loop(shared: Arc<Shared>, rx: Receiver<VerifyMsg>, counters: Arc<Counters>) {
    let mut refused = RefusedCache::keyed(STAGE_REFUSED_SLOTS, rand::random());
    let mut batch: Vec<(SocketAddr, Record)> = Vec::with_capacity(VERIFY_BATCH);
    let mut restored: Vec<([u8; 32], Box<[u8]>)> = Vec::new();
    let owner_count = shared.config.shard_owner_threads;
    loop {
        let Ok(first) = rx.recv() else {
            return;
        };
        // Each thread takes exactly one `Shutdown` (it stops draining there), so every thread
        // gets its own.
        let mut next = Some(first);
        let mut stop = false;
        while let Some(msg) = next.take() {
            match msg {
                VerifyMsg::Put { from, dat } => batch.push((from, dat)),
                VerifyMsg::Shutdown => {
                    stop = true;
                    break;
                }
            }
            if batch.len() < VERIFY_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let mut permit = shared.verify_permits.acquire();
            screen_puts(
                unix_now_ms(),
                &mut batch,
                |dat| {
                    let shard = shard_index(dat.pubkey(), dat.key());
                    let checked = shared.stores[shard].read().precheck(&dat.as_view());
                    if checked == Err(Refusal::Duplicate) {
                        restored.push((*dat.pubkey(), dat.key().into()));
                    }
                    checked
                },
                &mut refused,
                &mut permit,
                &shared.rules,
                &counters,
            );
        }
        // A duplicate restarts its copy's clock on the owner (`route::maintain`).
        for (pubkey, key) in restored.drain(..) {
            let owner = shard_index(&pubkey, &key) % owner_count;
            let msg = OwnerMsg::Restored { pubkey, key };
            try_send(&shared.owners[owner], msg, &counters.shard_channel_full);
        }
        for (from, dat) in batch.drain(..) {
            let owner = shard_index(dat.pubkey(), dat.key()) % owner_count;
            let msg = OwnerMsg::ScreenedPut { from, dat };
            try_send(&shared.owners[owner], msg, &counters.shard_channel_full);
        }
        if stop {
            return;
        }
    }
}
