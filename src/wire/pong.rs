//! PONG: the answer to a PING, with up to five peer addresses and a signed solution.
//!
//! `01 ‖ L ‖ addrs[L] ‖ challenge[8] ‖ salt[16] ‖ pubkey[32] ‖ sig[64]`, where `L` is the address
//! list's length in bytes (18·n, n ≤ 5) and the solution is exactly the last 120 bytes.
//! `sig = Ed25519.sign(responder, blake3(challenge ‖ salt))`.

use crate::limits::{ADDR_LEN, MAX_PONG_ADDRS, PONG_MIN_LEN, PONG_SOLUTION_LEN};
use crate::wire::{Error, Op, Result, WireAddr, array};

/// Offsets inside the solution (the last 120 bytes).
mod solution {
    use crate::wire::Field;
    pub const CHALLENGE: Field = 0..8;
    pub const SALT: Field = 8..24;
    pub const PUBKEY: Field = 24..56;
    pub const SIG: Field = 56..120;
}

/// Offset of the address list.
const ADDRS_START: usize = 2;

/// A checked PONG view.
#[derive(Clone, Copy)]
pub struct Pong<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Pong<T> {
    /// Checks op, lengths and the address list; after `Ok` no accessor can panic.
    pub fn new_checked(buffer: T) -> Result<Pong<T>> {
        let bytes = buffer.as_ref();
        if bytes.len() < PONG_MIN_LEN {
            return Err(Error::TooShort);
        }
        debug_assert_eq!(bytes[0], Op::Pong as u8);
        let list_len = bytes[1] as usize;
        if !list_len.is_multiple_of(ADDR_LEN) {
            return Err(Error::AddrListNotMultiple);
        }
        if list_len / ADDR_LEN > MAX_PONG_ADDRS {
            return Err(Error::TooManyAddrs);
        }
        let expected = PONG_MIN_LEN + list_len;
        if bytes.len() < expected {
            return Err(Error::AddrListTooLong);
        }
        if bytes.len() > expected {
            return Err(Error::TrailingBytes);
        }
        Ok(Pong { buffer })
    }

    fn solution(&self) -> &[u8] {
        let bytes = self.buffer.as_ref();
        &bytes[bytes.len() - PONG_SOLUTION_LEN..]
    }

    /// Number of addresses (0..=5).
    pub fn addr_count(&self) -> usize {
        self.buffer.as_ref()[1] as usize / ADDR_LEN
    }

    /// The listed addresses, in wire form.
    pub fn addrs(&self) -> impl Iterator<Item = WireAddr> + '_ {
        let bytes = self.buffer.as_ref();
        let list = &bytes[ADDRS_START..ADDRS_START + self.addr_count() * ADDR_LEN];
        list.chunks_exact(ADDR_LEN).map(array::<ADDR_LEN>)
    }

    /// The echoed PING challenge.
    pub fn challenge(&self) -> [u8; 8] {
        array(&self.solution()[solution::CHALLENGE])
    }

    /// The responder's salt.
    pub fn salt(&self) -> [u8; 16] {
        array(&self.solution()[solution::SALT])
    }

    /// The responder's public key.
    pub fn pubkey(&self) -> [u8; 32] {
        array(&self.solution()[solution::PUBKEY])
    }

    /// The responder's signature over `blake3(challenge ‖ salt)`.
    pub fn sig(&self) -> [u8; 64] {
        array(&self.solution()[solution::SIG])
    }

    /// The owned form.
    pub fn repr(&self) -> PongRepr {
        let bytes = self.buffer.as_ref();
        let addr_count = self.addr_count();
        // Fixed-size copies per slot (no variable-length memcpy); unused slots stay zero so
        // that equal PONGs have equal reprs.
        let mut addrs = [[0; ADDR_LEN]; MAX_PONG_ADDRS];
        for (i, slot) in addrs.iter_mut().enumerate().take(addr_count) {
            *slot = array(&bytes[ADDRS_START + i * ADDR_LEN..]);
        }
        let solution = self.solution();
        PongRepr {
            addr_count,
            addrs,
            challenge: array(&solution[solution::CHALLENGE]),
            salt: array(&solution[solution::SALT]),
            pubkey: array(&solution[solution::PUBKEY]),
            sig: array(&solution[solution::SIG]),
        }
    }
}

/// A PONG's fields (fixed size, no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PongRepr {
    /// How many of `addrs` are used (0..=5).
    pub addr_count: usize,
    /// Addresses; only the first `addr_count` are meaningful.
    pub addrs: [WireAddr; MAX_PONG_ADDRS],
    /// The echoed PING challenge.
    pub challenge: [u8; 8],
    /// The responder's salt.
    pub salt: [u8; 16],
    /// The responder's public key.
    pub pubkey: [u8; 32],
    /// Signature over `blake3(challenge ‖ salt)`.
    pub sig: [u8; 64],
}

impl PongRepr {
    /// The used addresses.
    pub fn addrs(&self) -> &[WireAddr] {
        &self.addrs[..self.addr_count.min(MAX_PONG_ADDRS)]
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        PONG_MIN_LEN + self.addrs().len() * ADDR_LEN
    }

    /// Writes the PONG and returns its length. Panics if `buf` is too small (a caller bug).
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let buf = &mut buf[..len];
        buf[0] = Op::Pong as u8;
        buf[1] = (self.addrs().len() * ADDR_LEN) as u8;
        for (i, addr) in self.addrs().iter().enumerate() {
            let at = ADDRS_START + i * ADDR_LEN;
            buf[at..at + ADDR_LEN].copy_from_slice(addr);
        }
        let sol = &mut buf[len - PONG_SOLUTION_LEN..];
        sol[solution::CHALLENGE].copy_from_slice(&self.challenge);
        sol[solution::SALT].copy_from_slice(&self.salt);
        sol[solution::PUBKEY].copy_from_slice(&self.pubkey);
        sol[solution::SIG].copy_from_slice(&self.sig);
        len
    }
}

/// The hash a PONG signs: `blake3(challenge ‖ salt)`.
pub fn pong_signed_hash(challenge: &[u8; 8], salt: &[u8; 16]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(challenge);
    h.update(salt);
    *h.finalize().as_bytes()
}
