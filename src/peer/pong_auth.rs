//! How a PONG is signed and checked: [`PongAuth`], fixed when the peer table is built
//! ([`PeerConfig::pong_auth`](crate::peer::PeerConfig::pong_auth)).
//!
//! - [`PongAuth::Ed25519`] (the default, and the only mode the node uses): the protocol's
//!   `sig = Ed25519.sign(responder, blake3(challenge ‖ salt))`, checked against the PONG's public
//!   key.
//! - [`PongAuth::SimulatedMac`]: **for the simulator only** (`dave sim --fast-crypto`). A PONG
//!   costs one Ed25519 signature and one verification (~50 µs together), and every peer is pinged
//!   every second, so signatures are most of a large simulation's CPU time. This mode puts a keyed
//!   BLAKE3 MAC of the same hash in the first 32 bytes of the 64-byte signature field (the other
//!   32 are zero). The MAC key is derived from the responder's Ed25519 *secret* seed, and the
//!   checker looks it up by the PONG's public key in a [`MacKeyRegistry`] that the simulator
//!   fills with its nodes' keys. Code that holds only its own key pair (every simulated node, the
//!   adversaries included) can therefore make valid PONGs for its own key and no other, as with
//!   Ed25519: the security semantics inside the simulation are unchanged. It is not a signature
//!   (checking needs the signer's secret), so it has no place outside a simulation where one
//!   process holds every key.
//!
//! Both modes are allocation-free per PONG; the MAC mode costs two short BLAKE3 calls and a map
//! lookup.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::keys::{DecodedKey, Keypair, verify_signature};

/// `blake3::derive_key` context of the simulated MAC key.
const MAC_KEY_CONTEXT: &str = "dave 2026 simulator PONG MAC key v1";

/// How PONGs are signed and checked. See the module docs.
#[derive(Debug, Clone, Default)]
pub enum PongAuth {
    /// Ed25519, as the protocol says. The node always uses this.
    #[default]
    Ed25519,
    /// Simulation only: a keyed BLAKE3 MAC, checked with the keys in the registry.
    SimulatedMac(Arc<MacKeyRegistry>),
}

/// Equal modes: both Ed25519, or both MACs over the same registry (by identity).
impl PartialEq for PongAuth {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PongAuth::Ed25519, PongAuth::Ed25519) => true,
            (PongAuth::SimulatedMac(a), PongAuth::SimulatedMac(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for PongAuth {}

/// The simulated MAC key of a key pair: derived from its secret seed, so only the holder of the
/// key pair (or the registry it was registered with) knows it.
pub fn simulated_mac_key(keypair: &Keypair) -> [u8; 32] {
    let bytes = keypair.to_key_bytes();
    blake3::derive_key(MAC_KEY_CONTEXT, &bytes[..32])
}

/// Public key → simulated MAC key, for every node of a simulation (filled by the simulator as it
/// creates nodes; read by every node's peer table to check PONGs). Thread-safe, so a table that
/// holds it stays `Send`.
#[derive(Default)]
pub struct MacKeyRegistry {
    keys: RwLock<HashMap<[u8; 32], [u8; 32]>>,
}

impl fmt::Debug for MacKeyRegistry {
    /// Never prints a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacKeyRegistry({} keys)", self.len())
    }
}

impl MacKeyRegistry {
    /// An empty registry.
    pub fn new() -> MacKeyRegistry {
        MacKeyRegistry::default()
    }

    /// Registers `keypair`'s MAC key under its public key (again: no change).
    pub fn register(&self, keypair: &Keypair) {
        let key = simulated_mac_key(keypair);
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(keypair.public(), key);
    }

    /// Registered keys.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no key is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key_of(&self, pubkey: &[u8; 32]) -> Option<[u8; 32]> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(pubkey)
            .copied()
    }
}

/// A peer table's PONG signer and checker: the [`PongAuth`] with our own MAC key derived once.
#[derive(Debug)]
pub(crate) enum PongAuthenticator {
    Ed25519,
    SimulatedMac {
        own_key: [u8; 32],
        registry: Arc<MacKeyRegistry>,
    },
}

impl PongAuthenticator {
    /// The authenticator of `auth` for a table answering as `keypair`.
    pub(crate) fn new(auth: &PongAuth, keypair: &Keypair) -> PongAuthenticator {
        match auth {
            PongAuth::Ed25519 => PongAuthenticator::Ed25519,
            PongAuth::SimulatedMac(registry) => PongAuthenticator::SimulatedMac {
                own_key: simulated_mac_key(keypair),
                registry: Arc::clone(registry),
            },
        }
    }

    /// The signature field of our PONG over `hash` (`pong_signed_hash`).
    #[inline]
    pub(crate) fn sign(&self, keypair: &Keypair, hash: &[u8; 32]) -> [u8; 64] {
        match self {
            PongAuthenticator::Ed25519 => keypair.sign(hash),
            PongAuthenticator::SimulatedMac { own_key, .. } => mac_sig(own_key, hash),
        }
    }

    /// Whether `sig` is `pubkey`'s signature field over `hash`. `decoded`: the caller's decoded
    /// copy of a key it pinned, used (skipping the decoding) when it is `pubkey`.
    #[inline]
    pub(crate) fn verify(
        &self,
        decoded: Option<&DecodedKey>,
        pubkey: &[u8; 32],
        hash: &[u8; 32],
        sig: &[u8; 64],
    ) -> bool {
        match self {
            PongAuthenticator::Ed25519 => match decoded.filter(|key| key.as_bytes() == pubkey) {
                Some(key) => key.verify(hash, sig),
                None => verify_signature(pubkey, hash, sig),
            },
            PongAuthenticator::SimulatedMac { registry, .. } => {
                let Some(key) = registry.key_of(pubkey) else {
                    return false;
                };
                let mut mac = [0u8; 32];
                mac.copy_from_slice(&sig[..32]);
                // `blake3::Hash` compares in constant time.
                blake3::keyed_hash(&key, hash) == blake3::Hash::from(mac)
                    && sig[32..].iter().all(|&b| b == 0)
            }
        }
    }
}

/// `keyed_blake3(key, hash) ‖ 0³²`.
fn mac_sig(key: &[u8; 32], hash: &[u8; 32]) -> [u8; 64] {
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(blake3::keyed_hash(key, hash).as_bytes());
    sig
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_keys_come_from_the_secret_and_only_the_owner_signs() {
        let a = Keypair::from_seed(&[1; 32]);
        let b = Keypair::from_seed(&[2; 32]);
        assert_ne!(simulated_mac_key(&a), simulated_mac_key(&b));
        // Not derivable from the public key alone.
        assert_ne!(
            simulated_mac_key(&a),
            blake3::derive_key(MAC_KEY_CONTEXT, &a.public())
        );
        let registry = Arc::new(MacKeyRegistry::new());
        registry.register(&a);
        registry.register(&b);
        registry.register(&a);
        assert_eq!(registry.len(), 2);
        let auth = PongAuthenticator::new(&PongAuth::SimulatedMac(Arc::clone(&registry)), &a);
        let hash = [5u8; 32];
        let sig = auth.sign(&a, &hash);
        assert!(auth.verify(None, &a.public(), &hash, &sig));
        assert!(!auth.verify(None, &b.public(), &hash, &sig));
        assert!(!auth.verify(None, &a.public(), &[6u8; 32], &sig));
        let mut tail = sig;
        tail[63] = 1;
        assert!(!auth.verify(None, &a.public(), &hash, &tail));
        // An unregistered key never verifies; an Ed25519 signature is not a MAC.
        let c = Keypair::from_seed(&[3; 32]);
        let c_auth = PongAuthenticator::new(&PongAuth::SimulatedMac(Arc::clone(&registry)), &c);
        assert!(!auth.verify(None, &c.public(), &hash, &c_auth.sign(&c, &hash)));
        assert!(!auth.verify(None, &a.public(), &hash, &a.sign(&hash)));
        // And the other way round.
        let ed = PongAuthenticator::new(&PongAuth::Ed25519, &a);
        assert!(ed.verify(None, &a.public(), &hash, &a.sign(&hash)));
        assert!(!ed.verify(None, &a.public(), &hash, &sig));
        // A decoded key is used only for its own bytes: another's falls back to the PONG's key.
        let a_key = DecodedKey::decode(&a.public()).unwrap();
        let b_key = DecodedKey::decode(&b.public()).unwrap();
        assert!(ed.verify(Some(&a_key), &a.public(), &hash, &a.sign(&hash)));
        assert!(!ed.verify(Some(&a_key), &a.public(), &hash, &b.sign(&hash)));
        assert!(ed.verify(Some(&b_key), &a.public(), &hash, &a.sign(&hash)));
        assert!(!ed.verify(Some(&a_key), &b.public(), &hash, &a.sign(&hash)));
        assert!(
            auth.verify(Some(&b_key), &a.public(), &hash, &sig),
            "the MAC ignores it"
        );
        assert_eq!(
            PongAuth::SimulatedMac(Arc::clone(&registry)),
            PongAuth::SimulatedMac(registry)
        );
        assert_ne!(
            PongAuth::SimulatedMac(Arc::new(MacKeyRegistry::new())),
            PongAuth::Ed25519
        );
        assert!(!format!("{:?}", PongAuth::default()).is_empty());
    }
}
