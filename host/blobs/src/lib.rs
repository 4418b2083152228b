//! Content-addressed blobs for the control plane.
//!
//! The server keeps every uploaded artifact (components, model bundles,
//! datasets, signatures) as a blob named by the sha256 of its plaintext, so
//! that a digest in a report or attestation names exactly the bytes the
//! server holds. This crate stores them so that:
//!
//! * uploads are **streamed**: a writer hashes and writes as bytes arrive,
//!   buffering at most one 64 KiB segment, and refuses to pass a size cap;
//! * writes are **crash-safe**: temporary file → fsync → atomic publish →
//!   fsync of the directory, so a kill at any instant leaves either no blob
//!   or a complete one under its name;
//! * blobs can be **encrypted at rest** with AES-256-GCM under a rotating
//!   [`KeyRing`], in a segmented format ([`format`](mod@format)) whose reader returns
//!   only authenticated bytes;
//! * the backend is a trait ([`BlobStore`]), so an S3-compatible store can
//!   replace [`LocalBlobStore`] later.
//!
//! The on-disk layout, format and guarantees are described in
//! `docs/blobs.md`.
#![forbid(unsafe_code)]

pub mod error;
pub mod format;
pub mod keys;
pub mod local;

use airlock_core::digest::Digest;
use std::io::{Read, Write};
use std::path::Path;

pub use error::{BlobError, KeyError};
pub use keys::KeyRing;
pub use local::LocalBlobStore;

/// A content-addressed store of immutable blobs, named by the sha256 of
/// their plaintext; a trait so the server can run on the local disk or an
/// object store.
pub trait BlobStore: Send + Sync + 'static {
    /// Starts a streamed write; at most `max_bytes` may be written (the
    /// write that passes it fails with [`BlobError::TooLarge`] inside its
    /// `io::Error`, see [`BlobError::of_io`]).
    fn writer(&self, max_bytes: u64) -> Result<Box<dyn BlobWriter>, BlobError>;

    /// Reads a blob back (decrypting and authenticating if encrypted);
    /// the reader fails with an error rather than return bytes that do not
    /// authenticate, and its final read fails if the plaintext does not hash
    /// to `digest`. [`BlobError::NotFound`] if absent.
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BlobError>;

    /// Whether a blob with this digest is stored.
    fn contains(&self, digest: &Digest) -> Result<bool, BlobError>;

    /// The blob's plaintext size, or `None` if absent.
    fn size(&self, digest: &Digest) -> Result<Option<u64>, BlobError>;

    /// Removes temporary files a killed writer left behind (those of live
    /// writers of this store are kept); returns how many were removed.
    fn sweep_temporaries(&self) -> Result<usize, BlobError>;

    /// Copies the blob's plaintext into `dest` (a new file, created
    /// exclusively, mode 0600), verifying the digest while copying; used to
    /// hand a blob to the sandbox. On any failure `dest` is removed. Returns
    /// the bytes copied.
    fn materialize(&self, digest: &Digest, dest: &Path) -> Result<u64, BlobError>;
}

/// A streamed write of one blob, started by [`BlobStore::writer`].
/// Dropping it without [`BlobWriter::finish`] removes its temporary file.
pub trait BlobWriter: Write + Send {
    /// Completes the blob: fsync, then atomically publishes it under its
    /// digest. Idempotent: if the digest already exists the temporary is
    /// discarded, the existing blob kept, and `created` is false. If
    /// `expected` is `Some` and differs, nothing is published and
    /// [`BlobError::DigestMismatch`] is returned. After a failed write
    /// (e.g. [`BlobError::TooLarge`]) it returns that error.
    fn finish(self: Box<Self>, expected: Option<&Digest>) -> Result<BlobInfo, BlobError>;
}

/// What [`BlobWriter::finish`] published, so the server can record the
/// artifact without reading it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    /// sha256 of the plaintext: the blob's name.
    pub digest: Digest,
    /// Plaintext bytes.
    pub size: u64,
    /// False if a blob with this digest already existed (and was kept).
    pub created: bool,
}
