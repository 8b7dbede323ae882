//! The pruner thread ("dave-pruner"): storage housekeeping that spans every shard.
//!
//! Expiry and eviction inside a shard are the owner's own decisions (its `ShardGroup` ticks
//! while it holds records); what no single owner can see is the node's whole live size, which
//! the backup writer needs to decide when to compact (`2 × live + floor`, see
//! `backup::writer`). Once per [`PRUNE_PERIOD`] the pruner sums the shards' published stores
//! and tells the writer. A node without a backup log has nothing for it to do, so its pruner
//! only waits for the shutdown message: an idle node's pruner never wakes.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::backup::BackupHandle;

use super::Shared;

/// How often the backup writer learns the live size. A second keeps the figure within a
/// second's worth of writes of the truth (the compaction bound's floor is ≥ 1 MiB, so a stale
/// figure delays a compaction by at most that), and costs 256 read-lock acquisitions a second.
pub(super) const PRUNE_PERIOD: Duration = Duration::from_secs(1);

/// Runs until `shutdown` delivers a message or is disconnected (the node is dropping).
pub(super) fn pruner_loop(
    shared: Arc<Shared>,
    backup: Option<BackupHandle>,
    shutdown: Receiver<()>,
) {
    let Some(backup) = backup else {
        let _ = shutdown.recv();
        return;
    };
    loop {
        match shutdown.recv_timeout(PRUNE_PERIOD) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let (mut records, mut dat_bytes) = (0u64, 0u64);
        for store in &shared.stores {
            let store = store.read();
            records += store.len() as u64;
            dat_bytes += store.dat_bytes() as u64;
        }
        // v2 records have entries of the same framing (`put_entry_len` of their length).
        for store in &shared.stores2 {
            let store = store.read();
            records += store.len() as u64;
            dat_bytes += store.dat_bytes() as u64;
        }
        backup.set_live(records, dat_bytes);
    }
}
