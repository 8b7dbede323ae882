//! Background liveness traffic of idle nodes on loopback (issue 12, "liveness without a full
//! mesh"): N `Node`s on 127.0.3.1.. join the first one, warm up, and then every node's PINGs,
//! PONGs and all datagrams sent are counted over a window. Prints per-node means per second.
//!
//! ```text
//! cargo run --release --example liveness -- --nodes 30 [--warmup-s 20] [--window-s 10]
//!     [--ping-routing-peers]   # the full-mesh schedule for ROUTING peers too (as before)
//!     [--v1]                   # every node v1-only (extensions off)
//! ```
//!
//! Nodes use few threads (1 receiver, 4 owners, 1 PoW worker) and the protocol's default
//! timers. No records are stored, so what is sent is liveness and routing traffic only
//! (PING/PONG, GETMYADDRPORT, the router's FIND_NODE/NODES and address proofs).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dave::wire::Features;
use dave::{Config, Node};

struct Args {
    nodes: usize,
    warmup_s: u64,
    window_s: u64,
    ping_routing_peers: bool,
    v1: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        nodes: 10,
        warmup_s: 20,
        window_s: 10,
        ping_routing_peers: false,
        v1: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match a.as_str() {
            "--nodes" => args.nodes = value("--nodes")? as usize,
            "--warmup-s" => args.warmup_s = value("--warmup-s")?,
            "--window-s" => args.window_s = value("--window-s")?,
            "--ping-routing-peers" => args.ping_routing_peers = true,
            "--v1" => args.v1 = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !(2..=250).contains(&args.nodes) || args.window_s == 0 {
        return Err("--nodes must be 2..=250 and --window-s positive".into());
    }
    Ok(args)
}

/// Per-node counters read at one moment.
#[derive(Clone, Copy, Default)]
struct Sample {
    pings: u64,
    pongs: u64,
    ping_pong_bytes: u64,
    datagrams: u64,
    bytes: u64,
    route_requests: u64,
}

fn sample(node: &Node) -> Sample {
    let s = node.stats();
    Sample {
        pings: s.peer.pings_sent + s.peer.proofs_sent,
        pongs: s.peer.pongs_sent,
        ping_pong_bytes: s.peer.ping_pong_bytes_sent,
        datagrams: s.packets_sent,
        bytes: s.bytes_sent,
        route_requests: node.route_stats().requests_sent,
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("liveness: {e}");
            std::process::exit(2);
        }
    };
    let config = |i: usize, edges: Vec<SocketAddr>| Config {
        listen_addr: SocketAddr::from(([127, 0, 3, 1 + i as u8], 0)),
        edges,
        min_work_bits: 8,
        receiver_threads: 1,
        shard_owner_threads: 4,
        pow_threads: 1,
        pin_cores: false,
        extensions: if args.v1 {
            Features::NONE
        } else {
            Features::ALL
        },
        ping_routing_peers: args.ping_routing_peers,
        ..Config::default()
    };
    let first = Node::start(config(0, vec![])).expect("first node starts");
    let edge = first.local_addr();
    let mut nodes = vec![first];
    for i in 1..args.nodes {
        nodes.push(Node::start(config(i, vec![edge])).expect("node starts"));
    }
    std::thread::sleep(Duration::from_secs(args.warmup_s));
    let before: Vec<Sample> = nodes.iter().map(sample).collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(args.window_s));
    let after: Vec<Sample> = nodes.iter().map(sample).collect();
    let secs = start.elapsed().as_secs_f64();
    let n = nodes.len() as f64;
    let per_node_s = |f: fn(&Sample) -> u64| {
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| f(a) - f(b))
            .sum::<u64>() as f64
            / n
            / secs
    };
    let active = nodes.iter().map(|x| x.stats().peers_active).sum::<u64>() as f64 / n;
    let known = nodes.iter().map(|x| x.stats().peers_known).sum::<u64>() as f64 / n;
    let contacts = nodes.iter().map(|x| x.route_stats().contacts).sum::<u64>() as f64 / n;
    let mode = if args.v1 {
        "v1-only"
    } else if args.ping_routing_peers {
        "ROUTING, ping_routing_peers"
    } else {
        "ROUTING"
    };
    println!(
        "nodes {} ({mode}), warm-up {} s, window {secs:.1} s; per node per second: \
         PINGs {:.2}, PONGs {:.2}, PING+PONG bytes {:.0}; all datagrams {:.2}, all bytes {:.0}, \
         router requests {:.2}; per node: peers active {active:.1}, known {known:.1}, \
         routing contacts {contacts:.1}",
        args.nodes,
        args.warmup_s,
        per_node_s(|s| s.pings),
        per_node_s(|s| s.pongs),
        per_node_s(|s| s.ping_pong_bytes),
        per_node_s(|s| s.datagrams),
        per_node_s(|s| s.bytes),
        per_node_s(|s| s.route_requests),
    );
}
