//! `client`: GETs measured the way an independent load client measures them (issue 14), against
//! the node and against `echo_baseline` in the same invocation.
//!
//! - Every socket first proves its address to the node (the node PINGs it, the client answers
//!   with a signed PONG, as a peer does), so the node's anti-amplification budget for strangers
//!   does not limit the replies; PINGs that arrive during the run are answered the same way.
//! - ONE thread keeps a fixed window (`--in-flight`, in total) of GETs outstanding over
//!   `--sockets` UDP sockets (each on its own 127.0.0.x source address, so the server's
//!   SO_REUSEPORT hash can spread them), sending each new request on the next socket in turn and
//!   polling every socket without blocking (`recvmmsg` with `MSG_DONTWAIT`). The thread spins:
//!   it takes one core, against the node and the echo server alike.
//! - The node is measured, then the echo server (or the other way round on odd `--run`s), each
//!   for `--duration` seconds after `--warmup`; the report holds both, the ratio of their rates
//!   and a latency CDF of each (for `perf/plot.py`).

use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use dave::Keypair;
use dave::net::{RecvBatch, SendBatch};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::Result;
use crate::get::{ClientResult, answer_ping, become_peer, load_keys_at, reply_key};
use crate::net::{NetArgs, ServerProbe, check_duration, check_target, client_socket, round3};
use crate::records::{RecordArgs, prepare};

/// Most sockets one client thread polls: each poll of an idle socket is a system call, so more
/// sockets only add empty polls per round.
const MAX_SOCKETS: usize = 64;
/// Most requests outstanding: a window larger than the key set would have to reuse keys.
const MAX_IN_FLIGHT: usize = 4096;
/// Points of the latency CDF in the report: every percent, then every 0.1 % and 0.01 % of the
/// last one, where the two servers differ most (118 points).
fn cdf_quantiles() -> impl Iterator<Item = f64> {
    let percents = (1..100).map(|p| p as f64 / 100.0);
    let tenths = (1..10).map(|t| 0.99 + t as f64 / 1000.0);
    let hundredths = (1..10).map(|h| 0.999 + h as f64 / 10_000.0);
    percents.chain(tenths).chain(hundredths).chain([1.0])
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ClientArgs {
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) records: RecordArgs,
    /// The echo server measured in the same invocation (`echo_baseline --reply-bytes` set to the
    /// size of the node's GET_ACK). Without it only the node is measured.
    #[arg(long)]
    pub(crate) echo: Option<SocketAddr>,
    /// PID of the echo server, for its CPU time per thread kind.
    #[arg(long)]
    pub(crate) echo_pid: Option<u32>,
    /// Keys to load and GET.
    #[arg(long, default_value_t = 4096)]
    pub(crate) keys: usize,
    /// GETs outstanding in total, over all sockets.
    #[arg(long, default_value_t = 128)]
    pub(crate) in_flight: usize,
    /// UDP sockets the one thread sends from and polls.
    #[arg(long, default_value_t = 4)]
    pub(crate) sockets: usize,
    /// Warm-up seconds before each measured window.
    #[arg(long, default_value_t = 0.3)]
    pub(crate) warmup: f64,
    /// Do not PUT the keys first (the node already holds them).
    #[arg(long)]
    pub(crate) skip_load: bool,
    /// Measure the echo server first (default: alternate with the parity of `--run`).
    #[arg(long)]
    pub(crate) echo_first: Option<bool>,
}

/// One server under test.
struct Target<'a> {
    name: &'static str,
    addr: SocketAddr,
    pid: Option<u32>,
    /// The sockets' key pairs, to answer the node's PINGs (late ones reach the sockets while
    /// the echo server is measured too).
    keypairs: &'a [Keypair],
}

/// Keeps `window` GETs outstanding over `sockets` from this one thread for `duration`.
#[allow(clippy::too_many_arguments)]
fn drive(
    sockets: &[UdpSocket],
    keypairs: &[Keypair],
    target: SocketAddr,
    gets: &[Box<[u8]>],
    window: usize,
    duration: Duration,
    count: u64,
    timeout: Duration,
) -> ClientResult {
    let mut res = ClientResult::new();
    // sent_at[k]: ns since t0 (+1) of the outstanding request for key k, 0 if none.
    let mut sent_at = vec![0u64; gets.len()];
    let mut sends: Vec<SendBatch> = sockets.iter().map(|_| SendBatch::new()).collect();
    let mut recv = RecvBatch::new();
    let mut fifo = std::collections::VecDeque::with_capacity(gets.len());
    let mut next_key = 0usize;
    let mut next_socket = 0usize;
    let mut outstanding = 0usize;
    let timeout_ns = timeout.as_nanos() as u64;
    let end_ns = duration.as_nanos() as u64;
    let t0 = Instant::now();
    let ns = || t0.elapsed().as_nanos() as u64 + 1;
    loop {
        let now = ns();
        if now >= end_ns {
            break;
        }
        let want = window
            .saturating_sub(outstanding)
            .min(count.saturating_sub(res.sent) as usize);
        for _ in 0..want {
            // The window is at most half the keys (checked), so a free key is near.
            let mut tries = 0;
            while sent_at[next_key] != 0 && tries < gets.len() {
                next_key = (next_key + 1) % gets.len();
                tries += 1;
            }
            if sent_at[next_key] != 0 {
                break;
            }
            let k = next_key;
            next_key = (next_key + 1) % gets.len();
            let s = next_socket;
            next_socket = (next_socket + 1) % sockets.len();
            if !sends[s].push(target, &gets[k]) {
                let _ = sends[s].flush(&sockets[s]);
                sends[s].push(target, &gets[k]);
            }
            sent_at[k] = now;
            fifo.push_back((k as u32, now));
            outstanding += 1;
            res.sent += 1;
        }
        for (batch, socket) in sends.iter_mut().zip(sockets) {
            if !batch.is_empty() {
                let _ = batch.flush(socket);
            }
        }
        if res.sent >= count && outstanding == 0 {
            break;
        }
        for (s, socket) in sockets.iter().enumerate() {
            if recv.try_recv(socket).unwrap_or(0) == 0 {
                continue;
            }
            let now = ns();
            for (bytes, from, _) in recv.iter() {
                let Some((index, found)) = reply_key(bytes) else {
                    // The node keeps pinging its peers: stay proven.
                    let pinged = keypairs
                        .get(s)
                        .is_some_and(|k| answer_ping(socket, from, bytes, k));
                    res.unexpected += u64::from(!pinged);
                    continue;
                };
                let k = index as usize;
                if k >= sent_at.len() || sent_at[k] == 0 {
                    res.unexpected += 1; // late answer to a request already counted lost
                    continue;
                }
                res.hist
                    .saturating_record(now.saturating_sub(sent_at[k]).max(1));
                sent_at[k] = 0;
                outstanding -= 1;
                res.received += 1;
                if found {
                    res.found += 1;
                } else {
                    res.not_found += 1;
                }
            }
        }
        let now = ns();
        while let Some(&(k, stamp)) = fifo.front() {
            let k = k as usize;
            if sent_at[k] != stamp {
                fifo.pop_front(); // answered
            } else if now.saturating_sub(stamp) > timeout_ns {
                fifo.pop_front();
                sent_at[k] = 0;
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

/// The latency CDF as `[quantile, µs]` pairs.
fn cdf(hist: &Histogram<u64>) -> Value {
    if hist.is_empty() {
        return json!([]);
    }
    Value::Array(
        cdf_quantiles()
            .map(|q| json!([q, round3(hist.value_at_quantile(q) as f64 / 1000.0)]))
            .collect(),
    )
}

/// Swallows replies still queued (late answers of a warm-up).
fn drain(sockets: &[UdpSocket]) {
    let mut r = RecvBatch::new();
    for s in sockets {
        while r.try_recv(s).unwrap_or(0) > 0 {}
    }
}

/// Warm-up, then one measured window against `t`.
fn measure(a: &ClientArgs, sockets: &[UdpSocket], gets: &[Box<[u8]>], t: &Target) -> Value {
    let timeout = Duration::from_millis(a.net.timeout_ms);
    let duration = Duration::from_secs_f64(a.net.duration);
    if a.warmup > 0.0 {
        let warmup = Duration::from_secs_f64(a.warmup.min(5.0));
        let _ = drive(
            sockets,
            t.keypairs,
            t.addr,
            gets,
            a.in_flight,
            warmup,
            u64::MAX,
            timeout,
        );
        thread::sleep(Duration::from_millis(timeout.as_millis().min(300) as u64));
        drain(sockets);
    }
    let mut net = a.net.clone();
    net.target = t.addr;
    net.server_pid = t.pid;
    if t.name != "node" {
        net.stats_addr = None;
    }
    let probe = ServerProbe::start(&net);
    let res = drive(
        sockets,
        t.keypairs,
        t.addr,
        gets,
        a.in_flight,
        duration,
        a.net.count,
        timeout,
    );
    let (server, _) = probe.finish();
    thread::sleep(Duration::from_millis(timeout.as_millis().min(300) as u64));
    drain(sockets);
    let mut report = res.report();
    if let Some(map) = report.as_object_mut() {
        map.insert("target".into(), json!(t.addr.to_string()));
        map.insert("cdf_us".into(), cdf(&res.hist));
        if let Some(cpu) = server["cpu_seconds"].as_f64().filter(|_| res.received > 0) {
            // The server's CPU per answered GET: what host noise changes least.
            map.insert(
                "server_cpu_ns_per_op".into(),
                json!((cpu * 1e9 / res.received as f64).round()),
            );
        }
        map.insert("server".into(), server);
    }
    report
}

pub(crate) fn run_client(a: &ClientArgs, run: u32) -> Result<Value> {
    check_target(a.net.target)?;
    if let Some(e) = a.echo {
        check_target(e)?;
    }
    check_duration(a.net.duration)?;
    if a.sockets == 0 || a.sockets > MAX_SOCKETS {
        return Err(format!("--sockets must be 1..={MAX_SOCKETS}"));
    }
    if a.in_flight == 0 || a.in_flight > MAX_IN_FLIGHT {
        return Err(format!("--in-flight must be 1..={MAX_IN_FLIGHT}"));
    }
    if a.keys < 2 * a.in_flight {
        return Err("--keys must be at least twice --in-flight".into());
    }
    let mut r = a.records.clone();
    r.records = r.records.max(a.keys);
    let set = prepare(&r)?;
    let gets = &set.gets[..a.keys];
    let load = if a.skip_load {
        Value::Null
    } else {
        load_keys_at(a.net.target, a.net.source_base, a.keys, true, &set)?
    };
    // Sources 127.0.0.(base+1..): base+0 loaded the keys.
    let sockets: Vec<UdpSocket> = (0..a.sockets)
        .map(|c| {
            let s = client_socket(a.net.source_base, 1 + c, Duration::from_millis(1))?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(s)
        })
        .collect::<Result<_>>()?;
    // Fresh keys each invocation: a node pins a key to the address that proved it first, so
    // reusing keys from new ephemeral ports against the same node would leave them unproven.
    let keypairs: Vec<Keypair> = (0..a.sockets).map(|_| Keypair::generate()).collect();
    for (s, k) in sockets.iter().zip(&keypairs) {
        // become_peer blocks on its socket: give it a read timeout for the handshake.
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        become_peer(s, a.net.target, k)?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    let node = Target {
        name: "node",
        addr: a.net.target,
        pid: a.net.server_pid,
        keypairs: &keypairs,
    };
    let echo = a.echo.map(|addr| Target {
        name: "echo",
        addr,
        pid: a.echo_pid,
        keypairs: &keypairs,
    });
    let echo_first = a.echo_first.unwrap_or(run % 2 == 1);
    let mut order: Vec<&Target> = vec![&node];
    if let Some(e) = &echo {
        if echo_first {
            order.insert(0, e);
        } else {
            order.push(e);
        }
    }
    let mut out = serde_json::Map::new();
    for t in &order {
        out.insert(t.name.into(), measure(a, &sockets, gets, t));
    }
    let rate = |name: &str| out.get(name).and_then(|v| v["ops_per_s"].as_f64());
    if let (Some(n), Some(e)) = (rate("node"), rate("echo")) {
        out.insert("echo_ratio".into(), json!(round3(n / e.max(1e-9))));
    }
    out.insert("in_flight".into(), json!(a.in_flight));
    out.insert("sockets".into(), json!(a.sockets));
    out.insert("threads".into(), json!(1));
    out.insert("keys".into(), json!(a.keys));
    out.insert("request_bytes".into(), json!(gets[0].len()));
    out.insert(
        "order".into(),
        json!(order.iter().map(|t| t.name).collect::<Vec<_>>()),
    );
    out.insert("load".into(), load);
    Ok(Value::Object(out))
}
