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

/// A point in time as an RFC 3339 UTC timestamp
/// (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`), ordered by the instant it names.
///
/// Only the UTC designator `Z` (upper case, as is `T`) is accepted, so that
/// one instant has few spellings and every entry's time reads the same way
/// in every zone. Seconds may be 60 (a leap second). The fraction has 1 to
/// 9 digits; `…:00.5Z` and `…:00.50Z` name the same instant but are
/// different strings, and the string is what is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    // Field order is the comparison order.
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    nanos: u32,
}

impl Timestamp {
    /// Parses `s`, or says why it is not an RFC 3339 UTC timestamp.
    pub fn parse(s: &str) -> Result<Timestamp, EntryError> {
        let bad = || EntryError::BadTime(s.to_owned());
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(bad());
        }
        let num = |range: std::ops::Range<usize>| -> Result<u32, EntryError> {
            let part = &b[range];
            if part.iter().all(u8::is_ascii_digit) {
                Ok(part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
            } else {
                Err(bad())
            }
        };
        let sep = |i: usize, c: u8| if b[i] == c { Ok(()) } else { Err(bad()) };
        let year = num(0..4)?;
        sep(4, b'-')?;
        let month = num(5..7)?;
        sep(7, b'-')?;
        let day = num(8..10)?;
        sep(10, b'T')?;
        let hour = num(11..13)?;
        sep(13, b':')?;
        let minute = num(14..16)?;
        sep(16, b':')?;
        let second = num(17..19)?;
        let mut nanos = 0;
        let rest = &b[19..];
        match rest {
            [b'Z'] => {}
            [b'.', fraction @ .., b'Z'] if (1..=9).contains(&fraction.len()) => {
                let digits = num(20..20 + fraction.len())?;
                nanos = digits * 10u32.pow(9 - fraction.len() as u32);
            }
            _ => return Err(bad()),
        }
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(bad()),
        };
        if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
            return Err(bad());
        }
        Ok(Timestamp {
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            nanos,
        })
    }
}

/// The current time as an RFC 3339 UTC timestamp with microseconds, e.g.
/// `2025-06-01T12:00:00.123456Z`. A caller may pass any time it likes to
/// [`crate::AuditLog::append`]; this is the usual one.
pub fn utc_now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_unix(since.as_secs(), since.subsec_micros())
}

/// `secs` after 1970-01-01T00:00:00Z (plus `micros`) as RFC 3339 UTC.
pub fn format_unix(secs: u64, micros: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since the epoch (the proleptic Gregorian
    // calendar, in 400-year eras of 146 097 days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
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
mod tests {
    use super::*;

    fn first() -> Entry {
        Entry::next(
            None,
            "2025-06-01T12:00:00Z",
            "alice",
            Action::Submission,
            "fraud-model@3",
            json!({"component": "sha256:ab", "score": 0.25}),
        )
        .unwrap()
    }

    /// The hash is SHA-256 over exactly the documented canonical bytes
    /// (docs/audit.md shows this entry and its hash).
    #[test]
    fn the_hash_covers_the_canonical_json_of_every_other_field() {
        let e = first();
        let preimage = format!(
            r#"{{"action":"submission","actor":"alice","details":{{"component":"sha256:ab","score":0.25}},"prev_hash":"{GENESIS_PREV_HASH}","seq":0,"subject":"fraud-model@3","time":"2025-06-01T12:00:00Z"}}"#
        );
        assert_eq!(e.hash, hex::encode(Sha256::digest(preimage.as_bytes())));
        assert_eq!(
            e.hash,
            "f0a4875ccb35da2a0fa61ee29ff25bf2ad1510be29aee7ae6db3058204b17573"
        );
        let line = e.to_line().unwrap();
        assert!(line.starts_with(r#"{"action":"submission","actor":"alice","details":"#));
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), e);
    }

    #[test]
    fn every_field_changes_the_hash() {
        let e = first();
        let mut variants = vec![];
        let mut v = e.clone();
        v.seq = 1;
        variants.push(v);
        let mut v = e.clone();
        v.time = "2025-06-01T12:00:01Z".into();
        variants.push(v);
        let mut v = e.clone();
        v.actor = "mallory".into();
        variants.push(v);
        let mut v = e.clone();
        v.action = Action::Promotion;
        variants.push(v);
        let mut v = e.clone();
        v.subject = "fraud-model@4".into();
        variants.push(v);
        let mut v = e.clone();
        v.details["score"] = json!(0.26);
        variants.push(v);
        let mut v = e.clone();
        v.prev_hash = "1".repeat(64);
        variants.push(v);
        for v in variants {
            assert_ne!(v.compute_hash().unwrap(), e.hash, "{v:?}");
        }
    }

    #[test]
    fn the_next_entry_links_to_the_head() {
        let a = first();
        let b = Entry::next(
            Some(&a.head()),
            "2025-06-01T12:00:01Z",
            "bob",
            Action::Approval,
            "fraud-model@3",
            Value::Null,
        )
        .unwrap();
        assert_eq!(b.seq, 1);
        assert_eq!(b.prev_hash, a.hash);
        assert_eq!(a.prev_hash, GENESIS_PREV_HASH);
    }

    #[test]
    fn actions_round_trip_by_name_and_custom_names_are_checked() {
        for (a, name) in Action::KNOWN {
            assert_eq!(a.as_str(), name);
            assert_eq!(Action::from_name(name), a);
            assert_eq!(serde_json::to_value(&a).unwrap(), json!(name));
        }
        assert_eq!(
            Action::other("policy.change").unwrap(),
            Action::Other("policy.change".into())
        );
        assert_eq!(Action::other("rollback").unwrap(), Action::Rollback);
        for bad in [
            "",
            "Rollback",
            "a b",
            "x\n",
            &"a".repeat(MAX_NAME_BYTES + 1),
        ] {
            assert!(Action::other(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_are_strict_rfc3339_utc_and_ordered_by_instant() {
        for ok in [
            "2025-06-01T12:00:00Z",
            "2024-02-29T23:59:60Z",
            "2025-06-01T12:00:00.5Z",
            "2025-06-01T12:00:00.123456789Z",
        ] {
            assert!(Timestamp::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "2025-06-01 12:00:00Z",
            "2025-06-01t12:00:00z",
            "2025-06-01T12:00:00+00:00",
            "2025-06-01T12:00:00",
            "2025-02-29T12:00:00Z",
            "2025-13-01T12:00:00Z",
            "2025-06-01T24:00:00Z",
            "2025-06-01T12:00:00.Z",
            "2025-06-01T12:00:00.1234567890Z",
            "２025-06-01T12:00:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        let t = |s| Timestamp::parse(s).unwrap();
        assert!(t("2025-06-01T12:00:00Z") < t("2025-06-01T12:00:00.5Z"));
        assert_eq!(t("2025-06-01T12:00:00.5Z"), t("2025-06-01T12:00:00.500Z"));
        assert!(t("2025-06-01T12:00:00.9Z") < t("2025-06-01T12:00:01Z"));
        assert!(t("2024-12-31T23:59:59Z") < t("2025-01-01T00:00:00Z"));
    }

    #[test]
    fn utc_now_is_a_valid_timestamp_and_the_calendar_is_right() {
        Timestamp::parse(&utc_now()).unwrap();
        assert_eq!(format_unix(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_unix(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(format_unix(1_748_779_199, 0), "2025-06-01T11:59:59.000000Z");
        assert_eq!(format_unix(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
    }

    #[test]
    fn what_would_not_read_back_exactly_is_refused() {
        let next = |details| {
            Entry::next(
                None,
                "2025-06-01T12:00:00Z",
                "alice",
                Action::KeyChange,
                "",
                details,
            )
        };
        let err = next(json!({"a": [1, {"b/c": 9007199254740993u64}]})).unwrap_err();
        assert_eq!(
            err,
            EntryError::UnsafeInteger {
                path: "/a/1/b~1c".into(),
                value: "9007199254740993".into()
            }
        );
        assert!(next(json!({"n": -9007199254740992i64})).is_err());
        assert!(next(json!({"n": 9007199254740991u64, "f": 1e300})).is_ok());
        let mut deep = json!(1);
        for _ in 0..canonical::MAX_DEPTH - 1 {
            deep = json!([deep]);
        }
        assert!(next(deep.clone()).is_ok());
        assert!(matches!(next(json!([deep])), Err(EntryError::Canonical(_))));
        assert!(matches!(
            Entry::next(None, "now", "a", Action::Rollback, "", Value::Null),
            Err(EntryError::BadTime(_))
        ));
        assert!(matches!(
            Entry::next(
                None,
                "2025-06-01T12:00:00Z",
                "",
                Action::Rollback,
                "",
                Value::Null
            ),
            Err(EntryError::BadActor(0))
        ));
    }
}
