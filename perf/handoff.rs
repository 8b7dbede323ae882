//! `handoff`: a model of the receiver → shard-owner hand-off, to measure what the node cannot
//! yet be switched to: handing over *whole receive batches* (one channel message per owner per
//! `recvmmsg` batch) instead of *single packets* (one channel message per datagram, as
//! `node.rs` does today).
//!
//! One producer thread plays a receiver: it makes batches of 32 GET-sized messages (the
//! `OwnerMsg::Get` layout: source address, pubkey, key length, 255-byte key array), each for a
//! random one of 256 shards, and hands them to `--owners` consumer threads (shard `s` to owner
//! `s % owners`) over bounded crossbeam channels with `try_send` (a full channel drops, as the
//! node does). Consumers block in `recv` and touch each message. Modes:
//!
//! - `single`: one channel message per packet (`bounded(depth)` of messages);
//! - `batch`: per receive batch, one `Vec` per owner that has packets in it (`bounded(depth/8)`
//!   of vectors; emptied vectors come back over a return channel, so nothing is allocated in
//!   the steady state).
//!
//! Reports messages delivered per second, drops, and CPU nanoseconds (whole process, from
//! /proc/self/stat) per delivered message: the hand-off's cost without any shard work, which is
//! what the owner path adds to a GET. Bounded by `--duration`.
//!
//! ```text
//! target/release/examples/handoff --owners 256 --mode single --duration 2
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use serde_json::json;

/// Packets per simulated receive batch (the node's `recvmmsg` batch).
const RECV_BATCH: usize = 32;
/// Shards, as in the node.
const SHARDS: usize = 256;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Single,
    Batch,
}

#[derive(Parser, Debug)]
#[command(about = "Model of the receiver-to-owner hand-off: single packets vs whole batches")]
struct Args {
    /// Consumer (owner) threads.
    #[arg(long, default_value_t = 256)]
    owners: usize,
    /// Hand-off granularity.
    #[arg(long, value_enum, default_value_t = Mode::Single)]
    mode: Mode,
    /// Channel depth per owner, in packets (the node's shard_channel_depth).
    #[arg(long, default_value_t = 64)]
    depth: usize,
    /// Seconds to run (at most 60).
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Packets per second offered by the producer (0 = as fast as it can).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

/// The node's `OwnerMsg::Get` payload.
#[derive(Clone, Copy)]
struct Msg {
    from: SocketAddr,
    pubkey: [u8; 32],
    key_len: u8,
    key: [u8; 255],
}

fn main() {
    let args = Args::parse();
    if args.owners == 0 || args.owners > SHARDS || !(args.duration > 0.0 && args.duration <= 60.0) {
        eprintln!("handoff: --owners must be 1..=256 and --duration in (0, 60]");
        std::process::exit(2);
    }
    let duration = Duration::from_secs_f64(args.duration);
    let delivered = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let (offered, dropped) = match args.mode {
        Mode::Single => run_single(&args, duration, &delivered, &stop),
        Mode::Batch => run_batch(&args, duration, &delivered, &stop),
    };
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let delivered = delivered.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "owners": args.owners,
            "depth": args.depth,
            "offered": offered,
            "delivered": delivered,
            "dropped": dropped,
            "delivered_per_s": (delivered as f64 / secs).round(),
            "cpu_ns_per_delivered": (cpu * 1e9 / delivered.max(1) as f64).round(),
            "cpu_cores": (cpu / secs * 1000.0).round() / 1000.0,
        })
    );
}

/// A cheap deterministic shard sequence (xorshift).
struct Shards(u64);

impl Shards {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 56) as usize % SHARDS
    }
}

fn msg(shard: usize) -> Msg {
    Msg {
        from: SocketAddr::from(([127, 0, 0, 10], 40_000)),
        pubkey: [shard as u8; 32],
        key_len: 8,
        key: [7; 255],
    }
}

fn touch(m: &Msg) -> u64 {
    u64::from(m.pubkey[0]) + u64::from(m.key[m.key_len as usize]) + u64::from(m.from.port())
}

/// Paces the producer: sleeps until `produced` packets are due at `rate`.
fn pace(rate: f64, t0: Instant, produced: u64) {
    if rate <= 0.0 {
        return;
    }
    let due = Duration::from_secs_f64(produced as f64 / rate);
    let now = t0.elapsed();
    if due > now {
        thread::sleep(due - now);
    }
}

fn run_single(
    args: &Args,
    duration: Duration,
    delivered: &AtomicU64,
    stop: &AtomicBool,
) -> (u64, u64) {
    let (txs, rxs): (Vec<Sender<Msg>>, Vec<Receiver<Msg>>) =
        (0..args.owners).map(|_| bounded(args.depth)).unzip();
    thread::scope(|s| {
        for rx in rxs {
            s.spawn(move || {
                let mut sum = 0u64;
                let mut n = 0u64;
                while let Ok(m) = rx.recv() {
                    sum = sum.wrapping_add(touch(&m));
                    n += 1;
                    if n.is_multiple_of(1024) {
                        delivered.fetch_add(1024, Ordering::Relaxed);
                    }
                }
                delivered.fetch_add(n % 1024, Ordering::Relaxed);
                std::hint::black_box(sum);
            });
        }
        let mut shards = Shards(0x9e37_79b9_7f4a_7c15);
        let (mut offered, mut dropped) = (0u64, 0u64);
        let t0 = Instant::now();
        while t0.elapsed() < duration && !stop.load(Ordering::Relaxed) {
            for _ in 0..RECV_BATCH {
                let shard = shards.next();
                match txs[shard % args.owners].try_send(msg(shard)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => dropped += 1,
                }
            }
            offered += RECV_BATCH as u64;
            pace(args.rate, t0, offered);
        }
        drop(txs);
        (offered, dropped)
    })
}

fn run_batch(
    args: &Args,
    duration: Duration,
    delivered: &AtomicU64,
    stop: &AtomicBool,
) -> (u64, u64) {
    let depth = (args.depth / 8).max(1);
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    let mut pools = Vec::new();
    for _ in 0..args.owners {
        let (tx, rx) = bounded::<Vec<Msg>>(depth);
        let (back_tx, back_rx) = bounded::<Vec<Msg>>(depth + 2);
        txs.push(tx);
        rxs.push((rx, back_tx));
        pools.push(back_rx);
    }
    thread::scope(|s| {
        for (rx, back) in rxs {
            s.spawn(move || {
                let mut sum = 0u64;
                let mut n = 0u64;
                while let Ok(mut v) = rx.recv() {
                    for m in &v {
                        sum = sum.wrapping_add(touch(m));
                    }
                    n += v.len() as u64;
                    v.clear();
                    let _ = back.try_send(v); // recycled; if the pool is full, freed
                    if n >= 1024 {
                        delivered.fetch_add(n, Ordering::Relaxed);
                        n = 0;
                    }
                }
                delivered.fetch_add(n, Ordering::Relaxed);
                std::hint::black_box(sum);
            });
        }
        let mut shards = Shards(0x9e37_79b9_7f4a_7c15);
        let (mut offered, mut dropped) = (0u64, 0u64);
        // Per owner: the vector being filled for the current receive batch.
        let mut filling: Vec<Option<Vec<Msg>>> = (0..args.owners).map(|_| None).collect();
        let mut touched: Vec<usize> = Vec::with_capacity(RECV_BATCH);
        let t0 = Instant::now();
        while t0.elapsed() < duration && !stop.load(Ordering::Relaxed) {
            for _ in 0..RECV_BATCH {
                let shard = shards.next();
                let o = shard % args.owners;
                let v = filling[o].get_or_insert_with(|| {
                    touched.push(o);
                    pools[o]
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(RECV_BATCH))
                });
                v.push(msg(shard));
            }
            for &o in &touched {
                if let Some(v) = filling[o].take() {
                    let n = v.len() as u64;
                    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                        txs[o].try_send(v)
                    {
                        dropped += n;
                    }
                }
            }
            touched.clear();
            offered += RECV_BATCH as u64;
            pace(args.rate, t0, offered);
        }
        drop(txs);
        (offered, dropped)
    })
}

/// CPU seconds of this process so far (all threads, finished ones included).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
