//! Backup log benchmarks: recovery of 1M records (16-byte keys, 100-byte values) trusting the
//! checksums, recovery with signature re-verification (100k real records, extrapolated), and
//! append throughput under group commit.
//!
//! `cargo bench --bench backup`; results in `perf/README.md` ("Backup log (issue 3)").
//! The logs sit in a temp dir on the same file system as `$TMPDIR`; recovery reads them from the
//! page cache (they were just written), so the figures are warm-cache, CPU-bound numbers.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dave::backup::{
    BackupConfig, BackupWriter, RecoverOptions, RecoveredEntry, SyncPolicy, VerifyOnLoad, recover,
};
use dave::keys::Keypair;
use dave::pow::make_dat_single;
use dave::wire::{Dat, DatFields};

const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;
const TRUSTED_RECORDS: u64 = 1_000_000;
const VERIFIED_RECORDS: u64 = 100_000;

/// A record with fake work and signature: recovery trusts the log, so these cost nothing to make.
fn fake_dat(i: u64) -> Dat<Box<[u8]>> {
    let mut key = [0u8; KEY_BYTES];
    key[..8].copy_from_slice(&i.to_le_bytes());
    let mut work = [0u8; 32];
    work[..8].copy_from_slice(&i.to_be_bytes());
    DatFields {
        time_ms: 1_700_000_000_000 + i as i64,
        salt: [0; 16],
        work,
        sig: [7; 64],
        pubkey: [(i % 251) as u8; 32],
        key: &key,
        value: &[(i % 256) as u8; VALUE_BYTES],
    }
    .to_dat()
}

fn write_log(path: &Path, dats: impl Iterator<Item = Dat<Box<[u8]>>>) -> (u64, Duration) {
    let mut config = BackupConfig::new(path);
    config.sync_policy = SyncPolicy::Never;
    let (writer, _) = BackupWriter::open(config, |_| {}).expect("open");
    let handle = writer.handle();
    let started = Instant::now();
    for dat in dats {
        handle.append_put(&dat).expect("append");
    }
    let stats = writer.shutdown();
    (stats.entries_written, started.elapsed())
}

fn replay_count(path: &Path, options: &RecoverOptions) -> u64 {
    let mut puts = 0u64;
    let report = recover(path, options, |entry| {
        if let RecoveredEntry::Put(dat) = entry {
            puts += 1;
            black_box(dat);
        }
    })
    .expect("recover");
    assert_eq!(report.corrupt_regions_skipped, 0);
    puts
}

fn recovery(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let trusted = dir.path().join("trusted.log");
    let (written, elapsed) = write_log(&trusted, (0..TRUSTED_RECORDS).map(fake_dat));
    let file_bytes = std::fs::metadata(&trusted).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "backup: wrote {written} records ({file_bytes} bytes) through the writer (Never) in \
         {elapsed:?}: {:.0} records/s",
        written as f64 / elapsed.as_secs_f64()
    );

    let owner = Keypair::from_seed(&[1; 32]);
    let verified = dir.path().join("verified.log");
    let (written, _) = write_log(
        &verified,
        (0..VERIFIED_RECORDS).map(|i| {
            let mut key = [0u8; KEY_BYTES];
            key[..8].copy_from_slice(&i.to_le_bytes());
            make_dat_single(
                &owner,
                &key,
                &[(i % 256) as u8; VALUE_BYTES],
                1_700_000_000_000,
                0,
            )
        }),
    );
    assert_eq!(written, VERIFIED_RECORDS);

    let mut group = c.benchmark_group("backup_recover");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(TRUSTED_RECORDS));
    group.bench_function("trusted_1M_k16_v100", |b| {
        b.iter(|| {
            assert_eq!(
                replay_count(&trusted, &RecoverOptions::default()),
                TRUSTED_RECORDS
            )
        })
    });
    group.throughput(Throughput::Elements(VERIFIED_RECORDS));
    group.bench_function("trusted_100k_k16_v100", |b| {
        b.iter(|| {
            assert_eq!(
                replay_count(&verified, &RecoverOptions::default()),
                VERIFIED_RECORDS
            )
        })
    });
    let verify = RecoverOptions {
        verify: Some(VerifyOnLoad {
            min_work_bits: 0,
            now_ms: i64::MAX,
        }),
    };
    group.bench_function("verified_100k_k16_v100", |b| {
        b.iter(|| assert_eq!(replay_count(&verified, &verify), VERIFIED_RECORDS))
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    const RECORDS: u64 = 100_000;
    let dats: Vec<_> = (0..RECORDS).map(fake_dat).collect();
    let mut group = c.benchmark_group("backup_append");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS));
    for (name, policy) in [
        ("every_ms_50_100k", SyncPolicy::EveryMs(50)),
        ("every_write_100k_queued", SyncPolicy::EveryWrite),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let dir = tempfile::tempdir().expect("tempdir");
                let mut config = BackupConfig::new(dir.path().join("append.log"));
                config.sync_policy = policy;
                let (writer, _) = BackupWriter::open(config, |_| {}).expect("open");
                let handle = writer.handle();
                for dat in &dats {
                    handle.append_put(dat).expect("append");
                }
                handle.sync().expect("sync");
                writer.shutdown()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, recovery, append);
criterion_main!(benches);
