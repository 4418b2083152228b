//! The log on disk: a JSON Lines file, one entry per line, appended under
//! an exclusive lock and flushed to stable storage before `append` returns.
//!
//! Every line is the RFC 8785 canonical JSON of one [`Entry`] followed by
//! `\n`; nothing else is ever in the file. Readers check that each line is
//! byte for byte the canonical form of the entry it parses to, so an edit
//! that keeps an entry's meaning (a space, reordered keys, `\u00e9` for
//! `é`) is found as well as one that changes it.
//!
//! ## Durability
//!
//! [`AuditLog::append`] returns only after the line was written with one
//! `write` on an `O_APPEND` descriptor and `fdatasync` returned, and, when
//! the file was created by [`AuditLog::open`], after the file and its
//! directory were synced, so the file's name survives a crash too. An
//! entry `append` returned is on stable storage as far as the kernel and
//! the device report it. What this does not cover: a device or file system
//! that acknowledges a flush it did not do, and the loss or replacement of
//! the whole disk; keep copies, and record heads ([`crate::Checkpoint`])
//! elsewhere.
//!
//! After a failed write or sync, the handle refuses further appends
//! ([`LogError::Poisoned`]): whether the kernel kept the data is then
//! unknown, and reopening re-reads the file and recovers.
//!
//! ## Crash recovery
//!
//! A crash (of the process or the machine) in the middle of an append can
//! leave only a prefix of the last line: a final line without its newline.
//! [`AuditLog::open`] (and every append, in case another writer crashed)
//! looks at such a tail:
//!
//! * if it is a whole entry that follows the head (only the newline is
//!   missing), the newline is added and the entry kept
//!   ([`Recovery::Completed`]): a complete entry is never dropped;
//! * otherwise it is cut off ([`Recovery::Truncated`]): it never was an
//!   entry, and its `append` never returned.
//!
//! Either way the recovery is reported by [`AuditLog::recoveries`]. Any
//! other flaw — a line that ends with a newline but is not an entry, a
//! broken chain, a line in the middle — is an error naming the line, and
//! nothing is changed.
//!
//! ## Locking
//!
//! Appends hold an exclusive `flock` on the file (through `std`'s
//! `File::lock`), so two processes, or two handles in one process, never
//! interleave: each append first reads and verifies whatever other writers
//! added since its last look, then links to that head. Readers
//! ([`read_entries`], [`verify_file`]) hold a shared lock while they read,
//! so they never see a line being written. The lock is released when the
//! process dies, SIGKILL included.
//!
//! This file holds appending and recovery; the readers are in
//! `store/read.rs` and the error types in `store/error.rs`, re-exported
//! here.

mod error;
mod read;

use error::io_err;
pub use error::{LineProblem, LogError};
pub use read::{FileSummary, Filter, read_entries, read_newest_entries, verify_file};

use crate::chain::Verifier;
use crate::entry::{Action, Entry, Head};
use serde_json::Value;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// The longest line the log writes or reads, newline excluded: 1 MiB.
/// Longer lines are refused, so a reader's memory stays bounded.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// What opening or appending found and repaired at the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The last line was a whole entry missing only its newline; the
    /// newline was added and the entry kept.
    Completed {
        /// Its line number (1-based).
        line: u64,
        /// Its seq.
        seq: u64,
    },
    /// The last line was an incomplete write (no newline, not a whole
    /// entry); it was cut off.
    Truncated {
        /// Its line number (1-based).
        line: u64,
        /// How many bytes were removed.
        bytes: u64,
    },
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recovery::Completed { line, seq } => write!(
                f,
                "line {line} (seq {seq}) was a whole entry without its newline; the newline was added"
            ),
            Recovery::Truncated { line, bytes } => write!(
                f,
                "line {line} was an incomplete write of {bytes} bytes (a crash mid-append); it was removed"
            ),
        }
    }
}

/// Parses one line (without its newline) and checks it is canonical.
pub fn parse_line(bytes: &[u8]) -> Result<Entry, LineProblem> {
    let entry: Entry = serde_json::from_slice(bytes).map_err(|e| {
        LineProblem::NotAnEntry(
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        )
    })?;
    match entry.to_line() {
        Ok(line) if line.as_bytes() == bytes => Ok(entry),
        _ => Err(LineProblem::NotCanonical),
    }
}

/// Opens `path` with `opts`, without blocking on a FIFO, and refuses
/// anything but a regular file.
fn open_regular(path: &Path, opts: &mut OpenOptions) -> Result<File, LogError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(|source| match source.kind() {
        io::ErrorKind::IsADirectory => LogError::NotAFile {
            path: path.to_owned(),
        },
        _ => io_err(path, "open")(source),
    })?;
    let meta = file.metadata().map_err(io_err(path, "stat"))?;
    if !meta.is_file() {
        return Err(LogError::NotAFile {
            path: path.to_owned(),
        });
    }
    Ok(file)
}

/// Syncs the directory holding `path`, so that a new file's name is
/// durable.
fn sync_parent(path: &Path) -> Result<(), LogError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err(parent, "sync the directory"))
}

/// How a scan of the file ended.
struct ScanEnd {
    /// Offset just past the last complete line read.
    offset: u64,
    /// Complete lines read in total.
    lines: u64,
    /// Bytes after the last newline, if any (and not stopped early).
    tail: Option<Vec<u8>>,
}

/// Reads the complete lines of `file` in `[from, to)`, checking each as the
/// next entry of `verifier` and handing it to `visit` (which may stop the
/// scan). `lines` is how many lines precede `from`.
fn scan(
    path: &Path,
    mut file: &File,
    from: u64,
    to: u64,
    lines: u64,
    verifier: &mut Verifier,
    mut visit: impl FnMut(Entry) -> ControlFlow<()>,
) -> Result<ScanEnd, LogError> {
    file.seek(SeekFrom::Start(from))
        .map_err(io_err(path, "seek"))?;
    let mut reader = BufReader::new(file.take(to - from));
    let mut end = ScanEnd {
        offset: from,
        lines,
        tail: None,
    };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io_err(path, "read"))?;
        if n == 0 {
            break;
        }
        let line = end.lines + 1;
        if buf.last() != Some(&b'\n') {
            if buf.len() > MAX_LINE_BYTES {
                return Err(LogError::BadLine {
                    path: path.to_owned(),
                    line,
                    problem: LineProblem::TooLong,
                });
            }
            end.tail = Some(std::mem::take(&mut buf));
            break;
        }
        buf.pop();
        let entry = parse_line(&buf).map_err(|problem| LogError::BadLine {
            path: path.to_owned(),
            line,
            problem,
        })?;
        verifier.push(&entry).map_err(|c| LogError::Chain {
            path: path.to_owned(),
            line: Some(line),
            seq: c.seq,
            problem: Box::new(c.problem),
        })?;
        end.offset += n as u64;
        end.lines = line;
        if visit(entry).is_break() {
            break;
        }
    }
    Ok(end)
}

/// An audit log open for appending.
///
/// Opening reads and verifies the whole file and repairs a torn last line
/// (see the module docs); each [`append`](AuditLog::append) is durable
/// when it returns.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// Bytes of complete, verified lines.
    len: u64,
    /// How many such lines.
    lines: u64,
    verifier: Verifier,
    recoveries: Vec<Recovery>,
    poisoned: bool,
}

impl AuditLog {
    /// Opens the log at `path`, creating it (mode 0600, synced with its
    /// directory) if it does not exist. Fails, changing nothing, if the
    /// file holds anything but an intact chain (a torn final line aside,
    /// which is repaired and reported by [`recoveries`](Self::recoveries)).
    pub fn open(path: impl AsRef<Path>) -> Result<AuditLog, LogError> {
        let path = path.as_ref().to_owned();
        let mut opts = OpenOptions::new();
        opts.read(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let (file, created) = match open_regular(&path, opts.clone().create_new(true)) {
            Ok(f) => (f, true),
            Err(LogError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                (open_regular(&path, &mut opts)?, false)
            }
            Err(e) => return Err(e),
        };
        if created {
            file.sync_all().map_err(io_err(&path, "sync"))?;
            sync_parent(&path)?;
        }
        let mut log = AuditLog {
            path,
            file,
            len: 0,
            lines: 0,
            verifier: Verifier::new(None),
            recoveries: Vec::new(),
            poisoned: false,
        };
        log.locked(Self::catch_up)?;
        Ok(log)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last entry this handle knows of (another process may have
    /// appended since; the next append sees it).
    pub fn head(&self) -> Option<&Head> {
        self.verifier.head()
    }

    /// How many entries this handle knows of.
    pub fn len(&self) -> u64 {
        self.verifier.count()
    }

    /// Whether the log holds no entry (as far as this handle knows).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The torn final lines this handle repaired, oldest first.
    pub fn recoveries(&self) -> &[Recovery] {
        &self.recoveries
    }

    /// Appends an entry and returns it once it is on stable storage.
    ///
    /// `time` is an RFC 3339 UTC timestamp (see [`crate::entry::utc_now`]);
    /// `details` must read back exactly (no integer beyond ±(2^53-1)).
    /// Entries other writers appended since this handle last looked are
    /// read and verified first, and the new entry links to the newest.
    pub fn append(
        &mut self,
        actor: &str,
        action: Action,
        subject: &str,
        details: Value,
        time: &str,
    ) -> Result<Entry, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned {
                path: self.path.clone(),
            });
        }
        self.locked(|log| {
            log.catch_up()?;
            let entry = Entry::next(log.verifier.head(), time, actor, action, subject, details)?;
            let mut line = entry.to_line()?;
            if line.len() > MAX_LINE_BYTES {
                return Err(LogError::EntryTooLong(line.len()));
            }
            line.push('\n');
            let mut next = log.verifier.clone();
            next.push(&entry).map_err(|c| LogError::Chain {
                path: log.path.clone(),
                line: Some(log.lines + 1),
                seq: c.seq,
                problem: Box::new(c.problem),
            })?;
            log.write_durably(line.as_bytes())?;
            log.verifier = next;
            log.len += line.len() as u64;
            log.lines += 1;
            Ok(entry)
        })
    }

    /// The entries that pass `filter` (see [`read_entries`]).
    pub fn entries(&self, filter: &Filter) -> Result<Vec<Entry>, LogError> {
        read_entries(&self.path, filter)
    }

    /// The newest `n` entries that pass `filter`, newest first (see
    /// [`read_newest_entries`]).
    pub fn newest_entries(&self, filter: &Filter, n: usize) -> Result<Vec<Entry>, LogError> {
        read_newest_entries(&self.path, filter, n)
    }

    /// Runs `f` holding the exclusive lock.
    fn locked<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        self.file.lock().map_err(io_err(&self.path, "lock"))?;
        let result = f(self);
        // Closing the file or ending the process releases it too.
        let _ = self.file.unlock();
        result
    }

    /// One write and an fdatasync; any failure poisons the handle.
    fn write_durably(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        let result = (&self.file)
            .write_all(bytes)
            .map_err(io_err(&self.path, "write"))
            .and_then(|()| self.file.sync_data().map_err(io_err(&self.path, "sync")));
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Reads and verifies what was appended past `self.len` (by anyone),
    /// and repairs a torn final line. Called with the lock held.
    fn catch_up(&mut self) -> Result<(), LogError> {
        let now = self
            .file
            .metadata()
            .map_err(io_err(&self.path, "stat"))?
            .len();
        if now < self.len {
            return Err(LogError::Shrunk {
                path: self.path.clone(),
                known: self.len,
                now,
            });
        }
        if now == self.len {
            return Ok(());
        }
        let mut verifier = self.verifier.clone();
        let end = scan(
            &self.path,
            &self.file,
            self.len,
            now,
            self.lines,
            &mut verifier,
            |_| ControlFlow::Continue(()),
        )?;
        self.verifier = verifier;
        self.len = end.offset;
        self.lines = end.lines;
        let Some(tail) = end.tail else {
            return Ok(());
        };
        let line = self.lines + 1;
        let mut next = self.verifier.clone();
        let whole = parse_line(&tail).ok().filter(|e| next.push(e).is_ok());
        match whole {
            Some(entry) => {
                self.write_durably(b"\n")?;
                self.verifier = next;
                self.len += tail.len() as u64 + 1;
                self.lines = line;
                self.recoveries.push(Recovery::Completed {
                    line,
                    seq: entry.seq,
                });
            }
            None => {
                let cut = self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_all());
                if let Err(source) = cut {
                    self.poisoned = true;
                    return Err(LogError::Io {
                        path: self.path.clone(),
                        action: "cut off the incomplete last line",
                        source,
                    });
                }
                self.recoveries.push(Recovery::Truncated {
                    line,
                    bytes: tail.len() as u64,
                });
            }
        }
        Ok(())
    }
}
