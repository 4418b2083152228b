//! Trust policies and signed gate definitions: every refusal path names
//! what it refused (which key, which kind, which versions), and the happy
//! paths round-trip on both curves.

use airlock_attest::model_signing::{self, Options};
use airlock_attest::policy::{
    ArtifactKind, GATE_DEFINITION_PAYLOAD_TYPE, GateDefinition, PolicyError, RequireSigned,
    TRUST_POLICY_PAYLOAD_TYPE, TrustPolicy, TrustedKey, accept_gate, accept_policy, check_signer,
    verify_model_for,
};
use airlock_attest::signed::{SignedError, sign_document};
use airlock_attest::{Curve, Envelope, KeySet, SigningKey};
use airlock_core::digest::Digest;
use std::path::Path;

use ArtifactKind::{Bundle, Gate, Plugin, Policy};

fn entry(key: &SigningKey, kinds: &[ArtifactKind]) -> TrustedKey {
    TrustedKey {
        id: key.key_id(),
        public_key_pem: key.verifying_key().to_pem(),
        kinds: kinds.to_vec(),
        comment: None,
    }
}

fn policy(version: u64, keys: Vec<TrustedKey>) -> TrustPolicy {
    TrustPolicy {
        version,
        keys,
        require_signed: RequireSigned {
            plugins: true,
            bundles: true,
        },
    }
}

fn root_of(keys: &[&SigningKey]) -> KeySet {
    keys.iter().map(|k| k.verifying_key()).collect()
}

/// A TOML `[[keys]]` table for `key`.
fn toml_key(id: &str, pem: &str, kinds: &str) -> String {
    format!(
        "[[keys]]\nid = \"{id}\"\npublic_key_pem = \"\"\"\n{pem}\"\"\"\nkinds = {kinds}\ncomment = \"test key\"\n\n"
    )
}

fn toml_policy(version: u64, keys: &str) -> String {
    format!("version = {version}\n\n[require_signed]\nplugins = true\nbundles = false\n\n{keys}")
}

/// A gate definition envelope signed by `key`.
fn gate_env(key: &SigningKey) -> Envelope {
    GateDefinition {
        name: "breast-cancer".into(),
        version: 1,
        gate_toml: "name = \"breast-cancer\"\n".into(),
    }
    .sign(key)
    .unwrap()
}

#[test]
fn a_toml_policy_round_trips_through_signing_on_p256_and_p384() {
    for curve in [Curve::P256, Curve::P384] {
        let root = SigningKey::generate(curve);
        let admin = SigningKey::generate(curve);
        let publisher = SigningKey::generate(Curve::P384);
        let text = toml_policy(
            1,
            &(toml_key(
                &admin.key_id().hex(),
                &admin.verifying_key().to_pem(),
                r#"["policy", "gate"]"#,
            ) + &toml_key(
                &publisher.key_id().hex(),
                &publisher.verifying_key().to_pem(),
                r#"["plugin", "bundle"]"#,
            )),
        );
        let p1 = TrustPolicy::from_toml(&text).unwrap();
        assert_eq!(p1.version, 1);
        assert_eq!(p1.keys[0].comment.as_deref(), Some("test key"));
        assert!(p1.require_signed.plugins && !p1.require_signed.bundles);
        assert!(p1.allows(Policy, &admin.key_id()));
        assert!(p1.allows(Gate, &admin.key_id()));
        assert!(!p1.allows(Plugin, &admin.key_id()));
        assert!(p1.allows(Bundle, &publisher.key_id()));
        assert_eq!(p1.keyset(Plugin).len(), 1);
        assert!(p1.keyset(Plugin).get(&publisher.key_id()).is_some());

        // JSON form round-trips exactly.
        assert_eq!(TrustPolicy::from_json(&p1.to_json()).unwrap(), p1);

        // First policy, signed by root, through the wire form.
        let env = Envelope::from_json(&p1.sign(&root).unwrap().to_json()).unwrap();
        assert_eq!(env.payload_type, TRUST_POLICY_PAYLOAD_TYPE);
        let accepted = accept_policy(None, &root_of(&[&root]), &env).unwrap();
        assert_eq!(accepted, p1);

        // An update signed by the current policy's policy key.
        let mut p2 = p1.clone();
        p2.version = 2;
        p2.require_signed.bundles = true;
        let env2 = p2.sign(&admin).unwrap();
        let accepted2 = accept_policy(Some(&accepted), &root_of(&[&root]), &env2).unwrap();
        assert_eq!(accepted2, p2);

        // A gate definition under it.
        let gate = accept_gate(&accepted2, &gate_env(&admin)).unwrap();
        assert_eq!(gate.signer, admin.key_id());
        assert_eq!(gate.doc.name, "breast-cancer");
        assert_eq!(gate.doc.digest(), Digest::of(b"name = \"breast-cancer\"\n"));
    }
}

#[test]
fn the_first_policy_signed_by_a_non_root_key_is_refused() {
    let root = SigningKey::generate(Curve::P256);
    let admin = SigningKey::generate(Curve::P256);
    let p = policy(1, vec![entry(&admin, &[Policy])]);
    // The policy's own policy key is not a root key.
    let err = accept_policy(None, &root_of(&[&root]), &p.sign(&admin).unwrap()).unwrap_err();
    assert!(
        matches!(&err, PolicyError::NotSignedByRoot { key_ids } if key_ids == &vec![admin.key_id().hex()]),
        "{err:?}"
    );
    assert!(err.to_string().contains(&admin.key_id().hex()), "{err}");
}

#[test]
fn an_update_signed_by_a_key_not_allowed_for_policy_is_refused() {
    let root = SigningKey::generate(Curve::P256);
    let admin = SigningKey::generate(Curve::P256);
    let publisher = SigningKey::generate(Curve::P384);
    let current = policy(
        1,
        vec![entry(&admin, &[Policy]), entry(&publisher, &[Bundle, Gate])],
    );
    let mut next = current.clone();
    next.version = 2;
    // Listed, but not for `policy`.
    let err = accept_policy(
        Some(&current),
        &root_of(&[&root]),
        &next.sign(&publisher).unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, PolicyError::SignerNotAllowed { kind: Policy, key_ids, policy_version: 1 }
            if key_ids == &vec![publisher.key_id().hex()]),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&publisher.key_id().hex()), "{msg}");
    assert!(msg.contains("policy"), "{msg}");

    // A root key no longer counts once a policy is in force, unless the
    // policy lists it for `policy`.
    let err = accept_policy(
        Some(&current),
        &root_of(&[&root]),
        &next.sign(&root).unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, PolicyError::SignerNotAllowed { key_ids, .. } if key_ids == &vec![root.key_id().hex()]),
        "{err:?}"
    );
}

#[test]
fn a_replayed_older_or_equal_version_is_refused_as_a_rollback() {
    let root = SigningKey::generate(Curve::P256);
    let admin = SigningKey::generate(Curve::P256);
    let current = policy(5, vec![entry(&admin, &[Policy])]);
    for offered in [4, 5] {
        let mut old = current.clone();
        old.version = offered;
        let err = accept_policy(
            Some(&current),
            &root_of(&[&root]),
            &old.sign(&admin).unwrap(),
        )
        .unwrap_err();
        assert!(
            matches!(err, PolicyError::Rollback { current: 5, offered: o } if o == offered),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("version {offered}")) && msg.contains("current version 5"),
            "{msg}"
        );
    }
    let mut newer = current.clone();
    newer.version = 6;
    assert_eq!(
        accept_policy(
            Some(&current),
            &root_of(&[&root]),
            &newer.sign(&admin).unwrap()
        )
        .unwrap()
        .version,
        6
    );
}

#[test]
fn a_key_id_that_does_not_match_its_pem_is_refused_naming_both() {
    let a = SigningKey::generate(Curve::P256);
    let b = SigningKey::generate(Curve::P384);
    let text = toml_policy(
        1,
        &toml_key(
            &a.key_id().hex(),
            &b.verifying_key().to_pem(),
            r#"["policy"]"#,
        ),
    );
    let err = TrustPolicy::from_toml(&text).unwrap_err();
    assert!(
        matches!(err, PolicyError::IdMismatch { declared, computed }
            if declared == a.key_id() && computed == b.key_id()),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&a.key_id().hex()) && msg.contains(&b.key_id().hex()),
        "{msg}"
    );

    // A PEM that does not load names the key id.
    let text = toml_policy(
        1,
        &toml_key(&a.key_id().hex(), "not a key\n", r#"["policy"]"#),
    );
    let err = TrustPolicy::from_toml(&text).unwrap_err();
    assert!(
        matches!(err, PolicyError::KeyPem { id, .. } if id == a.key_id()),
        "{err:?}"
    );
    assert!(err.to_string().contains(&a.key_id().hex()), "{err}");
}

#[test]
fn a_key_listed_twice_is_refused() {
    let a = SigningKey::generate(Curve::P256);
    let k = toml_key(
        &a.key_id().hex(),
        &a.verifying_key().to_pem(),
        r#"["policy"]"#,
    );
    let err = TrustPolicy::from_toml(&toml_policy(1, &(k.clone() + &k))).unwrap_err();
    assert!(
        matches!(err, PolicyError::DuplicateKey { id } if id == a.key_id()),
        "{err:?}"
    );
    assert!(err.to_string().contains(&a.key_id().hex()), "{err}");
}

#[test]
fn kinds_must_be_present_and_unique() {
    let a = SigningKey::generate(Curve::P256);
    let (id, pem) = (a.key_id().hex(), a.verifying_key().to_pem());
    let err = TrustPolicy::from_toml(&toml_policy(1, &toml_key(&id, &pem, "[]"))).unwrap_err();
    assert!(
        matches!(err, PolicyError::NoKinds { id } if id == a.key_id()),
        "{err:?}"
    );
    assert!(err.to_string().contains(&a.key_id().hex()), "{err}");

    let err = TrustPolicy::from_toml(&toml_policy(
        1,
        &toml_key(&id, &pem, r#"["policy", "gate", "policy"]"#),
    ))
    .unwrap_err();
    assert!(
        matches!(err, PolicyError::DuplicateKind { id, kind: Policy } if id == a.key_id()),
        "{err:?}"
    );

    let err =
        TrustPolicy::from_toml(&toml_policy(1, &toml_key(&id, &pem, r#"["model"]"#))).unwrap_err();
    assert!(matches!(err, PolicyError::Toml(_)), "{err:?}");
}

#[test]
fn a_policy_that_no_key_may_replace_is_refused() {
    let a = SigningKey::generate(Curve::P256);
    let text = toml_policy(
        3,
        &toml_key(
            &a.key_id().hex(),
            &a.verifying_key().to_pem(),
            r#"["plugin", "bundle", "gate"]"#,
        ),
    );
    let err = TrustPolicy::from_toml(&text).unwrap_err();
    assert!(
        matches!(err, PolicyError::NoPolicySigner { version: 3 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("version 3"), "{err}");
    let no_keys = "version = 3\nkeys = []\n[require_signed]\nplugins = true\nbundles = true\n";
    let err = TrustPolicy::from_toml(no_keys).unwrap_err();
    assert!(matches!(err, PolicyError::NoPolicySigner { .. }), "{err:?}");

    // Even correctly signed by root, such a policy is not accepted.
    let root = SigningKey::generate(Curve::P256);
    let p = policy(1, vec![entry(&a, &[Gate])]);
    assert!(p.sign(&root).is_err(), "sign() validates first");
    let env = sign_document(&p, TRUST_POLICY_PAYLOAD_TYPE, &root);
    let err = accept_policy(None, &root_of(&[&root]), &env).unwrap_err();
    assert!(
        matches!(err, PolicyError::NoPolicySigner { version: 1 }),
        "{err:?}"
    );
}

#[test]
fn unknown_fields_are_refused() {
    let a = SigningKey::generate(Curve::P256);
    let k = toml_key(
        &a.key_id().hex(),
        &a.verifying_key().to_pem(),
        r#"["policy"]"#,
    );
    let text = toml_policy(1, &k).replace("bundles = false", "bundles = false\ngates = false");
    assert!(matches!(
        TrustPolicy::from_toml(&text),
        Err(PolicyError::Toml(_))
    ));
    let text = toml_policy(1, &k.replace("comment", "owner"));
    assert!(matches!(
        TrustPolicy::from_toml(&text),
        Err(PolicyError::Toml(_))
    ));
    let text = format!("trust_everyone = true\n{}", toml_policy(1, &k));
    assert!(matches!(
        TrustPolicy::from_toml(&text),
        Err(PolicyError::Toml(_))
    ));
}

#[test]
fn a_gate_definition_is_not_a_policy_and_a_policy_is_not_a_gate() {
    let root = SigningKey::generate(Curve::P256);
    let admin = SigningKey::generate(Curve::P256);
    let current = policy(1, vec![entry(&admin, &[Policy, Gate])]);

    // A gate envelope presented as a policy.
    let err = accept_policy(Some(&current), &root_of(&[&root]), &gate_env(&admin)).unwrap_err();
    assert!(
        matches!(&err, PolicyError::Signed { source: SignedError::PayloadType { expected, found }, .. }
            if expected == TRUST_POLICY_PAYLOAD_TYPE && found == GATE_DEFINITION_PAYLOAD_TYPE),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(GATE_DEFINITION_PAYLOAD_TYPE),
        "{err}"
    );

    // A policy envelope presented as a gate.
    let mut next = current.clone();
    next.version = 2;
    let policy_env = next.sign(&admin).unwrap();
    let err = accept_gate(&current, &policy_env).unwrap_err();
    assert!(
        matches!(&err, PolicyError::Signed { source: SignedError::PayloadType { expected, found }, .. }
            if expected == GATE_DEFINITION_PAYLOAD_TYPE && found == TRUST_POLICY_PAYLOAD_TYPE),
        "{err:?}"
    );

    // Relabelling the envelope breaks the signature (the type is signed).
    let mut relabelled = gate_env(&admin);
    relabelled.payload_type = TRUST_POLICY_PAYLOAD_TYPE.into();
    let err = accept_policy(Some(&current), &root_of(&[&root]), &relabelled).unwrap_err();
    assert!(
        matches!(err, PolicyError::Signed { source: SignedError::BadSignature { key_id }, .. }
            if key_id == admin.key_id()),
        "{err:?}"
    );
}

#[test]
fn a_tampered_policy_payload_is_refused() {
    let root = SigningKey::generate(Curve::P256);
    let admin = SigningKey::generate(Curve::P256);
    let attacker = SigningKey::generate(Curve::P256);
    let p = policy(1, vec![entry(&admin, &[Policy])]);
    let mut env = p.sign(&root).unwrap();
    // Swap the admin key for the attacker's in the signed bytes.
    let text = String::from_utf8(env.payload.clone()).unwrap();
    let forged = policy(1, vec![entry(&attacker, &[Policy])]);
    assert_ne!(text.as_bytes(), forged.to_json().as_slice());
    env.payload = forged.to_json();
    let err = accept_policy(None, &root_of(&[&root]), &env).unwrap_err();
    assert!(
        matches!(&err, PolicyError::Signed { source: SignedError::BadSignature { key_id }, .. }
            if *key_id == root.key_id()),
        "{err:?}"
    );
    assert!(err.to_string().contains(&root.key_id().hex()), "{err}");
}

#[test]
fn unsigned_plugins_are_refused_only_when_required_and_gates_always() {
    let admin = SigningKey::generate(Curve::P256);
    let mut p = policy(1, vec![entry(&admin, &[Policy])]);
    let err = check_signer(&p, Plugin, None).unwrap_err();
    assert!(
        matches!(err, PolicyError::Unsigned { kind: Plugin }),
        "{err:?}"
    );
    assert!(err.to_string().contains("plugin"), "{err}");

    p.require_signed = RequireSigned {
        plugins: false,
        bundles: false,
    };
    check_signer(&p, Plugin, None).unwrap();
    check_signer(&p, Bundle, None).unwrap();
    let err = check_signer(&p, Gate, None).unwrap_err();
    assert!(
        matches!(err, PolicyError::Unsigned { kind: Gate }),
        "{err:?}"
    );
    assert!(matches!(
        check_signer(&p, Policy, None),
        Err(PolicyError::Unsigned { kind: Policy })
    ));
}

#[test]
fn a_bundle_key_cannot_sign_a_plugin() {
    let admin = SigningKey::generate(Curve::P256);
    let publisher = SigningKey::generate(Curve::P384);
    let mut p = policy(
        1,
        vec![entry(&admin, &[Policy]), entry(&publisher, &[Bundle])],
    );
    check_signer(&p, Bundle, Some(&publisher.key_id())).unwrap();
    let err = check_signer(&p, Plugin, Some(&publisher.key_id())).unwrap_err();
    assert!(
        matches!(err, PolicyError::KeyNotAllowed { kind: Plugin, key_id } if key_id == publisher.key_id()),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&publisher.key_id().hex()) && msg.contains("plugin"),
        "{msg}"
    );
    // Not required signed does not make a wrong signer acceptable.
    p.require_signed.plugins = false;
    assert!(matches!(
        check_signer(&p, Plugin, Some(&publisher.key_id())),
        Err(PolicyError::KeyNotAllowed { .. })
    ));
}

/// Writes a small model directory and returns its path.
fn write_model(dir: &Path) -> std::path::PathBuf {
    let model = dir.join("model-v1");
    std::fs::create_dir_all(model.join("weights")).unwrap();
    std::fs::write(model.join("model.json"), b"{\"trees\": 3}").unwrap();
    std::fs::write(model.join("weights/w.bin"), [1u8, 2, 3, 4]).unwrap();
    model
}

#[test]
fn a_model_signed_by_an_allowed_key_is_accepted_and_an_unlisted_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = write_model(tmp.path());
    let admin = SigningKey::generate(Curve::P256);
    let publisher = SigningKey::generate(Curve::P384);
    let stranger = SigningKey::generate(Curve::P256);
    let p = policy(
        1,
        vec![entry(&admin, &[Policy]), entry(&publisher, &[Bundle])],
    );

    let sign = |key: &SigningKey| {
        model_signing::sign_model(&model, key, &Options::default())
            .unwrap()
            .to_json()
    };
    let good = sign(&publisher);
    assert_eq!(
        verify_model_for(&p, Bundle, &model, good.as_bytes()).unwrap(),
        publisher.key_id()
    );

    // The same signature for a kind the key may not sign.
    let err = verify_model_for(&p, Plugin, &model, good.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, PolicyError::ModelSignerNotAllowed { kind: Plugin, hint }
            if *hint == publisher.verifying_key().model_signing_hint()),
        "{err:?}"
    );

    // An unlisted key.
    let bad = sign(&stranger);
    let err = verify_model_for(&p, Bundle, &model, bad.as_bytes()).unwrap_err();
    let hint = stranger.verifying_key().model_signing_hint();
    assert!(
        matches!(&err, PolicyError::ModelSignerNotAllowed { kind: Bundle, hint: h } if *h == hint),
        "{err:?}"
    );
    assert!(err.to_string().contains(&hint), "{err}");

    // Without a hint, each allowed key is tried.
    let mut anon = model_signing::Bundle::from_json(&good).unwrap();
    anon.verification_material.public_key = None;
    assert_eq!(
        verify_model_for(&p, Bundle, &model, anon.to_json().as_bytes()).unwrap(),
        publisher.key_id()
    );
    let mut anon_bad = model_signing::Bundle::from_json(&bad).unwrap();
    anon_bad.verification_material.public_key = None;
    let err = verify_model_for(&p, Bundle, &model, anon_bad.to_json().as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            PolicyError::NoAllowedKeyVerifies {
                kind: Bundle,
                tried: 1
            }
        ),
        "{err:?}"
    );

    // A changed model fails under the right key, naming the file.
    std::fs::write(model.join("weights/w.bin"), [9u8]).unwrap();
    let err = verify_model_for(&p, Bundle, &model, good.as_bytes()).unwrap_err();
    assert!(
        matches!(
            &err,
            PolicyError::ModelSignature {
                kind: Bundle,
                source: model_signing::ModelSigningError::ModelMismatch(_)
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("weights/w.bin"), "{err}");

    // Not a bundle at all.
    assert!(matches!(
        verify_model_for(&p, Bundle, &model, b"{}"),
        Err(PolicyError::ModelSignature { .. })
    ));
}

#[test]
fn a_gate_signed_by_a_bundle_only_key_is_refused() {
    let admin = SigningKey::generate(Curve::P256);
    let publisher = SigningKey::generate(Curve::P384);
    let p = policy(
        4,
        vec![entry(&admin, &[Policy, Gate]), entry(&publisher, &[Bundle])],
    );
    let err = accept_gate(&p, &gate_env(&publisher)).unwrap_err();
    assert!(
        matches!(&err, PolicyError::SignerNotAllowed { kind: Gate, key_ids, policy_version: 4 }
            if key_ids == &vec![publisher.key_id().hex()]),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&publisher.key_id().hex()) && msg.contains("gate"),
        "{msg}"
    );
    accept_gate(&p, &gate_env(&admin)).unwrap();
}

#[test]
fn a_gate_definition_needs_a_valid_name_and_a_version_from_1() {
    let admin = SigningKey::generate(Curve::P256);
    let p = policy(1, vec![entry(&admin, &[Policy, Gate])]);
    let def = |name: &str, version| GateDefinition {
        name: name.into(),
        version,
        gate_toml: String::new(),
    };
    for name in ["", "Breast", "-x", "a/b", &"a".repeat(65)] {
        assert!(def(name, 1).sign(&admin).is_err(), "sign() validates first");
        let env = sign_document(&def(name, 1), GATE_DEFINITION_PAYLOAD_TYPE, &admin);
        let err = accept_gate(&p, &env).unwrap_err();
        assert!(
            matches!(&err, PolicyError::GateName { name: n } if n == name),
            "{err:?}"
        );
    }
    let env = sign_document(&def("g", 0), GATE_DEFINITION_PAYLOAD_TYPE, &admin);
    let err = accept_gate(&p, &env).unwrap_err();
    assert!(
        matches!(&err, PolicyError::GateVersion { name } if name == "g"),
        "{err:?}"
    );
    assert!(err.to_string().contains("version 0"), "{err}");

    // A tampered gate text fails the signature.
    let mut env = gate_env(&admin);
    let mut doc: serde_json::Value = serde_json::from_slice(&env.payload).unwrap();
    doc["gate_toml"] = "name = \"lenient\"\n".into();
    env.payload = serde_json::to_vec(&doc).unwrap();
    assert!(matches!(
        accept_gate(&p, &env),
        Err(PolicyError::Signed {
            source: SignedError::BadSignature { .. },
            ..
        })
    ));
}
