//! The routing extension's messages (feature bit ROUTING, ops 0x10..=0x17; `wire::ext`):
//! FIND_NODE asks for the nodes closest to a 64-bit target ID, NODES answers with them.
//!
//! ```text
//! FIND_NODE  10 ‖ nonce[8] ‖ target u64 ‖ sender u64 ‖ want u8 ‖ pad[P]   26 + P
//! NODES      11 ‖ nonce[8] ‖ n u8 ‖ n × (id u64 ‖ addr[18])                 10 + 26n
//! ```
//!
//! - `nonce`: chosen by the requester, echoed by the answer; a NODES whose nonce we did not send
//!   to its source is dropped, so an off-path sender cannot inject contacts.
//! - `sender`: the requester's node ID (0: "do not add me", e.g. a client). Only a claim: the
//!   responder adds the requester to its table only after the requester answered a probe at
//!   that address, and a verified ID (a pinned key) always wins over a claimed one.
//! - `want`: contacts asked for (0 = "are you alive?"; the answer then lists none).
//! - `pad`: zero bytes. A reply to an address the responder has not proven is never longer
//!   than its request (anti-amplification), so a requester that may be unproven pads its
//!   request to the size of the answer it wants ([`find_node_len_for`]). Non-zero padding is
//!   refused (`Error::TrailingBytes`): the padding is no hiding place.
//! - `id`: the contact's node ID (first 8 bytes of its public key, read little-endian, as v1);
//!   `addr`: 16-byte IPv6 (IPv4 mapped) ‖ port u16 LE, as in PONG lists.
//! - `n` ≤ [`MAX_NODES_PER_REPLY`]; a larger count is refused (`Error::TooManyAddrs`).
//!
//! Both are parsed by [`RouteMessage::parse`] from a datagram whose op byte is in
//! [`ROUTE_OPS`]; the v1 codec ([`crate::wire::Message`]) never sees them.

use crate::limits::{ADDR_LEN, MAX_PACKET_LEN};
use crate::wire::{Error, Result, WireAddr, array};

/// The op range of the routing extension.
pub const ROUTE_OPS: core::ops::RangeInclusive<u8> = 0x10..=0x17;
/// FIND_NODE's op.
pub const OP_FIND_NODE: u8 = 0x10;
/// NODES's op.
pub const OP_NODES: u8 = 0x11;

/// Bytes of one NODES entry: `id u64 ‖ addr[18]`.
pub const NODE_ENTRY_LEN: usize = 8 + ADDR_LEN;
/// FIND_NODE without padding.
pub const FIND_NODE_HEADER_LEN: usize = 26;
/// NODES without entries.
pub const NODES_HEADER_LEN: usize = 10;
/// Most entries in one NODES: above the largest bucket size a node may configure
/// (`route::MAX_BUCKET_SIZE`, 20) with room to spare, and 10 + 32 × 26 = 842 bytes stays well
/// inside one datagram.
pub const MAX_NODES_PER_REPLY: usize = 32;

const _: () = assert!(NODES_HEADER_LEN + MAX_NODES_PER_REPLY * NODE_ENTRY_LEN <= MAX_PACKET_LEN);
const _: () = assert!(*ROUTE_OPS.start() <= OP_FIND_NODE && OP_NODES <= *ROUTE_OPS.end());

/// Byte ranges of a FIND_NODE.
pub mod find_node_field {
    use crate::wire::Field;
    /// Requester's nonce.
    pub const NONCE: Field = 1..9;
    /// Target ID, u64 LE.
    pub const TARGET: Field = 9..17;
    /// Requester's node ID, u64 LE.
    pub const SENDER: Field = 17..25;
    /// Contacts wanted.
    pub const WANT: usize = 25;
    /// Start of the zero padding.
    pub const PAD_START: usize = 26;
}

/// Byte ranges of a NODES.
pub mod nodes_field {
    use crate::wire::Field;
    /// The request's nonce.
    pub const NONCE: Field = 1..9;
    /// Entry count n.
    pub const COUNT: usize = 9;
    /// Start of the entries.
    pub const ENTRIES_START: usize = 10;
    /// Inside an entry: the node ID, u64 LE.
    pub const ENTRY_ID: Field = 0..8;
    /// Inside an entry: the address.
    pub const ENTRY_ADDR: Field = 8..26;
}

/// The FIND_NODE length (with padding) whose answer, to an unproven requester, may carry `want`
/// entries: the length of that NODES.
pub const fn find_node_len_for(want: usize) -> usize {
    let reply = NODES_HEADER_LEN + want * NODE_ENTRY_LEN;
    if reply > FIND_NODE_HEADER_LEN {
        reply
    } else {
        FIND_NODE_HEADER_LEN
    }
}

/// Entries a NODES answering a `request_len`-byte FIND_NODE may carry when the requester is
/// unproven (the reply is never longer than the request).
pub const fn max_entries_unproven(request_len: usize) -> usize {
    if request_len < NODES_HEADER_LEN {
        0
    } else {
        (request_len - NODES_HEADER_LEN) / NODE_ENTRY_LEN
    }
}

/// A checked FIND_NODE view.
#[derive(Clone, Copy)]
pub struct FindNode<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FindNode<T> {
    /// Checks op, length and padding; after `Ok` no accessor can panic.
    pub fn new_checked(buffer: T) -> Result<FindNode<T>> {
        let bytes = buffer.as_ref();
        if bytes.is_empty() {
            return Err(Error::Empty);
        }
        if bytes[0] != OP_FIND_NODE {
            return Err(Error::UnknownOp);
        }
        if bytes.len() > MAX_PACKET_LEN {
            return Err(Error::TooLong);
        }
        if bytes.len() < FIND_NODE_HEADER_LEN {
            return Err(Error::TooShort);
        }
        if bytes[find_node_field::PAD_START..].iter().any(|&b| b != 0) {
            return Err(Error::TrailingBytes);
        }
        Ok(FindNode { buffer })
    }

    /// The requester's nonce.
    pub fn nonce(&self) -> [u8; 8] {
        array(&self.buffer.as_ref()[find_node_field::NONCE])
    }

    /// The target ID.
    pub fn target(&self) -> u64 {
        u64::from_le_bytes(array(&self.buffer.as_ref()[find_node_field::TARGET]))
    }

    /// The requester's claimed node ID (0 = none).
    pub fn sender(&self) -> u64 {
        u64::from_le_bytes(array(&self.buffer.as_ref()[find_node_field::SENDER]))
    }

    /// Contacts wanted.
    pub fn want(&self) -> u8 {
        self.buffer.as_ref()[find_node_field::WANT]
    }

    /// The whole datagram's length (what bounds an answer to an unproven requester).
    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Never true for a checked view (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.buffer.as_ref().is_empty()
    }

    /// The fields.
    pub fn repr(&self) -> FindNodeRepr {
        FindNodeRepr {
            nonce: self.nonce(),
            target: self.target(),
            sender: self.sender(),
            want: self.want(),
            padded_len: self.len(),
        }
    }
}

/// A FIND_NODE's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FindNodeRepr {
    /// Requester's nonce.
    pub nonce: [u8; 8],
    /// Target ID.
    pub target: u64,
    /// Requester's node ID (0 = none).
    pub sender: u64,
    /// Contacts wanted.
    pub want: u8,
    /// Total length on the wire, padding included: at least `FIND_NODE_HEADER_LEN`, at most
    /// `MAX_PACKET_LEN` (emit clamps to that range).
    pub padded_len: usize,
}

impl FindNodeRepr {
    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        self.padded_len.clamp(FIND_NODE_HEADER_LEN, MAX_PACKET_LEN)
    }

    /// Writes the FIND_NODE (zero padding) and returns its length. Panics if `buf` is shorter
    /// than `buffer_len` (a caller bug).
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let out = &mut buf[..len];
        out[0] = OP_FIND_NODE;
        out[find_node_field::NONCE].copy_from_slice(&self.nonce);
        out[find_node_field::TARGET].copy_from_slice(&self.target.to_le_bytes());
        out[find_node_field::SENDER].copy_from_slice(&self.sender.to_le_bytes());
        out[find_node_field::WANT] = self.want;
        out[find_node_field::PAD_START..].fill(0);
        len
    }
}

/// A checked NODES view.
#[derive(Clone, Copy)]
pub struct Nodes<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Nodes<T> {
    /// Checks op, count and length; after `Ok` no accessor can panic.
    pub fn new_checked(buffer: T) -> Result<Nodes<T>> {
        let bytes = buffer.as_ref();
        if bytes.is_empty() {
            return Err(Error::Empty);
        }
        if bytes[0] != OP_NODES {
            return Err(Error::UnknownOp);
        }
        if bytes.len() > MAX_PACKET_LEN {
            return Err(Error::TooLong);
        }
        if bytes.len() < NODES_HEADER_LEN {
            return Err(Error::TooShort);
        }
        let count = bytes[nodes_field::COUNT] as usize;
        if count > MAX_NODES_PER_REPLY {
            return Err(Error::TooManyAddrs);
        }
        let expected = NODES_HEADER_LEN + count * NODE_ENTRY_LEN;
        if bytes.len() < expected {
            return Err(Error::AddrListTooLong);
        }
        if bytes.len() > expected {
            return Err(Error::TrailingBytes);
        }
        Ok(Nodes { buffer })
    }

    /// The request's nonce.
    pub fn nonce(&self) -> [u8; 8] {
        array(&self.buffer.as_ref()[nodes_field::NONCE])
    }

    /// Number of entries (≤ `MAX_NODES_PER_REPLY`).
    pub fn count(&self) -> usize {
        self.buffer.as_ref()[nodes_field::COUNT] as usize
    }

    /// Entry `i` as (id, wire address); `None` past the end.
    pub fn entry(&self, i: usize) -> Option<(u64, WireAddr)> {
        if i >= self.count() {
            return None;
        }
        let start = nodes_field::ENTRIES_START + i * NODE_ENTRY_LEN;
        let e = &self.buffer.as_ref()[start..start + NODE_ENTRY_LEN];
        Some((
            u64::from_le_bytes(array(&e[nodes_field::ENTRY_ID])),
            array(&e[nodes_field::ENTRY_ADDR]),
        ))
    }

    /// The fields (copied: at most 32 × 26 bytes).
    pub fn repr(&self) -> NodesRepr {
        let mut repr = NodesRepr {
            nonce: self.nonce(),
            count: 0,
            entries: [(0, [0; ADDR_LEN]); MAX_NODES_PER_REPLY],
        };
        for i in 0..self.count() {
            if let Some(e) = self.entry(i) {
                repr.entries[i] = e;
                repr.count += 1;
            }
        }
        repr
    }
}

/// A NODES's fields. Fixed size, so building one never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodesRepr {
    /// The request's nonce.
    pub nonce: [u8; 8],
    /// Entries used (≤ `MAX_NODES_PER_REPLY`).
    pub count: usize,
    /// (id, address) entries; only the first `count` are meaningful.
    pub entries: [(u64, WireAddr); MAX_NODES_PER_REPLY],
}

impl NodesRepr {
    /// An empty answer to `nonce`.
    pub fn new(nonce: [u8; 8]) -> NodesRepr {
        NodesRepr {
            nonce,
            count: 0,
            entries: [(0, [0; ADDR_LEN]); MAX_NODES_PER_REPLY],
        }
    }

    /// Appends an entry; false (and nothing changes) when full.
    pub fn push(&mut self, id: u64, addr: WireAddr) -> bool {
        if self.count >= MAX_NODES_PER_REPLY {
            return false;
        }
        self.entries[self.count] = (id, addr);
        self.count += 1;
        true
    }

    /// The used entries.
    pub fn entries(&self) -> &[(u64, WireAddr)] {
        &self.entries[..self.count.min(MAX_NODES_PER_REPLY)]
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        NODES_HEADER_LEN + self.entries().len() * NODE_ENTRY_LEN
    }

    /// Writes the NODES and returns its length. Panics if `buf` is shorter than `buffer_len`
    /// (a caller bug).
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let out = &mut buf[..len];
        out[0] = OP_NODES;
        out[nodes_field::NONCE].copy_from_slice(&self.nonce);
        out[nodes_field::COUNT] = self.entries().len() as u8;
        for (i, (id, addr)) in self.entries().iter().enumerate() {
            let start = nodes_field::ENTRIES_START + i * NODE_ENTRY_LEN;
            let e = &mut out[start..start + NODE_ENTRY_LEN];
            e[nodes_field::ENTRY_ID].copy_from_slice(&id.to_le_bytes());
            e[nodes_field::ENTRY_ADDR].copy_from_slice(addr);
        }
        len
    }
}

/// A routing-extension message.
// Deliberately unboxed, like `peer::Outgoing`: a NODES is ~1 KiB inline, and boxing it would
// cost an allocation per answer to save stack space in short-lived values.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMessage {
    /// "Which nodes do you know closest to this ID?"
    FindNode(FindNodeRepr),
    /// The answer.
    Nodes(NodesRepr),
}

impl RouteMessage {
    /// Parses a datagram whose op is in [`ROUTE_OPS`]. Ops of the range that this build does not
    /// know are `Error::UnknownOp` (ignored and counted by the caller, never answered). Never
    /// panics.
    pub fn parse(bytes: &[u8]) -> Result<RouteMessage> {
        match bytes.first() {
            None => Err(Error::Empty),
            Some(&OP_FIND_NODE) => Ok(RouteMessage::FindNode(FindNode::new_checked(bytes)?.repr())),
            Some(&OP_NODES) => Ok(RouteMessage::Nodes(Nodes::new_checked(bytes)?.repr())),
            Some(_) => Err(Error::UnknownOp),
        }
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            RouteMessage::FindNode(f) => f.buffer_len(),
            RouteMessage::Nodes(n) => n.buffer_len(),
        }
    }

    /// Writes the message and returns its length (a `MAX_PACKET_LEN` buffer always fits).
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        match self {
            RouteMessage::FindNode(f) => f.emit(buf),
            RouteMessage::Nodes(n) => n.emit(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_node_deconstruct_construct() {
        let bytes = [
            0x10, 1, 2, 3, 4, 5, 6, 7, 8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xf0, 0,
            0, 0, 0, 0, 0, 0x0f, 8, 0, 0,
        ];
        let f = FindNode::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.nonce(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(f.target(), 0x1122_3344_5566_7788);
        assert_eq!(f.sender(), 0x0f00_0000_0000_00f0);
        assert_eq!(f.want(), 8);
        assert_eq!(f.len(), 28);
        let mut buf = [0xffu8; 64];
        let n = f.repr().emit(&mut buf);
        assert_eq!(&buf[..n], &bytes[..]);
    }

    #[test]
    fn find_node_refuses_short_and_dirty_padding() {
        let mut bytes = [0u8; FIND_NODE_HEADER_LEN];
        bytes[0] = OP_FIND_NODE;
        assert!(FindNode::new_checked(&bytes[..FIND_NODE_HEADER_LEN - 1]).is_err());
        assert!(FindNode::new_checked(&bytes[..]).is_ok());
        let mut padded = [0u8; 30];
        padded[0] = OP_FIND_NODE;
        padded[29] = 1;
        assert_eq!(
            FindNode::new_checked(&padded[..]).err(),
            Some(Error::TrailingBytes)
        );
        assert_eq!(FindNode::new_checked(&[][..]).err(), Some(Error::Empty));
        let long = [0u8; MAX_PACKET_LEN + 1];
        let mut long = long;
        long[0] = OP_FIND_NODE;
        assert_eq!(FindNode::new_checked(&long[..]).err(), Some(Error::TooLong));
    }

    #[test]
    fn nodes_round_trip_and_impossible_counts() {
        let mut repr = NodesRepr::new([9; 8]);
        assert!(repr.push(42, [1; ADDR_LEN]));
        assert!(repr.push(u64::MAX, [2; ADDR_LEN]));
        let mut buf = [0u8; MAX_PACKET_LEN];
        let n = repr.emit(&mut buf);
        assert_eq!(n, 10 + 2 * 26);
        let parsed = Nodes::new_checked(&buf[..n]).unwrap();
        assert_eq!(parsed.repr(), repr);
        assert_eq!(parsed.entry(2), None);
        // Count says 3, two entries present.
        buf[nodes_field::COUNT] = 3;
        assert_eq!(
            Nodes::new_checked(&buf[..n]).err(),
            Some(Error::AddrListTooLong)
        );
        buf[nodes_field::COUNT] = 1;
        assert_eq!(
            Nodes::new_checked(&buf[..n]).err(),
            Some(Error::TrailingBytes)
        );
        buf[nodes_field::COUNT] = (MAX_NODES_PER_REPLY + 1) as u8;
        assert_eq!(
            Nodes::new_checked(&buf[..n]).err(),
            Some(Error::TooManyAddrs)
        );
        let mut full = NodesRepr::new([0; 8]);
        for i in 0..MAX_NODES_PER_REPLY {
            assert!(full.push(i as u64, [0; ADDR_LEN]));
        }
        assert!(!full.push(0, [0; ADDR_LEN]));
    }

    #[test]
    fn padding_bounds_the_unproven_answer() {
        for want in 0..=MAX_NODES_PER_REPLY {
            let req = find_node_len_for(want);
            assert!(req >= FIND_NODE_HEADER_LEN);
            assert!(max_entries_unproven(req) >= want);
            assert!(NODES_HEADER_LEN + max_entries_unproven(req) * NODE_ENTRY_LEN <= req);
        }
        assert_eq!(max_entries_unproven(FIND_NODE_HEADER_LEN), 0);
    }

    #[test]
    fn unknown_ops_in_range_are_refused() {
        for op in ROUTE_OPS {
            if op == OP_FIND_NODE || op == OP_NODES {
                continue;
            }
            assert_eq!(RouteMessage::parse(&[op; 40]).err(), Some(Error::UnknownOp));
        }
    }
}
