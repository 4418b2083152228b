//! Signed gate attestations: a DSSE envelope over an in-toto Statement v1
//! that binds a gate's verdict to the exact model plugin and bundle it was
//! reached about.
//!
//! Why: promotion must be allowed only with a passing verdict for exactly
//! the digests being promoted, checked by anyone, offline, later, with
//! nothing but the attestation and the trusted public keys. So the
//! statement's subjects are the candidate's component digest (name
//! [`SUBJECT_MODEL`]) and bundle digest ([`SUBJECT_BUNDLE`]), and its
//! predicate ([`PREDICATE_TYPE`], [`GatePredicate`]) follows in-toto's
//! test-result predicate (`result` PASSED/FAILED, `configuration`,
//! `passedTests`, `warnedTests`, `failedTests`) and adds what a reviewer
//! needs to judge and to rerun the gate: the gate file's digest, the seed,
//! each step's validator digest, dataset digests, configuration, status,
//! findings, metrics and fuel, the total fuel, the sha256 of the whole
//! [`VerdictRecord`] (reproducible byte for byte, so a rerun can be matched
//! against it), the id of the host key that ran the gate, the signer's key
//! id and the time of signing.
//!
//! [`verify_attestation`] picks the key by the signature's key id from a
//! [`KeySet`](crate::KeySet) (so keys can rotate), checks the signature,
//! the payload, statement and predicate types, that the predicate agrees with the
//! subjects, and — when told which digests are being promoted — that the
//! subjects are exactly those, so an attestation for one model cannot be
//! replayed for another. Verifying is in `gate/verify.rs`; its items are
//! re-exported here.

mod verify;

pub use verify::{ExpectedSubject, VerifiedAttestation, verify_attestation};

use crate::dsse::{DsseError, Envelope};
use crate::intoto::{PAYLOAD_TYPE, Statement, StatementError, Subject};
use crate::keys::{KeyId, SigningKey};
use airlock_core::digest::Digest;
use airlock_core::gate::policy::StepStatus;
use airlock_core::gate::report::{ModelReport, VerdictRecord};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// The predicate type of an airlock gate result.
pub const PREDICATE_TYPE: &str = "https://airlock.dev/gate-result/v1";
/// The subject name of the candidate's model component.
pub const SUBJECT_MODEL: &str = "model";
/// The subject name of the candidate's bundle.
pub const SUBJECT_BUNDLE: &str = "bundle";

/// Why an attestation could not be made or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// A subject is not the expected digest: the verdict is about another
    /// model or bundle than the one given, or the attestation is about
    /// another than the one being promoted (a replay).
    #[error("{role} digest mismatch: expected {}, the {source_of_found} has {}", show(.expected), show(.found))]
    SubjectMismatch {
        /// [`SUBJECT_MODEL`] or [`SUBJECT_BUNDLE`].
        role: &'static str,
        /// The digest asked for.
        expected: Option<Digest>,
        /// The digest found.
        found: Option<Digest>,
        /// Where it was found: `verdict` or `attestation`.
        source_of_found: &'static str,
    },
    /// The envelope's signature does not verify under a trusted key.
    #[error("attestation signature: {0}")]
    Signature(#[from] DsseError),
    /// The payload is not an in-toto statement in JSON.
    #[error("unsupported payload type `{0}` (expected {PAYLOAD_TYPE})")]
    UnsupportedPayloadType(String),
    /// The payload is not an in-toto v1 statement.
    #[error("{0}")]
    Statement(#[from] StatementError),
    /// The statement is not a gate result.
    #[error("unsupported predicate type `{0}` (expected {PREDICATE_TYPE})")]
    UnsupportedPredicateType(String),
    /// The statement's subjects or predicate are malformed or disagree.
    #[error("malformed gate attestation: {0}")]
    Malformed(String),
    /// The signing time is before 1970.
    #[error("the signing time is before the Unix epoch")]
    TimeBeforeEpoch,
}

fn show(d: &Option<Digest>) -> String {
    d.map_or_else(|| "none".to_string(), |d| d.to_string())
}

/// `PASSED` or `FAILED`, as in in-toto's test-result predicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GateResult {
    /// The gate passed.
    Passed,
    /// The gate refused the candidate.
    Failed,
}

/// A resource named by digest (in-toto ResourceDescriptor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Its name.
    pub name: String,
    /// Algorithm → hex.
    pub digest: std::collections::BTreeMap<String, String>,
}

/// A model as the attestation names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRef {
    /// Declared name.
    pub name: String,
    /// Declared version.
    pub version: String,
    /// The component's digest.
    #[serde(with = "digest_str")]
    pub digest: Digest,
    /// The bundle's digest.
    #[serde(with = "opt_digest_str")]
    pub bundle_digest: Option<Digest>,
    /// The pre-initialised snapshot's digest.
    #[serde(
        default,
        with = "opt_digest_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_digest: Option<Digest>,
}

impl From<&ModelReport> for ModelRef {
    fn from(m: &ModelReport) -> Self {
        ModelRef {
            name: m.name.clone(),
            version: m.version.clone(),
            digest: m.digest,
            bundle_digest: m.bundle_digest,
            snapshot_digest: m.snapshot_digest,
        }
    }
}

/// A validator finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `info`, `warning` or `error`.
    pub severity: String,
    /// Machine-readable code.
    pub code: String,
    /// For people.
    pub message: String,
}

/// One step of the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    /// The step's name.
    pub name: String,
    /// The validator component's digest.
    #[serde(with = "digest_str")]
    pub validator_digest: Digest,
    /// Whether the step is advisory.
    pub advisory: bool,
    /// `pass`, `fail` or `error`.
    pub status: String,
    /// The evaluation dataset's digest.
    #[serde(with = "digest_str")]
    pub dataset_digest: Digest,
    /// The reference dataset's digest.
    #[serde(with = "opt_digest_str")]
    pub reference_digest: Option<Digest>,
    /// The step's configuration as the validator received it.
    pub config: serde_json::Value,
    /// The validator's metrics (non-finite values as strings).
    pub metrics: serde_json::Value,
    /// The validator's findings.
    pub findings: Vec<Finding>,
    /// Fuel the step used.
    pub fuel_used: u64,
    /// Why there is no verdict, when `status` is `error`.
    pub error: Option<serde_json::Value>,
    /// Probes of the candidate that failed in this step, as the host
    /// recorded them. Absent when none failed, and in attestations made
    /// before airlock recorded them (they still parse).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_failures: Vec<FailedProbe>,
    /// Failed probes beyond those listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub probe_failures_unrecorded: u64,
    /// The probe failure kinds the step's `allow_probe_failures` accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_probe_failures: Vec<String>,
}

/// A failed probe of the candidate (see
/// `airlock_core::gate::policy::ProbeFailure`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedProbe {
    /// The failure kind's stable name (`trap`, `fuel_exhausted`, ...).
    pub kind: String,
    /// Rows in the probe.
    pub rows: u32,
    /// What happened.
    pub message: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Fuel totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fuel {
    /// Fuel the models used.
    pub model: u64,
    /// Fuel the host's own checks used.
    pub check: u64,
    /// All fuel of the run.
    pub total: u64,
}

/// The gate-result predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatePredicate {
    /// `PASSED` or `FAILED`.
    pub result: GateResult,
    /// The gate file (in-toto test-result `configuration`).
    pub configuration: Vec<Resource>,
    /// Steps whose verdict passed.
    pub passed_tests: Vec<String>,
    /// Advisory steps whose verdict failed.
    pub warned_tests: Vec<String>,
    /// Steps that blocked the gate.
    pub failed_tests: Vec<String>,
    /// The gate's name.
    pub gate: String,
    /// The gate file's digest.
    #[serde(with = "digest_str")]
    pub gate_digest: Digest,
    /// The seed every plugin saw (rerun with it to reproduce).
    pub seed: u64,
    /// The candidate.
    pub candidate: ModelRef,
    /// Why the candidate could not be judged at all.
    pub candidate_failure: Option<serde_json::Value>,
    /// The production model it was compared with.
    pub baseline: Option<ModelRef>,
    /// Each step in gate order.
    pub steps: Vec<StepResult>,
    /// Fuel totals.
    pub fuel: Fuel,
    /// sha256 of the [`VerdictRecord`]'s JSON (`serde_json::to_vec`), which
    /// a rerun with the same inputs and seed reproduces byte for byte.
    #[serde(with = "digest_str")]
    pub verdict_digest: Digest,
    /// The key id of the host that ran the gate.
    pub host_key_id: KeyId,
    /// The key id of the key that signed this attestation.
    pub signer_key_id: KeyId,
    /// When the attestation was made (RFC 3339, UTC, milliseconds).
    pub time: String,
}

impl GatePredicate {
    /// Whether the gate passed.
    pub fn passed(&self) -> bool {
        self.result == GateResult::Passed
    }
}

/// Signs the gate verdict `verdict` about the model component
/// `model_digest` and bundle `bundle_digest` with `signer`, recording
/// `host_key_id` (the key id of the host that ran the gate: the signer's
/// own when a host signs what it ran) and `time`. Refuses a verdict about
/// other digests than the ones given.
pub fn attest_gate(
    verdict: &VerdictRecord,
    model_digest: Digest,
    bundle_digest: Option<Digest>,
    signer: &SigningKey,
    host_key_id: KeyId,
    time: SystemTime,
) -> Result<Envelope, AttestError> {
    let c = &verdict.candidate;
    if c.digest != model_digest {
        return Err(AttestError::SubjectMismatch {
            role: SUBJECT_MODEL,
            expected: Some(model_digest),
            found: Some(c.digest),
            source_of_found: "verdict",
        });
    }
    if c.bundle_digest != bundle_digest {
        return Err(AttestError::SubjectMismatch {
            role: SUBJECT_BUNDLE,
            expected: bundle_digest,
            found: c.bundle_digest,
            source_of_found: "verdict",
        });
    }
    let time = rfc3339(time)?;
    let status = |s: StepStatus| match s {
        StepStatus::Pass => "pass",
        StepStatus::Fail => "fail",
        StepStatus::Error => "error",
    };
    let predicate = GatePredicate {
        result: if verdict.passed {
            GateResult::Passed
        } else {
            GateResult::Failed
        },
        configuration: vec![Resource {
            name: verdict.gate.clone(),
            digest: [("sha256".to_string(), verdict.gate_digest.hex())].into(),
        }],
        passed_tests: verdict
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Pass)
            .map(|s| s.name.clone())
            .collect(),
        warned_tests: verdict.decision.advisory_failures.clone(),
        failed_tests: verdict.decision.blocking_steps.clone(),
        gate: verdict.gate.clone(),
        gate_digest: verdict.gate_digest,
        seed: verdict.seed,
        candidate: c.into(),
        candidate_failure: verdict.candidate_failure.as_ref().map(json),
        baseline: verdict.baseline.as_ref().map(Into::into),
        steps: verdict
            .steps
            .iter()
            .map(|s| StepResult {
                name: s.name.clone(),
                validator_digest: s.plugin_digest,
                advisory: s.advisory,
                status: status(s.status).to_string(),
                dataset_digest: s.dataset_digest,
                reference_digest: s.reference_digest,
                config: s.config.clone(),
                metrics: json(&s.metrics),
                findings: s
                    .findings
                    .iter()
                    .map(|f| Finding {
                        severity: f.severity.to_string(),
                        code: f.code.clone(),
                        message: f.message.clone(),
                    })
                    .collect(),
                fuel_used: s.fuel_used,
                error: s.error.as_ref().map(json),
                probe_failures: s
                    .probe_failures
                    .iter()
                    .map(|p| FailedProbe {
                        kind: p.kind.to_string(),
                        rows: p.rows,
                        message: p.message.clone(),
                    })
                    .collect(),
                probe_failures_unrecorded: s.probe_failures_unrecorded,
                allowed_probe_failures: s
                    .allowed_probe_failures
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            })
            .collect(),
        fuel: Fuel {
            model: verdict.model_fuel_used,
            check: verdict.check_fuel_used,
            total: verdict.total_fuel_used,
        },
        verdict_digest: Digest::of(
            &serde_json::to_vec(verdict).expect("a verdict always serializes"),
        ),
        host_key_id,
        signer_key_id: signer.key_id(),
        time,
    };
    let mut subject = vec![Subject::sha256(SUBJECT_MODEL, &model_digest)];
    if let Some(b) = &bundle_digest {
        subject.push(Subject::sha256(SUBJECT_BUNDLE, b));
    }
    let statement = Statement::new(subject, PREDICATE_TYPE, predicate);
    Ok(Envelope::sign(PAYLOAD_TYPE, statement.to_json(), signer))
}

/// A report part (they are `Serialize` only) as a JSON value.
fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("report data always serializes")
}

/// `time` as RFC 3339 in UTC with milliseconds, e.g.
/// `2025-12-01T14:40:00.123Z`.
pub fn rfc3339(time: SystemTime) -> Result<String, AttestError> {
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| AttestError::TimeBeforeEpoch)?
        .as_millis();
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    ))
}

/// `sha256:<hex>` strings for [`Digest`].
mod digest_str {
    use super::Digest;
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).ok_or_else(|| serde::de::Error::custom("expected sha256:<64 hex digits>"))
    }
}

/// `sha256:<hex>` or `null` for `Option<Digest>`.
mod opt_digest_str {
    use super::Digest;
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(d: &Option<Digest>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(d),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Digest>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => Digest::parse(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("expected sha256:<64 hex digits>")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Curve, KeySet};
    use airlock_core::gate::policy::decide;
    use airlock_core::gate::report::{Metrics, StepReport};
    use std::time::Duration;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        for (ms, s) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
            (1_764_600_000_123, "2025-12-01T14:40:00.123Z"),
            (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(rfc3339(at(ms)).unwrap(), s);
        }
        assert!(matches!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            Err(AttestError::TimeBeforeEpoch)
        ));
    }

    pub(crate) fn verdict(model: &[u8], bundle: Option<&[u8]>, pass: bool) -> VerdictRecord {
        let status = if pass {
            StepStatus::Pass
        } else {
            StepStatus::Fail
        };
        VerdictRecord {
            gate: "release".into(),
            gate_digest: Digest::of(b"gate.toml"),
            passed: pass,
            decision: decide(true, [("perf", false, status)]),
            seed: 42,
            candidate: ModelReport {
                digest: Digest::of(model),
                bundle_digest: bundle.map(Digest::of),
                snapshot_digest: None,
                name: "m".into(),
                version: "1".into(),
            },
            candidate_failure: None,
            baseline: None,
            steps: vec![StepReport {
                name: "perf".into(),
                plugin_digest: Digest::of(b"perf.wasm"),
                validator: None,
                advisory: false,
                config: serde_json::json!({"min_accuracy": 0.9}),
                label: Some("target".into()),
                dataset_digest: Digest::of(b"eval.csv"),
                reference_digest: None,
                status,
                blame: None,
                findings: vec![],
                metrics: Metrics(vec![("accuracy".into(), 0.95), ("nan".into(), f64::NAN)]),
                fuel_used: 1234,
                candidate_fuel_used: 0,
                error: None,
                probe_failures: vec![],
                probe_failures_unrecorded: 0,
                allowed_probe_failures: vec![],
            }],
            model_fuel_used: 10,
            check_fuel_used: 2,
            total_fuel_used: 1246,
        }
    }

    #[test]
    fn an_attestation_binds_the_verdict_to_its_subjects_and_verifies() {
        let key = SigningKey::generate(Curve::P256);
        let v = verdict(b"model.wasm", Some(b"bundle"), true);
        let (m, b) = (v.candidate.digest, v.candidate.bundle_digest);
        let env = attest_gate(&v, m, b, &key, key.key_id(), at(1_764_600_000_123)).unwrap();
        let keys: KeySet = [key.verifying_key()].into_iter().collect();
        let expected = ExpectedSubject {
            model: m,
            bundle: b,
        };
        let ok = verify_attestation(&env, &keys, Some(&expected)).unwrap();
        assert!(ok.passed());
        assert_eq!(ok.key_id, key.key_id());
        let p = ok.predicate();
        assert_eq!(p.time, "2025-12-01T14:40:00.123Z");
        assert_eq!(p.passed_tests, ["perf"]);
        assert_eq!(p.steps[0].validator_digest, Digest::of(b"perf.wasm"));
        assert_eq!(p.steps[0].metrics["nan"], "NaN");
        assert_eq!(
            p.verdict_digest,
            Digest::of(&serde_json::to_vec(&v).unwrap())
        );
        // The statement's shape on the wire.
        let st: serde_json::Value = serde_json::from_slice(&env.payload).unwrap();
        assert_eq!(st["predicateType"], PREDICATE_TYPE);
        assert_eq!(st["subject"][0]["name"], "model");
        assert_eq!(st["subject"][1]["digest"]["sha256"], b.unwrap().hex());
        assert_eq!(st["predicate"]["result"], "PASSED");
        assert_eq!(st["predicate"]["gateDigest"], v.gate_digest.to_string());
    }

    #[test]
    fn a_verdict_about_another_model_is_not_attested() {
        let key = SigningKey::generate(Curve::P256);
        let v = verdict(b"model.wasm", None, true);
        let err = attest_gate(&v, Digest::of(b"other"), None, &key, key.key_id(), at(0));
        assert!(matches!(
            err,
            Err(AttestError::SubjectMismatch { role: "model", .. })
        ));
        let err = attest_gate(
            &v,
            v.candidate.digest,
            Some(Digest::of(b"b")),
            &key,
            key.key_id(),
            at(0),
        );
        assert!(matches!(
            err,
            Err(AttestError::SubjectMismatch { role: "bundle", .. })
        ));
    }
}
