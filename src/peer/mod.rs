//! The peer table: an I/O-free core that the "dave-peer" thread drives.
//!
//! It owns everything about other nodes: who they are (the public key pinned to each address),
//! the ping schedule, PONG checks, discovery, the own-address exchange, and the read-only
//! [`PeerSnapshot`] of active peers that shard owners use to pick targets. It never touches a
//! socket, a clock or a thread: time comes in as `now_ms` (monotonic milliseconds), randomness
//! from a seeded RNG it owns, and everything it wants done comes back as [`Effects`] values. That
//! makes one-thread tests and a deterministic simulator possible (DESIGN.md, "Cores without I/O").
//!
//! ```text
//!  address ──heard of──► candidate ──answered our one PING──► authenticated
//!          (PONG list,   (one PING; forgotten after            │ ≥ activation_delay_ms old
//!          or it pinged   candidate_ttl_ms)                    ▼ and answered recently
//!          us)                                   inactive ◄──► active
//!                                                   │ (no answer for deactivate_after_ms)
//!                                                   ▼ no answer for drop_after_ms
//!                                                dropped
//! ```
//!
//! Edges (configured bootstrap peers) start in the table unauthenticated, are pinged every period
//! and are never dropped (after `drop_after_ms` of silence they only forget their pinned key).
//!
//! With `PeerConfig::router_liveness` (the node runs a router), an authenticated peer that speaks
//! ROUTING is not pinged on the schedule: the router's answers keep it alive, its evictions drop
//! it, and the longer `routed_*` silence bounds replace the v1 ones (`table.rs`, `route::drive::exchange`).
//!
//! Amplification limits are the caller's: every outgoing [`Datagram`] says whether its
//! destination is *proven* (answered our PING with a valid PONG), and [`PeerTable::is_proven`]
//! answers the same question for any address. [`budget`] holds the limiter the node applies to
//! unproven destinations; [`trust`](TrustPolicy) turns storage-challenge outcomes into target
//! choices.

mod addr_check;
pub mod budget;
mod config;
mod pong_auth;
pub mod prover;
mod snapshot;
mod stats;
mod table;
mod trust;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use addr_check::{
    AddrProblem, IpCounts, IpLimits, IpPrefix, LimitHit, check_addr, crosses_loopback_scope,
};
pub use config::{MAX_TABLE_ENTRIES, PeerConfig, PeerConfigError};
pub use pong_auth::{MacKeyRegistry, PongAuth, simulated_mac_key};
pub use snapshot::{PeerInfo, PeerSnapshot, PeerView, SnapshotView};
pub use stats::PeerStats;
pub use table::PeerTable;
pub use trust::{
    Choice, MAX_SELECTION_CANDIDATES, MIN_SELECTION_RELIABILITY, ScoredPeer, Trust, TrustPolicy,
    UNPROVEN_RELIABILITY, choose_targets,
};

use crate::wire::{Message, PongRepr, WireAddr};

/// A message the peer table wants sent. Fixed size (the largest, a PONG, is a few hundred bytes
/// inline), so an effect never allocates on its own.
// Deliberately unboxed: most datagrams are PINGs and PONGs, and boxing the PONG would cost a heap
// allocation per answered PING to save ~200 bytes in a short-lived `Vec`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// PING with our fresh challenge.
    Ping {
        /// The challenge the PONG must sign.
        challenge: [u8; 8],
    },
    /// Our signed answer to a PING.
    Pong(PongRepr),
    /// "What is my address?"
    GetMyAddrPort,
    /// "Your address is …" (the requester's source address as we saw it).
    GetMyAddrPortAck(WireAddr),
}

impl Outgoing {
    /// The wire message (borrows nothing).
    pub fn message(&self) -> Message<'static> {
        match *self {
            Outgoing::Ping { challenge } => Message::Ping { challenge },
            Outgoing::Pong(pong) => Message::Pong(pong),
            Outgoing::GetMyAddrPort => Message::GetMyAddrPort,
            Outgoing::GetMyAddrPortAck(addr) => Message::GetMyAddrPortAck(addr),
        }
    }

    /// Bytes [`Outgoing::emit`] writes (at most `PONG_MAX_LEN`).
    pub fn buffer_len(&self) -> usize {
        self.message().buffer_len()
    }

    /// Writes the datagram into `buf` and returns its length. Panics if `buf` is shorter than
    /// [`Outgoing::buffer_len`] (a caller bug; a `MAX_PACKET_LEN` buffer always fits).
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        self.message().emit(buf)
    }
}

/// One peer's storage-challenge record, as `Node::peer_scores` reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerScore {
    /// The peer's address.
    pub addr: SocketAddr,
    /// Its pinned public key.
    pub pubkey: [u8; 32],
    /// Currently a target.
    pub active: bool,
    /// A configured edge.
    pub edge: bool,
    /// Decayed count of challenges it passed.
    pub successes: f32,
    /// Decayed count of challenges it failed.
    pub failures: f32,
    /// `successes / (successes + failures)`, or [`UNPROVEN_RELIABILITY`] with no outcome.
    pub reliability: f32,
}

/// One datagram to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Destination, in normal form (IPv4 as plain IPv4; a dual-stack socket must map it).
    pub to: SocketAddr,
    /// The destination answered one of our PINGs with a valid PONG (and has not been dropped
    /// since), so it demonstrably receives what we send: no amplification budget needed.
    pub to_proven: bool,
    /// What to send.
    pub message: Outgoing,
}

/// Something that happened to the table, for the thread (and logs, metrics, the snapshot
/// publisher) to react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    /// An address answered our PING correctly for the first time; its key is now pinned.
    Authenticated {
        /// The peer.
        addr: SocketAddr,
        /// Its pinned public key.
        pubkey: [u8; 32],
    },
    /// The peer became active (a target); the snapshot includes it.
    Activated {
        /// The peer.
        addr: SocketAddr,
    },
    /// The peer stopped being active; the snapshot no longer includes it.
    Deactivated {
        /// The peer.
        addr: SocketAddr,
    },
    /// The peer was forgotten (for an edge: its pinned key was forgotten, it stays and keeps
    /// being pinged). Preceded by `Deactivated` if it was still active.
    Dropped {
        /// The peer.
        addr: SocketAddr,
    },
    /// An address proof (`PeerTable::prove`) succeeded: `addr` holds `pubkey`'s key. The
    /// address does not become a peer by this.
    Proven {
        /// The proven address.
        addr: SocketAddr,
        /// The key it answered with.
        pubkey: [u8; 32],
    },
    /// The node-wide own address was learned or changed (from a GETMYADDRPORT_ACK).
    OwnAddrLearned {
        /// Our address as an edge sees it.
        addr: SocketAddr,
    },
}

impl std::fmt::Display for PeerEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerEvent::Authenticated { addr, pubkey } => {
                write!(f, "peer {addr} authenticated, key ")?;
                for byte in &pubkey[..8] {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            PeerEvent::Proven { addr, pubkey } => {
                write!(f, "address {addr} proven, key ")?;
                for byte in &pubkey[..8] {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            PeerEvent::Activated { addr } => write!(f, "peer {addr} active"),
            PeerEvent::Deactivated { addr } => write!(f, "peer {addr} no longer active"),
            PeerEvent::Dropped { addr } => write!(f, "peer {addr} forgotten"),
            PeerEvent::OwnAddrLearned { addr } => {
                write!(f, "own address as seen by an edge: {addr}")
            }
        }
    }
}

/// What one call to [`PeerTable::handle`] or [`PeerTable::tick`] wants done. Empty vectors do not
/// allocate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// Datagrams to send, in order.
    pub datagrams: Vec<Datagram>,
    /// Events, in the order they happened.
    pub events: Vec<PeerEvent>,
}

impl Effects {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty() && self.events.is_empty()
    }

    /// The own address learned in this call, if any (the last `OwnAddrLearned` event).
    pub fn own_addr(&self) -> Option<SocketAddr> {
        self.events.iter().rev().find_map(|e| match e {
            PeerEvent::OwnAddrLearned { addr } => Some(*addr),
            _ => None,
        })
    }

    /// Moves everything from `other` to the end of `self`.
    pub fn append(&mut self, other: &mut Effects) {
        self.datagrams.append(&mut other.datagrams);
        self.events.append(&mut other.events);
    }

    fn send(&mut self, to: SocketAddr, to_proven: bool, message: Outgoing) {
        self.datagrams.push(Datagram {
            to,
            to_proven,
            message,
        });
    }

    fn event(&mut self, event: PeerEvent) {
        // Debug level: one line per peer state change (bounded by the table's size and timers),
        // never per packet.
        log::debug!("{event}");
        self.events.push(event);
    }
}
