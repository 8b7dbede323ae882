//! Replica repair and republish: the I/O-free walk that re-sends a shard's records when the set of
//! FANOUT XOR-closest peers they belong on changes, paced by a byte budget.
//! The walk is generic over the store ([`RepairStore`]): v1 records (PUT, over every peer) and
//! v2 records (PUT2, over the RECORD_V2 peers only) are repaired by this same code.
//!
//! No per-record memory: the shard keeps the replica view its records were last sent against
//! (`base`). When the view changes, a **pass** walks the store's slab with a stable cursor (a
//! slot index; slots never move) and sends each record to the peers that are among its FANOUT
//! closest in the new view but were not in the old one: a peer that joined closer, or the next
//! one in line after a replica left. A **republish** is the same pass against an empty old view
//! (every record to all of its FANOUT closest), every `republish_interval_ms`.
//!
//! ```text
//!  view change / republish due ──► pass { old, start = cursor }          (base ← new at the end)
//!  step(now, budget): for slot in cursor.. (wrapping, until back at start):
//!        targets = closest(new) − closest(old)     stop when the pacer cannot cover them all
//!  view changes again mid-pass: keep `old`, aim at the newest view, go round once more from here
//! ```
//!
//! Every send draws on a [`Pacer`] (bytes per second with a burst) shared by all shards of a
//! node, and each step examines a bounded number of slots, so repair can never flood the network
//! or starve an owner thread. Records that arrive or are refreshed while a pass runs are sent by
//! the normal PUT path against the current view; the pass may send them once more (the receiver
//! drops the duplicate after one hash lookup).

use std::net::SocketAddr;
use std::sync::Arc;

use rand::Rng;

use crate::keys::distance;
use crate::peer::budget::Pacer;
use crate::shard::store::Store;
use crate::wire::Message;

/// Largest repair datagram: a v1 PUT or a v2 PUT2 (whichever is longer).
pub const MAX_REPAIR_DATAGRAM_LEN: usize = crate::limits::MAX_PACKET_LEN;

/// A store a repair pass can walk: records in slots that never move while held, so a cursor
/// (a slot index) sees every record held throughout a walk. v1 ([`Store`]) and v2
/// ([`crate::shard::store2::Store2`]) records take part in the same walk through this.
pub trait RepairStore {
    /// A record taken out of the store (owned).
    type Record;
    /// A held record, borrowed from the store.
    type View<'a>: Copy
    where
        Self: 'a;
    /// No record held.
    fn is_empty(&self) -> bool;
    /// Slots, free ones included (never decreases).
    fn slot_count(&self) -> usize;
    /// The record in `slot`, if any.
    fn record_in_slot(&self, slot: usize) -> Option<Self::View<'_>>;
    /// The ID replicas are placed around (the owner's node ID).
    fn owner_id(record: Self::View<'_>) -> u64;
    /// Writes the PUT datagram that replicates `record` into `buf` (at least
    /// `MAX_REPAIR_DATAGRAM_LEN` bytes); returns its length.
    fn emit_put(record: Self::View<'_>, buf: &mut [u8]) -> usize;
}

impl RepairStore for Store {
    type Record = crate::shard::store::Record;
    type View<'a> = crate::shard::store::RecordView<'a>;
    fn is_empty(&self) -> bool {
        Store::is_empty(self)
    }
    fn slot_count(&self) -> usize {
        Store::slot_count(self)
    }
    fn record_in_slot(&self, slot: usize) -> Option<Self::View<'_>> {
        Store::record_in_slot(self, slot)
    }
    fn owner_id(record: Self::View<'_>) -> u64 {
        record.owner_id()
    }
    fn emit_put(record: Self::View<'_>, buf: &mut [u8]) -> usize {
        let message = Message::Put(record.as_view());
        let len = message.buffer_len();
        message.emit(&mut buf[..len]);
        len
    }
}

/// One peer as replica placement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaPeer {
    /// `id_from_pubkey` of its pinned key (never 0).
    pub id: u64,
    /// Its address.
    pub addr: SocketAddr,
}

/// The peers records may be placed on (active, ID known, not judged unreliable), sorted by
/// address so equal sets compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaView {
    peers: Vec<ReplicaPeer>,
}

impl ReplicaView {
    /// A view of these peers (ID 0 dropped, sorted, deduplicated).
    pub fn new(mut peers: Vec<ReplicaPeer>) -> ReplicaView {
        peers.retain(|p| p.id != 0);
        peers.sort_unstable_by_key(|p| (p.addr, p.id));
        peers.dedup_by_key(|p| p.addr);
        ReplicaView { peers }
    }

    /// The peers records may be placed on: the snapshot's active peers not judged unreliable
    /// (what the node and the simulator hand their shards).
    pub fn of_snapshot(
        snapshot: &crate::peer::PeerSnapshot,
        trust: &crate::peer::TrustPolicy,
    ) -> ReplicaView {
        ReplicaView::of_peers(snapshot.peers().iter(), trust)
    }

    /// The peers v2 records may be placed on: as [`ReplicaView::of_snapshot`], but only the
    /// peers that advertise RECORD_V2 (v1-only peers never receive a PUT2).
    pub fn of_snapshot_v2(
        snapshot: &crate::peer::PeerSnapshot,
        trust: &crate::peer::TrustPolicy,
    ) -> ReplicaView {
        ReplicaView::of_peers(snapshot.speaking(crate::wire::Features::RECORD_V2), trust)
    }

    /// The peers v2 repair places records on while replica maintenance is by lookup: as
    /// [`ReplicaView::of_snapshot_v2`], but only the RECORD_V2 peers that do not speak ROUTING
    /// (lookups never find them).
    pub fn of_snapshot_v2_without_routing(
        snapshot: &crate::peer::PeerSnapshot,
        trust: &crate::peer::TrustPolicy,
    ) -> ReplicaView {
        let v2_only = snapshot
            .speaking(crate::wire::Features::RECORD_V2)
            .filter(|p| !p.speaks(crate::wire::Features::ROUTING));
        ReplicaView::of_peers(v2_only, trust)
    }

    /// The peers v1 repair places records on while replica maintenance is by lookup
    /// (`route::maintain`): as [`ReplicaView::of_snapshot`], but only the peers that do not
    /// speak ROUTING (lookups never find them, so without this a mixed network's v1 peers would
    /// get no repair).
    pub fn of_snapshot_v1_only(
        snapshot: &crate::peer::PeerSnapshot,
        trust: &crate::peer::TrustPolicy,
    ) -> ReplicaView {
        let v1_only = snapshot
            .peers()
            .iter()
            .filter(|p| !p.speaks(crate::wire::Features::ROUTING));
        ReplicaView::of_peers(v1_only, trust)
    }

    /// `peers` less those `trust` judges unreliable.
    fn of_peers<'a>(
        peers: impl Iterator<Item = &'a crate::peer::PeerInfo>,
        trust: &crate::peer::TrustPolicy,
    ) -> ReplicaView {
        ReplicaView::new(
            peers
                .filter(|p| !trust.is_unreliable(&p.trust))
                .map(|p| ReplicaPeer {
                    id: p.id,
                    addr: p.addr,
                })
                .collect(),
        )
    }

    /// The peers, sorted by address.
    pub fn peers(&self) -> &[ReplicaPeer] {
        &self.peers
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// No peer.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether `addr` is in the view.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.peers.binary_search_by(|p| p.addr.cmp(&addr)).is_ok()
    }

    /// Writes the `n` peers XOR-closest to `target_id` into `out` (replacing it), closest first,
    /// ties by address: the same order as `PeerSnapshot::closest`. O(peers · n).
    pub fn closest(&self, target_id: u64, n: usize, out: &mut Vec<SocketAddr>) {
        out.clear();
        let key = |p: &ReplicaPeer| (distance(p.id, target_id), p.addr);
        let mut best: Vec<&ReplicaPeer> = Vec::with_capacity(n + 1);
        for p in &self.peers {
            let at = best.partition_point(|b| key(b) < key(p));
            if at < n {
                best.insert(at, p);
                best.truncate(n);
            }
        }
        out.extend(best.iter().map(|p| p.addr));
    }
}

/// Repair timings and bounds (copied from the node's `Config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairConfig {
    /// Every record is re-sent to all of its FANOUT closest peers this often (0: never).
    pub republish_interval_ms: u64,
}

impl Default for RepairConfig {
    /// Republish every 10 minutes.
    fn default() -> Self {
        RepairConfig {
            republish_interval_ms: 600_000,
        }
    }
}

/// A walk over the slab.
#[derive(Debug, Clone)]
struct Pass {
    /// The view the records were sent against before this pass (empty for a republish).
    old: Arc<ReplicaView>,
    /// Where the current round started; the pass ends when the cursor comes back to it.
    start: usize,
    /// The next slot to look at.
    cursor: usize,
    /// The cursor went past the end of the slab and restarted at 0.
    wrapped: bool,
}

/// What one [`Repair::step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Slots looked at.
    pub slots_scanned: usize,
    /// PUT datagrams queued.
    pub datagrams: u64,
    /// Bytes of those datagrams.
    pub bytes: u64,
    /// A pass started (a view change or a republish).
    pub passes_started: u64,
    /// Of those, republishes.
    pub republishes_started: u64,
    /// A pass completed.
    pub passes_completed: u64,
    /// The step stopped because the pacer was empty.
    pub paced: bool,
}

/// The repair state of one shard. See the module docs.
#[derive(Debug)]
pub struct Repair {
    config: RepairConfig,
    /// The view every record was last sent against (when no pass runs).
    base: Arc<ReplicaView>,
    /// The newest view.
    target: Arc<ReplicaView>,
    pass: Option<Pass>,
    /// When the next republish starts (`None` until the first step sets it).
    next_republish_ms: Option<u64>,
    /// Scratch.
    new_set: Vec<SocketAddr>,
    old_set: Vec<SocketAddr>,
}

impl Repair {
    /// No peers known yet, no pass.
    pub fn new(config: RepairConfig) -> Repair {
        let empty = Arc::new(ReplicaView::default());
        Repair {
            config,
            base: Arc::clone(&empty),
            target: empty,
            pass: None,
            next_republish_ms: None,
            new_set: Vec::new(),
            old_set: Vec::new(),
        }
    }

    /// Whether a pass is running.
    pub fn is_active(&self) -> bool {
        self.pass.is_some()
    }

    /// The newest view given.
    pub fn view(&self) -> &Arc<ReplicaView> {
        &self.target
    }

    /// The peers changed. Starts a pass if the view differs from the one the records were sent
    /// against; mid-pass, aims the pass at `view` and extends it by one round from the cursor.
    /// Returns whether a new pass started.
    pub fn set_view(&mut self, view: Arc<ReplicaView>) -> bool {
        if *view == *self.target {
            return false;
        }
        self.target = view;
        match &mut self.pass {
            Some(pass) => {
                pass.start = pass.cursor;
                pass.wrapped = false;
                false
            }
            None if *self.target == *self.base => false,
            None => {
                self.pass = Some(Pass {
                    old: Arc::clone(&self.base),
                    start: 0,
                    cursor: 0,
                    wrapped: false,
                });
                true
            }
        }
    }

    /// Starts a republish now (the old view of the running pass, if any, becomes empty).
    fn start_republish(&mut self) {
        let empty = Arc::new(ReplicaView::default());
        match &mut self.pass {
            Some(pass) => {
                pass.old = empty;
                pass.start = pass.cursor;
                pass.wrapped = false;
            }
            None => {
                self.pass = Some(Pass {
                    old: empty,
                    start: 0,
                    cursor: 0,
                    wrapped: false,
                })
            }
        }
    }

    /// Advances the pass: looks at up to `*scan_budget` slots (decremented), queueing PUTs that
    /// `pacer` can cover into `out`. `remember(peer, record)` is told of each send (challenge
    /// sampling). Starts a republish when due (the first call schedules it at a random point of
    /// the interval, so shards and nodes do not republish in step).
    #[allow(clippy::too_many_arguments)]
    pub fn step<R: Rng + ?Sized, S: RepairStore>(
        &mut self,
        now_ms: u64,
        store: &S,
        fanout: usize,
        pacer: &mut Pacer,
        scan_budget: &mut usize,
        rng: &mut R,
        out: &mut crate::outbox::Outbox,
        mut remember: impl FnMut(SocketAddr, S::View<'_>),
    ) -> StepReport {
        let mut buf = [0u8; MAX_REPAIR_DATAGRAM_LEN];
        let mut report = StepReport::default();
        let interval = self.config.republish_interval_ms;
        if interval > 0 {
            match self.next_republish_ms {
                None => {
                    self.next_republish_ms =
                        Some(now_ms.saturating_add(rng.gen_range(interval / 2..=interval)));
                }
                Some(due) if now_ms >= due => {
                    self.next_republish_ms = Some(now_ms.saturating_add(interval));
                    if !store.is_empty() {
                        let fresh = self.pass.is_none();
                        self.start_republish();
                        report.passes_started += fresh as u64;
                        report.republishes_started += 1;
                    }
                }
                Some(_) => {}
            }
        }
        let Some(mut pass) = self.pass.take() else {
            return report;
        };
        if store.is_empty() {
            // Nothing to send: the (empty) store is in step with the newest view.
            self.base = Arc::clone(&self.target);
            report.passes_completed += 1;
            return report;
        }
        let slots = store.slot_count();
        loop {
            if pass.wrapped && pass.cursor >= pass.start {
                self.base = Arc::clone(&self.target);
                report.passes_completed += 1;
                return report;
            }
            if pass.cursor >= slots {
                pass.cursor = 0;
                pass.wrapped = true;
                continue;
            }
            if *scan_budget == 0 {
                break;
            }
            let Some(record) = store.record_in_slot(pass.cursor) else {
                pass.cursor += 1;
                *scan_budget -= 1;
                report.slots_scanned += 1;
                continue;
            };
            let owner = S::owner_id(record);
            self.target.closest(owner, fanout, &mut self.new_set);
            pass.old.closest(owner, fanout, &mut self.old_set);
            let old_set = &self.old_set;
            self.new_set.retain(|a| !old_set.contains(a));
            if !self.new_set.is_empty() {
                let len = S::emit_put(record, &mut buf);
                let bytes = len as u64 * self.new_set.len() as u64;
                if !pacer.try_take(now_ms, bytes) {
                    report.paced = true;
                    break;
                }
                for &to in &self.new_set {
                    out.push_bytes(to, &buf[..len]);
                    remember(to, record);
                }
                report.datagrams += self.new_set.len() as u64;
                report.bytes += bytes;
            }
            pass.cursor += 1;
            *scan_budget -= 1;
            report.slots_scanned += 1;
        }
        self.pass = Some(pass);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Outbox;
    use crate::peer::budget::BucketConfig;
    use crate::shard::store::StoreConfig;
    use crate::wire::DatFields;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn peer(id: u64, host: u8) -> ReplicaPeer {
        ReplicaPeer {
            id,
            addr: SocketAddr::from(([10, 0, 0, host], 1)),
        }
    }

    fn store_with(owner_ids: &[u64]) -> Store {
        let mut store = Store::new(StoreConfig {
            capacity_bytes: 1 << 20,
            ttl_ms: i64::MAX / 4,
            node_id: 0,
        });
        for (i, &id) in owner_ids.iter().enumerate() {
            let mut pubkey = [0u8; 32];
            pubkey[..8].copy_from_slice(&id.to_le_bytes());
            let mut f = DatFields::not_found(pubkey, b"k");
            f.time_ms = 1;
            f.work[0] = i as u8 + 1; // distinct work per record
            f.sig[0] = 1;
            store.insert(f.to_dat(), 0).expect("insert");
        }
        store
    }

    fn unlimited() -> Pacer {
        Pacer::new(
            BucketConfig {
                burst_bytes: u64::MAX / 2000,
                refill_bytes_per_s: 0,
            },
            0,
        )
    }

    fn run(
        repair: &mut Repair,
        store: &Store,
        pacer: &mut Pacer,
        now_ms: u64,
        scan: usize,
    ) -> (StepReport, Vec<SocketAddr>) {
        let mut rng = StdRng::seed_from_u64(0);
        let mut out = Outbox::new();
        let mut budget = scan;
        let report = repair.step(
            now_ms,
            store,
            3,
            pacer,
            &mut budget,
            &mut rng,
            &mut out,
            |_, _| {},
        );
        (report, out.iter().map(|(to, _)| to).collect())
    }

    fn no_republish() -> RepairConfig {
        RepairConfig {
            republish_interval_ms: 0,
        }
    }

    #[test]
    fn closest_matches_xor_order_with_address_ties() {
        let view = ReplicaView::new(vec![
            peer(0b0111, 5),
            peer(0b1000, 1),
            peer(0b0011, 4),
            peer(0b0011, 3),
            peer(0, 9),
        ]);
        assert_eq!(view.len(), 4);
        let mut out = Vec::new();
        view.closest(0b0010, 3, &mut out);
        assert_eq!(out, vec![peer(3, 3).addr, peer(3, 4).addr, peer(7, 5).addr]);
        view.closest(0b0010, 0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_leaving_replica_sends_each_affected_record_to_the_next_in_line() {
        let store = store_with(&[0x10, 0x20, 0xF0]);
        let mut repair = Repair::new(no_republish());
        let mut pacer = unlimited();
        // Ids 0x11, 0x12, 0x13 closest to 0x10/0x20; 0xF1.. closest to 0xF0.
        let all = vec![
            peer(0x11, 1),
            peer(0x12, 2),
            peer(0x13, 3),
            peer(0x14, 4),
            peer(0xF1, 5),
        ];
        assert!(repair.set_view(Arc::new(ReplicaView::new(all.clone()))));
        // First view: every record goes to its three closest (base was empty).
        let (r, sent) = run(&mut repair, &store, &mut pacer, 0, 100);
        assert_eq!(r.passes_completed, 1);
        assert_eq!(sent.len(), 9);
        assert!(!repair.is_active());
        // Peer 0x11 leaves: records 0x10 and 0x20 had {0x11, 0x12, 0x13} and get 0x14, the next
        // in line; 0xF0 had {0xF1, 0x11, 0x12} and gets 0x13.
        let without: Vec<_> = all.iter().copied().filter(|p| p.id != 0x11).collect();
        assert!(repair.set_view(Arc::new(ReplicaView::new(without.clone()))));
        let (r, sent) = run(&mut repair, &store, &mut pacer, 1, 100);
        assert_eq!(r.passes_completed, 1);
        let mut sent = sent;
        sent.sort();
        assert_eq!(
            sent,
            vec![peer(0x13, 3).addr, peer(0x14, 4).addr, peer(0x14, 4).addr]
        );
        // The same view again changes nothing.
        assert!(!repair.set_view(Arc::new(ReplicaView::new(without))));
        let (r, sent) = run(&mut repair, &store, &mut pacer, 2, 100);
        assert_eq!((r, sent.len()), (StepReport::default(), 0));
    }

    #[test]
    fn pacing_and_scan_bounds_spread_a_pass_over_steps() {
        let ids: Vec<u64> = (1..=20).map(|i| i << 8).collect();
        let store = store_with(&ids);
        let mut repair = Repair::new(no_republish());
        let put_len = 3 + 155 + 1; // PUT of a dat with a 1-byte key, no value
        let mut pacer = Pacer::new(
            BucketConfig {
                burst_bytes: 3 * put_len,
                refill_bytes_per_s: 3 * put_len * 1000, // one record's sends per ms
            },
            0,
        );
        repair.set_view(Arc::new(ReplicaView::new(vec![
            peer(1, 1),
            peer(2, 2),
            peer(3, 3),
        ])));
        let (r, sent) = run(&mut repair, &store, &mut pacer, 0, 100);
        assert!(r.paced);
        assert_eq!(sent.len(), 3, "one record's worth of burst");
        let mut total = sent.len();
        let mut now = 0;
        while repair.is_active() {
            now += 1;
            let (r, sent) = run(&mut repair, &store, &mut pacer, now, 100);
            assert!(r.bytes <= 3 * put_len);
            total += sent.len();
            assert!(now < 100);
        }
        assert_eq!(total, 60);
        // Scan budget: at most that many slots per step.
        let mut repair = Repair::new(no_republish());
        repair.set_view(Arc::new(ReplicaView::new(vec![peer(1, 1)])));
        let (r, _) = run(&mut repair, &store, &mut unlimited(), 0, 7);
        assert_eq!(r.slots_scanned, 7);
        assert!(repair.is_active());
    }

    #[test]
    fn a_change_mid_pass_goes_round_once_more_from_the_cursor() {
        let ids: Vec<u64> = (1..=10).map(|i| i << 8).collect();
        let store = store_with(&ids);
        let mut repair = Repair::new(no_republish());
        let mut pacer = unlimited();
        repair.set_view(Arc::new(ReplicaView::new(vec![peer(1, 1)])));
        let (_, sent) = run(&mut repair, &store, &mut pacer, 0, 4);
        assert_eq!(sent.len(), 4);
        // A second peer appears: old stays empty, so the rest of the slab goes to both, and the
        // first four records (sent to peer 1 only) get peer 2 on the next round.
        repair.set_view(Arc::new(ReplicaView::new(vec![peer(1, 1), peer(2, 2)])));
        let (r, sent) = run(&mut repair, &store, &mut pacer, 1, 100);
        assert_eq!(r.passes_completed, 1);
        assert_eq!(sent.len(), 20);
        let to_two = sent.iter().filter(|&&a| a == peer(2, 2).addr).count();
        assert_eq!(to_two, 10, "every record reached the new peer");
    }

    #[test]
    fn republish_resends_everything_at_the_interval() {
        let store = store_with(&[1 << 8, 2 << 8]);
        let mut repair = Repair::new(RepairConfig {
            republish_interval_ms: 1000,
        });
        let mut pacer = unlimited();
        repair.set_view(Arc::new(ReplicaView::new(vec![peer(1, 1), peer(2, 2)])));
        let (r, sent) = run(&mut repair, &store, &mut pacer, 0, 100);
        assert_eq!((r.passes_completed, sent.len()), (1, 4));
        // Scheduled between 500 and 1000 ms: by 1000 it has run once.
        let mut republished = 0;
        for now in 1..=1000 {
            let (r, sent) = run(&mut repair, &store, &mut pacer, now, 100);
            republished += r.republishes_started;
            if r.republishes_started > 0 {
                assert_eq!(sent.len(), 4);
            }
        }
        assert_eq!(republished, 1);
    }
}
