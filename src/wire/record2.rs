//! The v2 record (issue 16) and its messages (ops `0x18..=0x1e`, extension bit RECORD_V2): a
//! record whose signature commits to every field, so it cannot be re-cut.
//!
//! A v1 dat signs `blake3(salt ‖ blake3(key ‖ value ‖ time))`: key and value are concatenated
//! without their lengths, so moving the boundary yields another record that verifies under the
//! same owner. A v2 record ("dat2") hashes the owner key, the key *with* its length, the value
//! *with* its length, the time and a 64-bit sequence number, each at a fixed position of an
//! unambiguous encoding, in BLAKE3 modes that no v1 hash uses (domain separation).
//!
//! ```text
//! dat2         time i64 ‖ seq u64 ‖ salt[16] ‖ work[32] ‖ sig[64] ‖ pubkey[32] ‖ K ‖ key ‖ V u16 ‖ value
//!                                                                                          163 + K + V
//! load2        = blake3_keyed(LOAD2_KEY, pubkey ‖ K ‖ key ‖ V u16 ‖ value ‖ time i64 ‖ seq u64)
//! work2        = blake3_keyed(WORK2_KEY, salt ‖ load2)         needs ≥ d leading zero bits
//! sig          = Ed25519.sign(owner, work2)
//! commit       = Ed25519.sign(owner, blake3_keyed(COMMIT2_KEY, work2))
//!
//! PUT2         18 ‖ datLen u16 ‖ dat2                                             3 + dat2
//! GET2         19 ‖ pubkey[32] ‖ K ‖ key                                          34 + K
//! GET2_ACK     1a ‖ datLen u16 ‖ dat2                                             3 + dat2
//! GET2_NONE    1b ‖ pubkey[32] ‖ K ‖ key                                          34 + K
//! PUT2_CAS     1c ‖ expect_seq u64 ‖ datLen u16 ‖ dat2                            11 + dat2
//! PUT2_STATUS  1d ‖ status u8 ‖ held_seq u64 ‖ work[32] ‖ pubkey[32] ‖ K ‖ key    75 + K
//! PUT2_COMMIT  1e ‖ commit[64] ‖ datLen u16 ‖ dat2                                67 + dat2
//! ```
//!
//! The three keys are `blake3::derive_key(context, b"")` for the contexts in [`LOAD2_CONTEXT`],
//! [`WORK2_CONTEXT`] and [`COMMIT2_CONTEXT`] (checked by a test). Keyed BLAKE3 sets a mode flag
//! that plain BLAKE3 (all v1 hashes) never sets, so no v1 work equals a v2 work or commit hash
//! short of breaking BLAKE3: a v1 signature never verifies as a v2 one and vice versa. The load
//! binds the proof of work to the owner and to the exact record.
//!
//! Sizes: the largest message that carries a dat2 is PUT2_COMMIT (67 bytes before the dat2), so
//! key + value is at most [`MAX_KEY_VALUE_LEN2`] = 1424 − 67 − 163 = 1194 bytes.
//!
//! Same contract as the v1 views: once `new_checked` returned `Ok`, no accessor can panic.

use crate::limits::{MAX_KEY_LEN, MAX_PACKET_LEN};
use crate::wire::key_value::{
    check_key_at_end, check_key_value_len, check_record_len, emit_record_tail, record_key,
    record_value,
};
use crate::wire::{Error, Field, Result, array};

/// Bytes of a dat2 before its key: time 8, seq 8, salt 16, work 32, sig 64, pubkey 32, K 1.
pub const DAT2_PREFIX_LEN: usize = 8 + 8 + 16 + 32 + 64 + 32 + 1;
/// Fixed bytes of a dat2: the prefix plus the 2-byte value length.
pub const DAT2_HEADER_LEN: usize = DAT2_PREFIX_LEN + 2;
/// PUT2 and GET2_ACK: op + dat length.
pub const PUT2_HEADER_LEN: usize = 1 + 2;
/// PUT2_CAS: op + expected seq + dat length.
pub const PUT2_CAS_HEADER_LEN: usize = 1 + 8 + 2;
/// PUT2_COMMIT: op + commit signature + dat length (the largest carrier of a dat2).
pub const PUT2_COMMIT_HEADER_LEN: usize = 1 + 64 + 2;
/// GET2 and GET2_NONE without the key: op + pubkey + K.
pub const GET2_HEADER_LEN: usize = 1 + 32 + 1;
/// PUT2_STATUS without its key: op + status + held seq + work + pubkey + K. The (pubkey, key)
/// lets the receiving node route the status to the shard owner waiting for it.
pub const PUT2_STATUS_HEADER_LEN: usize = 1 + 1 + 8 + 32 + 32 + 1;
/// Largest key + value of a dat2: every carrier, the PUT2_COMMIT included, fits one datagram.
pub const MAX_KEY_VALUE_LEN2: usize = MAX_PACKET_LEN - PUT2_COMMIT_HEADER_LEN - DAT2_HEADER_LEN;
/// Largest dat2.
pub const MAX_DAT2_LEN: usize = DAT2_HEADER_LEN + MAX_KEY_VALUE_LEN2;

const _: () = assert!(DAT2_HEADER_LEN == 163);
const _: () = assert!(MAX_KEY_VALUE_LEN2 == 1194);
const _: () = assert!(PUT2_COMMIT_HEADER_LEN + MAX_DAT2_LEN == MAX_PACKET_LEN);
const _: () = assert!(PUT2_CAS_HEADER_LEN <= PUT2_COMMIT_HEADER_LEN);
const _: () = assert!(PUT2_HEADER_LEN <= PUT2_CAS_HEADER_LEN);
const _: () = assert!(MAX_KEY_LEN <= MAX_KEY_VALUE_LEN2);
const _: () = assert!(GET2_HEADER_LEN + MAX_KEY_LEN <= MAX_PACKET_LEN);
const _: () = assert!(MAX_DAT2_LEN <= u16::MAX as usize);
// A status is never larger than the PUT2_CAS or PUT2_COMMIT it answers (same K, and those
// carry a whole dat2): no amplification.
const _: () = assert!(PUT2_STATUS_HEADER_LEN <= PUT2_CAS_HEADER_LEN + DAT2_HEADER_LEN);
// GET2_NONE has exactly the size of the GET2 it answers.
const _: () = assert!(GET2_HEADER_LEN == crate::limits::GET_HEADER_LEN);

/// BLAKE3 key-derivation context of the load key.
pub const LOAD2_CONTEXT: &str = "dave 2026 record v2 load";
/// BLAKE3 key-derivation context of the work key.
pub const WORK2_CONTEXT: &str = "dave 2026 record v2 work";
/// BLAKE3 key-derivation context of the commit key.
pub const COMMIT2_CONTEXT: &str = "dave 2026 record v2 commit";

/// `blake3::derive_key(LOAD2_CONTEXT, b"")`.
pub const LOAD2_KEY: [u8; 32] = [
    0x4d, 0xee, 0xcf, 0xf6, 0x30, 0xad, 0x2c, 0x69, 0x0d, 0x11, 0xea, 0x38, 0xcf, 0xfe, 0xb3, 0x7a,
    0x7b, 0x04, 0xf0, 0x9f, 0x45, 0x7f, 0x7c, 0xdf, 0xc2, 0xe2, 0x7a, 0x9c, 0xed, 0x1e, 0xee, 0xbb,
];
/// `blake3::derive_key(WORK2_CONTEXT, b"")`.
pub const WORK2_KEY: [u8; 32] = [
    0x52, 0x19, 0xda, 0x75, 0xbc, 0x86, 0xce, 0x52, 0x1d, 0x42, 0xa0, 0x6d, 0xab, 0x8c, 0xd4, 0xc4,
    0x71, 0x2a, 0xb5, 0x80, 0x43, 0x24, 0x5e, 0xd0, 0xf7, 0x4d, 0x4c, 0x79, 0xbd, 0xf3, 0xef, 0x43,
];
/// `blake3::derive_key(COMMIT2_CONTEXT, b"")`.
pub const COMMIT2_KEY: [u8; 32] = [
    0xdb, 0x76, 0x3a, 0xed, 0x5c, 0x4f, 0xb1, 0xb7, 0x1c, 0x46, 0x70, 0xad, 0x70, 0x59, 0x21, 0xe8,
    0xda, 0x28, 0x13, 0x47, 0x19, 0xab, 0x36, 0xe5, 0xf4, 0x92, 0xac, 0x95, 0xb0, 0x89, 0x69, 0x3a,
];

/// The v2 ops. Byte 0 of each v2 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op2 {
    /// Store a dat2 (no answer).
    Put2 = 0x18,
    /// Ask for the dat2 of (pubkey, key).
    Get2 = 0x19,
    /// Answer to GET2: the dat2.
    Get2Ack = 0x1a,
    /// Answer to GET2: not held.
    Get2None = 0x1b,
    /// Store a dat2 if the held seq is `expect_seq` (or nothing is held); answered by a status.
    Put2Cas = 0x1c,
    /// Answer to PUT2_CAS (and PUT2_COMMIT): what the replica did.
    Put2Status = 0x1d,
    /// Store a dat2 that won a compare-and-swap, replacing an equal-seq loser.
    Put2Commit = 0x1e,
}

/// First op of the RECORD_V2 range (EXTENSION.md).
pub const OP2_FIRST: u8 = 0x18;
/// Last op of the RECORD_V2 range (0x1f is reserved: ignored and counted).
pub const OP2_LAST: u8 = 0x1f;

impl Op2 {
    /// The v2 op for a byte, or `None`.
    pub fn from_byte(byte: u8) -> Option<Op2> {
        Some(match byte {
            0x18 => Op2::Put2,
            0x19 => Op2::Get2,
            0x1a => Op2::Get2Ack,
            0x1b => Op2::Get2None,
            0x1c => Op2::Put2Cas,
            0x1d => Op2::Put2Status,
            0x1e => Op2::Put2Commit,
            _ => return None,
        })
    }
}

/// Byte ranges of a dat2's fixed part.
pub mod field {
    use super::Field;
    /// Unix milliseconds, i64 LE.
    pub const TIME: Field = 0..8;
    /// Sequence number, u64 LE.
    pub const SEQ: Field = 8..16;
    /// Proof-of-work salt.
    pub const SALT: Field = 16..32;
    /// `work2`.
    pub const WORK: Field = 32..64;
    /// Ed25519 signature over `work2`.
    pub const SIG: Field = 64..128;
    /// Owner public key.
    pub const PUBKEY: Field = 128..160;
    /// K, the key length.
    pub const KEY_LEN: usize = 160;
    /// The key starts here.
    pub const KEY_START: usize = 161;
}

// The fixed part ends with K: the shared tail code finds K, key, V and value from `KEY_LEN`.
const _: () = assert!(field::KEY_LEN + 1 == DAT2_PREFIX_LEN && field::KEY_START == DAT2_PREFIX_LEN);

/// A checked dat2: exactly `time ‖ seq ‖ salt ‖ work ‖ sig ‖ pubkey ‖ K ‖ key ‖ V ‖ value`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Dat2<T: AsRef<[u8]>> {
    buffer: T,
}

/// A stored dat2: its wire bytes in one exact-size allocation.
pub type Record2 = Dat2<Box<[u8]>>;

impl<T: AsRef<[u8]>> Dat2<T> {
    /// Checks the lengths once; after `Ok`, no accessor can panic.
    pub fn new_checked(buffer: T) -> Result<Dat2<T>> {
        check_record_len(buffer.as_ref(), field::KEY_LEN, MAX_KEY_VALUE_LEN2)?;
        Ok(Dat2 { buffer })
    }

    /// Wraps bytes this process checked before (accessors may panic otherwise).
    pub fn new_unchecked(buffer: T) -> Dat2<T> {
        debug_assert!(
            check_record_len(buffer.as_ref(), field::KEY_LEN, MAX_KEY_VALUE_LEN2).is_ok()
        );
        Dat2 { buffer }
    }

    /// The dat2's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Length in bytes (163 + K + V).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Creation time, Unix milliseconds.
    pub fn time_ms(&self) -> i64 {
        i64::from_le_bytes(array(&self.as_bytes()[field::TIME]))
    }

    /// Sequence number: the higher one replaces the lower.
    pub fn seq(&self) -> u64 {
        u64::from_le_bytes(array(&self.as_bytes()[field::SEQ]))
    }

    /// Proof-of-work salt.
    pub fn salt(&self) -> [u8; 16] {
        array(&self.as_bytes()[field::SALT])
    }

    /// `work2` (what the signature signs).
    pub fn work(&self) -> &[u8; 32] {
        self.as_bytes()[field::WORK].try_into().unwrap_or(&[0; 32])
    }

    /// Ed25519 signature over `work2`.
    pub fn sig(&self) -> &[u8; 64] {
        self.as_bytes()[field::SIG].try_into().unwrap_or(&[0; 64])
    }

    /// Owner public key.
    pub fn pubkey(&self) -> &[u8; 32] {
        self.as_bytes()[field::PUBKEY]
            .try_into()
            .unwrap_or(&[0; 32])
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        record_key(self.as_bytes(), field::KEY_LEN)
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        record_value(self.as_bytes(), field::KEY_LEN)
    }

    /// The owner's ID (first 8 pubkey bytes, LE).
    pub fn owner_id(&self) -> u64 {
        crate::keys::id_from_pubkey(self.pubkey())
    }

    /// A borrowed view.
    pub fn as_view(&self) -> Dat2<&[u8]> {
        Dat2 {
            buffer: self.as_bytes(),
        }
    }

    /// An owned copy in one exact-size allocation.
    pub fn to_boxed(&self) -> Record2 {
        Dat2 {
            buffer: self.as_bytes().into(),
        }
    }

    /// The fields, borrowing key and value.
    pub fn fields(&self) -> Dat2Fields<'_> {
        Dat2Fields {
            time_ms: self.time_ms(),
            seq: self.seq(),
            salt: self.salt(),
            work: *self.work(),
            sig: *self.sig(),
            pubkey: *self.pubkey(),
            key: self.key(),
            value: self.value(),
        }
    }
}

impl<T: AsRef<[u8]>> core::fmt::Debug for Dat2<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dat2")
            .field("time_ms", &self.time_ms())
            .field("seq", &self.seq())
            .field("owner_id", &format_args!("{:016x}", self.owner_id()))
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value_len", &self.value().len())
            .finish()
    }
}

/// The fields of a dat2, for building one (key and value borrowed: emitting allocates nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dat2Fields<'a> {
    /// Unix milliseconds.
    pub time_ms: i64,
    /// Sequence number.
    pub seq: u64,
    /// Proof-of-work salt.
    pub salt: [u8; 16],
    /// `work2`.
    pub work: [u8; 32],
    /// Ed25519 signature over `work2`.
    pub sig: [u8; 64],
    /// Owner public key.
    pub pubkey: [u8; 32],
    /// Key, at most 255 bytes.
    pub key: &'a [u8],
    /// Value; key + value at most [`MAX_KEY_VALUE_LEN2`].
    pub value: &'a [u8],
}

impl Dat2Fields<'_> {
    /// Checks the key and value lengths.
    pub fn check(&self) -> Result<()> {
        check_key_value_len(self.key, self.value, MAX_KEY_VALUE_LEN2)
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        DAT2_HEADER_LEN + self.key.len() + self.value.len()
    }

    /// Writes the dat2 into `buf[..self.buffer_len()]` and returns the length. Panics if the
    /// fields fail [`Dat2Fields::check`] or `buf` is too small (caller bugs).
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        assert!(self.check().is_ok(), "dat2 fields too long");
        let len = self.buffer_len();
        let (fixed, tail) = buf[..len].split_at_mut(field::KEY_LEN);
        fixed[field::TIME].copy_from_slice(&self.time_ms.to_le_bytes());
        fixed[field::SEQ].copy_from_slice(&self.seq.to_le_bytes());
        fixed[field::SALT].copy_from_slice(&self.salt);
        fixed[field::WORK].copy_from_slice(&self.work);
        fixed[field::SIG].copy_from_slice(&self.sig);
        fixed[field::PUBKEY].copy_from_slice(&self.pubkey);
        emit_record_tail(self.key, self.value, tail);
        len
    }

    /// Emits into a new exact-size allocation.
    pub fn to_record(&self) -> Record2 {
        let mut buf = vec![0u8; self.buffer_len()].into_boxed_slice();
        self.emit(&mut buf);
        Dat2::new_unchecked(buf)
    }
}

/// What a replica did with a PUT2_CAS or PUT2_COMMIT (the status byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status2 {
    /// Stored (nothing held, or it replaced a lower seq / an equal-seq loser by commit).
    Stored = 0,
    /// Already held, byte for byte.
    Duplicate = 1,
    /// The held seq is higher.
    Older = 2,
    /// The held record has the same seq and other content (first come wins).
    Conflict = 3,
    /// The held seq is not the expected one.
    CasMismatch = 4,
    /// Not stored for another reason (invalid, store full); `held_seq` is 0.
    Refused = 5,
}

impl Status2 {
    /// The status for a byte, or `None`.
    pub fn from_byte(byte: u8) -> Option<Status2> {
        Some(match byte {
            0 => Status2::Stored,
            1 => Status2::Duplicate,
            2 => Status2::Older,
            3 => Status2::Conflict,
            4 => Status2::CasMismatch,
            5 => Status2::Refused,
            _ => return None,
        })
    }

    /// Whether the replica now holds the record (a vote for it).
    pub fn is_accepted(self) -> bool {
        matches!(self, Status2::Stored | Status2::Duplicate)
    }
}

/// A parsed v2 message, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message2<'a> {
    /// Store a dat2 (no answer).
    Put2(Dat2<&'a [u8]>),
    /// Ask for the dat2 of (pubkey, key).
    Get2 {
        /// Owner public key.
        pubkey: &'a [u8; 32],
        /// Key.
        key: &'a [u8],
    },
    /// The held dat2.
    Get2Ack(Dat2<&'a [u8]>),
    /// Not held.
    Get2None {
        /// Owner public key.
        pubkey: &'a [u8; 32],
        /// Key.
        key: &'a [u8],
    },
    /// Store if the held seq is `expect_seq` (or nothing is held).
    Put2Cas {
        /// The seq the replica must hold.
        expect_seq: u64,
        /// The record.
        dat: Dat2<&'a [u8]>,
    },
    /// What a replica did.
    Put2Status {
        /// The outcome.
        status: Status2,
        /// The seq the replica holds after the operation (0 if nothing).
        held_seq: u64,
        /// `work2` of the record the status answers.
        work: &'a [u8; 32],
        /// Owner of the record the status answers.
        pubkey: &'a [u8; 32],
        /// Key of the record the status answers.
        key: &'a [u8],
    },
    /// A CAS winner with the owner's commit signature.
    Put2Commit {
        /// `Ed25519.sign(owner, blake3_keyed(COMMIT2_KEY, work2))`.
        commit: &'a [u8; 64],
        /// The record.
        dat: Dat2<&'a [u8]>,
    },
}

/// `datLen u16 ‖ dat2` starting at `at`.
fn dat2_after(bytes: &[u8], at: usize) -> Result<Dat2<&[u8]>> {
    if bytes.len() < at + 2 {
        return Err(Error::TooShort);
    }
    let dat_len = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let dat = Dat2::new_checked(&bytes[at + 2..])?;
    if dat_len != dat.len() {
        return Err(Error::BadDatLength);
    }
    Ok(dat)
}

/// `pubkey ‖ K ‖ key` after the op byte.
fn get2_fields(bytes: &[u8]) -> Result<(&[u8; 32], &[u8])> {
    check_key_at_end(bytes, GET2_HEADER_LEN)?;
    let pubkey = bytes[1..33].try_into().map_err(|_| Error::TooShort)?;
    Ok((pubkey, &bytes[GET2_HEADER_LEN..]))
}

impl<'a> Message2<'a> {
    /// Parses a datagram whose op is in `0x18..=0x1e`. Checks lengths and field values only
    /// (no hashing, no signatures). Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Message2<'a>> {
        let Some(&op) = bytes.first() else {
            return Err(Error::Empty);
        };
        if bytes.len() > MAX_PACKET_LEN {
            return Err(Error::TooLong);
        }
        match Op2::from_byte(op) {
            None => Err(Error::UnknownOp),
            Some(Op2::Put2) => Ok(Message2::Put2(dat2_after(bytes, 1)?)),
            Some(Op2::Get2Ack) => Ok(Message2::Get2Ack(dat2_after(bytes, 1)?)),
            Some(Op2::Get2) => {
                let (pubkey, key) = get2_fields(bytes)?;
                Ok(Message2::Get2 { pubkey, key })
            }
            Some(Op2::Get2None) => {
                let (pubkey, key) = get2_fields(bytes)?;
                Ok(Message2::Get2None { pubkey, key })
            }
            Some(Op2::Put2Cas) => {
                if bytes.len() < PUT2_CAS_HEADER_LEN {
                    return Err(Error::TooShort);
                }
                let expect_seq = u64::from_le_bytes(array(&bytes[1..9]));
                let dat = dat2_after(bytes, 9)?;
                Ok(Message2::Put2Cas { expect_seq, dat })
            }
            Some(Op2::Put2Status) => {
                check_key_at_end(bytes, PUT2_STATUS_HEADER_LEN)?;
                let status = Status2::from_byte(bytes[1]).ok_or(Error::BadField)?;
                let held_seq = u64::from_le_bytes(array(&bytes[2..10]));
                let work = bytes[10..42].try_into().map_err(|_| Error::TooShort)?;
                let pubkey = bytes[42..74].try_into().map_err(|_| Error::TooShort)?;
                Ok(Message2::Put2Status {
                    status,
                    held_seq,
                    work,
                    pubkey,
                    key: &bytes[PUT2_STATUS_HEADER_LEN..],
                })
            }
            Some(Op2::Put2Commit) => {
                if bytes.len() < PUT2_COMMIT_HEADER_LEN {
                    return Err(Error::TooShort);
                }
                let commit = bytes[1..65].try_into().map_err(|_| Error::TooShort)?;
                let dat = dat2_after(bytes, 65)?;
                Ok(Message2::Put2Commit { commit, dat })
            }
        }
    }

    /// The op.
    pub fn op(&self) -> Op2 {
        match self {
            Message2::Put2(_) => Op2::Put2,
            Message2::Get2 { .. } => Op2::Get2,
            Message2::Get2Ack(_) => Op2::Get2Ack,
            Message2::Get2None { .. } => Op2::Get2None,
            Message2::Put2Cas { .. } => Op2::Put2Cas,
            Message2::Put2Status { .. } => Op2::Put2Status,
            Message2::Put2Commit { .. } => Op2::Put2Commit,
        }
    }

    /// The (pubkey, key) that picks the shard.
    pub fn record_key(&self) -> Option<(&'a [u8; 32], &'a [u8])> {
        match *self {
            Message2::Put2(dat)
            | Message2::Get2Ack(dat)
            | Message2::Put2Cas { dat, .. }
            | Message2::Put2Commit { dat, .. } => {
                let bytes: &'a [u8] = dat.buffer;
                let pubkey = bytes[field::PUBKEY].try_into().ok()?;
                Some((pubkey, record_key(bytes, field::KEY_LEN)))
            }
            Message2::Get2 { pubkey, key }
            | Message2::Get2None { pubkey, key }
            | Message2::Put2Status { pubkey, key, .. } => Some((pubkey, key)),
        }
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Message2::Put2(dat) | Message2::Get2Ack(dat) => PUT2_HEADER_LEN + dat.len(),
            Message2::Get2 { key, .. } | Message2::Get2None { key, .. } => {
                GET2_HEADER_LEN + key.len()
            }
            Message2::Put2Cas { dat, .. } => PUT2_CAS_HEADER_LEN + dat.len(),
            Message2::Put2Status { key, .. } => PUT2_STATUS_HEADER_LEN + key.len(),
            Message2::Put2Commit { dat, .. } => PUT2_COMMIT_HEADER_LEN + dat.len(),
        }
    }

    /// Writes the message into `buf` and returns its length. Panics if `buf` is shorter than
    /// [`Message2::buffer_len`] or a key is over 255 bytes (caller bugs). Allocates nothing.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let buf = &mut buf[..len];
        buf[0] = self.op() as u8;
        match self {
            Message2::Put2(dat) | Message2::Get2Ack(dat) => {
                buf[1..3].copy_from_slice(&(dat.len() as u16).to_le_bytes());
                buf[3..].copy_from_slice(dat.as_bytes());
            }
            Message2::Get2 { pubkey, key } | Message2::Get2None { pubkey, key } => {
                assert!(key.len() <= MAX_KEY_LEN);
                buf[1..33].copy_from_slice(*pubkey);
                buf[33] = key.len() as u8;
                buf[GET2_HEADER_LEN..].copy_from_slice(key);
            }
            Message2::Put2Cas { expect_seq, dat } => {
                buf[1..9].copy_from_slice(&expect_seq.to_le_bytes());
                buf[9..11].copy_from_slice(&(dat.len() as u16).to_le_bytes());
                buf[11..].copy_from_slice(dat.as_bytes());
            }
            Message2::Put2Status {
                status,
                held_seq,
                work,
                pubkey,
                key,
            } => {
                assert!(key.len() <= MAX_KEY_LEN);
                buf[1] = *status as u8;
                buf[2..10].copy_from_slice(&held_seq.to_le_bytes());
                buf[10..42].copy_from_slice(*work);
                buf[42..74].copy_from_slice(*pubkey);
                buf[74] = key.len() as u8;
                buf[PUT2_STATUS_HEADER_LEN..].copy_from_slice(key);
            }
            Message2::Put2Commit { commit, dat } => {
                buf[1..65].copy_from_slice(*commit);
                buf[65..67].copy_from_slice(&(dat.len() as u16).to_le_bytes());
                buf[67..].copy_from_slice(dat.as_bytes());
            }
        }
        len
    }

    /// Emits into a new vector (tests, tools).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut buf);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_derived_keys() {
        assert_eq!(LOAD2_KEY, blake3::derive_key(LOAD2_CONTEXT, b""));
        assert_eq!(WORK2_KEY, blake3::derive_key(WORK2_CONTEXT, b""));
        assert_eq!(COMMIT2_KEY, blake3::derive_key(COMMIT2_CONTEXT, b""));
    }

    fn sample(key: &[u8], value: &[u8]) -> Record2 {
        Dat2Fields {
            time_ms: 0x0102_0304_0506_0708,
            seq: 7,
            salt: [1; 16],
            work: [2; 32],
            sig: [3; 64],
            pubkey: [4; 32],
            key,
            value,
        }
        .to_record()
    }

    #[test]
    fn deconstruct_a_dat2() {
        let dat = sample(b"ab", b"xyz");
        let bytes = dat.as_bytes();
        assert_eq!(bytes.len(), 163 + 2 + 3);
        assert_eq!(&bytes[0..8], &0x0102_0304_0506_0708i64.to_le_bytes());
        assert_eq!(&bytes[8..16], &7u64.to_le_bytes());
        assert_eq!(bytes[160], 2);
        assert_eq!(&bytes[161..163], b"ab");
        assert_eq!(&bytes[163..165], &[3, 0]);
        assert_eq!(&bytes[165..], b"xyz");
        let view = Dat2::new_checked(bytes).unwrap();
        assert_eq!(view.key(), b"ab");
        assert_eq!(view.value(), b"xyz");
        assert_eq!(view.seq(), 7);
        assert_eq!(view.fields().to_record().as_bytes(), bytes);
    }

    #[test]
    fn impossible_lengths_are_refused() {
        let dat = sample(b"ab", b"xyz");
        let bytes = dat.as_bytes();
        assert_eq!(
            Dat2::new_checked(&bytes[..162]).err(),
            Some(Error::TooShort)
        );
        assert_eq!(
            Dat2::new_checked(&bytes[..bytes.len() - 1]).err(),
            Some(Error::ValueTruncated)
        );
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(
            Dat2::new_checked(&longer[..]).err(),
            Some(Error::TrailingBytes)
        );
        let mut key_past = bytes.to_vec();
        key_past[160] = 255;
        assert_eq!(
            Dat2::new_checked(&key_past[..]).err(),
            Some(Error::KeyTruncated)
        );
    }

    #[test]
    fn every_message_round_trips() {
        let dat = sample(b"k", b"v");
        let view = dat.as_view();
        let commit = [9u8; 64];
        let messages = [
            Message2::Put2(view),
            Message2::Get2 {
                pubkey: &[4; 32],
                key: b"k",
            },
            Message2::Get2Ack(view),
            Message2::Get2None {
                pubkey: &[4; 32],
                key: b"k",
            },
            Message2::Put2Cas {
                expect_seq: 6,
                dat: view,
            },
            Message2::Put2Status {
                status: Status2::Conflict,
                held_seq: 7,
                work: &[2; 32],
                pubkey: &[4; 32],
                key: b"k",
            },
            Message2::Put2Commit {
                commit: &commit,
                dat: view,
            },
        ];
        for m in messages {
            let bytes = m.to_vec();
            assert_eq!(bytes[0], m.op() as u8);
            assert_eq!(Message2::parse(&bytes), Ok(m));
            assert_eq!(Message2::parse(&bytes[..bytes.len() - 1]).ok(), None);
        }
    }

    #[test]
    fn a_bad_status_byte_is_refused() {
        let mut bytes = Message2::Put2Status {
            status: Status2::Stored,
            held_seq: 0,
            work: &[0; 32],
            pubkey: &[0; 32],
            key: b"",
        }
        .to_vec();
        bytes[1] = 6;
        assert_eq!(Message2::parse(&bytes), Err(Error::BadField));
    }

    #[test]
    fn the_largest_commit_fits_a_datagram() {
        let value = vec![0u8; MAX_KEY_VALUE_LEN2 - MAX_KEY_LEN];
        let key = [1u8; MAX_KEY_LEN];
        let dat = sample(&key, &value);
        let commit = [0u8; 64];
        let m = Message2::Put2Commit {
            commit: &commit,
            dat: dat.as_view(),
        };
        assert_eq!(m.buffer_len(), MAX_PACKET_LEN);
        assert_eq!(Message2::parse(&m.to_vec()), Ok(m));
    }
}
