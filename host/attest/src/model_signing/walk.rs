//! Hashing a model the way `model_signing` 1.1.1 serializes it by files
//! (`method: files`, `hash_type: sha256`).
//!
//! Why a module of its own: this is where airlock must agree with the
//! reference byte for byte on *which* files make a model, what each is
//! called and in which order they come, or signatures do not interoperate.
//! The reference's rules, as its source for 1.1.1 implements them:
//!
//! * A **directory** model is every regular file below it, named by its path
//!   relative to the model root with `/` separators. Files under an
//!   ignored path (relative to the root; a directory ignores everything
//!   below it) are left out. Directories themselves are not entries, so an
//!   empty directory is invisible.
//! * A **single-file** model is one entry named `.` (the file's path
//!   relative to itself). The OpenSSF spec names it by its file name
//!   instead; [`super::verify_model`] accepts both.
//! * Entries are ordered as Python orders `PurePosixPath`s: component by
//!   component, each compared by code point — so `a/b` sorts before `a-c`
//!   and `a.b`, unlike a plain string sort.
//! * Symbolic links are refused unless allowed; when allowed, a link to a
//!   file is hashed as its target's content under the link's name, and a
//!   link to a directory is not followed (Python's `glob("**")` does not
//!   descend into it). Anything else that is not a regular file or a
//!   directory (FIFO, socket, device) is refused.
//!
//! One deliberate difference: airlock does not descend into ignored
//! directories at all, where the reference walks them and would fail on a
//! special file inside `.git`.

use super::ModelSigningError;
use airlock_core::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::cmp::Ordering;
use std::fs;
use std::io::Read;
use std::path::Path;

/// The paths `model_signing` ignores by default (`ignore_git_paths`).
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// A model's files and their sha256, in the reference's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The model's name: the last component of its path.
    pub model_name: String,
    /// `(name, sha256)` for every file.
    pub files: Vec<(String, Digest)>,
}

impl Manifest {
    /// The subject digest `model_signing` computes: sha256 over the raw
    /// 32-byte digests of the files, in manifest order.
    pub fn subject_digest(&self) -> Digest {
        subject_digest(self.files.iter().map(|(_, d)| d))
    }
}

/// sha256 over the concatenated raw digests.
pub fn subject_digest<'a>(digests: impl IntoIterator<Item = &'a Digest>) -> Digest {
    let mut h = Sha256::new();
    for d in digests {
        h.update(d.0);
    }
    Digest(h.finalize().into())
}

/// Python's `PurePosixPath` order: component-wise, each by code point
/// (which is the byte order of UTF-8).
pub fn path_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Ignored paths relative to a model root, normalised to their components.
#[derive(Debug, Clone, Default)]
pub struct Ignore(Vec<Vec<String>>);

impl Ignore {
    /// Adds `path` (relative to the model root, `/`-separated). Paths that
    /// would leave the root (`..`) or name the root itself are skipped: the
    /// reference drops the former, and the latter would ignore the whole
    /// model.
    pub fn add(&mut self, path: &str) {
        let parts: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .map(str::to_string)
            .collect();
        if parts.is_empty() || parts.iter().any(|p| p == "..") {
            return;
        }
        if !self.0.contains(&parts) {
            self.0.push(parts);
        }
    }

    /// Whether the relative path `components` is ignored (it is, or is
    /// below, an ignored path).
    fn matches(&self, components: &[String]) -> bool {
        self.0.iter().any(|ig| components.starts_with(ig))
    }

    /// The ignored paths, `/`-joined.
    pub fn paths(&self) -> Vec<String> {
        self.0.iter().map(|p| p.join("/")).collect()
    }
}

/// The sha256 of a file's content, streamed.
fn hash_file(path: &Path) -> Result<Digest, ModelSigningError> {
    let io = |e| ModelSigningError::Io(path.display().to_string(), e);
    let mut f = fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Digest(h.finalize().into()))
}

/// The model's name as the reference takes it: the path's last component,
/// or the resolved directory's name for `.`-like paths.
pub fn model_name(model: &Path) -> String {
    match model.file_name() {
        Some(n) => n.to_string_lossy().into_owned(),
        None => fs::canonicalize(model)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
    }
}

/// Hashes the model at `model` (a file or a directory) by files.
pub fn hash_model(
    model: &Path,
    ignore: &Ignore,
    allow_symlinks: bool,
) -> Result<Manifest, ModelSigningError> {
    let meta = fs::symlink_metadata(model)
        .map_err(|e| ModelSigningError::Io(model.display().to_string(), e))?;
    let mut files = Vec::new();
    if meta.is_file() || (meta.is_symlink() && allow_symlinks && model.is_file()) {
        files.push((".".to_string(), hash_file(model)?));
    } else if meta.is_symlink() && !allow_symlinks {
        return Err(ModelSigningError::Symlink(model.display().to_string()));
    } else if model.is_dir() {
        walk(model, &mut Vec::new(), ignore, allow_symlinks, &mut files)?;
        files.sort_by(|a, b| path_order(&a.0, &b.0));
    } else {
        return Err(ModelSigningError::SpecialFile(model.display().to_string()));
    }
    Ok(Manifest {
        model_name: model_name(model),
        files,
    })
}

fn walk(
    dir: &Path,
    rel: &mut Vec<String>,
    ignore: &Ignore,
    allow_symlinks: bool,
    out: &mut Vec<(String, Digest)>,
) -> Result<(), ModelSigningError> {
    let io = |p: &Path, e| ModelSigningError::Io(p.display().to_string(), e);
    for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|n| {
            ModelSigningError::NonUtf8Path(
                path.parent().unwrap_or(dir).join(n).display().to_string(),
            )
        })?;
        rel.push(name);
        let result = (|| {
            if ignore.matches(rel) {
                return Ok(());
            }
            let shown = || rel.join("/");
            let ft = entry.file_type().map_err(|e| io(&path, e))?;
            if ft.is_symlink() {
                if !allow_symlinks {
                    return Err(ModelSigningError::Symlink(shown()));
                }
                // Followed for files, not descended into for directories.
                match fs::metadata(&path) {
                    Ok(m) if m.is_file() => out.push((shown(), hash_file(&path)?)),
                    Ok(m) if m.is_dir() => {}
                    _ => return Err(ModelSigningError::SpecialFile(shown())),
                }
            } else if ft.is_file() {
                out.push((shown(), hash_file(&path)?));
            } else if ft.is_dir() {
                walk(&path, rel, ignore, allow_symlinks, out)?;
            } else {
                return Err(ModelSigningError::SpecialFile(shown()));
            }
            Ok(())
        })();
        rel.pop();
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_sort_by_component_like_python() {
        let mut v = vec!["a.b", "a-c", "a/b", "Z", "a/deep/c.bin", "empty", "é", "b"];
        v.sort_by(|a, b| path_order(a, b));
        assert_eq!(
            v,
            ["Z", "a/b", "a/deep/c.bin", "a-c", "a.b", "b", "empty", "é"]
        );
    }

    #[test]
    fn ignored_paths_cover_what_is_below_them_and_never_escape() {
        let mut ig = Ignore::default();
        for p in [".git", "./docs/", "model.sig", "../outside", ".", ""] {
            ig.add(p);
        }
        assert_eq!(ig.paths(), [".git", "docs", "model.sig"]);
        let c = |s: &str| s.split('/').map(str::to_string).collect::<Vec<_>>();
        assert!(ig.matches(&c(".git/HEAD")));
        assert!(ig.matches(&c("docs")));
        assert!(ig.matches(&c("model.sig")));
        assert!(!ig.matches(&c(".gitx")));
        assert!(!ig.matches(&c("a/.git")));
    }

    #[test]
    fn a_directory_is_its_files_and_a_file_is_named_dot() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m");
        fs::create_dir_all(m.join("a/empty-dir")).unwrap();
        fs::create_dir_all(m.join(".git")).unwrap();
        fs::write(m.join("a/b"), b"1").unwrap();
        fs::write(m.join("a-c"), b"2").unwrap();
        fs::write(m.join(".git/HEAD"), b"x").unwrap();
        let mut ig = Ignore::default();
        GIT_PATHS.iter().for_each(|p| ig.add(p));
        let man = hash_model(&m, &ig, false).unwrap();
        assert_eq!(man.model_name, "m");
        assert_eq!(
            man.files,
            vec![
                ("a/b".to_string(), Digest::of(b"1")),
                ("a-c".to_string(), Digest::of(b"2"))
            ]
        );
        let one = hash_model(&m.join("a-c"), &ig, false).unwrap();
        assert_eq!(one.model_name, "a-c");
        assert_eq!(one.files, vec![(".".to_string(), Digest::of(b"2"))]);
        // sha256(sha256(content)) for a one-file model.
        assert_eq!(one.subject_digest(), Digest::of(&Digest::of(b"2").0));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m");
        fs::create_dir_all(&m).unwrap();
        fs::write(dir.path().join("target"), b"t").unwrap();
        std::os::unix::fs::symlink(dir.path().join("target"), m.join("link")).unwrap();
        let ig = Ignore::default();
        assert!(matches!(
            hash_model(&m, &ig, false),
            Err(ModelSigningError::Symlink(p)) if p == "link"
        ));
        let man = hash_model(&m, &ig, true).unwrap();
        assert_eq!(man.files, vec![("link".to_string(), Digest::of(b"t"))]);
    }
}
