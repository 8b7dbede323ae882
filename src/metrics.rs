//! Prometheus exporter: the node's [`Stats`] in the Prometheus text format (version 0.0.4) over
//! plain HTTP, served by one small blocking thread, "dave-metrics". No async runtime, no HTTP
//! library: a scrape is one short request answered with `Connection: close`.
//!
//! Every counter and gauge of [`Stats::for_each`] becomes `dave_<name>`; per-reason counters carry
//! a `reason` label (`dave_malformed{reason="too_short"} 0`). A new counter in `stats.rs` is
//! exported without a change here.
//!
//! The listener is hostile-input safe: a request is read with a size bound
//! ([`MAX_REQUEST_BYTES`]) and a deadline ([`REQUEST_DEADLINE`]), anything but `GET /metrics`
//! gets a 4xx answer, and no request can make the thread panic or stall other scrapes for longer
//! than the deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::stats::Stats;

/// Largest request head read (request line + headers). A Prometheus scrape sends well under 1 KiB;
/// 8 KiB leaves room for proxies' extra headers and bounds memory per connection.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Time a client has to send its request head and read the answer. Connections are served one
/// at a time, so this is also the longest one slow client can delay the next scrape.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// How often the idle listener checks for shutdown (it accepts without blocking, then sleeps).
/// 50 ms adds at most that much latency to a scrape and lets `Drop` return quickly.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// Gauges among the names [`Stats::for_each`] reports; every other name is a counter.
const GAUGES: [&str; 4] = ["peers_active", "peers_known", "records", "record_bytes"];

/// Renders `stats` in the Prometheus text format: one `# TYPE` line per metric family, then its
/// samples.
pub fn render(stats: &Stats) -> String {
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
        source: impl Fn() -> Stats + Send + 'static,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("dave-metrics".to_string())
                .spawn(move || serve(listener, &stop, &source))?
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

fn serve(listener: TcpListener, stop: &AtomicBool, source: &dyn Fn() -> Stats) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _peer)) => {
                // A failed exchange (reset, timeout, garbage) concerns that client only.
                let _ = answer(stream, source);
            }
            // WouldBlock when idle; anything else (e.g. out of descriptors) is retried later.
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

fn answer(mut stream: TcpStream, source: &dyn Fn() -> Stats) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let head = read_head(&mut stream, deadline)?;
    let (status, body) = match route(&head) {
        Route::Metrics => ("200 OK", render(&source())),
        Route::NotFound => ("404 Not Found", "not found; try /metrics\n".to_string()),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "only GET\n".to_string()),
        Route::BadRequest => ("400 Bad Request", "bad request\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.set_write_timeout(Some(remaining(deadline)))?;
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// Reads until the blank line that ends the request head, [`MAX_REQUEST_BYTES`], EOF or the
/// deadline, whichever comes first. Returns what was read (possibly incomplete).
fn read_head(stream: &mut TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while head.len() < MAX_REQUEST_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = remaining(deadline);
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left))?;
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
                break;
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

fn route(head: &[u8]) -> Route {
    let line_end = match head.windows(2).position(|w| w == b"\r\n") {
        Some(end) => end,
        None => return Route::BadRequest,
    };
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Route::BadRequest;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    if method != "GET" {
        return Route::MethodNotAllowed;
    }
    let path = target.split('?').next().unwrap_or(target);
    if path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
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
            ..Stats::default()
        };
        let text = render(&stats);
        assert!(text.contains("# TYPE dave_packets_received counter\ndave_packets_received 7\n"));
        assert!(text.contains("# TYPE dave_records gauge\ndave_records 3\n"));
        assert_eq!(text.matches("# TYPE dave_malformed counter").count(), 1);
        assert!(text.contains("dave_malformed{reason=\""));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<u64>().is_ok(), "line {line}");
        }
    }

    #[test]
    fn routes_requests() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe\r\n"), Route::BadRequest);
        assert_eq!(route(b""), Route::BadRequest);
        assert_eq!(route(b"GET /metrics HTTP/1.1"), Route::BadRequest);
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
}
