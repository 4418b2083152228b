//! airlock's audit log: every state change of the control plane —
//! submissions, gate runs, attestations, approvals, promotions, rollbacks,
//! token and key changes — as an append-only, hash-chained, durable log.
//!
//! Why a hash chain: the log is evidence for a security reviewer, so it
//! must show not only what happened but that nothing was changed since.
//! Each entry carries the hash of the one before it, so editing, deleting,
//! inserting or reordering any entry breaks the chain at a place
//! [`chain::verify`] names; what a chain cannot show by itself — a cut-off
//! tail, or a history rewritten wholesale by someone who can write the file
//! — shows against a head recorded elsewhere ([`Checkpoint`]).
//!
//! Why durable before answering: an API that says "promoted" and then
//! loses the record after a crash would make the log useless as evidence.
//! [`AuditLog::append`] returns only once the entry is on stable storage,
//! and a crash mid-append can only leave a torn last line, which the next
//! open repairs without ever dropping a complete entry.
//!
//! The layers, each usable alone:
//!
//! * [`canonical`]: RFC 8785 canonical JSON (pure), what hashes are taken
//!   over and how lines are written;
//! * [`entry`]: the entry, its hash, its fields' rules (pure);
//! * [`chain`]: verification and its typed errors (pure);
//! * [`store`]: the locked, fsynced JSON Lines file, crash recovery,
//!   reading with filters.
//!
//! The format, the guarantees and what they do not cover are in
//! `docs/audit.md`. This crate knows nothing of wasmtime, HTTP or the
//! command line.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod chain;
pub mod entry;
pub mod store;

pub use chain::{ChainError, ChainProblem, Checkpoint, Summary, Verifier, Warning, verify};
pub use entry::{
    Action, Entry, EntryError, GENESIS_PREV_HASH, Head, Timestamp, format_unix, utc_now,
};
pub use store::{
    AuditLog, FileSummary, Filter, LineProblem, LogError, Recovery, read_entries,
    read_newest_entries, verify_file,
};
