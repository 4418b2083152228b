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
    {
        // Never block in `open` if the path was swapped for a FIFO.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(io_err)?;
    let size = check(&file.metadata().map_err(io_err)?)?;
    Ok(Opened { file, size })
}

/// Where the field counter is in the CSV grammar (csv-core's default
/// dialect: `,` delimiter, `"` quotes doubled to escape, `\r`/`\n` ending
/// a record outside quotes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldState {
    StartField,
    InField,
    InQuoted,
    QuoteInQuoted,
}

/// Counts the fields of the record being read, byte by byte, as the parser
/// will split it. The parser holds a whole record (and an 8-byte end
/// offset per field) before anyone can look at it, so a single line of a
/// billion commas would take gigabytes before the column cap could apply;
/// counting here refuses it at field `max + 1`.
pub(crate) struct FieldCounter {
    state: FieldState,
    delimiters: u64,
    line: u64,
    max: u64,
}

impl FieldCounter {
    /// A counter allowing `max` fields per record.
    pub fn new(max: u64) -> Self {
        FieldCounter {
            state: FieldState::StartField,
            delimiters: 0,
            line: 1,
            max,
        }
    }

    /// Feeds bytes; `Err(line)` when a record there has more than `max`
    /// fields.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), u64> {
        use FieldState::*;
        for &b in bytes {
            if b == b'\n' {
                self.line += 1;
            }
            self.state = match (self.state, b) {
                (InQuoted, b'"') => QuoteInQuoted,
                (InQuoted, _) => InQuoted,
                (QuoteInQuoted, b'"') => InQuoted,
                (StartField, b'"') => InQuoted,
                (_, b',') => {
                    self.delimiters += 1;
                    if self.delimiters >= self.max {
                        return Err(self.line);
                    }
                    StartField
                }
                (_, b'\n' | b'\r') => {
                    self.delimiters = 0;
                    StartField
                }
                _ => InField,
            };
        }
        Ok(())
    }
}

/// A reader that hashes every byte it hands out and stops at `limit`; a
/// byte beyond `limit` means the file grew while being read, and is an
/// error, and so is a record with more fields than the column cap.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    limit: u64,
    fields: FieldCounter,
    /// Set to the line where a record passed the field cap.
    pub too_wide: Option<u64>,
    /// The last non-empty chunk handed out and the file offset it starts
    /// at: the parser's buffer holds no more than this chunk, so the last
    /// byte of a record just parsed is in it (see [`Hashing::byte_at`]).
    last: Vec<u8>,
    last_start: u64,
    /// Set when the file turned out longer than `limit`.
    pub grew: bool,
}

impl<R: Read> Hashing<R> {
    /// Wraps `inner`, which must hold exactly `limit` bytes of CSV whose
    /// records have at most `max_fields` fields.
    pub fn new(inner: R, limit: u64, max_fields: u64) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            read: 0,
            limit,
            fields: FieldCounter::new(max_fields),
            too_wide: None,
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
        if let Err(line) = self.fields.feed(&buf[..n]) {
            self.too_wide = Some(line);
            return Err(io::Error::other(format!(
                "a record on line {line} has more than {} fields",
                self.fields.max
            )));
        }
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
        let mut r = Hashing::new(&b"abcdef"[..], 6, 10);
        let mut buf = [0u8; 4];
        assert_eq!(r.read(&mut buf).unwrap(), 4);
        assert_eq!(r.byte_at(3), Some(b'd'));
        assert_eq!(r.byte_at(4), None);
        let (digest, n) = r.finish().unwrap();
        assert_eq!(n, 6);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(b"abcdef")));

        let mut r = Hashing::new(&b"abcdefg"[..], 6, 10);
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(e.to_string(), "the file grew while it was being read");
        assert!(r.grew);
    }

    #[test]
    fn the_field_counter_splits_like_the_parser() {
        let fields = |text: &[u8], max: u64| FieldCounter::new(max).feed(text);
        // Three fields per record is fine under a cap of 3, a fourth is not.
        assert_eq!(fields(b"a,b,c\n1,2,3\n", 3), Ok(()));
        assert_eq!(fields(b"a,b,c\n1,2,3,4\n", 3), Err(2));
        // Commas inside quotes (and doubled quotes) are not delimiters.
        assert_eq!(fields(b"a,b\n\"x,\"\",y,z\",1\n", 2), Ok(()));
        // A quote in the middle of a field is a literal, so the commas
        // after it still count (no way to hide delimiters from the cap).
        assert_eq!(fields(b"a,b\nq\",\",\",1\n", 2), Err(2));
        // CR, LF and CRLF all end a record; a quoted newline does not.
        assert_eq!(fields(b"a,b\r1,2\r\n3,4", 2), Ok(()));
        assert_eq!(fields(b"a,b\n\"x\ny\",2,3\n", 2), Err(3));
    }
}
