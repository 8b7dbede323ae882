//! The floor for dave's PUT path: a UDP server that receives PUTs and verifies them, nothing
//! else.
//!
//! One thread per core ("sink-rx-N", pinned, as the node's receivers are), each on its own
//! SO_REUSEPORT socket of the one port (bound with `dave::net::bind_node_sockets`, datagrams
//! spread over them at random as in the node's default layout). Each thread takes a `recvmmsg`
//! batch (two when the first comes full: up to 64 datagrams), parses every datagram, checks the
//! work of each PUT and then every signature of the batch in one batched Ed25519 check
//! (`dave::pow::verify_signatures`, with the same [`KeyCache`] of decoded owner keys a node's
//! verification permit holds). No channels, no owner threads, no store, no backup: what a node
//! that stores PUTs costs beyond this is its overhead, and what this stores per second with a
//! load generator beside it on the same cores is about the most any node could on that machine
//! (issue 14: "PUTs stored ≥ 0.8 of the batched verification rate").
//!
//! Its stats socket answers any datagram with the counters `perf/loadgen put` reads from
//! `node_server` (`puts_received`, `puts_stored`, `shard_channel_full` = 0, and the refusals by
//! reason), in the same JSON shape, so `perf/put_capacity.sh` measures it like a node (REV
//! `sink`). It runs until killed or `--max-seconds`.
//!
//! ```text
//! cargo run --release --example verify_sink -- --listen 127.0.0.1:7010 --stats-addr 127.0.0.1:7011
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use dave::net::{BATCH, RecvBatch, SocketOptions, bind_node_sockets, spread_reuseport_randomly};
use dave::pow::{KEY_CACHE_SLOTS, KeyCache, SignatureCheck, check_work, verify_signatures};
use dave::wire::{Dat, Message};
use serde_json::json;

/// Longest `--max-seconds`: a forgotten sink stops within the hour.
const MAX_SECONDS_LIMIT: u64 = 3600;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "UDP server that only verifies PUTs: the floor for dave's PUT path")]
struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:7010")]
    listen: SocketAddr,
    /// Stats socket (loopback only).
    #[arg(long, default_value = "127.0.0.1:7011")]
    stats_addr: SocketAddr,
    /// Receiving and verifying threads, each with its own SO_REUSEPORT socket (default: one
    /// per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Minimum proof-of-work bits (the node_server default).
    #[arg(long, default_value_t = 8)]
    min_work_bits: u32,
    /// Stop after this many seconds (at most 3600).
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
    /// Take runs the kernel coalesced (UDP GRO), as a node's PUT lane does by default
    /// (`Config::put_lane_gro`), and read them datagram by datagram.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    gro: bool,
}

/// Counters of one thread, on their own cache line so threads do not slow each other down.
#[derive(Default)]
#[repr(align(128))]
struct Counters {
    received: AtomicU64,
    stored: AtomicU64,
    bad_signature: AtomicU64,
    bad_work: AtomicU64,
    not_put: AtomicU64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("verify_sink: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    for addr in [args.listen, args.stats_addr] {
        if !addr.ip().is_loopback() {
            return Err(format!("{addr} is not a loopback address"));
        }
    }
    let threads = args
        .threads
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
    let stats_socket =
        UdpSocket::bind(args.stats_addr).map_err(|e| format!("stats socket: {e}"))?;
    stats_socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let node = bind_node_sockets(args.listen, threads, &SocketOptions::default())
        .map_err(|e| e.to_string())?;
    if threads > 1 {
        // As the node's default layout does: datagrams spread at random over the sockets, so
        // two busy senders do not hash onto one thread.
        spread_reuseport_randomly(&node.sockets[0], threads as u32).map_err(|e| e.to_string())?;
    }
    eprintln!(
        "verify_sink: {threads} threads on {}, min work {} bits",
        node.local_addr, args.min_work_bits
    );
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let counters: Arc<Vec<Counters>> =
        Arc::new((0..threads).map(|_| Counters::default()).collect());
    for (index, socket) in node.sockets.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let counters = Arc::clone(&counters);
        let min_work_bits = args.min_work_bits;
        if args.gro {
            dave::net::set_receive_coalescing(&socket, true)
                .map_err(|e| format!("UDP GRO refused: {e}"))?;
        }
        let gro = args.gro;
        thread::Builder::new()
            .name(format!("sink-rx-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                receive_and_verify(&socket, &counters[index], min_work_bits, gro, index);
            })
            .map_err(|e| format!("spawning sink-rx-{index}: {e}"))?;
    }
    let started = Instant::now();
    let limit = Duration::from_secs(args.max_seconds.min(MAX_SECONDS_LIMIT));
    let mut buf = [0u8; 512];
    while started.elapsed() < limit {
        let Ok((_, from)) = stats_socket.recv_from(&mut buf) else {
            continue;
        };
        let sum = |f: fn(&Counters) -> &AtomicU64| -> u64 {
            counters.iter().map(|c| f(c).load(Ordering::Relaxed)).sum()
        };
        let reply = json!({
            "pid": std::process::id(),
            "uptime_ms": started.elapsed().as_millis() as u64,
            "addr": args.listen.to_string(),
            "stats": {
                "puts_received": sum(|c| &c.received),
                "puts_stored": sum(|c| &c.stored),
                "shard_channel_full": 0,
                "put_invalid.bad_signature": sum(|c| &c.bad_signature),
                "put_invalid.not_enough_work": sum(|c| &c.bad_work),
                "packets_not_put": sum(|c| &c.not_put),
            },
        });
        let _ = stats_socket.send_to(reply.to_string().as_bytes(), from);
    }
    eprintln!("verify_sink: stopping after {:.1?}", started.elapsed());
    Ok(())
}

/// Most `recvmmsg` batches gathered into one signature check: 2 x [`BATCH`] = 64 PUTs, the
/// longest batch a node's owner verifies at once.
const BATCHES_PER_CHECK: usize = 2;

/// One receiver's loop: a batch in (and a second one if the first came full and more is
/// queued), their PUTs' work checked, their signatures checked together. With `gro`, batches
/// that take coalesced runs (then a batch may hold more than [`BATCH`] PUTs).
fn receive_and_verify(
    socket: &UdpSocket,
    mine: &Counters,
    min_work_bits: u32,
    gro: bool,
    index: usize,
) {
    let mut inboxes: [RecvBatch; BATCHES_PER_CHECK] = std::array::from_fn(|_| {
        if gro {
            RecvBatch::coalescing()
        } else {
            RecvBatch::new()
        }
    });
    let mut keys = KeyCache::new(KEY_CACHE_SLOTS, rand::random());
    let mut ok = Vec::new();
    loop {
        if let Err(e) = inboxes[0].recv(socket) {
            eprintln!("verify_sink: sink-rx-{index}: receive: {e}");
            return;
        }
        let mut filled = 1;
        while filled < BATCHES_PER_CHECK && inboxes[filled - 1].len() >= BATCH {
            if inboxes[filled].try_recv(socket).unwrap_or(0) == 0 {
                break;
            }
            filled += 1;
        }
        let now_ms = dave::time::unix_now_ms();
        let mut dats: Vec<Dat<&[u8]>> =
            Vec::with_capacity(inboxes[..filled].iter().map(RecvBatch::len).sum());
        let (mut received, mut bad_work, mut not_put) = (0u64, 0u64, 0u64);
        for (datagram, _, _) in inboxes[..filled].iter().flat_map(RecvBatch::iter) {
            match Message::parse(datagram) {
                Ok(Message::Put(dat)) => {
                    received += 1;
                    if check_work(&dat, min_work_bits, now_ms).is_ok() {
                        dats.push(dat);
                    } else {
                        bad_work += 1;
                    }
                }
                _ => not_put += 1,
            }
        }
        ok.clear();
        ok.resize(dats.len(), false);
        verify_signatures(&dats, SignatureCheck::Batch, &mut ok, &mut keys);
        let stored = ok.iter().filter(|&&o| o).count() as u64;
        mine.received.fetch_add(received, Ordering::Relaxed);
        mine.stored.fetch_add(stored, Ordering::Relaxed);
        mine.bad_signature
            .fetch_add(dats.len() as u64 - stored, Ordering::Relaxed);
        mine.bad_work.fetch_add(bad_work, Ordering::Relaxed);
        mine.not_put.fetch_add(not_put, Ordering::Relaxed);
    }
}
