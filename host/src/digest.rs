//! Content digests: how airlock names every artifact it runs or judges.
//!
//! A component, a data bundle and a dataset are identified by the sha256 of
//! their bytes, written `sha256:<hex>`, so that reports and attestations bind
//! verdicts to exact content rather than to file names.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::path::Path;

/// A sha256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The lowercase hex of the digest, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(s: &str) -> Option<Digest> {
        let hex = s.strip_prefix("sha256:")?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(Digest(out))
    }

    /// The digest of a bundle: a file's bytes, or for a directory the digest
    /// of a manifest listing every regular file's relative path and digest in
    /// sorted order (symlinks and other special files are refused, so the
    /// digest always covers exactly what a plugin can read).
    pub fn of_path(path: &Path) -> std::io::Result<Digest> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.is_file() {
            return Ok(Digest::of(&std::fs::read(path)?));
        }
        let dir = cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        let mut entries = Vec::new();
        walk(&dir, Path::new(""), &mut |_| Ok(()), &mut |rel, bytes| {
            entries.push((rel.to_string_lossy().into_owned(), Digest::of(&bytes)));
            Ok(())
        })?;
        Ok(Digest::of_manifest(entries))
    }

    /// The digest of a directory from its files' relative paths and
    /// digests: sha256 over the sorted lines `sha256:<hex>  <path>`.
    pub fn of_manifest(mut entries: Vec<(String, Digest)>) -> Digest {
        entries.sort();
        let mut manifest = String::new();
        for (rel, d) in entries {
            manifest.push_str(&format!("{d}  {rel}\n"));
        }
        Digest::of(manifest.as_bytes())
    }
}

/// Visits everything under `dir` through a cap-std handle (so nothing
/// outside it is reachable): `on_dir` for each subdirectory before its
/// contents, `on_file` with each regular file's bytes. Symlinks and special
/// files are an error naming the entry, so what is visited is exactly what a
/// plugin granted the directory could read.
pub fn walk(
    dir: &cap_std::fs::Dir,
    rel: &Path,
    on_dir: &mut dyn FnMut(&Path) -> std::io::Result<()>,
    on_file: &mut dyn FnMut(&Path, Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for entry in dir.entries()? {
        let entry = entry?;
        let name = entry.file_name();
        let ty = entry.file_type()?;
        let rel_path = rel.join(&name);
        if ty.is_dir() {
            on_dir(&rel_path)?;
            walk(&dir.open_dir(&name)?, &rel_path, on_dir, on_file)?;
        } else if ty.is_file() {
            on_file(&rel_path, dir.read(&name)?)?;
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "bundle entry `{}` is not a regular file or directory (symlinks are refused)",
                    rel_path.display()
                ),
            ));
        }
    }
    Ok(())
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_round_trip() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(&d.to_string()), Some(d));
        assert_eq!(Digest::parse("sha256:zz"), None);
        assert_eq!(Digest::parse(&d.hex()), None);
    }

    #[test]
    fn directory_digest_covers_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"1").unwrap();
        let d1 = Digest::of_path(dir.path()).unwrap();
        std::fs::write(dir.path().join("a"), b"2").unwrap();
        let d2 = Digest::of_path(dir.path()).unwrap();
        std::fs::rename(dir.path().join("a"), dir.path().join("b")).unwrap();
        let d3 = Digest::of_path(dir.path()).unwrap();
        assert_ne!(d1, d2);
        assert_ne!(d2, d3);
    }
}
