//! Trust policies and signed gate definitions: which keys may sign which
//! kind of artifact, whether unsigned artifacts are refused, and how the
//! policy itself is replaced.
//!
//! Why: a key set alone says "trusted", not "trusted for what". A key that
//! signs model bundles should not be able to sign a deployment gate (the
//! gate decides what is allowed to ship) nor a new policy (that would let
//! it grant itself everything). The policy is itself a signed, versioned
//! document, so the server can take updates over the network without
//! trusting the network: an update must be signed by a key the *current*
//! policy lists for [`ArtifactKind::Policy`], and its version must be
//! strictly greater, so an old policy (say, one that still trusted a
//! revoked key) cannot be replayed.
//!
//! * [`TrustPolicy`] is written by people as TOML ([`TrustPolicy::from_toml`])
//!   and signed as JSON ([`TrustPolicy::sign`], payload type
//!   [`TRUST_POLICY_PAYLOAD_TYPE`]).
//! * [`accept_policy`] decides whether a signed policy may become the
//!   current one.
//! * [`check_signer`] applies a policy to an artifact's signer (or lack of
//!   one); [`verify_model_for`] verifies an OpenSSF model signature under
//!   the keys a policy allows for a kind.
//! * [`GateDefinition`] is a gate file signed under
//!   [`GATE_DEFINITION_PAYLOAD_TYPE`]; [`accept_gate`] checks it. Gates are
//!   always signed, whatever `require_signed` says.
//!
//! Root keys (the server's bootstrap admin keys) only ever accept the
//! *first* policy. After that only the current policy's `policy` keys can
//! sign an update; a root key that should keep that power must be listed in
//! the policy for `policy`. This keeps the rule "the current policy says
//! who may replace it" with no exception to reason about.

use crate::dsse::Envelope;
use crate::keys::{KeyError, KeyId, KeySet, SigningKey, VerifyingKey};
use crate::model_signing::{self, Bundle, ModelSigningError, Options};
use crate::signed::{SignedDocument, SignedError, show_ids, sign_document, verify_document};
use airlock_core::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

/// The DSSE payload type of a signed trust policy.
pub const TRUST_POLICY_PAYLOAD_TYPE: &str = "application/vnd.airlock.trust-policy+json";

/// The DSSE payload type of a signed gate definition.
pub const GATE_DEFINITION_PAYLOAD_TYPE: &str = "application/vnd.airlock.gate-definition+json";

/// The kinds of artifact a key can be trusted to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// A model plugin (WebAssembly component).
    Plugin,
    /// A model bundle (weights and metadata).
    Bundle,
    /// A gate definition.
    Gate,
    /// A trust policy (the power to replace the policy).
    Policy,
}

impl ArtifactKind {
    /// The lowercase name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Plugin => "plugin",
            ArtifactKind::Bundle => "bundle",
            ArtifactKind::Gate => "gate",
            ArtifactKind::Policy => "policy",
        }
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a policy, a gate definition or an artifact's signer was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file is not TOML of the policy's shape.
    #[error("trust policy is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// A policy's JSON is not of the policy's shape.
    #[error("trust policy is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A listed key's PEM does not load.
    #[error("key {id}: public_key_pem does not load: {source}")]
    KeyPem {
        /// The key id the policy gives.
        id: KeyId,
        /// Why the PEM was refused.
        #[source]
        source: KeyError,
    },
    /// A listed key's id is not the id of its PEM.
    #[error("key id {declared} does not match its public_key_pem, whose key id is {computed}")]
    IdMismatch {
        /// The id the policy gives.
        declared: KeyId,
        /// The id computed from the PEM.
        computed: KeyId,
    },
    /// A key is listed twice.
    #[error("key {id} is listed more than once")]
    DuplicateKey {
        /// The repeated key id.
        id: KeyId,
    },
    /// A key may sign nothing.
    #[error("key {id} has no kinds (list what it may sign)")]
    NoKinds {
        /// The key id.
        id: KeyId,
    },
    /// A kind is listed twice for a key.
    #[error("key {id} lists kind `{kind}` more than once")]
    DuplicateKind {
        /// The key id.
        id: KeyId,
        /// The repeated kind.
        kind: ArtifactKind,
    },
    /// No key may sign a policy, so this policy could never be replaced.
    #[error("trust policy version {version} lists no key for `policy`: it could never be replaced")]
    NoPolicySigner {
        /// The policy's version.
        version: u64,
    },
    /// The envelope, its signature or its payload was refused.
    #[error("{what}: {source}")]
    Signed {
        /// What was being accepted (`trust policy`, `gate definition`).
        what: &'static str,
        /// Why.
        #[source]
        source: SignedError,
    },
    /// The first policy is not signed by a root (bootstrap) key.
    #[error("the first trust policy must be signed by a root key; it is signed by {}", show_ids(.key_ids))]
    NotSignedByRoot {
        /// The key ids the signatures claim.
        key_ids: Vec<String>,
    },
    /// A policy update or a gate is signed by no key the policy allows for
    /// its kind.
    #[error("`{kind}` signed by key(s) {} not allowed for `{kind}` by trust policy version {policy_version}", show_ids(.key_ids))]
    SignerNotAllowed {
        /// The kind being accepted.
        kind: ArtifactKind,
        /// The key ids the signatures claim.
        key_ids: Vec<String>,
        /// The version of the policy applied.
        policy_version: u64,
    },
    /// A policy update does not raise the version: a replay of an older
    /// (or the same) policy.
    #[error(
        "trust policy version {offered} is not newer than the current version {current} (rollback refused)"
    )]
    Rollback {
        /// The current policy's version.
        current: u64,
        /// The offered policy's version.
        offered: u64,
    },
    /// An unsigned artifact of a kind the policy requires signed.
    #[error("unsigned {kind} refused: the trust policy requires `{kind}` to be signed")]
    Unsigned {
        /// The artifact's kind.
        kind: ArtifactKind,
    },
    /// An artifact signed by a key the policy does not allow for its kind.
    #[error("key {key_id} is not allowed to sign `{kind}` by the trust policy")]
    KeyNotAllowed {
        /// The artifact's kind.
        kind: ArtifactKind,
        /// The signer.
        key_id: KeyId,
    },
    /// A model-signing bundle names (by hint) a key the policy does not
    /// allow for the kind.
    #[error(
        "the model signature's key (model_signing hint {hint}) is not allowed to sign `{kind}` by the trust policy"
    )]
    ModelSignerNotAllowed {
        /// The artifact's kind.
        kind: ArtifactKind,
        /// The bundle's `publicKey.hint`.
        hint: String,
    },
    /// A model-signing bundle without a key hint verifies under none of
    /// the keys allowed for the kind.
    #[error("the model signature verifies under none of the {tried} key(s) allowed for `{kind}`")]
    NoAllowedKeyVerifies {
        /// The artifact's kind.
        kind: ArtifactKind,
        /// How many allowed keys were tried.
        tried: usize,
    },
    /// The model signature or the model itself does not verify.
    #[error("model signature (`{kind}`): {source}")]
    ModelSignature {
        /// The artifact's kind.
        kind: ArtifactKind,
        /// What model signing found.
        #[source]
        source: ModelSigningError,
    },
    /// A gate definition's name is not a valid gate name.
    #[error("gate name `{name}` is invalid: expected [a-z0-9][a-z0-9._-]{{0,63}}")]
    GateName {
        /// The name given.
        name: String,
    },
    /// A gate definition's version is 0.
    #[error("gate `{name}` has version 0: versions start at 1")]
    GateVersion {
        /// The gate's name.
        name: String,
    },
}

/// Which artifacts must be signed. Gates and policies are always required
/// signed and have no switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireSigned {
    /// Refuse unsigned model plugins.
    pub plugins: bool,
    /// Refuse unsigned model bundles.
    pub bundles: bool,
}

/// One key the policy trusts, and for what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    /// The key's id (sha256 of its SPKI DER, hex); must match the PEM, so
    /// a reader of the file sees the same id the signatures name.
    pub id: KeyId,
    /// The public key, SPKI PEM (`BEGIN PUBLIC KEY`).
    pub public_key_pem: String,
    /// What the key may sign; non-empty, no repeats.
    pub kinds: Vec<ArtifactKind>,
    /// Free text for people (whose key, why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Which keys may sign which kind of artifact, and whether unsigned
/// artifacts are refused. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicy {
    /// Strictly increasing across updates (see [`accept_policy`]).
    pub version: u64,
    /// The trusted keys.
    pub keys: Vec<TrustedKey>,
    /// Which kinds must be signed.
    pub require_signed: RequireSigned,
}

impl TrustPolicy {
    /// Parses and checks a policy written as TOML (the authors' form).
    pub fn from_toml(text: &str) -> Result<TrustPolicy, PolicyError> {
        let policy: TrustPolicy = toml::from_str(text)?;
        policy.validate()?;
        Ok(policy)
    }

    /// Parses and checks a policy as JSON (the signed form).
    pub fn from_json(json: &[u8]) -> Result<TrustPolicy, PolicyError> {
        let policy: TrustPolicy = serde_json::from_slice(json).map_err(PolicyError::Json)?;
        policy.validate()?;
        Ok(policy)
    }

    /// The policy as compact JSON, the bytes that are signed.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a trust policy always serializes")
    }

    /// Checks what parsing cannot: every id matches its PEM, no key is
    /// listed twice, every key has kinds and none twice, and some key may
    /// sign the next policy.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut seen = BTreeSet::new();
        for k in &self.keys {
            let key = VerifyingKey::from_pem(&k.public_key_pem)
                .map_err(|source| PolicyError::KeyPem { id: k.id, source })?;
            let computed = key.key_id();
            if computed != k.id {
                return Err(PolicyError::IdMismatch {
                    declared: k.id,
                    computed,
                });
            }
            if !seen.insert(k.id) {
                return Err(PolicyError::DuplicateKey { id: k.id });
            }
            if k.kinds.is_empty() {
                return Err(PolicyError::NoKinds { id: k.id });
            }
            let mut kinds = BTreeSet::new();
            for kind in &k.kinds {
                if !kinds.insert(*kind) {
                    return Err(PolicyError::DuplicateKind {
                        id: k.id,
                        kind: *kind,
                    });
                }
            }
        }
        if !self
            .keys
            .iter()
            .any(|k| k.kinds.contains(&ArtifactKind::Policy))
        {
            return Err(PolicyError::NoPolicySigner {
                version: self.version,
            });
        }
        Ok(())
    }

    /// Signs the policy (after checking it) as a DSSE envelope of type
    /// [`TRUST_POLICY_PAYLOAD_TYPE`].
    pub fn sign(&self, key: &SigningKey) -> Result<Envelope, PolicyError> {
        self.validate()?;
        Ok(sign_document(self, TRUST_POLICY_PAYLOAD_TYPE, key))
    }

    /// The keys allowed to sign `kind`. A key whose PEM does not load or
    /// does not match its id is left out (a policy that passed
    /// [`TrustPolicy::validate`] has none).
    pub fn keyset(&self, kind: ArtifactKind) -> KeySet {
        self.keys
            .iter()
            .filter(|k| k.kinds.contains(&kind))
            .filter_map(|k| {
                VerifyingKey::from_pem(&k.public_key_pem)
                    .ok()
                    .filter(|v| v.key_id() == k.id)
            })
            .collect()
    }

    /// Whether the key `id` may sign `kind`.
    pub fn allows(&self, kind: ArtifactKind, id: &KeyId) -> bool {
        self.keys
            .iter()
            .any(|k| k.id == *id && k.kinds.contains(&kind))
    }

    /// Whether an unsigned artifact of `kind` is refused: as configured for
    /// plugins and bundles, always for gates and policies.
    pub fn requires_signed(&self, kind: ArtifactKind) -> bool {
        match kind {
            ArtifactKind::Plugin => self.require_signed.plugins,
            ArtifactKind::Bundle => self.require_signed.bundles,
            ArtifactKind::Gate | ArtifactKind::Policy => true,
        }
    }
}

/// Decides whether the signed policy in `envelope` may replace `current`
/// (or, with no current policy, become the first one), and returns it.
///
/// * The payload type must be [`TRUST_POLICY_PAYLOAD_TYPE`].
/// * The first policy must be signed by a key of `root`.
/// * An update must be signed by a key `current` allows for
///   [`ArtifactKind::Policy`] (root keys no longer count unless listed so),
///   and its version must be strictly greater than `current`'s.
/// * The new policy must pass [`TrustPolicy::validate`].
pub fn accept_policy(
    current: Option<&TrustPolicy>,
    root: &KeySet,
    envelope: &Envelope,
) -> Result<TrustPolicy, PolicyError> {
    let keys = match current {
        None => root.clone(),
        Some(c) => c.keyset(ArtifactKind::Policy),
    };
    let signed: SignedDocument<TrustPolicy> =
        verify_document(envelope, TRUST_POLICY_PAYLOAD_TYPE, &keys).map_err(|e| match e {
            SignedError::UnknownKey { key_ids } => match current {
                None => PolicyError::NotSignedByRoot { key_ids },
                Some(c) => PolicyError::SignerNotAllowed {
                    kind: ArtifactKind::Policy,
                    key_ids,
                    policy_version: c.version,
                },
            },
            source => PolicyError::Signed {
                what: "trust policy",
                source,
            },
        })?;
    let policy = signed.doc;
    policy.validate()?;
    if let Some(c) = current
        && policy.version <= c.version
    {
        return Err(PolicyError::Rollback {
            current: c.version,
            offered: policy.version,
        });
    }
    Ok(policy)
}

/// Applies `policy` to an artifact of `kind` signed by `signer` (`None`:
/// unsigned, or its signature was not verified).
///
/// Unsigned is refused when the policy requires `kind` signed (always for
/// gates and policies); a signer the policy does not allow for `kind` is
/// refused whatever `require_signed` says.
pub fn check_signer(
    policy: &TrustPolicy,
    kind: ArtifactKind,
    signer: Option<&KeyId>,
) -> Result<(), PolicyError> {
    match signer {
        None if policy.requires_signed(kind) => Err(PolicyError::Unsigned { kind }),
        None => Ok(()),
        Some(id) if policy.allows(kind, id) => Ok(()),
        Some(id) => Err(PolicyError::KeyNotAllowed { kind, key_id: *id }),
    }
}

/// Verifies the OpenSSF model signature `sigstore_bundle_json` of the model
/// at `model_path` under the keys `policy` allows for `kind`, and returns
/// the signer's key id.
///
/// A `model_signing` bundle names its key by a hint (sha256 of the PEM
/// text, [`VerifyingKey::model_signing_hint`]), not by airlock's key id:
/// the allowed key with that hint is used, and a hint no allowed key has is
/// refused. A bundle without a hint is tried against each allowed key. The
/// model is verified with default [`Options`] (git paths ignored; the
/// signature file, if it lies in the model, is ignored through the
/// `ignore_paths` the signer recorded).
pub fn verify_model_for(
    policy: &TrustPolicy,
    kind: ArtifactKind,
    model_path: &Path,
    sigstore_bundle_json: &[u8],
) -> Result<KeyId, PolicyError> {
    let model_error = |source| PolicyError::ModelSignature { kind, source };
    let text = std::str::from_utf8(sigstore_bundle_json).map_err(|e| {
        model_error(ModelSigningError::MalformedBundle(format!(
            "not UTF-8: {e}"
        )))
    })?;
    let bundle = Bundle::from_json(text).map_err(model_error)?;
    let allowed = policy.keyset(kind);
    let hint = bundle
        .verification_material
        .public_key
        .as_ref()
        .and_then(|p| p.hint.clone());
    let key = match hint {
        Some(hint) => *allowed
            .iter()
            .map(|(_, k)| k)
            .find(|k| k.model_signing_hint() == hint)
            .ok_or(PolicyError::ModelSignerNotAllowed { kind, hint })?,
        None => *allowed
            .iter()
            .map(|(_, k)| k)
            .find(|k| model_signing::verify_bundle(&bundle, k).is_ok())
            .ok_or(PolicyError::NoAllowedKeyVerifies {
                kind,
                tried: allowed.len(),
            })?,
    };
    model_signing::verify_model(model_path, &bundle, &key, &Options::default())
        .map_err(model_error)?;
    Ok(key.key_id())
}

/// A gate file, named and versioned, to be signed by a gate author.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateDefinition {
    /// The gate's name: `[a-z0-9][a-z0-9._-]{0,63}`.
    pub name: String,
    /// The definition's version, from 1.
    pub version: u64,
    /// The gate file as the gate engine parses it; its sha256 is the gate's
    /// digest.
    pub gate_toml: String,
}

impl GateDefinition {
    /// The gate's digest: sha256 of the gate TOML text, as the gate engine
    /// records it in verdicts.
    pub fn digest(&self) -> Digest {
        Digest::of(self.gate_toml.as_bytes())
    }

    /// Checks the name and version.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !valid_gate_name(&self.name) {
            return Err(PolicyError::GateName {
                name: self.name.clone(),
            });
        }
        if self.version == 0 {
            return Err(PolicyError::GateVersion {
                name: self.name.clone(),
            });
        }
        Ok(())
    }

    /// Signs the definition (after checking it) as a DSSE envelope of type
    /// [`GATE_DEFINITION_PAYLOAD_TYPE`].
    pub fn sign(&self, key: &SigningKey) -> Result<Envelope, PolicyError> {
        self.validate()?;
        Ok(sign_document(self, GATE_DEFINITION_PAYLOAD_TYPE, key))
    }
}

/// `[a-z0-9][a-z0-9._-]{0,63}`.
fn valid_gate_name(name: &str) -> bool {
    let b = name.as_bytes();
    let first = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 64
        && first(b[0])
        && b[1..]
            .iter()
            .all(|&c| first(c) || matches!(c, b'.' | b'_' | b'-'))
}

/// Accepts a signed gate definition: payload type
/// [`GATE_DEFINITION_PAYLOAD_TYPE`], signed by a key `policy` allows for
/// [`ArtifactKind::Gate`], valid name and version.
pub fn accept_gate(
    policy: &TrustPolicy,
    envelope: &Envelope,
) -> Result<SignedDocument<GateDefinition>, PolicyError> {
    let keys = policy.keyset(ArtifactKind::Gate);
    let signed: SignedDocument<GateDefinition> =
        verify_document(envelope, GATE_DEFINITION_PAYLOAD_TYPE, &keys).map_err(|e| match e {
            SignedError::UnknownKey { key_ids } => PolicyError::SignerNotAllowed {
                kind: ArtifactKind::Gate,
                key_ids,
                policy_version: policy.version,
            },
            source => PolicyError::Signed {
                what: "gate definition",
                source,
            },
        })?;
    signed.doc.validate()?;
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Curve;

    fn key_entry(k: &SigningKey, kinds: &[ArtifactKind]) -> TrustedKey {
        TrustedKey {
            id: k.key_id(),
            public_key_pem: k.verifying_key().to_pem(),
            kinds: kinds.to_vec(),
            comment: None,
        }
    }

    #[test]
    fn gate_names_follow_the_pattern() {
        for ok in ["a", "0", "breast-cancer", "a.b_c-d", &"a".repeat(64)] {
            assert!(valid_gate_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "A",
            "a b",
            "é",
            "a/b",
            &"a".repeat(65),
        ] {
            assert!(!valid_gate_name(bad), "{bad}");
        }
    }

    #[test]
    fn kinds_serialize_lowercase() {
        let json = serde_json::to_string(&[
            ArtifactKind::Plugin,
            ArtifactKind::Bundle,
            ArtifactKind::Gate,
            ArtifactKind::Policy,
        ])
        .unwrap();
        assert_eq!(json, r#"["plugin","bundle","gate","policy"]"#);
        assert_eq!(ArtifactKind::Gate.to_string(), "gate");
    }

    #[test]
    fn gates_and_policies_are_always_required_signed() {
        let admin = SigningKey::generate(Curve::P256);
        let policy = TrustPolicy {
            version: 1,
            keys: vec![key_entry(&admin, &[ArtifactKind::Policy])],
            require_signed: RequireSigned {
                plugins: false,
                bundles: false,
            },
        };
        policy.validate().unwrap();
        assert!(!policy.requires_signed(ArtifactKind::Plugin));
        assert!(!policy.requires_signed(ArtifactKind::Bundle));
        assert!(policy.requires_signed(ArtifactKind::Gate));
        assert!(policy.requires_signed(ArtifactKind::Policy));
    }

    #[test]
    fn keyset_leaves_out_keys_whose_pem_does_not_match_their_id() {
        let a = SigningKey::generate(Curve::P256);
        let b = SigningKey::generate(Curve::P256);
        let mut wrong = key_entry(&a, &[ArtifactKind::Policy]);
        wrong.public_key_pem = b.verifying_key().to_pem();
        let policy = TrustPolicy {
            version: 1,
            keys: vec![wrong],
            require_signed: RequireSigned {
                plugins: true,
                bundles: true,
            },
        };
        assert!(policy.keyset(ArtifactKind::Policy).is_empty());
    }
}
