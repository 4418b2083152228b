//! The blob store on the local file system: the server's default backend,
//! built so that a crash at any instant leaves every published blob whole.
//!
//! Layout under `root`: `sha256/<hex>` holds published blobs (plaintext, or
//! the format of [`crate::format`](mod@crate::format)), `tmp/` holds writers' temporaries. A
//! blob is written to `tmp/`, fsynced, then hard-linked to its final name
//! (which fails if the name exists, so two writers of the same bytes never
//! both "create" it) and the `sha256/` directory is fsynced. Rotation writes
//! a new temporary and renames it over the old file. Published files are
//! never modified in place.

use crate::error::{BlobError, KeyError};
use crate::format::{self, Header, SEGMENT_SIZE, SegmentCipher, TAG_SIZE};
use crate::keys::{KeyRing, random_bytes, sync_dir};
use crate::{BlobInfo, BlobStore, BlobWriter};
use airlock_core::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Sub-directory of published blobs.
const BLOBS_DIR: &str = "sha256";
/// Sub-directory of writers' temporaries.
const TMP_DIR: &str = "tmp";
/// Suffix of temporaries, so a sweep never touches anything else.
const TMP_SUFFIX: &str = ".tmp";

/// A content-addressed blob store in a local directory, optionally
/// encrypting blobs at rest under a [`KeyRing`].
#[derive(Clone)]
pub struct LocalBlobStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBlobStore")
            .field("root", &self.inner.root)
            .field("keys", &self.inner.keys)
            .finish()
    }
}

struct Inner {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
    keys: Option<KeyRing>,
    /// File names of temporaries owned by live writers of this store, which
    /// a sweep must leave alone.
    live: Mutex<HashSet<OsString>>,
}

impl Inner {
    fn live(&self) -> MutexGuard<'_, HashSet<OsString>> {
        // A panic elsewhere while holding the lock leaves a valid set.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LocalBlobStore {
    /// Opens (creating with mode 0700 where missing) a store rooted at
    /// `root`, e.g. `<data-dir>/blobs`. With `keys`, new blobs are encrypted
    /// under the ring's current key; without, they are stored as plaintext.
    pub fn open(root: &Path, keys: Option<KeyRing>) -> Result<LocalBlobStore, BlobError> {
        let blobs = root.join(BLOBS_DIR);
        let tmp = root.join(TMP_DIR);
        for dir in [root, &blobs, &tmp] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| BlobError::io(dir, e))?;
        }
        Ok(LocalBlobStore {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                blobs,
                tmp,
                keys,
                live: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The key ring new blobs are encrypted under, if any.
    pub fn key_ring(&self) -> Option<&KeyRing> {
        self.inner.keys.as_ref()
    }

    /// The file a blob is stored in (for diagnostics and tests; read it
    /// through [`BlobStore::open`]).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.blobs.join(digest.hex())
    }

    /// Every stored blob's digest, sorted; files whose names are not a
    /// digest are ignored.
    pub fn list(&self) -> Result<Vec<Digest>, BlobError> {
        let dir = &self.inner.blobs;
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| BlobError::io(dir, e))? {
            let entry = entry.map_err(|e| BlobError::io(dir, e))?;
            let name = entry.file_name();
            if let Some(d) = name
                .to_str()
                .and_then(|n| Digest::parse(&format!("sha256:{n}")))
                && d.hex() == *name.to_string_lossy()
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Re-encrypts every blob that is not under the ring's current key
    /// (plaintext blobs included), each through a temporary renamed over
    /// the old file, and returns how many were rewritten. Each blob is
    /// authenticated and its digest checked while it is copied; the first
    /// failure stops the rotation with that blob's error (blobs already
    /// rewritten stay rewritten, so it can simply be run again). Once it
    /// returns `Ok`, keys other than the current one can be dropped.
    pub fn rotate(&self) -> Result<usize, BlobError> {
        let ring = self.inner.keys.as_ref().ok_or(KeyError::NoKeyRing)?;
        let mut rewritten = 0;
        for digest in self.list()? {
            let stored = match self.open_stored(&digest) {
                Err(BlobError::NotFound { .. }) => continue,
                other => other?,
            };
            if let Stored::Encrypted { key_id, .. } = &stored
                && key_id == ring.current_id()
            {
                continue;
            }
            let mut reader = stored.into_reader();
            let mut writer = self.new_writer(u64::MAX, true)?;
            let tmp = writer.tmp_path.clone();
            copy(&mut *reader, &mut writer, &self.blob_path(&digest), &tmp)?;
            Box::new(writer).finish(Some(&digest))?;
            rewritten += 1;
        }
        Ok(rewritten)
    }

    fn new_writer(&self, max_bytes: u64, replace: bool) -> Result<LocalWriter, BlobError> {
        let mut name = [0u8; 16];
        random_bytes(&mut name)?;
        let name = OsString::from(format!("{}{TMP_SUFFIX}", hex::encode(name)));
        let path = self.inner.tmp.join(&name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| BlobError::io(&path, e))?;
        self.inner.live().insert(name.clone());
        let mut writer = LocalWriter {
            inner: self.inner.clone(),
            tmp_name: name,
            tmp_path: path,
            file: None,
            hasher: Sha256::new(),
            written: 0,
            limit: max_bytes,
            buf: Vec::new(),
            enc: None,
            failed: None,
            replace,
            done: false,
        };
        if let Some(ring) = &self.inner.keys {
            let key = ring.current();
            let header = Header::new(key)?;
            if let Err(e) = file.write_all(header.bytes()) {
                return Err(BlobError::io(&writer.tmp_path, e));
            }
            writer.enc = Some(Encrypting {
                cipher: SegmentCipher::new(key, &header),
                index: 0,
            });
            writer.limit = max_bytes.min(format::MAX_SEGMENTS * SEGMENT_SIZE as u64);
        }
        writer.file = Some(file);
        writer.buf = Vec::with_capacity(SEGMENT_SIZE + TAG_SIZE);
        Ok(writer)
    }

    /// Opens a stored blob and decides, authenticating as needed, whether
    /// it is encrypted or plaintext.
    ///
    /// A file is taken as encrypted only if its header names a key of the
    /// ring and its final segment authenticates under this digest. A
    /// plaintext blob whose bytes merely begin like an encrypted file (a
    /// crafted upload stored while no key ring was configured) is
    /// recognised by its raw sha256 equalling its name; only that rare
    /// case reads the file twice.
    fn open_stored(&self, digest: &Digest) -> Result<Stored, BlobError> {
        let path = self.blob_path(digest);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound { digest: *digest });
            }
            Err(e) => return Err(BlobError::io(&path, e)),
        };
        let io_err = |e| BlobError::io(&path, e);
        let len = file.metadata().map_err(io_err)?.len();
        let mut first = vec![0u8; format::header_len(255)];
        let got = read_up_to(&mut file, &mut first).map_err(io_err)?;
        first.truncate(got);
        let plain = |mut file: File| -> Result<Stored, BlobError> {
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            Ok(Stored::Plain(PlainReader {
                file,
                path: path.clone(),
                digest: *digest,
                hasher: Sha256::new(),
                len,
                read: 0,
                state: ReadState::Reading,
            }))
        };
        if !first.starts_with(&format::MAGIC) {
            return plain(file);
        }
        match self.open_encrypted(digest, &path, &mut file, len, &first) {
            Ok(stored) => Ok(stored),
            Err(e @ (BlobError::Corrupt { .. } | BlobError::UnknownKey { .. })) => {
                file.seek(SeekFrom::Start(0)).map_err(io_err)?;
                let mut h = Sha256::new();
                io::copy(&mut file, &mut h).map_err(io_err)?;
                if Digest(h.finalize().into()) == *digest {
                    plain(file)
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    fn open_encrypted(
        &self,
        digest: &Digest,
        path: &Path,
        file: &mut File,
        len: u64,
        first: &[u8],
    ) -> Result<Stored, BlobError> {
        let corrupt = |reason: String| BlobError::Corrupt {
            digest: *digest,
            reason,
        };
        let header = Header::parse(first).map_err(corrupt)?;
        let key_id = header.key_id();
        let key = self
            .inner
            .keys
            .as_ref()
            .and_then(|r| r.get(&key_id))
            .ok_or_else(|| BlobError::UnknownKey {
                digest: *digest,
                key_id: key_id.escape_default().to_string(),
            })?;
        let cipher = SegmentCipher::new(key, &header);
        let header_len = header.bytes().len() as u64;
        let body = len - header_len;
        let (count, last_len) = format::segment_layout(body).ok_or_else(|| {
            corrupt(format!(
                "{len} bytes is not the length of a complete encrypted blob (truncated?)"
            ))
        })?;
        let full = (SEGMENT_SIZE + TAG_SIZE) as u64;
        let io_err = |e| BlobError::io(path, e);
        file.seek(SeekFrom::Start(header_len + (count - 1) * full))
            .map_err(io_err)?;
        let mut buf = vec![0u8; last_len as usize];
        file.read_exact(&mut buf).map_err(io_err)?;
        if !cipher.open(segment_index(count - 1), Some(digest), &mut buf) {
            return Err(corrupt(format!(
                "final segment {} of {count} fails authentication (tampered, truncated, or stored under the wrong name)",
                count - 1
            )));
        }
        file.seek(SeekFrom::Start(header_len)).map_err(io_err)?;
        let plaintext_len = body - count * TAG_SIZE as u64;
        debug_assert_eq!(Some(plaintext_len), format::plaintext_len(body));
        buf.clear();
        Ok(Stored::Encrypted {
            key_id,
            plaintext_len,
            reader: Box::new(EncReader {
                file: file.try_clone().map_err(io_err)?,
                path: path.to_path_buf(),
                digest: *digest,
                cipher,
                count,
                last_len,
                index: 0,
                buf,
                pos: 0,
                hasher: Sha256::new(),
                failed: None,
            }),
        })
    }
}

/// A segment index as the nonce's 32-bit counter; [`format::segment_layout`]
/// and the writer's limit keep it in range.
fn segment_index(i: u64) -> u32 {
    u32::try_from(i).expect("segment count is capped at 2^32")
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Copies a blob reader into a writer, keeping typed errors typed; plain
/// I/O errors name `src` (reading) or `dst` (writing).
fn copy(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    src: &Path,
    dst: &Path,
) -> Result<u64, BlobError> {
    let mut buf = vec![0u8; SEGMENT_SIZE];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(typed(e, src)),
        };
        writer.write_all(&buf[..n]).map_err(|e| typed(e, dst))?;
        total += n as u64;
    }
}

/// Recovers the [`BlobError`] inside a reader's or writer's `io::Error`,
/// or wraps a plain I/O error with `path`.
fn typed(e: io::Error, path: &Path) -> BlobError {
    if BlobError::of_io(&e).is_none() {
        return BlobError::io(path, e);
    }
    let kind = e.kind();
    match e.into_inner().map(|inner| inner.downcast::<BlobError>()) {
        Some(Ok(b)) => *b,
        Some(Err(other)) => BlobError::io(path, io::Error::new(kind, other)),
        None => BlobError::io(path, io::Error::from(kind)),
    }
}

/// A stored blob, opened and classified.
enum Stored {
    Plain(PlainReader),
    Encrypted {
        key_id: String,
        plaintext_len: u64,
        reader: Box<EncReader>,
    },
}

impl Stored {
    fn plaintext_len(&self) -> u64 {
        match self {
            Stored::Plain(r) => r.len,
            Stored::Encrypted { plaintext_len, .. } => *plaintext_len,
        }
    }

    fn into_reader(self) -> Box<dyn Read + Send> {
        match self {
            Stored::Plain(r) => Box::new(r),
            Stored::Encrypted { reader, .. } => reader,
        }
    }
}

enum ReadState {
    Reading,
    Done,
    Failed(String),
}

/// Reads a plaintext blob, hashing as it goes; the read that reaches the
/// end fails if the bytes do not hash to the blob's name.
struct PlainReader {
    file: File,
    path: PathBuf,
    digest: Digest,
    hasher: Sha256,
    len: u64,
    read: u64,
    state: ReadState,
}

impl Read for PlainReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let corrupt = |digest: Digest, reason: &str| {
            BlobError::Corrupt {
                digest,
                reason: reason.into(),
            }
            .into_io()
        };
        match &self.state {
            ReadState::Done => return Ok(0),
            ReadState::Failed(reason) => return Err(corrupt(self.digest, reason)),
            ReadState::Reading => {}
        }
        if out.is_empty() {
            return Ok(0);
        }
        let n = self
            .file
            .read(out)
            .map_err(|e| BlobError::io(&self.path, e).into_io())?;
        if n > 0 {
            self.hasher.update(&out[..n]);
            self.read += n as u64;
            return Ok(n);
        }
        let actual = Digest(self.hasher.finalize_reset().into());
        let problem = if self.read != self.len {
            Some(format!(
                "file holds {} bytes, {} when opened",
                self.read, self.len
            ))
        } else if actual != self.digest {
            Some(format!("content hashes to {actual}"))
        } else {
            None
        };
        match problem {
            Some(reason) => {
                self.state = ReadState::Failed(reason.clone());
                Err(corrupt(self.digest, &reason))
            }
            None => {
                self.state = ReadState::Done;
                Ok(0)
            }
        }
    }
}

/// Reads an encrypted blob one authenticated segment at a time; a segment
/// that fails authentication yields an error and none of its bytes.
struct EncReader {
    file: File,
    path: PathBuf,
    digest: Digest,
    cipher: SegmentCipher,
    count: u64,
    last_len: u64,
    index: u64,
    buf: Vec<u8>,
    pos: usize,
    hasher: Sha256,
    failed: Option<String>,
}

impl EncReader {
    /// Reads, authenticates and decrypts the next segment into `buf`.
    fn next_segment(&mut self) -> Result<(), BlobError> {
        let last = self.index + 1 == self.count;
        let ct_len = if last {
            self.last_len as usize
        } else {
            SEGMENT_SIZE + TAG_SIZE
        };
        self.buf.resize(ct_len, 0);
        self.pos = 0;
        let i = self.index;
        if let Err(e) = self.file.read_exact(&mut self.buf) {
            self.buf.clear();
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                self.fail(format!("file ends inside segment {i}"))
            } else {
                BlobError::io(&self.path, e)
            });
        }
        let digest = self.digest;
        if !self
            .cipher
            .open(segment_index(i), last.then_some(&digest), &mut self.buf)
        {
            return Err(self.fail(format!(
                "segment {i} of {} fails authentication (tampered, reordered or truncated)",
                self.count
            )));
        }
        self.hasher.update(&self.buf);
        self.index += 1;
        if last {
            let actual = Digest(self.hasher.finalize_reset().into());
            if actual != digest {
                self.buf.clear();
                return Err(self.fail(format!("plaintext hashes to {actual}")));
            }
        }
        Ok(())
    }

    fn fail(&mut self, reason: String) -> BlobError {
        self.failed = Some(reason.clone());
        BlobError::Corrupt {
            digest: self.digest,
            reason,
        }
    }
}

impl Read for EncReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(reason) = &self.failed {
                return Err(BlobError::Corrupt {
                    digest: self.digest,
                    reason: reason.clone(),
                }
                .into_io());
            }
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.index == self.count || out.is_empty() {
                return Ok(0);
            }
            self.next_segment().map_err(BlobError::into_io)?;
        }
    }
}

/// The state of an encrypting writer.
struct Encrypting {
    cipher: SegmentCipher,
    index: u64,
}

/// Why a writer can no longer publish.
enum Failure {
    TooLarge,
    Io(io::ErrorKind, String),
}

/// A streamed write into a temporary; see [`BlobWriter`].
struct LocalWriter {
    inner: Arc<Inner>,
    tmp_name: OsString,
    tmp_path: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    written: u64,
    limit: u64,
    /// At most one segment of plaintext (plus room for its tag).
    buf: Vec<u8>,
    enc: Option<Encrypting>,
    failed: Option<Failure>,
    /// Rotation: rename over an existing blob instead of keeping it.
    replace: bool,
    /// The temporary is gone (published or removed).
    done: bool,
}

impl LocalWriter {
    fn failure(&self) -> Option<BlobError> {
        self.failed.as_ref().map(|f| match f {
            Failure::TooLarge => BlobError::TooLarge { limit: self.limit },
            Failure::Io(kind, msg) => BlobError::Io {
                path: self.tmp_path.clone(),
                source: io::Error::new(*kind, msg.clone()),
            },
        })
    }

    /// Writes the buffered segment out (sealing it when encrypting);
    /// `last` carries the digest when it is the final one.
    fn flush_segment(&mut self, last: Option<&Digest>) -> io::Result<()> {
        if let Some(enc) = &mut self.enc {
            enc.cipher
                .seal(segment_index(enc.index), last, &mut self.buf);
            enc.index += 1;
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("writer has no file"))?;
        let result = file.write_all(&self.buf);
        self.buf.clear();
        if let Err(e) = &result {
            self.failed = Some(Failure::Io(e.kind(), e.to_string()));
        }
        result
    }
}

impl Write for LocalWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(e) = self.failure() {
            return Err(e.into_io());
        }
        if data.is_empty() {
            return Ok(0);
        }
        let total = self.written.saturating_add(data.len() as u64);
        if total > self.limit {
            self.failed = Some(Failure::TooLarge);
            return Err(BlobError::TooLarge { limit: self.limit }.into_io());
        }
        self.hasher.update(data);
        self.written = total;
        let mut rest = data;
        while !rest.is_empty() {
            // A full segment is sealed only once more data arrives, so the
            // final segment is never empty unless the whole blob is.
            if self.buf.len() == SEGMENT_SIZE {
                self.flush_segment(None)
                    .map_err(|e| BlobError::io(&self.tmp_path, e).into_io())?;
            }
            let take = rest.len().min(SEGMENT_SIZE - self.buf.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(data.len())
    }

    /// Nothing to do: data is durable only once [`BlobWriter::finish`]
    /// has fsynced it.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for LocalWriter {
    fn finish(mut self: Box<Self>, expected: Option<&Digest>) -> Result<BlobInfo, BlobError> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        let digest = Digest(self.hasher.finalize_reset().into());
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(BlobError::DigestMismatch {
                expected: *expected,
                actual: digest,
            });
        }
        let tmp = self.tmp_path.clone();
        self.flush_segment(Some(&digest))
            .map_err(|e| BlobError::io(&tmp, e))?;
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(|e| BlobError::io(&tmp, e))?;
        }
        let dest = self.inner.blobs.join(digest.hex());
        let created = if self.replace {
            fs::rename(&tmp, &dest).map_err(|e| BlobError::io(&dest, e))?;
            self.done = true;
            true
        } else {
            let created = match fs::hard_link(&tmp, &dest) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                // File systems without hard links: rename, which could only
                // replace an identical blob written concurrently.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    if dest.exists() {
                        false
                    } else {
                        fs::rename(&tmp, &dest).map_err(|e| BlobError::io(&dest, e))?;
                        self.done = true;
                        true
                    }
                }
                Err(e) => return Err(BlobError::io(&dest, e)),
            };
            if !self.done {
                // Published (or already there): the temporary is surplus. A
                // failure here leaves it for `sweep_temporaries`.
                let _ = fs::remove_file(&tmp);
                self.done = true;
            }
            created
        };
        if created {
            sync_dir(&self.inner.blobs)?;
        }
        Ok(BlobInfo {
            digest,
            size: self.written,
            created,
        })
    }
}

impl Drop for LocalWriter {
    /// An unfinished (or failed) writer removes its temporary.
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp_path);
        }
        self.inner.live().remove(&self.tmp_name);
    }
}

impl BlobStore for LocalBlobStore {
    fn writer(&self, max_bytes: u64) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(self.new_writer(max_bytes, false)?))
    }

    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BlobError> {
        Ok(self.open_stored(digest)?.into_reader())
    }

    fn contains(&self, digest: &Digest) -> Result<bool, BlobError> {
        let path = self.blob_path(digest);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BlobError::io(&path, e)),
        }
    }

    fn size(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        match self.open_stored(digest) {
            Ok(stored) => Ok(Some(stored.plaintext_len())),
            Err(BlobError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn sweep_temporaries(&self) -> Result<usize, BlobError> {
        let dir = &self.inner.tmp;
        let mut removed = 0;
        for entry in fs::read_dir(dir).map_err(|e| BlobError::io(dir, e))? {
            let entry = entry.map_err(|e| BlobError::io(dir, e))?;
            let name = entry.file_name();
            if !name.to_string_lossy().ends_with(TMP_SUFFIX) || self.inner.live().contains(&name) {
                continue;
            }
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(BlobError::io(&path, e)),
            }
        }
        Ok(removed)
    }

    fn materialize(&self, digest: &Digest, dest: &Path) -> Result<u64, BlobError> {
        let mut reader = self.open_stored(digest)?.into_reader();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(|e| BlobError::io(dest, e))?;
        let source = self.blob_path(digest);
        let result = copy(&mut *reader, &mut file, &source, dest).and_then(|n| {
            file.sync_all().map_err(|e| BlobError::io(dest, e))?;
            Ok(n)
        });
        if result.is_err() {
            drop(file);
            let _ = fs::remove_file(dest);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::from_env_value(&format!("k {}", "33".repeat(32))).unwrap()
    }

    #[test]
    fn a_writer_never_buffers_more_than_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        for keys in [None, Some(ring())] {
            let store = LocalBlobStore::open(dir.path(), keys).unwrap();
            let mut w = store.new_writer(u64::MAX, false).unwrap();
            let data = vec![7u8; 3 * SEGMENT_SIZE];
            for chunk in [1, SEGMENT_SIZE - 1, SEGMENT_SIZE, 3 * SEGMENT_SIZE, 12345] {
                w.write_all(&data[..chunk]).unwrap();
                assert!(w.buf.len() <= SEGMENT_SIZE);
                assert!(
                    w.buf.capacity() <= SEGMENT_SIZE + TAG_SIZE,
                    "{}",
                    w.buf.capacity()
                );
            }
            let info = Box::new(w).finish(None).unwrap();
            assert_eq!(
                info.size,
                (1 + SEGMENT_SIZE - 1 + SEGMENT_SIZE + 3 * SEGMENT_SIZE + 12345) as u64
            );
        }
    }

    #[test]
    fn an_encrypted_file_has_the_documented_length() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path(), Some(ring())).unwrap();
        for len in [0usize, 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE] {
            let mut w = store.new_writer(u64::MAX, false).unwrap();
            w.write_all(&vec![1u8; len]).unwrap();
            let info = Box::new(w).finish(None).unwrap();
            let segments = len.div_ceil(SEGMENT_SIZE).max(1);
            let want = format::header_len(1) + len + segments * TAG_SIZE;
            let got = fs::metadata(store.blob_path(&info.digest)).unwrap().len();
            assert_eq!(got, want as u64, "len {len}");
        }
    }
}
