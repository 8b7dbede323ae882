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

/// Most signatures [`verify_batch`] takes in one call: bounds the work and the allocation of one
/// call (a PONG batch is what waits in the peer thread's channel, at most 64).
pub const MAX_VERIFY_BATCH: usize = 64;

/// A public key decoded to its curve point once, for the many signatures of one signer (a
/// pinned peer's PONGs, one a second): decoding is a square root in the field, about 2.8 µs of
/// a batched check's ~19 µs (`cargo bench --bench peer -- pong_check`). Checks with it give
/// exactly what [`verify_signature`] gives with its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DecodedKey(VerifyingKey);

impl fmt::Debug for DecodedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DecodedKey({:02x?})", &self.0.as_bytes()[..8])
    }
}

impl DecodedKey {
    /// `pubkey` decoded; `None` if the bytes are not a point (such a key verifies nothing).
    pub fn decode(pubkey: &[u8; 32]) -> Option<DecodedKey> {
        VerifyingKey::from_bytes(pubkey).ok().map(DecodedKey)
    }

    /// The 32 bytes it was decoded from.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Whether the point is of small order ("weak": any signature verifies for it under the
    /// cofactorless check); [`verify_batch`] refuses a batch holding one.
    pub fn is_weak(&self) -> bool {
        self.0.is_weak()
    }

    /// [`verify_signature`] with this key.
    pub fn verify(&self, message: &[u8], sig: &[u8; 64]) -> bool {
        self.0.verify(message, &Signature::from_bytes(sig)).is_ok()
    }
}

/// One signature to check in a batch: `sig` by `key` over `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedMessage<'a> {
    /// The signer's public key, decoded.
    pub key: &'a DecodedKey,
    /// What was signed.
    pub message: &'a [u8],
    /// The signature.
    pub sig: &'a [u8; 64],
}

/// Whether every signature of `batch` verifies, checked together (Ed25519 batch verification:
/// one multiscalar multiplication, about half the cost per signature of [`verify_signature`] at
/// 16 or more). `true` means each signer's key made its signature; `false` means at least one
/// did not verify, or a key is of small order ("weak", where any signature would verify), or
/// the batch is empty or longer than [`MAX_VERIFY_BATCH`]: the caller then checks them one by
/// one. A signature that passes [`verify_signature`] always passes here; the batch equation may
/// also accept a signature its key's holder altered by a small-order component, which single
/// verification refuses (still only its key's holder can make it).
pub fn verify_batch(batch: &[SignedMessage<'_>]) -> bool {
    if batch.is_empty() || batch.len() > MAX_VERIFY_BATCH || batch.iter().any(|s| s.key.is_weak()) {
        return false;
    }
    let keys: Vec<VerifyingKey> = batch.iter().map(|s| s.key.0).collect();
    let sigs: Vec<Signature> = batch.iter().map(|s| Signature::from_bytes(s.sig)).collect();
    let messages: Vec<&[u8]> = batch.iter().map(|s| s.message).collect();
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
        let signed: Vec<(DecodedKey, [u8; 32], [u8; 64])> = (0..MAX_VERIFY_BATCH + 1)
            .map(|i| {
                let pair = Keypair::from_seed(&[i as u8 + 1; 32]);
                let message = [i as u8; 32];
                let key = DecodedKey::decode(&pair.public()).unwrap();
                (key, message, pair.sign(&message))
            })
            .collect();
        fn batch(signed: &[(DecodedKey, [u8; 32], [u8; 64])]) -> Vec<SignedMessage<'_>> {
            signed
                .iter()
                .map(|(key, message, sig)| SignedMessage { key, message, sig })
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
        let mut weak_bytes = [0u8; 32];
        weak_bytes[0] = 1;
        let weak_key = DecodedKey::decode(&weak_bytes).unwrap();
        assert!(weak_key.is_weak());
        let mut weak_sig = [0u8; 64];
        weak_sig[0] = 1;
        let message = [3u8; 32];
        assert!(
            weak_key.verify(&message, &weak_sig),
            "why a batch refuses it"
        );
        let mut with_weak = batch(&signed[..4]);
        with_weak.push(SignedMessage {
            key: &weak_key,
            message: &message,
            sig: &weak_sig,
        });
        assert!(!verify_batch(&with_weak));
        assert!(!signed[0].0.is_weak());
        // Not a point at all: the first small y with no x on the curve.
        let not_a_point = (2u8..=255)
            .map(|y| {
                let mut bytes = [0u8; 32];
                bytes[0] = y;
                bytes
            })
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .expect("about half of all y have no point");
        assert!(DecodedKey::decode(&not_a_point).is_none());
    }

    #[test]
    fn a_decoded_key_checks_exactly_what_its_bytes_check() {
        let pair = Keypair::from_seed(&[9; 32]);
        let key = DecodedKey::decode(&pair.public()).unwrap();
        assert_eq!(key.as_bytes(), &pair.public());
        let other = Keypair::from_seed(&[10; 32]);
        for i in 0..32u8 {
            let message = [i; 32];
            let mut sig = if i % 3 == 0 {
                other.sign(&message)
            } else {
                pair.sign(&message)
            };
            if i % 5 == 1 {
                sig[usize::from(i)] ^= 0x40;
            }
            assert_eq!(
                key.verify(&message, &sig),
                verify_signature(&pair.public(), &message, &sig),
                "message {i}"
            );
        }
        assert!(key.verify(&[2; 32], &pair.sign(&[2; 32])));
    }
}
