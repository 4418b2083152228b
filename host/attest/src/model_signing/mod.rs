//! OpenSSF model signing, format v1.0, key-based: signing a model directory
//! (or file) and verifying one, interoperable both ways with the reference
//! implementation, the `model_signing` Python package 1.1.1
//! (sigstore/model-transparency).
//!
//! Why: operators bring models signed by their producers with the OpenSSF
//! tooling, and airlock must check those signatures before it runs
//! anything; and what airlock signs must verify with the same tooling, so
//! that nobody has to trust airlock's own verifier.
//!
//! The format, as 1.1.1 writes it (`model_signing sign key`):
//!
//! * a Sigstore bundle (media type [`BUNDLE_MEDIA_TYPE`]) whose
//!   `verificationMaterial` holds only `publicKey.hint` — the lowercase hex
//!   sha256 of the signer's SPKI PEM text
//!   ([`VerifyingKey::model_signing_hint`]) — and `tlogEntries: []`;
//! * its `dsseEnvelope`, payload type `application/vnd.in-toto+json`, one
//!   signature with an empty `keyid`: DER ECDSA over the DSSE PAE, SHA-256
//!   for P-256 and SHA-384 for P-384;
//! * the payload, an in-toto Statement v1 with predicate type
//!   [`PREDICATE_TYPE`]: one subject named after the model (the last
//!   component of its path) whose sha256 is the hash of the concatenated raw
//!   file digests in resource order; the predicate holds `serialization`
//!   (`method: files`, `hash_type: sha256`, `allow_symlinks`, and the
//!   `ignore_paths` the signer used) and `resources`, one
//!   `{name, algorithm: sha256, digest}` per file ([`walk`] has the naming,
//!   ignoring and ordering rules).
//!
//! Verification ([`verify_model`]) checks, in order: the media type; that
//! the bundle's key hint, when present, names the given key; the payload
//! type; the signature; the statement and predicate types; the
//! serialization; that the subject digest is that of the listed resources
//! (in the order listed, as the reference does); and then that the model on
//! disk has exactly the listed files with exactly the listed digests, after
//! the default ignore rules (git paths, the signature file itself, and the
//! `ignore_paths` recorded in the signed predicate). Any difference is a
//! [`ModelSigningError`] naming it.
//!
//! The subject digest does not cover file names (a one-file directory and
//! the same file alone share it), so a verifier must compare the resources,
//! as this one does, not only the subject.
//!
//! Not supported (each refused with a named error): certificate and
//! Sigstore (keyless) bundles, `shards` serialization, hashes other than
//! sha256, the pre-1.0 predicate `https://model_signing/Digests/v0.1`.

pub mod walk;

use crate::dsse::{DsseError, Envelope};
use crate::intoto::{PAYLOAD_TYPE, STATEMENT_TYPE_V1, Statement, StatementError, Subject};
use crate::keys::{SigningKey, VerifyingKey};
use airlock_core::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use walk::{GIT_PATHS, Ignore, Manifest};

/// The predicate type of an OpenSSF model signature v1.0.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";

/// The media type of the Sigstore bundle `model_signing` writes.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// The file name `model_signing` signs to by default (`--signature`).
pub const DEFAULT_SIGNATURE_FILE: &str = "model.sig";

/// Why a model signature could not be made, read or verified.
#[derive(Debug, thiserror::Error)]
pub enum ModelSigningError {
    /// Reading the model or the signature failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The bundle is not JSON of a Sigstore bundle's shape.
    #[error("not a Sigstore bundle: {0}")]
    MalformedBundle(String),
    /// The bundle's media type is not the one `model_signing` writes.
    #[error("unsupported bundle media type `{0}` (expected {BUNDLE_MEDIA_TYPE})")]
    UnsupportedMediaType(String),
    /// The bundle carries a certificate or other material rather than a
    /// public key hint (a certificate or Sigstore signature).
    #[error("unsupported verification material: {0} (only key-based signatures are supported)")]
    UnsupportedVerificationMaterial(String),
    /// The bundle names another public key than the one given.
    #[error(
        "wrong key: the bundle was signed by the key with hint {bundle}, the given key's hint is {given}"
    )]
    WrongKey {
        /// The bundle's `publicKey.hint`.
        bundle: String,
        /// The given key's hint.
        given: String,
    },
    /// The envelope does not hold exactly one signature.
    #[error("expected exactly one signature, found {0}")]
    SignatureCount(usize),
    /// The DSSE payload is not an in-toto statement in JSON.
    #[error("unsupported payload type `{0}` (expected {PAYLOAD_TYPE})")]
    UnsupportedPayloadType(String),
    /// The signature does not verify under the given key.
    #[error("bad signature: {0}")]
    BadSignature(#[source] DsseError),
    /// The payload is not an in-toto v1 statement.
    #[error("{0}")]
    Statement(#[from] StatementError),
    /// The statement is not a model signature v1.0.
    #[error("unsupported predicate type `{0}` (expected {PREDICATE_TYPE})")]
    UnsupportedPredicateType(String),
    /// The predicate is not a v1.0 model-signature predicate.
    #[error("malformed model-signature predicate: {0}")]
    MalformedPredicate(String),
    /// A serialization this implementation does not verify.
    #[error("unsupported serialization: {0}")]
    UnsupportedSerialization(String),
    /// The subject digest is not the digest of the listed resources.
    #[error(
        "inconsistent manifest: the subject digest is {subject}, the resources hash to {resources}"
    )]
    InconsistentManifest {
        /// The subject's sha256.
        subject: Digest,
        /// What the listed resources hash to.
        resources: Digest,
    },
    /// The model on disk differs from the signed manifest.
    #[error("the model differs from its signature: {}", list(.0))]
    ModelMismatch(Vec<FileProblem>),
    /// The model holds a symbolic link and links are not allowed.
    #[error("`{0}` is a symbolic link (not allowed)")]
    Symlink(String),
    /// The model holds something other than files and directories.
    #[error("`{0}` is not a regular file or directory")]
    SpecialFile(String),
    /// A file name is not UTF-8 and so has no name in a manifest.
    #[error("`{0}`: file name is not UTF-8")]
    NonUtf8Path(String),
}

fn list(problems: &[FileProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One way a model on disk differs from its signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    /// A listed file's content differs.
    #[error("`{name}` changed (signed sha256:{}, found sha256:{})", .signed.hex(), .found.hex())]
    Changed {
        /// The file's name in the manifest.
        name: String,
        /// Its signed digest.
        signed: Digest,
        /// Its digest on disk.
        found: Digest,
    },
    /// A listed file is not there.
    #[error("`{name}` is missing")]
    Missing {
        /// The file's name in the manifest.
        name: String,
    },
    /// A file on disk is not in the manifest.
    #[error("`{name}` is not signed (extra file)")]
    Extra {
        /// The file's name relative to the model.
        name: String,
    },
}

/// A Sigstore bundle as `model_signing` reads and writes it for key-based
/// signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// [`BUNDLE_MEDIA_TYPE`].
    pub media_type: String,
    /// How to find the verifying key.
    pub verification_material: VerificationMaterial,
    /// The signed statement.
    pub dsse_envelope: Envelope,
}

/// A bundle's verification material. Fields this implementation does not
/// use (certificates) are kept so that they can be named when refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    /// The public key's identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    /// Transparency-log entries (none for key-based signatures).
    #[serde(default)]
    pub tlog_entries: Vec<serde_json::Value>,
    /// Any other material (`certificate`, `x509CertificateChain`,
    /// `timestampVerificationData`).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Names the public key that verifies a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyIdentifier {
    /// [`VerifyingKey::model_signing_hint`] of the key; absent in bundles
    /// from before 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Bundle {
    /// The bundle as compact JSON, as the reference writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a bundle always serializes")
    }

    /// Parses a bundle.
    pub fn from_json(json: &str) -> Result<Bundle, ModelSigningError> {
        serde_json::from_str(json).map_err(|e| ModelSigningError::MalformedBundle(e.to_string()))
    }

    /// Reads a bundle file.
    pub fn read(path: &Path) -> Result<Bundle, ModelSigningError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelSigningError::Io(path.display().to_string(), e))?;
        Bundle::from_json(&text)
    }

    /// Writes the bundle to `path`.
    pub fn write(&self, path: &Path) -> Result<(), ModelSigningError> {
        std::fs::write(path, self.to_json())
            .map_err(|e| ModelSigningError::Io(path.display().to_string(), e))
    }
}

/// The v1.0 predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Predicate {
    /// How the model was turned into resources.
    pub serialization: Serialization,
    /// One entry per file.
    pub resources: Vec<Resource>,
}

/// How the model was serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Serialization {
    /// `files` (supported) or `shards`.
    pub method: String,
    /// The per-file hash: `sha256` (supported), `blake2`, `blake3`.
    pub hash_type: String,
    /// Whether symbolic links were followed.
    pub allow_symlinks: bool,
    /// Paths relative to the model that were left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_paths: Vec<String>,
    /// The shard size, for `shards`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_size: Option<u64>,
}

/// One file of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// The file's path relative to the model (`.` for a single-file model).
    pub name: String,
    /// `sha256`.
    pub algorithm: String,
    /// Lowercase hex digest.
    pub digest: String,
}

/// Options shared by signing and verifying, matching the reference CLI's.
#[derive(Debug, Clone)]
pub struct Options {
    /// Leave out `.git`, `.gitattributes`, `.github` and `.gitignore`
    /// (the reference's default, `--ignore-git-paths`).
    pub ignore_git_paths: bool,
    /// Further paths to leave out, relative to the model
    /// (`--ignore-paths`).
    pub ignore_paths: Vec<String>,
    /// Where the signature is (or will be) written; left out of the model
    /// when it lies inside it, as the reference does.
    pub signature_path: Option<PathBuf>,
    /// Follow symbolic links to files (`--allow_symlinks`).
    pub allow_symlinks: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ignore_git_paths: true,
            ignore_paths: Vec::new(),
            signature_path: None,
            allow_symlinks: false,
        }
    }
}

impl Options {
    /// The ignore rules for `model`: git paths, the given paths, and the
    /// signature file when it lies inside the model directory.
    fn ignore(&self, model: &Path) -> Ignore {
        let mut ig = Ignore::default();
        if self.ignore_git_paths {
            GIT_PATHS.iter().for_each(|p| ig.add(p));
        }
        self.ignore_paths.iter().for_each(|p| ig.add(p));
        if let Some(rel) = self
            .signature_path
            .as_deref()
            .and_then(|s| relative_inside(model, s))
        {
            ig.add(&rel);
        }
        ig
    }
}

/// `path` relative to the directory `model`, `/`-separated, when it lies
/// inside it (both resolved as far as they exist).
fn relative_inside(model: &Path, path: &Path) -> Option<String> {
    let root = std::fs::canonicalize(model).ok()?;
    let abs = std::path::absolute(path).ok()?;
    let resolved = match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent).ok()?.join(name),
        _ => abs,
    };
    let rel = resolved.strip_prefix(&root).ok()?;
    let parts: Option<Vec<&str>> = rel.iter().map(|c| c.to_str()).collect();
    Some(parts?.join("/"))
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedModel {
    /// The model name recorded by the signer (informative: renaming a model
    /// does not invalidate its signature).
    pub model_name: String,
    /// The subject digest (over the file digests).
    pub subject_digest: Digest,
    /// Every verified file with its digest, as named in the manifest.
    pub files: Vec<(String, Digest)>,
}

/// Signs the model at `model` (a directory or a single file) with `key`,
/// as `model_signing sign key` would.
pub fn sign_model(
    model: &Path,
    key: &SigningKey,
    options: &Options,
) -> Result<Bundle, ModelSigningError> {
    let ignore = options.ignore(model);
    let manifest = walk::hash_model(model, &ignore, options.allow_symlinks)?;
    let predicate = Predicate {
        serialization: Serialization {
            method: "files".into(),
            hash_type: "sha256".into(),
            allow_symlinks: options.allow_symlinks,
            // For a single file too, as the reference records it.
            ignore_paths: ignore.paths(),
            shard_size: None,
        },
        resources: manifest
            .files
            .iter()
            .map(|(name, d)| Resource {
                name: name.clone(),
                algorithm: "sha256".into(),
                digest: d.hex(),
            })
            .collect(),
    };
    let statement = Statement::new(
        vec![Subject::sha256(
            &manifest.model_name,
            &manifest.subject_digest(),
        )],
        PREDICATE_TYPE,
        predicate,
    );
    // Indented like the reference's protobuf JSON (two spaces).
    let payload = serde_json::to_vec_pretty(&statement).expect("a statement always serializes");
    let mut envelope = Envelope {
        payload,
        payload_type: PAYLOAD_TYPE.into(),
        signatures: Vec::new(),
    };
    envelope.add_signature(key, String::new());
    Ok(Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: VerificationMaterial {
            public_key: Some(PublicKeyIdentifier {
                hint: Some(key.verifying_key().model_signing_hint()),
            }),
            tlog_entries: Vec::new(),
            other: BTreeMap::new(),
        },
        dsse_envelope: envelope,
    })
}

/// Checks the bundle's signature under `key` and returns its statement,
/// without looking at any model.
pub fn verify_bundle(
    bundle: &Bundle,
    key: &VerifyingKey,
) -> Result<Statement<Predicate>, ModelSigningError> {
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return Err(ModelSigningError::UnsupportedMediaType(
            bundle.media_type.clone(),
        ));
    }
    let vm = &bundle.verification_material;
    if let Some(k) = vm.other.keys().next() {
        return Err(ModelSigningError::UnsupportedVerificationMaterial(
            k.clone(),
        ));
    }
    if !vm.tlog_entries.is_empty() {
        return Err(ModelSigningError::UnsupportedVerificationMaterial(
            "tlogEntries".into(),
        ));
    }
    // A hint names the key; without one (bundles from before 1.0) the
    // signature alone decides, as in the reference.
    if let Some(hint) = vm.public_key.as_ref().and_then(|p| p.hint.as_deref()) {
        let given = key.model_signing_hint();
        if hint != given {
            return Err(ModelSigningError::WrongKey {
                bundle: hint.to_string(),
                given,
            });
        }
    }
    let env = &bundle.dsse_envelope;
    if env.signatures.len() != 1 {
        return Err(ModelSigningError::SignatureCount(env.signatures.len()));
    }
    if env.payload_type != PAYLOAD_TYPE {
        return Err(ModelSigningError::UnsupportedPayloadType(
            env.payload_type.clone(),
        ));
    }
    env.verify_with(key)
        .map_err(ModelSigningError::BadSignature)?;

    let statement: Statement = Statement::from_json(&env.payload)?;
    debug_assert_eq!(statement.statement_type, STATEMENT_TYPE_V1);
    if statement.predicate_type != PREDICATE_TYPE {
        return Err(ModelSigningError::UnsupportedPredicateType(
            statement.predicate_type,
        ));
    }
    let predicate: Predicate = serde_json::from_value(statement.predicate)
        .map_err(|e| ModelSigningError::MalformedPredicate(e.to_string()))?;
    Ok(Statement {
        statement_type: statement.statement_type,
        subject: statement.subject,
        predicate_type: statement.predicate_type,
        predicate,
    })
}

/// Verifies the model at `model` (a directory or a single file) against
/// `bundle` and the public key `key`, as `model_signing verify key` would
/// (see the module doc for every check).
pub fn verify_model(
    model: &Path,
    bundle: &Bundle,
    key: &VerifyingKey,
    options: &Options,
) -> Result<VerifiedModel, ModelSigningError> {
    let statement = verify_bundle(bundle, key)?;
    let p = &statement.predicate;
    let s = &p.serialization;
    if s.method != "files" {
        return Err(ModelSigningError::UnsupportedSerialization(format!(
            "method `{}`",
            s.method
        )));
    }
    if s.hash_type != "sha256" {
        return Err(ModelSigningError::UnsupportedSerialization(format!(
            "hash type `{}`",
            s.hash_type
        )));
    }
    let [subject] = statement.subject.as_slice() else {
        return Err(ModelSigningError::MalformedPredicate(format!(
            "expected one subject, found {}",
            statement.subject.len()
        )));
    };
    let subject_digest = subject.sha256_digest().ok_or_else(|| {
        ModelSigningError::MalformedPredicate("the subject has no sha256 digest".into())
    })?;

    // The signed manifest, in the order listed.
    let mut signed: Vec<(String, Digest)> = Vec::with_capacity(p.resources.len());
    for r in &p.resources {
        if r.algorithm != "sha256" {
            return Err(ModelSigningError::UnsupportedSerialization(format!(
                "resource `{}` hashed with `{}`",
                r.name, r.algorithm
            )));
        }
        let mut d = [0u8; 32];
        hex::decode_to_slice(&r.digest, &mut d).map_err(|_| {
            ModelSigningError::MalformedPredicate(format!(
                "resource `{}`: digest is not 64 hex digits",
                r.name
            ))
        })?;
        if signed.iter().any(|(n, _)| *n == r.name) {
            return Err(ModelSigningError::MalformedPredicate(format!(
                "resource `{}` is listed twice",
                r.name
            )));
        }
        signed.push((r.name.clone(), Digest(d)));
    }
    let resources = walk::subject_digest(signed.iter().map(|(_, d)| d));
    if resources != subject_digest {
        return Err(ModelSigningError::InconsistentManifest {
            subject: subject_digest,
            resources,
        });
    }

    // The model on disk, under the default rules plus the signed ignores.
    let mut ignore = options.ignore(model);
    s.ignore_paths.iter().for_each(|i| ignore.add(i));
    let mut local: Manifest = walk::hash_model(model, &ignore, options.allow_symlinks)?;
    // A single-file model is `.` to the reference and its file name to the
    // spec: accept a manifest that uses the latter.
    if let ([(name, _)], [(local_name, _)]) = (signed.as_slice(), local.files.as_mut_slice())
        && local_name == "."
        && *name == local.model_name
    {
        local_name.clone_from(name);
    }

    let found: BTreeMap<&str, &Digest> = local.files.iter().map(|(n, d)| (n.as_str(), d)).collect();
    let listed: BTreeMap<&str, &Digest> = signed.iter().map(|(n, d)| (n.as_str(), d)).collect();
    let mut problems = Vec::new();
    for (name, d) in &signed {
        match found.get(name.as_str()) {
            None => problems.push(FileProblem::Missing { name: name.clone() }),
            Some(f) if *f != d => problems.push(FileProblem::Changed {
                name: name.clone(),
                signed: *d,
                found: **f,
            }),
            Some(_) => {}
        }
    }
    for (name, _) in &local.files {
        if !listed.contains_key(name.as_str()) {
            problems.push(FileProblem::Extra { name: name.clone() });
        }
    }
    if !problems.is_empty() {
        return Err(ModelSigningError::ModelMismatch(problems));
    }
    Ok(VerifiedModel {
        model_name: subject.name.clone(),
        subject_digest,
        files: signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Curve;
    use std::fs;

    fn model() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("my-model");
        fs::create_dir_all(m.join("weights")).unwrap();
        fs::write(m.join("config.json"), b"{}").unwrap();
        fs::write(m.join("weights/0.bin"), b"\x00\x01").unwrap();
        (dir, m)
    }

    #[test]
    fn a_signed_model_verifies_and_the_statement_has_the_reference_shape() {
        let (_d, m) = model();
        let key = SigningKey::generate(Curve::P256);
        let opts = Options {
            signature_path: Some(m.join(DEFAULT_SIGNATURE_FILE)),
            ..Options::default()
        };
        let bundle = sign_model(&m, &key, &opts).unwrap();
        bundle.write(&m.join(DEFAULT_SIGNATURE_FILE)).unwrap();
        // The signature inside the model is not part of it.
        let v = verify_model(&m, &bundle, &key.verifying_key(), &opts).unwrap();
        assert_eq!(v.model_name, "my-model");
        assert_eq!(
            v.files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
            ["config.json", "weights/0.bin"]
        );
        let json: serde_json::Value = serde_json::from_str(&bundle.to_json()).unwrap();
        assert_eq!(json["mediaType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(
            json["verificationMaterial"],
            serde_json::json!({
                "publicKey": {"hint": key.verifying_key().model_signing_hint()},
                "tlogEntries": [],
            })
        );
        assert_eq!(json["dsseEnvelope"]["signatures"][0]["keyid"], "");
        let st: serde_json::Value = serde_json::from_slice(&bundle.dsse_envelope.payload).unwrap();
        assert_eq!(
            st["predicate"]["serialization"]["ignore_paths"],
            serde_json::json!([
                ".git",
                ".gitattributes",
                ".github",
                ".gitignore",
                "model.sig"
            ])
        );
        assert_eq!(st["subject"][0]["digest"]["sha256"], v.subject_digest.hex());
    }

    #[test]
    fn changed_missing_and_extra_files_are_each_named() {
        let (_d, m) = model();
        let key = SigningKey::generate(Curve::P384);
        let bundle = sign_model(&m, &key, &Options::default()).unwrap();
        fs::write(m.join("config.json"), b"{ }").unwrap();
        fs::remove_file(m.join("weights/0.bin")).unwrap();
        fs::write(m.join("weights/1.bin"), b"").unwrap();
        match verify_model(&m, &bundle, &key.verifying_key(), &Options::default()) {
            Err(ModelSigningError::ModelMismatch(p)) => assert_eq!(
                p,
                vec![
                    FileProblem::Changed {
                        name: "config.json".into(),
                        signed: Digest::of(b"{}"),
                        found: Digest::of(b"{ }"),
                    },
                    FileProblem::Missing {
                        name: "weights/0.bin".into()
                    },
                    FileProblem::Extra {
                        name: "weights/1.bin".into()
                    },
                ]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_single_file_model_is_accepted_under_either_name() {
        let (_d, m) = model();
        let file = m.join("config.json");
        let key = SigningKey::generate(Curve::P256);
        let bundle = sign_model(&file, &key, &Options::default()).unwrap();
        let st = verify_bundle(&bundle, &key.verifying_key()).unwrap();
        assert_eq!(st.subject[0].name, "config.json");
        assert_eq!(st.predicate.resources[0].name, ".");
        verify_model(&file, &bundle, &key.verifying_key(), &Options::default()).unwrap();
        // The spec's naming: the resource is the file name.
        let mut spec = st.clone();
        spec.predicate.resources[0].name = "config.json".into();
        let mut env = Envelope {
            payload: serde_json::to_vec(&spec).unwrap(),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![],
        };
        env.add_signature(&key, String::new());
        let spec_bundle = Bundle {
            dsse_envelope: env,
            ..bundle
        };
        let v = verify_model(
            &file,
            &spec_bundle,
            &key.verifying_key(),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(v.files[0].0, "config.json");
    }

    #[test]
    fn a_statement_whose_subject_does_not_match_its_resources_is_inconsistent() {
        let (_d, m) = model();
        let key = SigningKey::generate(Curve::P256);
        let bundle = sign_model(&m, &key, &Options::default()).unwrap();
        let mut st = verify_bundle(&bundle, &key.verifying_key()).unwrap();
        st.predicate.resources.reverse();
        let mut env = Envelope {
            payload: serde_json::to_vec(&st).unwrap(),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![],
        };
        env.add_signature(&key, String::new());
        let b = Bundle {
            dsse_envelope: env,
            ..bundle
        };
        assert!(matches!(
            verify_model(&m, &b, &key.verifying_key(), &Options::default()),
            Err(ModelSigningError::InconsistentManifest { .. })
        ));
    }
}
