//! Proof-of-work, signing and verification of v2 records (layout: `src/wire/record2.rs`).
//!
//! ```text
//! load2  = blake3_keyed(LOAD2_KEY, pubkey ‖ K ‖ key ‖ V u16 ‖ value ‖ time i64 ‖ seq u64)
//! work2  = blake3_keyed(WORK2_KEY, salt16 ‖ load2)       needs ≥ d leading zero bits
//! sig    = Ed25519.sign(owner, work2)
//! commit = Ed25519.sign(owner, blake3_keyed(COMMIT2_KEY, work2))
//! ```
//!
//! Verification runs cheapest first: the lengths were checked by the parser, then the work's
//! leading zero bits (no hashing), the time, the two keyed hashes, and last the signature.

use crate::keys::{Keypair, verify_signature};
use crate::pow::verify::{check_signature, check_work_fields};
use crate::pow::{VerifyError, search_counters, search_from_zero, work_input};
use crate::wire::record2::{COMMIT2_KEY, Dat2, Dat2Fields, LOAD2_KEY, Record2, WORK2_KEY};

/// `load2`: commits to the owner, the key and the value with their lengths, the time and seq.
///
/// Panics if `key` is over 255 bytes or `value` over 65535 (callers check lengths first).
pub fn load2_hash(pubkey: &[u8; 32], key: &[u8], value: &[u8], time_ms: i64, seq: u64) -> [u8; 32] {
    assert!(key.len() <= u8::MAX as usize && value.len() <= u16::MAX as usize);
    let mut h = blake3::Hasher::new_keyed(&LOAD2_KEY);
    h.update(pubkey);
    h.update(&[key.len() as u8]);
    h.update(key);
    h.update(&(value.len() as u16).to_le_bytes());
    h.update(value);
    h.update(&time_ms.to_le_bytes());
    h.update(&seq.to_le_bytes());
    *h.finalize().as_bytes()
}

/// `work2 = blake3_keyed(WORK2_KEY, salt ‖ load2)`.
#[inline]
pub fn work2_hash(salt: &[u8; 16], load: &[u8; 32]) -> [u8; 32] {
    *blake3::keyed_hash(&WORK2_KEY, &work_input(salt, load)).as_bytes()
}

/// The hash a commit signature signs: `blake3_keyed(COMMIT2_KEY, work2)`.
pub fn commit2_hash(work: &[u8; 32]) -> [u8; 32] {
    *blake3::keyed_hash(&COMMIT2_KEY, work).as_bytes()
}

/// Searches counters `start..start + count` (salts in the v1 order: eight zero bytes, then the
/// counter LE) for a `work2` with `difficulty_bits` leading zero bits.
pub fn search2_range(
    load: &[u8; 32],
    difficulty_bits: u32,
    start: u64,
    count: u64,
) -> Option<([u8; 16], [u8; 32])> {
    search_counters(load, difficulty_bits, start, count, |input| {
        blake3::keyed_hash(&WORK2_KEY, input)
    })
}

/// Single-thread search from counter 0 (deterministic: the vectors' salts).
pub fn search2_single(load: &[u8; 32], difficulty_bits: u32) -> ([u8; 16], [u8; 32]) {
    search_from_zero(|start, count| search2_range(load, difficulty_bits, start, count))
}

/// Signs found work and assembles the dat2. Panics if key/value are too long (caller checks).
pub fn sign_dat2(
    owner: &Keypair,
    key: &[u8],
    value: &[u8],
    time_ms: i64,
    seq: u64,
    salt: [u8; 16],
    work: [u8; 32],
) -> Record2 {
    Dat2Fields {
        time_ms,
        seq,
        salt,
        work,
        sig: owner.sign(&work),
        pubkey: owner.public(),
        key,
        value,
    }
    .to_record()
}

/// Builds a complete, signed dat2 on the calling thread (tests, tools, small difficulties).
pub fn make_dat2_single(
    owner: &Keypair,
    key: &[u8],
    value: &[u8],
    time_ms: i64,
    seq: u64,
    difficulty_bits: u32,
) -> Record2 {
    let load = load2_hash(&owner.public(), key, value, time_ms, seq);
    let (salt, work) = search2_single(&load, difficulty_bits);
    sign_dat2(owner, key, value, time_ms, seq, salt, work)
}

/// The owner's commit signature for a record (`PUT2_COMMIT`).
pub fn sign_commit2(owner: &Keypair, work: &[u8; 32]) -> [u8; 64] {
    owner.sign(&commit2_hash(work))
}

/// Every check but the signature: work bits, time, then the two keyed hashes.
pub fn check_work2<T: AsRef<[u8]>>(
    dat: &Dat2<T>,
    min_work_bits: u32,
    now_ms: i64,
) -> Result<(), VerifyError> {
    check_work_fields(dat.work(), dat.time_ms(), min_work_bits, now_ms, || {
        let load = load2_hash(
            dat.pubkey(),
            dat.key(),
            dat.value(),
            dat.time_ms(),
            dat.seq(),
        );
        work2_hash(&dat.salt(), &load)
    })
}

/// Full verification of a dat2, cheapest first.
pub fn verify_dat2<T: AsRef<[u8]>>(
    dat: &Dat2<T>,
    min_work_bits: u32,
    now_ms: i64,
) -> Result<(), VerifyError> {
    check_work2(dat, min_work_bits, now_ms)?;
    check_signature(dat.pubkey(), dat.work(), dat.sig())
}

/// Whether `commit` is the owner's commit signature over this dat2's work (the dat2 itself must
/// be verified separately).
pub fn verify_commit2<T: AsRef<[u8]>>(dat: &Dat2<T>, commit: &[u8; 64]) -> bool {
    verify_signature(dat.pubkey(), &commit2_hash(dat.work()), commit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::record2::Dat2;

    fn owner() -> Keypair {
        Keypair::from_seed(&[7; 32])
    }

    #[test]
    fn a_made_record_verifies_and_every_field_is_covered() {
        let owner = owner();
        let dat = make_dat2_single(&owner, b"config", b"Xsafe=true", 1_000, 3, 6);
        assert_eq!(verify_dat2(&dat, 6, 2_000), Ok(()));
        assert_eq!(verify_dat2(&dat, 6, 999), Err(VerifyError::FromTheFuture));
        // Flip each byte outside the work and signature: the work no longer matches (or, for
        // the pubkey, the signature), whatever the field.
        let bytes = dat.as_bytes();
        for i in 0..bytes.len() {
            if (32..128).contains(&i) {
                continue;
            }
            let mut changed = bytes.to_vec();
            changed[i] ^= 0x01;
            let Ok(view) = Dat2::new_checked(&changed[..]) else {
                continue;
            };
            assert!(
                verify_dat2(&view, 0, i64::MAX).is_err(),
                "byte {i} not covered"
            );
        }
    }

    #[test]
    fn a_recut_boundary_is_refused() {
        let owner = owner();
        let dat = make_dat2_single(&owner, b"config", b"Xsafe=true", 1_000, 1, 4);
        let mut recut = dat.fields();
        recut.key = b"configX";
        recut.value = b"safe=true";
        let recut = recut.to_record();
        assert_eq!(
            verify_dat2(&recut, 0, i64::MAX),
            Err(VerifyError::WorkMismatch)
        );
    }

    #[test]
    fn a_commit_verifies_only_for_its_record() {
        let owner = owner();
        let a = make_dat2_single(&owner, b"k", b"a", 1, 2, 0);
        let b = make_dat2_single(&owner, b"k", b"b", 1, 2, 0);
        let commit = sign_commit2(&owner, a.work());
        assert!(verify_commit2(&a, &commit));
        assert!(!verify_commit2(&b, &commit));
        // A record signature is never a commit signature.
        assert!(!verify_commit2(&a, a.sig()));
    }

    #[test]
    fn v1_and_v2_work_differ_for_the_same_salt_and_load() {
        let load = [5u8; 32];
        let salt = [6u8; 16];
        assert_ne!(
            work2_hash(&salt, &load),
            crate::pow::work_hash(&salt, &load)
        );
    }
}
