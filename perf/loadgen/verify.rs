//! `verify`: the dat-verification rate (work + Ed25519, single or batched) on N threads, no
//! network: the ceiling for stored PUTs on the same cores.

use std::thread;
use std::time::Instant;

use clap::{Args, ValueEnum};
use dave::pow::{KeyCache, SignatureCheck, check_work, verify_signatures};
use dave::wire::Dat;
use serde_json::{Value, json};

use crate::Result;
use crate::net::{check_duration, own_cpu_seconds, round3};
use crate::records::{RecordArgs, prepare};

#[derive(Args, Debug, Clone)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) records: RecordArgs,
    /// Verifying threads.
    #[arg(long, default_value_t = 2)]
    pub(crate) threads: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) duration: f64,
    /// Single or batched signatures.
    #[arg(long, value_enum, default_value_t = VerifyMode::Single)]
    pub(crate) mode: VerifyMode,
    /// Dats per batch in batch mode.
    #[arg(long, default_value_t = 64)]
    pub(crate) batch: usize,
    /// Owner keys kept decoded per thread (`dave::pow::KeyCache` slots, as each of the node's
    /// verification permits holds 4096); 0, the default, decodes every key: the plain batched
    /// verification rate the issue compares stored PUTs with.
    #[arg(long, default_value_t = 0)]
    pub(crate) key_cache: usize,
    /// Distinct records cycled over.
    #[arg(long, default_value_t = 4096)]
    pub(crate) distinct: usize,
}

/// Signature verification mode for `verify`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerifyMode {
    Single,
    Batch,
}

pub(crate) fn run_verify(v: &VerifyArgs) -> Result<Value> {
    let duration = check_duration(v.duration)?;
    if v.threads == 0 || v.threads > 64 || v.batch == 0 || v.batch > 1024 {
        return Err("--threads must be 1..=64 and --batch 1..=1024".into());
    }
    let mut r = v.records.clone();
    r.records = r.records.max(v.distinct);
    let set = prepare(&r)?;
    let dats: Vec<&[u8]> = set.puts[..v.distinct.min(set.puts.len())]
        .iter()
        .map(|p| &p[3..])
        .collect();
    let now_ms = dave::time::unix_now_ms();
    let bits = v.records.work_bits;
    let mode = match v.mode {
        VerifyMode::Single => SignatureCheck::Single,
        VerifyMode::Batch => SignatureCheck::Batch,
    };
    let batch = if mode == SignatureCheck::Single {
        1
    } else {
        v.batch
    };
    let key_slots = v.key_cache;
    let t0 = Instant::now();
    let cpu0 = own_cpu_seconds();
    let per_thread: Vec<u64> = thread::scope(|s| {
        let hs: Vec<_> = (0..v.threads)
            .map(|t| {
                let dats = &dats;
                s.spawn(move || {
                    let mut done = 0u64;
                    let mut i = t * 997;
                    let mut ok = vec![false; batch];
                    let mut views = Vec::with_capacity(batch);
                    let mut keys = KeyCache::new(key_slots, 0);
                    while t0.elapsed() < duration {
                        views.clear();
                        for _ in 0..batch {
                            let view = Dat::new_unchecked(dats[i % dats.len()]);
                            i += 1;
                            if check_work(&view, bits, now_ms).is_ok() {
                                views.push(view);
                            }
                        }
                        verify_signatures(&views, mode, &mut ok, &mut keys);
                        done += ok[..views.len()].iter().filter(|&&o| o).count() as u64;
                    }
                    done
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu0;
    let total: u64 = per_thread.iter().sum();
    Ok(json!({
        "mode": format!("{:?}", v.mode).to_lowercase(),
        "threads": v.threads,
        "batch": batch,
        "key_cache": v.key_cache,
        "verified": total,
        "seconds": round3(secs),
        "verified_per_s": (total as f64 / secs).round(),
                "us_per_dat_per_thread": round3(1e6 * secs * v.threads as f64 / total.max(1) as f64),
        "cpu_us_per_dat": round3(1e6 * cpu / total.max(1) as f64),
    }))
}
