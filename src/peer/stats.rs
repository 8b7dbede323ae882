//! Counters of the peer table: what it did, and every reason it refused something.
//!
//! Plain integers owned by the peer thread (quinn-proto's `UdpStats` pattern); the thread
//! publishes copies. Refusals are counted instead of logged.

/// Counters of one peer table. All counts since the table was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    // What came in.
    /// PINGs handled (answered unless refused).
    pub pings_received: u64,
    /// PONGs handled, accepted or not.
    pub pongs_received: u64,
    /// PONGs that answered our outstanding challenge correctly.
    pub pongs_accepted: u64,

    // What went out.
    /// PINGs we emitted (ping rounds and one per new candidate).
    pub pings_sent: u64,
    /// PONGs we emitted.
    pub pongs_sent: u64,
    /// Bytes of the PINGs (rounds, candidates, proofs) and PONGs we emitted, UDP payload only.
    pub ping_pong_bytes_sent: u64,
    /// GETMYADDRPORT requests we emitted.
    pub myaddr_requests_sent: u64,
    /// GETMYADDRPORT_ACKs we emitted.
    pub myaddr_acks_sent: u64,

    // Life cycle.
    /// Candidates added (each got one PING).
    pub candidates_added: u64,
    /// Candidates forgotten unanswered after `candidate_ttl_ms`.
    pub candidates_expired: u64,
    /// Peers (or edges) that answered a PING correctly for the first time.
    pub authenticated: u64,
    /// Transitions to active.
    pub activated: u64,
    /// Transitions from active to inactive.
    pub deactivated: u64,
    /// Peers dropped after `drop_after_ms` (`routed_drop_after_ms`) of silence, or on a router
    /// eviction (edges: identity forgotten).
    pub dropped: u64,
    /// Answers to router requests that kept a peer the router watches alive
    /// (`PeerTable::router_heard`).
    pub router_heard: u64,
    /// Peers the router watches dropped because the router evicted them
    /// (`PeerTable::router_evicted`; also counted in `dropped`).
    pub router_evicted: u64,
    /// Times the node-wide own address was set or changed.
    pub own_addr_changes: u64,
    /// PONG signatures that verified in a batch (`PeerTable::check_pongs_together`), so their
    /// PONGs were not checked again one by one.
    pub pong_signatures_batched: u64,
    /// Batches of PONG signatures that did not all verify (their PONGs were then checked one by
    /// one, as without a batch).
    pub pong_batches_failed: u64,

    // Refusals of a whole message.
    /// Datagram from an unusable source address (unspecified, multicast, broadcast, port 0).
    pub bad_source: u64,
    /// Datagram from our own address (a loop).
    pub own_source: u64,
    /// A message the peer table does not handle (PUT, GET, GET_ACK).
    pub wrong_op: u64,
    /// PONG listing more than `npeer_limit` addresses (refused before any side effect).
    pub too_many_addrs: u64,
    /// PONG from an address with no outstanding challenge.
    pub unsolicited_pong: u64,
    /// PONG whose challenge is not the outstanding one.
    pub wrong_challenge: u64,
    /// PONG whose public key differs from the one pinned to its address.
    pub pubkey_mismatch: u64,
    /// PONG whose public key is pinned to another address.
    pub pubkey_in_use: u64,
    /// PONG signed with our own key (we pinged ourselves).
    pub own_pubkey: u64,
    /// PONG whose signature does not verify.
    pub bad_signature: u64,
    /// PING from an unproven address not answered: `PeerConfig::unproven_pong_budget` was spent.
    pub pongs_over_budget: u64,
    /// GETMYADDRPORT_ACK without an outstanding request to its sender.
    pub unsolicited_myaddr_ack: u64,
    /// GETMYADDRPORT_ACK carrying an unusable address.
    pub bad_myaddr_ack: u64,

    // Refusals of one address (listed in a PONG, or a stranger that pinged us).
    /// The address is unusable, or loopback listed by a non-loopback peer.
    pub bad_addr: u64,
    /// The address is ours (learned own address or listen address).
    pub own_addr: u64,
    /// The peer table is at `max_peers`.
    pub table_full: u64,
    /// The candidate list (or its pinger share) is full.
    pub candidates_full: u64,
    /// `max_peers_per_ip` reached.
    pub per_ip_limit: u64,
    /// `max_peers_per_prefix` reached.
    pub per_prefix_limit: u64,

    // Address proofs for the routing extension (`peer::prover`).
    /// Proof PINGs sent (`PeerTable::prove`, and to strangers that pinged us).
    pub proofs_sent: u64,
    /// Of `proofs_sent`, the proofs of strangers: addresses that pinged us while our table had
    /// no room for them (`peer::prover`, `ProofPurpose::Stranger`).
    pub proofs_of_strangers: u64,
    /// Proofs answered at once from a key the table had pinned to the address (no PING).
    pub proofs_known: u64,
    /// Proofs answered by a valid PONG.
    pub proofs_succeeded: u64,
    /// Proofs unanswered within their timeout.
    pub proofs_expired: u64,
    /// Proofs asked for while one of the same address was outstanding (not sent again).
    pub proofs_already_pending: u64,
    /// Router proofs refused by the rate limit (`proofs_per_s`).
    pub proofs_rate_limited: u64,
    /// Stranger proofs refused by their rate limit (`stranger_proofs_per_s`).
    pub proofs_of_strangers_rate_limited: u64,
    /// Proofs refused because `MAX_PROOFS_PENDING` were outstanding.
    pub proofs_full: u64,
    /// Proofs of an address that is refused (bad, ours).
    pub proofs_bad_addr: u64,
    /// Proof answers signed by our own key or by a key other than the address's pinned one.
    pub proofs_wrong_key: u64,
    /// Proof answers whose signature did not verify.
    pub proofs_bad_signature: u64,
}

impl PeerStats {
    /// Every refusal counter with a metrics label.
    pub fn refusals(&self) -> [(&'static str, u64); 19] {
        [
            ("bad_source", self.bad_source),
            ("own_source", self.own_source),
            ("wrong_op", self.wrong_op),
            ("too_many_addrs", self.too_many_addrs),
            ("unsolicited_pong", self.unsolicited_pong),
            ("wrong_challenge", self.wrong_challenge),
            ("pubkey_mismatch", self.pubkey_mismatch),
            ("pubkey_in_use", self.pubkey_in_use),
            ("own_pubkey", self.own_pubkey),
            ("bad_signature", self.bad_signature),
            ("pong_over_budget", self.pongs_over_budget),
            ("unsolicited_myaddr_ack", self.unsolicited_myaddr_ack),
            ("bad_myaddr_ack", self.bad_myaddr_ack),
            ("bad_addr", self.bad_addr),
            ("own_addr", self.own_addr),
            ("table_full", self.table_full),
            ("candidates_full", self.candidates_full),
            ("per_ip_limit", self.per_ip_limit),
            ("per_prefix_limit", self.per_prefix_limit),
        ]
    }

    /// Every refusal of an address proof (`peer::prover`), by reason, for the exporter.
    pub fn proof_refusals(&self) -> [(&'static str, u64); 7] {
        [
            ("rate_limited", self.proofs_rate_limited),
            (
                "stranger_rate_limited",
                self.proofs_of_strangers_rate_limited,
            ),
            ("full", self.proofs_full),
            ("already_pending", self.proofs_already_pending),
            ("bad_addr", self.proofs_bad_addr),
            ("wrong_key", self.proofs_wrong_key),
            ("bad_signature", self.proofs_bad_signature),
        ]
    }

    /// Sum of all refusal counters.
    pub fn refused_total(&self) -> u64 {
        self.refusals().iter().map(|(_, n)| n).sum()
    }
}
