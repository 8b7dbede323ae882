//! The routing-level simulator (`dave::route::world`) from the command line: lookups, replicas
//! and background traffic at 1,000 to 100,000 nodes, single-threaded and deterministic.
//!
//! ```text
//! cargo run --release --example route_sim -- --nodes 10000 --minutes 10 [--churn 0.2]
//!     [--loss 0.01] [--sybils 32] [--sybils-forge 1] [--drop 0.1] [--forge 0.1] [--stale 0.1]
//!     [--k 8] [--replicas 4] [--paths 1] [--alpha 3] [--verify-ids 1]
//!     [--records 1000] [--seed 1]
//! ```

use std::time::Instant;

use dave::route::world::{World, WorldOptions};

/// `RUST_LOG=debug` prints the world's debug lines (stale gets, what their lookups found) to
/// stderr; no logging dependency needed for one example.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!("{} {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

fn main() {
    let level = match std::env::var("RUST_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        _ => log::LevelFilter::Off,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
    let mut o = WorldOptions::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let Some(value) = args.get(i + 1) else {
            eprintln!("route_sim: {flag} needs a value");
            std::process::exit(2);
        };
        let bad = |what: &str| -> ! {
            eprintln!("route_sim: {flag} {value}: expected {what}");
            std::process::exit(2)
        };
        let int = || value.parse::<u64>().unwrap_or_else(|_| bad("an integer"));
        let float = || value.parse::<f64>().unwrap_or_else(|_| bad("a number"));
        match flag {
            "--nodes" => o.nodes = int() as usize,
            "--minutes" => o.duration_ms = int() * 60_000,
            "--churn" => o.churn_fraction = float(),
            "--loss" => o.loss = float(),
            "--sybils" => o.sybils = int() as usize,
            "--sybils-forge" => o.sybils_forge_ids = int() != 0,
            "--drop" => o.droppers = float(),
            "--forge" => o.forgers = float(),
            "--stale" => o.stale = float(),
            "--k" => o.router.table.bucket_size = int() as usize,
            "--replicas" => o.replicas = int() as usize,
            "--paths" => o.router.lookup.paths = int() as usize,
            "--alpha" => o.router.lookup.alpha = int() as usize,
            "--verify-ids" => o.router.lookup.verify_ids = int() != 0,
            "--records" => o.records = int() as usize,
            "--seed" => o.seed = int(),
            _ => {
                eprintln!("route_sim: unknown flag {flag}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    let misbehaving = [o.droppers, o.forgers, o.stale];
    if misbehaving.iter().any(|f| !(0.0..=1.0).contains(f)) || misbehaving.iter().sum::<f64>() > 1.0
    {
        eprintln!("route_sim: --drop, --forge and --stale are fractions adding up to at most 1");
        std::process::exit(2);
    }
    if let Err(e) = o.router.table.validate() {
        eprintln!("route_sim: {e}");
        std::process::exit(2);
    }
    let started = Instant::now();
    let report = World::new(o.clone()).run();
    println!("route_sim: {}", o.summary());
    for line in report.lines() {
        println!("  {line}");
    }
    println!("  wall time: {:.1} s", started.elapsed().as_secs_f64());
}
