//! The node's two clocks, read only by thread loops (never inside a protocol core).
//!
//! * Wall time, Unix milliseconds: dat times and TTLs are wall-clock values on the wire.
//! * Monotonic milliseconds since the node started: timers (pings, deadlines) must not jump when
//!   the wall clock is adjusted.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Current Unix time in milliseconds.
pub fn unix_now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Milliseconds since a fixed start, never going backwards.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    start: Instant,
}

impl MonotonicClock {
    /// A clock starting at 0 now.
    pub fn new() -> MonotonicClock {
        MonotonicClock {
            start: Instant::now(),
        }
    }

    /// Milliseconds since the clock was made.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}
