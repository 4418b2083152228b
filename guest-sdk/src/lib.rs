//! The crate airlock plugin authors depend on.
//!
//! A plugin is a Rust crate compiled to a `wasm32-wasip2` component that
//! implements one of the two worlds of `airlock:plugin` (see `wit/airlock.wit`):
//!
//! * a **model** implements [`Model`] and exports it with [`export_model!`]
//!   (enable the `model` feature);
//! * a **validator** implements [`Validator`] and exports it with
//!   [`export_validator!`] (enable the `validator` feature).
//!
//! Everything else here exists so that a plugin's own code stays about its
//! job: typed column access on [`Batch`], prediction helpers on
//! [`Predictions`], a [`Report`] that turns checks into a [`Verdict`], config
//! parsing, bundle reading for models, and the [`stats`] crate with the
//! metrics and drift tests validators need.
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
//!         let acc = metrics::accuracy(ctx.labels()?, &ctx.candidate_predictions.predicted_classes())?;
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
pub mod report;

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
                import airlock:plugin/types@0.1.0;
                import airlock:plugin/validation@0.1.0;
            }
        ",
        world: "airlock:sdk/shared",
        generate_all,
        generate_unused_types: true,
        additional_derives: [PartialEq],
        runtime_path: "airlock_guest::__wit_bindgen::rt",
    });
}

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
        world: "airlock:plugin/model@0.1.0",
        with: {
            "airlock:plugin/types@0.1.0": crate::shared::airlock::plugin::types,
        },
        pub_export_macro: true,
        export_macro_name: "__airlock_export_model_world",
        default_bindings_module: "airlock_guest::model_world",
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
        world: "airlock:plugin/validator@0.1.0",
        with: {
            "airlock:plugin/types@0.1.0": crate::shared::airlock::plugin::types,
            "airlock:plugin/validation@0.1.0": crate::shared::airlock::plugin::validation,
            "airlock:plugin/candidate@0.1.0": generate,
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
/// needs it.
pub trait Model {
    /// The model's name, version, typed inputs and output schema.
    fn metadata() -> ModelMetadata;
    /// Scores every row of `batch`.
    fn predict(batch: Batch) -> Result<Predictions, PluginError>;
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
    fn metadata() -> ModelMetadata {
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
        <T as Validator>::validate(ctx)
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
    use crate::{Batch, ModelMetadata, PluginError, Predictions};

    /// The candidate's declared metadata.
    pub fn metadata() -> ModelMetadata {
        crate::validator_world::airlock::plugin::candidate::metadata()
    }

    /// Runs the candidate on `batch`; an error names what went wrong in the
    /// candidate (its own error, or a sandbox limit such as `fuel_exhausted`).
    pub fn predict(batch: &Batch) -> Result<Predictions, PluginError> {
        crate::validator_world::airlock::plugin::candidate::predict(batch)
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

    /// The step's configuration could not be used.
    pub fn bad_config(message: impl Into<String>) -> Self {
        Self::new("bad-config", message)
    }

    /// The input rows cannot be processed.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new("bad-input", message)
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
    /// Parses the step's JSON configuration into `T`; unknown or missing
    /// keys are reported as a `bad-config` error naming the key.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError> {
        let text = if self.config.trim().is_empty() {
            "{}"
        } else {
            &self.config
        };
        serde_json::from_str(text)
            .map_err(|e| PluginError::bad_config(format!("step `{}`: {e}", self.step)))
    }

    /// The evaluation labels, or a `missing-labels` error when the step's
    /// dataset has none.
    pub fn labels(&self) -> Result<&[f64], PluginError> {
        self.labels.as_deref().ok_or_else(|| {
            PluginError::new(
                "missing-labels",
                format!(
                    "step `{}` needs labels: give the dataset a label column",
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
                "missing-reference",
                format!("step `{}` needs a reference dataset", self.step),
            )
        })
    }
}
