//! [`DatagramSink`]: where a node's outgoing datagrams go. A real socket in production; a
//! simulator's network or a test's recorder otherwise (STYLE habit 4: the simulator replaces the
//! socket, nothing else changes).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use super::SendBatch;

/// Something that sends datagrams, best effort, like UDP.
///
/// Sending cannot fail from the caller's point of view: UDP may lose any datagram anyway, and
/// the protocol already copes with loss (peers that stop answering lose trust and are dropped).
/// An implementation counts or ignores its failures, and says which.
///
/// `Send + Sync` so one sink can be shared by every thread that sends (receivers, shard owners,
/// the peer thread) behind an `Arc`.
pub trait DatagramSink: Send + Sync {
    /// Sends one datagram to `target`.
    fn send_to(&self, target: SocketAddr, bytes: &[u8]);

    /// Sends every datagram of `batch` and empties it. The default sends them one by one; a
    /// socket sends them with one `sendmmsg`.
    fn send_batch(&self, batch: &mut SendBatch) {
        batch.drain_into(self);
    }
}

/// A real socket. Errors are ignored: a refused or unreachable destination, a full send buffer
/// or a closed socket all mean a lost datagram, which the protocol already tolerates (see the
/// trait docs). Code that wants failures counted by reason uses [`SendBatch::flush`] and its
/// [`SendStats`](super::SendStats) directly.
impl DatagramSink for UdpSocket {
    fn send_to(&self, target: SocketAddr, bytes: &[u8]) {
        let _ = UdpSocket::send_to(self, bytes, target);
    }

    fn send_batch(&self, batch: &mut SendBatch) {
        // Per-datagram failures are counted in the batch's stats; a socket-level error is
        // counted there too (`dropped_socket_error`), so ignoring the result loses nothing.
        let _ = batch.flush(self);
    }
}

impl<S: DatagramSink + ?Sized> DatagramSink for Arc<S> {
    fn send_to(&self, target: SocketAddr, bytes: &[u8]) {
        (**self).send_to(target, bytes);
    }

    fn send_batch(&self, batch: &mut SendBatch) {
        (**self).send_batch(batch);
    }
}

impl<S: DatagramSink + ?Sized> DatagramSink for &S {
    fn send_to(&self, target: SocketAddr, bytes: &[u8]) {
        (**self).send_to(target, bytes);
    }

    fn send_batch(&self, batch: &mut SendBatch) {
        (**self).send_batch(batch);
    }
}
