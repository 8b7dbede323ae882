//! The proof-of-work pool: one worker thread per core ("dave-pow-N") behind a bounded job queue.
//!
//! A search is split into chunks of counters taken from a shared atomic cursor, so every worker
//! stays busy until one finds a salt; the others see the `done` flag within one chunk. A search
//! can be cancelled from outside, and reports hashes done so far (for progress bars).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::Mutex;

use crate::pow::search_range;

/// Counters per chunk: about 1 ms of hashing, so a found salt or a cancel stops all workers fast
/// while the shared cursor is touched rarely.
const CHUNK_COUNTERS: u64 = 2048;

/// Searches waiting for a worker before `search` blocks (backpressure for local puts).
const JOB_QUEUE_DEPTH: usize = 64;

/// The result of a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOutcome {
    /// A salt and its work.
    Found { salt: [u8; 16], work: [u8; 32] },
    /// Cancelled (or the pool shut down) before a salt was found.
    Cancelled,
}

/// Which work hash a search looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkKind {
    /// v1: `blake3(salt ‖ load)`.
    V1,
    /// v2: `blake3_keyed(WORK2_KEY, salt ‖ load2)` (`pow::record2`).
    V2,
}

/// One search shared by all workers.
struct Search {
    kind: WorkKind,
    load: [u8; 32],
    difficulty_bits: u32,
    next_counter: AtomicU64,
    done: AtomicBool,
    cancel: Arc<AtomicBool>,
    hashes: Arc<AtomicU64>,
    result: Mutex<Option<([u8; 16], [u8; 32])>>,
    finished: Sender<()>,
}

/// A pool of worker threads computing proof-of-work.
pub struct PowPool {
    jobs: Option<Sender<Arc<Search>>>,
    workers: Vec<JoinHandle<()>>,
    worker_count: usize,
}

impl PowPool {
    /// Starts `worker_count` (at least 1) threads named `dave-pow-N`.
    pub fn new(worker_count: usize) -> std::io::Result<PowPool> {
        let worker_count = worker_count.max(1);
        let (jobs, queue) = bounded::<Arc<Search>>(JOB_QUEUE_DEPTH);
        let mut workers = Vec::with_capacity(worker_count);
        for index in 0..worker_count {
            let queue = queue.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("dave-pow-{index}"))
                    .spawn(move || worker_loop(queue))?,
            );
        }
        Ok(PowPool {
            jobs: Some(jobs),
            workers,
            worker_count,
        })
    }

    /// Number of worker threads.
    pub fn worker_count(&self) -> usize {
        self.worker_count
    }

    /// Finds a salt for `load` with at least `difficulty_bits` leading zero bits, on all workers.
    /// Blocks until found or until `cancel` is set. `hashes` counts hashes done (for progress).
    pub fn search(
        &self,
        load: [u8; 32],
        difficulty_bits: u32,
        cancel: Arc<AtomicBool>,
        hashes: Arc<AtomicU64>,
    ) -> SearchOutcome {
        self.search_kind(WorkKind::V1, load, difficulty_bits, cancel, hashes)
    }

    /// Like [`PowPool::search`], for the work hash of `kind`.
    pub fn search_kind(
        &self,
        kind: WorkKind,
        load: [u8; 32],
        difficulty_bits: u32,
        cancel: Arc<AtomicBool>,
        hashes: Arc<AtomicU64>,
    ) -> SearchOutcome {
        let (finished, finished_rx) = bounded(self.worker_count);
        let search = Arc::new(Search {
            kind,
            load,
            difficulty_bits,
            next_counter: AtomicU64::new(0),
            done: AtomicBool::new(false),
            cancel,
            hashes,
            result: Mutex::new(None),
            finished,
        });
        let Some(jobs) = &self.jobs else {
            return SearchOutcome::Cancelled;
        };
        // One job per worker: each worker helps until the search is done.
        for _ in 0..self.worker_count {
            if jobs.send(Arc::clone(&search)).is_err() {
                return SearchOutcome::Cancelled;
            }
        }
        // Wait until a worker reports. Each worker sends once when it leaves the search.
        let _ = finished_rx.recv();
        search.done.store(true, Ordering::Relaxed);
        let result = *search.result.lock();
        match result {
            Some((salt, work)) => SearchOutcome::Found { salt, work },
            None => SearchOutcome::Cancelled,
        }
    }

    /// A search with no cancellation and no progress reporting.
    pub fn search_blocking(&self, load: [u8; 32], difficulty_bits: u32) -> SearchOutcome {
        self.search(
            load,
            difficulty_bits,
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        )
    }
}

impl Drop for PowPool {
    fn drop(&mut self) {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker_loop(queue: Receiver<Arc<Search>>) {
    while let Ok(search) = queue.recv() {
        loop {
            if search.done.load(Ordering::Relaxed) || search.cancel.load(Ordering::Relaxed) {
                break;
            }
            let start = search
                .next_counter
                .fetch_add(CHUNK_COUNTERS, Ordering::Relaxed);
            let found = match search.kind {
                WorkKind::V1 => {
                    search_range(&search.load, search.difficulty_bits, start, CHUNK_COUNTERS)
                }
                WorkKind::V2 => crate::pow::record2::search2_range(
                    &search.load,
                    search.difficulty_bits,
                    start,
                    CHUNK_COUNTERS,
                ),
            };
            search.hashes.fetch_add(CHUNK_COUNTERS, Ordering::Relaxed);
            if let Some(found) = found {
                let mut result = search.result.lock();
                if result.is_none() {
                    *result = Some(found);
                }
                search.done.store(true, Ordering::Relaxed);
                break;
            }
        }
        let _ = search.finished.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pow::{leading_zero_bits, load_hash};

    #[test]
    fn pool_finds_valid_work_and_can_be_cancelled() {
        let pool = PowPool::new(2).unwrap();
        let load = load_hash(b"k", b"v", 1);
        match pool.search_blocking(load, 12) {
            SearchOutcome::Found { salt, work } => {
                assert_eq!(crate::pow::work_hash(&salt, &load), work);
                assert!(leading_zero_bits(&work) >= 12);
            }
            SearchOutcome::Cancelled => panic!("not cancelled"),
        }
        let cancel = Arc::new(AtomicBool::new(true));
        let outcome = pool.search(load, 200, cancel, Arc::new(AtomicU64::new(0)));
        assert_eq!(outcome, SearchOutcome::Cancelled);
    }
}
