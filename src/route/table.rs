//! [`RoutingTable`]: Kademlia k-buckets over the 64-bit node-ID space (ID = first 8 bytes of the
//! public key, as v1), I/O-free: time comes in as `now_ms`, and a full bucket asks its caller to
//! probe the least-recently-seen contact instead of probing it itself.
//!
//! Rules (Maymounkov & Mazières 2002, §2.2; the `mainline` crate's `routing_table.rs`):
//! - Bucket `i` holds contacts whose ID shares exactly `i` leading bits with ours (64 buckets,
//!   each at most `bucket_size` = k contacts, least recently seen first).
//! - A contact heard from moves to the tail. A newcomer for a full bucket waits in the bucket's
//!   bounded replacement cache; if the least-recently-seen (LRS) contact has been silent for
//!   `stale_after_ms`, the caller is asked to probe it ([`Heard::ProbeLrs`]). The LRS is evicted
//!   only after `max_failures` unanswered requests in a row, and the freshest replacement takes
//!   its place. Long-lived contacts are therefore kept, which is what makes the table resistant
//!   to flooding with fresh identities.
//! - Per-IP and per-prefix limits (`peer::IpCounts`) bound how much of the table one network
//!   can hold. Pinned contacts (configured edges) are never evicted.
//! - Trust scores apply ([`RoutingTable::set_unreliable`]): a contact the node's storage
//!   challenges judge unreliable (`peer::TrustPolicy::is_unreliable`) is the first to go when a
//!   newcomer finds its bucket full (no probe, no waiting: it answers, but it drops records), and
//!   [`RoutingTable::closest`] ranks it after every reliable contact, so lookups start elsewhere
//!   and FIND_NODE answers list it last.
//! - Memory is bounded: at most 64 × (k + replacement_cache_size) contacts.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use crate::keys::distance;
use crate::peer::{IpCounts, IpLimits, LimitHit};
use crate::route::{Contact, RouteConfig};

/// Number of buckets: one per possible shared-prefix length of two different 64-bit IDs.
pub const BUCKET_COUNT: usize = 64;

/// One contact in a bucket.
#[derive(Debug, Clone, Copy)]
struct Entry {
    contact: Contact,
    /// Last time it answered us or sent us a request.
    last_seen_ms: u64,
    /// Requests in a row it left unanswered.
    failures: u32,
    /// A probe (requested by [`Heard::ProbeLrs`]) is out since this time.
    probe_sent_ms: Option<u64>,
    /// Judged unreliable by the node's storage challenges ([`RoutingTable::set_unreliable`]).
    unreliable: bool,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Least recently seen first. At most `bucket_size`.
    entries: Vec<Entry>,
    /// Newcomers waiting for a place, most recent last. At most `replacement_cache_size`.
    replacements: VecDeque<Entry>,
    /// Last time a lookup went into this bucket's range; `None` until the first one, so a
    /// joining node refreshes every bucket up to its neighbourhood once (Kademlia §2.3, join).
    refreshed_ms: Option<u64>,
}

/// What [`RoutingTable::heard`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// The contact was already in its bucket; it moved to the tail.
    Updated,
    /// The contact was added.
    Added,
    /// The bucket is full: the contact waits in the replacement cache.
    Cached,
    /// Like `Cached`, and the least-recently-seen contact at this address has been silent
    /// too long: probe it (a `FIND_NODE` with `want = 0`) and report the outcome with
    /// [`RoutingTable::heard`] or [`RoutingTable::failed`].
    ProbeLrs(SocketAddr),
    /// Refused: our own ID, ID 0, or an address already listed with another (verified) ID.
    Refused,
    /// Refused by the per-IP or per-prefix limit.
    Limited(LimitHit),
    /// Refused: its bucket already holds `MAX_PER_ID_CLUSTER` IDs of its cluster.
    Clustered,
    /// The bucket was full and held a contact judged unreliable: that one (this address) was
    /// evicted and the newcomer added in its place.
    ReplacedUnreliable(SocketAddr),
}

/// Bits past log2(estimated network size) that define a lookup's ID cluster
/// ([`RoutingTable::cluster_prefix_bits`]): an ID prefix of that length holds 1/16 of an honest
/// node on average, so three honest nodes in one (what a lookup's limit of two refuses) happen
/// in well under 1 % of lookups, and an estimate off by a factor of two still leaves 1/8.
pub const CLUSTER_MARGIN_BITS: u32 = 4;
/// Shortest lookup cluster prefix, whatever the estimate: a joining node's table is nearly empty
/// and would estimate a tiny network, then lump its honest neighbours into one cluster. 2^16
/// regions hold fewer than one node each up to 65,536 nodes.
pub const MIN_CLUSTER_PREFIX_BITS: u32 = 16;

/// Bits past a bucket's prefix that define an ID cluster (see `RoutingTable::cluster_full`).
pub const ID_CLUSTER_BITS: usize = 6;
/// Contacts of one ID cluster a bucket may hold.
pub const MAX_PER_ID_CLUSTER: usize = 2;

/// The routing table. See the module docs.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    own_id: u64,
    config: RouteConfig,
    buckets: Vec<Bucket>,
    /// Address → bucket index of every contact in a bucket (not of replacements).
    index: BTreeMap<SocketAddr, usize>,
    /// Per-IP / per-prefix counts of bucket contacts.
    counts: IpCounts,
    /// [`RoutingTable::next_refresh_ms`], recomputed whenever a bucket gains or loses a contact
    /// or is refreshed (drivers ask for it after every datagram; contacts change far less often).
    next_refresh_ms: Option<u64>,
}

/// The bucket of `id` relative to `own_id`, or `None` for our own ID.
pub fn bucket_of(own_id: u64, id: u64) -> Option<usize> {
    let d = distance(own_id, id);
    if d == 0 {
        None
    } else {
        Some(d.leading_zeros() as usize)
    }
}

impl RoutingTable {
    /// An empty table for the node with ID `own_id`. `config` must be valid.
    pub fn new(own_id: u64, config: RouteConfig) -> RoutingTable {
        assert!(config.validate().is_ok(), "RouteConfig::validate first");
        let limits = IpLimits {
            max_per_ip: config.max_per_ip,
            max_per_prefix: config.max_per_prefix,
            ipv4_prefix_len_bits: config.ipv4_prefix_len_bits,
            ipv6_prefix_len_bits: config.ipv6_prefix_len_bits,
            exempt_loopback: config.exempt_loopback,
        };
        RoutingTable {
            own_id,
            buckets: vec![Bucket::default(); BUCKET_COUNT],
            index: BTreeMap::new(),
            counts: IpCounts::new(limits),
            config,
            next_refresh_ms: None,
        }
    }

    /// Our ID.
    pub fn own_id(&self) -> u64 {
        self.own_id
    }

    /// The configuration.
    pub fn config(&self) -> &RouteConfig {
        &self.config
    }

    /// Contacts in buckets (replacements not counted).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// No contact.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `addr` is a contact in a bucket.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.index.contains_key(&addr)
    }

    /// The contact at `addr`, if in a bucket.
    pub fn get(&self, addr: SocketAddr) -> Option<Contact> {
        let b = *self.index.get(&addr)?;
        self.buckets[b]
            .entries
            .iter()
            .find(|e| e.contact.addr == addr)
            .map(|e| e.contact)
    }

    /// Whether bucket `b` already holds `MAX_PER_ID_CLUSTER` contacts whose IDs share
    /// `ID_CLUSTER_BITS` more bits with `id` than the bucket's own prefix: honest IDs are
    /// uniform, so two of eight share those bits with probability about 1/64 × 28 pairs; a
    /// key-grinding attacker's IDs cluster around its target and would otherwise fill whole
    /// buckets (and then answer every lookup that starts there with its own nodes).
    fn cluster_full(&self, b: usize, id: u64) -> bool {
        let depth = (b + 1 + ID_CLUSTER_BITS) as u32;
        self.buckets[b]
            .entries
            .iter()
            .filter(|e| distance(e.contact.id, id).leading_zeros() >= depth)
            .count()
            >= MAX_PER_ID_CLUSTER
    }

    /// Whether a new contact with `id` at `addr` would get a place now (its bucket has room and
    /// the IP limits allow it): worth proving its address.
    pub fn has_room(&self, id: u64, addr: SocketAddr) -> bool {
        let Some(b) = bucket_of(self.own_id, id) else {
            return false;
        };
        id != 0
            && !self.index.contains_key(&addr)
            && self.buckets[b].entries.len() < self.config.bucket_size
            && self.counts.check(addr.ip()).is_ok()
            && !self.cluster_full(b, id)
    }

    /// The network size this table suggests: the first bucket `j` with room holds everyone the
    /// table could find sharing exactly `j` bits with us, and the deeper buckets everyone sharing
    /// more (a join lookup for our own ID fills them), so `(contacts in buckets ≥ j + 1) · 2^j`
    /// nodes (the 1 is us). Uniform IDs make it right within a factor of about two; an attacker
    /// can add at most `MAX_PER_ID_CLUSTER` contacts per cluster to those buckets.
    pub fn estimated_nodes(&self) -> u64 {
        let k = self.config.bucket_size;
        let sizes = self.bucket_sizes();
        let Some(j) = sizes.iter().position(|&n| n < k) else {
            return u64::MAX;
        };
        let deeper: usize = sizes[j..].iter().sum();
        ((deeper as u64) + 1).saturating_mul(1u64 << j.min(63))
    }

    /// The ID-cluster prefix a lookup should use (`LookupConfig::cluster_prefix_bits`):
    /// log2 of [`RoutingTable::estimated_nodes`] plus `CLUSTER_MARGIN_BITS`, at least
    /// `MIN_CLUSTER_PREFIX_BITS`, at most 64.
    pub fn cluster_prefix_bits(&self) -> u32 {
        let log2_nodes = 63 - self.estimated_nodes().max(1).leading_zeros();
        (log2_nodes + CLUSTER_MARGIN_BITS).clamp(MIN_CLUSTER_PREFIX_BITS, 64)
    }

    /// Contacts per bucket, for reports.
    pub fn bucket_sizes(&self) -> [usize; BUCKET_COUNT] {
        core::array::from_fn(|i| self.buckets[i].entries.len())
    }

    /// Every contact in a bucket, bucket by bucket.
    pub fn contacts(&self) -> impl Iterator<Item = Contact> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.contact))
    }

    /// `contact` answered us or sent us a request at `now_ms`. See [`Heard`].
    pub fn heard(&mut self, now_ms: u64, contact: Contact) -> Heard {
        let heard = self.heard_inner(now_ms, contact);
        // `Updated` only moves a contact inside its bucket; anything else may have added one
        // (or, for a re-keyed address, removed one).
        if heard != Heard::Updated {
            self.update_next_refresh();
        }
        heard
    }

    fn heard_inner(&mut self, now_ms: u64, contact: Contact) -> Heard {
        let Some(b) = bucket_of(self.own_id, contact.id) else {
            return Heard::Refused;
        };
        if contact.id == 0 {
            return Heard::Refused;
        }
        if let Some(&at) = self.index.get(&contact.addr) {
            let bucket = &mut self.buckets[at];
            let Some(pos) = bucket
                .entries
                .iter()
                .position(|e| e.contact.addr == contact.addr)
            else {
                debug_assert!(false, "index and buckets agree");
                return Heard::Refused;
            };
            let mut entry = bucket.entries[pos];
            if entry.contact.id != contact.id {
                // Same address, another ID: only a verified ID (from a pinned key) replaces it; a
                // claimed one never does.
                if !contact.verified {
                    return Heard::Refused;
                }
                bucket.entries.remove(pos);
                self.index.remove(&contact.addr);
                self.counts.remove(contact.addr.ip());
                return self.heard(now_ms, contact);
            }
            entry.contact.verified |= contact.verified;
            entry.contact.pinned |= contact.pinned;
            entry.last_seen_ms = now_ms.max(entry.last_seen_ms);
            entry.failures = 0;
            entry.probe_sent_ms = None;
            bucket.entries.remove(pos);
            bucket.entries.push(entry);
            return Heard::Updated;
        }
        if let Err(hit) = self.counts.check(contact.addr.ip())
            && !contact.pinned
        {
            return Heard::Limited(hit);
        }
        if !contact.pinned && self.cluster_full(b, contact.id) {
            return Heard::Clustered;
        }
        let entry = Entry {
            contact,
            last_seen_ms: now_ms,
            failures: 0,
            probe_sent_ms: None,
            unreliable: false,
        };
        let k = self.config.bucket_size;
        let bucket = &mut self.buckets[b];
        if bucket.entries.len() < k || contact.pinned {
            bucket.entries.push(entry);
            self.index.insert(contact.addr, b);
            self.counts.add(contact.addr.ip());
            return Heard::Added;
        }
        // Full, but holding a contact that drops records: the newcomer takes its place.
        if let Some(pos) = bucket
            .entries
            .iter()
            .position(|e| e.unreliable && !e.contact.pinned)
        {
            let evicted = bucket.entries.remove(pos).contact.addr;
            bucket.entries.push(entry);
            self.index.remove(&evicted);
            self.counts.remove(evicted.ip());
            self.index.insert(contact.addr, b);
            self.counts.add(contact.addr.ip());
            return Heard::ReplacedUnreliable(evicted);
        }
        // Full: remember the newcomer (fresh ones last, oldest dropped).
        bucket
            .replacements
            .retain(|e| e.contact.addr != contact.addr);
        if bucket.replacements.len() >= self.config.replacement_cache_size {
            bucket.replacements.pop_front();
        }
        if self.config.replacement_cache_size > 0 {
            bucket.replacements.push_back(entry);
        }
        // Probe the least-recently-seen unpinned contact if it has been silent too long.
        let stale_after_ms = self.config.stale_after_ms;
        let lrs = bucket.entries.iter_mut().find(|e| !e.contact.pinned);
        match lrs {
            Some(lrs)
                if lrs.probe_sent_ms.is_none()
                    && now_ms.saturating_sub(lrs.last_seen_ms) >= stale_after_ms =>
            {
                lrs.probe_sent_ms = Some(now_ms);
                Heard::ProbeLrs(lrs.contact.addr)
            }
            _ => Heard::Cached,
        }
    }

    /// A request to `addr` went unanswered. After `max_failures` in a row the contact is evicted
    /// (unless pinned) and the freshest replacement that fits the IP limits takes its place.
    /// Returns whether it was evicted.
    pub fn failed(&mut self, _now_ms: u64, addr: SocketAddr) -> bool {
        let Some(&b) = self.index.get(&addr) else {
            // Maybe a replacement: forget it.
            for bucket in &mut self.buckets {
                bucket.replacements.retain(|e| e.contact.addr != addr);
            }
            return false;
        };
        let max_failures = self.config.max_failures;
        let bucket = &mut self.buckets[b];
        let Some(pos) = bucket.entries.iter().position(|e| e.contact.addr == addr) else {
            return false;
        };
        let entry = &mut bucket.entries[pos];
        entry.failures = entry.failures.saturating_add(1);
        entry.probe_sent_ms = None;
        if entry.contact.pinned || entry.failures < max_failures {
            return false;
        }
        bucket.entries.remove(pos);
        self.index.remove(&addr);
        self.counts.remove(addr.ip());
        self.promote(b);
        self.update_next_refresh();
        true
    }

    /// Removes `addr` at once (e.g. it turned out to be ourselves or misbehaved).
    pub fn remove(&mut self, _now_ms: u64, addr: SocketAddr) -> bool {
        let Some(b) = self.index.remove(&addr) else {
            return false;
        };
        self.buckets[b].entries.retain(|e| e.contact.addr != addr);
        self.counts.remove(addr.ip());
        self.promote(b);
        self.update_next_refresh();
        true
    }

    /// The node's storage challenges judged the contact at `addr` unreliable (`true`) or no
    /// longer so (`false`). Returns whether a bucket contact changed. An unreliable contact stays
    /// (it still routes) until a newcomer needs its place, and ranks last in
    /// [`RoutingTable::closest`].
    pub fn set_unreliable(&mut self, addr: SocketAddr, unreliable: bool) -> bool {
        let Some(&b) = self.index.get(&addr) else {
            return false;
        };
        match self.buckets[b]
            .entries
            .iter_mut()
            .find(|e| e.contact.addr == addr)
        {
            Some(e) if e.unreliable != unreliable => {
                e.unreliable = unreliable;
                true
            }
            _ => false,
        }
    }

    /// Whether the contact at `addr` is judged unreliable.
    pub fn is_unreliable(&self, addr: SocketAddr) -> bool {
        self.index.get(&addr).is_some_and(|&b| {
            self.buckets[b]
                .entries
                .iter()
                .any(|e| e.contact.addr == addr && e.unreliable)
        })
    }

    /// Fills a free place in bucket `b` from its replacement cache (freshest first).
    fn promote(&mut self, b: usize) {
        let k = self.config.bucket_size;
        while self.buckets[b].entries.len() < k {
            let Some(mut entry) = self.buckets[b].replacements.pop_back() else {
                return;
            };
            if self.index.contains_key(&entry.contact.addr)
                || self.counts.check(entry.contact.addr.ip()).is_err()
                || self.cluster_full(b, entry.contact.id)
            {
                continue;
            }
            entry.failures = 0;
            entry.probe_sent_ms = None;
            self.buckets[b].entries.push(entry);
            self.index.insert(entry.contact.addr, b);
            self.counts.add(entry.contact.addr.ip());
        }
    }

    /// Up to `n` contacts closest to `target` by XOR distance, closest first (ties by address).
    ///
    /// Only the buckets that hold the answer are read, each ranked on its own: every bucket is a
    /// disjoint range of distances to `target`, in a known order (see [`buckets_by_distance`]),
    /// so the closest contacts are the closest of the first buckets in that order. The same
    /// answer as ranking the whole table, in O(n + k log k) instead of O(64 × k).
    ///
    /// Contacts judged unreliable ([`RoutingTable::set_unreliable`]) come after every reliable
    /// one, closest first among themselves.
    pub fn closest(&self, target: u64, n: usize) -> Vec<Contact> {
        let mut out = self.closest_where(target, n, false);
        if out.len() < n && self.index.len() > out.len() {
            // Fill with the unreliable ones (rare: the extra pass reads the same buckets).
            let rest = n - out.len();
            out.extend(self.closest_where(target, rest, true));
        }
        out
    }

    /// [`RoutingTable::closest`] among the contacts whose unreliable flag is `unreliable`.
    fn closest_where(&self, target: u64, n: usize, unreliable: bool) -> Vec<Contact> {
        let mut out = Vec::with_capacity(n.min(self.len()));
        // (distance to target, position in bucket) of the bucket at hand.
        let mut ranked: Vec<(u64, usize)> = Vec::new();
        for b in buckets_by_distance(self.own_id, target) {
            if out.len() >= n {
                break;
            }
            let entries = &self.buckets[b].entries;
            if entries.is_empty() {
                continue;
            }
            ranked.clear();
            ranked.extend(
                entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.unreliable == unreliable)
                    .map(|(i, e)| (distance(e.contact.id, target), i)),
            );
            // Keys are unique: a table holds an address once.
            ranked.sort_unstable_by(|x, y| {
                x.0.cmp(&y.0)
                    .then_with(|| entries[x.1].contact.addr.cmp(&entries[y.1].contact.addr))
            });
            let room = n - out.len();
            out.extend(ranked.iter().take(room).map(|&(_, i)| entries[i].contact));
        }
        out
    }

    /// Up to `n` contacts not among `exclude`, one per bucket (the one closest to `target`),
    /// closest to `target` first: seeds drawn from every part of the table, for lookup paths
    /// that must not all start in the bucket an attacker may have filled.
    pub fn diverse(&self, target: u64, n: usize, exclude: &[Contact]) -> Vec<Contact> {
        let mut out: Vec<Contact> = self
            .buckets
            .iter()
            .filter_map(|b| {
                b.entries
                    .iter()
                    .map(|e| e.contact)
                    .filter(|c| !exclude.iter().any(|x| x.addr == c.addr))
                    .min_by_key(|c| (distance(c.id, target), c.addr))
            })
            .collect();
        out.sort_by_key(|c| (distance(c.id, target), c.addr));
        out.truncate(n);
        out
    }

    /// A lookup for `target` completed at `now_ms`: its bucket counts as refreshed.
    pub fn refreshed(&mut self, now_ms: u64, target: u64) {
        if let Some(b) = bucket_of(self.own_id, target) {
            self.buckets[b].refreshed_ms = Some(now_ms);
            self.update_next_refresh();
        }
    }

    /// Buckets that need a refresh lookup at `now_ms`: not refreshed for `refresh_after_ms`, up to
    /// one past the deepest non-empty bucket (deeper ones cannot have contacts yet; Kademlia
    /// refreshes only the ranges it has neighbours in). For each, a target ID inside its range,
    /// derived from `random` (the caller's RNG; one u64 per bucket). Marks them refreshed, so a
    /// call returns each stale bucket once per interval.
    pub fn stale_buckets(&mut self, now_ms: u64, mut random: impl FnMut() -> u64) -> Vec<u64> {
        let deepest = self
            .buckets
            .iter()
            .rposition(|b| !b.entries.is_empty())
            .map_or(0, |d| (d + 1).min(BUCKET_COUNT - 1));
        let mut targets = Vec::new();
        for b in 0..=deepest {
            let bucket = &mut self.buckets[b];
            if bucket
                .refreshed_ms
                .is_some_and(|r| now_ms.saturating_sub(r) < self.config.refresh_after_ms)
            {
                continue;
            }
            bucket.refreshed_ms = Some(now_ms);
            targets.push(id_in_bucket(self.own_id, b, random()));
        }
        self.update_next_refresh();
        targets
    }

    /// The earliest time a bucket up to the deepest non-empty one becomes stale.
    pub fn next_refresh_ms(&self) -> Option<u64> {
        self.next_refresh_ms
    }

    fn update_next_refresh(&mut self) {
        self.next_refresh_ms = self
            .buckets
            .iter()
            .rposition(|b| !b.entries.is_empty())
            .and_then(|deepest| {
                self.buckets[..=(deepest + 1).min(BUCKET_COUNT - 1)]
                    .iter()
                    .map(|b| {
                        b.refreshed_ms
                            .map_or(0, |r| r.saturating_add(self.config.refresh_after_ms))
                    })
                    .min()
            });
    }

    /// Probes that went unanswered for `probe_timeout_ms` by `now_ms` count as failures.
    /// Returns the evicted addresses.
    pub fn expire_probes(&mut self, now_ms: u64) -> Vec<SocketAddr> {
        let timeout_ms = self.config.probe_timeout_ms;
        let expired: Vec<SocketAddr> = self
            .buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .filter(|e| {
                e.probe_sent_ms
                    .is_some_and(|sent| now_ms.saturating_sub(sent) >= timeout_ms)
            })
            .map(|e| e.contact.addr)
            .collect();
        expired
            .into_iter()
            .filter(|&addr| self.failed(now_ms, addr))
            .collect()
    }
}

/// The 64 buckets of `own_id`'s table, closest to `target` first: every contact of a bucket is
/// closer to `target` than every contact of the buckets after it.
///
/// Why: with `d = own_id ^ target`, a contact `c` in bucket `b` (sharing exactly `b` leading
/// bits with `own_id`) has `c ^ target` equal to `d` on its first `b` bits and different at bit
/// `b`. So where `d` has a 1 at bit `b`, the bucket's distances are below `d`, and lower the
/// smaller `b` is; where `d` has a 0, they are above `d`, and lower the larger `b` is. The
/// order is therefore: buckets whose bit of `d` is 1 by increasing `b`, then the others by
/// decreasing `b`.
pub fn buckets_by_distance(own_id: u64, target: u64) -> impl Iterator<Item = usize> {
    let d = distance(own_id, target);
    let bit = move |b: usize| (d >> (63 - b)) & 1 == 1;
    let below = (0..BUCKET_COUNT).filter(move |&b| bit(b));
    let above = (0..BUCKET_COUNT).rev().filter(move |&b| !bit(b));
    below.chain(above)
}

/// An ID in bucket `b` of `own_id`: the first `b` bits of ours, bit `b` flipped, the rest from
/// `random`.
pub fn id_in_bucket(own_id: u64, b: usize, random: u64) -> u64 {
    debug_assert!(b < BUCKET_COUNT);
    let flip = 1u64 << (63 - b);
    let keep_mask = if b == 0 { 0 } else { !0u64 << (64 - b) };
    let rest_mask = flip - 1;
    (own_id & keep_mask) | ((own_id ^ flip) & flip) | (random & rest_mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(k: usize) -> RouteConfig {
        RouteConfig {
            bucket_size: k,
            replacement_cache_size: 2,
            ..RouteConfig::default()
        }
    }

    fn contact(id: u64, last_octet: u8, third: u8) -> Contact {
        Contact {
            id,
            addr: SocketAddr::from(([10, 0, third, last_octet], 4000)),
            verified: true,
            pinned: false,
        }
    }

    #[test]
    fn buckets_by_shared_prefix_and_ids_in_bucket() {
        let own = 0xF000_0000_0000_0000;
        assert_eq!(bucket_of(own, own), None);
        assert_eq!(bucket_of(own, 0x0000_0000_0000_0001), Some(0));
        assert_eq!(bucket_of(own, 0xF000_0000_0000_0001), Some(63));
        assert_eq!(bucket_of(own, 0xB000_0000_0000_0000), Some(1));
        for b in 0..BUCKET_COUNT {
            for r in [0, u64::MAX, 0x1234_5678_9abc_def0] {
                assert_eq!(bucket_of(own, id_in_bucket(own, b, r)), Some(b));
            }
        }
    }

    #[test]
    fn full_bucket_keeps_long_lived_contacts_and_probes_the_stale_one() {
        let own = 0;
        let mut t = RoutingTable::new(own, cfg(2));
        // Bucket 0: IDs with the top bit set.
        // Spread inside the bucket (different ID clusters).
        let a = contact(0x8000_0000_0000_0001, 1, 0);
        let b = contact(0xC000_0000_0000_0002, 2, 1);
        let c = contact(0xE000_0000_0000_0003, 3, 2);
        assert_eq!(t.heard(0, a), Heard::Added);
        assert_eq!(t.heard(0, b), Heard::Added);
        // Full, and `a` was seen just now: no probe, `c` waits.
        assert_eq!(t.heard(1, c), Heard::Cached);
        assert!(!t.contains(c.addr));
        // Later, `a` is stale: probe it, still not evicted.
        let stale = t.config().stale_after_ms;
        assert_eq!(t.heard(stale, c), Heard::ProbeLrs(a.addr));
        assert!(t.contains(a.addr));
        // `a` answers: it stays (and moves to the tail, so `b` is now LRS).
        assert_eq!(t.heard(stale + 1, a), Heard::Updated);
        assert!(t.contains(a.addr) && !t.contains(c.addr));
        // `b` is probed and fails max_failures times: evicted, `c` promoted.
        let later = 3 * stale;
        assert_eq!(t.heard(later, c), Heard::ProbeLrs(b.addr));
        let mut evicted = false;
        for i in 0..t.config().max_failures {
            evicted = t.failed(later + u64::from(i), b.addr);
        }
        assert!(evicted);
        assert!(!t.contains(b.addr) && t.contains(c.addr));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn an_unreliable_contact_ranks_last_and_gives_its_place_to_a_newcomer() {
        let mut t = RoutingTable::new(0, cfg(2));
        let a = contact(0x8000_0000_0000_0001, 1, 0);
        let b = contact(0xC000_0000_0000_0002, 2, 1);
        let c = contact(0xE000_0000_0000_0003, 3, 2);
        assert_eq!(t.heard(0, a), Heard::Added);
        assert_eq!(t.heard(0, b), Heard::Added);
        // `a` is the closest to its own ID; judged unreliable it comes after `b`.
        assert_eq!(t.closest(a.id, 2), vec![a, b]);
        assert!(t.set_unreliable(a.addr, true));
        assert!(!t.set_unreliable(a.addr, true), "no change the second time");
        assert!(t.is_unreliable(a.addr) && !t.is_unreliable(b.addr));
        assert_eq!(t.closest(a.id, 2), vec![b, a]);
        assert_eq!(t.closest(a.id, 1), vec![b], "reliable contacts first");
        // Heard from again, it stays unreliable (still routing, still last).
        assert_eq!(t.heard(1, a), Heard::Updated);
        assert!(t.is_unreliable(a.addr));
        // A newcomer for the full bucket replaces it at once, seen a moment ago or not.
        assert_eq!(t.heard(2, c), Heard::ReplacedUnreliable(a.addr));
        assert!(!t.contains(a.addr) && t.contains(b.addr) && t.contains(c.addr));
        assert_eq!(t.len(), 2);
        // Cleared, a contact ranks by distance again; a pinned one is never replaced.
        assert!(t.set_unreliable(c.addr, true));
        assert!(t.set_unreliable(c.addr, false));
        assert_eq!(t.closest(c.id, 1), vec![c]);
        let mut edge = contact(0xF000_0000_0000_0004, 4, 3);
        edge.pinned = true;
        assert_eq!(t.heard(3, edge), Heard::Added);
        assert!(t.set_unreliable(edge.addr, true));
        let d = contact(0xA000_0000_0000_0005, 5, 4);
        // The bucket is full of reliable or pinned contacts: the newcomer waits.
        assert_eq!(t.heard(stale_free(&t), d), Heard::Cached);
        assert!(t.contains(edge.addr));
    }

    /// A time at which no contact of a fresh test table is stale yet.
    fn stale_free(t: &RoutingTable) -> u64 {
        t.config().stale_after_ms / 2
    }

    #[test]
    fn per_ip_limit_and_pinned_contacts() {
        let mut t = RoutingTable::new(
            0,
            RouteConfig {
                max_per_ip: 1,
                ..cfg(8)
            },
        );
        let a = contact(1, 1, 0);
        let mut same_ip = contact(2, 1, 0);
        same_ip.addr.set_port(4001);
        assert_eq!(t.heard(0, a), Heard::Added);
        assert_eq!(t.heard(0, same_ip), Heard::Limited(LimitHit::PerIp));
        same_ip.pinned = true;
        assert_eq!(t.heard(0, same_ip), Heard::Added);
        for _ in 0..10 {
            assert!(
                !t.failed(1, same_ip.addr),
                "pinned contacts are never evicted"
            );
        }
    }

    #[test]
    fn closest_orders_by_distance_and_memory_is_bounded() {
        let mut t = RoutingTable::new(0x5555_5555_5555_5555, cfg(4));
        for i in 0..4000u64 {
            let id = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let c = contact(id, (i % 250) as u8 + 1, (i / 250) as u8);
            let _ = t.heard(i, c);
        }
        assert!(t.len() <= BUCKET_COUNT * 4);
        let target = 0x1234_0000_0000_0000;
        let got = t.closest(target, 6);
        assert_eq!(got.len(), 6);
        for w in got.windows(2) {
            assert!(distance(w[0].id, target) <= distance(w[1].id, target));
        }
        let all: Vec<Contact> = t.contacts().collect();
        let best = all.iter().map(|c| distance(c.id, target)).min().unwrap();
        assert_eq!(distance(got[0].id, target), best);
    }

    #[test]
    fn a_cluster_of_ground_ids_gets_two_places_per_bucket() {
        let mut t = RoutingTable::new(0, cfg(8));
        let target = 0x8765_4321_0000_0000u64;
        let mut added = 0;
        for s in 0..8u64 {
            let c = contact(target | (s + 1), s as u8 + 1, s as u8);
            if t.heard(0, c) == Heard::Added {
                added += 1;
            }
        }
        assert_eq!(added, MAX_PER_ID_CLUSTER);
        // Uniform IDs in the same bucket are unaffected.
        let spread = contact(0xF000_0000_0000_0001, 50, 50);
        assert_eq!(t.heard(0, spread), Heard::Added);
    }

    #[test]
    fn network_size_estimate_and_lookup_cluster_prefix() {
        let t = RoutingTable::new(0x0123_4567_89AB_CDEF, cfg(8));
        assert_eq!(t.estimated_nodes(), 1, "an empty table knows only us");
        assert_eq!(t.cluster_prefix_bits(), MIN_CLUSTER_PREFIX_BITS);
        // A table that heard from every node of a uniform network.
        for (n, min_bits) in [(1_000u64, MIN_CLUSTER_PREFIX_BITS), (200_000, 20)] {
            let mut t = RoutingTable::new(
                0x0123_4567_89AB_CDEF,
                RouteConfig {
                    max_per_ip: 1,
                    max_per_prefix: 1 << 20,
                    ..cfg(8)
                },
            );
            for i in 0..n {
                let id = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4000));
                t.heard(
                    0,
                    Contact {
                        id,
                        addr,
                        verified: true,
                        pinned: false,
                    },
                );
            }
            let est = t.estimated_nodes();
            assert!(est >= n / 3 && est <= 3 * n, "{n} nodes estimated as {est}");
            assert!(t.cluster_prefix_bits() >= min_bits);
            assert!(t.cluster_prefix_bits() <= 64 - t.config().bucket_size as u32);
        }
    }

    #[test]
    fn unverified_claims_do_not_replace_a_verified_id() {
        let mut t = RoutingTable::new(0, cfg(8));
        let a = contact(5, 1, 0);
        assert_eq!(t.heard(0, a), Heard::Added);
        let liar = Contact {
            id: 6,
            verified: false,
            ..a
        };
        assert_eq!(t.heard(1, liar), Heard::Refused);
        assert_eq!(t.get(a.addr).map(|c| c.id), Some(5));
        let rekeyed = Contact { id: 7, ..a };
        assert_eq!(t.heard(2, rekeyed), Heard::Added);
        assert_eq!(t.get(a.addr).map(|c| c.id), Some(7));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn closest_reads_few_buckets_and_ranks_like_a_full_sort() {
        let own = 0x5A5A_0000_1234_5678u64;
        let mut t = RoutingTable::new(
            own,
            RouteConfig {
                max_per_ip: 1,
                max_per_prefix: 1 << 20,
                ..cfg(8)
            },
        );
        let mut x = 0x0123_4567_89AB_CDEFu64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..3000u64 {
            // Half uniform, half near our ID, so deep buckets fill too.
            let id = if i % 2 == 0 {
                next()
            } else {
                own ^ (next() >> (next() % 40))
            };
            let _ = t.heard(i, contact(id, (i % 250) as u8 + 1, (i / 250) as u8));
        }
        assert!(t.len() > 60);
        let all: Vec<Contact> = t.contacts().collect();
        let mut targets: Vec<u64> = (0..200).map(|_| next()).collect();
        targets.extend([own, own ^ 1, !own, 0, u64::MAX]);
        targets.extend(all.iter().take(20).map(|c| c.id));
        for target in targets {
            let mut full = all.clone();
            full.sort_by_key(|c| (distance(c.id, target), c.addr));
            for n in [0, 1, 3, 8, 9, 20, all.len(), all.len() + 5] {
                let want: Vec<Contact> = full.iter().take(n).copied().collect();
                assert_eq!(t.closest(target, n), want, "target {target:x}, n {n}");
            }
        }
    }

    #[test]
    fn stale_buckets_are_returned_once_per_interval() {
        let mut t = RoutingTable::new(0, cfg(8));
        t.heard(0, contact(0x0100_0000_0000_0000, 1, 0)); // bucket 7
        let r = t.config().refresh_after_ms;
        // Never refreshed: buckets 0..=8 (one past the deepest non-empty) are due at once.
        assert_eq!(t.next_refresh_ms(), Some(0));
        assert_eq!(t.stale_buckets(1, || 42).len(), 9);
        assert!(t.stale_buckets(2, || 42).is_empty());
        t.refreshed(5, 0x0100_0000_0000_0001);
        let targets = t.stale_buckets(1 + r, || 42);
        assert_eq!(targets.len(), 8, "all but bucket 7, refreshed at 5");
        assert_eq!(t.next_refresh_ms(), Some(5 + r));
    }
}
