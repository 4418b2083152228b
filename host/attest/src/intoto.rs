//! in-toto Statement v1 (in-toto/attestation, `spec/v1/statement.md`): the
//! layer that says *what* a signature is about.
//!
//! Why: a bare signature over a report binds nothing to an artifact. A
//! statement names its subjects by digest and says, by its predicate type,
//! what kind of claim its predicate makes; the DSSE envelope around it
//! ([`crate::dsse`], payload type [`PAYLOAD_TYPE`]) signs all of it. OpenSSF
//! model signing and airlock's gate attestations are both statements.

use airlock_core::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `_type` of a v1 statement.
pub const STATEMENT_TYPE_V1: &str = "https://in-toto.io/Statement/v1";

/// The DSSE payload type of an in-toto statement in JSON.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Why a payload is not the statement expected.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    /// Not JSON of a statement's shape.
    #[error("not an in-toto statement: {0}")]
    Json(#[from] serde_json::Error),
    /// `_type` is not [`STATEMENT_TYPE_V1`].
    #[error("unsupported statement type `{0}` (expected {STATEMENT_TYPE_V1})")]
    UnsupportedType(String),
}

/// An in-toto v1 statement with predicate type `P`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement<P = serde_json::Value> {
    /// Always [`STATEMENT_TYPE_V1`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The artifacts the statement is about.
    pub subject: Vec<Subject>,
    /// What kind of claim the predicate is (a URI).
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The claim.
    pub predicate: P,
}

/// A statement's subject: a name and the artifact's digests by algorithm
/// (an in-toto ResourceDescriptor with its `name` and `digest` fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The artifact's name (informative).
    #[serde(default)]
    pub name: String,
    /// Algorithm → lowercase hex digest, e.g. `{"sha256": "…"}`.
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// A subject named `name` with the sha256 `digest`.
    pub fn sha256(name: &str, digest: &Digest) -> Subject {
        Subject {
            name: name.to_string(),
            digest: BTreeMap::from([("sha256".to_string(), digest.hex())]),
        }
    }

    /// The subject's sha256, if it has a well-formed one.
    pub fn sha256_digest(&self) -> Option<Digest> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(self.digest.get("sha256")?, &mut out).ok()?;
        Some(Digest(out))
    }
}

impl<P: Serialize> Statement<P> {
    /// A v1 statement.
    pub fn new(subject: Vec<Subject>, predicate_type: &str, predicate: P) -> Statement<P> {
        Statement {
            statement_type: STATEMENT_TYPE_V1.to_string(),
            subject,
            predicate_type: predicate_type.to_string(),
            predicate,
        }
    }

    /// The statement as JSON bytes (the DSSE payload).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement always serializes")
    }
}

impl<P: for<'de> Deserialize<'de>> Statement<P> {
    /// Parses a statement, checking its `_type`.
    pub fn from_json(bytes: &[u8]) -> Result<Statement<P>, StatementError> {
        // The type first, so that a statement of another version is named as
        // such rather than as a shape error.
        #[derive(Deserialize)]
        struct Head {
            #[serde(rename = "_type")]
            statement_type: String,
        }
        let head: Head = serde_json::from_slice(bytes)?;
        if head.statement_type != STATEMENT_TYPE_V1 {
            return Err(StatementError::UnsupportedType(head.statement_type));
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_has_the_v1_shape_and_round_trips() {
        let d = Digest::of(b"model");
        let s = Statement::new(
            vec![Subject::sha256("m", &d)],
            "https://example.com/p",
            serde_json::json!({"k": 1}),
        );
        let v: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "m", "digest": {"sha256": d.hex()}}],
                "predicateType": "https://example.com/p",
                "predicate": {"k": 1},
            })
        );
        let back: Statement = Statement::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.subject[0].sha256_digest(), Some(d));
    }

    #[test]
    fn another_statement_type_is_named() {
        let json = br#"{"_type":"https://in-toto.io/Statement/v0.1","subject":[],"predicateType":"p","predicate":{}}"#;
        match Statement::<serde_json::Value>::from_json(json) {
            Err(StatementError::UnsupportedType(t)) => {
                assert_eq!(t, "https://in-toto.io/Statement/v0.1")
            }
            other => panic!("{other:?}"),
        }
    }
}
