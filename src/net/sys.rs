//! Batched UDP receive and send with `recvmmsg(2)` and `sendmmsg(2)`, one thread-priority call
//! (`setpriority(2)`) and CPU-time clocks (`clock_gettime(2)`): the only `unsafe` code in dave
//! (STYLE habit 7).
//!
//! Model: quinn-udp `src/unix.rs`. Buffers live on the heap inside [`RecvBatch`] / [`SendBatch`]
//! and are allocated once; each call builds its `mmsghdr`/`iovec` arrays on the stack, pointing
//! into those buffers, so no call allocates and the batch structs hold no raw pointers (they stay
//! `Send` and can be moved freely between calls).
//!
//! The `unsafe` here is of three kinds, each with its `// SAFETY:` reason:
//! - zero-initialising the C structs (`sockaddr_storage`, `mmsghdr`, `iovec`): all fields are
//!   integers or raw pointers, for which all-zero is a valid value;
//! - reinterpreting a `sockaddr_storage` as `sockaddr_in` / `sockaddr_in6`: the storage is larger
//!   and at least as aligned (asserted at compile time) and always fully initialised;
//! - the system calls: the two batch calls, whose pointers all point into buffers that outlive
//!   the call, `gettid`/`setpriority`, which take integers only, `clock_gettime`, which writes
//!   one local `timespec`, and `poll`, which writes the `revents` of an array it is given.
//!
//! Linux only (both calls exist elsewhere, with other flags and types; dave targets Linux).

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

#[cfg(not(target_os = "linux"))]
compile_error!("dave::net::sys uses recvmmsg/sendmmsg with Linux flags: Linux only");

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;

use crate::limits::MAX_PACKET_LEN;

use super::DatagramSink;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
///
/// 32, as quinn-udp's `BATCH_SIZE`: one system call costs about as much as handling a few
/// datagrams, so at 32 the per-call cost is a few percent of the batch, and going higher gains
/// little. The receive buffers (32 × 1425 B ≈ 45 KiB) stay within a core's L2 cache. A larger
/// batch does not add waiting latency (`MSG_WAITFORONE` returns as soon as one datagram is
/// there), only the time to handle the datagrams ahead of the last one.
pub const BATCH: usize = 32;

/// Bytes of each receive buffer: one more than the largest valid datagram, so that a datagram
/// that is too long is always visible, by its length as well as by the kernel's `MSG_TRUNC`.
pub const MAX_DATAGRAM_BUF: usize = MAX_PACKET_LEN + 1;

/// `EINTR` retries one [`SendBatch::flush`] accepts before it gives up on the rest of its batch.
/// A signal is rare and retrying is cheap; a storm of them must still not keep a thread here.
const EINTR_RETRIES_MAX: usize = 8;

// The kernel refuses batches longer than UIO_MAXIOV (1024).
const _: () = assert!(BATCH >= 1 && BATCH <= 1024);
const _: () = assert!(MAX_DATAGRAM_BUF > MAX_PACKET_LEN);
// The `as` casts of lengths below cannot truncate.
const _: () = assert!(MAX_DATAGRAM_BUF <= u32::MAX as usize);
const _: () = assert!(BATCH <= libc::c_uint::MAX as usize);
// Reinterpreting a sockaddr_storage as sockaddr_in / sockaddr_in6 needs it to be as large and
// as aligned.
const _: () =
    assert!(mem::size_of::<libc::sockaddr_storage>() >= mem::size_of::<libc::sockaddr_in>());
const _: () =
    assert!(mem::size_of::<libc::sockaddr_storage>() >= mem::size_of::<libc::sockaddr_in6>());
const _: () =
    assert!(mem::align_of::<libc::sockaddr_storage>() >= mem::align_of::<libc::sockaddr_in>());
const _: () =
    assert!(mem::align_of::<libc::sockaddr_storage>() >= mem::align_of::<libc::sockaddr_in6>());

/// Bytes of each receive buffer of a [`RecvBatch::coalescing`] batch: one coalesced run
/// (UDP GRO) is one UDP payload of at most 65,507 bytes over IPv4 and 65,527 over IPv6, so a
/// run always fits whole and `MSG_TRUNC` never cuts one.
pub const COALESCED_BUF: usize = 65_536;

/// Most datagrams [`RecvBatch`] takes from one coalesced run: the kernel builds runs of at most
/// 64 segments when it coalesces arriving datagrams (`UDP_GRO_CNT_MAX`) and of at most 128 when
/// a local sender's segmented send reaches the socket whole (`UDP_MAX_SEGMENTS` since Linux
/// 6.9). A run that claims more is not the kernel's: it is dropped as one too-long datagram.
pub const MAX_COALESCED_SEGMENTS: usize = 128;

/// Bytes of one `UDP_GRO` control message as the kernel writes it, padding included
/// (`CMSG_SPACE(sizeof(int))`: 24 on 64-bit Linux).
// SAFETY: CMSG_SPACE only computes a size from its argument; it reads no memory.
const GRO_CONTROL_LEN: usize =
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::c_int>() as libc::c_uint) } as usize;

/// A message's receive control buffer, in `u64` words so that the `cmsghdr` at its start is
/// aligned.
const GRO_CONTROL_WORDS: usize = GRO_CONTROL_LEN.div_ceil(mem::size_of::<u64>());

const _: () = assert!(COALESCED_BUF >= 65_527 && COALESCED_BUF <= u32::MAX as usize);
const _: () = assert!(MAX_COALESCED_SEGMENTS >= 64);

/// One datagram of the last receive: where its bytes are in the batch's buffers.
#[derive(Debug, Clone, Copy, Default)]
struct Datagram {
    /// The message (buffer, source) it came in.
    message: u8,
    /// Its first byte's offset in that message's buffer.
    offset: u32,
    /// Its length, at most the message's.
    len: u32,
    /// Too long to be a dave datagram, or cut short (see [`RecvBatch`]).
    too_long: bool,
}

// Message indices are stored as u8.
const _: () = assert!(BATCH <= u8::MAX as usize + 1);

/// Up to [`BATCH`] received messages, refilled by each [`recv`](Self::recv) without allocating,
/// read as the datagrams they carry.
///
/// Each datagram is read as `(bytes, source, too_long)`:
/// - `bytes`: the payload, at most [`MAX_DATAGRAM_BUF`] bytes, possibly empty;
/// - `source`: the sender. IPv4-mapped IPv6 sources (a dual-stack socket hearing IPv4) are given
///   as IPv4, so one peer has one address whichever socket heard it; replies to them work from
///   both kinds of socket. An address family the kernel should never report becomes
///   `0.0.0.0:0`, which a receiver drops like any port-0 source;
/// - `too_long`: longer than [`MAX_PACKET_LEN`]. The kernel truncated it (`MSG_TRUNC`) or it
///   filled the buffer's spare byte; `bytes` is then only its start, and it must be dropped.
///
/// A [`coalescing`](Self::coalescing) batch also takes runs the kernel coalesced (UDP GRO,
/// on a socket where [`set_receive_coalescing`] turned it on): one message of up to 64 KiB
/// holding datagrams of one sender, all of one length but the last, which is no longer. It
/// hands them out one by one, as if each had come alone; a batch then holds up to
/// `BATCH × MAX_COALESCED_SEGMENTS` datagrams.
///
/// ```no_run
/// # use dave::net::RecvBatch;
/// # let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// let mut batch = RecvBatch::new();
/// let n = batch.recv(&socket)?; // 0 after the socket's read timeout
/// for i in 0..n {
///     let (bytes, source, too_long) = batch.datagram(i);
///     if too_long { continue; } // count it
/// #   let _ = (bytes, source);
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct RecvBatch {
    /// Payload buffers, `buf_bytes` each, on the heap: the batch is cheap to move and the
    /// buffers never move.
    bufs: Box<[u8]>,
    /// Bytes of each message's buffer: [`MAX_DATAGRAM_BUF`], or [`COALESCED_BUF`] when
    /// coalescing.
    buf_bytes: usize,
    /// Source addresses, written by the kernel.
    names: Box<[libc::sockaddr_storage]>,
    /// One control buffer per message when coalescing (the `UDP_GRO` segment length), else
    /// empty.
    controls: Box<[[u64; GRO_CONTROL_WORDS]]>,
    /// Bytes of each filled message's source address the kernel wrote (`msg_namelen`).
    name_lens: [libc::socklen_t; BATCH],
    /// The datagrams of the last receive, in arrival order.
    datagrams: Box<[Datagram]>,
    /// Entries of `datagrams` filled by the last receive.
    count: usize,
    /// Of those, how many came in coalesced runs.
    coalesced: usize,
}

impl RecvBatch {
    /// Allocates the buffers (about 49 KiB): once per receiver thread, never per call.
    pub fn new() -> Self {
        Self::with_buffers(MAX_DATAGRAM_BUF, false)
    }

    /// A batch that also takes coalesced runs (see the type docs): 2 MiB of buffers
    /// ([`BATCH`] × [`COALESCED_BUF`], paged in as they are used) and room for
    /// `BATCH × MAX_COALESCED_SEGMENTS` datagrams. Read a socket with UDP GRO on
    /// ([`set_receive_coalescing`]) only with such a batch: a plain one would take the first
    /// 1,425 bytes of a run as one too-long datagram and lose the rest.
    pub fn coalescing() -> Self {
        Self::with_buffers(COALESCED_BUF, true)
    }

    fn with_buffers(buf_bytes: usize, coalescing: bool) -> Self {
        let datagrams = if coalescing {
            BATCH * MAX_COALESCED_SEGMENTS
        } else {
            BATCH
        };
        Self {
            bufs: vec![0u8; BATCH * buf_bytes].into_boxed_slice(),
            buf_bytes,
            names: vec![zeroed_sockaddr_storage(); BATCH].into_boxed_slice(),
            controls: vec![[0u64; GRO_CONTROL_WORDS]; if coalescing { BATCH } else { 0 }]
                .into_boxed_slice(),
            name_lens: [0; BATCH],
            datagrams: vec![Datagram::default(); datagrams].into_boxed_slice(),
            count: 0,
            coalesced: 0,
        }
    }

    /// Waits for at least one datagram, then takes every message already queued, up to
    /// [`BATCH`] (`recvmmsg` with `MSG_WAITFORONE`). Returns how many datagrams it took.
    ///
    /// `Ok(0)` means nothing arrived before the socket's read timeout (or a signal interrupted
    /// the wait, or a stale ICMP error was reported): the loop should check for shutdown and call
    /// again. Other errors concern the socket itself and are returned.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.recv_with(socket, libc::MSG_WAITFORONE)
    }

    /// Takes every message already queued, up to [`BATCH`], without waiting (`MSG_DONTWAIT`).
    /// Returns how many datagrams it took; `Ok(0)` means none was queued.
    pub fn try_recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.recv_with(socket, libc::MSG_DONTWAIT)
    }

    fn recv_with(&mut self, socket: &UdpSocket, flags: libc::c_int) -> io::Result<usize> {
        self.count = 0;
        self.coalesced = 0;
        let coalescing = !self.controls.is_empty();
        let mut iovecs = [zeroed_iovec(); BATCH];
        let mut hdrs = [zeroed_mmsghdr(); BATCH];
        // Every pointer comes from the bases below (`wrapping_add` keeps that safe code, and
        // `i < BATCH` keeps it in bounds); nothing else touches the buffers until the call returns.
        let bufs = self.bufs.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        let controls = self.controls.as_mut_ptr();
        for (i, iovec) in iovecs.iter_mut().enumerate() {
            iovec.iov_base = bufs.wrapping_add(i * self.buf_bytes).cast();
            iovec.iov_len = self.buf_bytes;
        }
        let iov = iovecs.as_mut_ptr();
        for (i, hdr) in hdrs.iter_mut().enumerate() {
            hdr.msg_hdr.msg_name = names.wrapping_add(i).cast();
            hdr.msg_hdr.msg_namelen = SOCKADDR_STORAGE_LEN;
            hdr.msg_hdr.msg_iov = iov.wrapping_add(i);
            hdr.msg_hdr.msg_iovlen = 1;
            if coalescing {
                hdr.msg_hdr.msg_control = controls.wrapping_add(i).cast();
                hdr.msg_hdr.msg_controllen = (GRO_CONTROL_WORDS * mem::size_of::<u64>()) as _;
            }
        }
        // SAFETY: `hdrs` holds BATCH initialised headers. Each points to one iovec in `iovecs`
        // (which covers one `buf_bytes`-byte buffer inside `self.bufs`, which holds BATCH of
        // them), to one sockaddr_storage in `self.names` with its true size and, when
        // coalescing, to one control buffer in `self.controls` (BATCH of them) with its true
        // size; otherwise to no control buffer (null, length 0). All of them are live and not
        // otherwise borrowed until the call returns; the kernel writes at most the given sizes.
        // The timeout pointer may be null (none; the socket's SO_RCVTIMEO applies instead).
        let rc = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags,
                ptr::null_mut(),
            )
        };
        if rc < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(
                    libc::EAGAIN
                    | libc::EINTR
                    | libc::ECONNREFUSED
                    | libc::EHOSTUNREACH
                    | libc::ENETUNREACH,
                ) => Ok(0),
                _ => Err(error),
            };
        }
        let messages = rc as usize;
        assert!(messages <= BATCH, "recvmmsg returned {messages} > {BATCH}");
        for (message, hdr) in hdrs.iter().enumerate().take(messages) {
            self.name_lens[message] = hdr.msg_hdr.msg_namelen;
            let len = (hdr.msg_len as usize).min(self.buf_bytes);
            let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let segment_bytes = if coalescing {
                gro_segment_bytes(&self.controls[message], hdr.msg_hdr.msg_controllen)
            } else {
                None
            };
            let first = self.count;
            let from_run = split_message(len, segment_bytes, truncated, |offset, len, too_long| {
                self.push_datagram(message, offset, len, too_long);
            });
            if from_run {
                self.coalesced += self.count - first;
            }
        }
        Ok(self.count)
    }

    /// Appends one datagram of message `message`; the caller stays within the capacity
    /// (`BATCH` plain messages, or `MAX_COALESCED_SEGMENTS` per coalesced one).
    fn push_datagram(&mut self, message: usize, offset: usize, len: usize, too_long: bool) {
        self.datagrams[self.count] = Datagram {
            message: message as u8,
            offset: offset as u32,
            len: len as u32,
            too_long,
        };
        self.count += 1;
    }

    /// Datagrams filled by the last [`recv`](Self::recv).
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if the last [`recv`](Self::recv) took nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Of the datagrams of the last [`recv`](Self::recv), how many came in coalesced runs.
    pub fn coalesced(&self) -> usize {
        self.coalesced
    }

    /// Datagram `i` of the last [`recv`](Self::recv), as `(bytes, source, too_long)` (see the
    /// type docs). Panics if `i >= self.len()` (a caller bug).
    pub fn datagram(&self, i: usize) -> (&[u8], SocketAddr, bool) {
        assert!(i < self.count, "datagram {i} of a batch of {}", self.count);
        let datagram = self.datagrams[i];
        let message = usize::from(datagram.message);
        let source = sockaddr_to_socket_addr(&self.names[message], self.name_lens[message])
            .unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)));
        let start = message * self.buf_bytes + datagram.offset as usize;
        let bytes = &self.bufs[start..start + datagram.len as usize];
        (bytes, source, datagram.too_long)
    }

    /// The datagrams of the last [`recv`](Self::recv), in arrival order, as
    /// [`datagram`](Self::datagram) gives them.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr, bool)> + '_ {
        (0..self.count).map(|i| self.datagram(i))
    }
}

/// Hands `push` the datagrams one received message of `len` bytes holds, in order, as
/// `(offset, len, too_long)`, and returns whether they came from a coalesced run:
/// - a message that came alone (`segment_bytes` none, 0, or not shorter than the message) is one
///   datagram, too long if the kernel cut it (`truncated`) or it is longer than
///   [`MAX_PACKET_LEN`];
/// - a run is cut every `segment_bytes` bytes (the last part may be shorter), each part too long
///   if it is longer than [`MAX_PACKET_LEN`], the last also if the kernel cut the run;
/// - a "run" of more than [`MAX_COALESCED_SEGMENTS`] parts is not one the kernel builds: one
///   too-long datagram.
///
/// The parts always tile `0..len` and number at most [`MAX_COALESCED_SEGMENTS`].
fn split_message(
    len: usize,
    segment_bytes: Option<usize>,
    truncated: bool,
    mut push: impl FnMut(usize, usize, bool),
) -> bool {
    let Some(segment) = segment_bytes.filter(|&s| s > 0 && s < len) else {
        push(0, len, truncated || len > MAX_PACKET_LEN);
        return false;
    };
    let parts = len.div_ceil(segment);
    if parts > MAX_COALESCED_SEGMENTS {
        push(0, len, true);
        return false;
    }
    for part in 0..parts {
        let offset = part * segment;
        let part_len = segment.min(len - offset);
        let cut = truncated && part == parts - 1;
        push(offset, part_len, cut || part_len > MAX_PACKET_LEN);
    }
    true
}

/// The segment length of a coalesced run from its message's control buffer (`controllen`
/// bytes written by the kernel): the `UDP_GRO` control message's `int`, or `None` when the
/// message came alone (no such control message).
fn gro_segment_bytes(control: &[u64; GRO_CONTROL_WORDS], controllen: usize) -> Option<usize> {
    // SAFETY: CMSG_LEN only computes a size from its argument; it reads no memory.
    let needed = unsafe { libc::CMSG_LEN(mem::size_of::<libc::c_int>() as libc::c_uint) } as usize;
    if controllen < needed || controllen > mem::size_of_val(control) {
        return None;
    }
    let base = control.as_ptr().cast::<u8>();
    // SAFETY: `control` is a u64-aligned buffer of GRO_CONTROL_LEN or more bytes, and the
    // kernel wrote `controllen >= CMSG_LEN(sizeof(int))` of them: a whole cmsghdr (alignment
    // ≤ 8) at its start and the int after it at CMSG_LEN(0), both inside the buffer (read
    // unaligned-safe for the int, which CMSG_DATA places at an aligned offset anyway).
    let (header, value) = unsafe {
        (
            base.cast::<libc::cmsghdr>().read(),
            base.add(libc::CMSG_LEN(0) as usize)
                .cast::<libc::c_int>()
                .read_unaligned(),
        )
    };
    (header.cmsg_level == libc::SOL_UDP && header.cmsg_type == UDP_GRO && header.cmsg_len >= needed)
        .then(|| usize::try_from(value).ok())
        .flatten()
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// What became of the datagrams given to a [`SendBatch`], counted by reason (STYLE habit 10).
/// UDP gives no delivery guarantee, so none of these is an error of the node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendStats {
    /// Accepted by the kernel.
    pub sent: u64,
    /// Refused for their destination only: unreachable host or network, port refused
    /// (`ECONNREFUSED`, `EHOSTUNREACH`, `ENETUNREACH`, `EHOSTDOWN`, `ENETDOWN`).
    pub dropped_unreachable: u64,
    /// Refused for their destination or size only: an address the socket cannot send to (an
    /// IPv6 address on an IPv4 socket, port 0, a broadcast without SO_BROADCAST), a firewall
    /// rule, too long (`EINVAL`, `EAFNOSUPPORT`, `EADDRNOTAVAIL`, `EACCES`, `EPERM`, `EMSGSIZE`,
    /// `EDESTADDRREQ`, `EPROTOTYPE`).
    pub dropped_rejected: u64,
    /// Dropped because the host could not take them: the socket's send buffer stayed full past
    /// its write timeout (`EAGAIN`, which drops the rest of the batch), the device queue was full
    /// (`ENOBUFS`), `EINTR` kept interrupting, or the kernel was out of memory.
    pub dropped_congested: u64,
    /// Dropped together with their batch because the socket itself failed (`EBADF`,
    /// `ENOTSOCK`, …); [`SendBatch::flush`] returned that error.
    pub dropped_socket_error: u64,
    /// Of `sent`, the datagrams that left in a segmented send (UDP GSO, see [`SendBatch`]):
    /// one trip through the kernel's network stack for a run of datagrams to one destination.
    pub sent_segmented: u64,
    /// Segmented sends the kernel refused (`EIO`: the route's device cannot checksum them;
    /// `EINVAL`: a kernel before 4.18, a segment above the route's MTU, `SO_NO_CHECK`) while it
    /// took their first datagram alone. Their datagrams were sent again one by one, and the
    /// batch sends one by one from then on.
    pub segmentation_refused: u64,
}

impl SendStats {
    /// All datagrams dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_unreachable
            + self.dropped_rejected
            + self.dropped_congested
            + self.dropped_socket_error
    }
}

/// Up to [`BATCH`] datagrams to send with one `sendmmsg`, each copied into an owned buffer.
///
/// One datagram failing (its destination unreachable, say) does not lose the others:
/// [`flush`](Self::flush) skips it, counts it in [`SendStats`], and sends the rest.
///
/// **Segmentation** (UDP GSO; off unless [`set_segmentation`](Self::set_segmentation) turns it
/// on, as the node does by default, `Config::udp_segmentation`; a load generator keeps it off
/// to send as an independent client would):
/// datagrams of one length to one destination leave as one message of the `sendmmsg` with a
/// `UDP_SEGMENT` control message, and the kernel cuts it into those datagrams after one trip
/// through its network stack instead of one trip each (a receiver answering many requests of
/// one client; on loopback a run of 32 costs the sender about a quarter of the CPU per
/// datagram, perf/README). What the destination receives is the same datagrams, each as
/// pushed, in push order among those of one length; only the order between those runs within a
/// batch changes, which UDP never promised. A kernel or route that refuses a segmented send (`EIO`, `EINVAL`) gets
/// its datagrams again one by one, and if the first of them then goes through, this batch
/// stops segmenting ([`SendStats::segmentation_refused`]; a destination refused alone as well
/// keeps segmentation on for the others).
///
/// ```no_run
/// # use dave::net::SendBatch;
/// # let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// # let peers: Vec<std::net::SocketAddr> = Vec::new();
/// let mut batch = SendBatch::new();
/// for &peer in &peers {
///     if !batch.push(peer, b"\x00pingpong") {
///         batch.flush(&socket)?; // full: send, then retry the push
///         batch.push(peer, b"\x00pingpong");
///     }
/// }
/// batch.flush(&socket)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SendBatch {
    /// Payload buffers, on the heap, allocated once.
    bufs: Box<[[u8; MAX_PACKET_LEN]]>,
    /// Destinations encoded for the kernel when pushed.
    names: Box<[libc::sockaddr_storage]>,
    /// Byte length of each `names` entry.
    name_lens: [libc::socklen_t; BATCH],
    /// Destinations as given (for [`DatagramSink`]s and inspection).
    targets: [SocketAddr; BATCH],
    /// Payload length of each entry.
    lens: [usize; BATCH],
    /// Entries pushed since the last flush.
    count: usize,
    /// Send runs of equal-length datagrams to one destination as one segmented message.
    segmentation: bool,
    /// Totals since creation.
    stats: SendStats,
}

/// Bytes of the one `UDP_SEGMENT` control message of a segmented send, padding included
/// (`CMSG_SPACE(2)`: 24 on 64-bit Linux).
// SAFETY: CMSG_SPACE only computes a size from its argument; it reads no memory.
const SEGMENT_CONTROL_LEN: usize =
    unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as libc::c_uint) } as usize;

/// A message's control buffer, in `u64` words so that the `cmsghdr` at its start is aligned.
const SEGMENT_CONTROL_WORDS: usize = SEGMENT_CONTROL_LEN.div_ceil(mem::size_of::<u64>());
// A full batch of the longest datagrams fits one segmented send: the kernel allows at most 64
// segments (`UDP_MAX_SEGMENTS` before Linux 6.9, 128 since) and 65,507 payload bytes (IPv4).
const _: () = assert!(BATCH <= 64 && BATCH * MAX_PACKET_LEN <= 65_507);
// Segment lengths are given to the kernel as u16.
const _: () = assert!(MAX_PACKET_LEN <= u16::MAX as usize);

/// How [`SendBatch::flush`] sends one batch: the entries in send order (each message's
/// datagrams next to each other) and, per message, its first entry and its datagram count.
struct SendPlan {
    order: [u8; BATCH],
    first: [u8; BATCH],
    segments: [u8; BATCH],
    messages: usize,
}

// Entry indices and counts are stored as u8.
const _: () = assert!(BATCH <= u8::MAX as usize);

impl SendPlan {
    /// One message per datagram, in push order.
    fn one_by_one(count: usize) -> Self {
        let mut plan = Self {
            order: [0; BATCH],
            first: [0; BATCH],
            segments: [1; BATCH],
            messages: count,
        };
        for i in 0..count {
            plan.order[i] = i as u8;
            plan.first[i] = i as u8;
        }
        plan
    }

    /// Groups the entries by (destination, length) in the order each group first appears,
    /// keeping push order within a group. Empty datagrams stay alone (a segment needs a size).
    /// O(count²) comparisons, at most 496 for a full batch: less than one system call.
    fn grouped(count: usize, targets: &[SocketAddr; BATCH], lens: &[usize; BATCH]) -> Self {
        let mut plan = Self {
            order: [0; BATCH],
            first: [0; BATCH],
            segments: [0; BATCH],
            messages: 0,
        };
        let mut placed = [false; BATCH];
        let mut next = 0;
        for i in 0..count {
            if placed[i] {
                continue;
            }
            let message = plan.messages;
            plan.messages += 1;
            plan.first[message] = next as u8;
            plan.order[next] = i as u8;
            next += 1;
            placed[i] = true;
            let mut segments = 1;
            if lens[i] > 0 {
                for j in i + 1..count {
                    if !placed[j] && lens[j] == lens[i] && targets[j] == targets[i] {
                        plan.order[next] = j as u8;
                        next += 1;
                        placed[j] = true;
                        segments += 1;
                    }
                }
            }
            plan.segments[message] = segments;
        }
        debug_assert_eq!(next, count);
        plan
    }

    /// From message `from` on, every datagram in a message of its own (after the kernel
    /// refused a segmented send). Returns the entries the messages before `from` hold.
    fn split_from(&mut self, from: usize, count: usize) -> usize {
        let before: usize = self.segments[..from].iter().map(|&s| usize::from(s)).sum();
        for (k, position) in (before..count).enumerate() {
            self.first[from + k] = position as u8;
            self.segments[from + k] = 1;
        }
        self.messages = from + (count - before);
        before
    }
}

impl SendBatch {
    /// Allocates the buffers (about 50 KiB): once per sending thread, never per call.
    pub fn new() -> Self {
        Self {
            bufs: vec![[0u8; MAX_PACKET_LEN]; BATCH].into_boxed_slice(),
            names: vec![zeroed_sockaddr_storage(); BATCH].into_boxed_slice(),
            name_lens: [0; BATCH],
            targets: [SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); BATCH],
            lens: [0; BATCH],
            count: 0,
            segmentation: false,
            stats: SendStats::default(),
        }
    }

    /// Turns segmentation (UDP GSO, see the type docs) on or off for the following flushes.
    /// Off by default.
    pub fn set_segmentation(&mut self, on: bool) {
        self.segmentation = on;
    }

    /// True if the next flush may send runs to one destination as one segmented message: on,
    /// and never refused by the kernel.
    pub fn segmentation(&self) -> bool {
        self.segmentation
    }

    /// Copies `bytes` into the batch, addressed to `target`. Returns false, and changes
    /// nothing, if the batch is full: flush it and push again.
    ///
    /// Panics if `bytes` is longer than [`MAX_PACKET_LEN`]: the node never builds such a datagram,
    /// so that would be a bug in the caller, not a peer's doing.
    pub fn push(&mut self, target: SocketAddr, bytes: &[u8]) -> bool {
        assert!(
            bytes.len() <= MAX_PACKET_LEN,
            "datagram of {} bytes > MAX_PACKET_LEN",
            bytes.len()
        );
        self.push_with(target, |buf| {
            buf[..bytes.len()].copy_from_slice(bytes);
            bytes.len()
        })
    }

    /// Lets `emit` write the datagram straight into the batch's buffer (no intermediate copy)
    /// and return its length. Returns false, without calling `emit`, if the batch is full.
    ///
    /// Panics if `emit` returns a length above [`MAX_PACKET_LEN`] (a bug in `emit`).
    pub fn push_with(&mut self, target: SocketAddr, emit: impl FnOnce(&mut [u8]) -> usize) -> bool {
        if self.count == BATCH {
            return false;
        }
        let i = self.count;
        let len = emit(&mut self.bufs[i][..]);
        assert!(
            len <= MAX_PACKET_LEN,
            "emit returned {len} > MAX_PACKET_LEN"
        );
        self.name_lens[i] = socket_addr_to_sockaddr(target, &mut self.names[i]);
        self.targets[i] = target;
        self.lens[i] = len;
        self.count += 1;
        true
    }

    /// Datagrams waiting to be sent.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True if [`push`](Self::push) would return false.
    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// Forgets the waiting datagrams without sending or counting them.
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// The waiting datagrams, in push order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        (0..self.count).map(|i| (self.targets[i], &self.bufs[i][..self.lens[i]]))
    }

    /// Totals since this batch was created.
    pub fn stats(&self) -> &SendStats {
        &self.stats
    }

    /// Sends the waiting datagrams with as few `sendmmsg` calls as the kernel allows, and
    /// empties the batch. Returns how many the kernel accepted.
    ///
    /// A datagram the kernel refuses for its own destination or size is skipped and counted
    /// (with the rest of its segmented message: they share the destination and the size);
    /// the rest are still sent. When the send buffer stays full past the socket's write
    /// timeout (`EAGAIN`), the rest of the batch is dropped and counted: waiting longer would
    /// stall the thread, and UDP may drop anyway. An error of the socket itself (closed, not a
    /// socket) is returned, with the batch dropped and counted. A segmented message the kernel
    /// refuses is sent again one datagram per message (type docs).
    ///
    /// At most `BATCH + EINTR_RETRIES_MAX + 1` system calls: each call sends or skips at least
    /// one message, or is an `EINTR` retry, or is the one segmented send refused.
    pub fn flush(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let count = self.count;
        self.count = 0;
        let mut plan = if self.segmentation && count > 1 {
            SendPlan::grouped(count, &self.targets, &self.lens)
        } else {
            SendPlan::one_by_one(count)
        };
        let mut iovecs = [zeroed_iovec(); BATCH];
        let mut hdrs = [zeroed_mmsghdr(); BATCH];
        let mut controls = [[0u64; SEGMENT_CONTROL_WORDS]; BATCH];
        let bufs = self.bufs.as_mut_ptr();
        for (position, iovec) in iovecs.iter_mut().enumerate().take(count) {
            let entry = usize::from(plan.order[position]);
            iovec.iov_base = bufs.wrapping_add(entry).cast();
            iovec.iov_len = self.lens[entry];
        }
        self.build_headers(&plan, 0, &mut iovecs, &mut hdrs, &mut controls);

        let mut start = 0; // first message not yet sent or skipped
        let mut sent = 0; // datagrams accepted
        let mut sent_segmented = 0;
        let mut done = 0; // datagrams sent or skipped
        let mut eintr_retries = 0;
        // After a refused segmented send: the message its first datagram now goes alone in. If
        // that datagram is accepted alone, segmentation was what the kernel refused.
        let mut refusal_to_confirm: Option<usize> = None;
        for _ in 0..BATCH + EINTR_RETRIES_MAX + 1 {
            if start == plan.messages {
                break;
            }
            // SAFETY: `start < plan.messages <= count <= BATCH`, so the pointer and length
            // describe initialised headers inside `hdrs`. Each points to its message's iovecs
            // in `iovecs` (each covering `lens[i] <= MAX_PACKET_LEN` initialised bytes of
            // `self.bufs`), to one encoded address in `self.names` with its length, and, for a
            // segmented message, to its control buffer in `controls` holding one whole
            // `UDP_SEGMENT` control message. All are live and unaliased until the call
            // returns; the kernel only reads them (and writes `msg_len`).
            let rc = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    hdrs.as_mut_ptr().wrapping_add(start),
                    (plan.messages - start) as libc::c_uint,
                    0,
                )
            };
            if rc > 0 {
                let n = rc as usize;
                assert!(
                    n <= plan.messages - start,
                    "sendmmsg sent {n} of {}",
                    plan.messages - start
                );
                if refusal_to_confirm.take() == Some(start) {
                    self.segmentation = false;
                    self.stats.segmentation_refused += 1;
                }
                for message in start..start + n {
                    let segments = usize::from(plan.segments[message]);
                    sent += segments;
                    done += segments;
                    if segments > 1 {
                        sent_segmented += segments;
                    }
                }
                start += n;
                continue;
            }
            // `rc == 0` cannot happen with a non-empty batch; treat it as a refusal of the first
            // message so that the loop still makes progress.
            let errno = if rc == 0 {
                libc::EINVAL
            } else {
                io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO)
            };
            let segments = usize::from(plan.segments[start]);
            if segments > 1 && matches!(errno, libc::EIO | libc::EINVAL) {
                // The kernel may not segment here (or the destination is refused whatever the
                // message): send the rest of this batch one by one (so this happens at most
                // once per flush), and stop segmenting if its first datagram then goes through.
                refusal_to_confirm = Some(start);
                let before = plan.split_from(start, count);
                debug_assert_eq!(before, done);
                self.build_headers(&plan, start, &mut iovecs, &mut hdrs, &mut controls);
                continue;
            }
            if refusal_to_confirm == Some(start) {
                refusal_to_confirm = None; // refused alone too: the destination's doing
            }
            match errno {
                libc::EINTR if eintr_retries < EINTR_RETRIES_MAX => eintr_retries += 1,
                libc::EAGAIN | libc::EINTR => {
                    self.stats.dropped_congested += (count - done) as u64;
                    start = plan.messages;
                    done = count;
                }
                libc::ENOBUFS | libc::ENOMEM => {
                    self.stats.dropped_congested += segments as u64;
                    start += 1;
                    done += segments;
                }
                libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN => {
                    self.stats.dropped_unreachable += segments as u64;
                    start += 1;
                    done += segments;
                }
                libc::EINVAL
                | libc::EAFNOSUPPORT
                | libc::EADDRNOTAVAIL
                | libc::EACCES
                | libc::EPERM
                | libc::EMSGSIZE
                | libc::EDESTADDRREQ
                | libc::EPROTOTYPE => {
                    self.stats.dropped_rejected += segments as u64;
                    start += 1;
                    done += segments;
                }
                _ => {
                    self.stats.sent += sent as u64;
                    self.stats.sent_segmented += sent_segmented as u64;
                    self.stats.dropped_socket_error += (count - done) as u64;
                    return Err(io::Error::from_raw_os_error(errno));
                }
            }
        }
        // Every iteration sends or skips at least one message, or is one of the bounded EINTR
        // retries or the one refused segmented send, so the loop above always finishes.
        assert_eq!(start, plan.messages, "flush left messages behind");
        assert_eq!(done, count, "flush left datagrams behind");
        self.stats.sent += sent as u64;
        self.stats.sent_segmented += sent_segmented as u64;
        Ok(sent)
    }

    /// Points the headers of messages `from..plan.messages` at their iovecs, destinations and,
    /// for segmented messages, a `UDP_SEGMENT` control message written into `controls`.
    fn build_headers(
        &mut self,
        plan: &SendPlan,
        from: usize,
        iovecs: &mut [libc::iovec; BATCH],
        hdrs: &mut [libc::mmsghdr; BATCH],
        controls: &mut [[u64; SEGMENT_CONTROL_WORDS]; BATCH],
    ) {
        let names = self.names.as_mut_ptr();
        let iov = iovecs.as_mut_ptr();
        for message in from..plan.messages {
            let first = usize::from(plan.first[message]);
            let segments = usize::from(plan.segments[message]);
            let entry = usize::from(plan.order[first]);
            let hdr = &mut hdrs[message];
            *hdr = zeroed_mmsghdr();
            hdr.msg_hdr.msg_name = names.wrapping_add(entry).cast();
            hdr.msg_hdr.msg_namelen = self.name_lens[entry];
            hdr.msg_hdr.msg_iov = iov.wrapping_add(first);
            hdr.msg_hdr.msg_iovlen = segments;
            if segments > 1 {
                let control = &mut controls[message];
                write_segment_control(control, self.lens[entry] as u16);
                hdr.msg_hdr.msg_control = control.as_mut_ptr().cast();
                hdr.msg_hdr.msg_controllen = SEGMENT_CONTROL_LEN;
            }
        }
    }

    /// Hands every waiting datagram to `sink` (a simulator, a test) and empties the batch.
    pub fn drain_into<S: DatagramSink + ?Sized>(&mut self, sink: &S) {
        for (target, bytes) in self.iter() {
            sink.send_to(target, bytes);
        }
        self.stats.sent += self.count as u64;
        self.count = 0;
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("count", &self.count)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Byte size of a `sockaddr_storage`, as the kernel wants it in `msg_namelen`.
const SOCKADDR_STORAGE_LEN: libc::socklen_t =
    mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

fn zeroed_sockaddr_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is a C struct of integers (family, padding); all-zero is valid.
    unsafe { mem::zeroed() }
}

fn zeroed_iovec() -> libc::iovec {
    // SAFETY: iovec is a raw pointer and a length; a null pointer with length 0 is valid.
    unsafe { mem::zeroed() }
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a msghdr (raw pointers, lengths, flags) and a length; null pointers
    // and zero lengths are valid values for all of them.
    unsafe { mem::zeroed() }
}

/// Writes one `UDP_SEGMENT` control message (`SOL_UDP`, the segment length as a u16) at the
/// start of `control` and zeroes the rest (the kernel skips zeroed padding).
fn write_segment_control(control: &mut [u64; SEGMENT_CONTROL_WORDS], segment_bytes: u16) {
    *control = [0; SEGMENT_CONTROL_WORDS];
    let base = control.as_mut_ptr().cast::<u8>();
    // SAFETY: CMSG_LEN only computes a size from its argument; it reads no memory.
    let cmsg_len = unsafe { libc::CMSG_LEN(mem::size_of::<u16>() as libc::c_uint) };
    let header = libc::cmsghdr {
        cmsg_len: cmsg_len as _,
        cmsg_level: libc::SOL_UDP,
        cmsg_type: UDP_SEGMENT,
    };
    // SAFETY: `control` is an exclusive, u64-aligned buffer of SEGMENT_CONTROL_WORDS * 8 bytes,
    // at least CMSG_SPACE(2) (SEGMENT_CONTROL_LEN), so a cmsghdr (alignment ≤ 8) fits at
    // its start and the u16 of data fits at CMSG_LEN(0) bytes in, both inside the buffer.
    // Both writes are unaligned-safe (`write_unaligned` for the data, which CMSG_DATA places
    // at an aligned offset anyway).
    unsafe {
        base.cast::<libc::cmsghdr>().write(header);
        let data_offset = libc::CMSG_LEN(0) as usize;
        base.add(data_offset)
            .cast::<u16>()
            .write_unaligned(segment_bytes);
    }
}

/// Decodes a kernel-written address: `None` for a family other than IPv4/IPv6 or a length too
/// short for its family. IPv4-mapped IPv6 addresses come back as IPv4 (see [`RecvBatch`]).
fn sockaddr_to_socket_addr(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the storage is fully initialised (zeroed at creation, then written by the
            // kernel), at least as large and as aligned as sockaddr_in (asserted above), and
            // its family says it holds one. The reference borrows `storage` for no longer.
            let sin = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6 (size and alignment asserted above).
            let sin6 = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

/// Encodes `addr` into `storage` for the kernel and returns the encoded length.
///
/// An IPv4 target is encoded as `sockaddr_in` even for an IPv6 socket: Linux sends it as IPv4
/// from a dual-stack socket (and refuses it with `ENETUNREACH` from an IPv6-only one).
fn socket_addr_to_sockaddr(
    addr: SocketAddr,
    storage: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `storage` is a valid, exclusive, sockaddr_storage, at least as large and
            // as aligned as sockaddr_in (asserted above); we overwrite its start with a whole,
            // initialised sockaddr_in, and the rest stays initialised.
            unsafe {
                ptr::from_mut(storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6 (size and alignment asserted above).
            unsafe {
                ptr::from_mut(storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Makes the kernel hand each datagram for `socket`'s SO_REUSEPORT group to one of its first
/// `count` sockets at random, datagram by datagram, instead of by a hash of the sender's address
/// and port (which pins each sender to one socket, so a few busy senders can all land on one
/// receiver: `perf/reuseport_spread.py`). The group takes one program, attached through any of
/// its sockets: classic BPF `A = random(); A %= count; return A` (`SO_ATTACH_REUSEPORT_CBPF`,
/// Linux 4.5+). An index the group does not have makes the kernel fall back to the hash.
pub fn spread_reuseport_randomly(socket: &UdpSocket, count: u32) -> io::Result<()> {
    spread_reuseport(socket, count, None)
}

/// Datagrams whose first byte is one of `ops` go to the group's socket `socket_index`, whatever
/// the spread (see [`spread_reuseport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteerOps<'a> {
    /// The socket's index in the SO_REUSEPORT group (the order the sockets were bound in).
    pub socket_index: u32,
    /// First bytes (a datagram's op) that go there. 1..=[`MAX_STEERED_OPS`].
    pub ops: &'a [u8],
}

/// Most ops a [`SteerOps`] may name: the program tests them one instruction each, and a jump's
/// offset is one byte (the program stays far below the kernel's 4,096 instructions).
pub const MAX_STEERED_OPS: usize = 16;

/// [`spread_reuseport_randomly`], and first, with `steer`, the datagrams whose first payload
/// byte is one of `steer.ops` to socket `steer.socket_index`. The program, classic BPF on the
/// UDP payload (the kernel pulls the UDP header off before running a reuseport program):
///
/// ```text
///     A = payload[0]            (an empty datagram aborts the program: index 0)
///     if A == ops[0] goto steer
///     ...
///     if A == ops[n-1] goto steer
///     A = random(); A %= count; return A
/// steer:
///     return socket_index
/// ```
///
/// Steering is a placement only: every receiver handles every op, so a datagram that lands
/// elsewhere (the kernel's hash fallback, a reordered group) is still served.
pub fn spread_reuseport(
    socket: &UdpSocket,
    count: u32,
    steer: Option<SteerOps<'_>>,
) -> io::Result<()> {
    let mut program = spread_program(count, steer)?;
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points to `program`, `fprog.len` initialised instructions that outlive the
    // call; the kernel copies the program during `setsockopt` and keeps no pointer to ours. The
    // option length is the true size of `fprog`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            ptr::from_ref(&fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The classic BPF program of [`spread_reuseport`] (no system call: tested on its own).
fn spread_program(count: u32, steer: Option<SteerOps<'_>>) -> io::Result<Vec<libc::sock_filter>> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    if count == 0 {
        return Err(invalid("spread over 0 sockets"));
    }
    let op = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let spread = [
        op(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            (libc::SKF_AD_OFF + libc::SKF_AD_RANDOM) as u32,
        ),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, count),
        op(libc::BPF_RET | libc::BPF_A, 0),
    ];
    let Some(steer) = steer else {
        return Ok(spread.to_vec());
    };
    if steer.ops.is_empty() || steer.ops.len() > MAX_STEERED_OPS {
        return Err(invalid("steer 1 to 16 ops"));
    }
    let mut program = Vec::with_capacity(2 + steer.ops.len() + spread.len());
    program.push(op(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0));
    for (i, &code) in steer.ops.iter().enumerate() {
        // Jump over the remaining tests and the spread, to the last instruction.
        let skip = (steer.ops.len() - 1 - i) + spread.len();
        let mut test = op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, u32::from(code));
        test.jt = skip as u8; // at most MAX_STEERED_OPS - 1 + 3: fits
        program.push(test);
    }
    program.extend_from_slice(&spread);
    program.push(op(libc::BPF_RET | libc::BPF_K, steer.socket_index));
    Ok(program)
}

/// `SO_MEMINFO` (Linux 3.10+; asm-generic's number, which x86-64 and arm64 use). The `libc`
/// crate has the `SK_MEMINFO_*` indices but does not export the option on every target.
const SO_MEMINFO: libc::c_int = 55;

/// Bytes queued in `socket`'s receive buffer and the buffer's limit, both as the kernel counts
/// them (`SO_MEMINFO`: `SK_MEMINFO_RMEM_ALLOC`, `SK_MEMINFO_RCVBUF`; each datagram counts its
/// skb's true size, so a 40-byte datagram costs about a kilobyte). One `getsockopt`.
pub fn receive_queue_bytes(socket: &UdpSocket) -> io::Result<(u32, u32)> {
    const _: () = assert!(libc::SK_MEMINFO_RMEM_ALLOC == 0 && libc::SK_MEMINFO_RCVBUF == 1);
    let meminfo = socket_meminfo(socket)?;
    Ok((meminfo[0], meminfo[1]))
}

/// Datagrams the kernel dropped for `socket` since it was opened (`SO_MEMINFO`'s
/// `SK_MEMINFO_DROPS`: a full receive queue, a filter; a 32-bit count that wraps). One
/// `getsockopt`.
pub fn socket_drops(socket: &UdpSocket) -> io::Result<u32> {
    Ok(socket_meminfo(socket)?[libc::SK_MEMINFO_DROPS as usize])
}

/// The `SO_MEMINFO` words up to and including `SK_MEMINFO_DROPS` (Linux 4.8+ has them all).
fn socket_meminfo(socket: &UdpSocket) -> io::Result<[u32; SOCKET_MEMINFO_WORDS]> {
    let mut meminfo = [0u32; SOCKET_MEMINFO_WORDS];
    let mut len = mem::size_of_val(&meminfo) as libc::socklen_t;
    // SAFETY: `meminfo` is writable for `len` bytes for the duration of the call; the kernel
    // copies at most `len` bytes (the first of its `SK_MEMINFO_VARS` words) and writes the
    // length it copied to `len`, a valid socklen_t.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            meminfo.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < mem::size_of_val(&meminfo) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO returned fewer fields than asked",
        ));
    }
    Ok(meminfo)
}

/// `SO_MEMINFO` words read: through `SK_MEMINFO_DROPS`, the last.
const SOCKET_MEMINFO_WORDS: usize = libc::SK_MEMINFO_DROPS as usize + 1;

/// `UDP_SEGMENT` (`linux/udp.h`; the `libc` crate has it only for some targets).
const UDP_SEGMENT: libc::c_int = 103;

/// Makes every send on `socket` longer than `segment_bytes` leave as datagrams of `segment_bytes`
/// each (the last may be shorter), cut by the kernel from the one buffer: UDP GSO
/// (`UDP_SEGMENT`, Linux 4.18+; at most 64 segments and 64 KiB per send). 0 turns it off. The
/// load generator floods with it, so that a flood costs the machine it shares with the node
/// one trip through the network stack per send rather than per datagram.
pub fn set_udp_segment(socket: &UdpSocket, segment_bytes: u16) -> io::Result<()> {
    set_int_option(
        socket,
        libc::SOL_UDP,
        UDP_SEGMENT,
        libc::c_int::from(segment_bytes),
    )
}

/// `UDP_GRO` (`linux/udp.h`; the `libc` crate has it only for some targets).
const UDP_GRO: libc::c_int = 104;

/// Lets the kernel hand `socket` runs of datagrams from one sender as one message (UDP GRO,
/// `UDP_GRO`, Linux 5.0+): datagrams a network device coalesced on arrival, and a local
/// sender's segmented send (UDP GSO), which then reaches the socket whole instead of being cut
/// into datagrams first. Read such a socket only with a [`RecvBatch::coalescing`] batch.
pub fn set_receive_coalescing(socket: &UdpSocket, on: bool) -> io::Result<()> {
    set_int_option(socket, libc::SOL_UDP, UDP_GRO, libc::c_int::from(on))
}

/// `setsockopt(2)` of one `int` option.
fn set_int_option(
    socket: &UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is an initialised c_int that outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            ptr::from_ref(&value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits up to `timeout_ms` until any of `sockets` has a datagram to read (`poll(2)`), and
/// puts the indexes of those that do into `ready`. Returns how many (0: the time ran out, or a
/// signal came). For the load generator's swarm of peers (`perf/loadgen/swarm.rs`), which
/// answers the node's PINGs on a thousand sockets from one thread; the node does not use it.
pub fn poll_readable(
    sockets: &[UdpSocket],
    timeout_ms: i32,
    ready: &mut Vec<usize>,
) -> io::Result<usize> {
    ready.clear();
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` holds `fds.len()` initialised pollfds and outlives the call; the kernel
    // writes only their `revents`.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(e)
        };
    }
    ready.extend(
        fds.iter()
            .enumerate()
            .filter(|(_, f)| f.revents & libc::POLLIN != 0)
            .map(|(i, _)| i),
    );
    Ok(ready.len())
}

/// Lowers the calling thread's scheduling priority to `nice` (0..=19; higher is lower).
///
/// Linux's `setpriority(PRIO_PROCESS, tid, …)` applies to one thread, not the whole process
/// (the NPTL behaviour documented in `setpriority(2)`). Raising a nice value needs no privilege.
pub fn set_current_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: `gettid` takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: plain integer arguments; the call reads no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Puts the calling thread under the `SCHED_IDLE` policy (`sched_setscheduler(2)` with pid 0: this
/// thread only): it runs only on CPU time no normal thread wants, and any normal thread that
/// wakes on its CPU preempts it at once. Needs no privilege.
pub fn set_current_thread_idle_policy() -> io::Result<()> {
    const SCHED_IDLE: libc::c_int = 5; // `linux/sched.h`; not in `libc` for every target
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is an initialised sched_param that outlives the call; the kernel reads it.
    let rc = unsafe { libc::sched_setscheduler(0, SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the scheduler for time slices of `slice_ns` for the calling thread, at nice `nice`
/// under the normal policy (`sched_setattr(2)`'s `sched_runtime`; Linux 6.12+ keeps it as the
/// thread's slice, within 0.1–100 ms, and lets a waking thread with a shorter slice than the
/// running one preempt it; older kernels ignore it).
pub fn set_current_thread_slice(slice_ns: u64, nice: i32) -> io::Result<()> {
    let attr = libc::sched_attr {
        size: mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: slice_ns,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is an initialised sched_attr whose `size` field is its true size, and it
    // outlives the call; the kernel reads at most that many bytes. pid 0 is the calling thread;
    // flags 0.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, ptr::from_ref(&attr), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// CPU time the calling thread has used, in ns (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`; used by
/// the benches to time work on a shared machine without the slices other processes took).
pub fn thread_cpu_time_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time the whole process has used, in ns (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_cpu_time_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    // Both clocks exist on every Linux since 2.6.12; a failure leaves `ts` at zero.
    debug_assert_eq!(rc, 0, "clock_gettime({clock})");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `split_message` hands out, collected.
    fn split(
        len: usize,
        segment: Option<usize>,
        truncated: bool,
    ) -> (Vec<(usize, usize, bool)>, bool) {
        let mut parts = Vec::new();
        let from_run = split_message(len, segment, truncated, |o, l, t| parts.push((o, l, t)));
        (parts, from_run)
    }

    proptest! {
        /// Whatever the kernel reports (any length, any segment length, cut or not), the parts
        /// tile the message in order, number at most MAX_COALESCED_SEGMENTS, and every part a
        /// receiver would read as valid is at most MAX_PACKET_LEN bytes.
        #[test]
        fn a_message_splits_into_parts_that_tile_it(
            len in 0usize..=COALESCED_BUF,
            segment in proptest::option::of(0usize..=3_000),
            truncated in any::<bool>(),
        ) {
            let (parts, from_run) = split(len, segment, truncated);
            prop_assert!(!parts.is_empty() && parts.len() <= MAX_COALESCED_SEGMENTS);
            let mut next = 0;
            for &(offset, part_len, too_long) in &parts {
                prop_assert_eq!(offset, next);
                next += part_len;
                prop_assert!(too_long || part_len <= MAX_PACKET_LEN);
            }
            prop_assert_eq!(next, len);
            if truncated {
                prop_assert!(parts.last().is_some_and(|p| p.2), "a cut message's end is dropped");
            }
            if from_run {
                let s = segment.unwrap_or(0);
                prop_assert!(parts.len() >= 2 && parts.iter().all(|p| p.1 <= s));
                prop_assert!(parts[..parts.len() - 1].iter().all(|p| p.1 == s));
            } else {
                prop_assert_eq!(parts.len(), 1);
            }
        }
    }

    #[test]
    fn a_run_is_cut_at_its_segment_length_and_a_lone_message_is_kept_whole() {
        assert_eq!(
            split(700, Some(300), false),
            (
                vec![(0, 300, false), (300, 300, false), (600, 100, false)],
                true
            )
        );
        assert_eq!(split(300, Some(300), false), (vec![(0, 300, false)], false));
        assert_eq!(split(300, None, true), (vec![(0, 300, true)], false));
        assert_eq!(
            split(MAX_PACKET_LEN + 1, None, false),
            (vec![(0, MAX_PACKET_LEN + 1, true)], false)
        );
        // More parts than the kernel ever coalesces: one too-long datagram.
        let (parts, from_run) = split(MAX_COALESCED_SEGMENTS + 1, Some(1), false);
        assert_eq!(
            (parts, from_run),
            (vec![(0, MAX_COALESCED_SEGMENTS + 1, true)], false)
        );
    }

    /// A control buffer holding one control message of `level`, `kind` and `value`.
    fn control(
        level: libc::c_int,
        kind: libc::c_int,
        value: libc::c_int,
    ) -> [u64; GRO_CONTROL_WORDS] {
        let mut words = [0u64; GRO_CONTROL_WORDS];
        let header = libc::cmsghdr {
            // SAFETY: CMSG_LEN only computes a size from its argument; it reads no memory.
            cmsg_len: unsafe { libc::CMSG_LEN(mem::size_of::<libc::c_int>() as libc::c_uint) } as _,
            cmsg_level: level,
            cmsg_type: kind,
        };
        let base = words.as_mut_ptr().cast::<u8>();
        // SAFETY: `words` is u64-aligned and GRO_CONTROL_LEN (≥ CMSG_SPACE(sizeof(int))) bytes:
        // the cmsghdr fits at its start and the int at CMSG_LEN(0), both inside it.
        unsafe {
            base.cast::<libc::cmsghdr>().write(header);
            base.add(libc::CMSG_LEN(0) as usize)
                .cast::<libc::c_int>()
                .write_unaligned(value);
        }
        words
    }

    #[test]
    fn the_segment_length_is_read_only_from_a_whole_udp_gro_control_message() {
        let whole = GRO_CONTROL_LEN;
        assert_eq!(
            gro_segment_bytes(&control(libc::SOL_UDP, UDP_GRO, 300), whole),
            Some(300)
        );
        assert_eq!(
            gro_segment_bytes(&control(libc::SOL_UDP, UDP_GRO, 300), 8),
            None
        );
        assert_eq!(
            gro_segment_bytes(&control(libc::SOL_UDP, UDP_GRO, 300), whole + 8),
            None
        );
        assert_eq!(
            gro_segment_bytes(&control(libc::SOL_IP, UDP_GRO, 300), whole),
            None
        );
        assert_eq!(
            gro_segment_bytes(&control(libc::SOL_UDP, UDP_SEGMENT, 300), whole),
            None
        );
        assert_eq!(
            gro_segment_bytes(&control(libc::SOL_UDP, UDP_GRO, -1), whole),
            None
        );
    }

    fn roundtrip(addr: SocketAddr) -> Option<SocketAddr> {
        let mut storage = zeroed_sockaddr_storage();
        let len = socket_addr_to_sockaddr(addr, &mut storage);
        sockaddr_to_socket_addr(&storage, len)
    }

    #[test]
    fn sockaddr_roundtrip_v4() {
        let addr: SocketAddr = "192.0.2.7:40001".parse().unwrap();
        assert_eq!(roundtrip(addr), Some(addr));
        let mut storage = zeroed_sockaddr_storage();
        let len = socket_addr_to_sockaddr(addr, &mut storage);
        assert_eq!(len as usize, mem::size_of::<libc::sockaddr_in>());
        assert_eq!(libc::c_int::from(storage.ss_family), libc::AF_INET);
    }

    #[test]
    fn sockaddr_roundtrip_v6_keeps_scope_and_flow() {
        let addr = SocketAddr::V6(SocketAddrV6::new(
            "fe80::1:2".parse().unwrap(),
            443,
            0x12345,
            7,
        ));
        assert_eq!(roundtrip(addr), Some(addr));
    }

    #[test]
    fn sockaddr_v4_mapped_decodes_as_v4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:9".parse().unwrap();
        assert_eq!(roundtrip(mapped), Some("10.1.2.3:9".parse().unwrap()));
    }

    #[test]
    fn sockaddr_short_or_unknown_is_none() {
        let mut storage = zeroed_sockaddr_storage();
        let len = socket_addr_to_sockaddr("[::1]:5".parse().unwrap(), &mut storage);
        assert_eq!(sockaddr_to_socket_addr(&storage, len - 1), None);
        let unknown = zeroed_sockaddr_storage(); // AF_UNSPEC
        assert_eq!(
            sockaddr_to_socket_addr(&unknown, SOCKADDR_STORAGE_LEN),
            None
        );
    }

    #[test]
    fn the_spread_program_steers_its_ops_past_the_random_spread() {
        let ops = [2u8, 4, 0x18];
        let program = spread_program(
            3,
            Some(SteerOps {
                socket_index: 3,
                ops: &ops,
            }),
        )
        .unwrap();
        // load, three tests, the spread's three instructions, the steer's return.
        assert_eq!(program.len(), 1 + 3 + 3 + 1);
        let last = program.len() - 1;
        for (i, &code) in ops.iter().enumerate() {
            let test = program[1 + i];
            assert_eq!(test.k, u32::from(code));
            assert_eq!(test.jf, 0);
            // A jump lands `jt` instructions after the next one: on the steer's return.
            assert_eq!(1 + i + 1 + test.jt as usize, last);
        }
        assert_eq!(program[last].k, 3);
        assert_eq!(program[last].code, (libc::BPF_RET | libc::BPF_K) as u16);
        assert_eq!(program[5].k, 3, "the spread's modulus");
        assert_eq!(spread_program(2, None).unwrap().len(), 3);
    }

    #[test]
    fn the_spread_program_refuses_what_it_cannot_encode() {
        let steer = |ops: &'static [u8]| {
            Some(SteerOps {
                socket_index: 1,
                ops,
            })
        };
        let kind = |r: io::Result<Vec<libc::sock_filter>>| r.map(|p| p.len()).map_err(|e| e.kind());
        assert_eq!(
            kind(spread_program(0, None)),
            Err(io::ErrorKind::InvalidInput)
        );
        assert_eq!(
            kind(spread_program(1, steer(&[]))),
            Err(io::ErrorKind::InvalidInput)
        );
        assert_eq!(
            kind(spread_program(1, steer(&[7; MAX_STEERED_OPS + 1]))),
            Err(io::ErrorKind::InvalidInput)
        );
        assert_eq!(
            kind(spread_program(1, steer(&[7; MAX_STEERED_OPS]))),
            Ok(MAX_STEERED_OPS + 5)
        );
    }

    #[test]
    fn a_grouped_plan_holds_every_entry_once_in_runs_of_one_address_and_length() {
        let addrs: [SocketAddr; 3] = [
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            "[::1]:1".parse().unwrap(),
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        for _ in 0..2_000 {
            let count = 1 + next(BATCH);
            let mut targets = [addrs[0]; BATCH];
            let mut lens = [0usize; BATCH];
            for i in 0..count {
                targets[i] = addrs[next(addrs.len())];
                lens[i] = [0, 1, 168, MAX_PACKET_LEN][next(4)];
            }
            let plan = SendPlan::grouped(count, &targets, &lens);
            let mut seen = [false; BATCH];
            let mut covered = 0;
            for message in 0..plan.messages {
                let first = usize::from(plan.first[message]);
                let segments = usize::from(plan.segments[message]);
                assert_eq!(first, covered, "messages are consecutive in the order");
                assert!(segments >= 1);
                let entries: Vec<usize> = plan.order[first..first + segments]
                    .iter()
                    .map(|&e| usize::from(e))
                    .collect();
                let head = entries[0];
                assert!(segments == 1 || lens[head] > 0, "empty datagrams go alone");
                for pair in entries.windows(2) {
                    assert!(pair[0] < pair[1], "push order within a message");
                }
                for &e in &entries {
                    assert!(e < count && !seen[e], "each entry once");
                    seen[e] = true;
                    assert_eq!((targets[e], lens[e]), (targets[head], lens[head]));
                }
                covered += segments;
            }
            assert_eq!(covered, count);
            // Maximal: no two messages could have been one.
            for a in 0..plan.messages {
                for b in a + 1..plan.messages {
                    let ha = usize::from(plan.order[usize::from(plan.first[a])]);
                    let hb = usize::from(plan.order[usize::from(plan.first[b])]);
                    assert!(
                        lens[ha] == 0 || (targets[ha], lens[ha]) != (targets[hb], lens[hb]),
                        "two messages for one address and length"
                    );
                }
            }
        }
    }

    #[test]
    fn send_batch_full_and_clear() {
        let mut batch = SendBatch::new();
        assert!(!batch.segmentation(), "off unless asked");
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for i in 0..BATCH {
            assert!(batch.push(to, &[i as u8; 3]));
        }
        assert!(batch.is_full());
        assert!(!batch.push(to, b"x"));
        assert_eq!(batch.iter().nth(5), Some((to, &[5u8, 5, 5][..])));
        batch.clear();
        assert!(batch.is_empty());
    }

    #[test]
    fn a_refused_segmented_send_is_sent_again_one_by_one() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_millis(20)))
            .unwrap();
        let to = receiver.local_addr().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        // With SO_NO_CHECK (no UDP checksum) the kernel refuses every segmented send with
        // EINVAL and still sends single datagrams: the refusal a device without checksum
        // offload gives (EIO), on loopback.
        set_int_option(&sender, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
        let mut batch = SendBatch::new();
        batch.set_segmentation(true);
        let mut pushed = Vec::new();
        for round in 0..2u8 {
            for i in 0..8u8 {
                let bytes = [round, i, 7, 7, 7];
                assert!(batch.push(to, &bytes));
                pushed.push(bytes.to_vec());
            }
            assert!(batch.push("127.0.0.1:0".parse().unwrap(), b"port zero")); // EINVAL
            assert_eq!(batch.flush(&sender).unwrap(), 8);
            assert!(!batch.segmentation());
        }
        let stats = *batch.stats();
        assert_eq!(
            stats.segmentation_refused, 1,
            "refused once, then not asked again"
        );
        assert_eq!((stats.sent, stats.sent_segmented), (16, 0));
        assert_eq!(stats.dropped_rejected, 2);
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..100 {
            match receiver.recv(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(_) if got.len() >= pushed.len() => break,
                Err(_) => {}
            }
        }
        assert_eq!(got, pushed);
    }

    #[test]
    fn a_destination_refused_alone_too_keeps_segmentation_on() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = SendBatch::new();
        batch.set_segmentation(true);
        for i in 0..3u8 {
            assert!(batch.push("127.0.0.1:0".parse().unwrap(), &[i; 9])); // EINVAL, any way
            assert!(batch.push(to, &[i; 5]));
        }
        assert_eq!(batch.flush(&sender).unwrap(), 3);
        let stats = *batch.stats();
        assert_eq!(stats.dropped_rejected, 3);
        assert_eq!(stats.segmentation_refused, 0);
        assert!(batch.segmentation());
        for i in 0..3u8 {
            assert!(batch.push(to, &[i; 5]));
        }
        assert_eq!(batch.flush(&sender).unwrap(), 3);
        assert_eq!(
            batch.stats().sent_segmented,
            3,
            "the second batch is segmented"
        );
    }

    /// `poll_readable` names exactly the sockets with a datagram waiting, and returns empty when
    /// its time runs out (real sockets on loopback).
    #[test]
    fn poll_readable_names_the_sockets_with_a_datagram() {
        let sockets: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut ready = vec![7];
        assert_eq!(poll_readable(&sockets, 1, &mut ready).unwrap(), 0);
        assert!(ready.is_empty());
        for i in [0, 2] {
            sender
                .send_to(&[i as u8], sockets[i].local_addr().unwrap())
                .unwrap();
        }
        // Loopback delivers within the send call; the wait bounds a slow machine.
        assert_eq!(poll_readable(&sockets, 1000, &mut ready).unwrap(), 2);
        assert_eq!(ready, vec![0, 2]);
        let mut buf = [0u8; 8];
        sockets[0].recv_from(&mut buf).unwrap();
        assert_eq!(poll_readable(&sockets, 1000, &mut ready).unwrap(), 1);
        assert_eq!(ready, vec![2]);
        assert_eq!(poll_readable(&[], 1, &mut ready).unwrap(), 0);
    }

    #[test]
    #[should_panic(expected = "MAX_PACKET_LEN")]
    fn send_batch_refuses_oversized() {
        SendBatch::new().push("127.0.0.1:9".parse().unwrap(), &[0; MAX_PACKET_LEN + 1]);
    }
}
