//! Signed JSON documents: any serializable document wrapped in a DSSE
//! envelope under a payload type of its own, and verified back into the
//! typed document together with the id of the key that signed it.
//!
//! Why: the control plane keeps several kinds of small signed files (trust
//! policies, gate definitions, ...). Each needs the same three things —
//! the signature checked under a set of trusted keys, the payload type
//! checked so a document of one kind is never accepted as another, and the
//! signer's key id so that the caller can apply its own rules about *which*
//! key may sign *what*. Doing it once here keeps those checks identical and
//! their failures distinct.
//!
//! The payload is the document as compact JSON (`serde_json`); the payload
//! type is checked *before* the signature, and both are covered by the
//! signature (DSSE's PAE), so a re-labelled envelope fails either way.

use crate::dsse::{DsseError, Envelope};
use crate::keys::{KeyId, KeySet, SigningKey};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a signed document was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignedError {
    /// The envelope holds another kind of document than the one asked for.
    #[error("payload type is `{found}`, expected `{expected}`")]
    PayloadType {
        /// The payload type asked for.
        expected: String,
        /// The envelope's payload type.
        found: String,
    },
    /// The envelope carries no signature at all.
    #[error("the `{payload_type}` envelope has no signature")]
    NoSignatures {
        /// The envelope's payload type.
        payload_type: String,
    },
    /// No signature is by a key in the trusted set.
    #[error("signed by key(s) {} none of which is trusted here", show_ids(.key_ids))]
    UnknownKey {
        /// The key ids the signatures claim (unauthenticated hints; may be
        /// empty strings).
        key_ids: Vec<String>,
    },
    /// A signature by a trusted key does not verify: the payload, its type
    /// or the signature was changed.
    #[error("the signature by key {key_id} does not verify")]
    BadSignature {
        /// The trusted key the signature was checked under.
        key_id: KeyId,
    },
    /// A signature is not DER ECDSA.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    /// The signature verified but the payload is not the expected JSON
    /// document.
    #[error(
        "the signed `{payload_type}` payload (signed by key {signer}) does not decode: {source}"
    )]
    Payload {
        /// The envelope's payload type.
        payload_type: String,
        /// The key whose signature verified.
        signer: KeyId,
        /// The decoder's reason.
        #[source]
        source: serde_json::Error,
    },
}

/// Shows claimed key ids, an empty one as `(none)`.
pub(crate) fn show_ids(ids: &[String]) -> String {
    if ids.is_empty() {
        return "(none)".into();
    }
    ids.iter()
        .map(|s| if s.is_empty() { "(none)" } else { s.as_str() })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A document whose signature verified, with who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDocument<T> {
    /// The decoded document.
    pub doc: T,
    /// The id of the trusted key whose signature verified.
    pub signer: KeyId,
    /// The exact signed bytes (e.g. for hashing or storing them as
    /// received).
    pub payload: Vec<u8>,
}

/// Signs `doc`, serialized as compact JSON, as a DSSE envelope of type
/// `payload_type` whose signature names `key` by its [`KeyId`].
///
/// # Panics
///
/// If `doc` cannot be serialized to JSON (e.g. a map with non-string
/// keys): a programming error in the document type, not a runtime
/// condition.
pub fn sign_document<T: Serialize>(doc: &T, payload_type: &str, key: &SigningKey) -> Envelope {
    let payload = serde_json::to_vec(doc).expect("a signed document must serialize to JSON");
    Envelope::sign(payload_type, payload, key)
}

/// Verifies `env` as a document of type `payload_type` signed by a key of
/// `keys`, and decodes it.
///
/// Checks, in order: the payload type, the signature (key chosen by the
/// signature's key id; see [`crate::dsse`]), then the JSON.
pub fn verify_document<T: DeserializeOwned>(
    env: &Envelope,
    payload_type: &str,
    keys: &KeySet,
) -> Result<SignedDocument<T>, SignedError> {
    if env.payload_type != payload_type {
        return Err(SignedError::PayloadType {
            expected: payload_type.to_string(),
            found: env.payload_type.clone(),
        });
    }
    let verified = env.verify(keys).map_err(|e| match e {
        DsseError::NoSignatures => SignedError::NoSignatures {
            payload_type: payload_type.to_string(),
        },
        DsseError::UnknownKey(key_ids) => SignedError::UnknownKey { key_ids },
        DsseError::BadSignature(key_id) => SignedError::BadSignature { key_id },
        DsseError::MalformedSignature(m) => SignedError::MalformedSignature(m),
        // `verify` does not parse JSON; kept total rather than unreachable.
        DsseError::Json(e) => SignedError::MalformedSignature(e.to_string()),
    })?;
    let signer = verified.key_id;
    let doc = serde_json::from_slice(verified.payload).map_err(|source| SignedError::Payload {
        payload_type: payload_type.to_string(),
        signer,
        source,
    })?;
    Ok(SignedDocument {
        doc,
        signer,
        payload: env.payload.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Curve;
    use serde::Deserialize;

    const TYPE: &str = "application/vnd.airlock.test+json";

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: String,
        n: u64,
    }

    fn doc() -> Doc {
        Doc {
            name: "x".into(),
            n: 3,
        }
    }

    #[test]
    fn a_document_round_trips_on_both_curves_and_names_its_signer() {
        for curve in [Curve::P256, Curve::P384] {
            let key = SigningKey::generate(curve);
            let other = SigningKey::generate(Curve::P256);
            let keys: KeySet = [other.verifying_key(), key.verifying_key()]
                .into_iter()
                .collect();
            let env = sign_document(&doc(), TYPE, &key);
            let env = Envelope::from_json(&env.to_json()).unwrap();
            let got: SignedDocument<Doc> = verify_document(&env, TYPE, &keys).unwrap();
            assert_eq!(got.doc, doc());
            assert_eq!(got.signer, key.key_id());
            assert_eq!(got.payload, br#"{"name":"x","n":3}"#);
        }
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let key = SigningKey::generate(Curve::P256);
        let keys: KeySet = [key.verifying_key()].into_iter().collect();
        let env = sign_document(&doc(), TYPE, &key);

        let err = verify_document::<Doc>(&env, "application/other", &keys).unwrap_err();
        assert!(matches!(&err, SignedError::PayloadType { expected, found }
            if expected == "application/other" && found == TYPE));
        assert!(err.to_string().contains(TYPE), "{err}");

        let stranger = SigningKey::generate(Curve::P384);
        let err = verify_document::<Doc>(&sign_document(&doc(), TYPE, &stranger), TYPE, &keys)
            .unwrap_err();
        assert!(matches!(&err, SignedError::UnknownKey { key_ids }
            if key_ids == &vec![stranger.key_id().hex()]));
        assert!(err.to_string().contains(&stranger.key_id().hex()), "{err}");

        let mut tampered = env.clone();
        tampered.payload = br#"{"name":"x","n":4}"#.to_vec();
        let err = verify_document::<Doc>(&tampered, TYPE, &keys).unwrap_err();
        assert!(matches!(err, SignedError::BadSignature { key_id } if key_id == key.key_id()));

        let unsigned = Envelope {
            signatures: vec![],
            ..env.clone()
        };
        assert!(matches!(
            verify_document::<Doc>(&unsigned, TYPE, &keys),
            Err(SignedError::NoSignatures { .. })
        ));

        let wrong_shape = Envelope::sign(TYPE, br#"{"name":"x","n":3,"extra":1}"#.to_vec(), &key);
        let err = verify_document::<Doc>(&wrong_shape, TYPE, &keys).unwrap_err();
        assert!(matches!(&err, SignedError::Payload { signer, .. } if *signer == key.key_id()));
        assert!(err.to_string().contains("extra"), "{err}");
    }
}
