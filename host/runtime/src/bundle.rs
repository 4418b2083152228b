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

use crate::error::SandboxError;
use airlock_core::digest::{Digest, NameError, Node, Tree, check_name, escape_name};
use cap_std::fs::{Dir, FileTypeExt as _, MetadataExt as _, OpenOptions, OpenOptionsExt as _};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read as _, Write};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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
/// relative to the bundle and escaped ([`escape_name`]), so a hostile name
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
        let wrap = |source| SandboxError::Bundle {
            path: path.to_path_buf(),
            source,
        };
        let source = Source::open(path).map_err(wrap)?;
        let plan = source.check(caps).map_err(wrap)?;
        let snapshot = Snapshot::create().map_err(wrap)?;
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

/// Domain prefix of the stable `metadata-hash` values.
const METADATA_HASH_DOMAIN: &[u8] = b"airlock-metadata-hash-v1\0";

/// What a plugin sees as WASI's `metadata-hash` of a bundle entry.
///
/// wasmtime-wasi answers `metadata-hash(-at)` with a hash of the host
/// file's device and inode numbers, which differ between two snapshots of
/// the same bundle (so two identical runs could behave differently) and, on
/// file systems that number inodes from a global counter, hint at how much
/// the host did since boot. This table maps each value wasmtime-wasi gives
/// for a snapshot entry to one derived only from the entry's path in the
/// bundle, so equal paths get equal values in every run and different paths
/// different ones.
#[derive(Debug, Default)]
pub struct MetadataHashes {
    by_host_value: std::collections::HashMap<u64, (u64, u64)>,
}

/// What an entry outside the table gets (never the host's value). Every
/// entry of a read-only snapshot is in the table, so this only shows if
/// wasmtime-wasi changed how it hashes; a test would then fail.
pub const UNMAPPED_METADATA_HASH: (u64, u64) = (0, 0);

impl MetadataHashes {
    /// Records every entry of a snapshot directory (which this process
    /// wrote, so walking it with std is safe), the root under the empty path.
    fn of_snapshot(root: &Path) -> Result<MetadataHashes, BundleError> {
        fn visit(t: &mut MetadataHashes, path: &Path, rel: &str) -> io::Result<()> {
            let meta = std::fs::symlink_metadata(path)?;
            t.by_host_value
                .insert(host_value(meta.dev(), meta.ino()), stable_value(rel));
            if meta.is_dir() {
                for entry in std::fs::read_dir(path)? {
                    let entry = entry?;
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    let child = if rel.is_empty() {
                        name.into_owned()
                    } else {
                        format!("{rel}/{name}")
                    };
                    visit(t, &entry.path(), &child)?;
                }
            }
            Ok(())
        }
        let mut t = MetadataHashes::default();
        visit(&mut t, root, "").map_err(io_err("cannot read snapshot", "."))?;
        Ok(t)
    }

    /// The stable value standing in for the one wasmtime-wasi computed,
    /// given its lower half.
    pub fn stable(&self, host_lower: u64) -> (u64, u64) {
        self.by_host_value
            .get(&host_lower)
            .copied()
            .unwrap_or(UNMAPPED_METADATA_HASH)
    }
}

/// The lower half of wasmtime-wasi's `metadata-hash` for a host file: std's
/// `DefaultHasher::new()` (the same keys everywhere in one program) over
/// the `(dev, ino)` pair.
pub fn host_value(dev: u64, ino: u64) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (dev, ino).hash(&mut h);
    h.finish()
}

fn stable_value(rel: &str) -> (u64, u64) {
    let d = Sha256::new()
        .chain_update(METADATA_HASH_DOMAIN)
        .chain_update(rel.as_bytes())
        .finalize();
    let half = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[i..i + 8]);
        u64::from_be_bytes(b)
    };
    (half(0), half(8))
}

/// The digest [`Bundle::from_path_with`] would give the bundle at `path`,
/// computed by the same two passes without writing a snapshot.
pub fn digest_path(path: &Path, caps: &BundleCaps) -> Result<Digest, BundleError> {
    let source = Source::open(path)?;
    let plan = source.check(caps)?;
    Ok(Digest::of_bundle_tree(&source.copy(&plan, None)?))
}

/// Where a bundle's entries are read from: a directory, or the parent of a
/// single file restricted to that one name.
struct Source {
    dir: Dir,
    only: Option<OsString>,
}

/// What pass 1 found: the checked tree, with each entry's identity so the
/// copy can tell if it was swapped.
enum Planned {
    File {
        size: u64,
        id: (u64, u64),
    },
    Dir {
        id: (u64, u64),
        entries: Vec<(String, Planned)>,
    },
}

/// A relative entry path, escaped for messages.
fn show(parent: &str, name: &OsStr) -> String {
    let name = escape_name(name);
    if parent.is_empty() {
        name
    } else {
        format!("{parent}/{name}")
    }
}

fn io_err<'a>(what: &'static str, entry: &'a str) -> impl FnOnce(io::Error) -> BundleError + 'a {
    move |source| BundleError::Io {
        what,
        entry: entry.to_string(),
        source,
    }
}

fn special_kind(ft: &cap_std::fs::FileType) -> SpecialKind {
    if ft.is_symlink() {
        SpecialKind::Symlink
    } else if ft.is_fifo() {
        SpecialKind::Fifo
    } else if ft.is_socket() {
        SpecialKind::Socket
    } else if ft.is_char_device() {
        SpecialKind::CharDevice
    } else if ft.is_block_device() {
        SpecialKind::BlockDevice
    } else {
        SpecialKind::Unknown
    }
}

fn std_special_kind(ft: &std::fs::FileType) -> SpecialKind {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        SpecialKind::Symlink
    } else if ft.is_fifo() {
        SpecialKind::Fifo
    } else if ft.is_socket() {
        SpecialKind::Socket
    } else if ft.is_char_device() {
        SpecialKind::CharDevice
    } else if ft.is_block_device() {
        SpecialKind::BlockDevice
    } else {
        SpecialKind::Unknown
    }
}

struct Budget<'a> {
    caps: &'a BundleCaps,
    entries: u64,
    bytes: u64,
}

impl Source {
    fn open(path: &Path) -> Result<Source, BundleError> {
        let shown = path.display().to_string();
        let meta = std::fs::symlink_metadata(path).map_err(io_err("cannot read", &shown))?;
        let ambient = |p: &Path| {
            Dir::open_ambient_dir(p, cap_std::ambient_authority())
                .map_err(io_err("cannot open directory", &shown))
        };
        if meta.is_dir() {
            Ok(Source {
                dir: ambient(path)?,
                only: None,
            })
        } else if meta.is_file() {
            let name = path.file_name().ok_or_else(|| BundleError::Name {
                entry: shown.clone(),
                problem: NameError::NotAComponent {
                    name: escape_name(path.as_os_str()),
                },
            })?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            Ok(Source {
                dir: ambient(parent)?,
                only: Some(name.to_os_string()),
            })
        } else {
            Err(BundleError::NotFileOrDir {
                entry: escape_name(path.as_os_str()),
                kind: std_special_kind(&meta.file_type()),
            })
        }
    }

    /// Pass 1: types, names and caps, from metadata only.
    fn check(&self, caps: &BundleCaps) -> Result<Vec<(String, Planned)>, BundleError> {
        let mut budget = Budget {
            caps,
            entries: 0,
            bytes: 0,
        };
        match &self.only {
            None => check_dir(&self.dir, "", 1, &mut budget),
            Some(name) => {
                let entry = escape_name(name);
                let meta = self
                    .dir
                    .symlink_metadata(name)
                    .map_err(io_err("cannot read", &entry))?;
                Ok(vec![check_entry(
                    &self.dir,
                    name,
                    meta,
                    "",
                    1,
                    &mut budget,
                )?])
            }
        }
    }

    /// Pass 2: streams every planned file through a hasher, into `dst`
    /// when given, and returns the tree the digest is computed from.
    fn copy(&self, plan: &[(String, Planned)], dst: Option<&Path>) -> Result<Tree, BundleError> {
        copy_dir(&self.dir, "", plan, dst)
    }
}

fn check_dir(
    dir: &Dir,
    rel: &str,
    depth: u32,
    budget: &mut Budget<'_>,
) -> Result<Vec<(String, Planned)>, BundleError> {
    let shown_dir = if rel.is_empty() { "." } else { rel };
    let mut out = Vec::new();
    for entry in dir
        .entries()
        .map_err(io_err("cannot list directory", shown_dir))?
    {
        let entry = entry.map_err(io_err("cannot list directory", shown_dir))?;
        let name = entry.file_name();
        let shown = show(rel, &name);
        let meta = entry.metadata().map_err(io_err("cannot read", &shown))?;
        out.push(check_entry(dir, &name, meta, rel, depth, budget)?);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn check_entry(
    dir: &Dir,
    name: &OsStr,
    meta: cap_std::fs::Metadata,
    rel: &str,
    depth: u32,
    budget: &mut Budget<'_>,
) -> Result<(String, Planned), BundleError> {
    let shown = show(rel, name);
    let caps = budget.caps;
    budget.entries += 1;
    if budget.entries > caps.max_entries {
        return Err(BundleError::OverCap {
            cap: Cap::Entries,
            limit: caps.max_entries,
            value: budget.entries,
            entry: shown,
        });
    }
    if depth > caps.max_depth {
        return Err(BundleError::OverCap {
            cap: Cap::Depth,
            limit: u64::from(caps.max_depth),
            value: u64::from(depth),
            entry: shown,
        });
    }
    // Refuse the name before opening anything under it.
    let name_str = check_name(name)
        .map_err(|problem| BundleError::Name {
            entry: shown.clone(),
            problem,
        })?
        .to_string();
    let ft = meta.file_type();
    let id = (meta.dev(), meta.ino());
    if ft.is_file() {
        budget.bytes = budget.bytes.saturating_add(meta.len());
        if budget.bytes > caps.max_total_bytes {
            return Err(BundleError::OverCap {
                cap: Cap::TotalBytes,
                limit: caps.max_total_bytes,
                value: budget.bytes,
                entry: shown,
            });
        }
        Ok((
            name_str,
            Planned::File {
                size: meta.len(),
                id,
            },
        ))
    } else if ft.is_dir() {
        let sub = open_dir(dir, name, id, &shown)?;
        let entries = check_dir(&sub, &shown, depth + 1, budget)?;
        Ok((name_str, Planned::Dir { id, entries }))
    } else {
        Err(BundleError::NotFileOrDir {
            entry: shown,
            kind: special_kind(&ft),
        })
    }
}

/// Opens a subdirectory and checks it is the one whose metadata was read.
fn open_dir(dir: &Dir, name: &OsStr, id: (u64, u64), shown: &str) -> Result<Dir, BundleError> {
    let sub = dir
        .open_dir(name)
        .map_err(io_err("cannot open directory", shown))?;
    let m = sub.dir_metadata().map_err(io_err("cannot read", shown))?;
    if (m.dev(), m.ino()) != id {
        return Err(BundleError::Changed {
            entry: shown.to_string(),
            detail: "the directory was replaced".into(),
        });
    }
    Ok(sub)
}

/// `O_NONBLOCK | O_NOFOLLOW | O_NOCTTY`: if an entry was swapped for a FIFO,
/// a symlink or a terminal after it was checked, opening it neither blocks,
/// follows it nor adopts it; the type is then checked on the handle.
const SAFE_OPEN_FLAGS: i32 = libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY;

/// Copy buffer size: bounded memory per file, whatever its size.
const COPY_BUFFER: usize = 64 << 10;

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn copy_dir(
    src: &Dir,
    rel: &str,
    plan: &[(String, Planned)],
    dst: Option<&Path>,
) -> Result<Tree, BundleError> {
    let mut tree = Tree::new();
    for (name, planned) in plan {
        let shown = show(rel, OsStr::new(name));
        let to = dst.map(|d| d.join(name));
        let node = match planned {
            Planned::File { size, id } => copy_file(src, name, *size, *id, &shown, to.as_deref())?,
            Planned::Dir { id, entries } => {
                let sub = open_dir(src, OsStr::new(name), *id, &shown)?;
                if let Some(to) = &to {
                    std::fs::create_dir(to).map_err(io_err("cannot write snapshot of", &shown))?;
                }
                Node::Dir(copy_dir(&sub, &shown, entries, to.as_deref())?)
            }
        };
        tree.insert(OsStr::new(name), node)
            .map_err(|problem| BundleError::Name {
                entry: shown.clone(),
                problem,
            })?;
    }
    Ok(tree)
}

fn copy_file(
    src: &Dir,
    name: &str,
    size: u64,
    id: (u64, u64),
    shown: &str,
    to: Option<&Path>,
) -> Result<Node, BundleError> {
    let mut opts = OpenOptions::new();
    opts.read(true).custom_flags(SAFE_OPEN_FLAGS);
    let file = src
        .open_with(name, &opts)
        .map_err(io_err("cannot open", shown))?;
    let m = file.metadata().map_err(io_err("cannot read", shown))?;
    if !m.is_file() {
        return Err(BundleError::NotFileOrDir {
            entry: shown.to_string(),
            kind: special_kind(&m.file_type()),
        });
    }
    if (m.dev(), m.ino()) != id {
        return Err(BundleError::Changed {
            entry: shown.to_string(),
            detail: "the file was replaced".into(),
        });
    }
    let sink: Box<dyn Write> = match to {
        Some(path) => Box::new(io::BufWriter::with_capacity(
            COPY_BUFFER,
            std::fs::File::create_new(path).map_err(io_err("cannot write snapshot of", shown))?,
        )),
        None => Box::new(io::sink()),
    };
    let mut out = Hashing {
        inner: sink,
        hasher: Sha256::new(),
    };
    // Read at most one byte more than was checked: enough to notice growth,
    // never enough to let a growing file exceed the caps.
    let copied = io::copy(&mut file.take(size.saturating_add(1)), &mut out)
        .map_err(io_err("cannot copy", shown))?;
    out.flush()
        .map_err(io_err("cannot write snapshot of", shown))?;
    if copied != size {
        return Err(BundleError::Changed {
            entry: shown.to_string(),
            detail: if copied > size {
                format!("it grew past the {size} bytes it had when checked")
            } else {
                format!("it had {size} bytes when checked but only {copied} could be read")
            },
        });
    }
    Ok(Node::File {
        size,
        content: Digest(out.hasher.finalize().into()),
    })
}

/// How long a half-created snapshot (`.new-*`) is left alone before a sweep
/// may remove it: its creator holds no lock for a moment between creating
/// its lock file and locking it.
const STAGING_GRACE: Duration = Duration::from_secs(60);

/// Name of the lock file in every snapshot directory.
const LOCK_FILE: &str = "lock";

/// Prefix of a finished snapshot directory.
const SNAPSHOT_PREFIX: &str = "snap-";

/// Prefix of a snapshot directory being set up.
const STAGING_PREFIX: &str = ".new-";

/// One snapshot directory: `<root>/snap-XXXX/` holding `lock` (locked for
/// this value's life) and `bundle/` (what the plugin is granted). Dropping
/// it removes the directory, then releases the lock.
struct Snapshot {
    path: PathBuf,
    bundle_dir: PathBuf,
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
fn own_uid() -> io::Result<u32> {
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
fn prepare_root(root: PathBuf, uid: u32) -> Result<PathBuf, BundleError> {
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
    fn create() -> Result<Snapshot, BundleError> {
        let root = snapshots_root()?;
        let shown = root.display().to_string();
        let staging = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(&root)
            .map_err(io_err("cannot create a snapshot in", &shown))?
            .keep();
        let lock = std::fs::File::create_new(staging.join(LOCK_FILE))
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
        std::fs::create_dir(&snapshot.bundle_dir)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let snapshot = Snapshot::create().unwrap();
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
