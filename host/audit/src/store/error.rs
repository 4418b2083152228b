//! What can go wrong with a log file ([`LogError`]) and with one of its
//! lines ([`LineProblem`]). Apart from `store.rs` so that the writing and
//! recovery code there reads without the error catalogue in between; the
//! types are re-exported from `store`.

use super::MAX_LINE_BYTES;
use crate::chain::ChainProblem;
use crate::entry::EntryError;
use std::io;
use std::path::{Path, PathBuf};

/// Why a line of the file is not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    /// It does not parse as an entry (bad JSON, a missing or unknown
    /// field, a wrong type, an empty line).
    #[error("not an audit entry: {0}")]
    NotAnEntry(String),
    /// It parses, but its bytes are not the canonical form of what it
    /// parses to.
    #[error(
        "not in canonical form: the line's bytes were changed (or written by something other than the audit log)"
    )]
    NotCanonical,
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
}

/// What went wrong opening, reading, verifying or appending to a log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be opened, read, locked, written or synced.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The path is not a regular file.
    #[error("{}: not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A complete line is not an entry.
    #[error("{}: line {line}: {problem}", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: u64,
        /// What is wrong with it.
        problem: LineProblem,
    },
    /// The entries do not form an intact chain.
    #[error("{}: {}{problem}", path.display(), place(*line, *seq))]
    Chain {
        /// The file.
        path: PathBuf,
        /// The first bad line (1-based), or `None` for a problem with the
        /// log as a whole (a missing checkpoint).
        line: Option<u64>,
        /// That line's seq.
        seq: Option<u64>,
        /// What is wrong.
        problem: Box<ChainProblem>,
    },
    /// The file became shorter than what was already read: someone cut it
    /// while it was open.
    #[error(
        "{}: the file is {now} bytes, shorter than the {known} bytes already read: it was truncated",
        path.display()
    )]
    Shrunk {
        /// The file.
        path: PathBuf,
        /// Bytes read before.
        known: u64,
        /// Its length now.
        now: u64,
    },
    /// The entry to append is malformed.
    #[error("cannot append: {0}")]
    Entry(#[from] EntryError),
    /// The entry's line would be longer than [`MAX_LINE_BYTES`].
    #[error("cannot append: the entry is {0} bytes, more than {MAX_LINE_BYTES}")]
    EntryTooLong(usize),
    /// An earlier write or sync on this handle failed.
    #[error(
        "{}: an earlier write or sync failed, so what is on disk is unknown; reopen the log",
        path.display()
    )]
    Poisoned {
        /// The file.
        path: PathBuf,
    },
}

fn place(line: Option<u64>, seq: Option<u64>) -> String {
    match (line, seq) {
        (Some(l), Some(s)) => format!("line {l} (seq {s}): "),
        (Some(l), None) => format!("line {l}: "),
        (None, _) => String::new(),
    }
}

impl LogError {
    /// Whether the error says the log's contents were changed other than by
    /// appending (a bad line, a broken chain, a missing checkpoint, a cut
    /// file), as opposed to an I/O failure or a bad argument.
    pub fn is_tampering(&self) -> bool {
        matches!(
            self,
            LogError::BadLine { .. } | LogError::Chain { .. } | LogError::Shrunk { .. }
        )
    }

    /// The first bad line, when the error is about one.
    pub fn line(&self) -> Option<u64> {
        match self {
            LogError::BadLine { line, .. } => Some(*line),
            LogError::Chain { line, .. } => *line,
            _ => None,
        }
    }

    /// The first bad entry's seq, when known.
    pub fn seq(&self) -> Option<u64> {
        match self {
            LogError::Chain { seq, .. } => *seq,
            _ => None,
        }
    }

    /// A stable one-word name for scripts: the [`ChainProblem::kind`] for
    /// chain errors, else `not_an_entry`, `not_canonical`, `too_long`,
    /// `shrunk`, `io`, `not_a_file`, `bad_entry`, `poisoned`.
    pub fn kind(&self) -> &'static str {
        match self {
            LogError::Chain { problem, .. } => problem.kind(),
            LogError::BadLine { problem, .. } => match problem {
                LineProblem::NotAnEntry(_) => "not_an_entry",
                LineProblem::NotCanonical => "not_canonical",
                LineProblem::TooLong => "too_long",
            },
            LogError::Shrunk { .. } => "shrunk",
            LogError::Io { .. } => "io",
            LogError::NotAFile { .. } => "not_a_file",
            LogError::Entry(_) | LogError::EntryTooLong(_) => "bad_entry",
            LogError::Poisoned { .. } => "poisoned",
        }
    }
}

pub(super) fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}
