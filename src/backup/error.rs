//! The backup layer's error type: I/O failures with the operation and path that failed, refused
//! headers, and the states of the writer thread as seen by a handle.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::format::{HEADER_LEN, HeaderError};

/// Why a backup operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BackupError {
    /// A file operation failed.
    Io {
        /// What was being done ("open", "fsync", "rename", …).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file does not start with the backup log's magic bytes.
    NotABackupLog {
        /// The file.
        path: PathBuf,
    },
    /// The file is shorter than a header but not empty.
    TruncatedHeader {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len_bytes: u64,
    },
    /// The header's check does not match its bytes.
    CorruptHeader {
        /// The file.
        path: PathBuf,
    },
    /// The header names a format version this build cannot read.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u16,
    },
    /// The header sets flags this build does not know.
    UnknownFlags {
        /// The file.
        path: PathBuf,
        /// The flags found.
        flags: u16,
    },
    /// A tombstone's key is longer than a dat key can be (255 bytes).
    KeyTooLong {
        /// The key's length.
        len: usize,
    },
    /// `try_append_*`: the writer's channel is full; the entry was not queued.
    Full,
    /// The writer thread has shut down.
    Closed,
    /// The writer stopped accepting entries after an fsync failed (after a failed fsync the page
    /// cache's state is unknown, so the only safe continuation is a restart and recovery).
    WriterFailed,
    /// The backup path cannot name a log (empty, a dangling symlink, …).
    InvalidPath {
        /// The path as given.
        path: PathBuf,
        /// Why, in words.
        reason: &'static str,
    },
    /// The log path (or its `.tmp`/`.lock` sibling) exists and is not a regular file; it was
    /// left untouched.
    NotARegularFile {
        /// The offending file (symlinks resolved).
        path: PathBuf,
        /// The backup path as given.
        asked: PathBuf,
        /// "a FIFO", "a character device", …
        kind: &'static str,
    },
    /// Another process holds the log's lock: another node uses this log.
    Locked {
        /// The log (symlinks resolved).
        path: PathBuf,
    },
}

impl BackupError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> BackupError {
        BackupError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn from_header(path: impl Into<PathBuf>, error: HeaderError) -> BackupError {
        let path = path.into();
        match error {
            HeaderError::Truncated => BackupError::TruncatedHeader { path, len_bytes: 0 },
            HeaderError::NotALog => BackupError::NotABackupLog { path },
            HeaderError::Version(version) => BackupError::UnsupportedVersion { path, version },
            HeaderError::Flags(flags) => BackupError::UnknownFlags { path, flags },
            HeaderError::Check => BackupError::CorruptHeader { path },
        }
    }

    /// A copy to hand to each of several waiters (`io::Error` is not `Clone`; the copy keeps
    /// its kind and message).
    pub(crate) fn duplicate(&self) -> BackupError {
        match self {
            BackupError::Io { op, path, source } => BackupError::Io {
                op,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            BackupError::NotABackupLog { path } => {
                BackupError::NotABackupLog { path: path.clone() }
            }
            BackupError::TruncatedHeader { path, len_bytes } => BackupError::TruncatedHeader {
                path: path.clone(),
                len_bytes: *len_bytes,
            },
            BackupError::CorruptHeader { path } => {
                BackupError::CorruptHeader { path: path.clone() }
            }
            BackupError::UnsupportedVersion { path, version } => BackupError::UnsupportedVersion {
                path: path.clone(),
                version: *version,
            },
            BackupError::UnknownFlags { path, flags } => BackupError::UnknownFlags {
                path: path.clone(),
                flags: *flags,
            },
            BackupError::KeyTooLong { len } => BackupError::KeyTooLong { len: *len },
            BackupError::Full => BackupError::Full,
            BackupError::Closed => BackupError::Closed,
            BackupError::WriterFailed => BackupError::WriterFailed,
            BackupError::InvalidPath { path, reason } => BackupError::InvalidPath {
                path: path.clone(),
                reason,
            },
            BackupError::NotARegularFile { path, asked, kind } => BackupError::NotARegularFile {
                path: path.clone(),
                asked: asked.clone(),
                kind,
            },
            BackupError::Locked { path } => BackupError::Locked { path: path.clone() },
        }
    }
}

impl fmt::Display for BackupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackupError::Io { op, path, source } => {
                write!(f, "backup: {op} {}: {source}", path.display())
            }
            BackupError::NotABackupLog { path } => write!(
                f,
                "backup: {} is not a dave backup log (bad magic bytes); move it aside or point \
                 the node at another path",
                path.display()
            ),
            BackupError::TruncatedHeader { path, len_bytes } => write!(
                f,
                "backup: {} is {len_bytes} bytes, shorter than the {HEADER_LEN}-byte header; \
                 not a dave backup log",
                path.display()
            ),
            BackupError::CorruptHeader { path } => write!(
                f,
                "backup: {} has a corrupt header (check mismatch); its entries cannot be \
                 verified without it",
                path.display()
            ),
            BackupError::UnsupportedVersion { path, version } => write!(
                f,
                "backup: {} has format version {version}; this build reads version {}",
                path.display(),
                super::format::FORMAT_VERSION
            ),
            BackupError::UnknownFlags { path, flags } => write!(
                f,
                "backup: {} sets header flags {flags:#06x} that this build does not know",
                path.display()
            ),
            BackupError::KeyTooLong { len } => {
                write!(f, "backup: tombstone key is {len} bytes; at most 255")
            }
            BackupError::Full => f.write_str("backup: writer queue full"),
            BackupError::Closed => f.write_str("backup: writer has shut down"),
            BackupError::WriterFailed => f.write_str(
                "backup: writer stopped after an fsync failure; restart to recover the log",
            ),
            BackupError::InvalidPath { path, reason } => {
                write!(f, "backup: cannot use {:?} as the log: {reason}", path)
            }
            BackupError::NotARegularFile { path, asked, kind } => write!(
                f,
                "backup: {} is {kind}, not a regular file (backup path {}); refusing to use or \
                 replace it",
                path.display(),
                asked.display()
            ),
            BackupError::Locked { path } => write!(
                f,
                "backup: {} is locked by another process (another dave node uses this log); \
                 stop it or choose another --backup path",
                path.display()
            ),
        }
    }
}

impl std::error::Error for BackupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BackupError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
