//! GET: `03 ‖ pubkey[32] ‖ K ‖ key`, asking for the dat of (pubkey, key).

use crate::limits::GET_HEADER_LEN;
use crate::wire::key_value::check_key_at_end;
use crate::wire::{Field, Op, Result};

/// Byte ranges of a GET.
pub mod field {
    use super::Field;
    /// Owner public key.
    pub const PUBKEY: Field = 1..33;
    /// Key length K.
    pub const KEY_LEN: usize = 33;
    /// Key start.
    pub const KEY_START: usize = 34;
}

// K is the last byte of the fixed part, where the shared check looks for it.
const _: () = assert!(field::KEY_LEN + 1 == GET_HEADER_LEN && field::KEY_START == GET_HEADER_LEN);

/// A checked GET view.
#[derive(Clone, Copy)]
pub struct Get<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Get<T> {
    /// Checks lengths; after `Ok` no accessor can panic.
    pub fn new_checked(buffer: T) -> Result<Get<T>> {
        check_key_at_end(buffer.as_ref(), GET_HEADER_LEN)?;
        Ok(Get { buffer })
    }

    /// Owner public key.
    pub fn pubkey(&self) -> &[u8; 32] {
        self.buffer.as_ref()[field::PUBKEY]
            .try_into()
            .unwrap_or(&[0; 32])
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.buffer.as_ref()[field::KEY_START..]
    }

    /// The fields, borrowed from the datagram.
    pub fn repr(&self) -> GetRepr<'_> {
        GetRepr {
            pubkey: self.pubkey(),
            key: self.key(),
        }
    }
}

impl<'a> Get<&'a [u8]> {
    /// The fields, borrowed from the datagram.
    pub fn into_repr(self) -> GetRepr<'a> {
        GetRepr {
            pubkey: self.buffer[field::PUBKEY].try_into().unwrap_or(&[0; 32]),
            key: &self.buffer[field::KEY_START..],
        }
    }
}

/// A GET's fields, borrowed (from a datagram when parsed): a GET is answered straight from
/// them, so nothing is copied. Copying the 32-byte key out cost 60% of a GET decode
/// (`perf/README.md`, issue 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetRepr<'a> {
    /// Owner public key.
    pub pubkey: &'a [u8; 32],
    /// Key, at most 255 bytes.
    pub key: &'a [u8],
}

impl GetRepr<'_> {
    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        GET_HEADER_LEN + self.key.len()
    }

    /// Writes the GET and returns its length. Panics if the key is over 255 bytes or `buf` is too
    /// small (caller bugs).
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        assert!(self.key.len() <= crate::limits::MAX_KEY_LEN);
        let len = self.buffer_len();
        // Split once at the fixed header, so the header writes need no bounds checks.
        let (head, key) = buf[..len].split_at_mut(GET_HEADER_LEN);
        head[0] = Op::Get as u8;
        head[field::PUBKEY].copy_from_slice(self.pubkey);
        head[field::KEY_LEN] = self.key.len() as u8;
        key.copy_from_slice(self.key);
        len
    }
}
