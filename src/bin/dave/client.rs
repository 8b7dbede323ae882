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

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanCount, ProgressBar, ProgressStyle};

use dave::limits::{MAX_KEY_LEN, MAX_KEY_VALUE_LEN, MAX_PACKET_LEN};
use dave::pow::verify_dat;
use dave::shard::route::{Version, compare_versions};
use dave::time::unix_now_ms;
use dave::wire::{GetRepr, Message, normalize_addr};
use dave::{Config, GetError, Node, PutError};

use crate::args::{GetArgs, PutArgs};
use crate::bytes::{Encoding, shown, take_field};
use crate::node_cmd::stop_on_signals;
use crate::settings::{read_key, resolve};
use crate::{
    EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_NOT_STORED, EXIT_OK, EXIT_TIMED_OUT, Failure,
    print_stdout,
};

/// A record as put: what the node signed.
type Record = dave::wire::Dat<Box<[u8]>>;

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

/// Fields a `--file` line may have beside the key and value: what `dave export` prints.
const INFORMATIONAL_FIELDS: [&str; 2] = ["owner", "time_ms"];

/// How long a confirmation waits for the asked peers' answers; a GET is sent again to the
/// silent ones halfway. A loopback or LAN peer answers in well under a millisecond; 1.5 s
/// also covers a loaded machine and a continent-wide round trip.
const CONFIRM_WAIT: Duration = Duration::from_millis(1_500);
/// Longest discovery before confirming: enough for the edge to introduce its peers.
const CONFIRM_DISCOVERY: Duration = Duration::from_millis(1_500);

/// One record to put: key and value bytes.
type Input = (Vec<u8>, Vec<u8>);

fn check_lengths(key: &[u8], value: &[u8]) -> Result<(), String> {
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

/// One `--file` line: `key`/`key_hex`/`key_b64`, `value`/`value_hex`/`value_b64`, and the
/// informational `owner` (must be `owner_hex`, the key file's) and `time_ms` (ignored).
fn parse_line(line: &str, owner_hex: &str) -> Result<Input, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let serde_json::Value::Object(object) = value else {
        return Err("not a JSON object".into());
    };
    for field in object.keys() {
        let known = ["key", "value"].iter().any(|name| {
            [*name, &format!("{name}_hex"), &format!("{name}_b64")].contains(&field.as_str())
        }) || INFORMATIONAL_FIELDS.contains(&field.as_str());
        if !known {
            return Err(format!("unknown field \"{field}\""));
        }
    }
    if let Some(owner) = object.get("owner")
        && owner.as_str().map(str::to_ascii_lowercase).as_deref() != Some(owner_hex)
    {
        return Err(format!(
            "\"owner\" is {owner}, not the key file's public key {owner_hex}"
        ));
    }
    let key = take_field(&object, "key")?;
    let value = take_field(&object, "value")?;
    check_lengths(&key, &value)?;
    Ok((key, value))
}

fn read_jsonl(path: &Path, owner_hex: &str) -> Result<Vec<Input>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::error(format!("cannot read {}: {e}", path.display())))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |msg: String| Failure::error(format!("{} line {}: {msg}", path.display(), i + 1));
        records.push(parse_line(line, owner_hex).map_err(at)?);
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

/// The records the flags describe, checked.
fn records_of(args: &PutArgs, owner_hex: &str) -> Result<Vec<Input>, Failure> {
    if let Some(path) = &args.file {
        return read_jsonl(path, owner_hex);
    }
    let encoding = Encoding::of(&args.encoding);
    let Some(key) = &args.record_key else {
        return Err(Failure::error("put needs KEY VALUE or --file FILE.jsonl"));
    };
    let key = encoding.decode(key, "KEY").map_err(Failure::error)?;
    let value = match (&args.value_file, &args.value) {
        (Some(path), _) => read_bounded(path, MAX_KEY_VALUE_LEN)?,
        (None, Some(value)) => encoding.decode(value, "VALUE").map_err(Failure::error)?,
        (None, None) => return Err(Failure::error("put needs VALUE or --value-file FILE")),
    };
    check_lengths(&key, &value).map_err(Failure::error)?;
    Ok(vec![(key, value)])
}

/// Reads at most `limit + 1` bytes of `path` (any kind of file, a pipe included), so an
/// oversized file is refused without being read whole.
fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let cannot = |e: std::io::Error| Failure::error(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > limit {
        return Err(Failure::error(format!(
            "{} is larger than a record's value can be (at most {limit} bytes with the key)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// What the asked peers said about one record.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Confirmation {
    /// Peers asked.
    asked: usize,
    /// Peers that returned this version (or a newer, valid one).
    stored: usize,
    /// Peers that answered "not found" (or an older version).
    missing: usize,
}

/// Records confirmed at once. Each asked peer answers every record of a window with one
/// datagram of at most 1424 bytes; 4 of them (5.7 KB) stay inside the 8 KiB burst a node
/// grants an address it has not proven (`peer::budget`), so no answer is withheld.
const CONFIRM_WINDOW: usize = 4;
/// Consecutive windows without a single answer after which the peers are taken to be
/// unreachable and the remaining records are not asked about (bounds a dead network's wait).
const MAX_SILENT_WINDOWS: usize = 2;

/// Asks each record's peers for it over a socket of its own (all records of the slice at once)
/// and counts who holds it.
fn confirm(bind_ip: IpAddr, asks: &[(&Record, Vec<SocketAddr>)]) -> Vec<Confirmation> {
    // answers[r][p]: None: no answer yet; Some(true): holds it; Some(false): does not.
    let mut answers: Vec<Vec<Option<bool>>> = asks
        .iter()
        .map(|(_, peers)| vec![None; peers.len()])
        .collect();
    let outcomes = |answers: &[Vec<Option<bool>>]| -> Vec<Confirmation> {
        answers
            .iter()
            .map(|a| Confirmation {
                asked: a.len(),
                stored: a.iter().filter(|x| **x == Some(true)).count(),
                missing: a.iter().filter(|x| **x == Some(false)).count(),
            })
            .collect()
    };
    let Ok(socket) = UdpSocket::bind(SocketAddr::new(bind_ip, 0)) else {
        return outcomes(&answers);
    };
    let gets: Vec<Vec<u8>> = asks
        .iter()
        .map(|(dat, _)| {
            let repr = GetRepr {
                pubkey: dat.pubkey(),
                key: dat.key(),
            };
            let mut get = vec![0u8; repr.buffer_len()];
            repr.emit(&mut get);
            get
        })
        .collect();
    let send_to_silent = |answers: &[Vec<Option<bool>>]| {
        for (((_, peers), get), answered) in asks.iter().zip(&gets).zip(answers) {
            for (peer, answer) in peers.iter().zip(answered) {
                if answer.is_none() {
                    let _ = socket.send_to(get, peer);
                }
            }
        }
    };
    let pending = |answers: &[Vec<Option<bool>>]| answers.iter().flatten().any(Option::is_none);
    send_to_silent(&answers);
    let started = Instant::now();
    let mut resent = false;
    let mut buf = [0u8; MAX_PACKET_LEN];
    while pending(&answers) {
        let elapsed = started.elapsed();
        if elapsed >= CONFIRM_WAIT {
            break;
        }
        if !resent && elapsed >= CONFIRM_WAIT / 2 {
            send_to_silent(&answers);
            resent = true;
        }
        let next = if resent {
            CONFIRM_WAIT
        } else {
            CONFIRM_WAIT / 2
        };
        let wait = next.saturating_sub(elapsed);
        let _ = socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let from = normalize_addr(from);
        let Ok(Message::GetAck(answer)) = Message::parse(&buf[..len]) else {
            continue;
        };
        for ((dat, peers), answered) in asks.iter().zip(answers.iter_mut()) {
            if answer.pubkey() != dat.pubkey() || answer.key() != dat.key() {
                continue;
            }
            let Some(i) = peers.iter().position(|p| normalize_addr(*p) == from) else {
                continue;
            };
            let holds = !answer.is_not_found()
                && (answer.as_bytes() == dat.as_bytes()
                    || (compare_versions(&answer, *dat) == Version::Newer
                        && verify_dat(&answer, 0, unix_now_ms()).is_ok()));
            answered[i] = Some(holds);
        }
    }
    outcomes(&answers)
}

/// The peers to ask about a record: the FANOUT closest to its owner that the client knows
/// (where the network stores it) and the peers it was sent to.
fn peers_to_ask(node: &Node, dat: &Record, sent_to: &[SocketAddr]) -> Vec<SocketAddr> {
    let snapshot = node.peers();
    let mut peers: Vec<SocketAddr> = snapshot
        .closest(dat.owner_id(), Config::default().fanout, None)
        .iter()
        .map(|p| p.addr)
        .collect();
    for addr in sent_to {
        let addr = normalize_addr(*addr);
        if !peers.contains(&addr) {
            peers.push(addr);
        }
    }
    peers
}

/// `dave put`.
pub fn put(args: &PutArgs) -> Result<i32, Failure> {
    // Everything that can be wrong locally is checked before touching the network.
    let owner = read_key(&args.key_file)?;
    let owner_hex = hex::encode(owner.public());
    let records = records_of(args, &owner_hex)?;
    let edge = resolve(&args.edge, "edge")?;
    let network_min_work = Config::default().min_work_bits;
    if args.work < network_min_work {
        eprintln!(
            "dave: warning: --work {} is below the {network_min_work} bits a node requires by \
             default; nodes with the default setting will refuse these records",
            args.work
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(&stop)?;

    let node = start_client(edge, args.work, dave::Config::default().fanout)?;
    wait_for_edge(
        &node,
        edge,
        Instant::now() + Duration::from_millis(args.timeout),
        &stop,
    )?;
    println!("joined through {edge}; owner {owner_hex}");
    let total = records.len();
    let prefix_of = |i: usize| {
        if total > 1 {
            format!("[{}/{total}] ", i + 1)
        } else {
            String::new()
        }
    };
    let mut sent = Vec::with_capacity(total);
    for (i, (key, value)) in records.iter().enumerate() {
        let prefix = prefix_of(i);
        let hashes = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        if args.seq.is_some() || args.cas.is_some() {
            put_v2(&node, &owner, key, value, args, &prefix)?;
            continue;
        }
        let result = with_progress(&prefix, args.work, &hashes, || {
            node.put_with_progress(&owner, key, value, args.work, &stop, &hashes)
        });
        let report = match result {
            Ok(report) => report,
            Err(PutError::Shutdown) if stop.load(Ordering::SeqCst) => {
                return Err(Failure::with_code(EXIT_INTERRUPTED, "interrupted"));
            }
            Err(e) => return Err(Failure::error(format!("put {}: {e}", shown(key)))),
        };
        let elapsed = started.elapsed();
        let done = hashes.load(Ordering::Relaxed).max(1);
        println!(
            "{prefix}put {} ({} bytes): {} bits of work, {} hashes in {:.2} s ({})",
            shown(key),
            value.len(),
            args.work,
            HumanCount(done),
            elapsed.as_secs_f64(),
            hash_rate(done, elapsed),
        );
        if report.sent_to.is_empty() {
            println!("{prefix}  not sent: no active peer (the edge stopped answering)");
        } else {
            let to: Vec<String> = report.sent_to.iter().map(SocketAddr::to_string).collect();
            println!("{prefix}  sent to {}", to.join(", "));
        }
        sent.push(report);
    }
    // Let the datagrams and the edge's forwards land, and learn the peers closest to the owner.
    std::thread::sleep(LINGER);
    discover(&node, Instant::now() + CONFIRM_DISCOVERY);
    let bind_ip = node.local_addr().ip();
    let mut unconfirmed = Vec::new();
    let mut answered_at_all = false;
    let mut silent_windows = 0;
    let mut gave_up = false;
    for (w, window) in sent.chunks(CONFIRM_WINDOW).enumerate() {
        if silent_windows >= MAX_SILENT_WINDOWS {
            gave_up = true;
            unconfirmed.extend(window.iter().map(|r| shown(r.dat.key())));
            continue;
        }
        let asks: Vec<(&Record, Vec<SocketAddr>)> = window
            .iter()
            .map(|r| (&r.dat, peers_to_ask(&node, &r.dat, &r.sent_to)))
            .collect();
        let outcomes = confirm(bind_ip, &asks);
        let mut answered = false;
        for (j, (report, outcome)) in window.iter().zip(&outcomes).enumerate() {
            answered |= outcome.stored + outcome.missing > 0;
            let silent = outcome.asked - outcome.stored - outcome.missing;
            let mut line = format!(
                "{}  stored on {} of {} peers asked",
                prefix_of(w * CONFIRM_WINDOW + j),
                outcome.stored,
                outcome.asked
            );
            if silent > 0 {
                line.push_str(&format!(" ({silent} did not answer)"));
            }
            println!("{line}");
            if outcome.stored == 0 {
                unconfirmed.push(shown(report.dat.key()));
            }
        }
        answered_at_all |= answered;
        silent_windows = if answered { 0 } else { silent_windows + 1 };
    }
    if gave_up {
        println!(
            "  no peer answered about {} records in a row: the remaining records were not asked \
             about",
            MAX_SILENT_WINDOWS * CONFIRM_WINDOW
        );
    }
    drop(node);
    if unconfirmed.is_empty() {
        return Ok(EXIT_OK);
    }
    let why = if !answered_at_all {
        "no peer answered the confirmation (are the peers reachable from here?)".to_string()
    } else if args.work < network_min_work {
        format!(
            "the peers do not hold it: the records carry {} bits of work and nodes require \
             {network_min_work} by default, so they were most likely refused",
            args.work
        )
    } else {
        "the peers do not hold it: refused (work below the nodes' --min-work, clock skew) or \
         lost on the way; try again"
            .to_string()
    };
    let what = if total == 1 {
        format!("{} was stored nowhere", unconfirmed[0])
    } else {
        format!(
            "{} of {total} records were stored nowhere: {}",
            unconfirmed.len(),
            unconfirmed.join(", ")
        )
    };
    Err(Failure::with_code(
        EXIT_NOT_STORED,
        format!("{what}; {why}"),
    ))
}

/// A hash rate for people: "9.49 M hashes/s".
fn hash_rate(hashes: u64, elapsed: Duration) -> String {
    let per_s = hashes as f64 / elapsed.as_secs_f64().max(1e-6);
    match per_s {
        r if r >= 1e9 => format!("{:.2} G hashes/s", r / 1e9),
        r if r >= 1e6 => format!("{:.2} M hashes/s", r / 1e6),
        r if r >= 1e3 => format!("{:.1} k hashes/s", r / 1e3),
        r => format!("{r:.0} hashes/s"),
    }
}

/// `dave put --seq/--cas`: one v2 record (compare-and-swap with `--cas`).
fn put_v2(
    node: &dave::Node,
    owner: &dave::Keypair,
    key: &[u8],
    value: &[u8],
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
        .put_with(key, value, &options)
        .map_err(|e| Failure::error(format!("put {}: {e}", shown(key))))?;
    if let Some(done) = outcome.v2 {
        let to: Vec<String> = done
            .report
            .sent_to
            .iter()
            .map(SocketAddr::to_string)
            .collect();
        println!(
            "{prefix}put {} (v2, seq {}): {} of {} replicas hold it; sent to {}",
            shown(key),
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
            "{prefix}proof of work {wide_bar} {human_pos}/~{human_len} hashes, {msg}, ~{eta} left",
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
                bar.set_message(hash_rate(done, bar.elapsed()));
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

/// `dave get`. The `--out` file is created (never replaced) before anything else, so a bad path
/// fails at once; it is removed again if no value was written to it.
pub fn get(args: &GetArgs) -> Result<i32, Failure> {
    let Some(path) = &args.out else {
        return get_inner(args, None);
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Failure::error(format!("cannot create {} (--out): {e}", path.display())))?;
    let result = get_inner(args, Some((&mut file, path)));
    if result.is_err() {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    result
}

fn get_inner(args: &GetArgs, mut out_file: Option<(&mut File, &PathBuf)>) -> Result<i32, Failure> {
    let owner = parse_owner(&args.owner)?;
    let key = Encoding::of(&args.encoding)
        .decode(&args.key, "KEY")
        .map_err(Failure::error)?;
    if key.len() > MAX_KEY_LEN {
        return Err(Failure::error(format!(
            "key is {} bytes; at most {MAX_KEY_LEN}",
            key.len()
        )));
    }
    let edge = resolve(&args.edge, "edge")?;
    let started = Instant::now();
    let deadline = started + Duration::from_millis(args.timeout);
    let timed_out = || {
        Failure::with_code(
            EXIT_TIMED_OUT,
            format!(
                "timed out after {} ms: no answer for {}",
                args.timeout,
                shown(&key)
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
        match node.get_with(&owner, &key, left, options) {
            Ok(dat) => {
                if let Some((file, path)) = out_file.as_mut() {
                    file.write_all(dat.value())
                        .and_then(|()| file.sync_all())
                        .map_err(|e| {
                            Failure::error(format!("cannot write {}: {e}", path.display()))
                        })?;
                    eprintln!("wrote {} bytes to {}", dat.value().len(), path.display());
                } else {
                    let mut out = dat.value().to_vec();
                    out.push(b'\n');
                    print_stdout(&out)?;
                }
                return Ok(EXIT_OK);
            }
            Err(GetError::NotFound) => {
                // Peers found while we asked may be closer to the owner: ask again.
                discover(&node, deadline);
                let more = node.stats().peers_active > asked;
                if !more || attempts >= MAX_GET_ATTEMPTS || Instant::now() >= deadline {
                    return Err(Failure::with_code(
                        EXIT_NOT_FOUND,
                        format!("not found: {} of owner {}", shown(&key), args.owner),
                    ));
                }
            }
            Err(GetError::TimedOut) => return Err(timed_out()),
            Err(e) => return Err(Failure::error(format!("get {}: {e}", shown(&key)))),
        }
    }
}
