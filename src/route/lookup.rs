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
    /// A request unanswered this long fails. Default 1000 ms: a dave round trip is far below it.
    pub request_timeout_ms: u64,
    /// Contacts remembered at most. Default 64.
    pub max_candidates: usize,
    /// Requests sent at most. Default 48: 16 × α, far above the O(log N) rounds a lookup needs.
    pub max_requests: usize,
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
        }
    }
}

/// Most disjoint paths a lookup may use (each needs its own share of α and of k).
pub const MAX_PATHS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotAsked,
    InFlight { sent_ms: u64 },
    Answered,
    Failed,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    contact: Contact,
    state: State,
    /// The path that owns it.
    path: usize,
    /// Hops from us: 1 for a seed, n + 1 for a contact learned from a hop-n contact.
    hops: u32,
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
    /// Requests that timed out in this poll (the driver tells its routing table).
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
    /// When the earliest in-flight request times out (kept by every change of a state, so
    /// [`Lookup::next_deadline_ms`], which drivers ask after every datagram, is O(1)).
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
            deadline_ms: None,
        };
        let mut sorted = seeds.to_vec();
        sorted.sort_by_key(|c| (distance(c.id, target), c.addr));
        for (i, c) in sorted.into_iter().enumerate() {
            lookup.add(c, i % lookup.config.paths, 1);
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
                lookup.add(c, path, 1);
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

    /// Requests failed so far (timeouts and reported failures).
    pub fn failures(&self) -> usize {
        self.failures
    }

    fn key(&self, c: &Contact) -> (u64, SocketAddr) {
        (distance(c.id, self.target), c.addr)
    }

    /// Adds a contact to `path` unless known (to any path) or too far to matter.
    fn add(&mut self, contact: Contact, path: usize, hops: u32) {
        let key = self.key(&contact);
        if self
            .candidates
            .iter()
            .any(|c| c.contact.addr == contact.addr)
        {
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
            },
        );
        // Forget the farthest contact we are not waiting for.
        if self.candidates.len() > self.config.max_candidates
            && let Some(i) = self
                .candidates
                .iter()
                .rposition(|c| !matches!(c.state, State::InFlight { .. }))
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

    /// Times out overdue requests and returns the requests to send now.
    pub fn poll(&mut self, now_ms: u64) -> LookupPoll {
        let mut out = LookupPoll::default();
        let timeout_ms = self.config.request_timeout_ms;
        for c in &mut self.candidates {
            if let State::InFlight { sent_ms } = c.state
                && now_ms.saturating_sub(sent_ms) >= timeout_ms
            {
                c.state = State::Failed;
                self.failures += 1;
                out.timed_out.push(c.contact.addr);
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
                    .filter(|&i| self.candidates[i].state == State::NotAsked)
                    .min_by_key(|&i| (!self.candidates[i].contact.verified, i));
                // Verified-first must not skip a much closer unverified contact forever: take the
                // verified one only if it is among the α closest unasked.
                let closest_unasked = frontier
                    .iter()
                    .copied()
                    .find(|&i| self.candidates[i].state == State::NotAsked);
                let pick = match (pick, closest_unasked) {
                    (Some(p), Some(c)) => {
                        let rank = frontier
                            .iter()
                            .filter(|&&i| self.candidates[i].state == State::NotAsked && i < p)
                            .count();
                        if rank < alpha { Some(p) } else { Some(c) }
                    }
                    (p, c) => p.or(c),
                };
                let Some(i) = pick else { break };
                self.candidates[i].state = State::InFlight { sent_ms: now_ms };
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
                    Some(sent_ms.saturating_add(self.config.request_timeout_ms))
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
        if !matches!(self.candidates[i].state, State::InFlight { .. }) {
            return false;
        }
        self.candidates[i].state = State::Answered;
        self.replies += 1;
        self.update_deadline();
        let path = self.candidates[i].path;
        let hops = self.candidates[i].hops + 1;
        for &c in contacts {
            if c.id == 0 {
                continue;
            }
            self.add(c, path, hops);
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

    /// Whether the lookup has ended: on every path, the k closest non-failed contacts have
    /// answered (or nothing is left to ask and nothing is in flight), or the request budget is
    /// spent and nothing is in flight.
    pub fn is_done(&self) -> bool {
        let any_in_flight = self
            .candidates
            .iter()
            .any(|c| matches!(c.state, State::InFlight { .. }));
        if self.requests_sent >= self.config.max_requests {
            return !any_in_flight;
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
        // Time out all three.
        let p = lookup.poll(1_000);
        assert_eq!(p.timed_out.len(), 3);
        assert_eq!(p.requests.len(), 3);
        assert!(!lookup.on_reply(p.timed_out[0], &[]), "late answer ignored");
        assert!(
            !lookup.on_reply(addr_of(999), &[]),
            "unsolicited answer ignored"
        );
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
