//! [`Router`]: one node's routing extension as an I/O-free core: the routing table, the lookups
//! in progress, the nonces of outstanding requests, answers to FIND_NODE, liveness probes and
//! lazy bucket refresh. Drivers (the node's peer thread, the simulator) call
//! [`Router::handle`] for each routing datagram, [`Router::tick`] at [`Router::next_deadline_ms`],
//! [`Router::start_lookup`] when they need the closest nodes of an ID, and carry out the returned
//! [`RouterEffects`]. No decision is made in a driver.
//!
//! Liveness without a full mesh: contacts are never pinged on a schedule. A full bucket probes
//! its least-recently-seen contact only when a newcomer arrives and the LRS has been silent for
//! `stale_after_ms`; a bucket nobody looked into for `refresh_after_ms` is refreshed by one lookup
//! into its range. Background traffic is therefore O(k · log N) datagrams per refresh interval.
//!
//! IDs: a NODES entry's ID is only its lister's claim. With `LookupConfig::verify_ids` the router
//! asks its driver to prove the key at an answering contact's address ([`RouterEffects::prove`]:
//! a v1 PING and its signed PONG) and learns the result through [`Router::add_verified`]; only
//! proven IDs enter the table or count in a lookup's result, and proven addresses are remembered
//! (`MAX_PROVEN_CACHE`) so a forgery of a known address is relabelled at once.
//!
//! Anti-amplification: a NODES to an address the driver has not proven carries at most as many
//! entries as fit in the size of its request (`wire::route::max_entries_unproven`); our own
//! requests are padded to the size of the answer we want (`find_node_len_for`), so a padded
//! request always gets its full answer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::peer::{check_addr, crosses_loopback_scope};
use crate::route::lookup::{Lookup, LookupConfig};
use crate::route::table::{Heard, RoutingTable};
use crate::route::{Contact, RouteConfig};
use crate::wire::route::{
    FindNodeRepr, MAX_NODES_PER_REPLY, NodesRepr, RouteMessage, find_node_len_for,
    max_entries_unproven,
};
use crate::wire::{addr_from_wire, addr_to_wire, normalize_addr};

/// Lookups in progress at once, at most. Each costs at most `max_candidates` contacts (a few
/// KiB); beyond this bound `start_lookup` refuses (counted) rather than queueing without bound.
pub const MAX_LOOKUPS: usize = 256;
/// Outstanding requests at once, at most: every lookup's α in flight plus one probe per bucket.
pub const MAX_PENDING_REQUESTS: usize = MAX_LOOKUPS * 4 + 64;

/// Addresses whose proven ID the router remembers beyond its table, at most: a node's lookups
/// touch about a dozen contacts each, a few hundred distinct ones per refresh interval, so this
/// keeps most proofs for reuse while costing at most 1024 × ~50 bytes.
pub const MAX_PROVEN_CACHE: usize = 1024;
/// Proofs asked for and not yet answered, at most (each lookup has at most k contacts
/// waiting for one).
pub const MAX_PROVING: usize = MAX_PENDING_REQUESTS;

/// Identifies a lookup started by the driver.
pub type LookupId = u64;

/// Router settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterConfig {
    /// Routing table settings.
    pub table: RouteConfig,
    /// Lookup settings (`k` is taken from `table.bucket_size`).
    pub lookup: LookupConfig,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterStats {
    /// FIND_NODE received and answered.
    pub find_node_received: u64,
    /// NODES answers truncated because the requester was unproven and its request short.
    pub nodes_truncated_unproven: u64,
    /// NODES received that matched an outstanding request.
    pub nodes_accepted: u64,
    /// NODES received that matched nothing (late, spoofed, duplicate).
    pub nodes_unsolicited: u64,
    /// Listed contacts refused (bad address, our own ID, loopback from afar).
    pub contacts_refused: u64,
    /// Requests sent (lookups and probes).
    pub requests_sent: u64,
    /// Requests that timed out.
    pub requests_timed_out: u64,
    /// Lookups started (by the driver or for refresh).
    pub lookups_started: u64,
    /// Lookups refused because `MAX_LOOKUPS` were in progress.
    pub lookups_refused: u64,
    /// Lookups finished.
    pub lookups_done: u64,
    /// Bucket-refresh lookups started.
    pub refreshes: u64,
    /// Liveness probes of least-recently-seen contacts sent.
    pub probes_sent: u64,
    /// Address probes of new requesters sent (they enter the table when they answer).
    pub introductions_sent: u64,
    /// Contacts evicted after failing.
    pub evictions: u64,
    /// Gauge: contacts in the routing table now.
    pub contacts: u64,
    /// Address proofs asked of the driver (`RouterEffects::prove`).
    pub proofs_asked: u64,
    /// Listed contacts whose proven ID was another: dropped from lookups.
    pub forged_ids_refused: u64,
    /// Contacts judged unreliable by storage challenges that a newcomer replaced in a full
    /// bucket.
    pub unreliable_replaced: u64,
}

impl RouterStats {
    /// Calls `f(name, value)` for every counter and the `contacts` gauge (the Prometheus
    /// exporter's list: a new field belongs here too).
    pub fn for_each(&self, mut f: impl FnMut(&'static str, u64)) {
        f("find_node_received", self.find_node_received);
        f("nodes_truncated_unproven", self.nodes_truncated_unproven);
        f("nodes_accepted", self.nodes_accepted);
        f("nodes_unsolicited", self.nodes_unsolicited);
        f("contacts_refused", self.contacts_refused);
        f("requests_sent", self.requests_sent);
        f("requests_timed_out", self.requests_timed_out);
        f("lookups_started", self.lookups_started);
        f("lookups_refused", self.lookups_refused);
        f("lookups_done", self.lookups_done);
        f("refreshes", self.refreshes);
        f("probes_sent", self.probes_sent);
        f("introductions_sent", self.introductions_sent);
        f("evictions", self.evictions);
        f("unreliable_replaced", self.unreliable_replaced);
        f("contacts", self.contacts);
    }
}

/// A finished lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupDone {
    /// The id `start_lookup` returned.
    pub id: LookupId,
    /// Its target.
    pub target: u64,
    /// The contacts that answered, closest first (at most k).
    pub closest: Vec<Contact>,
    /// Hops to the closest one (1 = a contact we already knew).
    pub hops: u32,
    /// Requests it sent.
    pub requests: usize,
}

/// What the router wants done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterEffects {
    /// Datagrams to send: (destination, message). Already within the amplification rule.
    pub sends: Vec<(SocketAddr, RouteMessage)>,
    /// Lookups the driver started that have ended.
    pub done: Vec<LookupDone>,
    /// Addresses whose node ID the driver should prove (a v1 PING answered by a PONG signed
    /// with the key the ID comes from), reporting success with [`Router::add_verified`]. Only
    /// with `LookupConfig::verify_ids`.
    pub prove: Vec<SocketAddr>,
    /// Addresses that answered one of our requests (a NODES with its nonce, from the address we
    /// asked): they receive what we send. The driver tells its peer table
    /// (`PeerTable::router_heard`), which keeps the peers the router watches alive with it.
    pub answered: Vec<SocketAddr>,
    /// Contacts evicted from the routing table after `max_failures` unanswered requests in a
    /// row. The driver tells its peer table (`PeerTable::router_evicted`).
    pub evicted: Vec<SocketAddr>,
}

impl RouterEffects {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty()
            && self.done.is_empty()
            && self.prove.is_empty()
            && self.answered.is_empty()
            && self.evicted.is_empty()
    }

    /// Moves everything from `other` to the end of `self`.
    pub fn append(&mut self, other: &mut RouterEffects) {
        self.sends.append(&mut other.sends);
        self.done.append(&mut other.done);
        self.prove.append(&mut other.prove);
        self.answered.append(&mut other.answered);
        self.evicted.append(&mut other.evicted);
    }
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    /// A request of lookup `LookupId`.
    Lookup(LookupId),
    /// A liveness probe.
    Probe,
    /// Proving the address of a requester before it enters the table.
    Introduce,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    to: SocketAddr,
    /// The contact as we asked it (its claimed ID).
    contact: Contact,
    purpose: Purpose,
    sent_ms: u64,
}

#[derive(Debug)]
struct Running {
    lookup: Lookup,
    /// Started for a bucket refresh (not reported to the driver).
    internal: bool,
}

/// One node's routing core. See the module docs.
#[derive(Debug)]
pub struct Router {
    config: RouterConfig,
    table: RoutingTable,
    lookups: BTreeMap<LookupId, Running>,
    pending: BTreeMap<[u8; 8], Pending>,
    /// (sent_ms, nonce) of every pending probe and introduction (the `pending` entries that
    /// time out on `probe_timeout_ms`), earliest first: their next deadline without a scan.
    probes: BTreeSet<(u64, [u8; 8])>,
    rng: StdRng,
    next_lookup_id: LookupId,
    latest_ms: u64,
    own_addr: Option<SocketAddr>,
    stats: RouterStats,
    /// Proven IDs of addresses (from `add_verified`), with when: at most `MAX_PROVEN_CACHE`.
    proven: BTreeMap<SocketAddr, (u64, u64)>,
    /// Proofs asked for, with when: at most `MAX_PROVING`, forgotten after `probe_timeout_ms`.
    proving: BTreeMap<SocketAddr, u64>,
    /// Addresses the node's storage challenges judge unreliable ([`Router::set_unreliable`]):
    /// at most the driver's peer table (scores exist only for its peers).
    unreliable: BTreeSet<SocketAddr>,
}

impl Router {
    /// A router for the node with ID `own_id`; `seed` seeds nonces and refresh targets (use a
    /// secret random seed in production: nonces keep off-path senders from injecting answers).
    pub fn new(own_id: u64, mut config: RouterConfig, seed: u64) -> Router {
        config.lookup.k = config.table.bucket_size;
        Router {
            table: RoutingTable::new(own_id, config.table.clone()),
            config,
            lookups: BTreeMap::new(),
            pending: BTreeMap::new(),
            probes: BTreeSet::new(),
            rng: StdRng::seed_from_u64(seed),
            next_lookup_id: 1,
            latest_ms: 0,
            own_addr: None,
            stats: RouterStats::default(),
            proven: BTreeMap::new(),
            proving: BTreeMap::new(),
            unreliable: BTreeSet::new(),
        }
    }

    /// The peers the node's storage challenges now judge unreliable
    /// (`peer::TrustPolicy::is_unreliable` over the peer table's scores; the whole set each
    /// time the scores change). Trust scores apply to routing as they do to replica choice: such
    /// a contact keeps routing until a newcomer needs its place in a full bucket, ranks last
    /// among the closest, and is not what lookups start from (`RoutingTable::set_unreliable`).
    pub fn set_unreliable(&mut self, unreliable: BTreeSet<SocketAddr>) {
        let unreliable: BTreeSet<SocketAddr> = unreliable.into_iter().map(normalize_addr).collect();
        for &addr in self.unreliable.difference(&unreliable) {
            self.table.set_unreliable(addr, false);
        }
        for &addr in &unreliable {
            self.table.set_unreliable(addr, true);
        }
        self.unreliable = unreliable;
    }

    /// Our own address, so NODES lists naming it are not taken as contacts.
    pub fn set_own_addr(&mut self, addr: SocketAddr) {
        self.own_addr = Some(normalize_addr(addr));
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The counters, with the `contacts` gauge read now.
    pub fn stats(&self) -> RouterStats {
        RouterStats {
            contacts: self.table.len() as u64,
            ..self.stats
        }
    }

    /// Lookups in progress.
    pub fn lookups_in_progress(&self) -> usize {
        self.lookups.len()
    }

    fn clock(&mut self, now_ms: u64) -> u64 {
        self.latest_ms = self.latest_ms.max(now_ms);
        self.latest_ms
    }

    /// A peer the driver authenticated (a PONG with the ROUTING bit, key pinned): a verified
    /// contact. May ask for a liveness probe of a full bucket's LRS contact.
    pub fn add_verified(
        &mut self,
        now_ms: u64,
        id: u64,
        addr: SocketAddr,
        edge: bool,
    ) -> RouterEffects {
        let now = self.clock(now_ms);
        let mut fx = RouterEffects::default();
        let addr = normalize_addr(addr);
        let contact = Contact {
            id,
            addr,
            verified: true,
            pinned: edge,
        };
        self.heard(now, contact, &mut fx);
        self.proving.remove(&addr);
        if self.proven.len() >= MAX_PROVEN_CACHE
            && !self.proven.contains_key(&addr)
            && let Some(oldest) = self
                .proven
                .iter()
                .min_by_key(|(a, (_, at))| (*at, **a))
                .map(|(a, _)| *a)
        {
            self.proven.remove(&oldest);
        }
        self.proven.insert(addr, (id, now));
        // Lookups waiting for this proof move on.
        let waiting: Vec<LookupId> = self
            .lookups
            .iter_mut()
            .filter_map(|(&lid, r)| {
                let before = r.lookup.forged();
                r.lookup.on_proof(addr, id).then(|| {
                    self.stats.forged_ids_refused += (r.lookup.forged() - before) as u64;
                    lid
                })
            })
            .collect();
        for lid in waiting {
            self.advance(now, lid, &mut fx);
        }
        fx
    }

    /// The proven ID at `addr`, if known (table or cache).
    fn proven_id(&self, addr: SocketAddr) -> Option<u64> {
        self.table
            .get(addr)
            .filter(|c| c.verified)
            .map(|c| c.id)
            .or_else(|| self.proven.get(&addr).map(|&(id, _)| id))
    }

    /// Lookup `id`'s candidate at `addr` answered with an unproven ID: settle it from what we
    /// know, or ask the driver for a proof.
    fn prove(&mut self, now: u64, id: LookupId, addr: SocketAddr, fx: &mut RouterEffects) {
        if let Some(proven) = self.proven_id(addr) {
            if let Some(r) = self.lookups.get_mut(&id) {
                let before = r.lookup.forged();
                r.lookup.on_proof(addr, proven);
                self.stats.forged_ids_refused += (r.lookup.forged() - before) as u64;
            }
            return;
        }
        if self.proving.contains_key(&addr) || self.proving.len() >= MAX_PROVING {
            return;
        }
        self.proving.insert(addr, now);
        self.stats.proofs_asked += 1;
        fx.prove.push(addr);
    }

    /// Starts a lookup of the nodes closest to `target`. Returns its id, or `None` if
    /// `MAX_LOOKUPS` are in progress (counted). Its end comes back in a later
    /// [`RouterEffects::done`] (at once if the table is empty).
    pub fn start_lookup(&mut self, now_ms: u64, target: u64) -> (Option<LookupId>, RouterEffects) {
        let now = self.clock(now_ms);
        let mut fx = RouterEffects::default();
        let id = self.begin(now, target, false, &mut fx);
        (id, fx)
    }

    fn begin(
        &mut self,
        now: u64,
        target: u64,
        internal: bool,
        fx: &mut RouterEffects,
    ) -> Option<LookupId> {
        if self.lookups.len() >= MAX_LOOKUPS {
            self.stats.lookups_refused += 1;
            return None;
        }
        let k = self.config.lookup.k.max(self.config.lookup.alpha);
        let closest = self.table.closest(target, k);
        let config = LookupConfig {
            cluster_prefix_bits: self.table.cluster_prefix_bits(),
            ..self.config.lookup
        };
        let paths = self
            .config
            .lookup
            .paths
            .clamp(1, crate::route::lookup::MAX_PATHS);
        let lookup = if paths == 1 {
            Lookup::new(target, config, &closest)
        } else {
            // Path 0 starts from the closest contacts, the others from one contact per bucket.
            let diverse = self.table.diverse(target, k, &closest);
            let mut per_path: Vec<Vec<Contact>> = vec![closest; 1];
            per_path.resize(paths, Vec::new());
            for (i, c) in diverse.into_iter().enumerate() {
                per_path[1 + i % (paths - 1)].push(c);
            }
            Lookup::with_path_seeds(target, config, &per_path)
        };
        let id = self.next_lookup_id;
        self.next_lookup_id += 1;
        self.stats.lookups_started += 1;
        self.lookups.insert(id, Running { lookup, internal });
        self.advance(now, id, fx);
        Some(id)
    }

    /// Polls lookup `id`: sends its requests, reports it if done.
    fn advance(&mut self, now: u64, id: LookupId, fx: &mut RouterEffects) {
        let Some(running) = self.lookups.get_mut(&id) else {
            return;
        };
        let poll = running.lookup.poll(now);
        for addr in poll.timed_out {
            self.stats.requests_timed_out += 1;
            self.pending.retain(|_, p| {
                !(p.to == addr && matches!(p.purpose, Purpose::Lookup(l) if l == id))
            });
            if self.table.failed(now, addr) {
                self.stats.evictions += 1;
                fx.evicted.push(addr);
            }
        }
        let target = running.lookup.target();
        let mut unsent = Vec::new();
        for req in poll.requests {
            if !self.send_request(now, req.to, Purpose::Lookup(id), target, fx) {
                unsent.push(req.to.addr);
            }
        }
        let Some(running) = self.lookups.get_mut(&id) else {
            return;
        };
        for addr in unsent {
            running.lookup.on_failure(addr);
        }
        if running.lookup.is_done() {
            let Some(running) = self.lookups.remove(&id) else {
                return;
            };
            self.pending
                .retain(|_, p| !matches!(p.purpose, Purpose::Lookup(l) if l == id));
            self.stats.lookups_done += 1;
            self.table.refreshed(now, target);
            if !running.internal {
                fx.done.push(LookupDone {
                    id,
                    target,
                    closest: running.lookup.closest_answered(self.config.lookup.k),
                    hops: running.lookup.hops(),
                    requests: running.lookup.requests_sent(),
                });
            }
        }
    }

    /// Queues a FIND_NODE for `target` to `to`, padded for a full answer. False if the pending
    /// map is full.
    fn send_request(
        &mut self,
        now: u64,
        to: Contact,
        purpose: Purpose,
        target: u64,
        fx: &mut RouterEffects,
    ) -> bool {
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            return false;
        }
        let nonce: [u8; 8] = loop {
            let n: [u8; 8] = self.rng.r#gen();
            if !self.pending.contains_key(&n) {
                break n;
            }
        };
        let want = match purpose {
            Purpose::Lookup(_) => self.config.lookup.k.min(MAX_NODES_PER_REPLY),
            Purpose::Probe | Purpose::Introduce => 0,
        };
        self.pending.insert(
            nonce,
            Pending {
                to: to.addr,
                contact: to,
                purpose,
                sent_ms: now,
            },
        );
        if matches!(purpose, Purpose::Probe | Purpose::Introduce) {
            self.probes.insert((now, nonce));
        }
        self.stats.requests_sent += 1;
        fx.sends.push((
            to.addr,
            RouteMessage::FindNode(FindNodeRepr {
                nonce,
                target,
                sender: self.table.own_id(),
                want: want as u8,
                padded_len: find_node_len_for(want),
            }),
        ));
        true
    }

    /// Tells the table we heard from `contact`, probing a stale LRS if it asks.
    fn heard(&mut self, now: u64, contact: Contact, fx: &mut RouterEffects) {
        let heard = self.table.heard(now, contact);
        if matches!(heard, Heard::Added | Heard::ReplacedUnreliable(_))
            && self.unreliable.contains(&contact.addr)
        {
            self.table.set_unreliable(contact.addr, true);
        }
        if let Heard::ReplacedUnreliable(_) = heard {
            self.stats.unreliable_replaced += 1;
        }
        if let Heard::ProbeLrs(lrs) = heard
            && let Some(c) = self.table.get(lrs)
        {
            self.stats.probes_sent += 1;
            let own = self.table.own_id();
            if !self.send_request(now, c, Purpose::Probe, own, fx) {
                // No room to probe now: the LRS stays (keep long-lived contacts).
                self.table.heard(now, c);
            }
        }
    }

    /// Handles one routing datagram from `from`. `from_proven`: the driver's peer table says
    /// `from` answered our PING (replies to it need no amplification bound). `request_len`: the
    /// datagram's length on the wire. Never panics.
    pub fn handle(
        &mut self,
        now_ms: u64,
        from: SocketAddr,
        from_proven: bool,
        request_len: usize,
        msg: &RouteMessage,
    ) -> RouterEffects {
        let now = self.clock(now_ms);
        let from = normalize_addr(from);
        let mut fx = RouterEffects::default();
        match msg {
            RouteMessage::FindNode(req) => {
                self.stats.find_node_received += 1;
                let mut n = usize::from(req.want)
                    .min(self.config.table.bucket_size)
                    .min(MAX_NODES_PER_REPLY);
                if !from_proven {
                    let cap = max_entries_unproven(request_len);
                    if cap < n {
                        n = cap;
                        self.stats.nodes_truncated_unproven += 1;
                    }
                }
                let mut answer = NodesRepr::new(req.nonce);
                // One more than asked, in case the requester itself is among them.
                for c in self.table.closest(req.target, n + 1) {
                    if answer.count >= n {
                        break;
                    }
                    if c.addr != from {
                        answer.push(c.id, addr_to_wire(c.addr));
                    }
                }
                fx.sends.push((from, RouteMessage::Nodes(answer)));
                self.introduce(now, req.sender, from, &mut fx);
            }
            RouteMessage::Nodes(nodes) => {
                let Some(p) = self.pending.get(&nodes.nonce).copied() else {
                    self.stats.nodes_unsolicited += 1;
                    return fx;
                };
                if p.to != from {
                    self.stats.nodes_unsolicited += 1;
                    return fx;
                }
                self.pending.remove(&nodes.nonce);
                if matches!(p.purpose, Purpose::Probe | Purpose::Introduce) {
                    self.probes.remove(&(p.sent_ms, nodes.nonce));
                }
                self.stats.nodes_accepted += 1;
                fx.answered.push(from);
                // It answered at its address: alive. Its ID is as claimed by whoever listed it
                // (verified if it came from a pinned key). With `verify_ids`, a listed ID enters
                // the table only once proven (`add_verified`).
                let verify = self.config.lookup.verify_ids;
                if !verify || p.contact.verified || self.table.contains(from) {
                    self.heard(now, p.contact, &mut fx);
                }
                if let Purpose::Lookup(id) = p.purpose {
                    let contacts = self.listed_contacts(from, nodes);
                    if let Some(running) = self.lookups.get_mut(&id) {
                        running.lookup.on_reply(from, &contacts);
                    }
                    if verify && !p.contact.verified {
                        self.prove(now, id, from, &mut fx);
                    }
                    self.advance(now, id, &mut fx);
                }
            }
        }
        fx
    }

    /// A FIND_NODE from `from` claiming ID `id`: if it would get a place in the table, prove its
    /// address first (a probe it must answer; a spoofed source never does).
    fn introduce(&mut self, now: u64, id: u64, from: SocketAddr, fx: &mut RouterEffects) {
        if id == 0
            || check_addr(from).is_err()
            || Some(from) == self.own_addr
            || !self.table.has_room(id, from)
            || self.pending.values().any(|p| p.to == from)
        {
            return;
        }
        if self.config.lookup.verify_ids {
            // The claimed sender ID is worth nothing: the proof brings the real one.
            if let Some(&(proven, _)) = self.proven.get(&from) {
                let contact = Contact {
                    id: proven,
                    addr: from,
                    verified: true,
                    pinned: false,
                };
                self.heard(now, contact, fx);
                return;
            }
            if !self.proving.contains_key(&from) && self.proving.len() < MAX_PROVING {
                self.proving.insert(from, now);
                self.stats.proofs_asked += 1;
                self.stats.introductions_sent += 1;
                fx.prove.push(from);
            }
            return;
        }
        let contact = Contact {
            id,
            addr: from,
            verified: false,
            pinned: false,
        };
        if self.send_request(now, contact, Purpose::Introduce, self.table.own_id(), fx) {
            self.stats.introductions_sent += 1;
        }
    }

    /// The acceptable contacts of a NODES list from `source`.
    fn listed_contacts(&mut self, source: SocketAddr, nodes: &NodesRepr) -> Vec<Contact> {
        let own_id = self.table.own_id();
        let mut out = Vec::with_capacity(nodes.entries().len());
        for &(id, wire) in nodes.entries() {
            let addr = addr_from_wire(&wire);
            if id == 0
                || id == own_id
                || check_addr(addr).is_err()
                || crosses_loopback_scope(addr, source)
                || Some(addr) == self.own_addr
            {
                self.stats.contacts_refused += 1;
                continue;
            }
            // An address whose ID we proved keeps it (a lister cannot rename it): a forgery of
            // a known address costs nothing more.
            let proven = self.proven_id(addr).map(|id| Contact {
                id,
                addr,
                verified: true,
                pinned: false,
            });
            out.push(proven.unwrap_or(Contact {
                id,
                addr,
                verified: false,
                pinned: false,
            }));
        }
        out
    }

    /// Advances time: times out requests and probes, moves lookups on, and starts refresh
    /// lookups for idle buckets.
    pub fn tick(&mut self, now_ms: u64) -> RouterEffects {
        let now = self.clock(now_ms);
        let mut fx = RouterEffects::default();
        // Probes that timed out.
        let timeout_ms = self.config.table.probe_timeout_ms;
        let mut expired: Vec<[u8; 8]> = Vec::new();
        while let Some(&(sent_ms, nonce)) = self.probes.first()
            && now.saturating_sub(sent_ms) >= timeout_ms
        {
            self.probes.pop_first();
            expired.push(nonce);
        }
        // In nonce order, as they sit in `pending`.
        expired.sort_unstable();
        for nonce in expired {
            if let Some(p) = self.pending.remove(&nonce) {
                self.stats.requests_timed_out += 1;
                if self.table.failed(now, p.to) {
                    self.stats.evictions += 1;
                    fx.evicted.push(p.to);
                }
            }
        }
        self.proving
            .retain(|_, &mut at| now.saturating_sub(at) < timeout_ms);
        let ids: Vec<LookupId> = self.lookups.keys().copied().collect();
        for id in ids {
            self.advance(now, id, &mut fx);
        }
        if !self.table.is_empty() {
            let rng = &mut self.rng;
            let targets = self.table.stale_buckets(now, || rng.r#gen());
            for target in targets {
                if self.begin(now, target, true, &mut fx).is_some() {
                    self.stats.refreshes += 1;
                }
            }
        }
        fx
    }

    /// When [`Router::tick`] has work next: a request timeout or a bucket refresh.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let lookups = self
            .lookups
            .values()
            .filter_map(|r| r.lookup.next_deadline_ms())
            .min();
        let probes = self
            .probes
            .first()
            .map(|&(sent_ms, _)| sent_ms.saturating_add(self.config.table.probe_timeout_ms));
        let refresh = self.table.next_refresh_ms();
        [lookups, probes, refresh].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::table;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 1, i, 1], 4000))
    }

    /// A router whose table holds 20 verified contacts spread over the ID space.
    fn filled() -> Router {
        let mut r = Router::new(1, RouterConfig::default(), 7);
        for i in 0..20u8 {
            let id = (u64::from(i) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            r.add_verified(0, id, addr(i), false);
        }
        assert!(r.table().len() >= 8);
        r
    }

    fn find_node(want: u8, padded_len: usize) -> RouteMessage {
        RouteMessage::FindNode(FindNodeRepr {
            nonce: [3; 8],
            target: 0xdead_beef,
            sender: 0,
            want,
            padded_len,
        })
    }

    fn answer_len(fx: &RouterEffects) -> (usize, usize) {
        match fx.sends.as_slice() {
            [(_, msg @ RouteMessage::Nodes(n))] => (msg.buffer_len(), n.entries().len()),
            other => panic!("one NODES expected, got {other:?}"),
        }
    }

    #[test]
    fn answers_to_unproven_requesters_are_never_longer_than_their_request() {
        let mut r = filled();
        let stranger = SocketAddr::from(([192, 0, 2, 9], 5000));
        for (want, padded) in [(8u8, 26usize), (8, 100), (8, 218), (20, 218), (8, 1424)] {
            let req = find_node(want, padded);
            let fx = r.handle(0, stranger, false, req.buffer_len(), &req);
            let (len, entries) = answer_len(&fx);
            assert!(
                len <= req.buffer_len(),
                "want {want}, request {padded}: {len} bytes"
            );
            assert!(entries <= usize::from(want).min(8));
        }
        // Padded to `find_node_len_for(8)`, an unproven requester gets all 8.
        let req = find_node(8, find_node_len_for(8));
        let (_, entries) = answer_len(&r.handle(0, stranger, false, req.buffer_len(), &req));
        assert_eq!(entries, 8);
        // A proven requester gets 8 without padding.
        let req = find_node(8, 26);
        let (len, entries) = answer_len(&r.handle(0, stranger, true, req.buffer_len(), &req));
        assert_eq!(entries, 8);
        assert!(len > req.buffer_len());
        assert!(r.stats().nodes_truncated_unproven > 0);
    }

    #[test]
    fn contacts_judged_unreliable_are_not_asked_first_and_give_way_to_newcomers() {
        let mut r = filled();
        // The contact closest to a target in the full top bucket (IDs with the top bit set).
        let target = 0xF000_0000_0000_0000;
        let suspect = r.table().closest(target, 1)[0];
        assert_eq!(table::bucket_of(1, suspect.id), Some(0));
        let (_, fx) = r.start_lookup(0, target);
        assert!(fx.sends.iter().any(|(to, _)| *to == suspect.addr));
        r.set_unreliable([suspect.addr].into_iter().collect());
        assert!(r.table().is_unreliable(suspect.addr));
        let (_, fx) = r.start_lookup(1, target);
        assert!(
            fx.sends.iter().all(|(to, _)| *to != suspect.addr),
            "a lookup starts from reliable contacts: {:?}",
            fx.sends
        );
        // A newcomer for that full bucket takes the suspect's place.
        assert_eq!(
            r.table().bucket_sizes()[0],
            r.config.table.bucket_size,
            "bucket 0 is full"
        );
        r.add_verified(2, 0xF100_0000_0000_0000, addr(200), false);
        assert!(!r.table().contains(suspect.addr));
        assert!(r.table().contains(addr(200)));
        assert_eq!(r.stats().unreliable_replaced, 1);
        // It comes back (heard again, room made): still judged unreliable until the scores say
        // otherwise.
        r.add_verified(3, suspect.id, suspect.addr, false);
        if r.table().contains(suspect.addr) {
            assert!(r.table().is_unreliable(suspect.addr));
        }
        r.set_unreliable(BTreeSet::new());
        assert!(!r.table().is_unreliable(suspect.addr));
    }

    #[test]
    fn our_requests_are_padded_and_only_their_answers_are_accepted() {
        let mut r = filled();
        let (id, fx) = r.start_lookup(0, 0x1234);
        assert!(id.is_some());
        assert_eq!(fx.sends.len(), 3, "alpha requests");
        let (to, req) = fx.sends[0];
        let RouteMessage::FindNode(f) = req else {
            panic!("a FIND_NODE");
        };
        assert_eq!(f.buffer_len(), find_node_len_for(8));
        assert_eq!(f.sender, 1);
        // The right nonce from the wrong address, and a wrong nonce, change nothing.
        let mut nodes = NodesRepr::new(f.nonce);
        nodes.push(42, addr_to_wire(SocketAddr::from(([10, 9, 9, 9], 4000))));
        let wrong = SocketAddr::from(([10, 9, 9, 8], 4000));
        r.handle(1, wrong, false, 36, &RouteMessage::Nodes(nodes));
        r.handle(
            1,
            to,
            false,
            10,
            &RouteMessage::Nodes(NodesRepr::new([0; 8])),
        );
        assert_eq!(r.stats().nodes_unsolicited, 2);
        assert_eq!(r.stats().nodes_accepted, 0);
        r.handle(1, to, false, 36, &RouteMessage::Nodes(nodes));
        assert_eq!(r.stats().nodes_accepted, 1);
        // A late duplicate is unsolicited.
        r.handle(2, to, false, 36, &RouteMessage::Nodes(nodes));
        assert_eq!(r.stats().nodes_unsolicited, 3);
    }

    /// With `verify_ids`, a contact listed with an ID is asked to prove it once it answers; a
    /// proof of another ID drops it from the lookup and never puts the listed ID in the table.
    #[test]
    fn listed_ids_count_only_once_proven() {
        let mut config = RouterConfig::default();
        config.lookup.verify_ids = true;
        let mut r = Router::new(1, config, 7);
        let seed = SocketAddr::from(([10, 1, 0, 1], 4000));
        r.add_verified(0, 0x8000_0000_0000_0000, seed, false);
        let target = 0x4000_0000_0000_0000;
        let (id, fx) = r.start_lookup(0, target);
        let lookup_id = id.expect("started");
        let Some((_, RouteMessage::FindNode(f))) = fx.sends.first().copied() else {
            panic!("a FIND_NODE to the seed");
        };
        // The seed lists a liar that claims the target's own ID.
        let liar = SocketAddr::from(([10, 2, 0, 1], 4000));
        let mut nodes = NodesRepr::new(f.nonce);
        nodes.push(target, addr_to_wire(liar));
        let fx = r.handle(1, seed, true, 36, &RouteMessage::Nodes(nodes));
        assert!(fx.prove.is_empty(), "the seed's ID is proven already");
        let Some((to, RouteMessage::FindNode(f))) = fx.sends.first().copied() else {
            panic!("a FIND_NODE to the listed contact");
        };
        assert_eq!(to, liar);
        let fx = r.handle(
            2,
            liar,
            true,
            10,
            &RouteMessage::Nodes(NodesRepr::new(f.nonce)),
        );
        assert_eq!(fx.prove, vec![liar]);
        assert!(fx.done.is_empty(), "not done before the proof");
        assert!(
            !r.table().contains(liar),
            "a listed ID does not enter the table"
        );
        // The liar's key proves another ID.
        let fx = r.add_verified(3, 0x7777_0000_0000_0000, liar, false);
        assert_eq!(r.stats().forged_ids_refused, 1);
        let done = fx.done.first().expect("the lookup ends");
        assert_eq!(done.id, lookup_id);
        assert!(done.closest.iter().all(|c| c.id != target));
        assert_eq!(
            r.table().get(liar).map(|c| c.id),
            Some(0x7777_0000_0000_0000)
        );
        // Listed again under the target's ID, the liar keeps its proven ID: no second proof.
        let (_, fx) = r.start_lookup(10, target);
        let Some((_, RouteMessage::FindNode(f))) =
            fx.sends.iter().copied().find(|(to, _)| *to == seed)
        else {
            panic!("a FIND_NODE to the seed");
        };
        let mut nodes = NodesRepr::new(f.nonce);
        nodes.push(target, addr_to_wire(liar));
        let fx = r.handle(11, seed, true, 36, &RouteMessage::Nodes(nodes));
        assert!(fx.prove.is_empty());
        assert_eq!(r.stats().proofs_asked, 1);
    }

    #[test]
    fn a_requester_enters_the_table_only_after_answering_a_probe() {
        let mut r = Router::new(1, RouterConfig::default(), 7);
        let requester = SocketAddr::from(([10, 5, 5, 5], 4000));
        let req = RouteMessage::FindNode(FindNodeRepr {
            nonce: [1; 8],
            target: 99,
            sender: 0x8000_0000_0000_0000,
            want: 0,
            padded_len: 26,
        });
        let fx = r.handle(0, requester, false, 26, &req);
        assert!(!r.table().contains(requester));
        let probe = fx
            .sends
            .iter()
            .find_map(|(to, m)| match m {
                RouteMessage::FindNode(f) if *to == requester => Some(*f),
                _ => None,
            })
            .expect("a probe to the requester");
        assert_eq!(probe.want, 0);
        r.handle(
            5,
            requester,
            false,
            10,
            &RouteMessage::Nodes(NodesRepr::new(probe.nonce)),
        );
        assert!(r.table().contains(requester));
        // A spoofed requester never answers: its probe times out and it never enters.
        let spoofed = SocketAddr::from(([10, 6, 6, 6], 4000));
        r.handle(10, spoofed, false, 26, &req);
        r.tick(10 + RouteConfig::default().probe_timeout_ms);
        assert!(!r.table().contains(spoofed));
    }
}
