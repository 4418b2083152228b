//! Runs a gate: every step's validator in its own sandbox, against the
//! candidate's (and the baseline's) predictions on the step's data, with the
//! candidate callable for probes.
//!
//! What the runner guarantees, whatever the plugins do:
//! * a model receives exactly the columns it declares, never a label: a
//!   candidate that declares a column the gate uses as a label is refused
//!   before any step runs, and predictions are cached by exactly what the
//!   model saw (dataset digest and columns), so no step can reuse answers a
//!   model gave while seeing more;
//! * every prediction is checked against the model's declared contract
//!   before a validator sees it ([`CheckedModel`]);
//! * every step's configuration is checked by a dry run of its validator on
//!   zero rows before any step runs, so a misconfigured gate is an error of
//!   the gate (exit 2, naming the step, the key and its line), never a
//!   refused or passed candidate;
//! * the seed comes from the host's randomness unless given, and is
//!   recorded, so a submitter cannot grind candidates for a lucky sample,
//!   and a rerun with the same seed repeats exactly.
//!
//! A run is a [`GateJob`]: it owns everything it needs (a sandbox handle,
//! the gate behind an `Arc`, the models), so it is `Send + 'static` and a
//! server can hand it to a worker thread. [`GateRun`] is the borrowing form
//! for callers that hold the sandbox and the gate themselves (the CLI,
//! tests); it becomes a job to run.

mod config_check;
mod step;

pub use config_check::{CONFIG_ERROR_CODES, DRY_RUN_FUEL, DRY_RUN_TIMEOUT_MS};

use step::Scored;

use crate::data::{self, DataCaps, DataError, Dataset};
use airlock_core::capabilities::World;
use airlock_core::gate::policy;
use airlock_core::gate::report::{GateReport, ModelReport, RunInfo, StepRun, VerdictRecord};
use airlock_core::gate::spec::{GateSpec, SpecError};
use airlock_core::types::ValidatorInfo;
use airlock_runtime::error::{FailureKind, PluginFailure, SandboxError};
use airlock_runtime::sandbox::{Bundle, CallOptions, CheckedModel, Plugin, Sandbox};
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
/// itself (or the baseline it compares against) is broken (exit code 2), as
/// opposed to the candidate failing it.
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
    /// A step's configuration was refused by its validator's dry run.
    #[error("{file}:{line}:{column}: step `{step}`: {message}")]
    StepConfig {
        /// The gate file.
        file: String,
        /// 1-based line in the gate file.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The step.
        step: String,
        /// What the validator said.
        message: String,
    },
    /// The baseline model could not be used.
    #[error("baseline: {source}")]
    Baseline {
        /// Why.
        source: Box<PluginFailure>,
    },
    /// The host was at capacity (`busy`): nothing was judged; retry.
    #[error(
        "the host was busy and could not finish the run ({0}); nothing was judged, retry later"
    )]
    Busy(String),
    /// A model given to the gate is not a model.
    #[error("{role}: expected a model plugin, but this component is a {world}")]
    NotAModel {
        /// `candidate` or `baseline`.
        role: &'static str,
        /// What it is.
        world: World,
    },
}

/// One gate run that borrows its sandbox and gate: the convenient form
/// when the caller keeps both. [`GateRun::run`] runs it as a [`GateJob`].
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
    /// The seed every plugin sees; `None` draws one from the host's
    /// randomness (recorded in the report).
    pub seed: Option<u64>,
    /// Caps on the datasets the gate reads (the operator's `[data]`
    /// section); they belong to the run, not to the sandbox.
    pub data_caps: DataCaps,
}

impl GateRun<'_> {
    /// The owned job: a clone of the sandbox handle (cheap: it shares the
    /// engine and caches) and of the gate.
    pub fn into_job(self) -> GateJob {
        GateJob {
            sandbox: self.sandbox.clone(),
            spec: Arc::new(self.spec.clone()),
            candidate: self.candidate,
            baseline: self.baseline,
            plugin_dir: self.plugin_dir,
            seed: self.seed,
            data_caps: self.data_caps,
        }
    }

    /// Runs every step and decides; see [`GateJob::run`].
    pub fn run(self) -> Result<GateReport, GateError> {
        self.into_job().run()
    }
}

/// One gate run that owns what it needs, so it is `Send + 'static`: a
/// server can queue it and run it on a worker thread while the sandbox's
/// engine and caches stay shared with every other job.
#[derive(Clone)]
pub struct GateJob {
    /// The sandbox everything runs in (a handle sharing the engine and
    /// caches).
    pub sandbox: Sandbox,
    /// The gate, shared with whoever queued the job.
    pub spec: Arc<GateSpec>,
    /// The candidate model.
    pub candidate: ModelUnderTest,
    /// The production model, when there is one.
    pub baseline: Option<ModelUnderTest>,
    /// Overrides the gate file's `plugin_dir`.
    pub plugin_dir: Option<PathBuf>,
    /// The seed every plugin sees; `None` draws one from the host's
    /// randomness (recorded in the report).
    pub seed: Option<u64>,
    /// Caps on the datasets the gate reads (the operator's `[data]`
    /// section); they belong to the run, not to the sandbox.
    pub data_caps: DataCaps,
}

// A job must be able to move to another thread and outlive its caller.
const _: fn() = || {
    fn owned_and_sendable<T: Send + 'static>() {}
    owned_and_sendable::<GateJob>();
    owned_and_sendable::<GateReport>();
    owned_and_sendable::<GateError>();
};

/// A fresh seed from the operating system's randomness.
pub fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // getrandom only fails when the OS has no entropy source at all; a
    // clock-derived seed is still unpredictable enough to a submitter.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = (t as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    u64::from_le_bytes(b)
}

/// A loaded step: its validator and resolved paths.
struct LoadedStep {
    path: PathBuf,
    dataset: PathBuf,
    reference: Option<PathBuf>,
    plugin: Arc<Plugin>,
    info: Option<ValidatorInfo>,
}

impl GateJob {
    /// Runs every step and decides. `Err` means the gate (or its baseline)
    /// is broken; a candidate that fails is an `Ok` report that refuses it.
    pub fn run(self) -> Result<GateReport, GateError> {
        let start = Instant::now();
        let started_unix_ms = unix_ms_now();
        let seed = self.seed.unwrap_or_else(random_seed);
        let mut model_fuel = 0u64;
        let mut check_fuel = 0u64;

        for (role, m) in std::iter::once(("candidate", &self.candidate))
            .chain(self.baseline.as_ref().map(|b| ("baseline", b)))
        {
            if m.plugin.world != World::Model {
                return Err(GateError::NotAModel {
                    role,
                    world: m.plugin.world,
                });
            }
        }
        // Every column any step uses as its label is withheld from models
        // in every step.
        let mut withheld: Vec<String> = Vec::new();
        for s in &self.spec.steps {
            if let Some(l) = &s.label
                && !withheld.contains(l)
            {
                withheld.push(l.clone());
            }
        }
        let options = |m: &ModelUnderTest| CallOptions {
            seed,
            bundle: m.bundle.clone(),
            ..CallOptions::default()
        };
        let baseline = match &self.baseline {
            Some(b) => {
                let m = self
                    .sandbox
                    .open_model(b.plugin.clone(), options(b))
                    .map_err(|source| GateError::Baseline {
                        source: Box::new(source),
                    })?;
                model_fuel += m.metadata_fuel_used + init_fuel(&m);
                Some(m)
            }
            None => None,
        };
        let candidate = self
            .sandbox
            .open_model(self.candidate.plugin.clone(), options(&self.candidate))
            .and_then(|m| {
                if let Some(f) = m
                    .metadata
                    .inputs
                    .iter()
                    .find(|f| withheld.contains(&f.name))
                {
                    let step = self
                        .spec
                        .steps
                        .iter()
                        .find(|s| s.label.as_deref() == Some(&f.name))
                        .map_or("", |s| s.name.as_str());
                    let mut failure = PluginFailure::new(
                        FailureKind::InvalidOutput,
                        format!(
                            "the candidate declares input `{}`, which this gate withholds from models as the label of step `{step}`",
                            f.name.escape_debug()
                        ),
                    );
                    failure.fuel_used = m.metadata_fuel_used;
                    return Err(failure);
                }
                Ok(m)
            });
        let mut cand = match candidate {
            Ok(m) => {
                model_fuel += m.metadata_fuel_used + init_fuel(&m);
                Scored::new(m)
            }
            Err(f) if f.kind == FailureKind::Busy => return Err(GateError::Busy(f.message)),
            Err(f) => {
                model_fuel += f.fuel_used;
                return Ok(self.refused_candidate(
                    f,
                    seed,
                    baseline,
                    model_fuel,
                    (started_unix_ms, start),
                ));
            }
        };
        let mut base = baseline.map(Scored::new);
        let withheld_refs: Vec<&str> = withheld.iter().map(String::as_str).collect();

        // Load everything and check every step's configuration first, so a
        // broken gate is refused before any verdict is produced.
        let mut loaded = Vec::new();
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
                        FailureKind::InvalidComponent,
                        "expected a validator plugin, got a model",
                    ))),
                });
            }
            for p in std::iter::once(&step.dataset).chain(step.reference.as_ref()) {
                let key = (self.spec.resolve(p), step.label.clone());
                if let std::collections::hash_map::Entry::Vacant(slot) = datasets.entry(key) {
                    let data_err = |source| GateError::Data {
                        step: step.name.clone(),
                        source,
                    };
                    let d = data::read_csv_with(
                        &slot.key().0,
                        Some(&cand.model.metadata.inputs),
                        step.label.as_deref(),
                        &self.data_caps,
                    )
                    .map_err(data_err)?;
                    if step.label.is_some() {
                        let meta = &cand.model.metadata;
                        d.check_labels(meta.output.task, meta.output.classes.len())
                            .map_err(data_err)?;
                    }
                    // Every model must find its declared columns here (by
                    // name, or by position for `f0..fN` models).
                    for m in std::iter::once(&cand.model).chain(base.as_ref().map(|b| &b.model)) {
                        data::model_inputs(&d.batch, &m.metadata.inputs, &withheld_refs)
                            .map_err(data_err)?;
                    }
                    slot.insert(d);
                }
            }
            let info = match plugin.describe(&CallOptions::default()) {
                Ok(o) => {
                    check_fuel += o.fuel_used;
                    Some(o.value)
                }
                Err(f) => {
                    check_fuel += f.fuel_used;
                    None
                }
            };
            loaded.push(LoadedStep {
                path,
                dataset: self.spec.resolve(&step.dataset),
                reference: step.reference.as_ref().map(|r| self.spec.resolve(r)),
                plugin,
                info,
            });
        }
        for (i, (step, l)) in self.spec.steps.iter().zip(&loaded).enumerate() {
            check_fuel += self.check_config(i, step, l, &datasets, &cand, base.as_ref(), seed)?;
        }

        let mut steps = Vec::new();
        let mut step_runs = Vec::new();
        for (step, l) in self.spec.steps.iter().zip(loaded) {
            let (report, run) = self.run_step(
                step,
                l,
                &datasets,
                &mut cand,
                base.as_mut(),
                &withheld,
                seed,
                &mut model_fuel,
            );
            steps.push(report);
            step_runs.push(run);
        }
        // A step without a verdict because the host was at capacity says
        // nothing about the candidate: the run is not a judgement at all.
        if let Some(busy) = steps
            .iter()
            .filter_map(|s| s.error.as_ref())
            .find(|e| e.kind == FailureKind::Busy)
        {
            return Err(GateError::Busy(busy.message.clone()));
        }
        let decision = policy::decide(
            true,
            steps
                .iter()
                .map(|s| (s.name.as_str(), s.advisory, s.status)),
        );
        let total_fuel = model_fuel + check_fuel + steps.iter().map(|s| s.fuel_used).sum::<u64>();
        Ok(GateReport {
            verdict: VerdictRecord {
                gate: self.spec.name.clone(),
                gate_digest: self.spec.digest,
                passed: decision.passed,
                decision,
                seed,
                candidate: cand.report(),
                candidate_failure: None,
                baseline: base.as_ref().map(Scored::report),
                steps,
                model_fuel_used: model_fuel,
                check_fuel_used: check_fuel,
                total_fuel_used: total_fuel,
            },
            run: self.run_info(started_unix_ms, start, step_runs),
        })
    }

    /// How this run went on this host.
    fn run_info(&self, started_unix_ms: u64, start: Instant, steps: Vec<StepRun>) -> RunInfo {
        RunInfo {
            started_unix_ms,
            duration_ms: start.elapsed().as_secs_f64() * 1e3,
            gate_file: self.spec.path.as_ref().map(|p| p.display().to_string()),
            steps,
        }
    }

    /// The report for a candidate that could not be judged at all.
    fn refused_candidate(
        &self,
        failure: PluginFailure,
        seed: u64,
        baseline: Option<CheckedModel>,
        model_fuel: u64,
        (started_unix_ms, start): (u64, Instant),
    ) -> GateReport {
        let decision = policy::decide(false, std::iter::empty());
        let verdict = VerdictRecord {
            gate: self.spec.name.clone(),
            gate_digest: self.spec.digest,
            passed: false,
            decision,
            seed,
            candidate: ModelReport {
                digest: self.candidate.plugin.digest,
                bundle_digest: self.candidate.bundle.as_ref().map(|b| b.digest),
                snapshot_digest: None,
                name: String::new(),
                version: String::new(),
            },
            candidate_failure: Some(failure),
            baseline: baseline.map(|b| Scored::new(b).report()),
            steps: Vec::new(),
            model_fuel_used: model_fuel,
            check_fuel_used: 0,
            total_fuel_used: model_fuel,
        };
        GateReport {
            verdict,
            run: self.run_info(started_unix_ms, start, Vec::new()),
        }
    }

    fn spec_file_name(&self) -> String {
        self.spec
            .path
            .as_ref()
            .map_or_else(|| "<gate>".to_string(), |p| p.display().to_string())
    }
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

/// The fuel a pre-initialised model's `init` used (recorded with its
/// snapshot, so a rerun that finds the snapshot cached counts the same).
fn init_fuel(m: &CheckedModel) -> u64 {
    m.snapshot.as_ref().map_or(0, |s| s.init_fuel_used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_drawn_fresh() {
        assert_ne!(random_seed(), random_seed());
    }
}
