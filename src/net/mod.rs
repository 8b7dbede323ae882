//! Networking: UDP socket setup, batched receive and send, and the sending seam for simulators.
//!
//! - `socket`: `socket2` setup (SO_REUSEPORT, buffer sizes, timeouts) and
//!   [`bind_node_sockets`], which binds a node's receiver sockets on its one port and refuses to
//!   share that port with anyone else, another dave node included.
//! - `sys`: [`RecvBatch`] and [`SendBatch`] over `recvmmsg(2)` / `sendmmsg(2)` (runs coalesced by
//!   the kernel read datagram by datagram, [`set_receive_coalescing`]; runs sent segmented), and
//!   [`spread_reuseport`] (the SO_REUSEPORT group's classic BPF program: a random spread, and
//!   chosen ops steered to one socket), [`socket_drops`] and [`receive_queue_bytes`]
//!   (`SO_MEMINFO`),
//!   [`set_current_thread_nice`] (`setpriority(2)` on one thread) and the CPU-time clocks
//!   ([`thread_cpu_time_ns`], [`process_cpu_time_ns`]). It is the only
//!   module of the crate allowed to use `unsafe` (STYLE habit 7, after smoltcp's `phy/sys` and
//!   quinn-udp's `unix.rs`); every block there carries a `// SAFETY:` comment.
//! - [`DatagramSink`]: the one trait a simulator or a test implements to capture what a node
//!   sends, without sockets.
//!
//! `socket2` stays out of the public API (as in quinn-udp's `UdpSockRef`): everything here takes
//! and returns `std::net::UdpSocket`. Linux only: the batch calls are Linux system calls.

mod sink;
mod socket;
#[allow(unsafe_code)]
mod sys;

pub use sink::DatagramSink;
pub use socket::{
    BufferSizes, DEFAULT_READ_TIMEOUT, DEFAULT_RECV_BUFFER_BYTES, DEFAULT_SEND_BUFFER_BYTES,
    DEFAULT_WRITE_TIMEOUT, MAX_NODE_SOCKETS, NodeSockets, SocketOptions, bind_node_sockets,
    bind_udp, buffer_sizes, shutdown_read,
};
pub use sys::{
    BATCH, COALESCED_BUF, MAX_COALESCED_SEGMENTS, MAX_DATAGRAM_BUF, MAX_STEERED_OPS, RecvBatch,
    SendBatch, SendStats, SteerOps, poll_readable, process_cpu_time_ns, receive_queue_bytes,
    set_current_thread_idle_policy, set_current_thread_nice, set_current_thread_slice,
    set_receive_coalescing, set_udp_segment, socket_drops, spread_reuseport,
    spread_reuseport_randomly, thread_cpu_time_ns,
};
