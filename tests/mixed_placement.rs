//! A record that a v1 peer (one that does not speak ROUTING, such as the Go reference) sent us
//! was placed on the closest peers that peer knows, not on the closest a lookup finds: its copy
//! is marked Unplaced, due for a republish lookup at once, so replica maintenance moves it to
//! where dave nodes' lookups look. So is a record from an address that is not an active peer of
//! ours (tables are not symmetric: a v1 sender may not be in ours) when this node is not among
//! the FANOUT closest to its owner that it knows of. A record from a peer that speaks ROUTING,
//! or from a stranger when this node is among the closest, keeps the usual Holder standing,
//! unless that stranger is a proven address whose PONG advertised no ROUTING (a v1 node that
//! pinged a full table, `peer::prover`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use dave::keys::Keypair;
use dave::peer::{PeerSnapshot, SnapshotView};
use dave::pow::SignatureCheck;
use dave::route::maintain::Standing;
use dave::shard::core::{Effects, PeerView, Record, Shard, ShardRules};
use dave::shard::maintain::MaintainedStore;
use dave::shard::store::{Store, StoreConfig};
use dave::stats::Counters;

const NOW: i64 = 1_700_000_000_000;

/// Three active peers: `V1` speaks v1 only, `DAVE` and `DAVE2` speak ROUTING; `STRANGER` is
/// not an active peer. Every peer's ID is `peer_distance` away from the owner's.
struct Mixed {
    owner_id: u64,
    peer_distance: u64,
}

const V1: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1618);
const DAVE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 1618);
const DAVE2: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)), 1618);
const STRANGER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 4)), 1618);

impl PeerView for Mixed {
    fn closest(
        &self,
        _target: u64,
        n: usize,
        exclude: Option<SocketAddr>,
        out: &mut Vec<SocketAddr>,
    ) {
        out.extend(
            [V1, DAVE, DAVE2]
                .into_iter()
                .filter(|a| Some(*a) != exclude)
                .take(n),
        );
    }

    fn places_one_hop(&self, addr: SocketAddr) -> bool {
        addr == V1
    }

    fn is_active(&self, addr: SocketAddr) -> bool {
        addr != STRANGER
    }

    fn id_of(&self, addr: SocketAddr) -> Option<u64> {
        (addr != STRANGER).then_some(self.owner_id ^ self.peer_distance)
    }
}

fn standing_of(store: &Store, key: &[u8]) -> Option<Standing> {
    (0..store.slot_count())
        .find(|&slot| store.record_in_slot(slot).is_some_and(|r| r.key() == key))
        .and_then(|slot| store.copy_in_slot(slot))
        .map(|copy| copy.standing())
}

/// A shard of the node `node_id`, its copies tracked (replica maintenance on) or not.
fn shard(node_id: u64, tracked: bool) -> Shard<u32> {
    let mut store = Store::new(StoreConfig {
        capacity_bytes: 1 << 20,
        ttl_ms: i64::MAX / 4,
        node_id,
    });
    if tracked {
        store.track_copies();
    }
    let rules = ShardRules {
        min_work_bits: 4,
        fanout: 3,
        signature_check: SignatureCheck::Single,
        get_settle_ms: 50,
    };
    Shard::new(store, rules)
}

/// Stores one record per `(sender, key)` in a shard of node `node_id` among peers
/// `peer_distance` from the owner; returns each key's standing.
fn standings(
    node_id_distance: u64,
    peer_distance: u64,
    tracked: bool,
    puts: &[(SocketAddr, &[u8])],
) -> Vec<Option<Standing>> {
    let owner = Keypair::generate();
    let view = Mixed {
        owner_id: owner.id(),
        peer_distance,
    };
    store_all(&owner, owner.id() ^ node_id_distance, tracked, &view, puts)
}

/// Stores one record of `owner` per `(sender, key)` in a shard of node `node_id` that sees the
/// peers through `view`; returns each key's standing.
fn store_all(
    owner: &Keypair,
    node_id: u64,
    tracked: bool,
    view: &dyn PeerView,
    puts: &[(SocketAddr, &[u8])],
) -> Vec<Option<Standing>> {
    let mut shard = shard(node_id, tracked);
    let mut batch: Vec<(SocketAddr, Record)> = puts
        .iter()
        .map(|&(from, key)| {
            let dat = dave::pow::make_dat_single(owner, key, b"value", NOW - 1_000, 4);
            (from, dat)
        })
        .collect();
    let counters = Counters::default();
    let mut effects = Effects::default();
    let mut keys = dave::pow::KeyCache::new(16, 0);
    shard.handle_puts(NOW, &mut batch, view, &mut keys, &counters, &mut effects);
    let store = shard.store().read();
    for (_, key) in puts {
        assert!(store.get(&owner.public(), key).is_some(), "stored");
    }
    puts.iter()
        .map(|(_, key)| standing_of(&store, key))
        .collect()
}

#[test]
fn a_record_from_a_v1_peer_is_due_for_a_lookup_and_one_from_a_dave_peer_is_not() {
    // Every peer is closer to the owner than we are: we are not a replica.
    let got = standings(1 << 40, 1, true, &[(V1, b"from-v1"), (DAVE, b"from-dave")]);
    assert_eq!(got, [Some(Standing::Unplaced), Some(Standing::Holder)]);
    // A v1 sender's record is Unplaced even when we are among the closest: it was placed by
    // the sender's view, which only a lookup can check.
    let got = standings(1, 1 << 40, true, &[(V1, b"from-v1")]);
    assert_eq!(got, [Some(Standing::Unplaced)]);
}

#[test]
fn a_record_from_a_stranger_is_due_for_a_lookup_only_when_we_are_not_among_the_closest() {
    let got = standings(1 << 40, 1, true, &[(STRANGER, b"k")]);
    assert_eq!(
        got,
        [Some(Standing::Unplaced)],
        "three peers closer than us"
    );
    let got = standings(1, 1 << 40, true, &[(STRANGER, b"k")]);
    assert_eq!(got, [Some(Standing::Holder)], "we are the closest");
}

#[test]
fn without_copy_tracking_nothing_is_marked() {
    let got = standings(1 << 40, 1, false, &[(V1, b"from-v1"), (STRANGER, b"k")]);
    assert_eq!(got, [None, None], "no copy states kept");
}

#[test]
fn a_record_from_a_proven_v1_stranger_is_due_for_a_lookup_even_when_we_are_the_closest() {
    // The node's own view (`SnapshotView`): no active peer, so this node is the closest it
    // knows. A stranger it proved (it pinged a full table, `peer::prover`) whose PONG advertised
    // no ROUTING is a v1 node: it placed the record by its own table, which only a lookup can
    // check. Another stranger keeps the usual Holder standing.
    let owner = Keypair::generate();
    let snapshot = PeerSnapshot::new(Vec::new()).with_one_hop_strangers(vec![V1]);
    let view = SnapshotView(&snapshot);
    let puts: [(SocketAddr, &[u8]); 2] = [(V1, b"from-v1-stranger"), (STRANGER, b"k")];
    let got = store_all(&owner, owner.id() ^ 1, true, &view, &puts);
    assert_eq!(got, [Some(Standing::Unplaced), Some(Standing::Holder)]);
}
