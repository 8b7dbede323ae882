//! The backup writer: one thread, "dave-backup", owns the log file; shard owners hand it entries
//! through a bounded channel via cloneable [`BackupHandle`]s.
//!
//! Loop: block for the first command, then drain whatever else is queued (up to
//! [`MAX_BATCH_BYTES`]) into one buffer, `write` it with one syscall, and sync per the
//! [`SyncPolicy`] — group commit: one `write` and at most one `fdatasync` per batch, however many
//! shard threads appended. Acknowledgements go out after the `write` returned (and, under
//! `EveryWrite`, after the `fdatasync`). Compaction runs on a helper thread,
//! "dave-backup-compact", while this thread keeps appending; the switch-over happens here.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, never, select};

use super::compact::{CompactReport, StagedCompaction, stage_until};
use super::error::BackupError;
use super::format::{
    HEADER_LEN, MAX_ENTRY_LEN, PUT_OVERHEAD_LEN, TYPE_DELETE, TYPE_DELETE2, TYPE_PUT, TYPE_PUT2,
    encode_entry, tombstone_payload,
};
use super::path::{lock_log, resolve_log_path};
use super::recover::{
    RecoverOptions, RecoveredEntry, RecoveredLog, RecoveryReport, check_existing_header,
    recover_log,
};
use crate::wire::Dat;

/// When the writer makes appended entries durable with `fdatasync`.
///
/// What each can lose ("acknowledged" = an `append_*_acked` call returned `Ok`; plain
/// `append_*` calls are only queued, see [`BackupHandle::append_put`]):
///
/// | policy | process crash (SIGKILL, panic, OOM) | power loss / kernel crash |
/// |---|---|---|
/// | `EveryWrite` | nothing acknowledged | nothing acknowledged |
/// | `EveryMs(n)` | nothing acknowledged | acknowledged entries written in the last `n` ms (plus the time one batch takes) |
/// | `Never` | nothing acknowledged | whatever the kernel had not yet written back (Linux: typically up to 30 s) |
///
/// A process crash loses nothing acknowledged under any policy because an acknowledgement is
/// sent only after `write` returned, so the bytes are in the kernel's page cache, which outlives
/// the process. Entries still in the channel (queued but not acknowledged) are lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fdatasync` after every batch, before acknowledging it.
    EveryWrite,
    /// Acknowledge after `write`; `fdatasync` once the oldest unsynced write is this many ms old.
    EveryMs(u64),
    /// Acknowledge after `write`; never `fdatasync` except at shutdown and compaction.
    Never,
}

impl Default for SyncPolicy {
    /// `EveryMs(50)`: group commit that bounds power-loss exposure to 50 ms while costing at most
    /// 20 `fdatasync`s a second.
    fn default() -> SyncPolicy {
        SyncPolicy::EveryMs(DEFAULT_SYNC_INTERVAL_MS)
    }
}

/// Default group-commit interval.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 50;

/// Default channel capacity. 4096 entries is at most 5.8 MB of queued dats (4096 × 1421 B) and,
/// at 200 000 puts/s, 20 ms of appends: enough to ride out one slow `fdatasync` without blocking
/// shard owners, small enough that a process crash loses little that was merely queued.
pub const DEFAULT_CHANNEL_CAPACITY_ENTRIES: usize = 4096;

/// Default floor for automatic compaction: a log is never compacted for being less than 64 MiB
/// over `2 × live`, because such a log replays in well under 0.5 s, so rewriting it would cost
/// more than it saves.
pub const DEFAULT_COMPACT_MIN_FILE_BYTES: u64 = 64 << 20;

/// Default ratio: compact once the file is more than this many times the live log size.
pub const DEFAULT_COMPACT_RATIO: u64 = 2;

/// Most bytes gathered into one `write`. 1 MiB keeps the writer's buffer bounded while letting a
/// full channel of typical 300-byte records (4096 × 300 B) go out in about one syscall.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// How long the idle writer waits for a command: for ever (`Duration::MAX` makes crossbeam block
/// without a deadline). It wakes on a command or when every handle is gone, never on a timer;
/// the compaction trigger is checked after every wake-up, and a `set_live` that changes the
/// live size wakes it.
const IDLE_WAIT: Duration = Duration::MAX;

/// Marker for "the node has not reported its live size": no automatic compaction.
const LIVE_UNKNOWN: u64 = u64::MAX;

/// Backup configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// The log file. Its directory also holds `<name>.tmp` during compaction.
    pub path: PathBuf,
    /// Default [`SyncPolicy::EveryMs`]`(50)`.
    pub sync_policy: SyncPolicy,
    /// Bound of the handle → writer channel. Default [`DEFAULT_CHANNEL_CAPACITY_ENTRIES`].
    pub channel_capacity_entries: usize,
    /// The fixed floor of the automatic compaction bound (see `automatic_compaction_due`): the
    /// log is compacted once it exceeds `compact_ratio × live + compact_min_file_bytes` and has
    /// grown this much since the last compaction. Default 64 MiB.
    pub compact_min_file_bytes: u64,
    /// The ratio of that bound to the live size reported by [`BackupHandle::set_live`].
    /// Default 2.
    pub compact_ratio: u64,
    /// How recovery treats the log on open. Default: trust the checksums.
    pub recover: RecoverOptions,
}

impl BackupConfig {
    /// Defaults for a log at `path`.
    pub fn new(path: impl Into<PathBuf>) -> BackupConfig {
        BackupConfig {
            path: path.into(),
            sync_policy: SyncPolicy::default(),
            channel_capacity_entries: DEFAULT_CHANNEL_CAPACITY_ENTRIES,
            compact_min_file_bytes: DEFAULT_COMPACT_MIN_FILE_BYTES,
            compact_ratio: DEFAULT_COMPACT_RATIO,
            recover: RecoverOptions::default(),
        }
    }
}

/// Counters of the writer, readable from any handle.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupStats {
    /// Entries written to the file.
    pub entries_written: u64,
    /// Bytes written to the file (entries, not compaction output).
    pub bytes_written: u64,
    /// `write` calls (group-commit batches).
    pub batches: u64,
    /// `fdatasync`/`fsync` calls on the log.
    pub syncs: u64,
    /// Compactions installed.
    pub compactions: u64,
    /// Compactions that failed (the old log stays in use).
    pub compaction_failures: u64,
    /// Entries lost to a write or sync error (their appenders, if waiting, got the error).
    pub entries_failed: u64,
    /// Current log size, bytes.
    pub file_bytes: u64,
    /// The writer stopped after an fsync error.
    pub failed: bool,
}

#[derive(Default)]
struct Shared {
    live_log_bytes: AtomicU64,
    entries_written: AtomicU64,
    bytes_written: AtomicU64,
    batches: AtomicU64,
    syncs: AtomicU64,
    compactions: AtomicU64,
    compaction_failures: AtomicU64,
    entries_failed: AtomicU64,
    file_bytes: AtomicU64,
    failed: AtomicBool,
}

type Ack = Sender<Result<(), BackupError>>;

enum Command {
    Append {
        entry_type: u8,
        payload: Box<[u8]>,
        ack: Option<Ack>,
    },
    Sync(Ack),
    Compact(Sender<Result<CompactReport, BackupError>>),
    /// The live size changed: re-check the automatic compaction trigger.
    LiveChanged,
    Shutdown,
}

/// A cloneable handle to the writer thread. All methods are thread-safe.
#[derive(Clone)]
pub struct BackupHandle {
    tx: Sender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BackupHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl BackupHandle {
    /// Queues a PUT of `dat`. Returns once queued (blocking while the channel is full); the entry
    /// is written at the writer's next batch. Not acknowledged: a process crash before that
    /// batch loses it. Write errors are counted in [`BackupStats::entries_failed`].
    pub fn append_put<T: AsRef<[u8]>>(&self, dat: &Dat<T>) -> Result<(), BackupError> {
        self.send(TYPE_PUT, dat.as_bytes().into(), None)
    }

    /// [`append_put`](Self::append_put) of a record the caller owns and gives up: its bytes
    /// become the entry's payload without a copy.
    pub fn append_put_owned(&self, dat: Dat<Box<[u8]>>) -> Result<(), BackupError> {
        self.send(TYPE_PUT, dat.into_inner(), None)
    }

    /// Queues a PUT without blocking: [`BackupError::Full`] if the channel is full.
    pub fn try_append_put<T: AsRef<[u8]>>(&self, dat: &Dat<T>) -> Result<(), BackupError> {
        let command = Command::Append {
            entry_type: TYPE_PUT,
            payload: dat.as_bytes().into(),
            ack: None,
        };
        self.tx.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => BackupError::Full,
            TrySendError::Disconnected(_) => BackupError::Closed,
        })
    }

    /// Appends a PUT and waits for its acknowledgement: written (`EveryMs`, `Never`) or written
    /// and fsynced (`EveryWrite`). See [`SyncPolicy`] for what an acknowledgement survives.
    pub fn append_put_acked<T: AsRef<[u8]>>(&self, dat: &Dat<T>) -> Result<(), BackupError> {
        self.send_acked(TYPE_PUT, dat.as_bytes().into())
    }

    /// Queues a tombstone for (pubkey, key) at version `time_ms` (the removed record's time).
    pub fn append_delete(
        &self,
        pubkey: &[u8; 32],
        key: &[u8],
        time_ms: i64,
    ) -> Result<(), BackupError> {
        self.send(TYPE_DELETE, tombstone(pubkey, key, time_ms)?, None)
    }

    /// Appends a tombstone and waits for its acknowledgement.
    pub fn append_delete_acked(
        &self,
        pubkey: &[u8; 32],
        key: &[u8],
        time_ms: i64,
    ) -> Result<(), BackupError> {
        self.send_acked(TYPE_DELETE, tombstone(pubkey, key, time_ms)?)
    }

    /// Queues a PUT2 (a v2 record), like [`BackupHandle::append_put`].
    pub fn append_put2<T: AsRef<[u8]>>(
        &self,
        dat: &crate::wire::record2::Dat2<T>,
    ) -> Result<(), BackupError> {
        self.send(TYPE_PUT2, dat.as_bytes().into(), None)
    }

    /// [`append_put2`](Self::append_put2) of a record the caller gives up, without a copy.
    pub fn append_put2_owned(&self, dat: crate::wire::record2::Record2) -> Result<(), BackupError> {
        self.send(TYPE_PUT2, dat.into_inner(), None)
    }

    /// Queues a v2 tombstone for (pubkey, key) at `seq` (the removed record's seq).
    pub fn append_delete2(
        &self,
        pubkey: &[u8; 32],
        key: &[u8],
        seq: u64,
    ) -> Result<(), BackupError> {
        // The v2 tombstone has the v1 layout with the seq's 8 bytes in place of the time's.
        let payload = tombstone(pubkey, key, i64::from_le_bytes(seq.to_le_bytes()))?;
        self.send(TYPE_DELETE2, payload, None)
    }

    /// Writes and fsyncs everything queued before this call; returns when durable.
    pub fn sync(&self) -> Result<(), BackupError> {
        let (ack, done) = bounded(1);
        self.tx
            .send(Command::Sync(ack))
            .map_err(|_| BackupError::Closed)?;
        done.recv().unwrap_or(Err(BackupError::Closed))
    }

    /// Compacts now (whatever the trigger says) and waits for the new log to be installed.
    /// Appends continue meanwhile.
    pub fn compact(&self) -> Result<CompactReport, BackupError> {
        let (reply, done) = bounded(1);
        self.tx
            .send(Command::Compact(reply))
            .map_err(|_| BackupError::Closed)?;
        done.recv().unwrap_or(Err(BackupError::Closed))
    }

    /// Tells the writer how much the node holds: `record_count` records of `dat_bytes` total dat
    /// bytes (a running node calls it from its pruner once a second). Automatic compaction
    /// starts when the file exceeds `compact_ratio` times the log size of exactly these records
    /// plus `compact_min_file_bytes` (see `automatic_compaction_due`). Cheap: one atomic swap,
    /// and a wake-up of the writer (so the trigger is checked even when no write follows) only
    /// when the figure changed, so an idle node's writer stays asleep.
    pub fn set_live(&self, record_count: u64, dat_bytes: u64) {
        let live = (HEADER_LEN as u64)
            .saturating_add(record_count.saturating_mul(PUT_OVERHEAD_LEN as u64))
            .saturating_add(dat_bytes)
            .min(LIVE_UNKNOWN - 1);
        let before = self.shared.live_log_bytes.swap(live, Ordering::Relaxed);
        if before != live {
            // A full channel means the writer is busy and re-checks after that batch anyway.
            let _ = self.tx.try_send(Command::LiveChanged);
        }
    }

    /// A snapshot of the writer's counters.
    pub fn stats(&self) -> BackupStats {
        let s = &self.shared;
        BackupStats {
            entries_written: s.entries_written.load(Ordering::Relaxed),
            bytes_written: s.bytes_written.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            syncs: s.syncs.load(Ordering::Relaxed),
            compactions: s.compactions.load(Ordering::Relaxed),
            compaction_failures: s.compaction_failures.load(Ordering::Relaxed),
            entries_failed: s.entries_failed.load(Ordering::Relaxed),
            file_bytes: s.file_bytes.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
        }
    }

    fn send(
        &self,
        entry_type: u8,
        payload: Box<[u8]>,
        ack: Option<Ack>,
    ) -> Result<(), BackupError> {
        self.tx
            .send(Command::Append {
                entry_type,
                payload,
                ack,
            })
            .map_err(|_| BackupError::Closed)
    }

    fn send_acked(&self, entry_type: u8, payload: Box<[u8]>) -> Result<(), BackupError> {
        let (ack, done) = bounded(1);
        self.send(entry_type, payload, Some(ack))?;
        done.recv().unwrap_or(Err(BackupError::Closed))
    }
}

fn tombstone(pubkey: &[u8; 32], key: &[u8], time_ms: i64) -> Result<Box<[u8]>, BackupError> {
    tombstone_payload(pubkey, key, time_ms).ok_or(BackupError::KeyTooLong { len: key.len() })
}

/// The writer thread's owner. Dropping it (or [`BackupWriter::shutdown`]) writes everything
/// queued before, fsyncs, and joins the thread; handles still alive then get
/// [`BackupError::Closed`].
pub struct BackupWriter {
    handle: BackupHandle,
    thread: Option<JoinHandle<()>>,
    /// The log's exclusive lock (`path.rs`), released after the writer thread is joined.
    lock: Option<File>,
}

impl std::fmt::Debug for BackupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupWriter")
            .field("handle", &self.handle)
            .finish()
    }
}

impl BackupWriter {
    /// Recovers the log (replaying every entry to `replay`, in order, on this thread), then
    /// starts the writer thread appending to it.
    pub fn open(
        config: BackupConfig,
        replay: impl FnMut(RecoveredEntry),
    ) -> Result<(BackupWriter, RecoveryReport), BackupError> {
        assert!(
            config.channel_capacity_entries > 0,
            "backup channel capacity must be > 0"
        );
        assert!(config.compact_ratio > 0, "backup compact ratio must be > 0");
        // Path rules and the one-node-per-log lock come before anything is read or written.
        let path = resolve_log_path(&config.path)?;
        check_existing_header(&path)?;
        let lock = lock_log(&path)?;
        let (report, log) = recover_log(&path, &config.recover, replay)?;
        let (tx, rx) = bounded(config.channel_capacity_entries);
        let shared = Arc::new(Shared {
            live_log_bytes: AtomicU64::new(LIVE_UNKNOWN),
            file_bytes: AtomicU64::new(log.len_bytes),
            ..Shared::default()
        });
        let mut state = Writer {
            path: path.clone(),
            policy: config.sync_policy,
            compact_min_file_bytes: config.compact_min_file_bytes,
            compact_ratio: config.compact_ratio,
            file: log.file,
            seed: log.seed,
            len_bytes: log.len_bytes,
            rx,
            shared: Arc::clone(&shared),
            batch: Vec::with_capacity(MAX_BATCH_BYTES + MAX_ENTRY_LEN),
            batch_entries: 0,
            acks: Vec::new(),
            sync_waiters: Vec::new(),
            unsynced_since: None,
            failed: false,
            compaction: None,
            compaction_waiters: Vec::new(),
            compact_floor_bytes: 0,
        };
        let thread = thread::Builder::new()
            .name("dave-backup".into())
            .spawn(move || state.run())
            .map_err(|e| BackupError::io("spawn writer thread", &path, e))?;
        Ok((
            BackupWriter {
                handle: BackupHandle { tx, shared },
                thread: Some(thread),
                lock: Some(lock),
            },
            report,
        ))
    }

    /// A new handle to the writer.
    pub fn handle(&self) -> BackupHandle {
        self.handle.clone()
    }

    /// Writes everything queued before this call, fsyncs, joins the thread, and returns the
    /// final counters.
    pub fn shutdown(mut self) -> BackupStats {
        self.stop();
        self.handle.stats()
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.handle.tx.send(Command::Shutdown);
            // A panic in the writer is a bug; it has been reported on stderr by the panic hook.
            let _ = thread.join();
        }
        // Unlocked only once nothing of ours writes to the log any more.
        self.lock = None;
    }
}

impl Drop for BackupWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The automatic compaction trigger. The log is compacted once it exceeds
///
/// ```text
/// compact_ratio × live + compact_min_file_bytes          (default: 2 × live + 64 MiB)
/// ```
///
/// where `live` is the log size of the records the node holds ([`BackupHandle::set_live`]),
/// and it has grown by at least `compact_min_file_bytes` since the last compaction (so a live
/// figure that is off cannot make compactions run back to back; each one rewrites at most
/// about `live` bytes for every `compact_min_file_bytes` appended). Between two compactions the
/// log therefore stays within that bound, plus what is appended while one runs, as long as the
/// previous compaction brought it to about its live size (it does unless the node's live figure
/// is stale). Unknown live size: never automatic.
pub(crate) fn automatic_compaction_due(
    len_bytes: u64,
    live_log_bytes: u64,
    compact_ratio: u64,
    compact_min_file_bytes: u64,
    last_compacted_bytes: u64,
) -> bool {
    live_log_bytes != LIVE_UNKNOWN
        && len_bytes
            > live_log_bytes
                .saturating_mul(compact_ratio)
                .saturating_add(compact_min_file_bytes)
        && len_bytes >= last_compacted_bytes.saturating_add(compact_min_file_bytes)
}

struct Compaction {
    result: Receiver<Result<StagedCompaction, BackupError>>,
    thread: JoinHandle<()>,
}

struct Writer {
    path: PathBuf,
    policy: SyncPolicy,
    compact_min_file_bytes: u64,
    compact_ratio: u64,
    file: File,
    seed: u64,
    len_bytes: u64,
    rx: Receiver<Command>,
    shared: Arc<Shared>,
    batch: Vec<u8>,
    batch_entries: u64,
    acks: Vec<Ack>,
    sync_waiters: Vec<Ack>,
    /// When the oldest write not yet fsynced happened.
    unsynced_since: Option<Instant>,
    failed: bool,
    compaction: Option<Compaction>,
    compaction_waiters: Vec<Sender<Result<CompactReport, BackupError>>>,
    /// What the last compaction left (or the size at its failure): no automatic compaction
    /// until `compact_min_file_bytes` more were appended.
    compact_floor_bytes: u64,
}

impl Writer {
    fn run(&mut self) {
        let mut shutdown = false;
        while !shutdown {
            let wait = self.wait();
            let compaction_rx = match &self.compaction {
                Some(c) => c.result.clone(),
                None => never(),
            };
            let mut finished = None;
            select! {
                recv(self.rx) -> command => match command {
                    Ok(command) => {
                        shutdown |= self.take(command);
                        while self.batch.len() < MAX_BATCH_BYTES && !shutdown {
                            match self.rx.try_recv() {
                                Ok(command) => shutdown |= self.take(command),
                                Err(_) => break,
                            }
                        }
                    }
                    // Every handle, the owner's included, is gone.
                    Err(_) => shutdown = true,
                },
                recv(compaction_rx) -> result => finished = Some(result),
                default(wait) => {}
            }
            self.commit(shutdown);
            if let Some(result) = finished {
                self.install(result.unwrap_or(Err(BackupError::Closed)));
            }
            if !shutdown {
                self.maybe_start_compaction();
            }
        }
        if let Some(compaction) = self.compaction.take() {
            let result = compaction.result.recv().unwrap_or(Err(BackupError::Closed));
            let _ = compaction.thread.join();
            self.compaction = None;
            self.install(result);
        }
        self.commit(true);
    }

    /// How long to wait for a command: until the group-commit deadline if writes are unsynced.
    fn wait(&self) -> Duration {
        match (self.policy, self.unsynced_since) {
            (SyncPolicy::EveryMs(interval_ms), Some(since)) => (since
                + Duration::from_millis(interval_ms))
            .saturating_duration_since(Instant::now()),
            _ => IDLE_WAIT,
        }
    }

    /// Adds a command to the batch; true on shutdown.
    fn take(&mut self, command: Command) -> bool {
        match command {
            Command::Append {
                entry_type,
                payload,
                ack,
            } => {
                encode_entry(&mut self.batch, entry_type, &payload, self.seed);
                self.batch_entries += 1;
                if let Some(ack) = ack {
                    self.acks.push(ack);
                }
            }
            Command::Sync(ack) => self.sync_waiters.push(ack),
            Command::Compact(reply) => {
                self.compaction_waiters.push(reply);
            }
            Command::LiveChanged => {}
            Command::Shutdown => return true,
        }
        false
    }

    /// Writes the batch, syncs per policy (or if `force_sync` or someone asked), acknowledges.
    fn commit(&mut self, force_sync: bool) {
        let mut error = None;
        if self.failed {
            error = Some(BackupError::WriterFailed);
        } else if !self.batch.is_empty() {
            match self.file.write_all(&self.batch) {
                Ok(()) => {
                    self.len_bytes += self.batch.len() as u64;
                    let s = &self.shared;
                    s.entries_written
                        .fetch_add(self.batch_entries, Ordering::Relaxed);
                    s.bytes_written
                        .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
                    s.batches.fetch_add(1, Ordering::Relaxed);
                    s.file_bytes.store(self.len_bytes, Ordering::Relaxed);
                    self.unsynced_since.get_or_insert_with(Instant::now);
                }
                Err(e) => {
                    // Cut off whatever part of the batch reached the file; if even that fails
                    // the file's end is unknown, so stop (recovery will truncate the torn tail).
                    if self.file.set_len(self.len_bytes).is_err() {
                        self.fail();
                    }
                    error = Some(BackupError::io("write", &self.path, e));
                }
            }
        }
        if error.is_some() {
            self.shared
                .entries_failed
                .fetch_add(self.batch_entries, Ordering::Relaxed);
        }
        self.batch.clear();
        self.batch_entries = 0;

        let due = match self.policy {
            SyncPolicy::EveryWrite => true,
            SyncPolicy::EveryMs(interval_ms) => self
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= Duration::from_millis(interval_ms)),
            SyncPolicy::Never => false,
        };
        let wanted = due || force_sync || !self.sync_waiters.is_empty();
        if !self.failed && wanted && self.unsynced_since.is_some() {
            match self.file.sync_data() {
                Ok(()) => {
                    self.unsynced_since = None;
                    self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.fail();
                    error.get_or_insert(BackupError::io("fdatasync", &self.path, e));
                }
            }
        }
        if self.failed && error.is_none() && !(self.acks.is_empty() && self.sync_waiters.is_empty())
        {
            error = Some(BackupError::WriterFailed);
        }
        for ack in self.acks.drain(..).chain(self.sync_waiters.drain(..)) {
            let _ = ack.send(match &error {
                None => Ok(()),
                Some(e) => Err(e.duplicate()),
            });
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        self.shared.failed.store(true, Ordering::Relaxed);
    }

    fn maybe_start_compaction(&mut self) {
        if self.compaction.is_some() {
            return;
        }
        if self.failed {
            if !self.compaction_waiters.is_empty() {
                self.finish_compaction(Err(BackupError::WriterFailed));
            }
            return;
        }
        let automatic = automatic_compaction_due(
            self.len_bytes,
            self.shared.live_log_bytes.load(Ordering::Relaxed),
            self.compact_ratio,
            self.compact_min_file_bytes,
            self.compact_floor_bytes,
        );
        if !automatic && self.compaction_waiters.is_empty() {
            return;
        }
        let path = self.path.clone();
        let snapshot_end = self.len_bytes;
        let (tx, rx) = bounded(1);
        let spawned = thread::Builder::new()
            .name("dave-backup-compact".into())
            .spawn(move || {
                let _ = tx.send(stage_until(&path, snapshot_end));
            });
        match spawned {
            Ok(thread) => {
                self.compaction = Some(Compaction { result: rx, thread });
            }
            Err(e) => {
                let error = BackupError::io("spawn compaction thread", &self.path, e);
                self.finish_compaction(Err(error));
            }
        }
    }

    /// Stages 2–4 of a finished compaction (see `compact.rs`), then switches to the new file.
    fn install(&mut self, staged: Result<StagedCompaction, BackupError>) {
        if let Some(compaction) = self.compaction.take() {
            let _ = compaction.thread.join();
        }
        let result = match staged {
            Ok(staged) if self.failed => {
                staged.discard();
                Err(BackupError::WriterFailed)
            }
            Ok(staged) => {
                let temp = staged.temp_path().to_path_buf();
                match staged.finish(self.len_bytes) {
                    Ok((report, log)) => {
                        self.switch_to(log);
                        Ok(report)
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&temp);
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        self.finish_compaction(result);
    }

    fn switch_to(&mut self, log: RecoveredLog) {
        self.file = log.file;
        self.seed = log.seed;
        self.len_bytes = log.len_bytes;
        // `finish` fsynced the new file: nothing is pending.
        self.unsynced_since = None;
        self.compact_floor_bytes = log.len_bytes;
        self.shared
            .file_bytes
            .store(log.len_bytes, Ordering::Relaxed);
        self.shared.compactions.fetch_add(1, Ordering::Relaxed);
    }

    fn finish_compaction(&mut self, result: Result<CompactReport, BackupError>) {
        if result.is_err() {
            self.shared
                .compaction_failures
                .fetch_add(1, Ordering::Relaxed);
            // Back off: no automatic retry until `compact_min_file_bytes` more are appended.
            self.compact_floor_bytes = self.len_bytes;
        }
        for reply in self.compaction_waiters.drain(..) {
            let _ = reply.send(match &result {
                Ok(report) => Ok(*report),
                Err(e) => Err(e.duplicate()),
            });
        }
    }
}
