//! `prepare`: valid records (proof of work, signed) computed once on every core and cached under
//! `perf/out/`, so a benchmark measures the node's verification, never the generator's work search.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Instant;

use clap::Args;
use dave::Keypair;
use dave::limits::MAX_PACKET_LEN;
use dave::pow::make_dat_single;
use dave::wire::{Dat, GetRepr, Message};

use crate::Result;

/// Magic and version of the record cache files.
pub(crate) const CACHE_MAGIC: &[u8; 8] = b"DAVEREC1";

#[derive(Args, Debug, Clone)]
pub(crate) struct RecordArgs {
    /// Records to have in the cache.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) records: usize,
    /// Proof-of-work bits: the node's --min-work-bits (verification cost does not depend on it).
    #[arg(long, default_value_t = 8)]
    pub(crate) work_bits: u32,
    /// Key bytes (4..=255). 8 with --value-len 2 makes a 168-byte GET_ACK and a 42-byte GET.
    #[arg(long, default_value_t = 8)]
    pub(crate) key_len: usize,
    /// Value bytes.
    #[arg(long, default_value_t = 2)]
    pub(crate) value_len: usize,
    /// Distinct owners (key pairs) the records are signed by.
    #[arg(long, default_value_t = 64)]
    pub(crate) owners: usize,
    /// Seed of the owners' keys.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Cache directory.
    #[arg(long, default_value = "perf/out")]
    pub(crate) cache_dir: PathBuf,
}

/// Cached records as ready-to-send datagrams.
pub(crate) struct RecordSet {
    /// `PUT` datagrams.
    pub(crate) puts: Vec<Box<[u8]>>,
    /// `GET` datagrams for the same records.
    pub(crate) gets: Vec<Box<[u8]>>,
}

pub(crate) fn cache_path(a: &RecordArgs, count: usize) -> PathBuf {
    a.cache_dir.join(format!(
        "records-n{count}-w{}-k{}-v{}-o{}-s{}.bin",
        a.work_bits, a.key_len, a.value_len, a.owners, a.seed
    ))
}

/// The record key for index `i`: `i` little-endian in the first `min(8, K)` bytes, then `k`s.
pub(crate) fn key_for(i: usize, key_len: usize) -> Vec<u8> {
    let mut key = vec![b'k'; key_len];
    let n = key_len.min(8);
    key[..n].copy_from_slice(&(i as u64).to_le_bytes()[..n]);
    key
}

/// The index a key encodes (see [`key_for`]).
pub(crate) fn index_of_key(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(bytes)
}

pub(crate) fn owner_keys(a: &RecordArgs) -> Vec<Keypair> {
    (0..a.owners)
        .map(|o| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&a.seed.to_le_bytes());
            seed[8..16].copy_from_slice(&(o as u64).to_le_bytes());
            seed[16..20].copy_from_slice(b"perf");
            Keypair::from_seed(&seed)
        })
        .collect()
}

pub(crate) fn check_record_args(a: &RecordArgs) -> Result<()> {
    if !(4..=255).contains(&a.key_len) {
        return Err("--key-len must be 4..=255".into());
    }
    if a.key_len + a.value_len > dave::limits::MAX_KEY_VALUE_LEN {
        return Err("--key-len + --value-len must be at most 1266".into());
    }
    if a.owners == 0 || a.records == 0 {
        return Err("--owners and --records must be positive".into());
    }
    if a.key_len < 8 && (a.records as u64) >= 1u64 << (8 * a.key_len) {
        return Err("--key-len too short to number that many records".into());
    }
    if a.work_bits > 24 {
        return Err("--work-bits above 24 would take hours to prepare; the node's verification cost does not depend on it".into());
    }
    Ok(())
}

/// Loads the cache (any file with the same parameters and at least `a.records` records), or
/// computes it on every core and writes it.
pub(crate) fn prepare(a: &RecordArgs) -> Result<RecordSet> {
    check_record_args(a)?;
    fs::create_dir_all(&a.cache_dir).map_err(|e| format!("{}: {e}", a.cache_dir.display()))?;
    if let Some(path) = find_cache(a)? {
        return load_cache(&path, a);
    }
    let started = Instant::now();
    let owners = owner_keys(a);
    let time_ms = dave::time::unix_now_ms() - 60_000;
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "loadgen: computing {} records at {} work bits on {threads} threads (cached afterwards)",
        a.records, a.work_bits
    );
    let mut dats: Vec<Box<[u8]>> = vec![Box::default(); a.records];
    thread::scope(|s| {
        for (t, chunk) in dats.chunks_mut(a.records.div_ceil(threads)).enumerate() {
            let owners = &owners;
            let start = t * a.records.div_ceil(threads);
            s.spawn(move || {
                for (j, slot) in chunk.iter_mut().enumerate() {
                    let i = start + j;
                    let key = key_for(i, a.key_len);
                    let value: Vec<u8> = (0..a.value_len).map(|b| (i + b) as u8).collect();
                    let dat = make_dat_single(
                        &owners[i % owners.len()],
                        &key,
                        &value,
                        time_ms,
                        a.work_bits,
                    );
                    *slot = dat.into_inner();
                }
            });
        }
    });
    let path = cache_path(a, a.records);
    let mut out = Vec::with_capacity(a.records * (170 + a.key_len + a.value_len));
    out.extend_from_slice(CACHE_MAGIC);
    out.extend_from_slice(&(a.records as u64).to_le_bytes());
    for dat in &dats {
        out.extend_from_slice(&(dat.len() as u16).to_le_bytes());
        out.extend_from_slice(dat);
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, &out).map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "loadgen: wrote {} ({} records) in {:.1?}",
        path.display(),
        a.records,
        started.elapsed()
    );
    Ok(build_set(dats))
}

pub(crate) fn find_cache(a: &RecordArgs) -> Result<Option<PathBuf>> {
    let exact = cache_path(a, a.records);
    if exact.exists() {
        return Ok(Some(exact));
    }
    let suffix = format!(
        "-w{}-k{}-v{}-o{}-s{}.bin",
        a.work_bits, a.key_len, a.value_len, a.owners, a.seed
    );
    let entries = fs::read_dir(&a.cache_dir).map_err(|e| e.to_string())?;
    let mut best: Option<(usize, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(count) = name
            .strip_prefix("records-n")
            .and_then(|r| r.strip_suffix(&suffix))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if count >= a.records && best.as_ref().is_none_or(|(c, _)| count < *c) {
            best = Some((count, entry.path()));
        }
    }
    Ok(best.map(|(_, p)| p))
}

pub(crate) fn load_cache(path: &Path, a: &RecordArgs) -> Result<RecordSet> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = || {
        format!(
            "{}: not a record cache (delete it to rebuild)",
            path.display()
        )
    };
    if bytes.len() < 16 || &bytes[..8] != CACHE_MAGIC {
        return Err(bad());
    }
    let count = u64::from_le_bytes(bytes[8..16].try_into().map_err(|_| bad())?) as usize;
    let mut at = 16;
    let mut dats = Vec::with_capacity(a.records);
    for _ in 0..count.min(a.records) {
        let len = u16::from_le_bytes(
            bytes
                .get(at..at + 2)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        ) as usize;
        let dat = bytes.get(at + 2..at + 2 + len).ok_or_else(bad)?;
        let view = Dat::new_checked(dat).map_err(|_| bad())?;
        if dave::pow::leading_zero_bits(view.work()) < a.work_bits {
            return Err(bad());
        }
        dats.push(Box::<[u8]>::from(dat));
        at += 2 + len;
    }
    Ok(build_set(dats))
}

pub(crate) fn build_set(dats: Vec<Box<[u8]>>) -> RecordSet {
    let mut puts = Vec::with_capacity(dats.len());
    let mut gets = Vec::with_capacity(dats.len());
    let mut buf = [0u8; MAX_PACKET_LEN];
    for dat in &dats {
        let view = Dat::new_unchecked(&dat[..]);
        let n = Message::Put(view).emit(&mut buf);
        puts.push(Box::<[u8]>::from(&buf[..n]));
        let n = Message::Get(GetRepr {
            pubkey: view.pubkey(),
            key: view.key(),
        })
        .emit(&mut buf);
        gets.push(Box::<[u8]>::from(&buf[..n]));
    }
    RecordSet { puts, gets }
}
