//! `swarm`: `--peers` v1-style peers of one node, each on its own loopback address, kept active
//! for `--duration` seconds, so the other scenarios can measure what a node's peer count costs
//! it (issue 14, "how cost grows ... as the peer count grows").
//!
//! Each peer behaves as a Go reference node that holds the node in its table: it PINGs the node
//! once a second, the peers' PINGs spread over the second (the node answers each with a signed
//! PONG listing its peers), and answers the node's PINGs within 10 ms with a PONG signed by its
//! own key, so the node authenticates it, activates it and keeps it active. A classic BPF filter
//! on each peer's socket (`SO_ATTACH_FILTER`) lets only PINGs through: the PONGs, the replicated
//! PUTs and the storage challenges the node sends its peers are dropped by the kernel before any
//! socket buffer, so the swarm reads only the node's PINGs, not every datagram the node sends
//! (the node still pays its sends, as it would to peers elsewhere). The storage challenges go
//! unanswered, as to a peer that lost its copy. The swarm itself costs the machine it shares
//! with the node ~0.07 of a core at 1,000 peers (1,000 PONGs signed and 1,000 PINGs sent a
//! second), which peers elsewhere would not.
//!
//! Prints one JSON line `{"ready": ...}` once the node reports `--peers` active peers (its stats
//! socket, `peers_active`), or when `--ready-limit` seconds passed, then the summary at the end
//! (after `--duration`, or at SIGINT or SIGTERM).

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use dave::keys::Keypair;
use dave::net::{SocketOptions, bind_udp, poll_readable};
use serde_json::{Value, json};
use socket2::{SockFilter, SockRef};

use crate::Result;
use crate::get::{answer_ping, client_keypair};
use crate::net::{check_duration, check_target, counter, query_stats};

/// Most peers one swarm holds: the node's default table (`max_peers` 1000).
const MAX_SWARM_PEERS: usize = 1000;
/// How often a peer PINGs the node (as the Go reference does). Peer i's PINGs go out at
/// `i / peers` of the period, so the node gets them spread over the second, as from peers that
/// joined at different times, not in one burst.
const PING_EVERY: Duration = Duration::from_secs(1);
/// The swarm's clock step: PINGs due within it go out together, and the node's PINGs that came
/// within it are answered together at its end (one `poll(2)` over all sockets).
const STEP: Duration = Duration::from_millis(10);
/// Key pairs of the swarm's peers start here (apart from the GET clients' `client_keypair(c)`).
const FIRST_KEYPAIR: usize = 100_000;

#[derive(Args, Debug, Clone)]
pub(crate) struct SwarmArgs {
    /// The node's address (loopback).
    #[arg(long)]
    pub(crate) target: SocketAddr,
    /// node_server's stats socket (for the readiness check).
    #[arg(long, default_value = "127.0.0.1:7999")]
    pub(crate) stats_addr: SocketAddr,
    /// Peers (1..=1000), peer i on 127.3.(i / 250).(1 + i % 250):9000.
    #[arg(long)]
    pub(crate) peers: usize,
    /// Seconds the swarm keeps its peers active (at most 600).
    #[arg(long, default_value_t = 60.0)]
    pub(crate) duration: f64,
    /// Seconds to wait for the node to report every peer active before printing "ready" anyway.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) ready_limit: f64,
}

/// Peer `i`'s address.
fn peer_addr(i: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(127, 3, (i / 250) as u8, 1 + (i % 250) as u8),
        9000,
    ))
}

/// Passes a datagram whose first payload byte is the PING op (0), drops everything else. A UDP
/// socket's filter sees the packet from the UDP header on: the payload starts at byte 8.
fn only_pings() -> [SockFilter; 4] {
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const UDP_HEADER_LEN: u32 = 8;
    [
        SockFilter::new(LD_B_ABS, 0, 0, UDP_HEADER_LEN),
        SockFilter::new(JEQ_K, 0, 1, 0),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
        SockFilter::new(RET_K, 0, 0, 0),
    ]
}

pub(crate) fn run_swarm(a: &SwarmArgs) -> Result<Value> {
    check_target(a.target)?;
    let duration = check_duration(a.duration)?;
    if a.peers == 0 || a.peers > MAX_SWARM_PEERS {
        return Err(format!("--peers must be 1..={MAX_SWARM_PEERS}"));
    }
    let options = SocketOptions {
        reuse_port: false,
        read_timeout: Duration::from_millis(1),
        ..SocketOptions::default()
    };
    let mut sockets: Vec<UdpSocket> = Vec::with_capacity(a.peers);
    let mut keypairs: Vec<Keypair> = Vec::with_capacity(a.peers);
    for i in 0..a.peers {
        let addr = peer_addr(i);
        let socket = bind_udp(addr, &options).map_err(|e| format!("bind {addr}: {e}"))?;
        SockRef::from(&socket)
            .attach_filter(&only_pings())
            .map_err(|e| format!("filter on {addr}: {e}"))?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        sockets.push(socket);
        keypairs.push(client_keypair(FIRST_KEYPAIR + i));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    let ping = [0u8, 1, 2, 3, 4, 5, 6, 7, 8];
    let start = Instant::now();
    let ready_limit = Duration::from_secs_f64(a.ready_limit.clamp(0.0, 120.0));
    let mut ready: Option<(Duration, u64)> = None;
    // Peer i next PINGs at next_ping[i].
    let phase = |i: usize| PING_EVERY.mul_f64(i as f64 / a.peers as f64);
    let mut next_ping: Vec<Instant> = (0..a.peers).map(|i| start + phase(i)).collect();
    let mut next_check = start;
    let (mut pings_sent, mut pongs_sent, mut others_read) = (0u64, 0u64, 0u64);
    let mut buf = [0u8; 64];
    let mut readable = Vec::new();
    while start.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (socket, due) in sockets.iter().zip(next_ping.iter_mut()) {
            if now >= *due {
                if socket.send_to(&ping, a.target).is_ok() {
                    pings_sent += 1;
                }
                *due += PING_EVERY;
            }
        }
        // One look a step at which sockets hold the node's PINGs: they are answered within a
        // step (10 ms, a network's delay), and the swarm wakes 100 times a second rather than
        // once per PING (a `poll` over 1,000 sockets costs ~30 µs, on the vCPUs the node uses).
        thread::sleep(STEP.min(duration.saturating_sub(start.elapsed())));
        poll_readable(&sockets, 0, &mut readable).map_err(|e| format!("poll: {e}"))?;
        for &i in &readable {
            let socket = &sockets[i];
            loop {
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) if from == a.target => {
                        if answer_ping(socket, from, &buf[..n], &keypairs[i]) {
                            pongs_sent += 1;
                        } else {
                            others_read += 1;
                        }
                    }
                    Ok(_) => others_read += 1,
                    Err(_) => break,
                }
            }
        }
        if ready.is_none() && now >= next_check {
            let active = counter(&query_stats(a.stats_addr), "peers_active");
            if active >= a.peers as u64 || start.elapsed() >= ready_limit {
                ready = Some((start.elapsed(), active));
                let line = json!({"ready": active >= a.peers as u64, "peers_active": active,
                    "after_ms": start.elapsed().as_millis() as u64});
                let mut out = io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            next_check = now + Duration::from_millis(500);
        }
    }
    let active_at_end = counter(&query_stats(a.stats_addr), "peers_active");
    Ok(json!({
        "peers": a.peers,
        "ready_after_ms": ready.map(|(t, _)| t.as_millis() as u64),
        "peers_active_at_ready": ready.map(|(_, n)| n),
        "peers_active_at_end": active_at_end,
        "pings_sent": pings_sent,
        "pongs_sent": pongs_sent,
        // Datagrams past the filter that were no PING from the node: 0 if the filter works.
        "others_read": others_read,
        "seconds": start.elapsed().as_secs_f64(),
    }))
}
