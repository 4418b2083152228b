//! Reading the log: verifying a whole file ([`verify_file`]) and reading
//! the entries that pass a [`Filter`] in log order or newest first, each
//! under a shared lock so a line being appended is never seen. Apart from
//! `store.rs` (appending and crash recovery) so that readers and the
//! writer each read in one place; the items are re-exported from `store`.

use super::{LogError, ScanEnd, io_err, open_regular, scan};
use crate::chain::{Checkpoint, Summary, Verifier};
use crate::entry::{Action, Entry, Timestamp};
use std::fs::OpenOptions;
use std::ops::ControlFlow;
use std::path::Path;

/// Takes a shared lock on `path` and reads it from the start, verifying
/// the chain.
fn read_locked(
    path: &Path,
    verifier: &mut Verifier,
    visit: impl FnMut(Entry) -> ControlFlow<()>,
) -> Result<ScanEnd, LogError> {
    let file = open_regular(path, OpenOptions::new().read(true))?;
    file.lock_shared().map_err(io_err(path, "lock"))?;
    let len = file.metadata().map_err(io_err(path, "stat"))?.len();
    let end = scan(path, &file, 0, len, 0, verifier, visit);
    let _ = file.unlock();
    end
}

/// The result of verifying a log file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileSummary {
    /// The chain's summary.
    #[serde(flatten)]
    pub chain: Summary,
    /// The length of a final line without its newline: an append that a
    /// crash interrupted (its `append` never returned). Not an entry, and
    /// not an error; [`AuditLog::open`](super::AuditLog::open) repairs
    /// it.
    pub incomplete_tail_bytes: Option<u64>,
}

/// Verifies the log at `path` from its first line to its last (reading
/// only; nothing is repaired), against `checkpoint` if one is given.
///
/// Errors name the first bad line: [`LogError::is_tampering`] tells a log
/// that was changed from one that could not be read.
pub fn verify_file(path: &Path, checkpoint: Option<Checkpoint>) -> Result<FileSummary, LogError> {
    let mut verifier = Verifier::new(checkpoint);
    let end = read_locked(path, &mut verifier, |_| ControlFlow::Continue(()))?;
    let chain = verifier.finish().map_err(|c| LogError::Chain {
        path: path.to_owned(),
        line: c.index.map(|i| i + 1),
        seq: c.seq,
        problem: Box::new(c.problem),
    })?;
    Ok(FileSummary {
        chain,
        incomplete_tail_bytes: end.tail.map(|t| t.len() as u64),
    })
}

/// Which entries to read (every condition given must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this action.
    pub action: Option<Action>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<Timestamp>,
    /// Only entries strictly before this time.
    pub until: Option<Timestamp>,
    /// Only entries with `seq >= seq_from`.
    pub seq_from: Option<u64>,
    /// Only entries with `seq <= seq_to`.
    pub seq_to: Option<u64>,
    /// At most this many entries (the first ones that match).
    pub limit: Option<usize>,
}

impl Filter {
    /// Whether `e` passes every condition (the limit aside).
    pub fn matches(&self, e: &Entry) -> bool {
        let time = Timestamp::parse(&e.time).ok();
        self.action
            .as_ref()
            .is_none_or(|a| a.as_str() == e.action.as_str())
            && self.actor.as_ref().is_none_or(|a| *a == e.actor)
            && self.subject.as_ref().is_none_or(|s| *s == e.subject)
            && self.since.is_none_or(|t| time.is_some_and(|et| et >= t))
            && self.until.is_none_or(|t| time.is_some_and(|et| et < t))
            && self.seq_from.is_none_or(|s| e.seq >= s)
            && self.seq_to.is_none_or(|s| e.seq <= s)
    }
}

/// The entries of the log at `path` that pass `filter`, in log order.
///
/// Every entry up to the last one returned is verified from the start of
/// the log (an error names the first bad line); reading stops once the
/// limit or `seq_to` is reached, so what comes after is not looked at —
/// [`verify_file`] checks the whole log. A final line without its newline
/// is not an entry and is not returned.
pub fn read_entries(path: &Path, filter: &Filter) -> Result<Vec<Entry>, LogError> {
    let mut out = Vec::new();
    if filter.limit == Some(0) {
        return Ok(out);
    }
    let mut verifier = Verifier::new(None);
    read_locked(path, &mut verifier, |e| {
        let past_end = filter.seq_to.is_some_and(|s| e.seq >= s);
        if filter.matches(&e) {
            out.push(e);
        }
        if past_end || filter.limit.is_some_and(|l| out.len() >= l) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(out)
}

/// The newest `n` entries of the log at `path` that pass `filter` (its
/// `limit` aside), newest first: what an operator reading "what just
/// happened" wants. The whole log is read and verified from the start;
/// at most `n` entries are held at once.
pub fn read_newest_entries(path: &Path, filter: &Filter, n: usize) -> Result<Vec<Entry>, LogError> {
    let mut kept = std::collections::VecDeque::with_capacity(n.min(1024));
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut verifier = Verifier::new(None);
    read_locked(path, &mut verifier, |e| {
        let past_end = filter.seq_to.is_some_and(|s| e.seq >= s);
        if filter.matches(&e) {
            if kept.len() == n {
                kept.pop_front();
            }
            kept.push_back(e);
        }
        if past_end {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(kept.into_iter().rev().collect())
}
