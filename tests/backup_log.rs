//! Backup log on real files with real fsync: round trip, torn tails at every byte offset,
//! corrupt middles, tombstones, sync policies, compaction (including crashes between its steps),
//! signature re-verification, and a model test against a `BTreeMap`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dave::backup::{
    BackupConfig, BackupError, BackupWriter, HEADER_LEN, RecoverOptions, RecoveredEntry,
    RecoveryReport, SyncPolicy, Tombstone, VerifyOnLoad, compact_log, put_entry_len, recover,
    stage_compaction, temp_path,
};
use dave::keys::Keypair;
use dave::pow::make_dat_single;
use dave::shard::route::{Version, compare_versions};
use dave::wire::{Dat, DatFields};
use proptest::prelude::*;

type Key = ([u8; 32], Vec<u8>);
type Model = BTreeMap<Key, Dat<Box<[u8]>>>;

/// A dat with fake work and signature (recovery trusts the log, so these replay fine).
fn fake_dat(owner: u8, key: &[u8], time_ms: i64, value: &[u8]) -> Dat<Box<[u8]>> {
    let mut work = [0u8; 32];
    work[..8].copy_from_slice(&time_ms.to_le_bytes());
    work[8] = owner;
    DatFields {
        time_ms,
        salt: [1; 16],
        work,
        sig: [2; 64],
        pubkey: [owner; 32],
        key,
        value,
    }
    .to_dat()
}

/// Applies one recovered entry the way a shard does on replay.
fn apply(model: &mut Model, entry: RecoveredEntry) {
    match entry {
        RecoveredEntry::Put(dat) => {
            let id = (*dat.pubkey(), dat.key().to_vec());
            match model.get(&id) {
                Some(held) if compare_versions(&dat, held) != Version::Newer => {}
                _ => {
                    model.insert(id, dat);
                }
            }
        }
        RecoveredEntry::Delete(tombstone) => {
            let id = (tombstone.pubkey, tombstone.key.to_vec());
            if model.get(&id).is_some_and(|held| tombstone.removes(held)) {
                model.remove(&id);
            }
        }
        // This model holds v1 records; v2 entries are modelled in tests/backup_log2.rs.
        RecoveredEntry::Put2(_) | RecoveredEntry::Delete2(_) => {}
    }
}

fn recover_model(path: &Path) -> (Model, RecoveryReport) {
    let mut model = Model::new();
    let report = recover(path, &RecoverOptions::default(), |e| apply(&mut model, e))
        .unwrap_or_else(|e| panic!("recover: {e}"));
    (model, report)
}

fn recover_all(path: &Path) -> (Vec<RecoveredEntry>, RecoveryReport) {
    let mut entries = Vec::new();
    let report = recover(path, &RecoverOptions::default(), |e| entries.push(e))
        .unwrap_or_else(|e| panic!("recover: {e}"));
    (entries, report)
}

fn open(path: &Path, policy: SyncPolicy) -> BackupWriter {
    let mut config = BackupConfig::new(path);
    config.sync_policy = policy;
    BackupWriter::open(config, |_| {})
        .unwrap_or_else(|e| panic!("open: {e}"))
        .0
}

fn log_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("backup.log")
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

#[test]
fn round_trip_puts_and_deletes_in_order() {
    let dir = tempdir();
    let path = log_in(&dir);
    let owner = Keypair::from_seed(&[5; 32]);
    let dats: Vec<_> = (0..20)
        .map(|i| {
            make_dat_single(
                &owner,
                format!("key-{i}").as_bytes(),
                &[i as u8; 40],
                1_000 + i,
                0,
            )
        })
        .collect();
    let writer = open(&path, SyncPolicy::EveryWrite);
    let handle = writer.handle();
    let mut expected = Vec::new();
    for (i, dat) in dats.iter().enumerate() {
        handle
            .append_put_acked(dat)
            .unwrap_or_else(|e| panic!("{e}"));
        expected.push(RecoveredEntry::Put(dat.clone()));
        if i % 3 == 0 {
            handle
                .append_delete_acked(dat.pubkey(), dat.key(), dat.time_ms())
                .unwrap_or_else(|e| panic!("{e}"));
            expected.push(RecoveredEntry::Delete(Tombstone::of(dat)));
        }
    }
    let stats = writer.shutdown();
    assert_eq!(stats.entries_written, expected.len() as u64);
    assert!(
        stats.syncs >= expected.len() as u64,
        "EveryWrite syncs each batch"
    );

    let (entries, report) = recover_all(&path);
    assert_eq!(entries, expected);
    assert_eq!(report.entries_replayed, expected.len() as u64);
    assert_eq!(report.deletes_replayed, 7);
    assert_eq!(report.corrupt_regions_skipped, 0);
    assert_eq!(report.torn_tail_bytes_truncated, 0);
    assert!(!report.created_fresh);

    // Signatures re-verified: all real, all pass.
    let mut puts = 0;
    let options = RecoverOptions {
        verify: Some(VerifyOnLoad {
            min_work_bits: 0,
            now_ms: i64::MAX,
        }),
    };
    let verified = recover(&path, &options, |e| {
        puts += matches!(e, RecoveredEntry::Put(_)) as u64
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.failed_verification, 0);
    assert_eq!(puts, 20);
}

#[test]
fn a_missing_or_empty_log_starts_fresh_and_a_foreign_file_is_a_clear_error() {
    let dir = tempdir();
    let path = log_in(&dir);
    let (entries, report) = recover_all(&path);
    assert!(entries.is_empty());
    assert!(report.created_fresh);
    assert_eq!(
        fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        HEADER_LEN as u64
    );

    fs::write(&path, b"").unwrap_or_else(|e| panic!("{e}"));
    assert!(recover_all(&path).1.created_fresh);

    fs::write(&path, b"dave-lo").unwrap_or_else(|e| panic!("{e}"));
    let err = recover(&path, &RecoverOptions::default(), |_| {}).err();
    assert!(
        matches!(err, Some(BackupError::TruncatedHeader { len_bytes: 7, .. })),
        "{err:?}"
    );

    fs::write(&path, [b'x'; 100]).unwrap_or_else(|e| panic!("{e}"));
    let err = recover(&path, &RecoverOptions::default(), |_| {}).err();
    assert!(
        matches!(err, Some(BackupError::NotABackupLog { .. })),
        "{err:?}"
    );
    assert!(
        err.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("not a dave backup log")
    );
    assert_eq!(
        fs::read(&path).map(|b| b.len()).unwrap_or(0),
        100,
        "never overwritten"
    );

    // A flipped header byte (seed) fails the header check.
    fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
    recover_all(&path);
    let mut bytes = fs::read(&path).unwrap_or_default();
    bytes[14] ^= 0x10;
    fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let err = recover(&path, &RecoverOptions::default(), |_| {}).err();
    assert!(
        matches!(err, Some(BackupError::CorruptHeader { .. })),
        "{err:?}"
    );
}

/// Writes `dats` as PUTs and tombstones for every `delete_every`-th, returns the entry
/// boundaries (offset of each entry's end) and the expected entries.
fn write_log(path: &Path, count: i64) -> (Vec<u64>, Vec<RecoveredEntry>) {
    let writer = open(path, SyncPolicy::Never);
    let handle = writer.handle();
    let mut ends = Vec::new();
    let mut expected = Vec::new();
    let mut at = HEADER_LEN as u64;
    for i in 0..count {
        let dat = fake_dat(
            1,
            format!("k{i}").as_bytes(),
            100 + i,
            &vec![i as u8; (i as usize * 7) % 90],
        );
        handle.append_put(&dat).unwrap_or_else(|e| panic!("{e}"));
        at += put_entry_len(dat.len()) as u64;
        ends.push(at);
        if i % 4 == 1 {
            handle
                .append_delete(dat.pubkey(), dat.key(), dat.time_ms())
                .unwrap_or_else(|e| panic!("{e}"));
            at += (12 + 1 + 41 + dat.key().len()) as u64;
            ends.push(at);
            expected.push(RecoveredEntry::Put(dat.clone()));
            expected.push(RecoveredEntry::Delete(Tombstone::of(&dat)));
        } else {
            expected.push(RecoveredEntry::Put(dat));
        }
    }
    writer.shutdown();
    assert_eq!(fs::metadata(path).map(|m| m.len()).unwrap_or(0), at);
    (ends, expected)
}

#[test]
fn a_torn_tail_at_every_byte_of_the_last_entries_is_truncated_and_the_rest_recovers() {
    let dir = tempdir();
    let full = dir.path().join("full.log");
    // Ends with PUT (k8), PUT (k9, deleted), DELETE (k9): the last three entries.
    let (ends, expected) = write_log(&full, 10);
    let bytes = fs::read(&full).unwrap_or_default();
    let first_cut = ends[ends.len() - 4];
    let path = dir.path().join("cut.log");
    for cut in first_cut..bytes.len() as u64 {
        fs::write(&path, &bytes[..cut as usize]).unwrap_or_else(|e| panic!("{e}"));
        let (entries, report) = recover_all(&path);
        let complete = ends.iter().filter(|&&end| end <= cut).count();
        let boundary = ends[complete - 1];
        assert_eq!(entries, expected[..complete], "cut at {cut}");
        assert_eq!(
            report.torn_tail_bytes_truncated,
            cut - boundary,
            "cut at {cut}"
        );
        assert_eq!(report.corrupt_regions_skipped, 0, "cut at {cut}");
        assert_eq!(
            fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            boundary,
            "cut at {cut}"
        );
        // Recovered again: clean.
        let (again, report) = recover_all(&path);
        assert_eq!(again.len(), complete);
        assert_eq!(report.torn_tail_bytes_truncated, 0);
    }
    // After a truncation, new appends follow the last good entry.
    fs::write(&path, &bytes[..bytes.len() - 5]).unwrap_or_else(|e| panic!("{e}"));
    let mut config = BackupConfig::new(&path);
    config.sync_policy = SyncPolicy::EveryWrite;
    let (writer, report) = BackupWriter::open(config, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.torn_tail_bytes_truncated > 0);
    let extra = fake_dat(2, b"after", 5, b"v");
    writer
        .handle()
        .append_put_acked(&extra)
        .unwrap_or_else(|e| panic!("{e}"));
    drop(writer);
    let (entries, report) = recover_all(&path);
    assert_eq!(entries.len(), expected.len());
    assert_eq!(entries.last(), Some(&RecoveredEntry::Put(extra)));
    assert_eq!(report.torn_tail_bytes_truncated, 0);
}

#[test]
fn flipped_bytes_in_the_middle_are_skipped_and_counted_and_the_rest_loads() {
    let dir = tempdir();
    let full = dir.path().join("full.log");
    let (ends, expected) = write_log(&full, 30);
    let bytes = fs::read(&full).unwrap_or_default();
    let path = dir.path().join("flipped.log");
    // Entry 10 spans ends[9]..ends[10]; flip its length, checksum, type and a payload byte.
    let start = ends[9] as usize;
    for (what, offset) in [("len", 1), ("checksum", 6), ("type", 12), ("payload", 60)] {
        let mut damaged = bytes.clone();
        damaged[start + offset] ^= 0x5a;
        fs::write(&path, &damaged).unwrap_or_else(|e| panic!("{e}"));
        let (entries, report) = recover_all(&path);
        let mut want = expected.clone();
        want.remove(10);
        assert_eq!(entries, want, "{what}");
        assert_eq!(report.corrupt_regions_skipped, 1, "{what}");
        assert_eq!(report.corrupt_bytes_skipped, ends[10] - ends[9], "{what}");
        assert_eq!(report.torn_tail_bytes_truncated, 0, "{what}");
        assert_eq!(
            fs::read(&path).map(|b| b.len()).unwrap_or(0),
            bytes.len(),
            "{what}"
        );
    }
    // Three damaged entries, and junk inserted between two others: all skipped, rest loads.
    let mut damaged = bytes.clone();
    for entry in [3usize, 17, 25] {
        damaged[ends[entry - 1] as usize + 20] ^= 0xff;
    }
    let junk_at = ends[20] as usize;
    let mut junk = vec![0u8; 100];
    junk.extend((0..300u32).map(|i| (i * 31 % 251) as u8));
    damaged.splice(junk_at..junk_at, junk.iter().copied());
    fs::write(&path, &damaged).unwrap_or_else(|e| panic!("{e}"));
    let (entries, report) = recover_all(&path);
    assert_eq!(entries.len(), expected.len() - 3);
    assert_eq!(report.corrupt_regions_skipped, 4);
    assert_eq!(report.torn_tail_bytes_truncated, 0);
}

#[test]
fn tombstones_remove_only_versions_not_newer_and_a_later_put_adds_back() {
    let dir = tempdir();
    let path = log_in(&dir);
    let writer = open(&path, SyncPolicy::EveryMs(5));
    let h = writer.handle();
    let ok = |r: Result<(), BackupError>| r.unwrap_or_else(|e| panic!("{e}"));
    let a1 = fake_dat(1, b"a", 10, b"one");
    let a2 = fake_dat(1, b"a", 20, b"two");
    let b1 = fake_dat(1, b"b", 10, b"bee");
    let c1 = fake_dat(2, b"c", 10, b"sea");
    ok(h.append_put(&a1));
    ok(h.append_put(&b1));
    ok(h.append_put(&c1));
    ok(h.append_delete(a1.pubkey(), a1.key(), 10)); // removes a1
    ok(h.append_put(&a2)); // a comes back, newer
    ok(h.append_delete(a2.pubkey(), a2.key(), 15)); // older tombstone: a2 stays
    ok(h.append_delete(b1.pubkey(), b1.key(), 10)); // b gone
    ok(h.append_delete(&[2; 32], b"other", 99)); // nothing held: no effect
    assert!(matches!(
        h.append_delete(&[0; 32], &[0; 256], 0),
        Err(BackupError::KeyTooLong { len: 256 })
    ));
    ok(h.sync());
    drop(writer);
    let (model, _) = recover_model(&path);
    let keys: Vec<_> = model.values().cloned().collect();
    assert_eq!(keys, vec![a2, c1]);
    // Compaction keeps exactly that and drops the tombstones.
    let report = compact_log(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.entries_written, 2);
    let (entries, _) = recover_all(&path);
    assert_eq!(entries.len(), 2);
    assert_eq!(recover_model(&path).0, model);
}

#[test]
fn sync_policies_group_commit_and_shutdown_flushes() {
    for policy in [
        SyncPolicy::EveryWrite,
        SyncPolicy::EveryMs(20),
        SyncPolicy::Never,
    ] {
        let dir = tempdir();
        let path = log_in(&dir);
        let writer = open(&path, policy);
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let h = writer.handle();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let dat = fake_dat(t, format!("k{i}").as_bytes(), i, b"value");
                        if i % 10 == 0 {
                            h.append_put_acked(&dat).unwrap_or_else(|e| panic!("{e}"));
                        } else {
                            h.append_put(&dat).unwrap_or_else(|e| panic!("{e}"));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap_or_else(|_| panic!("appender panicked"));
        }
        let handle = writer.handle();
        let stats = writer.shutdown();
        assert_eq!(stats.entries_written, 200, "{policy:?}");
        assert!(stats.batches <= 200, "{policy:?}");
        assert!(stats.syncs >= 1, "{policy:?}: shutdown fsyncs");
        if policy == SyncPolicy::Never {
            assert_eq!(stats.syncs, 1, "Never syncs only at shutdown");
        }
        assert!(matches!(
            handle.append_put(&fake_dat(0, b"x", 0, b"")),
            Err(BackupError::Closed)
        ));
        assert_eq!(recover_all(&path).0.len(), 200, "{policy:?}");
    }
}

#[test]
fn every_ms_syncs_within_its_interval_without_further_writes() {
    let dir = tempdir();
    let path = log_in(&dir);
    // 500 ms: a test thread descheduled for less than that on a loaded machine still looks
    // before the sync.
    let writer = open(&path, SyncPolicy::EveryMs(500));
    let h = writer.handle();
    h.append_put_acked(&fake_dat(1, b"k", 1, b"v"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        h.stats().syncs,
        0,
        "acknowledged after write, before the sync"
    );
    // No further write: only the deadline can wake the writer. Bounded wait: 10 intervals.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.stats().syncs == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(h.stats().syncs, 1, "the deadline wakes the writer");
}

#[test]
fn signature_reverification_counts_and_drops_bad_records() {
    let dir = tempdir();
    let path = log_in(&dir);
    let owner = Keypair::from_seed(&[9; 32]);
    let good = make_dat_single(&owner, b"good", b"v", 1_000, 4);
    let mut forged = good.as_bytes().to_vec();
    forged[60] ^= 1; // signature byte
    let forged = Dat::new_checked(forged.into_boxed_slice()).unwrap_or_else(|e| panic!("{e:?}"));
    let weak = make_dat_single(&owner, b"weak", b"v", 1_000, 0);
    let writer = open(&path, SyncPolicy::EveryWrite);
    for dat in [&good, &forged, &weak] {
        writer
            .handle()
            .append_put_acked(dat)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    drop(writer);
    let (trusted, report) = recover_all(&path);
    assert_eq!((trusted.len(), report.failed_verification), (3, 0));
    let mut replayed = Vec::new();
    let options = RecoverOptions {
        verify: Some(VerifyOnLoad {
            min_work_bits: 4,
            now_ms: 2_000,
        }),
    };
    let report = recover(&path, &options, |e| replayed.push(e)).unwrap_or_else(|e| panic!("{e}"));
    // `weak` may have 4 zero bits by chance; `forged` never verifies.
    let weak_passes = dave::pow::leading_zero_bits(weak.work()) >= 4;
    assert_eq!(report.failed_verification, 2 - weak_passes as u64);
    assert_eq!(replayed[0], RecoveredEntry::Put(good));
    assert!(!replayed.contains(&RecoveredEntry::Put(forged)));
}

/// Many versions of few keys, some tombstones: the log is mostly dead.
fn churn(h: &dave::backup::BackupHandle, model: &mut Model, round: i64, keys: u8) {
    for k in 0..keys {
        let key = [b'k', k];
        let dat = fake_dat(k % 3, &key, round * 10 + (k as i64 % 4), &[k; 60]);
        h.append_put(&dat).unwrap_or_else(|e| panic!("{e}"));
        apply(model, RecoveredEntry::Put(dat.clone()));
        if (round + k as i64) % 7 == 0 {
            h.append_delete(dat.pubkey(), dat.key(), dat.time_ms())
                .unwrap_or_else(|e| panic!("{e}"));
            apply(model, RecoveredEntry::Delete(Tombstone::of(&dat)));
        }
    }
}

#[test]
fn compaction_keeps_exactly_the_live_set_while_appends_continue() {
    let dir = tempdir();
    let path = log_in(&dir);
    let writer = open(&path, SyncPolicy::Never);
    let h = writer.handle();
    let mut model = Model::new();
    for round in 0..40 {
        churn(&h, &mut model, round, 50);
    }
    h.sync().unwrap_or_else(|e| panic!("{e}"));
    let before = h.stats().file_bytes;
    // Appends from another thread race with the compaction; the tail copy must keep them.
    let racer = {
        let h = h.clone();
        let mut model = model.clone();
        std::thread::spawn(move || {
            for round in 40..60 {
                churn(&h, &mut model, round, 50);
            }
            model
        })
    };
    let report = h.compact().unwrap_or_else(|e| panic!("{e}"));
    let model = racer.join().unwrap_or_else(|_| panic!("racer panicked"));
    let stats = writer.shutdown();
    assert_eq!(stats.compactions, 1);
    assert!(report.bytes_after < before, "{report:?}");
    let (recovered, report) = recover_model(&path);
    assert_eq!(recovered, model);
    assert_eq!(report.corrupt_regions_skipped, 0);
    assert_eq!(report.torn_tail_bytes_truncated, 0);
}

#[test]
fn automatic_compaction_starts_when_the_file_outgrows_the_live_set() {
    let dir = tempdir();
    let path = log_in(&dir);
    let mut config = BackupConfig::new(&path);
    config.sync_policy = SyncPolicy::Never;
    config.compact_min_file_bytes = 64 << 10;
    let (writer, _) = BackupWriter::open(config, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    let h = writer.handle();
    let mut model = Model::new();
    for round in 0..30 {
        churn(&h, &mut model, round, 40);
        let bytes: u64 = model.values().map(|d| d.len() as u64).sum();
        h.set_live(model.len() as u64, bytes);
        h.sync().unwrap_or_else(|e| panic!("{e}"));
    }
    let mut waited = 0;
    while h.stats().compactions == 0 && waited < 100 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        waited += 1;
    }
    assert!(h.stats().compactions >= 1, "{:?}", h.stats());
    drop(writer);
    assert_eq!(recover_model(&path).0, model);
}

#[test]
fn a_crash_between_compaction_steps_leaves_a_readable_log_with_the_same_live_set() {
    let dir = tempdir();
    let path = log_in(&dir);
    let writer = open(&path, SyncPolicy::Never);
    let mut model = Model::new();
    for round in 0..10 {
        churn(&writer.handle(), &mut model, round, 30);
    }
    drop(writer);
    let original = fs::read(&path).unwrap_or_default();
    let tmp = temp_path(&path);

    // Crash while the temp file is half written.
    let staged = stage_compaction(&path).unwrap_or_else(|e| panic!("{e}"));
    let full_tmp = fs::read(staged.temp_path()).unwrap_or_default();
    drop(staged);
    fs::write(&tmp, &full_tmp[..full_tmp.len() / 2]).unwrap_or_else(|e| panic!("{e}"));
    let (recovered, report) = recover_model(&path);
    assert!(report.stale_temp_removed);
    assert!(!tmp.exists());
    assert_eq!(recovered, model);
    assert_eq!(fs::read(&path).unwrap_or_default(), original);

    // Crash after the temp file was complete and fsynced, before the rename.
    let staged = stage_compaction(&path).unwrap_or_else(|e| panic!("{e}"));
    drop(staged);
    assert!(tmp.exists());
    let (recovered, report) = recover_model(&path);
    assert!(report.stale_temp_removed);
    assert_eq!(recovered, model);

    // Crash after the rename, before the directory fsync: the new log is in place.
    let staged = stage_compaction(&path).unwrap_or_else(|e| panic!("{e}"));
    fs::rename(staged.temp_path(), &path).unwrap_or_else(|e| panic!("{e}"));
    drop(staged);
    let (recovered, report) = recover_model(&path);
    assert!(!report.stale_temp_removed);
    assert_eq!(recovered, model);
    let compacted_len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(compacted_len < original.len() as u64);
    let (entries, _) = recover_all(&path);
    assert_eq!(entries.len(), model.len(), "only survivors, no tombstones");

    // Complete: compacting a compacted log changes nothing but the seed.
    let report = compact_log(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.bytes_after, compacted_len);
    assert_eq!(recover_model(&path).0, model);
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        owner: u8,
        key: u8,
        time_ms: i64,
        value_len: usize,
    },
    Delete {
        owner: u8,
        key: u8,
        time_ms: i64,
    },
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2u8, 0..6u8, 0..8i64, 0..40usize)
            .prop_map(|(owner, key, time_ms, value_len)| Op::Put { owner, key, time_ms, value_len }),
        2 => (0..2u8, 0..6u8, 0..8i64).prop_map(|(owner, key, time_ms)| Op::Delete { owner, key, time_ms }),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the sequence of puts, tombstones, compactions and restarts, the log replays to
    /// the same map as applying the operations directly.
    #[test]
    fn the_log_replays_to_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempdir();
        let path = log_in(&dir);
        let mut model = Model::new();
        let mut writer = Some(open(&path, SyncPolicy::Never));
        for op in ops {
            let h = match &writer {
                Some(w) => w.handle(),
                None => unreachable!(),
            };
            match op {
                Op::Put { owner, key, time_ms, value_len } => {
                    let dat = fake_dat(owner, &[key], time_ms, &vec![value_len as u8; value_len]);
                    h.append_put(&dat).unwrap_or_else(|e| panic!("{e}"));
                    apply(&mut model, RecoveredEntry::Put(dat));
                }
                Op::Delete { owner, key, time_ms } => {
                    h.append_delete(&[owner; 32], &[key], time_ms).unwrap_or_else(|e| panic!("{e}"));
                    apply(&mut model, RecoveredEntry::Delete(Tombstone {
                        pubkey: [owner; 32], time_ms, key: Box::new([key]),
                    }));
                }
                Op::Compact => {
                    h.compact().unwrap_or_else(|e| panic!("{e}"));
                }
                Op::Reopen => {
                    drop(h);
                    drop(writer.take());
                    let (recovered, _) = recover_model(&path);
                    prop_assert_eq!(&recovered, &model);
                    writer = Some(open(&path, SyncPolicy::Never));
                }
            }
        }
        drop(writer);
        let (recovered, report) = recover_model(&path);
        prop_assert_eq!(recovered, model);
        prop_assert_eq!(report.corrupt_regions_skipped, 0);
    }
}
