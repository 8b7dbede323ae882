//! Shared helpers for the real-UDP network tests: nodes on distinct 127.0.0.x addresses with
//! small thread counts, and bounded waiting.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dave::{Config, Node};

/// Leading zero bits used by test puts: cheap, and still checked by every receiver.
pub const TEST_WORK_BITS: u32 = 8;

/// A free UDP port on `ip` (bind to port 0, read it back, release it).
pub fn free_addr(ip: [u8; 4]) -> SocketAddr {
    let socket = std::net::UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind probe");
    socket.local_addr().expect("probe addr")
}

/// A config for a test node: few threads, low work, real defaults for every protocol timer.
pub fn test_config(ip: [u8; 4], edges: Vec<SocketAddr>) -> Config {
    Config {
        listen_addr: SocketAddr::from((ip, 0)),
        edges,
        min_work_bits: TEST_WORK_BITS,
        receiver_threads: 1,
        shard_owner_threads: 4,
        pow_threads: 1,
        pin_cores: false,
        ..Config::default()
    }
}

/// Polls `check` every 50 ms until it is true or `limit` passes; returns whether it became true.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// Starts an edge on 127.0.0.`base` and `n - 1` nodes on the following addresses joining it.
pub fn start_network(base: u8, n: usize) -> Vec<Node> {
    let edge = Node::start(test_config([127, 0, 0, base], vec![])).expect("edge starts");
    let edge_addr = edge.local_addr();
    let mut nodes = vec![edge];
    for i in 1..n {
        let config = test_config([127, 0, 0, base + i as u8], vec![edge_addr]);
        nodes.push(Node::start(config).expect("node starts"));
    }
    nodes
}

/// Waits until every node sees every other as active.
pub fn wait_all_active(nodes: &[Node], limit: Duration) -> bool {
    let want = nodes.len() as u64 - 1;
    wait_until(limit, || nodes.iter().all(|n| n.stats().peers_active >= want))
}
