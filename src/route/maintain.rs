//! Replica maintenance by lookup (issue 12 item 5): the I/O-free decisions a record holder makes
//! to keep each record on the `replicas` nodes closest to its owner ID while the network churns,
//! and to let copies on nodes no longer among the closest age out. One core for both drivers:
//! the routing-level simulator (`route::world`) and the node (`shard::group`, when
//! `Config::route_lookups` is on).
//!
//! Kademlia §2.5, per held copy:
//!
//! ```text
//!  stored / re-stored by anyone ──► stamp = now; Leaving → Holder          (CopyState::restored)
//!  now − stamp ≥ republish (jittered per holder and owner) and not Leaving
//!        ──► ask for a lookup of the owner ID                               (Maintainer::ask)
//!            paced: lookups_per_s per holder; one lookup per owner ID in flight, its waiters
//!            bounded; a recent answer (cached, bounded) is reused without a lookup
//!  answer (closest found) ──► push the record to the replica set (the `replicas` closest of
//!            the nodes found and us) less us;
//!            we are among the closest → Replica, stamp = now (our own re-store)
//!            we are not              → Leaving: never republished again by us (CopyState::answered)
//!  now − stamp ≥ expire_after and not Replica ──► the copy ages out (dropped)  (CopyState::ages_out)
//! ```
//!
//! A copy someone else re-stored during the interval is not republished by us (their push reset
//! our stamp), so one holder per interval does the lookup, not all of them. A copy whose last
//! lookup found us among the closest never ages out by this rule (only by the record's own TTL
//! or the store's eviction order); every other copy is dropped `expire_after` after the last
//! store, so storage is not multiplied by the network size when the closest set moves.
//!
//! Per copy this costs 4 bytes ([`CopyState`]: a 30-bit second stamp and a 2-bit standing).
//! Per holder: the pacer, at most [`MAX_LOOKUPS_IN_FLIGHT`] lookups in flight with at most
//! [`MAX_WAITERS_PER_LOOKUP`] waiters each, and at most `answers_cached` answers
//! ([`MAX_ANSWERS_CACHED`]) of at most [`crate::route::MAX_BUCKET_SIZE`] addresses each.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use crate::keys::distance;
use crate::route::Contact;

/// Lookups in flight per holder at most (a node's shard group, a world node). Well below the
/// router's `MAX_LOOKUPS` (256) so maintenance never crowds out the lookups of puts and gets,
/// even with several owner threads asking at once.
pub const MAX_LOOKUPS_IN_FLIGHT: usize = 16;
/// Copies waiting on one lookup at most (records of one owner met by the walk while its lookup
/// runs). Beyond it the copy is simply met again on a later walk.
pub const MAX_WAITERS_PER_LOOKUP: usize = 64;
/// Largest `answers_cached` accepted: 1024 answers × (8 B target + 8 B time + ≤ 20 addresses of
/// 32 B + the vector) ≈ 700 KiB per holder at the very most.
pub const MAX_ANSWERS_CACHED: usize = 1024;
/// Largest `lookups_per_s` accepted: each lookup is O(k log N) FIND_NODE datagrams; 1024 per
/// second is already megabytes per second.
pub const MAX_LOOKUPS_PER_S: u32 = 1024;
/// A cached answer is reused at most this long (and at most half the republish interval): a
/// lookup's view of the closest is stale after churn of the order of a minute.
pub const MAX_ANSWER_AGE_MS: u64 = 30_000;
/// Largest second stamp a [`CopyState`] holds (30 bits: 34 years of uptime); clamped beyond.
pub const MAX_STAMP_S: u32 = (1 << 30) - 1;

/// Maintenance settings. Units in names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintainConfig {
    /// A copy not re-stored for this long is republished (lookup + push), less a per-holder
    /// jitter of up to an eighth of it. 0 disables republish (copies then only age out).
    pub republish_ms: u64,
    /// A copy not re-stored for this long, that we are not a replica for, ages out.
    pub expire_after_ms: u64,
    /// Republish lookups a holder may start per second (burst: one second's worth, at least 1).
    pub lookups_per_s: u32,
    /// A lookup not answered within this long is forgotten (its waiters are met again later).
    pub lookup_timeout_ms: u64,
    /// Recent answers kept for reuse (0: none). At most [`MAX_ANSWERS_CACHED`].
    pub answers_cached: usize,
    /// Nodes a record belongs on (the closest `replicas` to its owner ID).
    pub replicas: usize,
}

impl MaintainConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.lookups_per_s == 0 || self.lookups_per_s > MAX_LOOKUPS_PER_S {
            return Err("maintenance lookups per second must be between 1 and 1024");
        }
        if self.answers_cached > MAX_ANSWERS_CACHED {
            return Err("maintenance answers cached must be at most 1024");
        }
        if self.replicas == 0 || self.replicas > crate::route::MAX_BUCKET_SIZE {
            return Err("maintenance replicas must be between 1 and 20");
        }
        if self.expire_after_ms < self.republish_ms {
            return Err("expire_after_ms must be at least the republish interval");
        }
        Ok(())
    }

    /// The republish interval of `target` at the holder salted `salt` (its node ID): the
    /// interval less up to an eighth of it, fixed per (holder, target), so the holders of one
    /// record do not all look it up in the same second (the first one's push resets the
    /// others' stamps).
    pub fn republish_after_ms(&self, target: u64, salt: u64) -> u64 {
        let spread = self.republish_ms / 8;
        if spread == 0 {
            return self.republish_ms;
        }
        let mut h = (target ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 32;
        self.republish_ms - h % spread
    }

    fn answer_age_ms(&self) -> u64 {
        MAX_ANSWER_AGE_MS.min(self.republish_ms / 2)
    }
}

/// Where a held copy stands after the last lookup of its owner ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not known (stored by someone, no lookup of ours since): republished when due; ages out.
    Holder,
    /// Our last lookup found us among the `replicas` closest: republished when due; never ages
    /// out by this rule.
    Replica,
    /// Our last lookup found `replicas` nodes closer: not republished by us; ages out.
    Leaving,
    /// Stored from a sender that most likely placed it one hop, on the closest peers it knows
    /// rather than on the closest a lookup finds: a peer that does not speak ROUTING (a v1
    /// node, such as the Go reference), or a stranger while we are not among the owner's
    /// closest we know (`shard::core`). Due for a republish lookup at once (then Replica or
    /// Leaving); ages out as a Holder does. Lookups of dave nodes then find the record in a
    /// mixed network.
    Unplaced,
}

/// A held copy's maintenance state in 4 bytes: the second (of the holder's monotonic clock) it
/// was last stored or re-stored, 30 bits, and its [`Standing`], 2 bits. Milliseconds are
/// truncated to seconds: a republish or an age-out may come up to a second early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyState(u32);

const STANDING_SHIFT: u32 = 30;

fn stamp_of(now_ms: u64) -> u32 {
    (now_ms / 1000).min(MAX_STAMP_S as u64) as u32
}

impl CopyState {
    fn new(stamp_s: u32, standing: Standing) -> CopyState {
        let bits = match standing {
            Standing::Holder => 0,
            Standing::Replica => 1,
            Standing::Leaving => 2,
            Standing::Unplaced => 3,
        };
        CopyState((bits << STANDING_SHIFT) | stamp_s.min(MAX_STAMP_S))
    }

    /// A copy stored now for the first time.
    pub fn stored(now_ms: u64) -> CopyState {
        CopyState::new(stamp_of(now_ms), Standing::Holder)
    }

    /// Someone stored the copy again now (a push from another holder, a newer version, our own
    /// put): the clock restarts; a Leaving copy becomes a Holder again (the storer's lookup
    /// found us among the closest, so ours may be stale). An Unplaced copy stays due.
    pub fn restored(self, now_ms: u64) -> CopyState {
        let standing = match self.standing() {
            Standing::Leaving => Standing::Holder,
            s => s,
        };
        CopyState::new(stamp_of(now_ms), standing)
    }

    /// The second the copy was last stored.
    pub fn stamp_s(self) -> u32 {
        self.0 & MAX_STAMP_S
    }

    /// Its standing.
    pub fn standing(self) -> Standing {
        match self.0 >> STANDING_SHIFT {
            0 => Standing::Holder,
            1 => Standing::Replica,
            2 => Standing::Leaving,
            _ => Standing::Unplaced,
        }
    }

    fn age_ms(self, now_ms: u64) -> u64 {
        u64::from(stamp_of(now_ms).saturating_sub(self.stamp_s())) * 1000
    }

    /// Whether the copy is due for a republish lookup (with republish on: `after_ms` > 0, see
    /// [`MaintainConfig::republish_after_ms`]): Unplaced, or not re-stored for `after_ms` and
    /// not Leaving.
    pub fn republish_due(self, now_ms: u64, after_ms: u64) -> bool {
        after_ms > 0
            && match self.standing() {
                Standing::Unplaced => true,
                Standing::Leaving => false,
                Standing::Holder | Standing::Replica => {
                    self.age_ms(now_ms) >= after_ms / 1000 * 1000
                }
            }
    }

    /// The copy, stamp kept, marked Unplaced (due for a republish lookup at once).
    pub fn unplaced(self) -> CopyState {
        CopyState::new(self.stamp_s(), Standing::Unplaced)
    }

    /// Whether the copy ages out: not re-stored for `expire_after_ms` and not a Replica.
    pub fn ages_out(self, now_ms: u64, expire_after_ms: u64) -> bool {
        self.standing() != Standing::Replica && self.age_ms(now_ms) >= expire_after_ms / 1000 * 1000
    }

    /// The copy after a lookup of its owner ID was answered with `placement`: a replica is
    /// re-stored by us now; otherwise it is Leaving, with its stamp kept (it ages out
    /// `expire_after` after the last store).
    pub fn answered(self, now_ms: u64, placement: &Placement) -> CopyState {
        if placement.replica {
            CopyState::new(stamp_of(now_ms), Standing::Replica)
        } else {
            CopyState::new(self.stamp_s(), Standing::Leaving)
        }
    }
}

/// The copy states of a slab of records, one per slot ([`CopyState`], 4 B each), kept only once
/// [`CopyBook::track`] is called: a store that is not maintained by lookup spends nothing. The
/// slab's owner (`shard::store`, `shard::store2`) calls [`CopyBook::stored`] when a slot is
/// filled and reads the states by slot; the clock is the holder's monotonic clock as its driver
/// last set it ([`CopyBook::set_clock`]).
#[derive(Debug, Default)]
pub struct CopyBook {
    copies: Vec<CopyState>,
    tracking: bool,
    clock_ms: u64,
}

impl CopyBook {
    /// Keeps a state per slot from now on; the `slots` slots already in the slab are stamped as
    /// stored now (a free one's state is never read: the slab checks the slot first).
    pub fn track(&mut self, slots: usize) {
        if !self.tracking {
            self.tracking = true;
            self.copies = vec![CopyState::stored(self.clock_ms); slots];
        }
    }

    /// Whether states are kept.
    pub fn is_tracking(&self) -> bool {
        self.tracking
    }

    /// Sets the clock (monotonic ms) new and re-stored copies are stamped with.
    pub fn set_clock(&mut self, now_ms: u64) {
        self.clock_ms = now_ms;
    }

    /// `slot` was just filled with a record stored now.
    pub fn stored(&mut self, slot: usize) {
        if !self.tracking {
            return;
        }
        if self.copies.len() <= slot {
            self.copies.resize(slot + 1, CopyState::default());
        }
        self.copies[slot] = CopyState::stored(self.clock_ms);
    }

    /// The record in `slot` was stored again now ([`CopyState::restored`]).
    pub fn restored(&mut self, slot: usize) {
        if let Some(copy) = self.copies.get_mut(slot) {
            *copy = copy.restored(self.clock_ms);
        }
    }

    /// The record in `slot` came from a sender that placed it one hop ([`CopyState::unplaced`]).
    pub fn unplaced(&mut self, slot: usize) {
        if let Some(copy) = self.copies.get_mut(slot) {
            *copy = copy.unplaced();
        }
    }

    /// The state of `slot` (the caller checks the slot is in use).
    pub fn get(&self, slot: usize) -> Option<CopyState> {
        self.copies.get(slot).copied()
    }

    /// Replaces the state of `slot` (the caller checks the slot is in use).
    pub fn set(&mut self, slot: usize, copy: CopyState) {
        if let Some(c) = self.copies.get_mut(slot) {
            *c = copy;
        }
    }
}

/// What a lookup answer means for the records of its target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// Push the records here: the nodes of the replica set (the `replicas` closest of the nodes
    /// found and us) that are not us, closest first.
    pub push_to: Vec<SocketAddr>,
    /// We are in the replica set: fewer than `replicas` other nodes found, or we are closer to
    /// the target than the `replicas`-th found.
    pub replica: bool,
}

/// The placement of `target`'s records given a lookup's `closest` (closest first), seen from
/// the node `own_id`: the replica set is the `replicas` closest of the nodes found and us, so
/// a replica pushes to the `replicas − 1` others closest, and a node outside it to the
/// `replicas` closest. The record then lives on exactly `replicas` nodes, not one more.
pub fn place(own_id: u64, target: u64, closest: &[Contact], replicas: usize) -> Placement {
    let others = closest.iter().filter(|c| c.id != own_id);
    let farthest = others
        .clone()
        .map(|c| distance(c.id, target))
        .nth(replicas.saturating_sub(1));
    let replica = farthest.is_none_or(|f| distance(own_id, target) < f);
    let take = if replica {
        replicas.saturating_sub(1)
    } else {
        replicas
    };
    Placement {
        push_to: others.take(take).map(|c| c.addr).collect(),
        replica,
    }
}

/// What [`Maintainer::ask`] decided for one due copy.
#[derive(Debug, PartialEq, Eq)]
pub enum Ask<'a> {
    /// A recent answer for this target: act on it now (no lookup).
    Answered(&'a Placement),
    /// Start a lookup of the target now; the copy waits for its answer.
    Start,
    /// A lookup of the target is in flight; the copy waits for its answer.
    Waiting,
    /// No lookup may start now (pacing, or the in-flight / waiter bounds): meet the copy again
    /// later. A walk should stop here and resume at this copy.
    Paced,
}

struct InFlight<W> {
    started_ms: u64,
    waiting: Vec<W>,
}

/// Counters of one holder's maintenance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintainStats {
    /// Lookups started.
    pub lookups_started: u64,
    /// Answers received for lookups in flight.
    pub answers: u64,
    /// Copies handled from a cached answer (no lookup).
    pub cache_hits: u64,
    /// Asks refused by the pacer or the bounds.
    pub paced: u64,
    /// Lookups forgotten unanswered after `lookup_timeout_ms`.
    pub timed_out: u64,
}

/// The lookup side of one holder's maintenance: pacing, lookups in flight and the copies waiting
/// on them (`W`: whatever names a copy to its driver), and the cache of recent answers. See the
/// module docs.
pub struct Maintainer<W> {
    config: MaintainConfig,
    own_id: u64,
    /// Pacer tokens in thousandths of a lookup.
    tokens_milli: u64,
    refilled_ms: u64,
    in_flight: BTreeMap<u64, InFlight<W>>,
    cache: VecDeque<(u64, u64, Placement)>,
    stats: MaintainStats,
}

impl<W> Maintainer<W> {
    /// A holder `own_id` with a full pacer at `now_ms`.
    pub fn new(config: MaintainConfig, own_id: u64, now_ms: u64) -> Maintainer<W> {
        let mut m = Maintainer {
            config,
            own_id,
            tokens_milli: 0,
            refilled_ms: now_ms,
            in_flight: BTreeMap::new(),
            cache: VecDeque::new(),
            stats: MaintainStats::default(),
        };
        m.tokens_milli = m.burst_milli();
        m
    }

    /// The settings.
    pub fn config(&self) -> &MaintainConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> MaintainStats {
        self.stats
    }

    /// Lookups in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The republish interval of `target` at this holder.
    pub fn republish_after_ms(&self, target: u64) -> u64 {
        self.config.republish_after_ms(target, self.own_id)
    }

    fn burst_milli(&self) -> u64 {
        u64::from(self.config.lookups_per_s.max(1)) * 1000
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed_ms = now_ms.saturating_sub(self.refilled_ms);
        self.refilled_ms = self.refilled_ms.max(now_ms);
        let add = elapsed_ms.saturating_mul(u64::from(self.config.lookups_per_s));
        self.tokens_milli = self
            .tokens_milli
            .saturating_add(add)
            .min(self.burst_milli());
    }

    /// Forgets lookups older than `lookup_timeout_ms` and answers older than their age limit.
    /// Returns the copies that were waiting on the forgotten lookups (unchanged: met again by a
    /// later walk).
    pub fn expire(&mut self, now_ms: u64) -> Vec<W> {
        let timeout = self.config.lookup_timeout_ms;
        let late: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| now_ms.saturating_sub(f.started_ms) >= timeout)
            .map(|(&t, _)| t)
            .collect();
        let mut waiting = Vec::new();
        for t in late {
            if let Some(f) = self.in_flight.remove(&t) {
                self.stats.timed_out += 1;
                waiting.extend(f.waiting);
            }
        }
        let max_age = self.config.answer_age_ms();
        while self
            .cache
            .front()
            .is_some_and(|(_, at, _)| now_ms.saturating_sub(*at) >= max_age)
        {
            self.cache.pop_front();
        }
        waiting
    }

    /// A copy of `target`'s records is due (`waiter` names it): reuse a recent answer, join a
    /// lookup in flight (once: a waiter already waiting is not added again), start one, or be
    /// paced. See [`Ask`].
    pub fn ask(&mut self, now_ms: u64, target: u64, waiter: W) -> Ask<'_>
    where
        W: PartialEq,
    {
        let max_age = self.config.answer_age_ms();
        if let Some(i) = self
            .cache
            .iter()
            .rposition(|(t, at, _)| *t == target && now_ms.saturating_sub(*at) < max_age)
        {
            self.stats.cache_hits += 1;
            return Ask::Answered(&self.cache[i].2);
        }
        if let Some(f) = self.in_flight.get_mut(&target) {
            if f.waiting.len() >= MAX_WAITERS_PER_LOOKUP {
                self.stats.paced += 1;
                return Ask::Paced;
            }
            if !f.waiting.contains(&waiter) {
                f.waiting.push(waiter);
            }
            return Ask::Waiting;
        }
        self.refill(now_ms);
        if self.in_flight.len() >= MAX_LOOKUPS_IN_FLIGHT || self.tokens_milli < 1000 {
            self.stats.paced += 1;
            return Ask::Paced;
        }
        self.tokens_milli -= 1000;
        self.in_flight.insert(
            target,
            InFlight {
                started_ms: now_ms,
                waiting: vec![waiter],
            },
        );
        self.stats.lookups_started += 1;
        Ask::Start
    }

    /// The lookup of `target` ended with `closest` (`None`: it could not run; its waiters are
    /// met again later, unchanged). Returns the placement (cached) and the copies that waited
    /// on it; nothing if no such lookup was in flight (an answer after its timeout).
    pub fn answer(
        &mut self,
        now_ms: u64,
        target: u64,
        closest: Option<&[Contact]>,
    ) -> Option<(Placement, Vec<W>)> {
        let f = self.in_flight.remove(&target)?;
        let closest = closest?;
        self.stats.answers += 1;
        let placement = place(self.own_id, target, closest, self.config.replicas);
        if self.config.answers_cached > 0 {
            if self.cache.len() >= self.config.answers_cached {
                self.cache.pop_front();
            }
            self.cache.push_back((target, now_ms, placement.clone()));
        }
        Some((placement, f.waiting))
    }

    /// When [`Maintainer::expire`] next has work (the oldest lookup's timeout); `None` if no
    /// lookup is in flight.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.in_flight
            .values()
            .map(|f| f.started_ms.saturating_add(self.config.lookup_timeout_ms))
            .min()
    }
}

/// Lookups the node-wide [`LookupShare`] keeps in flight at most: a quarter of the router's
/// `MAX_LOOKUPS` (256), so maintenance never crowds out the lookups of puts and gets.
pub const MAX_SHARED_IN_FLIGHT: usize = 64;
/// Answers the node-wide [`LookupShare`] keeps for reuse: 256 × (≤ 20 contacts of 40 B) ≈
/// 200 KiB at most.
pub const MAX_SHARED_ANSWERS: usize = 256;
/// Askers (owner threads) waiting on one shared lookup at most: the node's largest number of
/// owner threads.
pub const MAX_ASKERS_PER_LOOKUP: usize = 256;

/// What [`LookupShare::ask`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Share<'a> {
    /// A recent answer: hand it to the asker now.
    Cached(&'a [Contact]),
    /// A lookup of the target is running: the asker gets its answer.
    Joined,
    /// Start a lookup of the target now; report it with [`LookupShare::done`].
    Start,
    /// Not now (the node-wide pace or a bound): answer the asker "could not run".
    Refused,
}

/// The node-wide side of maintenance lookups, where several holders (a node's owner threads,
/// each with its own [`Maintainer`]) ask for the same owner IDs: one lookup per target for all
/// askers, recent answers reused, and the node's `lookups_per_s` enforced once for the node (a
/// record owner's keys are spread over every owner thread, so without this one owner ID would
/// cost a lookup per owner thread). I/O-free; the node's peer thread drives it.
pub struct LookupShare {
    lookups_per_s: u32,
    answer_age_ms: u64,
    lookup_timeout_ms: u64,
    tokens_milli: u64,
    refilled_ms: u64,
    /// Target → (started, askers).
    in_flight: BTreeMap<u64, (u64, Vec<usize>)>,
    cache: VecDeque<(u64, u64, Vec<Contact>)>,
}

impl LookupShare {
    /// Node-wide pacing and reuse for holders configured with `config` (its `lookups_per_s` is
    /// the node's rate here), starting full at `now_ms`.
    pub fn new(config: &MaintainConfig, now_ms: u64) -> LookupShare {
        let lookups_per_s = config.lookups_per_s.clamp(1, MAX_LOOKUPS_PER_S);
        LookupShare {
            lookups_per_s,
            answer_age_ms: config.answer_age_ms(),
            lookup_timeout_ms: config.lookup_timeout_ms,
            tokens_milli: u64::from(lookups_per_s) * 1000,
            refilled_ms: now_ms,
            in_flight: BTreeMap::new(),
            cache: VecDeque::new(),
        }
    }

    /// Lookups in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Holder `asker` wants the closest nodes of `target`. See [`Share`].
    pub fn ask(&mut self, now_ms: u64, target: u64, asker: usize) -> Share<'_> {
        let max_age = self.answer_age_ms;
        while self
            .cache
            .front()
            .is_some_and(|(_, at, _)| now_ms.saturating_sub(*at) >= max_age)
        {
            self.cache.pop_front();
        }
        if let Some(i) = self.cache.iter().rposition(|(t, _, _)| *t == target) {
            return Share::Cached(&self.cache[i].2);
        }
        // A lookup the driver never reported is forgotten after the timeout (its askers have
        // forgotten it too by then).
        let timeout = self.lookup_timeout_ms;
        self.in_flight
            .retain(|_, (started, _)| now_ms.saturating_sub(*started) < timeout);
        if let Some((_, askers)) = self.in_flight.get_mut(&target) {
            if askers.contains(&asker) {
                return Share::Joined;
            }
            if askers.len() >= MAX_ASKERS_PER_LOOKUP {
                return Share::Refused;
            }
            askers.push(asker);
            return Share::Joined;
        }
        let elapsed_ms = now_ms.saturating_sub(self.refilled_ms);
        self.refilled_ms = self.refilled_ms.max(now_ms);
        let burst = u64::from(self.lookups_per_s) * 1000;
        self.tokens_milli = self
            .tokens_milli
            .saturating_add(elapsed_ms.saturating_mul(u64::from(self.lookups_per_s)))
            .min(burst);
        if self.in_flight.len() >= MAX_SHARED_IN_FLIGHT || self.tokens_milli < 1000 {
            return Share::Refused;
        }
        self.tokens_milli -= 1000;
        self.in_flight.insert(target, (now_ms, vec![asker]));
        Share::Start
    }

    /// The lookup of `target` ended with `closest` (`None`: it could not run). Returns the
    /// askers to hand it to; a found answer is kept for reuse.
    pub fn done(&mut self, now_ms: u64, target: u64, closest: Option<&[Contact]>) -> Vec<usize> {
        let askers = self
            .in_flight
            .remove(&target)
            .map(|(_, a)| a)
            .unwrap_or_default();
        if let Some(closest) = closest {
            if self.cache.len() >= MAX_SHARED_ANSWERS {
                self.cache.pop_front();
            }
            self.cache.push_back((target, now_ms, closest.to_vec()));
        }
        askers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: u64) -> Contact {
        Contact {
            id,
            addr: SocketAddr::from(([10, 0, (id >> 8) as u8, id as u8], 1)),
            verified: true,
            pinned: false,
        }
    }

    fn config() -> MaintainConfig {
        MaintainConfig {
            republish_ms: 60_000,
            expire_after_ms: 180_000,
            lookups_per_s: 2,
            lookup_timeout_ms: 5_000,
            answers_cached: 4,
            replicas: 3,
        }
    }

    #[test]
    fn a_copy_is_due_after_the_interval_and_a_restore_resets_the_clock() {
        let c = config();
        let copy = CopyState::stored(10_000);
        assert_eq!(copy.standing(), Standing::Holder);
        let after = c.republish_after_ms(0x1234, 7);
        assert!(after <= c.republish_ms && after > c.republish_ms - c.republish_ms / 8);
        assert!(!copy.republish_due(10_000 + after - 1_000, after));
        assert!(copy.republish_due(10_000 + after, after));
        // Another holder's push at 50 s: we are not due until 50 s + interval.
        let copy = copy.restored(50_000);
        assert!(!copy.republish_due(10_000 + after, after));
        assert!(copy.republish_due(50_000 + after, after));
        // 0 disables republish.
        assert!(!copy.republish_due(u64::MAX / 2, 0));
        // Jitter differs between holders of one target.
        let spread: std::collections::BTreeSet<u64> =
            (0..16).map(|salt| c.republish_after_ms(42, salt)).collect();
        assert!(spread.len() > 8, "{spread:?}");
    }

    #[test]
    fn an_unplaced_copy_is_due_at_once_until_a_lookup_answers_for_it() {
        let c = config();
        let copy = CopyState::stored(10_000).unplaced();
        assert_eq!((copy.standing(), copy.stamp_s()), (Standing::Unplaced, 10));
        let after = c.republish_after_ms(0x1234, 7);
        assert!(
            copy.republish_due(10_000, after),
            "due the moment it is stored"
        );
        assert!(!copy.republish_due(10_000, 0), "republish off: never");
        // A re-store (the same record from the v1 peer again) keeps it due.
        let copy = copy.restored(20_000);
        assert_eq!((copy.standing(), copy.stamp_s()), (Standing::Unplaced, 20));
        assert!(copy.republish_due(20_000, after));
        // It ages out as a Holder does.
        assert!(!copy.ages_out(20_000 + c.expire_after_ms - 1_000, c.expire_after_ms));
        assert!(copy.ages_out(20_000 + c.expire_after_ms, c.expire_after_ms));
        // The lookup's answer settles it: a replica is due again only after the interval.
        let found: Vec<Contact> = [1, 2, 0x40].map(contact).to_vec();
        let replica = copy.answered(30_000, &place(0x03, 0x00, &found, c.replicas));
        assert_eq!(replica.standing(), Standing::Replica);
        assert!(!replica.republish_due(30_000, after));
        let found: Vec<Contact> = [1, 2, 3].map(contact).to_vec();
        let leaving = copy.answered(30_000, &place(0x0F, 0x00, &found, c.replicas));
        assert_eq!(leaving.standing(), Standing::Leaving);
        assert!(!leaving.republish_due(u64::MAX / 2, after));
    }

    #[test]
    fn not_among_the_closest_stops_republishing_and_the_copy_ages_out() {
        let c = config();
        // We are 0x0F; the target 0x00; three nodes closer (1, 2, 3) were found.
        let found: Vec<Contact> = [1, 2, 3, 0x20].map(contact).to_vec();
        let placement = place(0x0F, 0x00, &found, c.replicas);
        assert!(!placement.replica);
        assert_eq!(
            placement.push_to,
            [1, 2, 3].map(|i| contact(i).addr).to_vec()
        );
        let copy = CopyState::stored(0).answered(60_000, &placement);
        assert_eq!(copy.standing(), Standing::Leaving);
        assert!(!copy.republish_due(10_000_000, 60_000), "never again by us");
        assert!(!copy.ages_out(179_000, c.expire_after_ms));
        assert!(
            copy.ages_out(180_000, c.expire_after_ms),
            "aged from the store"
        );
        // A re-store by someone whose lookup found us: a Holder again, clock restarted.
        let copy = copy.restored(170_000);
        assert_eq!(copy.standing(), Standing::Holder);
        assert!(!copy.ages_out(180_000 + 100_000, c.expire_after_ms));
        assert!(copy.ages_out(170_000 + 180_000, c.expire_after_ms));
    }

    #[test]
    fn the_closest_replica_never_ages_out_by_this_rule() {
        let c = config();
        // We are 0x01, the target 0x00: closer than the third found (3).
        let found: Vec<Contact> = [2, 3, 4, 5].map(contact).to_vec();
        let placement = place(0x01, 0x00, &found, c.replicas);
        assert!(placement.replica);
        assert_eq!(
            placement.push_to,
            vec![contact(2).addr, contact(3).addr],
            "the other two of the replica set"
        );
        let copy = CopyState::stored(0).answered(60_000, &placement);
        assert_eq!(copy.standing(), Standing::Replica);
        assert!(!copy.ages_out(60_000 + 100 * c.expire_after_ms, c.expire_after_ms));
        assert!(copy.republish_due(120_000, 60_000), "still republished");
        // Fewer than `replicas` found (or none): nobody closer is known, we are a replica.
        assert!(place(0xFF, 0, &[contact(1)], 3).replica);
        assert!(place(0xFF, 0, &[], 3).replica);
        // We are never pushed to ourselves.
        let with_us: Vec<Contact> = [1, 2, 3, 4].map(contact).to_vec();
        let p = place(2, 0, &with_us, 3);
        assert_eq!(p.push_to, vec![contact(1).addr, contact(3).addr]);
        assert!(p.replica);
    }

    #[test]
    fn lookups_are_paced_shared_per_target_and_answers_reused() {
        let c = config();
        let mut m: Maintainer<u32> = Maintainer::new(c, 0xFF, 0);
        assert_eq!(m.ask(0, 1, 10), Ask::Start);
        assert_eq!(m.ask(0, 1, 11), Ask::Waiting, "same target: one lookup");
        assert_eq!(m.ask(0, 2, 20), Ask::Start);
        assert_eq!(m.ask(0, 3, 30), Ask::Paced, "burst of 2 per second");
        assert_eq!(m.ask(499, 3, 30), Ask::Paced);
        assert_eq!(m.ask(500, 3, 30), Ask::Start, "2 per second refill");
        assert_eq!(m.in_flight(), 3);
        let found: Vec<Contact> = [1, 2, 3].map(contact).to_vec();
        let (placement, waiting) = m.answer(600, 1, Some(&found)).expect("in flight");
        assert_eq!(waiting, vec![10, 11]);
        assert!(!placement.replica);
        assert!(m.answer(600, 1, Some(&found)).is_none(), "answered once");
        // Reused while recent, without a token.
        assert!(matches!(m.ask(700, 1, 12), Ask::Answered(p) if *p == placement));
        assert_eq!(m.stats().cache_hits, 1);
        // Unanswered lookups time out and hand back their waiters (target 2 started at 0).
        assert_eq!(m.next_deadline_ms(), Some(5_000));
        assert_eq!(m.expire(5_000), vec![20]);
        assert_eq!(m.stats().timed_out, 1);
        // A lookup that could not run frees its waiters unchanged (and is not cached).
        assert!(m.answer(5_100, 3, None).is_none());
        assert_eq!(m.in_flight(), 0);
        assert_eq!(m.ask(5_100, 3, 31), Ask::Start);
        // An answer is reused for at most half the interval (30 s here).
        m.expire(600 + 30_000);
        assert_eq!(m.ask(600 + 30_000, 1, 13), Ask::Start);
    }

    #[test]
    fn the_bounds_hold() {
        let c = MaintainConfig {
            lookups_per_s: MAX_LOOKUPS_PER_S,
            ..config()
        };
        let mut m: Maintainer<usize> = Maintainer::new(c, 0, 0);
        for t in 0..MAX_LOOKUPS_IN_FLIGHT as u64 {
            assert_eq!(m.ask(0, t, 0), Ask::Start);
        }
        assert_eq!(m.ask(0, 1_000, 0), Ask::Paced, "in-flight bound");
        for w in 1..MAX_WAITERS_PER_LOOKUP {
            assert_eq!(m.ask(0, 0, w), Ask::Waiting);
        }
        assert_eq!(m.ask(0, 0, 99), Ask::Paced, "waiter bound");
        // The cache keeps the newest `answers_cached`.
        for t in 0..MAX_LOOKUPS_IN_FLIGHT as u64 {
            m.answer(1, t, Some(&[])).expect("in flight");
        }
        assert_eq!(m.cache.len(), c.answers_cached);
        assert!(config().validate().is_ok());
        let bad = MaintainConfig {
            expire_after_ms: 1,
            ..config()
        };
        assert!(bad.validate().is_err());
        // The stamp clamps instead of wrapping.
        let far = CopyState::stored(u64::MAX);
        assert_eq!(far.stamp_s(), MAX_STAMP_S);
        assert_eq!(far.standing(), Standing::Holder);
    }

    #[test]
    fn the_node_shares_one_lookup_per_target_and_paces_them_node_wide() {
        let c = config(); // 2 lookups a second, answers reused for 30 s
        let mut share = LookupShare::new(&c, 0);
        assert_eq!(share.ask(0, 7, 0), Share::Start);
        assert_eq!(
            share.ask(0, 7, 1),
            Share::Joined,
            "another owner thread, same target"
        );
        assert_eq!(share.ask(0, 7, 1), Share::Joined);
        assert_eq!(share.ask(0, 8, 2), Share::Start);
        assert_eq!(
            share.ask(0, 9, 3),
            Share::Refused,
            "two a second for the whole node"
        );
        let found: Vec<Contact> = [1, 2].map(contact).to_vec();
        assert_eq!(share.done(100, 7, Some(&found)), vec![0, 1]);
        assert_eq!(share.ask(200, 7, 5), Share::Cached(&found[..]));
        assert_eq!(
            share.done(200, 8, None),
            vec![2],
            "could not run: not cached"
        );
        assert_eq!(share.in_flight(), 0);
        assert_eq!(
            share.ask(30_100, 7, 5),
            Share::Start,
            "the answer is too old"
        );
        // A lookup never reported is forgotten after the timeout.
        assert_eq!(share.ask(30_100, 8, 0), Share::Start);
        assert_eq!(share.ask(35_100, 8, 1), Share::Start);
    }
}
