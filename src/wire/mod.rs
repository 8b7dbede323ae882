//! The Dave v1 wire codec: checked, zero-copy views over datagrams and allocation-free emitters.
//!
//! Contract (after smoltcp's `wire`): once a view's `new_checked` returned `Ok`, no accessor of
//! that view can panic, whatever the bytes. Every malformed input is an [`Error`] whose variant
//! names the reason, so the node counts drops by reason instead of logging them.
//!
//! Lengths are exact: a message with bytes beyond its own length is refused
//! ([`Error::TrailingBytes`]). The reference never emits such messages, so this costs no
//! compatibility and closes a hiding place for smuggled bytes.
//!
//! Layouts (all integers little-endian):
//!
//! ```text
//! PING               00 ‖ challenge[8]                                                9
//! PONG               01 ‖ L ‖ addrs[L] ‖ challenge[8] ‖ salt[16] ‖ pubkey[32] ‖ sig[64]  122 + 18n
//! PUT                02 ‖ datLen u16 ‖ dat                                            158 + K + V
//! GET                03 ‖ pubkey[32] ‖ K ‖ key                                        34 + K
//! GET_ACK            04 ‖ datLen u16 ‖ dat                                            158 + K + V
//! GETMYADDRPORT      05                                                               1
//! GETMYADDRPORT_ACK  06 ‖ addr[18]                                                    19
//! dat                time i64 ‖ salt[16] ‖ work[32] ‖ sig[64] ‖ pubkey[32] ‖ K ‖ key ‖ V u16 ‖ value
//! ```

mod addr;
mod dat;
pub mod ext;
mod get;
mod key_value;
mod message;
mod pong;
pub mod record2;
pub mod route;

pub use addr::{WireAddr, addr_from_wire, addr_to_wire, normalize_addr};
pub use dat::{Dat, DatFields, NOT_FOUND_TIME_MS, emit_dat_message};
pub use ext::Features;
pub use get::{Get, GetRepr};
pub use message::Message;
pub use pong::{Pong, PongRepr, pong_signed_hash};
pub use record2::{Dat2, Dat2Fields, Message2, Op2, Record2, Status2};

/// A byte range inside a message or dat.
pub type Field = core::ops::Range<usize>;

/// The op byte: byte 0 of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// `00 ‖ challenge[8]`.
    Ping = 0,
    /// Answer to a PING: addresses and a signed solution.
    Pong = 1,
    /// Store a dat.
    Put = 2,
    /// Ask for the dat of (pubkey, key).
    Get = 3,
    /// Answer to a GET: the dat, or the not-found dat.
    GetAck = 4,
    /// Ask the receiver what our address looks like from its side.
    GetMyAddrPort = 5,
    /// Answer to GETMYADDRPORT.
    GetMyAddrPortAck = 6,
}

impl Op {
    /// The op for a byte, or `None` for ops this protocol does not know.
    pub fn from_byte(byte: u8) -> Option<Op> {
        Some(match byte {
            0 => Op::Ping,
            1 => Op::Pong,
            2 => Op::Put,
            3 => Op::Get,
            4 => Op::GetAck,
            5 => Op::GetMyAddrPort,
            6 => Op::GetMyAddrPortAck,
            _ => return None,
        })
    }
}

/// Why a datagram or dat was refused. Unit variants, so the node can keep one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// A zero-length datagram.
    Empty,
    /// Byte 0 is not one of the seven ops.
    UnknownOp,
    /// Longer than 1424 bytes (the reference would truncate it; we refuse it).
    TooLong,
    /// Shorter than the fixed part of its message.
    TooShort,
    /// PUT/GET_ACK dat length field does not equal the dat's own length.
    BadDatLength,
    /// The key length byte points past the end of the datagram.
    KeyTruncated,
    /// The value length field points past the end of the datagram.
    ValueTruncated,
    /// Key + value longer than 1266 bytes.
    ValueTooLong,
    /// PONG address-list length is not a multiple of 18.
    AddrListNotMultiple,
    /// PONG lists more than NPEER_LIMIT (5) addresses.
    TooManyAddrs,
    /// PONG address list runs into (or past) the 120-byte solution.
    AddrListTooLong,
    /// Bytes after the end of the message.
    TrailingBytes,
    /// A field holds a value its format does not define (e.g. a PUT2_STATUS status byte).
    BadField,
}

impl Error {
    /// Every variant, in counter order.
    pub const ALL: [Error; 13] = [
        Error::Empty,
        Error::UnknownOp,
        Error::TooLong,
        Error::TooShort,
        Error::BadDatLength,
        Error::KeyTruncated,
        Error::ValueTruncated,
        Error::ValueTooLong,
        Error::AddrListNotMultiple,
        Error::TooManyAddrs,
        Error::AddrListTooLong,
        Error::TrailingBytes,
        Error::BadField,
    ];

    /// Number of variants (the size of a per-reason counter array).
    pub const COUNT: usize = Self::ALL.len();

    /// Dense index for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Short snake_case name, used as a metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Error::Empty => "empty",
            Error::UnknownOp => "unknown_op",
            Error::TooLong => "too_long",
            Error::TooShort => "too_short",
            Error::BadDatLength => "bad_dat_length",
            Error::KeyTruncated => "key_truncated",
            Error::ValueTruncated => "value_truncated",
            Error::ValueTooLong => "value_too_long",
            Error::AddrListNotMultiple => "addr_list_not_multiple_of_18",
            Error::TooManyAddrs => "too_many_addrs",
            Error::AddrListTooLong => "addr_list_too_long",
            Error::TrailingBytes => "trailing_bytes",
            Error::BadField => "bad_field",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Error {}

/// Result of a wire operation.
pub type Result<T> = core::result::Result<T, Error>;

/// Copies a fixed-size array out of a slice whose length the caller has checked.
///
/// Panics only on a bug in this module (a field range that disagrees with its check).
#[inline(always)]
pub(crate) fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_indices_are_dense() {
        for (i, e) in Error::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }
}
