//! The v2 shard core on one thread: several nodes' `Shard2` cores joined by a seeded, reordering
//! in-memory network (no sockets, no clock). Shows the compare-and-swap protocol: two writers
//! racing on one key through different nodes — exactly one wins, the loser gets a clear error,
//! and every replica converges on the winner — for hundreds of delivery orders.

use std::net::SocketAddr;

use dave::keys::{Keypair, distance};
use dave::pow::{make_dat2_single, sign_commit2};
use dave::shard::core2::{
    Counters2, Effects2, Get2Outcome, LocalPut2, Peers2, Put2Error, Put2Report, Rules2, Shard2,
    answer_get2,
};
use dave::shard::store2::{Store2, Store2Config};
use dave::wire::record2::{Message2, Record2, Status2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type PutResult = Result<Put2Report, Put2Error>;
type Core = Shard2<usize, usize>;

const NOW_MS: i64 = 1_800_000_000_000;

struct Peers {
    all: Vec<(SocketAddr, u64)>,
    me: SocketAddr,
}

impl Peers2 for Peers {
    fn closest_v2(&self, target_id: u64, n: usize, out: &mut Vec<(SocketAddr, u64)>) {
        let mut others: Vec<_> = self
            .all
            .iter()
            .copied()
            .filter(|&(a, _)| a != self.me)
            .collect();
        others.sort_by_key(|&(a, id)| (distance(id, target_id), a));
        out.extend(others.into_iter().take(n));
    }
}

struct Net {
    cores: Vec<Core>,
    addrs: Vec<(SocketAddr, u64)>,
    counters: Counters2,
    queue: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    puts: Vec<(usize, PutResult)>,
    gets: Vec<(usize, Get2Outcome)>,
    rng: StdRng,
    /// Loses every PUT2_COMMIT while set.
    drop_commits: bool,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16))
}

impl Net {
    fn new(n: usize, fanout: usize, seed: u64) -> Net {
        let addrs: Vec<(SocketAddr, u64)> = (0..n)
            .map(|i| (addr(i), (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        let rules = Rules2 {
            min_work_bits: 0,
            fanout,
            get_settle_ms: 10,
            put_timeout_ms: 1_000,
        };
        let cores = addrs
            .iter()
            .map(|&(_, id)| {
                let store = Store2::new(Store2Config {
                    capacity_bytes: 1 << 20,
                    ttl_ms: 1 << 40,
                });
                Shard2::new(store, rules, id)
            })
            .collect();
        Net {
            cores,
            addrs,
            counters: Counters2::default(),
            queue: Vec::new(),
            puts: Vec::new(),
            gets: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            drop_commits: false,
        }
    }

    fn peers(&self, i: usize) -> Peers {
        Peers {
            all: self.addrs.clone(),
            me: addr(i),
        }
    }

    fn collect(&mut self, i: usize, effects: Effects2<usize, usize>) {
        for (to, bytes) in effects.outbox.iter() {
            self.queue.push((addr(i), to, bytes.to_vec()));
        }
        self.puts.extend(effects.puts_done);
        self.gets.extend(effects.gets_done);
    }

    fn put(&mut self, i: usize, record: Record2, expect_seq: Option<u64>, owner: &Keypair) {
        let peers = self.peers(i);
        let mut effects = Effects2::default();
        let put = LocalPut2 {
            commit: sign_commit2(owner, record.work()),
            record,
            expect_seq,
            waiter: i,
        };
        self.cores[i].local_put(0, NOW_MS, put, &peers, &self.counters, &mut effects);
        self.collect(i, effects);
    }

    fn get(&mut self, i: usize, owner: &Keypair, key: &[u8]) {
        let peers = self.peers(i);
        let mut effects = Effects2::default();
        self.cores[i].start_get(0, owner.public(), key, 1_000, i, &peers, &mut effects);
        self.collect(i, effects);
    }

    /// Delivers one queued datagram, chosen at random (reordering).
    fn step(&mut self) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let pick = self.rng.gen_range(0..self.queue.len());
        let (from, to, bytes) = self.queue.swap_remove(pick);
        let i = self.addrs.iter().position(|&(a, _)| a == to).unwrap_or(0);
        let mut effects = Effects2::default();
        let core = &mut self.cores[i];
        let message =
            Message2::parse(&bytes).unwrap_or_else(|e| panic!("core sent a bad datagram: {e}"));
        if self.drop_commits && matches!(message, Message2::Put2Commit { .. }) {
            return true;
        }
        match message {
            Message2::Put2(dat) => {
                core.handle_put(NOW_MS, from, dat, None, None, &self.counters, &mut effects)
            }
            Message2::Put2Cas { expect_seq, dat } => core.handle_put(
                NOW_MS,
                from,
                dat,
                Some(expect_seq),
                None,
                &self.counters,
                &mut effects,
            ),
            Message2::Put2Commit { commit, dat } => core.handle_put(
                NOW_MS,
                from,
                dat,
                None,
                Some(commit),
                &self.counters,
                &mut effects,
            ),
            Message2::Put2Status {
                status,
                held_seq,
                work,
                ..
            } => core.handle_status(
                NOW_MS,
                from,
                status,
                held_seq,
                work,
                &self.counters,
                &mut effects,
            ),
            Message2::Get2 { pubkey, key } => answer_get2(
                &core.store().read(),
                from,
                pubkey,
                key,
                &self.counters,
                &mut effects.outbox,
            ),
            Message2::Get2Ack(dat) => core.handle_get_ack(
                0,
                NOW_MS,
                from,
                (*dat.pubkey(), dat.key().into()),
                Some(dat),
                &self.counters,
                &mut effects,
            ),
            Message2::Get2None { pubkey, key } => core.handle_get_ack(
                0,
                NOW_MS,
                from,
                (*pubkey, key.into()),
                None,
                &self.counters,
                &mut effects,
            ),
        }
        self.collect(i, effects);
        true
    }

    /// Node `i`'s timers at `now_ms` (its deadlines: gets, CAS puts, commits to re-send).
    fn tick(&mut self, i: usize, now_ms: u64) {
        let mut effects = Effects2::default();
        self.cores[i].tick(now_ms, NOW_MS, false, &self.counters, &mut effects);
        self.collect(i, effects);
    }

    fn run(&mut self) {
        let mut steps = 0;
        while self.step() {
            steps += 1;
            assert!(steps < 10_000, "the protocol must quiesce");
        }
    }

    fn held(&self, i: usize, owner: &Keypair, key: &[u8]) -> Option<Record2> {
        self.cores[i]
            .store()
            .read()
            .get(&owner.public(), key)
            .map(|d| d.to_boxed())
    }

    /// Indices of the `fanout` nodes closest to the owner.
    fn replica_set(&self, owner: &Keypair, fanout: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..self.addrs.len()).collect();
        all.sort_by_key(|&i| (distance(self.addrs[i].1, owner.id()), self.addrs[i].0));
        all.truncate(fanout);
        all
    }
}

#[test]
fn two_writers_racing_on_one_key_exactly_one_wins_and_all_converge() {
    let owner = Keypair::from_seed(&[42; 32]);
    let base = make_dat2_single(&owner, b"k", b"v0", NOW_MS - 10, 5, 0);
    let a = make_dat2_single(&owner, b"k", b"writer-a", NOW_MS - 5, 6, 0);
    let b = make_dat2_single(&owner, b"k", b"writer-b", NOW_MS - 5, 6, 0);
    let mut wins = [0usize; 2];
    for seed in 0..300u64 {
        let nodes = 5 + (seed % 3) as usize;
        let fanout = 3;
        let mut net = Net::new(nodes, fanout, seed);
        let replicas = net.replica_set(&owner, fanout);
        // Everyone agrees on seq 5 first.
        net.put(replicas[0], base.clone(), None, &owner);
        net.run();
        net.puts.clear();
        // Two writers on different nodes (sometimes replicas, sometimes not), same CAS.
        let wa = (seed as usize) % nodes;
        let wb = (seed as usize / 3 + 1 + wa) % nodes;
        let wb = if wb == wa { (wa + 1) % nodes } else { wb };
        net.put(wa, a.clone(), Some(5), &owner);
        // Interleave: deliver a few of A's datagrams before B starts.
        for _ in 0..(seed % 4) {
            net.step();
        }
        net.put(wb, b.clone(), Some(5), &owner);
        net.run();
        assert_eq!(net.puts.len(), 2, "seed {seed}: both puts ended");
        let ok: Vec<_> = net.puts.iter().filter(|(_, r)| r.is_ok()).collect();
        assert_eq!(ok.len(), 1, "seed {seed}: exactly one wins: {:?}", net.puts);
        let winner_node = ok[0].0;
        let (winner, loser_node) = if winner_node == wa {
            wins[0] += 1;
            (&a, wb)
        } else {
            wins[1] += 1;
            (&b, wa)
        };
        let loser = net.puts.iter().find(|(w, _)| *w == loser_node);
        match loser {
            Some((_, Err(Put2Error::Lost { refusal, .. }))) => {
                assert!(
                    matches!(refusal, Some(Status2::Conflict | Status2::CasMismatch)),
                    "seed {seed}: the loser is told why: {refusal:?}"
                );
            }
            Some((_, Err(Put2Error::Local { status, .. }))) => {
                assert!(matches!(status, Status2::Conflict | Status2::CasMismatch));
            }
            other => panic!("seed {seed}: loser outcome {other:?}"),
        }
        let message = net
            .puts
            .iter()
            .find_map(|(_, r)| r.as_ref().err())
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!message.is_empty());
        // Every replica holds the winner; no node holds the loser.
        for &r in &replicas {
            assert_eq!(
                net.held(r, &owner, b"k").as_ref(),
                Some(winner),
                "seed {seed}: replica {r} converged"
            );
        }
        for i in 0..nodes {
            if let Some(held) = net.held(i, &owner, b"k") {
                assert!(
                    held == *winner || held == base,
                    "seed {seed}: node {i} holds no loser"
                );
            }
        }
        // A get through any node returns the winner.
        for i in 0..nodes {
            net.get(i, &owner, b"k");
        }
        net.run();
        for (i, outcome) in net.gets.drain(..) {
            match outcome {
                Get2Outcome::Found(found) => assert_eq!(&found, winner, "seed {seed} node {i}"),
                other => panic!("seed {seed}: get at {i}: {other:?}"),
            }
        }
    }
    // Both writers won some races: the outcome depends on the order, not on who is who.
    assert!(wins[0] > 0 && wins[1] > 0, "wins {wins:?}");
}

#[test]
fn a_higher_seq_replaces_an_older_one_is_refused_and_a_stale_cas_is_told_the_held_seq() {
    let owner = Keypair::from_seed(&[9; 32]);
    let mut net = Net::new(5, 3, 1);
    let replicas = net.replica_set(&owner, 3);
    let writer = replicas[0];
    let v1 = make_dat2_single(&owner, b"k", b"one", NOW_MS - 10, 1, 0);
    let v2 = make_dat2_single(&owner, b"k", b"two", NOW_MS - 10, 2, 0);
    net.put(writer, v1.clone(), None, &owner);
    net.run();
    net.put(writer, v2.clone(), None, &owner);
    net.run();
    for &r in &replicas {
        assert_eq!(net.held(r, &owner, b"k"), Some(v2.clone()));
    }
    net.puts.clear();
    net.put(writer, v1, None, &owner);
    match net.puts.pop() {
        Some((_, Err(Put2Error::Local { status, held_seq }))) => {
            assert_eq!(status, Status2::Older);
            assert_eq!(held_seq, 2);
        }
        other => panic!("{other:?}"),
    }
    // A CAS expecting seq 1 while seq 2 is held.
    let stale = make_dat2_single(&owner, b"k", b"three", NOW_MS - 10, 3, 0);
    let elsewhere = (0..5).find(|i| !replicas.contains(i)).unwrap_or(0);
    net.put(elsewhere, stale, Some(1), &owner);
    net.run();
    match net.puts.pop() {
        Some((
            _,
            Err(Put2Error::Lost {
                refusal, held_seq, ..
            }),
        )) => {
            assert_eq!(refusal, Some(Status2::CasMismatch));
            assert_eq!(held_seq, 2);
        }
        other => panic!("{other:?}"),
    }
    for &r in &replicas {
        assert_eq!(net.held(r, &owner, b"k"), Some(v2.clone()));
    }
}

/// A node outside the replica set that was handed the loser (a plain PUT2 replayed by anyone)
/// still reads the winner: at an equal seq the replicas' answer beats a local copy.
#[test]
fn a_loser_replayed_to_a_non_replica_never_outvotes_the_replicas() {
    let owner = Keypair::from_seed(&[5; 32]);
    let mut net = Net::new(6, 3, 7);
    let replicas = net.replica_set(&owner, 3);
    let outsider = (0..6).find(|i| !replicas.contains(i)).unwrap_or(0);
    let winner = make_dat2_single(&owner, b"k", b"winner", NOW_MS - 5, 1, 0);
    let loser = make_dat2_single(&owner, b"k", b"loser", NOW_MS - 5, 1, 0);
    net.put(replicas[0], winner.clone(), Some(0), &owner);
    net.run();
    assert!(matches!(net.puts.pop(), Some((_, Ok(_)))));
    // Someone replays the loser, as a plain PUT2, to the outsider.
    let mut effects = Effects2::default();
    net.cores[outsider].handle_put(
        NOW_MS,
        addr(99),
        loser.as_view(),
        None,
        None,
        &net.counters,
        &mut effects,
    );
    assert_eq!(net.held(outsider, &owner, b"k"), Some(loser));
    net.get(outsider, &owner, b"k");
    net.run();
    match net.gets.pop() {
        Some((_, Get2Outcome::Found(found))) => assert_eq!(found, winner),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lost_commit_is_sent_again_and_the_minority_converges() {
    // Two writers race from nodes outside the replica set; every PUT2_COMMIT of the race is
    // lost, so a replica that took the loser keeps it. At the put's deadline the winner sends
    // its commit again (`MAX_COMMIT_SENDS`), and once every replica answered, nothing more.
    let owner = Keypair::from_seed(&[43; 32]);
    let base = make_dat2_single(&owner, b"k", b"v0", NOW_MS - 10, 5, 0);
    let a = make_dat2_single(&owner, b"k", b"writer-a", NOW_MS - 5, 6, 0);
    let b = make_dat2_single(&owner, b"k", b"writer-b", NOW_MS - 5, 6, 0);
    let mut minorities = 0;
    for seed in 0..200u64 {
        let (nodes, fanout) = (6, 3);
        let mut net = Net::new(nodes, fanout, seed);
        let replicas = net.replica_set(&owner, fanout);
        net.put(replicas[0], base.clone(), None, &owner);
        net.run();
        net.puts.clear();
        let writers: Vec<usize> = (0..nodes).filter(|i| !replicas.contains(i)).collect();
        let (wa, wb) = (writers[0], writers[1]);
        net.drop_commits = true;
        net.put(wa, a.clone(), Some(5), &owner);
        for _ in 0..(seed % 4) {
            net.step();
        }
        net.put(wb, b.clone(), Some(5), &owner);
        net.run();
        let Some(&(winner_node, _)) = net.puts.iter().find(|(_, r)| r.is_ok()) else {
            panic!(
                "seed {seed}: a race without loss has a winner: {:?}",
                net.puts
            );
        };
        let winner = if winner_node == wa { &a } else { &b };
        let stale = replicas
            .iter()
            .filter(|&&r| net.held(r, &owner, b"k").as_ref() != Some(winner))
            .count();
        if stale == 0 {
            continue; // this order left no minority
        }
        minorities += 1;
        net.drop_commits = false;
        net.tick(winner_node, 999);
        assert!(
            net.queue.is_empty(),
            "seed {seed}: not before the put's deadline"
        );
        net.tick(winner_node, 1_000);
        assert_eq!(
            net.queue.len(),
            stale,
            "seed {seed}: one commit per stale replica"
        );
        net.run();
        for &r in &replicas {
            assert_eq!(
                net.held(r, &owner, b"k").as_ref(),
                Some(winner),
                "seed {seed}: replica {r} converged"
            );
        }
        net.tick(winner_node, 5_000);
        assert!(net.queue.is_empty(), "seed {seed}: every replica answered");
    }
    assert!(minorities >= 20, "{minorities} races left a minority");
}
