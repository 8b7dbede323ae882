//! Streaming scan of a log's entries: a fixed-size read window over the file, and the one loop
//! that decodes entries, skips corrupt regions by resynchronising, and finds the torn tail.
//!
//! Recovery, compaction and the compaction's tail copy all read through this loop, so they agree
//! byte for byte on what a log contains.

use std::io::{self, Read};

use super::format::{EntryRef, FrameError, MAX_ENTRY_LEN, decode_entry};

/// Bytes read per refill. One MiB amortises the read syscall to well under 1% of scan time and is
/// far above the largest entry ([`MAX_ENTRY_LEN`]), so a refill is needed at most once per MiB.
pub const WINDOW_BYTES: usize = 1 << 20;

const _: () = assert!(WINDOW_BYTES >= 4 * MAX_ENTRY_LEN);

/// A read-ahead window over a byte source, tracking the source offset of its first byte.
pub struct Window<R> {
    source: R,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    offset: u64,
    eof: bool,
}

impl<R: Read> Window<R> {
    /// A window whose first byte is at `offset` of the underlying file.
    pub fn new(source: R, offset: u64) -> Window<R> {
        Window {
            source,
            buffer: vec![0u8; WINDOW_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            offset,
            eof: false,
        }
    }

    /// File offset of the first unconsumed byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The unconsumed bytes, at least `want` of them unless the source ended.
    ///
    /// `want` must not exceed [`WINDOW_BYTES`] (a caller bug; it is clamped).
    pub fn fill(&mut self, want: usize) -> io::Result<&[u8]> {
        let want = want.min(self.buffer.len());
        if self.end - self.start < want && !self.eof {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            while self.end < self.buffer.len() {
                match self.source.read(&mut self.buffer[self.end..]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => self.end += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buffer[self.start..self.end])
    }

    /// Marks `n` bytes as read. `n` must not exceed what `fill` returned.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        let n = n.min(self.end - self.start);
        self.start += n;
        self.offset += n as u64;
    }
}

/// What a scan skipped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanCounts {
    /// Corrupt regions (bad length or checksum) followed by a valid entry, skipped.
    pub corrupt_regions: u64,
    /// Bytes in those regions.
    pub corrupt_bytes: u64,
    /// Intact frames (checksum matches) of unknown type or malformed payload, skipped exactly.
    pub invalid_entries: u64,
}

/// Where a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// Offset just past the last valid entry (or bad body); the log's readable length.
    pub valid_end: u64,
    /// Bytes after `valid_end` that hold no valid entry: a torn (or corrupt) tail.
    pub tail_bytes: u64,
}

/// True if a complete frame with a matching checksum starts at `bytes[0]`.
fn frame_intact(bytes: &[u8], seed: u64) -> bool {
    matches!(
        decode_entry(bytes, seed),
        Ok(_) | Err(FrameError::BadBody { .. })
    )
}

/// Decodes every entry of the window in order and calls `visit(offset, entry, body)` for each
/// valid one (`body` = `type ‖ payload`).
///
/// A frame that fails its length or checksum starts a corrupt region; the scan moves forward one
/// byte at a time until a frame validates again. If none does before the end, the region is the
/// torn tail. Nothing in the bytes can make this fail; only I/O errors and `visit`'s own errors
/// are returned.
pub fn scan_entries<R: Read>(
    window: &mut Window<R>,
    seed: u64,
    counts: &mut ScanCounts,
    mut visit: impl FnMut(u64, EntryRef<'_>, &[u8]) -> io::Result<()>,
) -> io::Result<ScanEnd> {
    loop {
        let at = window.offset();
        let bytes = window.fill(MAX_ENTRY_LEN)?;
        if bytes.is_empty() {
            return Ok(ScanEnd {
                valid_end: at,
                tail_bytes: 0,
            });
        }
        match decode_entry(bytes, seed) {
            Ok((entry, len)) => {
                visit(at, entry, &bytes[super::format::ENTRY_HEADER_LEN..len])?;
                window.consume(len);
            }
            Err(FrameError::BadBody { len }) => {
                counts.invalid_entries += 1;
                window.consume(len);
            }
            Err(_) => loop {
                window.consume(1);
                let bytes = window.fill(MAX_ENTRY_LEN)?;
                if bytes.is_empty() {
                    return Ok(ScanEnd {
                        valid_end: at,
                        tail_bytes: window.offset() - at,
                    });
                }
                if frame_intact(bytes, seed) {
                    counts.corrupt_regions += 1;
                    counts.corrupt_bytes += window.offset() - at;
                    break;
                }
            },
        }
    }
}
