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

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::pow::{KeyCache, MAX_BATCH, SignatureCheck, SignatureVerifier, verify_signatures};
use crate::wire::Dat;

/// Most dats a combining holder checks in one round before it hands out the verdicts (then it
/// takes the next round, if any is waiting): four batches of [`MAX_BATCH`], so a waiting owner
/// waits for at most ~4 × 64 × 14 µs ≈ 3.6 ms of another's checking on this VM.
const COMBINE_ROUND_DATS: usize = 4 * MAX_BATCH;

/// A counting semaphore whose permits each carry a [`KeyCache`]: only one thread verifies with
/// a permit at a time, so its holder uses the cache with no lock, and each cache sees the
/// PUTs of every shard.
///
/// [`Permits::verify`] combines: an owner that finds every permit held leaves its dats on a
/// board and sleeps; a holder checks whatever is on the board, its own dats with the others', as
/// one batch, before it gives its permit back. With 256 owners each seeing a PUT now and then,
/// the signatures are then checked in batches (about half the cost of one at a time) exactly
/// when the cores are short of time.
#[derive(Debug)]
pub struct Permits {
    state: Mutex<State>,
    /// A permit was given back (for [`Permits::acquire`]).
    released: Condvar,
    /// Verdicts were posted, or the board needs a holder (for [`Permits::verify`]).
    posted: Condvar,
    /// Permits held right now, readable without the lock (receivers look before they poll).
    held: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    /// The free permits' caches; a permit is free while its cache is here.
    free: Vec<KeyCache>,
    /// Dats waiting for a holder to check them.
    board: Vec<Request>,
    /// Verdicts not yet collected, by request id (as many as requests asleep: at most one per
    /// owner thread).
    verdicts: Vec<(u64, Vec<bool>)>,
    next_id: u64,
    /// Rounds checked, and requests checked in them (their ratio: owners served per round).
    rounds: u64,
    requests: u64,
}

/// One owner's dats, copied (a holder on another thread checks them while the owner sleeps).
#[derive(Debug)]
struct Request {
    id: u64,
    mode: SignatureCheck,
    /// The dats' wire bytes back to back; `ends[i]` is where dat i ends.
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Request {
    fn dats(&self) -> impl Iterator<Item = Dat<&[u8]>> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| Dat::new_unchecked(&self.bytes[start..end]))
    }
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
        let free = (0..count.max(1))
            .map(|_| KeyCache::new(key_slots, rand::random()))
            .collect();
        Permits {
            state: Mutex::new(State {
                free,
                ..State::default()
            }),
            released: Condvar::new(),
            posted: Condvar::new(),
            held: AtomicUsize::new(0),
        }
    }

    /// Waits for a permit.
    pub fn acquire(&self) -> Permit<'_> {
        let mut state = self.state.lock();
        let keys = loop {
            match state.free.pop() {
                Some(keys) => break keys,
                None => self.released.wait(&mut state),
            }
        };
        self.held.fetch_add(1, Ordering::Relaxed);
        Permit {
            permits: self,
            keys: Some(keys),
        }
    }

    /// Checks the signatures of `dats` as [`verify_signatures`] does (`ok[i]` tells `dats[i]`),
    /// under a permit: the dats go on the board; if a permit is free this thread takes it and
    /// checks the board (these dats and any other owner's waiting there) until it is empty;
    /// otherwise it sleeps until a holder has posted its verdicts. Panics if `ok` is shorter than
    /// `dats` (a caller bug).
    pub fn verify(&self, dats: &[Dat<&[u8]>], mode: SignatureCheck, ok: &mut [bool]) {
        assert!(ok.len() >= dats.len());
        if dats.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(dats.iter().map(|d| d.len()).sum());
        let mut ends = Vec::with_capacity(dats.len());
        for dat in dats {
            bytes.extend_from_slice(dat.as_bytes());
            ends.push(bytes.len());
        }
        let mut state = self.state.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.board.push(Request {
            id,
            mode,
            bytes,
            ends,
        });
        loop {
            if let Some(at) = state.verdicts.iter().position(|(v, _)| *v == id) {
                let (_, verdicts) = state.verdicts.swap_remove(at);
                ok[..dats.len()].copy_from_slice(&verdicts);
                return;
            }
            // An empty board means these dats are in another holder's round: wait for it.
            let keys = match state.board.is_empty() {
                true => None,
                false => state.free.pop(),
            };
            match keys {
                Some(keys) => {
                    self.held.fetch_add(1, Ordering::Relaxed);
                    state = self.check_board(state, keys);
                }
                None => self.posted.wait(&mut state),
            }
        }
    }

    /// As a holder of `keys`: checks the board round by round until it is empty, posting each
    /// round's verdicts, then gives the permit back under the same lock that saw the board empty
    /// (so a request left later finds the permit free). Returns the lock.
    fn check_board<'s>(
        &'s self,
        mut state: MutexGuard<'s, State>,
        mut keys: KeyCache,
    ) -> MutexGuard<'s, State> {
        loop {
            let mut round = Vec::new();
            let mut dats = 0;
            while let Some(request) = state.board.last() {
                if !round.is_empty() && dats + request.ends.len() > COMBINE_ROUND_DATS {
                    break;
                }
                dats += request.ends.len();
                round.extend(state.board.pop());
            }
            if round.is_empty() {
                state.free.push(keys);
                self.held.fetch_sub(1, Ordering::Relaxed);
                self.released.notify_one();
                return state;
            }
            state.rounds += 1;
            state.requests += round.len() as u64;
            drop(state);
            let verdicts = check_round(&round, &mut keys);
            state = self.state.lock();
            state.verdicts.extend(verdicts);
            self.posted.notify_all();
        }
    }

    /// Whether some thread holds a permit (is verifying) right now; a lock-free read that may
    /// be a moment stale.
    pub fn any_held(&self) -> bool {
        self.held.load(Ordering::Relaxed) > 0
    }

    /// Permits free right now.
    pub fn available(&self) -> usize {
        self.state.lock().free.len()
    }

    /// Rounds of [`Permits::verify`] checked so far, and the requests (calls) they served.
    pub fn rounds_and_requests(&self) -> (u64, u64) {
        let state = self.state.lock();
        (state.rounds, state.requests)
    }

    /// Requests on the board right now.
    pub fn waiting(&self) -> usize {
        self.state.lock().board.len()
    }
}

/// The verdicts of one round: the batched requests' dats checked together in batches of
/// [`MAX_BATCH`] (a failed batch falls back to one by one, for its own dats only), the others
/// one by one.
fn check_round(round: &[Request], keys: &mut KeyCache) -> Vec<(u64, Vec<bool>)> {
    let batched: Vec<Dat<&[u8]>> = round
        .iter()
        .filter(|r| r.mode == SignatureCheck::Batch)
        .flat_map(Request::dats)
        .collect();
    let mut batched_ok = vec![false; batched.len()];
    for (dats, ok) in batched
        .chunks(MAX_BATCH)
        .zip(batched_ok.chunks_mut(MAX_BATCH))
    {
        verify_signatures(dats, SignatureCheck::Batch, ok, keys);
    }
    let mut batched_ok = batched_ok.into_iter();
    round
        .iter()
        .map(|request| {
            let verdicts = if request.mode == SignatureCheck::Batch {
                batched_ok.by_ref().take(request.ends.len()).collect()
            } else {
                let dats: Vec<Dat<&[u8]>> = request.dats().collect();
                let mut ok = vec![false; dats.len()];
                verify_signatures(&dats, request.mode, &mut ok, keys);
                ok
            };
            (request.id, verdicts)
        })
        .collect()
}

impl SignatureVerifier for &Permits {
    fn verify(&mut self, dats: &[Dat<&[u8]>], mode: SignatureCheck, ok: &mut [bool]) {
        Permits::verify(self, dats, mode, ok);
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
        let mut state = self.permits.state.lock();
        if let Some(keys) = self.keys.take() {
            state.free.push(keys);
        }
        self.permits.held.fetch_sub(1, Ordering::Relaxed);
        self.permits.released.notify_one();
        if !state.board.is_empty() {
            // Dats were left while every permit was held by `acquire`rs, who do not check the
            // board: wake their owners, one of which takes this permit and checks it.
            self.permits.posted.notify_all();
        }
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

    /// Dats of `owners` owners, `per_owner` each; every `bad_every`-th has a broken signature.
    fn dats(owners: u8, per_owner: u8, bad_every: usize) -> Vec<Dat<Box<[u8]>>> {
        let mut out = Vec::new();
        for o in 0..owners {
            let owner = crate::keys::Keypair::from_seed(&[o + 1; 32]);
            for k in 0..per_owner {
                let mut dat = crate::pow::make_dat_single(&owner, &[b'k', k], b"v", 1_000, 0);
                if (out.len() + 1) % bad_every == 0 {
                    let mut bytes = dat.as_bytes().to_vec();
                    bytes[30] ^= 1; // inside the signature
                    dat = Dat::new_checked(bytes.into_boxed_slice()).unwrap();
                }
                out.push(dat);
            }
        }
        out
    }

    #[test]
    fn owners_waiting_while_every_permit_is_held_are_checked_in_one_round() {
        let permits = Arc::new(Permits::new(1, 64));
        let all = Arc::new(dats(8, 3, 5));
        let held = permits.acquire();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (permits, all) = (Arc::clone(&permits), Arc::clone(&all));
                std::thread::spawn(move || {
                    let mine: Vec<Dat<&[u8]>> =
                        all[t * 3..t * 3 + 3].iter().map(|d| d.as_view()).collect();
                    let mut ok = [false; 3];
                    permits.verify(&mine, SignatureCheck::Batch, &mut ok);
                    ok
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while permits.waiting() < 8 {
            assert!(
                std::time::Instant::now() < deadline,
                "owners never left their dats"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(held);
        let got: Vec<bool> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let views: Vec<Dat<&[u8]>> = all.iter().map(|d| d.as_view()).collect();
        let mut want = vec![false; views.len()];
        verify_signatures(
            &views,
            SignatureCheck::Single,
            &mut want,
            &mut KeyCache::new(0, 0),
        );
        assert_eq!(got, want);
        assert_eq!(
            want.iter().filter(|&&ok| !ok).count(),
            4,
            "every fifth is bad"
        );
        assert_eq!(
            permits.rounds_and_requests(),
            (1, 8),
            "one holder checked all eight"
        );
        assert_eq!(permits.available(), 1);
        assert!(!permits.any_held());
    }

    #[test]
    fn concurrent_verifiers_get_exactly_their_own_verdicts() {
        let permits = Arc::new(Permits::new(2, 16));
        let all = Arc::new(dats(6, 10, 7));
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let (permits, all) = (Arc::clone(&permits), Arc::clone(&all));
                std::thread::spawn(move || {
                    let mut verdicts = Vec::new();
                    for round in 0..20 {
                        // Batches of 1..=10 of this thread's ten dats, both check modes.
                        let n = 1 + (round + t) % 10;
                        let mine: Vec<Dat<&[u8]>> = all[t * 10..t * 10 + n]
                            .iter()
                            .map(|d| d.as_view())
                            .collect();
                        let mode = if round % 3 == 0 {
                            SignatureCheck::Single
                        } else {
                            SignatureCheck::Batch
                        };
                        let mut ok = vec![false; n];
                        permits.verify(&mine, mode, &mut ok);
                        verdicts.push((t * 10, ok));
                    }
                    verdicts
                })
            })
            .collect();
        let views: Vec<Dat<&[u8]>> = all.iter().map(|d| d.as_view()).collect();
        let mut want = vec![false; views.len()];
        verify_signatures(
            &views,
            SignatureCheck::Single,
            &mut want,
            &mut KeyCache::new(0, 0),
        );
        for t in threads {
            for (start, ok) in t.join().unwrap() {
                assert_eq!(ok[..], want[start..start + ok.len()]);
            }
        }
        let (rounds, requests) = permits.rounds_and_requests();
        assert_eq!(requests, 6 * 20);
        assert!(rounds >= 1 && rounds <= requests);
        assert_eq!(permits.available(), 2);
        assert!(!permits.any_held());
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
