//! The 18-byte wire address (16-byte IPv6, IPv4 mapped, + u16 LE port) and its normal form.
//!
//! Peers are keyed by the normal form: an IPv4-mapped IPv6 address becomes plain IPv4, so the
//! same peer reached over a dual-stack or an IPv4 socket is one entry.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::limits::ADDR_LEN;

/// An address as it appears on the wire.
pub type WireAddr = [u8; ADDR_LEN];

/// IPv4-mapped IPv6 becomes IPv4; scope and flow info are dropped (they are not on the wire).
pub fn normalize_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => addr,
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0)),
        },
    }
}

/// Encodes an address the way the reference does (IPv4 as `::ffff:a.b.c.d`).
pub fn addr_to_wire(addr: SocketAddr) -> WireAddr {
    let ip: Ipv6Addr = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let mut out = [0u8; ADDR_LEN];
    out[..16].copy_from_slice(&ip.octets());
    out[16..].copy_from_slice(&addr.port().to_le_bytes());
    out
}

/// Decodes a wire address into its normal form.
pub fn addr_from_wire(bytes: &WireAddr) -> SocketAddr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&bytes[..16]);
    let port = u16::from_le_bytes([bytes[16], bytes[17]]);
    normalize_addr(SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::from(octets),
        port,
        0,
        0,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_mapped_on_the_wire_and_plain_in_memory() {
        let a: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let wire = addr_to_wire(a);
        assert_eq!(hex::encode(wire), "00000000000000000000ffff7f000001419c");
        assert_eq!(addr_from_wire(&wire), a);
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40001".parse().unwrap();
        assert_eq!(normalize_addr(mapped), a);
    }

    #[test]
    fn ipv6_round_trips() {
        let a: SocketAddr = "[2001:db8::1]:40002".parse().unwrap();
        let wire = addr_to_wire(a);
        assert_eq!(hex::encode(wire), "20010db8000000000000000000000001429c");
        assert_eq!(addr_from_wire(&wire), a);
    }
}
