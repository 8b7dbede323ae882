//! `dave sim`: runs `dave::sim` with the parsed flags and prints its report. On a terminal,
//! stderr shows a progress bar of the virtual clock while it runs; piped, nothing extra.
//! `dave sim --routing` runs the routing-level model (`dave::route::world`) instead.

use indicatif::{ProgressBar, ProgressStyle};

use dave::sim::SimArgs;

use crate::{EXIT_OK, Failure, print_stdout};

/// Runs the simulation the flags describe and prints the report (the trace hash last).
pub fn run(args: &SimArgs) -> Result<i32, Failure> {
    if args.routing {
        return run_routing(args);
    }
    let options = args
        .options()
        .map_err(|e| Failure::error(format!("sim: {e}")))?;
    // Drawn on stderr only when it is a terminal (indicatif hides the bar otherwise).
    let bar = ProgressBar::new(0).with_message("starting");
    bar.set_style(
        ProgressStyle::with_template(
            "simulating {wide_bar} {msg} of virtual time, {elapsed} elapsed, ~{eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut progress = |now_ms: u64, end_ms: u64| {
        bar.set_length(end_ms);
        bar.set_position(now_ms.min(end_ms));
        bar.set_message(format!("{} s / {} s", now_ms / 1000, end_ms / 1000));
    };
    let report = dave::sim::run_timed_observed(&options, &mut progress);
    bar.finish_and_clear();
    let report = report.map_err(|e| Failure::error(format!("sim: {e}")))?;
    print_stdout(format!("{report}\n").as_bytes())?;
    Ok(EXIT_OK)
}

/// `dave sim --routing`: the routing-level model, its report lines and the wall time.
fn run_routing(args: &SimArgs) -> Result<i32, Failure> {
    let o = args
        .world_options()
        .map_err(|e| Failure::error(format!("sim: {e}")))?;
    let started = std::time::Instant::now();
    let report = dave::route::world::World::new(o.clone()).run();
    let mut out = format!(
        "routing model: {}
",
        o.summary()
    );
    for line in report.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!(
        "  wall time: {:.1} s\n",
        started.elapsed().as_secs_f64()
    ));
    print_stdout(out.as_bytes())?;
    Ok(EXIT_OK)
}
