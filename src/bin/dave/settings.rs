//! From flags and an optional TOML file to a `dave::Config` (plus the binary's own settings):
//! name resolution, key file reading and value checks, each failure a one-line message.
//!
//! The TOML file uses `Config`'s field names (units in the names) and refuses unknown keys, so
//! a typo is an error rather than a silently ignored setting. Flags override the file; relative
//! paths in the file are relative to the file's directory.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use dave::Config;
use dave::backup::SyncPolicy;
use dave::pow::SignatureCheck;

use crate::Failure;
use crate::args::NodeArgs;

/// Default time between the node's one-line summaries.
pub const DEFAULT_SUMMARY_EVERY_MS: u64 = 10_000;

/// Everything `dave node` runs with.
#[derive(Debug)]
pub struct NodeSettings {
    /// The library's configuration.
    pub config: Config,
    /// Where to serve Prometheus metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// Time between summary log lines.
    pub summary_every: Duration,
}

/// The TOML file: every field optional, named as in `dave::Config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    listen_addr: Option<String>,
    key_file: Option<PathBuf>,
    edges: Option<Vec<String>>,
    backup_path: Option<PathBuf>,
    sync: Option<String>,
    backup_compact_min_file_bytes: Option<u64>,
    shard_capacity_bytes: Option<usize>,
    min_work_bits: Option<u32>,
    metrics_addr: Option<String>,
    receiver_threads: Option<usize>,
    shard_owner_threads: Option<usize>,
    pow_threads: Option<usize>,
    pin_cores: Option<bool>,
    owner_nice: Option<i32>,
    owner_sched_idle: Option<bool>,
    verify_permits: Option<usize>,
    receiver_spin_us: Option<u64>,
    receiver_slice_us: Option<u64>,
    receiver_steal_batches: Option<usize>,
    receivers_on_demand: Option<bool>,
    put_lane: Option<bool>,
    put_lane_gro: Option<bool>,
    udp_segmentation: Option<bool>,
    signature_check: Option<String>,
    fanout: Option<usize>,
    npeer_limit: Option<usize>,
    max_peers: Option<usize>,
    stranger_proofs_per_s: Option<u32>,
    ping_period_ms: Option<u64>,
    deactivate_after_ms: Option<u64>,
    drop_after_ms: Option<u64>,
    activation_delay_ms: Option<u64>,
    getmyaddrport_every_ms: Option<u64>,
    ttl_ms: Option<i64>,
    get_settle_ms: Option<u64>,
    route_lookups: Option<bool>,
    summary_every_ms: Option<u64>,
}

/// Builds the node's settings: defaults, then the `--config` file, then the flags.
pub fn node_settings(args: &NodeArgs) -> Result<NodeSettings, Failure> {
    let (file, base) = match &args.config {
        Some(path) => (read_node_file(path)?, path.parent().map(Path::to_path_buf)),
        None => (NodeFile::default(), None),
    };
    let in_file_dir = |p: &PathBuf| match &base {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.clone(),
    };

    let mut config = Config::default();
    if let Some(listen) = args.listen.as_ref().or(file.listen_addr.as_ref()) {
        config.listen_addr = resolve(listen, "listen address")?;
    }
    let key_file = args.key.clone().or(file.key_file.as_ref().map(in_file_dir));
    if let Some(path) = key_file {
        config.keypair = Some(read_key(&path)?);
    }
    let edges: Vec<String> = if args.edges.is_empty() {
        file.edges.clone().unwrap_or_default()
    } else {
        args.edges.clone()
    };
    config.edges = edges
        .iter()
        .map(|e| resolve(e, "edge"))
        .collect::<Result<_, _>>()?;
    config.backup_path = args
        .backup
        .clone()
        .or(file.backup_path.as_ref().map(in_file_dir));
    if let Some(sync) = args.sync.as_ref().or(file.sync.as_ref()) {
        config.sync_policy = parse_sync(sync)?;
    }
    if let Some(check) = file.signature_check.as_deref() {
        config.signature_check = match check {
            "single" => SignatureCheck::Single,
            "batch" => SignatureCheck::Batch,
            _ => {
                return Err(Failure::error(format!(
                    "invalid signature_check {check:?}: expected single or batch"
                )));
            }
        };
    }
    set(
        &mut config.shard_capacity_bytes,
        args.shard_capacity.or(file.shard_capacity_bytes),
    );
    set(
        &mut config.min_work_bits,
        args.min_work.or(file.min_work_bits),
    );
    set(
        &mut config.receiver_threads,
        args.receivers.or(file.receiver_threads),
    );
    set(
        &mut config.shard_owner_threads,
        args.owners.or(file.shard_owner_threads),
    );
    set(&mut config.pow_threads, file.pow_threads);
    set(&mut config.pin_cores, file.pin_cores);
    set(&mut config.owner_nice, file.owner_nice);
    set(&mut config.owner_sched_idle, file.owner_sched_idle);
    set(&mut config.verify_permits, file.verify_permits);
    set(&mut config.receiver_spin_us, file.receiver_spin_us);
    set(&mut config.receiver_slice_us, file.receiver_slice_us);
    set(
        &mut config.receiver_steal_batches,
        file.receiver_steal_batches,
    );
    set(&mut config.receivers_on_demand, file.receivers_on_demand);
    set(&mut config.put_lane, file.put_lane);
    set(&mut config.put_lane_gro, file.put_lane_gro);
    set(&mut config.udp_segmentation, file.udp_segmentation);
    if args.no_pin {
        config.pin_cores = false;
    }
    set(&mut config.fanout, file.fanout);
    set(&mut config.npeer_limit, file.npeer_limit);
    set(&mut config.max_peers, file.max_peers);
    set(
        &mut config.stranger_proofs_per_s,
        file.stranger_proofs_per_s,
    );
    set(&mut config.ping_period_ms, file.ping_period_ms);
    set(&mut config.deactivate_after_ms, file.deactivate_after_ms);
    set(&mut config.drop_after_ms, file.drop_after_ms);
    set(&mut config.activation_delay_ms, file.activation_delay_ms);
    set(
        &mut config.getmyaddrport_every_ms,
        file.getmyaddrport_every_ms,
    );
    set(&mut config.ttl_ms, file.ttl_ms);
    set(&mut config.get_settle_ms, file.get_settle_ms);
    set(&mut config.route_lookups, file.route_lookups);
    set(
        &mut config.backup_compact_min_file_bytes,
        file.backup_compact_min_file_bytes,
    );
    config
        .validate()
        .map_err(|e| Failure::error(format!("invalid configuration: {e}")))?;

    let metrics_addr = match args.metrics.as_ref().or(file.metrics_addr.as_ref()) {
        Some(addr) => Some(resolve(addr, "metrics address")?),
        None => None,
    };
    let summary_every_ms = file.summary_every_ms.unwrap_or(DEFAULT_SUMMARY_EVERY_MS);
    if summary_every_ms == 0 {
        return Err(Failure::error(
            "invalid configuration: summary_every_ms must be positive",
        ));
    }
    Ok(NodeSettings {
        config,
        metrics_addr,
        summary_every: Duration::from_millis(summary_every_ms),
    })
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

fn read_node_file(path: &Path) -> Result<NodeFile, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::error(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let at = match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!(" line {line}")
            }
            None => String::new(),
        };
        Failure::error(format!(
            "invalid config file {}{at}: {}",
            path.display(),
            e.message()
        ))
    })
}

/// Reads a key file, with the path in the message.
pub fn read_key(path: &Path) -> Result<dave::Keypair, Failure> {
    dave::Keypair::read_file(path)
        .map_err(|e| Failure::error(format!("cannot use key file {}: {e}", path.display())))
}

/// `every-write`, `every-ms:N` or `never`.
pub fn parse_sync(text: &str) -> Result<SyncPolicy, Failure> {
    let bad = || {
        Failure::error(format!(
            "invalid sync policy {text:?}: expected every-write, every-ms:N or never"
        ))
    };
    match text {
        "every-write" => Ok(SyncPolicy::EveryWrite),
        "never" => Ok(SyncPolicy::Never),
        _ => {
            let ms = text.strip_prefix("every-ms:").ok_or_else(bad)?;
            match ms.parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(SyncPolicy::EveryMs(ms)),
                _ => Err(bad()),
            }
        }
    }
}

/// The flag form of a sync policy (the inverse of [`parse_sync`]).
pub fn sync_name(policy: SyncPolicy) -> String {
    match policy {
        SyncPolicy::EveryWrite => "every-write".to_string(),
        SyncPolicy::EveryMs(ms) => format!("every-ms:{ms}"),
        SyncPolicy::Never => "never".to_string(),
    }
}

/// An address or `host:port`, resolved; IPv4 preferred when a name has both.
pub fn resolve(text: &str, what: &str) -> Result<SocketAddr, Failure> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| Failure::error(format!("cannot resolve {what} {text:?}: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| Failure::error(format!("cannot resolve {what} {text:?}: no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_policies_parse() {
        assert_eq!(parse_sync("every-write").unwrap(), SyncPolicy::EveryWrite);
        assert_eq!(parse_sync("never").unwrap(), SyncPolicy::Never);
        assert_eq!(parse_sync("every-ms:20").unwrap(), SyncPolicy::EveryMs(20));
        assert!(parse_sync("every-ms:0").is_err());
        assert!(parse_sync("every-ms:x").is_err());
        assert!(parse_sync("sometimes").is_err());
    }

    #[test]
    fn names_resolve_and_prefer_ipv4() {
        assert_eq!(
            resolve("localhost:1618", "edge").unwrap(),
            "127.0.0.1:1618".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:7", "edge").unwrap(),
            "[::1]:7".parse().unwrap()
        );
        assert!(resolve("no-port", "edge").is_err());
    }
}
