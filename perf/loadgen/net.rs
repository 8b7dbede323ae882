//! Shared by every scenario: the target and window arguments, client sockets on 127.0.0.x,
//! node_server's counters, kernel drops and per-thread CPU from /proc, and the `ServerProbe`
//! that samples them around a measured window.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use clap::Args;
use dave::net::{SocketOptions, bind_udp};
use serde_json::{Value, json};

use crate::Result;

/// Longest run any subcommand accepts: every loop here is bounded in time.
pub(crate) const MAX_DURATION_S: f64 = 600.0;

#[derive(Args, Debug, Clone)]
pub(crate) struct NetArgs {
    /// The node (or echo_baseline) to drive.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub(crate) target: SocketAddr,
    /// node_server's stats socket, for the node's counters (PUT stored/s, drops by reason).
    #[arg(long)]
    pub(crate) stats_addr: Option<SocketAddr>,
    /// PID of the server, to report CPU time per thread kind from /proc.
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Seconds of load (at most 600).
    #[arg(long, default_value_t = 3.0)]
    pub(crate) duration: f64,
    /// Most operations to send in total.
    #[arg(long, default_value_t = 50_000_000)]
    pub(crate) count: u64,
    /// First client source address; client c binds 127.0.0.(base + c).
    #[arg(long, default_value = "127.0.0.10")]
    pub(crate) source_base: Ipv4Addr,
    /// A request unanswered for this long is counted lost.
    #[arg(long, default_value_t = 200)]
    pub(crate) timeout_ms: u64,
}

pub(crate) fn client_addr(base: Ipv4Addr, c: usize) -> Result<SocketAddr> {
    let o = base.octets();
    let last = o[3] as usize + c;
    if o[0] != 127 || last > 254 {
        return Err(format!(
            "client {c}: source {base} + {c} is not a 127.0.0.x address"
        ));
    }
    Ok(SocketAddr::from(([o[0], o[1], o[2], last as u8], 0)))
}

pub(crate) fn client_socket(base: Ipv4Addr, c: usize, read_timeout: Duration) -> Result<UdpSocket> {
    let addr = client_addr(base, c)?;
    let options = SocketOptions {
        reuse_port: false,
        read_timeout,
        ..SocketOptions::default()
    };
    bind_udp(addr, &options).map_err(|e| format!("bind {addr}: {e}"))
}

pub(crate) fn check_target(target: SocketAddr) -> Result<()> {
    match target {
        SocketAddr::V4(v4) if v4.ip().octets()[0] == 127 => Ok(()),
        _ => Err(format!("--target {target}: load goes to 127.0.0.x only")),
    }
}

pub(crate) fn check_duration(d: f64) -> Result<Duration> {
    if !(d > 0.0 && d <= MAX_DURATION_S) {
        return Err(format!("--duration must be in (0, {MAX_DURATION_S}]"));
    }
    Ok(Duration::from_secs_f64(d))
}

/// Asks node_server's stats socket for its counters.
pub(crate) fn query_stats(addr: SocketAddr) -> Option<Value> {
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

pub(crate) fn counter(stats: &Option<Value>, name: &str) -> u64 {
    stats
        .as_ref()
        .and_then(|s| s["stats"][name].as_u64())
        .unwrap_or(0)
}

/// Counters that changed between two snapshots.
pub(crate) fn stats_delta(before: &Option<Value>, after: &Option<Value>) -> Value {
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
pub(crate) fn kernel_drops(port: u16) -> u64 {
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
pub(crate) fn thread_cpu(pid: u32) -> BTreeMap<String, f64> {
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

/// The scheduler's three figures for every thread of `pid` whose name contains `part`
/// (`/proc/PID/task/TID/schedstat`): seconds on a CPU, seconds runnable but waiting for one
/// (run-queue delay), and timeslices run.
pub(crate) fn sched_of(pid: u32, part: &str) -> BTreeMap<String, [f64; 3]> {
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
        if !comm.contains(part) {
            continue;
        }
        let f: Vec<f64> = sched
            .split_whitespace()
            .filter_map(|x| x.parse::<f64>().ok())
            .collect();
        if f.len() == 3 {
            out.insert(comm.trim().to_string(), [f[0] / 1e9, f[1] / 1e9, f[2]]);
        }
    }
    out
}

/// Per receiver thread over `secs`: cores busy, share of the time spent waiting for a CPU while
/// runnable, and timeslices per second.
fn sched_delta(
    before: &BTreeMap<String, [f64; 3]>,
    after: &BTreeMap<String, [f64; 3]>,
    secs: f64,
) -> Value {
    let mut out = serde_json::Map::new();
    for (k, a) in after {
        let b = before.get(k).copied().unwrap_or([0.0; 3]);
        out.insert(
            k.clone(),
            json!({
                "cores": round3((a[0] - b[0]) / secs),
                "runqueue_wait": round3((a[1] - b[1]) / secs),
                "slices_per_s": ((a[2] - b[2]) / secs).round(),
            }),
        );
    }
    Value::Object(out)
}

/// CPU seconds this process used so far, finished threads included (/proc/self/stat).
pub(crate) fn own_cpu_seconds() -> f64 {
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

pub(crate) fn cpu_delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    secs: f64,
) -> Value {
    let mut out = serde_json::Map::new();
    for (k, a) in after {
        let d = a - before.get(k).copied().unwrap_or(0.0);
        if d > 0.0 {
            out.insert(k.clone(), json!(round3(d / secs)));
        }
    }
    Value::Object(out)
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Everything observed on the server side around a measured window.
pub(crate) struct ServerProbe {
    pub(crate) stats_addr: Option<SocketAddr>,
    pub(crate) pid: Option<u32>,
    pub(crate) port: u16,
    pub(crate) stats: Option<Value>,
    pub(crate) cpu: BTreeMap<String, f64>,
    /// The receiver threads' scheduler figures (`sched_of(pid, "-rx-")`).
    pub(crate) rx_sched: BTreeMap<String, [f64; 3]>,
    pub(crate) kernel_drops: u64,
    /// CPU seconds this process had used at the start.
    pub(crate) own_cpu: f64,
    pub(crate) at: Instant,
}

impl ServerProbe {
    pub(crate) fn start(net: &NetArgs) -> ServerProbe {
        let stats = net.stats_addr.and_then(query_stats);
        ServerProbe {
            stats_addr: net.stats_addr,
            pid: net.server_pid,
            port: net.target.port(),
            cpu: net.server_pid.map(thread_cpu).unwrap_or_default(),
            rx_sched: net
                .server_pid
                .map(|p| sched_of(p, "-rx-"))
                .unwrap_or_default(),
            kernel_drops: kernel_drops(net.target.port()),
            own_cpu: own_cpu_seconds(),
            stats,
            at: Instant::now(),
        }
    }

    /// Counter changes, kernel drops and CPU per thread kind (cores busy) since `start`.
    pub(crate) fn finish(&self) -> (Value, Option<Value>) {
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
        let rx = match self.pid {
            Some(p) => sched_delta(&self.rx_sched, &sched_of(p, "-rx-"), secs),
            None => Value::Null,
        };
        let report = json!({
            "receivers": rx,
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
