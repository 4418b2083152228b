//! Signatures made by the reference implementation, `model_signing` 1.1.1
//! (`tests/fixtures/model-signing/make.sh`), verify with airlock-attest, and
//! every kind of tampering is refused with the error naming it.

use airlock_attest::dsse::DsseError;
use airlock_attest::keys::VerifyingKey;
use airlock_attest::model_signing::{
    Bundle, FileProblem, ModelSigningError, Options, PREDICATE_TYPE, sign_model, verify_bundle,
    verify_model,
};
use airlock_attest::{Curve, SigningKey};
use airlock_core::digest::Digest;
use std::fs;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model-signing")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/breast-cancer")
}

fn bundle(name: &str) -> Bundle {
    Bundle::read(&fixtures().join(name)).unwrap()
}

fn key(name: &str) -> VerifyingKey {
    VerifyingKey::from_pem(&fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

/// A copy of `examples/breast-cancer/model-v1` in a fresh temporary
/// directory.
fn model_v1_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("model-v1");
    fs::create_dir(&m).unwrap();
    fs::copy(examples().join("model-v1/model.json"), m.join("model.json")).unwrap();
    (dir, m)
}

fn mismatch(r: Result<impl std::fmt::Debug, ModelSigningError>) -> Vec<FileProblem> {
    match r {
        Err(ModelSigningError::ModelMismatch(p)) => p,
        other => panic!("expected a model mismatch, got {other:?}"),
    }
}

#[test]
fn reference_directory_signatures_verify_on_both_curves() {
    for (sig, public, curve) in [
        ("model-v1.p256.sig", "p256.pub", Curve::P256),
        ("model-v1.p384.sig", "p384.pub", Curve::P384),
    ] {
        let k = key(public);
        assert_eq!(k.curve(), curve);
        let v = verify_model(
            &examples().join("model-v1"),
            &bundle(sig),
            &k,
            &Options::default(),
        )
        .unwrap_or_else(|e| panic!("{sig}: {e}"));
        assert_eq!(v.model_name, "model-v1");
        let content = fs::read(examples().join("model-v1/model.json")).unwrap();
        assert_eq!(
            v.files,
            vec![("model.json".to_string(), Digest::of(&content))]
        );
        // A one-file model's subject is the hash of its one file digest.
        assert_eq!(v.subject_digest, Digest::of(&Digest::of(&content).0));
    }
}

#[test]
fn the_reference_single_file_signature_verifies() {
    let file = examples().join("model-v1/model.json");
    let b = bundle("model-json.p256.sig");
    let st = verify_bundle(&b, &key("p256.pub")).unwrap();
    // The reference names a single-file model's only resource `.`.
    assert_eq!(st.subject[0].name, "model.json");
    assert_eq!(st.predicate.resources[0].name, ".");
    verify_model(&file, &b, &key("p256.pub"), &Options::default()).unwrap();
}

#[test]
fn the_reference_tree_model_verifies_and_airlock_computes_the_same_manifest() {
    let tree = fixtures().join("tree-model");
    let b = bundle("tree-model.p384.sig");
    let v = verify_model(&tree, &b, &key("p384.pub"), &Options::default()).unwrap();
    // Path-component order, as Python sorts paths: `a/b` before `a-c`; git
    // paths (`.gitignore`, `.github/`) left out.
    let names: Vec<&str> = v.files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, ["Z", "a/b", "a/deep/c.bin", "a-c", "a.b", "empty"]);
    // airlock's signer lists the same resources in the same order, so the
    // subject digests agree.
    let k = SigningKey::generate(Curve::P384);
    let ours = sign_model(&tree, &k, &Options::default()).unwrap();
    let ours = verify_bundle(&ours, &k.verifying_key()).unwrap();
    let theirs = verify_bundle(&b, &key("p384.pub")).unwrap();
    assert_eq!(ours.predicate.resources, theirs.predicate.resources);
    assert_eq!(ours.subject, theirs.subject);
    assert_eq!(ours.predicate_type, PREDICATE_TYPE);
    let mut a = ours.predicate.serialization.ignore_paths.clone();
    let mut b = theirs.predicate.serialization.ignore_paths.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same default ignore list");
}

#[test]
fn the_bundle_key_hint_is_the_sha256_of_the_reference_pem() {
    for (sig, public) in [
        ("model-v1.p256.sig", "p256.pub"),
        ("model-v1.p384.sig", "p384.pub"),
    ] {
        let text = fs::read_to_string(fixtures().join(public)).unwrap();
        let k = key(public);
        // airlock writes the PEM byte for byte as OpenSSL did.
        assert_eq!(k.to_pem(), text);
        let hint = bundle(sig)
            .verification_material
            .public_key
            .and_then(|p| p.hint)
            .unwrap();
        assert_eq!(k.model_signing_hint(), hint);
        assert_ne!(k.key_id().hex(), hint, "airlock's key id is over the DER");
    }
}

#[test]
fn a_changed_byte_in_model_json_is_named() {
    let (_d, m) = model_v1_copy();
    let path = m.join("model.json");
    let mut bytes = fs::read(&path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let problems = mismatch(verify_model(
        &m,
        &bundle("model-v1.p256.sig"),
        &key("p256.pub"),
        &Options::default(),
    ));
    assert_eq!(problems.len(), 1);
    match &problems[0] {
        FileProblem::Changed {
            name,
            signed,
            found,
        } => {
            assert_eq!(name, "model.json");
            assert_eq!(*found, Digest::of(&bytes));
            assert_ne!(signed, found);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_added_file_is_named_extra() {
    let (_d, m) = model_v1_copy();
    fs::create_dir(m.join("extra")).unwrap();
    fs::write(m.join("extra/payload.bin"), b"not signed").unwrap();
    assert_eq!(
        mismatch(verify_model(
            &m,
            &bundle("model-v1.p384.sig"),
            &key("p384.pub"),
            &Options::default(),
        )),
        vec![FileProblem::Extra {
            name: "extra/payload.bin".into()
        }]
    );
}

#[test]
fn a_removed_file_is_named_missing() {
    let (_d, m) = model_v1_copy();
    fs::remove_file(m.join("model.json")).unwrap();
    assert_eq!(
        mismatch(verify_model(
            &m,
            &bundle("model-v1.p256.sig"),
            &key("p256.pub"),
            &Options::default(),
        )),
        vec![FileProblem::Missing {
            name: "model.json".into()
        }]
    );
}

#[test]
fn git_paths_and_the_signature_file_inside_the_model_are_ignored() {
    let (_d, m) = model_v1_copy();
    fs::create_dir_all(m.join(".git/objects")).unwrap();
    fs::write(m.join(".git/HEAD"), b"ref: refs/heads/main\n").unwrap();
    fs::write(m.join(".gitattributes"), b"*.json text\n").unwrap();
    let sig = m.join("model.sig");
    fs::copy(fixtures().join("model-v1.p256.sig"), &sig).unwrap();
    let opts = Options {
        signature_path: Some(sig.clone()),
        ..Options::default()
    };
    verify_model(&m, &Bundle::read(&sig).unwrap(), &key("p256.pub"), &opts).unwrap();
    // Without naming the signature file, it is an extra file.
    assert_eq!(
        mismatch(verify_model(
            &m,
            &bundle("model-v1.p256.sig"),
            &key("p256.pub"),
            &Options::default()
        )),
        vec![FileProblem::Extra {
            name: "model.sig".into()
        }]
    );
    // Without the default git rules the git paths are still left out: the
    // signer recorded them in the signed predicate's `ignore_paths`, which
    // verification applies, as the reference's does.
    let strict = Options {
        ignore_git_paths: false,
        ..opts
    };
    verify_model(&m, &bundle("model-v1.p256.sig"), &key("p256.pub"), &strict).unwrap();
}

#[test]
fn the_wrong_public_key_is_refused_by_its_hint_and_by_the_signature() {
    let (_d, m) = model_v1_copy();
    let b = bundle("model-v1.p256.sig");
    match verify_model(&m, &b, &key("p384.pub"), &Options::default()) {
        Err(ModelSigningError::WrongKey { bundle, given }) => {
            assert_eq!(given, key("p384.pub").model_signing_hint());
            assert_eq!(bundle, key("p256.pub").model_signing_hint());
        }
        other => panic!("{other:?}"),
    }
    // Without the hint (a pre-1.0 bundle) the signature itself refuses it.
    let mut no_hint = b.clone();
    no_hint.verification_material.public_key = None;
    let stranger = SigningKey::generate(Curve::P256).verifying_key();
    assert!(matches!(
        verify_model(&m, &no_hint, &stranger, &Options::default()),
        Err(ModelSigningError::BadSignature(DsseError::BadSignature(_)))
    ));
    verify_model(&m, &no_hint, &key("p256.pub"), &Options::default()).unwrap();
}

#[test]
fn a_bundle_for_another_model_is_refused() {
    // model-v2-degraded's signature, replayed for model-v1: valid signature,
    // same signer, same file name, other content.
    let problems = mismatch(verify_model(
        &examples().join("model-v1"),
        &bundle("model-v2-degraded.p256.sig"),
        &key("p256.pub"),
        &Options::default(),
    ));
    assert!(matches!(
        problems.as_slice(),
        [FileProblem::Changed { name, .. }] if name == "model.json"
    ));
    // The single-file signature of model.json has the same subject digest as
    // the one-file directory (the digest covers no names), but its resource
    // is `.`: against the directory it is refused.
    let problems = mismatch(verify_model(
        &examples().join("model-v1"),
        &bundle("model-json.p256.sig"),
        &key("p256.pub"),
        &Options::default(),
    ));
    assert_eq!(
        problems,
        vec![
            FileProblem::Missing { name: ".".into() },
            FileProblem::Extra {
                name: "model.json".into()
            }
        ]
    );
}

#[test]
fn a_tampered_payload_or_signature_is_a_bad_signature() {
    let m = examples().join("model-v1");
    let mut b = bundle("model-v1.p256.sig");
    let text = String::from_utf8(b.dsse_envelope.payload.clone()).unwrap();
    b.dsse_envelope.payload = text.replace("model-v1", "model-v9").into_bytes();
    assert!(matches!(
        verify_model(&m, &b, &key("p256.pub"), &Options::default()),
        Err(ModelSigningError::BadSignature(_))
    ));
    let mut b = bundle("model-v1.p384.sig");
    let n = b.dsse_envelope.signatures[0].sig.len();
    b.dsse_envelope.signatures[0].sig[n - 3] ^= 0x40;
    assert!(matches!(
        verify_model(&m, &b, &key("p384.pub"), &Options::default()),
        Err(ModelSigningError::BadSignature(_))
    ));
}

#[test]
fn unsupported_media_payload_and_predicate_types_are_named() {
    let m = examples().join("model-v1");
    let k = key("p256.pub");
    let mut b = bundle("model-v1.p256.sig");
    b.media_type = "application/vnd.dev.sigstore.bundle+json;version=0.2".into();
    assert!(matches!(
        verify_model(&m, &b, &k, &Options::default()),
        Err(ModelSigningError::UnsupportedMediaType(t)) if t.ends_with("0.2")
    ));
    // A re-signed statement with another predicate type (signature valid).
    let signer = SigningKey::generate(Curve::P256);
    let mut b = sign_model(&m, &signer, &Options::default()).unwrap();
    let text = String::from_utf8(b.dsse_envelope.payload.clone()).unwrap();
    b.dsse_envelope.payload = text
        .replace(PREDICATE_TYPE, "https://model_signing/Digests/v0.1")
        .into_bytes();
    b.dsse_envelope.signatures.clear();
    b.dsse_envelope.add_signature(&signer, String::new());
    match verify_model(&m, &b, &signer.verifying_key(), &Options::default()) {
        Err(ModelSigningError::UnsupportedPredicateType(t)) => {
            assert_eq!(t, "https://model_signing/Digests/v0.1")
        }
        other => panic!("{other:?}"),
    }
    let mut b = sign_model(&m, &signer, &Options::default()).unwrap();
    b.dsse_envelope.payload_type = "application/json".into();
    b.dsse_envelope.signatures.clear();
    b.dsse_envelope.add_signature(&signer, String::new());
    assert!(matches!(
        verify_model(&m, &b, &signer.verifying_key(), &Options::default()),
        Err(ModelSigningError::UnsupportedPayloadType(t)) if t == "application/json"
    ));
}

#[test]
fn reference_dsse_envelopes_verify_with_airlocks_dsse_and_key_set() {
    // The reference signs with Python's `cryptography` (DER ECDSA) and an
    // empty key id: airlock's DSSE layer tries each trusted key.
    let keys: airlock_attest::KeySet = [key("p256.pub"), key("p384.pub")].into_iter().collect();
    for (sig, public) in [
        ("model-v1.p256.sig", "p256.pub"),
        ("model-v1.p384.sig", "p384.pub"),
        ("tree-model.p384.sig", "p384.pub"),
        ("model-json.p256.sig", "p256.pub"),
    ] {
        let b = bundle(sig);
        assert_eq!(b.dsse_envelope.signatures[0].keyid, "");
        let v = b.dsse_envelope.verify(&keys).unwrap();
        assert_eq!(v.key_id, key(public).key_id(), "{sig}");
        // The JSON round-trips to the same envelope.
        let again = Bundle::from_json(&b.to_json()).unwrap();
        assert_eq!(again, b);
    }
}
