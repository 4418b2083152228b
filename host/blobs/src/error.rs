//! Typed errors, so the server can map each failure to a status and an
//! operator can tell from the message alone which blob, file or key is at
//! fault.

use airlock_core::digest::Digest;
use std::io;
use std::path::{Path, PathBuf};

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob with this digest is stored.
    #[error("blob {digest} is not in the store")]
    NotFound {
        /// The digest asked for.
        digest: Digest,
    },
    /// A write passed the writer's size cap; nothing was published.
    #[error("blob exceeds the size limit of {limit} bytes")]
    TooLarge {
        /// The cap the writer was started with.
        limit: u64,
    },
    /// The written bytes do not hash to the digest the caller expected;
    /// nothing was published.
    #[error("blob digest mismatch: expected {expected}, the bytes hash to {actual}")]
    DigestMismatch {
        /// The digest the caller announced.
        expected: Digest,
        /// The digest of the bytes actually written.
        actual: Digest,
    },
    /// A stored blob fails authentication, is truncated, or does not hash to
    /// its name. No bytes of the failing part were returned.
    #[error("blob {digest} is corrupt: {reason}")]
    Corrupt {
        /// The blob's name.
        digest: Digest,
        /// What check failed.
        reason: String,
    },
    /// A stored blob is encrypted under a key the key ring does not hold.
    #[error("blob {digest} is encrypted under key `{key_id}`, which is not in the key ring")]
    UnknownKey {
        /// The blob's name.
        digest: Digest,
        /// The key id from the blob's header.
        key_id: String,
    },
    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A key ring could not be loaded, written or used.
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl BlobError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: &Path, source: io::Error) -> BlobError {
        BlobError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The [`BlobError`] carried inside an [`io::Error`], if any.
    ///
    /// Writers and readers implement `std::io::Write` / `Read`, so their
    /// failures arrive as `io::Error`; this recovers the typed error (e.g.
    /// [`BlobError::TooLarge`] from `write_all`, or [`BlobError::Corrupt`]
    /// from `read`) so the caller can answer 413 or 500 precisely.
    pub fn of_io(err: &io::Error) -> Option<&BlobError> {
        err.get_ref()?.downcast_ref::<BlobError>()
    }

    /// Converts into an `io::Error` that [`BlobError::of_io`] can recover,
    /// with a kind that matches the failure.
    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            BlobError::NotFound { .. } => io::ErrorKind::NotFound,
            BlobError::TooLarge { .. } => io::ErrorKind::FileTooLarge,
            BlobError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }
}

/// Why a key ring or a sealed secret could not be used. Messages never
/// contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file may be read or written by group or others.
    #[error(
        "key file {} has mode {mode:04o}; it must not be accessible to group or others (chmod 600)",
        path.display()
    )]
    FileMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line of a key file or of `AIRLOCK_DATA_KEYS` is malformed.
    #[error("{origin}, line {line}: {reason}")]
    Syntax {
        /// The key file's path, or `AIRLOCK_DATA_KEYS`.
        origin: String,
        /// 1-based line (or `;`-separated entry) number.
        line: usize,
        /// What is wrong with it (never the key itself).
        reason: String,
    },
    /// The key source holds no key.
    #[error("{origin} holds no key")]
    Empty {
        /// The key file's path, or `AIRLOCK_DATA_KEYS`.
        origin: String,
    },
    /// Two keys share an id, so a blob's header could not name one key.
    #[error("{origin}: key id `{id}` appears twice")]
    DuplicateId {
        /// The key file's path, or `AIRLOCK_DATA_KEYS`.
        origin: String,
        /// The repeated id.
        id: String,
    },
    /// The operation needs a key ring and the store has none.
    #[error("the blob store has no key ring configured")]
    NoKeyRing,
    /// The operating system's random generator failed.
    #[error("the system random generator failed: {reason}")]
    Random {
        /// The generator's error.
        reason: String,
    },
    /// A sealed secret is malformed or fails authentication.
    #[error("sealed secret is invalid: {reason}")]
    Sealed {
        /// What check failed.
        reason: String,
    },
    /// A sealed secret names a key the ring does not hold.
    #[error("sealed secret is encrypted under key `{key_id}`, which is not in the key ring")]
    SealedUnknownKey {
        /// The key id from the sealed secret.
        key_id: String,
    },
}
