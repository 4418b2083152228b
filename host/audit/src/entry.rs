//! One audit entry: who did what to which thing, when, linked to the entry
//! before it by hash.
//!
//! An entry's `hash` is the lower-case hex SHA-256 of the RFC 8785
//! canonical JSON ([`crate::canonical`]) of the entry's other seven fields
//! (`action`, `actor`, `details`, `prev_hash`, `seq`, `subject`, `time`),
//! and its `prev_hash` is the `hash` of the entry before it. The first
//! entry (seq 0) has no entry before it; its `prev_hash` is
//! [`GENESIS_PREV_HASH`], 64 zeros — a value no SHA-256 output is known to
//! take, so a first entry cannot be confused with a later one. Changing any
//! byte of any field of an entry changes its hash, and therefore the
//! `prev_hash` the next entry must carry.

use crate::canonical::{self, CanonicalError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::fmt;

mod time;

pub use time::{Timestamp, format_unix, utc_now};

/// The `prev_hash` of the first entry: 64 zeros.
pub const GENESIS_PREV_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// The largest integer magnitude an entry may record: 2^53 - 1, the
/// I-JSON (RFC 7493 §2.2) range in which every integer is exactly a double
/// and so reads back unchanged from canonical JSON.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The longest `actor`, `subject` or custom action name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// What kind of state change an entry records.
///
/// Serialized as its [`Action::as_str`] name. Names that are not one of the
/// known kinds read back as [`Action::Other`], so a log written by a later
/// version with new kinds still reads and verifies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// A model version was submitted (`submission`).
    Submission,
    /// A gate ran against a candidate (`gate_run`).
    GateRun,
    /// An attestation was issued or recorded (`attestation`).
    Attestation,
    /// Someone approved a promotion (`approval`).
    Approval,
    /// A version was promoted, in full or as a canary step (`promotion`).
    Promotion,
    /// A version was rolled back, by hand or automatically (`rollback`).
    Rollback,
    /// An API token was created, changed or revoked (`token_change`).
    TokenChange,
    /// A signing or trust key was added, rotated or revoked (`key_change`).
    KeyChange,
    /// Any other kind: a name of 1 to [`MAX_NAME_BYTES`] bytes of `a-z`,
    /// `0-9`, `_`, `.` and `-` (checked by [`Action::other`] and when an
    /// entry is appended or verified).
    Other(String),
}

impl Action {
    const KNOWN: [(Action, &'static str); 8] = [
        (Action::Submission, "submission"),
        (Action::GateRun, "gate_run"),
        (Action::Attestation, "attestation"),
        (Action::Approval, "approval"),
        (Action::Promotion, "promotion"),
        (Action::Rollback, "rollback"),
        (Action::TokenChange, "token_change"),
        (Action::KeyChange, "key_change"),
    ];

    /// The action named `name`: a known kind, or a checked custom one.
    pub fn other(name: &str) -> Result<Action, EntryError> {
        let action = Action::from_name(name);
        action.check()?;
        Ok(action)
    }

    /// The action named `name`, unchecked (what reading a log does; the
    /// name is checked when the entry is verified).
    pub fn from_name(name: &str) -> Action {
        Self::KNOWN
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(a, _)| a.clone())
            .unwrap_or_else(|| Action::Other(name.to_owned()))
    }

    /// The name written in the log.
    pub fn as_str(&self) -> &str {
        match self {
            Action::Other(name) => name,
            known => {
                Self::KNOWN
                    .iter()
                    .find(|(a, _)| a == known)
                    .expect("every known action is listed")
                    .1
            }
        }
    }

    /// Whether the name is one the log accepts.
    pub fn check(&self) -> Result<(), EntryError> {
        let name = self.as_str();
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME_BYTES
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
        if ok {
            Ok(())
        } else {
            Err(EntryError::BadAction(name.to_owned()))
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(Action::from_name(&name))
    }
}

/// Why an entry cannot be written, or is not well formed when read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// `time` is not an RFC 3339 UTC timestamp.
    #[error(
        "time {0:?} is not an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.fraction]Z, at most 9 fraction digits)"
    )]
    BadTime(String),
    /// The actor is empty or longer than [`MAX_NAME_BYTES`].
    #[error("the actor must be 1 to {MAX_NAME_BYTES} bytes, got {0} bytes")]
    BadActor(usize),
    /// The subject is longer than [`MAX_NAME_BYTES`].
    #[error("the subject must be at most {MAX_NAME_BYTES} bytes, got {0} bytes")]
    BadSubject(usize),
    /// The action name is empty, too long or has a character outside
    /// `a-z0-9_.-`.
    #[error(
        "action {0:?} is not a name of 1 to {MAX_NAME_BYTES} characters from a-z, 0-9, _, . and -"
    )]
    BadAction(String),
    /// A hash field is not 64 lower-case hex digits.
    #[error("{field} {value:?} is not 64 lower-case hex digits")]
    BadHash {
        /// `hash` or `prev_hash`.
        field: &'static str,
        /// What the field holds.
        value: String,
    },
    /// The details hold an integer that canonical JSON cannot carry exactly.
    #[error(
        "details{path}: the integer {value} is outside ±(2^53-1) and would not read back exactly; record it as a string"
    )]
    UnsafeInteger {
        /// Where in the details, as a JSON-pointer-like path.
        path: String,
        /// The integer.
        value: String,
    },
    /// The sequence number is outside ±(2^53-1).
    #[error("seq {0} is beyond 2^53-1")]
    SeqTooLarge(u64),
    /// The entry has no canonical form (too deep).
    #[error("the entry has no canonical JSON form: {0}")]
    Canonical(#[from] CanonicalError),
}

/// The last entry of a log: its sequence number and hash. Recording it
/// somewhere the log's writer cannot change (a ticket, a signed
/// attestation, another machine) is what lets a later
/// [`crate::chain::verify`] detect that the tail was cut off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The entry's sequence number.
    pub seq: u64,
    /// The entry's hash.
    pub hash: String,
}

/// One audit entry, as stored (one canonical JSON object per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the log: 0, 1, 2, … with no gap.
    pub seq: u64,
    /// When, as an RFC 3339 UTC timestamp given by the writer.
    pub time: String,
    /// Who: a user, a token's name, or the server itself.
    pub actor: String,
    /// What kind of change.
    pub action: Action,
    /// Which thing changed (a model version, a token id, a key id; may be
    /// empty).
    pub subject: String,
    /// Anything else worth keeping, as JSON (digests, reasons, old and new
    /// values).
    pub details: Value,
    /// The `hash` of the previous entry ([`GENESIS_PREV_HASH`] for seq 0).
    pub prev_hash: String,
    /// SHA-256 of the canonical JSON of every other field.
    pub hash: String,
}

impl Entry {
    /// The entry after `prev` (or the first entry if `prev` is `None`),
    /// with its hash computed; refuses what the log would not write back
    /// exactly (see [`check_details`]) and malformed fields.
    pub fn next(
        prev: Option<&Head>,
        time: &str,
        actor: &str,
        action: Action,
        subject: &str,
        details: Value,
    ) -> Result<Entry, EntryError> {
        let (seq, prev_hash) = match prev {
            Some(h) => (h.seq + 1, h.hash.clone()),
            None => (0, GENESIS_PREV_HASH.to_owned()),
        };
        check_details(&details)?;
        let mut entry = Entry {
            seq,
            time: time.to_owned(),
            actor: actor.to_owned(),
            action,
            subject: subject.to_owned(),
            details,
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry.compute_hash()?;
        entry.check_fields()?;
        Ok(entry)
    }

    /// This entry's head (its seq and hash).
    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }

    /// The hash this entry's fields (all but `hash`) give.
    pub fn compute_hash(&self) -> Result<String, EntryError> {
        if self.seq > MAX_SAFE_INTEGER {
            return Err(EntryError::SeqTooLarge(self.seq));
        }
        let unhashed = json!({
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action.as_str(),
            "subject": self.subject,
            "details": self.details,
            "prev_hash": self.prev_hash,
        });
        let bytes = canonical::to_vec(&unhashed)?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    }

    /// The line stored in the log: the canonical JSON of every field,
    /// `hash` included, without the newline.
    pub fn to_line(&self) -> Result<String, EntryError> {
        let v = serde_json::to_value(self).expect("an entry is plain JSON");
        Ok(canonical::to_string(&v)?)
    }

    /// Checks every field's form (not the hash or the chain): time, actor,
    /// subject and action names, hex hashes.
    pub fn check_fields(&self) -> Result<(), EntryError> {
        Timestamp::parse(&self.time)?;
        if self.actor.is_empty() || self.actor.len() > MAX_NAME_BYTES {
            return Err(EntryError::BadActor(self.actor.len()));
        }
        if self.subject.len() > MAX_NAME_BYTES {
            return Err(EntryError::BadSubject(self.subject.len()));
        }
        self.action.check()?;
        for (field, value) in [("hash", &self.hash), ("prev_hash", &self.prev_hash)] {
            if !is_hash(value) {
                return Err(EntryError::BadHash {
                    field,
                    value: value.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Whether `s` is 64 lower-case hex digits (a SHA-256 as the log writes it).
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks that `details` reads back from canonical JSON exactly as given:
/// no integer beyond ±(2^53-1) (JCS would print it as the nearest double)
/// and no nesting beyond [`canonical::MAX_DEPTH`] (minus the entry's own
/// level). Floats are fine: they are doubles already.
pub fn check_details(details: &Value) -> Result<(), EntryError> {
    fn walk(v: &Value, path: &mut String) -> Result<(), EntryError> {
        match v {
            Value::Number(n) => {
                let unsafe_int = n.as_u64().is_some_and(|u| u > MAX_SAFE_INTEGER)
                    || n.as_i64()
                        .is_some_and(|i| i.unsigned_abs() > MAX_SAFE_INTEGER);
                if unsafe_int {
                    return Err(EntryError::UnsafeInteger {
                        path: path.clone(),
                        value: n.to_string(),
                    });
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    walk(item, path)?;
                    path.truncate(len);
                }
            }
            Value::Object(members) => {
                for (k, item) in members {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    walk(item, path)?;
                    path.truncate(len);
                }
            }
            Value::Null | Value::Bool(_) | Value::String(_) => {}
        }
        Ok(())
    }
    // The entry wraps the details in one more object level.
    canonical::to_string(&json!({ "details": details }))?;
    walk(details, &mut String::new())
}

#[cfg(test)]
mod tests;
