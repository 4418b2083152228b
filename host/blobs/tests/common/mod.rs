//! Helpers shared by the integration tests: random data, key rings, and
//! reading blobs back with their typed errors.
#![allow(dead_code)]

use airlock_blobs::{BlobError, BlobInfo, BlobStore, KeyRing};
use airlock_core::digest::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// `n` bytes from the operating system's generator.
pub fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    getrandom::fill(&mut v).unwrap();
    v
}

/// A random number below `bound`.
pub fn below(bound: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b) % bound
}

/// A ring of `(id, fill byte)` keys, the last current.
pub fn ring(keys: &[(&str, u8)]) -> KeyRing {
    KeyRing::from_keys(keys.iter().map(|(id, b)| (id.to_string(), [*b; 32]))).unwrap()
}

/// Writes `bytes` through a writer in odd-sized chunks and finishes it.
pub fn put(store: &dyn BlobStore, bytes: &[u8]) -> BlobInfo {
    let mut w = store.writer(u64::MAX).unwrap();
    for chunk in bytes.chunks(7919) {
        w.write_all(chunk).unwrap();
    }
    w.finish(None).unwrap()
}

/// Reads a blob to the end; on failure returns the typed error and the
/// bytes that were returned before it.
pub fn read_all(store: &dyn BlobStore, d: &Digest) -> Result<Vec<u8>, (BlobError, Vec<u8>)> {
    let mut r = store.open(d).map_err(|e| (e, Vec::new()))?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 10_000];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => {
                let typed = e
                    .into_inner()
                    .and_then(|i| i.downcast::<BlobError>().ok())
                    .expect("reader errors carry a BlobError");
                return Err((*typed, out));
            }
        }
    }
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Number of entries in `root/<sub>`.
pub fn count(root: &Path, sub: &str) -> usize {
    std::fs::read_dir(root.join(sub)).unwrap().count()
}
