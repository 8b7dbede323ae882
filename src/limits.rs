//! Every fixed bound of the wire format, in one place, with compile-time checks of how they relate.
//!
//! Runtime-tunable limits (table sizes, budgets, timers) live in `config.rs`; the numbers here are
//! fixed by the Dave v1 protocol and cannot change without breaking compatibility.

/// Largest datagram a node sends or accepts (fits a 1500-byte Ethernet MTU with IPv6 + UDP headers).
pub const MAX_PACKET_LEN: usize = 1424;

/// Bytes of a dat before its key: time 8, salt 16, work 32, sig 64, pubkey 32, key length 1.
pub const DAT_PREFIX_LEN: usize = 8 + 16 + 32 + 64 + 32 + 1;

/// Fixed bytes of a dat: the prefix plus the 2-byte value length.
pub const DAT_HEADER_LEN: usize = DAT_PREFIX_LEN + 2;

/// PUT and GET_ACK: op (1) + dat length (2) before the dat.
pub const DAT_MESSAGE_HEADER_LEN: usize = 3;

/// Largest key + value that fits one datagram (1424 − 3 − 155).
pub const MAX_KEY_VALUE_LEN: usize = MAX_PACKET_LEN - DAT_MESSAGE_HEADER_LEN - DAT_HEADER_LEN;

/// Largest key (its length is one byte on the wire).
pub const MAX_KEY_LEN: usize = u8::MAX as usize;

/// Largest dat (header + key + value).
pub const MAX_DAT_LEN: usize = DAT_HEADER_LEN + MAX_KEY_VALUE_LEN;

/// Wire size of an address: 16-byte IPv6 (IPv4-mapped for IPv4) + u16 LE port.
pub const ADDR_LEN: usize = 18;

/// Addresses a PONG may carry (the reference's NPEER_LIMIT).
pub const MAX_PONG_ADDRS: usize = 5;

/// The PONG solution: challenge 8 + salt 16 + pubkey 32 + signature 64.
pub const PONG_SOLUTION_LEN: usize = 8 + 16 + 32 + 64;

/// PONG without addresses: op + address-list length + solution.
pub const PONG_MIN_LEN: usize = 2 + PONG_SOLUTION_LEN;

/// PONG with the most addresses.
pub const PONG_MAX_LEN: usize = PONG_MIN_LEN + MAX_PONG_ADDRS * ADDR_LEN;

/// GET without its key: op + pubkey + key length.
pub const GET_HEADER_LEN: usize = 1 + 32 + 1;

const _: () = assert!(DAT_HEADER_LEN == 155);
const _: () = assert!(MAX_KEY_VALUE_LEN == 1266);
const _: () = assert!(DAT_MESSAGE_HEADER_LEN + MAX_DAT_LEN == MAX_PACKET_LEN);
const _: () = assert!(MAX_KEY_LEN <= MAX_KEY_VALUE_LEN);
const _: () = assert!(GET_HEADER_LEN + MAX_KEY_LEN <= MAX_PACKET_LEN);
const _: () = assert!(PONG_MIN_LEN == 122);
const _: () = assert!(PONG_MAX_LEN <= MAX_PACKET_LEN);
// The address-list length is one byte on the wire.
const _: () = assert!(MAX_PONG_ADDRS * ADDR_LEN <= u8::MAX as usize);
// A dat length must fit its u16 field.
const _: () = assert!(MAX_DAT_LEN <= u16::MAX as usize);
