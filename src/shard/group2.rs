//! `Group2`: the v2-record half of one shard owner, beside [`super::group::ShardGroup`]. It
//! routes v2 inputs to the owner's [`Shard2`] cores, runs their deadlines (pending gets and CAS
//! puts) and the periodic expiry, and says when it next needs to run. I/O-free like the v1 group;
//! the owner thread drives both and sleeps until the earlier of their deadlines. Which v2
//! datagrams are PUTs, and what each carries, is read here once for both drivers
//! ([`NetworkPut2::of`]).
//!
//! Replica maintenance of v2 records is decided exactly as for v1, in the same two modes. The
//! v1 path ([`crate::shard::repair`], the same walk): the group takes the replica view of the
//! RECORD_V2 peers from the snapshot, steps its shards' passes at most every [`REPAIR_STEP_MS`]
//! (or at the pacer's turn, [`RepairClock`]) with the node-wide repair pacer (the one v1 repair
//! draws on, handed out by the same [`GroupEnv`]), and sends PUT2s; the view and the steps are
//! kept by the v1 group's [`RepairSchedule`]. With `GroupConfig::maintain` (the node's
//! `route_lookups`), maintenance is by lookup ([`crate::shard::maintain`], the walk the v1 group
//! runs): due copies ask for lookups of their owner IDs (`Effects2::lookups`), answers
//! ([`Group2::lookup_done`]) push PUT2s to the closest nodes found, copies no longer among them
//! age out; the repair passes then serve only the RECORD_V2 peers that do not speak ROUTING.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::peer::PeerSnapshot;
use crate::route::Contact;
use crate::route::maintain::MaintainStats;
use crate::shard::core::GetRequest;
use crate::shard::core2::{BackupOp2, Counters2, Effects2, LocalPut2, Shard2};
use crate::shard::group::{GroupConfig, GroupEnv, Now, RepairSchedule};
#[cfg(doc)]
use crate::shard::group::{REPAIR_STEP_MS, RepairClock};
use crate::shard::maintain::{MaintainWalk, MaintainedStore};
use crate::shard::repair::ReplicaView;
use crate::shard::route::shard_index;
use crate::stats::add;
use crate::wire::record2::{Message2, Record2, Status2};

/// A PUT2 (`expect_seq` and `commit` `None`), PUT2_CAS (`expect_seq`) or PUT2_COMMIT (`commit`)
/// from the network, owned: what the node's receivers hand an owner thread and the simulator
/// hands its group alike ([`Input2::Put`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPut2 {
    /// Sender.
    pub from: SocketAddr,
    /// The record as received.
    pub dat: Record2,
    /// PUT2_CAS: the seq the sender expects us to hold.
    pub expect_seq: Option<u64>,
    /// PUT2_COMMIT: the owner's commit signature.
    pub commit: Option<[u8; 64]>,
}

impl NetworkPut2 {
    /// The PUT a parsed v2 datagram from `from` carries, its record copied out of the datagram;
    /// `None` for a message that is not a PUT2, PUT2_CAS or PUT2_COMMIT.
    pub fn of(from: SocketAddr, message: Message2<'_>) -> Option<NetworkPut2> {
        let (dat, expect_seq, commit) = match message {
            Message2::Put2(dat) => (dat, None, None),
            Message2::Put2Cas { expect_seq, dat } => (dat, Some(expect_seq), None),
            Message2::Put2Commit { commit, dat } => (dat, None, Some(*commit)),
            Message2::Get2 { .. }
            | Message2::Get2Ack(_)
            | Message2::Get2None { .. }
            | Message2::Put2Status { .. } => return None,
        };
        Some(NetworkPut2 {
            from,
            dat: dat.to_boxed(),
            expect_seq,
            commit,
        })
    }
}

/// One v2 input to a group.
pub enum Input2<'a, PW, GW> {
    /// A PUT2, PUT2_CAS or PUT2_COMMIT from the network.
    Put(NetworkPut2),
    /// A PUT2_STATUS: a replica's answer to one of our CAS puts.
    Status {
        /// Sender.
        from: SocketAddr,
        /// What the replica did.
        status: Status2,
        /// What it holds now.
        held_seq: u64,
        /// Which record (its work).
        work: [u8; 32],
        /// Owner of the record.
        pubkey: [u8; 32],
        /// Key of the record.
        key: &'a [u8],
    },
    /// A GET2_ACK (`dat: Some`) or GET2_NONE (`None`) for (pubkey, key).
    GetAck {
        /// Sender.
        from: SocketAddr,
        /// Owner.
        pubkey: [u8; 32],
        /// Key.
        key: &'a [u8],
        /// The record, if held there.
        dat: Option<Record2>,
    },
    /// A put made on this node.
    LocalPut(LocalPut2<PW>),
    /// A get asked on this node; its outcome arrives in `Effects2::gets_done` under the
    /// request's `waiter`.
    LocalGet(GetRequest<'a, GW>),
}

/// The v2 cores of one owner. See the module docs.
pub struct Group2<PW, GW> {
    shards: Vec<Shard2<PW, GW>>,
    groups: usize,
    tick_period_ms: u64,
    next_tick_ms: u64,
    /// Repair settings (off until [`Group2::with_repair`]).
    repair: Option<GroupConfig>,
    /// The RECORD_V2 replica view and when and where repair steps next.
    schedule: RepairSchedule,
    /// Replica maintenance by lookup (with `GroupConfig::maintain`).
    maintain: Option<MaintainWalk>,
}

impl<PW, GW> Group2<PW, GW> {
    /// A group of `shards` (non-empty) for the owner of every `groups`-th shard, ticking its
    /// stores' expiry every `tick_period_ms` while it holds records.
    pub fn new(shards: Vec<Shard2<PW, GW>>, groups: usize, tick_period_ms: u64, now: Now) -> Self {
        assert!(!shards.is_empty() && groups > 0);
        Group2 {
            shards,
            groups,
            tick_period_ms,
            next_tick_ms: now.mono_ms.saturating_add(tick_period_ms),
            repair: None,
            schedule: RepairSchedule::default(),
            maintain: None,
        }
    }

    /// Turns on repair and republish with the v1 group's settings (`repair_enabled`,
    /// `repair_scan_records_per_step`, `trust`; the shards carry the republish interval), and
    /// with `maintain`, replica maintenance by lookup from `now` on.
    pub fn with_repair(mut self, config: GroupConfig, now: Now) -> Self {
        self.repair = config.repair_enabled.then_some(config);
        if let Some(maintain) = config.maintain.filter(|_| config.repair_enabled) {
            // 4 B of copy state per slot.
            for shard in &self.shards {
                let mut store = shard.store().write();
                store.set_copy_clock(now.mono_ms);
                store.track_copies();
            }
            let own_id = self.shards[0].node_id();
            self.maintain = Some(MaintainWalk::new(maintain, own_id, now.mono_ms));
        }
        self
    }

    /// Maintenance counters (zero without `GroupConfig::maintain`).
    pub fn maintain_stats(&self) -> MaintainStats {
        self.maintain
            .as_ref()
            .map(|m| m.stats())
            .unwrap_or_default()
    }

    /// A lookup of `target` that replica maintenance may have asked for ended (`None`: it
    /// could not run). Carried out at the next [`Group2::end_batch`].
    pub fn lookup_done(&mut self, now: Now, target: u64, closest: Option<&[Contact]>) {
        if let Some(m) = &mut self.maintain {
            m.answer(now.mono_ms, target, closest);
        }
    }

    /// Stamps copies stored by the next input with `now` (maintenance measures their age by it).
    fn set_copy_clock(&self, s: usize, now: Now) {
        if self.maintain.is_some() {
            self.shards[s].store().write().set_copy_clock(now.mono_ms);
        }
    }

    /// The RECORD_V2 replica view the shards were last given.
    pub fn view(&self) -> &Arc<ReplicaView> {
        self.schedule.view()
    }

    /// The shards, by local index.
    pub fn shards(&self) -> &[Shard2<PW, GW>] {
        &self.shards
    }

    fn local_index(&self, pubkey: &[u8; 32], key: &[u8]) -> usize {
        (shard_index(pubkey, key) / self.groups) % self.shards.len()
    }

    /// One input.
    pub fn handle(
        &mut self,
        now: Now,
        peers: &PeerSnapshot,
        input: Input2<'_, PW, GW>,
        counters: &Counters2,
        effects: &mut Effects2<PW, GW>,
    ) {
        match input {
            Input2::Put(put) => {
                let s = self.local_index(put.dat.pubkey(), put.dat.key());
                self.set_copy_clock(s, now);
                self.shards[s].handle_put(
                    now.wall_ms,
                    put.from,
                    put.dat.as_view(),
                    put.expect_seq,
                    put.commit.as_ref(),
                    counters,
                    effects,
                );
            }
            Input2::Status {
                from,
                status,
                held_seq,
                work,
                pubkey,
                key,
            } => {
                let s = self.local_index(&pubkey, key);
                self.set_copy_clock(s, now);
                self.shards[s].handle_status(
                    now.wall_ms,
                    from,
                    status,
                    held_seq,
                    &work,
                    counters,
                    effects,
                );
            }
            Input2::GetAck {
                from,
                pubkey,
                key,
                dat,
            } => {
                let s = self.local_index(&pubkey, key);
                let view = dat.as_ref().map(|d| d.as_view());
                self.shards[s].handle_get_ack(
                    now.mono_ms,
                    now.wall_ms,
                    from,
                    (pubkey, key.into()),
                    view,
                    counters,
                    effects,
                );
            }
            Input2::LocalPut(put) => {
                let s = self.local_index(put.record.pubkey(), put.record.key());
                self.set_copy_clock(s, now);
                self.shards[s].local_put(now.mono_ms, now.wall_ms, put, peers, counters, effects);
            }
            Input2::LocalGet(request) => {
                let s = self.local_index(&request.pubkey, request.key);
                self.shards[s].start_get(
                    now.mono_ms,
                    request.pubkey,
                    request.key,
                    request.timeout_ms,
                    request.waiter,
                    peers,
                    effects,
                );
            }
        }
    }

    /// Runs what is due at `now`: get and CAS deadlines, and the periodic expiry.
    /// Then picks up a changed RECORD_V2 replica view from `peers` and steps repair (at most
    /// every [`REPAIR_STEP_MS`], or at the pacer's turn after a step it cut short, drawing on
    /// `env`'s repair pacer), as the v1 group does.
    pub fn end_batch(
        &mut self,
        now: Now,
        peers: &Arc<PeerSnapshot>,
        env: &mut impl GroupEnv,
        counters: &Counters2,
        effects: &mut Effects2<PW, GW>,
    ) {
        let periodic = now.mono_ms >= self.next_tick_ms;
        if periodic {
            self.next_tick_ms = now.mono_ms.saturating_add(self.tick_period_ms);
        }
        for shard in &mut self.shards {
            let due = shard.next_deadline_ms().is_some_and(|d| d <= now.mono_ms);
            if periodic || due {
                shard.tick(now.mono_ms, now.wall_ms, periodic, counters, effects);
            }
        }
        let Some(config) = self.repair else {
            return;
        };
        if let Some(m) = &mut self.maintain {
            let mut pacer = env.repair_pacer();
            let backup = &mut effects.backup;
            let tally = m.step(
                now.mono_ms,
                periodic,
                &self.shards,
                |shard| &**shard.store(),
                config.repair_scan_records_per_step,
                &mut pacer,
                &mut effects.outbox,
                &mut effects.lookups,
                |gone| {
                    backup.push(BackupOp2::Delete {
                        pubkey: *gone.pubkey(),
                        key: gone.key().into(),
                        seq: gone.seq(),
                    })
                },
                // v2 records are not storage-challenged (challenges are v1 GETs).
                |_, _, _| {},
            );
            add(&counters.copies_aged_out, tally.aged_out);
            add(&counters.maintain_cache_hits, tally.cache_hits);
            add(&counters.maintain_lookups_started, tally.lookups_started);
            add(&counters.maintain_paced, tally.paced);
            add(&counters.repair_datagrams_sent, tally.datagrams_sent);
            add(&counters.repair_bytes_sent, tally.bytes_sent);
        }
        // With maintenance by lookup, the repair passes serve only the peers lookups cannot find
        // (RECORD_V2 peers without ROUTING).
        let by_lookup = self.maintain.is_some();
        let latest = |peers: &PeerSnapshot| {
            if by_lookup {
                ReplicaView::of_snapshot_v2_without_routing(peers, &config.trust)
            } else {
                ReplicaView::of_snapshot_v2(peers, &config.trust)
            }
        };
        if let Some(view) = self.schedule.take_view(peers, latest) {
            for shard in &mut self.shards {
                shard.set_replica_view(Arc::clone(view), counters);
            }
        }
        if self.repair_due(now.mono_ms, periodic) {
            let mut pacer = env.repair_pacer();
            let scan = config.repair_scan_records_per_step;
            let shards = &mut self.shards;
            self.schedule.step(
                now.mono_ms,
                &mut pacer,
                scan,
                shards,
                |shard, pacer, scan| shard.repair_step(now.mono_ms, pacer, scan, counters, effects),
            );
        }
    }

    fn repair_due(&self, now_ms: u64, periodic: bool) -> bool {
        self.repair.is_some()
            && self.schedule.due(now_ms, periodic, || {
                self.shards.iter().any(|s| s.repair_active())
            })
    }

    /// When the group next needs [`Group2::end_batch`] without an input: the earliest pending
    /// deadline, and the periodic expiry while any store holds a record. `None` when idle.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let pending = self
            .shards
            .iter()
            .filter_map(|s| s.next_deadline_ms())
            .min();
        let holds = self.shards.iter().any(|s| !s.store().read().is_empty());
        let periodic = holds.then_some(self.next_tick_ms);
        let repair = (self.repair.is_some() && self.shards.iter().any(|s| s.repair_active()))
            .then(|| self.schedule.next_step_ms());
        [pending, periodic, repair].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Keypair, id_from_pubkey};
    use crate::peer::{PeerInfo, TrustPolicy};
    use crate::route::maintain::MaintainConfig;
    use crate::shard::core2::Rules2;
    use crate::shard::group::REPAIR_STEP_MS;
    use crate::shard::group::SHARD_TICK_MS;
    use crate::shard::store2::{Store2, Store2Config};
    use crate::shard::test_support::{
        WALL_MS, at, closest_three, env, maintain_config, peers_with,
    };
    use crate::wire::Features;

    fn group() -> Group2<u32, u32> {
        group_with(None)
    }

    fn group_with(maintain: Option<MaintainConfig>) -> Group2<u32, u32> {
        let shards = (0..2)
            .map(|_| {
                let store = Store2::new(Store2Config {
                    capacity_bytes: 1 << 20,
                    ttl_ms: 1 << 40,
                });
                let rules = Rules2 {
                    min_work_bits: 0,
                    fanout: 3,
                    get_settle_ms: 10,
                    put_timeout_ms: 1_000,
                };
                Shard2::new(store, rules, 7)
            })
            .collect();
        let config = GroupConfig {
            groups: 1,
            challenge_mean_gap_ms: 0,
            repair_enabled: true,
            repair_scan_records_per_step: 4,
            tick_period_ms: SHARD_TICK_MS,
            trust: TrustPolicy::default(),
            maintain,
        };
        Group2::new(shards, 1, SHARD_TICK_MS, at(0)).with_repair(config, at(0))
    }

    /// A plain local put at time 0 of `owner`'s record `key` (value "v", seq 1); returns it.
    fn local_put(
        g: &mut Group2<u32, u32>,
        owner: &Keypair,
        key: &[u8],
        counters: &Counters2,
        fx: &mut Effects2<u32, u32>,
    ) -> Record2 {
        let record = crate::pow::make_dat2_single(owner, key, b"v", WALL_MS, 1, 0);
        let put = LocalPut2 {
            commit: crate::pow::sign_commit2(owner, record.work()),
            record: record.clone(),
            expect_seq: None,
            waiter: 0,
        };
        let none = PeerSnapshot::default();
        g.handle(at(0), &none, Input2::LocalPut(put), counters, fx);
        record
    }

    /// Peers 1..=n; the odd ones advertise RECORD_V2, the even ones are v1-only.
    fn peers(n: u8) -> Arc<PeerSnapshot> {
        peers_with(n, |i| {
            if i % 2 == 1 {
                Features::RECORD_V2
            } else {
                Features::NONE
            }
        })
    }

    #[test]
    fn a_new_view_repairs_v2_records_as_put2_to_record_v2_peers_only_paced_by_the_step() {
        let mut g = group();
        let counters = Counters2::default();
        let mut fx = Effects2::default();
        let none = Arc::new(PeerSnapshot::default());
        let owner = Keypair::generate();
        for i in 0..10u8 {
            local_put(&mut g, &owner, &[i], &counters, &mut fx);
        }
        let held: usize = g.shards().iter().map(|s| s.store().read().len()).sum();
        assert_eq!(held, 10);
        let mut env = env();
        g.end_batch(at(0), &none, &mut env, &counters, &mut fx);
        fx.outbox.clear();
        // Six peers, three of them (10.0.0.1, .3, .5) speak RECORD_V2.
        let snapshot = peers(6);
        g.end_batch(at(5), &snapshot, &mut env, &counters, &mut fx);
        assert_eq!(g.view().len(), 3, "only the RECORD_V2 peers");
        let sent = fx.outbox.len();
        assert!(sent > 0 && sent < 30, "a first step of the pass: {sent}");
        // 10 records, 4 examined per step: the pass goes on, one step per REPAIR_STEP_MS.
        assert_eq!(g.next_deadline_ms(), Some(5 + REPAIR_STEP_MS));
        g.end_batch(
            at(5 + REPAIR_STEP_MS - 1),
            &snapshot,
            &mut env,
            &counters,
            &mut fx,
        );
        assert_eq!(fx.outbox.len(), sent, "no step before the pacing interval");
        let mut now = 5;
        while g.shards().iter().any(|s| s.repair_active()) {
            now += REPAIR_STEP_MS;
            g.end_batch(at(now), &snapshot, &mut env, &counters, &mut fx);
            assert!(now < 1_000);
        }
        // Every record to each of the three RECORD_V2 peers, as a PUT2 carrying it.
        assert_eq!(fx.outbox.len(), 30);
        for (to, bytes) in fx.outbox.iter() {
            let [_, _, _, host] = match to.ip() {
                std::net::IpAddr::V4(ip) => ip.octets(),
                std::net::IpAddr::V6(_) => panic!("v4 only"),
            };
            assert_eq!(host % 2, 1, "sent to a v1-only peer: {to}");
            match Message2::parse(bytes) {
                Ok(Message2::Put2(dat)) => assert_eq!(dat.pubkey(), &owner.public()),
                other => panic!("not a PUT2: {other:?}"),
            }
        }
        assert_eq!(
            counters
                .repair_datagrams_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            30
        );
    }

    #[test]
    fn v2_copies_are_maintained_by_lookup_pushed_as_put2_and_age_out_when_not_closest() {
        let maintain = maintain_config();
        let mut g = group_with(Some(maintain));
        let counters = Counters2::default();
        let mut fx = Effects2::default();
        let none = Arc::new(PeerSnapshot::default());
        let mut env = env();
        let owner = Keypair::generate();
        let owner_id = id_from_pubkey(&owner.public());
        let mut records = Vec::new();
        for i in 0..3u8 {
            records.push(local_put(&mut g, &owner, &[i], &counters, &mut fx));
        }
        g.end_batch(at(0), &none, &mut env, &counters, &mut fx);
        fx.outbox.clear();
        // Record 0 is stored again byte for byte at 6 s (another holder's republish): its clock
        // restarts, so it is not due with the others.
        let again = Input2::Put(NetworkPut2 {
            from: SocketAddr::from(([10, 0, 9, 9], 1618)),
            dat: records[0].clone(),
            expect_seq: None,
            commit: None,
        });
        g.handle(at(6_000), &none, again, &counters, &mut fx);
        g.end_batch(at(7_500), &none, &mut env, &counters, &mut fx);
        assert!(fx.lookups.is_empty() && fx.outbox.is_empty());
        // Due: one lookup for the owner ID (not one per record); routing peers get no repair.
        let routing_peers = Arc::new(PeerSnapshot::new(
            peers(6)
                .peers()
                .iter()
                .map(|p| PeerInfo {
                    features: Features::ALL,
                    ..*p
                })
                .collect(),
        ));
        g.end_batch(at(10_000), &routing_peers, &mut env, &counters, &mut fx);
        assert_eq!(fx.lookups, vec![owner_id]);
        assert!(fx.outbox.is_empty(), "no repair pass to routing peers");
        assert_eq!(g.view().len(), 0);
        fx.lookups.clear();
        // The answer: three nodes closer than us. The two waiting copies go there as PUT2s;
        // we are not a replica, so nothing more is republished.
        let closer = closest_three(owner_id);
        g.lookup_done(at(10_100), owner_id, Some(&closer));
        g.end_batch(at(10_100), &none, &mut env, &counters, &mut fx);
        assert_eq!(
            fx.outbox.len(),
            6,
            "two records to each of the three closest"
        );
        for (to, bytes) in fx.outbox.iter() {
            assert!(closer.iter().any(|c| c.addr == to));
            match Message2::parse(bytes) {
                Ok(Message2::Put2(dat)) => assert_eq!(dat.pubkey(), &owner.public()),
                other => panic!("not a PUT2: {other:?}"),
            }
        }
        fx.outbox.clear();
        // Records 1 and 2 age out 20 s after they were stored, record 0 20 s after its re-store
        // (its own republish lookup, due from 16 s, gets no answer here: it stays a holder).
        g.end_batch(at(20_500), &none, &mut env, &counters, &mut fx);
        let held = |g: &Group2<u32, u32>| -> usize {
            g.shards().iter().map(|s| s.store().read().len()).sum()
        };
        assert_eq!(held(&g), 1, "the two copies not re-stored aged out");
        assert_eq!(
            counters
                .copies_aged_out
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        let deletes = fx
            .backup
            .iter()
            .filter(|op| matches!(op, BackupOp2::Delete { .. }))
            .count();
        assert_eq!(deletes, 2, "their deletes are backed up");
        g.end_batch(at(26_500), &none, &mut env, &counters, &mut fx);
        assert_eq!(held(&g), 0, "the re-stored copy 20 s after its re-store");
        assert_eq!(g.maintain_stats().answers, 1);
    }
}
