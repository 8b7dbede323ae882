//! Extension discovery: how two dave nodes learn which protocol extensions the other speaks,
//! without a single byte a v1 node receives changing (`/work/coord/EXTENSION.md`, README "Wire
//! compatibility").
//!
//! The carrier is the 16-byte `salt` of a PONG. v1 nodes choose it at random and only feed it to
//! the signature (`sig = sign(blake3(challenge ‖ salt))`), so a dave node may put structured bytes
//! there and a v1 node cannot tell them from random ones. Because the salt is signed, the
//! advertised set is authenticated by the responder's pinned key.
//!
//! ```text
//! salt[0..8]    nonce     8 random bytes (keeps the salt unpredictable)
//! salt[8..12]   features  u32 little-endian bit set: bit 0 ROUTING (ops 0x10..=0x17),
//!                                                    bit 1 RECORD_V2 (ops 0x18..=0x1f)
//! salt[12..16]  tag       blake3("dave-ext-v1" ‖ salt[0..12])[0..4]
//! ```
//!
//! A salt whose tag does not match means "v1 only". A v1 node's random salt matches by chance
//! with probability 2^-32, and then at worst we send it extension datagrams it ignores (the Go
//! reference drops unknown ops without an answer).

use crate::wire::Field;

/// Offsets inside the 16-byte PONG salt.
pub mod field {
    use crate::wire::Field;
    /// Random nonce.
    pub const NONCE: Field = 0..8;
    /// Feature bits, u32 little-endian.
    pub const FEATURES: Field = 8..12;
    /// Truncated BLAKE3 tag over `NONCE ‖ FEATURES`.
    pub const TAG: Field = 12..16;
}

/// Length of a PONG salt.
pub const SALT_LEN: usize = 16;

/// Domain-separation prefix of the tag hash.
pub const TAG_CONTEXT: &[u8] = b"dave-ext-v1";

/// Bytes covered by the tag (nonce and features).
const TAGGED: Field = 0..12;

const _: () = assert!(field::TAG.end == SALT_LEN);
const _: () = assert!(TAGGED.end == field::TAG.start);

/// A set of protocol extensions (the PONG salt's feature bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Features(u32);

impl Features {
    /// No extension: a v1-only node.
    pub const NONE: Features = Features(0);
    /// Bit 0: routing at scale (issue 12), ops 0x10..=0x17.
    pub const ROUTING: Features = Features(1 << 0);
    /// Bit 1: v2 records (issue 16), ops 0x18..=0x1f.
    pub const RECORD_V2: Features = Features(1 << 1);
    /// Every extension this build knows: what a node advertises by default.
    pub const ALL: Features = Features(Self::ROUTING.0 | Self::RECORD_V2.0);

    /// The set with exactly these bits (unknown bits are kept: a newer peer may set them).
    pub const fn from_bits(bits: u32) -> Features {
        Features(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    /// Bits set in both.
    pub const fn intersect(self, other: Features) -> Features {
        Features(self.0 & other.0)
    }

    /// Bits set in either.
    pub const fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }

    /// No bit set (v1 only).
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The 4-byte tag of a salt's first 12 bytes.
fn tag(tagged: &[u8]) -> [u8; 4] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(TAG_CONTEXT);
    hasher.update(tagged);
    let hash = hasher.finalize();
    crate::wire::array(&hash.as_bytes()[..4])
}

/// The PONG salt advertising `features`, with `nonce` as its random part.
///
/// With `Features::NONE` the caller should send a fully random salt instead (a v1-only node is
/// indistinguishable from the reference); this function still builds a valid, empty marker.
pub fn build_salt(nonce: [u8; 8], features: Features) -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    salt[field::NONCE].copy_from_slice(&nonce);
    salt[field::FEATURES].copy_from_slice(&features.bits().to_le_bytes());
    let tag = tag(&salt[TAGGED]);
    salt[field::TAG].copy_from_slice(&tag);
    salt
}

/// The features a PONG salt advertises, or `None` if it carries no marker (a v1 node's random
/// salt). Never panics.
pub fn parse_salt(salt: &[u8; SALT_LEN]) -> Option<Features> {
    if tag(&salt[TAGGED]) != salt[field::TAG] {
        return None;
    }
    let bits: [u8; 4] = crate::wire::array(&salt[field::FEATURES]);
    Some(Features::from_bits(u32::from_le_bytes(bits)))
}

/// The features a salt advertises, `Features::NONE` for an unmarked (v1) salt.
pub fn salt_features(salt: &[u8; SALT_LEN]) -> Features {
    parse_salt(salt).unwrap_or(Features::NONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_parse_round_trips() {
        for bits in [0u32, 1, 2, 3, 0xffff_ffff, 0x8000_0001] {
            let f = Features::from_bits(bits);
            let salt = build_salt([0xa5; 8], f);
            assert_eq!(parse_salt(&salt), Some(f));
        }
    }

    #[test]
    fn any_flipped_bit_breaks_the_marker() {
        let salt = build_salt([1, 2, 3, 4, 5, 6, 7, 8], Features::ALL);
        for byte in 0..SALT_LEN {
            for bit in 0..8 {
                let mut s = salt;
                s[byte] ^= 1 << bit;
                assert_eq!(parse_salt(&s), None, "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn the_reference_vector_salt_is_v1() {
        // tests/data/vectors.json pong_salt_hex: a v1 salt has no marker.
        let salt: [u8; 16] = core::array::from_fn(|i| 0x10 + i as u8);
        assert_eq!(parse_salt(&salt), None);
        assert_eq!(salt_features(&salt), Features::NONE);
    }

    #[test]
    fn feature_set_algebra() {
        assert!(Features::ALL.contains(Features::ROUTING));
        assert!(Features::ALL.contains(Features::RECORD_V2));
        assert!(!Features::ROUTING.contains(Features::RECORD_V2));
        assert_eq!(
            Features::ALL.intersect(Features::ROUTING),
            Features::ROUTING
        );
        assert!(Features::NONE.is_empty());
        assert_eq!(Features::ROUTING.union(Features::RECORD_V2), Features::ALL);
    }
}
