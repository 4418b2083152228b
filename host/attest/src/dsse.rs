//! DSSE, the Dead Simple Signing Envelope (secure-systems-lab/dsse,
//! protocol v1.0.0): a payload, its type, and signatures over both.
//!
//! Why DSSE: it is what in-toto attestations, Sigstore bundles and OpenSSF
//! model signing wrap their statements in, and it signs the payload *type*
//! with the payload, so a signature over one kind of document can never be
//! replayed as another. airlock signs gate attestations with it and reads
//! model signatures in it.
//!
//! What is signed is the pre-authentication encoding ([`pae`]):
//!
//! ```text
//! "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
//! ```
//!
//! with `LEN` the byte length as ASCII decimal without leading zeros and
//! `SP` one space. The JSON envelope carries `payload` (base64),
//! `payloadType` and `signatures: [{keyid, sig}]`, `sig` being the base64
//! of a DER ECDSA signature ([`crate::keys`]). airlock writes standard
//! base64 with padding and reads standard or URL-safe, padded or not, as
//! the protocol allows.
//!
//! Verification succeeds when one signature verifies under a trusted key:
//! a signature naming a `keyid` is checked against that key only; one with
//! an empty `keyid` (what `model_signing` writes) against each trusted key.
//! The `keyid` is a hint for choosing the key, never trusted by itself.

use crate::keys::{KeyError, KeyId, KeySet, SigningKey, VerifyingKey};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};

/// Why an envelope did not verify or parse.
#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    /// The envelope carries no signature.
    #[error("the envelope has no signature")]
    NoSignatures,
    /// No signature names a trusted key (and none without a key id
    /// verified under one).
    #[error("no signature is by a trusted key (signature key ids: {0:?})")]
    UnknownKey(Vec<String>),
    /// A signature by a trusted key does not verify: the payload, its type
    /// or the signature was changed.
    #[error("the signature by key {0} does not verify")]
    BadSignature(KeyId),
    /// A signature is not DER ECDSA.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    /// The JSON is not a DSSE envelope.
    #[error("not a DSSE envelope: {0}")]
    Json(#[from] serde_json::Error),
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The payload's bytes (base64 in JSON).
    #[serde(with = "b64")]
    pub payload: Vec<u8>,
    /// What the payload is, e.g. `application/vnd.in-toto+json`.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The signatures over [`pae`]`(payload_type, payload)`.
    pub signatures: Vec<Signature>,
}

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Which key signed: an unauthenticated hint (airlock writes its
    /// [`KeyId`]; may be empty).
    #[serde(default)]
    pub keyid: String,
    /// The DER ECDSA signature (base64 in JSON).
    #[serde(with = "b64")]
    pub sig: Vec<u8>,
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<'a> {
    /// The trusted key whose signature verified.
    pub key_id: KeyId,
    /// The payload type, authenticated.
    pub payload_type: &'a str,
    /// The payload, authenticated.
    pub payload: &'a [u8],
}

/// The DSSE v1 pre-authentication encoding of a payload and its type.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// An envelope over `payload`, signed by `key`, whose signature names
    /// the key by its [`KeyId`].
    pub fn sign(payload_type: &str, payload: Vec<u8>, key: &SigningKey) -> Envelope {
        let mut env = Envelope {
            payload,
            payload_type: payload_type.to_string(),
            signatures: Vec::new(),
        };
        env.add_signature(key, key.key_id().hex());
        env
    }

    /// Adds a signature by `key` with the given `keyid` hint (a co-signer,
    /// or an empty hint as `model_signing` writes).
    pub fn add_signature(&mut self, key: &SigningKey, keyid: String) {
        let sig = key.sign(&pae(&self.payload_type, &self.payload));
        self.signatures.push(Signature { keyid, sig });
    }

    /// Verifies the envelope under any key of `keys` (see the module doc for
    /// how signatures are matched to keys).
    pub fn verify(&self, keys: &KeySet) -> Result<Verified<'_>, DsseError> {
        if self.signatures.is_empty() {
            return Err(DsseError::NoSignatures);
        }
        let message = pae(&self.payload_type, &self.payload);
        let mut first_failure = None;
        for s in &self.signatures {
            let candidates: Vec<(&KeyId, &VerifyingKey)> = if s.keyid.is_empty() {
                keys.iter().collect()
            } else {
                KeyId::parse(&s.keyid)
                    .and_then(|id| keys.iter().find(|(k, _)| **k == id))
                    .into_iter()
                    .collect()
            };
            for (id, key) in candidates {
                match key.verify(&message, &s.sig) {
                    Ok(()) => {
                        return Ok(Verified {
                            key_id: *id,
                            payload_type: &self.payload_type,
                            payload: &self.payload,
                        });
                    }
                    Err(e) => {
                        first_failure.get_or_insert(match e {
                            KeyError::MalformedSignature(m) => DsseError::MalformedSignature(m),
                            _ => DsseError::BadSignature(*id),
                        });
                    }
                }
            }
        }
        Err(first_failure.unwrap_or_else(|| {
            DsseError::UnknownKey(self.signatures.iter().map(|s| s.keyid.clone()).collect())
        }))
    }

    /// Verifies the envelope under the one key `key`, whatever key ids its
    /// signatures claim (a key id is only a hint).
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<Verified<'_>, DsseError> {
        if self.signatures.is_empty() {
            return Err(DsseError::NoSignatures);
        }
        let message = pae(&self.payload_type, &self.payload);
        let id = key.key_id();
        let mut failure = DsseError::BadSignature(id);
        for s in &self.signatures {
            match key.verify(&message, &s.sig) {
                Ok(()) => {
                    return Ok(Verified {
                        key_id: id,
                        payload_type: &self.payload_type,
                        payload: &self.payload,
                    });
                }
                Err(KeyError::MalformedSignature(m)) => failure = DsseError::MalformedSignature(m),
                Err(_) => {}
            }
        }
        Err(failure)
    }

    /// The envelope as compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serializes")
    }

    /// Parses a JSON envelope.
    pub fn from_json(json: &str) -> Result<Envelope, DsseError> {
        Ok(serde_json::from_str(json)?)
    }
}

/// Base64 as DSSE allows it: written standard with padding, read standard
/// or URL-safe, padded or not.
pub(crate) mod b64 {
    use super::*;

    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

    /// Standard base64 with padding.
    pub fn encode(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Standard or URL-safe base64, padded or not.
    pub fn decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
        STANDARD.decode(s).or_else(|_| URL_SAFE.decode(s))
    }

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Curve;

    #[test]
    fn pae_matches_the_dsse_protocol_test_vector() {
        // protocol.md: PAE("http://example.com/HelloWorld", "hello world").
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        // Lengths are bytes, not characters; empty parts keep their spaces.
        assert_eq!(
            pae("t", "é".as_bytes()),
            "DSSEv1 1 t 2 é".as_bytes().to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn an_envelope_verifies_and_any_change_breaks_it() {
        for curve in [Curve::P256, Curve::P384] {
            let key = SigningKey::generate(curve);
            let keys: KeySet = [key.verifying_key()].into_iter().collect();
            let env = Envelope::sign("application/x-test", b"payload".to_vec(), &key);
            let v = env.verify(&keys).unwrap();
            assert_eq!(v.key_id, key.key_id());
            assert_eq!(v.payload, b"payload");

            let mut changed = env.clone();
            changed.payload[0] ^= 1;
            assert!(
                matches!(changed.verify(&keys), Err(DsseError::BadSignature(id)) if id == key.key_id())
            );
            // The type is signed too: the same bytes as another type fail.
            let mut retyped = env.clone();
            retyped.payload_type = "application/x-other".into();
            assert!(matches!(
                retyped.verify(&keys),
                Err(DsseError::BadSignature(_))
            ));
        }
    }

    #[test]
    fn keys_are_chosen_by_key_id_and_unknown_keys_are_named() {
        let old = SigningKey::generate(Curve::P256);
        let new = SigningKey::generate(Curve::P384);
        let stranger = SigningKey::generate(Curve::P256);
        let keys: KeySet = [old.verifying_key(), new.verifying_key()]
            .into_iter()
            .collect();
        for k in [&old, &new] {
            let env = Envelope::sign("t", b"x".to_vec(), k);
            assert_eq!(env.verify(&keys).unwrap().key_id, k.key_id());
        }
        let env = Envelope::sign("t", b"x".to_vec(), &stranger);
        match env.verify(&keys) {
            Err(DsseError::UnknownKey(ids)) => assert_eq!(ids, vec![stranger.key_id().hex()]),
            other => panic!("{other:?}"),
        }
        // A stranger claiming a trusted key's id is a bad signature.
        let mut forged = env.clone();
        forged.signatures[0].keyid = old.key_id().hex();
        assert!(
            matches!(forged.verify(&keys), Err(DsseError::BadSignature(id)) if id == old.key_id())
        );
        // An empty key id is tried against every trusted key.
        let mut anon = Envelope::sign("t", b"x".to_vec(), &new);
        anon.signatures[0].keyid.clear();
        assert_eq!(anon.verify(&keys).unwrap().key_id, new.key_id());
        assert_eq!(
            anon.verify_with(&new.verifying_key()).unwrap().key_id,
            new.key_id()
        );
        assert!(matches!(
            anon.verify_with(&old.verifying_key()),
            Err(DsseError::BadSignature(_))
        ));
        let empty = Envelope {
            signatures: vec![],
            ..anon
        };
        assert!(matches!(empty.verify(&keys), Err(DsseError::NoSignatures)));
    }

    #[test]
    fn json_uses_the_dsse_field_names_and_reads_url_safe_base64() {
        let key = SigningKey::generate(Curve::P256);
        let env = Envelope::sign("t", vec![0xfb, 0xff], &key);
        let v: serde_json::Value = serde_json::from_str(&env.to_json()).unwrap();
        assert_eq!(v["payload"], "+/8=");
        assert_eq!(v["payloadType"], "t");
        assert_eq!(v["signatures"][0]["keyid"], key.key_id().hex());
        let url = env.to_json().replace("+/8=", "-_8");
        assert_eq!(Envelope::from_json(&url).unwrap(), env);
        assert!(
            Envelope::from_json(r#"{"payload":"!!","payloadType":"t","signatures":[]}"#).is_err()
        );
    }
}
