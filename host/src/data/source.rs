//! Opening a dataset file without trusting what the path names.
//!
//! `std::fs::read` on a path hangs on a FIFO, never ends on `/dev/zero` and
//! reads a huge (or sparse) file whole. Here the path is `stat`ed first and
//! only a regular file within `data.max_file_bytes` is opened; it is opened
//! non-blocking (so a path swapped for a FIFO after the check cannot hang
//! the open) and checked again through the open handle. Reading goes
//! through [`Hashing`], which hashes the bytes as the parser consumes them
//! (one pass) and never reads past the size that was checked.

use super::{DataCaps, DataError};
use sha2::{Digest as _, Sha256};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;

/// A regular file opened for reading, and its size as checked.
pub(crate) struct Opened {
    /// The open handle.
    pub file: File,
    /// Its size when it was checked; reading stops there.
    pub size: u64,
}

/// What kind of file `meta` describes, for errors; `None` for a regular file.
fn not_regular(meta: &Metadata) -> Option<&'static str> {
    let ty = meta.file_type();
    if ty.is_file() {
        return None;
    }
    if ty.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ty.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if ty.is_char_device() {
            return Some("a character device");
        }
        if ty.is_block_device() {
            return Some("a block device");
        }
        if ty.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

/// `O_NONBLOCK` on the Linux architectures where its value is 0o4000.
#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "arm",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "powerpc64",
        target_arch = "s390x",
        target_arch = "loongarch64"
    )
))]
const O_NONBLOCK: Option<i32> = Some(0o4000);
#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "arm",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "powerpc64",
        target_arch = "s390x",
        target_arch = "loongarch64"
    )
)))]
const O_NONBLOCK: Option<i32> = None;

/// Checks `path` is a regular file within `caps.max_file_bytes`, then opens
/// it and checks the open handle again (the path may have changed between
/// the two).
pub(crate) fn open(path: &Path, caps: &DataCaps) -> Result<Opened, DataError> {
    let io_err = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let check = |meta: &Metadata| -> Result<u64, DataError> {
        if let Some(kind) = not_regular(meta) {
            return Err(DataError::NotRegularFile {
                path: path.to_path_buf(),
                kind,
            });
        }
        let size = meta.len();
        if size > caps.max_file_bytes {
            return Err(DataError::CapExceeded {
                path: path.to_path_buf(),
                key: "max_file_bytes",
                limit: caps.max_file_bytes,
                found: format!("a file of {size} bytes"),
            });
        }
        Ok(size)
    };
    let before = std::fs::metadata(path).map_err(io_err)?;
    check(&before)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    if let Some(flag) = O_NONBLOCK {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(flag);
    }
    let file = options.open(path).map_err(io_err)?;
    let size = check(&file.metadata().map_err(io_err)?)?;
    Ok(Opened { file, size })
}

/// A reader that hashes every byte it hands out and stops at `limit`; a
/// byte beyond `limit` means the file grew while being read, and is an error.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    limit: u64,
    /// The last non-empty chunk handed out and the file offset it starts
    /// at: the parser's buffer holds no more than this chunk, so the last
    /// byte of a record just parsed is in it (see [`Hashing::byte_at`]).
    last: Vec<u8>,
    last_start: u64,
    /// Set when the file turned out longer than `limit`.
    pub grew: bool,
}

impl<R: Read> Hashing<R> {
    /// Wraps `inner`, which must hold exactly `limit` bytes.
    pub fn new(inner: R, limit: u64) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            read: 0,
            limit,
            last: Vec::new(),
            last_start: 0,
            grew: false,
        }
    }

    /// The byte at file offset `offset`, if it is in the last chunk read.
    pub fn byte_at(&self, offset: u64) -> Option<u8> {
        let i = usize::try_from(offset.checked_sub(self.last_start)?).ok()?;
        self.last.get(i).copied()
    }

    /// Reads (and hashes) whatever the caller did not consume, then returns
    /// the sha256 of everything and the byte count.
    pub fn finish(mut self) -> io::Result<([u8; 32], u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.hasher.finalize().into(), self.read))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.read >= self.limit {
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? > 0 {
                self.grew = true;
                return Err(io::Error::other("the file grew while it was being read"));
            }
            return Ok(0);
        }
        let room = usize::try_from(self.limit - self.read).unwrap_or(usize::MAX);
        let take = buf.len().min(room);
        let n = self.inner.read(&mut buf[..take])?;
        self.hasher.update(&buf[..n]);
        if n > 0 {
            self.last.clear();
            self.last.extend_from_slice(&buf[..n]);
            self.last_start = self.read;
        }
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_reader_hashes_everything_and_refuses_growth() {
        let mut r = Hashing::new(&b"abcdef"[..], 6);
        let mut buf = [0u8; 4];
        assert_eq!(r.read(&mut buf).unwrap(), 4);
        assert_eq!(r.byte_at(3), Some(b'd'));
        assert_eq!(r.byte_at(4), None);
        let (digest, n) = r.finish().unwrap();
        assert_eq!(n, 6);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(b"abcdef")));

        let mut r = Hashing::new(&b"abcdefg"[..], 6);
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(e.to_string(), "the file grew while it was being read");
        assert!(r.grew);
    }
}
