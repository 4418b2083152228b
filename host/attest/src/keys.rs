//! ECDSA keys: P-256 with SHA-256 and P-384 with SHA-384, in PEM, with
//! stable key ids.
//!
//! Why these curves and this encoding: they are what OpenSSF model signing
//! and Sigstore's key-based signing use (`model_signing` accepts P-256,
//! P-384 and P-521; airlock signs with the first two), and what
//! `openssl genpkey` and Python's `cryptography` read and write, so an
//! operator can make, inspect and rotate keys with standard tools.
//!
//! * Private keys load from PKCS#8 PEM (`BEGIN PRIVATE KEY`, what
//!   `openssl genpkey` writes) or SEC1 PEM (`BEGIN EC PRIVATE KEY`), and
//!   save as PKCS#8 PEM.
//! * Public keys load from and save to SPKI PEM (`BEGIN PUBLIC KEY`), LF
//!   line endings, 64 base64 characters a line — byte for byte what
//!   OpenSSL and `cryptography` write.
//! * Signatures are ASN.1 DER `ECDSA-Sig-Value` (what `cryptography`,
//!   OpenSSL, Go's `ecdsa.SignASN1` and so the DSSE and Sigstore reference
//!   implementations emit), over the message hashed with the curve's hash
//!   (SHA-256 for P-256, SHA-384 for P-384). Signing is deterministic
//!   (RFC 6979). Verification accepts DER only.
//! * A [`KeyId`] is the lowercase hex sha256 of the public key's SPKI DER
//!   encoding: it names a key independently of how its PEM is wrapped, and
//!   it is what airlock puts in a DSSE signature's `keyid`.
//!   `model_signing` names a key differently (sha256 of the PEM text, its
//!   bundle's `publicKey.hint`); [`VerifyingKey::model_signing_hint`]
//!   computes that one.
//! * A [`KeySet`] holds the keys a verifier trusts, by key id, so keys can
//!   be rotated: old and new keys verify side by side.

use p256::pkcs8::der::zeroize::Zeroizing;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
    ObjectIdentifier, PrivateKeyInfo, SubjectPublicKeyInfoRef,
};
use rand_core::OsRng;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// The object identifier of an elliptic-curve public key (RFC 5480).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// The named curve secp256r1 (P-256).
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// The named curve secp384r1 (P-384).
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Why a key could not be loaded, or a signature did not verify.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not PEM with the expected label.
    #[error("not a PEM {expected}: {reason}")]
    NotPem {
        /// What was expected (`PRIVATE KEY`, `PUBLIC KEY`, ...).
        expected: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The key is well formed but of an algorithm or curve airlock does not
    /// sign with.
    #[error("unsupported key: {0} (airlock supports ECDSA P-256 and P-384)")]
    Unsupported(String),
    /// The key's encoding is broken.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which kind of key.
        what: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// The signature is not a DER ECDSA signature.
    #[error("signature is not DER-encoded ECDSA: {0}")]
    MalformedSignature(String),
    /// The signature does not verify under the key.
    #[error("signature does not verify under key {0}")]
    BadSignature(KeyId),
}

/// The curves airlock signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (secp256r1), with SHA-256.
    P256,
    /// NIST P-384 (secp384r1), with SHA-384.
    P384,
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        })
    }
}

/// A key id: the sha256 of a public key's SPKI DER encoding, shown as
/// lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 32]);

impl KeyId {
    /// The key id of a public key given as SPKI DER.
    pub fn of_spki_der(der: &[u8]) -> KeyId {
        KeyId(Sha256::digest(der).into())
    }

    /// The lowercase hex form.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits (either case).
    pub fn parse(s: &str) -> Option<KeyId> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(KeyId(out))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.hex())
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KeyId::parse(&s).ok_or_else(|| serde::de::Error::custom("a key id is 64 hex digits"))
    }
}

/// A private ECDSA key.
#[derive(Clone)]
pub enum SigningKey {
    /// P-256 with SHA-256.
    P256(p256::ecdsa::SigningKey),
    /// P-384 with SHA-384.
    P384(p384::ecdsa::SigningKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret: the curve and the public key's id.
        write!(f, "SigningKey({}, {})", self.curve(), self.key_id())
    }
}

/// The named curve of an EC key, from its algorithm identifier.
fn ec_curve(oid: ObjectIdentifier, params: Option<ObjectIdentifier>) -> Result<Curve, KeyError> {
    if oid != ID_EC_PUBLIC_KEY {
        return Err(KeyError::Unsupported(format!("algorithm {oid}")));
    }
    match params {
        Some(c) if c == SECP256R1 => Ok(Curve::P256),
        Some(c) if c == SECP384R1 => Ok(Curve::P384),
        Some(c) => Err(KeyError::Unsupported(format!("EC curve {c}"))),
        None => Err(KeyError::Unsupported("EC key without a named curve".into())),
    }
}

/// The DER body of a PEM document with `label`.
fn pem_body(pem: &str, label: &'static str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let (found, der) =
        p256::pkcs8::der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| KeyError::NotPem {
            expected: label,
            reason: e.to_string(),
        })?;
    if found != label {
        return Err(KeyError::NotPem {
            expected: label,
            reason: format!("found `{found}`"),
        });
    }
    Ok(Zeroizing::new(der))
}

impl SigningKey {
    /// A fresh key on `curve`, from the operating system's randomness.
    pub fn generate(curve: Curve) -> SigningKey {
        match curve {
            Curve::P256 => SigningKey::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            Curve::P384 => SigningKey::P384(p384::ecdsa::SigningKey::random(&mut OsRng)),
        }
    }

    /// Loads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`) or SEC1
    /// (`BEGIN EC PRIVATE KEY`). Encrypted keys are refused.
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let malformed = |e: &dyn fmt::Display| KeyError::Malformed {
            what: "private key",
            reason: e.to_string(),
        };
        if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
            let der = pem_body(pem, "EC PRIVATE KEY")?;
            // Each decoder checks the key's named curve.
            if let Ok(k) = p256::SecretKey::from_sec1_der(&der) {
                return Ok(SigningKey::P256(k.into()));
            }
            return p384::SecretKey::from_sec1_der(&der)
                .map(|k| SigningKey::P384(k.into()))
                .map_err(|_| {
                    KeyError::Unsupported("SEC1 key that is not a valid P-256 or P-384 key".into())
                });
        }
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(KeyError::Unsupported(
                "encrypted private key (decrypt it first, e.g. with `openssl pkey`)".into(),
            ));
        }
        let der = pem_body(pem, "PRIVATE KEY")?;
        let info = PrivateKeyInfo::try_from(der.as_slice()).map_err(|e| malformed(&e))?;
        let params = info.algorithm.parameters_oid().ok();
        match ec_curve(info.algorithm.oid, params)? {
            Curve::P256 => p256::ecdsa::SigningKey::from_pkcs8_der(&der)
                .map(SigningKey::P256)
                .map_err(|e| malformed(&e)),
            Curve::P384 => p384::ecdsa::SigningKey::from_pkcs8_der(&der)
                .map(SigningKey::P384)
                .map_err(|e| malformed(&e)),
        }
    }

    /// The key as PKCS#8 PEM (`BEGIN PRIVATE KEY`), LF line endings; the
    /// text is wiped from memory when dropped.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let r = match self {
            SigningKey::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
            SigningKey::P384(k) => k.to_pkcs8_pem(LineEnding::LF),
        };
        // Encoding a valid in-memory key cannot fail.
        r.expect("encoding a valid EC key as PKCS#8 PEM")
    }

    /// The key's curve.
    pub fn curve(&self) -> Curve {
        match self {
            SigningKey::P256(_) => Curve::P256,
            SigningKey::P384(_) => Curve::P384,
        }
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            SigningKey::P256(k) => VerifyingKey::P256(*k.verifying_key()),
            SigningKey::P384(k) => VerifyingKey::P384(*k.verifying_key()),
        }
    }

    /// The public key's id.
    pub fn key_id(&self) -> KeyId {
        self.verifying_key().key_id()
    }

    /// Signs `message`: ECDSA over its SHA-256 (P-256) or SHA-384 (P-384)
    /// digest, deterministic nonce (RFC 6979), DER-encoded.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        match self {
            SigningKey::P256(k) => {
                let sig: p256::ecdsa::DerSignature = k.sign(message);
                sig.as_bytes().to_vec()
            }
            SigningKey::P384(k) => {
                let sig: p384::ecdsa::DerSignature = k.sign(message);
                sig.as_bytes().to_vec()
            }
        }
    }
}

/// A public ECDSA key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum VerifyingKey {
    /// P-256 with SHA-256.
    P256(p256::ecdsa::VerifyingKey),
    /// P-384 with SHA-384.
    P384(p384::ecdsa::VerifyingKey),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({}, {})", self.curve(), self.key_id())
    }
}

impl VerifyingKey {
    /// Loads an SPKI PEM public key (`BEGIN PUBLIC KEY`).
    pub fn from_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
        let der = pem_body(pem, "PUBLIC KEY")?;
        Self::from_spki_der(&der)
    }

    /// Loads an SPKI DER public key.
    pub fn from_spki_der(der: &[u8]) -> Result<VerifyingKey, KeyError> {
        let malformed = |e: &dyn fmt::Display| KeyError::Malformed {
            what: "public key",
            reason: e.to_string(),
        };
        let spki = SubjectPublicKeyInfoRef::try_from(der).map_err(|e| malformed(&e))?;
        let params = spki.algorithm.parameters_oid().ok();
        match ec_curve(spki.algorithm.oid, params)? {
            Curve::P256 => p256::ecdsa::VerifyingKey::from_public_key_der(der)
                .map(VerifyingKey::P256)
                .map_err(|e| malformed(&e)),
            Curve::P384 => p384::ecdsa::VerifyingKey::from_public_key_der(der)
                .map(VerifyingKey::P384)
                .map_err(|e| malformed(&e)),
        }
    }

    /// The key's curve.
    pub fn curve(&self) -> Curve {
        match self {
            VerifyingKey::P256(_) => Curve::P256,
            VerifyingKey::P384(_) => Curve::P384,
        }
    }

    /// The SPKI DER encoding (uncompressed point, named curve).
    pub fn spki_der(&self) -> Vec<u8> {
        let r = match self {
            VerifyingKey::P256(k) => k.to_public_key_der(),
            VerifyingKey::P384(k) => k.to_public_key_der(),
        };
        r.expect("encoding a valid EC public key as SPKI")
            .as_bytes()
            .to_vec()
    }

    /// The SPKI PEM encoding, exactly as OpenSSL and Python's
    /// `cryptography` write it (LF line endings, 64 columns, final LF).
    pub fn to_pem(&self) -> String {
        let r = match self {
            VerifyingKey::P256(k) => k.to_public_key_pem(LineEnding::LF),
            VerifyingKey::P384(k) => k.to_public_key_pem(LineEnding::LF),
        };
        r.expect("encoding a valid EC public key as SPKI PEM")
    }

    /// airlock's key id: sha256 of the SPKI DER encoding.
    pub fn key_id(&self) -> KeyId {
        KeyId::of_spki_der(&self.spki_der())
    }

    /// The key's name in a `model_signing` bundle (its
    /// `verificationMaterial.publicKey.hint`): lowercase hex sha256 of the
    /// SPKI **PEM text** as `cryptography` writes it — not the same value
    /// as [`VerifyingKey::key_id`].
    pub fn model_signing_hint(&self) -> String {
        hex::encode(Sha256::digest(self.to_pem().as_bytes()))
    }

    /// Checks a DER ECDSA signature over `message`.
    pub fn verify(&self, message: &[u8], signature_der: &[u8]) -> Result<(), KeyError> {
        use p256::ecdsa::signature::Verifier as _;
        // DER that is well formed for the other curve (a P-384 signature
        // checked under a P-256 key) is a wrong signature, not a malformed one.
        let bad = |e: &dyn fmt::Display| {
            if p256::ecdsa::DerSignature::from_bytes(signature_der).is_ok()
                || p384::ecdsa::DerSignature::from_bytes(signature_der).is_ok()
            {
                KeyError::BadSignature(self.key_id())
            } else {
                KeyError::MalformedSignature(e.to_string())
            }
        };
        let ok = match self {
            VerifyingKey::P256(k) => {
                let sig =
                    p256::ecdsa::DerSignature::from_bytes(signature_der).map_err(|e| bad(&e))?;
                k.verify(message, &sig).is_ok()
            }
            VerifyingKey::P384(k) => {
                let sig =
                    p384::ecdsa::DerSignature::from_bytes(signature_der).map_err(|e| bad(&e))?;
                k.verify(message, &sig).is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(KeyError::BadSignature(self.key_id()))
        }
    }
}

/// The public keys a verifier trusts, by key id. Holding several is how
/// keys rotate: a new key is added before it signs, an old one removed
/// once nothing it signed needs verifying.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: BTreeMap<KeyId, VerifyingKey>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// Adds `key` (a no-op if it is already there); returns its id.
    pub fn insert(&mut self, key: VerifyingKey) -> KeyId {
        let id = key.key_id();
        self.keys.insert(id, key);
        id
    }

    /// Removes the key with id `id`, returning it.
    pub fn remove(&mut self, id: &KeyId) -> Option<VerifyingKey> {
        self.keys.remove(id)
    }

    /// The key with id `id`.
    pub fn get(&self, id: &KeyId) -> Option<&VerifyingKey> {
        self.keys.get(id)
    }

    /// Every key with its id, in key-id order.
    pub fn iter(&self) -> impl Iterator<Item = (&KeyId, &VerifyingKey)> {
        self.keys.iter()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl FromIterator<VerifyingKey> for KeySet {
    fn from_iter<I: IntoIterator<Item = VerifyingKey>>(iter: I) -> Self {
        let mut set = KeySet::new();
        for k in iter {
            set.insert(k);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_pem_on_both_curves() {
        for curve in [Curve::P256, Curve::P384] {
            let key = SigningKey::generate(curve);
            let again = SigningKey::from_pem(&key.to_pkcs8_pem()).unwrap();
            assert_eq!(again.curve(), curve);
            assert_eq!(again.key_id(), key.key_id());
            let public = VerifyingKey::from_pem(&key.verifying_key().to_pem()).unwrap();
            assert_eq!(public, key.verifying_key());
        }
    }

    #[test]
    fn signatures_are_der_and_verify_only_for_their_message_and_key() {
        for curve in [Curve::P256, Curve::P384] {
            let key = SigningKey::generate(curve);
            let sig = key.sign(b"message");
            // DER SEQUENCE of two INTEGERs.
            assert_eq!(sig[0], 0x30, "{sig:02x?}");
            assert_eq!(sig[1] as usize, sig.len() - 2);
            key.verifying_key().verify(b"message", &sig).unwrap();
            assert!(matches!(
                key.verifying_key().verify(b"messagE", &sig),
                Err(KeyError::BadSignature(id)) if id == key.key_id()
            ));
            let other = SigningKey::generate(curve).verifying_key();
            assert!(matches!(
                other.verify(b"message", &sig),
                Err(KeyError::BadSignature(_))
            ));
            assert!(matches!(
                key.verifying_key()
                    .verify(b"message", &sig[..sig.len() - 1]),
                Err(KeyError::MalformedSignature(_))
            ));
        }
    }

    #[test]
    fn the_key_id_is_the_sha256_of_the_spki_der() {
        let key = SigningKey::generate(Curve::P256).verifying_key();
        let der = key.spki_der();
        assert_eq!(der.len(), 91, "P-256 SPKI with an uncompressed point");
        assert_eq!(key.key_id().hex(), hex::encode(Sha256::digest(&der)));
        assert_eq!(KeyId::parse(&key.key_id().hex()), Some(key.key_id()));
        let json = serde_json::to_string(&key.key_id()).unwrap();
        assert_eq!(json, format!("\"{}\"", key.key_id().hex()));
    }

    #[test]
    fn openssl_written_keys_load_with_the_right_curve() {
        // `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`,
        // and the same key as SEC1 (`openssl ec`).
        let pkcs8 = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgk6TFrnh8549eKHjH\n\
8FmMunTNk4TVbbTL3spy1O915RmhRANCAASMZOnaztR4RYbKYc4u62yBoVabQsCc\n\
i+UKciTGnnGGcnECBjpmq+lI0PMHfWYlXUjBiwFKDvNCPQjds89zIzC1\n\
-----END PRIVATE KEY-----\n";
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\n\
MHcCAQEEIJOkxa54fOePXih4x/BZjLp0zZOE1W20y97KctTvdeUZoAoGCCqGSM49\n\
AwEHoUQDQgAEjGTp2s7UeEWGymHOLutsgaFWm0LAnIvlCnIkxp5xhnJxAgY6Zqvp\n\
SNDzB31mJV1IwYsBSg7zQj0I3bPPcyMwtQ==\n\
-----END EC PRIVATE KEY-----\n";
        let a = SigningKey::from_pem(pkcs8).unwrap();
        let b = SigningKey::from_pem(sec1).unwrap();
        assert_eq!(a.curve(), Curve::P256);
        assert_eq!(a.key_id(), b.key_id());
    }

    #[test]
    fn other_algorithms_are_refused_as_unsupported() {
        // An Ed25519 key (`openssl genpkey -algorithm ed25519`).
        let ed = "-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEIPSUk2ZiayiG4ROJ8TwKpGH/JyA2OoCfW0NrhL5qx1Io\n\
-----END PRIVATE KEY-----\n";
        assert!(matches!(
            SigningKey::from_pem(ed),
            Err(KeyError::Unsupported(_))
        ));
        let public = SigningKey::generate(Curve::P256).verifying_key().to_pem();
        assert!(matches!(
            SigningKey::from_pem(&public),
            Err(KeyError::NotPem { .. })
        ));
        assert!(matches!(
            VerifyingKey::from_pem("not pem"),
            Err(KeyError::NotPem { .. })
        ));
    }

    #[test]
    fn a_key_set_finds_keys_by_id_across_a_rotation() {
        let old = SigningKey::generate(Curve::P256);
        let new = SigningKey::generate(Curve::P384);
        let mut set: KeySet = [old.verifying_key()].into_iter().collect();
        let id = set.insert(new.verifying_key());
        assert_eq!(id, new.key_id());
        assert_eq!(set.len(), 2);
        assert!(set.get(&old.key_id()).is_some());
        set.remove(&old.key_id());
        assert!(set.get(&old.key_id()).is_none());
        assert!(set.get(&new.key_id()).is_some());
    }
}
