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
//! - `client`: the independent-style client of issue 14: proves its address, then ONE thread keeps
//!   a fixed window of GETs over several sockets, against the node and `echo_baseline` in the
//!   same run; p50/p99/p99.9, rate, ratio to echo and a latency CDF.
//! - `stats`: prints the node's counters (`node_server`'s stats socket) as JSON.
//! - `swarm`: `--peers` v1-style peers on their own loopback addresses, kept active in the
//!   node's table for `--duration` seconds, for the other scenarios to measure beside (what the
//!   peer count costs); the kernel passes them only PINGs.
//! - `summarize`: medians (and per-run ratios) of a JSONL file of results written by `--json`.
//!
//! Replies are matched to requests by their key: a GET_ACK carries the dat's key, and
//! `echo_baseline` copies the request to the start of its reply. Each client is one thread with
//! its own socket on its own 127.0.0.x source address (so the node's SO_REUSEPORT hash spreads
//! clients over its receiver sockets), using the same `recvmmsg`/`sendmmsg` batches as the node.
//!
//! One file per scenario: `records.rs` (`prepare` and the record cache), `get.rs`, `put.rs`,
//! `mixed.rs`, `flood.rs`, `verify.rs`, `stats.rs`, `summarize.rs`, `client.rs`, `swarm.rs`;
//! `net.rs` holds what they share (sockets, node counters, /proc, `ServerProbe`).
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/loadgen get --target 127.0.0.1:7000 --stats-addr 127.0.0.1:7999 --in-flight 128
//! ```
//! See `perf/README.md` and `perf/run_bench.sh`.

mod client;
mod flood;
mod get;
mod mixed;
mod net;
mod put;
mod records;
mod stats;
mod summarize;
mod swarm;
mod verify;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

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
    Prepare(records::RecordArgs),
    /// GET existing keys (closed loop with --in-flight, or open loop with --rate).
    Get(get::GetArgs),
    /// PUT fresh valid records at a fixed rate or as fast as possible.
    Put(put::PutArgs),
    /// GETs in flight plus PUTs at a fixed rate.
    Mixed(mixed::MixedArgs),
    /// A GET client alone, then during a flood of several times capacity.
    Flood(flood::FloodArgs),
    /// Dat verification rate on N threads (no network).
    Verify(verify::VerifyArgs),
    /// Print the node's counters.
    Stats(stats::StatsArgs),
    /// GETs as an independent client sees them: one thread, proven sockets, fixed window,
    /// against the node and the echo server in the same run.
    Client(client::ClientArgs),
    /// Medians of a JSONL results file.
    Summarize(summarize::SummarizeArgs),
    /// N v1-style peers kept active in the node's table (for the other scenarios to run beside).
    Swarm(swarm::SwarmArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Prepare(a) => records::prepare(a).map(|set| {
            json!({"records": set.puts.len(), "work_bits": a.work_bits, "file": records::cache_path(a, a.records).display().to_string()})
        }),
        Command::Get(a) => get::run_get(a),
        Command::Put(a) => put::run_put(a),
        Command::Mixed(a) => mixed::run_mixed(a),
        Command::Flood(a) => flood::run_flood(a),
        Command::Verify(a) => verify::run_verify(a),
        Command::Stats(a) => stats::run_stats(a),
        Command::Client(a) => client::run_client(a, cli.run),
        Command::Swarm(a) => swarm::run_swarm(a),
        Command::Summarize(a) => match summarize::summarize(a) {
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
        Command::Client(_) => "client",
        Command::Summarize(_) => "summarize",
        Command::Swarm(_) => "swarm",
    }
}

pub(crate) type Result<T> = std::result::Result<T, String>;

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
