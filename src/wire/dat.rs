//! The dat: the signed record, as a checked view over its bytes ([`Dat`]) and as fields to emit
//! ([`DatFields`]).
//!
//! `Dat<&[u8]>` is a zero-copy view into a receive buffer; `Dat<Box<[u8]>>` is the stored record
//! (one allocation of exactly the wire bytes, so storing and re-sending cost no re-encoding).

use crate::limits::{DAT_HEADER_LEN, DAT_MESSAGE_HEADER_LEN, DAT_PREFIX_LEN, MAX_KEY_VALUE_LEN};
use crate::wire::key_value::{
    check_key_value_len, check_record_len, emit_record_tail, record_key, record_value,
};
use crate::wire::{Field, Op, Result, array};

/// Byte ranges of a dat's fixed part.
pub mod field {
    use super::Field;
    /// Unix milliseconds, i64 LE.
    pub const TIME: Field = 0..8;
    /// Proof-of-work salt.
    pub const SALT: Field = 8..24;
    /// `blake3(salt ‖ blake3(key ‖ value ‖ time))`.
    pub const WORK: Field = 24..56;
    /// Ed25519 signature over `work`.
    pub const SIG: Field = 56..120;
    /// The owner's Ed25519 public key.
    pub const PUBKEY: Field = 120..152;
    /// One byte: K, the key length.
    pub const KEY_LEN: usize = 152;
    /// The key starts here.
    pub const KEY_START: usize = 153;
}

// The fixed part ends with K: the shared tail code finds K, key, V and value from `KEY_LEN`.
const _: () = assert!(field::KEY_LEN + 1 == DAT_PREFIX_LEN && field::KEY_START == DAT_PREFIX_LEN);

/// The time a reference node writes into a "not found" GET_ACK (Go's zero `time.Time`).
pub const NOT_FOUND_TIME_MS: i64 =
    i64::from_le_bytes([0xc9, 0x49, 0xb5, 0xd4, 0xd1, 0xf9, 0xff, 0xff]);

/// A checked dat: the bytes `time ‖ salt ‖ work ‖ sig ‖ pubkey ‖ K ‖ key ‖ V ‖ value`, exactly.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Dat<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Dat<T> {
    /// Checks the lengths once; after `Ok`, no accessor can panic.
    pub fn new_checked(buffer: T) -> Result<Dat<T>> {
        check_record_len(buffer.as_ref(), field::KEY_LEN, MAX_KEY_VALUE_LEN)?;
        Ok(Dat { buffer })
    }

    /// Wraps bytes that are already known to be a checked dat (e.g. taken from another `Dat`).
    ///
    /// Accessors may panic if the bytes are not a valid dat; use only on bytes this process
    /// checked before.
    pub fn new_unchecked(buffer: T) -> Dat<T> {
        debug_assert!(check_record_len(buffer.as_ref(), field::KEY_LEN, MAX_KEY_VALUE_LEN).is_ok());
        Dat { buffer }
    }

    /// The dat's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Length in bytes (155 + K + V).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Creation time, Unix milliseconds.
    pub fn time_ms(&self) -> i64 {
        i64::from_le_bytes(array(&self.as_bytes()[field::TIME]))
    }

    /// The raw 8 time bytes, as hashed into the load.
    pub fn time_bytes(&self) -> &[u8] {
        &self.as_bytes()[field::TIME]
    }

    /// Proof-of-work salt.
    pub fn salt(&self) -> &[u8] {
        &self.as_bytes()[field::SALT]
    }

    /// Proof-of-work hash (what the signature signs).
    pub fn work(&self) -> &[u8; 32] {
        self.as_bytes()[field::WORK].try_into().unwrap_or(&[0; 32])
    }

    /// Ed25519 signature over `work`.
    pub fn sig(&self) -> &[u8; 64] {
        self.as_bytes()[field::SIG].try_into().unwrap_or(&[0; 64])
    }

    /// Owner public key.
    pub fn pubkey(&self) -> &[u8; 32] {
        self.as_bytes()[field::PUBKEY]
            .try_into()
            .unwrap_or(&[0; 32])
    }

    /// Key length K.
    pub fn key_len(&self) -> usize {
        self.as_bytes()[field::KEY_LEN] as usize
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        record_key(self.as_bytes(), field::KEY_LEN)
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        record_value(self.as_bytes(), field::KEY_LEN)
    }

    /// The owner's ID (first 8 pubkey bytes, LE).
    pub fn owner_id(&self) -> u64 {
        crate::keys::id_from_pubkey(self.pubkey())
    }

    /// True for the "not found" answer: an all-zero signature.
    pub fn is_not_found(&self) -> bool {
        self.sig().iter().all(|&b| b == 0)
    }

    /// A borrowed view of the same dat.
    pub fn as_view(&self) -> Dat<&[u8]> {
        Dat {
            buffer: self.as_bytes(),
        }
    }

    /// An owned copy in one exact-size allocation.
    pub fn to_boxed(&self) -> Dat<Box<[u8]>> {
        Dat {
            buffer: self.as_bytes().into(),
        }
    }

    /// The fields, borrowing key and value.
    pub fn fields(&self) -> DatFields<'_> {
        DatFields {
            time_ms: self.time_ms(),
            salt: array(self.salt()),
            work: *self.work(),
            sig: *self.sig(),
            pubkey: *self.pubkey(),
            key: self.key(),
            value: self.value(),
        }
    }
}

impl<T: AsRef<[u8]>> core::fmt::Debug for Dat<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dat")
            .field("time_ms", &self.time_ms())
            .field("owner_id", &format_args!("{:016x}", self.owner_id()))
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value_len", &self.value().len())
            .finish()
    }
}

/// The fields of a dat, for building one. Key and value are borrowed: emitting allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatFields<'a> {
    /// Unix milliseconds.
    pub time_ms: i64,
    /// Proof-of-work salt.
    pub salt: [u8; 16],
    /// Proof-of-work hash.
    pub work: [u8; 32],
    /// Ed25519 signature over `work`.
    pub sig: [u8; 64],
    /// Owner public key.
    pub pubkey: [u8; 32],
    /// Key, at most 255 bytes.
    pub key: &'a [u8],
    /// Value; key + value at most 1266 bytes.
    pub value: &'a [u8],
}

impl<'a> DatFields<'a> {
    /// The "not found" answer for (pubkey, key), byte-identical to the reference's.
    pub fn not_found(pubkey: [u8; 32], key: &'a [u8]) -> DatFields<'a> {
        DatFields {
            time_ms: NOT_FOUND_TIME_MS,
            salt: [0; 16],
            work: [0; 32],
            sig: [0; 64],
            pubkey,
            key,
            value: &[],
        }
    }

    /// Checks the key and value lengths.
    pub fn check(&self) -> Result<()> {
        check_key_value_len(self.key, self.value, MAX_KEY_VALUE_LEN)
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        DAT_HEADER_LEN + self.key.len() + self.value.len()
    }

    /// Writes the dat into `buf[..self.buffer_len()]` and returns the length.
    ///
    /// Panics if the fields fail [`DatFields::check`] or `buf` is too small: both are the
    /// caller's bugs, not input errors.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        assert!(self.check().is_ok(), "dat fields too long");
        let len = self.buffer_len();
        // Split where the variable-length tail starts, so the fixed writes need no bounds checks.
        let (fixed, tail) = buf[..len].split_at_mut(field::KEY_LEN);
        fixed[field::TIME].copy_from_slice(&self.time_ms.to_le_bytes());
        fixed[field::SALT].copy_from_slice(&self.salt);
        fixed[field::WORK].copy_from_slice(&self.work);
        fixed[field::SIG].copy_from_slice(&self.sig);
        fixed[field::PUBKEY].copy_from_slice(&self.pubkey);
        emit_record_tail(self.key, self.value, tail);
        len
    }

    /// Emits into a new exact-size allocation and wraps it as a checked dat.
    pub fn to_dat(&self) -> Dat<Box<[u8]>> {
        let mut buf = vec![0u8; self.buffer_len()].into_boxed_slice();
        self.emit(&mut buf);
        Dat::new_unchecked(buf)
    }
}

/// Writes `op ‖ datLen ‖ dat` (a PUT or GET_ACK) into `buf` and returns the length.
///
/// Panics if `op` is not PUT or GET_ACK or `buf` is shorter than `3 + dat.len()` (caller bugs).
pub fn emit_dat_message(op: Op, dat: &[u8], buf: &mut [u8]) -> usize {
    assert!(matches!(op, Op::Put | Op::GetAck));
    let len = DAT_MESSAGE_HEADER_LEN + dat.len();
    buf[0] = op as u8;
    buf[1..3].copy_from_slice(&(dat.len() as u16).to_le_bytes());
    buf[3..len].copy_from_slice(dat);
    len
}
