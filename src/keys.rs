//! Identities: Ed25519 key pairs, node/owner IDs, XOR distance, and the reference's key file.
//!
//! The key file is 64 bytes: the 32-byte seed followed by the 32-byte public key (Go's
//! `ed25519.PrivateKey`). Loading checks that the public half matches the seed.

use std::fmt;
use std::io;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// Length of the reference's private-key file.
pub const KEY_FILE_LEN: usize = 64;

/// A node's or data owner's identity.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keypair(")?;
        for byte in self.public() {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// Why a key file could not be used.
#[derive(Debug)]
pub enum KeyFileError {
    /// The file could not be read or written.
    Io(io::Error),
    /// Not 64 bytes.
    WrongLength(usize),
    /// The public half does not belong to the seed.
    PublicKeyMismatch,
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Io(e) => write!(f, "{e}"),
            KeyFileError::WrongLength(n) => {
                write!(
                    f,
                    "key file is {n} bytes; expected {KEY_FILE_LEN} (seed ‖ public key)"
                )
            }
            KeyFileError::PublicKeyMismatch => {
                f.write_str("key file's public key does not match its seed")
            }
        }
    }
}

impl std::error::Error for KeyFileError {}

impl From<io::Error> for KeyFileError {
    fn from(e: io::Error) -> Self {
        KeyFileError::Io(e)
    }
}

impl Keypair {
    /// A fresh random identity.
    pub fn generate() -> Keypair {
        Keypair {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The identity for a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// Parses the reference's 64-byte form (seed ‖ public key).
    pub fn from_key_bytes(bytes: &[u8]) -> Result<Keypair, KeyFileError> {
        if bytes.len() != KEY_FILE_LEN {
            return Err(KeyFileError::WrongLength(bytes.len()));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[..32]);
        let pair = Keypair::from_seed(&seed);
        if pair.public() != bytes[32..] {
            return Err(KeyFileError::PublicKeyMismatch);
        }
        Ok(pair)
    }

    /// The reference's 64-byte form (seed ‖ public key).
    pub fn to_key_bytes(&self) -> [u8; KEY_FILE_LEN] {
        let mut out = [0u8; KEY_FILE_LEN];
        out[..32].copy_from_slice(&self.signing.to_bytes());
        out[32..].copy_from_slice(&self.public());
        out
    }

    /// Reads a key file.
    pub fn read_file(path: &Path) -> Result<Keypair, KeyFileError> {
        Keypair::from_key_bytes(&std::fs::read(path)?)
    }

    /// Writes a key file with mode 0600. Refuses to replace an existing file unless `overwrite`.
    pub fn write_file(&self, path: &Path, overwrite: bool) -> Result<(), KeyFileError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).mode(0o600);
        if overwrite {
            opts.create(true).truncate(true);
        } else {
            opts.create_new(true);
        }
        let mut file = opts.open(path)?;
        file.write_all(&self.to_key_bytes())?;
        file.sync_all()?;
        Ok(())
    }

    /// The 32-byte public key.
    pub fn public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The node/owner ID of this identity.
    pub fn id(&self) -> u64 {
        id_from_pubkey(&self.public())
    }

    /// Signs a message (a 32-byte work hash or PONG hash in this protocol).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

/// ID of a public key: its first 8 bytes as a little-endian u64.
pub fn id_from_pubkey(pubkey: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&pubkey[..8]);
    u64::from_le_bytes(first)
}

/// XOR distance between two IDs; smaller is closer.
pub fn distance(a: u64, b: u64) -> u64 {
    a ^ b
}

/// Verifies an Ed25519 signature the way the reference does (RFC 8032 `verify`, cofactorless,
/// as Go's `crypto/ed25519`). A public key that does not decode fails.
pub fn verify_signature(pubkey: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    match VerifyingKey::from_bytes(pubkey) {
        Ok(key) => key.verify(message, &Signature::from_bytes(sig)).is_ok(),
        Err(_) => false,
    }
}

/// Whether `pubkey` does not decode to a point, or decodes to one of small order ("weak": any
/// signature verifies for it under the cofactorless check). [`verify_batch`] refuses a batch
/// holding one.
pub fn is_small_order(pubkey: &[u8; 32]) -> bool {
    VerifyingKey::from_bytes(pubkey).map_or(true, |key| key.is_weak())
}

/// Most signatures [`verify_batch`] takes in one call; bounds its stack arrays.
pub const MAX_VERIFY_BATCH: usize = 64;

/// One signature to check in a batch: `sig` by `pubkey` over `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedMessage<'a> {
    /// The signer's public key.
    pub pubkey: &'a [u8; 32],
    /// What was signed.
    pub message: &'a [u8],
    /// The signature.
    pub sig: &'a [u8; 64],
}

/// Whether every signature of `batch` verifies, checked together (Ed25519 batch verification:
/// one multiscalar multiplication, about half the cost per signature of [`verify_signature`] at
/// 16 or more). `true` means each signer's key made its signature; `false` means at least one
/// did not verify, or a key does not decode, is of small order ("weak", where any signature
/// would verify), or the batch is empty or longer than [`MAX_VERIFY_BATCH`]: the caller then
/// checks them one by one. A signature that passes [`verify_signature`] always passes here; the
/// batch equation may also accept a signature its key's holder altered by a small-order
/// component, which single verification refuses (still only its key's holder can make it).
pub fn verify_batch(batch: &[SignedMessage<'_>]) -> bool {
    if batch.is_empty() || batch.len() > MAX_VERIFY_BATCH {
        return false;
    }
    let mut keys = Vec::with_capacity(batch.len());
    let mut sigs = Vec::with_capacity(batch.len());
    let mut messages: Vec<&[u8]> = Vec::with_capacity(batch.len());
    for item in batch {
        let Ok(key) = VerifyingKey::from_bytes(item.pubkey) else {
            return false;
        };
        if key.is_weak() {
            return false;
        }
        keys.push(key);
        sigs.push(Signature::from_bytes(item.sig));
        messages.push(item.message);
    }
    ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips_and_checks_the_public_half() {
        let pair = Keypair::from_seed(&[1; 32]);
        let bytes = pair.to_key_bytes();
        assert_eq!(
            Keypair::from_key_bytes(&bytes).unwrap().public(),
            pair.public()
        );
        let mut bad = bytes;
        bad[40] ^= 1;
        assert!(matches!(
            Keypair::from_key_bytes(&bad),
            Err(KeyFileError::PublicKeyMismatch)
        ));
        assert!(matches!(
            Keypair::from_key_bytes(&bytes[..63]),
            Err(KeyFileError::WrongLength(63))
        ));
    }

    #[test]
    fn key_file_is_private_and_not_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let pair = Keypair::generate();
        pair.write_file(&path, false).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(Keypair::generate().write_file(&path, false).is_err());
        assert_eq!(Keypair::read_file(&path).unwrap().public(), pair.public());
    }

    #[test]
    fn a_batch_verifies_only_when_every_signature_does() {
        let signed: Vec<([u8; 32], [u8; 32], [u8; 64])> = (0..MAX_VERIFY_BATCH + 1)
            .map(|i| {
                let pair = Keypair::from_seed(&[i as u8 + 1; 32]);
                let message = [i as u8; 32];
                (pair.public(), message, pair.sign(&message))
            })
            .collect();
        fn batch(signed: &[([u8; 32], [u8; 32], [u8; 64])]) -> Vec<SignedMessage<'_>> {
            signed
                .iter()
                .map(|(pubkey, message, sig)| SignedMessage {
                    pubkey,
                    message,
                    sig,
                })
                .collect()
        }
        assert!(verify_batch(&batch(&signed[..1])));
        assert!(verify_batch(&batch(&signed[..MAX_VERIFY_BATCH])));
        assert!(!verify_batch(&batch(&signed)), "longer than a batch");
        assert!(!verify_batch(&[]), "empty");
        for bad in [0, 7, 19] {
            let mut tampered = signed[..20].to_vec();
            tampered[bad].2[5] ^= 1;
            assert!(!verify_batch(&batch(&tampered)), "bad signature {bad}");
            let mut swapped = signed[..20].to_vec();
            swapped[bad].1 = [0xee; 32];
            assert!(!verify_batch(&batch(&swapped)), "other message {bad}");
        }
        // A small-order key: the identity point (y = 1). Any signature with R = identity and
        // s = 0 verifies for it under the cofactorless equation; a batch refuses it whole.
        let mut weak_key = [0u8; 32];
        weak_key[0] = 1;
        assert!(is_small_order(&weak_key));
        let mut weak_sig = [0u8; 64];
        weak_sig[0] = 1;
        let message = [3u8; 32];
        let mut with_weak = batch(&signed[..4]);
        with_weak.push(SignedMessage {
            pubkey: &weak_key,
            message: &message,
            sig: &weak_sig,
        });
        assert!(!verify_batch(&with_weak));
        assert!(!is_small_order(&signed[0].0));
        // Not a point at all: the first small y with no x on the curve.
        let not_a_point = (2u8..=255)
            .map(|y| {
                let mut bytes = [0u8; 32];
                bytes[0] = y;
                bytes
            })
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .expect("about half of all y have no point");
        assert!(is_small_order(&not_a_point));
    }
}
