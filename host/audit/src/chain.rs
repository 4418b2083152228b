//! Verifying a chain of entries: every change to a log that was not made
//! by appending is found, and the first entry that does not follow from
//! the ones before it is named.
//!
//! Each entry is checked in order, and the first failure stops the check:
//!
//! | check | fails when | [`ChainProblem`] |
//! |---|---|---|
//! | `hash` equals the hash of the entry's other fields | a field was edited | `HashMismatch` |
//! | fields are well formed (time, names, hex) | the entry was forged with a recomputed hash, or written by a broken writer | `Invalid` |
//! | `prev_hash` equals the previous entry's `hash` (genesis for the first) | an entry before it was deleted, inserted or moved, or it was moved | `BrokenLink` |
//! | `seq` is one more than the previous entry's (0 for the first) | entries were renumbered by someone who recomputed the hashes | `SeqGap` / `SeqRepeat` |
//! | a [`Checkpoint`] given by the caller is in the log | the log was cut short or rewritten from some point on | `CheckpointMismatch` / `CheckpointMissing` |
//!
//! What a chain alone cannot show: that entries were removed from the end
//! (the shorter log is a valid chain), or that the whole log, or everything
//! from some entry on, was rewritten with fresh hashes by someone who can
//! write the file. Both are caught by verifying against a [`Checkpoint`] —
//! a head (`seq`, `hash`) recorded earlier somewhere the writer cannot
//! change; the log may have grown since, but must still contain it.
//!
//! Time going backwards is a [`Warning`], not an error: times are given by
//! the writer's clock, which can step back (NTP, a restored VM), and an
//! entry's time is covered by its hash like every other field, so a
//! backwards time is not a sign of tampering. A log that refused such
//! entries would be unwritable after a clock step.

use crate::entry::{Entry, EntryError, GENESIS_PREV_HASH, Head, Timestamp, is_hash};
use serde::Serialize;
use std::fmt;

/// A head recorded earlier that the log must still contain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// The hash of the entry.
    pub hash: String,
    /// Its sequence number, if known (without it, the entry is found by
    /// hash alone).
    pub seq: Option<u64>,
}

impl From<Head> for Checkpoint {
    fn from(h: Head) -> Self {
        Checkpoint {
            hash: h.hash,
            seq: Some(h.seq),
        }
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "{} at seq {seq}", self.hash),
            None => f.write_str(&self.hash),
        }
    }
}

/// Something odd about a log that is not evidence of tampering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// An entry's time is earlier than the entry before it.
    TimeWentBack {
        /// The entry.
        seq: u64,
        /// Its time.
        time: String,
        /// The previous entry's time.
        previous: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::TimeWentBack {
                seq,
                time,
                previous,
            } => write!(
                f,
                "seq {seq}: time {time} is earlier than the previous entry's {previous} (the writer's clock went back)"
            ),
        }
    }
}

/// What a verified chain holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// How many entries.
    pub entries: u64,
    /// The last entry (none for an empty log).
    pub head: Option<Head>,
    /// The checkpoint the log was verified against, if one was given (it
    /// was found).
    pub checkpoint: Option<Checkpoint>,
    /// Oddities that are not tampering.
    pub warnings: Vec<Warning>,
}

/// The first entry that does not follow from the ones before it, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", self.place())]
pub struct ChainError {
    /// The entry's position (0-based; line `index + 1` of a log file), or
    /// `None` for a problem with the log as a whole (a missing checkpoint).
    pub index: Option<u64>,
    /// The `seq` the entry carries, when there is an entry.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: ChainProblem,
}

impl ChainError {
    fn place(&self) -> String {
        match (self.index, self.seq) {
            (Some(i), Some(s)) => format!("entry {i} (seq {s})"),
            (Some(i), None) => format!("entry {i}"),
            (None, _) => "the log".to_owned(),
        }
    }
}

/// What is wrong with an entry or a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainProblem {
    /// The stored hash is not the hash of the entry's fields.
    #[error("edited: its hash is {stored} but its fields hash to {computed}")]
    HashMismatch {
        /// The `hash` field.
        stored: String,
        /// The hash of the other fields.
        computed: String,
    },
    /// A field is malformed (hash consistent).
    #[error("not a valid entry: {0}")]
    Invalid(EntryError),
    /// `prev_hash` is not the previous entry's hash.
    #[error(
        "broken link: its prev_hash is {found} but the entry before it hashes to {expected}: an entry was deleted, inserted or moved here"
    )]
    BrokenLink {
        /// The previous entry's hash (genesis for the first entry).
        expected: String,
        /// The `prev_hash` field.
        found: String,
    },
    /// `seq` skips numbers.
    #[error("seq gap: expected seq {expected}, found {found}")]
    SeqGap {
        /// The seq that should follow.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// `seq` repeats or goes back.
    #[error("seq repeats: expected seq {expected}, found {found}")]
    SeqRepeat {
        /// The seq that should follow.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// The entry at the checkpoint's seq has another hash.
    #[error(
        "history rewritten: the checkpoint says seq {seq} has hash {expected}, the log has {found}"
    )]
    CheckpointMismatch {
        /// The checkpoint's seq.
        seq: u64,
        /// The checkpoint's hash.
        expected: String,
        /// The log's hash at that seq.
        found: String,
    },
    /// No entry has the checkpoint's hash.
    #[error(
        "truncated or rewritten: the checkpoint {expected} is not in the log, which ends at {}",
        match .last { Some(h) => format!("seq {} ({})", h.seq, h.hash), None => "nothing (it is empty)".to_owned() }
    )]
    CheckpointMissing {
        /// The checkpoint.
        expected: Checkpoint,
        /// The log's last entry.
        last: Option<Head>,
    },
}

impl ChainProblem {
    /// A stable one-word name for scripts (`--json`).
    pub fn kind(&self) -> &'static str {
        match self {
            ChainProblem::HashMismatch { .. } => "edited",
            ChainProblem::Invalid(_) => "invalid",
            ChainProblem::BrokenLink { .. } => "broken_link",
            ChainProblem::SeqGap { .. } => "seq_gap",
            ChainProblem::SeqRepeat { .. } => "seq_repeat",
            ChainProblem::CheckpointMismatch { .. } => "checkpoint_mismatch",
            ChainProblem::CheckpointMissing { .. } => "checkpoint_missing",
        }
    }
}

/// Checks entries one at a time, in log order; what [`verify`] and the file
/// store use, so that a log is checked as it is read, without holding it.
#[derive(Debug, Clone)]
pub struct Verifier {
    index: u64,
    prev_hash: String,
    last_time: Option<(Timestamp, String)>,
    head: Option<Head>,
    checkpoint: Option<Checkpoint>,
    checkpoint_found: bool,
    warnings: Vec<Warning>,
}

impl Verifier {
    /// A verifier for a log from its first entry, which must contain
    /// `checkpoint` if one is given.
    pub fn new(checkpoint: Option<Checkpoint>) -> Self {
        Verifier {
            index: 0,
            prev_hash: GENESIS_PREV_HASH.to_owned(),
            last_time: None,
            head: None,
            checkpoint,
            checkpoint_found: false,
            warnings: Vec::new(),
        }
    }

    /// The last entry accepted so far.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// How many entries were accepted so far.
    pub fn count(&self) -> u64 {
        self.index
    }

    /// Warnings so far.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Checks `e` as the next entry; on success it becomes the head. On
    /// failure the verifier is unchanged.
    pub fn push(&mut self, e: &Entry) -> Result<(), ChainError> {
        let fail = |problem| ChainError {
            index: Some(self.index),
            seq: Some(e.seq),
            problem,
        };
        let computed = e
            .compute_hash()
            .map_err(|err| fail(ChainProblem::Invalid(err)))?;
        if computed != e.hash {
            return Err(fail(ChainProblem::HashMismatch {
                stored: e.hash.clone(),
                computed,
            }));
        }
        e.check_fields()
            .map_err(|err| fail(ChainProblem::Invalid(err)))?;
        if e.prev_hash != self.prev_hash {
            return Err(fail(ChainProblem::BrokenLink {
                expected: self.prev_hash.clone(),
                found: e.prev_hash.clone(),
            }));
        }
        let expected = self.index;
        if e.seq > expected {
            return Err(fail(ChainProblem::SeqGap {
                expected,
                found: e.seq,
            }));
        }
        if e.seq < expected {
            return Err(fail(ChainProblem::SeqRepeat {
                expected,
                found: e.seq,
            }));
        }
        if let Some(cp) = &self.checkpoint {
            let at_seq = cp.seq == Some(e.seq);
            if e.hash == cp.hash && (cp.seq.is_none() || at_seq) {
                self.checkpoint_found = true;
            } else if at_seq {
                return Err(fail(ChainProblem::CheckpointMismatch {
                    seq: e.seq,
                    expected: cp.hash.clone(),
                    found: e.hash.clone(),
                }));
            }
        }
        let time = Timestamp::parse(&e.time).expect("checked by check_fields");
        if let Some((last, last_text)) = &self.last_time
            && time < *last
        {
            self.warnings.push(Warning::TimeWentBack {
                seq: e.seq,
                time: e.time.clone(),
                previous: last_text.clone(),
            });
        }
        self.last_time = Some((time, e.time.clone()));
        self.prev_hash = e.hash.clone();
        self.head = Some(e.head());
        self.index += 1;
        Ok(())
    }

    /// Ends the check: fails if a checkpoint was given and not found.
    pub fn finish(self) -> Result<Summary, ChainError> {
        if let Some(cp) = &self.checkpoint
            && !self.checkpoint_found
        {
            return Err(ChainError {
                index: None,
                seq: None,
                problem: ChainProblem::CheckpointMissing {
                    expected: cp.clone(),
                    last: self.head.clone(),
                },
            });
        }
        Ok(Summary {
            entries: self.index,
            head: self.head,
            checkpoint: self.checkpoint,
            warnings: self.warnings,
        })
    }
}

/// Verifies `entries` as a whole log, from its first entry.
pub fn verify(entries: &[Entry]) -> Result<Summary, ChainError> {
    verify_with(entries, None)
}

/// Verifies `entries` as a whole log that must contain `checkpoint` (which
/// is how a cut-off tail or a rewritten history is detected).
pub fn verify_with(
    entries: &[Entry],
    checkpoint: Option<Checkpoint>,
) -> Result<Summary, ChainError> {
    let mut v = Verifier::new(checkpoint);
    for e in entries {
        v.push(e)?;
    }
    v.finish()
}

/// Parses a `--head` argument: `HASH` or `SEQ:HASH`.
pub fn parse_checkpoint(s: &str) -> Option<Checkpoint> {
    let (seq, hash) = match s.split_once(':') {
        Some((seq, hash)) => (Some(seq.parse().ok()?), hash),
        None => (None, s),
    };
    is_hash(hash).then(|| Checkpoint {
        hash: hash.to_owned(),
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Action;
    use serde_json::json;

    /// A valid log of `n` entries, one second apart.
    fn log(n: u64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let e = Entry::next(
                out.last().map(Entry::head).as_ref(),
                &format!("2025-06-01T12:00:{:02}Z", i % 60),
                if i % 2 == 0 { "alice" } else { "bob" },
                [Action::Submission, Action::GateRun, Action::Promotion][i as usize % 3].clone(),
                &format!("model@{i}"),
                json!({ "i": i }),
            )
            .unwrap();
            out.push(e);
        }
        out
    }

    fn problem(r: Result<Summary, ChainError>) -> ChainError {
        r.expect_err("tampering must be detected")
    }

    #[test]
    fn an_intact_log_verifies_and_reports_its_head() {
        let l = log(5);
        let s = verify(&l).unwrap();
        assert_eq!(s.entries, 5);
        assert_eq!(s.head, Some(l[4].head()));
        assert!(s.warnings.is_empty());
        let empty = verify(&[]).unwrap();
        assert_eq!((empty.entries, empty.head), (0, None));
    }

    #[test]
    fn an_edited_field_is_named_as_edited() {
        let mut l = log(5);
        l[2].details = json!({ "i": 99 });
        let e = problem(verify(&l));
        assert_eq!((e.index, e.seq), (Some(2), Some(2)));
        assert_eq!(e.problem.kind(), "edited");
        assert!(e.to_string().starts_with("entry 2 (seq 2): edited"), "{e}");
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
        let mut l = log(5);
        l[2].actor = "mallory".into();
        l[2].hash = l[2].compute_hash().unwrap();
        let e = problem(verify(&l));
        assert_eq!((e.index, e.seq), (Some(3), Some(3)));
        assert!(matches!(e.problem, ChainProblem::BrokenLink { .. }));
    }

    #[test]
    fn a_deleted_entry_breaks_the_link_of_the_one_after_it() {
        let mut l = log(5);
        l.remove(2);
        let e = problem(verify(&l));
        assert_eq!((e.index, e.seq), (Some(2), Some(3)));
        assert_eq!(e.problem.kind(), "broken_link");
        let mut l = log(5);
        l.remove(0);
        let e = problem(verify(&l));
        assert_eq!((e.index, e.seq), (Some(0), Some(1)));
        assert_eq!(
            e.problem,
            ChainProblem::BrokenLink {
                expected: GENESIS_PREV_HASH.into(),
                found: log(5)[0].hash.clone()
            }
        );
    }

    #[test]
    fn an_inserted_entry_is_found() {
        // A forged entry with a correct hash, linked to its predecessor:
        // the original entry after it no longer links.
        let mut l = log(5);
        let forged = Entry::next(
            Some(&l[1].head()),
            "2025-06-01T12:00:01Z",
            "mallory",
            Action::Approval,
            "model@1",
            json!({}),
        )
        .unwrap();
        l.insert(2, forged);
        let e = problem(verify(&l));
        assert_eq!((e.index, e.seq), (Some(3), Some(2)));
        assert_eq!(e.problem.kind(), "broken_link");
        // A careless forgery fails its own hash.
        let mut l = log(5);
        let mut forged = l[1].clone();
        forged.actor = "mallory".into();
        l.insert(2, forged);
        let e = problem(verify(&l));
        assert_eq!((e.index, e.problem.kind()), (Some(2), "edited"));
    }

    #[test]
    fn swapped_entries_are_found_at_the_first_moved_one() {
        let mut l = log(5);
        l.swap(1, 3);
        let e = problem(verify(&l));
        assert_eq!((e.index, e.seq), (Some(1), Some(3)));
        assert_eq!(e.problem.kind(), "broken_link");
    }

    #[test]
    fn renumbered_entries_with_recomputed_hashes_show_a_seq_gap_or_repeat() {
        // Someone rewrites the chain from seq 2 with fresh hashes but
        // numbers wrongly: the links hold, the numbering does not.
        let l = log(4);
        let mut forged = l[..2].to_vec();
        let mut e = l[2].clone();
        e.seq = 5;
        e.prev_hash = forged[1].hash.clone();
        e.hash = e.compute_hash().unwrap();
        forged.push(e);
        let err = problem(verify(&forged));
        assert_eq!(
            (err.index, err.problem),
            (
                Some(2),
                ChainProblem::SeqGap {
                    expected: 2,
                    found: 5
                }
            )
        );
        let last = forged.pop().unwrap();
        let mut e = last;
        e.seq = 1;
        e.hash = e.compute_hash().unwrap();
        forged.push(e);
        let err = problem(verify(&forged));
        assert_eq!(err.problem.kind(), "seq_repeat");
    }

    #[test]
    fn a_truncated_tail_is_found_only_against_a_checkpoint() {
        let full = log(6);
        let head: Checkpoint = full[5].head().into();
        let cut = &full[..4];
        // The shorter log is a valid chain on its own …
        assert_eq!(verify(cut).unwrap().entries, 4);
        // … but not against the head recorded before the cut.
        let e = problem(verify_with(cut, Some(head.clone())));
        assert_eq!(e.index, None);
        assert_eq!(
            e.problem,
            ChainProblem::CheckpointMissing {
                expected: head.clone(),
                last: Some(full[3].head())
            }
        );
        assert!(e.to_string().contains("truncated"), "{e}");
        // A log that grew since the checkpoint still verifies against it.
        let s = verify_with(&full, Some(full[2].head().into())).unwrap();
        assert_eq!(s.entries, 6);
        // A hash-only checkpoint (what `--head HASH` gives) works too.
        let by_hash = Checkpoint {
            hash: full[5].hash.clone(),
            seq: None,
        };
        assert!(verify_with(&full, Some(by_hash.clone())).is_ok());
        assert_eq!(
            problem(verify_with(cut, Some(by_hash))).problem.kind(),
            "checkpoint_missing"
        );
        assert_eq!(
            problem(verify_with(&[], Some(head))).problem.kind(),
            "checkpoint_missing"
        );
    }

    #[test]
    fn a_rewritten_history_is_found_at_the_checkpoint_seq() {
        // Everything from seq 2 on is rewritten with fresh, consistent
        // hashes: the chain alone is valid, the checkpoint at seq 3 is not.
        let full = log(5);
        let checkpoint: Checkpoint = full[3].head().into();
        let mut forged = full[..2].to_vec();
        for i in 2..5u64 {
            let e = Entry::next(
                forged.last().map(Entry::head).as_ref(),
                "2025-06-01T12:00:59Z",
                "mallory",
                Action::Rollback,
                "",
                json!(i),
            )
            .unwrap();
            forged.push(e);
        }
        assert!(verify(&forged).is_ok());
        let e = problem(verify_with(&forged, Some(checkpoint)));
        assert_eq!((e.index, e.seq), (Some(3), Some(3)));
        assert_eq!(e.problem.kind(), "checkpoint_mismatch");
    }

    #[test]
    fn a_malformed_entry_with_a_consistent_hash_is_invalid() {
        let mut l = log(2);
        l[1].time = "yesterday".into();
        l[1].hash = l[1].compute_hash().unwrap();
        let e = problem(verify(&l));
        assert_eq!((e.index, e.problem.kind()), (Some(1), "invalid"));
    }

    #[test]
    fn time_going_back_is_a_warning_not_an_error() {
        let mut l = log(2);
        let e = Entry::next(
            Some(&l[1].head()),
            "2025-06-01T11:00:00Z",
            "alice",
            Action::Rollback,
            "",
            json!(null),
        )
        .unwrap();
        l.push(e);
        let s = verify(&l).unwrap();
        assert_eq!(
            s.warnings,
            [Warning::TimeWentBack {
                seq: 2,
                time: "2025-06-01T11:00:00Z".into(),
                previous: "2025-06-01T12:00:01Z".into()
            }]
        );
    }

    #[test]
    fn checkpoint_arguments_parse() {
        let h = "ab".repeat(32);
        assert_eq!(
            parse_checkpoint(&h),
            Some(Checkpoint {
                hash: h.clone(),
                seq: None
            })
        );
        assert_eq!(
            parse_checkpoint(&format!("7:{h}")),
            Some(Checkpoint {
                hash: h.clone(),
                seq: Some(7)
            })
        );
        for bad in ["", "xyz", &h[..63], &h.to_uppercase(), &format!("x:{h}")] {
            assert_eq!(parse_checkpoint(bad), None, "{bad}");
        }
    }
}
