//! Local gets in the shard core when the node already holds the record: a replica (among the
//! FANOUT closest to the owner, so it receives the owner's PUTs) answers from its store; any
//! other node asks the closest peers with its copy as the best answer so far, so an update it
//! never received is still found, and "not found" from the peers never hides the copy.

use std::net::SocketAddr;

use dave::keys::{Keypair, id_from_pubkey};
use dave::pow::SignatureCheck;
use dave::shard::core::{Effects, GetOutcome, GetRequest, PeerView, Record, Shard, ShardRules};
use dave::shard::store::{Store, StoreConfig};
use dave::stats::{Counters, Stats};
use dave::wire::{DatFields, Message};

const NOW: i64 = 1_700_000_000_000;

/// Active peers with fixed IDs, all unscored (plain XOR order).
struct Peers(Vec<(SocketAddr, u64)>);

impl PeerView for Peers {
    fn closest(
        &self,
        target: u64,
        n: usize,
        exclude: Option<SocketAddr>,
        out: &mut Vec<SocketAddr>,
    ) {
        let mut v: Vec<_> = self
            .0
            .iter()
            .filter(|(a, _)| Some(*a) != exclude)
            .map(|&(a, id)| (id ^ target, a))
            .collect();
        v.sort();
        out.extend(v.into_iter().take(n).map(|(_, a)| a));
    }

    fn id_of(&self, addr: SocketAddr) -> Option<u64> {
        self.0.iter().find(|(a, _)| *a == addr).map(|&(_, id)| id)
    }
}

fn sa(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 1618))
}

/// Peers 1..=n at XOR distance 1..=n from `owner_id`.
fn peers_near(owner_id: u64, n: u8) -> Peers {
    Peers((1..=n).map(|i| (sa(i), owner_id ^ u64::from(i))).collect())
}

fn shard(node_id: u64) -> Shard<u32> {
    let store = Store::new(StoreConfig {
        capacity_bytes: 1 << 20,
        ttl_ms: i64::MAX / 4,
        node_id,
    });
    Shard::new(
        store,
        ShardRules {
            min_work_bits: 4,
            fanout: 3,
            signature_check: SignatureCheck::Single,
            get_settle_ms: 50,
        },
    )
}

fn record(owner: &Keypair, value: &[u8], time_ms: i64) -> Record {
    dave::pow::make_dat_single(owner, b"k", value, time_ms, 4)
}

fn stats(c: &Counters) -> Stats {
    let mut s = Stats::default();
    s.add(c);
    s
}

fn get(s: &mut Shard<u32>, owner: &Keypair, peers: &dyn PeerView, c: &Counters) -> Effects<u32> {
    let mut fx = Effects::default();
    let request = GetRequest {
        pubkey: owner.public(),
        key: b"k",
        timeout_ms: 1_000,
        waiter: 7,
    };
    s.start_get(0, request, peers, c, &mut fx);
    fx
}

/// The addresses a GET for the owner's "k" went to.
fn gets_sent(fx: &Effects<u32>, owner: &Keypair) -> Vec<SocketAddr> {
    fx.outbox
        .iter()
        .map(|(to, bytes)| match Message::parse(bytes).expect("parse") {
            Message::Get(g) if *g.pubkey == owner.public() && g.key == b"k" => to,
            other => panic!("sent {other:?}"),
        })
        .collect()
}

fn found(fx: &Effects<u32>) -> &Record {
    match fx.completions.as_slice() {
        [(7, GetOutcome::Found(d))] => d,
        other => panic!("completions {other:?}"),
    }
}

fn not_found(owner: &Keypair) -> Record {
    DatFields::not_found(owner.public(), b"k").to_dat()
}

#[test]
fn a_non_replica_with_an_old_copy_asks_the_peers_and_returns_the_newer_version() {
    let owner = Keypair::generate();
    let owner_id = id_from_pubkey(&owner.public());
    // Three peers closer to the owner than this node: it is not a replica.
    let peers = peers_near(owner_id, 4);
    let mut s = shard(owner_id ^ (1 << 60));
    let c = Counters::default();
    let old = record(&owner, b"old", NOW - 10_000);
    let new = record(&owner, b"new", NOW - 100);
    s.restore(old.to_boxed(), NOW).expect("stored");

    let fx = get(&mut s, &owner, &peers, &c);
    assert!(fx.completions.is_empty(), "not answered from the store");
    assert_eq!(gets_sent(&fx, &owner), vec![sa(1), sa(2), sa(3)]);
    let st = stats(&c);
    assert_eq!((st.local_gets_held_asked, st.gets_sent), (1, 3));

    // One peer has the update, one the old version, one nothing.
    let mut fx = Effects::default();
    s.handle_get_ack(1, NOW, sa(2), new.to_boxed(), &c, &mut fx);
    s.handle_get_ack(2, NOW, sa(1), old.to_boxed(), &c, &mut fx);
    assert!(fx.completions.is_empty());
    s.handle_get_ack(3, NOW, sa(3), not_found(&owner), &c, &mut fx);
    assert_eq!(found(&fx).as_bytes(), new.as_bytes());
    // The update is kept, so the node's copy is current again.
    let held = s
        .store()
        .read()
        .get(&owner.public(), b"k")
        .map(|d| d.to_boxed());
    assert_eq!(held.expect("held").as_bytes(), new.as_bytes());
    let st = stats(&c);
    assert_eq!(
        (
            st.local_gets_found,
            st.local_gets_not_found,
            st.local_gets_timed_out
        ),
        (1, 0, 0)
    );
}

#[test]
fn not_found_or_silence_from_the_peers_never_hides_the_held_copy() {
    let owner = Keypair::generate();
    let owner_id = id_from_pubkey(&owner.public());
    let peers = peers_near(owner_id, 3);
    let mut s = shard(owner_id ^ (1 << 60));
    let c = Counters::default();
    let held = record(&owner, b"held", NOW - 100);
    s.restore(held.to_boxed(), NOW).expect("stored");

    // Every asked peer says "not found": the held copy is the answer.
    let fx = get(&mut s, &owner, &peers, &c);
    assert_eq!(gets_sent(&fx, &owner).len(), 3);
    let mut fx = Effects::default();
    for i in 1..=3 {
        s.handle_get_ack(1, NOW, sa(i), not_found(&owner), &c, &mut fx);
    }
    assert_eq!(found(&fx).as_bytes(), held.as_bytes());

    // Nobody answers: at the deadline the held copy, not "timed out".
    let fx = get(&mut s, &owner, &peers, &c);
    assert_eq!(gets_sent(&fx, &owner).len(), 3);
    let mut fx = Effects::default();
    s.tick_gets(999, NOW, &c, &mut fx);
    assert!(fx.completions.is_empty());
    s.tick_gets(1_000, NOW, &c, &mut fx);
    assert_eq!(found(&fx).as_bytes(), held.as_bytes());

    // An older version from a peer does not replace it.
    let fx = get(&mut s, &owner, &peers, &c);
    assert_eq!(gets_sent(&fx, &owner).len(), 3);
    let mut fx = Effects::default();
    let older = record(&owner, b"older", NOW - 5_000);
    s.handle_get_ack(1, NOW, sa(1), older, &c, &mut fx);
    s.handle_get_ack(2, NOW, sa(2), not_found(&owner), &c, &mut fx);
    s.handle_get_ack(3, NOW, sa(3), not_found(&owner), &c, &mut fx);
    assert_eq!(found(&fx).as_bytes(), held.as_bytes());

    let st = stats(&c);
    assert_eq!(st.local_gets_held_asked, 3);
    assert_eq!(
        (
            st.local_gets_found,
            st.local_gets_not_found,
            st.local_gets_timed_out
        ),
        (3, 0, 0)
    );
}

#[test]
fn a_replica_answers_from_its_store_without_sending() {
    let owner = Keypair::generate();
    let owner_id = id_from_pubkey(&owner.public());
    // Peers at distance 1, 3, 4, 5; this node at 2: only one peer is closer, so it is among the
    // FANOUT (3) closest.
    let peers = Peers(
        [1u64, 3, 4, 5]
            .iter()
            .zip(1u8..)
            .map(|(&d, i)| (sa(i), owner_id ^ d))
            .collect(),
    );
    let mut s = shard(owner_id ^ 2);
    let c = Counters::default();
    let held = record(&owner, b"held", NOW - 100);
    s.restore(held.to_boxed(), NOW).expect("stored");

    let fx = get(&mut s, &owner, &peers, &c);
    assert!(fx.outbox.is_empty(), "nothing sent");
    assert_eq!(found(&fx).as_bytes(), held.as_bytes());
    let st = stats(&c);
    assert_eq!(
        (st.local_gets_found, st.local_gets_held_asked, st.gets_sent),
        (1, 0, 0)
    );

    // The owner's own node (distance 0) is always a replica, however many peers it has.
    let mut s = shard(owner_id);
    s.restore(held.to_boxed(), NOW).expect("stored");
    let fx = get(&mut s, &owner, &peers_near(owner_id, 10), &c);
    assert!(fx.outbox.is_empty());
    assert_eq!(found(&fx).as_bytes(), held.as_bytes());

    // Fewer active peers than FANOUT: every node is among the closest.
    let mut s = shard(owner_id ^ (1 << 60));
    s.restore(held.to_boxed(), NOW).expect("stored");
    let fx = get(&mut s, &owner, &peers_near(owner_id, 2), &c);
    assert!(fx.outbox.is_empty());
    assert_eq!(found(&fx).as_bytes(), held.as_bytes());

    // No peers at all: the held copy.
    let fx = get(&mut s, &owner, &Peers(Vec::new()), &c);
    assert!(fx.outbox.is_empty());
    assert_eq!(found(&fx).as_bytes(), held.as_bytes());
}

#[test]
fn peers_of_unknown_id_count_as_closer() {
    // A view that knows no IDs (the trait's default): the node cannot tell it is a replica, so
    // it asks.
    struct NoIds;
    impl PeerView for NoIds {
        fn closest(&self, _: u64, n: usize, _: Option<SocketAddr>, out: &mut Vec<SocketAddr>) {
            out.extend((1..=5u8).take(n).map(sa));
        }
    }
    let owner = Keypair::generate();
    let mut s = shard(id_from_pubkey(&owner.public()) ^ 1);
    let c = Counters::default();
    s.restore(record(&owner, b"held", NOW - 100), NOW)
        .expect("stored");
    let fx = get(&mut s, &owner, &NoIds, &c);
    assert_eq!(gets_sent(&fx, &owner).len(), 3);
    assert!(fx.completions.is_empty());
}
