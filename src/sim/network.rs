//! The virtual network: addresses, per-link delay with jitter, loss, duplication, reordering and
//! partitions, the event queue with its virtual clock, and the trace hash.
//!
//! Models: TigerBeetle's `packet_simulator.zig` (seeded loss, delay, replay, partitions) and
//! smoltcp's `fault_injector.rs`. Every decision draws from one seeded `StdRng` in the order the
//! datagrams are sent, and the queue orders events by `(time, seq)`, so a run is a pure function
//! of its seed: the trace hash over every delivered datagram `(time, from, to, bytes)` is the
//! same on every machine.
//!
//! ```text
//!  send(now, from, to, bytes) ──lost? (loss, partition)──► counted, gone
//!        │ delay = link base (fixed per pair) + jitter (+ reorder hold-back)
//!        ▼
//!  queue: BinaryHeap<(time, seq)> ──pop──► deliver: trace ← xxh64(time ‖ from ‖ to ‖ bytes)
//!        └─ duplicate? a second copy with its own delay
//! ```

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand::Rng;
use rand::rngs::StdRng;
use xxhash_rust::xxh64::{Xxh64, xxh64};

use crate::sim::options::{MAX_SIM_NODES, NetworkOptions, PartitionOptions};

/// UDP port of every simulated node.
pub const SIM_PORT: u16 = 1618;

/// Datagrams in flight at once; beyond it new ones are dropped and counted (a congested
/// network), so a run that goes wrong cannot exhaust memory. 4M datagrams of ~200 bytes is about
/// 1 GiB; a healthy 1000-node run has a few thousand in flight.
pub const MAX_IN_FLIGHT_DATAGRAMS: usize = 4 << 20;

/// The address of node slot `slot`: `10.b.c.d:1618` with `b.c` the low 16 bits and `d - 1` the
/// rest, so every node has its own /24 (the peer table's per-prefix limit never binds honest
/// nodes).
pub fn addr_of(slot: usize) -> SocketAddr {
    debug_assert!(slot < MAX_SIM_NODES);
    let b = ((slot >> 8) & 0xff) as u8;
    let c = (slot & 0xff) as u8;
    let d = 1 + (slot >> 16) as u8;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, b, c, d)), SIM_PORT)
}

/// The slot an address belongs to, if it is a node address at all (anything else is a black
/// hole: datagrams to it are dropped as "to nowhere").
pub fn slot_of(addr: SocketAddr) -> Option<usize> {
    let addr = crate::wire::normalize_addr(addr);
    if addr.port() != SIM_PORT {
        return None;
    }
    let IpAddr::V4(v4) = addr.ip() else {
        return None;
    };
    let [a, b, c, d] = v4.octets();
    if a != 10 || d == 0 {
        return None;
    }
    let slot = (((d - 1) as usize) << 16) | ((b as usize) << 8) | c as usize;
    (slot < MAX_SIM_NODES).then_some(slot)
}

/// A scheduled happening. Ordered by `(time_ms, seq)` only: `seq` is unique and increasing, so
/// events at the same millisecond run in the order they were scheduled.
#[derive(Debug)]
pub struct Event<K> {
    /// Virtual time it happens.
    pub time_ms: u64,
    /// Tie-breaker: scheduling order.
    pub seq: u64,
    /// What happens.
    pub kind: K,
}

impl<K> PartialEq for Event<K> {
    fn eq(&self, other: &Self) -> bool {
        self.time_ms == other.time_ms && self.seq == other.seq
    }
}

impl<K> Eq for Event<K> {}

impl<K> PartialOrd for Event<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Event<K> {
    /// Reversed, so `BinaryHeap` (a max-heap) pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time_ms, other.seq).cmp(&(self.time_ms, self.seq))
    }
}

/// The virtual clock: events in time order; `now` jumps to each event as it is popped.
#[derive(Debug)]
pub struct EventQueue<K> {
    heap: BinaryHeap<Event<K>>,
    seq: u64,
    now_ms: u64,
}

impl<K> Default for EventQueue<K> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
            now_ms: 0,
        }
    }
}

impl<K> EventQueue<K> {
    /// Schedules `kind` at `time_ms` (never before now: the past is now).
    pub fn schedule(&mut self, time_ms: u64, kind: K) {
        let time_ms = time_ms.max(self.now_ms);
        self.heap.push(Event {
            time_ms,
            seq: self.seq,
            kind,
        });
        self.seq += 1;
    }

    /// The next event if it is due at or before `until_ms`; advances the clock to it.
    pub fn pop_until(&mut self, until_ms: u64) -> Option<Event<K>> {
        if self.heap.peek()?.time_ms > until_ms {
            return None;
        }
        let event = self.heap.pop()?;
        debug_assert!(event.time_ms >= self.now_ms, "time never runs backwards");
        self.now_ms = event.time_ms;
        Some(event)
    }

    /// The current virtual time.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// No event waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Events scheduled so far.
    pub fn scheduled(&self) -> u64 {
        self.seq
    }
}

/// What became of the datagrams sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetStats {
    /// Datagrams handed to the network.
    pub sent: u64,
    /// Bytes handed to the network.
    pub sent_bytes: u64,
    /// Datagrams delivered to a live node (duplicates included).
    pub delivered: u64,
    /// Lost at random (`loss`).
    pub lost: u64,
    /// Lost crossing a partition.
    pub lost_partition: u64,
    /// Extra copies made (`duplicate`).
    pub duplicated: u64,
    /// Held back to be overtaken (`reorder`).
    pub reordered: u64,
    /// Addressed to no node (a black hole) or to a node that is down when it arrives.
    pub to_nowhere: u64,
    /// Dropped because `MAX_IN_FLIGHT_DATAGRAMS` were in flight.
    pub congested: u64,
}

/// A partition in force.
#[derive(Debug, Clone, Copy)]
struct ActivePartition {
    /// Index in the options' list (salts the side assignment).
    index: usize,
    fraction_b: f64,
    loss: f64,
}

/// Links, partitions and the trace. See the module docs.
pub struct Network {
    options: NetworkOptions,
    /// Salts the per-link base delays and partition sides.
    seed: u64,
    rng: StdRng,
    partition: Option<ActivePartition>,
    stats: NetStats,
    trace: Xxh64,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("options", &self.options)
            .field("partition", &self.partition)
            .field("stats", &self.stats)
            .field("trace_hash", &self.trace_hash())
            .finish()
    }
}

impl Network {
    /// A network with these link parameters; `seed` fixes link delays and partition sides,
    /// `rng` draws per-datagram fates.
    pub fn new(options: NetworkOptions, seed: u64, rng: StdRng) -> Network {
        Network {
            options,
            seed,
            rng,
            partition: None,
            stats: NetStats::default(),
            trace: Xxh64::new(0),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// The trace hash so far: xxh64 over every delivered datagram's `(time, from, to, bytes)`.
    pub fn trace_hash(&self) -> u64 {
        self.trace.digest()
    }

    /// Starts partition `index` (replacing any other).
    pub fn start_partition(&mut self, index: usize, p: &PartitionOptions) {
        self.partition = Some(ActivePartition {
            index,
            fraction_b: p.fraction_b,
            loss: p.loss,
        });
    }

    /// Heals partition `index` (if it is the one in force).
    pub fn end_partition(&mut self, index: usize) {
        if self.partition.is_some_and(|p| p.index == index) {
            self.partition = None;
        }
    }

    /// Whether a partition is in force.
    pub fn partitioned(&self) -> bool {
        self.partition.is_some()
    }

    /// Which side of partition `index` a slot is on (true: side B).
    pub fn side_b(&self, index: usize, fraction_b: f64, slot: usize) -> bool {
        let h = xxh64(
            &(slot as u64).to_le_bytes(),
            self.seed ^ 0x5157 ^ index as u64,
        );
        (h as f64 / u64::MAX as f64) < fraction_b
    }

    /// Fixed one-way base delay of the link between two slots (symmetric).
    pub fn link_delay_ms(&self, a: usize, b: usize) -> u64 {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&(lo as u64).to_le_bytes());
        key[8..].copy_from_slice(&(hi as u64).to_le_bytes());
        let span = self.options.delay_max_ms - self.options.delay_min_ms + 1;
        self.options.delay_min_ms + xxh64(&key, self.seed) % span
    }

    /// Decides a datagram's fate: arrival times of 0, 1 or 2 copies. `to` is `None` for an
    /// address no node can have (counted as "to nowhere", no randomness drawn).
    pub fn send(
        &mut self,
        now_ms: u64,
        from: usize,
        to: Option<usize>,
        len: usize,
        in_flight: usize,
    ) -> [Option<u64>; 2] {
        self.stats.sent += 1;
        self.stats.sent_bytes += len as u64;
        let Some(to) = to else {
            self.stats.to_nowhere += 1;
            return [None, None];
        };
        if in_flight >= MAX_IN_FLIGHT_DATAGRAMS {
            self.stats.congested += 1;
            return [None, None];
        }
        if let Some(p) = self.partition
            && self.side_b(p.index, p.fraction_b, from) != self.side_b(p.index, p.fraction_b, to)
            && self.rng.gen_bool(p.loss)
        {
            self.stats.lost_partition += 1;
            return [None, None];
        }
        if self.options.loss > 0.0 && self.rng.gen_bool(self.options.loss) {
            self.stats.lost += 1;
            return [None, None];
        }
        let first = Some(now_ms + self.delay_ms(from, to));
        let second = if self.options.duplicate > 0.0 && self.rng.gen_bool(self.options.duplicate) {
            self.stats.duplicated += 1;
            Some(now_ms + self.delay_ms(from, to))
        } else {
            None
        };
        [first, second]
    }

    fn delay_ms(&mut self, from: usize, to: usize) -> u64 {
        let mut delay = self.link_delay_ms(from, to);
        if self.options.jitter_ms > 0 {
            delay += self.rng.gen_range(0..=self.options.jitter_ms);
        }
        if self.options.reorder > 0.0 && self.rng.gen_bool(self.options.reorder) {
            self.stats.reordered += 1;
            delay += self.options.reorder_delay_ms;
        }
        delay.max(1)
    }

    /// Records a delivery in the trace (call once per datagram handed to a live node).
    pub fn record_delivery(
        &mut self,
        time_ms: u64,
        from: SocketAddr,
        to: SocketAddr,
        bytes: &[u8],
    ) {
        self.stats.delivered += 1;
        self.trace.update(&time_ms.to_le_bytes());
        self.trace.update(&crate::wire::addr_to_wire(from));
        self.trace.update(&crate::wire::addr_to_wire(to));
        self.trace.update(&(bytes.len() as u32).to_le_bytes());
        self.trace.update(bytes);
    }

    /// Counts a datagram that arrived at a node that is down.
    pub fn count_to_nowhere(&mut self) {
        self.stats.to_nowhere += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn addresses_round_trip_and_strangers_are_black_holes() {
        for slot in [0, 1, 255, 256, 65_535] {
            assert_eq!(slot_of(addr_of(slot)), Some(slot));
        }
        assert_eq!(slot_of("172.16.0.1:1618".parse().unwrap()), None);
        assert_eq!(slot_of("10.0.0.1:1619".parse().unwrap()), None);
        assert_eq!(slot_of("10.0.0.0:1618".parse().unwrap()), None);
        assert_eq!(slot_of("[::ffff:10.0.1.1]:1618".parse().unwrap()), Some(1));
        // One node per /24.
        assert_ne!(addr_of(1).ip(), addr_of(2).ip());
    }

    #[test]
    fn queue_pops_in_time_then_schedule_order() {
        let mut q = EventQueue::default();
        q.schedule(5, "b");
        q.schedule(3, "a");
        q.schedule(5, "c");
        q.schedule(9, "d");
        let order: Vec<_> = std::iter::from_fn(|| q.pop_until(8))
            .map(|e| e.kind)
            .collect();
        assert_eq!(order, vec!["a", "b", "c"]);
        assert_eq!(q.now_ms(), 5);
        assert_eq!(q.len(), 1);
        // The past is now.
        q.schedule(1, "e");
        assert_eq!(
            q.pop_until(100).map(|e| (e.time_ms, e.kind)),
            Some((5, "e"))
        );
    }

    #[test]
    fn links_are_symmetric_within_bounds_and_loss_is_seeded() {
        let options = NetworkOptions {
            loss: 0.5,
            ..NetworkOptions::default()
        };
        let run = |seed| {
            let mut net = Network::new(options, 7, StdRng::seed_from_u64(seed));
            (0..200)
                .map(|i| net.send(0, i % 10, Some(i % 7), 10, 0)[0])
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let lost = run(1).iter().filter(|t| t.is_none()).count();
        assert!((60..140).contains(&lost), "lost {lost}");
        let net = Network::new(options, 7, StdRng::seed_from_u64(1));
        for (a, b) in [(0, 1), (3, 9), (100, 2)] {
            let d = net.link_delay_ms(a, b);
            assert_eq!(d, net.link_delay_ms(b, a));
            assert!((options.delay_min_ms..=options.delay_max_ms).contains(&d));
        }
    }

    #[test]
    fn a_clean_partition_cuts_only_across() {
        let mut net = Network::new(NetworkOptions::default(), 3, StdRng::seed_from_u64(1));
        let p = PartitionOptions {
            start_ms: 0,
            end_ms: 10,
            fraction_b: 0.5,
            loss: 1.0,
        };
        net.start_partition(0, &p);
        let a = (0..100).find(|&s| !net.side_b(0, 0.5, s)).unwrap();
        let b = (0..100).find(|&s| net.side_b(0, 0.5, s)).unwrap();
        let a2 = (a + 1..200).find(|&s| !net.side_b(0, 0.5, s)).unwrap();
        assert_eq!(net.send(0, a, Some(b), 1, 0), [None, None]);
        assert!(net.send(0, a, Some(a2), 1, 0)[0].is_some());
        net.end_partition(0);
        assert!(net.send(0, a, Some(b), 1, 0)[0].is_some());
        assert_eq!(net.stats().lost_partition, 1);
    }
}
