//! `put`: fresh valid PUTs at a fixed rate (or flat out); PUTs have no reply, so stored/s and
//! loss come from the node's counters.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use dave::net::{BATCH, RecvBatch, SendBatch};
use serde_json::{Value, json};

use crate::Result;
use crate::net::{
    NetArgs, ServerProbe, check_duration, check_target, client_socket, counter, kernel_drops,
    query_stats, round3,
};
use crate::records::{RecordArgs, prepare};

#[derive(Args, Debug, Clone)]
pub(crate) struct PutArgs {
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) records: RecordArgs,
    /// PUTs per second in total; 0 = as fast as the clients can send.
    #[arg(long, default_value_t = 10_000.0)]
    pub(crate) rate: f64,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    pub(crate) clients: usize,
    /// First record sent (records before it are, e.g., GET keys).
    #[arg(long, default_value_t = 0)]
    pub(crate) offset: usize,
    /// Longest wait for the node to finish the queued PUTs after sending stops.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) drain: f64,
    /// PUTs per send with UDP GSO (`UDP_SEGMENT`: the kernel cuts one buffer into that many
    /// datagrams), 0 = one `sendmmsg` entry per PUT, as an independent client sends (the
    /// default). GSO makes the PUTs cost the machine they share with the node one trip through
    /// the network stack per send; a node whose PUT lane takes coalesced runs
    /// (`Config::put_lane_gro`) receives each send whole. At most 64.
    #[arg(long, default_value_t = 0)]
    pub(crate) gso_segments: usize,
}

/// The pacing of a sender: `rate` datagrams per second from `t0` (0 = as fast as it can, `burst`
/// per turn), `count` in all at most, for `duration`.
struct Pace {
    t0: Instant,
    rate: f64,
    duration: Duration,
    count: u64,
    burst: u64,
}

impl Pace {
    /// The sender's total due by now, having sent `sent`; `None` once the count is reached or the
    /// duration passed.
    fn due(&self, sent: u64) -> Option<u64> {
        let elapsed = self.t0.elapsed();
        if sent >= self.count || elapsed >= self.duration {
            return None;
        }
        Some(if self.rate > 0.0 {
            ((elapsed.as_secs_f64() * self.rate) as u64 + 1).min(self.count)
        } else {
            (sent + self.burst).min(self.count)
        })
    }

    /// After a turn: sleeps until the next datagram is due (at most 500 µs, so the stop flag and
    /// the duration are seen soon).
    fn wait(&self, sent: u64) {
        if self.rate > 0.0 {
            let next = Duration::from_secs_f64(sent as f64 / self.rate);
            let now = self.t0.elapsed();
            if next > now {
                thread::sleep((next - now).min(Duration::from_micros(500)));
            }
        }
    }
}

/// What one sender thread sends: `datagrams` in turn (cycling) to `target` at `rate` per
/// second (0 = as fast as it can), `count` in all at most, for `duration`. With `stamp_at`, each
/// copy sent carries the send count (u64 LE) at that byte offset, so no two datagrams sent are
/// the same (fresh forgeries: a new signature each time).
pub(crate) struct Stream<'a> {
    pub(crate) target: SocketAddr,
    pub(crate) datagrams: &'a [&'a [u8]],
    pub(crate) stamp_at: Option<usize>,
    pub(crate) rate: f64,
    pub(crate) duration: Duration,
    pub(crate) count: u64,
}

impl Stream<'_> {
    fn pace(&self, burst: usize) -> Pace {
        Pace {
            t0: Instant::now(),
            rate: self.rate,
            duration: self.duration,
            count: self.count,
            burst: burst as u64,
        }
    }
}

/// Sends `stream` from `socket` until done or `stop`; returns how many datagrams. With
/// `gso_segments` > 0, that many per UDP GSO send ([`send_segmented`]), else one `sendmmsg`
/// entry each, as an independent client sends.
pub(crate) fn send_stream(
    socket: &UdpSocket,
    stream: &Stream<'_>,
    gso_segments: usize,
    stop: &AtomicBool,
) -> u64 {
    if gso_segments > 0 {
        send_segmented(socket, stream, gso_segments, stop)
    } else {
        send_one_by_one(socket, stream, stop)
    }
}

/// [`send_stream`] one `sendmmsg` entry per datagram; replies are read and thrown away.
fn send_one_by_one(socket: &UdpSocket, stream: &Stream<'_>, stop: &AtomicBool) -> u64 {
    let Stream {
        target,
        datagrams,
        stamp_at,
        ..
    } = *stream;
    let mut batch = SendBatch::new();
    let mut drain = RecvBatch::new();
    let pace = stream.pace(BATCH);
    let mut sent = 0u64;
    if datagrams.is_empty() {
        return 0;
    }
    while !stop.load(Ordering::Relaxed)
        && let Some(due) = pace.due(sent)
    {
        while sent < due {
            let d = datagrams[(sent % datagrams.len() as u64) as usize];
            let pushed = match stamp_at {
                Some(at) if d.len() >= at + 8 => batch.push_with(target, |buf| {
                    buf[..d.len()].copy_from_slice(d);
                    buf[at..at + 8].copy_from_slice(&sent.to_le_bytes());
                    d.len()
                }),
                _ => batch.push(target, d),
            };
            if !pushed {
                let _ = batch.flush(socket);
                continue;
            }
            sent += 1;
        }
        let _ = batch.flush(socket);
        // Throw away replies (flood of GETs) without blocking.
        while drain.recv(socket).unwrap_or(0) > 0 {}
        pace.wait(sent);
    }
    let _ = batch.flush(socket);
    sent
}

/// [`send_stream`] `segments` per UDP GSO send. GSO cuts a buffer into equal parts, so only the
/// datagrams as long as the first are sent (the flood's pool and the PUT records are of one
/// length). Returns 0 if the kernel refuses GSO (logged).
fn send_segmented(
    socket: &UdpSocket,
    stream: &Stream<'_>,
    segments: usize,
    stop: &AtomicBool,
) -> u64 {
    let Stream {
        target,
        datagrams,
        stamp_at,
        ..
    } = *stream;
    let Some(first) = datagrams.first() else {
        return 0;
    };
    let segment_len = first.len();
    let pool: Vec<&[u8]> = datagrams
        .iter()
        .filter(|d| d.len() == segment_len)
        .copied()
        .collect();
    if let Err(e) = dave::net::set_udp_segment(socket, segment_len as u16) {
        eprintln!("loadgen: UDP GSO refused: {e}");
        return 0;
    }
    let mut buf = vec![0u8; segment_len * segments];
    let pace = stream.pace(segments);
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed)
        && let Some(due) = pace.due(sent)
    {
        while sent < due {
            let n = ((due - sent) as usize).min(segments);
            for (i, part) in buf.chunks_exact_mut(segment_len).take(n).enumerate() {
                let index = sent + i as u64;
                part.copy_from_slice(pool[(index % pool.len() as u64) as usize]);
                if let Some(at) = stamp_at.filter(|at| at + 8 <= segment_len) {
                    part[at..at + 8].copy_from_slice(&index.to_le_bytes());
                }
            }
            if socket.send_to(&buf[..n * segment_len], target).is_err() {
                break; // a full send buffer: try again on the next turn
            }
            sent += n as u64;
        }
        pace.wait(sent);
    }
    sent
}

/// Sends PUTs of records `offset..` from `clients` sockets (each its own slice of records),
/// `gso_segments` per send with UDP GSO if not 0.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_put_clients(
    sockets: &[UdpSocket],
    target: SocketAddr,
    puts: &[Box<[u8]>],
    rate: f64,
    duration: Duration,
    count: u64,
    gso_segments: usize,
    stop: &AtomicBool,
) -> u64 {
    let clients = sockets.len();
    // Never repeat a record: each client gets its own slice and stops when it runs out.
    let per = puts.len() / clients;
    let count_each = (count / clients as u64).min(per as u64);
    thread::scope(|s| {
        let handles: Vec<_> = sockets
            .iter()
            .enumerate()
            .map(|(c, socket)| {
                let mine: Vec<&[u8]> = puts[c * per..(c + 1) * per]
                    .iter()
                    .map(|b| &b[..])
                    .collect();
                s.spawn(move || {
                    let stream = Stream {
                        target,
                        datagrams: &mine,
                        stamp_at: None,
                        rate: rate / clients as f64,
                        duration,
                        count: count_each,
                    };
                    send_stream(socket, &stream, gso_segments, stop)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    })
}

pub(crate) fn put_sockets(base: Ipv4Addr, first: usize, n: usize) -> Result<Vec<UdpSocket>> {
    (0..n)
        .map(|c| {
            let s = client_socket(base, first + c, Duration::from_millis(1))?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(s)
        })
        .collect()
}

/// Polls the node's counters until every PUT sent is accounted for (handled by an owner,
/// dropped at a full channel, or dropped by the kernel), or nothing moved for 500 ms, or
/// `limit` passed. Returns the last counters and when they last moved.
pub(crate) fn drain_puts(
    probe: &ServerProbe,
    sent: u64,
    limit: Duration,
) -> (Option<Value>, Instant) {
    let Some(addr) = probe.stats_addr else {
        return (None, Instant::now());
    };
    let start = Instant::now();
    let before = &probe.stats;
    let accounted = |s: &Option<Value>| {
        let d = |name: &str| counter(s, name).saturating_sub(counter(before, name));
        d("puts_received")
            + d("shard_channel_full")
            + kernel_drops(probe.port).saturating_sub(probe.kernel_drops)
    };
    let mut last = query_stats(addr);
    let mut last_change = Instant::now();
    let mut last_accounted = accounted(&last);
    while start.elapsed() < limit && last_accounted < sent {
        thread::sleep(Duration::from_millis(20));
        let now = query_stats(addr);
        let a = accounted(&now);
        if a != last_accounted {
            last_change = Instant::now();
            last_accounted = a;
        } else if last_change.elapsed() >= Duration::from_millis(500) {
            return (now, last_change);
        }
        last = now;
    }
    (last, last_change)
}

pub(crate) fn put_report(
    sent: u64,
    send_secs: f64,
    before: &Option<Value>,
    after: &Option<Value>,
    busy_secs: f64,
) -> Value {
    let d = |name: &str| counter(after, name).saturating_sub(counter(before, name));
    let stored = d("puts_stored");
    let received = d("puts_received");
    json!({
        "sent": sent,
        "offered_per_s": (sent as f64 / send_secs.max(1e-9)).round(),
        "stored": stored,
        "stored_per_s": (stored as f64 / busy_secs.max(1e-9)).round(),
        "lost": sent.saturating_sub(stored),
        "loss_pct": if sent == 0 { 0.0 } else { round3(100.0 * sent.saturating_sub(stored) as f64 / sent as f64) },
                "received_by_owners": received,
        "dropped_channel_full": d("shard_channel_full"),
        "refused_duplicate": d("puts_duplicate"),
        "refused_invalid": d("put_invalid.bad_signature")
            + d("put_invalid.work_mismatch")
            + d("put_invalid.not_enough_work")
            + d("put_invalid.from_the_future"),
        "seconds": round3(send_secs),
        "busy_seconds": round3(busy_secs),
    })
}

pub(crate) fn run_put(a: &PutArgs) -> Result<Value> {
    check_target(a.net.target)?;
    let duration = check_duration(a.net.duration)?;
    if a.clients == 0 || a.clients > 64 {
        return Err("--clients must be 1..=64".into());
    }
    if a.gso_segments > crate::flood::MAX_GSO_SEGMENTS {
        return Err(format!(
            "--gso-segments must be 0..={}",
            crate::flood::MAX_GSO_SEGMENTS
        ));
    }
    if a.net.stats_addr.is_none() {
        eprintln!("loadgen: no --stats-addr: PUTs have no reply, so only the send rate is known");
    }
    // Enough fresh records for the whole run at the asked rate (capped by the cache size).
    let set = prepare(&a.records)?;
    if set.puts.len() <= a.offset {
        return Err(format!(
            "--offset {} beyond the {} cached records",
            a.offset,
            set.puts.len()
        ));
    }
    let puts = &set.puts[a.offset..];
    let sockets = put_sockets(a.net.source_base, 1, a.clients)?;
    let stop = AtomicBool::new(false);
    let probe = ServerProbe::start(&a.net);
    let t0 = Instant::now();
    let sent = run_put_clients(
        &sockets,
        a.net.target,
        puts,
        a.rate,
        duration,
        a.net.count,
        a.gso_segments,
        &stop,
    );
    let send_secs = t0.elapsed().as_secs_f64();
    let (after, last_change) = drain_puts(
        &probe,
        sent,
        Duration::from_secs_f64(a.drain.clamp(0.0, 30.0)),
    );
    let busy = last_change.duration_since(t0).as_secs_f64().max(send_secs);
    let mut report = put_report(sent, send_secs, &probe.stats, &after, busy);
    let (server, _) = probe.finish();
    let stored = report["stored"].as_u64().unwrap_or(0);
    let map = report.as_object_mut().ok_or("report")?;
    if let Some(cpu) = server["cpu_seconds"].as_f64().filter(|_| stored > 0) {
        // The node's CPU (all its threads) per stored PUT: the host's noise changes how fast
        // the node runs, much less what each PUT costs it.
        map.insert(
            "cpu_us_per_stored".into(),
            json!(round3(cpu * 1e6 / stored as f64)),
        );
    }
    map.insert("target".into(), json!(a.net.target.to_string()));
    map.insert("rate".into(), json!(a.rate));
    map.insert("clients".into(), json!(a.clients));
    map.insert("gso_segments".into(), json!(a.gso_segments));
    map.insert("records_available".into(), json!(puts.len()));
    map.insert("server".into(), server);
    if sent as usize >= puts.len() / a.clients * a.clients {
        map.insert(
            "warning".into(),
            json!("ran out of cached records: prepare more (--records)"),
        );
    }
    Ok(report)
}
