//! The byte layout of the backup log: the file header and the entry frame, as offset constants,
//! an encoder, and a decoder that never panics whatever the bytes.
//!
//! The layout is drawn in the module docs (`src/backup/mod.rs`); this file is its single
//! implementation. Every decode failure is a [`FrameError`] value, so the scanner can count it
//! and resynchronise instead of stopping.

use xxhash_rust::xxh64::xxh64;

use crate::limits::{DAT_HEADER_LEN, MAX_DAT_LEN, MAX_KEY_LEN};
use crate::wire::Dat;
use crate::wire::record2::Dat2;

/// First 8 bytes of every log file.
pub const MAGIC: [u8; 8] = *b"dave-log";

/// The format version this code writes. Version 2 adds the v2 record entry types
/// ([`TYPE_PUT2`], [`TYPE_DELETE2`]); everything else is version 1's.
pub const FORMAT_VERSION: u16 = 2;

/// The oldest version this code reads: a version-1 log holds only types 1 and 2 and loads
/// unchanged (new entries are appended to it as they are; a version-1 reader skips, and counts,
/// the entry types it does not know).
pub const MIN_READ_VERSION: u16 = 1;

/// Header flags this version understands: none. A reader refuses a file with any bit set, since
/// a flag would announce a change that an older reader cannot interpret.
pub const KNOWN_FLAGS: u16 = 0;

/// Byte ranges of the file header.
pub mod header_field {
    use core::ops::Range;
    /// `MAGIC`.
    pub const MAGIC: Range<usize> = 0..8;
    /// Format version, u16 LE.
    pub const VERSION: Range<usize> = 8..10;
    /// Flags, u16 LE (none defined in version 1).
    pub const FLAGS: Range<usize> = 10..12;
    /// Checksum seed of this file's entries, u64 LE, random per file.
    pub const SEED: Range<usize> = 12..20;
    /// Low 32 bits of `xxh64(header[0..20], seed 0)`, u32 LE.
    pub const CHECK: Range<usize> = 20..24;
}

/// Bytes of the file header.
pub const HEADER_LEN: usize = 24;

/// Byte ranges of an entry frame.
pub mod entry_field {
    use core::ops::Range;
    /// Length of `type ‖ payload`, u32 LE.
    pub const LEN: Range<usize> = 0..4;
    /// `xxh64(type ‖ payload, file seed)`, u64 LE.
    pub const CHECKSUM: Range<usize> = 4..12;
    /// The entry type byte.
    pub const TYPE: usize = 12;
}

/// Bytes before an entry's type byte: length 4 + checksum 8.
pub const ENTRY_HEADER_LEN: usize = 12;

/// Entry type: a stored record; the payload is the dat's wire bytes.
pub const TYPE_PUT: u8 = 1;

/// Entry type: a tombstone; the payload is `pubkey[32] ‖ time_ms i64 ‖ K ‖ key`.
pub const TYPE_DELETE: u8 = 2;

/// Entry type (version 2): a stored v2 record; the payload is the dat2's wire bytes.
pub const TYPE_PUT2: u8 = 3;

/// Entry type (version 2): a v2 tombstone; the payload is `pubkey[32] ‖ seq u64 ‖ K ‖ key`
/// (the v1 tombstone's layout with the seq in place of the time).
pub const TYPE_DELETE2: u8 = 4;

/// Fixed bytes of a tombstone payload: pubkey 32 + time 8 + key length 1.
pub const TOMBSTONE_FIXED_LEN: usize = 32 + 8 + 1;

/// Smallest `type ‖ payload`: a tombstone with an empty key (smaller than any dat).
pub const MIN_BODY_LEN: usize = 1 + TOMBSTONE_FIXED_LEN;

/// Largest `type ‖ payload`: a PUT of the largest dat. A length field above this is corrupt,
/// which makes resynchronisation cheap: almost every misaligned length fails this bound.
pub const MAX_BODY_LEN: usize = 1 + MAX_DAT_LEN;

/// Largest whole entry.
pub const MAX_ENTRY_LEN: usize = ENTRY_HEADER_LEN + MAX_BODY_LEN;

/// Overhead of a PUT entry beyond the dat itself: frame header + type byte.
pub const PUT_OVERHEAD_LEN: usize = ENTRY_HEADER_LEN + 1;

const _: () = assert!(MIN_BODY_LEN <= 1 + DAT_HEADER_LEN);
// A dat2 is never longer than a dat: the v1 length bound covers type 3 entries too.
const _: () = assert!(crate::wire::record2::MAX_DAT2_LEN <= MAX_DAT_LEN);
const _: () = assert!(crate::wire::record2::DAT2_HEADER_LEN >= DAT_HEADER_LEN);
const _: () = assert!(1 + TOMBSTONE_FIXED_LEN + MAX_KEY_LEN <= MAX_BODY_LEN);
const _: () = assert!(MAX_ENTRY_LEN <= u32::MAX as usize);
const _: () = assert!(header_field::CHECK.end == HEADER_LEN);
const _: () = assert!(entry_field::TYPE == ENTRY_HEADER_LEN);

/// Length on disk of the PUT entry of a dat of `dat_len` bytes.
pub const fn put_entry_len(dat_len: usize) -> usize {
    PUT_OVERHEAD_LEN + dat_len
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Truncated,
    /// The magic bytes are not [`MAGIC`].
    NotALog,
    /// A version outside [`MIN_READ_VERSION`]`..=`[`FORMAT_VERSION`].
    Version(u16),
    /// Flags this version does not know.
    Flags(u16),
    /// The header's own check does not match.
    Check,
}

/// The file header's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Seed of this file's entry checksums.
    pub seed: u64,
}

impl Header {
    /// The header bytes.
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[header_field::MAGIC].copy_from_slice(&MAGIC);
        out[header_field::VERSION].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[header_field::FLAGS].copy_from_slice(&KNOWN_FLAGS.to_le_bytes());
        out[header_field::SEED].copy_from_slice(&self.seed.to_le_bytes());
        let check = header_check(&out[..header_field::CHECK.start]);
        out[header_field::CHECK].copy_from_slice(&check.to_le_bytes());
        out
    }

    /// Parses and checks a header.
    pub fn parse(bytes: &[u8]) -> Result<Header, HeaderError> {
        let Some(bytes) = bytes.get(..HEADER_LEN) else {
            return Err(HeaderError::Truncated);
        };
        if bytes[header_field::MAGIC] != MAGIC {
            return Err(HeaderError::NotALog);
        }
        let check = u32::from_le_bytes(le4(&bytes[header_field::CHECK]));
        if check != header_check(&bytes[..header_field::CHECK.start]) {
            return Err(HeaderError::Check);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if !(MIN_READ_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(HeaderError::Version(version));
        }
        let flags = u16::from_le_bytes([bytes[10], bytes[11]]);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(HeaderError::Flags(flags));
        }
        Ok(Header {
            seed: u64::from_le_bytes(le8(&bytes[header_field::SEED])),
        })
    }
}

fn header_check(bytes: &[u8]) -> u32 {
    xxh64(bytes, 0) as u32
}

fn le4(bytes: &[u8]) -> [u8; 4] {
    let mut out = [0u8; 4];
    out.copy_from_slice(&bytes[..4]);
    out
}

fn le8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

/// An entry's checksum: `xxh64(type ‖ payload, seed)`.
#[inline]
pub fn entry_checksum(body: &[u8], seed: u64) -> u64 {
    xxh64(body, seed)
}

/// Appends one entry frame (`len ‖ checksum ‖ type ‖ payload`) to `out`.
///
/// Panics if the body is longer than [`MAX_BODY_LEN`]: callers build payloads from checked dats
/// and bounded keys, so a longer one is a bug here.
pub fn encode_entry(out: &mut Vec<u8>, entry_type: u8, payload: &[u8], seed: u64) {
    let body_len = 1 + payload.len();
    assert!(body_len <= MAX_BODY_LEN, "backup entry body too long");
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    out.push(entry_type);
    out.extend_from_slice(payload);
    let checksum = entry_checksum(&out[start + ENTRY_HEADER_LEN..], seed);
    out[start + entry_field::CHECKSUM.start..start + entry_field::CHECKSUM.end]
        .copy_from_slice(&checksum.to_le_bytes());
}

/// The tombstone payload `pubkey ‖ time_ms ‖ K ‖ key`; `None` if the key is longer than 255.
pub fn tombstone_payload(pubkey: &[u8; 32], key: &[u8], time_ms: i64) -> Option<Box<[u8]>> {
    let key_len = u8::try_from(key.len()).ok()?;
    let mut out = Vec::with_capacity(TOMBSTONE_FIXED_LEN + key.len());
    out.extend_from_slice(pubkey);
    out.extend_from_slice(&time_ms.to_le_bytes());
    out.push(key_len);
    out.extend_from_slice(key);
    Some(out.into_boxed_slice())
}

/// A decoded entry, borrowing the scanned bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryRef<'a> {
    /// A stored record.
    Put(Dat<&'a [u8]>),
    /// A stored v2 record (version 2).
    Put2(Dat2<&'a [u8]>),
    /// A v2 tombstone (version 2).
    Delete2 {
        /// Owner public key.
        pubkey: &'a [u8; 32],
        /// Seq of the removed version.
        seq: u64,
        /// The key.
        key: &'a [u8],
    },
    /// A tombstone.
    Delete {
        /// Owner public key.
        pubkey: &'a [u8; 32],
        /// Time of the removed version, Unix ms.
        time_ms: i64,
        /// The key.
        key: &'a [u8],
    },
}

/// Why bytes at some offset are not a valid entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs (a torn tail, if nothing valid follows).
    Incomplete,
    /// The length field is outside `MIN_BODY_LEN..=MAX_BODY_LEN`.
    BadLength,
    /// The checksum does not match.
    BadChecksum,
    /// The frame is intact (checksum matches) but its type is unknown or its payload malformed;
    /// the entry is `len` bytes long and can be skipped exactly.
    BadBody {
        /// Whole entry length, header included.
        len: usize,
    },
}

/// Decodes the entry at the start of `bytes`; returns it and its whole length.
pub fn decode_entry(bytes: &[u8], seed: u64) -> Result<(EntryRef<'_>, usize), FrameError> {
    let Some(len_bytes) = bytes.get(entry_field::LEN) else {
        return Err(FrameError::Incomplete);
    };
    let body_len = u32::from_le_bytes(le4(len_bytes)) as usize;
    if !(MIN_BODY_LEN..=MAX_BODY_LEN).contains(&body_len) {
        return Err(FrameError::BadLength);
    }
    let entry_len = ENTRY_HEADER_LEN + body_len;
    let Some(entry) = bytes.get(..entry_len) else {
        return Err(FrameError::Incomplete);
    };
    let checksum = u64::from_le_bytes(le8(&entry[entry_field::CHECKSUM]));
    let body = &entry[ENTRY_HEADER_LEN..];
    if entry_checksum(body, seed) != checksum {
        return Err(FrameError::BadChecksum);
    }
    let bad_body = FrameError::BadBody { len: entry_len };
    let payload = &body[1..];
    match body[0] {
        TYPE_PUT => match Dat::new_checked(payload) {
            Ok(dat) => Ok((EntryRef::Put(dat), entry_len)),
            Err(_) => Err(bad_body),
        },
        TYPE_PUT2 => match Dat2::new_checked(payload) {
            Ok(dat) => Ok((EntryRef::Put2(dat), entry_len)),
            Err(_) => Err(bad_body),
        },
        TYPE_DELETE2 => {
            let key_len = payload[TOMBSTONE_FIXED_LEN - 1] as usize;
            if payload.len() != TOMBSTONE_FIXED_LEN + key_len {
                return Err(bad_body);
            }
            let pubkey: &[u8; 32] = payload[..32].try_into().map_err(|_| bad_body)?;
            Ok((
                EntryRef::Delete2 {
                    pubkey,
                    seq: u64::from_le_bytes(le8(&payload[32..40])),
                    key: &payload[TOMBSTONE_FIXED_LEN..],
                },
                entry_len,
            ))
        }
        TYPE_DELETE => {
            let key_len = payload[TOMBSTONE_FIXED_LEN - 1] as usize;
            if payload.len() != TOMBSTONE_FIXED_LEN + key_len {
                return Err(bad_body);
            }
            let pubkey: &[u8; 32] = payload[..32].try_into().map_err(|_| bad_body)?;
            Ok((
                EntryRef::Delete {
                    pubkey,
                    time_ms: i64::from_le_bytes(le8(&payload[32..40])),
                    key: &payload[TOMBSTONE_FIXED_LEN..],
                },
                entry_len,
            ))
        }
        _ => Err(bad_body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let header = Header {
            seed: 0x0123_4567_89ab_cdef,
        };
        let bytes = header.emit();
        assert_eq!(&bytes[..8], b"dave-log");
        assert_eq!(&bytes[8..10], &[2, 0]);
        assert_eq!(Header::parse(&bytes), Ok(header));
        assert_eq!(Header::parse(&bytes[..23]), Err(HeaderError::Truncated));
        let mut bad = bytes;
        bad[0] ^= 1;
        assert_eq!(Header::parse(&bad), Err(HeaderError::NotALog));
        let mut bad = bytes;
        bad[15] ^= 1;
        assert_eq!(Header::parse(&bad), Err(HeaderError::Check));
    }

    #[test]
    fn tombstone_frame_deconstruct() {
        let payload = tombstone_payload(&[7; 32], b"ab", -2).unwrap_or_default();
        let mut out = Vec::new();
        encode_entry(&mut out, TYPE_DELETE, &payload, 9);
        assert_eq!(out.len(), ENTRY_HEADER_LEN + 1 + 32 + 8 + 1 + 2);
        assert_eq!(&out[0..4], &(1u32 + 43).to_le_bytes());
        assert_eq!(out[12], TYPE_DELETE);
        let (entry, len) = decode_entry(&out, 9).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(len, out.len());
        assert_eq!(
            entry,
            EntryRef::Delete {
                pubkey: &[7; 32],
                time_ms: -2,
                key: b"ab"
            }
        );
        assert_eq!(decode_entry(&out, 10), Err(FrameError::BadChecksum));
        assert_eq!(
            decode_entry(&out[..out.len() - 1], 9),
            Err(FrameError::Incomplete)
        );
        assert_eq!(decode_entry(&[0u8; 64], 9), Err(FrameError::BadLength));
        assert!(tombstone_payload(&[0; 32], &[0; 256], 0).is_none());
    }

    #[test]
    fn version_1_headers_still_load_and_version_3_does_not() {
        for (version, ok) in [(0u16, false), (1, true), (2, true), (3, false)] {
            let mut bytes = Header { seed: 5 }.emit();
            bytes[8..10].copy_from_slice(&version.to_le_bytes());
            let check = header_check(&bytes[..20]);
            bytes[20..24].copy_from_slice(&check.to_le_bytes());
            assert_eq!(Header::parse(&bytes).is_ok(), ok, "version {version}");
        }
    }

    #[test]
    fn v2_entries_deconstruct() {
        let dat = crate::wire::record2::Dat2Fields {
            time_ms: 1,
            seq: 9,
            salt: [0; 16],
            work: [0; 32],
            sig: [0; 64],
            pubkey: [3; 32],
            key: b"k",
            value: b"v",
        }
        .to_record();
        let mut out = Vec::new();
        encode_entry(&mut out, TYPE_PUT2, dat.as_bytes(), 4);
        let payload = tombstone_payload(&[3; 32], b"k", 9).unwrap_or_default();
        encode_entry(&mut out, TYPE_DELETE2, &payload, 4);
        let (first, len) = decode_entry(&out, 4).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(first, EntryRef::Put2(dat.as_view()));
        let (second, _) = decode_entry(&out[len..], 4).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            second,
            EntryRef::Delete2 {
                pubkey: &[3; 32],
                seq: 9,
                key: b"k"
            }
        );
    }

    #[test]
    fn unknown_type_is_a_bad_body_of_known_length() {
        let mut out = Vec::new();
        encode_entry(&mut out, 99, &[0u8; 50], 1);
        assert_eq!(
            decode_entry(&out, 1),
            Err(FrameError::BadBody { len: out.len() })
        );
    }
}
