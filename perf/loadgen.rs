//! `loadgen`: drives a running dave node (or `echo_baseline`) over UDP on loopback and reports
//! ops/s, loss and latency percentiles (hdrhistogram), as text or JSON (`--json`).
//!
//! Subcommands (all bounded by `--duration` and `--count`):
//!
//! - `prepare`: computes valid records (proof of work at `--work-bits`, signed) once and caches
//!   them under `perf/out/` keyed by count, bits, key and value sizes, so a benchmark measures
//!   the node's *verification*, never the generator's work search.
//! - `get`: GETs for existing keys with `--in-flight` requests outstanding (closed loop), or at
//!   `--rate` per second (open loop; latency from the intended send time, so a stall is not
//!   hidden). It first PUTs the keys into the node and checks that every one is found.
//! - `put`: PUTs of fresh valid records at `--rate` (or as fast as possible with `--rate 0`);
//!   PUTs have no reply, so stored/s and loss come from the node's counters (`--stats-addr`).
//! - `mixed`: GETs in flight and PUTs at a fixed rate together.
//! - `flood`: a well-behaved GET client measures its rate alone, then again while other sockets
//!   flood the node at `--multiplier` x `--capacity` (forged PUTs by default: valid work, wrong
//!   signature, so each costs the node a full verification); drops are reported by reason.
//! - `verify`: the dat-verification rate (work + Ed25519, single or batched) on `--threads`
//!   threads: the ceiling for stored PUTs on the same cores.
//! - `stats`: prints the node's counters (`node_server`'s stats socket) as JSON.
//! - `summarize`: medians (and per-run ratios) of a JSONL file of results written by `--json`.
//!
//! Replies are matched to requests by their key: a GET_ACK carries the dat's key, and
//! `echo_baseline` copies the request to the start of its reply. Each client is one thread with
//! its own socket on its own 127.0.0.x source address (so the node's SO_REUSEPORT hash spreads
//! clients over its receiver sockets), using the same `recvmmsg`/`sendmmsg` batches as the node.
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/loadgen get --target 127.0.0.1:7000 --stats-addr 127.0.0.1:7999 --in-flight 128
//! ```
//! See `perf/README.md` and `perf/run_bench.sh`.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use dave::Keypair;
use dave::limits::MAX_PACKET_LEN;
use dave::net::{BATCH, RecvBatch, SendBatch, SocketOptions, bind_udp};
use dave::pow::{SignatureCheck, check_work, make_dat_single, verify_signatures};
use dave::wire::{Dat, GetRepr, Message, PongRepr, pong_signed_hash};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Longest run any subcommand accepts: every loop here is bounded in time.
const MAX_DURATION_S: f64 = 600.0;
/// Largest latency the histograms hold (60 s, in ns).
const HIST_MAX_NS: u64 = 60_000_000_000;
/// Rounds of re-PUTting keys a GET run tolerates before giving up on loading them.
const LOAD_ROUNDS: usize = 4;
/// Magic and version of the record cache files.
const CACHE_MAGIC: &[u8; 8] = b"DAVEREC1";

#[derive(Parser, Debug)]
#[command(about = "Load generator for a dave node (see perf/README.md)")]
struct Cli {
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Free-form label copied into the JSON (for `summarize`).
    #[arg(long, global = true, default_value = "")]
    tag: String,
    /// Run number copied into the JSON (for per-run ratios in `summarize`).
    #[arg(long, global = true, default_value_t = 0)]
    run: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compute and cache valid records.
    Prepare(RecordArgs),
    /// GET existing keys (closed loop with --in-flight, or open loop with --rate).
    Get(GetArgs),
    /// PUT fresh valid records at a fixed rate or as fast as possible.
    Put(PutArgs),
    /// GETs in flight plus PUTs at a fixed rate.
    Mixed(MixedArgs),
    /// A GET client alone, then during a flood of several times capacity.
    Flood(FloodArgs),
    /// Dat verification rate on N threads (no network).
    Verify(VerifyArgs),
    /// Print the node's counters.
    Stats(StatsArgs),
    /// Medians of a JSONL results file.
    Summarize(SummarizeArgs),
}

#[derive(Args, Debug, Clone)]
struct RecordArgs {
    /// Records to have in the cache.
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// Proof-of-work bits: the node's --min-work-bits (verification cost does not depend on it).
    #[arg(long, default_value_t = 8)]
    work_bits: u32,
    /// Key bytes (4..=255). 8 with --value-len 2 makes a 168-byte GET_ACK and a 42-byte GET.
    #[arg(long, default_value_t = 8)]
    key_len: usize,
    /// Value bytes.
    #[arg(long, default_value_t = 2)]
    value_len: usize,
    /// Distinct owners (key pairs) the records are signed by.
    #[arg(long, default_value_t = 64)]
    owners: usize,
    /// Seed of the owners' keys.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cache directory.
    #[arg(long, default_value = "perf/out")]
    cache_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
struct NetArgs {
    /// The node (or echo_baseline) to drive.
    #[arg(long, default_value = "127.0.0.1:7000")]
    target: SocketAddr,
    /// node_server's stats socket, for the node's counters (PUT stored/s, drops by reason).
    #[arg(long)]
    stats_addr: Option<SocketAddr>,
    /// PID of the server, to report CPU time per thread kind from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds of load (at most 600).
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Most operations to send in total.
    #[arg(long, default_value_t = 50_000_000)]
    count: u64,
    /// First client source address; client c binds 127.0.0.(base + c).
    #[arg(long, default_value = "127.0.0.10")]
    source_base: Ipv4Addr,
    /// A request unanswered for this long is counted lost.
    #[arg(long, default_value_t = 200)]
    timeout_ms: u64,
}

#[derive(Args, Debug, Clone)]
struct GetArgs {
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    records: RecordArgs,
    /// Keys to load and GET.
    #[arg(long, default_value_t = 4096)]
    keys: usize,
    /// Requests outstanding in total (split over clients). Ignored with --rate.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Open loop: GETs per second in total (0 = closed loop with --in-flight).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Client threads, each with its own socket (default: 1 for --in-flight 1, else 4).
    #[arg(long)]
    clients: Option<usize>,
    /// Do not PUT the keys first (for echo_baseline, or a node already loaded).
    #[arg(long)]
    skip_load: bool,
    /// Do not become a proven peer first (for echo_baseline; a dave node then limits replies
    /// to the clients with its amplification budget).
    #[arg(long)]
    no_handshake: bool,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 0.3)]
    warmup: f64,
}

#[derive(Args, Debug, Clone)]
struct PutArgs {
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    records: RecordArgs,
    /// PUTs per second in total; 0 = as fast as the clients can send.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// First record sent (records before it are, e.g., GET keys).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Longest wait for the node to finish the queued PUTs after sending stops.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
}

#[derive(Args, Debug, Clone)]
struct MixedArgs {
    #[command(flatten)]
    get: GetArgs,
    /// PUTs per second alongside the GETs.
    #[arg(long, default_value_t = 5_000.0)]
    put_rate: f64,
}

/// What a flood sends.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum FloodKind {
    /// PUTs with valid work and a signature by another owner: each costs a full verification.
    ForgedPut,
    /// Valid PUTs, cycling over cached records (repeats are duplicates).
    ValidPut,
    /// GETs for loaded keys.
    Get,
}

#[derive(Args, Debug, Clone)]
struct FloodArgs {
    #[command(flatten)]
    get: GetArgs,
    /// The node's capacity for this kind of datagram, per second (e.g. measured PUT stored/s).
    #[arg(long, default_value_t = 40_000.0)]
    capacity: f64,
    /// Flood rate = multiplier x capacity.
    #[arg(long, default_value_t = 5.0)]
    multiplier: f64,
    /// What the flood sends.
    #[arg(long, value_enum, default_value_t = FloodKind::ForgedPut)]
    kind: FloodKind,
    /// Flood sockets (threads), on addresses after the GET clients'.
    #[arg(long, default_value_t = 2)]
    flood_clients: usize,
}

#[derive(Args, Debug, Clone)]
struct VerifyArgs {
    #[command(flatten)]
    records: RecordArgs,
    /// Verifying threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Single or batched signatures.
    #[arg(long, value_enum, default_value_t = VerifyMode::Single)]
    mode: VerifyMode,
    /// Dats per batch in batch mode.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Distinct records cycled over.
    #[arg(long, default_value_t = 4096)]
    distinct: usize,
}

/// Signature verification mode for `verify`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum VerifyMode {
    Single,
    Batch,
}

#[derive(Args, Debug, Clone)]
struct StatsArgs {
    /// node_server's stats socket.
    #[arg(long, default_value = "127.0.0.1:7999")]
    stats_addr: SocketAddr,
    /// Keep asking for this many seconds until the node answers (readiness check).
    #[arg(long, default_value_t = 0.0)]
    wait: f64,
}

#[derive(Args, Debug, Clone)]
struct SummarizeArgs {
    /// JSONL file written by runs with --json --tag --run.
    file: PathBuf,
    /// Ratios to report, as NUMTAG[:metric]/DENTAG[:metric] (metric default ops_per_s): the
    /// median of the per-run ratios.
    #[arg(long)]
    ratio: Vec<String>,
    /// Print JSON instead of a markdown table.
    #[arg(long)]
    json_out: bool,
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Prepare(a) => prepare(a).map(|set| {
            json!({"records": set.puts.len(), "work_bits": a.work_bits, "file": cache_path(a, a.records).display().to_string()})
        }),
        Command::Get(a) => run_get(a),
        Command::Put(a) => run_put(a),
        Command::Mixed(a) => run_mixed(a),
        Command::Flood(a) => run_flood(a),
        Command::Verify(a) => run_verify(a),
        Command::Stats(a) => run_stats(a),
        Command::Summarize(a) => match summarize(a) {
            Ok(()) => return,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(mut report) => {
            if let Value::Object(map) = &mut report {
                map.insert("tag".into(), json!(cli.tag));
                map.insert("run".into(), json!(cli.run));
                map.insert("command".into(), json!(command_name(&cli.command)));
            }
            if cli.json {
                println!("{report}");
            } else {
                print_text(&report, 0);
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Prepare(_) => "prepare",
        Command::Get(_) => "get",
        Command::Put(_) => "put",
        Command::Mixed(_) => "mixed",
        Command::Flood(_) => "flood",
        Command::Verify(_) => "verify",
        Command::Stats(_) => "stats",
        Command::Summarize(_) => "summarize",
    }
}

type Result<T> = std::result::Result<T, String>;

// ---------------------------------------------------------------------------------------------
// Records: computed once, cached on disk.
// ---------------------------------------------------------------------------------------------

/// Cached records as ready-to-send datagrams.
struct RecordSet {
    /// `PUT` datagrams.
    puts: Vec<Box<[u8]>>,
    /// `GET` datagrams for the same records.
    gets: Vec<Box<[u8]>>,
}

fn cache_path(a: &RecordArgs, count: usize) -> PathBuf {
    a.cache_dir.join(format!(
        "records-n{count}-w{}-k{}-v{}-o{}-s{}.bin",
        a.work_bits, a.key_len, a.value_len, a.owners, a.seed
    ))
}

/// The record key for index `i`: `i` little-endian in the first `min(8, K)` bytes, then `k`s.
fn key_for(i: usize, key_len: usize) -> Vec<u8> {
    let mut key = vec![b'k'; key_len];
    let n = key_len.min(8);
    key[..n].copy_from_slice(&(i as u64).to_le_bytes()[..n]);
    key
}

/// The index a key encodes (see [`key_for`]).
fn index_of_key(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(bytes)
}

fn owner_keys(a: &RecordArgs) -> Vec<Keypair> {
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

fn check_record_args(a: &RecordArgs) -> Result<()> {
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
fn prepare(a: &RecordArgs) -> Result<RecordSet> {
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

fn find_cache(a: &RecordArgs) -> Result<Option<PathBuf>> {
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

fn load_cache(path: &Path, a: &RecordArgs) -> Result<RecordSet> {
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

fn build_set(dats: Vec<Box<[u8]>>) -> RecordSet {
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

// ---------------------------------------------------------------------------------------------
// Sockets, node counters, /proc.
// ---------------------------------------------------------------------------------------------

fn client_addr(base: Ipv4Addr, c: usize) -> Result<SocketAddr> {
    let o = base.octets();
    let last = o[3] as usize + c;
    if o[0] != 127 || last > 254 {
        return Err(format!(
            "client {c}: source {base} + {c} is not a 127.0.0.x address"
        ));
    }
    Ok(SocketAddr::from(([o[0], o[1], o[2], last as u8], 0)))
}

fn client_socket(base: Ipv4Addr, c: usize, read_timeout: Duration) -> Result<UdpSocket> {
    let addr = client_addr(base, c)?;
    let options = SocketOptions {
        reuse_port: false,
        read_timeout,
        ..SocketOptions::default()
    };
    bind_udp(addr, &options).map_err(|e| format!("bind {addr}: {e}"))
}

fn check_target(target: SocketAddr) -> Result<()> {
    match target {
        SocketAddr::V4(v4) if v4.ip().octets()[0] == 127 => Ok(()),
        _ => Err(format!("--target {target}: load goes to 127.0.0.x only")),
    }
}

fn check_duration(d: f64) -> Result<Duration> {
    if !(d > 0.0 && d <= MAX_DURATION_S) {
        return Err(format!("--duration must be in (0, {MAX_DURATION_S}]"));
    }
    Ok(Duration::from_secs_f64(d))
}

/// Asks node_server's stats socket for its counters.
fn query_stats(addr: SocketAddr) -> Option<Value> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    let mut buf = vec![0u8; 65_536];
    for _ in 0..3 {
        socket.send_to(b"stats", addr).ok()?;
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            return serde_json::from_slice(&buf[..n]).ok();
        }
    }
    None
}

fn counter(stats: &Option<Value>, name: &str) -> u64 {
    stats
        .as_ref()
        .and_then(|s| s["stats"][name].as_u64())
        .unwrap_or(0)
}

/// Counters that changed between two snapshots.
fn stats_delta(before: &Option<Value>, after: &Option<Value>) -> Value {
    let (Some(b), Some(a)) = (before, after) else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    if let (Some(bm), Some(am)) = (b["stats"].as_object(), a["stats"].as_object()) {
        for (k, av) in am {
            let (Some(av), Some(bv)) = (av.as_u64(), bm.get(k).and_then(Value::as_u64)) else {
                continue;
            };
            if av != bv {
                out.insert(k.clone(), json!(av as i64 - bv as i64));
            }
        }
    }
    Value::Object(out)
}

/// Datagrams the kernel dropped on sockets bound to `port` (the `drops` column of
/// /proc/net/udp): receive-buffer overflows the node itself cannot see.
fn kernel_drops(port: u16) -> u64 {
    let Ok(table) = fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let local = f.nth(1)?;
            if !local.ends_with(&want) {
                return None;
            }
            line.split_whitespace().last()?.parse::<u64>().ok()
        })
        .sum()
}

/// CPU seconds used so far by each kind of thread of `pid` (thread names without their index:
/// `dave-rx`, `dave-shard`, ...), from the scheduler's exact run time (`schedstat`, ns); the
/// tick-sampled times of `stat` undercount threads that run in short bursts.
fn thread_cpu(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(comm), Ok(sched)) = (
            fs::read_to_string(path.join("comm")),
            fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        let Some(ns) = sched
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<f64>().ok())
        else {
            continue;
        };
        let kind = comm
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches('-');
        *out.entry(kind.to_string()).or_insert(0.0) += ns / 1e9;
    }
    out
}

/// CPU seconds this process used so far, finished threads included (/proc/self/stat).
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
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

fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, secs: f64) -> Value {
    let mut out = serde_json::Map::new();
    for (k, a) in after {
        let d = a - before.get(k).copied().unwrap_or(0.0);
        if d > 0.0 {
            out.insert(k.clone(), json!(round3(d / secs)));
        }
    }
    Value::Object(out)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Everything observed on the server side around a measured window.
struct ServerProbe {
    stats_addr: Option<SocketAddr>,
    pid: Option<u32>,
    port: u16,
    stats: Option<Value>,
    cpu: BTreeMap<String, f64>,
    kernel_drops: u64,
    /// CPU seconds this process had used at the start.
    own_cpu: f64,
    at: Instant,
}

impl ServerProbe {
    fn start(net: &NetArgs) -> ServerProbe {
        let stats = net.stats_addr.and_then(query_stats);
        ServerProbe {
            stats_addr: net.stats_addr,
            pid: net.server_pid,
            port: net.target.port(),
            cpu: net.server_pid.map(thread_cpu).unwrap_or_default(),
            kernel_drops: kernel_drops(net.target.port()),
            own_cpu: own_cpu_seconds(),
            stats,
            at: Instant::now(),
        }
    }

    /// Counter changes, kernel drops and CPU per thread kind (cores busy) since `start`.
    fn finish(&self) -> (Value, Option<Value>) {
        let secs = self.at.elapsed().as_secs_f64();
        let after = self.stats_addr.and_then(query_stats);
        let cpu_now = self.pid.map(thread_cpu).unwrap_or_default();
        let cpu_seconds: f64 = cpu_now
            .iter()
            .map(|(k, v)| v - self.cpu.get(k).copied().unwrap_or(0.0))
            .sum();
        let cpu = if self.pid.is_some() {
            cpu_delta(&self.cpu, &cpu_now, secs)
        } else {
            Value::Null
        };
        let report = json!({
            "counters": stats_delta(&self.stats, &after),
            "kernel_drops": kernel_drops(self.port).saturating_sub(self.kernel_drops),
                        "cpu_cores": cpu,
            "cpu_seconds": self.pid.map(|_| round3(cpu_seconds)),
            "rss_bytes": after.as_ref().and_then(|a| a["rss_bytes"].as_u64()),
            "loadgen_cpu_cores": round3((own_cpu_seconds() - self.own_cpu) / secs),
        });
        (report, after)
    }
}

// ---------------------------------------------------------------------------------------------
// GET clients.
// ---------------------------------------------------------------------------------------------

/// How a GET client paces itself.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Keep this many requests outstanding.
    Closed(usize),
    /// Send this many per second (latency from the intended send time).
    Open(f64),
}

/// What one client saw.
struct ClientResult {
    sent: u64,
    received: u64,
    found: u64,
    not_found: u64,
    lost: u64,
    unexpected: u64,
    hist: Histogram<u64>,
    secs: f64,
}

impl ClientResult {
    fn new() -> ClientResult {
        ClientResult {
            sent: 0,
            received: 0,
            found: 0,
            not_found: 0,
            lost: 0,
            unexpected: 0,
            hist: new_hist(),
            secs: 0.0,
        }
    }

    fn merge(&mut self, o: &ClientResult) {
        self.sent += o.sent;
        self.received += o.received;
        self.found += o.found;
        self.not_found += o.not_found;
        self.lost += o.lost;
        self.unexpected += o.unexpected;
        self.secs = self.secs.max(o.secs);
        let _ = self.hist.add(&o.hist);
    }

    fn report(&self) -> Value {
        let us = |q: f64| round3(self.hist.value_at_quantile(q) as f64 / 1000.0);
        let answered_or_lost = self.received + self.lost;
        json!({
            "sent": self.sent,
            "received": self.received,
            "found": self.found,
            "not_found": self.not_found,
            "lost": self.lost,
            "unexpected": self.unexpected,
            "seconds": round3(self.secs),
            "ops_per_s": (self.received as f64 / self.secs.max(1e-9)).round(),
            "loss_pct": if answered_or_lost == 0 { 0.0 } else { round3(100.0 * self.lost as f64 / answered_or_lost as f64) },
            "p50_us": us(0.5),
            "p99_us": us(0.99),
            "p999_us": us(0.999),
            "max_us": round3(self.hist.max() as f64 / 1000.0),
        })
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

/// The record index a reply answers, and whether it carried a record: a GET_ACK carries the
/// dat's key; echo_baseline's reply starts with the GET it answers.
fn reply_key(bytes: &[u8]) -> Option<(u64, bool)> {
    match bytes.first()? {
        4 => {
            let dat = Dat::new_checked(bytes.get(3..)?).ok()?;
            Some((index_of_key(dat.key()), !dat.is_not_found()))
        }
        3 => {
            let k = *bytes.get(33)? as usize;
            Some((index_of_key(bytes.get(34..34 + k)?), true))
        }
        _ => None,
    }
}

/// A client's identity as a peer: the node answers GETs from addresses that proved they receive
/// its packets (answered its PING with a valid PONG) without the amplification budget that
/// limits replies to strangers (PROTOCOL.md section 6).
fn client_keypair(c: usize) -> Keypair {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(c as u64).to_le_bytes());
    seed[8..18].copy_from_slice(b"loadgen-id");
    Keypair::from_seed(&seed)
}

/// Answers a PING (`00 ‖ challenge`) from the node with a signed PONG; false if `bytes` is not
/// a PING.
fn answer_ping(socket: &UdpSocket, from: SocketAddr, bytes: &[u8], keypair: &Keypair) -> bool {
    let Ok(Message::Ping { challenge }) = Message::parse(bytes) else {
        return false;
    };
    let salt: [u8; 16] = rand::random();
    let pong = PongRepr {
        addr_count: 0,
        addrs: [[0; 18]; 5],
        challenge,
        salt,
        pubkey: keypair.public(),
        sig: keypair.sign(&pong_signed_hash(&challenge, &salt)),
    };
    let mut buf = [0u8; MAX_PACKET_LEN];
    let n = Message::Pong(pong).emit(&mut buf);
    let _ = socket.send_to(&buf[..n], from);
    true
}

/// Makes the client socket a proven peer of the node: PING it, answer its PING with a PONG.
/// Returns once the node's PING was answered (or after 3 s, with an error).
fn become_peer(socket: &UdpSocket, target: SocketAddr, keypair: &Keypair) -> Result<()> {
    let ping = [0u8, 1, 2, 3, 4, 5, 6, 7, 8];
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut recv = RecvBatch::new();
    let mut last_ping = Instant::now() - Duration::from_secs(1);
    while Instant::now() < deadline {
        if last_ping.elapsed() >= Duration::from_millis(500) {
            socket.send_to(&ping, target).map_err(|e| e.to_string())?;
            last_ping = Instant::now();
        }
        for (bytes, from, _) in (0..recv.recv(socket).unwrap_or(0)).map(|i| recv.datagram(i)) {
            if from == target && answer_ping(socket, from, bytes, keypair) {
                // The node verifies the PONG on its peer thread and publishes the proven set.
                thread::sleep(Duration::from_millis(50));
                return Ok(());
            }
        }
    }
    Err(format!(
        "{target} never sent the PING that would make this client a proven peer"
    ))
}

fn handshake_all(sockets: &[UdpSocket], target: SocketAddr, first: usize) -> Result<Vec<Keypair>> {
    sockets
        .iter()
        .enumerate()
        .map(|(c, s)| {
            let k = client_keypair(first + c);
            become_peer(s, target, &k)?;
            Ok(k)
        })
        .collect()
}

/// One GET client: its own socket, keys `i` with `i % clients == c`.
#[allow(clippy::too_many_arguments)]
fn get_client(
    socket: &UdpSocket,
    keypair: Option<&Keypair>,
    target: SocketAddr,
    gets: &[Box<[u8]>],
    c: usize,
    clients: usize,
    pace: Pace,
    duration: Duration,
    count: u64,
    timeout: Duration,
    stop: &AtomicBool,
) -> ClientResult {
    let slots: Vec<usize> = (c..gets.len()).step_by(clients).collect();
    let mut res = ClientResult::new();
    if slots.is_empty() {
        return res;
    }
    // sent_at[s]: ns since t0 (+1) of the outstanding request for slot s, 0 if none.
    let mut sent_at = vec![0u64; slots.len()];
    let mut fifo: VecDeque<(u32, u64)> = VecDeque::with_capacity(slots.len() * 2);
    let mut send = SendBatch::new();
    let mut recv = RecvBatch::new();
    let mut next_slot = 0usize;
    let mut outstanding = 0usize;
    let timeout_ns = timeout.as_nanos() as u64;
    let t0 = Instant::now();
    let end_ns = duration.as_nanos() as u64;
    let ns = || t0.elapsed().as_nanos() as u64 + 1;
    loop {
        let now = ns();
        if now >= end_ns || stop.load(Ordering::Relaxed) {
            break;
        }
        // How many to send now.
        let want = match pace {
            Pace::Closed(window) => window.saturating_sub(outstanding),
            Pace::Open(rate) => {
                let due = ((now as f64 / 1e9) * rate) as u64 + 1;
                due.saturating_sub(res.sent) as usize
            }
        };
        let want = want.min(count.saturating_sub(res.sent) as usize);
        let mut pushed = 0;
        while pushed < want {
            // Next free slot (bounded scan).
            let mut tries = 0;
            while sent_at[next_slot] != 0 && tries < slots.len() {
                next_slot = (next_slot + 1) % slots.len();
                tries += 1;
            }
            if sent_at[next_slot] != 0 {
                break; // every key outstanding
            }
            let s = next_slot;
            next_slot = (next_slot + 1) % slots.len();
            let stamp = match pace {
                // Open loop: the intended send time, so a stalled sender is not hidden.
                Pace::Open(rate) => ((res.sent as f64 / rate) * 1e9) as u64 + 1,
                Pace::Closed(_) => now,
            };
            if !send.push(target, &gets[slots[s]]) {
                let _ = send.flush(socket);
                send.push(target, &gets[slots[s]]);
            }
            sent_at[s] = stamp;
            fifo.push_back((s as u32, stamp));
            outstanding += 1;
            res.sent += 1;
            pushed += 1;
        }
        if !send.is_empty() {
            let _ = send.flush(socket);
        }
        if res.sent >= count && outstanding == 0 {
            break;
        }
        // Replies.
        let n = recv.recv(socket).unwrap_or(0);
        if n == 0
            && let Pace::Open(rate) = pace
        {
            // Nothing to read: sleep until the next send is due (at most 200 µs).
            let next_ns = ((res.sent as f64 / rate) * 1e9) as u64;
            let now = ns();
            if next_ns > now {
                thread::sleep(Duration::from_nanos((next_ns - now).min(200_000)));
            }
        }
        let now = ns();
        for (bytes, from, _) in recv.iter() {
            let Some((index, found)) = reply_key(bytes) else {
                // The node keeps pinging its peers: stay proven.
                let pinged = keypair.is_some_and(|k| answer_ping(socket, from, bytes, k));
                res.unexpected += u64::from(!pinged);
                continue;
            };
            let index = index as usize;
            if index % clients != c || index / clients >= slots.len() {
                res.unexpected += 1;
                continue;
            }
            let s = index / clients;
            if sent_at[s] == 0 {
                res.unexpected += 1; // late answer to a request already counted lost
                continue;
            }
            res.hist
                .saturating_record(now.saturating_sub(sent_at[s]).max(1));
            sent_at[s] = 0;
            outstanding -= 1;
            res.received += 1;
            if found {
                res.found += 1;
            } else {
                res.not_found += 1;
            }
        }
        // Expire the oldest requests.
        while let Some(&(s, stamp)) = fifo.front() {
            let s = s as usize;
            if sent_at[s] != stamp {
                fifo.pop_front(); // answered
            } else if now.saturating_sub(stamp) > timeout_ns {
                fifo.pop_front();
                sent_at[s] = 0;
                outstanding -= 1;
                res.lost += 1;
            } else {
                break;
            }
        }
    }
    res.secs = t0.elapsed().as_secs_f64();
    res
}

/// Runs `clients` GET clients for `duration` and merges what they saw.
#[allow(clippy::too_many_arguments)]
fn run_get_clients(
    sockets: &[UdpSocket],
    keypairs: &[Keypair],
    target: SocketAddr,
    gets: &[Box<[u8]>],
    pace: Pace,
    duration: Duration,
    count: u64,
    timeout: Duration,
    stop: &AtomicBool,
) -> ClientResult {
    let clients = sockets.len();
    let mut total = ClientResult::new();
    thread::scope(|s| {
        let handles: Vec<_> = sockets
            .iter()
            .enumerate()
            .map(|(c, socket)| {
                let pace = match pace {
                    Pace::Closed(w) => {
                        Pace::Closed((w / clients + usize::from(c < w % clients)).max(1))
                    }
                    Pace::Open(r) => Pace::Open(r / clients as f64),
                };
                let count = count / clients as u64 + u64::from((c as u64) < count % clients as u64);
                let keypair = keypairs.get(c);
                s.spawn(move || {
                    get_client(
                        socket, keypair, target, gets, c, clients, pace, duration, count, timeout,
                        stop,
                    )
                })
            })
            .collect();
        for h in handles {
            if let Ok(r) = h.join() {
                total.merge(&r);
            }
        }
    });
    total
}

fn get_sockets(base: Ipv4Addr, first: usize, n: usize, pace: Pace) -> Result<Vec<UdpSocket>> {
    let read_timeout = Duration::from_millis(1);
    (0..n)
        .map(|c| {
            let s = client_socket(base, first + c, read_timeout)?;
            if let Pace::Open(_) = pace {
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
            }
            Ok(s)
        })
        .collect()
}

/// PUTs the first `keys` records and GETs each until all are found (bounded rounds).
fn load_keys(a: &GetArgs, set: &RecordSet) -> Result<Value> {
    let started = Instant::now();
    let socket = client_socket(a.net.source_base, 0, Duration::from_millis(5))?;
    if !a.no_handshake {
        // Checking every key takes more replies than a stranger's amplification budget allows.
        become_peer(&socket, a.net.target, &client_keypair(0))?;
    }
    let mut missing: Vec<usize> = (0..a.keys).collect();
    for round in 0..LOAD_ROUNDS {
        // PUT the missing ones at a pace the node verifies comfortably.
        let mut batch = SendBatch::new();
        for (j, &i) in missing.iter().enumerate() {
            if !batch.push(a.net.target, &set.puts[i]) {
                let _ = batch.flush(&socket);
                batch.push(a.net.target, &set.puts[i]);
                // ~16k PUTs/s: under any node's verification rate.
                thread::sleep(Duration::from_millis(2));
            }
            if j % 4096 == 4095 {
                thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = batch.flush(&socket);
        thread::sleep(Duration::from_millis(100 + 200 * round as u64));
        // GET every key once and keep those not found.
        let gets: Vec<Box<[u8]>> = set.gets[..a.keys].to_vec();
        let mut found = vec![false; a.keys];
        let mut recv = RecvBatch::new();
        for chunk in missing.chunks(BATCH) {
            for &i in chunk {
                batch.push(a.net.target, &gets[i]);
            }
            let _ = batch.flush(&socket);
            let deadline = Instant::now() + Duration::from_millis(200);
            let mut answered = 0;
            while answered < chunk.len() && Instant::now() < deadline {
                for (bytes, _, _) in (0..recv.recv(&socket).unwrap_or(0)).map(|i| recv.datagram(i))
                {
                    if let Some((index, true)) = reply_key(bytes)
                        && (index as usize) < a.keys
                    {
                        found[index as usize] = true;
                    }
                    answered += 1;
                }
            }
        }
        missing.retain(|&i| !found[i]);
        if missing.is_empty() {
            return Ok(
                json!({"keys": a.keys, "rounds": round + 1, "seconds": round3(started.elapsed().as_secs_f64())}),
            );
        }
    }
    Err(format!(
        "{} of {} keys still not found after {LOAD_ROUNDS} rounds of PUTs: is --work-bits at least the node's min work, and --target a dave node?",
        missing.len(),
        a.keys
    ))
}

/// Makes every GET client a proven peer of the node, unless `--no-handshake`.
fn handshake(a: &GetArgs, sockets: &[UdpSocket]) -> Result<Vec<Keypair>> {
    if a.no_handshake {
        return Ok(Vec::new());
    }
    handshake_all(sockets, a.net.target, 1)
}

fn get_pace(a: &GetArgs) -> Result<(Pace, usize)> {
    let pace = if a.rate > 0.0 {
        Pace::Open(a.rate)
    } else if a.in_flight > 0 {
        Pace::Closed(a.in_flight)
    } else {
        return Err("--in-flight must be positive (or give --rate)".into());
    };
    let clients = a.clients.unwrap_or(if a.in_flight == 1 && a.rate == 0.0 {
        1
    } else {
        4
    });
    if clients == 0 || clients > 64 {
        return Err("--clients must be 1..=64".into());
    }
    if a.keys < clients * 2 || (a.rate == 0.0 && a.keys < a.in_flight * 2) {
        return Err("--keys must be at least twice --in-flight and --clients".into());
    }
    Ok((pace, clients))
}

fn get_records(a: &GetArgs, extra: usize) -> Result<RecordSet> {
    let mut r = a.records.clone();
    r.records = r.records.max(a.keys + extra);
    prepare(&r)
}

fn run_get(a: &GetArgs) -> Result<Value> {
    check_target(a.net.target)?;
    let duration = check_duration(a.net.duration)?;
    let (pace, clients) = get_pace(a)?;
    let set = get_records(a, 0)?;
    let load = if a.skip_load {
        Value::Null
    } else {
        load_keys(a, &set)?
    };
    let sockets = get_sockets(a.net.source_base, 1, clients, pace)?;
    let keypairs = handshake(a, &sockets)?;
    let gets = &set.gets[..a.keys];
    let stop = AtomicBool::new(false);
    let timeout = Duration::from_millis(a.net.timeout_ms);
    if a.warmup > 0.0 {
        let _ = run_get_clients(
            &sockets,
            &keypairs,
            a.net.target,
            gets,
            pace,
            Duration::from_secs_f64(a.warmup.min(5.0)),
            u64::MAX,
            timeout,
            &stop,
        );
        thread::sleep(Duration::from_millis(timeout.as_millis().min(300) as u64));
        // Swallow late replies of the warm-up.
        for s in &sockets {
            let mut r = RecvBatch::new();
            let _ = s.set_nonblocking(true);
            while r.recv(s).unwrap_or(0) > 0 {}
            if let Pace::Closed(_) = pace {
                let _ = s.set_nonblocking(false);
            }
        }
    }
    let probe = ServerProbe::start(&a.net);
    let result = run_get_clients(
        &sockets,
        &keypairs,
        a.net.target,
        gets,
        pace,
        duration,
        a.net.count,
        timeout,
        &stop,
    );
    let (server, _) = probe.finish();
    let mut report = result.report();
    let map = report.as_object_mut().ok_or("report")?;
    map.insert("target".into(), json!(a.net.target.to_string()));
    map.insert("clients".into(), json!(clients));
    map.insert(
        "in_flight".into(),
        json!(if a.rate > 0.0 {
            Value::Null
        } else {
            json!(a.in_flight)
        }),
    );
    map.insert("rate".into(), json!(a.rate));
    map.insert("keys".into(), json!(a.keys));
    map.insert("request_bytes".into(), json!(gets[0].len()));
    map.insert("load".into(), load);
    map.insert("server".into(), server);
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// PUT clients.
// ---------------------------------------------------------------------------------------------

/// Sends `datagrams` (cycling) at `rate` per second (0 = as fast as possible); returns how many.
fn sender(
    socket: &UdpSocket,
    target: SocketAddr,
    datagrams: &[&[u8]],
    rate: f64,
    duration: Duration,
    count: u64,
    stop: &AtomicBool,
) -> u64 {
    let mut batch = SendBatch::new();
    let mut drain = RecvBatch::new();
    let t0 = Instant::now();
    let mut sent = 0u64;
    if datagrams.is_empty() {
        return 0;
    }
    while sent < count && !stop.load(Ordering::Relaxed) {
        let elapsed = t0.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = if rate > 0.0 {
            ((elapsed.as_secs_f64() * rate) as u64 + 1).min(count)
        } else {
            (sent + BATCH as u64).min(count)
        };
        while sent < due {
            let d = datagrams[(sent % datagrams.len() as u64) as usize];
            if !batch.push(target, d) {
                let _ = batch.flush(socket);
                continue;
            }
            sent += 1;
        }
        let _ = batch.flush(socket);
        // Throw away replies (flood of GETs) without blocking.
        while drain.recv(socket).unwrap_or(0) > 0 {}
        if rate > 0.0 {
            let next = Duration::from_secs_f64(sent as f64 / rate);
            let now = t0.elapsed();
            if next > now {
                thread::sleep((next - now).min(Duration::from_micros(500)));
            }
        }
    }
    let _ = batch.flush(socket);
    sent
}

/// Sends PUTs of records `offset..` from `clients` sockets (each its own slice of records).
#[allow(clippy::too_many_arguments)]
fn run_put_clients(
    sockets: &[UdpSocket],
    target: SocketAddr,
    puts: &[Box<[u8]>],
    rate: f64,
    duration: Duration,
    count: u64,
    stop: &AtomicBool,
) -> u64 {
    let clients = sockets.len();
    // Never repeat a record: each client gets its own slice and stops when it runs out.
    let per = puts.len() / clients;
    let count_each = (count / clients as u64).min(per as u64);
    thread::scope(|s| {
        let handles: Vec<_> = sockets
            .iter()
            .enumerate()
            .map(|(c, socket)| {
                let mine: Vec<&[u8]> = puts[c * per..(c + 1) * per]
                    .iter()
                    .map(|b| &b[..])
                    .collect();
                s.spawn(move || {
                    sender(
                        socket,
                        target,
                        &mine,
                        rate / clients as f64,
                        duration,
                        count_each,
                        stop,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    })
}

fn put_sockets(base: Ipv4Addr, first: usize, n: usize) -> Result<Vec<UdpSocket>> {
    (0..n)
        .map(|c| {
            let s = client_socket(base, first + c, Duration::from_millis(1))?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(s)
        })
        .collect()
}

/// Polls the node's counters until every PUT sent is accounted for (handled by an owner,
/// dropped at a full channel, or dropped by the kernel), or nothing moved for 500 ms, or
/// `limit` passed. Returns the last counters and when they last moved.
fn drain_puts(probe: &ServerProbe, sent: u64, limit: Duration) -> (Option<Value>, Instant) {
    let Some(addr) = probe.stats_addr else {
        return (None, Instant::now());
    };
    let start = Instant::now();
    let before = &probe.stats;
    let accounted = |s: &Option<Value>| {
        let d = |name: &str| counter(s, name).saturating_sub(counter(before, name));
        d("puts_received")
            + d("shard_channel_full")
            + kernel_drops(probe.port).saturating_sub(probe.kernel_drops)
    };
    let mut last = query_stats(addr);
    let mut last_change = Instant::now();
    let mut last_accounted = accounted(&last);
    while start.elapsed() < limit && last_accounted < sent {
        thread::sleep(Duration::from_millis(20));
        let now = query_stats(addr);
        let a = accounted(&now);
        if a != last_accounted {
            last_change = Instant::now();
            last_accounted = a;
        } else if last_change.elapsed() >= Duration::from_millis(500) {
            return (now, last_change);
        }
        last = now;
    }
    (last, last_change)
}

fn put_report(
    sent: u64,
    send_secs: f64,
    before: &Option<Value>,
    after: &Option<Value>,
    busy_secs: f64,
) -> Value {
    let d = |name: &str| counter(after, name).saturating_sub(counter(before, name));
    let stored = d("puts_stored");
    let received = d("puts_received");
    json!({
        "sent": sent,
        "offered_per_s": (sent as f64 / send_secs.max(1e-9)).round(),
        "stored": stored,
        "stored_per_s": (stored as f64 / busy_secs.max(1e-9)).round(),
        "lost": sent.saturating_sub(stored),
        "loss_pct": if sent == 0 { 0.0 } else { round3(100.0 * sent.saturating_sub(stored) as f64 / sent as f64) },
                "received_by_owners": received,
        "dropped_channel_full": d("shard_channel_full"),
        "refused_duplicate": d("puts_duplicate"),
        "refused_invalid": d("put_invalid.bad_signature")
            + d("put_invalid.work_mismatch")
            + d("put_invalid.not_enough_work")
            + d("put_invalid.from_the_future"),
        "seconds": round3(send_secs),
        "busy_seconds": round3(busy_secs),
    })
}

fn run_put(a: &PutArgs) -> Result<Value> {
    check_target(a.net.target)?;
    let duration = check_duration(a.net.duration)?;
    if a.clients == 0 || a.clients > 64 {
        return Err("--clients must be 1..=64".into());
    }
    if a.net.stats_addr.is_none() {
        eprintln!("loadgen: no --stats-addr: PUTs have no reply, so only the send rate is known");
    }
    // Enough fresh records for the whole run at the asked rate (capped by the cache size).
    let set = prepare(&a.records)?;
    if set.puts.len() <= a.offset {
        return Err(format!(
            "--offset {} beyond the {} cached records",
            a.offset,
            set.puts.len()
        ));
    }
    let puts = &set.puts[a.offset..];
    let sockets = put_sockets(a.net.source_base, 1, a.clients)?;
    let stop = AtomicBool::new(false);
    let probe = ServerProbe::start(&a.net);
    let t0 = Instant::now();
    let sent = run_put_clients(
        &sockets,
        a.net.target,
        puts,
        a.rate,
        duration,
        a.net.count,
        &stop,
    );
    let send_secs = t0.elapsed().as_secs_f64();
    let (after, last_change) = drain_puts(
        &probe,
        sent,
        Duration::from_secs_f64(a.drain.clamp(0.0, 30.0)),
    );
    let busy = last_change.duration_since(t0).as_secs_f64().max(send_secs);
    let mut report = put_report(sent, send_secs, &probe.stats, &after, busy);
    let (server, _) = probe.finish();
    let stored = report["stored"].as_u64().unwrap_or(0);
    let map = report.as_object_mut().ok_or("report")?;
    if let Some(cpu) = server["cpu_seconds"].as_f64().filter(|_| stored > 0) {
        // The node's CPU (all its threads) per stored PUT: the host's noise changes how fast
        // the node runs, much less what each PUT costs it.
        map.insert(
            "cpu_us_per_stored".into(),
            json!(round3(cpu * 1e6 / stored as f64)),
        );
    }
    map.insert("target".into(), json!(a.net.target.to_string()));
    map.insert("rate".into(), json!(a.rate));
    map.insert("clients".into(), json!(a.clients));
    map.insert("records_available".into(), json!(puts.len()));
    map.insert("server".into(), server);
    if sent as usize >= puts.len() / a.clients * a.clients {
        map.insert(
            "warning".into(),
            json!("ran out of cached records: prepare more (--records)"),
        );
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Mixed and flood.
// ---------------------------------------------------------------------------------------------

fn run_mixed(m: &MixedArgs) -> Result<Value> {
    let a = &m.get;
    check_target(a.net.target)?;
    let duration = check_duration(a.net.duration)?;
    let (pace, clients) = get_pace(a)?;
    let put_count = (m.put_rate * a.net.duration) as usize + 1;
    let set = get_records(a, put_count)?;
    let load = if a.skip_load {
        Value::Null
    } else {
        load_keys(a, &set)?
    };
    let get_socks = get_sockets(a.net.source_base, 1, clients, pace)?;
    let keypairs = handshake(a, &get_socks)?;
    let put_socks = put_sockets(a.net.source_base, 1 + clients, 1)?;
    let stop = AtomicBool::new(false);
    let timeout = Duration::from_millis(a.net.timeout_ms);
    let probe = ServerProbe::start(&a.net);
    let t0 = Instant::now();
    let (gets, sent) = thread::scope(|s| {
        let p = s.spawn(|| {
            run_put_clients(
                &put_socks,
                a.net.target,
                &set.puts[a.keys..],
                m.put_rate,
                duration,
                u64::MAX,
                &stop,
            )
        });
        let g = run_get_clients(
            &get_socks,
            &keypairs,
            a.net.target,
            &set.gets[..a.keys],
            pace,
            duration,
            a.net.count,
            timeout,
            &stop,
        );
        (g, p.join().unwrap_or(0))
    });
    let send_secs = t0.elapsed().as_secs_f64();
    let (after, last_change) = drain_puts(&probe, sent, Duration::from_secs(5));
    let busy = last_change.duration_since(t0).as_secs_f64().max(send_secs);
    let puts = put_report(sent, send_secs, &probe.stats, &after, busy);
    let (server, _) = probe.finish();
    Ok(json!({
        "target": a.net.target.to_string(),
        "get": gets.report(),
        "put": puts,
        "clients": clients,
        "in_flight": a.in_flight,
        "load": load,
        "server": server,
    }))
}

fn run_flood(f: &FloodArgs) -> Result<Value> {
    let a = &f.get;
    check_target(a.net.target)?;
    let duration = check_duration(a.net.duration)?;
    if f.flood_clients == 0 || f.flood_clients > 32 {
        return Err("--flood-clients must be 1..=32".into());
    }
    let (pace, clients) = get_pace(a)?;
    let pool_len = 8192usize;
    let set = get_records(a, pool_len)?;
    let load = if a.skip_load {
        Value::Null
    } else {
        load_keys(a, &set)?
    };
    // The flood's datagrams. Forged PUTs reuse valid work under another owner's key: the work
    // checks pass, so the node pays for the signature check and refuses it (bad_signature).
    let owners = owner_keys(&a.records);
    let pool: Vec<Box<[u8]>> = match f.kind {
        FloodKind::Get => set.gets[..a.keys].to_vec(),
        FloodKind::ValidPut => set.puts[a.keys..a.keys + pool_len].to_vec(),
        FloodKind::ForgedPut => set.puts[a.keys..a.keys + pool_len]
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let mut p = p.clone();
                let other = owners[(j + 1) % owners.len()].public();
                // PUT = op, len(2), dat; the pubkey is at dat offset 120.
                p[3 + 120..3 + 152].copy_from_slice(&other);
                p
            })
            .collect(),
    };
    let pool_refs: Vec<&[u8]> = pool.iter().map(|b| &b[..]).collect();
    let get_socks = get_sockets(a.net.source_base, 1, clients, pace)?;
    let keypairs = handshake(a, &get_socks)?;
    let flood_socks = put_sockets(a.net.source_base, 1 + clients, f.flood_clients)?;
    let stop = AtomicBool::new(false);
    let timeout = Duration::from_millis(a.net.timeout_ms);
    let gets = &set.gets[..a.keys];
    // Phase 1: the GET client alone.
    let quiet = run_get_clients(
        &get_socks,
        &keypairs,
        a.net.target,
        gets,
        pace,
        duration,
        a.net.count,
        timeout,
        &stop,
    );
    thread::sleep(Duration::from_millis(200));
    // Phase 2: the same client during the flood.
    let rate = f.capacity * f.multiplier;
    let probe = ServerProbe::start(&a.net);
    let flood_duration = duration + Duration::from_millis(400);
    let stop = &stop;
    let keypairs = &keypairs;
    let (noisy, flooded) = thread::scope(|s| {
        let flood = s.spawn(|| {
            let per = rate / f.flood_clients as f64;
            thread::scope(|s2| {
                let hs: Vec<_> = flood_socks
                    .iter()
                    .enumerate()
                    .map(|(i, sock)| {
                        let mine: Vec<&[u8]> = pool_refs
                            .iter()
                            .skip(i)
                            .step_by(f.flood_clients)
                            .copied()
                            .collect();
                        s2.spawn(move || {
                            sender(
                                sock,
                                a.net.target,
                                &mine,
                                per,
                                flood_duration,
                                u64::MAX,
                                stop,
                            )
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap_or(0)).sum::<u64>()
            })
        });
        thread::sleep(Duration::from_millis(200));
        let g = run_get_clients(
            &get_socks,
            keypairs,
            a.net.target,
            gets,
            pace,
            duration,
            a.net.count,
            timeout,
            stop,
        );
        (g, flood.join().unwrap_or(0))
    });
    let (server, after) = probe.finish();
    let quiet_rate = quiet.received as f64 / quiet.secs.max(1e-9);
    let noisy_rate = noisy.received as f64 / noisy.secs.max(1e-9);
    Ok(json!({
        "target": a.net.target.to_string(),
        "kind": format!("{:?}", f.kind),
        "flood_rate_asked": rate.round(),
        "flood_sent": flooded,
        "flood_offered_per_s": (flooded as f64 / flood_duration.as_secs_f64()).round(),
        "get_alone": quiet.report(),
        "get_during_flood": noisy.report(),
        "get_ratio": round3(noisy_rate / quiet_rate.max(1e-9)),
        "node_alive_after": after.is_some() || a.net.stats_addr.is_none(),
        "server": server,
        "load": load,
    }))
}

// ---------------------------------------------------------------------------------------------
// Verification rate, stats, summaries.
// ---------------------------------------------------------------------------------------------

fn run_verify(v: &VerifyArgs) -> Result<Value> {
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
                    while t0.elapsed() < duration {
                        views.clear();
                        for _ in 0..batch {
                            let view = Dat::new_unchecked(dats[i % dats.len()]);
                            i += 1;
                            if check_work(&view, bits, now_ms).is_ok() {
                                views.push(view);
                            }
                        }
                        verify_signatures(&views, mode, &mut ok);
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
        "verified": total,
        "seconds": round3(secs),
        "verified_per_s": (total as f64 / secs).round(),
                "us_per_dat_per_thread": round3(1e6 * secs * v.threads as f64 / total.max(1) as f64),
        "cpu_us_per_dat": round3(1e6 * cpu / total.max(1) as f64),
    }))
}

fn run_stats(a: &StatsArgs) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs_f64(a.wait.clamp(0.0, 120.0));
    loop {
        if let Some(v) = query_stats(a.stats_addr) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("no answer from {}", a.stats_addr));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Metrics summarized per tag, by where they sit in the report.
const METRICS: &[(&str, &str)] = &[
    ("ops_per_s", "/ops_per_s"),
    ("p50_us", "/p50_us"),
    ("p99_us", "/p99_us"),
    ("p999_us", "/p999_us"),
    ("loss_pct", "/loss_pct"),
    ("stored_per_s", "/stored_per_s"),
    ("offered_per_s", "/offered_per_s"),
    ("verified_per_s", "/verified_per_s"),
    ("cpu_us_per_dat", "/cpu_us_per_dat"),
    ("cpu_us_per_stored", "/cpu_us_per_stored"),
    ("dropped_channel_full", "/dropped_channel_full"),
    ("get_ops_per_s", "/get/ops_per_s"),
    ("get_p99_us", "/get/p99_us"),
    ("put_stored_per_s", "/put/stored_per_s"),
    ("put_loss_pct", "/put/loss_pct"),
    ("alone_ops_per_s", "/get_alone/ops_per_s"),
    ("flood_ops_per_s", "/get_during_flood/ops_per_s"),
    ("flood_p99_us", "/get_during_flood/p99_us"),
    ("get_ratio", "/get_ratio"),
    ("flood_offered_per_s", "/flood_offered_per_s"),
    ("shard_channel_full", "/server/counters/shard_channel_full"),
    ("kernel_drops", "/server/kernel_drops"),
    ("delivered_per_s", "/delivered_per_s"),
    ("cpu_ns_per_delivered", "/cpu_ns_per_delivered"),
    ("dropped", "/dropped"),
];

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn summarize(a: &SummarizeArgs) -> Result<()> {
    let file = fs::File::open(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?;
    // tag -> metric -> run -> value
    let mut data: BTreeMap<String, BTreeMap<&str, BTreeMap<u64, f64>>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for line in io::BufReader::new(file).lines() {
        let line = line.map_err(|e| e.to_string())?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let tag = v["tag"].as_str().unwrap_or("").to_string();
        let run = v["run"].as_u64().unwrap_or(0);
        if !order.contains(&tag) {
            order.push(tag.clone());
        }
        let entry = data.entry(tag).or_default();
        for (name, ptr) in METRICS {
            if let Some(x) = v.pointer(ptr).and_then(Value::as_f64) {
                entry.entry(name).or_default().insert(run, x);
            }
        }
    }
    let mut out = serde_json::Map::new();
    let mut text = String::new();
    text.push_str("| scenario | runs | metric medians |\n|---|---|---|\n");
    for tag in &order {
        let metrics = &data[tag];
        let mut row = serde_json::Map::new();
        let mut cells = Vec::new();
        let mut runs = 0;
        for (name, _) in METRICS {
            if let Some(by_run) = metrics.get(name) {
                let mut vals: Vec<f64> = by_run.values().copied().collect();
                runs = runs.max(vals.len());
                let m = median(&mut vals);
                row.insert((*name).into(), json!(round3(m)));
                cells.push(format!("{name} {}", fmt_num(m)));
            }
        }
        out.insert(tag.clone(), Value::Object(row));
        text.push_str(&format!("| {tag} | {runs} | {} |\n", cells.join(", ")));
    }
    let mut ratios = serde_json::Map::new();
    if !a.ratio.is_empty() {
        text.push_str("\n| ratio | per-run values | median |\n|---|---|---|\n");
    }
    for spec in &a.ratio {
        let Some((num, den)) = spec.split_once('/') else {
            return Err(format!(
                "--ratio {spec}: expected NUM[:metric]/DEN[:metric]"
            ));
        };
        let side = |t: &str| -> Result<BTreeMap<u64, f64>> {
            let (tag, metric) = t.split_once(':').unwrap_or((t, "ops_per_s"));
            if !METRICS.iter().any(|(n, _)| *n == metric) {
                return Err(format!("--ratio {spec}: unknown metric {metric}"));
            }
            Ok(data
                .get(tag)
                .and_then(|m| m.get(metric))
                .cloned()
                .unwrap_or_default())
        };
        let (n, d) = (side(num)?, side(den)?);
        let mut per_run: Vec<f64> = n
            .iter()
            .filter_map(|(run, x)| d.get(run).filter(|y| **y > 0.0).map(|y| x / y))
            .collect();
        let shown: Vec<String> = per_run.iter().map(|r| format!("{r:.3}")).collect();
        let m = median(&mut per_run);
        ratios.insert(spec.clone(), json!({"per_run": shown, "median": round3(m)}));
        text.push_str(&format!("| {spec} | {} | **{m:.3}** |\n", shown.join(" ")));
    }
    if a.json_out {
        println!("{}", json!({"scenarios": out, "ratios": ratios}));
    } else {
        print!("{text}");
    }
    io::stdout().flush().map_err(|e| e.to_string())
}

fn fmt_num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

fn print_text(v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    if let Value::Object(map) = v {
        for (k, val) in map {
            match val {
                Value::Object(m) if !m.is_empty() => {
                    println!("{pad}{k}:");
                    print_text(val, indent + 2);
                }
                Value::Null => {}
                _ => println!("{pad}{k}: {val}"),
            }
        }
    } else {
        println!("{pad}{v}");
    }
}
