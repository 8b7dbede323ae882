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
    wait_until(limit, || {
        nodes.iter().all(|n| n.stats().peers_active >= want)
    })
}

/// A scripted peer on a raw UDP socket: answers PINGs with valid PONGs signed by its own key (so a
/// node authenticates it), and hands every other datagram to the test.
pub struct FakePeer {
    pub socket: std::net::UdpSocket,
    pub keypair: dave::Keypair,
}

impl FakePeer {
    /// Binds on `ip` with a short read timeout.
    pub fn bind(ip: [u8; 4]) -> FakePeer {
        let socket = std::net::UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind fake peer");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        FakePeer {
            socket,
            keypair: dave::Keypair::generate(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("addr")
    }

    /// Receives for up to `limit`, answering PINGs; returns the first non-PING datagram.
    pub fn serve_until_other(&self, limit: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while start.elapsed() < limit {
            let Ok((n, from)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            match dave::wire::Message::parse(&buf[..n]) {
                Ok(dave::wire::Message::Ping { challenge }) => self.pong(from, challenge),
                _ => return Some((buf[..n].to_vec(), from)),
            }
        }
        None
    }

    /// Answers PINGs for `duration`, ignoring everything else.
    pub fn serve_pings(&self, duration: Duration) {
        let start = Instant::now();
        while start.elapsed() < duration {
            let _ = self.serve_until_other(duration.saturating_sub(start.elapsed()));
        }
    }

    /// Sends a valid PONG for `challenge`.
    pub fn pong(&self, to: SocketAddr, challenge: [u8; 8]) {
        let pong = pong_datagram(&self.keypair, challenge, rand::random());
        let _ = self.socket.send_to(&pong, to);
    }
}

/// A PONG datagram answering `challenge`, listing no address, signed by `keypair` over `salt`
/// (random for a v1 peer; `wire::ext::build_salt` to advertise extensions).
pub fn pong_datagram(keypair: &dave::Keypair, challenge: [u8; 8], salt: [u8; 16]) -> Vec<u8> {
    let pong = dave::wire::PongRepr {
        addr_count: 0,
        addrs: [[0; dave::limits::ADDR_LEN]; dave::limits::MAX_PONG_ADDRS],
        challenge,
        salt,
        pubkey: keypair.public(),
        sig: keypair.sign(&dave::wire::pong_signed_hash(&challenge, &salt)),
    };
    let mut buf = [0u8; dave::limits::MAX_PACKET_LEN];
    let n = dave::wire::Message::Pong(pong).emit(&mut buf);
    buf[..n].to_vec()
}
