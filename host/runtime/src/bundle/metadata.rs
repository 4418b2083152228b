//! Stable `metadata-hash` values for bundle entries: wasmtime-wasi hashes a
//! file's device and inode numbers, which differ between snapshots of one
//! bundle and leak host state, so the host maps each to a value derived
//! from the entry's path alone. Separate from the two passes because it
//! runs on the finished snapshot and is read by the WASI layer.

use super::{BundleError, io_err};
use sha2::{Digest as _, Sha256};
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

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
    pub(super) fn of_snapshot(root: &Path) -> Result<MetadataHashes, BundleError> {
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
