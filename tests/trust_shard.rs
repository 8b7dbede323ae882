//! The shard core's trust features on one thread, through its public API: challenges ride the
//! GET_ACK path next to local gets, outcomes come out as effects, scores steer targets, and a
//! scored-unreliable sender's PUTs are stored but not forwarded.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use dave::keys::Keypair;
use dave::peer::{ScoredPeer, Trust};
use dave::pow::SignatureCheck;
use dave::shard::challenge::{ChallengeConfig, Verdict};
use dave::shard::core::{
    Effects, GetOutcome, GetRequest, PeerView, Record, Shard, ShardPolicy, ShardRules,
};
use dave::shard::store::{Store, StoreConfig};
use dave::stats::{Counters, Stats};
use dave::wire::{DatFields, Message};

const NOW: i64 = 1_700_000_000_000;

/// Peers with fixed trust records; ids chosen per test.
struct Peers(BTreeMap<SocketAddr, (u64, Trust)>);

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
            .filter(|(a, _)| Some(**a) != exclude)
            .map(|(a, (id, _))| (id ^ target, *a))
            .collect();
        v.sort();
        out.extend(v.into_iter().take(n).map(|(_, a)| a));
    }

    fn closest_scored(
        &self,
        target: u64,
        n: usize,
        exclude: Option<SocketAddr>,
        out: &mut Vec<ScoredPeer>,
    ) {
        let mut addrs = Vec::new();
        self.closest(target, n, exclude, &mut addrs);
        out.extend(addrs.into_iter().map(|addr| ScoredPeer {
            addr,
            trust: self.0[&addr].1,
        }));
    }

    fn trust_of(&self, addr: SocketAddr) -> Option<Trust> {
        self.0.get(&addr).map(|p| p.1)
    }

    fn is_active(&self, addr: SocketAddr) -> bool {
        self.0.contains_key(&addr)
    }
}

fn sa(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 1618))
}

fn shard(sample: f64) -> Shard<u32> {
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
    let policy = ShardPolicy {
        challenge: ChallengeConfig {
            sample_probability: sample,
            ..ChallengeConfig::default()
        },
        ..ShardPolicy::default()
    };
    Shard::new(store, rules).with_policy(policy, 42)
}

fn record(owner: &Keypair, key: &[u8], time_ms: i64) -> Record {
    dave::pow::make_dat_single(owner, key, b"value", time_ms, 4)
}

fn sent(effects: &Effects<u32>) -> Vec<(SocketAddr, Vec<u8>)> {
    effects
        .outbox
        .iter()
        .map(|(to, bytes)| (to, bytes.to_vec()))
        .collect()
}

fn stats(c: &Counters) -> Stats {
    let mut s = Stats::default();
    s.add(c);
    s
}

fn honest(ids: &[(u8, u64)]) -> Peers {
    Peers(
        ids.iter()
            .map(|&(i, id)| (sa(i), (id, Trust::default())))
            .collect(),
    )
}

#[test]
fn a_challenge_is_scored_through_the_get_ack_path() {
    let mut s = shard(1.0);
    let peers = honest(&[(1, 1), (2, 2), (3, 3)]);
    let counters = Counters::default();
    let mut fx = Effects::default();
    let owner = Keypair::generate();
    let dat = record(&owner, b"k", NOW - 100);
    let to = s
        .local_put(NOW, dat.to_boxed(), &peers, &counters, &mut fx)
        .expect("stored");
    assert_eq!(to.len(), 3);
    assert_eq!(
        s.challenge_counts(),
        (3, 0),
        "every send remembered at p = 1"
    );
    fx.clear();

    // Too young to challenge; then one GET goes out.
    assert!(!s.issue_challenge(NOW + 500, &peers, &counters, &mut fx));
    assert!(s.issue_challenge(NOW + 1_000, &peers, &counters, &mut fx));
    let out = sent(&fx);
    assert_eq!(out.len(), 1);
    let (challenged, bytes) = &out[0];
    match Message::parse(bytes).expect("parse") {
        Message::Get(get) => {
            assert_eq!(*get.pubkey, owner.public());
            assert_eq!(get.key, b"k");
        }
        other => panic!("sent {other:?}"),
    }
    fx.clear();

    // The same record from a peer we did not ask: unsolicited, nothing scored.
    let other = [sa(1), sa(2), sa(3)]
        .into_iter()
        .find(|a| a != challenged)
        .expect("another peer");
    s.handle_get_ack(0, NOW + 1_100, other, dat.to_boxed(), &counters, &mut fx);
    assert!(fx.challenge_outcomes.is_empty());
    assert_eq!(stats(&counters).get_acks_unsolicited, 1);

    // The challenged peer answers with the record: success.
    s.handle_get_ack(
        0,
        NOW + 1_100,
        *challenged,
        dat.to_boxed(),
        &counters,
        &mut fx,
    );
    assert_eq!(fx.challenge_outcomes.len(), 1);
    assert_eq!(fx.challenge_outcomes[0].peer, *challenged);
    assert_eq!(fx.challenge_outcomes[0].verdict, Verdict::Success);
    let st = stats(&counters);
    assert_eq!((st.challenges_sent, st.challenges_succeeded), (1, 1));
    assert_eq!(st.get_acks_unsolicited, 1);
    fx.clear();

    // Next: "not found" is a failure; silence is a failure at the deadline.
    assert!(s.issue_challenge(NOW + 3_000, &peers, &counters, &mut fx));
    let (peer, _) = sent(&fx)[0].clone();
    fx.clear();
    let nf = DatFields::not_found(owner.public(), b"k").to_dat();
    s.handle_get_ack(0, NOW + 3_100, peer, nf, &counters, &mut fx);
    assert_eq!(fx.challenge_outcomes[0].verdict, Verdict::NotFound);
    fx.clear();
    assert!(s.issue_challenge(NOW + 5_000, &peers, &counters, &mut fx));
    fx.clear();
    s.tick(0, NOW + 8_000, &counters, &mut fx);
    assert_eq!(fx.challenge_outcomes.len(), 1);
    assert_eq!(fx.challenge_outcomes[0].verdict, Verdict::TimedOut);
    let st = stats(&counters);
    assert_eq!(st.challenges_failed_not_found, 1);
    assert_eq!(st.challenges_failed_timeout, 1);
}

#[test]
fn one_answer_serves_a_local_get_and_a_challenge() {
    let mut s = shard(1.0);
    let peers = honest(&[(1, 1), (2, 2), (3, 3)]);
    let counters = Counters::default();
    let mut fx = Effects::default();
    let owner = Keypair::generate();
    // Remember a challenge for a record, then lose the record locally (as if evicted) so a local
    // get goes to the network too.
    let dat = record(&owner, b"both", NOW - 100);
    s.local_put(NOW, dat.to_boxed(), &peers, &counters, &mut fx)
        .expect("stored");
    s.store().write().remove(&owner.public(), b"both");
    fx.clear();
    assert!(s.issue_challenge(NOW + 1_000, &peers, &counters, &mut fx));
    let challenged = sent(&fx)[0].0;
    fx.clear();
    let request = GetRequest {
        pubkey: owner.public(),
        key: b"both",
        timeout_ms: 1_000,
        waiter: 7u32,
    };
    s.start_get(0, request, &peers, &counters, &mut fx);
    assert_eq!(sent(&fx).len(), 3);
    fx.clear();
    s.handle_get_ack(
        1,
        NOW + 1_100,
        challenged,
        dat.to_boxed(),
        &counters,
        &mut fx,
    );
    assert_eq!(fx.challenge_outcomes[0].verdict, Verdict::Success);
    assert_eq!(stats(&counters).get_acks_valid, 1, "verified once");
    // The local get completes once the others answer "not found".
    for a in [sa(1), sa(2), sa(3)]
        .into_iter()
        .filter(|&a| a != challenged)
    {
        let nf = DatFields::not_found(owner.public(), b"both").to_dat();
        s.handle_get_ack(2, NOW + 1_100, a, nf, &counters, &mut fx);
    }
    assert!(matches!(
        fx.completions.as_slice(),
        [(7, GetOutcome::Found(_))]
    ));
}

#[test]
fn scores_steer_targets_and_unreliable_senders_are_not_forwarded() {
    let mut s = shard(0.0);
    let counters = Counters::default();
    let mut fx = Effects::default();
    let good = Trust {
        successes: 10.0,
        failures: 0.0,
    };
    let bad = Trust {
        successes: 0.0,
        failures: 10.0,
    };
    // Peer 1 drops records (scored unreliable); peers 2..=4 keep them.
    let owner = Keypair::generate();
    let peers = Peers(
        [
            (sa(1), (1, bad)),
            (sa(2), (2, good)),
            (sa(3), (3, good)),
            (sa(4), (4, good)),
        ]
        .into_iter()
        .collect(),
    );
    for i in 0..50u32 {
        let dat = record(&owner, format!("k{i}").as_bytes(), NOW - 100);
        let to = s
            .local_put(NOW, dat, &peers, &counters, &mut fx)
            .expect("stored");
        assert_eq!(to.len(), 3);
        assert!(
            !to.contains(&sa(1)),
            "the unreliable closest peer is avoided"
        );
    }
    fx.clear();
    let mut keys = dave::pow::KeyCache::new(16, 0);
    // A PUT from the unreliable peer: stored, not forwarded.
    let dat = record(&owner, b"from-bad", NOW - 100);
    let mut puts = vec![(sa(1), dat)];
    s.handle_puts(NOW, &mut puts, &peers, &mut keys, &counters, &mut fx);
    assert!(fx.outbox.is_empty());
    assert!(s.store().read().get(&owner.public(), b"from-bad").is_some());
    assert_eq!(stats(&counters).puts_not_forwarded_unreliable, 1);
    // The same from a trusted peer is forwarded.
    let dat = record(&owner, b"from-good", NOW - 100);
    let mut puts = vec![(sa(2), dat)];
    s.handle_puts(NOW, &mut puts, &peers, &mut keys, &counters, &mut fx);
    assert_eq!(fx.outbox.len(), 2, "the two other trusted peers");
}

#[test]
fn a_view_without_scores_keeps_the_reference_order() {
    // A PeerView that implements only `closest` (as a simulator may): targets are the XOR
    // closest, as before trust existed.
    struct Plain;
    impl PeerView for Plain {
        fn closest(&self, _: u64, n: usize, _: Option<SocketAddr>, out: &mut Vec<SocketAddr>) {
            out.extend((1..=5u8).take(n).map(sa));
        }
    }
    let mut s = shard(1.0);
    let counters = Counters::default();
    let mut fx = Effects::default();
    let owner = Keypair::generate();
    let to = s
        .local_put(
            NOW,
            record(&owner, b"k", NOW - 100),
            &Plain,
            &counters,
            &mut fx,
        )
        .expect("stored");
    assert_eq!(to, vec![sa(1), sa(2), sa(3)]);
}
