//! Snapshot directories: where bundles are copied, locked for their
//! owner's life, and swept when their owner died without cleaning up.

use super::{BundleError, io_err, std_special_kind};
use std::io;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// How long a half-created snapshot (`.new-*`) is left alone before a sweep
/// may remove it: its creator holds no lock for a moment between creating
/// its lock file and locking it.
const STAGING_GRACE: Duration = Duration::from_secs(60);

/// Name of the lock file in every snapshot directory.
pub(super) const LOCK_FILE: &str = "lock";

/// Prefix of a finished snapshot directory.
pub(super) const SNAPSHOT_PREFIX: &str = "snap-";

/// Prefix of a snapshot directory being set up.
const STAGING_PREFIX: &str = ".new-";

/// One snapshot directory: `<root>/snap-XXXX/` holding `lock` (locked for
/// this value's life) and `bundle/` (what the plugin is granted). Dropping
/// it removes the directory, then releases the lock.
pub(super) struct Snapshot {
    pub(super) path: PathBuf,
    pub(super) bundle_dir: PathBuf,
    _lock: std::fs::File,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // Still locked here: the lock file is closed after this returns.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// This process's effective uid, read from a file it creates (std has no
/// safe `geteuid`, and this crate has no unsafe code).
pub(super) fn own_uid() -> io::Result<u32> {
    static UID: OnceLock<u32> = OnceLock::new();
    if let Some(uid) = UID.get() {
        return Ok(*uid);
    }
    let uid = tempfile::tempfile()?.metadata()?.uid();
    Ok(*UID.get_or_init(|| uid))
}

/// The host-owned directory that holds every snapshot of this user:
/// `$TMPDIR/airlock-snapshots-<uid>`, created mode 0700 and refused unless
/// it is a real directory owned by this user that no one else can write
/// (another local user who could rename entries in it could swap a snapshot
/// after it was digested).
pub fn snapshots_root() -> Result<PathBuf, BundleError> {
    let uid = own_uid().map_err(io_err("cannot create a file in", "$TMPDIR"))?;
    prepare_root(
        std::env::temp_dir().join(format!("airlock-snapshots-{uid}")),
        uid,
    )
}

/// Creates `root` (mode 0700) if needed and checks that `uid` alone
/// controls it.
pub(super) fn prepare_root(root: PathBuf, uid: u32) -> Result<PathBuf, BundleError> {
    let shown = root.display().to_string();
    match std::fs::DirBuilder::new().mode(0o700).create(&root) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("cannot create", &shown)(e)),
    }
    let meta = std::fs::symlink_metadata(&root).map_err(io_err("cannot read", &shown))?;
    let unsafe_root = |problem: String| BundleError::UnsafeSnapshotRoot {
        path: root.clone(),
        problem,
    };
    if meta.is_file() {
        return Err(unsafe_root("it is a regular file, not a directory".into()));
    }
    if !meta.is_dir() {
        return Err(unsafe_root(format!(
            "it is a {}, not a directory",
            std_special_kind(&meta.file_type())
        )));
    }
    if meta.uid() != uid {
        return Err(unsafe_root(format!(
            "it is owned by uid {}, not by this user (uid {uid})",
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(unsafe_root(format!(
            "others may write to it (mode {:o})",
            meta.permissions().mode() & 0o7777
        )));
    }
    Ok(root)
}

impl Snapshot {
    /// Creates a locked, empty snapshot directory, then sweeps abandoned
    /// siblings.
    pub(super) fn create(root: Option<&Path>) -> Result<Snapshot, BundleError> {
        let root = match root {
            None => snapshots_root()?,
            Some(r) => prepare_root(
                r.to_path_buf(),
                own_uid().map_err(io_err("cannot create a file in", "$TMPDIR"))?,
            )?,
        };
        let shown = root.display().to_string();
        let staging = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&root)
            .map_err(io_err("cannot create a snapshot in", &shown))?
            .keep();
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(staging.join(LOCK_FILE))
            .map_err(io_err("cannot create a snapshot in", &shown))?;
        lock.try_lock().map_err(|e| {
            io_err("cannot lock a snapshot in", &shown)(match e {
                std::fs::TryLockError::Error(e) => e,
                std::fs::TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
            })
        })?;
        let suffix = staging
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(STAGING_PREFIX))
            .unwrap_or("x")
            .to_string();
        let path = root.join(format!("{SNAPSHOT_PREFIX}{suffix}"));
        if let Err(e) = std::fs::rename(&staging, &path) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(io_err("cannot create a snapshot in", &shown)(e));
        }
        // From here on, dropping the value removes the directory.
        let snapshot = Snapshot {
            bundle_dir: path.join("bundle"),
            path,
            _lock: lock,
        };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&snapshot.bundle_dir)
            .map_err(io_err("cannot create a snapshot in", &shown))?;
        sweep(&root);
        Ok(snapshot)
    }
}

/// Removes the snapshot directories under `root` whose owner is gone (their
/// lock can be taken), and half-created ones older than [`STAGING_GRACE`].
/// Best effort: a directory that cannot be removed is left for a later sweep.
/// Returns how many were removed.
pub fn sweep(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        let candidate = if name.starts_with(SNAPSHOT_PREFIX) {
            true
        } else if name.starts_with(STAGING_PREFIX) {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STAGING_GRACE)
        } else {
            false
        };
        if candidate && remove_if_abandoned(&path) {
            removed += 1;
        }
    }
    removed
}

/// Removes one snapshot directory if no live process holds its lock; the
/// lock is held while removing, so a concurrent sweep skips it.
fn remove_if_abandoned(dir: &Path) -> bool {
    match std::fs::File::open(dir.join(LOCK_FILE)) {
        Ok(lock) => match lock.try_lock() {
            Ok(()) => std::fs::remove_dir_all(dir).is_ok(),
            Err(_) => false,
        },
        // A finished snapshot always has its lock file until it is being
        // removed; without one, nobody owns it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::remove_dir_all(dir).is_ok(),
        Err(_) => false,
    }
}
