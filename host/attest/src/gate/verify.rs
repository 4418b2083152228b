//! Verifying a gate attestation: the trusted key by key id, the
//! signature, the payload, statement and predicate types, the predicate's
//! agreement with the subjects and, when promoting, that the subjects are
//! exactly the digests being promoted. Apart from `gate.rs` (the predicate
//! and signing it) so that what a verifier checks reads in one place.

use super::{AttestError, GatePredicate, PREDICATE_TYPE, SUBJECT_BUNDLE, SUBJECT_MODEL};
use crate::dsse::Envelope;
use crate::intoto::{PAYLOAD_TYPE, Statement};
use crate::keys::{KeyId, KeySet};
use airlock_core::digest::Digest;

/// The digests an attestation must be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedSubject {
    /// The model component being promoted.
    pub model: Digest,
    /// Its bundle (`None` for a model without one).
    pub bundle: Option<Digest>,
}

/// A verified attestation.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAttestation {
    /// The trusted key whose signature verified.
    pub key_id: KeyId,
    /// The model component the verdict is about.
    pub model_digest: Digest,
    /// Its bundle.
    pub bundle_digest: Option<Digest>,
    /// The whole statement.
    pub statement: Statement<GatePredicate>,
}

impl VerifiedAttestation {
    /// Whether the gate passed.
    pub fn passed(&self) -> bool {
        self.statement.predicate.passed()
    }

    /// The predicate.
    pub fn predicate(&self) -> &GatePredicate {
        &self.statement.predicate
    }

    /// The digest of the snapshot every call of the candidate ran, for a
    /// pre-initialised model (`None` for any other): what serving must
    /// run, byte for byte, to serve what the gate judged.
    pub fn snapshot_digest(&self) -> Option<Digest> {
        self.statement.predicate.candidate.snapshot_digest
    }
}

/// Verifies a gate attestation under the trusted `keys` and, when
/// `expected` is given, that it is about exactly those digests.
pub fn verify_attestation(
    envelope: &Envelope,
    keys: &KeySet,
    expected: Option<&ExpectedSubject>,
) -> Result<VerifiedAttestation, AttestError> {
    let verified = envelope.verify(keys)?;
    if verified.payload_type != PAYLOAD_TYPE {
        return Err(AttestError::UnsupportedPayloadType(
            verified.payload_type.to_string(),
        ));
    }
    let raw: Statement = Statement::from_json(verified.payload)?;
    if raw.predicate_type != PREDICATE_TYPE {
        return Err(AttestError::UnsupportedPredicateType(raw.predicate_type));
    }
    let predicate: GatePredicate = serde_json::from_value(raw.predicate)
        .map_err(|e| AttestError::Malformed(format!("predicate: {e}")))?;
    let statement = Statement {
        statement_type: raw.statement_type,
        subject: raw.subject,
        predicate_type: raw.predicate_type,
        predicate,
    };

    let mut model = None;
    let mut bundle = None;
    for s in &statement.subject {
        let d = s
            .sha256_digest()
            .ok_or_else(|| AttestError::Malformed(format!("subject `{}` has no sha256", s.name)))?;
        let slot = match s.name.as_str() {
            SUBJECT_MODEL => &mut model,
            SUBJECT_BUNDLE => &mut bundle,
            other => return Err(AttestError::Malformed(format!("unknown subject `{other}`"))),
        };
        if slot.replace(d).is_some() {
            return Err(AttestError::Malformed(format!(
                "subject `{}` twice",
                s.name
            )));
        }
    }
    let model = model.ok_or_else(|| AttestError::Malformed("no model subject".into()))?;
    let c = &statement.predicate.candidate;
    if c.digest != model || c.bundle_digest != bundle {
        return Err(AttestError::Malformed(
            "the predicate's candidate is not the statement's subject".into(),
        ));
    }
    if statement.predicate.signer_key_id != verified.key_id {
        return Err(AttestError::Malformed(format!(
            "the predicate names signer {} but key {} signed",
            statement.predicate.signer_key_id, verified.key_id
        )));
    }
    if let Some(e) = expected {
        if e.model != model {
            return Err(AttestError::SubjectMismatch {
                role: SUBJECT_MODEL,
                expected: Some(e.model),
                found: Some(model),
                source_of_found: "attestation",
            });
        }
        if e.bundle != bundle {
            return Err(AttestError::SubjectMismatch {
                role: SUBJECT_BUNDLE,
                expected: e.bundle,
                found: bundle,
                source_of_found: "attestation",
            });
        }
    }
    Ok(VerifiedAttestation {
        key_id: verified.key_id,
        model_digest: model,
        bundle_digest: bundle,
        statement,
    })
}
