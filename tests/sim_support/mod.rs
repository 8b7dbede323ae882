//! Shared by the simulator tests (`sim_network.rs`, `sim_fast_crypto.rs`): running a scenario
//! with its report printed, and the small replay scenario both files run.

use std::time::Instant;

use dave::sim::{self, Report, SimOptions};

/// Runs one scenario and prints its report (`--nocapture` shows it).
pub fn run(name: &str, options: &SimOptions) -> Report {
    let started = Instant::now();
    let report = sim::run(options).expect("valid options");
    eprintln!(
        "--- {name}: {:.1} s wall\n{report}\n",
        started.elapsed().as_secs_f64()
    );
    report
}

/// 16 nodes for 30 virtual seconds with everything that draws randomness at once: loss,
/// duplication, reordering, churn, an edge restart, a dropper and a poisoner, with puts,
/// updates and gets.
#[allow(dead_code)] // `sim_routing.rs` runs scenarios of its own
pub fn replay_options(seed: u64) -> SimOptions {
    let mut o = SimOptions {
        seed,
        nodes: 16,
        edges: 2,
        duration_ms: 30_000,
        ..SimOptions::default()
    };
    o.network.loss = 0.01;
    o.network.duplicate = 0.01;
    o.network.reorder = 0.05;
    o.adversaries.droppers = 1;
    o.adversaries.poisoners = 1;
    o.churn.per_hour = 20.0;
    o.churn.start_ms = 15_000;
    o.churn.edge_restart_every_ms = 10_000;
    o.churn.edge_down_ms = 5_000;
    o.workload.records = 40;
    o.workload.put_start_ms = 8_000;
    o.workload.put_end_ms = 20_000;
    o.workload.gets = 40;
    o.workload.get_start_ms = 12_000;
    o.workload.update_fraction = 0.3;
    o.workload.final_check_window_ms = 2_000;
    o
}
