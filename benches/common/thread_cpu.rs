//! The benches' criterion measurement: the benchmarking thread's CPU time, shared by
//! `benches/wire.rs` and `benches/pow.rs` (included with `#[path]`).

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// Criterion measurement: CPU time of the benchmarking thread
/// (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, nanosecond resolution).
///
/// The benchmark machine is a 2-core VM shared with other builds (load averages of 8–35 were
/// seen), and wall time then includes every slice in which another process held the core, which
/// made same-run ratios swing by 2x. Thread CPU time leaves those slices out. It is read once at
/// each end of a sample of many iterations. (`/proc/thread-self/schedstat` only advances at
/// scheduler ticks, far too coarse.) `DAVE_BENCH_WALL=1` switches back to wall time.
pub struct ThreadCpuTime {
    wall: WallTime,
    use_wall: bool,
}

impl ThreadCpuTime {
    pub fn from_env() -> ThreadCpuTime {
        ThreadCpuTime {
            wall: WallTime,
            use_wall: std::env::var_os("DAVE_BENCH_WALL").is_some_and(|v| v == "1"),
        }
    }

    fn now_ns(&self) -> u64 {
        if self.use_wall {
            static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            let epoch = EPOCH.get_or_init(std::time::Instant::now);
            return epoch.elapsed().as_nanos() as u64;
        }
        dave::net::thread_cpu_time_ns()
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        self.now_ns()
    }
    fn end(&self, start_ns: u64) -> Duration {
        Duration::from_nanos(self.now_ns().saturating_sub(start_ns))
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Same unit (ns) as wall time, so wall time's formatter prints it.
        self.wall.formatter()
    }
}
