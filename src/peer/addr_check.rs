//! Address checks for the peer table: which addresses may be a peer at all, and the per-IP and
//! per-prefix counters that stop one host or one network from filling the table (an eclipse
//! attacker needs many networks, not many ports).
//!
//! Every function here takes any address and never panics; addresses are normalised first
//! (IPv4-mapped IPv6 becomes IPv4), so `::ffff:0.0.0.0` is as unspecified as `0.0.0.0`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::wire::normalize_addr;

/// Why an address can never be a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrProblem {
    /// `0.0.0.0/8` ("this network", never a destination, RFC 1122) or `::`.
    Unspecified,
    /// IPv4 `224.0.0.0/4` or IPv6 `ff00::/8`: one PING would reach many hosts.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Port 0 cannot be sent to.
    PortZero,
}

/// Refuses addresses that can never be a peer (see [`AddrProblem`]).
pub fn check_addr(addr: SocketAddr) -> Result<(), AddrProblem> {
    let addr = normalize_addr(addr);
    if addr.port() == 0 {
        return Err(AddrProblem::PortZero);
    }
    match addr.ip() {
        IpAddr::V4(v4) => {
            if v4.octets()[0] == 0 {
                Err(AddrProblem::Unspecified)
            } else if v4.is_broadcast() {
                Err(AddrProblem::Broadcast)
            } else if v4.is_multicast() {
                Err(AddrProblem::Multicast)
            } else {
                Ok(())
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Err(AddrProblem::Unspecified)
            } else if v6.is_multicast() {
                Err(AddrProblem::Multicast)
            } else {
                Ok(())
            }
        }
    }
}

/// True if `listed` is a loopback address and `source` (who listed it) is not: a remote peer has
/// no business pointing us at services on our own host, and a loopback source cannot be spoofed
/// from outside the host.
pub fn crosses_loopback_scope(listed: SocketAddr, source: SocketAddr) -> bool {
    normalize_addr(listed).ip().is_loopback() && !normalize_addr(source).ip().is_loopback()
}

/// A network prefix: the address family and the address with the host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpPrefix {
    v6: bool,
    masked: u128,
}

impl IpPrefix {
    /// The prefix of `ip` with `v4_len_bits` (IPv4, clamped to 32) or `v6_len_bits` (IPv6,
    /// clamped to 128) leading bits kept.
    pub fn of(ip: IpAddr, v4_len_bits: u8, v6_len_bits: u8) -> IpPrefix {
        match ip {
            IpAddr::V4(v4) => {
                let keep = u32::from(v4_len_bits.min(32));
                let mask = u32::MAX.checked_shl(32 - keep).unwrap_or(0);
                IpPrefix {
                    v6: false,
                    masked: u128::from(u32::from(v4) & mask),
                }
            }
            IpAddr::V6(v6) => {
                let keep = u32::from(v6_len_bits.min(128));
                let mask = u128::MAX.checked_shl(128 - keep).unwrap_or(0);
                IpPrefix {
                    v6: true,
                    masked: u128::from(v6) & mask,
                }
            }
        }
    }
}

/// Which limit an address hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// `max_peers_per_ip`.
    PerIp,
    /// `max_peers_per_prefix`.
    PerPrefix,
}

/// The limits an [`IpCounts`] enforces (copied from `PeerConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpLimits {
    /// Entries per IP address.
    pub max_per_ip: usize,
    /// Entries per prefix.
    pub max_per_prefix: usize,
    /// IPv4 prefix length.
    pub ipv4_prefix_len_bits: u8,
    /// IPv6 prefix length.
    pub ipv6_prefix_len_bits: u8,
    /// Loopback addresses pass [`IpCounts::check`] whatever the counts.
    pub exempt_loopback: bool,
}

/// How many entries of one set (peers, or candidates) share each IP and each prefix.
///
/// The maps hold only non-zero counts, so their size is bounded by the set they count.
#[derive(Debug, Clone)]
pub struct IpCounts {
    limits: IpLimits,
    per_ip: BTreeMap<IpAddr, usize>,
    per_prefix: BTreeMap<IpPrefix, usize>,
}

impl IpCounts {
    /// Empty counts enforcing `limits`.
    pub fn new(limits: IpLimits) -> IpCounts {
        IpCounts {
            limits,
            per_ip: BTreeMap::new(),
            per_prefix: BTreeMap::new(),
        }
    }

    fn prefix(&self, ip: IpAddr) -> IpPrefix {
        IpPrefix::of(
            ip,
            self.limits.ipv4_prefix_len_bits,
            self.limits.ipv6_prefix_len_bits,
        )
    }

    /// Whether one more entry with this IP fits.
    pub fn check(&self, ip: IpAddr) -> Result<(), LimitHit> {
        if self.limits.exempt_loopback && ip.is_loopback() {
            return Ok(());
        }
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_per_ip {
            return Err(LimitHit::PerIp);
        }
        let prefix = self.prefix(ip);
        if self.per_prefix.get(&prefix).copied().unwrap_or(0) >= self.limits.max_per_prefix {
            return Err(LimitHit::PerPrefix);
        }
        Ok(())
    }

    /// Counts one more entry with this IP.
    pub fn add(&mut self, ip: IpAddr) {
        let prefix = self.prefix(ip);
        *self.per_ip.entry(ip).or_insert(0) += 1;
        *self.per_prefix.entry(prefix).or_insert(0) += 1;
    }

    /// Counts one entry with this IP fewer.
    pub fn remove(&mut self, ip: IpAddr) {
        let prefix = self.prefix(ip);
        decrement(&mut self.per_ip, ip);
        decrement(&mut self.per_prefix, prefix);
    }

    /// Entries counted for this IP.
    pub fn count_ip(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }
}

fn decrement<K: Ord>(map: &mut BTreeMap<K, usize>, key: K) {
    if let Some(count) = map.get_mut(&key) {
        debug_assert!(*count > 0, "zero counts are removed");
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(&key);
        }
    } else {
        debug_assert!(false, "removing an address that was never counted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_unusable_addresses() {
        assert_eq!(check_addr(sa("0.0.0.0:1")), Err(AddrProblem::Unspecified));
        assert_eq!(check_addr(sa("0.1.2.3:1")), Err(AddrProblem::Unspecified));
        assert_eq!(check_addr(sa("[::]:1")), Err(AddrProblem::Unspecified));
        assert_eq!(
            check_addr(sa("[::ffff:0.0.0.0]:1")),
            Err(AddrProblem::Unspecified)
        );
        assert_eq!(check_addr(sa("224.0.0.1:1")), Err(AddrProblem::Multicast));
        assert_eq!(
            check_addr(sa("239.255.255.250:1")),
            Err(AddrProblem::Multicast)
        );
        assert_eq!(check_addr(sa("[ff02::1]:1")), Err(AddrProblem::Multicast));
        assert_eq!(
            check_addr(sa("[::ffff:224.0.0.1]:1")),
            Err(AddrProblem::Multicast)
        );
        assert_eq!(
            check_addr(sa("255.255.255.255:1")),
            Err(AddrProblem::Broadcast)
        );
        assert_eq!(check_addr(sa("1.2.3.4:0")), Err(AddrProblem::PortZero));
        assert_eq!(check_addr(sa("1.2.3.4:1")), Ok(()));
        assert_eq!(check_addr(sa("127.0.0.1:1")), Ok(()));
        assert_eq!(check_addr(sa("[2001:db8::1]:1")), Ok(()));
    }

    #[test]
    fn loopback_may_be_listed_only_by_loopback() {
        assert!(crosses_loopback_scope(sa("127.0.0.1:5"), sa("1.2.3.4:5")));
        assert!(crosses_loopback_scope(sa("[::1]:5"), sa("1.2.3.4:5")));
        assert!(!crosses_loopback_scope(
            sa("127.0.0.1:5"),
            sa("127.0.0.2:5")
        ));
        assert!(!crosses_loopback_scope(sa("1.2.3.4:5"), sa("127.0.0.1:5")));
    }

    #[test]
    fn prefixes_group_by_24_and_48() {
        let p = |s: &str| IpPrefix::of(s.parse().unwrap(), 24, 48);
        assert_eq!(p("10.1.2.3"), p("10.1.2.200"));
        assert_ne!(p("10.1.2.3"), p("10.1.3.3"));
        assert_eq!(p("2001:db8:1::1"), p("2001:db8:1:ffff::2"));
        assert_ne!(p("2001:db8:1::1"), p("2001:db8:2::1"));
        // Families never collide, and extreme lengths do not panic.
        assert_ne!(p("0.0.0.1"), p("::1"));
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            IpPrefix::of(ip, 0, 0),
            IpPrefix::of("9.9.9.9".parse().unwrap(), 0, 0)
        );
        assert_ne!(
            IpPrefix::of(ip, 32, 128),
            IpPrefix::of("10.1.2.4".parse().unwrap(), 32, 128)
        );
        assert_eq!(IpPrefix::of(ip, 255, 255), IpPrefix::of(ip, 32, 128));
    }

    #[test]
    fn counts_enforce_ip_and_prefix_limits() {
        let mut counts = IpCounts::new(IpLimits {
            max_per_ip: 2,
            max_per_prefix: 3,
            ipv4_prefix_len_bits: 24,
            ipv6_prefix_len_bits: 48,
            exempt_loopback: true,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        counts.add(a);
        counts.add(a);
        assert_eq!(counts.check(a), Err(LimitHit::PerIp));
        assert_eq!(counts.check(b), Ok(()));
        counts.add(b);
        assert_eq!(counts.check(b), Err(LimitHit::PerPrefix));
        assert_eq!(counts.check("10.0.1.1".parse().unwrap()), Ok(()));
        counts.remove(a);
        assert_eq!(counts.count_ip(a), 1);
        assert_eq!(counts.check(b), Ok(()));
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..10 {
            counts.add(lo);
        }
        assert_eq!(counts.check(lo), Ok(()));
    }
}
