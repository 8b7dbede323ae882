//! Helpers for the command-line tests: run the real `dave` binary as a child process with a
//! time limit, keep long-running nodes behind a guard that kills them on drop (so a failing
//! test leaves no process behind), read their log lines with a deadline, and scrape metrics
//! over plain HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Node flags that keep test nodes small: one receiver, four owners, no pinning, low work.
pub const SMALL: [&str; 7] = [
    "--receivers",
    "1",
    "--owners",
    "4",
    "--no-pin",
    "--min-work",
    "8",
];

/// Work bits of test puts (at least the nodes' `--min-work 8`).
pub const WORK: &str = "10";

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// The exit code (panics if killed by a signal).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }

    /// Asserts stderr is exactly one line starting with `dave: `.
    pub fn assert_one_dave_line(&self) {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:?}");
        assert!(lines[0].starts_with("dave: "), "prefix: {self:?}");
    }
}

/// Kills the child on drop unless it has already been waited for.
pub struct Guard {
    child: Option<Child>,
}

impl Guard {
    fn new(child: Child) -> Guard {
        Guard { child: Some(child) }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present")
    }

    /// Waits for exit up to `limit`; `None` if still running.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                return Some(status);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The child's process id.
    pub fn pid(&mut self) -> u32 {
        self.child().id()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Runs `dave args…` to completion within `limit` (killed and failed otherwise).
pub fn dave(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dave"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dave");
    let out = read_all(child.stdout.take().expect("stdout"));
    let err = read_all(child.stderr.take().expect("stderr"));
    let mut guard = Guard::new(child);
    let status = guard
        .wait_for(limit)
        .unwrap_or_else(|| panic!("dave {args:?} did not finish within {limit:?}"));
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// A long-running node process (`dave node`, or another program's node), killed when dropped.
pub struct NodeProcess {
    /// The process.
    pub guard: Guard,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    /// The UDP address it listens on (for `dave node`, from its "listening on" line).
    pub addr: SocketAddr,
}

/// Which output stream of a process carries its log lines.
pub enum Stream {
    Stdout,
    Stderr,
}

/// How long a node may take to print its "listening on" line.
const START_LIMIT: Duration = Duration::from_secs(10);

impl NodeProcess {
    /// Starts `dave node args…` and waits for its "listening on ADDR" line.
    pub fn start(args: &[&str]) -> NodeProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dave"));
        command
            .arg("node")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut node = NodeProcess::spawn(command, Stream::Stderr);
        let line = node.wait_for_line("listening on ", START_LIMIT);
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .expect("address after 'listening on'");
        node.addr = addr.parse().expect("listen address parses");
        node
    }

    /// Spawns `command` (whose `stream` must be piped) and collects that stream's lines; the
    /// address is a placeholder for the caller to fill in.
    pub fn spawn(mut command: Command, stream: Stream) -> NodeProcess {
        let mut child = command.spawn().expect("spawn node process");
        let output: Box<dyn Read + Send> = match stream {
            Stream::Stdout => Box::new(child.stdout.take().expect("piped stdout")),
            Stream::Stderr => Box::new(child.stderr.take().expect("piped stderr")),
        };
        let (tx, lines) = channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines() {
                    let Ok(line) = line else { break };
                    log.lock().expect("log").push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        NodeProcess {
            guard: Guard::new(child),
            lines,
            log,
            addr: "0.0.0.0:0".parse().expect("placeholder"),
        }
    }

    /// Waits (at most `limit`) for a log line containing `needle`; panics with the log if none.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "no line with {needle:?} within {limit:?}; log:\n{}",
                        self.log()
                    )
                }
            }
        }
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// The address as a string, for `--edge`.
    pub fn edge(&self) -> String {
        self.addr.to_string()
    }

    /// The metrics address from the "metrics on http://ADDR/metrics" line.
    pub fn metrics_addr(&mut self) -> SocketAddr {
        let line = self.wait_for_line("metrics on http://", START_LIMIT);
        let rest = line.split("http://").nth(1).expect("url");
        rest.split('/')
            .next()
            .expect("host:port")
            .parse()
            .expect("metrics address")
    }
}

/// Sends SIGTERM to a process (with kill(1), so the tests need no `unsafe`).
pub fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -TERM {pid}: {status}");
}

/// One HTTP/1.1 request; returns the whole response (head and body).
pub fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request).expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
}

/// Sends `request` ignoring errors (the server may close early on a bad request); returns
/// whatever came back.
pub fn http_lossy(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// Scrapes `/metrics`.
pub fn scrape(addr: SocketAddr) -> String {
    let response = http(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    response
}

/// The value of an unlabelled sample, e.g. `metric(&text, "dave_records")`.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
        .trim()
        .parse()
        .expect("integer sample")
}

/// The hex public key in a key file.
pub fn pubkey_hex(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).expect("key file");
    assert_eq!(bytes.len(), 64);
    bytes[32..].iter().map(|b| format!("{b:02x}")).collect()
}
