//! Datagrams a protocol core wants sent: one growable byte arena plus (destination, range) items,
//! reused across calls so that steady-state operation allocates nothing.

use std::net::SocketAddr;

use crate::limits::MAX_PACKET_LEN;
use crate::wire::Message;

/// Queued outgoing datagrams.
#[derive(Debug, Default)]
pub struct Outbox {
    bytes: Vec<u8>,
    items: Vec<(SocketAddr, u32, u16)>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Queues a message for `to`.
    pub fn push(&mut self, to: SocketAddr, message: &Message<'_>) {
        let start = self.bytes.len();
        let len = message.buffer_len();
        debug_assert!(len <= MAX_PACKET_LEN);
        self.bytes.resize(start + len, 0);
        message.emit(&mut self.bytes[start..]);
        self.items.push((to, start as u32, len as u16));
    }

    /// Queues raw bytes (an already-encoded datagram) for `to`.
    pub fn push_bytes(&mut self, to: SocketAddr, datagram: &[u8]) {
        debug_assert!(datagram.len() <= MAX_PACKET_LEN);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(datagram);
        self.items.push((to, start as u32, datagram.len() as u16));
    }

    /// Number of queued datagrams.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The queued datagrams, in order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.items.iter().map(|&(to, start, len)| {
            let start = start as usize;
            (to, &self.bytes[start..start + len as usize])
        })
    }

    /// Takes back the last `n` queued datagrams.
    pub fn truncate_last(&mut self, n: usize) {
        let keep = self.items.len().saturating_sub(n);
        if let Some(&(_, start, _)) = self.items.get(keep) {
            self.bytes.truncate(start as usize);
        }
        self.items.truncate(keep);
    }

    /// Forgets everything queued, keeping the memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }
}
