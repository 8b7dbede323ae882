//! Dat verification in the protocol's order, cheapest first: work bits, time, work hash, signature.
//! The checks themselves (`check_work_fields`, `check_signature`) serve v2 records too
//! (`pow::record2`): the versions differ only in the hashes.
//!
//! Signature policy: the node verifies each signature with RFC 8032 `verify` (cofactorless), the
//! same equation as the reference's Go `crypto/ed25519`, so a dave node accepts exactly what a
//! reference node accepts. [`verify_signatures`] can batch (about 2x cheaper per signature, see
//! `benches/pow.rs`); batch verification uses the cofactored equation, which can disagree with
//! `verify` on crafted signatures, so a batch is only trusted when it passes *and* no key in it is
//! weak (small order); a failing batch falls back to verifying each signature singly, so one bad
//! signature never condemns the honest ones beside it.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use crate::keys::verify_signature;
use crate::pow::{KeyCache, leading_zero_bits, load_hash, work_hash};
use crate::wire::Dat;

/// Why a dat was refused, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerifyError {
    /// Fewer leading zero bits than the node's minimum.
    NotEnoughWork,
    /// Its time is later than the receiver's clock.
    FromTheFuture,
    /// `blake3(salt ‖ blake3(key ‖ value ‖ time))` is not the work field.
    WorkMismatch,
    /// The Ed25519 signature over the work does not verify.
    BadSignature,
}

impl VerifyError {
    /// Short snake_case name, used as a metrics label.
    pub fn name(self) -> &'static str {
        match self {
            VerifyError::NotEnoughWork => "not_enough_work",
            VerifyError::FromTheFuture => "from_the_future",
            VerifyError::WorkMismatch => "work_mismatch",
            VerifyError::BadSignature => "bad_signature",
        }
    }
}

impl core::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for VerifyError {}

/// Every check except the signature: work bits, time, work hash. Two BLAKE3 hashes at most.
pub fn check_work<T: AsRef<[u8]>>(
    dat: &Dat<T>,
    min_work_bits: u32,
    now_ms: i64,
) -> Result<(), VerifyError> {
    check_work_fields(dat.work(), dat.time_ms(), min_work_bits, now_ms, || {
        let load = load_hash(dat.key(), dat.value(), dat.time_ms());
        let mut salt = [0u8; 16];
        salt.copy_from_slice(dat.salt());
        work_hash(&salt, &load)
    })
}

/// The checks before the signature, shared by v1 and v2 in the protocol's order: the `work`
/// field's leading zero bits, the record's time against the receiver's clock, then the work the
/// record's fields hash to (`expected_work`, called only if the first two pass) against `work`.
#[inline]
pub(super) fn check_work_fields(
    work: &[u8; 32],
    time_ms: i64,
    min_work_bits: u32,
    now_ms: i64,
    expected_work: impl FnOnce() -> [u8; 32],
) -> Result<(), VerifyError> {
    if leading_zero_bits(work) < min_work_bits {
        return Err(VerifyError::NotEnoughWork);
    }
    if time_ms > now_ms {
        return Err(VerifyError::FromTheFuture);
    }
    if expected_work() != *work {
        return Err(VerifyError::WorkMismatch);
    }
    Ok(())
}

/// The last check of v1 and v2: the owner's Ed25519 signature over the work (RFC 8032 `verify`).
#[inline]
pub(super) fn check_signature(
    pubkey: &[u8; 32],
    work: &[u8; 32],
    sig: &[u8; 64],
) -> Result<(), VerifyError> {
    if !verify_signature(pubkey, work, sig) {
        return Err(VerifyError::BadSignature);
    }
    Ok(())
}

/// Full verification in the protocol's order.
pub fn verify_dat<T: AsRef<[u8]>>(
    dat: &Dat<T>,
    min_work_bits: u32,
    now_ms: i64,
) -> Result<(), VerifyError> {
    check_work(dat, min_work_bits, now_ms)?;
    check_signature(dat.pubkey(), dat.work(), dat.sig())
}

/// How [`verify_signatures`] checks a set of signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// One RFC 8032 `verify` per signature (the reference's equation).
    Single,
    /// One batch; on failure, each singly.
    Batch,
}

/// Verifies the signatures of dats whose work already passed [`check_work`]; `ok[i]` tells dat i.
/// Owner keys are decoded through `keys` (a repeat owner's key is decoded once).
///
/// Panics if `ok` is shorter than `dats` (a caller bug).
pub fn verify_signatures<T: AsRef<[u8]>>(
    dats: &[Dat<T>],
    mode: SignatureCheck,
    ok: &mut [bool],
    keys: &mut KeyCache,
) {
    assert!(ok.len() >= dats.len());
    if mode == SignatureCheck::Batch && dats.len() > 1 && batch_passes(dats, keys) {
        ok[..dats.len()].fill(true);
        return;
    }
    for (dat, ok) in dats.iter().zip(ok.iter_mut()) {
        *ok = keys
            .key(dat.pubkey())
            .is_some_and(|(key, _)| verify_with_key(&key, dat.work(), dat.sig()));
    }
}

/// Largest batch verified in one call; bounds the stack arrays below.
const MAX_BATCH: usize = 64;

fn batch_passes<T: AsRef<[u8]>>(dats: &[Dat<T>], keys: &mut KeyCache) -> bool {
    if dats.len() > MAX_BATCH {
        return dats
            .chunks(MAX_BATCH)
            .all(|chunk| batch_passes(chunk, keys));
    }
    let mut points = Vec::with_capacity(dats.len());
    let mut sigs = Vec::with_capacity(dats.len());
    let mut messages: Vec<&[u8]> = Vec::with_capacity(dats.len());
    for dat in dats {
        let Some((key, weak)) = keys.key(dat.pubkey()) else {
            return false;
        };
        if weak {
            return false;
        }
        points.push(key);
        sigs.push(Signature::from_bytes(dat.sig()));
        messages.push(dat.work());
    }
    ed25519_dalek::verify_batch(&messages, &sigs, &points).is_ok()
}

/// Single verification with an already-decoded key (for callers that cache keys).
pub fn verify_with_key(key: &VerifyingKey, work: &[u8; 32], sig: &[u8; 64]) -> bool {
    key.verify(work, &Signature::from_bytes(sig)).is_ok()
}
