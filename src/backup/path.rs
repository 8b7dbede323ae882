//! Which paths the backup log may live at, and the lock that keeps one node per log.
//!
//! Rules (README, "Backup path"):
//!
//! - The path must not be empty and must name a file (not end in `..` or `/`).
//! - Symlinks are resolved deliberately: the path is canonicalized, and the log is read, written
//!   and replaced at the **target**, so the symlink keeps pointing at the log after a compaction.
//!   A symlink whose target does not exist is refused (we would create a file somewhere the
//!   operator may not expect).
//! - The (resolved) path must be a regular file or absent. A FIFO, character or block device,
//!   socket or directory is refused with [`BackupError::NotARegularFile`] and left untouched:
//!   the node never opens, truncates or renames over it.
//! - Its siblings `<log>.tmp` (compaction and fresh-log staging) and `<log>.lock` must be regular
//!   files or absent too; the node removes or replaces only a regular `<log>.tmp`.
//! - [`lock_log`] takes an exclusive `flock` (`LOCK_EX | LOCK_NB`) on `<log>.lock`, held by the
//!   writer for the node's lifetime. The lock is on a separate file because compaction renames
//!   a new file over the log, which would leave a lock on the log's old inode behind. A second
//!   node on the same log gets [`BackupError::Locked`]. The lock file is created if missing
//!   (mode 0600 by umask), never truncated, and left in place at exit (removing it would race
//!   with a node starting); the kernel drops the lock when the process dies, SIGKILL included.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::BackupError;
use super::recover::temp_path;

/// The lock file of the log at `path`: `<log>.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// What kind of non-regular file `file_type` is, for messages.
fn kind_name(file_type: fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_symlink() {
        "a symlink"
    } else {
        "not a regular file"
    }
}

/// Checks `path` against the rules above and returns where the log really lives (symlinks
/// resolved). Touches nothing.
pub fn resolve_log_path(path: &Path) -> Result<PathBuf, BackupError> {
    let invalid = |reason: &'static str| BackupError::InvalidPath {
        path: path.to_path_buf(),
        reason,
    };
    if path.as_os_str().is_empty() {
        return Err(invalid("the backup path is empty"));
    }
    let resolved = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => match fs::canonicalize(path) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(invalid("it is a symlink whose target does not exist"));
            }
            Err(e) => return Err(BackupError::io("resolve symlink", path, e)),
        },
        Ok(_) => fs::canonicalize(path).map_err(|e| BackupError::io("resolve", path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(name) = path.file_name() else {
                return Err(invalid("it does not name a file"));
            };
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let dir =
                fs::canonicalize(dir).map_err(|e| BackupError::io("open directory", dir, e))?;
            dir.join(name)
        }
        Err(e) => return Err(BackupError::io("stat", path, e)),
    };
    require_regular_or_absent(&resolved, path)?;
    require_regular_or_absent(&temp_path(&resolved), path)?;
    require_regular_or_absent(&lock_path(&resolved), path)?;
    Ok(resolved)
}

/// `Ok` if nothing is at `file` or it is a regular file (not followed if it is a symlink).
fn require_regular_or_absent(file: &Path, asked: &Path) -> Result<(), BackupError> {
    match fs::symlink_metadata(file) {
        Ok(meta) if meta.file_type().is_file() => Ok(()),
        Ok(meta) => Err(BackupError::NotARegularFile {
            path: file.to_path_buf(),
            asked: asked.to_path_buf(),
            kind: kind_name(meta.file_type()),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackupError::io("stat", file, e)),
    }
}

/// Opens `file` without following a symlink and checks (on the open descriptor, so a swap after
/// [`resolve_log_path`] is caught) that it is a regular file.
pub(crate) fn open_regular(file: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let opened = options.custom_flags(libc::O_NOFOLLOW).open(file)?;
    if !opened.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(opened)
}

/// Takes the exclusive lock of the log at `resolved` (a path from [`resolve_log_path`]). The
/// lock lasts as long as the returned file is open.
pub fn lock_log(resolved: &Path) -> Result<File, BackupError> {
    let path = lock_path(resolved);
    let file = open_regular(
        &path,
        OpenOptions::new().append(true).create(true).mode(0o600),
    )
    .map_err(|e| BackupError::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(BackupError::Locked {
            path: resolved.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(BackupError::io("lock", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_nameless_paths_are_refused() {
        assert!(matches!(
            resolve_log_path(Path::new("")),
            Err(BackupError::InvalidPath { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_log_path(dir.path()).err();
        assert!(
            matches!(
                err,
                Some(BackupError::NotARegularFile {
                    kind: "a directory",
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn symlinks_resolve_to_their_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.log");
        fs::write(&target, b"").unwrap();
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let resolved = resolve_log_path(&link).unwrap();
        assert_eq!(resolved, fs::canonicalize(&target).unwrap());
        let dangling = dir.path().join("dangling.log");
        std::os::unix::fs::symlink(dir.path().join("missing"), &dangling).unwrap();
        assert!(matches!(
            resolve_log_path(&dangling),
            Err(BackupError::InvalidPath { .. })
        ));
    }

    #[test]
    fn a_second_lock_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let log = resolve_log_path(&dir.path().join("a.log")).unwrap();
        let first = lock_log(&log).unwrap();
        assert!(matches!(lock_log(&log), Err(BackupError::Locked { .. })));
        drop(first);
        let _again = lock_log(&log).unwrap();
    }
}
