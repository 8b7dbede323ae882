//! Recovery: open (or create) a log, replay its entries in order to the caller, skip and count
//! corrupt regions, truncate a torn tail, and remove a compaction's leftover temp file.
//!
//! Trust: a PUT entry's dat was verified (work and signature) before the node stored it, and the
//! log's per-file-seeded checksum proves the bytes are the ones this node wrote, so by default
//! recovery does not re-verify signatures (about 0.1 µs of CPU per record instead of 25 µs, see
//! `perf/README.md`). Set
//! [`RecoverOptions::verify`] to re-verify anyway, e.g. for a log copied from another machine.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::BackupError;
use super::format::{EntryRef, HEADER_LEN, Header, HeaderError};
use super::path::{open_regular, resolve_log_path};
use super::scan::{ScanCounts, Window, scan_entries};
use crate::pow::{KeyCache, SignatureCheck, check_work, verify_signatures};
use crate::wire::Dat;
use crate::wire::record2::{Dat2, Record2};

/// A tombstone: the record (pubkey, key) was evicted or expired at this version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tombstone {
    /// Owner public key.
    pub pubkey: [u8; 32],
    /// Time of the removed version, Unix ms.
    pub time_ms: i64,
    /// The key (at most 255 bytes).
    pub key: Box<[u8]>,
}

impl Tombstone {
    /// The tombstone for removing this version of a record.
    pub fn of<T: AsRef<[u8]>>(dat: &Dat<T>) -> Tombstone {
        Tombstone {
            pubkey: *dat.pubkey(),
            time_ms: dat.time_ms(),
            key: dat.key().into(),
        }
    }

    /// The replay rule: a tombstone removes the held record of the same (pubkey, key) if the
    /// held version is not newer than the tombstone (`held.time_ms <= time_ms`). A later PUT in
    /// the log adds the record back.
    pub fn removes<T: AsRef<[u8]>>(&self, held: &Dat<T>) -> bool {
        held.pubkey() == &self.pubkey && held.key() == &*self.key && held.time_ms() <= self.time_ms
    }
}

/// A v2 tombstone: the v2 record (pubkey, key) was evicted or expired at this seq.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tombstone2 {
    /// Owner public key.
    pub pubkey: [u8; 32],
    /// Seq of the removed version.
    pub seq: u64,
    /// The key (at most 255 bytes).
    pub key: Box<[u8]>,
}

impl Tombstone2 {
    /// The tombstone for removing this version of a v2 record.
    pub fn of<T: AsRef<[u8]>>(dat: &Dat2<T>) -> Tombstone2 {
        Tombstone2 {
            pubkey: *dat.pubkey(),
            seq: dat.seq(),
            key: dat.key().into(),
        }
    }

    /// The replay rule: removes the held v2 record of the same (pubkey, key) if its seq is not
    /// higher than the tombstone's.
    pub fn removes<T: AsRef<[u8]>>(&self, held: &Dat2<T>) -> bool {
        held.pubkey() == &self.pubkey && held.key() == &*self.key && held.seq() <= self.seq
    }
}

/// One entry replayed from the log, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveredEntry {
    /// A stored record: insert it, or replace the held version if
    /// [`compare_versions`](crate::shard::route::compare_versions) says it is newer.
    Put(Dat<Box<[u8]>>),
    /// Remove the held record if [`Tombstone::removes`] says so.
    Delete(Tombstone),
    /// A stored v2 record: it replaces a held one of the same or a lower seq (log order).
    Put2(Record2),
    /// Remove the held v2 record if [`Tombstone2::removes`] says so.
    Delete2(Tombstone2),
}

/// Re-verification of records during recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOnLoad {
    /// Least proof-of-work, in leading zero bits.
    pub min_work_bits: u32,
    /// The current time, Unix ms (records from the future are refused).
    pub now_ms: i64,
}

/// How to recover.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoverOptions {
    /// `None` (default): trust the checksummed log. `Some`: re-verify work and signature of every
    /// PUT (batched Ed25519); failures are counted and not replayed.
    pub verify: Option<VerifyOnLoad>,
}

/// What recovery found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Entries passed to the caller (PUTs + DELETEs).
    pub entries_replayed: u64,
    /// PUT entries passed to the caller.
    pub puts_replayed: u64,
    /// DELETE entries passed to the caller.
    pub deletes_replayed: u64,
    /// Corrupt regions in the middle of the log (bad length or checksum), skipped.
    pub corrupt_regions_skipped: u64,
    /// Bytes in those regions.
    pub corrupt_bytes_skipped: u64,
    /// Intact entries of unknown type or malformed payload, skipped.
    pub invalid_entries_skipped: u64,
    /// PUTs that failed re-verification (only with [`RecoverOptions::verify`]).
    pub failed_verification: u64,
    /// Bytes of an incomplete or corrupt tail, truncated from the file.
    pub torn_tail_bytes_truncated: u64,
    /// A leftover compaction temp file was found and removed.
    pub stale_temp_removed: bool,
    /// The log did not exist or was empty, and a fresh one was created.
    pub created_fresh: bool,
    /// Log size after recovery, bytes.
    pub file_bytes: u64,
    /// Wall time of the whole recovery.
    pub duration: Duration,
}

/// The recovered log, ready for appending.
pub(crate) struct RecoveredLog {
    pub file: File,
    pub seed: u64,
    pub len_bytes: u64,
}

/// The path of a log's temp file (compaction output and fresh-log staging): `<log>.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The directory holding `path` (for fsyncing a rename).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs the directory holding `path`, making a rename or create inside it durable.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<(), BackupError> {
    let dir = parent_dir(path);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io("fsync directory", dir, e))
}

/// Creates an empty log at `path` (replacing any file there) atomically: header into the temp
/// file, fsync, rename, fsync the directory. A crash leaves either no log or a complete header.
pub(crate) fn create_log(path: &Path) -> Result<RecoveredLog, BackupError> {
    let tmp = temp_path(path);
    let header = Header {
        seed: rand::random::<u64>(),
    };
    let mut file = create_temp(&tmp).map_err(|e| BackupError::io("create", &tmp, e))?;
    // No stray temp file on failure: remove it before reporting.
    let staged = file
        .write_all(&header.emit())
        .and_then(|()| file.sync_all())
        .map_err(|e| BackupError::io("write header", &tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| BackupError::io("rename", &tmp, e)));
    if let Err(e) = staged {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent_dir(path)?;
    Ok(RecoveredLog {
        file,
        seed: header.seed,
        len_bytes: HEADER_LEN as u64,
    })
}

/// Creates `tmp` empty, for appending and reading, replacing a leftover file of that name.
pub(crate) fn create_temp(tmp: &Path) -> io::Result<File> {
    // Only a regular file of that name is ours to replace (`path.rs`).
    match fs::symlink_metadata(tmp) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a regular file",
            ));
        }
        _ => {}
    }
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(tmp)
}

/// Reads and checks the header of an open log.
pub(crate) fn read_header(
    file: &mut File,
    path: &Path,
    len_bytes: u64,
) -> Result<Header, BackupError> {
    let mut bytes = [0u8; HEADER_LEN];
    if len_bytes < HEADER_LEN as u64 {
        return Err(BackupError::TruncatedHeader {
            path: path.into(),
            len_bytes,
        });
    }
    file.read_exact(&mut bytes)
        .map_err(|e| BackupError::io("read header", path, e))?;
    Header::parse(&bytes).map_err(|e| match e {
        HeaderError::Truncated => BackupError::TruncatedHeader {
            path: path.into(),
            len_bytes,
        },
        other => BackupError::from_header(path, other),
    })
}

/// Refuses a non-empty file at `path` that is not a dave log, reading only its header: done
/// before the lock file is created next to it, so pointing a node at someone else's file leaves
/// no trace beside it.
pub(crate) fn check_existing_header(path: &Path) -> Result<(), BackupError> {
    let mut file = match open_regular(path, OpenOptions::new().read(true)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BackupError::io("open", path, e)),
    };
    let len_bytes = file
        .metadata()
        .map_err(|e| BackupError::io("stat", path, e))?
        .len();
    if len_bytes == 0 {
        return Ok(());
    }
    read_header(&mut file, path, len_bytes).map(|_| ())
}

/// Recovers the log at `path`, replaying every entry in order to `replay`.
///
/// Creates the log if it is missing or empty; removes a leftover `<path>.tmp`; truncates a torn
/// tail (and fsyncs). Corrupt bytes never make this fail: they are skipped and counted. It fails
/// only on I/O errors and on a header that is not a dave log's (a clear [`BackupError`]).
pub fn recover(
    path: &Path,
    options: &RecoverOptions,
    replay: impl FnMut(RecoveredEntry),
) -> Result<RecoveryReport, BackupError> {
    recover_log(path, options, replay).map(|(report, _)| report)
}

pub(crate) fn recover_log(
    path: &Path,
    options: &RecoverOptions,
    mut replay: impl FnMut(RecoveredEntry),
) -> Result<(RecoveryReport, RecoveredLog), BackupError> {
    let started = Instant::now();
    // Refuses a FIFO, device, directory or dangling symlink before touching anything, and
    // works on a symlink's target (see `path.rs`).
    let path = &resolve_log_path(path)?;
    let mut report = RecoveryReport::default();
    let tmp = temp_path(path);
    match fs::remove_file(&tmp) {
        Ok(()) => report.stale_temp_removed = true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(BackupError::io("remove stale temp", tmp, e)),
    }
    let opened = open_regular(path, OpenOptions::new().read(true).append(true));
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return fresh(path, report, started);
        }
        Err(e) => return Err(BackupError::io("open", path, e)),
    };
    let len_bytes = file
        .metadata()
        .map_err(|e| BackupError::io("stat", path, e))?
        .len();
    if len_bytes == 0 {
        return fresh(path, report, started);
    }
    let header = read_header(&mut file, path, len_bytes)?;

    let mut counts = ScanCounts::default();
    let mut verifier = options.verify.map(Verifier::new);
    let end = {
        let mut window = Window::new(&file, HEADER_LEN as u64);
        let report = &mut report;
        let replay = &mut replay;
        let verifier = &mut verifier;
        scan_entries(&mut window, header.seed, &mut counts, |_, entry, _| {
            match entry {
                EntryRef::Put(dat) => match verifier {
                    Some(v) => v.push(dat.to_boxed(), report, replay),
                    None => {
                        report.puts_replayed += 1;
                        replay(RecoveredEntry::Put(dat.to_boxed()));
                    }
                },
                EntryRef::Put2(dat) => {
                    if let Some(v) = verifier {
                        v.flush(report, replay);
                    }
                    let valid = verifier.as_ref().is_none_or(|v| {
                        crate::pow::verify_dat2(&dat, v.options.min_work_bits, v.options.now_ms)
                            .is_ok()
                    });
                    if valid {
                        report.puts_replayed += 1;
                        replay(RecoveredEntry::Put2(dat.to_boxed()));
                    } else {
                        report.failed_verification += 1;
                    }
                }
                EntryRef::Delete2 { pubkey, seq, key } => {
                    let tombstone = Tombstone2 {
                        pubkey: *pubkey,
                        seq,
                        key: key.into(),
                    };
                    replay_delete(verifier, report, replay, RecoveredEntry::Delete2(tombstone));
                }
                EntryRef::Delete {
                    pubkey,
                    time_ms,
                    key,
                } => {
                    let tombstone = Tombstone {
                        pubkey: *pubkey,
                        time_ms,
                        key: key.into(),
                    };
                    replay_delete(verifier, report, replay, RecoveredEntry::Delete(tombstone));
                }
            }
            Ok(())
        })
        .map_err(|e| BackupError::io("read", path, e))?
    };
    if let Some(v) = &mut verifier {
        v.flush(&mut report, &mut replay);
    }
    if end.tail_bytes > 0 {
        file.set_len(end.valid_end)
            .and_then(|()| file.sync_all())
            .map_err(|e| BackupError::io("truncate torn tail", path, e))?;
    }
    report.entries_replayed = report.puts_replayed + report.deletes_replayed;
    report.corrupt_regions_skipped = counts.corrupt_regions;
    report.corrupt_bytes_skipped = counts.corrupt_bytes;
    report.invalid_entries_skipped = counts.invalid_entries;
    report.torn_tail_bytes_truncated = end.tail_bytes;
    report.file_bytes = end.valid_end;
    report.duration = started.elapsed();
    Ok((
        report,
        RecoveredLog {
            file,
            seed: header.seed,
            len_bytes: end.valid_end,
        },
    ))
}

/// Replays a DELETE entry (v1 or v2), after the PUTs of the pending verification round so that
/// replay keeps log order.
fn replay_delete(
    verifier: &mut Option<Verifier>,
    report: &mut RecoveryReport,
    replay: &mut impl FnMut(RecoveredEntry),
    delete: RecoveredEntry,
) {
    if let Some(v) = verifier {
        v.flush(report, replay);
    }
    report.deletes_replayed += 1;
    replay(delete);
}

fn fresh(
    path: &Path,
    mut report: RecoveryReport,
    started: Instant,
) -> Result<(RecoveryReport, RecoveredLog), BackupError> {
    let log = create_log(path)?;
    report.created_fresh = true;
    report.file_bytes = log.len_bytes;
    report.duration = started.elapsed();
    Ok((report, log))
}

/// PUTs gathered before a verification round. 4096 dats are at most 5.8 MB (4096 × 1421 B), and
/// split over the verifier threads each gets hundreds of signatures, so the scoped threads' start
/// (~20 µs) is under 0.1% of the round. A round is flushed before every DELETE so replay order
/// is kept.
const VERIFY_ROUND: usize = 4096;

/// Most threads a verification round uses: recovery runs before the node serves, so it may use
/// the machine, but beyond 8 the round is too short to split usefully.
const MAX_VERIFY_THREADS: usize = 8;

/// Key-cache slots of one verifier thread's share of a round (at most 4096 dats): 256 × 200 B,
/// enough for the owners of a round when a few write most of the records.
const RECOVER_KEY_SLOTS: usize = 256;

struct Verifier {
    options: VerifyOnLoad,
    pending: Vec<Dat<Box<[u8]>>>,
    ok: Vec<bool>,
    threads: usize,
}

impl Verifier {
    fn new(options: VerifyOnLoad) -> Verifier {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_VERIFY_THREADS);
        Verifier {
            options,
            pending: Vec::with_capacity(VERIFY_ROUND),
            ok: vec![false; VERIFY_ROUND],
            threads,
        }
    }

    fn push(
        &mut self,
        dat: Dat<Box<[u8]>>,
        report: &mut RecoveryReport,
        replay: &mut impl FnMut(RecoveredEntry),
    ) {
        self.pending.push(dat);
        if self.pending.len() == VERIFY_ROUND {
            self.flush(report, replay);
        }
    }

    /// Verifies the pending PUTs on up to `threads` threads, then replays the good ones in order.
    fn flush(&mut self, report: &mut RecoveryReport, replay: &mut impl FnMut(RecoveredEntry)) {
        let count = self.pending.len();
        if count == 0 {
            return;
        }
        let options = self.options;
        let chunk = count.div_ceil(self.threads);
        let results = &mut self.ok[..count];
        std::thread::scope(|scope| {
            for (dats, ok) in self.pending.chunks(chunk).zip(results.chunks_mut(chunk)) {
                scope.spawn(move || verify_chunk(dats, ok, options));
            }
        });
        for (dat, &ok) in self.pending.drain(..).zip(self.ok.iter()) {
            if ok {
                report.puts_replayed += 1;
                replay(RecoveredEntry::Put(dat));
            } else {
                report.failed_verification += 1;
            }
        }
    }
}

/// Work checks, then batched signature checks of those that passed; `ok[i]` tells `dats[i]`.
fn verify_chunk(dats: &[Dat<Box<[u8]>>], ok: &mut [bool], options: VerifyOnLoad) {
    let mut passed = Vec::with_capacity(dats.len());
    let mut index = Vec::with_capacity(dats.len());
    for (i, dat) in dats.iter().enumerate() {
        ok[i] = false;
        if check_work(dat, options.min_work_bits, options.now_ms).is_ok() {
            passed.push(dat.as_view());
            index.push(i);
        }
    }
    let mut signed = vec![false; passed.len()];
    let mut keys = KeyCache::new(RECOVER_KEY_SLOTS, rand::random());
    verify_signatures(&passed, SignatureCheck::Batch, &mut signed, &mut keys);
    for (i, good) in index.into_iter().zip(signed) {
        ok[i] = good;
    }
}

/// Removes a temp file when dropped, unless [`TempGuard::keep`] was called: no stray `.tmp` is
/// left behind by an error half-way through writing it.
pub(crate) struct TempGuard<'p>(Option<&'p Path>);

impl<'p> TempGuard<'p> {
    pub(crate) fn new(path: &'p Path) -> TempGuard<'p> {
        TempGuard(Some(path))
    }

    /// The temp file is complete: leave it.
    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = fs::remove_file(path);
        }
    }
}
