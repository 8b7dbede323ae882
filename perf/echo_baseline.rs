//! The floor for dave's receive path: a UDP server that does nothing but answer.
//!
//! One thread per core ("echo-rx-N", pinned), each on its own SO_REUSEPORT socket of the one
//! port (bound with `dave::net::bind_node_sockets`, as the node does). Each thread takes a
//! `recvmmsg` batch and answers every datagram with a reply of `--reply-bytes` bytes (default
//! 168, the size of a GET_ACK carrying a small record) in one `sendmmsg` batch: the request's
//! bytes, padded with zeros (so `perf/loadgen` can match replies to requests). No parsing, no
//! channels, no shards: whatever the node does beyond this is its overhead.
//!
//! With `--answer-only-op B` it answers only datagrams whose first byte (the op) is B and drops
//! the rest after reading them: `--answer-only-op 3` answers GETs and ignores a flood of PUTs,
//! the floor for "GETs served during a PUT flood" (`perf/issue14.sh`, scenario `flood`).
//!
//! With `--segmentation true` it sends each batch's replies to one address as one segmented
//! send (UDP GSO), as the node does by default; without it, one datagram per `sendmmsg` message.
//!
//! Every second it prints datagrams received and sent per second, and drops, to stderr. It runs
//! until killed.
//!
//! ```text
//! cargo run --release --example echo_baseline -- --listen 0.0.0.0:7000 --threads 4
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use dave::limits::MAX_PACKET_LEN;
use dave::net::{RecvBatch, SendBatch, SocketOptions, bind_node_sockets};

/// Command line.
#[derive(Parser, Debug)]
#[command(
    about = "Minimal recvmmsg/sendmmsg UDP echo server: the baseline for dave's receive path"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// Receiver threads, each with its own SO_REUSEPORT socket (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Bytes of the reply sent for every datagram received (at most 1424).
    #[arg(long, default_value_t = 168)]
    reply_bytes: usize,
    /// Answer only datagrams whose first byte is this op (3: GET); read and drop the others.
    #[arg(long)]
    answer_only_op: Option<u8>,
    /// Send the replies of a batch to one address as one segmented send (UDP GSO), as the
    /// node does by default (`Config::udp_segmentation`). Default off: the plain `sendmmsg`
    /// server an independent client would compare against.
    #[arg(long, action = clap::ArgAction::Set, default_value_t = false)]
    segmentation: bool,
}

/// Counters of one thread, on their own cache line so threads do not slow each other down.
#[derive(Default)]
#[repr(align(128))]
struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
}

fn main() {
    let args = Args::parse();
    if args.reply_bytes > MAX_PACKET_LEN {
        eprintln!(
            "echo_baseline: --reply-bytes {} > {MAX_PACKET_LEN}",
            args.reply_bytes
        );
        std::process::exit(2);
    }
    let threads = args
        .threads
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
    let node = match bind_node_sockets(args.listen, threads, &SocketOptions::default()) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("echo_baseline: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "echo_baseline: {} threads on {}, reply {} bytes, answering {}, buffers {:?}",
        threads,
        node.local_addr,
        args.reply_bytes,
        args.answer_only_op
            .map_or("every datagram".to_string(), |op| format!("op {op} only")),
        node.buffers
    );
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let counters: Arc<Vec<Counters>> =
        Arc::new((0..threads).map(|_| Counters::default()).collect());
    let reply = vec![0u8; args.reply_bytes];
    let answer_only_op = args.answer_only_op;
    let segmentation = args.segmentation;
    for (index, socket) in node.sockets.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let counters = Arc::clone(&counters);
        let reply = reply.clone();
        let spawned = thread::Builder::new()
            .name(format!("echo-rx-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let mine = &counters[index];
                let mut inbox = RecvBatch::new();
                let mut outbox = SendBatch::new();
                outbox.set_segmentation(segmentation);
                loop {
                    let n = match inbox.recv(&socket) {
                        Ok(n) => n,
                        Err(e) => {
                            eprintln!("echo_baseline: echo-rx-{index}: receive: {e}");
                            return;
                        }
                    };
                    for (request, source, _) in inbox.iter() {
                        if answer_only_op.is_some_and(|op| request.first() != Some(&op)) {
                            continue;
                        }
                        // The reply starts with the request (so a load generator can match
                        // it, as it matches a GET_ACK by its key), padded to the reply size.
                        // The batches are the same size, so every reply fits.
                        let pushed = outbox.push_with(source, |buf| {
                            let echoed = request.len().min(reply.len());
                            buf[..echoed].copy_from_slice(&request[..echoed]);
                            buf[echoed..reply.len()].copy_from_slice(&reply[echoed..]);
                            reply.len()
                        });
                        debug_assert!(pushed);
                    }
                    if let Err(e) = outbox.flush(&socket) {
                        eprintln!("echo_baseline: echo-rx-{index}: send: {e}");
                        return;
                    }
                    mine.received.fetch_add(n as u64, Ordering::Relaxed);
                    mine.sent.store(outbox.stats().sent, Ordering::Relaxed);
                    mine.dropped
                        .store(outbox.stats().dropped(), Ordering::Relaxed);
                }
            });
        if let Err(e) = spawned {
            eprintln!("echo_baseline: spawning echo-rx-{index}: {e}");
            std::process::exit(1);
        }
    }
    let totals = |c: &[Counters]| {
        c.iter().fold((0, 0, 0), |(r, s, d), c| {
            (
                r + c.received.load(Ordering::Relaxed),
                s + c.sent.load(Ordering::Relaxed),
                d + c.dropped.load(Ordering::Relaxed),
            )
        })
    };
    let mut last = (totals(&counters), Instant::now());
    loop {
        thread::sleep(Duration::from_secs(1));
        let now = (totals(&counters), Instant::now());
        let secs = now.1.duration_since(last.1).as_secs_f64();
        let ((r0, s0, d0), (r1, s1, d1)) = (last.0, now.0);
        if r1 != r0 || d1 != d0 {
            eprintln!(
                "echo_baseline: {:.0} rx/s {:.0} tx/s {} dropped (total rx {r1})",
                (r1 - r0) as f64 / secs,
                (s1 - s0) as f64 / secs,
                d1 - d0
            );
        }
        last = now;
    }
}
