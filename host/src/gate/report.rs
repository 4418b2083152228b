//! The gate report: what each step concluded, with the digests it concluded
//! it about, the fuel and time it took, and the decision — as JSON for
//! machines and as text for people.

use super::policy::{Decision, StepStatus};
use crate::digest::Digest;
use crate::error::PluginFailure;
use crate::sandbox::bindings::{Finding, Severity, ValidatorInfo};
use serde::Serialize;
use std::fmt::Write as _;

/// The outcome of a gate run.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    /// The gate's name.
    pub gate: String,
    /// Whether the candidate passed.
    pub passed: bool,
    /// Why.
    pub decision: Decision,
    /// The seed every plugin saw.
    pub seed: u64,
    /// The candidate.
    pub candidate: ModelReport,
    /// The baseline, if any.
    pub baseline: Option<ModelReport>,
    /// Each step, in gate order.
    pub steps: Vec<StepReport>,
    /// Fuel the models used scoring the datasets.
    pub model_fuel_used: u64,
    /// All fuel used in the run.
    pub total_fuel_used: u64,
    /// Wall-clock time of the run.
    pub duration_ms: f64,
}

/// A model as the report identifies it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// The component's digest.
    pub digest: Digest,
    /// The bundle's digest.
    pub bundle_digest: Option<Digest>,
    /// Declared name.
    pub name: String,
    /// Declared version.
    pub version: String,
}

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// The validator component file.
    pub plugin: String,
    /// Its digest.
    pub plugin_digest: Digest,
    /// Its self-description.
    pub validator: Option<ValidatorInfo>,
    /// Whether the step is advisory.
    pub advisory: bool,
    /// Digest of the evaluation dataset.
    pub dataset_digest: Digest,
    /// Digest of the reference dataset.
    pub reference_digest: Option<Digest>,
    /// Pass, fail, or error.
    pub status: StepStatus,
    /// The validator's findings.
    pub findings: Vec<FindingReport>,
    /// The validator's metrics, in its order.
    pub metrics: Vec<(String, f64)>,
    /// Fuel the validator used (candidate probes included).
    pub fuel_used: u64,
    /// Fuel spent in the candidate on the validator's behalf.
    pub candidate_fuel_used: u64,
    /// Wall-clock time of the step.
    pub duration_ms: f64,
    /// Why there is no verdict, when `status` is `error`.
    pub error: Option<PluginFailure>,
}

/// A finding, with its severity as a word.
#[derive(Debug, Clone, Serialize)]
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

fn short(d: &Digest) -> String {
    let s = d.to_string();
    s[..19].to_string()
}

impl GateReport {
    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "gate `{}`: candidate {} {} ({}{})",
            self.gate,
            self.candidate.name,
            self.candidate.version,
            short(&self.candidate.digest),
            self.candidate
                .bundle_digest
                .map(|b| format!(", bundle {}", short(&b)))
                .unwrap_or_default()
        );
        if let Some(b) = &self.baseline {
            let _ = writeln!(
                o,
                "  baseline {} {} ({})",
                b.name,
                b.version,
                short(&b.digest)
            );
        }
        let _ = writeln!(o, "  seed {}", self.seed);
        for s in &self.steps {
            let status = match s.status {
                StepStatus::Pass => "PASS ",
                StepStatus::Fail => "FAIL ",
                StepStatus::Error => "ERROR",
            };
            let _ = writeln!(
                o,
                "  {status} {}{}  [fuel {}, {:.1} ms]",
                s.name,
                if s.advisory { " (advisory)" } else { "" },
                s.fuel_used,
                s.duration_ms
            );
            const SHOWN: usize = 8;
            for (name, value) in s.metrics.iter().take(SHOWN) {
                let _ = writeln!(o, "          {name} = {}", fmt_num(*value));
            }
            if s.metrics.len() > SHOWN {
                let _ = writeln!(
                    o,
                    "          ... {} more metrics (see --json)",
                    s.metrics.len() - SHOWN
                );
            }
            for f in &s.findings {
                let _ = writeln!(o, "          {} {}: {}", f.severity, f.code, f.message);
            }
            if let Some(e) = &s.error {
                let _ = writeln!(o, "          {}: {}", e.kind, e.message);
            }
        }
        if self.passed {
            let _ = write!(o, "result: PASSED");
            if !self.decision.advisory_failures.is_empty() {
                let _ = write!(
                    o,
                    " (advisory failures: {})",
                    self.decision.advisory_failures.join(", ")
                );
            }
        } else {
            let _ = write!(
                o,
                "result: REFUSED (blocking steps: {})",
                self.decision.blocking_steps.join(", ")
            );
        }
        let _ = writeln!(
            o,
            " — {} fuel, {:.1} ms",
            self.total_fuel_used, self.duration_ms
        );
        o
    }
}

fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e12 {
        format!("{v}")
    } else {
        format!("{v:.6}")
    }
}
