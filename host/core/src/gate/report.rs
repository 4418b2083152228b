//! The gate report: what each step concluded, with the digests it concluded
//! it about, the gate and step configuration it ran under, the fuel it took,
//! and the decision — as JSON for machines and as text for people.
//!
//! A report has two parts, kept apart so that the next step can sign one of
//! them:
//! * [`VerdictRecord`] is a function of the run's inputs only: the gate
//!   file's digest, the seed, the models' and datasets' digests, each step's
//!   validator digest, configuration, status, blame, findings, metrics and
//!   fuel (wasm fuel is deterministic), and the decision. Two runs of the
//!   same gate on the same candidate with the same seed give the same
//!   record, byte for byte under `serde_json::to_vec` — a signature over it
//!   means "these inputs gave this verdict", and anyone can rerun to check.
//!   (A step stopped by its wall-clock timeout is the one exception a
//!   verdict can carry: its status then depends on the host's speed.)
//! * [`RunInfo`] is what this particular run looked like: wall-clock
//!   durations, when it started, and host paths (the gate file, each
//!   validator file and dataset as resolved on this machine). None of it
//!   takes part in the verdict.
//!
//! `GateReport` serializes as the record's fields with the run beside them
//! under `"run"` (the shape of `airlock gate run --json`):
//!
//! ```json
//! { "gate": "...", "gate_digest": "sha256:...", "passed": true,
//!   "decision": {...}, "seed": 42, "candidate": {...},
//!   "candidate_failure": null, "baseline": null,
//!   "steps": [{ "name": "...", "plugin_digest": "...", "config": {...},
//!               "status": "pass", "metrics": {...}, "fuel_used": 1, ... }],
//!   "model_fuel_used": 1, "check_fuel_used": 1, "total_fuel_used": 3,
//!   "run": { "started_unix_ms": 1764600000000, "duration_ms": 12.5,
//!            "gate_file": "/path/gate.toml",
//!            "steps": [{ "name": "...", "plugin": "/path/v.wasm",
//!                        "dataset": "/path/eval.csv", "reference": null,
//!                        "duration_ms": 3.1 }] } }
//! ```
//!
//! Everything a plugin supplies (names, findings, metric names, panic
//! messages) is untrusted text: the text form escapes control characters so
//! a plugin cannot forge a `result:` line or drive the terminal, and JSON
//! escapes them by construction.

use super::policy::{Decision, ProbeFailure, StepStatus};
use crate::digest::Digest;
use crate::error::{FailureKind, PluginFailure};
use crate::types::{Finding, Severity, ValidatorInfo};
use serde::Serialize;
use serde::ser::SerializeMap;
use std::fmt::Write as _;

/// The outcome of a gate run: the reproducible verdict and how this run
/// went. Reads through to the verdict (`report.steps`, `report.passed`).
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    /// What the inputs determine; what a signature covers.
    #[serde(flatten)]
    pub verdict: VerdictRecord,
    /// Timings and host paths of this run.
    pub run: RunInfo,
}

impl std::ops::Deref for GateReport {
    type Target = VerdictRecord;
    fn deref(&self) -> &VerdictRecord {
        &self.verdict
    }
}

/// The part of a report that is a function of the run's inputs only (gate
/// file, models, bundles, datasets, validators, seed): no time, no host
/// path, so a rerun reproduces it byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRecord {
    /// The gate's name.
    pub gate: String,
    /// Digest of the gate file, so a report names exactly the policy,
    /// thresholds and datasets it was judged by.
    pub gate_digest: Digest,
    /// Whether the candidate passed.
    pub passed: bool,
    /// Why.
    pub decision: Decision,
    /// The seed every plugin saw (drawn from the host's randomness unless
    /// given; pass it back with `--seed` to rerun exactly).
    pub seed: u64,
    /// The candidate.
    pub candidate: ModelReport,
    /// Why the candidate could not be judged at all (its metadata failed
    /// or broke the contract); no step ran.
    pub candidate_failure: Option<PluginFailure>,
    /// The baseline, if any.
    pub baseline: Option<ModelReport>,
    /// Each step, in gate order.
    pub steps: Vec<StepReport>,
    /// Fuel the models used: metadata and every prediction, failed ones
    /// included.
    pub model_fuel_used: u64,
    /// Fuel the host's own checks used: validators' `describe` and the
    /// configuration dry runs.
    pub check_fuel_used: u64,
    /// All fuel used in the run: models, checks and steps.
    pub total_fuel_used: u64,
}

/// How one run went: what varies between reruns of the same inputs, or
/// between machines, and so stays out of the [`VerdictRecord`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunInfo {
    /// When the run started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Wall-clock time of the run.
    pub duration_ms: f64,
    /// The gate file as read on this host, when it was read from a file.
    pub gate_file: Option<String>,
    /// Each step that ran, in gate order (none when the candidate could
    /// not be judged).
    pub steps: Vec<StepRun>,
}

/// How one step ran on this host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRun {
    /// The step's name (as in [`StepReport::name`]).
    pub name: String,
    /// The validator component file, as resolved on this host.
    pub plugin: String,
    /// The evaluation dataset, as resolved on this host.
    pub dataset: String,
    /// The reference dataset, as resolved on this host.
    pub reference: Option<String>,
    /// Wall-clock time of the step.
    pub duration_ms: f64,
}

/// A model as the report identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelReport {
    /// The component's digest.
    pub digest: Digest,
    /// The bundle's digest.
    pub bundle_digest: Option<Digest>,
    /// For a pre-initialised model: the digest of the snapshot taken after
    /// its `init`, which every call ran (a function of the component and
    /// the bundle alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_digest: Option<Digest>,
    /// Declared name (empty when the metadata call failed).
    pub name: String,
    /// Declared version.
    pub version: String,
}

/// Who a step's missing verdict is blamed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// The candidate failed or broke its contract.
    Candidate,
    /// The production model failed.
    Baseline,
    /// The validator failed.
    Validator,
}

/// One step's outcome, as the inputs determine it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// Digest of the validator component (its file is in [`StepRun`]).
    pub plugin_digest: Digest,
    /// Its self-description.
    pub validator: Option<ValidatorInfo>,
    /// Whether the step is advisory.
    pub advisory: bool,
    /// The step's configuration, exactly as handed to the validator.
    pub config: serde_json::Value,
    /// The label column, when the step has one.
    pub label: Option<String>,
    /// Digest of the evaluation dataset.
    pub dataset_digest: Digest,
    /// Digest of the reference dataset.
    pub reference_digest: Option<Digest>,
    /// Pass, fail, or error.
    pub status: StepStatus,
    /// Who is to blame when `status` is `error`.
    pub blame: Option<Blame>,
    /// The validator's findings.
    pub findings: Vec<FindingReport>,
    /// The validator's metrics, in its order.
    pub metrics: Metrics,
    /// Fuel the validator used (candidate probes included).
    pub fuel_used: u64,
    /// Fuel spent in the candidate on the validator's behalf.
    pub candidate_fuel_used: u64,
    /// Why there is no verdict, when `status` is `error`.
    pub error: Option<PluginFailure>,
    /// Probes of the candidate that failed during the step, as the host
    /// saw them (whatever the validator did with the error): every kind at
    /// least once, in the order they happened, at most
    /// [`super::policy::MAX_RECORDED_PROBE_FAILURES`] in all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probe_failures: Vec<ProbeFailure>,
    /// Failed probes beyond those recorded (each of a kind already
    /// recorded).
    #[serde(skip_serializing_if = "is_zero")]
    pub probe_failures_unrecorded: u64,
    /// The kinds of probe failure the step's `allow_probe_failures` accepts;
    /// a failed probe of any other kind makes the step an error that blocks
    /// the gate (see [`super::policy::first_unallowed_probe_failure`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_probe_failures: Vec<FailureKind>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Named metrics in the validator's order, serialized as a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(pub Vec<(String, f64)>);

impl Metrics {
    /// The value of metric `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            // JSON has no NaN or infinity; keep them visible as strings.
            if v.is_finite() {
                m.serialize_entry(k, v)?;
            } else {
                m.serialize_entry(k, &v.to_string())?;
            }
        }
        m.end()
    }
}

/// A finding, with its severity as a word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingReport {
    /// `info`, `warning` or `error`.
    pub severity: &'static str,
    /// Machine-readable code.
    pub code: String,
    /// For people.
    pub message: String,
}

impl From<&Finding> for FindingReport {
    fn from(f: &Finding) -> Self {
        FindingReport {
            severity: match f.severity {
                Severity::Info => "info",
                Severity::Warning => "warning",
                Severity::Error => "error",
            },
            code: f.code.clone(),
            message: f.message.clone(),
        }
    }
}

mod text;
pub use text::escape_untrusted;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::policy::MAX_PROBE_MESSAGE_BYTES;

    #[test]
    fn control_characters_are_made_visible() {
        assert_eq!(
            escape_untrusted("m\nresult: PASSED\x1b[2K"),
            "m\\u{a}result: PASSED\\u{1b}[2K"
        );
        assert_eq!(escape_untrusted("plain ünïcode"), "plain ünïcode");
        assert_eq!(escape_untrusted("a\u{202e}b"), "a\\u{202e}b");
    }

    #[test]
    fn metrics_serialize_as_an_object_in_order() {
        let m = Metrics(vec![
            ("b".into(), 1.0),
            ("a".into(), 0.5),
            ("n".into(), f64::NAN),
        ]);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"b":1.0,"a":0.5,"n":"NaN"}"#
        );
        assert_eq!(m.get("a"), Some(0.5));
    }

    /// A one-step report with the given timings.
    fn sample(started_unix_ms: u64, duration_ms: f64, step_ms: f64, path: &str) -> GateReport {
        let d = Digest::of(b"x");
        let step = StepReport {
            name: "perf".into(),
            plugin_digest: d,
            validator: None,
            advisory: false,
            config: serde_json::json!({"min": 0.9}),
            label: Some("target".into()),
            dataset_digest: d,
            reference_digest: None,
            status: StepStatus::Pass,
            blame: None,
            findings: Vec::new(),
            metrics: Metrics(vec![("accuracy".into(), 0.95)]),
            fuel_used: 10,
            candidate_fuel_used: 0,
            error: None,
            probe_failures: Vec::new(),
            probe_failures_unrecorded: 0,
            allowed_probe_failures: Vec::new(),
        };
        GateReport {
            verdict: VerdictRecord {
                gate: "g".into(),
                gate_digest: d,
                passed: true,
                decision: crate::gate::policy::decide(true, [("perf", false, StepStatus::Pass)]),
                seed: 7,
                candidate: ModelReport {
                    digest: d,
                    bundle_digest: None,
                    snapshot_digest: None,
                    name: "m".into(),
                    version: "1".into(),
                },
                candidate_failure: None,
                baseline: None,
                steps: vec![step],
                model_fuel_used: 5,
                check_fuel_used: 1,
                total_fuel_used: 16,
            },
            run: RunInfo {
                started_unix_ms,
                duration_ms,
                gate_file: Some(format!("{path}/gate.toml")),
                steps: vec![StepRun {
                    name: "perf".into(),
                    plugin: format!("{path}/perf.wasm"),
                    dataset: format!("{path}/eval.csv"),
                    reference: None,
                    duration_ms: step_ms,
                }],
            },
        }
    }

    #[test]
    fn the_verdict_excludes_timings_and_host_paths() {
        let a = sample(1, 2.5, 1.25, "/home/a");
        let b = sample(99, 30.0, 20.0, "/srv/b");
        let bytes = serde_json::to_vec(&a.verdict).unwrap();
        assert_eq!(bytes, serde_json::to_vec(&b.verdict).unwrap());
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("/home/a"), "{text}");
        assert!(!text.contains("duration"), "{text}");
        // Reads go through to the verdict.
        assert_eq!(a.steps[0].name, "perf");
        assert!(a.passed);
    }

    #[test]
    fn the_json_report_puts_the_run_beside_the_verdicts_fields() {
        let r = sample(1_764_600_000_000, 2.5, 1.25, "/p");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["seed"], 7);
        assert_eq!(v["steps"][0]["metrics"]["accuracy"], 0.95);
        assert_eq!(v["steps"][0].get("plugin"), None);
        assert_eq!(v["steps"][0].get("duration_ms"), None);
        assert_eq!(
            v["run"],
            serde_json::json!({
                "started_unix_ms": 1_764_600_000_000u64,
                "duration_ms": 2.5,
                "gate_file": "/p/gate.toml",
                "steps": [{
                    "name": "perf",
                    "plugin": "/p/perf.wasm",
                    "dataset": "/p/eval.csv",
                    "reference": null,
                    "duration_ms": 1.25,
                }],
            })
        );
    }

    #[test]
    fn the_text_report_shows_the_runs_timings() {
        let text = sample(1, 2.5, 1.25, "/p").to_text();
        assert!(text.contains("  PASS  perf  [fuel 10, 1.2 ms]\n"), "{text}");
        assert!(
            text.ends_with("result: PASSED — 16 fuel, 2.5 ms\n"),
            "{text}"
        );
    }

    #[test]
    fn the_text_report_names_the_snapshot_and_lists_failed_probes_with_their_messages_escaped() {
        let mut r = sample(1, 2.5, 1.25, "/p");
        let step = &mut r.verdict.steps[0];
        // Without failed probes the step's JSON has no trace of them, so
        // verdicts without any keep their bytes.
        let plain = serde_json::to_value(&*step).unwrap();
        assert_eq!(plain.get("probe_failures"), None);
        step.probe_failures = vec![
            ProbeFailure::new(FailureKind::Trap, 50, "boom\nresult: PASSED\x1b[2K"),
            ProbeFailure::new(FailureKind::FuelExhausted, 1, "used all 9 units of fuel"),
        ];
        step.allowed_probe_failures = vec![FailureKind::FuelExhausted];
        step.probe_failures_unrecorded = 3;
        r.verdict.candidate.snapshot_digest = Some(Digest::of(b"snap"));
        let text = r.to_text();
        let snap = Digest::of(b"snap").to_string();
        assert!(
            text.contains(&format!(", snapshot {})", &snap[..19])),
            "{text}"
        );
        assert!(
            text.contains(
                "          failed probe (50 rows) trap: boom\\u{a}result: PASSED\\u{1b}[2K\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("failed probe (1 rows) fuel_exhausted (allowed): used all 9 units"),
            "{text}"
        );
        assert!(text.contains("... 3 more failed probes"), "{text}");
        let v = serde_json::to_value(&r.verdict.steps[0]).unwrap();
        assert_eq!(v["probe_failures"][0]["kind"], "trap");
        assert_eq!(v["probe_failures"][0]["rows"], 50);
        assert_eq!(v["allowed_probe_failures"][0], "fuel_exhausted");
        assert_eq!(v["probe_failures_unrecorded"], 3);
        // Long messages are cut on a character boundary.
        let long = "é".repeat(MAX_PROBE_MESSAGE_BYTES);
        let cut = ProbeFailure::new(FailureKind::Trap, 1, &long);
        assert!(cut.message.len() <= MAX_PROBE_MESSAGE_BYTES);
        assert!(cut.message.chars().all(|c| c == 'é'));
    }
}
