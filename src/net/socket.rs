//! UDP socket setup with `socket2`: SO_REUSEPORT, buffer sizes, timeouts, and binding a node's
//! sockets on its one port without ever sharing that port with someone else.
//!
//! # Why a node's port needs more than SO_REUSEPORT
//!
//! Each receiver thread has its own socket on the node's port (SO_REUSEPORT; the kernel spreads
//! datagrams over them by a hash of the 4-tuple, so one peer always lands on the same thread).
//! But Linux lets *any* socket of the same user with SO_REUSEPORT join that group: a second dave
//! node started on the same port by mistake would bind without error and silently take a share
//! of the first node's traffic. [`bind_node_sockets`] prevents that in three steps:
//!
//! 1. **Probe.** It first binds one socket *without* SO_REUSEPORT (or SO_REUSEADDR unless asked).
//!    The kernel refuses that bind if any socket at all holds an overlapping address on the port,
//!    reuseport or not, any user: `EADDRINUSE`, reported with the address and a hint.
//! 2. **Bind.** It closes the probe and binds the receiver sockets with SO_REUSEPORT on the same
//!    port (with one socket, the probe itself is kept: nobody can join a non-reuseport socket).
//! 3. **Verify.** Between steps 1 and 2 another process could have slipped in with SO_REUSEPORT.
//!    So it reads the kernel's table of UDP sockets (`/proc/net/udp`, `/proc/net/udp6`) and
//!    fails if any socket that is not one of ours is bound to an overlapping address on the
//!    port. If another node then starts on this port, *its* check sees our sockets and it
//!    refuses to start, so the node that was there first keeps its port.
//!
//! Limits, documented rather than hidden: without `/proc` the verification is skipped (the probe
//! still catches every holder that was there before us); a foreign IPv6 wildcard socket (`[::]`)
//! is assumed IPv6-only, because `/proc` does not say, so it does not count as overlapping our
//! IPv4 socket (for IPv4 datagrams Linux prefers the AF_INET socket anyway).
//!
//! # Why SO_REUSEADDR is off by default
//!
//! For UDP on Linux, SO_REUSEADDR lets two sockets bind the same address and port if both set
//! it, whatever user owns them, and then the one bound last receives the unicast traffic. UDP has
//! no TIME_WAIT for SO_REUSEADDR to help with, so setting it only opens our port to hijacking.
//! [`SocketOptions::reuse_address`] exists for setups that need it (multicast tests), default
//! off.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Default receive buffer: 4 MiB. At 1 M datagrams per second the kernel keeps roughly 1–2 KiB
/// per queued datagram, so 4 MiB holds about 2–4 ms of traffic per socket: enough to ride out a
/// scheduling hiccup of its receiver thread without drops. Linux caps it at
/// `net.core.rmem_max` (raise that sysctl on storage nodes).
pub const DEFAULT_RECV_BUFFER_BYTES: usize = 4 << 20;

/// Default send buffer: 1 MiB. Outgoing datagrams drain at link speed; a bigger buffer would only
/// add queueing delay. Linux caps it at `net.core.wmem_max`.
pub const DEFAULT_SEND_BUFFER_BYTES: usize = 1 << 20;

/// Default read timeout: 100 ms. A receiver blocked in `recv` notices shutdown within this time;
/// waking ten times a second on an idle node costs nothing measurable.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_millis(100);

/// Default write timeout: 10 ms. A full 1 MiB send buffer drains in about 8 ms at 1 Gbit/s, so
/// a healthy link frees space within it; if the link is stuck, a sending thread loses at most
/// this long per batch before the batch is dropped and counted.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_millis(10);

/// Most sockets [`bind_node_sockets`] binds on one port: one per receiver thread (at most 1,024:
/// no machine dave runs on has more cores) and the PUT lane's. Also bounds the startup work of
/// the probe.
pub const MAX_NODE_SOCKETS: usize = 1024 + 1;

/// Attempts when binding port 0: after the probe picks a free port and closes, another program
/// may take that port before we bind it again. Each attempt picks a fresh port, so a few
/// attempts make a clash practically impossible.
const PORT_ZERO_ATTEMPTS: usize = 8;

/// How a UDP socket is set up. Plain data; every field documents its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOptions {
    /// SO_REUSEPORT, so several sockets (one per receiver thread) can bind one port. Default
    /// false: bound to port 0 with it, a socket may be given a port that another SO_REUSEPORT
    /// socket of the same user already holds (the kernel does not count such ports as taken;
    /// 1,052 of 8,000 such binds on 127.0.0.1 shared one) and take a share of its datagrams.
    /// [`bind_node_sockets`] decides this field itself (see the module docs).
    pub reuse_port: bool,
    /// SO_REUSEADDR. Default false: for UDP it lets any user's socket with SO_REUSEADDR take
    /// over the port (see the module docs).
    pub reuse_address: bool,
    /// SO_RCVBUF to ask for; 0 keeps the kernel default. Default [`DEFAULT_RECV_BUFFER_BYTES`].
    pub recv_buffer_bytes: usize,
    /// SO_SNDBUF to ask for; 0 keeps the kernel default. Default [`DEFAULT_SEND_BUFFER_BYTES`].
    pub send_buffer_bytes: usize,
    /// SO_RCVTIMEO: how long a receive waits before returning nothing, so receiver loops notice
    /// shutdown. Must not be zero (to the kernel, zero means wait forever). Default
    /// [`DEFAULT_READ_TIMEOUT`].
    pub read_timeout: Duration,
    /// SO_SNDTIMEO: how long a send waits for room in a full send buffer. Must not be zero.
    /// Default [`DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// IPV6_V6ONLY, for IPv6 addresses only. Default false: a socket on `[::]` also serves
    /// IPv4, as the Go reference's does.
    pub ipv6_only: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            reuse_port: false,
            reuse_address: false,
            recv_buffer_bytes: DEFAULT_RECV_BUFFER_BYTES,
            send_buffer_bytes: DEFAULT_SEND_BUFFER_BYTES,
            read_timeout: DEFAULT_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            ipv6_only: false,
        }
    }
}

/// Buffer sizes the kernel granted, as `getsockopt` reports them. Linux reports twice the
/// value it accepted (the extra half is its bookkeeping), capped at twice
/// `net.core.rmem_max` / `wmem_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// SO_RCVBUF.
    pub recv_bytes: usize,
    /// SO_SNDBUF.
    pub send_bytes: usize,
}

/// The sockets of a node, all bound to its one port, and what the kernel granted them.
#[derive(Debug)]
pub struct NodeSockets {
    /// One socket per receiver thread, in order.
    pub sockets: Vec<UdpSocket>,
    /// The bound address (with the real port if port 0 was asked for).
    pub local_addr: SocketAddr,
    /// Buffer sizes of the first socket (all are set up alike).
    pub buffers: BufferSizes,
}

/// Binds one UDP socket to `addr` with `opts`.
///
/// Errors name the address; a port held by another socket gives [`io::ErrorKind::AddrInUse`], a
/// zero timeout [`io::ErrorKind::InvalidInput`].
/// This does not stop another SO_REUSEPORT socket from joining the port later: a node binds with
/// [`bind_node_sockets`] instead. A buffer smaller than asked for is not an error (the kernel
/// caps it silently); read it back with [`buffer_sizes`].
pub fn bind_udp(addr: SocketAddr, opts: &SocketOptions) -> io::Result<UdpSocket> {
    if opts.read_timeout.is_zero() || opts.write_timeout.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("UDP {addr}: socket timeouts must not be zero (zero would block forever)"),
        ));
    }
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| context(e, format!("creating a UDP socket for {addr}")))?;
    let setup = |e: io::Error| context(e, format!("setting up UDP socket for {addr}"));
    if addr.is_ipv6() {
        socket.set_only_v6(opts.ipv6_only).map_err(setup)?;
    }
    if opts.reuse_address {
        socket.set_reuse_address(true).map_err(setup)?;
    }
    if opts.reuse_port {
        socket.set_reuse_port(true).map_err(setup)?;
    }
    if opts.recv_buffer_bytes > 0 {
        socket
            .set_recv_buffer_size(opts.recv_buffer_bytes)
            .map_err(setup)?;
    }
    if opts.send_buffer_bytes > 0 {
        socket
            .set_send_buffer_size(opts.send_buffer_bytes)
            .map_err(setup)?;
    }
    socket
        .set_read_timeout(Some(opts.read_timeout))
        .map_err(setup)?;
    socket
        .set_write_timeout(Some(opts.write_timeout))
        .map_err(setup)?;
    socket.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            in_use(addr, "another socket already holds it")
        } else {
            context(e, format!("binding UDP {addr}"))
        }
    })?;
    Ok(socket.into())
}

/// Binds `count` sockets for a node's receiver threads on `addr`, and makes sure nobody else
/// (another dave node included) receives on that port: see the module docs for how.
///
/// `opts.reuse_port` is ignored: one socket is bound without SO_REUSEPORT, several with it.
/// Port 0 picks a free port, the same for every socket. A port taken by anyone else, before or
/// during the bind, is an [`io::ErrorKind::AddrInUse`] error naming the address. A `count` of 0
/// or above [`MAX_NODE_SOCKETS`] is [`io::ErrorKind::InvalidInput`]. Logs a warning if the
/// kernel granted smaller buffers than asked for.
pub fn bind_node_sockets(
    addr: SocketAddr,
    count: usize,
    opts: &SocketOptions,
) -> io::Result<NodeSockets> {
    if count == 0 || count > MAX_NODE_SOCKETS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{count} sockets asked for on {addr}; between 1 and {MAX_NODE_SOCKETS} allowed"
            ),
        ));
    }
    let exclusive = SocketOptions {
        reuse_port: false,
        ..opts.clone()
    };
    let shared = SocketOptions {
        reuse_port: true,
        ..opts.clone()
    };
    let attempts = if addr.port() == 0 {
        PORT_ZERO_ATTEMPTS
    } else {
        1
    };
    let mut last_error = None;
    for _ in 0..attempts {
        // 1. Probe: fails if anyone holds the port, with or without SO_REUSEPORT.
        let probe = bind_udp(addr, &exclusive)?;
        let local_addr = probe.local_addr()?;
        let sockets = if count == 1 {
            // Nobody can join a socket bound without SO_REUSEPORT: the probe is the answer.
            vec![probe]
        } else {
            // 2. Bind the group on the port the probe found free.
            drop(probe);
            match (0..count).map(|_| bind_udp(local_addr, &shared)).collect() {
                Ok(sockets) => sockets,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    // Someone took the port between probe and bind; with port 0, pick another.
                    last_error = Some(in_use(local_addr, "another socket took it while binding"));
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        // 3. Verify nobody joined the group.
        verify_exclusive(local_addr, opts.ipv6_only, &sockets)?;
        let buffers = buffer_sizes(&sockets[0])?;
        warn_if_capped(local_addr, opts, buffers);
        return Ok(NodeSockets {
            sockets,
            local_addr,
            buffers,
        });
    }
    Err(last_error.unwrap_or_else(|| in_use(addr, "no free port found")))
}

/// The buffer sizes the kernel granted `socket` (see [`BufferSizes`]).
pub fn buffer_sizes(socket: &UdpSocket) -> io::Result<BufferSizes> {
    let socket = SockRef::from(socket);
    Ok(BufferSizes {
        recv_bytes: socket.recv_buffer_size()?,
        send_bytes: socket.send_buffer_size()?,
    })
}

fn warn_if_capped(addr: SocketAddr, opts: &SocketOptions, granted: BufferSizes) {
    if granted.recv_bytes < opts.recv_buffer_bytes {
        log::warn!(
            "UDP {addr}: receive buffer {} bytes granted of {} asked for; raise net.core.rmem_max",
            granted.recv_bytes,
            opts.recv_buffer_bytes
        );
    }
    if granted.send_bytes < opts.send_buffer_bytes {
        log::warn!(
            "UDP {addr}: send buffer {} bytes granted of {} asked for; raise net.core.wmem_max",
            granted.send_bytes,
            opts.send_buffer_bytes
        );
    }
}

fn context(error: io::Error, what: String) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

fn in_use(addr: SocketAddr, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "UDP {addr} is already in use ({why}); is another dave node or program on this port? \
             `ss -uanp 'sport = :{}'` shows who",
            addr.port()
        ),
    )
}

/// Fails if a socket other than `ours` is bound to an address overlapping `local` on its port,
/// according to the kernel's socket tables. Skipped, with a debug log, if `/proc` is missing.
fn verify_exclusive(local: SocketAddr, ipv6_only: bool, ours: &[UdpSocket]) -> io::Result<()> {
    let tables = [("/proc/net/udp", false), ("/proc/net/udp6", true)];
    let mut texts = Vec::with_capacity(tables.len());
    for (path, is_v6) in tables {
        match fs::read_to_string(path) {
            Ok(text) => texts.push((text, is_v6)),
            // No IPv6 in this kernel: no udp6 table, and no IPv6 socket to clash with.
            Err(e) if e.kind() == io::ErrorKind::NotFound && is_v6 => {}
            Err(e) => {
                log::debug!("UDP {local}: cannot read {path} ({e}); port exclusivity not verified");
                return Ok(());
            }
        }
    }
    let inodes = ours
        .iter()
        .map(socket_inode)
        .collect::<io::Result<HashSet<u64>>>()?;
    let dual_stack = local.is_ipv6() && !ipv6_only;
    let our_cover = Coverage::of(local.ip(), dual_stack);
    let mut found = 0;
    for (text, is_v6) in &texts {
        for entry in text
            .lines()
            .skip(1)
            .filter_map(|l| parse_proc_udp_line(l, *is_v6))
        {
            if entry.local.port() != local.port() || entry.inode == 0 {
                continue;
            }
            if inodes.contains(&entry.inode) {
                found += 1;
                continue;
            }
            // A foreign IPv6 wildcard is taken as IPv6-only: /proc does not say (module docs).
            if our_cover.overlaps(Coverage::of(entry.local.ip(), false)) {
                return Err(in_use(
                    local,
                    &format!(
                        "socket inode {} of uid {} is bound to {} too, sharing it through \
                         SO_REUSEPORT or SO_REUSEADDR",
                        entry.inode, entry.uid, entry.local
                    ),
                ));
            }
        }
    }
    if found < inodes.len() {
        // Our own sockets are missing from the table: it is not the table of our network
        // namespace, so it proves nothing either way.
        log::debug!(
            "UDP {local}: {found} of our {} sockets listed in /proc",
            inodes.len()
        );
    }
    Ok(())
}

/// The inode number of a socket, as `/proc/net/udp` lists it.
fn socket_inode(socket: &UdpSocket) -> io::Result<u64> {
    Ok(fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))?.ino())
}

/// The addresses a UDP socket bound to one IP receives for, as the kernel's bind-conflict check
/// sees them. IPv4 addresses are kept in their IPv4-mapped IPv6 form, so one comparison covers
/// both families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Coverage {
    /// Every IPv4 address (bound to 0.0.0.0, or to `[::]` without IPV6_V6ONLY).
    all_v4: bool,
    /// Every IPv6 address (bound to `[::]`).
    all_v6: bool,
    /// One address.
    exact: Option<Ipv6Addr>,
}

impl Coverage {
    fn of(ip: IpAddr, dual_stack: bool) -> Self {
        let none = Self {
            all_v4: false,
            all_v6: false,
            exact: None,
        };
        let v4 = |v4: Ipv4Addr| {
            if v4.is_unspecified() {
                Self {
                    all_v4: true,
                    ..none
                }
            } else {
                Self {
                    exact: Some(v4.to_ipv6_mapped()),
                    ..none
                }
            }
        };
        match ip {
            IpAddr::V4(ip) => v4(ip),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(ip) => v4(ip),
                None if ip.is_unspecified() => Self {
                    all_v4: dual_stack,
                    all_v6: true,
                    exact: None,
                },
                None => Self {
                    exact: Some(ip),
                    ..none
                },
            },
        }
    }

    fn covers(self, ip: Ipv6Addr) -> bool {
        if ip.to_ipv4_mapped().is_some() {
            self.all_v4
        } else {
            self.all_v6
        }
    }

    fn overlaps(self, other: Self) -> bool {
        (self.all_v4 && other.all_v4)
            || (self.all_v6 && other.all_v6)
            || (self.exact.is_some() && self.exact == other.exact)
            || self.exact.is_some_and(|ip| other.covers(ip))
            || other.exact.is_some_and(|ip| self.covers(ip))
    }
}

/// One row of `/proc/net/udp` or `/proc/net/udp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcUdpEntry {
    local: SocketAddr,
    uid: u32,
    inode: u64,
}

/// Parses a row such as
/// `  12: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000  0 4242 …`
/// (columns: sl, local, remote, st, tx:rx queue, tr:when, retrnsmt, uid, timeout, inode). The
/// kernel prints each 32-bit word of an address with `%08X` as the CPU reads it, so the bytes
/// come back in the CPU's byte order. `None` for a header or malformed row.
fn parse_proc_udp_line(line: &str, is_v6: bool) -> Option<ProcUdpEntry> {
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let uid = fields.nth(5)?.parse().ok()?;
    let inode = fields.nth(1)?.parse().ok()?;
    let (ip_hex, port_hex) = local.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let ip = match (is_v6, ip_hex.len()) {
        (false, 8) => IpAddr::V4(Ipv4Addr::from(hex_word(ip_hex)?.to_ne_bytes())),
        (true, 32) => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&hex_word(ip_hex.get(i * 8..i * 8 + 8)?)?.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(ProcUdpEntry {
        local: SocketAddr::new(ip, port),
        uid,
        inode,
    })
}

fn hex_word(hex: &str) -> Option<u32> {
    u32::from_str_radix(hex, 16).ok()
}

/// Shuts the socket's read side down, which wakes every thread blocked receiving on it (or on a
/// clone of it): from then on a receive returns at once with empty datagrams, so the caller
/// checks its own shutdown flag first. Linux answers `ENOTCONN` for an unconnected UDP socket
/// but still marks it shut and wakes the sleepers, so that answer is not an error here.
pub fn shutdown_read(socket: &UdpSocket) {
    let _ = SockRef::from(socket).shutdown(std::net::Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_proc_rows() {
        let row = "  127: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000  \
                   1000        0 4242 2 0000000000000000 0";
        assert_eq!(
            parse_proc_udp_line(row, false),
            Some(ProcUdpEntry {
                local: "127.0.0.1:8080".parse().unwrap(),
                uid: 1000,
                inode: 4242,
            })
        );
        let row6 = "  5: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 \
                    07 00000000:00000000 00:00000000 00000000     0        0 77 2 0000000000000000 0";
        assert_eq!(
            parse_proc_udp_line(row6, true).map(|e| (e.local, e.uid, e.inode)),
            Some(("[::1]:53".parse().unwrap(), 0, 77))
        );
        let mapped = "  5: 0000000000000000FFFF00000100007F:0035 00000000000000000000000000000000:0000 \
                      07 00000000:00000000 00:00000000 00000000     0        0 78 2 0000000000000000 0";
        assert_eq!(
            parse_proc_udp_line(mapped, true).map(|e| e.local),
            Some("[::ffff:127.0.0.1]:53".parse().unwrap())
        );
    }

    #[test]
    fn rejects_malformed_rows() {
        let header = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops";
        assert_eq!(parse_proc_udp_line(header, false), None);
        assert_eq!(parse_proc_udp_line("", false), None);
        assert_eq!(parse_proc_udp_line("0: 0100007F:1F90", false), None);
        let wrong_family = "  1: 0100007F:1F90 00000000:0000 07 0:0 00:0 0 0 0 5 2 0 0";
        assert_eq!(parse_proc_udp_line(wrong_family, true), None);
    }

    #[test]
    fn coverage_overlaps_like_the_kernel() {
        let c = Coverage::of;
        // Same address, wildcards of the same family.
        assert!(c(v4("127.0.0.1"), false).overlaps(c(v4("127.0.0.1"), false)));
        assert!(c(v4("0.0.0.0"), false).overlaps(c(v4("127.0.0.1"), false)));
        assert!(c(v4("127.0.0.1"), false).overlaps(c(v4("0.0.0.0"), false)));
        assert!(!c(v4("127.0.0.1"), false).overlaps(c(v4("127.0.0.2"), false)));
        assert!(c(v6("::"), false).overlaps(c(v6("::1"), false)));
        assert!(!c(v6("::1"), false).overlaps(c(v6("::2"), false)));
        // A dual-stack [::] covers IPv4; an IPv6-only one does not.
        assert!(c(v6("::"), true).overlaps(c(v4("10.0.0.1"), false)));
        assert!(c(v6("::"), true).overlaps(c(v4("0.0.0.0"), false)));
        assert!(!c(v6("::"), false).overlaps(c(v4("0.0.0.0"), false)));
        // IPv4-mapped IPv6 binds are IPv4 binds.
        assert!(c(v6("::ffff:127.0.0.1"), false).overlaps(c(v4("127.0.0.1"), false)));
        assert!(c(v6("::ffff:127.0.0.1"), false).overlaps(c(v4("0.0.0.0"), false)));
        assert!(!c(v6("::ffff:127.0.0.1"), false).overlaps(c(v6("::"), false)));
        // IPv4 and plain IPv6 addresses never meet.
        assert!(!c(v4("0.0.0.0"), false).overlaps(c(v6("::1"), false)));
    }

    #[test]
    fn socket_inode_is_listed_in_proc() {
        let socket = bind_udp("127.0.0.1:0".parse().unwrap(), &SocketOptions::default()).unwrap();
        let port = socket.local_addr().unwrap().port();
        let inode = socket_inode(&socket).unwrap();
        let table = fs::read_to_string("/proc/net/udp").unwrap();
        let entry = table
            .lines()
            .filter_map(|l| parse_proc_udp_line(l, false))
            .find(|e| e.inode == inode)
            .expect("our socket is in /proc/net/udp");
        assert_eq!(entry.local, SocketAddr::new(v4("127.0.0.1"), port));
    }

    #[test]
    fn verify_exclusive_sees_a_foreign_reuseport_socket() {
        // Our "node" socket, then a foreign SO_REUSEPORT socket that joins its port: the race
        // the probe cannot close.
        let shared = SocketOptions {
            reuse_port: true,
            ..SocketOptions::default()
        };
        let ours = bind_node_sockets("127.0.0.1:0".parse().unwrap(), 2, &shared).unwrap();
        let ours = ours.sockets.into_iter().next().unwrap();
        let local = ours.local_addr().unwrap();
        verify_exclusive(local, false, std::slice::from_ref(&ours)).unwrap();
        let foreign = bind_udp(local, &shared).unwrap();
        let error = verify_exclusive(local, false, std::slice::from_ref(&ours)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        assert!(error.to_string().contains(&local.to_string()), "{error}");
        // Both listed as ours: no complaint.
        verify_exclusive(local, false, &[ours, foreign]).unwrap();
    }
}
