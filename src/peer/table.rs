//! [`PeerTable`]: the peer life cycle, the ping schedule, PONG checks, discovery and the
//! own-address exchange, as a sans-I/O state machine (`handle(now, from, msg)`, `tick(now)`).
//!
//! Rules this file enforces (PROTOCOL.md §6, Peers / Amplification):
//! - Only an address that answered *our* PING with a valid PONG becomes a peer. A PONG is valid
//!   when it answers the outstanding challenge of its source address, is not signed by a key other
//!   than the one pinned to that address (or pinned to another address, or ours), and its
//!   signature verifies over `blake3(challenge ‖ salt)` (Ed25519; the simulator may swap in a
//!   keyed MAC with the same meaning, `PeerConfig::pong_auth`). Checks run cheapest first and a
//!   refused PONG changes nothing: only the right answer clears a challenge.
//! - A PONG's addresses are only candidates. Each candidate (and each stranger that pings us)
//!   gets one PING; it becomes a peer only by answering it. Candidates and peers are bounded, per
//!   IP and per prefix too. A PONG listing more than `npeer_limit` addresses is refused first.
//! - Every peer and edge is pinged once per `ping_period_ms` with a fresh random challenge, except
//!   a peer the router watches (`PeerConfig::router_liveness`, both sides speak ROUTING, and it
//!   has been active: a newcomer answers PINGs through the activation delay first, so a fly-by
//!   client never becomes a target): it is no longer pinged, and lives by its answers to us (PONGs, and the router's
//!   requests as [`PeerTable::router_heard`] reports them), the router's evictions
//!   ([`PeerTable::router_evicted`]) and the `routed_*` silence bounds. Background PING/PONG
//!   traffic then grows with the v1 peers only; the router's own liveness traffic is
//!   O(k log N) per refresh interval (`route::router`). A table of more than
//!   [`PING_AT_ONCE_AT_MOST`] peers sends each round in [`PING_ROUND_SLICES`] slices across
//!   the period, so their PONGs' signature checks do not arrive in one burst; the PONGs that
//!   do arrive together may be checked in one batch first ([`PeerTable::check_pongs_together`]),
//!   which changes what they cost, never how they are answered.
//! - The table is deterministic for a given seed and input sequence: maps are `BTreeMap`s, so
//!   iteration (and therefore the order of effects and RNG draws) never depends on hashing.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
use rand::{Rng, SeedableRng};

use crate::keys::{
    DecodedKey, Keypair, MAX_VERIFY_BATCH, SignedMessage, id_from_pubkey, verify_batch,
};
use crate::limits::{ADDR_LEN, MAX_PONG_ADDRS, PONG_MIN_LEN};
use crate::peer::addr_check::{IpCounts, IpLimits, LimitHit, check_addr, crosses_loopback_scope};
use crate::peer::budget::TokenBucket;
use crate::peer::pong_auth::PongAuthenticator;
use crate::peer::prover::{ProofAnswer, ProofPurpose, Prover};
use crate::peer::{
    Effects, Outgoing, PeerConfig, PeerConfigError, PeerEvent, PeerInfo, PeerScore, PeerSnapshot,
    PeerStats, Trust,
};
use crate::wire::ext::{build_salt, salt_features};
use crate::wire::{
    Features, Message, PongRepr, WireAddr, addr_from_wire, addr_to_wire, normalize_addr,
    pong_signed_hash,
};

/// A ping round of a large table goes out in up to this many slices, one every
/// `ping_period_ms / 50` (20 ms): 1,000 peers are pinged 20 at a time, so their PONGs cost ~1 ms
/// of signature checks at a time rather than ~45 ms at once.
pub const PING_ROUND_SLICES: u64 = 50;
/// A table of up to this many peers and edges picks the addresses its PONGs list by a scan of
/// every peer (reservoir sampling, as before tables grew large: ~64 checks per PING); a larger
/// one by random draws over an index of its peers ([`PeerTable::pick_listed`]), so answering a
/// PING costs the same at 1,000 peers as at 64 (the scan was 1,000 checks and random draws per
/// PING, ~1 M a second at the default 1,000 peers, ~0.02 of a core).
pub const LIST_BY_SCAN_AT_MOST: usize = 64;

/// Random draws per address wanted before a large table falls back to the scan: with at least
/// half of the peers listable (every active peer is), 8 draws per address miss one of 5 with a
/// probability below 1e-6; fewer listable (a table still filling) just costs the scan.
const LIST_DRAWS_PER_ADDR: usize = 8;

/// A table of up to this many peers and edges is pinged at once, as the reference pings its
/// table (64 PONG checks are ~3 ms of one core); a larger one in [`PING_ROUND_SLICES`] slices.
pub const PING_AT_ONCE_AT_MOST: usize = 64;

/// A peer: an authenticated address, or an edge (authenticated or not).
#[derive(Debug, Clone)]
struct Peer {
    /// Configured edge: never dropped.
    edge: bool,
    /// Pinned by the first valid PONG; `None` only for an edge that has not (re-)authenticated.
    pubkey: Option<[u8; 32]>,
    /// When the key was pinned (activation delay runs from here).
    authenticated_ms: u64,
    /// Last valid PONG, or (for a peer the router watches) last answer to a router request
    /// (meaningful only while `pubkey` is set).
    last_answer_ms: u64,
    /// Our outstanding challenge; replaced each ping round, cleared only by its right answer.
    challenge: Option<[u8; 8]>,
    /// In the snapshot.
    active: bool,
    /// Storage-challenge record (scored by a later issue).
    trust: Trust,
    /// Extensions both sides speak: the ones its last accepted PONG's salt advertised
    /// (`wire::ext`), intersected with ours. `NONE` until it answers, and for a v1 peer.
    features: Features,
    /// It has been active since it was last authenticated: it answered our PINGs through the
    /// activation delay (an edge: at once). Only then may the router take over its liveness, so
    /// a fly-by client never becomes a target, as on the v1 schedule.
    settled: bool,
    /// Its pinned key, decoded once, while its PONGs' signatures may be checked in batches
    /// ([`PeerTable::check_pongs_together`]) or with the decoded key alone: set when its key is
    /// pinned, unless the key is of small order (a batch refuses those whole); cleared for good
    /// by a PONG of it whose signature fails, so a peer can spoil at most one batch while it is
    /// in the table (its later PONGs are checked from their bytes).
    batch_key: Option<DecodedKey>,
}

impl Peer {
    fn edge() -> Peer {
        Peer {
            edge: true,
            pubkey: None,
            authenticated_ms: 0,
            last_answer_ms: 0,
            challenge: None,
            active: false,
            trust: Trust::default(),
            features: Features::NONE,
            settled: false,
            batch_key: None,
        }
    }
}

/// An address heard of, pinged once, not yet answered.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// When it was added (and pinged).
    added_ms: u64,
    /// The challenge of its one PING.
    challenge: [u8; 8],
    /// Added because it pinged us (unverified source), not from a PONG list.
    pinger: bool,
}

/// The peer table. See the module docs for its rules.
#[derive(Debug)]
pub struct PeerTable {
    config: PeerConfig,
    keypair: Keypair,
    /// Signs our PONGs and checks others' (`config.pong_auth`, fixed here; Ed25519 in the node).
    pong_auth: PongAuthenticator,
    /// Our public key, cached (PONGs signed with it are our own).
    public: [u8; 32],
    /// Challenges, salts and samples. Seeded, so a simulation replays exactly; seed it from a
    /// secret random source in production, since challenges must be unpredictable.
    rng: StdRng,
    /// Peers and edges by normalised address. At most `max_peers`.
    peers: BTreeMap<SocketAddr, Peer>,
    /// Candidates by normalised address. At most `max_candidates`; never also in `peers`.
    candidates: BTreeMap<SocketAddr, Candidate>,
    /// Candidates with `pinger` set. At most `max_pinger_candidates`.
    pinger_candidates: usize,
    /// Per-IP / per-prefix counts of `peers`.
    peer_counts: IpCounts,
    /// Per-IP / per-prefix counts of `candidates`.
    candidate_counts: IpCounts,
    /// The addresses of `peers`, in address order, for random draws (a large table's PONG list);
    /// rebuilt when `peer_addrs_stale`.
    peer_addrs: Vec<SocketAddr>,
    /// A peer was added or removed since `peer_addrs` was built.
    peer_addrs_stale: bool,
    /// Pinned keys: which address holds each (one address per key). Same size as the pinned peers.
    pubkeys: BTreeMap<[u8; 32], SocketAddr>,
    /// The node-wide own address, from the last accepted GETMYADDRPORT_ACK.
    own_addr: Option<SocketAddr>,
    /// Outstanding GETMYADDRPORT requests: destination → when sent. At most one per edge.
    myaddr_requests: BTreeMap<SocketAddr, u64>,
    /// When the last GETMYADDRPORT round went out.
    myaddr_sent_ms: u64,
    /// When the next GETMYADDRPORT round is due.
    next_myaddr_ms: u64,
    /// When the next ping round is due.
    next_round_ms: u64,
    /// Peers of the current ping round not pinged yet (a large table's round goes out in
    /// slices, [`PING_ROUND_SLICES`]), in address order.
    round_rest: VecDeque<SocketAddr>,
    /// PINGs per slice of the current round.
    round_slice_len: usize,
    /// When the current round's next slice is due.
    next_slice_ms: u64,
    /// The latest `now_ms` seen; time never runs backwards inside the table.
    latest_ms: u64,
    /// The published view of active peers.
    snapshot: Arc<PeerSnapshot>,
    /// The active set changed since `snapshot` was built.
    snapshot_dirty: bool,
    /// The prover's `proven_changes` when `snapshot`'s one-hop strangers were last compared.
    snapshot_proven_changes: u64,
    /// Outstanding address proofs for the routing extension ([`PeerTable::prove`]).
    prover: Prover,
    /// What is left of `config.unproven_pong_budget`: PONGs to unproven addresses are signed
    /// only while it lasts.
    unproven_pongs: TokenBucket,
    /// PONG signatures that verified together in the last [`PeerTable::check_pongs_together`]
    /// (at most [`MAX_VERIFY_BATCH`]): the PONGs that carry them are not checked again.
    pongs_checked: Vec<CheckedPong>,
    stats: PeerStats,
}

/// A PONG signature known to verify: `sig` by `key` over `hash` (`pong_signed_hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CheckedPong {
    pub(super) key: DecodedKey,
    pub(super) hash: [u8; 32],
    pub(super) sig: [u8; 64],
}

impl PeerTable {
    /// A table for `config` (validated), answering as `keypair`, with its RNG seeded from `seed`.
    ///
    /// The seed makes runs reproducible; in production pass a secret random value (or use
    /// [`PeerTable::with_seed_bytes`] with 32 random bytes): an off-path attacker who could
    /// predict our challenges could answer them for a spoofed address.
    pub fn new(config: PeerConfig, keypair: Keypair, seed: u64) -> Result<Self, PeerConfigError> {
        Self::with_rng(config, keypair, StdRng::seed_from_u64(seed))
    }

    /// Like [`PeerTable::new`] with a full 256-bit RNG seed.
    pub fn with_seed_bytes(
        config: PeerConfig,
        keypair: Keypair,
        seed: [u8; 32],
    ) -> Result<Self, PeerConfigError> {
        Self::with_rng(config, keypair, StdRng::from_seed(seed))
    }

    fn with_rng(
        mut config: PeerConfig,
        keypair: Keypair,
        rng: StdRng,
    ) -> Result<Self, PeerConfigError> {
        config.validate()?;
        config.edges = config.normalized_edges();
        config.listen_addr = config.listen_addr.map(normalize_addr);
        let limits = IpLimits {
            max_per_ip: config.max_peers_per_ip,
            max_per_prefix: config.max_peers_per_prefix,
            ipv4_prefix_len_bits: config.ipv4_prefix_len_bits,
            ipv6_prefix_len_bits: config.ipv6_prefix_len_bits,
            exempt_loopback: config.exempt_loopback_from_ip_limits,
        };
        let mut peers = BTreeMap::new();
        let mut peer_counts = IpCounts::new(limits);
        // Edges are configured by the operator: they are counted but never refused by a limit.
        for &edge in &config.edges {
            peers.insert(edge, Peer::edge());
            peer_counts.add(edge.ip());
        }
        let prover = Prover::new(
            keypair.public(),
            config.features,
            config.proofs_per_s,
            config.stranger_proofs_per_s,
            config.proof_timeout_ms,
        );
        Ok(PeerTable {
            pong_auth: PongAuthenticator::new(&config.pong_auth, &keypair),
            public: keypair.public(),
            keypair,
            rng,
            peers,
            candidates: BTreeMap::new(),
            pinger_candidates: 0,
            peer_counts,
            candidate_counts: IpCounts::new(limits),
            peer_addrs: Vec::new(),
            peer_addrs_stale: true,
            pubkeys: BTreeMap::new(),
            own_addr: None,
            myaddr_requests: BTreeMap::new(),
            myaddr_sent_ms: 0,
            next_myaddr_ms: 0,
            next_round_ms: 0,
            round_rest: VecDeque::new(),
            round_slice_len: 0,
            next_slice_ms: 0,
            latest_ms: 0,
            snapshot: Arc::new(PeerSnapshot::default()),
            snapshot_dirty: false,
            snapshot_proven_changes: 0,
            prover,
            pongs_checked: Vec::new(),
            unproven_pongs: TokenBucket::full(&config.unproven_pong_budget, 0),
            stats: PeerStats::default(),
            config,
        })
    }

    // ----- Queries -----

    /// The configuration in use (edges and listen address normalised).
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// Our public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The counters.
    pub fn stats(&self) -> &PeerStats {
        &self.stats
    }

    /// The active peers (cheap: an `Arc` clone; rebuilt only when the active set changes).
    pub fn snapshot(&self) -> Arc<PeerSnapshot> {
        Arc::clone(&self.snapshot)
    }

    /// The node-wide own address, once an edge told us.
    pub fn own_addr(&self) -> Option<SocketAddr> {
        self.own_addr
    }

    /// Whether `addr` answered our PING with a valid PONG and has not been dropped since: it
    /// demonstrably receives our packets, so replies to it need no amplification budget.
    pub fn is_proven(&self, addr: SocketAddr) -> bool {
        self.proven(normalize_addr(addr))
    }

    fn proven(&self, addr: SocketAddr) -> bool {
        self.peers.get(&addr).is_some_and(|p| p.pubkey.is_some())
            || self.prover.proven_key(self.latest_ms, addr).is_some()
    }

    /// Every address that is proven now (see [`PeerTable::is_proven`]; an address may appear
    /// twice): what the node publishes to its receivers after `Authenticated` and `Dropped`
    /// events and whenever [`PeerTable::proven_changes`] moves.
    pub fn proven_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.pubkey.is_some())
            .map(|(&addr, _)| addr)
            .chain(self.prover.proven_addrs())
    }

    /// A counter that moves whenever an address outside the table is proven or forgotten (the
    /// prover's proven addresses, `peer::prover`); with the `Authenticated` and `Dropped`
    /// events it tells a driver when [`PeerTable::proven_addrs`] changed.
    pub fn proven_changes(&self) -> u64 {
        self.prover.proven_changes()
    }

    /// Addresses outside the table proven lately (`peer::prover`), kept at most
    /// `prover::PROVEN_TTL_MS`.
    pub fn proven_strangers(&self) -> usize {
        self.prover.proven_count()
    }

    /// The storage-challenge record of every authenticated peer, in address order.
    pub fn scores(&self) -> Vec<PeerScore> {
        self.peers
            .iter()
            .filter_map(|(&addr, p)| {
                p.pubkey.map(|pubkey| PeerScore {
                    addr,
                    pubkey,
                    active: p.active,
                    edge: p.edge,
                    successes: p.trust.successes,
                    failures: p.trust.failures,
                    reliability: p.trust.reliability(),
                })
            })
            .collect()
    }

    /// Whether `addr` is in the table (a peer or an edge, authenticated or not).
    pub fn is_peer(&self, addr: SocketAddr) -> bool {
        self.peers.contains_key(&normalize_addr(addr))
    }

    /// Whether `addr` is a candidate (pinged once, not answered yet).
    pub fn is_candidate(&self, addr: SocketAddr) -> bool {
        self.candidates.contains_key(&normalize_addr(addr))
    }

    /// Whether `addr` is an active peer.
    pub fn is_active(&self, addr: SocketAddr) -> bool {
        self.peers
            .get(&normalize_addr(addr))
            .is_some_and(|p| p.active)
    }

    /// The extensions both we and the peer at `addr` speak (`Features::NONE` for a v1 peer, an
    /// unauthenticated edge or an unknown address).
    pub fn features_of(&self, addr: SocketAddr) -> Features {
        self.peers
            .get(&normalize_addr(addr))
            .map_or(Features::NONE, |p| p.features)
    }

    /// Whether the router, not the ping schedule, watches the peer at `addr` (see
    /// `PeerConfig::router_liveness`).
    pub fn is_routed(&self, addr: SocketAddr) -> bool {
        self.peers
            .get(&normalize_addr(addr))
            .is_some_and(|p| routed(&self.config, p))
    }

    /// The key pinned to `addr`, if it is an authenticated peer.
    pub fn pubkey_of(&self, addr: SocketAddr) -> Option<[u8; 32]> {
        self.peers.get(&normalize_addr(addr)).and_then(|p| p.pubkey)
    }

    /// Whether we have a PING to `addr` awaiting its answer.
    pub fn has_outstanding_challenge(&self, addr: SocketAddr) -> bool {
        let addr = normalize_addr(addr);
        self.peers.get(&addr).is_some_and(|p| p.challenge.is_some())
            || self.candidates.contains_key(&addr)
    }

    /// Peers and edges in the table.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Candidates waiting for their answer.
    pub fn candidate_count(&self) -> usize {
        self.candidates.len()
    }

    /// The earliest time a [`PeerTable::tick`] has scheduled work (a ping round or an own-address
    /// request). Deactivation, drops and candidate expiry are checked on every tick, so ticking at
    /// least every `ping_period_ms` (which this time guarantees) bounds their lateness by it.
    pub fn next_tick_ms(&self) -> u64 {
        let mut next = self.next_round_ms;
        if !self.config.edges.is_empty() {
            next = next.min(self.next_myaddr_ms);
        }
        if !self.round_rest.is_empty() {
            next = next.min(self.next_slice_ms);
        }
        next
    }

    // ----- Inputs -----

    /// Checks the signatures of `pongs` together, ahead of handing each to [`PeerTable::handle`]
    /// (a batch costs about half as much per signature as checking each: `keys::verify_batch`).
    /// Taken into the batch: each PONG that answers the outstanding challenge of a peer in the
    /// table, signed by the key pinned to it (the steady liveness traffic of a large table; a
    /// candidate's or a proof's PONG is checked on its own). When the whole batch verifies,
    /// `handle` takes those signatures as checked; otherwise it checks each as before. Nothing
    /// else changes here: every rule is still applied by `handle`, in its order, and a PONG's
    /// answer is the same with or without this call. Replaces the previous batch. Only for
    /// Ed25519 PONGs (the simulator's MAC costs less alone), and at most [`MAX_VERIFY_BATCH`].
    pub fn check_pongs_together<'a>(
        &mut self,
        pongs: impl IntoIterator<Item = (SocketAddr, &'a PongRepr)>,
    ) {
        self.pongs_checked.clear();
        if !matches!(self.pong_auth, PongAuthenticator::Ed25519) {
            return;
        }
        let mut batch = Vec::new();
        for (from, pong) in pongs {
            if batch.len() == MAX_VERIFY_BATCH {
                break;
            }
            let Some(peer) = self.peers.get(&normalize_addr(from)) else {
                continue;
            };
            if let Some(key) = peer.batch_key.filter(|key| {
                peer.challenge == Some(pong.challenge) && key.as_bytes() == &pong.pubkey
            }) {
                batch.push(CheckedPong {
                    key,
                    hash: pong_signed_hash(&pong.challenge, &pong.salt),
                    sig: pong.sig,
                });
            }
        }
        if batch.len() < 2 {
            return;
        }
        let signed: Vec<SignedMessage<'_>> = batch
            .iter()
            .map(|c| SignedMessage {
                key: &c.key,
                message: &c.hash,
                sig: &c.sig,
            })
            .collect();
        if verify_batch(&signed) {
            self.stats.pong_signatures_batched += batch.len() as u64;
            self.pongs_checked = batch;
        } else {
            self.stats.pong_batches_failed += 1;
        }
    }

    /// Handles one message from `from`. PING, PONG, GETMYADDRPORT and GETMYADDRPORT_ACK are the
    /// peer table's; anything else is counted as `wrong_op` and ignored. Never panics.
    pub fn handle(&mut self, now_ms: u64, from: SocketAddr, msg: &Message<'_>) -> Effects {
        let now = self.clock(now_ms);
        let from = normalize_addr(from);
        let mut fx = Effects::default();
        if !matches!(
            msg,
            Message::Ping { .. }
                | Message::Pong(_)
                | Message::GetMyAddrPort
                | Message::GetMyAddrPortAck(_)
        ) {
            self.stats.wrong_op += 1;
            return fx;
        }
        if check_addr(from).is_err() {
            self.stats.bad_source += 1;
            return fx;
        }
        if self.is_ours(from) {
            self.stats.own_source += 1;
            return fx;
        }
        match msg {
            Message::Ping { challenge } => self.on_ping(now, from, challenge, &mut fx),
            Message::Pong(pong) => self.on_pong(now, from, pong, &mut fx),
            Message::GetMyAddrPort => self.on_myaddr_request(from, &mut fx),
            Message::GetMyAddrPortAck(addr) => self.on_myaddr_ack(now, from, addr, &mut fx),
            _ => {}
        }
        self.refresh_snapshot();
        self.count_sent(&fx);
        fx
    }

    /// Advances time: expires candidates, (de)activates and drops peers, and sends the ping round
    /// and own-address requests when due. Call it at least every `ping_period_ms` (see
    /// [`PeerTable::next_tick_ms`]).
    pub fn tick(&mut self, now_ms: u64) -> Effects {
        let now = self.clock(now_ms);
        let mut fx = Effects::default();
        self.expire_candidates(now);
        self.prover.expire(now, &mut self.stats);
        self.update_peer_states(now, &mut fx);
        if now >= self.next_round_ms {
            self.ping_round(now, &mut fx);
            self.next_round_ms = now.saturating_add(self.config.ping_period_ms);
        } else {
            while !self.round_rest.is_empty() && now >= self.next_slice_ms {
                self.ping_slice(&mut fx);
                self.next_slice_ms = self
                    .next_slice_ms
                    .saturating_add(self.config.ping_period_ms / PING_ROUND_SLICES);
            }
        }
        self.myaddr_round(now, &mut fx);
        self.refresh_snapshot();
        self.count_sent(&fx);
        fx
    }

    /// Records a storage-challenge outcome for the peer at `addr`, after decaying its history by
    /// `decay` (see [`Trust::record`]). Returns false if `addr` is not a peer (dropped since).
    pub fn record_challenge(&mut self, addr: SocketAddr, success: bool, decay: f32) -> bool {
        let addr = normalize_addr(addr);
        let Some(peer) = self.peers.get_mut(&addr) else {
            return false;
        };
        peer.trust.record(success, decay);
        if peer.active {
            self.snapshot_dirty = true;
        }
        self.refresh_snapshot();
        true
    }

    /// The router heard `addr` answer one of its requests (a NODES carrying the nonce of our
    /// FIND_NODE, from that address: it receives what we send, like a PONG proves). For a peer
    /// the router watches this counts as an answer (it stays or becomes active); for any other
    /// address nothing changes (a v1-schedule peer lives by its PONGs alone). PUTs and GETs from
    /// an address do not count anywhere: their source address is not proven.
    pub fn router_heard(&mut self, now_ms: u64, addr: SocketAddr) -> Effects {
        let now = self.clock(now_ms);
        let addr = normalize_addr(addr);
        let mut fx = Effects::default();
        let Some(peer) = self.peers.get_mut(&addr) else {
            return fx;
        };
        if !routed(&self.config, peer) {
            return fx;
        }
        peer.last_answer_ms = peer.last_answer_ms.max(now);
        self.stats.router_heard += 1;
        self.update_activity(now, addr, &mut fx);
        self.refresh_snapshot();
        fx
    }

    /// The router evicted `addr` from its routing table (it left `max_failures` requests in a
    /// row unanswered). A peer the router watches is dropped at once (an edge forgets its key and
    /// returns to the ping schedule); a v1-schedule peer is not the router's to judge.
    pub fn router_evicted(&mut self, now_ms: u64, addr: SocketAddr) -> Effects {
        self.clock(now_ms);
        let addr = normalize_addr(addr);
        let mut fx = Effects::default();
        if self
            .peers
            .get(&addr)
            .is_some_and(|p| routed(&self.config, p))
        {
            self.stats.router_evicted += 1;
            self.drop_peer(addr, &mut fx);
            self.refresh_snapshot();
        }
        fx
    }

    /// Proves the key at `addr` for the routing extension (`RouterEffects::prove`): a PING with
    /// a fresh challenge (rate-limited, see `peer::prover`), whose valid PONG later brings a
    /// [`PeerEvent::Proven`]; at once, without a PING, if a key is pinned to `addr` or `addr`
    /// proved one lately. Refusals are counted (`proofs_*`). The address does not become a
    /// candidate or a peer.
    pub fn prove(&mut self, now_ms: u64, addr: SocketAddr) -> Effects {
        let now = self.clock(now_ms);
        let addr = normalize_addr(addr);
        let mut fx = Effects::default();
        if check_addr(addr).is_err() || self.is_ours(addr) {
            self.stats.proofs_bad_addr += 1;
            return fx;
        }
        let known = self.pubkey_of(addr);
        if let Some(pubkey) = known.or_else(|| self.prover.proven_key(now, addr)) {
            self.stats.proofs_known += 1;
            fx.event(PeerEvent::Proven { addr, pubkey });
            return fx;
        }
        let purpose = ProofPurpose::Router;
        if let Some(challenge) =
            self.prover
                .start(now, addr, purpose, &mut self.rng, &mut self.stats)
        {
            fx.send(addr, self.proven(addr), Outgoing::Ping { challenge });
        }
        self.count_sent(&fx);
        fx
    }

    // ----- Handlers -----

    fn on_ping(&mut self, now: u64, from: SocketAddr, challenge: &[u8; 8], fx: &mut Effects) {
        self.stats.pings_received += 1;
        let proven = self.proven(from);
        if let Some(pong) = self.make_pong(now, challenge, from, proven) {
            fx.send(from, proven, Outgoing::Pong(pong));
            self.stats.pongs_sent += 1;
        } else {
            self.stats.pongs_over_budget += 1;
        }
        // A stranger gets one PING of ours (as a candidate) until it answers; with no room for
        // it, its address is proven instead.
        if !self.peers.contains_key(&from) && !self.candidates.contains_key(&from) {
            self.try_add_candidate(now, from, true, fx);
            if !self.candidates.contains_key(&from) {
                self.prove_stranger(now, from, fx);
            }
        }
    }

    /// Proves `from`, a stranger that pinged us while the table had no room for it (rate-limited,
    /// `peer::prover`), unless a proof of it is outstanding or it is proven already: once it
    /// answers, our replies to it are not held to the amplification allowance. In a network
    /// larger than our table, a v1 node that holds us in its table pings us every second and
    /// sends us its GETs and PUTs as if we were its peer.
    fn prove_stranger(&mut self, now: u64, from: SocketAddr, fx: &mut Effects) {
        if self.prover.is_pending(from) || self.prover.proven_key(now, from).is_some() {
            return;
        }
        let purpose = ProofPurpose::Stranger;
        if let Some(challenge) =
            self.prover
                .start(now, from, purpose, &mut self.rng, &mut self.stats)
        {
            fx.send(from, false, Outgoing::Ping { challenge });
        }
    }

    fn on_pong(&mut self, now: u64, from: SocketAddr, pong: &PongRepr, fx: &mut Effects) {
        self.stats.pongs_received += 1;
        // Before any side effect.
        if pong.addr_count > self.config.npeer_limit.min(MAX_PONG_ADDRS) {
            self.stats.too_many_addrs += 1;
            return;
        }
        // The answer to an address proof is the prover's, whatever the table knows of `from`.
        let pinned = self.peers.get(&from).and_then(|p| p.pubkey);
        let (auth, checked) = (&self.pong_auth, &self.pongs_checked);
        let answer = self.prover.on_pong(
            now,
            from,
            pong,
            pinned,
            |p| signature_ok(auth, checked, None, p),
            &mut self.stats,
        );
        match answer {
            ProofAnswer::NotOurs => {}
            ProofAnswer::Proven {
                pubkey,
                purpose: ProofPurpose::Router,
            } => {
                fx.event(PeerEvent::Proven { addr: from, pubkey });
                return;
            }
            ProofAnswer::Proven {
                purpose: ProofPurpose::Stranger,
                ..
            } => return,
            ProofAnswer::Refused => return,
        }
        let (expected, pinned, pinned_key) = if let Some(peer) = self.peers.get(&from) {
            (peer.challenge, peer.pubkey, peer.batch_key)
        } else if let Some(candidate) = self.candidates.get(&from) {
            (Some(candidate.challenge), None, None)
        } else {
            (None, None, None)
        };
        let Some(expected) = expected else {
            self.stats.unsolicited_pong += 1;
            return;
        };
        if pong.challenge != expected {
            self.stats.wrong_challenge += 1;
            return;
        }
        if pinned.is_some_and(|key| key != pong.pubkey) {
            self.stats.pubkey_mismatch += 1;
            return;
        }
        if pong.pubkey == self.public {
            self.stats.own_pubkey += 1;
            return;
        }
        if self.pubkeys.get(&pong.pubkey).is_some_and(|&at| at != from) {
            self.stats.pubkey_in_use += 1;
            return;
        }
        if !signature_ok(
            &self.pong_auth,
            &self.pongs_checked,
            pinned_key.as_ref(),
            pong,
        ) {
            self.stats.bad_signature += 1;
            if let Some(peer) = self.peers.get_mut(&from) {
                peer.batch_key = None;
            }
            return;
        }
        let features = salt_features(&pong.salt).intersect(self.config.features);
        if !self.accept_answer(now, from, pong.pubkey, features, fx) {
            return;
        }
        self.stats.pongs_accepted += 1;
        for wire in pong.addrs() {
            self.consider_listed(now, from, wire, fx);
        }
    }

    fn on_myaddr_request(&mut self, from: SocketAddr, fx: &mut Effects) {
        fx.send(
            from,
            self.proven(from),
            Outgoing::GetMyAddrPortAck(addr_to_wire(from)),
        );
        self.stats.myaddr_acks_sent += 1;
    }

    fn on_myaddr_ack(&mut self, now: u64, from: SocketAddr, wire: &WireAddr, fx: &mut Effects) {
        let timeout_ms = self.config.getmyaddrport_timeout_ms;
        let asked = self
            .myaddr_requests
            .get(&from)
            .is_some_and(|&sent| now.saturating_sub(sent) < timeout_ms);
        if !asked {
            self.stats.unsolicited_myaddr_ack += 1;
            return;
        }
        let addr = addr_from_wire(wire);
        if check_addr(addr).is_err() {
            // Like a junk PONG, a junk answer does not clear the request.
            self.stats.bad_myaddr_ack += 1;
            return;
        }
        self.myaddr_requests.remove(&from);
        if self.own_addr.is_none() {
            // Learned: from now on refresh at the slow period.
            self.next_myaddr_ms = self
                .myaddr_sent_ms
                .saturating_add(self.config.getmyaddrport_every_ms);
        }
        if self.own_addr != Some(addr) {
            self.own_addr = Some(addr);
            self.stats.own_addr_changes += 1;
            fx.event(PeerEvent::OwnAddrLearned { addr });
            self.forget_own_addr(addr, fx);
        }
    }

    // ----- Life cycle -----

    /// `from` answered its outstanding challenge with a verified PONG signed by `pubkey`,
    /// advertising `features` (already intersected with ours). Returns false if it was a candidate that could not be promoted.
    fn accept_answer(
        &mut self,
        now: u64,
        from: SocketAddr,
        pubkey: [u8; 32],
        features: Features,
        fx: &mut Effects,
    ) -> bool {
        if let Some(peer) = self.peers.get_mut(&from) {
            peer.challenge = None;
            peer.last_answer_ms = now;
            if peer.features != features {
                peer.features = features;
                self.snapshot_dirty |= peer.active;
            }
            if peer.pubkey.is_none() {
                peer.pubkey = Some(pubkey);
                peer.batch_key = batch_key(&pubkey);
                peer.authenticated_ms = now;
                self.pubkeys.insert(pubkey, from);
                self.stats.authenticated += 1;
                fx.event(PeerEvent::Authenticated { addr: from, pubkey });
            }
            self.update_activity(now, from, fx);
            return true;
        }
        if self.remove_candidate(from).is_none() {
            debug_assert!(false, "an accepted PONG comes from a peer or a candidate");
            return false;
        }
        if self.peers.len() >= self.config.max_peers {
            self.stats.table_full += 1;
            return false;
        }
        if let Err(hit) = self.peer_counts.check(from.ip()) {
            self.count_limit(hit);
            return false;
        }
        self.peer_addrs_stale = true;
        self.peers.insert(
            from,
            Peer {
                edge: false,
                pubkey: Some(pubkey),
                authenticated_ms: now,
                last_answer_ms: now,
                challenge: None,
                active: false,
                trust: Trust::default(),
                features,
                settled: false,
                batch_key: batch_key(&pubkey),
            },
        );
        self.peer_counts.add(from.ip());
        self.pubkeys.insert(pubkey, from);
        self.stats.authenticated += 1;
        fx.event(PeerEvent::Authenticated { addr: from, pubkey });
        self.update_activity(now, from, fx);
        true
    }

    /// Whether `peer` should be active at `now`.
    fn qualifies(config: &PeerConfig, peer: &Peer, now: u64) -> bool {
        peer.pubkey.is_some()
            && (peer.edge
                || now.saturating_sub(peer.authenticated_ms) >= config.activation_delay_ms)
            && now.saturating_sub(peer.last_answer_ms) < deactivate_after_ms(config, peer)
    }

    /// Re-evaluates one peer's active flag, with its event.
    fn update_activity(&mut self, now: u64, addr: SocketAddr, fx: &mut Effects) {
        let PeerTable {
            config,
            peers,
            stats,
            snapshot_dirty,
            ..
        } = self;
        if let Some(peer) = peers.get_mut(&addr) {
            let active = Self::qualifies(config, peer, now);
            *snapshot_dirty |= set_active(addr, peer, active, stats, fx);
        }
    }

    /// Drops peers silent for `drop_after_ms` and re-evaluates everyone else's active flag.
    fn update_peer_states(&mut self, now: u64, fx: &mut Effects) {
        let mut silent = Vec::new();
        let PeerTable {
            config,
            peers,
            stats,
            snapshot_dirty,
            ..
        } = self;
        for (&addr, peer) in peers.iter_mut() {
            if peer.pubkey.is_some()
                && now.saturating_sub(peer.last_answer_ms) >= drop_after_ms(config, peer)
            {
                silent.push(addr);
                continue;
            }
            let active = Self::qualifies(config, peer, now);
            *snapshot_dirty |= set_active(addr, peer, active, stats, fx);
        }
        for addr in silent {
            self.drop_peer(addr, fx);
        }
    }

    /// Forgets a peer (an edge keeps its place and only forgets its key).
    fn drop_peer(&mut self, addr: SocketAddr, fx: &mut Effects) {
        let Some(peer) = self.peers.get_mut(&addr) else {
            return;
        };
        self.snapshot_dirty |= set_active(addr, peer, false, &mut self.stats, fx);
        if let Some(key) = peer.pubkey.take() {
            self.pubkeys.remove(&key);
        }
        peer.batch_key = None;
        if peer.edge {
            peer.trust = Trust::default();
            // Unauthenticated again: back on the ping schedule until it answers.
            peer.features = Features::NONE;
            peer.settled = false;
        } else {
            self.peers.remove(&addr);
            self.peer_addrs_stale = true;
            self.peer_counts.remove(addr.ip());
        }
        self.stats.dropped += 1;
        fx.event(PeerEvent::Dropped { addr });
    }

    /// Our own address was learned: it must not stay a peer or a candidate.
    fn forget_own_addr(&mut self, addr: SocketAddr, fx: &mut Effects) {
        self.remove_candidate(addr);
        if self.peers.get(&addr).is_some_and(|p| !p.edge) {
            self.drop_peer(addr, fx);
        }
    }

    /// Starts a ping round: every peer and edge the router does not watch gets a PING with a
    /// fresh challenge. A table of up to [`PING_AT_ONCE_AT_MOST`] is pinged at once; a larger
    /// one in [`PING_ROUND_SLICES`] slices across the period (peers in address order), so the
    /// PONGs, each a signature check, come back spread over the period rather than in one burst
    /// (1,000 peers: ~45 ms of verification at once, which took a receiver's CPU). Each peer is
    /// still pinged once per period, at the same offset in every round. Peers left from a round
    /// that could not finish (late ticks) are pinged in this one.
    fn ping_round(&mut self, now: u64, fx: &mut Effects) {
        self.round_rest.clear();
        let config = &self.config;
        self.round_rest.extend(
            self.peers
                .iter()
                // The router watches it (module docs): no PING, no RNG draw.
                .filter(|(_, peer)| !routed(config, peer))
                .map(|(&addr, _)| addr),
        );
        self.round_slice_len = if self.round_rest.len() <= PING_AT_ONCE_AT_MOST {
            PING_AT_ONCE_AT_MOST
        } else {
            self.round_rest.len().div_ceil(PING_ROUND_SLICES as usize)
        };
        self.next_slice_ms = now.saturating_add(self.config.ping_period_ms / PING_ROUND_SLICES);
        self.ping_slice(fx);
    }

    /// Pings the next slice of the current round (peers dropped or watched since are skipped).
    fn ping_slice(&mut self, fx: &mut Effects) {
        let mut sent = 0;
        while sent < self.round_slice_len {
            let Some(addr) = self.round_rest.pop_front() else {
                break;
            };
            let Some(peer) = self.peers.get_mut(&addr) else {
                continue;
            };
            if routed(&self.config, peer) {
                continue;
            }
            let challenge: [u8; 8] = self.rng.r#gen();
            peer.challenge = Some(challenge);
            fx.send(addr, peer.pubkey.is_some(), Outgoing::Ping { challenge });
            self.stats.pings_sent += 1;
            sent += 1;
        }
    }

    fn myaddr_round(&mut self, now: u64, fx: &mut Effects) {
        let timeout_ms = self.config.getmyaddrport_timeout_ms;
        self.myaddr_requests
            .retain(|_, &mut sent| now.saturating_sub(sent) < timeout_ms);
        if self.config.edges.is_empty() || now < self.next_myaddr_ms {
            return;
        }
        for &edge in &self.config.edges {
            let proven = self.peers.get(&edge).is_some_and(|p| p.pubkey.is_some());
            fx.send(edge, proven, Outgoing::GetMyAddrPort);
            self.myaddr_requests.insert(edge, now);
            self.stats.myaddr_requests_sent += 1;
        }
        self.myaddr_sent_ms = now;
        let wait_ms = if self.own_addr.is_some() {
            self.config.getmyaddrport_every_ms
        } else {
            self.config.getmyaddrport_retry_ms
        };
        self.next_myaddr_ms = now.saturating_add(wait_ms);
    }

    // ----- Candidates -----

    /// An address listed in a verified PONG from `source`.
    fn consider_listed(&mut self, now: u64, source: SocketAddr, wire: &WireAddr, fx: &mut Effects) {
        let addr = addr_from_wire(wire);
        if check_addr(addr).is_err() || crosses_loopback_scope(addr, source) {
            self.stats.bad_addr += 1;
            return;
        }
        if self.is_ours(addr) {
            self.stats.own_addr += 1;
            return;
        }
        if addr == source || self.peers.contains_key(&addr) || self.candidates.contains_key(&addr) {
            return;
        }
        self.try_add_candidate(now, addr, false, fx);
    }

    /// Adds a candidate and sends its one PING, if every bound allows.
    fn try_add_candidate(&mut self, now: u64, addr: SocketAddr, pinger: bool, fx: &mut Effects) {
        if self.peers.len() >= self.config.max_peers {
            // It could not be promoted anyway; don't spend a PING on it.
            self.stats.table_full += 1;
            return;
        }
        if self.candidates.len() >= self.config.max_candidates
            || (pinger && self.pinger_candidates >= self.config.max_pinger_candidates)
        {
            self.stats.candidates_full += 1;
            return;
        }
        let ip = addr.ip();
        if let Err(hit) = self
            .candidate_counts
            .check(ip)
            .and_then(|()| self.peer_counts.check(ip))
        {
            self.count_limit(hit);
            return;
        }
        let challenge: [u8; 8] = self.rng.r#gen();
        self.candidates.insert(
            addr,
            Candidate {
                added_ms: now,
                challenge,
                pinger,
            },
        );
        self.candidate_counts.add(ip);
        if pinger {
            self.pinger_candidates += 1;
        }
        self.stats.candidates_added += 1;
        self.stats.pings_sent += 1;
        fx.send(addr, false, Outgoing::Ping { challenge });
    }

    fn remove_candidate(&mut self, addr: SocketAddr) -> Option<Candidate> {
        let candidate = self.candidates.remove(&addr)?;
        self.candidate_counts.remove(addr.ip());
        if candidate.pinger {
            self.pinger_candidates = self.pinger_candidates.saturating_sub(1);
        }
        Some(candidate)
    }

    fn expire_candidates(&mut self, now: u64) {
        let ttl_ms = self.config.candidate_ttl_ms;
        let PeerTable {
            candidates,
            candidate_counts,
            pinger_candidates,
            stats,
            ..
        } = self;
        candidates.retain(|addr, candidate| {
            let keep = now.saturating_sub(candidate.added_ms) < ttl_ms;
            if !keep {
                candidate_counts.remove(addr.ip());
                if candidate.pinger {
                    *pinger_candidates = pinger_candidates.saturating_sub(1);
                }
                stats.candidates_expired += 1;
            }
            keep
        });
    }

    // ----- Helpers -----

    fn clock(&mut self, now_ms: u64) -> u64 {
        self.latest_ms = self.latest_ms.max(now_ms);
        self.latest_ms
    }

    /// Our learned address, our listen address, or (listening on an unspecified IP) a loopback
    /// address with our port.
    fn is_ours(&self, addr: SocketAddr) -> bool {
        if self.own_addr == Some(addr) {
            return true;
        }
        match self.config.listen_addr {
            Some(listen) if listen == addr => true,
            Some(listen) => {
                listen.ip().is_unspecified()
                    && listen.port() == addr.port()
                    && addr.ip().is_loopback()
            }
            None => false,
        }
    }

    /// Adds the PINGs and PONGs of `fx` to `ping_pong_bytes_sent` (the background traffic the
    /// issue measures).
    fn count_sent(&mut self, fx: &Effects) {
        let bytes: usize = fx
            .datagrams
            .iter()
            .filter(|d| matches!(d.message, Outgoing::Ping { .. } | Outgoing::Pong(_)))
            .map(|d| d.message.buffer_len())
            .sum();
        self.stats.ping_pong_bytes_sent += bytes as u64;
    }

    fn count_limit(&mut self, hit: LimitHit) {
        match hit {
            LimitHit::PerIp => self.stats.per_ip_limit += 1,
            LimitHit::PerPrefix => self.stats.per_prefix_limit += 1,
        }
    }

    /// Up to `want` peers for a PONG to `asker` to list, drawn uniformly at random among the
    /// listable ones: peers that proved their address (authenticated), answered recently, and
    /// are more than a fly-by: active, or answering for at least `list_after_ms` (not the whole
    /// activation delay: listing only *active* peers would make discovery wait one activation
    /// delay before the next one can start, 10 s instead of about 6 s for a fresh network). A
    /// client that authenticates and leaves within a second is never listed.
    ///
    /// A table of up to [`LIST_BY_SCAN_AT_MOST`] peers samples them in one scan (reservoir
    /// sampling); a larger one draws random peers from `peer_addrs`, keeping the listable ones
    /// not drawn yet, and only if [`LIST_DRAWS_PER_ADDR`] draws per address wanted do not find
    /// `want` does it scan. Either way every set of `want` listable peers is equally likely
    /// (the draws are symmetric in the peers, and so is the scan they fall back to).
    fn pick_listed(&mut self, now: u64, asker: SocketAddr, want: usize) -> Vec<SocketAddr> {
        let config = &self.config;
        let list_after_ms = config.list_after_ms;
        let listable = |addr: &SocketAddr, p: &Peer| {
            *addr != asker
                && p.pubkey.is_some()
                && now.saturating_sub(p.last_answer_ms) < deactivate_after_ms(config, p)
                && (p.active
                    || p.last_answer_ms.saturating_sub(p.authenticated_ms) >= list_after_ms)
        };
        let mut picked = Vec::with_capacity(want);
        if self.peers.len() > LIST_BY_SCAN_AT_MOST {
            if self.peer_addrs_stale {
                self.peer_addrs.clear();
                self.peer_addrs.extend(self.peers.keys().copied());
                self.peer_addrs_stale = false;
            }
            for _ in 0..want * LIST_DRAWS_PER_ADDR {
                if picked.len() == want {
                    return picked;
                }
                let addr = self.peer_addrs[self.rng.gen_range(0..self.peer_addrs.len())];
                if !picked.contains(&addr)
                    && self.peers.get(&addr).is_some_and(|p| listable(&addr, p))
                {
                    picked.push(addr);
                }
            }
            if picked.len() == want {
                return picked;
            }
            picked.clear();
        }
        for (addr, _) in self
            .peers
            .iter()
            .filter(|(addr, p)| listable(addr, p))
            .choose_multiple(&mut self.rng, want)
        {
            picked.push(*addr);
        }
        picked
    }

    /// Our signed PONG for `challenge`, listing up to `npeer_limit` random listable peers other
    /// than the asker ([`PeerTable::pick_listed`]). `None` when `asker` is unproven and the PONG's bytes are beyond what is left of
    /// `unproven_pong_budget` (then nothing is signed).
    fn make_pong(
        &mut self,
        now: u64,
        challenge: &[u8; 8],
        asker: SocketAddr,
        proven: bool,
    ) -> Option<PongRepr> {
        // A v1-only node (no features) sends a fully random salt, as the reference does.
        // Both draw 16 bytes, so the RNG stream (and a simulation's replay) does not depend on
        // the feature set.
        let random: [u8; 16] = self.rng.r#gen();
        let salt = if self.config.features.is_empty() {
            random
        } else {
            build_salt(crate::wire::array(&random[..8]), self.config.features)
        };
        let mut pong = PongRepr {
            addr_count: 0,
            addrs: [[0; crate::limits::ADDR_LEN]; MAX_PONG_ADDRS],
            challenge: *challenge,
            salt,
            pubkey: self.public,
            sig: [0; 64],
        };
        let want = self.config.npeer_limit.min(MAX_PONG_ADDRS);
        for addr in self.pick_listed(now, asker, want) {
            pong.addrs[pong.addr_count] = addr_to_wire(addr);
            pong.addr_count += 1;
        }
        let len = PONG_MIN_LEN + pong.addr_count * ADDR_LEN;
        if !proven
            && !self
                .unproven_pongs
                .try_take(&self.config.unproven_pong_budget, now, len as u64)
        {
            return None;
        }
        pong.sig = self
            .pong_auth
            .sign(&self.keypair, &pong_signed_hash(challenge, &salt));
        Some(pong)
    }

    fn refresh_snapshot(&mut self) {
        let mut one_hop = None;
        if self.prover.proven_changes() != self.snapshot_proven_changes {
            self.snapshot_proven_changes = self.prover.proven_changes();
            let strangers = self.prover.proven_one_hop_addrs();
            if strangers != self.snapshot.one_hop_strangers() {
                one_hop = Some(strangers);
            }
        }
        if !self.snapshot_dirty && one_hop.is_none() {
            return;
        }
        self.snapshot_dirty = false;
        let one_hop = one_hop.unwrap_or_else(|| self.snapshot.one_hop_strangers().to_vec());
        let peers = self
            .peers
            .iter()
            .filter(|(_, p)| p.active)
            .filter_map(|(&addr, p)| {
                p.pubkey.map(|pubkey| PeerInfo {
                    addr,
                    pubkey,
                    id: id_from_pubkey(&pubkey),
                    edge: p.edge,
                    reliability: p.trust.reliability(),
                    trust: p.trust,
                    features: p.features,
                })
            })
            .collect();
        self.snapshot = Arc::new(PeerSnapshot::new(peers).with_one_hop_strangers(one_hop));
    }
}

/// Whether the router, not the ping schedule, watches `peer`: the driver runs a router
/// (`router_liveness`), the peer is authenticated, both sides speak ROUTING (its recorded
/// features are already intersected with ours), and it has been active (a newcomer answers
/// PINGs through the activation delay first: a few PINGs once per peer, none after).
fn routed(config: &PeerConfig, peer: &Peer) -> bool {
    config.router_liveness
        && peer.pubkey.is_some()
        && peer.features.contains(Features::ROUTING)
        && peer.settled
}

/// Silence after which `peer` is no longer active.
fn deactivate_after_ms(config: &PeerConfig, peer: &Peer) -> u64 {
    if routed(config, peer) {
        config.routed_deactivate_after_ms
    } else {
        config.deactivate_after_ms
    }
}

/// Silence after which `peer` is forgotten.
fn drop_after_ms(config: &PeerConfig, peer: &Peer) -> u64 {
    if routed(config, peer) {
        config.routed_drop_after_ms
    } else {
        config.drop_after_ms
    }
}

/// Sets a peer's active flag; on a change, counts it and emits its event. Returns whether it
/// changed (the snapshot must then be rebuilt).
fn set_active(
    addr: SocketAddr,
    peer: &mut Peer,
    active: bool,
    stats: &mut PeerStats,
    fx: &mut Effects,
) -> bool {
    if peer.active == active {
        return false;
    }
    peer.active = active;
    if active {
        peer.settled = true;
        stats.activated += 1;
        fx.event(PeerEvent::Activated { addr });
    } else {
        stats.deactivated += 1;
        fx.event(PeerEvent::Deactivated { addr });
    }
    true
}

/// Whether `pong`'s signature verifies: found among the signatures `checked` together, or
/// checked now by `auth` (with `decoded`, the pinned key decoded, when it is the PONG's key).
pub(super) fn signature_ok(
    auth: &PongAuthenticator,
    checked: &[CheckedPong],
    decoded: Option<&DecodedKey>,
    pong: &PongRepr,
) -> bool {
    let hash = pong_signed_hash(&pong.challenge, &pong.salt);
    checked
        .iter()
        .any(|c| c.key.as_bytes() == &pong.pubkey && c.hash == hash && c.sig == pong.sig)
        || auth.verify(decoded, &pong.pubkey, &hash, &pong.sig)
}

/// A newly pinned key, decoded for [`Peer::batch_key`]; `None` for a key of small order (or,
/// under the simulator's MAC, one that is not a point).
fn batch_key(pubkey: &[u8; 32]) -> Option<DecodedKey> {
    DecodedKey::decode(pubkey).filter(|key| !key.is_weak())
}
