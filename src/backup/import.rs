//! Import of the Go reference's backup file: a sequence of `u16 LE length ‖ dat`.
//!
//! The reference appends `len(dat) ‖ dat` as it stores records, but when it rewrites the file at
//! start-up (`writeFreshBackup`) it writes the length of its 1424-byte marshal buffer instead of
//! the dat's, followed by only the dat. So the prefix is either the dat's own length or 1424,
//! and the reader advances by the dat's own length `155 + K + V`, read from the dat header.
//!
//! The file has no checksums and may come from anywhere, so every record is verified with
//! [`verify_dat`] before it is passed on. A record that frames correctly but fails verification
//! is counted and skipped by its own length. Bytes that do not frame as a record (a prefix that
//! is neither the dat's length nor 1424, or an impossible K + V) start a garbage region: the
//! reader moves forward one byte at a time until a record frames *and* its work checks out
//! ([`check_work`], two BLAKE3 hashes), which makes a false resync practically impossible.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use super::error::BackupError;
use super::scan::Window;
use crate::limits::{
    DAT_HEADER_LEN, DAT_PREFIX_LEN, MAX_DAT_LEN, MAX_KEY_VALUE_LEN, MAX_PACKET_LEN,
};
use crate::pow::{check_work, verify_dat};
use crate::wire::Dat;

/// The length prefix the reference writes when it rewrites its backup (its marshal buffer size).
pub const REFERENCE_REWRITE_PREFIX: usize = MAX_PACKET_LEN;

/// Bytes of the reference's length prefix.
pub const REFERENCE_PREFIX_LEN: usize = 2;

/// Longest reference record: prefix + largest dat.
const MAX_RECORD_LEN: usize = REFERENCE_PREFIX_LEN + MAX_DAT_LEN;

// A genuine dat length can never be mistaken for the rewrite prefix.
const _: () = assert!(MAX_DAT_LEN < REFERENCE_REWRITE_PREFIX);

/// How to verify imported records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// Least proof-of-work, in leading zero bits (the reference's minimum is 20).
    pub min_work_bits: u32,
    /// The current time, Unix ms (records from the future are refused).
    pub now_ms: i64,
}

/// What an import found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Records verified and passed on.
    pub records_imported: u64,
    /// Records that framed correctly but failed verification.
    pub records_failed_verification: u64,
    /// Records whose prefix was the rewrite prefix 1424 rather than their own length.
    pub rewrite_prefixes: u64,
    /// Regions of bytes that did not frame as a record, skipped.
    pub garbage_regions: u64,
    /// Bytes in those regions (including an unparseable tail).
    pub garbage_bytes: u64,
    /// Wall time.
    pub duration: Duration,
}

/// Why the bytes at some offset are not a reference record.
enum Frame {
    /// A plausible record: prefix and whole dat length.
    Record { prefix: usize, dat_len: usize },
    /// Not a record here.
    Bad,
}

fn frame_at(bytes: &[u8]) -> Frame {
    let Some(prefix) = bytes.get(..REFERENCE_PREFIX_LEN) else {
        return Frame::Bad;
    };
    let prefix = u16::from_le_bytes([prefix[0], prefix[1]]) as usize;
    let dat = &bytes[REFERENCE_PREFIX_LEN..];
    let Some(&key_len) = dat.get(DAT_PREFIX_LEN - 1) else {
        return Frame::Bad;
    };
    let value_len_at = DAT_PREFIX_LEN + key_len as usize;
    let Some(value_len) = dat.get(value_len_at..value_len_at + 2) else {
        return Frame::Bad;
    };
    let value_len = u16::from_le_bytes([value_len[0], value_len[1]]) as usize;
    if key_len as usize + value_len > MAX_KEY_VALUE_LEN {
        return Frame::Bad;
    }
    let dat_len = DAT_HEADER_LEN + key_len as usize + value_len;
    if prefix != dat_len && prefix != REFERENCE_REWRITE_PREFIX {
        return Frame::Bad;
    }
    if dat.len() < dat_len {
        return Frame::Bad;
    }
    Frame::Record { prefix, dat_len }
}

/// Reads the reference backup at `path`, verifies every record, and passes the good ones to
/// `import` in file order. The file is not modified. Fails only on I/O errors.
pub fn import_reference(
    path: &Path,
    options: &ImportOptions,
    mut import: impl FnMut(Dat<Box<[u8]>>),
) -> Result<ImportReport, BackupError> {
    let started = Instant::now();
    let file = File::open(path).map_err(|e| BackupError::io("open", path, e))?;
    let read_error = |e| BackupError::io("read", path, e);
    let mut window = Window::new(&file, 0);
    let mut report = ImportReport::default();
    loop {
        let bytes = window.fill(MAX_RECORD_LEN).map_err(read_error)?;
        if bytes.is_empty() {
            break;
        }
        match frame_at(bytes) {
            Frame::Record { prefix, dat_len } => {
                let record_len = REFERENCE_PREFIX_LEN + dat_len;
                match Dat::new_checked(&bytes[REFERENCE_PREFIX_LEN..record_len]) {
                    Ok(dat) if verify_dat(&dat, options.min_work_bits, options.now_ms).is_ok() => {
                        report.records_imported += 1;
                        if prefix == REFERENCE_REWRITE_PREFIX {
                            report.rewrite_prefixes += 1;
                        }
                        import(dat.to_boxed());
                    }
                    _ => report.records_failed_verification += 1,
                }
                window.consume(record_len);
            }
            Frame::Bad => {
                let start = window.offset();
                report.garbage_regions += 1;
                loop {
                    window.consume(1);
                    let bytes = window.fill(MAX_RECORD_LEN).map_err(read_error)?;
                    if bytes.is_empty() || resyncs(bytes, options) {
                        break;
                    }
                }
                report.garbage_bytes += window.offset() - start;
            }
        }
    }
    report.duration = started.elapsed();
    Ok(report)
}

/// A record frames here and its work checks out.
fn resyncs(bytes: &[u8], options: &ImportOptions) -> bool {
    let Frame::Record { dat_len, .. } = frame_at(bytes) else {
        return false;
    };
    match Dat::new_checked(&bytes[REFERENCE_PREFIX_LEN..REFERENCE_PREFIX_LEN + dat_len]) {
        Ok(dat) => check_work(&dat, options.min_work_bits, options.now_ms).is_ok(),
        Err(_) => false,
    }
}
