//! Model bundles arrive as uncompressed tar archives (a bundle is a
//! directory tree). Unpacking is hostile-input handling: only regular files
//! and directories, names that pass the bundle name rule, no absolute path,
//! no `..`, no links or devices, and caps on entries, bytes and depth
//! checked from each header before its bytes are written. Everything lands
//! in a fresh directory the caller owns; nothing is written outside it.

use airlock_runtime::bundle::BundleCaps;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Why an archive was refused; every variant names the entry.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The tar stream itself is malformed or truncated.
    #[error("bundle archive is not a valid tar stream: {0}")]
    Malformed(String),
    /// An entry type other than a regular file or directory.
    #[error(
        "bundle archive entry {name:?} is a {kind}; only regular files and directories are allowed"
    )]
    EntryType {
        /// The entry's name.
        name: String,
        /// What it is.
        kind: &'static str,
    },
    /// A name that is absolute, climbs out, or breaks the name rule.
    #[error("bundle archive entry {name:?}: {why}")]
    BadName {
        /// The entry's name as written.
        name: String,
        /// Which rule.
        why: String,
    },
    /// Over one of the `[bundle]` caps.
    #[error("bundle archive is over the {cap} cap of {limit}")]
    OverCap {
        /// Which cap.
        cap: &'static str,
        /// Its value.
        limit: u64,
    },
    /// The same path twice.
    #[error("bundle archive holds {name:?} twice")]
    Duplicate {
        /// The entry's name.
        name: String,
    },
    /// Reading the archive's bytes after the tar end marker failed: the
    /// blob holding it did not hash to its name (or could not be read).
    #[error("reading the bundle archive to its end: {0}")]
    Source(std::io::Error),
    /// Writing the unpacked tree.
    #[error("unpacking {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Unpacks `archive` into the empty directory `dest` under `caps`, then
/// reads whatever follows the tar end marker to the end: a blob reader
/// checks the blob's hash only at its end, so stopping at the marker would
/// let a changed byte anywhere in the blob go unnoticed.
pub fn unpack(archive: impl Read, dest: &Path, caps: &BundleCaps) -> Result<u64, ArchiveError> {
    let mut ar = tar::Archive::new(archive);
    let total = unpack_entries(&mut ar, dest, caps)?;
    std::io::copy(&mut ar.into_inner(), &mut std::io::sink()).map_err(ArchiveError::Source)?;
    Ok(total)
}

fn unpack_entries<R: Read>(
    ar: &mut tar::Archive<R>,
    dest: &Path,
    caps: &BundleCaps,
) -> Result<u64, ArchiveError> {
    let mut entries_seen = 0u64;
    let mut total = 0u64;
    let mut seen = std::collections::HashSet::new();
    let entries = ar
        .entries()
        .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let name = std::str::from_utf8(&raw).map_err(|_| ArchiveError::BadName {
            name: shown.clone(),
            why: "not UTF-8".into(),
        })?;
        let kind = entry.header().entry_type();
        let is_dir = kind.is_dir();
        if !(is_dir || kind.is_file()) {
            let kind = match kind {
                tar::EntryType::Symlink => "symbolic link",
                tar::EntryType::Link => "hard link",
                tar::EntryType::Char | tar::EntryType::Block => "device",
                tar::EntryType::Fifo => "FIFO",
                _ => "special entry",
            };
            return Err(ArchiveError::EntryType { name: shown, kind });
        }
        let rel = relative(name)?;
        if rel.as_os_str().is_empty() {
            continue; // "./" itself
        }
        let depth = rel.components().count() as u64;
        if depth > u64::from(caps.max_depth) {
            return Err(ArchiveError::OverCap {
                cap: "bundle.max_depth",
                limit: u64::from(caps.max_depth),
            });
        }
        entries_seen += 1;
        if entries_seen > caps.max_entries {
            return Err(ArchiveError::OverCap {
                cap: "bundle.max_entries",
                limit: caps.max_entries,
            });
        }
        if !seen.insert(rel.clone()) {
            return Err(ArchiveError::Duplicate { name: shown });
        }
        let target = dest.join(&rel);
        let io = |source| ArchiveError::Io {
            path: rel.clone(),
            source,
        };
        if let Some(parent) = target.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io)?;
        }
        if is_dir {
            match std::fs::DirBuilder::new().mode(0o700).create(&target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && target.is_dir() => {}
                Err(e) => return Err(io(e)),
            }
            continue;
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        total = total.saturating_add(size);
        if total > caps.max_total_bytes {
            return Err(ArchiveError::OverCap {
                cap: "bundle.max_total_bytes",
                limit: caps.max_total_bytes,
            });
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(&target)
            .map_err(io)?;
        let copied = std::io::copy(&mut (&mut entry).take(size), &mut out).map_err(io)?;
        if copied != size {
            return Err(ArchiveError::Malformed(format!(
                "entry {shown:?} is truncated: {copied} of {size} bytes"
            )));
        }
    }
    Ok(total)
}

/// `O_NOFOLLOW` on Linux, so that nothing is ever written through a link.
fn libc_nofollow() -> i32 {
    0o400000
}

/// The entry's path as a relative path of normal components, or why not.
fn relative(name: &str) -> Result<PathBuf, ArchiveError> {
    let bad = |why: &str| ArchiveError::BadName {
        name: name.to_string(),
        why: why.to_string(),
    };
    if name.contains('\0') {
        return Err(bad("holds NUL"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(part) => {
                let part = part.to_str().ok_or_else(|| bad("not UTF-8"))?;
                airlock_core::digest::check_name(std::ffi::OsStr::new(part))
                    .map_err(|e| bad(&e.to_string()))?;
                out.push(part);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("climbs out with `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("is an absolute path")),
        }
    }
    Ok(out)
}

/// Writes `dir` (a bundle directory) as a tar archive: what the CLI uploads.
pub fn pack(dir: &Path, out: impl std::io::Write) -> std::io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    b.append_dir_all(".", dir)?;
    b.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> BundleCaps {
        BundleCaps {
            max_total_bytes: 1 << 20,
            max_entries: 16,
            max_depth: 4,
        }
    }

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_old();
            // Write the raw name, bypassing the builder's own checks, as an
            // attacker would.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            out.extend(std::iter::repeat_n(0u8, pad));
        }
        out.extend([0u8; 1024]);
        out
    }

    #[test]
    fn a_packed_directory_unpacks_to_the_same_digest() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("sub")).unwrap();
        std::fs::write(src.path().join("model.json"), b"{}").unwrap();
        std::fs::write(src.path().join("sub/w.bin"), b"1234").unwrap();
        let mut bytes = Vec::new();
        pack(src.path(), &mut bytes).unwrap();
        let dst = tempfile::tempdir().unwrap();
        unpack(&bytes[..], dst.path(), &caps()).unwrap();
        let a = airlock_runtime::bundle::digest_path(src.path(), &caps()).unwrap();
        let b = airlock_runtime::bundle::digest_path(dst.path(), &caps()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn hostile_entries_are_refused_naming_them_and_nothing_lands_outside() {
        let outside = tempfile::tempdir().unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                tar_with(&[("../evil", tar::EntryType::Regular, b"x")]),
                "..",
            ),
            (
                tar_with(&[("/etc/evil", tar::EntryType::Regular, b"x")]),
                "absolute",
            ),
            (
                tar_with(&[("link", tar::EntryType::Symlink, b"")]),
                "symbolic link",
            ),
            (
                tar_with(&[("hard", tar::EntryType::Link, b"")]),
                "hard link",
            ),
            (tar_with(&[("dev", tar::EntryType::Char, b"")]), "device"),
            (
                tar_with(&[
                    ("a", tar::EntryType::Regular, b"1"),
                    ("a", tar::EntryType::Regular, b"2"),
                ]),
                "twice",
            ),
            (
                tar_with(&[("a/b/c/d/e", tar::EntryType::Regular, b"1")]),
                "max_depth",
            ),
            (
                tar_with(&[("big", tar::EntryType::Regular, &vec![0u8; (1 << 20) + 1])]),
                "max_total_bytes",
            ),
            (
                b"not a tar at all, just some bytes that go on".repeat(20),
                "tar",
            ),
        ];
        for (bytes, expect) in cases {
            let dst = outside.path().join("dest");
            let _ = std::fs::remove_dir_all(&dst);
            std::fs::create_dir(&dst).unwrap();
            let e = unpack(&bytes[..], &dst, &caps()).unwrap_err();
            assert!(
                e.to_string().contains(expect),
                "{e} should mention {expect}"
            );
            assert!(!outside.path().join("evil").exists());
        }
    }

    /// A blob reader: its bytes, then, at the end, the hash check's error.
    struct FailsAtEnd(std::io::Cursor<Vec<u8>>);

    impl Read for FailsAtEnd {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(out)? {
                0 if !out.is_empty() => Err(std::io::Error::other("blob sha256:00 is corrupt")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn the_archive_is_read_past_its_end_marker_so_the_blobs_hash_is_checked() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("model.json"), b"{}").unwrap();
        let mut bytes = Vec::new();
        pack(src.path(), &mut bytes).unwrap();
        // Padding after the end marker, as `tar` writes: never read by an
        // unpacker that stops at the marker.
        bytes.extend([0u8; 8192]);
        let dst = tempfile::tempdir().unwrap();
        let e = unpack(
            FailsAtEnd(std::io::Cursor::new(bytes.clone())),
            dst.path(),
            &caps(),
        )
        .unwrap_err();
        assert!(matches!(e, ArchiveError::Source(_)), "{e:?}");
        assert!(e.to_string().contains("sha256:00 is corrupt"), "{e}");
        let dst = tempfile::tempdir().unwrap();
        unpack(&bytes[..], dst.path(), &caps()).unwrap();
    }

    #[test]
    fn a_truncated_archive_is_refused() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("model.json"), vec![7u8; 5000]).unwrap();
        let mut bytes = Vec::new();
        pack(src.path(), &mut bytes).unwrap();
        let dst = tempfile::tempdir().unwrap();
        assert!(unpack(&bytes[..1500], dst.path(), &caps()).is_err());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// A small valid archive to mutate.
        fn seed_archive() -> Vec<u8> {
            let src = tempfile::tempdir().unwrap();
            std::fs::create_dir(src.path().join("d")).unwrap();
            std::fs::write(src.path().join("model.json"), b"{\"a\": 1}").unwrap();
            std::fs::write(src.path().join("d/w.bin"), vec![9u8; 700]).unwrap();
            let mut bytes = Vec::new();
            pack(src.path(), &mut bytes).unwrap();
            bytes
        }

        /// Everything under `dir`, relative.
        fn tree(dir: &Path) -> Vec<PathBuf> {
            let mut out = Vec::new();
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
                if p.is_dir() && !p.is_symlink() {
                    out.extend(
                        tree(&p)
                            .into_iter()
                            .map(|q| p.strip_prefix(dir).unwrap().join(q)),
                    );
                }
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Mutated archives never panic, never write outside the
            /// destination, and what they write stays under the caps.
            #[test]
            fn mutated_archives_never_escape_or_panic(
                flips in proptest::collection::vec((0usize..4096, any::<u8>()), 0..24),
                cut in proptest::option::of(0usize..4096),
            ) {
                let mut bytes = seed_archive();
                for (at, b) in flips {
                    let n = bytes.len();
                    bytes[at % n] = b;
                }
                if let Some(c) = cut {
                    bytes.truncate(c.min(bytes.len()));
                }
                let outer = tempfile::tempdir().unwrap();
                let dest = outer.path().join("dest");
                std::fs::create_dir(&dest).unwrap();
                let _ = unpack(&bytes[..], &dest, &caps());
                let outside = tree(outer.path());
                prop_assert!(outside.iter().all(|p| p.starts_with("dest")), "{outside:?}");
                let inside = tree(&dest);
                prop_assert!(inside.len() as u64 <= caps().max_entries);
                for p in inside {
                    let full = dest.join(&p);
                    prop_assert!(!full.is_symlink(), "{p:?} is a link");
                }
            }

            /// Structured archives of well-formed entries (regular files
            /// and directories, good names, under the caps), optionally cut
            /// short: a whole one unpacks to exactly its entries, byte for
            /// byte; a cut one is refused as a bad tar stream or unpacks a
            /// prefix of them, never anything else.
            #[test]
            fn structured_archives_unpack_to_exactly_their_entries(
                files in proptest::collection::vec(
                    (proptest::collection::vec("[a-z][a-z0-9_]{0,7}", 0..2),
                     proptest::collection::vec(any::<u8>(), 0..1500)),
                    0..6),
                cut in proptest::option::of(0usize..8192),
            ) {
                // Distinct first segments, so that no file is another's
                // directory.
                let files: Vec<(String, Vec<u8>)> = files
                    .into_iter()
                    .enumerate()
                    .map(|(i, (segs, data))| {
                        let mut name = format!("f{i}");
                        for s in segs {
                            name = format!("{name}/{s}");
                        }
                        (name, data)
                    })
                    .collect();
                let entries: Vec<(&str, tar::EntryType, &[u8])> = files
                    .iter()
                    .map(|(n, d)| (n.as_str(), tar::EntryType::Regular, d.as_slice()))
                    .collect();
                let mut bytes = tar_with(&entries);
                let whole = bytes.len();
                if let Some(c) = cut {
                    bytes.truncate(c.min(whole));
                }
                let outer = tempfile::tempdir().unwrap();
                let dest = outer.path().join("dest");
                std::fs::create_dir(&dest).unwrap();
                let result = unpack(&bytes[..], &dest, &caps());
                let outside = tree(outer.path());
                prop_assert!(outside.iter().all(|p| p.starts_with("dest")), "{outside:?}");
                match result {
                    Ok(_) => {
                        let mut unpacked = 0;
                        for (name, data) in &files {
                            match std::fs::read(dest.join(name)) {
                                Ok(got) => {
                                    prop_assert_eq!(&got, data, "{}", name);
                                    unpacked += 1;
                                }
                                Err(_) => prop_assert!(bytes.len() < whole, "{} missing", name),
                            }
                        }
                        // Only the archive's own files (and their parents).
                        let found = tree(&dest).into_iter().filter(|p| dest.join(p).is_file()).count();
                        prop_assert_eq!(found, unpacked);
                    }
                    Err(e) => {
                        prop_assert!(bytes.len() < whole, "a whole archive was refused: {}", e);
                        prop_assert!(matches!(e, ArchiveError::Malformed(_)), "{}", e);
                    }
                }
            }

            /// Archives of hostile entries (climbing, absolute, empty and
            /// odd names; links, devices, FIFOs; repeats): each is refused
            /// naming the entry, or unpacks exactly its own regular files
            /// and directories, never a link and nothing outside.
            #[test]
            fn hostile_structured_archives_are_refused_naming_an_entry_or_kept_inside(
                entries in proptest::collection::vec(
                    (prop_oneof![
                        Just("..".to_string()), Just("a/../../b".to_string()),
                        Just("/etc/passwd".to_string()), Just("./x".to_string()),
                        Just("x//y".to_string()), Just("dup".to_string()),
                        Just(".hidden".to_string()), Just("a\\b".to_string()),
                        "[a-z]{1,6}(/[a-z]{1,6}){0,5}",
                    ],
                     prop_oneof![
                        Just(tar::EntryType::Regular), Just(tar::EntryType::Directory),
                        Just(tar::EntryType::Symlink), Just(tar::EntryType::Link),
                        Just(tar::EntryType::Char), Just(tar::EntryType::Block),
                        Just(tar::EntryType::Fifo),
                     ],
                     proptest::collection::vec(any::<u8>(), 0..64)),
                    1..8),
            ) {
                let list: Vec<(&str, tar::EntryType, &[u8])> = entries
                    .iter()
                    .map(|(n, k, d)| {
                        let d: &[u8] = if *k == tar::EntryType::Regular { d } else { &[] };
                        (n.as_str(), *k, d)
                    })
                    .collect();
                let bytes = tar_with(&list);
                let outer = tempfile::tempdir().unwrap();
                let dest = outer.path().join("dest");
                std::fs::create_dir(&dest).unwrap();
                let result = unpack(&bytes[..], &dest, &caps());
                let outside = tree(outer.path());
                prop_assert!(outside.iter().all(|p| p.starts_with("dest")), "{outside:?}");
                let inside = tree(&dest);
                for p in &inside {
                    prop_assert!(!dest.join(p).is_symlink(), "{p:?} is a link");
                }
                match result {
                    Err(e) => {
                        let named = match &e {
                            ArchiveError::EntryType { name, .. }
                            | ArchiveError::BadName { name, .. }
                            | ArchiveError::Duplicate { name } => entries.iter().any(|(n, _, _)| n == name || n.trim_end_matches('/') == name.trim_end_matches('/') || name.contains(n.as_str()) || n.contains(name.as_str())),
                            ArchiveError::OverCap { .. } => true,
                            ArchiveError::Io { path, .. } => {
                                let path = path.to_string_lossy();
                                entries.iter().any(|(n, _, _)| path.contains(n.trim_start_matches("./")))
                            }
                            // The source is bytes in memory: it cannot fail.
                            ArchiveError::Malformed(_) | ArchiveError::Source(_) => false,
                        };
                        prop_assert!(named, "{} names no entry of {:?}", e, list);
                    }
                    Ok(_) => {
                        // Accepted: every entry was a regular file or a
                        // directory, each file is there with its bytes.
                        for (n, k, d) in &list {
                            prop_assert!(
                                matches!(k, tar::EntryType::Regular | tar::EntryType::Directory),
                                "{n} ({k:?}) was accepted"
                            );
                            if *k == tar::EntryType::Regular {
                                let got = std::fs::read(dest.join(n)).ok();
                                prop_assert_eq!(got.as_deref(), Some(*d), "{}", n);
                            }
                        }
                    }
                }
            }
        }
    }
}
