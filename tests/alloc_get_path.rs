//! No allocation per packet on the GET path, shown with a counting global allocator.
//!
//! Two views of the same path, because each is robust where the other is not:
//!
//! 1. `receiver_get_path_allocates_nothing_per_packet`: the receiver's work for a GET, done on
//!    the test thread with real sockets: `RecvBatch::recv` → `Message::parse` → `shard_index` →
//!    `answer_get` (read lock on the shard's store) into a reused `Outbox` → `SendBatch` →
//!    `sendmmsg`. Only allocations made *by this thread* are counted, so nothing else running
//!    in the test binary can disturb the count: after warm-up it must be exactly zero, whatever
//!    the number of packets.
//! 2. `node_get_burst_allocations_do_not_grow_with_packets`: a real `Node` in this process,
//!    answered over loopback. Every thread is counted (receivers, owners, the peer thread's ticks),
//!    so the assertion is a ratio: a burst of GETs may see the few allocations that timers make,
//!    but not one per packet. Its replies at 16 in flight go out segmented (UDP GSO), and still
//!    arrive one GET_ACK per datagram.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dave::net::{RecvBatch, SendBatch};
use dave::outbox::Outbox;
use dave::shard::core::answer_get;
use dave::shard::{Store, StoreConfig, shard_index};
use dave::stats::Counters;
use dave::wire::{DatFields, GetRepr, Message};
use dave::{Config, Node};

/// Counts allocations: per thread (when the thread turned counting on) and process-wide
/// (when the global switch is on).
struct CountingAlloc;

thread_local! {
    static THREAD_COUNTING: Cell<bool> = const { Cell::new(false) };
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
}
static GLOBAL_COUNTING: AtomicBool = AtomicBool::new(false);
static GLOBAL_ALLOCS: AtomicU64 = AtomicU64::new(0);

impl CountingAlloc {
    fn count() {
        // `try_with`: during thread teardown the thread-locals may be gone; then skip.
        let _ = THREAD_COUNTING.try_with(|on| {
            if on.get() {
                let _ = THREAD_ALLOCS.try_with(|n| n.set(n.get() + 1));
            }
        });
        if GLOBAL_COUNTING.load(Ordering::Relaxed) {
            GLOBAL_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged;
// the counting touches only const-initialised thread-locals (no allocation, no destructor) and
// atomics, so it cannot recurse into the allocator or break its contract.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count();
        // SAFETY: as above; `ptr` came from this allocator, which is `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Allocations made by this thread while `f` runs.
fn thread_allocs_during(f: impl FnOnce()) -> u64 {
    THREAD_ALLOCS.with(|n| n.set(0));
    THREAD_COUNTING.with(|on| on.set(true));
    f();
    THREAD_COUNTING.with(|on| on.set(false));
    THREAD_ALLOCS.with(|n| n.get())
}

/// A record for owner `o`, key `i` (no proof of work: the store does not verify).
fn record(i: u32) -> dave::shard::core::Record {
    let mut pubkey = [0u8; 32];
    pubkey[..4].copy_from_slice(&i.to_le_bytes());
    let mut work = [0u8; 32];
    work[..4].copy_from_slice(&i.to_le_bytes());
    DatFields {
        time_ms: dave::time::unix_now_ms() - 1_000,
        salt: [0; 16],
        work,
        sig: [1; 64],
        pubkey,
        key: &i.to_le_bytes(),
        value: b"vv",
    }
    .to_dat()
}

fn get_datagram(i: u32) -> Vec<u8> {
    let dat = record(i);
    let get = Message::Get(GetRepr {
        pubkey: dat.pubkey(),
        key: dat.key(),
    });
    let mut buf = vec![0u8; get.buffer_len()];
    get.emit(&mut buf);
    buf
}

const KEYS: u32 = 64;

#[test]
fn receiver_get_path_allocates_nothing_per_packet() {
    // One store per shard, as the node has, holding KEYS records.
    let config = StoreConfig {
        capacity_bytes: 1 << 20,
        ttl_ms: 365 * 24 * 3_600 * 1_000,
        node_id: 7,
    };
    let stores: Vec<parking_lot::RwLock<Store>> = (0..dave::shard::SHARD_COUNT)
        .map(|_| parking_lot::RwLock::new(Store::new(config)))
        .collect();
    let now = dave::time::unix_now_ms();
    for i in 0..KEYS {
        let dat = record(i);
        let shard = shard_index(dat.pubkey(), dat.key());
        stores[shard].write().insert(dat, now).expect("insert");
    }
    let gets: Vec<Vec<u8>> = (0..KEYS).map(get_datagram).collect();

    let node = UdpSocket::bind("127.0.0.1:0").expect("node socket");
    node.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let client = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    client.set_nonblocking(true).expect("nonblocking");
    let node_addr = node.local_addr().expect("addr");

    let counters = Counters::default();
    let mut recv = RecvBatch::new();
    let mut outbox = Outbox::new();
    let mut send = SendBatch::new();
    send.set_segmentation(true); // as the node's receivers send (Config::udp_segmentation)
    let mut drain = [0u8; 2048];

    // One round: the client sends a batch of GETs; the "receiver" takes them with recvmmsg,
    // parses, answers from the store into the outbox, and sends the answers with sendmmsg.
    let mut round = |n: usize| {
        let mut answered = 0;
        let mut next = 0usize;
        while answered < n {
            let burst = (n - answered).min(16);
            for _ in 0..burst {
                client
                    .send_to(&gets[next % gets.len()], node_addr)
                    .expect("send");
                next += 1;
            }
            let mut got = 0;
            while got < burst {
                let k = recv.recv(&node).expect("recv");
                assert!(k > 0, "datagrams lost on loopback");
                for (bytes, from, _) in recv.iter() {
                    let Ok(Message::Get(get)) = Message::parse(bytes) else {
                        panic!("not a GET");
                    };
                    let shard = shard_index(get.pubkey, get.key);
                    answer_get(&stores[shard].read(), from, &get, &counters, &mut outbox);
                }
                got += k;
            }
            for (to, bytes) in outbox.iter() {
                if !send.push(to, bytes) {
                    send.flush(&node).expect("flush");
                    send.push(to, bytes);
                }
            }
            send.flush(&node).expect("flush");
            outbox.clear();
            // The client drains its answers (recv_from allocates nothing).
            let mut drained = 0;
            let deadline = Instant::now() + Duration::from_secs(2);
            while drained < burst && Instant::now() < deadline {
                if client.recv_from(&mut drain).is_ok() {
                    drained += 1;
                }
            }
            answered += burst;
        }
    };

    round(256); // warm-up: buffers and the outbox reach their working size
    let small = thread_allocs_during(|| round(1_000));
    let large = thread_allocs_during(|| round(10_000));
    eprintln!("receiver GET path: {small} allocations for 1000 GETs, {large} for 10000");
    assert_eq!(small, 0, "the GET path allocated");
    assert_eq!(large, 0, "the GET path allocated");
    let found = counters.gets_found.load(Ordering::Relaxed);
    assert_eq!(found, 256 + 1_000 + 10_000, "every GET found its record");
}

/// Sends `n` GETs with up to `window` in flight and waits for each answer; allocation-free
/// on the client side (fixed buffers, `send_to`/`recv_from`).
fn get_burst(
    client: &UdpSocket,
    node: SocketAddr,
    gets: &[Vec<u8>],
    n: usize,
    window: usize,
) -> usize {
    let mut buf = [0u8; 2048];
    let mut sent = 0;
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered < n && Instant::now() < deadline {
        while sent < n && sent - answered < window {
            client
                .send_to(&gets[sent % gets.len()], node)
                .expect("send");
            sent += 1;
        }
        match client.recv_from(&mut buf) {
            Ok((len, _)) => {
                assert_eq!(buf[0], 4, "a GET_ACK");
                assert!(len > 158, "a record, not a not-found answer");
                answered += 1;
            }
            Err(_) => {
                // A lost datagram (loopback under load): resend the window.
                sent = answered;
            }
        }
    }
    answered
}

#[test]
fn node_get_burst_allocations_do_not_grow_with_packets() {
    let config = Config {
        listen_addr: SocketAddr::from(([127, 0, 0, 61], 0)),
        receiver_threads: 1,
        shard_owner_threads: 2,
        pow_threads: 1,
        pin_cores: false,
        // The client is a stranger: lift the amplification budget so every GET is answered
        // (the limiter still runs on each reply, so its bookkeeping is counted too).
        amplification_prefix_burst_bytes: 1 << 40,
        amplification_prefix_refill_bytes_per_s: 1 << 40,
        amplification_global_burst_bytes: 1 << 40,
        amplification_global_refill_bytes_per_s: 1 << 40,
        ..Config::default()
    };
    let node = Node::start(config).expect("node starts");
    for i in 0..KEYS {
        node.put_dat(record(i)).expect("put");
    }
    let gets: Vec<Vec<u8>> = (0..KEYS).map(get_datagram).collect();
    let client = UdpSocket::bind("127.0.0.62:0").expect("client");
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let addr = node.local_addr();

    assert_eq!(
        get_burst(&client, addr, &gets, 2_000, 8),
        2_000,
        "warm-up answered"
    );
    for (n, window) in [(20_000usize, 1usize), (20_000, 16)] {
        GLOBAL_ALLOCS.store(0, Ordering::SeqCst);
        GLOBAL_COUNTING.store(true, Ordering::SeqCst);
        let started = Instant::now();
        let answered = get_burst(&client, addr, &gets, n, window);
        GLOBAL_COUNTING.store(false, Ordering::SeqCst);
        let allocs = GLOBAL_ALLOCS.load(Ordering::SeqCst);
        let elapsed = started.elapsed();
        assert_eq!(answered, n, "every GET answered");
        eprintln!(
            "node GET burst: {n} GETs ({window} in flight) in {elapsed:?}: {allocs} allocations in the whole process ({:.4} per GET)",
            allocs as f64 / n as f64
        );
        // Timers (peer ticks every 100 ms, shard ticks every second) allocate a little whatever
        // the traffic; one allocation per packet, or per receive batch, would be >= 1 per GET
        // at one in flight.
        assert!(
            (allocs as f64) < 0.02 * n as f64,
            "{allocs} allocations for {n} GETs: the GET path allocates per packet"
        );
    }
    // With 16 in flight from one address, the receiver finds several GETs in a batch and
    // answers them in segmented sends (`Config::udp_segmentation`, on by default): the client
    // above got every one of those answers as its own datagram, each checked to be a GET_ACK
    // with a record.
    let stats = node.stats();
    eprintln!(
        "replies sent segmented: {} of {}",
        stats.packets_sent_segmented, stats.packets_sent
    );
    assert!(stats.packets_sent_segmented > 0, "no reply was segmented");
    assert_eq!(stats.send_segmentation_refused, 0);
}
