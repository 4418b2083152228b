//! One gate step: the candidate's (and baseline's) predictions on the
//! step's data, cached by exactly what each model saw, then the step's
//! validator on them with the candidate callable for probes, and the
//! step's report with who is to blame for a failure. The loading, checks
//! and dry runs that come before any step are in the parent module.

use super::{DataKey, GateJob, LoadedStep};
use crate::data::{self, Dataset};
use airlock_core::digest::Digest;
use airlock_core::gate::policy::{StepStatus, first_unallowed_probe_failure};
use airlock_core::gate::report::{Blame, FindingReport, Metrics, ModelReport, StepReport, StepRun};
use airlock_core::gate::spec::StepSpec;
use airlock_core::types::{Batch, Context, ModelInfo, Predictions, Reference};
use airlock_runtime::error::{FailureKind, PluginFailure};
use airlock_runtime::sandbox::candidate::{KnownAnswers, ProbeLog};
use airlock_runtime::sandbox::{CallOptions, CandidateLink, CheckedModel};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a model saw: a dataset's digest and the columns handed over.
type SeenKey = (Digest, Vec<String>);

/// A model's answer to what it saw, with the batch it saw.
type ScoredBatch = Result<(Batch, Predictions), PluginFailure>;

/// A model in the run, with its predictions cached by exactly what it saw.
pub(super) struct Scored {
    pub(super) model: CheckedModel,
    pub(super) info: ModelInfo,
    pub(super) predictions: HashMap<SeenKey, ScoredBatch>,
}

impl Scored {
    pub(super) fn new(model: CheckedModel) -> Scored {
        let info = ModelInfo {
            metadata: model.metadata.clone(),
            digest: model.component_digest().to_string(),
            bundle_digest: model.options.bundle.as_ref().map(|b| b.digest.to_string()),
        };
        Scored {
            model,
            info,
            predictions: HashMap::new(),
        }
    }

    /// The model's predictions on `d`, from exactly its declared columns
    /// (never a withheld one), with the batch it saw.
    pub(super) fn predict(
        &mut self,
        d: &Dataset,
        withheld: &[&str],
        fuel: &mut u64,
    ) -> ScoredBatch {
        // The caller names the dataset (as the gate file writes it).
        let (inputs, _) = data::model_inputs(&d.batch, &self.model.metadata.inputs, withheld)
            .map_err(|e| PluginFailure::new(FailureKind::GuestError, e.to_string()))?;
        let key = (
            d.digest,
            inputs.columns.iter().map(|c| c.name.clone()).collect(),
        );
        if let Some(p) = self.predictions.get(&key) {
            return p.clone();
        }
        let r = match self.model.predict(&inputs) {
            Ok(o) => {
                *fuel += o.fuel_used;
                Ok((inputs, o.value))
            }
            Err(f) => {
                *fuel += f.fuel_used;
                Err(f)
            }
        };
        self.predictions.insert(key, r.clone());
        r
    }

    pub(super) fn report(&self) -> ModelReport {
        ModelReport {
            digest: self.model.component_digest(),
            bundle_digest: self.model.options.bundle.as_ref().map(|b| b.digest),
            snapshot_digest: self.model.snapshot.as_ref().map(|s| s.digest),
            name: self.model.metadata.name.clone(),
            version: self.model.metadata.version.clone(),
        }
    }
}
impl GateJob {
    /// Runs one step: its verdict, and how it ran on this host.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_step(
        &self,
        step: &StepSpec,
        l: LoadedStep,
        datasets: &HashMap<DataKey, Dataset>,
        cand: &mut Scored,
        base: Option<&mut Scored>,
        withheld: &[String],
        seed: u64,
        model_fuel: &mut u64,
    ) -> (StepReport, StepRun) {
        let start = Instant::now();
        let report = self.judge_step(step, &l, datasets, cand, base, withheld, seed, model_fuel);
        let run = StepRun {
            name: step.name.clone(),
            plugin: l.path.display().to_string(),
            dataset: l.dataset.display().to_string(),
            reference: l.reference.as_ref().map(|r| r.display().to_string()),
            duration_ms: start.elapsed().as_secs_f64() * 1e3,
        };
        (report, run)
    }

    /// One step's verdict. Failures name the datasets as the gate file
    /// writes them, not as resolved on this host, so the verdict does not
    /// depend on where the gate was checked out.
    #[allow(clippy::too_many_arguments)]
    fn judge_step(
        &self,
        step: &StepSpec,
        l: &LoadedStep,
        datasets: &HashMap<DataKey, Dataset>,
        cand: &mut Scored,
        mut base: Option<&mut Scored>,
        withheld: &[String],
        seed: u64,
        model_fuel: &mut u64,
    ) -> StepReport {
        let withheld_refs: Vec<&str> = withheld.iter().map(String::as_str).collect();
        let w = withheld_refs.as_slice();
        let data = &datasets[&(self.spec.resolve(&step.dataset), step.label.clone())];
        let reference = step
            .reference
            .as_ref()
            .map(|r| &datasets[&(self.spec.resolve(r), step.label.clone())]);
        let mut report = StepReport {
            name: step.name.clone(),
            plugin_digest: l.plugin.digest,
            validator: l.info.clone(),
            advisory: self.spec.policy.advisory.contains(&step.name),
            config: step.config_value(),
            label: step.label.clone(),
            dataset_digest: data.digest,
            reference_digest: reference.map(|r| r.digest),
            status: StepStatus::Error,
            blame: None,
            findings: Vec::new(),
            metrics: Metrics::default(),
            fuel_used: 0,
            candidate_fuel_used: 0,
            error: None,
            probe_failures: Vec::new(),
            probe_failures_unrecorded: 0,
            allowed_probe_failures: step.allowed_probe_failures(),
        };
        let fail = |mut r: StepReport, who: Blame, what: &Path, f: PluginFailure| {
            let role = match who {
                Blame::Candidate => "candidate",
                Blame::Baseline => "baseline",
                Blame::Validator => "validator",
            };
            r.error = Some(PluginFailure {
                message: format!("{role} failed on {}: {}", what.display(), f.message),
                ..f
            });
            r.blame = Some(who);
            r
        };

        let mut known = KnownAnswers::default();
        let (cand_batch, cand_preds) = match cand.predict(data, w, model_fuel) {
            Ok(p) => p,
            Err(f) => return fail(report, Blame::Candidate, &step.dataset, f),
        };
        known.record(&cand_batch, &cand_preds);
        let base_preds = match base.as_deref_mut().map(|b| b.predict(data, w, model_fuel)) {
            Some(Err(f)) => return fail(report, Blame::Baseline, &step.dataset, f),
            Some(Ok((_, p))) => Some(p),
            None => None,
        };
        let reference = match reference {
            None => None,
            Some(r) => {
                let written = step.reference.as_deref().unwrap_or(&r.path);
                let (rb, cp) = match cand.predict(r, w, model_fuel) {
                    Ok(p) => p,
                    Err(f) => return fail(report, Blame::Candidate, written, f),
                };
                known.record(&rb, &cp);
                let bp = match base.as_deref_mut().map(|b| b.predict(r, w, model_fuel)) {
                    Some(Err(f)) => return fail(report, Blame::Baseline, written, f),
                    Some(Ok((_, p))) => Some(p),
                    None => None,
                };
                Some(Reference {
                    data: r.batch.clone(),
                    labels: r.labels.clone(),
                    candidate_predictions: cp,
                    baseline_predictions: bp,
                })
            }
        };
        let ctx = Context {
            step: step.name.clone(),
            config: step.config_json(),
            seed,
            candidate: cand.info.clone(),
            baseline: base.as_ref().map(|b| b.info.clone()),
            data: data.batch.clone(),
            labels: data.labels.clone(),
            candidate_predictions: cand_preds,
            baseline_predictions: base_preds,
            reference,
        };
        let options = CallOptions {
            limits: step.limits,
            seed,
            bundle: None,
        };
        let violations = Arc::new(Mutex::new(Vec::new()));
        let probe_log = Arc::new(Mutex::new(ProbeLog::default()));
        let link = CandidateLink {
            model: cand.model.clone(),
            withheld: Arc::new(withheld.to_vec()),
            known: Arc::new(known),
            violations: violations.clone(),
            probe_failures: probe_log.clone(),
        };
        let outcome = l.plugin.validate(&options, &ctx, Some(link));
        let violation = violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .cloned();
        let log = std::mem::take(&mut *probe_log.lock().unwrap_or_else(|p| p.into_inner()));
        report.probe_failures = log.recorded;
        report.probe_failures_unrecorded = log.unrecorded;
        // A probe that found the host at capacity judged nothing: the run
        // is retried (the runner turns a `busy` step into a busy run).
        let busy = report
            .probe_failures
            .iter()
            .find(|p| p.kind == FailureKind::Busy)
            .map(|p| PluginFailure::new(FailureKind::Busy, p.message.clone()));
        // A failed probe the step does not allow: the verdict was reached
        // on answers the candidate did not give, so there is none.
        let unallowed = first_unallowed_probe_failure(
            &report.probe_failures,
            &report.allowed_probe_failures,
        )
        .map(|p| {
            PluginFailure::new(
                p.kind,
                format!(
                    "a probe of {} rows failed ({}: {}), and the step does not allow probe failures of kind `{}` (allow_probe_failures)",
                    p.rows, p.kind, p.message, p.kind
                ),
            )
        });
        match outcome {
            Ok(out) => {
                report.fuel_used = out.fuel_used;
                report.candidate_fuel_used = out.candidate_fuel_used;
                if let Some(b) = busy {
                    report.error = Some(b);
                    return report;
                }
                if let Some(v) = violation.or(unallowed) {
                    return fail(report, Blame::Candidate, &step.dataset, v);
                }
                let mut metrics: Vec<(String, f64)> = Vec::new();
                for m in &out.value.metrics {
                    if metrics.iter().any(|(n, _)| *n == m.name) {
                        let f = PluginFailure::new(
                            FailureKind::InvalidOutput,
                            format!(
                                "the validator reported metric `{}` twice",
                                m.name.escape_debug()
                            ),
                        );
                        return fail(report, Blame::Validator, &step.dataset, f);
                    }
                    metrics.push((m.name.clone(), m.value));
                }
                report.status = if out.value.passed {
                    StepStatus::Pass
                } else {
                    StepStatus::Fail
                };
                report.findings = out.value.findings.iter().map(FindingReport::from).collect();
                report.metrics = Metrics(metrics);
            }
            Err(f) => {
                report.fuel_used = f.fuel_used;
                report.candidate_fuel_used = f.candidate_fuel_used;
                if let Some(b) = busy {
                    report.error = Some(b);
                    return report;
                }
                // A validator that failed after a probe the step does not
                // allow (the candidate may have eaten its fuel or time)
                // failed because of the candidate.
                let (who, f) = match violation.or(unallowed) {
                    Some(v) => (Blame::Candidate, v),
                    None => (Blame::Validator, f),
                };
                report.error = Some(f);
                report.blame = Some(who);
            }
        }
        report
    }
}
