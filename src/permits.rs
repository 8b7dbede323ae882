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

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex};

use crate::pow::KeyCache;

/// A counting semaphore whose permits each carry a [`KeyCache`]: only one thread verifies with
/// a permit at a time, so its holder uses the cache with no lock, and each cache sees the
/// PUTs of every shard.
#[derive(Debug)]
pub struct Permits {
    /// The free permits' caches; a permit is free while its cache is here.
    available: Mutex<Vec<KeyCache>>,
    released: Condvar,
    /// Permits held right now, readable without the lock (receivers look before they poll).
    held: AtomicUsize,
}

/// A held permit, which derefs to its key cache; dropping it gives it back.
#[derive(Debug)]
pub struct Permit<'a> {
    permits: &'a Permits,
    /// Always `Some` until the drop hands it back.
    keys: Option<KeyCache>,
}

impl Permits {
    /// `count` permits (at least one), each with a key cache of `key_slots` slots.
    pub fn new(count: usize, key_slots: usize) -> Permits {
        let caches = (0..count.max(1))
            .map(|_| KeyCache::new(key_slots, rand::random()))
            .collect();
        Permits {
            available: Mutex::new(caches),
            released: Condvar::new(),
            held: AtomicUsize::new(0),
        }
    }

    /// Waits for a permit.
    pub fn acquire(&self) -> Permit<'_> {
        let mut available = self.available.lock();
        let keys = loop {
            match available.pop() {
                Some(keys) => break keys,
                None => self.released.wait(&mut available),
            }
        };
        self.held.fetch_add(1, Ordering::Relaxed);
        Permit {
            permits: self,
            keys: Some(keys),
        }
    }

    /// Whether some thread holds a permit (is verifying) right now; a lock-free read that may
    /// be a moment stale.
    pub fn any_held(&self) -> bool {
        self.held.load(Ordering::Relaxed) > 0
    }

    /// Permits free right now.
    pub fn available(&self) -> usize {
        self.available.lock().len()
    }
}

impl Deref for Permit<'_> {
    type Target = KeyCache;

    fn deref(&self) -> &KeyCache {
        self.keys.as_ref().expect("a held permit has its cache")
    }
}

impl DerefMut for Permit<'_> {
    fn deref_mut(&mut self) -> &mut KeyCache {
        self.keys.as_mut().expect("a held permit has its cache")
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.permits.held.fetch_sub(1, Ordering::Relaxed);
        if let Some(keys) = self.keys.take() {
            self.permits.available.lock().push(keys);
        }
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
        let permits = Arc::new(Permits::new(2, 16));
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
    fn a_permit_carries_its_key_cache_to_the_next_holder() {
        let permits = Permits::new(1, 16);
        let public = crate::keys::Keypair::from_seed(&[5; 32]).public();
        {
            let mut permit = permits.acquire();
            assert!(permit.key(&public).is_some());
            assert_eq!(permit.hits(), 0);
        }
        let mut permit = permits.acquire();
        assert!(permit.key(&public).is_some());
        assert_eq!(
            permit.hits(),
            1,
            "decoded under the first hold, found under the second"
        );
    }

    #[test]
    fn zero_means_one() {
        let permits = Permits::new(0, 16);
        assert!(!permits.any_held());
        let held = permits.acquire();
        assert_eq!(permits.available(), 0);
        assert!(permits.any_held());
        drop(held);
        assert_eq!(permits.available(), 1);
        assert!(!permits.any_held());
    }
}
