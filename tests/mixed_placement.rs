//! A record that a v1 peer (one that does not speak ROUTING, such as the Go reference) sent us
//! was placed on the closest peers that peer knows, not on the closest a lookup finds: its copy
//! is marked Unplaced, due for a republish lookup at once, so replica maintenance moves it to
//! where dave nodes' lookups look. A record from a peer that speaks ROUTING keeps the usual
//! Holder standing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use dave::keys::Keypair;
use dave::pow::SignatureCheck;
use dave::route::maintain::Standing;
use dave::shard::core::{Effects, PeerView, Record, Shard, ShardRules};
use dave::shard::maintain::MaintainedStore;
use dave::shard::store::{Store, StoreConfig};
use dave::stats::Counters;

const NOW: i64 = 1_700_000_000_000;

/// Two peers: `V1` speaks v1 only, `DAVE` speaks ROUTING.
struct Mixed;

const V1: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1618);
const DAVE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 1618);

impl PeerView for Mixed {
    fn closest(
        &self,
        _target: u64,
        n: usize,
        exclude: Option<SocketAddr>,
        out: &mut Vec<SocketAddr>,
    ) {
        out.extend(
            [V1, DAVE]
                .into_iter()
                .filter(|a| Some(*a) != exclude)
                .take(n),
        );
    }

    fn places_one_hop(&self, addr: SocketAddr) -> bool {
        addr == V1
    }
}

fn standing_of(store: &Store, key: &[u8]) -> Option<Standing> {
    (0..store.slot_count())
        .find(|&slot| store.record_in_slot(slot).is_some_and(|r| r.key() == key))
        .and_then(|slot| store.copy_in_slot(slot))
        .map(|copy| copy.standing())
}

fn shard() -> Shard<u32> {
    let store = Store::new(StoreConfig {
        capacity_bytes: 1 << 20,
        ttl_ms: i64::MAX / 4,
        node_id: 0,
    });
    let rules = ShardRules {
        min_work_bits: 4,
        fanout: 3,
        signature_check: SignatureCheck::Single,
        get_settle_ms: 50,
    };
    Shard::new(store, rules)
}

#[test]
fn a_record_from_a_v1_peer_is_due_for_a_lookup_and_one_from_a_dave_peer_is_not() {
    let mut shard = shard();
    shard.store().write().track_copies();
    let owner = Keypair::generate();
    let record = |key: &[u8]| -> Record {
        dave::pow::make_dat_single(&owner, key, b"value", NOW - 1_000, 4)
    };
    let mut batch = vec![(V1, record(b"from-v1")), (DAVE, record(b"from-dave"))];
    let counters = Counters::default();
    let mut effects = Effects::default();
    let mut keys = dave::pow::KeyCache::new(16, 0);
    shard.handle_puts(NOW, &mut batch, &Mixed, &mut keys, &counters, &mut effects);

    let store = shard.store().read();
    assert_eq!(standing_of(&store, b"from-v1"), Some(Standing::Unplaced));
    assert_eq!(standing_of(&store, b"from-dave"), Some(Standing::Holder));
}

#[test]
fn without_copy_tracking_nothing_is_marked() {
    let mut shard = shard();
    let owner = Keypair::generate();
    let dat = dave::pow::make_dat_single(&owner, b"from-v1", b"value", NOW - 1_000, 4);
    let mut batch = vec![(V1, dat)];
    let counters = Counters::default();
    let mut effects = Effects::default();
    let mut keys = dave::pow::KeyCache::new(16, 0);
    shard.handle_puts(NOW, &mut batch, &Mixed, &mut keys, &counters, &mut effects);
    let store = shard.store().read();
    assert!(store.get(&owner.public(), b"from-v1").is_some(), "stored");
    assert_eq!(standing_of(&store, b"from-v1"), None, "no copy states kept");
}
