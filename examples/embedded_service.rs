//! A small request/response service with a dave node embedded in it, and the latency its
//! clients see.
//!
//! The service speaks one line per request over TCP: `PUT <key> <value>` stores a record owned
//! by the service's node key, `GET <key>` reads it back through the network. Behind it, the
//! embedded node joins a three-node network on loopback (two more nodes started here, standing
//! in for the rest of the network). A client then puts a few records and reads them many times,
//! timing each request from its own side of the socket, and prints the latency percentiles.
//!
//! ```text
//! cargo run --release --example embedded_service
//! cargo run --release --example embedded_service -- 2000   # number of GET requests
//! ```
//!
//! Only the library's default-features-off API is used, so a service can link
//! `dave = { default-features = false }` and build this as is.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dave::{Config, GetError, Node};

/// Records the client puts (each costs a proof of work).
const RECORDS: usize = 10;
/// GET requests by default; the first argument overrides it (bounded below).
const DEFAULT_GETS: usize = 500;
/// Most GET requests accepted from the command line: the run stays a few seconds long.
const MAX_GETS: usize = 100_000;
/// Work of the records: the network's minimum is 20 bits; 12 keeps the example quick while
/// still exercising the proof of work (the nodes here are told to accept it).
const WORK_BITS: u32 = 12;
/// Longest a GET waits for the network.
const GET_TIMEOUT: Duration = Duration::from_secs(2);

fn config() -> Config {
    Config {
        listen_addr: "127.0.0.1:0".parse().expect("address"),
        min_work_bits: WORK_BITS,
        receiver_threads: 1,
        shard_owner_threads: 4,
        pin_cores: false,
        // Peers in this example are trusted at once; a production node keeps the 5 s default.
        activation_delay_ms: 0,
        ..Config::default()
    }
}

/// Answers one request line.
fn answer(node: &Node, line: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("PUT"), Some(key), Some(value)) => match node.put(key.as_bytes(), value.as_bytes()) {
            Ok(outcome) => {
                // `put` writes a v2 record (and a v1 record for v1-only peers, if any).
                let v2 = outcome.v2.map_or(0, |d| d.report.sent_to.len());
                let v1 = outcome.v1.map_or(0, |r| r.sent_to.len());
                format!("OK stored, sent to {} peers", v2.max(v1))
            }
            Err(e) => format!("ERR {e}"),
        },
        (Some("GET"), Some(key), None) => {
            let any = dave::GetOptions::default();
            match node.get_with(&node.public_key(), key.as_bytes(), GET_TIMEOUT, any) {
                Ok(dat) => format!("VALUE {}", String::from_utf8_lossy(dat.value())),
                Err(GetError::NotFound) => "NOTFOUND".to_string(),
                Err(e) => format!("ERR {e}"),
            }
        }
        _ => "ERR expected 'PUT <key> <value>' or 'GET <key>'".to_string(),
    }
}

/// Serves one connection until the client closes it.
fn serve(node: &Node, stream: TcpStream) -> std::io::Result<()> {
    // One write per reply and no Nagle delay: otherwise a reply waits for the client's
    // delayed ACK (40 ms on Linux).
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let mut reply = answer(node, line?.trim_end());
        reply.push('\n');
        out.write_all(reply.as_bytes())?;
    }
    Ok(())
}

fn request(stream: &mut TcpStream, reader: &mut impl BufRead, line: &str) -> (String, Duration) {
    let started = Instant::now();
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("send request");
    let mut reply = String::new();
    reader.read_line(&mut reply).expect("read reply");
    (reply.trim_end().to_string(), started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() {
    let gets = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(DEFAULT_GETS)
        .clamp(1, MAX_GETS);

    // The rest of the network: two plain nodes.
    let seed = Node::start(config()).expect("seed node starts");
    let other = Node::start(Config {
        edges: vec![seed.local_addr()],
        ..config()
    })
    .expect("second node starts");
    // The service's own node.
    let node = Arc::new(
        Node::start(Config {
            edges: vec![seed.local_addr()],
            ..config()
        })
        .expect("service node starts"),
    );
    let joined = Instant::now();
    while node.stats().peers_active < 2 && joined.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "service node {} knows {} peers after {:.2} s",
        node.local_addr(),
        node.stats().peers_active,
        joined.elapsed().as_secs_f64()
    );

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind service");
    let service_addr = listener.local_addr().expect("service address");
    {
        let node = Arc::clone(&node);
        std::thread::spawn(move || {
            // One client in this example; a real service would hand connections to a pool.
            if let Ok((stream, _)) = listener.accept()
                && let Err(e) = serve(&node, stream)
            {
                eprintln!("connection ended: {e}");
            }
        });
    }

    let mut stream = TcpStream::connect(service_addr).expect("connect to service");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));

    let mut put_times = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let (reply, took) = request(&mut stream, &mut reader, &format!("PUT key{i} value {i}"));
        assert!(reply.starts_with("OK"), "PUT key{i}: {reply}");
        put_times.push(took);
    }
    let mut get_times = Vec::with_capacity(gets);
    for i in 0..gets {
        let key = i % RECORDS;
        let (reply, took) = request(&mut stream, &mut reader, &format!("GET key{key}"));
        assert_eq!(reply, format!("VALUE value {key}"), "GET key{key}");
        get_times.push(took);
    }
    drop(stream);

    for (what, times) in [("PUT", &mut put_times), ("GET", &mut get_times)] {
        times.sort();
        println!(
            "{what}: {} requests, latency p50 {:?}, p99 {:?}, max {:?}",
            times.len(),
            percentile(times, 0.50),
            percentile(times, 0.99),
            times[times.len() - 1],
        );
    }
    println!(
        "(PUT includes a {WORK_BITS}-bit proof of work; GET is one TCP round trip to the service \
         plus the node's answer)"
    );
    let stats = node.stats();
    println!(
        "service node: {} records held, {} peers active",
        stats.records, stats.peers_active
    );
    drop(other);
    drop(seed);
}
