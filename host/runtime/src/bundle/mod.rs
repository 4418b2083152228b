//! Model data bundles: one directory, snapshotted by the host and granted
//! read-only to a model at `/bundle`.
//!
//! A bundle comes from whoever submits a candidate, so everything about it
//! is hostile until checked. Opening one runs in two passes over a cap-std
//! handle (nothing outside the bundle is reachable):
//!
//! 1. **Check**, reading only metadata: every entry's type is checked before
//!    anything is opened (a FIFO, socket, device or symlink is refused by
//!    name, so nothing can block or redirect the host), every name is
//!    checked ([`airlock_core::digest::check_name`]), and the operator's
//!    [`BundleCaps`] — entries, depth, total logical bytes (a sparse file
//!    counts at its full length) — are enforced before one byte is read.
//! 2. **Copy**, streaming each file through a hasher into a private snapshot
//!    (never whole into memory), reading at most the size checked in pass 1
//!    and refusing a file that changed in between.
//!
//! The digest ([`Digest::of_bundle_tree`]) is computed from exactly the
//! bytes written to the snapshot, and the plugin is granted the snapshot, so
//! what it reads is what the digest names, whatever happens to the original.
//!
//! Snapshots live in a host-owned directory
//! (`$TMPDIR/airlock-snapshots-<uid>/`), each holding a lock file locked for
//! its owner's life; creating a snapshot removes the ones whose owner died
//! without cleaning up (e.g. killed by SIGKILL).

mod metadata;
mod snapshot;
mod walk;

pub use metadata::{MetadataHashes, UNMAPPED_METADATA_HASH, host_value};
pub use snapshot::{snapshots_root, sweep};

use crate::error::SandboxError;
use airlock_core::digest::{Digest, NameError};
use serde::Deserialize;
use snapshot::Snapshot;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use walk::Source;

/// The operator's caps on a bundle, checked from metadata before any file
/// is read (config section `[bundle]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BundleCaps {
    /// Most bytes all files may add up to, counting each file at its
    /// logical length (sparse files are not cheaper).
    pub max_total_bytes: u64,
    /// Most entries (files and directories, the root not counted).
    pub max_entries: u64,
    /// Deepest nesting: an entry's path may have at most this many
    /// components (`a/b/c` has three).
    pub max_depth: u32,
}

/// The highest `max_depth` an operator may set: the walk holds one open
/// directory handle and one stack frame per level.
pub const MAX_DEPTH_CEILING: u32 = 256;

impl Default for BundleCaps {
    fn default() -> Self {
        BundleCaps {
            max_total_bytes: 2 << 30,
            max_entries: 10_000,
            max_depth: 16,
        }
    }
}

/// The kind of a bundle entry that is not a regular file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    /// A symbolic link (never followed: it could lead out of the bundle).
    Symlink,
    /// A FIFO: opening it blocks until a writer appears.
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character device such as `/dev/zero`: endless or side-effecting reads.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// Anything else the platform reports.
    Unknown,
}

impl fmt::Display for SpecialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecialKind::Symlink => "symlink",
            SpecialKind::Fifo => "FIFO (named pipe)",
            SpecialKind::Socket => "Unix socket",
            SpecialKind::CharDevice => "character device",
            SpecialKind::BlockDevice => "block device",
            SpecialKind::Unknown => "special file of unknown type",
        })
    }
}

/// Which operator cap a bundle exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// `bundle.max_total_bytes`.
    TotalBytes,
    /// `bundle.max_entries`.
    Entries,
    /// `bundle.max_depth`.
    Depth,
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cap::TotalBytes => "bundle.max_total_bytes",
            Cap::Entries => "bundle.max_entries",
            Cap::Depth => "bundle.max_depth",
        })
    }
}

impl Cap {
    /// What was found, in words, for the error message.
    fn found(self, value: u64, entry: &str) -> String {
        match self {
            Cap::TotalBytes => format!("the files through `{entry}` add up to {value} bytes"),
            Cap::Entries => format!("`{entry}` is entry number {value}"),
            Cap::Depth => format!("`{entry}` is {value} levels deep"),
        }
    }
}

/// Why a bundle could not be digested or snapshotted. Entry paths are
/// relative to the bundle and escaped ([`airlock_core::digest::escape_name`]), so a hostile name
/// cannot forge lines in the message.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The host could not read an entry or write the snapshot.
    #[error("{what} `{entry}`: {source}")]
    Io {
        /// What the host was doing.
        what: &'static str,
        /// The entry (or snapshot path) involved, escaped.
        entry: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An entry's name breaks the naming rules of the digest.
    #[error("entry `{entry}`: {problem}")]
    Name {
        /// The entry's path, escaped.
        entry: String,
        /// The rule it breaks.
        problem: NameError,
    },
    /// An entry that is not a regular file or a directory.
    #[error("entry `{entry}` is a {kind}; a bundle may hold only regular files and directories")]
    NotFileOrDir {
        /// The entry's path, escaped.
        entry: String,
        /// What it is.
        kind: SpecialKind,
    },
    /// The bundle exceeds an operator cap (found before reading any file).
    #[error(
        "over the cap {cap} = {limit}: {} (checked before reading; raise it in the [bundle] config section if this bundle is trusted)",
        cap.found(*value, entry)
    )]
    OverCap {
        /// The cap, by its config key.
        cap: Cap,
        /// The cap's value.
        limit: u64,
        /// What was found: bytes, entries or depth so far.
        value: u64,
        /// The entry at which the cap was crossed, escaped.
        entry: String,
    },
    /// An entry changed between the check and the copy.
    #[error("entry `{entry}` changed while the bundle was being snapshotted ({detail})")]
    Changed {
        /// The entry's path, escaped.
        entry: String,
        /// What changed.
        detail: String,
    },
    /// The shared snapshot directory is not one this user can trust.
    #[error("snapshot directory {} is unsafe: {problem}", path.display())]
    UnsafeSnapshotRoot {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

/// A model's data bundle: one directory, granted read-only at `/bundle`.
///
/// The bundle is snapshotted when it is opened (see the module docs) and
/// the plugin is granted the snapshot, so what it reads is what
/// [`Bundle::digest`] names.
#[derive(Clone)]
pub struct Bundle {
    snapshot: Arc<Snapshot>,
    metadata_hashes: Arc<MetadataHashes>,
    /// The version-1 bundle digest of the snapshot
    /// ([`Digest::of_bundle_tree`]).
    pub digest: Digest,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("digest", &self.digest)
            .field("dir", &self.dir())
            .finish()
    }
}

impl Bundle {
    /// Snapshots a bundle directory, or a single file (which becomes the
    /// only file of the bundle, keeping its name), under the default caps.
    pub fn from_path(path: &Path) -> Result<Bundle, SandboxError> {
        Bundle::from_path_with(path, &BundleCaps::default())
    }

    /// Snapshots a bundle under the operator's `caps`.
    pub fn from_path_with(path: &Path, caps: &BundleCaps) -> Result<Bundle, SandboxError> {
        Bundle::snapshot(path, caps, None)
    }

    /// Snapshots a bundle under `caps` into `snapshots` (created mode 0700
    /// if missing, and held to the same checks as the default root) rather
    /// than the per-user directory under `$TMPDIR`: a server keeps the
    /// plaintext of its bundles inside its own data directory.
    pub fn from_path_in(
        path: &Path,
        caps: &BundleCaps,
        snapshots: &Path,
    ) -> Result<Bundle, SandboxError> {
        Bundle::snapshot(path, caps, Some(snapshots))
    }

    fn snapshot(
        path: &Path,
        caps: &BundleCaps,
        root: Option<&Path>,
    ) -> Result<Bundle, SandboxError> {
        let wrap = |source| SandboxError::Bundle {
            path: path.to_path_buf(),
            source,
        };
        let source = Source::open(path).map_err(wrap)?;
        let plan = source.check(caps).map_err(wrap)?;
        let snapshot = Snapshot::create(root).map_err(wrap)?;
        let tree = source
            .copy(&plan, Some(&snapshot.bundle_dir))
            .map_err(wrap)?;
        let metadata_hashes = MetadataHashes::of_snapshot(&snapshot.bundle_dir).map_err(wrap)?;
        Ok(Bundle {
            digest: Digest::of_bundle_tree(&tree),
            snapshot: Arc::new(snapshot),
            metadata_hashes: Arc::new(metadata_hashes),
        })
    }

    /// The host directory granted to the plugin (the snapshot).
    pub fn dir(&self) -> &Path {
        &self.snapshot.bundle_dir
    }

    /// What a plugin sees as the `metadata-hash` of each snapshot entry.
    pub fn metadata_hashes(&self) -> Arc<MetadataHashes> {
        self.metadata_hashes.clone()
    }
}

/// Wraps an I/O error with what the host was doing and on which entry.
fn io_err<'a>(what: &'static str, entry: &'a str) -> impl FnOnce(io::Error) -> BundleError + 'a {
    move |source| BundleError::Io {
        what,
        entry: entry.to_string(),
        source,
    }
}

/// The kind of a special file from its type bits, in the order they are
/// checked; shared by std's and cap-std's metadata, which have no common
/// trait.
fn kind_from_bits(
    symlink: bool,
    fifo: bool,
    socket: bool,
    char_dev: bool,
    block_dev: bool,
) -> SpecialKind {
    match (symlink, fifo, socket, char_dev, block_dev) {
        (true, ..) => SpecialKind::Symlink,
        (_, true, ..) => SpecialKind::Fifo,
        (_, _, true, ..) => SpecialKind::Socket,
        (_, _, _, true, _) => SpecialKind::CharDevice,
        (_, _, _, _, true) => SpecialKind::BlockDevice,
        _ => SpecialKind::Unknown,
    }
}

/// The kind of a special file, from std's metadata.
fn std_special_kind(ft: &std::fs::FileType) -> SpecialKind {
    use std::os::unix::fs::FileTypeExt;
    kind_from_bits(
        ft.is_symlink(),
        ft.is_fifo(),
        ft.is_socket(),
        ft.is_char_device(),
        ft.is_block_device(),
    )
}

/// The kind of a special file, from cap-std's metadata.
fn cap_special_kind(ft: &cap_std::fs::FileType) -> SpecialKind {
    use cap_std::fs::FileTypeExt;
    kind_from_bits(
        ft.is_symlink(),
        ft.is_fifo(),
        ft.is_socket(),
        ft.is_char_device(),
        ft.is_block_device(),
    )
}

/// The digest [`Bundle::from_path_with`] would give the bundle at `path`,
/// computed by the same two passes without writing a snapshot.
pub fn digest_path(path: &Path, caps: &BundleCaps) -> Result<Digest, BundleError> {
    let source = Source::open(path)?;
    let plan = source.check(caps)?;
    Ok(Digest::of_bundle_tree(&source.copy(&plan, None)?))
}

#[cfg(test)]
mod tests {
    use super::snapshot::{LOCK_FILE, SNAPSHOT_PREFIX, own_uid, prepare_root};
    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::Duration;

    #[test]
    fn a_bundle_snapshotted_into_a_given_root_lands_there_and_goes_with_it() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("model.json"), b"{\"w\": 1}").unwrap();
        let data = tempfile::tempdir().unwrap();
        let root = data.path().join("snapshots");
        let b = Bundle::from_path_in(src.path(), &BundleCaps::default(), &root).unwrap();
        assert!(b.dir().starts_with(&root), "{}", b.dir().display());
        assert_eq!(
            std::fs::read(b.dir().join("model.json")).unwrap(),
            b"{\"w\": 1}"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(b.dir()), 0o700);
        assert_eq!(mode(&b.dir().join("model.json")), 0o600);
        assert_eq!(b.digest, Bundle::from_path(src.path()).unwrap().digest);
        let dir = b.dir().to_path_buf();
        drop(b);
        assert!(!dir.exists());
    }

    #[test]
    fn a_bundle_file_and_a_directory_holding_only_it_are_the_same_bundle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.json"), b"{}").unwrap();
        let from_dir = Bundle::from_path(dir.path()).unwrap();
        let from_file = Bundle::from_path(&dir.path().join("model.json")).unwrap();
        assert_eq!(from_dir.digest, from_file.digest);
        let listing: &[(&str, Option<&[u8]>)] = &[("model.json", Some(b"{}"))];
        assert_eq!(
            from_dir.digest,
            Digest::of_bundle_tree(&airlock_core::digest::tree_from_listing(listing).unwrap())
        );
        assert_eq!(
            std::fs::read(from_file.dir().join("model.json")).unwrap(),
            b"{}"
        );
    }

    #[test]
    fn the_digest_is_computed_from_the_snapshot_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("w/empty")).unwrap();
        std::fs::write(dir.path().join("w/x.bin"), vec![7u8; 200_000]).unwrap();
        let b = Bundle::from_path(dir.path()).unwrap();
        assert_eq!(
            digest_path(dir.path(), &BundleCaps::default()).unwrap(),
            b.digest
        );
        assert_eq!(
            digest_path(b.dir(), &BundleCaps::default()).unwrap(),
            b.digest
        );
        assert!(b.dir().join("w/empty").is_dir());
        // The lock file lives beside the granted directory, not in it.
        assert!(!b.dir().join(LOCK_FILE).exists());
        assert!(b.dir().parent().unwrap().join(LOCK_FILE).exists());
    }

    #[test]
    fn a_dropped_bundle_removes_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"1").unwrap();
        let b = Bundle::from_path(dir.path()).unwrap();
        let snap = b.dir().parent().unwrap().to_path_buf();
        let clone = b.clone();
        drop(b);
        assert!(snap.exists(), "a clone still uses it");
        drop(clone);
        assert!(!snap.exists());
    }

    #[test]
    fn an_entry_at_the_depth_cap_is_accepted_and_one_deeper_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let caps = BundleCaps {
            max_depth: 2,
            ..BundleCaps::default()
        };
        digest_path(dir.path(), &caps).unwrap();
        std::fs::write(dir.path().join("a/b/c"), b"").unwrap();
        let e = digest_path(dir.path(), &caps).unwrap_err();
        assert_eq!(
            e.to_string(),
            "over the cap bundle.max_depth = 2: `a/b/c` is 3 levels deep (checked before reading; raise it in the [bundle] config section if this bundle is trusted)"
        );
    }

    #[test]
    fn total_bytes_at_the_cap_are_accepted_and_one_more_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"12345").unwrap();
        std::fs::write(dir.path().join("b"), b"12345").unwrap();
        let caps = |n| BundleCaps {
            max_total_bytes: n,
            ..BundleCaps::default()
        };
        digest_path(dir.path(), &caps(10)).unwrap();
        match digest_path(dir.path(), &caps(9)).unwrap_err() {
            BundleError::OverCap {
                cap: Cap::TotalBytes,
                limit: 9,
                value: 10,
                ..
            } => {}
            other => panic!("{other}"),
        }
    }

    /// Runs pass 1 on `dir`, lets `change` act between the passes, then
    /// pass 2 into a fresh snapshot; returns the error and whether the
    /// snapshot directory is gone once dropped.
    fn change_between_passes(dir: &Path, change: impl FnOnce()) -> (BundleError, bool) {
        let source = Source::open(dir).unwrap();
        let plan = source.check(&BundleCaps::default()).unwrap();
        change();
        let snapshot = Snapshot::create(None).unwrap();
        let path = snapshot.path.clone();
        let e = source.copy(&plan, Some(&snapshot.bundle_dir)).unwrap_err();
        drop(snapshot);
        (e, !path.exists())
    }

    #[test]
    fn a_file_that_grows_after_the_check_is_refused_and_leaves_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.bin");
        std::fs::write(&f, b"1234").unwrap();
        let (e, gone) = change_between_passes(dir.path(), || {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&f)
                .unwrap()
                .write_all(&[0u8; 1 << 20])
                .unwrap();
        });
        assert_eq!(
            e.to_string(),
            "entry `w.bin` changed while the bundle was being snapshotted (it grew past the 4 bytes it had when checked)"
        );
        assert!(gone);
    }

    #[test]
    fn a_file_that_shrinks_after_the_check_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.bin");
        std::fs::write(&f, b"1234").unwrap();
        let (e, _) = change_between_passes(dir.path(), || std::fs::write(&f, b"12").unwrap());
        assert_eq!(
            e.to_string(),
            "entry `w.bin` changed while the bundle was being snapshotted (it had 4 bytes when checked but only 2 could be read)"
        );
    }

    #[test]
    fn a_file_swapped_for_a_fifo_after_the_check_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.bin");
        std::fs::write(&f, b"1234").unwrap();
        let start = std::time::Instant::now();
        let (e, _) = change_between_passes(dir.path(), || {
            std::fs::remove_file(&f).unwrap();
            let ok = std::process::Command::new("mkfifo")
                .arg(&f)
                .status()
                .unwrap();
            assert!(ok.success());
        });
        assert!(start.elapsed() < Duration::from_secs(5));
        match e {
            BundleError::NotFileOrDir {
                entry,
                kind: SpecialKind::Fifo,
            } => assert_eq!(entry, "w.bin"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_file_replaced_after_the_check_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.bin");
        std::fs::write(&f, b"1234").unwrap();
        let (e, _) = change_between_passes(dir.path(), || {
            let other = dir.path().join("other");
            std::fs::write(&other, b"5678").unwrap();
            std::fs::rename(&other, &f).unwrap();
        });
        assert_eq!(
            e.to_string(),
            "entry `w.bin` changed while the bundle was being snapshotted (the file was replaced)"
        );
    }

    #[test]
    fn a_snapshot_root_that_others_control_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let me = own_uid().unwrap();
        let root = base.path().join("snaps");
        assert_eq!(prepare_root(root.clone(), me).unwrap(), root);
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let problem = |r: Result<PathBuf, BundleError>| match r {
            Err(BundleError::UnsafeSnapshotRoot { problem, .. }) => problem,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            problem(prepare_root(root.clone(), me + 1)),
            format!("it is owned by uid {me}, not by this user (uid {})", me + 1)
        );
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(
            problem(prepare_root(root.clone(), me)),
            "others may write to it (mode 1777)"
        );
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        assert_eq!(
            problem(prepare_root(link, me)),
            "it is a symlink, not a directory"
        );
        let file = base.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(
            problem(prepare_root(file, me)),
            "it is a regular file, not a directory"
        );
    }

    #[test]
    fn a_stale_snapshot_without_a_lock_file_is_swept_and_other_names_are_not() {
        let root = snapshots_root().unwrap();
        let stale = root.join(format!(
            "{SNAPSHOT_PREFIX}unit-nolock-{}",
            std::process::id()
        ));
        let foreign = root.join(format!("keep-{}", std::process::id()));
        std::fs::create_dir_all(stale.join("bundle")).unwrap();
        std::fs::create_dir_all(&foreign).unwrap();
        sweep(&root);
        assert!(!stale.exists());
        assert!(foreign.exists());
        std::fs::remove_dir(&foreign).unwrap();
    }
}
