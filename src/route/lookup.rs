//! [`Lookup`]: the iterative Kademlia node lookup as an I/O-free state machine.
//!
//! The driver seeds it with the closest contacts of its routing table, then loops:
//! [`Lookup::poll`] (at most α requests in flight per path, timeouts turned into failures) →
//! send a FIND_NODE to each returned contact → feed each NODES answer to [`Lookup::on_reply`]
//! (and each failure the driver learns of to [`Lookup::on_failure`]) → wake at
//! [`Lookup::next_deadline_ms`]. It ends ([`Lookup::is_done`]) when the k closest contacts it
//! knows of have all answered, or nothing is left to ask. [`Lookup::closest_answered`] gives the
//! result: where a PUT stores and a GET asks.
//!
//! Eclipse resistance (S/Kademlia, Baumgart & Mies 2007, §4.4): with `paths = d > 1` the seeds
//! are dealt round-robin to d paths, and a contact belongs to the first path that learned of it;
//! no contact is asked by two paths. An attacker who answers one path with its own sybils
//! therefore cannot steer the others, and the result merges what every path found. Contacts
//! whose ID is verified (a pinned key) are asked before unverified ones at equal rank.
//!
//! Key-grinding attackers (README "Routing at scale", eclipse resistance): a lookup keeps at most
//! `max_per_cluster` contacts whose IDs share `cluster_prefix_bits` leading bits (ground IDs of
//! one target are one cluster, honest IDs almost never are), waits for every request in flight
//! before it ends (fast liars cannot end it before the honest answers arrive), and with
//! `verify_ids` counts a contact whose ID was only listed as answered once the driver proved the
//! key at its address ([`Lookup::on_proof`]); a proof of another ID drops it, its lister and
//! what else that lister listed.
//!
//! Bounds: at most `max_candidates` contacts are remembered (the farthest are forgotten), and at
//! most `max_requests` requests are sent, so a lookup costs bounded memory and traffic whatever
//! the answers.

use std::net::SocketAddr;

use crate::keys::distance;
use crate::route::Contact;

/// Lookup settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupConfig {
    /// k: the lookup ends when the k closest known contacts have answered.
    pub k: usize,
    /// α: requests in flight at once, over all paths (each path gets at least one).
    /// Default 3 (Kademlia).
    pub alpha: usize,
    /// Disjoint paths (S/Kademlia d). Default 1; 2 or more under attack.
    pub paths: usize,
    /// A contact unanswered this long fails (it is asked [`MAX_REQUESTS_PER_CONTACT`] times,
    /// this far apart divided by that count). Default 1000 ms: a dave round trip is far below it.
    pub request_timeout_ms: u64,
    /// Contacts remembered at most. Default 64.
    pub max_candidates: usize,
    /// Requests sent at most. Default 48: 16 × α, far above the O(log N) rounds a lookup needs.
    pub max_requests: usize,
    /// Contacts whose IDs share at least this many leading bits form one ID cluster (see
    /// `max_per_cluster`). Default 64 (only equal IDs); the router sets it per lookup from its
    /// network-size estimate ([`crate::route::RoutingTable::cluster_prefix_bits`]), a few bits
    /// deeper than where honest, uniform IDs still have neighbours.
    pub cluster_prefix_bits: u32,
    /// Contacts of one ID cluster the lookup keeps (the first it hears of); the others are
    /// refused. Default 2 (as `table::MAX_PER_ID_CLUSTER`): honest IDs are uniform, so three of
    /// them in one cluster is rare, while a key-grinding attacker's IDs all fall in the clusters
    /// it ground for and would otherwise fill the k-closest frontier of any lookup that meets
    /// one of them. 0 = no limit.
    pub max_per_cluster: usize,
    /// Only contacts whose ID is proven (a key pinned by the driver: a signed PONG from that
    /// address) count as answered: an answering contact with a merely listed ID waits for the
    /// driver's proof ([`Lookup::on_proof`]) for up to `request_timeout_ms` more, and one whose
    /// proven ID differs from the listed one is dropped. Without it, an attacker lists honest
    /// IDs next to the target at its own addresses, and lookups end on (and store to) it.
    /// Default false: the node's peer thread does not yet prove addresses on request
    /// (`RouterEffects::prove`); the routing simulator does.
    pub verify_ids: bool,
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            k: 8,
            alpha: 3,
            paths: 1,
            request_timeout_ms: 1_000,
            max_candidates: 64,
            max_requests: 48,
            cluster_prefix_bits: 64,
            max_per_cluster: 2,
            verify_ids: false,
        }
    }
}

/// Most disjoint paths a lookup may use (each needs its own share of α and of k).
pub const MAX_PATHS: usize = 8;

/// Requests a contact gets before it counts as failed, each given an equal share of
/// `request_timeout_ms`: one that has not answered half-way is asked once more (it stays among
/// the closest, so it is asked first again), and an answer to either request counts. At 2 %
/// datagram loss a request or its answer is lost about 4 % of the time: with one request, each
/// of the few closest live nodes drops out of a lookup's result that often, and two lookups of
/// one target disagree on the closest nodes in about one case in five (the replica set of a v2
/// compare-and-swap, where both writers must see the same set: `dave sim --v2 --cas --race
/// --loss 2`, perf/README.md "v2 records in the simulator"); with two, about 0.16 % of them do.
/// A departed contact still fails after `request_timeout_ms`, and a slow one still counts if it
/// answers the first request within it.
pub const MAX_REQUESTS_PER_CONTACT: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotAsked,
    InFlight {
        sent_ms: u64,
    },
    /// Answered, but its ID is only listed: waiting for the driver's proof (`verify_ids`).
    Proving {
        sent_ms: u64,
    },
    Answered,
    /// A request sent at `sent_ms` went unanswered for its share of the timeout: to be asked
    /// again (a late answer to it still counts).
    Retry {
        sent_ms: u64,
    },
    Failed,
}

impl State {
    /// Whether a request may be sent to it now (never asked, or due for its next request).
    fn askable(self) -> bool {
        matches!(self, State::NotAsked | State::Retry { .. })
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    contact: Contact,
    state: State,
    /// The path that owns it.
    path: usize,
    /// Hops from us: 1 for a seed, n + 1 for a contact learned from a hop-n contact.
    hops: u32,
    /// Who listed it (`None` for a seed): if one of its listings proves forged, the others
    /// not yet asked are dropped with it.
    lister: Option<SocketAddr>,
    /// Requests sent to it (at most [`MAX_REQUESTS_PER_CONTACT`]).
    requests: u8,
}

/// One request the driver must send: a FIND_NODE for the lookup's target to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupRequest {
    /// Whom to ask.
    pub to: Contact,
}

/// What one [`Lookup::poll`] wants done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupPoll {
    /// Requests to send now.
    pub requests: Vec<LookupRequest>,
    /// Contacts that failed in this poll: their last request (of [`MAX_REQUESTS_PER_CONTACT`])
    /// timed out (the driver tells its routing table, once per contact).
    pub timed_out: Vec<SocketAddr>,
}

/// An iterative lookup. See the module docs.
#[derive(Debug, Clone)]
pub struct Lookup {
    target: u64,
    config: LookupConfig,
    /// Sorted by (distance to target, address); at most `max_candidates`.
    candidates: Vec<Candidate>,
    requests_sent: usize,
    replies: usize,
    failures: usize,
    /// Contacts refused because their ID cluster was full.
    clustered: usize,
    /// Contacts dropped because the ID proven at their address was not the listed one.
    forged: usize,
    /// When the earliest in-flight request or proof times out (kept by every change of a
    /// state, so [`Lookup::next_deadline_ms`], which drivers ask after every datagram, is O(1)).
    deadline_ms: Option<u64>,
}

impl Lookup {
    /// A lookup for `target`, seeded with `seeds` (e.g. the routing table's closest).
    pub fn new(target: u64, config: LookupConfig, seeds: &[Contact]) -> Lookup {
        let config = LookupConfig {
            k: config.k.max(1),
            alpha: config.alpha.max(1),
            paths: config.paths.clamp(1, MAX_PATHS),
            max_candidates: config.max_candidates.max(config.k),
            ..config
        };
        let mut lookup = Lookup {
            target,
            config,
            candidates: Vec::new(),
            requests_sent: 0,
            replies: 0,
            failures: 0,
            clustered: 0,
            forged: 0,
            deadline_ms: None,
        };
        let mut sorted = seeds.to_vec();
        sorted.sort_by_key(|c| (distance(c.id, target), c.addr));
        for (i, c) in sorted.into_iter().enumerate() {
            lookup.add(c, i % lookup.config.paths, 1, None);
        }
        lookup
    }

    /// A lookup whose path `i` starts from `per_path[i]` (extra lists are ignored; paths without
    /// a list start empty). S/Kademlia's seeding with a twist: a caller that deals the routing
    /// table's closest contacts to path 0 and contacts from *other* buckets to the other paths
    /// keeps one attacker who filled the target's bucket from owning every seed.
    pub fn with_path_seeds(target: u64, config: LookupConfig, per_path: &[Vec<Contact>]) -> Lookup {
        let mut lookup = Lookup::new(target, config, &[]);
        for (path, seeds) in per_path.iter().enumerate().take(lookup.config.paths) {
            for &c in seeds {
                lookup.add(c, path, 1, None);
            }
        }
        lookup
    }

    /// The target ID.
    pub fn target(&self) -> u64 {
        self.target
    }

    /// Requests sent so far.
    pub fn requests_sent(&self) -> usize {
        self.requests_sent
    }

    /// Answers accepted so far.
    pub fn replies(&self) -> usize {
        self.replies
    }

    /// Contacts failed so far (their last request timed out, or the driver reported a failure).
    pub fn failures(&self) -> usize {
        self.failures
    }

    /// Contacts refused so far because their ID cluster was full.
    pub fn clustered(&self) -> usize {
        self.clustered
    }

    /// Contacts dropped so far because the ID proven at their address was not the listed one.
    pub fn forged(&self) -> usize {
        self.forged
    }

    /// The driver proved that the node at `addr` holds ID `id` (a pinned key). A candidate
    /// listed there with that ID becomes verified (and counts as answered if it answered); one
    /// listed with another ID was a lie (or a stale listing) and is dropped. Returns whether a
    /// candidate was at `addr`.
    pub fn on_proof(&mut self, addr: SocketAddr, id: u64) -> bool {
        let Some(i) = self.candidates.iter().position(|c| c.contact.addr == addr) else {
            return false;
        };
        self.settle_proof(i, id);
        self.update_deadline();
        true
    }

    /// [`Lookup::on_proof`] for candidate `i`, without the deadline update.
    fn settle_proof(&mut self, i: usize, id: u64) {
        let verify_ids = self.config.verify_ids;
        let c = &mut self.candidates[i];
        if c.contact.id == id {
            c.contact.verified = true;
            if matches!(c.state, State::Proving { .. }) {
                c.state = State::Answered;
            }
            return;
        }
        if c.state == State::Failed {
            return;
        }
        c.state = State::Failed;
        self.forged += 1;
        // With `verify_ids` an honest table holds only proven IDs, so whoever listed this one
        // lied: drop what else it listed that is not yet asked, and the liar itself.
        if let Some(liar) = c.lister.filter(|_| verify_ids) {
            for other in &mut self.candidates {
                let from_liar = other.lister == Some(liar) && other.state == State::NotAsked;
                if from_liar || other.contact.addr == liar {
                    other.state = State::Failed;
                }
            }
        }
    }

    /// Candidates that answered and wait for the proof of their ID.
    pub fn proving(&self) -> impl Iterator<Item = Contact> + '_ {
        self.candidates
            .iter()
            .filter(|c| matches!(c.state, State::Proving { .. }))
            .map(|c| c.contact)
    }

    /// Whether the candidates already hold `max_per_cluster` IDs sharing at least
    /// `cluster_prefix_bits` leading bits with `id`.
    fn cluster_full(&self, id: u64) -> bool {
        let max = self.config.max_per_cluster;
        if max == 0 {
            return false;
        }
        let bits = self.config.cluster_prefix_bits.min(64);
        self.candidates
            .iter()
            .filter(|c| c.state != State::Failed)
            .filter(|c| distance(c.contact.id, id).leading_zeros() >= bits)
            .count()
            >= max
    }

    fn key(&self, c: &Contact) -> (u64, SocketAddr) {
        (distance(c.id, self.target), c.addr)
    }

    /// Adds a contact to `path` unless known (to any path) or too far to matter.
    fn add(&mut self, contact: Contact, path: usize, hops: u32, lister: Option<SocketAddr>) {
        let key = self.key(&contact);
        if self
            .candidates
            .iter()
            .any(|c| c.contact.addr == contact.addr)
        {
            return;
        }
        if self.cluster_full(contact.id) {
            self.clustered += 1;
            return;
        }
        let pos = self
            .candidates
            .partition_point(|c| (distance(c.contact.id, self.target), c.contact.addr) < key);
        if pos >= self.config.max_candidates {
            return;
        }
        self.candidates.insert(
            pos,
            Candidate {
                contact,
                state: State::NotAsked,
                path,
                hops,
                lister,
                requests: 0,
            },
        );
        // Forget the farthest contact we are not waiting for.
        if self.candidates.len() > self.config.max_candidates
            && let Some(i) = self
                .candidates
                .iter()
                .rposition(|c| !matches!(c.state, State::InFlight { .. } | State::Proving { .. }))
        {
            self.candidates.remove(i);
        }
    }

    fn in_flight(&self, path: usize) -> usize {
        self.candidates
            .iter()
            .filter(|c| c.path == path && matches!(c.state, State::InFlight { .. }))
            .count()
    }

    /// α of one path.
    fn alpha_per_path(&self) -> usize {
        self.config.alpha.div_ceil(self.config.paths).max(1)
    }

    /// The k closest non-failed candidates of `path`: indices into `candidates`.
    fn path_frontier(&self, path: usize) -> impl Iterator<Item = usize> + '_ {
        self.candidates
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.path == path && c.state != State::Failed)
            .take(self.config.k)
            .map(|(i, _)| i)
    }

    /// How long one request to a contact waits before the next (or the contact's failure).
    fn attempt_timeout_ms(&self) -> u64 {
        (self.config.request_timeout_ms / u64::from(MAX_REQUESTS_PER_CONTACT)).max(1)
    }

    /// Times out overdue requests and returns the requests to send now.
    pub fn poll(&mut self, now_ms: u64) -> LookupPoll {
        let mut out = LookupPoll::default();
        let timeout_ms = self.config.request_timeout_ms;
        let attempt_ms = self.attempt_timeout_ms();
        for c in &mut self.candidates {
            if let State::InFlight { sent_ms } = c.state
                && now_ms.saturating_sub(sent_ms) >= attempt_ms
            {
                if c.requests < MAX_REQUESTS_PER_CONTACT {
                    // Asked again below (it is among the closest): either answer counts.
                    c.state = State::Retry { sent_ms };
                } else {
                    c.state = State::Failed;
                    self.failures += 1;
                    out.timed_out.push(c.contact.addr);
                }
            }
            // An unproven ID gets one more request timeout for its proof.
            if let State::Proving { sent_ms } = c.state
                && now_ms.saturating_sub(sent_ms) >= timeout_ms.saturating_mul(2)
            {
                c.state = State::Failed;
                self.failures += 1;
            }
        }
        let alpha = self.alpha_per_path();
        for path in 0..self.config.paths {
            let mut free = alpha.saturating_sub(self.in_flight(path));
            while free > 0 && self.requests_sent < self.config.max_requests {
                // Among the k closest of the path not yet asked, prefer the closest; at equal
                // distance rank (within the frontier) verified IDs go first.
                let frontier: Vec<usize> = self.path_frontier(path).collect();
                let pick = frontier
                    .iter()
                    .copied()
                    .filter(|&i| self.candidates[i].state.askable())
                    .min_by_key(|&i| (!self.candidates[i].contact.verified, i));
                // Verified-first must not skip a much closer unverified contact forever: take the
                // verified one only if it is among the α closest unasked.
                let closest_unasked = frontier
                    .iter()
                    .copied()
                    .find(|&i| self.candidates[i].state.askable());
                let pick = match (pick, closest_unasked) {
                    (Some(p), Some(c)) => {
                        let rank = frontier
                            .iter()
                            .filter(|&&i| self.candidates[i].state.askable() && i < p)
                            .count();
                        if rank < alpha { Some(p) } else { Some(c) }
                    }
                    (p, c) => p.or(c),
                };
                let Some(i) = pick else { break };
                self.candidates[i].state = State::InFlight { sent_ms: now_ms };
                self.candidates[i].requests += 1;
                self.requests_sent += 1;
                out.requests.push(LookupRequest {
                    to: self.candidates[i].contact,
                });
                free -= 1;
            }
        }
        self.update_deadline();
        out
    }

    fn update_deadline(&mut self) {
        self.deadline_ms = self
            .candidates
            .iter()
            .filter_map(|c| match c.state {
                State::InFlight { sent_ms } => {
                    Some(sent_ms.saturating_add(self.attempt_timeout_ms()))
                }
                // An unproven ID gets one more request timeout for its proof (see `poll`).
                State::Proving { sent_ms } => {
                    Some(sent_ms.saturating_add(self.config.request_timeout_ms.saturating_mul(2)))
                }
                _ => None,
            })
            .min();
    }

    /// `from` answered with `contacts`. Returns false (and changes nothing) if we were not
    /// waiting for `from` (late, duplicate or unsolicited). The driver has already checked the
    /// answer's nonce; `verified` IDs among `contacts` are the driver's to set (from its own
    /// pinned keys), never the answer's.
    pub fn on_reply(&mut self, from: SocketAddr, contacts: &[Contact]) -> bool {
        let Some(i) = self.candidates.iter().position(|c| c.contact.addr == from) else {
            return false;
        };
        let (State::InFlight { sent_ms } | State::Retry { sent_ms }) = self.candidates[i].state
        else {
            return false;
        };
        self.candidates[i].state = if self.config.verify_ids && !self.candidates[i].contact.verified
        {
            State::Proving { sent_ms }
        } else {
            State::Answered
        };
        self.replies += 1;
        self.update_deadline();
        let path = self.candidates[i].path;
        let hops = self.candidates[i].hops + 1;
        for &c in contacts {
            if c.id == 0 {
                continue;
            }
            self.add(c, path, hops, Some(from));
        }
        true
    }

    /// A request to `from` failed (e.g. the driver could not send it). Returns false if we were
    /// not waiting for `from`.
    pub fn on_failure(&mut self, from: SocketAddr) -> bool {
        let Some(c) = self.candidates.iter_mut().find(|c| c.contact.addr == from) else {
            return false;
        };
        if !matches!(c.state, State::InFlight { .. }) {
            return false;
        }
        c.state = State::Failed;
        self.failures += 1;
        self.update_deadline();
        true
    }

    /// Whether the lookup has ended: nothing is in flight, and on every path the k closest
    /// non-failed contacts have answered (or nothing is left to ask), or the request budget is
    /// spent.
    ///
    /// Outstanding requests are always waited for (up to their timeout), even to contacts
    /// farther than the k closest: otherwise contacts that answer fast with IDs merely claimed
    /// to be close (sybils listing each other) end the lookup before the honest answers that
    /// would have displaced them arrive.
    pub fn is_done(&self) -> bool {
        // A contact due for its next request is not waited for: if it is among the closest, the
        // frontier check below waits for it (and `poll` asks it); if not, it does not matter.
        let any_in_flight = self
            .candidates
            .iter()
            .any(|c| matches!(c.state, State::InFlight { .. } | State::Proving { .. }));
        if any_in_flight {
            return false;
        }
        if self.requests_sent >= self.config.max_requests {
            return true;
        }
        (0..self.config.paths).all(|path| {
            self.path_frontier(path)
                .all(|i| self.candidates[i].state == State::Answered)
        })
    }

    /// When the earliest in-flight request times out, if any is in flight.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadline_ms
    }

    /// Up to `n` contacts that answered, closest to the target first (over all paths).
    pub fn closest_answered(&self, n: usize) -> Vec<Contact> {
        self.candidates
            .iter()
            .filter(|c| c.state == State::Answered)
            .take(n)
            .map(|c| c.contact)
            .collect()
    }

    /// Hops to the closest contact that answered (1 = a seed), or 0 if none answered.
    pub fn hops(&self) -> u32 {
        self.candidates
            .iter()
            .find(|c| c.state == State::Answered)
            .map_or(0, |c| c.hops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{RouteConfig, RoutingTable};
    use std::collections::BTreeMap;

    fn addr_of(i: usize) -> SocketAddr {
        SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4000))
    }

    fn id_of(i: usize) -> u64 {
        (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn contact(i: usize) -> Contact {
        Contact {
            id: id_of(i),
            addr: addr_of(i),
            verified: true,
            pinned: false,
        }
    }

    /// A fake network of `n` nodes, each with a routing table filled from a random sample of
    /// the others (so no table holds the network), answering FIND_NODE with its k closest.
    struct FakeNet {
        tables: Vec<RoutingTable>,
        by_addr: BTreeMap<SocketAddr, usize>,
        down: Vec<bool>,
    }

    impl FakeNet {
        fn new(n: usize, k: usize, known_per_node: usize, seed: u64) -> FakeNet {
            let cfg = RouteConfig {
                bucket_size: k,
                // The fake addresses put 256 nodes in each /24.
                max_per_ip: 1,
                max_per_prefix: 1 << 20,
                ..RouteConfig::default()
            };
            let mut state = seed;
            let mut rnd = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let mut tables = Vec::new();
            for i in 0..n {
                let mut t = RoutingTable::new(id_of(i), cfg.clone());
                for _ in 0..known_per_node {
                    let j = (rnd() % n as u64) as usize;
                    if j != i {
                        t.heard(0, contact(j));
                    }
                }
                tables.push(t);
            }
            // Everyone also knows its closest neighbours (as a refreshed table would).
            for (i, table) in tables.iter_mut().enumerate() {
                let mut all: Vec<usize> = (0..n).filter(|&j| j != i).collect();
                all.sort_by_key(|&j| distance(id_of(i), id_of(j)));
                for &j in all.iter().take(k) {
                    table.heard(0, contact(j));
                }
            }
            let by_addr = (0..n).map(|i| (addr_of(i), i)).collect();
            FakeNet {
                tables,
                by_addr,
                down: vec![false; n],
            }
        }

        /// Runs `lookup` to completion on one thread; each round every request is answered
        /// (or lost if its node is down) 10 ms later. Returns the number of rounds.
        fn run(&self, lookup: &mut Lookup, k: usize) -> u32 {
            let mut now_ms = 0;
            let mut rounds = 0;
            while !lookup.is_done() {
                rounds += 1;
                assert!(rounds < 1000, "bounded");
                let poll = lookup.poll(now_ms);
                if poll.requests.is_empty() {
                    now_ms = lookup.next_deadline_ms().unwrap_or(now_ms + 10);
                    continue;
                }
                now_ms += 10;
                for r in poll.requests {
                    let j = self.by_addr[&r.to.addr];
                    if self.down[j] {
                        continue;
                    }
                    let mut answer = self.tables[j].closest(lookup.target(), k);
                    for c in &mut answer {
                        c.verified = false;
                    }
                    assert!(lookup.on_reply(r.to.addr, &answer));
                }
            }
            rounds
        }
    }

    fn true_closest(n: usize, target: u64, k: usize) -> Vec<SocketAddr> {
        let mut all: Vec<usize> = (0..n).collect();
        all.sort_by_key(|&j| distance(id_of(j), target));
        all.into_iter().take(k).map(addr_of).collect()
    }

    #[test]
    fn finds_the_true_closest_nodes_of_a_sparse_network() {
        let (n, k) = (1000, 8);
        let net = FakeNet::new(n, k, 40, 7);
        let mut found_all = 0;
        let mut max_hops = 0;
        for t in 0..50u64 {
            let target = t.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x1234;
            let seeds = net.tables[t as usize].closest(target, k);
            let mut lookup = Lookup::new(target, LookupConfig::default(), &seeds);
            net.run(&mut lookup, k);
            let got: Vec<SocketAddr> = lookup.closest_answered(k).iter().map(|c| c.addr).collect();
            let want = true_closest(n, target, k);
            if got == want {
                found_all += 1;
            }
            assert!(got.contains(&want[0]), "the closest node is always found");
            max_hops = max_hops.max(lookup.hops());
            assert!(lookup.requests_sent() <= LookupConfig::default().max_requests);
        }
        assert!(found_all >= 48, "exact k closest in {found_all}/50 lookups");
        assert!(max_hops <= 6, "log-depth: {max_hops} hops");
    }

    #[test]
    fn dead_nodes_time_out_and_the_lookup_still_ends() {
        let (n, k) = (500, 8);
        let mut net = FakeNet::new(n, k, 30, 3);
        for j in (0..n).step_by(4) {
            net.down[j] = true;
        }
        let target = 0xABCD_EF01_2345_6789;
        let seeds = net.tables[1].closest(target, k);
        let mut lookup = Lookup::new(target, LookupConfig::default(), &seeds);
        net.run(&mut lookup, k);
        assert!(lookup.is_done());
        assert!(lookup.failures() > 0);
        let alive: Vec<SocketAddr> = {
            let mut all: Vec<usize> = (0..n).filter(|&j| !net.down[j]).collect();
            all.sort_by_key(|&j| distance(id_of(j), target));
            all.into_iter().take(k).map(addr_of).collect()
        };
        let got: Vec<SocketAddr> = lookup.closest_answered(k).iter().map(|c| c.addr).collect();
        assert_eq!(got, alive);
    }

    #[test]
    fn at_most_alpha_in_flight_and_late_answers_are_ignored() {
        let seeds: Vec<Contact> = (0..10).map(contact).collect();
        let mut lookup = Lookup::new(0, LookupConfig::default(), &seeds);
        let p = lookup.poll(0);
        assert_eq!(p.requests.len(), 3);
        assert!(lookup.poll(1).requests.is_empty());
        let first: Vec<SocketAddr> = p.requests.iter().map(|r| r.to.addr).collect();
        // Half-way through the timeout all three are asked once more (still the closest).
        let p = lookup.poll(500);
        assert!(p.timed_out.is_empty());
        let again: Vec<SocketAddr> = p.requests.iter().map(|r| r.to.addr).collect();
        assert_eq!(again, first, "the silent contacts asked again");
        // Their second requests time out too: now they have failed, and three others are asked.
        let p = lookup.poll(1_000);
        assert_eq!(p.timed_out, first);
        assert_eq!(p.requests.len(), 3);
        assert!(p.requests.iter().all(|r| !first.contains(&r.to.addr)));
        assert!(!lookup.on_reply(first[0], &[]), "late answer ignored");
        assert!(
            !lookup.on_reply(addr_of(999), &[]),
            "unsolicited answer ignored"
        );
    }

    #[test]
    fn a_contact_that_misses_one_request_is_asked_again_and_counts_when_it_answers() {
        // One lost datagram must not drop a close node from the result (two lookups of one
        // target then disagree on its closest nodes: `MAX_REQUESTS_PER_CONTACT`).
        let seeds: Vec<Contact> = (0..4).map(contact).collect();
        let cfg = LookupConfig {
            k: 4,
            ..LookupConfig::default()
        };
        let mut lookup = Lookup::new(0, cfg, &seeds);
        let first: Vec<SocketAddr> = lookup.poll(0).requests.iter().map(|r| r.to.addr).collect();
        assert_eq!(first.len(), 3);
        // Two answer, the closest's request (or its answer) is lost.
        assert!(lookup.on_reply(first[1], &[]));
        assert!(lookup.on_reply(first[2], &[]));
        let p = lookup.poll(500);
        assert!(p.timed_out.is_empty(), "not failed yet");
        let asked: Vec<SocketAddr> = p.requests.iter().map(|r| r.to.addr).collect();
        assert!(asked.contains(&first[0]), "asked again: {asked:?}");
        for &to in &asked {
            assert!(lookup.on_reply(to, &[]));
        }
        assert!(lookup.poll(501).requests.is_empty());
        assert!(lookup.is_done());
        let mut got: Vec<SocketAddr> = lookup.closest_answered(4).iter().map(|c| c.addr).collect();
        got.sort();
        assert_eq!(
            got,
            (0..4).map(|j| contact(j).addr).collect::<Vec<_>>(),
            "all four"
        );
        assert_eq!(lookup.failures(), 0);
    }

    #[test]
    fn a_late_answer_to_the_first_request_counts_while_the_second_is_out() {
        let seeds: Vec<Contact> = (0..3).map(contact).collect();
        let mut lookup = Lookup::new(0, LookupConfig::default(), &seeds);
        let first: Vec<SocketAddr> = lookup.poll(0).requests.iter().map(|r| r.to.addr).collect();
        let p = lookup.poll(500);
        assert_eq!(p.requests.len(), 3, "all asked again");
        // A slow contact's answer to the first request arrives at 700 ms: it counts.
        assert!(lookup.on_reply(first[0], &[]));
        assert!(
            !lookup.on_reply(first[0], &[]),
            "its second answer is a duplicate"
        );
        // The others never answer: they fail at the full timeout, not before.
        assert!(lookup.poll(999).timed_out.is_empty());
        let p = lookup.poll(1_000);
        assert_eq!(p.timed_out, first[1..].to_vec());
        assert!(lookup.is_done());
        assert_eq!(lookup.closest_answered(3).len(), 1);
    }

    #[test]
    fn disjoint_paths_never_share_a_contact() {
        let (n, k) = (1000, 8);
        let net = FakeNet::new(n, k, 30, 11);
        let target = 0x0F0F_0F0F_0F0F_0F0F;
        let seeds = net.tables[5].closest(target, k);
        let cfg = LookupConfig {
            paths: 2,
            ..LookupConfig::default()
        };
        let mut lookup = Lookup::new(target, cfg, &seeds);
        net.run(&mut lookup, k);
        let mut asked: BTreeMap<SocketAddr, usize> = BTreeMap::new();
        for c in &lookup.candidates {
            if c.state != State::NotAsked {
                assert!(asked.insert(c.contact.addr, c.path).is_none());
            }
        }
        assert!(asked.values().any(|&p| p == 0) && asked.values().any(|&p| p == 1));
        let got = lookup.closest_answered(1);
        assert_eq!(got[0].addr, true_closest(n, target, 1)[0]);
    }

    /// Eight sybils with IDs ground next to the target (sharing its top 40 bits) that list only
    /// each other: without the cluster limit they are the eight closest contacts and the lookup
    /// ends on them; with it, at most two enter and the honest closest are found.
    #[test]
    fn a_cluster_of_ground_ids_gets_two_places_in_a_lookup() {
        let (n, k) = (1000, 8);
        let net = FakeNet::new(n, k, 40, 17);
        let target = 0x5A5A_0000_0000_0000u64;
        let sybils: Vec<Contact> = (0..k)
            .map(|s| Contact {
                id: target ^ ((s as u64 + 1) << 8),
                addr: SocketAddr::from(([192, 0, 2, s as u8 + 1], 4000)),
                verified: false,
                pinned: false,
            })
            .collect();
        let honest_best = true_closest(n, target, 2);
        let mut honest_found = Vec::new();
        for max_per_cluster in [0usize, 2] {
            let mut seeds = net.tables[3].closest(target, k);
            seeds.push(sybils[0]);
            let cfg = LookupConfig {
                cluster_prefix_bits: 16,
                max_per_cluster,
                ..LookupConfig::default()
            };
            let mut lookup = Lookup::new(target, cfg, &seeds);
            let mut now_ms = 0;
            while !lookup.is_done() {
                assert!(now_ms < 100_000, "bounded");
                let poll = lookup.poll(now_ms);
                now_ms += 10;
                for r in poll.requests {
                    if sybils.iter().any(|s| s.addr == r.to.addr) {
                        lookup.on_reply(r.to.addr, &sybils);
                    } else {
                        let j = net.by_addr[&r.to.addr];
                        lookup.on_reply(r.to.addr, &net.tables[j].closest(target, k));
                    }
                }
            }
            let found: Vec<SocketAddr> =
                lookup.closest_answered(4).iter().map(|c| c.addr).collect();
            let sybils_found = found
                .iter()
                .filter(|a| sybils.iter().any(|s| s.addr == **a))
                .count();
            if max_per_cluster == 2 {
                assert!(
                    sybils_found <= 2,
                    "{sybils_found} sybils among the 4 closest"
                );
                assert!(lookup.clustered() > 0);
            }
            honest_found.push(honest_best.iter().filter(|a| found.contains(a)).count());
        }
        assert_eq!(
            honest_found,
            vec![0, 2],
            "captured without the limit, not with it"
        );
    }

    /// Contacts that answer at once with IDs claimed to be closer than the seeds (sybils listing
    /// spread-out sybils, none near the target) must not end the lookup while slower honest
    /// answers that displace them are still on their way.
    #[test]
    fn fast_liars_do_not_end_the_lookup_before_slower_honest_answers() {
        let (n, k) = (1000, 8);
        let net = FakeNet::new(n, k, 40, 19);
        let target = 0x2468_ACE0_0000_0000u64;
        let seeds = net.tables[7].closest(target, 2);
        let seed_best = seeds
            .iter()
            .map(|c| distance(c.id, target))
            .min()
            .unwrap_or(0);
        // Closer to the target than any seed (below the seeds' highest distance bit h), each in
        // its own 16-bit cluster (they differ in bits h - 2 ..= h - 4), none near the target.
        let h = 63 - seed_best.leading_zeros();
        assert!(
            h >= 52,
            "the seeds of a 1000-node network share few bits with the target"
        );
        let sybils: Vec<Contact> = (0..k)
            .map(|s| Contact {
                id: target ^ (1u64 << (h - 1)) ^ ((s as u64) << (h - 4)),
                addr: SocketAddr::from(([192, 0, 2, s as u8 + 1], 4000)),
                verified: false,
                pinned: false,
            })
            .collect();
        let mut all_seeds = seeds.clone();
        all_seeds.push(sybils[0]);
        let cfg = LookupConfig {
            cluster_prefix_bits: 16,
            ..LookupConfig::default()
        };
        let mut lookup = Lookup::new(target, cfg, &all_seeds);
        // Deliveries: (at_ms, from, answer). Sybils answer after 5 ms, honest nodes after 100.
        let mut queue: Vec<(u64, SocketAddr, Vec<Contact>)> = Vec::new();
        let mut now_ms = 0;
        loop {
            for r in lookup.poll(now_ms).requests {
                if sybils.iter().any(|s| s.addr == r.to.addr) {
                    queue.push((now_ms + 5, r.to.addr, sybils.clone()));
                } else {
                    let j = net.by_addr[&r.to.addr];
                    queue.push((now_ms + 100, r.to.addr, net.tables[j].closest(target, k)));
                }
            }
            if lookup.is_done() {
                break;
            }
            queue.sort_by_key(|(at, _, _)| std::cmp::Reverse(*at));
            let Some((at, from, answer)) = queue.pop() else {
                break;
            };
            now_ms = at;
            lookup.on_reply(from, &answer);
        }
        assert!(lookup.is_done());
        let found = lookup.closest_answered(1);
        assert_eq!(
            found.first().map(|c| c.addr),
            Some(true_closest(n, target, 1)[0]),
            "the honest answers were waited for"
        );
    }

    /// Sybils list the honest IDs closest to the target at their own addresses. Believed, they
    /// are the closest contacts and the lookup ends on them; with `verify_ids`, each answering
    /// address's ID is proven (here at once, as a driver's PING/PONG would), the forged entries
    /// are dropped and the honest closest are found.
    #[test]
    fn forged_ids_are_dropped_once_the_address_proves_another() {
        let (n, k) = (1000, 8);
        let net = FakeNet::new(n, k, 40, 23);
        let target = 0x1357_9BDF_0000_0000u64;
        let want = true_closest(n, target, k);
        let sybil_addr = |s: usize| SocketAddr::from(([192, 0, 2, s as u8 + 1], 4000));
        let sybil_id = |s: usize| 0xF000_0000_0000_0000u64 ^ target ^ (s as u64);
        // The true closest IDs, each at a sybil address.
        let forged: Vec<Contact> = want
            .iter()
            .enumerate()
            .map(|(s, a)| Contact {
                id: id_of(net.by_addr[a]),
                addr: sybil_addr(s),
                verified: false,
                pinned: false,
            })
            .collect();
        let mut sybils_found = Vec::new();
        for verify_ids in [false, true] {
            let mut seeds = net.tables[11].closest(target, k);
            seeds.truncate(2);
            seeds.push(forged[k - 1]);
            let cfg = LookupConfig {
                verify_ids,
                ..LookupConfig::default()
            };
            let mut lookup = Lookup::new(target, cfg, &seeds);
            let mut now_ms = 0;
            while !lookup.is_done() {
                assert!(now_ms < 100_000, "bounded");
                let poll = lookup.poll(now_ms);
                now_ms += 10;
                for r in poll.requests {
                    let (true_id, answer) = match (0..k).find(|&s| sybil_addr(s) == r.to.addr) {
                        Some(s) => (sybil_id(s), forged.clone()),
                        None => {
                            let j = net.by_addr[&r.to.addr];
                            (id_of(j), net.tables[j].closest(target, k))
                        }
                    };
                    lookup.on_reply(r.to.addr, &answer);
                    if verify_ids {
                        assert!(lookup.on_proof(r.to.addr, true_id));
                    }
                }
            }
            let found = lookup.closest_answered(k);
            sybils_found.push(
                found
                    .iter()
                    .filter(|c| (0..k).any(|s| sybil_addr(s) == c.addr))
                    .count(),
            );
            if verify_ids {
                assert!(lookup.forged() > 0);
                // The sybil that listed the forgeries is dropped with them.
                assert!(
                    lookup
                        .candidates
                        .iter()
                        .filter(|c| (0..k).any(|s| sybil_addr(s) == c.contact.addr))
                        .all(|c| c.state == State::Failed)
                );
                let got: Vec<SocketAddr> = found.iter().map(|c| c.addr).collect();
                assert_eq!(got, want);
                assert!(found.iter().all(|c| c.verified));
            }
        }
        assert!(
            sybils_found[0] >= k / 2,
            "believed: {} sybils",
            sybils_found[0]
        );
        assert_eq!(sybils_found[1], 0);
    }

    /// With `verify_ids`, an answer without a proof does not count, and a proof that never comes
    /// fails the contact after one more request timeout.
    #[test]
    fn unproven_answers_wait_for_their_proof_and_time_out() {
        let seeds: Vec<Contact> = (0..2)
            .map(|i| Contact {
                verified: false,
                ..contact(i)
            })
            .collect();
        let cfg = LookupConfig {
            verify_ids: true,
            ..LookupConfig::default()
        };
        let mut lookup = Lookup::new(0, cfg, &seeds);
        let p = lookup.poll(0);
        assert_eq!(p.requests.len(), 2);
        for r in &p.requests {
            assert!(lookup.on_reply(r.to.addr, &[]));
        }
        assert!(!lookup.is_done(), "waiting for proofs");
        assert_eq!(lookup.proving().count(), 2);
        assert!(lookup.on_proof(seeds[0].addr, seeds[0].id));
        assert_eq!(lookup.closest_answered(8).len(), 1);
        let deadline = lookup.next_deadline_ms().unwrap_or(0);
        assert_eq!(deadline, 2 * cfg.request_timeout_ms);
        lookup.poll(deadline);
        assert!(lookup.is_done());
        assert_eq!(
            lookup.closest_answered(8),
            vec![Contact {
                verified: true,
                ..seeds[0]
            }]
        );
    }

    /// Sybils that answer every FIND_NODE with only each other (and claim IDs next to the
    /// target) capture a single-path lookup that meets them first, but not all of d = 3 paths.
    #[test]
    fn disjoint_paths_survive_a_sybil_path() {
        let (n, k) = (1000, 8);
        let net = FakeNet::new(n, k, 30, 13);
        let target = 0x7777_0000_0000_0000;
        let sybils: Vec<Contact> = (0..k)
            .map(|s| Contact {
                id: target ^ (s as u64 + 1),
                addr: SocketAddr::from(([192, 0, 2, s as u8 + 1], 4000)),
                verified: false,
                pinned: false,
            })
            .collect();
        let honest_best = true_closest(n, target, 1)[0];
        for paths in [1usize, 3] {
            let mut seeds = net.tables[9].closest(target, k);
            seeds.truncate(k - 1);
            // One honest-looking seed is a sybil, as close as any.
            seeds.push(sybils[0]);
            let cfg = LookupConfig {
                paths,
                ..LookupConfig::default()
            };
            let mut lookup = Lookup::new(target, cfg, &seeds);
            let mut now_ms = 0;
            let mut rounds = 0;
            while !lookup.is_done() && rounds < 1000 {
                rounds += 1;
                let poll = lookup.poll(now_ms);
                now_ms += 10;
                for r in poll.requests {
                    if r.to.addr.ip() == SocketAddr::from(([192, 0, 2, 1], 0)).ip()
                        || sybils.iter().any(|s| s.addr == r.to.addr)
                    {
                        lookup.on_reply(r.to.addr, &sybils);
                    } else {
                        let j = net.by_addr[&r.to.addr];
                        lookup.on_reply(r.to.addr, &net.tables[j].closest(target, k));
                    }
                }
            }
            let honest: Vec<Contact> = lookup
                .closest_answered(4 * k)
                .into_iter()
                .filter(|c| !sybils.iter().any(|s| s.addr == c.addr))
                .collect();
            if paths > 1 {
                assert_eq!(
                    honest.first().map(|c| c.addr),
                    Some(honest_best),
                    "an honest path still reaches the true closest node"
                );
            }
        }
    }
}
