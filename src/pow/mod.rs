//! Proof-of-work: the leading-zero-bit count, the work hash, the search, and dat verification.
//!
//! ```text
//! load = blake3(key ‖ value ‖ time8)          time8 = Unix ms, i64 LE
//! work = blake3(salt16 ‖ load)                 needs ≥ d leading zero bits
//! sig  = Ed25519.sign(owner, work)
//! ```
//!
//! The single-thread search visits salts in the reference's order (`salt[0..8] = 0`,
//! `salt[8..16] = n` LE for n = 0, 1, 2, …), so it finds the same salts as the test vectors.

mod key_cache;
mod pool;
pub mod record2;
mod verify;

pub use key_cache::{KEY_CACHE_SLOTS, KeyCache};
pub use pool::{PowPool, SearchOutcome, WorkKind};
pub use record2::{
    check_work2, commit2_hash, load2_hash, make_dat2_single, sign_commit2, sign_dat2,
    verify_commit2, verify_dat2, work2_hash,
};
pub use verify::{
    SignatureCheck, VerifyError, check_work, verify_dat, verify_signatures, verify_with_key,
};

use crate::keys::Keypair;
use crate::wire::{Dat, DatFields};

/// Leading zero bits of a hash, counted from the most significant bit of byte 0.
#[inline]
pub fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for chunk in hash.chunks_exact(8) {
        let word = u64::from_be_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        bits += word.leading_zeros();
        if word != 0 {
            break;
        }
    }
    bits
}

/// `blake3(key ‖ value ‖ time8)`.
pub fn load_hash(key: &[u8], value: &[u8], time_ms: i64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(key);
    h.update(value);
    h.update(&time_ms.to_le_bytes());
    *h.finalize().as_bytes()
}

/// `blake3(salt ‖ load)`.
#[inline]
pub fn work_hash(salt: &[u8; 16], load: &[u8; 32]) -> [u8; 32] {
    *blake3::hash(&work_input(salt, load)).as_bytes()
}

/// `salt ‖ load`: the 48 bytes that the v1 work hash and the v2 work hash (`record2`) hash.
#[inline]
fn work_input(salt: &[u8; 16], load: &[u8; 32]) -> [u8; 48] {
    let mut input = [0u8; 48];
    input[..16].copy_from_slice(salt);
    input[16..].copy_from_slice(load);
    input
}

/// Salt for counter `n` in the reference's order: eight zero bytes, then `n` LE.
#[inline]
pub fn salt_for_counter(n: u64) -> [u8; 16] {
    let mut salt = [0u8; 16];
    salt[8..].copy_from_slice(&n.to_le_bytes());
    salt
}

/// Searches counters `start, start+1, …` for at most `count` steps; returns the first salt whose
/// work has `difficulty_bits` leading zero bits, with its work.
#[inline]
pub fn search_range(
    load: &[u8; 32],
    difficulty_bits: u32,
    start: u64,
    count: u64,
) -> Option<([u8; 16], [u8; 32])> {
    search_counters(load, difficulty_bits, start, count, blake3::hash)
}

/// Single-thread search in the reference's order; finds the vectors' salts again.
pub fn search_single(load: &[u8; 32], difficulty_bits: u32) -> ([u8; 16], [u8; 32]) {
    search_from_zero(|start, count| search_range(load, difficulty_bits, start, count))
}

/// The search loop of v1 and v2: counters `start, start+1, …` for at most `count` steps, salts
/// in the reference's order; the first salt whose work, `work_hash(salt ‖ load)`, has
/// `difficulty_bits` leading zero bits, with that work.
#[inline]
fn search_counters(
    load: &[u8; 32],
    difficulty_bits: u32,
    start: u64,
    count: u64,
    work_hash: impl Fn(&[u8]) -> blake3::Hash,
) -> Option<([u8; 16], [u8; 32])> {
    let mut input = [0u8; 48];
    input[16..].copy_from_slice(load);
    for n in start..start.saturating_add(count) {
        input[8..16].copy_from_slice(&n.to_le_bytes());
        let work = work_hash(&input);
        if leading_zero_bits(work.as_bytes()) >= difficulty_bits {
            return Some((salt_for_counter(n), *work.as_bytes()));
        }
    }
    None
}

/// The single-thread search of v1 and v2: `search_range(start, count)` over chunks of 2^20
/// counters from counter 0 until one finds a salt (deterministic: the vectors' salts).
fn search_from_zero(
    search_range: impl Fn(u64, u64) -> Option<([u8; 16], [u8; 32])>,
) -> ([u8; 16], [u8; 32]) {
    const STEP: u64 = 1 << 20;
    let mut start = 0u64;
    loop {
        if let Some(found) = search_range(start, STEP) {
            return found;
        }
        start += STEP;
    }
}

/// Builds a complete, signed dat on the calling thread (small difficulties, tests, tools).
pub fn make_dat_single(
    owner: &Keypair,
    key: &[u8],
    value: &[u8],
    time_ms: i64,
    difficulty_bits: u32,
) -> Dat<Box<[u8]>> {
    let load = load_hash(key, value, time_ms);
    let (salt, work) = search_single(&load, difficulty_bits);
    sign_dat(owner, key, value, time_ms, salt, work)
}

/// Signs found work and assembles the dat.
pub fn sign_dat(
    owner: &Keypair,
    key: &[u8],
    value: &[u8],
    time_ms: i64,
    salt: [u8; 16],
    work: [u8; 32],
) -> Dat<Box<[u8]>> {
    DatFields {
        time_ms,
        salt,
        work,
        sig: owner.sign(&work),
        pubkey: owner.public(),
        key,
        value,
    }
    .to_dat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bits_counts_from_the_top_of_byte_zero() {
        let mut h = [0u8; 32];
        assert_eq!(leading_zero_bits(&h), 256);
        h[0] = 0x80;
        assert_eq!(leading_zero_bits(&h), 0);
        h[0] = 0x01;
        assert_eq!(leading_zero_bits(&h), 7);
        h[0] = 0;
        h[2] = 0x10;
        assert_eq!(leading_zero_bits(&h), 19);
        h = [0; 32];
        h[31] = 1;
        assert_eq!(leading_zero_bits(&h), 255);
    }
}
