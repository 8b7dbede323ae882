//! The variable-length tail that a v1 dat and a v2 dat2 share, `K ‖ key ‖ V u16 ‖ value`: one
//! length check, one reader and one writer for both record versions, so they cannot drift apart.
//!
//! Both records end in this tail after a fixed part whose last byte is K; the versions differ
//! only in where K stands (`key_len_at`) and in the largest key + value they allow.
//!
//! GET, GET2, GET2_NONE and PUT2_STATUS end the same way without a value, `K ‖ key`; their one
//! length check is [`check_key_at_end`].

use crate::limits::MAX_KEY_LEN;
use crate::wire::{Error, Result};

/// Checks that `bytes` is exactly one record: a fixed part whose byte `key_len_at` is K, then
/// `key ‖ V u16 ‖ value` with key + value at most `max_key_value_len` bytes.
///
/// Refusals in this order: [`Error::TooShort`] (no room for the fixed part and V),
/// [`Error::KeyTruncated`], [`Error::ValueTooLong`], [`Error::ValueTruncated`],
/// [`Error::TrailingBytes`].
#[inline]
pub(crate) fn check_record_len(
    bytes: &[u8],
    key_len_at: usize,
    max_key_value_len: usize,
) -> Result<()> {
    let header_len = key_len_at + 3;
    if bytes.len() < header_len {
        return Err(Error::TooShort);
    }
    let key_len = bytes[key_len_at] as usize;
    let value_len_at = key_len_at + 1 + key_len;
    if value_len_at + 2 > bytes.len() {
        return Err(Error::KeyTruncated);
    }
    let value_len = u16::from_le_bytes([bytes[value_len_at], bytes[value_len_at + 1]]) as usize;
    if key_len + value_len > max_key_value_len {
        return Err(Error::ValueTooLong);
    }
    let end = header_len + key_len + value_len;
    if end > bytes.len() {
        return Err(Error::ValueTruncated);
    }
    if end < bytes.len() {
        return Err(Error::TrailingBytes);
    }
    Ok(())
}

/// Checks that `bytes` is exactly a message whose fixed part is `header_len` bytes, the last
/// one K, followed by the K-byte key: [`Error::TooShort`], [`Error::KeyTruncated`] or
/// [`Error::TrailingBytes`] if not. `header_len` must be at least 1.
#[inline]
pub(crate) fn check_key_at_end(bytes: &[u8], header_len: usize) -> Result<()> {
    if bytes.len() < header_len {
        return Err(Error::TooShort);
    }
    let end = header_len + bytes[header_len - 1] as usize;
    if end > bytes.len() {
        return Err(Error::KeyTruncated);
    }
    if end < bytes.len() {
        return Err(Error::TrailingBytes);
    }
    Ok(())
}

/// The key of a record that passed [`check_record_len`] with the same `key_len_at`.
#[inline]
pub(crate) fn record_key(bytes: &[u8], key_len_at: usize) -> &[u8] {
    let key_start = key_len_at + 1;
    &bytes[key_start..key_start + bytes[key_len_at] as usize]
}

/// The value of a record that passed [`check_record_len`] with the same `key_len_at`: all bytes
/// after the key and the 2-byte V.
#[inline]
pub(crate) fn record_value(bytes: &[u8], key_len_at: usize) -> &[u8] {
    &bytes[key_len_at + 3 + bytes[key_len_at] as usize..]
}

/// Whether a key and value fit a record: key at most 255 bytes, key + value at most
/// `max_key_value_len` bytes; [`Error::ValueTooLong`] if not.
#[inline]
pub(crate) fn check_key_value_len(
    key: &[u8],
    value: &[u8],
    max_key_value_len: usize,
) -> Result<()> {
    if key.len() > MAX_KEY_LEN || key.len() + value.len() > max_key_value_len {
        return Err(Error::ValueTooLong);
    }
    Ok(())
}

/// Writes `K ‖ key ‖ V u16 ‖ value` into `tail`, which must be exactly 3 + key + value bytes.
///
/// Panics if `tail` has another length (a caller bug). The caller checked the lengths with
/// [`check_key_value_len`], so K and V cannot wrap.
#[inline]
pub(crate) fn emit_record_tail(key: &[u8], value: &[u8], tail: &mut [u8]) {
    // Split at each variable-length field, so the writes need no further bounds checks.
    let (key_len, rest) = tail.split_at_mut(1);
    key_len[0] = key.len() as u8;
    let (key_bytes, rest) = rest.split_at_mut(key.len());
    key_bytes.copy_from_slice(key);
    let (value_len, value_bytes) = rest.split_at_mut(2);
    value_len.copy_from_slice(&(value.len() as u16).to_le_bytes());
    value_bytes.copy_from_slice(value);
}
