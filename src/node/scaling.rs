//! How many receivers the random spread feeds (`Config::receivers_on_demand`): the decision only,
//! I/O-free and clock-free (`now_ns` is an argument); `receiver.rs` observes the sockets and
//! re-attaches the spread program when the count changes.
//!
//! # Why
//!
//! Measured on 2 cores with the load client on the same machine (`perf/README.md`, issue 14):
//! one receiver serving 128 GETs in flight took full batches at 3.8 µs of CPU per GET and
//! answered 273 k/s with a p99 of 0.94 ms; two receivers sharing the same load each woke for a
//! few datagrams at a time (15–34 k wake-ups a second) and used 4.7 µs per GET, for 222 k/s
//! and a p99 of 1.5 ms. But one receiver alone cannot take a flood: at 345 k forged PUTs a
//! second its socket overflowed and GETs fell to 2 % of their rate (two receivers kept 35 %).
//!
//! # The rule
//!
//! ```text
//! start:        active = 1
//! scale up:     a receiver's socket holds ≥ 1/BACKLOG_SHARE_DIVISOR of its buffer
//!               and SCALE_UP_GAP_NS passed since the last change      → active + 1 (≤ total)
//! scale down:   at the end of each WINDOW_NS, if SCALE_DOWN_HOLD_NS passed since the last
//!               change and the receivers were busy for at most half of what one fewer would
//!               have (busy_ns × 2 ≤ (active − 1) × window)             → active − 1 (≥ 1)
//! ```
//!
//! A queue that deep is a backlog no closed-loop client makes (128 GETs in flight queue about
//! 128 KiB of the default 4 MiB), and only an open flood or a receiver starved of its CPU
//! builds it. Busy time is wall time from a receiver's wake-up to its next wait, so a receiver
//! that is preempted while it works counts as busy, and scale-down waits for real slack.

/// Scale up when one socket's queue holds at least `buffer / BACKLOG_SHARE_DIVISOR`: 512 KiB of
/// the default 4 MiB buffer, about 500 small datagrams at the kernel's ~1 KiB true size each
/// (a few ms of work for one receiver), well short of the overflow at the full buffer.
pub const BACKLOG_SHARE_DIVISOR: u32 = 8;

/// At most one scale-up per 5 ms: the receiver just added needs about that to drain its share
/// of a backlog before the next look, so one burst does not wake every receiver at once.
pub const SCALE_UP_GAP_NS: u64 = 5_000_000;

/// Scale-down looks at busy time over 250 ms windows: long enough to average out bursts, short
/// enough that a flood's end gives the CPU back within a second or two.
pub const WINDOW_NS: u64 = 250_000_000;

/// No scale-down within 1 s of any change, so a load near the threshold does not flap between
/// counts faster than that (each flap costs at most one backlog of a few ms).
pub const SCALE_DOWN_HOLD_NS: u64 = 1_000_000_000;

/// The decision state of one node's receivers.
#[derive(Debug, Clone)]
pub struct ReceiverScaling {
    /// Receivers (and sockets) the node has.
    total: usize,
    /// Receivers the spread currently feeds: sockets `0..active`.
    active: usize,
    /// When `active` last changed (or the start).
    last_change_ns: u64,
    /// Start of the current busy-time window.
    window_start_ns: u64,
    /// The receivers' summed busy time at the window's start.
    window_busy_start_ns: u64,
}

impl ReceiverScaling {
    /// A node with `total` receivers (at least 1), one of them fed at the start.
    pub fn new(total: usize, now_ns: u64) -> ReceiverScaling {
        ReceiverScaling {
            total: total.max(1),
            active: 1,
            last_change_ns: now_ns,
            window_start_ns: now_ns,
            window_busy_start_ns: 0,
        }
    }

    /// Receivers currently fed.
    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.active
    }

    /// A receiver found `queued_bytes` in its socket of `buffer_bytes`: the new active count if
    /// that is a backlog worth another receiver.
    pub fn on_queue(&mut self, queued_bytes: u32, buffer_bytes: u32, now_ns: u64) -> Option<usize> {
        let backlog = u64::from(queued_bytes) * u64::from(BACKLOG_SHARE_DIVISOR)
            >= u64::from(buffer_bytes.max(1));
        if !backlog
            || self.active >= self.total
            || now_ns.saturating_sub(self.last_change_ns) < SCALE_UP_GAP_NS
        {
            return None;
        }
        self.active += 1;
        self.last_change_ns = now_ns;
        Some(self.active)
    }

    /// Whether the busy-time window has ended (then call [`ReceiverScaling::end_window`]).
    pub fn window_due(&self, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.window_start_ns) >= WINDOW_NS
    }

    /// Ends the window with the receivers' summed busy time so far (a running total): the new
    /// active count if one fewer receiver would do.
    pub fn end_window(&mut self, busy_total_ns: u64, now_ns: u64) -> Option<usize> {
        let elapsed = now_ns.saturating_sub(self.window_start_ns).max(1);
        let busy = busy_total_ns.saturating_sub(self.window_busy_start_ns);
        self.window_start_ns = now_ns;
        self.window_busy_start_ns = busy_total_ns;
        let settled = now_ns.saturating_sub(self.last_change_ns) >= SCALE_DOWN_HOLD_NS;
        let fewer = self.active.saturating_sub(1) as u64;
        if self.active <= 1 || !settled || busy.saturating_mul(2) > fewer.saturating_mul(elapsed) {
            return None;
        }
        self.active -= 1;
        self.last_change_ns = now_ns;
        Some(self.active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const BUFFER: u32 = 4 << 20;

    #[test]
    fn starts_with_one_and_grows_only_on_a_deep_queue_at_most_every_gap() {
        let mut s = ReceiverScaling::new(3, 0);
        assert_eq!(s.active(), 1);
        // A closed-loop client's queue (128 datagrams of ~1 KiB) is not a backlog.
        assert_eq!(s.on_queue(128 * 1024, BUFFER, 10 * MS), None);
        assert_eq!(s.on_queue(BUFFER / 8, BUFFER, 10 * MS), Some(2));
        // Within the gap: no second step, however deep.
        assert_eq!(s.on_queue(BUFFER, BUFFER, 12 * MS), None);
        assert_eq!(s.on_queue(BUFFER, BUFFER, 15 * MS), Some(3));
        // Never beyond the receivers there are.
        assert_eq!(s.on_queue(BUFFER, BUFFER, 100 * MS), None);
        assert_eq!(s.active(), 3);
    }

    #[test]
    fn shrinks_after_the_hold_when_one_fewer_would_be_at_most_half_busy() {
        let mut s = ReceiverScaling::new(2, 0);
        assert_eq!(s.on_queue(BUFFER, BUFFER, 10 * MS), Some(2));
        // Idle, but within the hold of the change.
        assert!(!s.window_due(200 * MS));
        assert!(s.window_due(250 * MS));
        assert_eq!(s.end_window(0, 250 * MS), None);
        // Busy 0.6 of one core across both receivers: one alone would be over half busy.
        let mut busy = 0;
        let mut now = 250 * MS;
        for _ in 0..8 {
            now += WINDOW_NS;
            busy += WINDOW_NS * 6 / 10;
            assert_eq!(s.end_window(busy, now), None);
        }
        // Load falls to 0.4 of a core: one receiver will do.
        now += WINDOW_NS;
        busy += WINDOW_NS * 4 / 10;
        assert_eq!(s.end_window(busy, now), Some(1));
        // Never below one.
        now += 10 * WINDOW_NS;
        assert_eq!(s.end_window(busy, now), None);
        assert_eq!(s.active(), 1);
    }

    #[test]
    fn a_change_restarts_the_hold_before_the_next_scale_down() {
        let mut s = ReceiverScaling::new(3, 0);
        assert_eq!(s.on_queue(BUFFER, BUFFER, 0), None); // the start counts as a change
        assert_eq!(s.on_queue(BUFFER, BUFFER, 6 * MS), Some(2));
        assert_eq!(s.on_queue(BUFFER, BUFFER, 12 * MS), Some(3));
        assert_eq!(s.end_window(0, 1_011 * MS), None); // 999 ms after the last change
        assert_eq!(s.end_window(0, 1_261 * MS), Some(2));
        assert_eq!(s.end_window(0, 1_511 * MS), None); // hold again
        assert_eq!(s.end_window(0, 2_261 * MS), Some(1));
    }
}
