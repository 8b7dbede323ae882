//! Backup recovery timing that stays meaningful on a busy machine: reports the median wall time
//! and the median process CPU time (user + system, from `/proc/self/stat`) of several recoveries.
//!
//! ```text
//! cargo run --release --example backup_recovery -- [records_trusted] [records_verified] [runs]
//! ```
//!
//! Defaults: 1 000 000 trusted records (fake work and signature: recovery trusts the checksummed
//! log), 100 000 verified records (real signatures at difficulty 0), 5 runs. Keys are 16 bytes,
//! values 100 bytes. The logs were just written, so they are read from the page cache.

use std::path::Path;
use std::time::{Duration, Instant};

use dave::backup::{
    BackupConfig, BackupWriter, RecoverOptions, RecoveredEntry, SyncPolicy, VerifyOnLoad, recover,
};
use dave::keys::Keypair;
use dave::pow::make_dat_single;
use dave::wire::{Dat, DatFields};

const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;

/// Linux's USER_HZ, the unit of `/proc/self/stat` CPU times (100 on every mainstream kernel).
const TICKS_PER_SECOND: f64 = 100.0;

fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    key[..8].copy_from_slice(&i.to_le_bytes());
    key
}

fn fake_dat(i: u64) -> Dat<Box<[u8]>> {
    let mut work = [0u8; 32];
    work[..8].copy_from_slice(&i.to_be_bytes());
    DatFields {
        time_ms: 1_700_000_000_000 + i as i64,
        salt: [0; 16],
        work,
        sig: [7; 64],
        pubkey: [(i % 251) as u8; 32],
        key: &key(i),
        value: &[(i % 256) as u8; VALUE_BYTES],
    }
    .to_dat()
}

/// Process CPU time so far (user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND)
}

fn write_log(path: &Path, dats: impl Iterator<Item = Dat<Box<[u8]>>>) -> Result<u64, String> {
    let mut config = BackupConfig::new(path);
    config.sync_policy = SyncPolicy::Never;
    let (writer, _) = BackupWriter::open(config, |_| {}).map_err(|e| e.to_string())?;
    let handle = writer.handle();
    for dat in dats {
        handle.append_put(&dat).map_err(|e| e.to_string())?;
    }
    Ok(writer.shutdown().entries_written)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_recovery(name: &str, path: &Path, options: &RecoverOptions, runs: usize, records: u64) {
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..runs {
        let cpu_start = cpu_time();
        let started = Instant::now();
        let mut puts = 0u64;
        let report = recover(path, options, |entry| {
            if let RecoveredEntry::Put(dat) = entry {
                puts += 1;
                std::hint::black_box(dat);
            }
        });
        walls.push(started.elapsed());
        cpus.push(cpu_time().saturating_sub(cpu_start));
        match report {
            Ok(report) => assert_eq!(report.failed_verification, 0),
            Err(e) => panic!("recover: {e}"),
        }
        assert_eq!(puts, records);
    }
    let (wall, cpu) = (median(walls), median(cpus));
    println!(
        "{name}: {records} records, median of {runs}: wall {:.3} s ({:.2} µs/record), \
         CPU {:.3} s ({:.2} µs/record)",
        wall.as_secs_f64(),
        wall.as_secs_f64() * 1e6 / records as f64,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / records as f64,
    );
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let trusted = args
        .next()
        .unwrap_or(Ok(1_000_000))
        .map_err(|e| e.to_string())?;
    let verified = args
        .next()
        .unwrap_or(Ok(100_000))
        .map_err(|e| e.to_string())?;
    let runs = args.next().unwrap_or(Ok(5)).map_err(|e| e.to_string())? as usize;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;

    let path = dir.path().join("trusted.log");
    write_log(&path, (0..trusted).map(fake_dat))?;
    let bytes = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
    println!("trusted log: {bytes} bytes");
    time_recovery("trusted", &path, &RecoverOptions::default(), runs, trusted);

    let owner = Keypair::from_seed(&[1; 32]);
    let path = dir.path().join("verified.log");
    write_log(
        &path,
        (0..verified).map(|i| {
            make_dat_single(
                &owner,
                &key(i),
                &[(i % 256) as u8; VALUE_BYTES],
                1_700_000_000_000,
                0,
            )
        }),
    )?;
    let verify = RecoverOptions {
        verify: Some(VerifyOnLoad {
            min_work_bits: 0,
            now_ms: i64::MAX,
        }),
    };
    time_recovery(
        "trusted (signed log)",
        &path,
        &RecoverOptions::default(),
        runs,
        verified,
    );
    time_recovery("verified", &path, &verify, runs, verified);
    Ok(())
}
