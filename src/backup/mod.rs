//! The crash-safe backup log of stored records: format, writer thread, recovery, compaction, and
//! import of the Go reference's backup files.
//!
//! Shard owners append a PUT entry for every record they store and a DELETE tombstone for every
//! record they evict or expire; on start the node replays the log into its shards, which apply
//! the same rules as for network PUTs ([`compare_versions`](crate::shard::route::compare_versions))
//! and remove records per [`Tombstone::removes`], so superseded and evicted records stay gone.
//!
//! # Byte layout (all integers little-endian)
//!
//! ```text
//! file    = header ‖ entry*
//!
//! header  (24 bytes)
//!   0   8  magic        "dave-log"
//!   8   2  version      u16 = 2 (1 and 2 are read; version 1 has no type 3 or 4 entries)
//!  10   2  flags        u16 = 0 (a reader refuses unknown bits)
//!  12   8  seed         u64, random per file: the seed of every entry checksum in this file
//!  20   4  check        u32 = low 32 bits of xxh64(header[0..20], seed 0)
//!
//! entry   (12 + len bytes)
//!   0   4  len          u32 = 1 + payload length; 42 ≤ len ≤ 1422
//!   4   8  checksum     u64 = xxh64(type ‖ payload, seed from the header)
//!  12   1  type         1 = PUT, 2 = DELETE, 3 = PUT2, 4 = DELETE2 (3 and 4: version 2)
//!  13   …  payload
//!
//! PUT payload    = the dat's wire bytes, exactly (155 + K + V):
//!                  time i64 ‖ salt[16] ‖ work[32] ‖ sig[64] ‖ pubkey[32] ‖ K u8 ‖ key ‖ V u16 ‖ value
//! DELETE payload = pubkey[32] ‖ time_ms i64 ‖ K u8 ‖ key              (41 + K)
//!                  removes the held (pubkey, key) if held.time_ms ≤ time_ms
//! PUT2 payload   = the dat2's wire bytes, exactly (163 + K + V), see `src/wire/record2.rs`
//! DELETE2 payload = pubkey[32] ‖ seq u64 ‖ K u8 ‖ key                 (41 + K)
//!                  removes the held v2 (pubkey, key) if held.seq ≤ seq
//! ```
//!
//! v2 entries replay in log order: a later PUT2 replaces an earlier one of the same or a lower
//! seq (the log records this node's own decisions, commits included). Compaction applies the
//! same rule and keeps only the live PUT2 of each (owner, key), in log order among the v1 ones.
//!
//! ```text
//! ```
//!
//! The length bound (42..=1422, from the smallest tombstone and the largest dat) rejects almost
//! every misaligned offset without hashing, which keeps resynchronisation cheap. The per-file
//! random seed means bytes inside a record's value, which network users choose, cannot be crafted
//! into an entry that validates after a corruption makes the scanner resynchronise.
//!
//! # Recovery
//!
//! [`recover`] (or [`BackupWriter::open`], which recovers then starts the writer) replays entries
//! in order. A frame whose length or checksum fails starts a corrupt region: the scanner moves
//! one byte at a time until a frame validates, counts the region and goes on. If nothing
//! validates before the end, the region is a torn tail: it is truncated (and the truncation
//! fsynced) so new entries follow the last good one. A missing or empty file starts a fresh log;
//! a header that is not a dave log's is a clear [`BackupError`], never a silent overwrite.
//! Records are trusted on load (the log is our own and checksummed); [`RecoverOptions::verify`]
//! re-verifies work and signatures.
//!
//! # Durability
//!
//! See [`SyncPolicy`] for what each policy can lose on a process crash and on power loss, and
//! `compact.rs` for the crash analysis of compaction.

mod compact;
mod error;
mod format;
mod import;
mod inspect;
mod path;
mod recover;
mod scan;
mod writer;

pub use compact::{CompactReport, StagedCompaction, compact_log, stage_compaction};
pub use error::BackupError;
pub use format::{
    ENTRY_HEADER_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_BODY_LEN, MAX_ENTRY_LEN, MIN_BODY_LEN,
    MIN_READ_VERSION, PUT_OVERHEAD_LEN, TYPE_DELETE, TYPE_DELETE2, TYPE_PUT, TYPE_PUT2,
    put_entry_len,
};
pub use import::{
    ImportOptions, ImportReport, REFERENCE_PREFIX_LEN, REFERENCE_REWRITE_PREFIX, import_reference,
};
pub use inspect::{
    DamagedRegion, LogRecord, LogSummary, MAX_LISTED_DAMAGED_REGIONS, read_live_records,
};
pub use path::{lock_log, lock_path, resolve_log_path};
pub use recover::{
    RecoverOptions, RecoveredEntry, RecoveryReport, Tombstone, Tombstone2, VerifyOnLoad, recover,
    temp_path,
};
pub use writer::{
    BackupConfig, BackupHandle, BackupStats, BackupWriter, DEFAULT_CHANNEL_CAPACITY_ENTRIES,
    DEFAULT_COMPACT_MIN_FILE_BYTES, DEFAULT_COMPACT_RATIO, DEFAULT_SYNC_INTERVAL_MS,
    MAX_BATCH_BYTES, SyncPolicy,
};
