//! One server per data directory. SQLite, the blob store and the audit log
//! would each survive a second writer, but the server's in-memory state
//! would not: a second server's rollback would change what `show` reports
//! while the first kept serving the old version. So `start` takes an
//! exclusive advisory lock (`flock`) on `<data-dir>/server.lock` and holds
//! it until the server is dropped; a second server is refused, naming the
//! process that holds it, before it touches anything else in the directory.
//! The kernel releases the lock when the holder exits, even on SIGKILL, so
//! a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "server.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another server holds it.
    #[error(
        "{dir} is in use by another airlock server ({holder}); stop it first, or give this one another --data-dir (several servers on one store need PostgreSQL, a later feature)"
    )]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// What the lock file says about the holder (`pid N`), or that it
        /// says nothing readable.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The held lock; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Locks `dir` (which must exist) for this process, recording its pid
    /// in the lock file; refuses if another process (or another server in
    /// this one) holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc_o_nofollow())
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().strip_prefix("pid ") {
                    Some(pid) if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => {
                        format!("pid {pid}")
                    }
                    _ => "a process that recorded no pid".to_string(),
                };
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
            .and_then(|()| writeln!(file, "pid {}", std::process::id()))
            .and_then(|()| file.sync_data())
            .map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// `O_NOFOLLOW` on Linux (as in `archive.rs`): the lock file is never
/// reached through a symlink.
fn libc_o_nofollow() -> i32 {
    0o400000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let e = DataDirLock::acquire(dir.path()).unwrap_err();
        let LockError::Held { holder, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(holder, &format!("pid {}", std::process::id()));
        assert!(
            e.to_string().contains("in use by another airlock server"),
            "{e}"
        );
        drop(first);
        DataDirLock::acquire(dir.path()).expect("released on drop");
    }
}
