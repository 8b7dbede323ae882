//! Verification permits: a counting semaphore that bounds how many shard-owner threads verify
//! signatures at the same time.
//!
//! Why: the node has 256 owner threads. Under a PUT flood every one of them has work, and the
//! kernel's fair scheduler splits each core between all runnable threads by weight, so two
//! receiver threads among 256 verifiers get a few percent of the CPU and stop answering GETs
//! (measured: 0.0% of the normal GET rate during a 5x forged-PUT flood, `perf/README.md`). With
//! one permit per core at most that many verifiers are runnable; the rest sleep on the permit.
//! Together with the owners' lower priority (`Config::owner_nice`) the receivers then win
//! every core they need, and verification uses whatever is left, all of it when GETs are idle.
//!
//! A permit is held for one wake of an owner thread (every PUT batch of its shards), so the cost
//! of taking it (an uncontended lock, or a wake-up when contended) is paid per batch, not per dat.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex};

/// A counting semaphore.
#[derive(Debug)]
pub struct Permits {
    available: Mutex<usize>,
    released: Condvar,
    /// Permits held right now, readable without the lock (receivers look before they poll).
    held: AtomicUsize,
}

/// A held permit; dropping it gives it back.
#[derive(Debug)]
pub struct Permit<'a> {
    permits: &'a Permits,
}

impl Permits {
    /// `count` permits; at least one.
    pub fn new(count: usize) -> Permits {
        Permits {
            available: Mutex::new(count.max(1)),
            released: Condvar::new(),
            held: AtomicUsize::new(0),
        }
    }

    /// Waits for a permit.
    pub fn acquire(&self) -> Permit<'_> {
        let mut available = self.available.lock();
        while *available == 0 {
            self.released.wait(&mut available);
        }
        *available -= 1;
        self.held.fetch_add(1, Ordering::Relaxed);
        Permit { permits: self }
    }

    /// Whether some thread holds a permit (is verifying) right now; a lock-free read that may
    /// be a moment stale.
    pub fn any_held(&self) -> bool {
        self.held.load(Ordering::Relaxed) > 0
    }

    /// Permits free right now.
    pub fn available(&self) -> usize {
        *self.available.lock()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.permits.held.fetch_sub(1, Ordering::Relaxed);
        *self.permits.available.lock() += 1;
        self.permits.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_holders_than_permits() {
        let permits = Arc::new(Permits::new(2));
        let holding = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (permits, holding, most) = (
                    Arc::clone(&permits),
                    Arc::clone(&holding),
                    Arc::clone(&most),
                );
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _permit = permits.acquire();
                        let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        holding.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
        assert_eq!(permits.available(), 2);
        assert!(!permits.any_held());
    }

    #[test]
    fn zero_means_one() {
        let permits = Permits::new(0);
        assert!(!permits.any_held());
        let held = permits.acquire();
        assert_eq!(permits.available(), 0);
        assert!(permits.any_held());
        drop(held);
        assert_eq!(permits.available(), 1);
        assert!(!permits.any_held());
    }
}
