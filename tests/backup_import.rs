//! Import of the Go reference's backup files (`u16 LE length ‖ dat`*), built here from dats made
//! with `make_dat_single`: own-length prefixes, the rewrite prefix 1424, a mix, bad records,
//! garbage between records and a truncated tail.

use std::fs;
use std::path::Path;

use dave::backup::{ImportOptions, ImportReport, REFERENCE_REWRITE_PREFIX, import_reference};
use dave::keys::Keypair;
use dave::pow::make_dat_single;
use dave::wire::Dat;

const WORK_BITS: u32 = 8;

fn dats(count: usize) -> Vec<Dat<Box<[u8]>>> {
    let owner = Keypair::from_seed(&[3; 32]);
    (0..count)
        .map(|i| {
            let value = vec![i as u8; (i * 37) % 300];
            make_dat_single(
                &owner,
                format!("key/{i}").as_bytes(),
                &value,
                1_700_000_000_000 + i as i64,
                WORK_BITS,
            )
        })
        .collect()
}

/// The reference's file: `prefix ‖ dat` per record, `prefix(i)` chooses each length field.
fn reference_file(dats: &[Dat<Box<[u8]>>], prefix: impl Fn(usize, usize) -> usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, dat) in dats.iter().enumerate() {
        out.extend_from_slice(&(prefix(i, dat.len()) as u16).to_le_bytes());
        out.extend_from_slice(dat.as_bytes());
    }
    out
}

fn import(path: &Path, bytes: &[u8], min_work_bits: u32) -> (Vec<Dat<Box<[u8]>>>, ImportReport) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("{e}"));
    let mut got = Vec::new();
    let options = ImportOptions {
        min_work_bits,
        now_ms: 1_800_000_000_000,
    };
    let report =
        import_reference(path, &options, |d| got.push(d)).unwrap_or_else(|e| panic!("{e}"));
    (got, report)
}

#[test]
fn own_length_rewrite_1424_and_mixed_prefixes_all_import() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("reference.bak");
    let dats = dats(40);
    for (name, bytes, rewrites) in [
        ("own length", reference_file(&dats, |_, len| len), 0),
        (
            "rewritten",
            reference_file(&dats, |_, _| REFERENCE_REWRITE_PREFIX),
            40,
        ),
        (
            "rewritten then appended",
            reference_file(&dats, |i, len| if i < 25 { 1424 } else { len }),
            25,
        ),
    ] {
        let (got, report) = import(&path, &bytes, WORK_BITS);
        assert_eq!(got, dats, "{name}");
        assert_eq!(report.records_imported, 40, "{name}");
        assert_eq!(report.rewrite_prefixes, rewrites, "{name}");
        assert_eq!(report.records_failed_verification, 0, "{name}");
        assert_eq!(
            (report.garbage_regions, report.garbage_bytes),
            (0, 0),
            "{name}"
        );
    }
    // An empty file imports nothing, cleanly.
    let (got, report) = import(&path, &[], WORK_BITS);
    assert!(got.is_empty());
    assert_eq!(
        report,
        ImportReport {
            duration: report.duration,
            ..ImportReport::default()
        }
    );
}

#[test]
fn records_below_the_minimum_work_are_counted_not_imported() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("reference.bak");
    let dats = dats(10);
    let bytes = reference_file(&dats, |_, _| 1424);
    let strict = dats
        .iter()
        .filter(|d| dave::pow::leading_zero_bits(d.work()) >= 30)
        .count();
    let (got, report) = import(&path, &bytes, 30);
    assert_eq!(got.len(), strict);
    assert_eq!(report.records_failed_verification as usize, 10 - strict);
    assert_eq!(
        report.garbage_regions, 0,
        "framing does not depend on the work"
    );
}

#[test]
fn bad_records_are_skipped_by_their_own_length_and_counted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("reference.bak");
    let dats = dats(12);
    let mut bytes = reference_file(&dats, |_, _| 1424);
    // Corrupt the signature of record 3 and the value of record 7 (framing intact).
    let start_of = |i: usize| dats[..i].iter().map(|d| 2 + d.len()).sum::<usize>();
    bytes[start_of(3) + 2 + 70] ^= 1;
    let value_at = start_of(7) + 2 + dats[7].len() - 1;
    bytes[value_at] ^= 1;
    let (got, report) = import(&path, &bytes, WORK_BITS);
    let mut want = dats.clone();
    want.remove(7);
    want.remove(3);
    assert_eq!(got, want);
    assert_eq!(report.records_failed_verification, 2);
    assert_eq!(report.garbage_regions, 0);
}

#[test]
fn garbage_between_records_and_a_truncated_tail_are_skipped() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("reference.bak");
    let dats = dats(15);
    let start_of = |i: usize| dats[..i].iter().map(|d| 2 + d.len()).sum::<usize>();
    let mut bytes = reference_file(&dats, |i, len| if i % 2 == 0 { 1424 } else { len });
    // A wrong length prefix on record 4 (neither its length nor 1424): its bytes are garbage.
    bytes[start_of(4)..start_of(4) + 2].copy_from_slice(&7u16.to_le_bytes());
    // Junk inserted before record 9.
    let junk: Vec<u8> = (0..500u32).map(|i| (i * 131 % 256) as u8).collect();
    let at = start_of(9);
    bytes.splice(at..at, junk.iter().copied());
    // The last record cut short.
    bytes.truncate(bytes.len() - 10);
    let (got, report) = import(&path, &bytes, WORK_BITS);
    let want: Vec<_> = dats
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4 && *i != 14)
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(got, want);
    assert_eq!(report.records_imported, 13);
    assert_eq!(report.garbage_regions, 3, "{report:?}");
    assert_eq!(
        report.garbage_bytes as usize,
        (2 + dats[4].len()) + 500 + (2 + dats[14].len() - 10)
    );
}

#[test]
fn any_bytes_import_without_panicking() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("junk.bak");
    let mut state = 0x1234_5678_u64;
    for len in [1usize, 2, 157, 1423, 5000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let (got, report) = import(&path, &bytes, 0);
        assert!(got.is_empty());
        assert_eq!(report.garbage_bytes as usize, len);
    }
}
