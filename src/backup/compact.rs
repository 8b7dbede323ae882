//! Compaction: rewrite a log as just its live records, into `<log>.tmp`, then rename it over the
//! log.
//!
//! Steps and what a crash at each leaves behind:
//!
//! ```text
//! 1. stage: replay [header, snapshot_end) of the log into an index of survivors
//!    (PUT: keep if compare_versions says Newer than the held one; DELETE: Tombstone::removes),
//!    write them, in log order, to <log>.tmp under a fresh seed     crash: old log + stale tmp
//!    and fsync it (on the compaction thread)
//! 2. finish: copy entries appended since snapshot_end (re-sealed
//!    with the new seed), fsync the tmp file                         crash: old log + stale tmp
//! 3. rename tmp over the log                                        crash: old or new log, both
//!                                                                   complete and fsynced
//! 4. fsync the directory; only now does the writer append to or
//!    acknowledge anything in the new file                           crash: new log
//! ```
//!
//! Recovery removes a stale tmp file, so every crash point recovers to a readable log with the
//! same live set. Replaying the survivors and then the tail gives the same state as replaying the
//! whole old log, because the survivors replay to exactly the state the prefix replays to, and
//! tombstones whose record is gone are not needed to reach it.
//!
//! Memory: the index holds 12 bytes of location per live record (plus hash-map overhead), not the
//! records: identity and version comparisons re-read the held entry with `pread`, which hits the
//! page cache because the log was just read.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::BackupError;
use super::format::{EntryRef, HEADER_LEN, Header, decode_entry, encode_entry};
use super::recover::{
    RecoveredLog, TempGuard, Tombstone, create_temp, read_header, sync_parent_dir, temp_path,
};
use super::scan::{ScanCounts, WINDOW_BYTES, Window, scan_entries};
use crate::shard::route::{Version, compare_versions, record_hash};
use crate::wire::Dat;

/// What a compaction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactReport {
    /// Valid entries read from the log (snapshot and tail).
    pub entries_read: u64,
    /// Entries in the compacted log: survivors of the snapshot plus the copied tail.
    pub entries_written: u64,
    /// Entries appended by the writer while the snapshot was being compacted, copied as they are.
    pub tail_entries_copied: u64,
    /// Corrupt regions skipped while reading.
    pub corrupt_regions_skipped: u64,
    /// Log size before, bytes.
    pub bytes_before: u64,
    /// Log size after, bytes.
    pub bytes_after: u64,
    /// Wall time from the start of staging to the directory fsync.
    pub duration: Duration,
}

/// Location of the winning PUT entry of one (pubkey, key).
#[derive(Debug, Clone, Copy)]
struct Held {
    offset: u64,
    len_bytes: u32,
}

/// The survivors of a replay, by record hash. Two identities with the same 64-bit hash are
/// possible, so the second goes to `overflow` (almost always empty); identity is always checked
/// against the full (pubkey, key) re-read from the log.
struct Survivors<'f> {
    log: &'f File,
    seed: u64,
    primary: HashMap<u64, Held>,
    overflow: Vec<(u64, Held)>,
    read_buffer: Vec<u8>,
}

enum Slot {
    Primary,
    Overflow(usize),
}

impl<'f> Survivors<'f> {
    fn new(log: &'f File, seed: u64) -> Survivors<'f> {
        Survivors {
            log,
            seed,
            primary: HashMap::new(),
            overflow: Vec::new(),
            read_buffer: Vec::new(),
        }
    }

    /// Reads the held PUT at `held` back into `read_buffer`.
    fn read_held(&mut self, held: Held) -> io::Result<()> {
        self.read_buffer.resize(held.len_bytes as usize, 0);
        self.log.read_exact_at(&mut self.read_buffer, held.offset)
    }

    fn held_dat(&self) -> io::Result<Dat<&[u8]>> {
        match decode_entry(&self.read_buffer, self.seed) {
            Ok((EntryRef::Put(dat), _)) => Ok(dat),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "log changed under compaction",
            )),
        }
    }

    /// Finds the slot of (pubkey, key), leaving its entry in `read_buffer`.
    fn find(&mut self, hash: u64, pubkey: &[u8; 32], key: &[u8]) -> io::Result<Option<Slot>> {
        if let Some(&held) = self.primary.get(&hash) {
            self.read_held(held)?;
            let dat = self.held_dat()?;
            if dat.pubkey() == pubkey && dat.key() == key {
                return Ok(Some(Slot::Primary));
            }
        }
        for i in 0..self.overflow.len() {
            let (h, held) = self.overflow[i];
            if h != hash {
                continue;
            }
            self.read_held(held)?;
            let dat = self.held_dat()?;
            if dat.pubkey() == pubkey && dat.key() == key {
                return Ok(Some(Slot::Overflow(i)));
            }
        }
        Ok(None)
    }

    fn put(&mut self, candidate: Dat<&[u8]>, at: Held) -> io::Result<()> {
        let hash = record_hash(candidate.pubkey(), candidate.key());
        match self.find(hash, candidate.pubkey(), candidate.key())? {
            Some(slot) => {
                if compare_versions(&candidate, &self.held_dat()?) == Version::Newer {
                    match slot {
                        Slot::Primary => {
                            self.primary.insert(hash, at);
                        }
                        Slot::Overflow(i) => self.overflow[i].1 = at,
                    }
                }
            }
            None => {
                if let Entry::Vacant(slot) = self.primary.entry(hash) {
                    slot.insert(at);
                } else {
                    self.overflow.push((hash, at));
                }
            }
        }
        Ok(())
    }

    fn delete(&mut self, tombstone: &Tombstone) -> io::Result<()> {
        let hash = record_hash(&tombstone.pubkey, &tombstone.key);
        let Some(slot) = self.find(hash, &tombstone.pubkey, &tombstone.key)? else {
            return Ok(());
        };
        if tombstone.removes(&self.held_dat()?) {
            match slot {
                Slot::Primary => {
                    self.primary.remove(&hash);
                }
                Slot::Overflow(i) => {
                    self.overflow.swap_remove(i);
                }
            }
        }
        Ok(())
    }

    /// Offsets of the survivors, ascending (log order).
    fn offsets(&self) -> Vec<u64> {
        let mut offsets: Vec<u64> = self
            .primary
            .values()
            .chain(self.overflow.iter().map(|(_, held)| held))
            .map(|held| held.offset)
            .collect();
        offsets.sort_unstable();
        offsets
    }
}

/// A v2 record's identity in the log: (owner, key).
type V2Id = ([u8; 32], Box<[u8]>);

/// A compacted log written to `<log>.tmp` and fsynced, not yet renamed over the log.
///
/// Dropping it without [`StagedCompaction::install`] leaves the temp file behind, exactly as a
/// crash would; the next recovery removes it.
#[derive(Debug)]
pub struct StagedCompaction {
    log_path: PathBuf,
    temp_path: PathBuf,
    file: File,
    seed: u64,
    len_bytes: u64,
    snapshot_end: u64,
    report: CompactReport,
    started: Instant,
}

/// Stages a compaction of the whole log at `path` (no writer may be appending to it).
pub fn stage_compaction(path: &Path) -> Result<StagedCompaction, BackupError> {
    let len_bytes = fs::metadata(path)
        .map_err(|e| BackupError::io("stat", path, e))?
        .len();
    stage_until(path, len_bytes)
}

/// Compacts the log at `path` in place (no writer may be appending to it).
pub fn compact_log(path: &Path) -> Result<CompactReport, BackupError> {
    stage_compaction(path)?.install()
}

/// Flush threshold of the output buffer: one window's worth per `write`.
const OUTPUT_FLUSH_BYTES: usize = WINDOW_BYTES;

/// Stage 1: compacts `[header, snapshot_end)` of the log into the temp file.
pub(crate) fn stage_until(path: &Path, snapshot_end: u64) -> Result<StagedCompaction, BackupError> {
    let started = Instant::now();
    let read_error = |e| BackupError::io("read", path, e);
    let mut log = File::open(path).map_err(|e| BackupError::io("open", path, e))?;
    let header = read_header(&mut log, path, snapshot_end)?;
    let body_bytes = snapshot_end - HEADER_LEN as u64;
    let mut report = CompactReport {
        bytes_before: snapshot_end,
        ..CompactReport::default()
    };

    // Pass 1: find the survivors.
    let mut survivors = Survivors::new(&log, header.seed);
    // v2 survivors: (owner, key) -> (offset, seq) of the entry replay would leave live. Held in
    // memory (one key copy per live v2 record; v2 stores have their own, smaller budget).
    let mut v2_live: HashMap<V2Id, (u64, u64)> = HashMap::new();
    let mut counts = ScanCounts::default();
    {
        let mut window = Window::new((&log).take(body_bytes), HEADER_LEN as u64);
        scan_entries(
            &mut window,
            header.seed,
            &mut counts,
            |offset, entry, body| {
                report.entries_read += 1;
                match entry {
                    EntryRef::Put(dat) => survivors.put(
                        dat,
                        Held {
                            offset,
                            len_bytes: (super::format::ENTRY_HEADER_LEN + body.len()) as u32,
                        },
                    ),
                    // The replay rule of v2 entries: a later PUT2 of the same or a higher seq
                    // replaces, a DELETE2 removes a held seq not above its own.
                    EntryRef::Put2(dat) => {
                        let id = (*dat.pubkey(), Box::<[u8]>::from(dat.key()));
                        match v2_live.get(&id) {
                            Some(&(_, held_seq)) if held_seq > dat.seq() => {}
                            _ => {
                                v2_live.insert(id, (offset, dat.seq()));
                            }
                        }
                        Ok(())
                    }
                    EntryRef::Delete2 { pubkey, seq, key } => {
                        let id = (*pubkey, Box::<[u8]>::from(key));
                        if v2_live.get(&id).is_some_and(|&(_, held)| held <= seq) {
                            v2_live.remove(&id);
                        }
                        Ok(())
                    }
                    EntryRef::Delete {
                        pubkey,
                        time_ms,
                        key,
                    } => survivors.delete(&Tombstone {
                        pubkey: *pubkey,
                        time_ms,
                        key: key.into(),
                    }),
                }
            },
        )
        .map_err(read_error)?;
    }
    let mut offsets = survivors.offsets();
    // Written in log order, v1 and v2 survivors interleaved as they were.
    offsets.extend(v2_live.values().map(|&(offset, _)| offset));
    offsets.sort_unstable();
    drop(survivors);
    report.corrupt_regions_skipped = counts.corrupt_regions;

    // Pass 2: write them in log order under a fresh seed.
    let temp_path = temp_path(path);
    let mut file = create_temp(&temp_path).map_err(|e| BackupError::io("create", &temp_path, e))?;
    let guard = TempGuard::new(&temp_path);
    let new_header = Header {
        seed: rand::random::<u64>(),
    };
    let mut out = Vec::with_capacity(OUTPUT_FLUSH_BYTES + super::format::MAX_ENTRY_LEN);
    out.extend_from_slice(&new_header.emit());
    let mut len_bytes = 0u64;
    let write_error = |e| BackupError::io("write", &temp_path, e);
    log.seek(SeekFrom::Start(HEADER_LEN as u64))
        .map_err(read_error)?;
    let mut window = Window::new((&log).take(body_bytes), HEADER_LEN as u64);
    let mut next = offsets.iter().peekable();
    let mut ignored = ScanCounts::default();
    scan_entries(&mut window, header.seed, &mut ignored, |offset, _, body| {
        if next.peek() == Some(&&offset) {
            next.next();
            encode_entry(&mut out, body[0], &body[1..], new_header.seed);
            report.entries_written += 1;
            if out.len() >= OUTPUT_FLUSH_BYTES {
                file.write_all(&out)?;
                len_bytes += out.len() as u64;
                out.clear();
            }
        }
        Ok(())
    })
    .map_err(write_error)?;
    file.write_all(&out).map_err(write_error)?;
    len_bytes += out.len() as u64;
    debug_assert!(next.next().is_none());
    // Made durable here, on the compaction thread: the writer's own fsync in `finish` then
    // covers only the tail appended meanwhile, so the switch-over never holds up appends for
    // the time it takes to flush a whole live set.
    file.sync_data()
        .map_err(|e| BackupError::io("fsync", &temp_path, e))?;
    guard.keep();
    Ok(StagedCompaction {
        log_path: path.to_path_buf(),
        temp_path,
        file,
        seed: new_header.seed,
        len_bytes,
        snapshot_end,
        report,
        started,
    })
}

impl StagedCompaction {
    /// The temp file holding the compacted log.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// Stages 2–4 for an idle log: copies whatever was appended since staging, fsyncs, renames
    /// over the log, fsyncs the directory.
    pub fn install(self) -> Result<CompactReport, BackupError> {
        let tail_end = fs::metadata(&self.log_path)
            .map_err(|e| BackupError::io("stat", &self.log_path, e))?
            .len();
        let temp = self.temp_path.clone();
        self.finish(tail_end)
            .map(|(report, _)| report)
            .inspect_err(|_| {
                let _ = fs::remove_file(&temp);
            })
    }

    /// Stages 2–4; `tail_end` is the log's length now (the writer's own count).
    pub(crate) fn finish(
        mut self,
        tail_end: u64,
    ) -> Result<(CompactReport, RecoveredLog), BackupError> {
        let log_path = self.log_path.clone();
        let read_error = |e| BackupError::io("read", &log_path, e);
        if tail_end > self.snapshot_end {
            let mut log = File::open(&log_path).map_err(read_error)?;
            let header = read_header(&mut log, &log_path, tail_end)?;
            log.seek(SeekFrom::Start(self.snapshot_end))
                .map_err(read_error)?;
            let mut window =
                Window::new((&log).take(tail_end - self.snapshot_end), self.snapshot_end);
            let mut out = Vec::new();
            let mut counts = ScanCounts::default();
            let report = &mut self.report;
            scan_entries(&mut window, header.seed, &mut counts, |_, _, body| {
                encode_entry(&mut out, body[0], &body[1..], self.seed);
                report.entries_read += 1;
                report.entries_written += 1;
                report.tail_entries_copied += 1;
                Ok(())
            })
            .map_err(read_error)?;
            self.report.corrupt_regions_skipped += counts.corrupt_regions;
            self.file
                .write_all(&out)
                .map_err(|e| BackupError::io("write", &self.temp_path, e))?;
            self.len_bytes += out.len() as u64;
        }
        self.file
            .sync_all()
            .map_err(|e| BackupError::io("fsync", &self.temp_path, e))?;
        fs::rename(&self.temp_path, &log_path)
            .map_err(|e| BackupError::io("rename", &self.temp_path, e))?;
        sync_parent_dir(&log_path)?;
        self.report.bytes_after = self.len_bytes;
        self.report.duration = self.started.elapsed();
        Ok((
            self.report,
            RecoveredLog {
                file: self.file,
                seed: self.seed,
                len_bytes: self.len_bytes,
            },
        ))
    }

    /// Removes the temp file (after a failed compaction).
    pub(crate) fn discard(self) {
        let _ = fs::remove_file(&self.temp_path);
    }
}
