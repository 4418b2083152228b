//! Reading a bundle in two passes over a cap-std handle: the check, from
//! metadata only, under the operator's caps, and the copy, streamed through
//! the hash into the snapshot (or nowhere, for [`super::digest_path`]).

use super::{BundleCaps, BundleError, Cap, cap_special_kind, io_err, std_special_kind};
use airlock_core::digest::{Digest, NameError, Node, Tree, check_name, escape_name};
use cap_std::fs::{Dir, MetadataExt as _, OpenOptions, OpenOptionsExt as _};
use sha2::{Digest as _, Sha256};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read as _, Write};
use std::path::Path;

/// Where a bundle's entries are read from: a directory, or the parent of a
/// single file restricted to that one name.
pub(super) struct Source {
    dir: Dir,
    only: Option<OsString>,
}

/// What pass 1 found: the checked tree, with each entry's identity so the
/// copy can tell if it was swapped.
pub(super) enum Planned {
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

struct Budget<'a> {
    caps: &'a BundleCaps,
    entries: u64,
    bytes: u64,
}

impl Source {
    pub(super) fn open(path: &Path) -> Result<Source, BundleError> {
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
    pub(super) fn check(&self, caps: &BundleCaps) -> Result<Vec<(String, Planned)>, BundleError> {
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
    pub(super) fn copy(
        &self,
        plan: &[(String, Planned)],
        dst: Option<&Path>,
    ) -> Result<Tree, BundleError> {
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
            kind: cap_special_kind(&ft),
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
                    use std::os::unix::fs::DirBuilderExt as _;
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(to)
                        .map_err(io_err("cannot write snapshot of", &shown))?;
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
            kind: cap_special_kind(&m.file_type()),
        });
    }
    if (m.dev(), m.ino()) != id {
        return Err(BundleError::Changed {
            entry: shown.to_string(),
            detail: "the file was replaced".into(),
        });
    }
    let sink: Box<dyn Write> = match to {
        Some(path) => Box::new(io::BufWriter::with_capacity(COPY_BUFFER, {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io_err("cannot write snapshot of", shown))?
        })),
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
