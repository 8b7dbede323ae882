//! `dave sim`: runs `dave::sim` with the parsed flags and prints its report.

use dave::sim::SimArgs;

use crate::{EXIT_OK, Failure, print_stdout};

/// Runs the simulation the flags describe and prints the report (the trace hash last).
pub fn run(args: &SimArgs) -> Result<i32, Failure> {
    let options = args
        .options()
        .map_err(|e| Failure::error(format!("sim: {e}")))?;
    let report = dave::sim::run_timed(&options).map_err(|e| Failure::error(format!("sim: {e}")))?;
    print_stdout(format!("{report}\n").as_bytes())?;
    Ok(EXIT_OK)
}
