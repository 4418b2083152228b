//! Signed gate attestations: they verify for exactly the digests they name,
//! under rotated keys, and refuse replay, tampering and strangers.

use airlock_attest::dsse::DsseError;
use airlock_attest::gate::{
    AttestError, ExpectedSubject, GateResult, PREDICATE_TYPE, attest_gate, verify_attestation,
};
use airlock_attest::intoto::{PAYLOAD_TYPE, Statement, Subject};
use airlock_attest::{Curve, Envelope, KeySet, SigningKey};
use airlock_core::FailureKind;
use airlock_core::digest::Digest;
use airlock_core::gate::policy::{ProbeFailure, StepStatus, decide};
use airlock_core::gate::report::{Metrics, ModelReport, StepReport, VerdictRecord};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn step(name: &str, advisory: bool, status: StepStatus) -> StepReport {
    StepReport {
        name: name.into(),
        plugin_digest: Digest::of(format!("{name}.wasm").as_bytes()),
        validator: None,
        advisory,
        config: serde_json::json!({"threshold": 0.9}),
        label: Some("target".into()),
        dataset_digest: Digest::of(b"eval.csv"),
        reference_digest: Some(Digest::of(b"train.csv")),
        status,
        blame: None,
        findings: vec![],
        metrics: Metrics(vec![("accuracy".into(), 0.97)]),
        fuel_used: 5000,
        candidate_fuel_used: 100,
        error: None,
        probe_failures: vec![],
        probe_failures_unrecorded: 0,
        allowed_probe_failures: vec![],
    }
}

/// A verdict about the model `model` with bundle `bundle`.
fn verdict(model: &str, bundle: &str, steps: Vec<StepReport>) -> VerdictRecord {
    let decision = decide(
        true,
        steps
            .iter()
            .map(|s| (s.name.as_str(), s.advisory, s.status)),
    );
    VerdictRecord {
        gate: "breast-cancer".into(),
        gate_digest: Digest::of(b"gate.toml"),
        passed: decision.passed,
        decision,
        seed: 7,
        candidate: ModelReport {
            digest: Digest::of(model.as_bytes()),
            bundle_digest: Some(Digest::of(bundle.as_bytes())),
            snapshot_digest: None,
            name: "xgboost".into(),
            version: "1".into(),
        },
        candidate_failure: None,
        baseline: None,
        steps,
        model_fuel_used: 1,
        check_fuel_used: 2,
        total_fuel_used: 5003,
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_000_000)
}

fn expected(v: &VerdictRecord) -> ExpectedSubject {
    ExpectedSubject {
        model: v.candidate.digest,
        bundle: v.candidate.bundle_digest,
    }
}

fn sign(v: &VerdictRecord, key: &SigningKey) -> Envelope {
    attest_gate(
        v,
        v.candidate.digest,
        v.candidate.bundle_digest,
        key,
        key.key_id(),
        now(),
    )
    .unwrap()
}

#[test]
fn a_passing_attestation_verifies_for_exactly_its_digests() {
    let key = SigningKey::generate(Curve::P384);
    let v = verdict(
        "model-v1.wasm",
        "model-v1/",
        vec![
            step("performance", false, StepStatus::Pass),
            step("drift", true, StepStatus::Fail),
        ],
    );
    let env = sign(&v, &key);
    // Through JSON, as it would be stored and shipped.
    let env = Envelope::from_json(&env.to_json()).unwrap();
    let keys: KeySet = [key.verifying_key()].into_iter().collect();
    let ok = verify_attestation(&env, &keys, Some(&expected(&v))).unwrap();
    assert!(ok.passed());
    assert_eq!(ok.model_digest, v.candidate.digest);
    assert_eq!(ok.bundle_digest, v.candidate.bundle_digest);
    let p = ok.predicate();
    assert_eq!(p.result, GateResult::Passed);
    assert_eq!(p.passed_tests, ["performance"]);
    assert_eq!(p.warned_tests, ["drift"]);
    assert!(p.failed_tests.is_empty());
    assert_eq!(p.gate_digest, v.gate_digest);
    assert_eq!(p.seed, 7);
    assert_eq!(p.steps[1].validator_digest, Digest::of(b"drift.wasm"));
    assert_eq!(p.steps[0].metrics["accuracy"], 0.97);
    assert_eq!(p.fuel.total, 5003);
    assert_eq!(p.host_key_id, key.key_id());
    assert_eq!(p.signer_key_id, key.key_id());
    assert_eq!(p.time, "2026-05-28T20:26:40.000Z");
    assert_eq!(
        p.verdict_digest,
        Digest::of(&serde_json::to_vec(&v).unwrap())
    );
    // Without expected digests it still verifies (for inspection).
    assert!(verify_attestation(&env, &keys, None).unwrap().passed());
}

#[test]
fn a_failing_verdict_is_attested_as_failed() {
    let key = SigningKey::generate(Curve::P256);
    let v = verdict(
        "model-v2.wasm",
        "model-v2/",
        vec![step("performance", false, StepStatus::Fail)],
    );
    let keys: KeySet = [key.verifying_key()].into_iter().collect();
    let ok = verify_attestation(&sign(&v, &key), &keys, Some(&expected(&v))).unwrap();
    assert!(!ok.passed());
    assert_eq!(ok.predicate().result, GateResult::Failed);
    assert_eq!(ok.predicate().failed_tests, ["performance"]);
}

#[test]
fn an_attestation_replayed_for_another_model_or_bundle_is_refused() {
    let key = SigningKey::generate(Curve::P256);
    let keys: KeySet = [key.verifying_key()].into_iter().collect();
    let good = verdict(
        "model-v1.wasm",
        "model-v1/",
        vec![step("p", false, StepStatus::Pass)],
    );
    let env = sign(&good, &key);
    // Promoting model v2 with v1's passing attestation.
    let v2 = ExpectedSubject {
        model: Digest::of(b"model-v2.wasm"),
        bundle: good.candidate.bundle_digest,
    };
    match verify_attestation(&env, &keys, Some(&v2)) {
        Err(AttestError::SubjectMismatch {
            role,
            expected,
            found,
            ..
        }) => {
            assert_eq!(role, "model");
            assert_eq!(expected, Some(v2.model));
            assert_eq!(found, Some(good.candidate.digest));
        }
        other => panic!("{other:?}"),
    }
    // The same plugin with other weights.
    let other_bundle = ExpectedSubject {
        model: good.candidate.digest,
        bundle: Some(Digest::of(b"model-v2/")),
    };
    assert!(matches!(
        verify_attestation(&env, &keys, Some(&other_bundle)),
        Err(AttestError::SubjectMismatch { role: "bundle", .. })
    ));
    let no_bundle = ExpectedSubject {
        model: good.candidate.digest,
        bundle: None,
    };
    assert!(matches!(
        verify_attestation(&env, &keys, Some(&no_bundle)),
        Err(AttestError::SubjectMismatch { role: "bundle", .. })
    ));
}

#[test]
fn keys_rotate_and_verification_picks_the_key_by_id() {
    let old = SigningKey::generate(Curve::P256);
    let new = SigningKey::generate(Curve::P384);
    let v = verdict("m.wasm", "b/", vec![step("p", false, StepStatus::Pass)]);
    let by_old = sign(&v, &old);
    let by_new = sign(&v, &new);
    let mut keys: KeySet = [old.verifying_key(), new.verifying_key()]
        .into_iter()
        .collect();
    assert_eq!(
        verify_attestation(&by_old, &keys, Some(&expected(&v)))
            .unwrap()
            .key_id,
        old.key_id()
    );
    assert_eq!(
        verify_attestation(&by_new, &keys, Some(&expected(&v)))
            .unwrap()
            .key_id,
        new.key_id()
    );
    // The old key retired: what it signed no longer verifies.
    keys.remove(&old.key_id());
    assert!(matches!(
        verify_attestation(&by_old, &keys, None),
        Err(AttestError::Signature(DsseError::UnknownKey(ids))) if ids == [old.key_id().hex()]
    ));
    verify_attestation(&by_new, &keys, None).unwrap();
}

#[test]
fn a_tampered_or_untrusted_attestation_is_refused() {
    let key = SigningKey::generate(Curve::P256);
    let keys: KeySet = [key.verifying_key()].into_iter().collect();
    let v = verdict("m.wasm", "b/", vec![step("p", false, StepStatus::Fail)]);
    let env = sign(&v, &key);
    // FAILED rewritten to PASSED.
    let mut forged = env.clone();
    let text = String::from_utf8(forged.payload.clone()).unwrap();
    assert!(text.contains("\"FAILED\""));
    forged.payload = text.replace("\"FAILED\"", "\"PASSED\"").into_bytes();
    assert!(matches!(
        verify_attestation(&forged, &keys, None),
        Err(AttestError::Signature(DsseError::BadSignature(id))) if id == key.key_id()
    ));
    // Signed by a key nobody trusts.
    let stranger = SigningKey::generate(Curve::P256);
    assert!(matches!(
        verify_attestation(&sign(&v, &stranger), &keys, None),
        Err(AttestError::Signature(DsseError::UnknownKey(_)))
    ));
}

#[test]
fn other_signed_statements_are_not_gate_attestations() {
    let key = SigningKey::generate(Curve::P256);
    let keys: KeySet = [key.verifying_key()].into_iter().collect();
    let st = Statement::new(
        vec![Subject::sha256("model", &Digest::of(b"m"))],
        "https://model_signing/signature/v1.0",
        serde_json::json!({}),
    );
    let env = Envelope::sign(PAYLOAD_TYPE, st.to_json(), &key);
    assert!(matches!(
        verify_attestation(&env, &keys, None),
        Err(AttestError::UnsupportedPredicateType(t)) if t == "https://model_signing/signature/v1.0"
    ));
    // A gate statement under another payload type.
    let v = verdict("m", "b", vec![step("p", false, StepStatus::Pass)]);
    let good = sign(&v, &key);
    let retyped = Envelope::sign("application/json", good.payload.clone(), &key);
    assert!(matches!(
        verify_attestation(&retyped, &keys, None),
        Err(AttestError::UnsupportedPayloadType(_))
    ));
    // The predicate type constant is what is on the wire.
    let wire: serde_json::Value = serde_json::from_slice(&good.payload).unwrap();
    assert_eq!(wire["predicateType"], PREDICATE_TYPE);
}

#[test]
fn a_statement_whose_subjects_disagree_with_its_predicate_is_malformed() {
    let key = SigningKey::generate(Curve::P256);
    let keys: KeySet = [key.verifying_key()].into_iter().collect();
    let v = verdict("m", "b", vec![step("p", false, StepStatus::Pass)]);
    let good = sign(&v, &key);
    // Re-signed by the trusted key with the model subject swapped: the
    // predicate still names the original candidate.
    let mut st: Statement = Statement::from_json(&good.payload).unwrap();
    st.subject[0] = Subject::sha256("model", &Digest::of(b"other"));
    let env = Envelope::sign(PAYLOAD_TYPE, st.to_json(), &key);
    assert!(matches!(
        verify_attestation(&env, &keys, None),
        Err(AttestError::Malformed(_))
    ));
}

#[test]
fn the_snapshot_digest_and_failed_probes_are_signed_and_attestations_without_them_still_verify() {
    let key = SigningKey::generate(Curve::P256);
    let keys: KeySet = [key.verifying_key()].into_iter().collect();
    let mut probed = step("robustness", false, StepStatus::Pass);
    probed.probe_failures = vec![ProbeFailure::new(
        FailureKind::FuelExhausted,
        50,
        "used all",
    )];
    probed.allowed_probe_failures = vec![FailureKind::FuelExhausted];
    let mut v = verdict("m", "b", vec![probed]);
    let snapshot = Digest::of(b"snapshot");
    v.candidate.snapshot_digest = Some(snapshot);
    let env = sign(&v, &key);
    let ok = verify_attestation(&env, &keys, Some(&expected(&v))).unwrap();
    assert_eq!(ok.snapshot_digest(), Some(snapshot));
    let s = &ok.predicate().steps[0];
    assert_eq!(s.probe_failures[0].kind, "fuel_exhausted");
    assert_eq!(s.probe_failures[0].rows, 50);
    assert_eq!(s.allowed_probe_failures, ["fuel_exhausted"]);
    // The signature covers the snapshot digest: another one is a forgery.
    let mut forged = env.clone();
    let text = String::from_utf8(forged.payload.clone()).unwrap();
    assert!(text.contains(&snapshot.to_string()), "{text}");
    forged.payload = text
        .replace(&snapshot.to_string(), &Digest::of(b"other").to_string())
        .into_bytes();
    assert!(matches!(
        verify_attestation(&forged, &keys, None),
        Err(AttestError::Signature(DsseError::BadSignature(_)))
    ));
    // An attestation written before these fields existed (none of them in
    // its predicate) still parses and verifies, with nothing recorded.
    let mut st: serde_json::Value = serde_json::from_slice(&env.payload).unwrap();
    let p = &mut st["predicate"];
    p["candidate"]
        .as_object_mut()
        .unwrap()
        .remove("snapshotDigest");
    let step = p["steps"][0].as_object_mut().unwrap();
    step.remove("probeFailures");
    step.remove("allowedProbeFailures");
    let old = Envelope::sign(PAYLOAD_TYPE, serde_json::to_vec(&st).unwrap(), &key);
    let ok = verify_attestation(&old, &keys, Some(&expected(&v))).unwrap();
    assert_eq!(ok.snapshot_digest(), None);
    assert!(ok.predicate().steps[0].probe_failures.is_empty());
}
