//! Fuzz target for the files a node reads from outside: its own backup log (`recover`,
//! `read_live_records`) and a Go reference backup (`import_reference`).
//!
//! Random bytes almost never carry a valid header or entry checksum, so the input is read two
//! ways, chosen by bit 0 of its first byte (bit 1 turns on recovery's re-verification of work
//! and signatures, `RecoverOptions::verify`):
//!
//! - **raw**: the rest is the whole file. Exercises the header checks and the scan of bytes that
//!   are not a log. A file `recover` refuses must be left exactly as it was (never overwrite a
//!   file that is not ours).
//! - **framed**: a valid header (seed from the input), then chunks `kind u8 ‖ len u16 LE ‖ bytes`:
//!   a kind below 0x80 is an entry of type `kind & 7` (the four known types and unknown ones)
//!   framed with a correct length and checksum, so its payload reaches the decoders; any other
//!   kind puts the bytes in raw (corrupt regions, torn frames). `recover` must succeed, may only
//!   cut the file (the result is a prefix of the input), and must be idempotent: a second
//!   recovery truncates nothing and replays the same entries. `read_live_records` must then
//!   succeed and list no more records than were replayed or refused on re-verification.
//!
//! Both ways, the same bytes are also imported as a reference backup, which must never fail on
//! content (only I/O errors fail it).

#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use dave::backup::{
    BackupError, ENTRY_HEADER_LEN, FORMAT_VERSION, HEADER_LEN, ImportOptions, MAGIC,
    RecoverOptions, RecoveredEntry, RecoveryReport, VerifyOnLoad, import_reference,
    read_live_records, recover,
};
use libfuzzer_sys::fuzz_target;
use xxhash_rust::xxh64::xxh64;

/// A directory of this process's own (tmpfs when there is one: the target writes files each run).
fn work_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if fs::metadata("/dev/shm").is_ok_and(|m| m.is_dir()) {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("dave-fuzz-backup-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("fuzz work directory");
        dir
    })
}

/// The header `dave::backup` writes, built from the documented layout (README, "Storage").
fn header(seed: u64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Flags 0 at 10..12.
    out[12..20].copy_from_slice(&seed.to_le_bytes());
    let check = xxh64(&out[..20], 0) as u32;
    out[20..24].copy_from_slice(&check.to_le_bytes());
    out
}

/// A log built from `data` as the module docs say.
fn framed_log(data: &[u8]) -> Vec<u8> {
    let (seed, mut rest) = match data.split_first_chunk::<8>() {
        Some((seed, rest)) => (u64::from_le_bytes(*seed), rest),
        None => (0, data),
    };
    let mut out = header(seed).to_vec();
    while let Some((&[kind, len_lo, len_hi], tail)) = rest.split_first_chunk::<3>() {
        let len = usize::from(u16::from_le_bytes([len_lo, len_hi])).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        if kind < 0x80 {
            let body_start = out.len() + ENTRY_HEADER_LEN;
            out.extend_from_slice(&(1 + bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&[0; 8]);
            out.push(kind & 7);
            out.extend_from_slice(bytes);
            let checksum = xxh64(&out[body_start..], seed);
            out[body_start - 8..body_start].copy_from_slice(&checksum.to_le_bytes());
        } else {
            out.extend_from_slice(bytes);
        }
    }
    out
}

fn replay_all(
    path: &std::path::Path,
    options: &RecoverOptions,
) -> Result<(RecoveryReport, Vec<RecoveredEntry>), BackupError> {
    let mut entries = Vec::new();
    let report = recover(path, options, |e| entries.push(e))?;
    Ok((report, entries))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let framed = mode & 1 == 1;
    let recover_options = RecoverOptions {
        // Work 0 and a clock at the end of time: every well-signed record passes, so the
        // signature check decides.
        verify: (mode & 2 == 2).then_some(VerifyOnLoad {
            min_work_bits: 0,
            now_ms: i64::MAX,
        }),
    };
    let file = if framed {
        framed_log(rest)
    } else {
        rest.to_vec()
    };
    let dir = work_dir();

    // A reference backup: content never fails an import.
    let reference = dir.join("reference.bak");
    fs::write(&reference, &file).expect("write reference");
    let import_options = ImportOptions {
        min_work_bits: 0,
        now_ms: i64::MAX,
    };
    let mut imported = 0u64;
    let report = import_reference(&reference, &import_options, |_| imported += 1)
        .expect("an import fails only on I/O errors");
    assert_eq!(report.records_imported, imported);

    // Our own log.
    let log = dir.join("node.log");
    fs::write(&log, &file).expect("write log");
    let recovered = replay_all(&log, &recover_options);
    let after = fs::read(&log).expect("read log");
    let (report, entries) = match recovered {
        Ok(recovered) => recovered,
        Err(e) => {
            assert!(
                !framed,
                "a log with a valid header is always recovered: {e}"
            );
            assert_eq!(after, file, "a refused file is left as it was: {e}");
            return;
        }
    };
    if file.is_empty() {
        // An empty file is made a fresh log.
        assert!(report.created_fresh);
        return;
    }
    assert!(
        after.len() <= file.len() && after[..] == file[..after.len()],
        "recovery only cuts a torn tail"
    );
    assert_eq!(
        (file.len() - after.len()) as u64,
        report.torn_tail_bytes_truncated
    );
    assert_eq!(report.entries_replayed, entries.len() as u64);

    let (again, entries_again) =
        replay_all(&log, &recover_options).expect("a recovered log recovers again");
    assert_eq!(again.torn_tail_bytes_truncated, 0, "{again:?}");
    assert_eq!(entries_again, entries);
    assert_eq!(
        fs::read(&log).expect("read log"),
        after,
        "nothing changes the second time"
    );

    let (live, _summary) = read_live_records(&log).expect("a recovered log reads");
    let puts = entries
        .iter()
        .filter(|e| matches!(e, RecoveredEntry::Put(_) | RecoveredEntry::Put2(_)))
        .count();
    // The listing does not re-verify: records recovery refused on verification may be in it.
    assert!(
        live.len() as u64 <= puts as u64 + report.failed_verification,
        "{} live of {puts} replayed puts and {} refused",
        live.len(),
        report.failed_verification
    );
});
