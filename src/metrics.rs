//! Prometheus exporter: the node's [`Stats`] in the Prometheus text format (version 0.0.4) over
//! plain HTTP. No async runtime, no HTTP library: a scrape is one short request answered with
//! `Connection: close`.
//!
//! Threads: "dave-metrics" accepts; each connection is served on its own short-lived thread,
//! "dave-metrics-conn" (64 KiB stack), so scrapes run concurrently and an idle or slow client
//! never delays another. At most [`MAX_CONNECTIONS`] are served at once; a connection beyond
//! that is answered `503` at once (without reading it) and closed.
//!
//! Every counter and gauge of [`Stats::for_each`] becomes `dave_<name>`; per-reason counters carry
//! a `reason` label (`dave_malformed{reason="too_short"} 0`). A new counter in `stats.rs` is
//! exported without a change here. A [`Scrape`] may also carry the v2-record counters
//! ([`Stats2::for_each`], exported as `dave_v2_<name>`) and the routing core's
//! ([`RouterStats::for_each`], `dave_route_<name>`).
//!
//! The listener is hostile-input safe: a request is read with a size bound
//! ([`MAX_REQUEST_BYTES`]) and a per-connection deadline covering both reading the request and
//! writing the answer ([`REQUEST_DEADLINE`]); `GET` and `HEAD` of `/metrics` are answered,
//! anything else gets a 4xx answer; no request can make a thread panic.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::route::RouterStats;
use crate::shard::core2::Stats2;
use crate::stats::Stats;

/// Largest request head read (request line + headers). A Prometheus scrape sends well under 1 KiB;
/// 8 KiB leaves room for proxies' extra headers and bounds memory per connection.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Time a client has to send its request head and read the answer: the longest a connection
/// holds one of the [`MAX_CONNECTIONS`] slots. A scraper on the same network needs milliseconds.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// Connections served at once. Prometheus keeps one scrape in flight per target; 64 leaves room
/// for several scrapers, curl and idle or slow clients, while bounding threads (64 × 64 KiB of
/// stack) and descriptors. Beyond it a connection gets `503` without being read.
pub const MAX_CONNECTIONS: usize = 64;

/// Stack of a connection thread: rendering uses a few KiB (the answer is on the heap).
const CONNECTION_STACK_BYTES: usize = 64 * 1024;

/// How often the idle listener checks for shutdown (it accepts without blocking, then sleeps),
/// and the longest a connection thread blocks before checking it. 50 ms adds at most that much
/// latency to a scrape and lets `Drop` return quickly.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// Gauges among the names [`Stats::for_each`] and [`RouterStats::for_each`] report (the latter
/// with the `route_` prefix); every other name is a counter.
const GAUGES: [&str; 7] = [
    "peers_active",
    "peers_known",
    "proven_v1_strangers",
    "records",
    "record_bytes",
    "record_arena_bytes",
    "route_contacts",
];

/// What one scrape exports: the node's [`Stats`], and where the node has them, the v2-record and
/// routing counters.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The node's counters and gauges.
    pub stats: Stats,
    /// v2-record counters (`Node::stats2`), exported as `dave_v2_<name>`.
    pub v2: Option<Stats2>,
    /// Routing counters (`Node::route_stats`), exported as `dave_route_<name>`.
    pub route: Option<RouterStats>,
}

impl From<Stats> for Scrape {
    fn from(stats: Stats) -> Scrape {
        Scrape {
            stats,
            v2: None,
            route: None,
        }
    }
}

/// Renders `stats` in the Prometheus text format: one `# TYPE` line per metric family, then its
/// samples.
pub fn render(stats: &Stats) -> String {
    render_stats(stats)
}

/// Renders everything a [`Scrape`] holds, as [`render`] does.
pub fn render_scrape(scrape: &Scrape) -> String {
    let mut out = render_stats(&scrape.stats);
    if let Some(v2) = &scrape.v2 {
        v2.for_each(|name, value| push_family(&mut out, "v2_", name, value));
    }
    if let Some(route) = &scrape.route {
        route.for_each(|name, value| push_family(&mut out, "route_", name, value));
    }
    out
}

/// One unlabelled family: its `# TYPE` line and its sample.
fn push_family(out: &mut String, prefix: &str, name: &str, value: u64) {
    let family = format!("{prefix}{name}");
    let kind = if GAUGES.contains(&family.as_str()) {
        "gauge"
    } else {
        "counter"
    };
    out.push_str(&format!(
        "# TYPE dave_{family} {kind}\ndave_{family} {value}\n"
    ));
}

fn render_stats(stats: &Stats) -> String {
    let mut out = String::with_capacity(4096);
    let mut last_family: Option<&'static str> = None;
    stats.for_each(|name, reason, value| {
        if last_family != Some(name) {
            let kind = if GAUGES.contains(&name) {
                "gauge"
            } else {
                "counter"
            };
            out.push_str(&format!("# TYPE dave_{name} {kind}\n"));
            last_family = Some(name);
        }
        match reason {
            Some(reason) => out.push_str(&format!(
                "dave_{name}{{reason=\"{}\"}} {value}\n",
                escape_label(reason)
            )),
            None => out.push_str(&format!("dave_{name} {value}\n")),
        }
    });
    out
}

/// Escapes a label value as the text format requires (backslash, double quote, newline).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A running exporter. Dropping it stops and joins the thread.
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port) and serves `GET /metrics` with whatever `source`
    /// returns at each scrape (typically `move || node.stats()`).
    pub fn start(
        addr: SocketAddr,
        source: impl Fn() -> Stats + Send + Sync + 'static,
    ) -> io::Result<MetricsServer> {
        MetricsServer::start_scrape(addr, move || Scrape::from(source()))
    }

    /// As [`MetricsServer::start`], exporting a whole [`Scrape`] (with the v2-record and routing
    /// counters: `move || Scrape { stats: node.stats(), v2: Some(node.stats2()), .. }`).
    pub fn start_scrape(
        addr: SocketAddr,
        source: impl Fn() -> Scrape + Send + Sync + 'static,
    ) -> io::Result<MetricsServer> {
        let source: Arc<dyn Fn() -> Scrape + Send + Sync> = Arc::new(source);
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("dave-metrics".to_string())
                .spawn(move || serve(listener, &stop, source))?
        };
        Ok(MetricsServer {
            local_addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the exporter listens on (with the real port if port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: TcpListener,
    stop: &Arc<AtomicBool>,
    source: Arc<dyn Fn() -> Scrape + Send + Sync>,
) {
    // The threads serving connections now; a finished one frees its slot.
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _peer)) => {
                connections.retain(|c| !c.is_finished());
                if connections.len() >= MAX_CONNECTIONS {
                    refuse_busy(stream);
                    continue;
                }
                let (stop, source) = (Arc::clone(stop), Arc::clone(&source));
                let spawned = std::thread::Builder::new()
                    .name("dave-metrics-conn".to_string())
                    .stack_size(CONNECTION_STACK_BYTES)
                    // A failed exchange (reset, timeout, garbage) concerns that client only.
                    .spawn(move || {
                        let _ = answer(stream, &*source, &stop);
                    });
                // If the spawn failed, the stream was dropped with the closure: the client sees
                // a close.
                if let Ok(thread) = spawned {
                    connections.push(thread);
                }
            }
            // WouldBlock when idle; anything else (e.g. out of descriptors) is retried later.
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
    // Connection threads see `stop` within ACCEPT_POLL; none outlives the server.
    for connection in connections {
        let _ = connection.join();
    }
}

/// Over [`MAX_CONNECTIONS`]: a best-effort `503` without reading or waiting, then close.
fn refuse_busy(stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    // Whatever of the request already arrived is read away, so closing sends a FIN (the client
    // reads the 503) rather than a reset.
    let mut sink = [0u8; 1024];
    let _ = (&stream).read(&mut sink);
    let _ = (&stream).write_all(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

fn answer(mut stream: TcpStream, source: &dyn Fn() -> Scrape, stop: &AtomicBool) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let head = read_head(&mut stream, deadline, stop)?;
    let (route, head_only) = route(&head);
    let (status, body) = match route {
        Route::Metrics => ("200 OK", render_scrape(&source())),
        Route::NotFound => ("404 Not Found", "not found; try /metrics\n".to_string()),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "only GET and HEAD\n".to_string()),
        Route::BadRequest => ("400 Bad Request", "bad request\n".to_string()),
    };
    let allow = if route == Route::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         {allow}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(&body);
    }
    stream.set_write_timeout(Some(remaining(deadline)))?;
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// Reads until the blank line that ends the request head, [`MAX_REQUEST_BYTES`], EOF or the
/// deadline, whichever comes first. Returns what was read (possibly incomplete).
fn read_head(stream: &mut TcpStream, deadline: Instant, stop: &AtomicBool) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while head.len() < MAX_REQUEST_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if Instant::now() >= deadline || stop.load(Ordering::SeqCst) {
            break;
        }
        // In slices, so a shutdown is noticed while a client dawdles.
        stream.set_read_timeout(Some(remaining(deadline).min(ACCEPT_POLL)))?;
        let want = buf.len().min(MAX_REQUEST_BYTES - head.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(head)
}

/// Time left until `deadline`, at least 1 ms (a zero timeout means "forever" to the socket API).
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// The route and whether the answer is headers only (`HEAD`).
fn route(head: &[u8]) -> (Route, bool) {
    let line_end = match head.windows(2).position(|w| w == b"\r\n") {
        Some(end) => end,
        None => return (Route::BadRequest, false),
    };
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return (Route::BadRequest, false);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (Route::BadRequest, false);
    };
    if !version.starts_with("HTTP/1.") {
        return (Route::BadRequest, false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (Route::MethodNotAllowed, false);
    }
    let path = target.split('?').next().unwrap_or(target);
    if path == "/metrics" {
        (Route::Metrics, head_only)
    } else {
        (Route::NotFound, head_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_type_lines_and_reasons() {
        let stats = Stats {
            packets_received: 7,
            records: 3,
            record_arena_bytes: 32768,
            ..Stats::default()
        };
        let text = render(&stats);
        assert!(text.contains("# TYPE dave_packets_received counter\ndave_packets_received 7\n"));
        assert!(text.contains("# TYPE dave_records gauge\ndave_records 3\n"));
        assert!(
            text.contains("# TYPE dave_record_arena_bytes gauge\ndave_record_arena_bytes 32768\n")
        );
        assert_eq!(text.matches("# TYPE dave_malformed counter").count(), 1);
        assert!(text.contains("dave_malformed{reason=\""));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<u64>().is_ok(), "line {line}");
        }
    }

    #[test]
    fn a_scrape_adds_the_v2_and_routing_families() {
        let scrape = Scrape {
            stats: Stats::default(),
            v2: Some(Stats2 {
                puts_stored: 5,
                cas_lost: 2,
                ..Stats2::default()
            }),
            route: Some(RouterStats {
                lookups_done: 9,
                contacts: 4,
                ..RouterStats::default()
            }),
        };
        let text = render_scrape(&scrape);
        assert!(text.starts_with(&render(&Stats::default())));
        assert!(text.contains("# TYPE dave_v2_puts_stored counter\ndave_v2_puts_stored 5\n"));
        assert!(text.contains("dave_v2_cas_lost 2\n"));
        assert!(
            text.contains("# TYPE dave_route_lookups_done counter\ndave_route_lookups_done 9\n")
        );
        assert!(text.contains("# TYPE dave_route_contacts gauge\ndave_route_contacts 4\n"));
        // Every family once, every sample a number.
        let families: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = families.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), families.len());
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.rsplit(' ').next().unwrap().parse::<u64>().is_ok(),
                "{line}"
            );
        }
        // Without them, nothing of either.
        let plain = render_scrape(&Scrape::from(Stats::default()));
        assert!(!plain.contains("dave_v2_") && !plain.contains("dave_route_"));
    }

    #[test]
    fn routes_requests() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").0,
            Route::Metrics
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").0,
            Route::Metrics
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n").0, Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n").0,
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n").0, Route::BadRequest);
        assert_eq!(route(b"\xff\xfe\r\n").0, Route::BadRequest);
        assert_eq!(route(b"").0, Route::BadRequest);
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            (Route::Metrics, true)
        );
        assert_eq!(route(b"HEAD /x HTTP/1.1\r\n\r\n"), (Route::NotFound, true));
        assert_eq!(route(b"GET /metrics HTTP/1.1").0, Route::BadRequest);
    }

    #[test]
    fn serves_and_stops() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Stats::default).unwrap();
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("dave_packets_received 0"));
        let start = Instant::now();
        drop(server);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    fn scrape(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn head_is_answered_without_a_body() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Stats::default).unwrap();
        let get = scrape(server.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
        let head = scrape(server.local_addr(), b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
        assert!(!get_body.is_empty());
        assert_eq!(head, format!("{get_head}\r\n\r\n"), "same headers, no body");
        let post = scrape(server.local_addr(), b"POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
    }

    /// The case: 20 idle connections (connected, silent) delayed a scrape by 40 s.
    #[test]
    fn idle_connections_never_delay_a_scrape() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Stats::default).unwrap();
        let idle: Vec<TcpStream> = (0..20)
            .map(|_| TcpStream::connect(server.local_addr()).unwrap())
            .collect();
        // Let the server accept them all first.
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        let text = scrape(server.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
        let took = started.elapsed();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(took < Duration::from_secs(1), "scrape took {took:?}");
        drop(idle);
    }

    /// Beyond MAX_CONNECTIONS a connection is refused at once; the slots come back after the
    /// deadline; dropping the server with connections open returns promptly.
    #[test]
    fn connections_are_bounded() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Stats::default).unwrap();
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(server.local_addr()).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // Refused without being read: the answer comes even before the request is sent.
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut busy = String::new();
        stream.read_to_string(&mut busy).unwrap();
        assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
        // The idle ones time out after REQUEST_DEADLINE and free their slots.
        std::thread::sleep(REQUEST_DEADLINE + Duration::from_millis(300));
        let ok = scrape(server.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        let more: Vec<TcpStream> = (0..8)
            .map(|_| TcpStream::connect(server.local_addr()).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        drop(server);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        drop((idle, more));
    }
}
