//! The signing commands: keys, OpenSSF model signatures, and signed gate
//! attestations. The formats and checks live in `airlock-attest`; this
//! module reads and writes the files and maps outcomes to exit codes
//! (0 valid, 1 does not verify, 2 unreadable input).

use crate::exit::CliError;
use airlock_attest::gate::{ExpectedSubject, attest_gate, verify_attestation};
use airlock_attest::model_signing::{self, Options};
use airlock_attest::{Curve, Envelope, KeySet, SigningKey, VerifyingKey};
use airlock_core::digest::Digest;
use airlock_core::gate::report::VerdictRecord;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Reads a text file, naming it in the error.
fn read_text(path: &Path, what: &str) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::input(format!("cannot read {what} {}: {e}", path.display())))
}

/// Loads a private key (PKCS#8 or SEC1 PEM).
pub(crate) fn load_signing_key(path: &Path) -> Result<SigningKey, CliError> {
    SigningKey::from_pem(&read_text(path, "private key")?)
        .map_err(|e| CliError::input(format!("private key {}: {e}", path.display())))
}

/// Loads public keys (SPKI PEM) into a key set.
fn load_key_set(paths: &[PathBuf]) -> Result<KeySet, CliError> {
    if paths.is_empty() {
        return Err(CliError::input(
            "no --public-key given: name the key(s) the signature may verify under",
        ));
    }
    let mut keys = KeySet::new();
    for p in paths {
        keys.insert(load_public_key(p)?);
    }
    Ok(keys)
}

fn load_public_key(path: &Path) -> Result<VerifyingKey, CliError> {
    VerifyingKey::from_pem(&read_text(path, "public key")?)
        .map_err(|e| CliError::input(format!("public key {}: {e}", path.display())))
}

/// Writes `text` to a new file `path` (never over an existing one), with
/// `mode` on Unix.
pub(crate) fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options.open(path).map_err(|e| {
        CliError::input(format!(
            "cannot create {}: {e} (airlock never overwrites a key or signature)",
            path.display()
        ))
    })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::input(format!("writing {}: {e}", path.display())))
}

/// `airlock key generate`: a new ECDSA key, private half 0600.
pub(crate) fn key_generate(out_path: &Path, p384: bool) -> Result<(), CliError> {
    let key = SigningKey::generate(if p384 { Curve::P384 } else { Curve::P256 });
    let public_path = public_path_for(out_path);
    if public_path.exists() {
        return Err(CliError::input(format!(
            "{} already exists (airlock never overwrites a key)",
            public_path.display()
        )));
    }
    write_new(out_path, &key.to_pkcs8_pem(), 0o600)?;
    write_new(&public_path, &key.verifying_key().to_pem(), 0o644)?;
    out!(
        "{} key {} (private: {}, public: {})",
        key.curve(),
        key.key_id().hex(),
        out_path.display(),
        public_path.display()
    );
    Ok(())
}

/// `key.pem` → `key.pub`.
fn public_path_for(private: &Path) -> PathBuf {
    private.with_extension("pub")
}

/// The default signature path of `model`: `<model>.sig` beside it.
fn default_signature(model: &Path) -> PathBuf {
    let mut name = model
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "model".into());
    name.push(".sig");
    model.with_file_name(name)
}

/// `airlock sign`: an OpenSSF model-signing signature (a Sigstore bundle
/// holding a DSSE envelope over an in-toto statement), which the
/// `model_signing` tool's `verify key` accepts.
pub(crate) fn sign(model: &Path, key: &Path, signature: Option<PathBuf>) -> Result<(), CliError> {
    let key = load_signing_key(key)?;
    let signature = signature.unwrap_or_else(|| default_signature(model));
    let options = Options {
        signature_path: Some(signature.clone()),
        ..Options::default()
    };
    let bundle = model_signing::sign_model(model, &key, &options)
        .map_err(|e| CliError::input(format!("signing {}: {e}", model.display())))?;
    write_new(&signature, &bundle.to_json(), 0o644)?;
    out!(
        "signed {} with {} key {}: {}",
        model.display(),
        key.curve(),
        key.key_id().hex(),
        signature.display()
    );
    Ok(())
}

/// `airlock verify`: checks a model against its signature and key.
pub(crate) fn verify(
    model: &Path,
    signature: Option<PathBuf>,
    public_key: &Path,
    json: bool,
) -> Result<(), CliError> {
    let signature = signature.unwrap_or_else(|| default_signature(model));
    let key = load_public_key(public_key)?;
    let bundle = model_signing::Bundle::read(&signature)
        .map_err(|e| CliError::input(format!("signature {}: {e}", signature.display())))?;
    let options = Options {
        signature_path: Some(signature.clone()),
        ..Options::default()
    };
    match model_signing::verify_model(model, &bundle, &key, &options) {
        Ok(v) => {
            if json {
                let doc = serde_json::json!({
                    "valid": true,
                    "model_name": v.model_name,
                    "subject_digest": v.subject_digest,
                    "key_id": key.key_id().hex(),
                    "files": v.files.iter().map(|(n, d)| serde_json::json!({"name": n, "digest": d})).collect::<Vec<_>>(),
                });
                out!("{}", crate::terminal::json(&doc));
            } else {
                out!(
                    "valid: {} ({} file(s)) signed by key {}",
                    model.display(),
                    v.files.len(),
                    key.key_id().hex()
                );
            }
            Ok(())
        }
        Err(e) => Err(CliError::Tampered(format!(
            "{} does not verify against {}: {e}",
            model.display(),
            signature.display()
        ))),
    }
}

/// Signs a gate run's verdict about the candidate and writes the DSSE
/// envelope to `path`.
pub(crate) fn write_attestation(
    verdict: &VerdictRecord,
    key: &SigningKey,
    path: &Path,
) -> Result<(), CliError> {
    let c = &verdict.candidate;
    let envelope = attest_gate(
        verdict,
        c.digest,
        c.bundle_digest,
        key,
        key.key_id(),
        SystemTime::now(),
    )
    .map_err(|e| CliError::input(format!("attesting the gate run: {e}")))?;
    write_new(path, &envelope.to_json(), 0o644)
}

/// `airlock attestation verify`; `bundle_caps` are the operator's, under
/// which a `--bundle` is digested.
pub(crate) fn attestation_verify(
    bundle_caps: &airlock_runtime::bundle::BundleCaps,
    file: &Path,
    public_keys: &[PathBuf],
    model: Option<&Path>,
    bundle: Option<&Path>,
    require_pass: bool,
    json: bool,
) -> Result<(), CliError> {
    let keys = load_key_set(public_keys)?;
    let envelope = Envelope::from_json(&read_text(file, "attestation")?)
        .map_err(|e| CliError::input(format!("attestation {}: {e}", file.display())))?;
    let expected = match model {
        Some(m) => {
            let bytes = std::fs::read(m)
                .map_err(|e| CliError::input(format!("cannot read {}: {e}", m.display())))?;
            let bundle = bundle
                .map(|b| {
                    airlock_runtime::bundle::digest_path(b, bundle_caps)
                        .map_err(|e| CliError::input(format!("bundle {}: {e}", b.display())))
                })
                .transpose()?;
            Some(ExpectedSubject {
                model: Digest::of(&bytes),
                bundle,
            })
        }
        None if bundle.is_some() => {
            return Err(CliError::input("--bundle needs --model"));
        }
        None => None,
    };
    let v = verify_attestation(&envelope, &keys, expected.as_ref())
        .map_err(|e| CliError::Tampered(format!("{} does not verify: {e}", file.display())))?;
    let p = v.predicate();
    if json {
        let doc = serde_json::json!({
            "valid": true,
            "passed": v.passed(),
            "gate": p.gate,
            "gate_digest": p.gate_digest,
            "model_digest": v.model_digest,
            "bundle_digest": v.bundle_digest,
            "seed": p.seed,
            "key_id": v.key_id.hex(),
            "time": p.time,
        });
        out!("{}", crate::terminal::json(&doc));
    } else {
        out!(
            "valid attestation by key {}: gate `{}` {} for model {}{} (seed {}, {})",
            v.key_id.hex(),
            p.gate,
            if v.passed() { "PASSED" } else { "FAILED" },
            v.model_digest,
            v.bundle_digest
                .map(|b| format!(" with bundle {b}"))
                .unwrap_or_default(),
            p.seed,
            p.time
        );
    }
    if require_pass && !v.passed() {
        return Err(CliError::Tampered(format!(
            "the attested gate run of `{}` did not pass (--require-pass)",
            p.gate
        )));
    }
    Ok(())
}
