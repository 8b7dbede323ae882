//! The I/O-free core of v2 records for one shard: PUT2, PUT2_CAS, PUT2_COMMIT, GET2 and their
//! answers, local puts (with the compare-and-swap quorum) and local gets. Time is an argument;
//! effects are values (datagrams, backup entries, completed puts and gets), as in
//! [`crate::shard::core`]. v2 messages go only to peers that advertised RECORD_V2 (the
//! [`Peers2`] view lists only those).
//!
//! # Compare-and-swap across replicas
//!
//! The replica set of a record is the `fanout` nodes closest to the owner ID among this node and
//! the RECORD_V2 peers (every node with the same peer view computes the same set). A CAS put:
//!
//! 1. the writer's node, if it is in the set, stores the record locally first (its own vote;
//!    a refusal there fails the put at once), then sends PUT2_CAS to the other replicas;
//! 2. each replica applies [`decide2`](crate::shard::store2::decide2) (first come wins at equal
//!    seq; a held seq other than the expected one is a mismatch) and answers PUT2_STATUS;
//! 3. the put succeeds once a majority of the set (`fanout / 2 + 1`) holds the record, and fails
//!    once that can no longer happen (or at the deadline). The loser gets the statuses it saw
//!    ([`Put2Error`]): "conflict", "cas mismatch, held seq N", "older".
//!
//! With an odd set and two writers racing at one seq every replica votes for exactly one, so
//! exactly one reaches the majority (barring lost datagrams: then both may time out, and the
//! owner retries with seq + 1).
//!
//! Convergence of the minority: the winner signs a commit (`Ed25519.sign(owner,
//! blake3_keyed(COMMIT2_KEY, work2))`) and sends PUT2_COMMIT to every replica that did not
//! accept; a verified commit replaces an equal-seq record there. Only the owner's key can sign a
//! commit, and the loser never does (it saw no majority), so the minority converges on the
//! winner and nothing converges on the loser. The writer's node stores the record only once it
//! won when it is not in the set itself, so no node outside the set keeps a loser.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::keys::distance;
use crate::outbox::Outbox;
use crate::peer::budget::Pacer;
use crate::pow::{VerifyError, check_work2, verify_commit2, verify_dat2};
use crate::shard::repair::{Repair, RepairConfig, ReplicaView};
use crate::shard::store2::{Inserted2, RecordId2, Store2};
use crate::wire::record2::{
    Dat2, MAX_DAT2_LEN, Message2, PUT2_COMMIT_HEADER_LEN, Record2, Status2,
};

/// The RECORD_V2 peers, as the core chooses replicas from them.
pub trait Peers2 {
    /// Appends up to `n` RECORD_V2 peers (address, node ID) closest to `target_id` to `out`,
    /// closest first.
    fn closest_v2(&self, target_id: u64, n: usize, out: &mut Vec<(SocketAddr, u64)>);
}

impl Peers2 for crate::peer::PeerSnapshot {
    fn closest_v2(&self, target_id: u64, n: usize, out: &mut Vec<(SocketAddr, u64)>) {
        let mut found: Vec<(SocketAddr, u64)> = self
            .speaking(crate::wire::Features::RECORD_V2)
            .filter(|p| p.id != 0)
            .map(|p| (p.addr, p.id))
            .collect();
        found.sort_unstable_by_key(|&(addr, id)| (distance(id, target_id), addr));
        found.truncate(n);
        out.extend(found);
    }
}

/// Rules of the v2 core (copied from the node's `Config`).
#[derive(Debug, Clone, Copy)]
pub struct Rules2 {
    /// Leading zero bits a received dat2 needs.
    pub min_work_bits: u32,
    /// Replica set size (odd sizes make CAS races decisive).
    pub fanout: usize,
    /// After the first valid answer to a local get, wait at most this long for the others.
    pub get_settle_ms: u64,
    /// How long a CAS put waits for the replicas' statuses.
    pub put_timeout_ms: u64,
}

/// Per-thread v2 counters.
#[derive(Debug, Default)]
pub struct Counters2 {
    /// PUT2, PUT2_CAS and PUT2_COMMIT received.
    pub puts_received: AtomicU64,
    /// … stored.
    pub puts_stored: AtomicU64,
    /// … refused by the replacement rule (duplicate, older, conflict, CAS mismatch, full).
    pub puts_refused: AtomicU64,
    /// … refused by verification (work, time, signature or commit signature).
    pub puts_invalid: AtomicU64,
    /// GET2 answered (found or not).
    pub gets_received: AtomicU64,
    /// GET2_ACK / GET2_NONE received for a pending local get.
    pub acks_received: AtomicU64,
    /// GET2_ACKs that failed verification.
    pub acks_invalid: AtomicU64,
    /// Answers and statuses nobody asked for.
    pub unsolicited: AtomicU64,
    /// Local v2 puts made.
    pub local_puts: AtomicU64,
    /// CAS puts that won a majority.
    pub cas_won: AtomicU64,
    /// CAS puts that failed.
    pub cas_lost: AtomicU64,
    /// PUT2_COMMITs sent to minority replicas.
    pub commits_sent: AtomicU64,
    /// Repair and republish passes over v2 records started.
    pub repair_passes_started: AtomicU64,
    /// … completed.
    pub repair_passes_completed: AtomicU64,
    /// PUT2 datagrams repair and republish sent.
    pub repair_datagrams_sent: AtomicU64,
    /// Bytes of those datagrams.
    pub repair_bytes_sent: AtomicU64,
    /// Copies dropped by replica maintenance by lookup: not re-stored for
    /// `maintain_expire_after_ms` and not among the closest (`route::maintain`).
    pub copies_aged_out: AtomicU64,
    /// Republish lookups of v2 records the maintenance walk asked for.
    pub maintain_lookups_started: AtomicU64,
    /// Due v2 copies handled from a recent lookup answer.
    pub maintain_cache_hits: AtomicU64,
    /// Maintenance asks or pushes of v2 copies refused by pacing (met again later).
    pub maintain_paced: AtomicU64,
}

/// A snapshot of [`Counters2`], summed over threads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats2 {
    /// See [`Counters2::puts_received`].
    pub puts_received: u64,
    /// See [`Counters2::puts_stored`].
    pub puts_stored: u64,
    /// See [`Counters2::puts_refused`].
    pub puts_refused: u64,
    /// See [`Counters2::puts_invalid`].
    pub puts_invalid: u64,
    /// See [`Counters2::gets_received`].
    pub gets_received: u64,
    /// See [`Counters2::acks_received`].
    pub acks_received: u64,
    /// See [`Counters2::acks_invalid`].
    pub acks_invalid: u64,
    /// See [`Counters2::unsolicited`].
    pub unsolicited: u64,
    /// See [`Counters2::local_puts`].
    pub local_puts: u64,
    /// See [`Counters2::cas_won`].
    pub cas_won: u64,
    /// See [`Counters2::cas_lost`].
    pub cas_lost: u64,
    /// See [`Counters2::commits_sent`].
    pub commits_sent: u64,
    /// See [`Counters2::repair_passes_started`].
    pub repair_passes_started: u64,
    /// See [`Counters2::repair_passes_completed`].
    pub repair_passes_completed: u64,
    /// See [`Counters2::repair_datagrams_sent`].
    pub repair_datagrams_sent: u64,
    /// See [`Counters2::repair_bytes_sent`].
    pub repair_bytes_sent: u64,
    /// See [`Counters2::copies_aged_out`].
    pub copies_aged_out: u64,
    /// See [`Counters2::maintain_lookups_started`].
    pub maintain_lookups_started: u64,
    /// See [`Counters2::maintain_cache_hits`].
    pub maintain_cache_hits: u64,
    /// See [`Counters2::maintain_paced`].
    pub maintain_paced: u64,
}

impl Stats2 {
    /// Calls `f(name, value)` for every counter (the Prometheus exporter's list: a new field
    /// belongs here too).
    pub fn for_each(&self, mut f: impl FnMut(&'static str, u64)) {
        f("puts_received", self.puts_received);
        f("puts_stored", self.puts_stored);
        f("puts_refused", self.puts_refused);
        f("puts_invalid", self.puts_invalid);
        f("gets_received", self.gets_received);
        f("acks_received", self.acks_received);
        f("acks_invalid", self.acks_invalid);
        f("unsolicited", self.unsolicited);
        f("local_puts", self.local_puts);
        f("cas_won", self.cas_won);
        f("cas_lost", self.cas_lost);
        f("commits_sent", self.commits_sent);
        f("repair_passes_started", self.repair_passes_started);
        f("repair_passes_completed", self.repair_passes_completed);
        f("repair_datagrams_sent", self.repair_datagrams_sent);
        f("repair_bytes_sent", self.repair_bytes_sent);
        f("copies_aged_out", self.copies_aged_out);
        f("maintain_lookups_started", self.maintain_lookups_started);
        f("maintain_cache_hits", self.maintain_cache_hits);
        f("maintain_paced", self.maintain_paced);
    }

    /// Adds one thread's counters.
    pub fn add(&mut self, c: &Counters2) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.puts_received += l(&c.puts_received);
        self.puts_stored += l(&c.puts_stored);
        self.puts_refused += l(&c.puts_refused);
        self.puts_invalid += l(&c.puts_invalid);
        self.gets_received += l(&c.gets_received);
        self.acks_received += l(&c.acks_received);
        self.acks_invalid += l(&c.acks_invalid);
        self.unsolicited += l(&c.unsolicited);
        self.local_puts += l(&c.local_puts);
        self.cas_won += l(&c.cas_won);
        self.cas_lost += l(&c.cas_lost);
        self.commits_sent += l(&c.commits_sent);
        self.repair_passes_started += l(&c.repair_passes_started);
        self.repair_passes_completed += l(&c.repair_passes_completed);
        self.repair_datagrams_sent += l(&c.repair_datagrams_sent);
        self.repair_bytes_sent += l(&c.repair_bytes_sent);
        self.copies_aged_out += l(&c.copies_aged_out);
        self.maintain_lookups_started += l(&c.maintain_lookups_started);
        self.maintain_cache_hits += l(&c.maintain_cache_hits);
        self.maintain_paced += l(&c.maintain_paced);
    }
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn add(a: &AtomicU64, n: u64) {
    if n > 0 {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// What the backup log must record for v2 records.
#[derive(Debug)]
pub enum BackupOp2 {
    /// A stored record.
    Put(Record2),
    /// A record evicted or expired.
    Delete {
        /// Owner.
        pubkey: [u8; 32],
        /// Key.
        key: Box<[u8]>,
        /// Seq of the removed version.
        seq: u64,
    },
}

/// Why a v2 put failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put2Error {
    /// This node (a replica) refused it: `status` against its held seq.
    Local {
        /// The refusal.
        status: Status2,
        /// Seq held here.
        held_seq: u64,
    },
    /// A compare-and-swap that did not reach a majority of the replicas.
    Lost {
        /// Replicas that hold the record.
        accepted: usize,
        /// Replica set size.
        replicas: usize,
        /// The most telling refusal seen (conflict, mismatch, older), if any.
        refusal: Option<Status2>,
        /// The highest seq a refusing replica reported.
        held_seq: u64,
    },
}

impl core::fmt::Display for Put2Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let why = |s: Status2| match s {
            Status2::Conflict => "another record holds this seq (a concurrent writer won)",
            Status2::CasMismatch => "compare-and-swap mismatch",
            Status2::Older => "a higher seq is held",
            Status2::Duplicate => "duplicate",
            Status2::Stored => "stored",
            Status2::Refused => "refused (invalid or store full)",
        };
        match *self {
            Put2Error::Local { status, held_seq } => {
                write!(f, "{} (held seq {held_seq})", why(status))
            }
            Put2Error::Lost {
                accepted,
                replicas,
                refusal,
                held_seq,
            } => {
                write!(
                    f,
                    "compare-and-swap lost: {accepted} of {replicas} replicas accepted"
                )?;
                if let Some(r) = refusal {
                    write!(f, "; {} (held seq {held_seq})", why(r))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Put2Error {}

/// How a local v2 put ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put2Report {
    /// Peers the record was sent to.
    pub sent_to: Vec<SocketAddr>,
    /// Replicas (this node included) that hold the record; for a plain put, 1 if stored here.
    pub accepted: usize,
    /// Replica set size.
    pub replicas: usize,
}

/// How a local v2 get ended.
#[derive(Debug)]
pub enum Get2Outcome {
    /// The highest-seq valid record found.
    Found(Record2),
    /// Every asked peer said "not held" (or nobody to ask).
    NotFound,
    /// The deadline passed with no valid answer.
    TimedOut,
}

/// Effects of one call.
#[derive(Debug)]
pub struct Effects2<PW, GW> {
    /// Datagrams to send.
    pub outbox: Outbox,
    /// Entries for the backup log.
    pub backup: Vec<BackupOp2>,
    /// Local puts that ended.
    pub puts_done: Vec<(PW, Result<Put2Report, Put2Error>)>,
    /// Local gets that ended.
    pub gets_done: Vec<(GW, Get2Outcome)>,
    /// Owner IDs replica maintenance wants looked up (`shard::maintain`; the driver sends them
    /// to whatever runs lookups and hands the answers back to `Group2::lookup_done`).
    pub lookups: Vec<u64>,
}

impl<PW, GW> Default for Effects2<PW, GW> {
    fn default() -> Self {
        Effects2 {
            outbox: Outbox::new(),
            backup: Vec::new(),
            puts_done: Vec::new(),
            gets_done: Vec::new(),
            lookups: Vec::new(),
        }
    }
}

/// A local put to start.
#[derive(Debug)]
pub struct LocalPut2<PW> {
    /// The record (made and signed by this node).
    pub record: Record2,
    /// Compare-and-swap: the seq the replicas must hold.
    pub expect_seq: Option<u64>,
    /// The owner's commit signature over the record's work (sent to the minority if the CAS
    /// wins).
    pub commit: [u8; 64],
    /// Who to tell.
    pub waiter: PW,
}

struct PendingPut<PW> {
    waiter: PW,
    record: Record2,
    commit: [u8; 64],
    /// Remote replicas asked, and whether each answered (and accepted).
    voters: Vec<(SocketAddr, Option<bool>)>,
    accepted: usize,
    replicas: usize,
    self_in: bool,
    refusal: Option<Status2>,
    held_seq: u64,
    deadline_ms: u64,
}

struct PendingGet2<GW> {
    waiters: Vec<GW>,
    awaiting: Vec<SocketAddr>,
    /// The highest-seq valid answer from the replicas (the first of equal seqs).
    best: Option<Record2>,
    /// A copy this node (not a replica) holds: the answer only if no replica has its seq or
    /// higher, so a stale or losing copy here never outvotes the replicas at an equal seq.
    held: Option<Record2>,
    deadline_ms: u64,
}

/// Local puts or gets one shard tracks at once; more fail at once (a memory bound).
pub const MAX_PENDING2: usize = 1024;

/// PUT2_COMMITs a won CAS put sends each replica that has not answered one: the first when it
/// wins, then one each `put_timeout_ms` (from the put's deadline) until the replica answers
/// with a status that settles it. A lost commit leaves a replica holding the loser of a race,
/// which nothing else replaces (a PUT2 of equal seq and other content is a conflict); with
/// three sends a replica misses the winner only if all three (or their answers) are lost:
/// `dave sim --v2 --cas --race --loss 2` ("v2 records in the simulator", perf/README.md).
pub const MAX_COMMIT_SENDS: u8 = 3;

/// A won CAS put's commit, re-sent to the replicas that have not answered it.
struct CommitFollowUp {
    record: Record2,
    commit: [u8; 64],
    /// Replicas yet to answer.
    waiting: Vec<SocketAddr>,
    sends: u8,
    next_ms: u64,
}

/// One shard's v2 state and logic.
pub struct Shard2<PW, GW> {
    store: Arc<RwLock<Store2>>,
    rules: Rules2,
    node_id: u64,
    puts: HashMap<[u8; 32], PendingPut<PW>>,
    gets: HashMap<RecordId2, PendingGet2<GW>>,
    /// Commits of won CAS puts awaiting their replicas' answers, by work (at most
    /// [`MAX_PENDING2`]).
    commits: HashMap<[u8; 32], CommitFollowUp>,
    scratch: Vec<(SocketAddr, u64)>,
    /// Replica repair and republish of the v2 records: the same walk as v1's
    /// ([`crate::shard::repair`]), against the view of the RECORD_V2 peers.
    repair: Repair,
    /// Republish jitter.
    repair_rng: StdRng,
}

/// Queues a v2 message.
fn push(outbox: &mut Outbox, to: SocketAddr, message: &Message2<'_>) {
    let mut buf = [0u8; PUT2_COMMIT_HEADER_LEN + MAX_DAT2_LEN];
    let len = message.emit(&mut buf);
    outbox.push_bytes(to, &buf[..len]);
}

impl<PW, GW> Shard2<PW, GW> {
    /// A v2 shard around a store.
    pub fn new(store: Store2, rules: Rules2, node_id: u64) -> Shard2<PW, GW> {
        Shard2 {
            store: Arc::new(RwLock::new(store)),
            rules,
            node_id,
            puts: HashMap::new(),
            gets: HashMap::new(),
            commits: HashMap::new(),
            scratch: Vec::new(),
            repair: Repair::new(RepairConfig::default()),
            repair_rng: StdRng::seed_from_u64(2),
        }
    }

    /// Sets the repair and republish timings (the node copies them from its `Config`, as for
    /// v1 shards) and seeds the republish jitter. Call before use: it forgets the repair state.
    pub fn with_repair(mut self, config: RepairConfig, seed: u64) -> Self {
        self.repair = Repair::new(config);
        self.repair_rng = StdRng::seed_from_u64(seed);
        self
    }

    /// The RECORD_V2 peers records may be placed on changed: starts (or re-aims) a repair pass.
    pub fn set_replica_view(&mut self, view: Arc<ReplicaView>, counters: &Counters2) {
        if self.repair.set_view(view) {
            inc(&counters.repair_passes_started);
        }
    }

    /// Whether a repair or republish pass is running.
    pub fn repair_active(&self) -> bool {
        self.repair.is_active()
    }

    /// Advances replica repair of the v2 records (and starts a republish when due), exactly as
    /// [`crate::shard::core::Shard::repair_step`] does for v1: up to `*scan_budget` records
    /// (decremented), each re-sent as a PUT2 to the peers newly among its FANOUT closest, as far
    /// as `pacer` (the node-wide repair pacer) allows. Returns whether the pacer stopped it.
    pub fn repair_step(
        &mut self,
        now_ms: u64,
        pacer: &mut Pacer,
        scan_budget: &mut usize,
        counters: &Counters2,
        effects: &mut Effects2<PW, GW>,
    ) -> bool {
        let store = self.store.read();
        let report = self.repair.step(
            now_ms,
            &*store,
            self.rules.fanout,
            pacer,
            scan_budget,
            &mut self.repair_rng,
            &mut effects.outbox,
            |_, _| {},
        );
        add(&counters.repair_passes_started, report.passes_started);
        add(&counters.repair_passes_completed, report.passes_completed);
        add(&counters.repair_datagrams_sent, report.datagrams);
        add(&counters.repair_bytes_sent, report.bytes);
        report.paced
    }

    /// This node's ID (what the replica set is measured from).
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The shared store (receivers read it to answer GET2s).
    pub fn store(&self) -> &Arc<RwLock<Store2>> {
        &self.store
    }

    /// The replica set of `owner_id` into `self.scratch` (remote ones only) and whether this
    /// node is in it, and the set's size.
    fn replicas(&mut self, owner_id: u64, peers: &dyn Peers2) -> (bool, usize) {
        self.scratch.clear();
        peers.closest_v2(owner_id, self.rules.fanout, &mut self.scratch);
        let ours = distance(self.node_id, owner_id);
        let closer = self
            .scratch
            .iter()
            .filter(|&&(_, id)| distance(id, owner_id) < ours)
            .count();
        let self_in = closer < self.rules.fanout;
        if self_in && self.scratch.len() == self.rules.fanout {
            self.scratch.pop();
        }
        let size = self.scratch.len() + usize::from(self_in);
        (self_in, size)
    }

    /// A PUT2, PUT2_CAS or PUT2_COMMIT from the network: rule check (cheap), verification
    /// (work, then signature, then commit signature), store, back up. PUT2_CAS and PUT2_COMMIT
    /// are answered with a status (75 + K bytes, smaller than the request: no amplification).
    #[allow(clippy::too_many_arguments)]
    pub fn handle_put(
        &mut self,
        wall_ms: i64,
        from: SocketAddr,
        dat: Dat2<&[u8]>,
        expect_seq: Option<u64>,
        commit: Option<&[u8; 64]>,
        counters: &Counters2,
        effects: &mut Effects2<PW, GW>,
    ) {
        inc(&counters.puts_received);
        let answer = expect_seq.is_some() || commit.is_some();
        let status = self.apply_put(wall_ms, dat, expect_seq, commit, counters, effects);
        if answer {
            let held_seq = self
                .store
                .read()
                .get(dat.pubkey(), dat.key())
                .map_or(0, |h| h.seq());
            push(
                &mut effects.outbox,
                from,
                &Message2::Put2Status {
                    status,
                    held_seq,
                    work: dat.work(),
                    pubkey: dat.pubkey(),
                    key: dat.key(),
                },
            );
        }
    }

    fn apply_put(
        &mut self,
        wall_ms: i64,
        dat: Dat2<&[u8]>,
        expect_seq: Option<u64>,
        commit: Option<&[u8; 64]>,
        counters: &Counters2,
        effects: &mut Effects2<PW, GW>,
    ) -> Status2 {
        let status = self.store.read().check(&dat, expect_seq, commit.is_some());
        if status == Status2::Duplicate {
            // Byte for byte what we hold: someone stored our copy again (a maintenance
            // republish), which restarts its clock (`route::maintain`).
            self.store.write().restored(dat.pubkey(), dat.key());
        }
        if status != Status2::Stored {
            inc(&counters.puts_refused);
            return status;
        }
        if verify_put(&dat, commit, self.rules.min_work_bits, wall_ms).is_err() {
            inc(&counters.puts_invalid);
            return Status2::Refused;
        }
        match self.insert(
            dat.to_boxed(),
            expect_seq,
            commit.is_some(),
            wall_ms,
            effects,
        ) {
            Ok(()) => {
                inc(&counters.puts_stored);
                Status2::Stored
            }
            Err(status) => {
                inc(&counters.puts_refused);
                status
            }
        }
    }

    fn insert(
        &mut self,
        record: Record2,
        expect_seq: Option<u64>,
        committed: bool,
        wall_ms: i64,
        effects: &mut Effects2<PW, GW>,
    ) -> Result<(), Status2> {
        let copy = record.to_boxed();
        let inserted = self
            .store
            .write()
            .insert(record, expect_seq, committed, wall_ms)?;
        effects.backup.push(BackupOp2::Put(copy));
        log_evicted(inserted, effects);
        Ok(())
    }

    /// Starts a local put of a record this node made. A plain put (no `expect_seq`) is stored
    /// here and sent to the replicas at once (PUT2, unanswered); a CAS put follows the quorum
    /// protocol of the module docs and completes on the statuses.
    pub fn local_put(
        &mut self,
        now_ms: u64,
        wall_ms: i64,
        put: LocalPut2<PW>,
        peers: &dyn Peers2,
        counters: &Counters2,
        effects: &mut Effects2<PW, GW>,
    ) {
        inc(&counters.local_puts);
        let LocalPut2 {
            record,
            expect_seq,
            commit,
            waiter,
        } = put;
        let (self_in, replicas) = self.replicas(record.owner_id(), peers);
        let sent_to: Vec<SocketAddr> = self.scratch.iter().map(|&(a, _)| a).collect();
        let Some(expected) = expect_seq else {
            if let Err(status) = self.insert(record.to_boxed(), None, false, wall_ms, effects) {
                let held_seq = self.held_seq(&record);
                effects
                    .puts_done
                    .push((waiter, Err(Put2Error::Local { status, held_seq })));
                return;
            }
            for &to in &sent_to {
                push(&mut effects.outbox, to, &Message2::Put2(record.as_view()));
            }
            effects.puts_done.push((
                waiter,
                Ok(Put2Report {
                    sent_to,
                    accepted: 1,
                    replicas,
                }),
            ));
            return;
        };
        if self.puts.len() >= MAX_PENDING2 || self.puts.contains_key(record.work()) {
            effects.puts_done.push((
                waiter,
                Err(Put2Error::Local {
                    status: Status2::Refused,
                    held_seq: 0,
                }),
            ));
            return;
        }
        let mut accepted = 0;
        if self_in {
            if let Err(status) =
                self.insert(record.to_boxed(), Some(expected), false, wall_ms, effects)
            {
                let held_seq = self.held_seq(&record);
                effects
                    .puts_done
                    .push((waiter, Err(Put2Error::Local { status, held_seq })));
                inc(&counters.cas_lost);
                return;
            }
            accepted = 1;
        }
        for &to in &sent_to {
            push(
                &mut effects.outbox,
                to,
                &Message2::Put2Cas {
                    expect_seq: expected,
                    dat: record.as_view(),
                },
            );
        }
        let work = *record.work();
        self.puts.insert(
            work,
            PendingPut {
                waiter,
                record,
                commit,
                voters: sent_to.iter().map(|&a| (a, None)).collect(),
                accepted,
                replicas,
                self_in,
                refusal: None,
                held_seq: 0,
                deadline_ms: now_ms + self.rules.put_timeout_ms,
            },
        );
        self.settle_put(&work, false, wall_ms, counters, effects);
    }

    fn held_seq(&self, record: &Record2) -> u64 {
        self.store
            .read()
            .get(record.pubkey(), record.key())
            .map_or(0, |h| h.seq())
    }

    /// A PUT2_STATUS from the network: counts a replica's vote for a pending CAS put.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_status(
        &mut self,
        wall_ms: i64,
        from: SocketAddr,
        status: Status2,
        held_seq: u64,
        work: &[u8; 32],
        counters: &Counters2,
        effects: &mut Effects2<PW, GW>,
    ) {
        let Some(pending) = self.puts.get_mut(work) else {
            self.commit_answered(from, status, work, counters);
            return;
        };
        let Some(voter) = pending
            .voters
            .iter_mut()
            .find(|(a, answered)| *a == from && answered.is_none())
        else {
            inc(&counters.unsolicited);
            return;
        };
        voter.1 = Some(status.is_accepted());
        if status.is_accepted() {
            pending.accepted += 1;
        } else if pending.refusal.is_none_or(|r| r == Status2::Refused) {
            pending.refusal = Some(status);
            pending.held_seq = pending.held_seq.max(held_seq);
        } else {
            pending.held_seq = pending.held_seq.max(held_seq);
        }
        let work = *work;
        self.settle_put(&work, false, wall_ms, counters, effects);
    }

    /// A status for a record whose CAS put already ended: the answer to its commit. A status
    /// that says the replica holds the winner or something newer (or will never take it) ends
    /// the follow-up there; a conflict or mismatch is its late answer to the CAS itself, and the
    /// commit is still awaited.
    fn commit_answered(
        &mut self,
        from: SocketAddr,
        status: Status2,
        work: &[u8; 32],
        counters: &Counters2,
    ) {
        let Some(follow_up) = self.commits.get_mut(work) else {
            inc(&counters.unsolicited);
            return;
        };
        let Some(i) = follow_up.waiting.iter().position(|&a| a == from) else {
            inc(&counters.unsolicited);
            return;
        };
        if matches!(status, Status2::Conflict | Status2::CasMismatch) {
            return;
        }
        follow_up.waiting.swap_remove(i);
        if follow_up.waiting.is_empty() {
            self.commits.remove(work);
        }
    }

    /// Re-sends the commits due at `now_ms`; a follow-up that had its sends is dropped.
    fn resend_commits(
        &mut self,
        now_ms: u64,
        counters: &Counters2,
        effects: &mut Effects2<PW, GW>,
    ) {
        let mut due: Vec<[u8; 32]> = self
            .commits
            .iter()
            .filter(|(_, f)| f.next_ms <= now_ms)
            .map(|(w, _)| *w)
            .collect();
        due.sort_unstable();
        for work in due {
            let Some(f) = self.commits.get_mut(&work) else {
                continue;
            };
            if f.sends >= MAX_COMMIT_SENDS {
                self.commits.remove(&work);
                continue;
            }
            for &to in &f.waiting {
                push(
                    &mut effects.outbox,
                    to,
                    &Message2::Put2Commit {
                        commit: &f.commit,
                        dat: f.record.as_view(),
                    },
                );
                inc(&counters.commits_sent);
            }
            f.sends += 1;
            f.next_ms = now_ms.saturating_add(self.rules.put_timeout_ms);
        }
    }

    /// Ends a pending CAS put if it has a majority, can no longer get one, or `expired`.
    fn settle_put(
        &mut self,
        work: &[u8; 32],
        expired: bool,
        wall_ms: i64,
        counters: &Counters2,
        effects: &mut Effects2<PW, GW>,
    ) {
        let Some(pending) = self.puts.get(work) else {
            return;
        };
        let quorum = pending.replicas / 2 + 1;
        let refused = pending
            .voters
            .iter()
            .filter(|(_, v)| *v == Some(false))
            .count();
        let won = pending.accepted >= quorum;
        let lost = pending.replicas - refused < quorum || expired;
        if !won && !lost {
            return;
        }
        let Some(pending) = self.puts.remove(work) else {
            return;
        };
        if !won {
            inc(&counters.cas_lost);
            effects.puts_done.push((
                pending.waiter,
                Err(Put2Error::Lost {
                    accepted: pending.accepted,
                    replicas: pending.replicas,
                    refusal: pending.refusal,
                    held_seq: pending.held_seq,
                }),
            ));
            return;
        }
        inc(&counters.cas_won);
        // The minority (and replicas yet to answer) take the winner by its commit, re-sent
        // until each answers (`MAX_COMMIT_SENDS`).
        let waiting: Vec<SocketAddr> = pending
            .voters
            .iter()
            .filter(|&&(_, vote)| vote != Some(true))
            .map(|&(to, _)| to)
            .collect();
        for &to in &waiting {
            push(
                &mut effects.outbox,
                to,
                &Message2::Put2Commit {
                    commit: &pending.commit,
                    dat: pending.record.as_view(),
                },
            );
            inc(&counters.commits_sent);
        }
        if !waiting.is_empty() && self.commits.len() < MAX_PENDING2 {
            // The next send when the put's deadline passes (a CAS put that won at its
            // deadline waits one timeout more).
            let next_ms = if expired {
                pending
                    .deadline_ms
                    .saturating_add(self.rules.put_timeout_ms)
            } else {
                pending.deadline_ms
            };
            self.commits.insert(
                *pending.record.work(),
                CommitFollowUp {
                    record: pending.record.to_boxed(),
                    commit: pending.commit,
                    waiting,
                    sends: 1,
                    next_ms,
                },
            );
        }
        if !pending.self_in {
            // Not a replica: keep a copy of the winner now that it won (a refusal here only
            // means this node already holds it or something newer).
            let _refused = self.insert(pending.record.to_boxed(), None, true, wall_ms, effects);
        }
        let accepted = pending.accepted;
        effects.puts_done.push((
            pending.waiter,
            Ok(Put2Report {
                sent_to: pending.voters.iter().map(|&(a, _)| a).collect(),
                accepted,
                replicas: pending.replicas,
            }),
        ));
    }

    /// Starts a local get: a replica holding the record answers at once; otherwise the
    /// replicas are asked and the highest valid seq wins (a copy held here only if it is
    /// strictly newer than every answer: at an equal seq the replicas decide).
    #[allow(clippy::too_many_arguments)]
    pub fn start_get(
        &mut self,
        now_ms: u64,
        pubkey: [u8; 32],
        key: &[u8],
        timeout_ms: u64,
        waiter: GW,
        peers: &dyn Peers2,
        effects: &mut Effects2<PW, GW>,
    ) {
        let held = self.store.read().get(&pubkey, key).map(|d| d.to_boxed());
        let (self_in, _) = self.replicas(crate::keys::id_from_pubkey(&pubkey), peers);
        if let Some(held) = &held
            && self_in
        {
            effects
                .gets_done
                .push((waiter, Get2Outcome::Found(held.to_boxed())));
            return;
        }
        let id: RecordId2 = (pubkey, key.into());
        if let Some(pending) = self.gets.get_mut(&id) {
            pending.waiters.push(waiter);
            return;
        }
        if self.scratch.is_empty() || self.gets.len() >= MAX_PENDING2 {
            let outcome = match held {
                Some(held) => Get2Outcome::Found(held),
                None if self.scratch.is_empty() => Get2Outcome::NotFound,
                None => Get2Outcome::TimedOut,
            };
            effects.gets_done.push((waiter, outcome));
            return;
        }
        let get = Message2::Get2 {
            pubkey: &pubkey,
            key,
        };
        let awaiting: Vec<SocketAddr> = self.scratch.iter().map(|&(a, _)| a).collect();
        for &to in &awaiting {
            push(&mut effects.outbox, to, &get);
        }
        self.gets.insert(
            id,
            PendingGet2 {
                waiters: vec![waiter],
                awaiting,
                best: None,
                held,
                deadline_ms: now_ms + timeout_ms,
            },
        );
    }

    /// A GET2_ACK (`Some(dat)`) or GET2_NONE (`None`) for (pubkey, key) from `from`: trusted only
    /// if it answers a pending get sent to that peer, and verified like a PUT2.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_get_ack(
        &mut self,
        now_ms: u64,
        wall_ms: i64,
        from: SocketAddr,
        id: RecordId2,
        dat: Option<Dat2<&[u8]>>,
        counters: &Counters2,
        effects: &mut Effects2<PW, GW>,
    ) {
        let Some(pending) = self.gets.get_mut(&id) else {
            inc(&counters.unsolicited);
            return;
        };
        let Some(at) = pending.awaiting.iter().position(|&a| a == from) else {
            inc(&counters.unsolicited);
            return;
        };
        inc(&counters.acks_received);
        pending.awaiting.swap_remove(at);
        if let Some(dat) = dat {
            if verify_dat2(&dat, self.rules.min_work_bits, wall_ms).is_err() {
                inc(&counters.acks_invalid);
            } else {
                let newer = pending.best.as_ref().is_none_or(|b| dat.seq() > b.seq());
                if newer {
                    pending.best = Some(dat.to_boxed());
                }
                pending.deadline_ms = pending.deadline_ms.min(now_ms + self.rules.get_settle_ms);
            }
        }
        if pending.awaiting.is_empty() {
            self.finish_get(&id, effects);
        }
    }

    fn finish_get(&mut self, id: &RecordId2, effects: &mut Effects2<PW, GW>) {
        let Some(pending) = self.gets.remove(id) else {
            return;
        };
        let answer = match (pending.best, pending.held) {
            (Some(best), Some(held)) if held.seq() > best.seq() => Some(held),
            (Some(best), _) => Some(best),
            (None, held) => held,
        };
        let outcome = |answer: &Option<Record2>| match answer {
            Some(b) => Get2Outcome::Found(b.to_boxed()),
            None if pending.awaiting.is_empty() => Get2Outcome::NotFound,
            None => Get2Outcome::TimedOut,
        };
        for w in pending.waiters {
            effects.gets_done.push((w, outcome(&answer)));
        }
    }

    /// Timers: expires records, ends gets and CAS puts past their deadline.
    pub fn tick(
        &mut self,
        now_ms: u64,
        wall_ms: i64,
        expire: bool,
        counters: &Counters2,
        effects: &mut Effects2<PW, GW>,
    ) {
        if expire {
            for gone in self.store.write().tick(wall_ms) {
                effects.backup.push(BackupOp2::Delete {
                    pubkey: *gone.pubkey(),
                    key: gone.key().into(),
                    seq: gone.seq(),
                });
            }
        }
        // In key order, not the maps' (random) order: the effects' order must be a function
        // of the inputs (the simulator replays runs by seed).
        let mut due: Vec<RecordId2> = self
            .gets
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        due.sort_unstable();
        for id in due {
            self.finish_get(&id, effects);
        }
        let mut due: Vec<[u8; 32]> = self
            .puts
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(w, _)| *w)
            .collect();
        due.sort_unstable();
        for work in due {
            self.settle_put(&work, true, wall_ms, counters, effects);
        }
        self.resend_commits(now_ms, counters, effects);
    }

    /// The earliest deadline of a pending get or put, or of a commit to re-send.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let gets = self.gets.values().map(|p| p.deadline_ms);
        let puts = self.puts.values().map(|p| p.deadline_ms);
        let commits = self.commits.values().map(|f| f.next_ms);
        gets.chain(puts).chain(commits).min()
    }
}

/// Answers a GET2 from a store (used by the receiver read path and the owner).
pub fn answer_get2(
    store: &Store2,
    from: SocketAddr,
    pubkey: &[u8; 32],
    key: &[u8],
    counters: &Counters2,
    outbox: &mut Outbox,
) {
    inc(&counters.gets_received);
    match store.get(pubkey, key) {
        Some(dat) => push(outbox, from, &Message2::Get2Ack(dat.as_view())),
        None => push(outbox, from, &Message2::Get2None { pubkey, key }),
    }
}

fn log_evicted<PW, GW>(inserted: Inserted2, effects: &mut Effects2<PW, GW>) {
    for gone in inserted.evicted {
        effects.backup.push(BackupOp2::Delete {
            pubkey: *gone.pubkey(),
            key: gone.key().into(),
            seq: gone.seq(),
        });
    }
}

/// Work, time, signature, then the commit signature if any.
fn verify_put(
    dat: &Dat2<&[u8]>,
    commit: Option<&[u8; 64]>,
    min_work_bits: u32,
    wall_ms: i64,
) -> Result<(), VerifyError> {
    check_work2(dat, min_work_bits, wall_ms)?;
    if !crate::keys::verify_signature(dat.pubkey(), dat.work(), dat.sig()) {
        return Err(VerifyError::BadSignature);
    }
    if let Some(commit) = commit
        && !verify_commit2(dat, commit)
    {
        return Err(VerifyError::BadSignature);
    }
    Ok(())
}
