//! Storage challenges (PROTOCOL.md §6): the I/O-free book a shard keeps of records it sent to
//! peers, and of the GETs it sent to check that they kept them.
//!
//! ```text
//!  sent a record to P ──sampled──► candidate (P, pubkey, key, time)   bounded per peer, per shard
//!                                     │ older than min_age_ms, picked at random when the
//!                                     ▼ owner's ChallengeTimer fires; P must still be active
//!                                  in flight ── GET to P ──► GET_ACK from P: verified, not older
//!                                     │                       than what we sent → success
//!                                     │                       (the candidate goes back in the book)
//!                                     └── not-found, invalid, older, or deadline ──► failure
//! ```
//!
//! Outcomes leave as `(peer, success)` values; the peer table turns them into reliability. Times
//! are the caller's milliseconds (the shard uses wall-clock ms, the clock its records live by); a
//! clock that runs backwards expires in-flight challenges early instead of never.
//!
//! The owner thread decides *when* to challenge with a [`ChallengeTimer`] (exponential gaps, so
//! a peer cannot predict the next check), and the shard decides *what* with
//! [`ChallengeBook::issue`]. Both draw from RNGs their owner seeds, so a simulation replays.

use std::net::SocketAddr;

use rand::Rng;

use crate::wire::Dat;

/// Bounds and timings of the challenge book (copied from the node's `Config`, which justifies
/// the defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChallengeConfig {
    /// Probability that a record sent to a peer is remembered as a candidate.
    pub sample_probability: f64,
    /// Candidates per peer in one shard.
    pub max_per_peer: usize,
    /// Candidates in one shard.
    pub max_candidates: usize,
    /// Challenges awaiting their answer in one shard.
    pub max_in_flight: usize,
    /// A candidate is challenged only once it is this old (the peer must have had time to store
    /// it: its owner thread may be behind its receivers).
    pub min_age_ms: u64,
    /// An unanswered challenge fails after this long.
    pub timeout_ms: u64,
}

impl Default for ChallengeConfig {
    /// Sample 1 in 2, 4 per peer, 32 per shard, 8 in flight per shard, 1 s minimum age, 3 s
    /// timeout.
    fn default() -> Self {
        ChallengeConfig {
            sample_probability: 0.5,
            max_per_peer: 4,
            max_candidates: 32,
            max_in_flight: 8,
            min_age_ms: 1_000,
            timeout_ms: 3_000,
        }
    }
}

/// A record sent to a peer, to be asked back later.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    peer: SocketAddr,
    pubkey: [u8; 32],
    key: Box<[u8]>,
    /// The time of the version we sent: an answer must be at least this new.
    time_ms: i64,
    /// When remembered (candidate) or when sent (in flight).
    at_ms: i64,
}

impl Entry {
    fn is(&self, peer: SocketAddr, pubkey: &[u8; 32], key: &[u8]) -> bool {
        self.peer == peer && &self.pubkey == pubkey && &*self.key == key
    }
}

/// A challenge to send: GET `(pubkey, key)` to `peer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeGet {
    /// Who is challenged.
    pub peer: SocketAddr,
    /// The record's owner.
    pub pubkey: [u8; 32],
    /// The record's key.
    pub key: Box<[u8]>,
}

/// How a GET_ACK answered a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A verified record.
    Valid {
        /// Its time.
        time_ms: i64,
    },
    /// "Not found".
    NotFound,
    /// A record that failed verification.
    Invalid,
}

/// Why a challenge failed (or that it did not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A verified record at least as new as the one we sent.
    Success,
    /// "Not found".
    NotFound,
    /// An invalid record.
    Invalid,
    /// A valid record older than the one we sent.
    Stale,
    /// No answer before the deadline.
    TimedOut,
}

impl Verdict {
    /// Whether the peer passed.
    pub fn is_success(self) -> bool {
        self == Verdict::Success
    }
}

/// One scored challenge, for the peer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeOutcome {
    /// The challenged peer.
    pub peer: SocketAddr,
    /// How it did.
    pub verdict: Verdict,
}

/// The challenge book of one shard. See the module docs.
#[derive(Debug)]
pub struct ChallengeBook {
    config: ChallengeConfig,
    /// At most `max_candidates`, at most `max_per_peer` per peer, no duplicates.
    candidates: Vec<Entry>,
    /// At most `max_in_flight`, no duplicates.
    in_flight: Vec<Entry>,
}

impl ChallengeBook {
    /// An empty book.
    pub fn new(config: ChallengeConfig) -> ChallengeBook {
        ChallengeBook {
            config,
            candidates: Vec::new(),
            in_flight: Vec::new(),
        }
    }

    /// The bounds.
    pub fn config(&self) -> &ChallengeConfig {
        &self.config
    }

    /// Candidates remembered.
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    /// Challenges awaiting an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// `dat` was sent to `peer` at `now_ms`: remember it with probability `sample_probability`.
    /// When the peer (or the book) is at its bound a random entry of that peer (or of the book)
    /// makes room, so the book keeps a sample of recent sends.
    pub fn remember<T: AsRef<[u8]>, R: Rng + ?Sized>(
        &mut self,
        now_ms: i64,
        peer: SocketAddr,
        dat: &Dat<T>,
        rng: &mut R,
    ) {
        if self.config.max_per_peer == 0 || self.config.max_candidates == 0 {
            return;
        }
        if !rng.gen_bool(self.config.sample_probability.clamp(0.0, 1.0)) {
            return;
        }
        let entry = Entry {
            peer,
            pubkey: *dat.pubkey(),
            key: dat.key().into(),
            time_ms: dat.time_ms(),
            at_ms: now_ms,
        };
        self.insert(entry, rng);
    }

    fn insert<R: Rng + ?Sized>(&mut self, entry: Entry, rng: &mut R) {
        if let Some(held) = self
            .candidates
            .iter_mut()
            .find(|e| e.is(entry.peer, &entry.pubkey, &entry.key))
        {
            *held = entry;
            return;
        }
        let of_peer = self
            .candidates
            .iter()
            .filter(|e| e.peer == entry.peer)
            .count();
        if of_peer >= self.config.max_per_peer {
            let victim = rng.gen_range(0..of_peer);
            let at = self
                .candidates
                .iter()
                .enumerate()
                .filter(|(_, e)| e.peer == entry.peer)
                .nth(victim)
                .map(|(i, _)| i);
            if let Some(at) = at {
                self.candidates[at] = entry;
            }
            return;
        }
        if self.candidates.len() >= self.config.max_candidates {
            let at = rng.gen_range(0..self.candidates.len());
            self.candidates[at] = entry;
            return;
        }
        self.candidates.push(entry);
    }

    /// Whether [`ChallengeBook::issue`] could send a challenge at `now_ms`.
    pub fn ready(&self, now_ms: i64) -> bool {
        self.in_flight.len() < self.config.max_in_flight
            && self.candidates.iter().any(|e| self.eligible(e, now_ms))
    }

    fn eligible(&self, e: &Entry, now_ms: i64) -> bool {
        now_ms.saturating_sub(e.at_ms) >= self.config.min_age_ms as i64
            && !self
                .in_flight
                .iter()
                .any(|f| f.is(e.peer, &e.pubkey, &e.key))
    }

    /// Picks a random eligible candidate and moves it in flight. A candidate whose peer is no
    /// longer active (`is_active`) is forgotten instead, and nothing is sent this time.
    pub fn issue<R: Rng + ?Sized>(
        &mut self,
        now_ms: i64,
        is_active: impl Fn(SocketAddr) -> bool,
        rng: &mut R,
    ) -> Option<ChallengeGet> {
        if self.in_flight.len() >= self.config.max_in_flight {
            return None;
        }
        let eligible = self
            .candidates
            .iter()
            .filter(|e| self.eligible(e, now_ms))
            .count();
        if eligible == 0 {
            return None;
        }
        let nth = rng.gen_range(0..eligible);
        let at = self
            .candidates
            .iter()
            .enumerate()
            .filter(|(_, e)| self.eligible(e, now_ms))
            .nth(nth)
            .map(|(i, _)| i)?;
        let mut entry = self.candidates.swap_remove(at);
        if !is_active(entry.peer) {
            return None;
        }
        entry.at_ms = now_ms;
        let get = ChallengeGet {
            peer: entry.peer,
            pubkey: entry.pubkey,
            key: entry.key.clone(),
        };
        self.in_flight.push(entry);
        Some(get)
    }

    /// Whether a GET_ACK from `from` for `(pubkey, key)` answers a challenge in flight.
    pub fn is_awaited(&self, from: SocketAddr, pubkey: &[u8; 32], key: &[u8]) -> bool {
        self.in_flight.iter().any(|e| e.is(from, pubkey, key))
    }

    /// Scores the answer of `from` for `(pubkey, key)`, if a challenge awaited it. A success puts
    /// the record back among the candidates (re-aged at `now_ms`), so keeping it stays checked.
    pub fn answer<R: Rng + ?Sized>(
        &mut self,
        now_ms: i64,
        from: SocketAddr,
        pubkey: &[u8; 32],
        key: &[u8],
        answer: Answer,
        rng: &mut R,
    ) -> Option<ChallengeOutcome> {
        let at = self
            .in_flight
            .iter()
            .position(|e| e.is(from, pubkey, key))?;
        let mut entry = self.in_flight.swap_remove(at);
        let verdict = match answer {
            Answer::Valid { time_ms } if time_ms >= entry.time_ms => Verdict::Success,
            Answer::Valid { .. } => Verdict::Stale,
            Answer::NotFound => Verdict::NotFound,
            Answer::Invalid => Verdict::Invalid,
        };
        if verdict.is_success() {
            entry.at_ms = now_ms;
            self.insert(entry, rng);
        }
        Some(ChallengeOutcome {
            peer: from,
            verdict,
        })
    }

    /// Fails every challenge past its deadline at `now_ms` (or sent "after" `now_ms`: the clock
    /// went backwards), appending the outcomes to `out`.
    pub fn expire(&mut self, now_ms: i64, out: &mut Vec<ChallengeOutcome>) {
        let timeout_ms = self.config.timeout_ms as i64;
        self.in_flight.retain(|e| {
            let due = now_ms < e.at_ms || now_ms.saturating_sub(e.at_ms) >= timeout_ms;
            if due {
                out.push(ChallengeOutcome {
                    peer: e.peer,
                    verdict: Verdict::TimedOut,
                });
            }
            !due
        });
    }
}

/// When the owner thread challenges next: exponential gaps with a configured mean (a Poisson
/// process), so challenges cannot be anticipated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChallengeTimer {
    mean_gap_ms: f64,
    next_ms: u64,
}

/// The longest gap a [`ChallengeTimer`] draws, in means: caps the exponential's tail (e^-20 is
/// never reached in practice) so a gap is always a finite number of milliseconds.
const MAX_GAP_MEANS: f64 = 20.0;

impl ChallengeTimer {
    /// A timer with this mean gap (0 disables it), first due one drawn gap after `now_ms`.
    pub fn new<R: Rng + ?Sized>(mean_gap_ms: u64, now_ms: u64, rng: &mut R) -> ChallengeTimer {
        let mut timer = ChallengeTimer {
            mean_gap_ms: mean_gap_ms as f64,
            next_ms: now_ms,
        };
        timer.next_ms = now_ms.saturating_add(timer.gap_ms(rng));
        timer
    }

    fn gap_ms<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        if self.mean_gap_ms <= 0.0 {
            return u64::MAX;
        }
        // 1 − U is in (0, 1]: the logarithm is finite.
        let u: f64 = 1.0 - rng.r#gen::<f64>();
        let gap = (-u.ln()).min(MAX_GAP_MEANS) * self.mean_gap_ms;
        gap.max(1.0) as u64
    }

    /// Whether a challenge is due at `now_ms`; if so the next one is scheduled.
    pub fn due<R: Rng + ?Sized>(&mut self, now_ms: u64, rng: &mut R) -> bool {
        if now_ms < self.next_ms {
            return false;
        }
        self.next_ms = now_ms.saturating_add(self.gap_ms(rng));
        true
    }

    /// When the next challenge is due.
    pub fn next_ms(&self) -> u64 {
        self.next_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::DatFields;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn sa(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 1))
    }

    fn dat(key: &[u8], time_ms: i64) -> Dat<Box<[u8]>> {
        let mut f = DatFields::not_found([7; 32], key);
        f.time_ms = time_ms;
        f.to_dat()
    }

    fn always() -> ChallengeConfig {
        ChallengeConfig {
            sample_probability: 1.0,
            ..ChallengeConfig::default()
        }
    }

    #[test]
    fn a_remembered_send_is_challenged_after_min_age_and_scored() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut book = ChallengeBook::new(always());
        book.remember(0, sa(1), &dat(b"k", 100), &mut rng);
        assert_eq!(book.candidates(), 1);
        assert!(!book.ready(999));
        assert!(book.issue(999, |_| true, &mut rng).is_none());
        let get = book.issue(1000, |_| true, &mut rng).expect("due");
        assert_eq!((get.peer, &*get.key), (sa(1), &b"k"[..]));
        assert_eq!((book.candidates(), book.in_flight()), (0, 1));
        // Only the challenged peer's answer counts.
        assert!(book.is_awaited(sa(1), &[7; 32], b"k"));
        assert!(!book.is_awaited(sa(2), &[7; 32], b"k"));
        let none = book.answer(1001, sa(2), &[7; 32], b"k", Answer::NotFound, &mut rng);
        assert_eq!(none, None);
        let out = book.answer(
            1001,
            sa(1),
            &[7; 32],
            b"k",
            Answer::Valid { time_ms: 100 },
            &mut rng,
        );
        assert_eq!(out.map(|o| o.verdict), Some(Verdict::Success));
        // Back in the book, re-aged.
        assert_eq!((book.candidates(), book.in_flight()), (1, 0));
        assert!(!book.ready(1500));
        assert!(book.ready(2001));
    }

    #[test]
    fn failures_by_kind_and_by_silence() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut book = ChallengeBook::new(always());
        for (i, key) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            book.remember(0, sa(i as u8 + 1), &dat(*key, 100), &mut rng);
        }
        let mut sent = Vec::new();
        while let Some(get) = book.issue(1000, |_| true, &mut rng) {
            sent.push(get);
        }
        assert_eq!(sent.len(), 4);
        let answers = [
            Answer::NotFound,
            Answer::Invalid,
            Answer::Valid { time_ms: 99 },
        ];
        let mut verdicts = Vec::new();
        for (get, answer) in sent.iter().zip(answers) {
            let o = book.answer(1100, get.peer, &get.pubkey, &get.key, answer, &mut rng);
            verdicts.push(o.expect("awaited").verdict);
        }
        assert_eq!(
            verdicts,
            vec![Verdict::NotFound, Verdict::Invalid, Verdict::Stale]
        );
        assert_eq!(book.candidates(), 0, "failures are not re-checked");
        let mut out = Vec::new();
        book.expire(3999, &mut out);
        assert!(out.is_empty());
        book.expire(4000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].verdict, Verdict::TimedOut);
        assert_eq!(out[0].peer, sent[3].peer);
        assert_eq!(book.in_flight(), 0);
        // A late answer is unsolicited.
        let late = &sent[3];
        assert!(
            book.answer(
                4001,
                late.peer,
                &late.pubkey,
                &late.key,
                Answer::NotFound,
                &mut rng
            )
            .is_none()
        );
    }

    #[test]
    fn bounds_per_peer_total_and_in_flight() {
        let mut rng = StdRng::seed_from_u64(3);
        let config = ChallengeConfig {
            sample_probability: 1.0,
            max_per_peer: 2,
            max_candidates: 5,
            max_in_flight: 3,
            ..ChallengeConfig::default()
        };
        let mut book = ChallengeBook::new(config);
        for k in 0..10u8 {
            book.remember(0, sa(1), &dat(&[k], 1), &mut rng);
        }
        assert_eq!(book.candidates(), 2);
        for p in 2..10u8 {
            book.remember(0, sa(p), &dat(&[p], 1), &mut rng);
        }
        assert_eq!(book.candidates(), 5);
        // The same send twice is one entry.
        let mut book2 = ChallengeBook::new(config);
        book2.remember(0, sa(1), &dat(b"x", 1), &mut rng);
        book2.remember(5, sa(1), &dat(b"x", 2), &mut rng);
        assert_eq!(book2.candidates(), 1);
        let mut issued = 0;
        while book.issue(10_000, |_| true, &mut rng).is_some() {
            issued += 1;
        }
        assert_eq!(issued, 3);
        assert!(!book.ready(10_000));
    }

    #[test]
    fn inactive_peers_lose_their_candidates_and_backwards_time_expires() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut book = ChallengeBook::new(always());
        book.remember(0, sa(1), &dat(b"k", 1), &mut rng);
        assert!(book.issue(5000, |_| false, &mut rng).is_none());
        assert_eq!(book.candidates(), 0);
        book.remember(0, sa(1), &dat(b"k", 1), &mut rng);
        assert!(book.issue(5000, |_| true, &mut rng).is_some());
        let mut out = Vec::new();
        book.expire(4000, &mut out);
        assert_eq!(out.len(), 1);
        // Sampling at 0 remembers nothing.
        let mut never = ChallengeBook::new(ChallengeConfig {
            sample_probability: 0.0,
            ..ChallengeConfig::default()
        });
        never.remember(0, sa(1), &dat(b"k", 1), &mut rng);
        assert_eq!(never.candidates(), 0);
    }

    #[test]
    fn timer_gaps_are_exponential_with_the_configured_mean() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut t = ChallengeTimer::new(100, 0, &mut rng);
        let mut fired = 0u64;
        for now in 0..1_000_000u64 {
            if t.due(now, &mut rng) {
                fired += 1;
            }
        }
        // 10 000 expected; the exponential's spread over 10⁴ draws is about 1 %.
        assert!((9_500..10_500).contains(&fired), "{fired}");
        let mut off = ChallengeTimer::new(0, 0, &mut rng);
        assert!(!off.due(u64::MAX - 1, &mut rng));
    }
}
