//! `dave node`: start a node, log what happens, stop cleanly on SIGINT, SIGTERM or SIGHUP.
//!
//! SIGHUP is a clean shutdown, logged like the others, not a reload: the node has no settings
//! that could change safely while it runs (its identity, port and backup log are fixed), and a
//! hangup of the terminal it was started from should not leave it killed half-way (the default
//! action) nor running unattended. Restart it to apply new settings.
//!
//! Logging is one line per event (start, peer became active or inactive, shutdown) plus a
//! periodic summary; never one line per packet. The main thread only watches a signal flag and
//! the node's published state; the node's own threads do all the work.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::HumanBytes;
use log::{info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use dave::metrics::{MetricsServer, Scrape};
use dave::{Node, Stats};

use crate::args::NodeArgs;
use crate::settings::{node_settings, sync_name};
use crate::{EXIT_OK, Failure};

/// How often the main thread checks for a signal: bounds the shutdown latency it adds.
const SIGNAL_POLL: Duration = Duration::from_millis(50);
/// How often the active peer set is compared with the last one to log changes.
const PEER_POLL: Duration = Duration::from_millis(500);

/// Registers `flag` for SIGINT and SIGTERM. A second signal while the first is being handled
/// ends the process at once (exit status 1), for a shutdown that hangs.
pub fn stop_on_signals(flag: &Arc<AtomicBool>) -> Result<(), Failure> {
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(flag))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(flag)))
            .map_err(|e| Failure::error(format!("cannot install a signal handler: {e}")))?;
    }
    Ok(())
}

/// Signals that stop the node cleanly.
const STOP_SIGNALS: [(i32, &str); 3] =
    [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")];

/// Records in `which` the number of the signal that arrived (SIGINT, SIGTERM or SIGHUP). A
/// second signal while the first is being handled ends the process at once (exit status 1), for
/// a shutdown that hangs.
fn record_stop_signals(which: &Arc<AtomicUsize>) -> Result<(), Failure> {
    let first = Arc::new(AtomicBool::new(false));
    for (signal, _) in STOP_SIGNALS {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&first))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&first)))
            .and_then(|_| {
                signal_hook::flag::register_usize(signal, Arc::clone(which), signal as usize)
            })
            .map_err(|e| Failure::error(format!("cannot install a signal handler: {e}")))?;
    }
    Ok(())
}

/// Runs the node until a signal arrives.
pub fn run(args: &NodeArgs) -> Result<i32, Failure> {
    let settings = node_settings(args)?;
    let which = Arc::new(AtomicUsize::new(0));
    record_stop_signals(&which)?;

    let edges = settings.config.edges.clone();
    let backup = settings.config.backup_path.clone();
    let sync = settings.config.sync_policy;
    let persistent_key = settings.config.keypair.is_some();
    let routing = settings.config.routing();
    let node = Arc::new(Node::start(settings.config).map_err(|e| Failure::error(e.to_string()))?);
    // After a successful start, so a start-up error stays the only line on stderr.
    if backup.is_some() && !persistent_key {
        warn!(
            "backup without a persistent key (--key): this node gets a new identity at every \
             start, so after a restart the records in its backup are kept by a node whose ID no \
             longer matches the peers' view; create one with 'dave keygen' and pass --key FILE"
        );
    }
    info!(
        "listening on {} as {}",
        node.local_addr(),
        hex::encode(node.public_key())
    );
    if edges.is_empty() {
        info!("no edges: waiting for peers to find this node");
    } else {
        info!("edges: {}", join(&edges));
    }
    match &backup {
        Some(path) => info!("backup: {} (sync {})", path.display(), sync_name(sync)),
        None => info!("no backup: records are kept in memory only"),
    }
    let metrics = match settings.metrics_addr {
        Some(addr) => {
            let source = Arc::clone(&node);
            let server = MetricsServer::start_scrape(addr, move || Scrape {
                stats: source.stats(),
                v2: Some(source.stats2()),
                route: routing.then(|| source.route_stats()),
            })
            .map_err(|e| Failure::error(format!("cannot serve metrics on {addr}: {e}")))?;
            info!("metrics on http://{}/metrics", server.local_addr());
            Some(server)
        }
        None => None,
    };

    watch(&node, &which, settings.summary_every);

    let signal = which.load(Ordering::SeqCst);
    let name = STOP_SIGNALS
        .iter()
        .find(|(s, _)| *s as usize == signal)
        .map_or("a signal", |(_, name)| name);
    info!("{name} received: shutting down");
    let started = Instant::now();
    drop(metrics); // holds the other reference to the node
    drop(node); // joins every thread; the backup is synced and closed
    info!("stopped in {} ms", started.elapsed().as_millis());
    Ok(EXIT_OK)
}

/// Logs peer changes and summaries until `stop` is set.
fn watch(node: &Node, stop: &AtomicUsize, summary_every: Duration) {
    let mut peers: BTreeSet<SocketAddr> = BTreeSet::new();
    let mut last_peer_check = Instant::now() - PEER_POLL;
    let mut last_summary = Instant::now();
    let mut last_stats = node.stats();
    while stop.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(SIGNAL_POLL);
        if last_peer_check.elapsed() >= PEER_POLL {
            last_peer_check = Instant::now();
            let snapshot = node.peers();
            let now: BTreeSet<SocketAddr> = snapshot.peers().iter().map(|p| p.addr).collect();
            for p in snapshot.peers().iter().filter(|p| !peers.contains(&p.addr)) {
                let edge = if p.edge { " (edge)" } else { "" };
                info!(
                    "peer {}{edge} active, key {}",
                    p.addr,
                    hex::encode(&p.pubkey[..8])
                );
            }
            for gone in peers.difference(&now) {
                info!("peer {gone} no longer active");
            }
            peers = now;
        }
        if last_summary.elapsed() >= summary_every {
            let stats = node.stats();
            info!("{}", summary(&last_stats, &stats, last_summary.elapsed()));
            last_summary = Instant::now();
            last_stats = stats;
        }
    }
}

/// One line in three parts: the state now (peers, records), rates over the last interval, and
/// totals since the start (drops).
pub fn summary(before: &Stats, now: &Stats, over: Duration) -> String {
    let secs = over.as_secs_f64().max(0.001);
    let puts = (now.puts_received + now.local_puts)
        .saturating_sub(before.puts_received + before.local_puts);
    let gets = now.gets_received.saturating_sub(before.gets_received);
    let full = now.shard_channel_full + now.peer_channel_full;
    let malformed = now.malformed_total();
    let invalid: u64 =
        now.put_invalid.iter().sum::<u64>() + now.get_ack_invalid.iter().sum::<u64>();
    format!(
        "peers {} active / {} known, records {} ({}); last {:.0} s: puts {:.1}/s, gets {:.1}/s; \
         since start: drops {} (queue full {full}, malformed {malformed}, invalid {invalid})",
        now.peers_active,
        now.peers_known,
        now.records,
        HumanBytes(now.record_bytes),
        secs,
        puts as f64 / secs,
        gets as f64 / secs,
        full + malformed + invalid,
    )
}

fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
