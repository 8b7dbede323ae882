//! Batched UDP I/O on real loopback sockets: `SendBatch` → `RecvBatch` delivery and source
//! addresses, too-long and empty datagrams, SO_REUSEPORT load sharing, port-in-use errors, and
//! IPv6 (skipped when the host has no IPv6 loopback).
//!
//! Only 127.0.0.x and [::1] are used. Every loop is bounded both in iterations and in time
//! (`DEADLINE`), so a lost datagram fails a test instead of hanging it.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dave::limits::MAX_PACKET_LEN;
use dave::net::{
    BATCH, DatagramSink, MAX_DATAGRAM_BUF, RecvBatch, SendBatch, SocketOptions, bind_node_sockets,
    bind_udp, buffer_sizes, set_receive_coalescing, set_udp_segment,
};

/// Longest any test waits for datagrams that loopback delivers in microseconds.
const DEADLINE: Duration = Duration::from_secs(5);

/// Short read timeout so the polling loops below turn quickly. No SO_REUSEPORT (the default): a
/// port-0 socket with it could be given the port of another test's socket.
fn opts() -> SocketOptions {
    SocketOptions {
        read_timeout: Duration::from_millis(20),
        ..SocketOptions::default()
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A (payload, source, too_long) triple, owned.
type Received = (Vec<u8>, SocketAddr, bool);

/// Receives on `socket` until `want` datagrams arrived or `DEADLINE` passed.
fn recv_n(socket: &UdpSocket, want: usize) -> Vec<Received> {
    let mut batch = RecvBatch::new();
    let mut got = Vec::new();
    let start = Instant::now();
    // Bounded twice: by the deadline, and by the number of calls (each waits up to 20 ms).
    for _ in 0..1000 {
        if got.len() >= want || start.elapsed() > DEADLINE {
            break;
        }
        batch.recv(socket).unwrap();
        got.extend(batch.iter().map(|(b, s, t)| (b.to_vec(), s, t)));
    }
    got
}

/// A payload that says who sent it and which one it is, of a length that varies up to the
/// largest valid datagram.
fn payload(sender: u8, seq: u8) -> Vec<u8> {
    let len = 2 + (usize::from(seq) * 97) % (MAX_PACKET_LEN - 1);
    let mut bytes = vec![sender ^ seq; len];
    bytes[0] = sender;
    bytes[1] = seq;
    bytes
}

#[test]
fn batch_arrives_intact_with_source_addresses() {
    let receiver = bind_udp(addr("127.0.0.1:0"), &opts()).unwrap();
    let target = receiver.local_addr().unwrap();
    let senders = [
        bind_udp(addr("127.0.0.2:0"), &opts()).unwrap(),
        bind_udp(addr("127.0.0.3:0"), &opts()).unwrap(),
    ];
    let per_sender = BATCH + 8; // more than one batch: exercises the full/flush cycle
    let mut expected = HashMap::new();
    for (id, socket) in senders.iter().enumerate() {
        let mut batch = SendBatch::new();
        for seq in 0..per_sender {
            let bytes = payload(id as u8, seq as u8);
            if !batch.push(target, &bytes) {
                assert_eq!(batch.flush(socket).unwrap(), BATCH);
                assert!(batch.push(target, &bytes));
            }
            expected.insert(bytes, socket.local_addr().unwrap());
        }
        batch.flush(socket).unwrap();
        assert_eq!(batch.stats().sent, per_sender as u64);
        assert_eq!(batch.stats().dropped(), 0);
        assert!(batch.is_empty());
    }
    let got = recv_n(&receiver, 2 * per_sender);
    assert_eq!(got.len(), 2 * per_sender);
    for (bytes, source, too_long) in got {
        assert!(!too_long);
        assert_eq!(
            expected.remove(&bytes),
            Some(source),
            "payload from {source}"
        );
    }
    assert!(expected.is_empty());
}

#[test]
fn too_long_datagram_is_flagged() {
    let receiver = bind_udp(addr("127.0.0.1:0"), &opts()).unwrap();
    let target = receiver.local_addr().unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for len in [4000, MAX_PACKET_LEN + 1, MAX_PACKET_LEN] {
        sender.send_to(&vec![7u8; len], target).unwrap();
    }
    let got = recv_n(&receiver, 3);
    assert_eq!(got.len(), 3);
    // 4000 bytes: the kernel truncated it to the buffer.
    assert_eq!(got[0].0.len(), MAX_DATAGRAM_BUF);
    assert!(got[0].2);
    // One byte too long: fits the buffer, still flagged.
    assert_eq!(got[1].0.len(), MAX_PACKET_LEN + 1);
    assert!(got[1].2);
    // Exactly the limit: fine.
    assert_eq!(got[2].0.len(), MAX_PACKET_LEN);
    assert!(!got[2].2);
}

#[test]
fn empty_datagram_is_received_with_len_zero() {
    let receiver = bind_udp(addr("127.0.0.1:0"), &opts()).unwrap();
    let sender = bind_udp(addr("127.0.0.4:0"), &opts()).unwrap();
    let mut batch = SendBatch::new();
    assert!(batch.push(receiver.local_addr().unwrap(), &[]));
    assert!(batch.push(receiver.local_addr().unwrap(), b"x"));
    assert_eq!(batch.flush(&sender).unwrap(), 2);
    let got = recv_n(&receiver, 2);
    assert_eq!(
        got,
        vec![
            (vec![], sender.local_addr().unwrap(), false),
            (b"x".to_vec(), sender.local_addr().unwrap(), false),
        ]
    );
}

#[test]
fn recv_returns_zero_after_read_timeout() {
    let receiver = bind_udp(addr("127.0.0.1:0"), &opts()).unwrap();
    let mut batch = RecvBatch::new();
    let start = Instant::now();
    assert_eq!(batch.recv(&receiver).unwrap(), 0);
    assert!(batch.is_empty());
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(10), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[test]
fn failed_destination_does_not_lose_the_rest_of_the_batch() {
    let receiver = bind_udp(addr("127.0.0.1:0"), &opts()).unwrap();
    let target = receiver.local_addr().unwrap();
    let sender = bind_udp(addr("127.0.0.1:0"), &opts()).unwrap();
    let mut batch = SendBatch::new();
    assert!(batch.push(target, b"a"));
    assert!(batch.push(addr("127.0.0.1:0"), b"port zero")); // EINVAL
    assert!(batch.push(target, b"b"));
    assert!(batch.push(addr("[::1]:9"), b"IPv6 on an IPv4 socket")); // EAFNOSUPPORT
    assert!(batch.push(target, b"c"));
    assert_eq!(batch.flush(&sender).unwrap(), 3);
    assert_eq!(batch.stats().sent, 3);
    assert_eq!(batch.stats().dropped_rejected, 2);
    assert!(batch.is_empty());
    let got: Vec<Vec<u8>> = recv_n(&receiver, 3).into_iter().map(|r| r.0).collect();
    assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn push_with_writes_in_place() {
    let receiver = bind_udp(addr("127.0.0.1:0"), &opts()).unwrap();
    let sender = bind_udp(addr("127.0.0.5:0"), &opts()).unwrap();
    let mut batch = SendBatch::new();
    assert!(batch.push_with(receiver.local_addr().unwrap(), |buf| {
        assert_eq!(buf.len(), MAX_PACKET_LEN);
        buf[..3].copy_from_slice(b"abc");
        3
    }));
    assert_eq!(batch.flush(&sender).unwrap(), 1);
    assert_eq!(recv_n(&receiver, 1)[0].0, b"abc");
}

#[test]
fn reuseport_sockets_share_a_port() {
    let node = bind_node_sockets(addr("127.0.0.1:0"), 2, &opts()).unwrap();
    assert_eq!(node.sockets.len(), 2);
    for socket in &node.sockets {
        assert_eq!(socket.local_addr().unwrap(), node.local_addr);
    }
    // The kernel picks the socket by a hash of the 4-tuple: many sources, both sockets used.
    // With 64 sources the chance that one socket gets them all is 2 × 2^-64.
    let sources = 64;
    for i in 0..sources {
        let sender = UdpSocket::bind(("127.0.0.6", 0)).unwrap();
        sender.send_to(&[i as u8], node.local_addr).unwrap();
    }
    let mut counts = [0usize; 2];
    let mut batch = RecvBatch::new();
    let start = Instant::now();
    for _ in 0..1000 {
        if counts.iter().sum::<usize>() >= sources || start.elapsed() > DEADLINE {
            break;
        }
        for (count, socket) in counts.iter_mut().zip(&node.sockets) {
            *count += batch.recv(socket).unwrap();
        }
    }
    assert_eq!(counts.iter().sum::<usize>(), sources, "{counts:?}");
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}

#[test]
fn bind_node_sockets_reports_buffers_and_one_socket_is_exclusive() {
    let node = bind_node_sockets(addr("127.0.0.1:0"), 1, &opts()).unwrap();
    assert_eq!(node.sockets.len(), 1);
    assert_eq!(node.buffers, buffer_sizes(&node.sockets[0]).unwrap());
    assert!(node.buffers.recv_bytes > 0 && node.buffers.send_bytes > 0);
    // A lone node socket has no SO_REUSEPORT: nobody can join it, not even with SO_REUSEPORT.
    let joiner = SocketOptions {
        reuse_port: true,
        ..opts()
    };
    let error = bind_udp(node.local_addr, &joiner).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
}

#[test]
fn bind_node_sockets_rejects_bad_counts() {
    for count in [0, dave::net::MAX_NODE_SOCKETS + 1] {
        let error = bind_node_sockets(addr("127.0.0.1:0"), count, &opts()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}

#[test]
fn port_in_use_by_a_plain_socket_is_an_error() {
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let error = bind_udp(taken, &opts()).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    assert!(error.to_string().contains(&taken.to_string()), "{error}");
    let error = bind_node_sockets(taken, 2, &opts()).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    // The wildcard address overlaps 127.0.0.1 on the same port.
    let wildcard = SocketAddr::new("0.0.0.0".parse().unwrap(), taken.port());
    let error = bind_node_sockets(wildcard, 2, &opts()).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
}

#[test]
fn port_in_use_by_another_node_is_an_error() {
    // The first node's sockets all have SO_REUSEPORT, and a second node of the same user would
    // be allowed into that group by the kernel: bind_node_sockets must refuse it.
    let first = bind_node_sockets(addr("127.0.0.1:0"), 2, &opts()).unwrap();
    for count in [1, 2, 3] {
        let error = bind_node_sockets(first.local_addr, count, &opts()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
        assert!(error.to_string().contains("in use"), "{error}");
    }
    // Another address on the same port does not overlap: that is a different endpoint.
    let other = SocketAddr::new("127.0.0.77".parse().unwrap(), first.local_addr.port());
    bind_node_sockets(other, 2, &opts()).unwrap();
}

#[test]
fn datagram_sink_for_a_socket_sends() {
    let receiver = bind_udp(addr("127.0.0.1:0"), &opts()).unwrap();
    let target = receiver.local_addr().unwrap();
    let sender = std::sync::Arc::new(bind_udp(addr("127.0.0.8:0"), &opts()).unwrap());
    let sink: &dyn DatagramSink = &sender;
    sink.send_to(target, b"one");
    let mut batch = SendBatch::new();
    batch.push(target, b"two");
    sink.send_batch(&mut batch);
    assert!(batch.is_empty());
    let got: Vec<Received> = recv_n(&receiver, 2);
    let source = sender.local_addr().unwrap();
    assert_eq!(
        got,
        vec![
            (b"one".to_vec(), source, false),
            (b"two".to_vec(), source, false)
        ]
    );
}

/// Binds `[::1]:0`, or says why the host cannot and returns `None`.
fn ipv6_loopback() -> Option<UdpSocket> {
    match bind_udp(addr("[::1]:0"), &opts()) {
        Ok(socket) => Some(socket),
        Err(e) => {
            eprintln!("skipped: no IPv6 loopback here ({e})");
            None
        }
    }
}

#[test]
fn ipv6_loopback_batch() {
    let (Some(receiver), Some(sender)) = (ipv6_loopback(), ipv6_loopback()) else {
        return;
    };
    let target = receiver.local_addr().unwrap();
    let mut batch = SendBatch::new();
    for seq in 0..5 {
        assert!(batch.push(target, &payload(9, seq)));
    }
    assert_eq!(batch.flush(&sender).unwrap(), 5);
    let got = recv_n(&receiver, 5);
    assert_eq!(got.len(), 5);
    for (seq, (bytes, source, too_long)) in got.into_iter().enumerate() {
        assert_eq!(bytes, payload(9, seq as u8));
        assert_eq!(source, sender.local_addr().unwrap());
        assert!(source.is_ipv6());
        assert!(!too_long);
    }
}

#[test]
fn dual_stack_socket_sees_ipv4_peers_as_ipv4_and_replies_to_them() {
    let node = match bind_node_sockets(addr("[::]:0"), 2, &opts()) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("skipped: no IPv6 here ({e})");
            return;
        }
    };
    let port = node.local_addr.port();
    let peer = bind_udp(addr("127.0.0.9:0"), &opts()).unwrap();
    peer.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    // The kernel picks one of the two sockets; poll both.
    let mut batch = RecvBatch::new();
    let start = Instant::now();
    let mut heard = None;
    for _ in 0..1000 {
        if heard.is_some() || start.elapsed() > DEADLINE {
            break;
        }
        for socket in &node.sockets {
            if batch.recv(socket).unwrap() > 0 {
                let (bytes, source, _) = batch.datagram(0);
                assert_eq!(bytes, b"ping");
                heard = Some((source, socket));
                break;
            }
        }
    }
    let (source, socket) = heard.expect("the IPv4 datagram reached the dual-stack socket");
    assert_eq!(
        source,
        peer.local_addr().unwrap(),
        "IPv4-mapped source given as IPv4"
    );
    // Reply through the IPv6 socket to the IPv4 address.
    let mut reply = SendBatch::new();
    reply.push(source, b"pong");
    assert_eq!(reply.flush(socket).unwrap(), 1);
    let got = recv_n(&peer, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, b"pong");
    assert_eq!(got[0].1.port(), port);
}

/// Payload of `seq` for the segmentation tests: its first bytes say which it is, its length is
/// one of a few, so that runs of one length to one destination form.
fn segment_payload(seq: u8, len: usize) -> Vec<u8> {
    let mut bytes = vec![seq.wrapping_mul(31); len];
    if len > 0 {
        bytes[0] = seq;
    }
    bytes
}

/// Pushes 32 datagrams to `a` and `b` in three lengths (and one empty one) and returns, per
/// destination, what was pushed to it, in push order.
fn push_mixed(batch: &mut SendBatch, a: SocketAddr, b: SocketAddr) -> [Vec<Vec<u8>>; 2] {
    let mut pushed = [Vec::new(), Vec::new()];
    for seq in 0..BATCH as u8 {
        let to_b = seq % 3 == 0;
        let len = match seq {
            31 => 0,
            _ if seq % 4 == 0 => 100,
            _ if seq % 5 == 0 => MAX_PACKET_LEN,
            _ => 300,
        };
        let bytes = segment_payload(seq, len);
        assert!(batch.push(if to_b { b } else { a }, &bytes));
        pushed[usize::from(to_b)].push(bytes);
    }
    pushed
}

/// Datagrams of one length to one destination, in the order given.
fn by_length(datagrams: &[Vec<u8>]) -> HashMap<usize, Vec<Vec<u8>>> {
    let mut runs: HashMap<usize, Vec<Vec<u8>>> = HashMap::new();
    for d in datagrams {
        runs.entry(d.len()).or_default().push(d.clone());
    }
    runs
}

#[test]
fn runs_to_one_destination_leave_segmented_and_arrive_as_pushed() {
    let a = bind_udp(addr("127.0.0.1:0"), &opts()).unwrap();
    let b = bind_udp(addr("127.0.0.2:0"), &opts()).unwrap();
    let sender = bind_udp(addr("127.0.0.7:0"), &opts()).unwrap();
    for segmentation in [true, false] {
        let mut batch = SendBatch::new();
        batch.set_segmentation(segmentation);
        let pushed = push_mixed(&mut batch, a.local_addr().unwrap(), b.local_addr().unwrap());
        assert_eq!(batch.flush(&sender).unwrap(), BATCH);
        let stats = *batch.stats();
        assert_eq!(stats.sent, BATCH as u64);
        assert_eq!(stats.dropped(), 0);
        assert_eq!(stats.segmentation_refused, 0);
        // Every run of two or more of one length to one destination went segmented; the
        // empty datagram and lone lengths did not.
        let runs: Vec<usize> = pushed
            .iter()
            .flat_map(|to| by_length(to).into_iter())
            .filter(|(len, run)| *len > 0 && run.len() > 1)
            .map(|(_, run)| run.len())
            .collect();
        let expected = if segmentation {
            runs.iter().sum::<usize>()
        } else {
            0
        };
        assert!(
            !segmentation || expected >= 28,
            "the test's runs are long: {runs:?}"
        );
        assert_eq!(stats.sent_segmented, expected as u64);
        for (socket, pushed) in [&a, &b].into_iter().zip(&pushed) {
            let got: Vec<Vec<u8>> = recv_n(socket, pushed.len())
                .into_iter()
                .map(|r| r.0)
                .collect();
            // The same datagrams, none merged or cut, in push order within each length.
            assert_eq!(got.len(), pushed.len());
            assert_eq!(by_length(&got), by_length(pushed));
        }
    }
}

/// Receives on `socket` with a coalescing batch until `want` datagrams arrived or `DEADLINE`
/// passed; also how many of them came in coalesced runs.
fn recv_n_coalescing(socket: &UdpSocket, want: usize) -> (Vec<Received>, usize) {
    let mut batch = RecvBatch::coalescing();
    let mut got = Vec::new();
    let mut coalesced = 0;
    let start = Instant::now();
    // Bounded twice: by the deadline, and by the number of calls (each waits up to 20 ms).
    for _ in 0..1000 {
        if got.len() >= want || start.elapsed() > DEADLINE {
            break;
        }
        let n = batch.recv(socket).unwrap();
        assert_eq!(n, batch.len());
        coalesced += batch.coalesced();
        got.extend(batch.iter().map(|(b, s, t)| (b.to_vec(), s, t)));
    }
    (got, coalesced)
}

#[test]
fn segmented_runs_reach_a_coalescing_socket_whole_and_are_read_as_pushed() {
    let a = bind_udp(addr("127.0.0.1:0"), &opts()).unwrap();
    let b = bind_udp(addr("127.0.0.2:0"), &opts()).unwrap();
    set_receive_coalescing(&a, true).unwrap();
    set_receive_coalescing(&b, true).unwrap();
    let sender = bind_udp(addr("127.0.0.8:0"), &opts()).unwrap();
    let from = sender.local_addr().unwrap();
    for segmentation in [true, false] {
        let mut batch = SendBatch::new();
        batch.set_segmentation(segmentation);
        let pushed = push_mixed(&mut batch, a.local_addr().unwrap(), b.local_addr().unwrap());
        assert_eq!(batch.flush(&sender).unwrap(), BATCH);
        let sent_segmented = batch.stats().sent_segmented;
        assert_eq!(sent_segmented > 0, segmentation);
        let mut coalesced_total = 0;
        for (socket, pushed) in [&a, &b].into_iter().zip(&pushed) {
            let (got, coalesced) = recv_n_coalescing(socket, pushed.len());
            coalesced_total += coalesced;
            // Each datagram as pushed, none merged or cut, from the sender, none too long (the
            // runs of MAX_PACKET_LEN-byte datagrams included), in push order within a length.
            assert_eq!(got.len(), pushed.len());
            assert!(
                got.iter()
                    .all(|(_, source, too_long)| *source == from && !too_long)
            );
            let bytes: Vec<Vec<u8>> = got.into_iter().map(|r| r.0).collect();
            assert_eq!(by_length(&bytes), by_length(pushed));
        }
        // Loopback hands a segmented send to a socket with UDP GRO on as one coalesced run:
        // every datagram that left segmented came back in one; none of the others did.
        assert_eq!(coalesced_total as u64, sent_segmented);
    }
}

#[test]
fn a_coalescing_batch_flags_what_is_too_long_alone_or_in_a_run() {
    let socket = bind_udp(addr("127.0.0.3:0"), &opts()).unwrap();
    set_receive_coalescing(&socket, true).unwrap();
    let to = socket.local_addr().unwrap();
    let plain = bind_udp(addr("127.0.0.9:0"), &opts()).unwrap();
    // Alone: one byte over the limit, then a valid one.
    plain.send_to(&vec![7u8; MAX_PACKET_LEN + 1], to).unwrap();
    plain.send_to(&[1, 2, 3], to).unwrap();
    // A run whose segments are one byte over the limit: three too-long datagrams (the last
    // shorter, as a run's last may be), none of them valid.
    let segmented = bind_udp(addr("127.0.0.10:0"), &opts()).unwrap();
    set_udp_segment(&segmented, (MAX_PACKET_LEN + 1) as u16).unwrap();
    segmented
        .send_to(&vec![9u8; 2 * (MAX_PACKET_LEN + 1) + 1_400], to)
        .unwrap();
    let (got, coalesced) = recv_n_coalescing(&socket, 5);
    let seen: Vec<(usize, bool)> = got.iter().map(|(b, _, t)| (b.len(), *t)).collect();
    assert_eq!(
        seen,
        [
            (MAX_PACKET_LEN + 1, true),
            (3, false),
            (MAX_PACKET_LEN + 1, true),
            (MAX_PACKET_LEN + 1, true),
            (1_400, false),
        ]
    );
    assert_eq!(coalesced, 3);
}

#[test]
fn ipv6_segmented_runs_reach_a_coalescing_socket_whole() {
    let (Some(receiver), Some(sender)) = (ipv6_loopback(), ipv6_loopback()) else {
        return;
    };
    set_receive_coalescing(&receiver, true).unwrap();
    let target = receiver.local_addr().unwrap();
    let mut batch = SendBatch::new();
    batch.set_segmentation(true);
    let pushed: Vec<Vec<u8>> = (0..BATCH as u8)
        .map(|seq| segment_payload(seq, 500))
        .collect();
    for bytes in &pushed {
        assert!(batch.push(target, bytes));
    }
    assert_eq!(batch.flush(&sender).unwrap(), BATCH);
    assert_eq!(batch.stats().sent_segmented, BATCH as u64);
    let (got, coalesced) = recv_n_coalescing(&receiver, BATCH);
    assert_eq!(coalesced, BATCH, "one run, read whole");
    let from = sender.local_addr().unwrap();
    assert!(
        got.iter()
            .all(|(_, source, too_long)| *source == from && !too_long)
    );
    let bytes: Vec<Vec<u8>> = got.into_iter().map(|r| r.0).collect();
    assert_eq!(bytes, pushed, "in push order");
}

#[test]
fn a_dual_stack_coalescing_socket_takes_ipv4_runs_whole_from_an_ipv4_source() {
    let node = match bind_node_sockets(addr("[::]:0"), 1, &opts()) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("skipped: no IPv6 here ({e})");
            return;
        }
    };
    let socket = &node.sockets[0];
    set_receive_coalescing(socket, true).unwrap();
    let sender = bind_udp(addr("127.0.0.11:0"), &opts()).unwrap();
    let to: SocketAddr = SocketAddr::from(([127, 0, 0, 1], node.local_addr.port()));
    let mut batch = SendBatch::new();
    batch.set_segmentation(true);
    let pushed: Vec<Vec<u8>> = (0..8u8).map(|seq| segment_payload(seq, 200)).collect();
    for bytes in &pushed {
        assert!(batch.push(to, bytes));
    }
    assert_eq!(batch.flush(&sender).unwrap(), pushed.len());
    let (got, coalesced) = recv_n_coalescing(socket, pushed.len());
    assert_eq!(coalesced, pushed.len(), "one run, read whole");
    let from = sender.local_addr().unwrap();
    assert!(
        got.iter().all(|(_, source, _)| *source == from),
        "IPv4-mapped source given as IPv4 for every datagram of the run"
    );
    let bytes: Vec<Vec<u8>> = got.into_iter().map(|r| r.0).collect();
    assert_eq!(bytes, pushed);
}
