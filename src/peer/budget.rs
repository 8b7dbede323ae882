//! Byte budgets: token buckets, the amplification limiter for replies to unproven addresses, and
//! the set of proven addresses that tells the two apart.
//!
//! # Amplification (PROTOCOL.md §6, "Amplification")
//!
//! A UDP source address proves nothing: anyone can send a 1-byte GETMYADDRPORT or a 9-byte PING
//! "from" a victim and make us send 19 or up to 212 bytes to it, or a 35-byte GET and make us
//! send up to 1424. The v1 handshake itself amplifies, so a byte ratio would break handshakes with
//! reference nodes. Instead:
//!
//! - An address is **proven** once it answered our PING with a valid PONG (it demonstrably
//!   receives what we send). Bytes to proven addresses are never limited.
//! - Every byte to an unproven address draws on the token bucket of its **prefix** (the address
//!   itself for loopback, its /24 for IPv4, its /48 for IPv6) *and* on one **global** bucket. A
//!   send that either bucket cannot cover is withheld (and counted), and takes nothing from the
//!   other.
//! - The prefix map is bounded ([`AmplificationConfig::max_prefixes`]). Idle entries (a refilled
//!   bucket is the same as no entry) are swept when the map is full, at most once per
//!   [`SWEEP_INTERVAL_MS`]; if it is still full, sends to new prefixes are refused rather than
//!   grow the map.
//!
//! So over any window of `T` seconds, the bytes we send toward one unproven prefix are at most
//! `prefix_burst_bytes + prefix_refill_bytes_per_s × T`, and toward all unproven addresses
//! together at most `global_burst_bytes + global_refill_bytes_per_s × T`, whatever arrives.
//!
//! The limiter is I/O-free (time is an argument) and shared between threads behind a
//! `parking_lot::Mutex`: only replies to unproven addresses take the lock.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::peer::IpPrefix;
use crate::wire::normalize_addr;

/// A token bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketConfig {
    /// Most bytes available at once (a full bucket).
    pub burst_bytes: u64,
    /// Bytes added per second, up to `burst_bytes`.
    pub refill_bytes_per_s: u64,
}

/// Milli-bytes per byte: a bucket counts in thousandths of a byte so a refill rate in bytes per
/// second adds exactly `rate` milli-bytes per millisecond, without rounding.
const MILLI: u64 = 1000;

/// A token bucket whose shape is kept by its owner (so a map of them stays small: 16 bytes
/// each). Time never runs backwards inside a bucket: an earlier `now_ms` counts as no time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    milli_tokens: u64,
    updated_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn full(config: &BucketConfig, now_ms: u64) -> TokenBucket {
        TokenBucket {
            milli_tokens: config.burst_bytes.saturating_mul(MILLI),
            updated_ms: now_ms,
        }
    }

    fn refill(&mut self, config: &BucketConfig, now_ms: u64) {
        let elapsed_ms = now_ms.saturating_sub(self.updated_ms);
        self.updated_ms = self.updated_ms.max(now_ms);
        let cap = config.burst_bytes.saturating_mul(MILLI);
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(elapsed_ms.saturating_mul(config.refill_bytes_per_s))
            .min(cap);
    }

    /// Whole bytes available at `now_ms`.
    pub fn available(&mut self, config: &BucketConfig, now_ms: u64) -> u64 {
        self.refill(config, now_ms);
        self.milli_tokens / MILLI
    }

    /// Takes `bytes` if available; otherwise takes nothing and returns false.
    pub fn try_take(&mut self, config: &BucketConfig, now_ms: u64, bytes: u64) -> bool {
        self.refill(config, now_ms);
        let want = bytes.saturating_mul(MILLI);
        if want > self.milli_tokens {
            return false;
        }
        self.milli_tokens -= want;
        true
    }

    /// Whether the bucket is full at `now_ms` (then it carries no information).
    pub fn is_full(&mut self, config: &BucketConfig, now_ms: u64) -> bool {
        self.refill(config, now_ms);
        self.milli_tokens >= config.burst_bytes.saturating_mul(MILLI)
    }
}

/// A paced user's turns come at least this fraction of the burst apart: the time the bucket takes
/// to refill an eighth of its burst (16 ms at the repair defaults, 64 KiB at 512 KiB/s: ~62 turns
/// a second however many users wait). A small fraction, so the bucket does not fill up unused
/// between two turns (rate would be lost) when a turn's user has less left to send than it
/// finds: a node's 256 owners may hold a few records each. Never shorter than the refill of
/// the send the bucket last refused, so a turn finds at least that.
pub const TURN_BURST_FRACTION: u64 = 8;

/// A token bucket with its shape: paces one sender (replica repair), which may be many threads
/// taking from it in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacer {
    config: BucketConfig,
    bucket: TokenBucket,
    /// The latest turn handed out ([`Pacer::next_turn_ms`]); 0 before the first.
    last_turn_ms: u64,
    /// The size of the last send the bucket could not cover (0 before any).
    last_refused_bytes: u64,
}

impl Pacer {
    /// A pacer starting full at `now_ms`.
    pub fn new(config: BucketConfig, now_ms: u64) -> Pacer {
        Pacer {
            config,
            bucket: TokenBucket::full(&config, now_ms),
            last_turn_ms: 0,
            last_refused_bytes: 0,
        }
    }

    /// When a user that found the bucket short at `now_ms` should try again: the next free turn,
    /// turns [`Pacer::turn_gap_ms`] apart. However many users wait on one pacer (the node's 256
    /// owner threads share one), they come back one at a time at the pace the bucket refills,
    /// rather than each on its own short timer finding the bucket empty (12.8 k wake-ups a
    /// second with 256 owners on 20 ms steps, `perf/README.md`).
    pub fn next_turn_ms(&mut self, now_ms: u64) -> u64 {
        let turn = self
            .last_turn_ms
            .max(now_ms)
            .saturating_add(self.turn_gap_ms());
        self.last_turn_ms = turn;
        turn
    }

    /// Milliseconds between two turns: the time to refill `burst / TURN_BURST_FRACTION` bytes, or
    /// the last refused send if that is more; at least 1 (a pacer that never refills hands out
    /// turns a day apart).
    pub fn turn_gap_ms(&self) -> u64 {
        const NEVER_MS: u64 = 86_400_000;
        let share = (self.config.burst_bytes / TURN_BURST_FRACTION).max(self.last_refused_bytes);
        if self.config.refill_bytes_per_s == 0 {
            return NEVER_MS;
        }
        share
            .saturating_mul(1000)
            .div_ceil(self.config.refill_bytes_per_s)
            .clamp(1, NEVER_MS)
    }

    /// The shape.
    pub fn config(&self) -> &BucketConfig {
        &self.config
    }

    /// Takes `bytes` if available; otherwise takes nothing and returns false.
    pub fn try_take(&mut self, now_ms: u64, bytes: u64) -> bool {
        let taken = self.bucket.try_take(&self.config, now_ms, bytes);
        if !taken {
            self.last_refused_bytes = bytes;
        }
        taken
    }

    /// Whole bytes available at `now_ms`.
    pub fn available(&mut self, now_ms: u64) -> u64 {
        self.bucket.available(&self.config, now_ms)
    }
}

/// The amplification limiter's bounds (copied from the node's `Config`, which justifies the
/// defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmplificationConfig {
    /// Bucket of each unproven prefix.
    pub prefix: BucketConfig,
    /// One bucket for all unproven destinations together.
    pub global: BucketConfig,
    /// Prefixes tracked at once; beyond it, sends to new unproven prefixes are refused.
    pub max_prefixes: usize,
    /// IPv4 prefix length that shares a bucket (loopback addresses: each its own).
    pub ipv4_prefix_len_bits: u8,
    /// IPv6 prefix length that shares a bucket (loopback: its own).
    pub ipv6_prefix_len_bits: u8,
}

impl Default for AmplificationConfig {
    /// 8 KiB burst and 2 KiB/s per prefix, 64 KiB burst and 32 KiB/s globally, 4096 prefixes,
    /// /24 and /48 (see `Config` for the reasoning).
    fn default() -> Self {
        AmplificationConfig {
            prefix: BucketConfig {
                burst_bytes: 8 * 1024,
                refill_bytes_per_s: 2 * 1024,
            },
            global: BucketConfig {
                burst_bytes: 64 * 1024,
                refill_bytes_per_s: 32 * 1024,
            },
            max_prefixes: 4096,
            ipv4_prefix_len_bits: 24,
            ipv6_prefix_len_bits: 48,
        }
    }
}

/// A full prefix map is swept for idle entries at most this often. A sweep is O(map); under a
/// flood from more prefixes than the map holds this keeps the cost at one sweep per second, and
/// an entry idle for a second has refilled `prefix_refill_bytes_per_s` bytes anyway.
pub const SWEEP_INTERVAL_MS: u64 = 1000;

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// The destination prefix's bucket is empty.
    Prefix,
    /// The global bucket is empty.
    Global,
    /// The prefix map is full of active prefixes.
    MapFull,
}

/// Counters of one limiter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmplificationStats {
    /// Sends to unproven destinations allowed.
    pub allowed: u64,
    /// Bytes of those sends.
    pub allowed_bytes: u64,
    /// Sends withheld because the prefix bucket was empty.
    pub withheld_prefix: u64,
    /// Sends withheld because the global bucket was empty.
    pub withheld_global: u64,
    /// Sends withheld because the prefix map was full.
    pub withheld_map_full: u64,
    /// Bytes of withheld sends.
    pub withheld_bytes: u64,
}

/// Budgets for bytes sent to unproven addresses. See the module docs.
#[derive(Debug)]
pub struct AmplificationLimiter {
    config: AmplificationConfig,
    prefixes: HashMap<IpPrefix, TokenBucket>,
    global: TokenBucket,
    last_sweep_ms: Option<u64>,
    stats: AmplificationStats,
}

impl AmplificationLimiter {
    /// A limiter with full buckets at `now_ms`.
    pub fn new(config: AmplificationConfig, now_ms: u64) -> AmplificationLimiter {
        AmplificationLimiter {
            global: TokenBucket::full(&config.global, now_ms),
            prefixes: HashMap::new(),
            last_sweep_ms: None,
            stats: AmplificationStats::default(),
            config,
        }
    }

    /// The bounds.
    pub fn config(&self) -> &AmplificationConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &AmplificationStats {
        &self.stats
    }

    /// Prefixes tracked now.
    pub fn tracked_prefixes(&self) -> usize {
        self.prefixes.len()
    }

    /// The bucket key of a destination: its own address for loopback, its prefix otherwise.
    pub fn prefix_of(&self, ip: IpAddr) -> IpPrefix {
        let ip = normalize_addr(SocketAddr::new(ip, 0)).ip();
        if ip.is_loopback() {
            IpPrefix::of(ip, 32, 128)
        } else {
            IpPrefix::of(
                ip,
                self.config.ipv4_prefix_len_bits,
                self.config.ipv6_prefix_len_bits,
            )
        }
    }

    /// Whether `bytes` may be sent to the unproven address `to` at `now_ms`; if so they are
    /// taken from its prefix's bucket and the global one.
    pub fn allow(&mut self, now_ms: u64, to: SocketAddr, bytes: usize) -> Result<(), Withheld> {
        let bytes = bytes as u64;
        let result = self.decide(now_ms, to, bytes);
        match result {
            Ok(()) => {
                self.stats.allowed += 1;
                self.stats.allowed_bytes += bytes;
            }
            Err(why) => {
                match why {
                    Withheld::Prefix => self.stats.withheld_prefix += 1,
                    Withheld::Global => self.stats.withheld_global += 1,
                    Withheld::MapFull => self.stats.withheld_map_full += 1,
                }
                self.stats.withheld_bytes += bytes;
            }
        }
        result
    }

    fn decide(&mut self, now_ms: u64, to: SocketAddr, bytes: u64) -> Result<(), Withheld> {
        let prefix = self.prefix_of(to.ip());
        if !self.prefixes.contains_key(&prefix) && self.prefixes.len() >= self.config.max_prefixes {
            self.sweep(now_ms);
            if self.prefixes.len() >= self.config.max_prefixes {
                return Err(Withheld::MapFull);
            }
        }
        let prefix_config = self.config.prefix;
        let bucket = self
            .prefixes
            .entry(prefix)
            .or_insert_with(|| TokenBucket::full(&prefix_config, now_ms));
        if bucket.available(&prefix_config, now_ms) < bytes {
            return Err(Withheld::Prefix);
        }
        if !self.global.try_take(&self.config.global, now_ms, bytes) {
            return Err(Withheld::Global);
        }
        let taken = bucket.try_take(&prefix_config, now_ms, bytes);
        debug_assert!(taken, "checked available above");
        Ok(())
    }

    /// Forgets idle prefixes (full buckets), at most once per [`SWEEP_INTERVAL_MS`].
    fn sweep(&mut self, now_ms: u64) {
        if self
            .last_sweep_ms
            .is_some_and(|last| now_ms.saturating_sub(last) < SWEEP_INTERVAL_MS)
        {
            return;
        }
        self.last_sweep_ms = Some(now_ms);
        let config = self.config.prefix;
        self.prefixes
            .retain(|_, bucket| !bucket.is_full(&config, now_ms));
    }
}

/// Addresses that answered our PING with a valid PONG, as the peer thread last published them.
/// Receivers read it once per batch to skip the limiter for proven peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvenSet {
    addrs: HashSet<SocketAddr>,
}

impl ProvenSet {
    /// A set of these addresses (normalised).
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> ProvenSet {
        ProvenSet {
            addrs: addrs.into_iter().map(normalize_addr).collect(),
        }
    }

    /// Whether `addr` (normal form, as receivers see it) is proven.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.addrs.contains(&addr)
    }

    /// Number of proven addresses.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// No proven address.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bucket_refills_at_its_rate_up_to_its_burst() {
        let c = BucketConfig {
            burst_bytes: 100,
            refill_bytes_per_s: 10,
        };
        let mut b = TokenBucket::full(&c, 0);
        assert!(b.try_take(&c, 0, 100));
        assert!(!b.try_take(&c, 0, 1));
        assert_eq!(b.available(&c, 150), 1); // 1.5 bytes
        assert!(b.try_take(&c, 1000, 10));
        assert!(!b.try_take(&c, 1000, 1)); // 0.5 left
        // Time running backwards adds nothing.
        assert_eq!(b.available(&c, 10), 0);
        assert!(b.is_full(&c, 1_000_000));
        assert_eq!(b.available(&c, u64::MAX), 100);
    }

    #[test]
    fn prefix_budget_bounds_bytes_to_a_victim_prefix() {
        let config = AmplificationConfig::default();
        let mut lim = AmplificationLimiter::new(config, 0);
        let mut sent = 0u64;
        // 10 s of 212-byte PONGs every millisecond toward 10.1.2.x, rotating hosts.
        for ms in 0..10_000u64 {
            let to = SocketAddr::from(([10, 1, 2, (ms % 250) as u8 + 1], 1618));
            if lim.allow(ms, to, 212).is_ok() {
                sent += 212;
            }
        }
        let bound = config.prefix.burst_bytes + config.prefix.refill_bytes_per_s * 10;
        assert!(sent <= bound, "{sent} > {bound}");
        assert!(sent + 212 * 2 >= bound, "budget used: {sent} of {bound}");
        // Another /24 has its own budget; an IPv4-mapped address is the same IPv4 prefix.
        assert!(lim.allow(10_000, sa("10.1.3.1:1"), 1000).is_ok());
        assert_eq!(
            lim.allow(10_000, sa("[::ffff:10.1.2.9]:1"), 1000),
            Err(Withheld::Prefix)
        );
        // Loopback addresses are separate, one per IP.
        assert!(lim.allow(10_000, sa("127.0.0.1:1"), 8000).is_ok());
        assert!(lim.allow(10_000, sa("127.0.0.2:1"), 8000).is_ok());
    }

    #[test]
    fn global_budget_bounds_many_prefixes_and_refusals_take_nothing() {
        let config = AmplificationConfig {
            prefix: BucketConfig {
                burst_bytes: 1000,
                refill_bytes_per_s: 0,
            },
            global: BucketConfig {
                burst_bytes: 2500,
                refill_bytes_per_s: 0,
            },
            max_prefixes: 100,
            ..AmplificationConfig::default()
        };
        let mut lim = AmplificationLimiter::new(config, 0);
        assert!(lim.allow(0, sa("10.0.1.1:1"), 1000).is_ok());
        assert!(lim.allow(0, sa("10.0.2.1:1"), 1000).is_ok());
        assert_eq!(lim.allow(0, sa("10.0.3.1:1"), 1000), Err(Withheld::Global));
        // The refused send did not drain 10.0.3.x's bucket.
        assert!(lim.allow(0, sa("10.0.3.1:1"), 500).is_ok());
        assert_eq!(lim.stats().withheld_global, 1);
        assert_eq!(lim.stats().allowed_bytes, 2500);
    }

    #[test]
    fn full_map_refuses_new_prefixes_until_entries_go_idle() {
        let config = AmplificationConfig {
            max_prefixes: 2,
            ..AmplificationConfig::default()
        };
        let mut lim = AmplificationLimiter::new(config, 0);
        assert!(lim.allow(0, sa("10.0.1.1:1"), 10).is_ok());
        assert!(lim.allow(0, sa("10.0.2.1:1"), 10).is_ok());
        assert_eq!(lim.allow(0, sa("10.0.3.1:1"), 10), Err(Withheld::MapFull));
        assert_eq!(lim.tracked_prefixes(), 2);
        // Known prefixes still work.
        assert!(lim.allow(1, sa("10.0.1.2:1"), 10).is_ok());
        // After refilling (10 bytes at 2 KiB/s: 5 ms) the sweep (rate limited) frees them.
        assert_eq!(lim.allow(500, sa("10.0.3.1:1"), 10), Err(Withheld::MapFull));
        assert!(lim.allow(1000, sa("10.0.3.1:1"), 10).is_ok());
        assert!(lim.tracked_prefixes() <= 2);
    }

    #[test]
    fn pacer_takes_whole_sends_only() {
        let mut p = Pacer::new(
            BucketConfig {
                burst_bytes: 3000,
                refill_bytes_per_s: 1000,
            },
            0,
        );
        assert!(p.try_take(0, 2000));
        assert!(!p.try_take(0, 1500));
        assert!(p.try_take(500, 1500));
        assert_eq!(p.available(500), 0);
    }

    #[test]
    fn paced_users_get_turns_an_eighth_burst_apart() {
        // The repair defaults: 64 KiB burst at 512 KiB/s refill an eighth in 15.6 ms.
        let mut p = Pacer::new(
            BucketConfig {
                burst_bytes: 64 * 1024,
                refill_bytes_per_s: 512 * 1024,
            },
            0,
        );
        assert_eq!(p.turn_gap_ms(), 16);
        // Three users short at the same moment come back one after another, not together.
        assert_eq!(p.next_turn_ms(1000), 1016);
        assert_eq!(p.next_turn_ms(1000), 1032);
        assert_eq!(p.next_turn_ms(1010), 1048);
        // Once the queue has passed, a turn is one gap from now.
        assert_eq!(p.next_turn_ms(5000), 5016);
        // Between two turns the bucket refills an eighth of its burst: what the first user
        // drained, the next one finds.
        let all = p.available(5000);
        assert!(p.try_take(5000, all));
        assert!(p.try_take(5016, 8 * 1024));
        // A refused send longer than the share stretches the gap to its refill time.
        assert!(!p.try_take(5016, 20 * 1024));
        assert_eq!(p.turn_gap_ms(), 40);
        assert!(p.try_take(5016 + 40, 20 * 1024));
        // A pacer that never refills hands out far turns; a tiny burst turns of at least 1 ms.
        let never = Pacer::new(
            BucketConfig {
                burst_bytes: 100,
                refill_bytes_per_s: 0,
            },
            0,
        );
        assert_eq!(never.turn_gap_ms(), 86_400_000);
        let tiny = Pacer::new(
            BucketConfig {
                burst_bytes: 1,
                refill_bytes_per_s: 1 << 40,
            },
            0,
        );
        assert_eq!(tiny.turn_gap_ms(), 1);
    }

    #[test]
    fn proven_set_normalises() {
        let s = ProvenSet::new([sa("[::ffff:10.0.0.1]:5")]);
        assert!(s.contains(sa("10.0.0.1:5")));
        assert_eq!(s.len(), 1);
        assert!(!ProvenSet::default().contains(sa("10.0.0.1:5")));
    }
}
