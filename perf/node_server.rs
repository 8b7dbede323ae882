//! `node_server`: runs a dave [`Node`] with the engine knobs taken from flags, for benchmarks.
//!
//! - `serve`: one node on `--listen`, plus a stats socket (`--stats-addr`): any datagram sent
//!   there is answered with the node's counters as JSON (`{"pid", "rss_bytes", "uptime_ms",
//!   "stats": {"name" | "name.reason": value}}`), which is how `loadgen` counts stored PUTs and
//!   drops by reason. `--preload N` first stores N records through the library API (no network,
//!   no proof of work: a local put is trusted) and reports the resident-set growth per record
//!   beyond key and value. Runs until SIGINT/SIGTERM or `--max-seconds`.
//! - `cold-start`: starts `--nodes` nodes in this process (one edge, the others joining it, with
//!   the protocol's real timers) and reports how long until every node sees every other as
//!   active, against ACTIVATION_DELAY + 2 ping periods.
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/node_server serve --listen 127.0.0.1:7000 --get-path owner --owner-threads 16
//! target/release/examples/node_server cold-start --nodes 5 --runs 3
//! ```

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use dave::pow::SignatureCheck;
use dave::wire::DatFields;
use dave::{Config, GetPath, Node, ReceiverSockets};
use serde_json::{Value, json};

/// Longest a server runs without being told to stop (the scripts kill it much sooner).
const MAX_SECONDS_LIMIT: u64 = 3_600;

#[derive(Parser, Debug)]
#[command(about = "Runs dave nodes with engine knobs from flags, for perf/ benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node with a stats socket.
    Serve(ServeArgs),
    /// Measure how long five (--nodes) fresh nodes take to all become active.
    ColdStart(ColdStartArgs),
}

/// `Config::get_path` from the command line.
#[derive(ValueEnum, Debug, Clone, Copy)]
enum GetPathArg {
    Receiver,
    Owner,
}

/// `Config::receiver_sockets` from the command line.
#[derive(ValueEnum, Debug, Clone, Copy)]
enum ReceiverSocketsArg {
    Hashed,
    Random,
    Shared,
}

/// `Config::signature_check` from the command line.
#[derive(ValueEnum, Debug, Clone, Copy)]
enum SigArg {
    Single,
    Batch,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Node address (127.0.0.x).
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// Stats socket.
    #[arg(long, default_value = "127.0.0.1:7999")]
    stats_addr: SocketAddr,
    /// Where network GETs are answered.
    #[arg(long, value_enum, default_value_t = GetPathArg::Receiver)]
    get_path: GetPathArg,
    /// Single or batched signature verification of received PUTs (default: the node's, batch).
    #[arg(long, value_enum, default_value_t = SigArg::Batch)]
    signature_check: SigArg,
    /// Shard-owner threads (1..=256).
    #[arg(long, default_value_t = 256)]
    owner_threads: usize,
    /// Receiver threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    receiver_threads: usize,
    /// Pin receiver threads to cores.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pin: bool,
    /// Minimum proof-of-work bits of received dats (verification cost does not depend on it).
    #[arg(long, default_value_t = 8)]
    min_work_bits: u32,
    /// Depth of each shard-owner channel (default: the library's).
    #[arg(long)]
    shard_channel_depth: Option<usize>,
    /// Keep a backup log, as a production node does: a new file `node_server-<pid>.log` in this
    /// directory (refused if it exists), synced by the default policy (every 50 ms), removed
    /// with its lock file when the server stops. Default: no backup (data in memory only).
    #[arg(long)]
    backup_in: Option<std::path::PathBuf>,
    /// Proof-of-work threads (local puts only; 1 keeps idle threads out of the way).
    #[arg(long, default_value_t = 1)]
    pow_threads: usize,
    /// Store this many records before serving, and report memory per record.
    #[arg(long, default_value_t = 0)]
    preload: usize,
    /// Key bytes of preloaded records.
    #[arg(long, default_value_t = 16)]
    preload_key_bytes: usize,
    /// Nice value of the shard-owner threads (default: the node's).
    #[arg(long)]
    owner_nice: Option<i32>,
    /// Owner threads under SCHED_IDLE (Config::owner_sched_idle; default: the node's).
    #[arg(long, action = clap::ArgAction::Set)]
    owner_sched_idle: Option<bool>,
    /// Receivers' scheduler slice, µs (Config::receiver_slice_us; default: the node's).
    #[arg(long)]
    receiver_slice_us: Option<u64>,
    /// Owner threads verifying at once (0 = one per core; default: the node's).
    #[arg(long)]
    verify_permits: Option<usize>,
    /// Receiver busy-poll after traffic, in µs (default: the node's).
    #[arg(long)]
    receiver_spin_us: Option<u64>,
    /// Batches a receiver may take in a row from another receiver's socket
    /// (Config::receiver_steal_batches, 0 = none; default: the node's).
    #[arg(long)]
    receiver_steal_batches: Option<usize>,
    /// Feed only as many receivers as the traffic needs (Config::receivers_on_demand; default:
    /// the node's) or always all of them (false).
    #[arg(long, action = clap::ArgAction::Set)]
    receivers_on_demand: Option<bool>,
    /// PUTs on a socket and receiver of their own (Config::put_lane; default: the node's) or
    /// spread with the GETs (false).
    #[arg(long, action = clap::ArgAction::Set)]
    put_lane: Option<bool>,
    /// The PUT lane takes runs the kernel coalesced (UDP GRO, Config::put_lane_gro; default:
    /// the node's) or datagram by datagram (false).
    #[arg(long, action = clap::ArgAction::Set)]
    put_lane_gro: Option<bool>,
    /// Replies of one length to one address sent segmented (Config::udp_segmentation; default:
    /// the node's) or one by one (false).
    #[arg(long, action = clap::ArgAction::Set)]
    udp_segmentation: Option<bool>,
    /// Screen network PUTs in the verification stage (Config::put_verify_stage; default: the
    /// node's) or on the owners (false).
    #[arg(long, action = clap::ArgAction::Set)]
    put_verify_stage: Option<bool>,
    /// How the receivers share the port (Config::receiver_sockets; default: the node's, random).
    #[arg(long, value_enum)]
    receiver_sockets: Option<ReceiverSocketsArg>,
    /// Value bytes of preloaded records.
    #[arg(long, default_value_t = 100)]
    preload_value_bytes: usize,
    /// Exit after the preload report instead of serving.
    #[arg(long)]
    exit_after_preload: bool,
    /// Stop after this many seconds at most.
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
}

#[derive(Args, Debug)]
struct ColdStartArgs {
    /// Nodes: one edge and the others joining it.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Address of the edge; the others take the following addresses.
    #[arg(long, default_value = "127.0.0.40")]
    base: Ipv4Addr,
    /// Repetitions (fresh nodes each time).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Shard-owner threads per node.
    #[arg(long, default_value_t = 16)]
    owner_threads: usize,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 30)]
    limit_seconds: u64,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve(&a),
        Command::ColdStart(a) => cold_start(&a),
    };
    if let Err(e) = result {
        eprintln!("node_server: {e}");
        std::process::exit(1);
    }
}

fn loopback(addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!("{addr}: benchmarks listen on 127.0.0.x only"))
    }
}

fn serve(a: &ServeArgs) -> Result<(), String> {
    loopback(a.listen)?;
    loopback(a.stats_addr)?;
    let mut config = Config {
        listen_addr: a.listen,
        min_work_bits: a.min_work_bits,
        receiver_threads: a.receiver_threads,
        shard_owner_threads: a.owner_threads,
        pow_threads: a.pow_threads,
        pin_cores: a.pin,
        get_path: match a.get_path {
            GetPathArg::Receiver => GetPath::Receiver,
            GetPathArg::Owner => GetPath::Owner,
        },
        signature_check: match a.signature_check {
            SigArg::Single => SignatureCheck::Single,
            SigArg::Batch => SignatureCheck::Batch,
        },
        ..Config::default()
    };
    if let Some(nice) = a.owner_nice {
        config.owner_nice = nice;
    }
    if let Some(idle) = a.owner_sched_idle {
        config.owner_sched_idle = idle;
    }
    if let Some(slice) = a.receiver_slice_us {
        config.receiver_slice_us = slice;
    }
    if let Some(permits) = a.verify_permits {
        config.verify_permits = permits;
    }
    if let Some(s) = a.receiver_sockets {
        config.receiver_sockets = match s {
            ReceiverSocketsArg::Hashed => ReceiverSockets::Hashed,
            ReceiverSocketsArg::Random => ReceiverSockets::Random,
            ReceiverSocketsArg::Shared => ReceiverSockets::Shared,
        };
    }
    if let Some(stage) = a.put_verify_stage {
        config.put_verify_stage = stage;
    }
    if let Some(spin) = a.receiver_spin_us {
        config.receiver_spin_us = spin;
    }
    if let Some(steal) = a.receiver_steal_batches {
        config.receiver_steal_batches = steal;
    }
    if let Some(on_demand) = a.receivers_on_demand {
        config.receivers_on_demand = on_demand;
    }
    if let Some(put_lane) = a.put_lane {
        config.put_lane = put_lane;
    }
    if let Some(on) = a.put_lane_gro {
        config.put_lane_gro = on;
    }
    if let Some(on) = a.udp_segmentation {
        config.udp_segmentation = on;
    }
    if let Some(depth) = a.shard_channel_depth {
        config.shard_channel_depth = depth;
    }
    let backup_log = a
        .backup_in
        .as_ref()
        .map(|dir| dir.join(format!("node_server-{}.log", std::process::id())));
    if let Some(log) = &backup_log {
        if log.exists() {
            return Err(format!("--backup-in: {} exists already", log.display()));
        }
        config.backup_path = Some(log.clone());
    }
    if a.preload > 0 {
        // Room for every preloaded record whatever the shard it lands in.
        let need = a.preload * (300 + a.preload_key_bytes + a.preload_value_bytes) / 64;
        config.shard_capacity_bytes = config.shard_capacity_bytes.max(need);
    }
    let stats_socket =
        UdpSocket::bind(a.stats_addr).map_err(|e| format!("stats socket {}: {e}", a.stats_addr))?;
    stats_socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let rss_empty = rss_bytes();
    let node = Node::start(config.clone()).map_err(|e| e.to_string())?;
    let rss_started = rss_bytes();
    eprintln!(
        "node_server: {} get_path={:?} signature_check={:?} owners={} receivers={} pin={} owner_nice={} verify_permits={} min_work={} rss {} MiB (before start {} MiB)",
        node.local_addr(),
        config.get_path,
        config.signature_check,
        config.shard_owner_threads,
        config.receiver_thread_count(),
        config.pin_cores,
        config.owner_nice,
        config.verify_permit_count(),
        config.min_work_bits,
        rss_started / (1 << 20),
        rss_empty / (1 << 20),
    );
    let mut preload = Value::Null;
    if a.preload > 0 {
        preload = preload_records(&node, a, rss_started)?;
        println!("{preload}");
        if a.exit_after_preload {
            return Ok(());
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    let started = Instant::now();
    let limit = Duration::from_secs(a.max_seconds.min(MAX_SECONDS_LIMIT));
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        let Ok((_, from)) = stats_socket.recv_from(&mut buf) else {
            continue;
        };
        let reply = stats_json(&node, started, &preload);
        let _ = stats_socket.send_to(reply.to_string().as_bytes(), from);
    }
    eprintln!("node_server: stopping after {:.1?}", started.elapsed());
    let final_stats = stats_json(&node, started, &preload);
    drop(node);
    if let Some(log) = &backup_log {
        // Ours: created by this process under a name with its pid, checked absent at start.
        let lock = std::path::PathBuf::from(format!("{}.lock", log.display()));
        for file in [log, &lock] {
            if let Err(e) = std::fs::remove_file(file) {
                eprintln!("node_server: removing {}: {e}", file.display());
            }
        }
    }
    println!("{final_stats}");
    Ok(())
}

fn stats_json(node: &Node, started: Instant, preload: &Value) -> Value {
    let stats = node.stats();
    let mut map = serde_json::Map::new();
    stats.for_each(|name, label, value| {
        let key = match label {
            Some(l) => format!("{name}.{l}"),
            None => name.to_string(),
        };
        map.insert(key, json!(value));
    });
    json!({
        "pid": std::process::id(),
        "rss_bytes": rss_bytes(),
        "uptime_ms": started.elapsed().as_millis() as u64,
        "addr": node.local_addr().to_string(),
        "preload": preload,
        "stats": Value::Object(map),
    })
}

/// Resident set size from /proc/self/status (VmRSS), in bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Stores `a.preload` records with distinct owners, keys and work through `Node::put_dat`, and
/// reports the RSS growth per record beyond key and value.
fn preload_records(node: &Node, a: &ServeArgs, rss_before: u64) -> Result<Value, String> {
    let started = Instant::now();
    let mut key = vec![0u8; a.preload_key_bytes];
    let value = vec![0x5a; a.preload_value_bytes];
    // Each record 1 ms newer than the last, as records arriving one after another are.
    let first_ms = dave::time::unix_now_ms() - 1_000 - a.preload as i64;
    let mut refused = 0u64;
    for i in 0..a.preload as u64 {
        // Distinct owner, key and work per record (the store keeps one record per work hash).
        let mix = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut pubkey = [0u8; 32];
        pubkey[..8].copy_from_slice(&mix.to_le_bytes());
        pubkey[8..16].copy_from_slice(&i.to_le_bytes());
        let n = key.len().min(8);
        key[..n].copy_from_slice(&i.to_le_bytes()[..n]);
        let mut work = [0u8; 32];
        work[8..16].copy_from_slice(&i.to_le_bytes());
        work[16..24].copy_from_slice(&mix.to_le_bytes());
        let dat = DatFields {
            time_ms: first_ms + i as i64,
            salt: [0; 16],
            work,
            sig: [7; 64],
            pubkey,
            key: &key,
            value: &value,
        }
        .to_dat();
        if node.put_dat(dat).is_err() {
            refused += 1;
        }
    }
    let rss_after = rss_bytes();
    let stats = node.stats();
    let stored = stats.records.max(1);
    let per_record = (rss_after.saturating_sub(rss_before)) as f64 / stored as f64;
    let kv = (a.preload_key_bytes + a.preload_value_bytes) as f64;
    let report = json!({
        "preloaded": a.preload,
        "records": stats.records,
        "refused": refused,
        "key_bytes": a.preload_key_bytes,
        "value_bytes": a.preload_value_bytes,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_per_record_bytes": per_record.round(),
        "rss_per_record_beyond_kv_bytes": (per_record - kv).round(),
        "store_accounted_bytes_per_record": (stats.record_bytes as f64 / stored as f64).round(),
        "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    });
    eprintln!("node_server: preload {report}");
    Ok(report)
}

fn cold_start(a: &ColdStartArgs) -> Result<(), String> {
    if a.nodes < 2 || a.nodes > 32 || a.runs == 0 || a.runs > 20 {
        return Err("--nodes must be 2..=32 and --runs 1..=20".into());
    }
    let defaults = Config::default();
    let limit_ms = defaults.activation_delay_ms + 2 * defaults.ping_period_ms;
    let mut times = Vec::new();
    for run in 0..a.runs {
        let o = a.base.octets();
        let addr = |i: usize| -> Result<SocketAddr, String> {
            let last = o[3] as usize + i;
            if o[0] != 127 || last > 254 {
                return Err("--base must leave room for --nodes 127.0.0.x addresses".into());
            }
            Ok(SocketAddr::from(([o[0], o[1], o[2], last as u8], 0)))
        };
        let config = |listen: SocketAddr, edges: Vec<SocketAddr>| Config {
            listen_addr: listen,
            edges,
            receiver_threads: 1,
            shard_owner_threads: a.owner_threads,
            pow_threads: 1,
            pin_cores: false,
            ..Config::default()
        };
        let started = Instant::now();
        let edge = Node::start(config(addr(0)?, vec![])).map_err(|e| e.to_string())?;
        let edge_addr = edge.local_addr();
        let mut nodes = vec![edge];
        for i in 1..a.nodes {
            nodes.push(Node::start(config(addr(i)?, vec![edge_addr])).map_err(|e| e.to_string())?);
        }
        let want = (a.nodes - 1) as u64;
        let deadline = started + Duration::from_secs(a.limit_seconds.min(120));
        let mut first_active: Vec<Option<u128>> = vec![None; a.nodes];
        let elapsed = loop {
            let mut all = true;
            for (i, n) in nodes.iter().enumerate() {
                if n.stats().peers_active >= want {
                    first_active[i].get_or_insert(started.elapsed().as_millis());
                } else {
                    all = false;
                }
            }
            if all {
                break Some(started.elapsed());
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let report = json!({
            "run": run,
            "nodes": a.nodes,
            "all_active_ms": elapsed.map(|e| e.as_millis() as u64),
            "per_node_all_active_ms": first_active,
            "limit_ms": limit_ms,
            "met": elapsed.is_some_and(|e| e.as_millis() as u64 <= limit_ms),
        });
        println!("{report}");
        times.push(elapsed.map_or(u64::MAX, |e| e.as_millis() as u64));
        drop(nodes);
    }
    times.sort_unstable();
    let median = times[times.len() / 2];
    println!(
        "{}",
        json!({"summary": "cold_start", "runs": a.runs, "median_all_active_ms": median, "limit_ms": limit_ms, "met": median <= limit_ms})
    );
    Ok(())
}
