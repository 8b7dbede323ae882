//! A local demonstration network: N nodes on loopback addresses inside one process, started,
//! joined through one edge, given a few records and asked for them from every other node.
//!
//! This is the logic behind `dave demo` (the README's first command); the binary only draws
//! progress and prints the [`DemoReport`]. Nothing here is special-cased: the nodes run the real
//! protocol over real UDP with the reference's timers (so becoming active takes the 5 s
//! activation delay), except for a lower proof-of-work difficulty ([`DEMO_WORK_BITS`]) so the
//! demo finishes in seconds, and small thread counts so many nodes fit on one machine.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::node::{GetError, Node, PutError, StartError};

/// Proof-of-work difficulty of the demo's records and minimum the demo nodes require. The
/// network default is 20 bits (about a million hashes per record); 16 bits is about 65 000
/// hashes, a few milliseconds, and still verified by every node that stores a copy.
pub const DEMO_WORK_BITS: u32 = 16;

/// Most nodes a demo runs: each node has its own 127.0.0.x address, and many more threads than
/// this would only show the machine's limits.
pub const MAX_DEMO_NODES: usize = 32;

/// The records the demo writes (key, value).
pub const DEMO_RECORDS: [(&str, &str); 3] = [
    ("greeting", "hello from dave"),
    ("colour", "blue"),
    ("answer", "42"),
];

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Nodes to start, 2..=[`MAX_DEMO_NODES`].
    pub nodes: usize,
    /// Proof-of-work bits of the records (and the nodes' minimum).
    pub work_bits: u32,
    /// How long the nodes may take to see each other as active.
    pub activation_timeout: Duration,
    /// How long each get may take.
    pub get_timeout: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            nodes: 5,
            work_bits: DEMO_WORK_BITS,
            // The 5 s activation delay plus discovery rounds for the largest demo.
            activation_timeout: Duration::from_secs(30),
            get_timeout: Duration::from_secs(2),
        }
    }
}

/// Progress, reported while the demo runs.
#[derive(Debug, Clone)]
pub enum DemoEvent {
    /// Every node is listening; index 0 is the edge the others join through.
    Started {
        /// Each node's address.
        addrs: Vec<SocketAddr>,
    },
    /// Active peer links so far, out of `wanted` (every node seeing every other).
    Activating {
        /// Sum over nodes of the active peers each sees (capped at N - 1 each).
        active_links: usize,
        /// N × (N - 1).
        wanted: usize,
    },
    /// Every node sees every other as active.
    AllActive {
        /// Time since start.
        after: Duration,
    },
    /// The reader joined (after the puts) and found this many peers active.
    ReaderJoined {
        /// The reader's address.
        addr: SocketAddr,
        /// Peers it sees as active.
        peers_active: u64,
    },
    /// A record was stored by the writer and sent to replicas.
    Put {
        /// Key and value.
        key: String,
        /// Value.
        value: String,
        /// Where the writer sent it.
        sent_to: Vec<SocketAddr>,
    },
}

/// One node's line of the result table.
#[derive(Debug, Clone)]
pub struct NodeRow {
    /// Index (0 is the edge).
    pub index: usize,
    /// Listening address.
    pub addr: SocketAddr,
    /// Active peers it sees.
    pub peers_active: u64,
    /// Records it holds.
    pub records: u64,
    /// GETs from the network it answered with a record (`Stats::gets_found`).
    pub gets_answered: u64,
}

/// Where one record ended up.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The record's key.
    pub key: String,
    /// Indices of the nodes holding a copy.
    pub holders: Vec<usize>,
}

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Index of the node that wrote the records (their owner).
    pub writer: usize,
    /// The writer's public key (the records' owner).
    pub owner: [u8; 32],
    /// Gets made from the other nodes.
    pub gets_made: usize,
    /// Gets that returned the right value.
    pub gets_found: usize,
    /// The reader's address.
    pub reader: SocketAddr,
    /// Records the reader fetched from the network (it holds nothing of its own).
    pub reader_found: usize,
    /// One row per node.
    pub nodes: Vec<NodeRow>,
    /// One entry per record.
    pub placements: Vec<Placement>,
    /// Time from start to the end of the gets.
    pub elapsed: Duration,
}

impl DemoReport {
    /// Whether every node saw every other as active at the end.
    pub fn all_active(&self) -> bool {
        let want = self.nodes.len() as u64 - 1;
        self.nodes.iter().all(|n| n.peers_active >= want)
    }
}

/// Why the demo failed.
#[derive(Debug)]
pub enum DemoError {
    /// `nodes` out of range.
    NodeCount(usize),
    /// A node could not start.
    Start(usize, StartError),
    /// The nodes did not all become active in time (active links seen, wanted).
    NotActive(usize, usize),
    /// A put failed.
    Put(String, PutError),
    /// A get returned the wrong value (key, node index).
    WrongValue(String, usize),
    /// A get failed (key, node index, why).
    Get(String, usize, GetError),
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::NodeCount(n) => {
                write!(f, "--nodes must be between 2 and {MAX_DEMO_NODES}, not {n}")
            }
            DemoError::Start(i, e) => write!(f, "node {i} could not start: {e}"),
            DemoError::NotActive(seen, want) => write!(
                f,
                "the nodes did not all become active in time ({seen} of {want} peer links)"
            ),
            DemoError::Put(key, e) => write!(f, "put {key:?} failed: {e}"),
            DemoError::WrongValue(key, i) => {
                write!(f, "node {i} returned a wrong value for {key:?}")
            }
            DemoError::Get(key, i, e) => write!(f, "get {key:?} on node {i}: {e}"),
        }
    }
}

impl std::error::Error for DemoError {}

/// How often activation progress is polled and reported.
const POLL: Duration = Duration::from_millis(100);
/// Longest wait for the writer's copies to reach their replicas before the gets start.
const REPLICATION_WAIT: Duration = Duration::from_secs(2);
/// Longest wait for the reader to see every demo node as active.
const READER_JOIN_WAIT: Duration = Duration::from_secs(5);

/// The reader is a client, like `dave get`: it trusts the peers it authenticated at once
/// (`activation_delay_ms = 0`) instead of after 5 s, which only changes whom *it* asks.
fn reader_config(ip: Ipv4Addr, edge: SocketAddr, work_bits: u32) -> Config {
    Config {
        activation_delay_ms: 0,
        ..demo_config(ip, Some(edge), work_bits)
    }
}

/// The configuration of a demo node: loopback, few threads, real protocol timers.
pub fn demo_config(ip: Ipv4Addr, edge: Option<SocketAddr>, work_bits: u32) -> Config {
    Config {
        listen_addr: SocketAddr::from((ip, 0)),
        edges: edge.into_iter().collect(),
        min_work_bits: work_bits,
        receiver_threads: 1,
        shard_owner_threads: 4,
        pow_threads: 0,
        pin_cores: false,
        ..Config::default()
    }
}

/// Node `index` listens on 127.0.0.(index + 1). Where only 127.0.0.1 exists (some systems
/// configure just that one loopback address), every node uses it with its own port.
fn start_node(index: usize, make: impl Fn(Ipv4Addr) -> Config) -> Result<Node, DemoError> {
    let ip = Ipv4Addr::new(127, 0, 0, index as u8 + 1);
    match Node::start(make(ip)) {
        Err(StartError::Bind(_, e)) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            Node::start(make(Ipv4Addr::LOCALHOST)).map_err(|e| DemoError::Start(index, e))
        }
        other => other.map_err(|e| DemoError::Start(index, e)),
    }
}

/// Runs the demo. `on_event` is called from this thread as the demo advances.
pub fn run(
    options: &DemoOptions,
    on_event: &mut dyn FnMut(&DemoEvent),
) -> Result<DemoReport, DemoError> {
    let n = options.nodes;
    if !(2..=MAX_DEMO_NODES).contains(&n) {
        return Err(DemoError::NodeCount(n));
    }
    let start = Instant::now();
    let work = options.work_bits;
    let edge = start_node(0, |ip| demo_config(ip, None, work))?;
    let edge_addr = edge.local_addr();
    let mut nodes = vec![edge];
    for i in 1..n {
        nodes.push(start_node(i, |ip| demo_config(ip, Some(edge_addr), work))?);
    }
    on_event(&DemoEvent::Started {
        addrs: nodes.iter().map(Node::local_addr).collect(),
    });

    // Every node must see every other one as active.
    let wanted = n * (n - 1);
    let links = |nodes: &[Node]| -> usize {
        nodes
            .iter()
            .map(|node| (node.stats().peers_active as usize).min(n - 1))
            .sum()
    };
    let deadline = start + options.activation_timeout;
    loop {
        let active_links = links(&nodes);
        on_event(&DemoEvent::Activating {
            active_links,
            wanted,
        });
        if active_links == wanted {
            break;
        }
        if Instant::now() >= deadline {
            return Err(DemoError::NotActive(active_links, wanted));
        }
        std::thread::sleep(POLL);
    }
    on_event(&DemoEvent::AllActive {
        after: start.elapsed(),
    });

    // One node (not the edge, so the records do not simply start where everyone joined) writes.
    let writer = 1;
    let owner = nodes[writer].public_key();
    let owner_pair = nodes[writer].keypair().clone();
    for (key, value) in DEMO_RECORDS {
        let report = nodes[writer]
            .put_as(
                &owner_pair,
                key.as_bytes(),
                value.as_bytes(),
                options.work_bits,
            )
            .map_err(|e| DemoError::Put(key.to_string(), e))?;
        on_event(&DemoEvent::Put {
            key: key.to_string(),
            value: value.to_string(),
            sent_to: report.sent_to,
        });
    }

    // Let the copies land: each record is held by the writer and its FANOUT replicas at least.
    let want_copies = n.min(4);
    let copies_deadline = Instant::now() + REPLICATION_WAIT;
    while Instant::now() < copies_deadline {
        let placed = DEMO_RECORDS.iter().all(|(key, _)| {
            nodes
                .iter()
                .filter(|node| node.get_local(&owner, key.as_bytes()).is_some())
                .count()
                >= want_copies
        });
        if placed {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let placements = DEMO_RECORDS
        .iter()
        .map(|(key, _)| Placement {
            key: key.to_string(),
            holders: (0..n)
                .filter(|&i| nodes[i].get_local(&owner, key.as_bytes()).is_some())
                .collect(),
        })
        .collect();

    // Every other node asks for every record (from its own store or from its closest peers).
    let mut gets_made = 0;
    let mut gets_found = 0;
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != writer) {
        for (key, value) in DEMO_RECORDS {
            gets_made += 1;
            match node.get(&owner, key.as_bytes(), options.get_timeout) {
                Ok(dat) if dat.value() == value.as_bytes() => gets_found += 1,
                Ok(_) => return Err(DemoError::WrongValue(key.to_string(), i)),
                Err(e) => return Err(DemoError::Get(key.to_string(), i, e)),
            }
        }
    }

    // A reader joins now, holding nothing, and fetches every record from the network: these
    // are the GETs the table counts as answered.
    let reader = start_node(n, |ip| reader_config(ip, edge_addr, work))?;
    let reader_deadline = Instant::now() + READER_JOIN_WAIT;
    while reader.stats().peers_active < n as u64 && Instant::now() < reader_deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    on_event(&DemoEvent::ReaderJoined {
        addr: reader.local_addr(),
        peers_active: reader.stats().peers_active,
    });
    let mut reader_found = 0;
    for (key, value) in DEMO_RECORDS {
        match reader.get(&owner, key.as_bytes(), options.get_timeout) {
            Ok(dat) if dat.value() == value.as_bytes() => reader_found += 1,
            Ok(_) => return Err(DemoError::WrongValue(key.to_string(), n)),
            Err(e) => return Err(DemoError::Get(key.to_string(), n, e)),
        }
    }

    let rows = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let stats = node.stats();
            NodeRow {
                index,
                addr: node.local_addr(),
                peers_active: stats.peers_active,
                records: stats.records,
                gets_answered: stats.gets_found,
            }
        })
        .collect();
    Ok(DemoReport {
        writer,
        owner,
        gets_made,
        gets_found,
        reader: reader.local_addr(),
        reader_found,
        nodes: rows,
        placements,
        elapsed: start.elapsed(),
    })
}
