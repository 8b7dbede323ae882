//! `stats`: prints node_server's counters (its stats socket) as JSON; `--wait` makes it a
//! readiness check.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::Value;

use crate::Result;
use crate::net::query_stats;

#[derive(Args, Debug, Clone)]
pub(crate) struct StatsArgs {
    /// node_server's stats socket.
    #[arg(long, default_value = "127.0.0.1:7999")]
    pub(crate) stats_addr: SocketAddr,
    /// Keep asking for this many seconds until the node answers (readiness check).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) wait: f64,
}

pub(crate) fn run_stats(a: &StatsArgs) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs_f64(a.wait.clamp(0.0, 120.0));
    loop {
        if let Some(v) = query_stats(a.stats_addr) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("no answer from {}", a.stats_addr));
        }
        thread::sleep(Duration::from_millis(100));
    }
}
