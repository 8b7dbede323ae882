//! Peer-table configuration: plain data, units in the names, the reference's constants as
//! defaults, and every bound justified where it is declared.
//!
//! [`PeerConfig::validate`] checks the relations the table relies on (a peer is deactivated
//! before it is dropped, a PONG cannot list more than the wire allows, …);
//! [`crate::peer::PeerTable::new`] calls it, so a bad configuration is an error at start-up,
//! never a panic later.

use std::fmt;
use std::net::SocketAddr;

use crate::limits::{MAX_PONG_ADDRS, PONG_MAX_LEN};
use crate::peer::PongAuth;
use crate::peer::addr_check::check_addr;
use crate::peer::budget::BucketConfig;
use crate::wire::{Features, normalize_addr};

/// Everything the peer table can be tuned with. `Default` gives the reference's behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Every known peer (and every edge) is pinged with a fresh challenge this often; a PONG must
    /// answer the newest challenge, so this is also the longest round trip a peer may have.
    /// Default 1000 (reference `PING`).
    pub ping_period_ms: u64,
    /// A peer that has not answered for this long is no longer active (no longer a target).
    /// Default 3000 (reference `DEACTIVATE_AFTER`): three missed pings.
    pub deactivate_after_ms: u64,
    /// A peer that has not answered for this long is forgotten (an edge forgets its identity but
    /// stays, and keeps being pinged). Default 12000 (reference `DROP`). Must exceed
    /// `deactivate_after_ms`.
    pub drop_after_ms: u64,
    /// An authenticated peer becomes active only this long after it first answered, so a
    /// fly-by node is never a storage target. Edges (configured by the operator) skip it, so a
    /// fresh node can store through its edges at once. Default 5000 (reference `ACTIVATION_DELAY`).
    pub activation_delay_ms: u64,
    /// An authenticated peer is listed in our PONGs only once it is more than a fly-by: active,
    /// or answering our PINGs for at least this long (its latest answer this long after its
    /// first). A short-lived `dave put`/`get` client that leaves within this long of
    /// authenticating is then never advertised, so other nodes do not ping its dead address for `drop_after_ms`. Default 500
    /// (half a ping period: in practice it answered a second ping round), which adds about a
    /// second to a fresh network's discovery: a five-node cold start measured 6.2 s (1000 gave
    /// 7.15 s, over the 7 s target; listing only active peers would add the whole activation
    /// delay).
    pub list_after_ms: u64,
    /// Own-address refresh: GETMYADDRPORT to every edge once at start and then this often.
    /// Default 600000 (reference `GETMYADDRPORT_EVERY`, 10 minutes).
    pub getmyaddrport_every_ms: u64,
    /// While no GETMYADDRPORT_ACK has been accepted yet, the request is repeated this often
    /// instead (one lost datagram at start-up must not leave the node blind for 10 minutes).
    /// Default 10000: a few ping periods, small next to the edges' own ping traffic.
    pub getmyaddrport_retry_ms: u64,
    /// A GETMYADDRPORT_ACK is accepted only this long after our request; later ones are refused
    /// as unsolicited, which keeps the window for a spoofed answer short. Default 3000, the same
    /// patience as `deactivate_after_ms`.
    pub getmyaddrport_timeout_ms: u64,
    /// Addresses listed in each PONG we send, and the most we accept in a PONG we receive
    /// (a PONG listing more is refused before any side effect). Default 5 (reference
    /// `NPEER_LIMIT`); at most 5, the wire limit.
    pub npeer_limit: usize,
    /// Authenticated peers (edges included) the table holds. Default 1000: with 1 ping per peer
    /// per second this is ~9 kB/s of PINGs and ~212 kB/s of PONGs, and a linear scan of the
    /// snapshot per PUT stays in the microseconds.
    pub max_peers: usize,
    /// Addresses heard of but not yet authenticated (each costs one 9-byte PING and at most one
    /// signature check). Default 256: five PONGs' worth of new addresses per peer answer is far
    /// below this, so discovery is not starved, while the memory and ping cost stay trivial.
    pub max_candidates: usize,
    /// Of `max_candidates`, how many may be strangers that pinged us (their source address is
    /// unverified and could be spoofed). Default 128 (half): a spoofed PING flood can fill only
    /// this half, and discovery through authenticated peers' PONGs keeps the other.
    pub max_pinger_candidates: usize,
    /// A candidate that has not answered its one PING within this long is forgotten (it can be
    /// heard of again later, and then gets one more PING). Default 10000: ten ping periods of
    /// patience, and a spoofer re-listing the same victim earns it one 9-byte PING per 10 s.
    pub candidate_ttl_ms: u64,
    /// Peers per IP address, counted separately among peers and among candidates. Default 4:
    /// a host may run a few nodes on different ports, but one host cannot fill the table.
    pub max_peers_per_ip: usize,
    /// Peers per network prefix (see the two prefix lengths), counted separately among peers and
    /// among candidates. Default 16: one attacker's /24 can hold at most 16 of 1000 slots.
    pub max_peers_per_prefix: usize,
    /// Prefix length that groups IPv4 addresses for `max_peers_per_prefix`. Default 24.
    pub ipv4_prefix_len_bits: u8,
    /// Prefix length that groups IPv6 addresses for `max_peers_per_prefix`. Default 48 (a typical
    /// site allocation).
    pub ipv6_prefix_len_bits: u8,
    /// Loopback addresses are exempt from the per-IP and per-prefix limits. Default true: such
    /// addresses cannot be spoofed from outside the host and can only be listed by a loopback
    /// peer (see `addr_check`), and local test networks run many nodes on 127.0.0.1.
    pub exempt_loopback_from_ip_limits: bool,
    /// Our own listening address, refused wherever a peer address is expected. With an
    /// unspecified IP (`0.0.0.0:p`, `[::]:p`), the loopback addresses with port `p` are refused.
    /// Default `None`.
    pub listen_addr: Option<SocketAddr>,
    /// Edges: configured bootstrap peers. Always in the table, pinged every period (unless the
    /// router watches them, see `router_liveness`), never dropped, asked for our own address.
    /// Default empty.
    pub edges: Vec<SocketAddr>,
    /// How our PONGs are signed and others' checked. Default [`PongAuth::Ed25519`], the
    /// protocol; the node never changes it. [`PongAuth::SimulatedMac`] is the simulator's cheap
    /// stand-in (`dave sim --fast-crypto`; see `peer/pong_auth.rs`).
    pub pong_auth: PongAuth,
    /// Protocol extensions we advertise in our PONG salts (`wire::ext`) and are willing to
    /// speak. Default [`Features::ALL`]; [`Features::NONE`] makes a v1-only node whose PONG salts
    /// are fully random, as the reference's are. A peer's recorded features are always the
    /// intersection of what it advertised and this set.
    pub features: Features,
    /// Address proofs for the routing extension (`PeerTable::prove`, `peer::prover`) started
    /// per second at most, with a burst of `prover::PROOF_BURST_S` seconds' worth; 0 sends
    /// none. Default 32; at most `prover::MAX_PROOFS_PER_S`.
    pub proofs_per_s: u32,
    /// Proofs of strangers (addresses that PING us while the table has no room for them, so
    /// replies to them are not held to the amplification allowance once they answer;
    /// `peer::prover`) started per second at most, with a burst of `prover::PROOF_BURST_S`
    /// seconds' worth; 0 sends none. A bucket of their own, so strangers cannot use up the
    /// router's proofs. Default 16: a node pinged by 1,000 strangers proves them all within a
    /// minute, then re-proves each once per `prover::PROVEN_TTL_MS`. At most
    /// `prover::MAX_PROOFS_PER_S`.
    pub stranger_proofs_per_s: u32,
    /// A proof unanswered this long is forgotten. Default 2000 ms (the router forgets a proof it
    /// asked for after its `probe_timeout_ms`, 2 s by default).
    pub proof_timeout_ms: u64,
    /// The driver runs a router that watches the liveness of peers speaking ROUTING (issue 12,
    /// "liveness without a full mesh"): such a peer (both sides advertise ROUTING in `features`)
    /// leaves the ping schedule once authenticated. It counts as heard when it answers a PING
    /// (a PONG) or one of the router's requests ([`PeerTable::router_heard`]), is dropped when
    /// the router evicts it ([`PeerTable::router_evicted`]), and otherwise lives by the
    /// `routed_*` bounds below. Default false: a bare table has no router to feed it, so every
    /// peer keeps the v1 schedule; the node sets it when it runs a router.
    ///
    /// [`PeerTable::router_heard`]: crate::peer::PeerTable::router_heard
    /// [`PeerTable::router_evicted`]: crate::peer::PeerTable::router_evicted
    pub router_liveness: bool,
    /// The PONGs the table signs for unproven addresses (a PING from an address that has not
    /// answered one of ours), in bytes of PONG (122–212 each): a PING over it is not answered
    /// (counted: `PeerStats::pongs_over_budget`); a proven address is always answered. Sized
    /// like the driver's global amplification bucket (`Config::amplification_global_*`), which
    /// would withhold the PONGs beyond it anyway: signing them (~13 µs each) only wasted the
    /// peer thread, which a flood of PINGs from unproven addresses then filled (it answered
    /// ~55 k a second and starved its own ping rounds). Default 64 KiB burst, 32 KiB a second
    /// (~150 PONGs a second). The burst must hold one PONG.
    pub unproven_pong_budget: BucketConfig,
    /// A peer the router watches that has not been heard for this long is no longer active.
    /// Default 600 000 ms (10 min): two of the router's idle-bucket refresh intervals
    /// (`RouteConfig::refresh_after_ms`, 300 s). A refresh lookup asks the contacts of the
    /// bucket it refreshes, so a contact the router keeps is heard about once per interval even
    /// on an idle node; one lost refresh does not deactivate it, two do.
    pub routed_deactivate_after_ms: u64,
    /// A peer the router watches that has not been heard for this long is forgotten (an edge
    /// forgets its key and returns to the ping schedule). Default 1 800 000 ms (30 min, three
    /// times `routed_deactivate_after_ms`, as the v1 drop is 4x its deactivation): the bound on
    /// how long a silent routing peer holds its place and its pinned key (a node that restarts
    /// at the address with a new key is refused until then). No PING is spent on it meanwhile.
    pub routed_drop_after_ms: u64,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            ping_period_ms: 1000,
            deactivate_after_ms: 3000,
            drop_after_ms: 12_000,
            activation_delay_ms: 5000,
            list_after_ms: 500,
            getmyaddrport_every_ms: 600_000,
            getmyaddrport_retry_ms: 10_000,
            getmyaddrport_timeout_ms: 3000,
            npeer_limit: MAX_PONG_ADDRS,
            max_peers: 1000,
            max_candidates: 256,
            max_pinger_candidates: 128,
            candidate_ttl_ms: 10_000,
            max_peers_per_ip: 4,
            max_peers_per_prefix: 16,
            ipv4_prefix_len_bits: 24,
            ipv6_prefix_len_bits: 48,
            exempt_loopback_from_ip_limits: true,
            listen_addr: None,
            edges: Vec::new(),
            pong_auth: PongAuth::Ed25519,
            features: Features::ALL,
            proofs_per_s: 32,
            stranger_proofs_per_s: 16,
            proof_timeout_ms: 2_000,
            router_liveness: false,
            unproven_pong_budget: BucketConfig {
                burst_bytes: 64 * 1024,
                refill_bytes_per_s: 32 * 1024,
            },
            routed_deactivate_after_ms: 600_000,
            routed_drop_after_ms: 1_800_000,
        }
    }
}

/// Why a [`PeerConfig`] cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerConfigError {
    /// A period or timeout that must be positive is 0 (the field is named).
    Zero(&'static str),
    /// `deactivate_after_ms` is not below `drop_after_ms`.
    DeactivateNotBeforeDrop,
    /// `npeer_limit` is above the wire limit of 5.
    NpeerLimitAboveWire,
    /// `max_pinger_candidates` is above `max_candidates`.
    PingerCandidatesAboveCandidates,
    /// `max_peers_per_prefix` is below `max_peers_per_ip`.
    PrefixLimitBelowIpLimit,
    /// A prefix length is longer than its address (32 or 128 bits).
    PrefixTooLong,
    /// More (distinct) edges than `max_peers`.
    TooManyEdges,
    /// An edge is unspecified, multicast, broadcast, has port 0, or is our listen address.
    BadEdge(SocketAddr),
    /// A table size is above [`MAX_TABLE_ENTRIES`] (the field is named).
    TooLarge(&'static str),
    /// `proofs_per_s` is above [`MAX_PROOFS_PER_S`](crate::peer::prover::MAX_PROOFS_PER_S).
    ProofRateTooHigh,
    /// `routed_deactivate_after_ms` is below `deactivate_after_ms` or not below
    /// `routed_drop_after_ms`.
    RoutedBoundsOutOfOrder,
    /// `unproven_pong_budget`'s burst is smaller than one PONG ([`PONG_MAX_LEN`]).
    PongBudgetTooSmall,
}

/// Most peers or candidates a table may be configured to hold: 1 Mi. Every peer is pinged each
/// period (a signature and a verification apiece), so even 10 000 is far beyond what one node
/// can serve; the bound turns a typo into an error instead of a table that grows with a flood.
pub const MAX_TABLE_ENTRIES: usize = 1 << 20;

impl fmt::Display for PeerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerConfigError::Zero(field) => write!(f, "peer config: {field} must be positive"),
            PeerConfigError::DeactivateNotBeforeDrop => {
                f.write_str("peer config: deactivate_after_ms must be below drop_after_ms")
            }
            PeerConfigError::NpeerLimitAboveWire => {
                write!(
                    f,
                    "peer config: npeer_limit must be at most {MAX_PONG_ADDRS}"
                )
            }
            PeerConfigError::PingerCandidatesAboveCandidates => {
                f.write_str("peer config: max_pinger_candidates must not exceed max_candidates")
            }
            PeerConfigError::PrefixLimitBelowIpLimit => {
                f.write_str("peer config: max_peers_per_prefix must not be below max_peers_per_ip")
            }
            PeerConfigError::PrefixTooLong => f.write_str(
                "peer config: ipv4_prefix_len_bits must be <= 32 and ipv6_prefix_len_bits <= 128",
            ),
            PeerConfigError::TooManyEdges => f.write_str("peer config: more edges than max_peers"),
            PeerConfigError::TooLarge(field) => {
                write!(
                    f,
                    "peer config: {field} must be at most {MAX_TABLE_ENTRIES}"
                )
            }
            PeerConfigError::RoutedBoundsOutOfOrder => f.write_str(
                "peer config: routed_deactivate_after_ms must be at least deactivate_after_ms \
                 and below routed_drop_after_ms",
            ),
            PeerConfigError::ProofRateTooHigh => write!(
                f,
                "peer config: proofs_per_s and stranger_proofs_per_s must be at most {}",
                crate::peer::prover::MAX_PROOFS_PER_S
            ),
            PeerConfigError::PongBudgetTooSmall => write!(
                f,
                "peer config: unproven_pong_budget's burst must hold one PONG ({PONG_MAX_LEN} \
                 bytes)"
            ),
            PeerConfigError::BadEdge(addr) => write!(
                f,
                "peer config: edge {addr} is not a usable peer address (unspecified, multicast, \
                 broadcast, port 0 or our own listen address)"
            ),
        }
    }
}

impl std::error::Error for PeerConfigError {}

impl PeerConfig {
    /// Checks the relations the peer table relies on.
    pub fn validate(&self) -> Result<(), PeerConfigError> {
        let positive = [
            ("ping_period_ms", self.ping_period_ms),
            ("deactivate_after_ms", self.deactivate_after_ms),
            ("getmyaddrport_every_ms", self.getmyaddrport_every_ms),
            ("getmyaddrport_retry_ms", self.getmyaddrport_retry_ms),
            ("getmyaddrport_timeout_ms", self.getmyaddrport_timeout_ms),
            ("candidate_ttl_ms", self.candidate_ttl_ms),
            ("proof_timeout_ms", self.proof_timeout_ms),
            ("max_peers", self.max_peers as u64),
            ("max_peers_per_ip", self.max_peers_per_ip as u64),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(PeerConfigError::Zero(field));
            }
        }
        for (field, value) in [
            ("max_peers", self.max_peers),
            ("max_candidates", self.max_candidates),
            ("max_peers_per_ip", self.max_peers_per_ip),
            ("max_peers_per_prefix", self.max_peers_per_prefix),
        ] {
            if value > MAX_TABLE_ENTRIES {
                return Err(PeerConfigError::TooLarge(field));
            }
        }
        if self.deactivate_after_ms >= self.drop_after_ms {
            return Err(PeerConfigError::DeactivateNotBeforeDrop);
        }
        if self.routed_deactivate_after_ms < self.deactivate_after_ms
            || self.routed_deactivate_after_ms >= self.routed_drop_after_ms
        {
            return Err(PeerConfigError::RoutedBoundsOutOfOrder);
        }
        if self.npeer_limit > MAX_PONG_ADDRS {
            return Err(PeerConfigError::NpeerLimitAboveWire);
        }
        if self.max_pinger_candidates > self.max_candidates {
            return Err(PeerConfigError::PingerCandidatesAboveCandidates);
        }
        if self.max_peers_per_prefix < self.max_peers_per_ip {
            return Err(PeerConfigError::PrefixLimitBelowIpLimit);
        }
        if self.proofs_per_s.max(self.stranger_proofs_per_s) > crate::peer::prover::MAX_PROOFS_PER_S
        {
            return Err(PeerConfigError::ProofRateTooHigh);
        }
        if self.unproven_pong_budget.burst_bytes < PONG_MAX_LEN as u64 {
            return Err(PeerConfigError::PongBudgetTooSmall);
        }
        if self.ipv4_prefix_len_bits > 32 || self.ipv6_prefix_len_bits > 128 {
            return Err(PeerConfigError::PrefixTooLong);
        }
        let listen = self.listen_addr.map(normalize_addr);
        for &edge in &self.edges {
            let edge = normalize_addr(edge);
            if check_addr(edge).is_err() || Some(edge) == listen {
                return Err(PeerConfigError::BadEdge(edge));
            }
        }
        if self.normalized_edges().len() > self.max_peers {
            return Err(PeerConfigError::TooManyEdges);
        }
        Ok(())
    }

    /// The edges in normal form, sorted, without duplicates.
    pub(crate) fn normalized_edges(&self) -> Vec<SocketAddr> {
        let mut edges: Vec<SocketAddr> = self.edges.iter().map(|&a| normalize_addr(a)).collect();
        edges.sort_unstable();
        edges.dedup();
        edges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_constants_and_valid() {
        let c = PeerConfig::default();
        assert_eq!(c.ping_period_ms, 1000);
        assert_eq!(c.deactivate_after_ms, 3000);
        assert_eq!(c.drop_after_ms, 12_000);
        assert_eq!(c.activation_delay_ms, 5000);
        assert_eq!(c.getmyaddrport_every_ms, 600_000);
        assert_eq!(c.npeer_limit, 5);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn validate_names_each_problem() {
        let bad = |f: fn(&mut PeerConfig)| {
            let mut c = PeerConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(
            bad(|c| c.ping_period_ms = 0),
            PeerConfigError::Zero("ping_period_ms")
        );
        assert_eq!(
            bad(|c| c.drop_after_ms = 3000),
            PeerConfigError::DeactivateNotBeforeDrop
        );
        assert_eq!(
            bad(|c| c.routed_drop_after_ms = c.routed_deactivate_after_ms),
            PeerConfigError::RoutedBoundsOutOfOrder
        );
        assert_eq!(
            bad(|c| c.routed_deactivate_after_ms = 1),
            PeerConfigError::RoutedBoundsOutOfOrder
        );
        assert_eq!(
            bad(|c| c.npeer_limit = 6),
            PeerConfigError::NpeerLimitAboveWire
        );
        assert_eq!(
            bad(|c| c.max_peers = usize::MAX),
            PeerConfigError::TooLarge("max_peers")
        );
        assert_eq!(
            bad(|c| c.max_pinger_candidates = 300),
            PeerConfigError::PingerCandidatesAboveCandidates
        );
        assert_eq!(
            bad(|c| c.max_peers_per_prefix = 1),
            PeerConfigError::PrefixLimitBelowIpLimit
        );
        assert_eq!(
            bad(|c| c.ipv4_prefix_len_bits = 33),
            PeerConfigError::PrefixTooLong
        );
        assert_eq!(
            bad(|c| c.edges = vec!["10.0.0.1:0".parse().unwrap()]),
            PeerConfigError::BadEdge("10.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            bad(|c| {
                c.listen_addr = Some("10.0.0.1:7".parse().unwrap());
                c.edges = vec!["[::ffff:10.0.0.1]:7".parse().unwrap()];
            }),
            PeerConfigError::BadEdge("10.0.0.1:7".parse().unwrap())
        );
        assert_eq!(
            bad(|c| {
                c.max_peers = 1;
                c.edges = vec!["10.0.0.1:7".parse().unwrap(), "10.0.0.2:7".parse().unwrap()];
            }),
            PeerConfigError::TooManyEdges
        );
        // Duplicates (also in mapped form) count once.
        let mut c = PeerConfig {
            max_peers: 1,
            ..PeerConfig::default()
        };
        c.edges = vec![
            "10.0.0.1:7".parse().unwrap(),
            "[::ffff:10.0.0.1]:7".parse().unwrap(),
        ];
        assert_eq!(c.validate(), Ok(()));
        assert!(!PeerConfigError::TooManyEdges.to_string().is_empty());
    }
}
