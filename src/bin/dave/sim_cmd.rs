//! `dave sim`: runs `dave::sim` with the parsed flags and prints its report. On a terminal,
//! stderr shows a progress bar of the virtual clock while it runs; piped, nothing extra.

use indicatif::{ProgressBar, ProgressStyle};

use dave::sim::SimArgs;

use crate::{EXIT_OK, Failure, print_stdout};

/// Runs the simulation the flags describe and prints the report (the trace hash last).
pub fn run(args: &SimArgs) -> Result<i32, Failure> {
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
