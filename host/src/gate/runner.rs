//! Runs a gate: every step's validator in its own sandbox, against the
//! candidate's (and the baseline's) predictions on the step's data, with the
//! candidate callable for probes.
//!
//! Seeds are fixed per run (derived from the candidate's digest and the gate
//! unless given), validators see virtual clocks and seeded randomness, so the
//! same inputs give the same verdicts and the same fuel.

use super::policy::{self, StepStatus};
use super::report::{FindingReport, GateReport, ModelReport, StepReport};
use super::spec::{GateSpec, SpecError, StepSpec};
use crate::capabilities::World;
use crate::data::{self, DataError, Dataset};
use crate::digest::Digest;
use crate::error::{PluginFailure, SandboxError};
use crate::sandbox::bindings::{Context, ModelInfo, ModelMetadata, Predictions, Reference};
use crate::sandbox::{Bundle, CallOptions, CandidateLink, Plugin, Sandbox};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A dataset is read once per (file, label column).
type DataKey = (PathBuf, Option<String>);

/// A model taking part in a gate run.
#[derive(Clone)]
pub struct ModelUnderTest {
    /// The model component.
    pub plugin: Arc<Plugin>,
    /// Its data bundle.
    pub bundle: Option<Bundle>,
}

/// Errors that stop a gate run before it can judge the candidate: the gate
/// itself is broken (exit code 2), as opposed to the candidate failing it.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The gate file.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A step's validator could not be loaded.
    #[error("step `{step}`: validator {path}: {source}")]
    Validator {
        /// The step.
        step: String,
        /// The component file.
        path: PathBuf,
        /// Why.
        source: Box<SandboxError>,
    },
    /// A step's dataset was refused.
    #[error("step `{step}`: {source}")]
    Data {
        /// The step.
        step: String,
        /// Why.
        source: DataError,
    },
    /// The given model is not a model.
    #[error("{role}: {source}")]
    Model {
        /// `candidate` or `baseline`.
        role: &'static str,
        /// Why.
        source: Box<PluginFailure>,
    },
}

/// One gate run.
pub struct GateRun<'a> {
    /// The sandbox everything runs in.
    pub sandbox: &'a Sandbox,
    /// The gate.
    pub spec: &'a GateSpec,
    /// The candidate model.
    pub candidate: ModelUnderTest,
    /// The production model, when there is one.
    pub baseline: Option<ModelUnderTest>,
    /// Overrides the gate file's `plugin_dir`.
    pub plugin_dir: Option<PathBuf>,
    /// Overrides the derived seed.
    pub seed: Option<u64>,
}

struct Side {
    model: ModelUnderTest,
    options: CallOptions,
    metadata: ModelMetadata,
    info: ModelInfo,
    predictions: HashMap<PathBuf, Result<Predictions, PluginFailure>>,
}

impl Side {
    fn new(role: &'static str, model: ModelUnderTest, seed: u64) -> Result<(Side, u64), GateError> {
        let options = CallOptions {
            seed,
            bundle: model.bundle.clone(),
            ..CallOptions::default()
        };
        if model.plugin.world != World::Model {
            return Err(GateError::Model {
                role,
                source: Box::new(PluginFailure::new(
                    crate::FailureKind::InvalidComponent,
                    format!("expected a model plugin, got a {}", model.plugin.world),
                )),
            });
        }
        let out = model
            .plugin
            .metadata(&options)
            .map_err(|source| GateError::Model {
                role,
                source: Box::new(source),
            })?;
        let info = ModelInfo {
            metadata: out.value.clone(),
            digest: model.plugin.digest.to_string(),
            bundle_digest: model.bundle.as_ref().map(|b| b.digest.to_string()),
        };
        Ok((
            Side {
                model,
                options,
                metadata: out.value,
                info,
                predictions: HashMap::new(),
            },
            out.fuel_used,
        ))
    }

    fn predict(&mut self, d: &Dataset, fuel: &mut u64) -> Result<Predictions, PluginFailure> {
        if let Some(p) = self.predictions.get(&d.path) {
            return p.clone();
        }
        let inputs = data::model_inputs(&d.batch, &self.metadata.inputs);
        let r = self.model.plugin.predict(&self.options, &inputs).map(|o| {
            *fuel += o.fuel_used;
            o.value
        });
        self.predictions.insert(d.path.clone(), r.clone());
        r
    }

    fn report(&self) -> ModelReport {
        ModelReport {
            digest: self.model.plugin.digest,
            bundle_digest: self.model.bundle.as_ref().map(|b| b.digest),
            name: self.metadata.name.clone(),
            version: self.metadata.version.clone(),
        }
    }
}

/// The seed a run uses when none is given: stable for the same candidate
/// and gate, different across candidates.
pub fn derive_seed(candidate: Digest, gate_name: &str) -> u64 {
    let mut bytes = candidate.0.to_vec();
    bytes.extend_from_slice(gate_name.as_bytes());
    let d = Digest::of(&bytes);
    u64::from_le_bytes(d.0[..8].try_into().expect("8 bytes"))
}

impl GateRun<'_> {
    /// Runs every step and decides.
    pub fn run(self) -> Result<GateReport, GateError> {
        let start = Instant::now();
        let seed = self
            .seed
            .unwrap_or_else(|| derive_seed(self.candidate.plugin.digest, &self.spec.name));
        let mut model_fuel = 0u64;
        let (mut cand, f) = Side::new("candidate", self.candidate.clone(), seed)?;
        model_fuel += f;
        let mut base = match &self.baseline {
            Some(b) => {
                let (s, f) = Side::new("baseline", b.clone(), seed)?;
                model_fuel += f;
                Some(s)
            }
            None => None,
        };

        // Load everything first, so a broken gate is refused before any
        // verdict is produced.
        let mut validators = Vec::new();
        let mut datasets: HashMap<DataKey, Dataset> = HashMap::new();
        for step in &self.spec.steps {
            let path = self.spec.plugin_path(step, self.plugin_dir.as_deref());
            let plugin = self
                .sandbox
                .load_file(&path)
                .map_err(|source| GateError::Validator {
                    step: step.name.clone(),
                    path: path.clone(),
                    source: Box::new(source),
                })?;
            if plugin.world != World::Validator {
                return Err(GateError::Validator {
                    step: step.name.clone(),
                    path,
                    source: Box::new(SandboxError::Plugin(PluginFailure::new(
                        crate::FailureKind::InvalidComponent,
                        "expected a validator plugin, got a model",
                    ))),
                });
            }
            for p in std::iter::once(&step.dataset).chain(step.reference.as_ref()) {
                let key = (self.spec.resolve(p), step.label.clone());
                if let std::collections::hash_map::Entry::Vacant(slot) = datasets.entry(key) {
                    let d = data::read_csv(
                        &slot.key().0,
                        Some(&cand.metadata.inputs),
                        step.label.as_deref(),
                    )
                    .map_err(|source| GateError::Data {
                        step: step.name.clone(),
                        source,
                    })?;
                    slot.insert(d);
                }
            }
            validators.push((path, plugin));
        }

        let mut steps = Vec::new();
        for (step, (path, plugin)) in self.spec.steps.iter().zip(validators) {
            let report = self.run_step(
                step,
                &path,
                &plugin,
                &datasets,
                &mut cand,
                base.as_mut(),
                seed,
                &mut model_fuel,
            );
            steps.push(report);
        }
        let decision = policy::decide(
            steps
                .iter()
                .map(|s| (s.name.as_str(), s.advisory, s.status)),
        );
        let total_fuel = model_fuel + steps.iter().map(|s| s.fuel_used).sum::<u64>();
        Ok(GateReport {
            gate: self.spec.name.clone(),
            passed: decision.passed,
            decision,
            seed,
            candidate: cand.report(),
            baseline: base.as_ref().map(Side::report),
            steps,
            model_fuel_used: model_fuel,
            total_fuel_used: total_fuel,
            duration_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &self,
        step: &StepSpec,
        path: &Path,
        plugin: &Arc<Plugin>,
        datasets: &HashMap<DataKey, Dataset>,
        cand: &mut Side,
        mut base: Option<&mut Side>,
        seed: u64,
        model_fuel: &mut u64,
    ) -> StepReport {
        let start = Instant::now();
        let data = &datasets[&(self.spec.resolve(&step.dataset), step.label.clone())];
        let reference = step
            .reference
            .as_ref()
            .map(|r| &datasets[&(self.spec.resolve(r), step.label.clone())]);
        let mut report = StepReport {
            name: step.name.clone(),
            plugin: path.display().to_string(),
            plugin_digest: plugin.digest,
            validator: plugin
                .describe(&CallOptions::default())
                .ok()
                .map(|o| o.value),
            advisory: self.spec.policy.advisory.contains(&step.name),
            dataset_digest: data.digest,
            reference_digest: reference.map(|r| r.digest),
            status: StepStatus::Error,
            findings: Vec::new(),
            metrics: Vec::new(),
            fuel_used: 0,
            candidate_fuel_used: 0,
            duration_ms: 0.0,
            error: None,
        };
        let fail = |mut r: StepReport, who: &str, what: &Path, f: PluginFailure| {
            r.error = Some(PluginFailure {
                message: format!("{who} failed on {}: {}", what.display(), f.message),
                ..f
            });
            r.duration_ms = start.elapsed().as_secs_f64() * 1e3;
            r
        };

        let cand_preds = match cand.predict(data, model_fuel) {
            Ok(p) => p,
            Err(f) => return fail(report, "candidate", &data.path, f),
        };
        let base_preds = match base.as_deref_mut().map(|b| b.predict(data, model_fuel)) {
            Some(Err(f)) => return fail(report, "baseline", &data.path, f),
            Some(Ok(p)) => Some(p),
            None => None,
        };
        let reference = match reference {
            None => None,
            Some(r) => {
                let cp = match cand.predict(r, model_fuel) {
                    Ok(p) => p,
                    Err(f) => return fail(report, "candidate", &r.path, f),
                };
                let bp = match base.as_deref_mut().map(|b| b.predict(r, model_fuel)) {
                    Some(Err(f)) => return fail(report, "baseline", &r.path, f),
                    Some(Ok(p)) => Some(p),
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
        let link = CandidateLink {
            plugin: cand.model.plugin.clone(),
            options: cand.options.clone(),
            metadata: cand.metadata.clone(),
        };
        match plugin.validate(&options, &ctx, Some(link)) {
            Ok(out) => {
                report.status = if out.value.passed {
                    StepStatus::Pass
                } else {
                    StepStatus::Fail
                };
                report.findings = out.value.findings.iter().map(FindingReport::from).collect();
                report.metrics = out
                    .value
                    .metrics
                    .iter()
                    .map(|m| (m.name.clone(), m.value))
                    .collect();
                report.fuel_used = out.fuel_used;
                report.candidate_fuel_used = out.candidate_fuel_used;
            }
            Err(f) => {
                report.fuel_used = f.fuel_used;
                report.error = Some(f);
            }
        }
        report.duration_ms = start.elapsed().as_secs_f64() * 1e3;
        report
    }
}

/// Loads a model and its optional bundle for a gate run or `plugin run`.
pub fn load_model(
    sandbox: &Sandbox,
    path: &Path,
    bundle: Option<&Path>,
) -> Result<ModelUnderTest, SandboxError> {
    let plugin = sandbox.load_file(path)?;
    let caps = &sandbox.config().bundle_caps;
    let bundle = bundle
        .map(|b| Bundle::from_path_with(b, caps))
        .transpose()?;
    Ok(ModelUnderTest { plugin, bundle })
}
