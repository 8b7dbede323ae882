//! Read-only views of a backup log, for `dave export` and `dave inspect`: the live records (the
//! replay rules of recovery applied in memory), the live and dead bytes, and where the log is
//! damaged.
//!
//! Unlike [`recover`](super::recover), nothing here writes: the file is opened read-only, no torn
//! tail is truncated, no temp file is removed, and no lock is taken, so it is safe to run beside
//! a live node appending to the same log. A node appending while we read shows up, at worst, as a
//! torn tail (the entry being written) which the node itself will complete.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use super::error::BackupError;
use super::format::{EntryRef, HEADER_LEN, put_entry_len};
use super::recover::read_header;
use super::scan::{ScanCounts, Window, scan_entries};
use crate::shard::route::{Version, compare_versions};
use crate::wire::Dat;

/// A record as read from the log.
pub type LogRecord = Dat<Box<[u8]>>;

/// A record's identity: owner public key and key.
type RecordSlot = ([u8; 32], Box<[u8]>);

/// A stretch of the log that holds no valid entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamagedRegion {
    /// File offset of its first byte.
    pub offset: u64,
    /// Its length in bytes.
    pub len_bytes: u64,
    /// True for the end of the file: a torn (or corrupt) tail, which a node's recovery truncates.
    pub tail: bool,
}

/// Upper bound on the damaged regions listed one by one; further ones are only counted. A log
/// damaged in more places than this is better restored than read region by region.
pub const MAX_LISTED_DAMAGED_REGIONS: usize = 1_000;

/// What a read-only pass over a log found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogSummary {
    /// File size when it was read, bytes.
    pub file_bytes: u64,
    /// PUT entries read.
    pub put_entries: u64,
    /// DELETE entries (tombstones) read.
    pub delete_entries: u64,
    /// PUT2 and DELETE2 entries (v2 records, format version 2) read. Compaction keeps them all,
    /// so their bytes count as live; the records listed are v1 only.
    pub v2_entries: u64,
    /// Bytes of those entries.
    pub v2_bytes: u64,
    /// Records live after replay: the newest version of each (owner, key) not removed by a
    /// later tombstone.
    pub live_records: u64,
    /// Bytes of the entries holding live records: what a compaction would keep (beside the
    /// header).
    pub live_bytes: u64,
    /// Every other byte after the header: superseded versions, tombstones, damaged regions.
    pub dead_bytes: u64,
    /// Damaged regions in file order (at most [`MAX_LISTED_DAMAGED_REGIONS`]).
    pub damaged: Vec<DamagedRegion>,
    /// Damaged regions in all, listed or not.
    pub damaged_regions: u64,
    /// Bytes in all damaged regions.
    pub damaged_bytes: u64,
}

/// The live records of the log at `path` and a summary of its contents. Read-only.
///
/// Fails only on I/O errors and on a file that is not a dave backup log (its header is checked).
/// Damaged bytes never make it fail: they are listed in [`LogSummary::damaged`].
pub fn read_live_records(path: &Path) -> Result<(Vec<LogRecord>, LogSummary), BackupError> {
    let mut file = File::open(path).map_err(|e| BackupError::io("open", path, e))?;
    let file_bytes = file
        .metadata()
        .map_err(|e| BackupError::io("stat", path, e))?
        .len();
    let header = read_header(&mut file, path, file_bytes)?;
    let mut summary = LogSummary {
        file_bytes,
        ..LogSummary::default()
    };
    // (owner, key) -> its live version. The key is at most 255 bytes; one owned copy per record.
    let mut live: HashMap<RecordSlot, LogRecord> = HashMap::new();
    let mut counts = ScanCounts::default();
    let mut expected_offset = HEADER_LEN as u64;
    let mut window = Window::new(&file, HEADER_LEN as u64);
    let end = {
        let summary = &mut summary;
        let live = &mut live;
        scan_entries(
            &mut window,
            header.seed,
            &mut counts,
            |offset, entry, body| {
                if offset > expected_offset {
                    note_damage(summary, expected_offset, offset - expected_offset, false);
                }
                expected_offset = offset + (super::format::ENTRY_HEADER_LEN + body.len()) as u64;
                match entry {
                    EntryRef::Put(dat) => {
                        summary.put_entries += 1;
                        let slot = (*dat.pubkey(), Box::<[u8]>::from(dat.key()));
                        match live.get(&slot) {
                            Some(held) if compare_versions(&dat, held) != Version::Newer => {}
                            _ => {
                                live.insert(slot, dat.to_boxed());
                            }
                        }
                    }
                    EntryRef::Put2(_) | EntryRef::Delete2 { .. } => {
                        summary.v2_entries += 1;
                        summary.v2_bytes += (super::format::ENTRY_HEADER_LEN + body.len()) as u64;
                    }
                    EntryRef::Delete {
                        pubkey,
                        time_ms,
                        key,
                    } => {
                        summary.delete_entries += 1;
                        let slot = (*pubkey, Box::<[u8]>::from(key));
                        if live
                            .get(&slot)
                            .is_some_and(|held| held.time_ms() <= time_ms)
                        {
                            live.remove(&slot);
                        }
                    }
                }
                Ok(())
            },
        )
        .map_err(|e| BackupError::io("read", path, e))?
    };
    if end.valid_end > expected_offset {
        // Intact frames of unknown type just before the end: skipped exactly, still damage.
        note_damage(
            &mut summary,
            expected_offset,
            end.valid_end - expected_offset,
            false,
        );
    }
    if end.tail_bytes > 0 {
        note_damage(&mut summary, end.valid_end, end.tail_bytes, true);
    }
    let mut records: Vec<LogRecord> = live.into_values().collect();
    // File order would need offsets kept; (owner, key) order is stable and easy to compare.
    records.sort_by(|a, b| (a.pubkey(), a.key()).cmp(&(b.pubkey(), b.key())));
    summary.live_records = records.len() as u64;
    summary.live_bytes = records
        .iter()
        .map(|d| put_entry_len(d.len()) as u64)
        .sum::<u64>()
        + summary.v2_bytes;
    summary.dead_bytes = file_bytes
        .saturating_sub(HEADER_LEN as u64)
        .saturating_sub(summary.live_bytes);
    Ok((records, summary))
}

fn note_damage(summary: &mut LogSummary, offset: u64, len_bytes: u64, tail: bool) {
    summary.damaged_regions += 1;
    summary.damaged_bytes += len_bytes;
    if summary.damaged.len() < MAX_LISTED_DAMAGED_REGIONS {
        summary.damaged.push(DamagedRegion {
            offset,
            len_bytes,
            tail,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{BackupConfig, BackupWriter};
    use crate::keys::Keypair;
    use crate::pow::make_dat_single;

    fn dat(key: &str, value: &[u8], time_ms: i64) -> Dat<Box<[u8]>> {
        make_dat_single(
            &Keypair::from_seed(&[5; 32]),
            key.as_bytes(),
            value,
            time_ms,
            1,
        )
    }

    #[test]
    fn live_versions_tombstones_and_damage_are_reported_without_writing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("log");
        let old = dat("a", b"old", 1_000);
        let new = dat("a", b"new", 2_000);
        let gone = dat("b", b"gone", 1_000);
        let kept = dat("c", &[0xff, 0x00], 1_000);
        {
            let (writer, _) = BackupWriter::open(BackupConfig::new(&path), |_| {})
                .unwrap_or_else(|e| panic!("{e}"));
            let handle = writer.handle();
            for d in [&old, &new, &gone, &kept] {
                handle.append_put(d).unwrap_or_else(|e| panic!("{e}"));
            }
            handle
                .append_delete(gone.pubkey(), gone.key(), gone.time_ms())
                .unwrap_or_else(|e| panic!("{e}"));
            writer.shutdown();
        }
        // Damage the middle of `old`'s entry and leave a torn tail.
        let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        bytes[HEADER_LEN + 20] ^= 0xff;
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));

        let (records, summary) = read_live_records(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut want = vec![new.clone(), kept.clone()];
        want.sort_by(|a, b| (a.pubkey(), a.key()).cmp(&(b.pubkey(), b.key())));
        assert_eq!(records, want);
        assert_eq!(summary.put_entries, 3, "old's entry is damaged");
        assert_eq!(summary.delete_entries, 1);
        assert_eq!(summary.live_records, 2);
        let old_entry_len = put_entry_len(old.len()) as u64;
        assert_eq!(
            summary.damaged,
            vec![
                DamagedRegion {
                    offset: HEADER_LEN as u64,
                    len_bytes: old_entry_len,
                    tail: false
                },
                DamagedRegion {
                    offset: bytes.len() as u64 - 3,
                    len_bytes: 3,
                    tail: true
                },
            ]
        );
        assert_eq!(
            summary.live_bytes,
            (put_entry_len(new.len()) + put_entry_len(kept.len())) as u64
        );
        assert_eq!(
            summary.live_bytes + summary.dead_bytes + HEADER_LEN as u64,
            bytes.len() as u64
        );
        // Read-only: the torn tail is still there.
        assert_eq!(
            std::fs::read(&path).unwrap_or_else(|e| panic!("{e}")),
            bytes
        );
    }
}
