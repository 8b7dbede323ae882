//! `dave put` and `dave get`: a short-lived local node that joins through one edge, does its
//! work and leaves.
//!
//! The client node differs from a storage node in three settings, all of which only change
//! whom *this client* talks to:
//! - `activation_delay_ms = 0`: a peer it has authenticated (answered its PING with a valid
//!   PONG) is a target at once. The 5 s delay protects a long-lived node from fly-by peers; a
//!   client that lives a few seconds would otherwise only ever talk to its edge.
//! - a GET asks up to `--fanout` (default 8) of the closest known peers, not 3: an edge answers
//!   GETs only from its own store and forwards nothing, so a record the edge does not hold is
//!   found by asking the nodes the edge introduced.
//! - before asking, it spends up to `--wait-ms` discovering peers (ending early once no new
//!   peer turns up), and asks again if "not found" came back while more peers were appearing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanCount, ProgressBar, ProgressStyle};
use serde::Deserialize;

use dave::limits::{MAX_KEY_LEN, MAX_KEY_VALUE_LEN};
use dave::{Config, GetError, Node, PutError};

use crate::args::{GetArgs, PutArgs};
use crate::node_cmd::stop_on_signals;
use crate::settings::{read_key, resolve};
use crate::{EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_OK, EXIT_TIMED_OUT, Failure, print_stdout};

/// How long the active peer count must stay unchanged for discovery to count as settled: a
/// newly listed peer answers our PING within milliseconds on a LAN and is published within
/// 100 ms, so 600 ms without change means the edge's introductions are exhausted.
const DISCOVERY_STABLE: Duration = Duration::from_millis(600);
/// Poll period while waiting for peers.
const POLL: Duration = Duration::from_millis(20);
/// After the last put, time for the datagrams (and the edge's forwards) to leave.
const LINGER: Duration = Duration::from_millis(300);
/// Most "not found" answers followed by another attempt (each needs new peers to ask).
const MAX_GET_ATTEMPTS: usize = 3;
/// Most records one `--file` may hold: each costs a proof-of-work; this bounds memory and keeps
/// a mistaken file from running for hours.
const MAX_FILE_RECORDS: usize = 100_000;

/// The client node's configuration (see the module docs).
fn client_config(edge: SocketAddr, min_work_bits: u32, fanout: usize) -> Config {
    let ip: IpAddr = match edge.ip() {
        ip if ip.is_loopback() && ip.is_ipv4() => Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_loopback() => Ipv6Addr::LOCALHOST.into(),
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    Config {
        listen_addr: SocketAddr::new(ip, 0),
        edges: vec![edge],
        min_work_bits,
        fanout,
        activation_delay_ms: 0,
        receiver_threads: 1,
        shard_owner_threads: 4,
        pin_cores: false,
        // A client holds a handful of records for a few seconds.
        shard_capacity_bytes: 64 << 10,
        ..Config::default()
    }
}

fn start_client(edge: SocketAddr, min_work_bits: u32, fanout: usize) -> Result<Node, Failure> {
    Node::start(client_config(edge, min_work_bits, fanout))
        .map_err(|e| Failure::error(format!("cannot start the client node: {e}")))
}

/// Waits until at least one peer is active (the edge, once it answered), or `deadline`.
fn wait_for_edge(
    node: &Node,
    edge: SocketAddr,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<(), Failure> {
    while node.stats().peers_active == 0 {
        if stop.load(Ordering::SeqCst) {
            return Err(Failure::with_code(EXIT_INTERRUPTED, "interrupted"));
        }
        if Instant::now() >= deadline {
            return Err(Failure::with_code(
                EXIT_TIMED_OUT,
                format!("no answer from edge {edge} in time (is a dave node listening there?)"),
            ));
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// Lets the edge introduce its peers: returns once the active count has not changed for
/// [`DISCOVERY_STABLE`], or at `until`.
fn discover(node: &Node, until: Instant) {
    let mut count = node.stats().peers_active;
    let mut since = Instant::now();
    while Instant::now() < until && since.elapsed() < DISCOVERY_STABLE {
        std::thread::sleep(POLL);
        let now = node.stats().peers_active;
        if now != count {
            count = now;
            since = Instant::now();
        }
    }
}

/// One record to put.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: String,
    value: String,
}

fn check_lengths(key: &str, value: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_LEN {
        return Err(format!("key is {} bytes; at most {MAX_KEY_LEN}", key.len()));
    }
    if key.len() + value.len() > MAX_KEY_VALUE_LEN {
        return Err(format!(
            "key + value is {} bytes; at most {MAX_KEY_VALUE_LEN}",
            key.len() + value.len()
        ));
    }
    Ok(())
}

fn read_jsonl(path: &Path) -> Result<Vec<(String, String)>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::error(format!("cannot read {}: {e}", path.display())))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |msg: String| Failure::error(format!("{} line {}: {msg}", path.display(), i + 1));
        let record: Line = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        check_lengths(&record.key, &record.value).map_err(at)?;
        records.push((record.key, record.value));
        if records.len() > MAX_FILE_RECORDS {
            return Err(at(format!("more than {MAX_FILE_RECORDS} records")));
        }
    }
    if records.is_empty() {
        return Err(Failure::error(format!(
            "{} holds no records",
            path.display()
        )));
    }
    Ok(records)
}

/// `dave put`.
pub fn put(args: &PutArgs) -> Result<i32, Failure> {
    // Everything that can be wrong locally is checked before touching the network.
    let records = match (&args.file, &args.record_key, &args.value) {
        (Some(path), _, _) => read_jsonl(path)?,
        (None, Some(key), Some(value)) => {
            check_lengths(key, value).map_err(Failure::error)?;
            vec![(key.clone(), value.clone())]
        }
        _ => return Err(Failure::error("put needs KEY VALUE or --file FILE.jsonl")),
    };
    let owner = read_key(&args.key_file)?;
    let edge = resolve(&args.edge, "edge")?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(&stop)?;

    let node = start_client(edge, args.work, dave::Config::default().fanout)?;
    wait_for_edge(
        &node,
        edge,
        Instant::now() + Duration::from_millis(args.timeout),
        &stop,
    )?;
    println!(
        "joined through {edge}; owner {}",
        hex::encode(owner.public())
    );
    let total = records.len();
    for (i, (key, value)) in records.iter().enumerate() {
        let prefix = if total > 1 {
            format!("[{}/{total}] ", i + 1)
        } else {
            String::new()
        };
        let hashes = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        if args.seq.is_some() || args.cas.is_some() {
            put_v2(&node, &owner, key, value, args, &prefix)?;
            continue;
        }
        let result = with_progress(&prefix, args.work, &hashes, || {
            node.put_with_progress(
                &owner,
                key.as_bytes(),
                value.as_bytes(),
                args.work,
                &stop,
                &hashes,
            )
        });
        let report = match result {
            Ok(report) => report,
            Err(PutError::Shutdown) if stop.load(Ordering::SeqCst) => {
                return Err(Failure::with_code(EXIT_INTERRUPTED, "interrupted"));
            }
            Err(e) => return Err(Failure::error(format!("put {key:?}: {e}"))),
        };
        let elapsed = started.elapsed();
        let done = hashes.load(Ordering::Relaxed).max(1);
        println!(
            "{prefix}put {key:?} ({} bytes): {} bits of work, {} hashes in {:.2} s ({}/s)",
            value.len(),
            args.work,
            HumanCount(done),
            elapsed.as_secs_f64(),
            HumanCount((done as f64 / elapsed.as_secs_f64().max(1e-6)) as u64),
        );
        if report.sent_to.is_empty() {
            return Err(Failure::with_code(
                EXIT_TIMED_OUT,
                format!("{key:?} was not sent: no active peer (the edge stopped answering)"),
            ));
        }
        let to: Vec<String> = report.sent_to.iter().map(SocketAddr::to_string).collect();
        println!("{prefix}  sent to {}", to.join(", "));
    }
    std::thread::sleep(LINGER);
    drop(node);
    Ok(EXIT_OK)
}

/// `dave put --seq/--cas`: one v2 record (compare-and-swap with `--cas`).
fn put_v2(
    node: &dave::Node,
    owner: &dave::Keypair,
    key: &str,
    value: &str,
    args: &PutArgs,
    prefix: &str,
) -> Result<(), Failure> {
    let options = dave::PutOptions {
        format: dave::RecordFormat::V2,
        seq: args.seq,
        cas: args.cas,
        work_bits: Some(args.work),
        owner: Some(owner.clone()),
    };
    let outcome = node
        .put_with(key.as_bytes(), value.as_bytes(), &options)
        .map_err(|e| Failure::error(format!("put {key:?}: {e}")))?;
    if let Some(done) = outcome.v2 {
        let to: Vec<String> = done
            .report
            .sent_to
            .iter()
            .map(SocketAddr::to_string)
            .collect();
        println!(
            "{prefix}put {key:?} (v2, seq {}): {} of {} replicas hold it; sent to {}",
            done.record.seq(),
            done.report.accepted,
            done.report.replicas,
            to.join(", ")
        );
    }
    Ok(())
}

/// Runs `work` (a proof-of-work search) on another thread while drawing a progress bar of
/// `hashes` against the expected 2^bits. The bar hides itself when stderr is not a terminal.
fn with_progress<T: Send>(
    prefix: &str,
    work_bits: u32,
    hashes: &AtomicU64,
    work: impl FnOnce() -> T + Send,
) -> T {
    let expected = 1u64.checked_shl(work_bits).unwrap_or(u64::MAX);
    let bar = ProgressBar::new(expected);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix}proof of work {wide_bar} {human_pos}/~{human_len} hashes, {per_sec}, ~{eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(prefix.to_string());
    let result = std::thread::scope(|scope| {
        let search = scope.spawn(work);
        // Check often (a low difficulty takes milliseconds), redraw every tenth time.
        let mut polls = 0u64;
        while !search.is_finished() {
            if polls.is_multiple_of(10) {
                let done = hashes.load(Ordering::Relaxed);
                if done > bar.length().unwrap_or(0) {
                    bar.set_length(done + done / 4);
                }
                bar.set_position(done);
            }
            polls += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        search.join()
    });
    bar.finish_and_clear();
    match result {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn parse_owner(text: &str) -> Result<[u8; 32], Failure> {
    let mut owner = [0u8; 32];
    hex::decode_to_slice(text, &mut owner).map_err(|_| {
        Failure::error(format!(
            "--owner must be 64 hex digits (a public key), not {text:?}"
        ))
    })?;
    Ok(owner)
}

/// `dave get`.
pub fn get(args: &GetArgs) -> Result<i32, Failure> {
    let owner = parse_owner(&args.owner)?;
    if args.key.len() > MAX_KEY_LEN {
        return Err(Failure::error(format!(
            "key is {} bytes; at most {MAX_KEY_LEN}",
            args.key.len()
        )));
    }
    let edge = resolve(&args.edge, "edge")?;
    let started = Instant::now();
    let deadline = started + Duration::from_millis(args.timeout);
    let timed_out = || {
        Failure::with_code(
            EXIT_TIMED_OUT,
            format!(
                "timed out after {} ms: no answer for {:?}",
                args.timeout, args.key
            ),
        )
    };
    let node = start_client(edge, args.min_work, args.fanout as usize)?;
    let never = AtomicBool::new(false);
    wait_for_edge(&node, edge, deadline, &never).map_err(|_| timed_out())?;
    discover(
        &node,
        (started + Duration::from_millis(args.wait_ms)).min(deadline),
    );

    let mut attempts = 0;
    loop {
        attempts += 1;
        let asked = node.stats().peers_active;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        let options = dave::GetOptions {
            strict: args.strict,
        };
        match node.get_with(&owner, args.key.as_bytes(), left, options) {
            Ok(dat) => {
                let mut out = dat.value().to_vec();
                out.push(b'\n');
                print_stdout(&out)?;
                return Ok(EXIT_OK);
            }
            Err(GetError::NotFound) => {
                // Peers found while we asked may be closer to the owner: ask again.
                discover(&node, deadline);
                let more = node.stats().peers_active > asked;
                if !more || attempts >= MAX_GET_ATTEMPTS || Instant::now() >= deadline {
                    return Err(Failure::with_code(
                        EXIT_NOT_FOUND,
                        format!("not found: {:?} of owner {}", args.key, args.owner),
                    ));
                }
            }
            Err(GetError::TimedOut) => return Err(timed_out()),
            Err(e) => return Err(Failure::error(format!("get {:?}: {e}", args.key))),
        }
    }
}
