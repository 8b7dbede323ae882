//! The read-only view of active peers that the peer thread publishes and shard owners read to
//! pick targets: PUT forwards and GETs go to the XOR-closest active peers of a record's owner.
//!
//! A snapshot is immutable and shared behind an `Arc`; the peer table builds a new one only when
//! the active set changes, so readers never lock and never see a half-updated table.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::keys::distance;
use crate::peer::trust::{ScoredPeer, Trust, TrustPolicy};
use crate::wire::Features;

/// One active peer, as targets are chosen from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerInfo {
    /// The peer's address (normal form).
    pub addr: SocketAddr,
    /// The public key pinned to this address.
    pub pubkey: [u8; 32],
    /// `id_from_pubkey(pubkey)`; 0 means "never a target".
    pub id: u64,
    /// A configured edge.
    pub edge: bool,
    /// Decaying storage-challenge success ratio (`trust::Trust::reliability`);
    /// [`crate::peer::UNPROVEN_RELIABILITY`] until a challenge has been scored.
    pub reliability: f32,
    /// The outcomes behind `reliability` (decayed tallies).
    pub trust: crate::peer::Trust,
    /// Extensions both we and this peer speak (its signed PONG salt, `wire::ext`, intersected
    /// with ours). Extension messages go only to peers with the matching bit.
    pub features: Features,
}

impl PeerInfo {
    /// Whether this peer speaks every extension in `wanted` (and so do we).
    pub fn speaks(&self, wanted: Features) -> bool {
        !wanted.is_empty() && self.features.contains(wanted)
    }
}

/// A run of at most this many peers is finished by sorting it rather than walking on: a table
/// this small costs less to sort than 64 halvings (`benches/peer.rs`).
const SCAN_AT_MOST: usize = 16;

/// The active peers at one moment, sorted by address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerSnapshot {
    peers: Vec<PeerInfo>,
    /// The peers with a non-zero ID as (ID, index into `peers`), sorted: the order
    /// [`PeerSnapshot::closest`] walks, so a pick costs O(64 · log n + k log k) rather than a
    /// pass over every peer (a stored PUT picks its replicas this way).
    by_id: Vec<(u64, u32)>,
    /// Addresses outside the table proven lately whose PONG did not advertise ROUTING
    /// (`peer::prover`), sorted: v1 nodes that hold us in their tables and send us their PUTs
    /// as one-hop placements.
    one_hop_strangers: Vec<SocketAddr>,
}

impl PeerSnapshot {
    /// A snapshot of these peers (sorted by address here, so equal sets compare equal).
    pub fn new(mut peers: Vec<PeerInfo>) -> PeerSnapshot {
        peers.sort_unstable_by_key(|p| p.addr);
        // Indexes follow address order, so (ID, index) orders equal IDs by address. A table
        // holds at most `MAX_TABLE_ENTRIES` (2^20) peers; a peer past u32 indexes (only a
        // hand-built snapshot) is simply never picked.
        let mut by_id: Vec<(u64, u32)> = peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.id != 0)
            .filter_map(|(i, p)| Some((p.id, u32::try_from(i).ok()?)))
            .collect();
        by_id.sort_unstable();
        PeerSnapshot {
            peers,
            by_id,
            one_hop_strangers: Vec::new(),
        }
    }

    /// This snapshot with `addrs` (normalised) as the proven addresses outside the table that
    /// do not speak ROUTING ([`PeerSnapshot::is_one_hop_stranger`]).
    pub fn with_one_hop_strangers(mut self, mut addrs: Vec<SocketAddr>) -> PeerSnapshot {
        addrs.sort_unstable();
        addrs.dedup();
        self.one_hop_strangers = addrs;
        self
    }

    /// Whether `addr` is an address outside the table, proven lately, that does not speak
    /// ROUTING (it PINGs us as a v1 node does its peers; `peer::prover`).
    pub fn is_one_hop_stranger(&self, addr: SocketAddr) -> bool {
        let addr = crate::wire::normalize_addr(addr);
        self.one_hop_strangers.binary_search(&addr).is_ok()
    }

    /// The proven addresses outside the table that do not speak ROUTING, sorted.
    pub fn one_hop_strangers(&self) -> &[SocketAddr] {
        &self.one_hop_strangers
    }

    /// All active peers, sorted by address.
    pub fn peers(&self) -> &[PeerInfo] {
        &self.peers
    }

    /// The addresses of the active peers `policy` judges unreliable (scored by storage
    /// challenges and below its threshold): what replica choice skips and what the routing
    /// table ranks last and replaces first (`route::Router::set_unreliable`).
    pub fn unreliable_addrs(&self, policy: &TrustPolicy) -> BTreeSet<SocketAddr> {
        self.peers
            .iter()
            .filter(|p| policy.is_unreliable(&p.trust))
            .map(|p| p.addr)
            .collect()
    }

    /// Number of active peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// No active peer.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The peer at this address, if active.
    pub fn get(&self, addr: SocketAddr) -> Option<&PeerInfo> {
        let addr = crate::wire::normalize_addr(addr);
        self.peers
            .binary_search_by_key(&addr, |p| p.addr)
            .ok()
            .and_then(|i| self.peers.get(i))
    }

    /// Whether the active peer at `addr` speaks every extension in `wanted` (false for an
    /// inactive or unknown address, and for an empty `wanted`).
    pub fn speaks(&self, addr: SocketAddr, wanted: Features) -> bool {
        self.get(addr).is_some_and(|p| p.speaks(wanted))
    }

    /// Active peers that speak every extension in `wanted`, sorted by address.
    pub fn speaking(&self, wanted: Features) -> impl Iterator<Item = &PeerInfo> + '_ {
        self.peers.iter().filter(move |p| p.speaks(wanted))
    }

    /// Up to `n` peers closest to `target_id` by XOR distance, closest first (ties by address).
    /// Peers with ID 0 and the `exclude`d address (e.g. the sender of a PUT) are never chosen.
    ///
    /// The walk: the IDs sharing the target's top bits form one contiguous run of `by_id`, and
    /// every ID in it is closer than every ID outside it. From the top bit down, the run splits
    /// in two by the next bit; the half that agrees with the target is nearer. If it holds
    /// fewer than are still needed, all of it is taken and the walk goes on in the far half;
    /// otherwise the far half is left. The walk stops once the run is short (`SCAN_AT_MOST`)
    /// or after bit 0 (one ID left); the nearest of the run by (distance, address) make up the
    /// rest. Asking for one more when `exclude` could be picked keeps the answer exact once it
    /// is removed.
    pub fn closest(&self, target_id: u64, n: usize, exclude: Option<SocketAddr>) -> Vec<PeerInfo> {
        let exclude = exclude.map(crate::wire::normalize_addr);
        if n == 0 {
            return Vec::new();
        }
        let pickable_excluded = exclude.and_then(|a| self.get(a)).is_some_and(|p| p.id != 0);
        let mut need = n + usize::from(pickable_excluded);
        let mut picked: Vec<&PeerInfo> = Vec::with_capacity(need);
        let (mut lo, mut hi) = (0, self.by_id.len());
        for bit in (0..u64::BITS).rev() {
            if need == 0 || hi - lo <= SCAN_AT_MOST {
                break;
            }
            let split = lo + self.by_id[lo..hi].partition_point(|&(id, _)| (id >> bit) & 1 == 0);
            let (near, far) = if (target_id >> bit) & 1 == 0 {
                ((lo, split), (split, hi))
            } else {
                ((split, hi), (lo, split))
            };
            if near.1 - near.0 >= need {
                (lo, hi) = near;
            } else {
                picked.extend(
                    self.by_id[near.0..near.1]
                        .iter()
                        .map(|&(_, i)| &self.peers[i as usize]),
                );
                need -= near.1 - near.0;
                (lo, hi) = far;
            }
        }
        // What is left shares the bits walked, so the nearest of it by (distance, address) are
        // the ones still needed: a short run is sorted, a run of one ID is in address order.
        let key = |p: &&PeerInfo| (distance(p.id, target_id), p.addr);
        let taken = picked.len();
        picked.extend(
            self.by_id[lo..hi]
                .iter()
                .map(|&(_, i)| &self.peers[i as usize]),
        );
        let rest = &mut picked[taken..];
        if need < rest.len() {
            rest.select_nth_unstable_by_key(need, key);
            picked.truncate(taken + need);
        }
        picked.sort_unstable_by_key(key);
        picked
            .into_iter()
            .filter(|p| Some(p.addr) != exclude)
            .take(n)
            .copied()
            .collect()
    }

    /// What [`PeerSnapshot::closest`] must return, by a scan of every peer (what it did before
    /// the walk): all pickable peers copied, the `n` nearest by (distance, address) selected and
    /// sorted. The reference the tests and `benches/peer.rs` compare the walk with; O(n).
    pub fn closest_by_scan(
        &self,
        target_id: u64,
        n: usize,
        exclude: Option<SocketAddr>,
    ) -> Vec<PeerInfo> {
        let exclude = exclude.map(crate::wire::normalize_addr);
        let mut out: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter(|p| p.id != 0 && Some(p.addr) != exclude)
            .copied()
            .collect();
        let key = |p: &PeerInfo| (distance(p.id, target_id), p.addr);
        if n == 0 {
            out.clear();
        } else if n < out.len() {
            out.select_nth_unstable_by_key(n - 1, key);
            out.truncate(n);
        }
        out.sort_unstable_by_key(key);
        out
    }
}

/// Picks replica targets (what a shard sees of the peers; [`SnapshotView`] is the node's and
/// the simulator's): the `n` active peers XOR-closest to `target_id`, never `exclude`.
pub trait PeerView {
    /// Appends up to `n` addresses to `out`, closest first.
    fn closest(
        &self,
        target_id: u64,
        n: usize,
        exclude: Option<SocketAddr>,
        out: &mut Vec<SocketAddr>,
    );

    /// Like [`PeerView::closest`], with each peer's storage-challenge record, so targets can be
    /// weighed by reliability. The default knows no scores: every peer is unscored and the choice
    /// falls back to plain XOR order.
    fn closest_scored(
        &self,
        target_id: u64,
        n: usize,
        exclude: Option<SocketAddr>,
        out: &mut Vec<ScoredPeer>,
    ) {
        let mut addrs = Vec::with_capacity(n);
        self.closest(target_id, n, exclude, &mut addrs);
        out.extend(addrs.into_iter().map(|addr| ScoredPeer {
            addr,
            trust: Trust::default(),
        }));
    }

    /// The storage-challenge record of the active peer at `addr` (`None`: not an active peer, or
    /// no scores known). Decides whether its PUTs are re-propagated.
    fn trust_of(&self, _addr: SocketAddr) -> Option<Trust> {
        None
    }

    /// Whether `addr` places the records it sends one hop: an active peer, or an address
    /// outside the table proven lately (it pings us), that does not speak ROUTING (a v1 node,
    /// such as the Go reference), so it sent them to the closest peers it knows, not to the
    /// closest a lookup finds. Default: no.
    fn places_one_hop(&self, _addr: SocketAddr) -> bool {
        false
    }

    /// Whether `addr` is an active peer (challenges go only to active peers). Default: yes.
    fn is_active(&self, _addr: SocketAddr) -> bool {
        true
    }

    /// The node ID of the active peer at `addr` (`None`: not known). A local get compares it
    /// with this node's ID to tell whether this node is a replica of the record it holds; a peer
    /// of unknown ID counts as closer than this node, so the get asks the peers.
    fn id_of(&self, _addr: SocketAddr) -> Option<u64> {
        None
    }
}

/// The snapshot as the shard core's view of replica targets: what `src/node.rs` and the
/// simulator hand to the shards.
pub struct SnapshotView<'a>(pub &'a PeerSnapshot);

impl PeerView for SnapshotView<'_> {
    fn closest(
        &self,
        target_id: u64,
        n: usize,
        exclude: Option<SocketAddr>,
        out: &mut Vec<SocketAddr>,
    ) {
        out.extend(
            self.0
                .closest(target_id, n, exclude)
                .into_iter()
                .map(|p| p.addr),
        );
    }

    fn closest_scored(
        &self,
        target_id: u64,
        n: usize,
        exclude: Option<SocketAddr>,
        out: &mut Vec<super::ScoredPeer>,
    ) {
        out.extend(
            self.0
                .closest(target_id, n, exclude)
                .into_iter()
                .map(|p| super::ScoredPeer {
                    addr: p.addr,
                    trust: p.trust,
                }),
        );
    }

    fn trust_of(&self, addr: SocketAddr) -> Option<super::Trust> {
        self.0.get(addr).map(|p| p.trust)
    }

    fn places_one_hop(&self, addr: SocketAddr) -> bool {
        match self.0.get(addr) {
            Some(p) => !p.features.contains(Features::ROUTING),
            None => self.0.is_one_hop_stranger(addr),
        }
    }

    fn is_active(&self, addr: SocketAddr) -> bool {
        self.0.get(addr).is_some()
    }

    fn id_of(&self, addr: SocketAddr) -> Option<u64> {
        self.0.get(addr).map(|p| p.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(addr: &str, id: u64) -> PeerInfo {
        let mut pubkey = [0u8; 32];
        pubkey[..8].copy_from_slice(&id.to_le_bytes());
        PeerInfo {
            addr: addr.parse().unwrap(),
            pubkey,
            id,
            edge: false,
            reliability: crate::peer::UNPROVEN_RELIABILITY,
            trust: crate::peer::Trust::default(),
            features: Features::NONE,
        }
    }

    #[test]
    fn closest_orders_by_xor_distance_and_skips_id_zero_and_exclude() {
        let snap = PeerSnapshot::new(vec![
            info("10.0.0.5:1", 0b0111),
            info("10.0.0.1:1", 0b1000),
            info("10.0.0.2:1", 0b0001),
            info("10.0.0.3:1", 0),
            info("10.0.0.4:1", 0b0011),
        ]);
        assert_eq!(snap.peers()[0].addr, "10.0.0.1:1".parse().unwrap());
        let ids = |v: Vec<PeerInfo>| v.iter().map(|p| p.id).collect::<Vec<_>>();
        // Distances to 0b0010: 0b0011→1, 0b0001→3, 0b0111→5, 0b1000→10.
        assert_eq!(
            ids(snap.closest(0b0010, 3, None)),
            vec![0b0011, 0b0001, 0b0111]
        );
        assert_eq!(
            ids(snap.closest(0b0010, 10, None)),
            vec![0b0011, 0b0001, 0b0111, 0b1000]
        );
        assert_eq!(
            ids(snap.closest(0b0010, 2, Some("10.0.0.4:1".parse().unwrap()))),
            vec![0b0001, 0b0111]
        );
        assert!(snap.closest(0b0010, 0, None).is_empty());
        // Target 0 is just another id; the peer with id 0 is still never chosen.
        assert_eq!(ids(snap.closest(0, 1, None)), vec![0b0001]);
        assert!(PeerSnapshot::default().closest(1, 3, None).is_empty());
    }

    /// The walk over IDs picks exactly what a scan of every peer picks: random tables with
    /// clustered and repeated IDs and ID 0, targets near and far, `exclude` in and out.
    #[test]
    fn closest_walk_matches_a_scan_of_every_peer() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..400 {
            let peers = rng.gen_range(0..200usize);
            // Clustered IDs (few high bits vary) make the near halves run short often.
            let mask: u64 = if round % 3 == 0 {
                0xF000_0000_0000_000F
            } else {
                u64::MAX
            };
            let infos: Vec<PeerInfo> = (0..peers)
                .map(|i| {
                    let id = match rng.gen_range(0..10) {
                        0 => 0,
                        1 => 5,
                        _ => rng.r#gen::<u64>() & mask,
                    };
                    info(&format!("10.0.{}.{}:1", i / 200, i % 200 + 1), id)
                })
                .collect();
            let snap = PeerSnapshot::new(infos.clone());
            for _ in 0..20 {
                let target = match rng.gen_range(0..4) {
                    0 => 5,
                    1 => 0,
                    _ => rng.r#gen::<u64>() & mask,
                };
                let n = rng.gen_range(0..8usize);
                let exclude = match rng.gen_range(0..3) {
                    0 if !infos.is_empty() => Some(infos[rng.gen_range(0..infos.len())].addr),
                    1 => Some("10.9.9.9:1".parse().unwrap()),
                    _ => None,
                };
                assert_eq!(
                    snap.closest(target, n, exclude),
                    snap.closest_by_scan(target, n, exclude),
                    "round {round}, target {target:#x}, n {n}, exclude {exclude:?}"
                );
            }
        }
    }

    #[test]
    fn closest_breaks_ties_by_address_and_get_finds_mapped_addresses() {
        let snap = PeerSnapshot::new(vec![info("10.0.0.9:1", 7), info("10.0.0.2:1", 7)]);
        let got = snap.closest(7, 1, None);
        assert_eq!(got[0].addr, "10.0.0.2:1".parse().unwrap());
        assert!(snap.get("[::ffff:10.0.0.9]:1".parse().unwrap()).is_some());
        assert!(snap.get("10.0.0.3:1".parse().unwrap()).is_none());
    }

    #[test]
    fn one_hop_placers_are_v1_peers_and_v1_strangers() {
        let mut routing = info("10.0.0.1:1", 1);
        routing.features = Features::ALL;
        let v1 = info("10.0.0.2:1", 2);
        let snap = PeerSnapshot::new(vec![routing, v1]).with_one_hop_strangers(vec![
            "10.0.0.9:1".parse().unwrap(),
            "10.0.0.8:1".parse().unwrap(),
            "10.0.0.9:1".parse().unwrap(),
        ]);
        assert_eq!(snap.one_hop_strangers().len(), 2);
        let view = SnapshotView(&snap);
        assert!(!view.places_one_hop(routing.addr));
        assert!(view.places_one_hop(v1.addr));
        assert!(view.places_one_hop("[::ffff:10.0.0.9]:1".parse().unwrap()));
        assert!(!view.is_active("10.0.0.9:1".parse().unwrap()));
        assert!(!view.places_one_hop("10.0.0.7:1".parse().unwrap()));
    }
}
