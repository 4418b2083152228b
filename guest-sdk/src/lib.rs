//! The crate airlock plugin authors depend on.
//!
//! A plugin is a Rust crate compiled to a `wasm32-wasip2` component that
//! implements one of the worlds of `airlock:plugin@0.2.0` (see `wit/airlock.wit`):
//!
//! * a **model** implements [`Model`] and exports it with [`export_model!`]
//!   (enable the `model` feature) — or, when it parses a data bundle,
//!   implements [`BundledModel`] and exports it with
//!   [`export_bundled_model!`], so the parse runs once in `init` and every
//!   call starts from the host's snapshot of the parsed model;
//! * a **validator** implements [`Validator`] and exports it with
//!   [`export_validator!`] (enable the `validator` feature).
//!
//! Everything else here exists so that a plugin's own code stays about its
//! job: typed column access on [`Batch`], prediction helpers on
//! [`Predictions`], a [`Report`] that turns checks into a [`Verdict`], config
//! parsing whose errors name the step and key ([`config`]), the error codes
//! the host interprets ([`codes`]), bundle reading for models, and the
//! [`stats`] crate with the metrics and drift tests validators need.
//!
//! Validators follow one rule for the host's configuration check: when
//! [`Context::is_dry_run`] holds, check the whole configuration and return
//! a passing verdict without findings (see `docs/plugin-authoring.md`).
//!
//! ```text
//! use airlock_guest::{stats::metrics, Context, PluginError, Report, Validator, ValidatorInfo, Verdict};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { min_accuracy: f64 }
//!
//! struct Accuracy;
//!
//! impl Validator for Accuracy {
//!     fn describe() -> ValidatorInfo {
//!         ValidatorInfo::new("accuracy", "0.1.0", "accuracy at or above a threshold")
//!     }
//!     fn validate(ctx: Context) -> Result<Verdict, PluginError> {
//!         let cfg: Config = ctx.config()?;
//!         let labels = ctx.labels()?;
//!         if ctx.is_dry_run() {
//!             return Ok(Report::new().finish()); // config checked, no rows to judge
//!         }
//!         let acc = metrics::accuracy(labels, &ctx.candidate_predictions.predicted_classes())?;
//!         let mut report = Report::new();
//!         report.metric("accuracy", acc);
//!         report.require(acc >= cfg.min_accuracy, "accuracy-below-threshold",
//!             format!("accuracy {acc:.4} < {}", cfg.min_accuracy));
//!         Ok(report.finish())
//!     }
//! }
//!
//! airlock_guest::export_validator!(Accuracy);
//! ```
#![deny(unsafe_code)]

extern crate self as airlock_guest;

pub mod batch;
pub mod bundle;
pub mod config;
pub mod preinit;
pub mod report;
pub mod testing;

/// The machine-readable error codes the host interprets, as constants so
/// that validators and the host cannot drift apart on spelling.
///
/// The host treats the codes in [`codes::GATE_MISCONFIGURED`] as "the gate
/// file is wrong" (exit 2, before any step judges the candidate) rather than
/// "the candidate was refused".
pub mod codes {
    /// The step's configuration cannot be used (unknown key, wrong type,
    /// value out of range, a key that does not fit the candidate).
    pub const BAD_CONFIG: &str = "bad-config";
    /// The step needs labels but names no `label` column.
    pub const MISSING_LABELS: &str = "missing-labels";
    /// The step's configuration names a column the dataset lacks.
    pub const MISSING_COLUMN: &str = "missing-column";
    /// The step needs a reference dataset but names none.
    pub const MISSING_REFERENCE: &str = "missing-reference";
    /// The rows cannot be processed (wrong kind of column, wrong lengths).
    pub const BAD_INPUT: &str = "bad-input";
    /// A model was given a batch without one of its declared features.
    pub const MISSING_FEATURE: &str = "missing-feature";
    /// Codes that mean the gate step is misconfigured, not that the
    /// candidate is bad.
    pub const GATE_MISCONFIGURED: [&str; 4] = [
        BAD_CONFIG,
        MISSING_LABELS,
        MISSING_COLUMN,
        MISSING_REFERENCE,
    ];
    /// What a candidate's own error becomes when its code is one of
    /// [`GATE_MISCONFIGURED`] (see [`crate::candidate::predict`]).
    pub const CANDIDATE_ERROR: &str = "candidate-error";

    /// An error the candidate returned to a validator's probe, made safe to
    /// pass on with `?`: a candidate must not be able to make its own
    /// failure read as "the gate is misconfigured" (exit 2, no refusal), so
    /// a misconfiguration code from it becomes [`CANDIDATE_ERROR`], keeping
    /// the original code in the message. Other codes pass unchanged.
    pub fn from_candidate(e: crate::PluginError) -> crate::PluginError {
        if GATE_MISCONFIGURED.contains(&e.code.as_str()) {
            crate::PluginError::new(
                CANDIDATE_ERROR,
                format!("the candidate failed with `{}`: {}", e.code, e.message),
            )
        } else {
            e
        }
    }
}

pub use report::Report;

pub use airlock_stats as stats;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Bindings for the types both worlds share, generated once so that model
/// and validator code (and this crate's helpers) all see the same Rust types.
#[allow(missing_docs, unsafe_code, clippy::all)]
mod shared {
    wit_bindgen::generate!({
        path: "../wit",
        inline: "
            package airlock:sdk;
            world shared {
                import airlock:plugin/types@0.2.0;
                import airlock:plugin/validation@0.2.0;
                import airlock:plugin/failures@0.2.0;
            }
        ",
        world: "airlock:sdk/shared",
        generate_all,
        generate_unused_types: true,
        additional_derives: [PartialEq],
        runtime_path: "airlock_guest::__wit_bindgen::rt",
    });
}

pub use shared::airlock::plugin::failures::{CandidateError, FailureKind, SandboxFailure};
pub use shared::airlock::plugin::types::{
    Batch, Column, ColumnValues, Feature, FeatureKind, ModelMetadata, OutputSchema, PluginError,
    Predictions, Task,
};
pub use shared::airlock::plugin::validation::{
    Context, Finding, Metric, ModelInfo, Reference, Severity, ValidatorInfo, Verdict,
};

/// Bindings of the `model` world; used through [`export_model!`].
#[cfg(feature = "model")]
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod model_world {
    wit_bindgen::generate!({
        path: "../wit",
        world: "airlock:plugin/model@0.2.0",
        with: {
            "airlock:plugin/types@0.2.0": crate::shared::airlock::plugin::types,
        },
        pub_export_macro: true,
        export_macro_name: "__airlock_export_model_world",
        default_bindings_module: "airlock_guest::model_world",
        runtime_path: "airlock_guest::__wit_bindgen::rt",
    });
}

/// Bindings of the `preinitialized-model` world; used through
/// [`export_bundled_model!`].
#[cfg(feature = "model")]
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod preinit_world {
    wit_bindgen::generate!({
        path: "../wit",
        world: "airlock:plugin/preinitialized-model@0.2.0",
        with: {
            "airlock:plugin/types@0.2.0": crate::shared::airlock::plugin::types,
        },
        pub_export_macro: true,
        export_macro_name: "__airlock_export_preinit_world",
        default_bindings_module: "airlock_guest::preinit_world",
        runtime_path: "airlock_guest::__wit_bindgen::rt",
    });
}

/// Bindings of the `validator` world; used through [`export_validator!`] and
/// [`candidate`].
#[cfg(feature = "validator")]
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod validator_world {
    wit_bindgen::generate!({
        path: "../wit",
        world: "airlock:plugin/validator@0.2.0",
        with: {
            "airlock:plugin/types@0.2.0": crate::shared::airlock::plugin::types,
            "airlock:plugin/validation@0.2.0": crate::shared::airlock::plugin::validation,
            "airlock:plugin/failures@0.2.0": crate::shared::airlock::plugin::failures,
            "airlock:plugin/candidate@0.2.0": generate,
        },
        pub_export_macro: true,
        export_macro_name: "__airlock_export_validator_world",
        default_bindings_module: "airlock_guest::validator_world",
        runtime_path: "airlock_guest::__wit_bindgen::rt",
    });
}

/// A model plugin: declares its schema and scores batches.
///
/// The host creates a fresh instance for every call, so a model keeps no
/// state between calls; it reads its data bundle (see [`bundle`]) when it
/// needs it. A model that parses its bundle should implement
/// [`BundledModel`] instead, which parses it once, before the first call.
pub trait Model {
    /// The model's name, version, typed inputs and output schema, or why
    /// they cannot be given (e.g. an unreadable bundle).
    fn metadata() -> Result<ModelMetadata, PluginError>;
    /// Scores every row of `batch`.
    fn predict(batch: Batch) -> Result<Predictions, PluginError>;
}

/// A model whose state is parsed from its data bundle's model file — the
/// glue every bundle-backed model (XGBoost, linear, ...) would otherwise
/// write again: read `/bundle`'s model file, parse it, declare metadata
/// from the parsed model, score batches with it.
///
/// Exported with [`export_bundled_model!`], the model is
/// *pre-initialised*: its `init` parses the bundle once, the host snapshots
/// the instance right after, and every call starts from that snapshot with
/// the parsed model already in memory (see [`preinit`]). Implementing it
/// also implements [`Model`], which parses on every call — the behaviour
/// of [`export_model!`], and what native tests get when they never call
/// `init`.
pub trait BundledModel {
    /// The parsed model.
    type Parsed: Send + Sync + 'static;
    /// Parses the bundle's model file.
    fn parse(bytes: &[u8]) -> Result<Self::Parsed, PluginError>;
    /// The metadata the parsed model declares.
    fn metadata_of(parsed: &Self::Parsed) -> ModelMetadata;
    /// Scores every row of `batch` with the parsed model.
    fn predict_with(parsed: &Self::Parsed, batch: &Batch) -> Result<Predictions, PluginError>;
}

/// Reads and parses the bundle's model file for `M`.
pub fn load_bundled<M: BundledModel>() -> Result<M::Parsed, PluginError> {
    let bytes = bundle::read_model_file()?;
    M::parse(&bytes)
}

impl<M: BundledModel> Model for M {
    fn metadata() -> Result<ModelMetadata, PluginError> {
        preinit::with_parsed::<M, _>(|parsed| Ok(M::metadata_of(parsed)))
    }

    fn predict(batch: Batch) -> Result<Predictions, PluginError> {
        preinit::with_parsed::<M, _>(|parsed| M::predict_with(parsed, &batch))
    }
}

/// A validator plugin: one step of a deployment gate.
pub trait Validator {
    /// Who the validator is, for reports and inspection.
    fn describe() -> ValidatorInfo;
    /// Judges the candidate described by `ctx`.
    fn validate(ctx: Context) -> Result<Verdict, PluginError>;
}

#[cfg(feature = "model")]
impl<T: Model> model_world::Guest for T {
    fn metadata() -> Result<ModelMetadata, PluginError> {
        <T as Model>::metadata()
    }
    fn predict(batch: Batch) -> Result<Predictions, PluginError> {
        <T as Model>::predict(batch)
    }
}

#[cfg(feature = "model")]
impl<T: BundledModel> preinit_world::Guest for T {
    fn init() -> Result<(), PluginError> {
        preinit::init::<T>()
    }
    fn metadata() -> Result<ModelMetadata, PluginError> {
        <T as Model>::metadata()
    }
    fn predict(batch: Batch) -> Result<Predictions, PluginError> {
        <T as Model>::predict(batch)
    }
}

#[cfg(feature = "validator")]
impl<T: Validator> validator_world::Guest for T {
    fn describe() -> ValidatorInfo {
        <T as Validator>::describe()
    }
    fn validate(ctx: Context) -> Result<Verdict, PluginError> {
        let step = ctx.step.clone();
        <T as Validator>::validate(ctx).map_err(|e| config::in_step(&step, e))
    }
}

/// Exports a type implementing [`Model`] as the component's `model` world.
#[cfg(feature = "model")]
#[macro_export]
macro_rules! export_model {
    ($ty:ident) => {
        $crate::model_world::__airlock_export_model_world!($ty with_types_in $crate::model_world);
    };
}

/// Exports a type implementing [`BundledModel`] as the component's
/// `preinitialized-model` world: the host runs its `init` (which parses the
/// bundle) once and starts every call from the snapshot taken after it.
#[cfg(feature = "model")]
#[macro_export]
macro_rules! export_bundled_model {
    ($ty:ident) => {
        $crate::preinit_world::__airlock_export_preinit_world!($ty with_types_in $crate::preinit_world);
    };
}

/// Exports a type implementing [`Validator`] as the component's `validator`
/// world.
#[cfg(feature = "validator")]
#[macro_export]
macro_rules! export_validator {
    ($ty:ident) => {
        $crate::validator_world::__airlock_export_validator_world!($ty with_types_in $crate::validator_world);
    };
}

/// Embeds the plugin's manifest: a TOML document whose `[limits]` table
/// asks the host for *lower* limits than its defaults (it can never get
/// more). The text lands in the component's `airlock-manifest` custom
/// section, so it is covered by the component's digest and shown by
/// `airlock plugin inspect`.
///
/// ```text
/// airlock_guest::manifest!("[limits]\nfuel = 200_000_000\nmemory_bytes = 67_108_864\n");
/// ```
#[macro_export]
macro_rules! manifest {
    ($toml:expr) => {
        const _: () = {
            const TEXT: &str = $toml;
            #[cfg_attr(target_family = "wasm", unsafe(link_section = "airlock-manifest"))]
            #[used]
            static AIRLOCK_MANIFEST: [u8; TEXT.len()] =
                $crate::__manifest_bytes::<{ TEXT.len() }>(TEXT);
        };
    };
}

#[doc(hidden)]
pub const fn __manifest_bytes<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// The candidate model, callable from a validator (for probes).
///
/// Each call runs in the candidate's own sandbox on the host; its fuel is
/// charged to the calling validator.
#[cfg(feature = "validator")]
pub mod candidate {
    use crate::{Batch, CandidateError, ModelMetadata, Predictions};

    /// The candidate's declared metadata.
    pub fn metadata() -> ModelMetadata {
        crate::validator_world::airlock::plugin::candidate::metadata()
    }

    /// Runs the candidate on `batch`. The error tells the candidate's own
    /// refusal ([`CandidateError::Refused`]) from the sandbox stopping it
    /// ([`CandidateError::Failed`], with the host's [`crate::FailureKind`])
    /// and from a request the host would not pass on
    /// ([`CandidateError::InvalidRequest`]). With `?` it becomes a
    /// [`crate::PluginError`] that cannot pose as a misconfigured gate.
    pub fn predict(batch: &Batch) -> Result<Predictions, CandidateError> {
        crate::validator_world::airlock::plugin::candidate::predict(batch)
    }
}

impl CandidateError {
    /// Whether the sandbox stopped the candidate (a limit, a trap, a broken
    /// contract): never a considered answer of the model's.
    pub fn is_sandbox_failure(&self) -> bool {
        matches!(self, CandidateError::Failed(_))
    }

    /// Whether the candidate ran and returned its own error.
    pub fn is_refusal(&self) -> bool {
        matches!(self, CandidateError::Refused(_))
    }

    /// A short machine-readable code: the candidate's own code for a
    /// refusal, `candidate-<kind>` (the WIT name of the failure kind) for a
    /// sandbox failure, `invalid-request` for a refused request.
    pub fn code(&self) -> String {
        match self {
            CandidateError::Refused(e) => e.code.clone(),
            CandidateError::Failed(f) => format!("candidate-{}", f.kind.name()),
            CandidateError::InvalidRequest(_) => "invalid-request".to_string(),
        }
    }

    /// What went wrong, for people.
    pub fn message(&self) -> &str {
        match self {
            CandidateError::Refused(e) => &e.message,
            CandidateError::Failed(f) => &f.message,
            CandidateError::InvalidRequest(m) => m,
        }
    }
}

impl FailureKind {
    /// The kind's name as the WIT spells it (`fuel-exhausted`); the host
    /// reports the same kind in snake case (`fuel_exhausted`). The match
    /// is exhaustive, so a kind added to the WIT cannot go unnamed.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::FuelExhausted => "fuel-exhausted",
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::StackOverflow => "stack-overflow",
            FailureKind::Trap => "trap",
            FailureKind::DisallowedImport => "disallowed-import",
            FailureKind::InvalidComponent => "invalid-component",
            FailureKind::OutputTooLarge => "output-too-large",
            FailureKind::InputTooLarge => "input-too-large",
            FailureKind::InvalidOutput => "invalid-output",
            FailureKind::Busy => "busy",
        }
    }
}

/// An error from the candidate, made safe to pass on with `?`: a candidate
/// must not be able to make its own failure read as "the gate is
/// misconfigured" (exit 2, no refusal), so a refusal whose code is a
/// misconfiguration code becomes [`codes::CANDIDATE_ERROR`] (see
/// [`codes::from_candidate`]); a sandbox failure keeps its
/// `candidate-<kind>` code; a refused request is `bad-input`.
impl From<CandidateError> for PluginError {
    fn from(e: CandidateError) -> Self {
        match e {
            CandidateError::Refused(e) => codes::from_candidate(e),
            CandidateError::Failed(ref f) => PluginError::new(e.code(), f.message.clone()),
            CandidateError::InvalidRequest(m) => PluginError::bad_input(format!(
                "the host refused to pass this batch to the candidate: {m}"
            )),
        }
    }
}

impl PluginError {
    /// An error with a machine-readable `code` and a message for people.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The step's configuration could not be used. Prefer
    /// [`config::key_error`], which names the key in the form the host
    /// maps to a line of the gate file.
    pub fn bad_config(message: impl Into<String>) -> Self {
        Self::new(codes::BAD_CONFIG, message)
    }

    /// The input rows cannot be processed.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(codes::BAD_INPUT, message)
    }

    /// Whether the host should read this error as "the gate step is
    /// misconfigured" (see [`codes::GATE_MISCONFIGURED`]).
    pub fn is_misconfiguration(&self) -> bool {
        codes::GATE_MISCONFIGURED.contains(&self.code.as_str())
    }
}

impl From<airlock_stats::StatsError> for PluginError {
    fn from(e: airlock_stats::StatsError) -> Self {
        PluginError::new("stats", e.to_string())
    }
}

impl ValidatorInfo {
    /// Describes a validator.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        ValidatorInfo {
            name: name.to_string(),
            version: version.to_string(),
            description: description.to_string(),
        }
    }
}

impl Context {
    /// Parses the step's JSON configuration into `T`. A wrong, missing or
    /// unknown key is a `bad-config` error reading
    /// ``step `<step>`: config key `<dotted.path>`: <problem>`` (see
    /// [`config`]).
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError> {
        config::parse(&self.step, &self.config)
    }

    /// A `bad-config` error about `key` of this step's configuration.
    pub fn config_error(&self, key: impl AsRef<str>, problem: impl AsRef<str>) -> PluginError {
        config::in_step(&self.step, config::key_error(key, problem))
    }

    /// Names this step in a configuration error that does not name it yet
    /// (other errors pass through). The SDK's export glue applies it to
    /// whatever `validate` returns; validators' own code paths may apply it
    /// too, e.g. so native tests see the final message.
    pub fn name_step(&self, e: PluginError) -> PluginError {
        config::in_step(&self.step, e)
    }

    /// Whether this call is the host's configuration check: the host calls
    /// `validate` once per step before any step runs, with batches of zero
    /// rows (columns present, no values), predictions of the declared width
    /// with no values, and labels `Some(empty)` when the step names a label.
    ///
    /// The rule for validators: parse and check the whole configuration,
    /// including everything that needs only column names and the model's
    /// metadata, return an error for a misconfiguration, and otherwise
    /// return a passing verdict with no findings — never an error or a
    /// failure caused by the empty data.
    pub fn is_dry_run(&self) -> bool {
        self.data.rows == 0
    }

    /// This context as the host's dry run presents it: every batch keeps
    /// its columns but has zero rows, predictions keep their width but hold
    /// no values, and labels present stay present (empty). For validators'
    /// own tests of the dry-run rule (see [`Context::is_dry_run`]).
    pub fn as_dry_run(&self) -> Context {
        fn empty(b: &Batch) -> Batch {
            b.select_rows(&[])
        }
        fn none(p: &Predictions) -> Predictions {
            Predictions {
                width: p.width,
                values: Vec::new(),
            }
        }
        Context {
            step: self.step.clone(),
            config: self.config.clone(),
            seed: self.seed,
            candidate: self.candidate.clone(),
            baseline: self.baseline.clone(),
            data: empty(&self.data),
            labels: self.labels.as_ref().map(|_| Vec::new()),
            candidate_predictions: none(&self.candidate_predictions),
            baseline_predictions: self.baseline_predictions.as_ref().map(none),
            reference: self.reference.as_ref().map(|r| Reference {
                data: empty(&r.data),
                labels: r.labels.as_ref().map(|_| Vec::new()),
                candidate_predictions: none(&r.candidate_predictions),
                baseline_predictions: r.baseline_predictions.as_ref().map(none),
            }),
        }
    }

    /// The evaluation labels, or a `missing-labels` error when the step
    /// names no label column.
    pub fn labels(&self) -> Result<&[f64], PluginError> {
        self.labels.as_deref().ok_or_else(|| {
            PluginError::new(
                codes::MISSING_LABELS,
                format!(
                    "step `{}` needs labels: add `label = \"<column>\"` to the step in the gate file, naming the dataset's label column",
                    self.step
                ),
            )
        })
    }

    /// The reference window, or a `missing-reference` error when the step
    /// names none.
    pub fn reference(&self) -> Result<&Reference, PluginError> {
        self.reference.as_ref().ok_or_else(|| {
            PluginError::new(
                codes::MISSING_REFERENCE,
                format!(
                    "step `{}` needs a reference dataset: add `reference = \"<file.csv>\"` to the step in the gate file",
                    self.step
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            step: "accuracy".into(),
            config: "{}".into(),
            seed: 3,
            candidate: ModelInfo {
                metadata: ModelMetadata {
                    name: "m".into(),
                    version: "1".into(),
                    inputs: vec![],
                    output: OutputSchema {
                        task: Task::BinaryClassification,
                        classes: vec!["no".into(), "yes".into()],
                    },
                },
                digest: "sha256:00".into(),
                bundle_digest: None,
            },
            baseline: None,
            data: Batch::from_numeric(vec![("x".into(), vec![1.0, 2.0])]).unwrap(),
            labels: None,
            candidate_predictions: Predictions::probabilities(2, vec![0.2, 0.8, 0.6, 0.4]),
            baseline_predictions: None,
            reference: None,
        }
    }

    #[test]
    fn missing_labels_tells_the_author_to_add_label_to_the_step() {
        let e = ctx().labels().unwrap_err();
        assert_eq!(e.code, codes::MISSING_LABELS);
        assert_eq!(
            e.message,
            "step `accuracy` needs labels: add `label = \"<column>\"` to the step in the gate file, naming the dataset's label column"
        );
        assert!(e.is_misconfiguration());
        assert_eq!(ctx().name_step(e.clone()), e, "already names its step");
    }

    #[test]
    fn a_candidate_cannot_pose_as_a_misconfigured_gate() {
        let e = codes::from_candidate(PluginError::new("bad-config", "nope"));
        assert_eq!(e.code, "candidate-error");
        assert_eq!(e.message, "the candidate failed with `bad-config`: nope");
        assert!(!e.is_misconfiguration());
        let own = PluginError::new("bad-input", "x must be finite");
        assert_eq!(codes::from_candidate(own.clone()), own);
    }

    #[test]
    fn the_dry_run_keeps_names_and_widths_but_no_values() {
        let mut c = ctx();
        c.labels = Some(vec![1.0, 0.0]);
        assert!(!c.is_dry_run());
        let d = c.as_dry_run();
        assert!(d.is_dry_run());
        assert_eq!(d.data.column_names().collect::<Vec<_>>(), ["x"]);
        assert_eq!(d.data.numeric("x").unwrap(), &[] as &[f64]);
        assert_eq!(d.candidate_predictions.width, 2);
        assert!(d.candidate_predictions.values.is_empty());
        assert_eq!(d.labels, Some(vec![]));
        assert_eq!(ctx().as_dry_run().labels, None);
    }

    #[test]
    fn config_errors_built_by_validators_name_step_and_key() {
        let e = ctx().config_error("min.accuracy", "must be in [0, 1], got 2");
        assert_eq!(e.code, codes::BAD_CONFIG);
        assert_eq!(
            e.message,
            "step `accuracy`: config key `min.accuracy`: must be in [0, 1], got 2"
        );
        assert_eq!(ctx().name_step(e.clone()), e, "named once");
    }
}
