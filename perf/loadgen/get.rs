//! `get`: GET clients (one thread and one socket each) with a closed-loop window or an open-loop
//! rate; first PUTs the keys and becomes a proven peer of the node (PING answered by a signed
//! PONG), so the amplification budget does not limit the replies.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use dave::Keypair;
use dave::limits::MAX_PACKET_LEN;
use dave::net::{BATCH, RecvBatch, SendBatch};
use dave::wire::{Dat, Message, PongRepr, pong_signed_hash};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::Result;
use crate::net::{NetArgs, ServerProbe, check_duration, check_target, client_socket, round3};
use crate::records::{RecordArgs, RecordSet, index_of_key, prepare};

/// Largest latency the histograms hold (60 s, in ns).
pub(crate) const HIST_MAX_NS: u64 = 60_000_000_000;
/// Rounds of re-PUTting keys a GET run tolerates before giving up on loading them.
pub(crate) const LOAD_ROUNDS: usize = 4;

#[derive(Args, Debug, Clone)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) records: RecordArgs,
    /// Keys to load and GET.
    #[arg(long, default_value_t = 4096)]
    pub(crate) keys: usize,
    /// Requests outstanding in total (split over clients). Ignored with --rate.
    #[arg(long, default_value_t = 16)]
    pub(crate) in_flight: usize,
    /// Open loop: GETs per second in total (0 = closed loop with --in-flight).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// Client threads, each with its own socket (default: 1 for --in-flight 1, else 4).
    #[arg(long)]
    pub(crate) clients: Option<usize>,
    /// Do not PUT the keys first (for echo_baseline, or a node already loaded).
    #[arg(long)]
    pub(crate) skip_load: bool,
    /// Do not become a proven peer first (for echo_baseline; a dave node then limits replies
    /// to the clients with its amplification budget).
    #[arg(long)]
    pub(crate) no_handshake: bool,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 0.3)]
    pub(crate) warmup: f64,
}

/// How a GET client paces itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// Keep this many requests outstanding.
    Closed(usize),
    /// Send this many per second (latency from the intended send time).
    Open(f64),
}

/// What one client saw.
pub(crate) struct ClientResult {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) found: u64,
    pub(crate) not_found: u64,
    pub(crate) lost: u64,
    pub(crate) unexpected: u64,
    pub(crate) hist: Histogram<u64>,
    pub(crate) secs: f64,
}

impl ClientResult {
    pub(crate) fn new() -> ClientResult {
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

    pub(crate) fn merge(&mut self, o: &ClientResult) {
        self.sent += o.sent;
        self.received += o.received;
        self.found += o.found;
        self.not_found += o.not_found;
        self.lost += o.lost;
        self.unexpected += o.unexpected;
        self.secs = self.secs.max(o.secs);
        let _ = self.hist.add(&o.hist);
    }

    pub(crate) fn report(&self) -> Value {
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

pub(crate) fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

/// The record index a reply answers, and whether it carried a record: a GET_ACK carries the
/// dat's key; echo_baseline's reply starts with the GET it answers.
pub(crate) fn reply_key(bytes: &[u8]) -> Option<(u64, bool)> {
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
pub(crate) fn client_keypair(c: usize) -> Keypair {
    // Fresh identities per invocation: a second run against the same node binds new ports, and
    // the node refuses a known public key at a new address (`pubkey_in_use`), which left the
    // new sockets unproven and their replies cut by the amplification budget.
    static INVOCATION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let invocation = *INVOCATION.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(c as u64).to_le_bytes());
    seed[8..18].copy_from_slice(b"loadgen-id");
    seed[18..26].copy_from_slice(&invocation.to_le_bytes());
    Keypair::from_seed(&seed)
}

/// Answers a PING (`00 ‖ challenge`) from the node with a signed PONG; false if `bytes` is not
/// a PING.
pub(crate) fn answer_ping(
    socket: &UdpSocket,
    from: SocketAddr,
    bytes: &[u8],
    keypair: &Keypair,
) -> bool {
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
pub(crate) fn become_peer(socket: &UdpSocket, target: SocketAddr, keypair: &Keypair) -> Result<()> {
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

pub(crate) fn handshake_all(
    sockets: &[UdpSocket],
    target: SocketAddr,
    first: usize,
) -> Result<Vec<Keypair>> {
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
pub(crate) fn get_client(
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
pub(crate) fn run_get_clients(
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

pub(crate) fn get_sockets(
    base: Ipv4Addr,
    first: usize,
    n: usize,
    pace: Pace,
) -> Result<Vec<UdpSocket>> {
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
pub(crate) fn load_keys(a: &GetArgs, set: &RecordSet) -> Result<Value> {
    load_keys_at(
        a.net.target,
        a.net.source_base,
        a.keys,
        !a.no_handshake,
        set,
    )
}

/// [`load_keys`] with its inputs spelled out: PUTs records `0..keys` to `target` from
/// `source_base` (becoming a proven peer first if `prove`) and GETs each until all are found.
pub(crate) fn load_keys_at(
    target: SocketAddr,
    source_base: Ipv4Addr,
    keys: usize,
    prove: bool,
    set: &RecordSet,
) -> Result<Value> {
    let started = Instant::now();
    let socket = client_socket(source_base, 0, Duration::from_millis(5))?;
    if prove {
        // Checking every key takes more replies than a stranger's amplification budget allows.
        // A fresh key each time: a node pins a key to the first address that proved it, and a
        // second run against the same node comes from a new ephemeral port.
        become_peer(&socket, target, &Keypair::generate())?;
    }
    let mut missing: Vec<usize> = (0..keys).collect();
    for round in 0..LOAD_ROUNDS {
        // PUT the missing ones at a pace the node verifies comfortably.
        let mut batch = SendBatch::new();
        for (j, &i) in missing.iter().enumerate() {
            if !batch.push(target, &set.puts[i]) {
                let _ = batch.flush(&socket);
                batch.push(target, &set.puts[i]);
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
        let gets: Vec<Box<[u8]>> = set.gets[..keys].to_vec();
        let mut found = vec![false; keys];
        let mut recv = RecvBatch::new();
        for chunk in missing.chunks(BATCH) {
            for &i in chunk {
                batch.push(target, &gets[i]);
            }
            let _ = batch.flush(&socket);
            let deadline = Instant::now() + Duration::from_millis(200);
            let mut answered = 0;
            while answered < chunk.len() && Instant::now() < deadline {
                for (bytes, _, _) in (0..recv.recv(&socket).unwrap_or(0)).map(|i| recv.datagram(i))
                {
                    if let Some((index, true)) = reply_key(bytes)
                        && (index as usize) < keys
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
                json!({"keys": keys, "rounds": round + 1, "seconds": round3(started.elapsed().as_secs_f64())}),
            );
        }
    }
    Err(format!(
        "{} of {} keys still not found after {LOAD_ROUNDS} rounds of PUTs: is --work-bits at least the node's min work, and --target a dave node?",
        missing.len(),
        keys
    ))
}

/// Makes every GET client a proven peer of the node, unless `--no-handshake`.
pub(crate) fn handshake(a: &GetArgs, sockets: &[UdpSocket]) -> Result<Vec<Keypair>> {
    if a.no_handshake {
        return Ok(Vec::new());
    }
    handshake_all(sockets, a.net.target, 1)
}

pub(crate) fn get_pace(a: &GetArgs) -> Result<(Pace, usize)> {
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

pub(crate) fn get_records(a: &GetArgs, extra: usize) -> Result<RecordSet> {
    let mut r = a.records.clone();
    r.records = r.records.max(a.keys + extra);
    prepare(&r)
}

pub(crate) fn run_get(a: &GetArgs) -> Result<Value> {
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
