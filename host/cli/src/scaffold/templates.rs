//! The source a new plugin starts from (`airlock plugin new`): one
//! template per world, with `__NAME__` and `__TYPE__` filled in by
//! `scaffold::create`. Kept apart from the scaffolding logic because it is
//! guest code, read and edited as such.

/// `src/lib.rs` of a new model plugin.
pub(super) const MODEL_TEMPLATE: &str = r#"//! __NAME__: an airlock model plugin.
//!
//! The host calls `metadata` to learn the model's inputs and outputs and
//! `predict` on every batch, each time in a fresh sandboxed instance. A
//! model that needs weights reads them from its data bundle with
//! `airlock_guest::bundle::read_model_file()`; one that parses them should
//! implement `airlock_guest::BundledModel` and export it with
//! `export_bundled_model!`, so the parse runs once, in `init`.
//!
//! Build and try it:
//!
//! ```text
//! airlock plugin build __NAME__ -o __NAME__.wasm
//! airlock plugin run __NAME__.wasm --data rows.csv   # a CSV with a column `x`
//! ```

use airlock_guest::{Batch, Feature, FeatureKind, Model, ModelMetadata, OutputSchema};
use airlock_guest::{PluginError, Predictions, Task};

/// The model.
pub struct __TYPE__;

impl Model for __TYPE__ {
    fn metadata() -> Result<ModelMetadata, PluginError> {
        Ok(ModelMetadata {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            inputs: vec![Feature {
                name: "x".into(),
                kind: FeatureKind::Numeric,
            }],
            output: OutputSchema {
                task: Task::Regression,
                classes: vec![],
            },
        })
    }

    fn predict(batch: Batch) -> Result<Predictions, PluginError> {
        // Replace with your model: here, y = 2x + 1.
        let x = batch.numeric("x")?;
        Ok(Predictions::regression(
            x.iter().map(|v| 2.0 * v + 1.0).collect(),
        ))
    }
}

airlock_guest::export_model!(__TYPE__);
"#;

/// `src/lib.rs` of a new validator plugin.
pub(super) const VALIDATOR_TEMPLATE: &str = r#"//! __NAME__: an airlock validator plugin.
//!
//! One step of a deployment gate: it receives the step's config, the
//! evaluation rows, their labels and the candidate's predictions, and
//! returns a verdict with findings and metrics.
//!
//! Build it with `airlock plugin build __NAME__ -o __NAME__.wasm`, then use it
//! in a gate file and run `airlock gate run gate.toml --model <model.wasm>`:
//!
//! ```toml
//! [[steps]]
//! name = "accuracy"
//! plugin = "__NAME__.wasm"   # relative to the gate file
//! dataset = "eval.csv"
//! label = "target"           # the label column: class indices 0, 1, ...
//! [steps.config]
//! min_accuracy = 0.9
//! ```

use airlock_guest::stats::metrics;
use airlock_guest::{Context, PluginError, Report, Validator, ValidatorInfo, Verdict};

/// The step's configuration (`[steps.config]` in the gate file).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    min_accuracy: f64,
}

/// The validator.
pub struct __TYPE__;

impl Validator for __TYPE__ {
    fn describe() -> ValidatorInfo {
        let about = "accuracy at or above a threshold";
        ValidatorInfo::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"), about)
    }

    fn validate(ctx: Context) -> Result<Verdict, PluginError> {
        // Check the whole config first: the host calls `validate` once with
        // zero rows (a dry run) before any step runs, to catch gate mistakes.
        let cfg: Config = ctx.config()?;
        if !(0.0..=1.0).contains(&cfg.min_accuracy) {
            let got = cfg.min_accuracy;
            return Err(ctx.config_error("min_accuracy", format!("must be in [0, 1], got {got}")));
        }
        let labels = ctx.labels()?;
        if ctx.is_dry_run() {
            return Ok(Report::new().finish());
        }
        let predicted = ctx.candidate_predictions.predicted_classes();
        let accuracy = metrics::accuracy(labels, &predicted)?;
        let mut report = Report::new();
        report.metric("accuracy", accuracy).require(
            accuracy >= cfg.min_accuracy,
            "accuracy-below-threshold",
            format!("accuracy {accuracy:.4} is below {}", cfg.min_accuracy),
        );
        Ok(report.finish())
    }
}

airlock_guest::export_validator!(__TYPE__);
"#;
