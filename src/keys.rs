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
}
