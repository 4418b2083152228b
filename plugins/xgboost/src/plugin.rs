//! The component glue: the `model` world implemented on top of [`crate::ensemble`].
//!
//! Why it is separate from the evaluator: the evaluator is plain Rust that is
//! tested natively against XGBoost; this module only translates between the
//! WIT types (batches, metadata, plugin errors) and the evaluator, and reads
//! the bundle. The pure helpers ([`metadata_for`], [`predict_batch`],
//! [`plugin_error`]) take the parsed model as an argument so they can be
//! tested without a sandbox.

use airlock_guest::{
    Batch, BundledModel, Feature, FeatureKind, ModelMetadata, OutputSchema, PluginError,
    Predictions, Task as WitTask,
};

use crate::ensemble::{Ensemble, ModelError, Task};

/// The plugin type exported as the component's `model` world.
pub struct XgboostModel;

/// The name every XGBoost-backed model reports in its metadata.
pub const MODEL_NAME: &str = "xgboost";

/// Read and parse the bundle's model file.
pub fn load() -> Result<Ensemble, PluginError> {
    airlock_guest::load_bundled::<XgboostModel>()
}

/// Map an evaluator error to a plugin error with a machine-readable code:
/// `missing-feature` and `bad-input` for problems with the batch,
/// `bad-bundle` for everything about the model file itself.
pub fn plugin_error(e: ModelError) -> PluginError {
    let code = match &e {
        ModelError::MissingFeatures(_) => "missing-feature",
        ModelError::BadInput(_) => "bad-input",
        _ => "bad-bundle",
    };
    PluginError::new(code, e.to_string())
}

/// Input names the model declares: its saved feature names, or XGBoost's
/// own positional names `f0`, `f1`, ... when it was trained without names.
pub fn input_names(model: &Ensemble) -> Vec<String> {
    match model.feature_names() {
        Some(names) => names.to_vec(),
        None => (0..model.num_features()).map(|i| format!("f{i}")).collect(),
    }
}

/// The metadata a parsed model declares: numeric inputs and its output schema.
pub fn metadata_for(model: &Ensemble) -> ModelMetadata {
    let (task, classes) = match model.task() {
        Task::Regression => (WitTask::Regression, Vec::new()),
        Task::BinaryClassification => (WitTask::BinaryClassification, vec!["0".into(), "1".into()]),
        Task::MulticlassClassification => (
            WitTask::MulticlassClassification,
            (0..model.output_width()).map(|k| k.to_string()).collect(),
        ),
    };
    ModelMetadata {
        name: MODEL_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        inputs: input_names(model)
            .into_iter()
            .map(|name| Feature {
                name,
                kind: FeatureKind::Numeric,
            })
            .collect(),
        output: OutputSchema { task, classes },
    }
}

/// Score a batch: columns are matched to the model's features by name when
/// the model has names, otherwise the first `num_features()` columns are
/// taken by position. Every feature column must be numeric.
pub fn predict_batch(model: &Ensemble, batch: &Batch) -> Result<Predictions, PluginError> {
    let names: Vec<&str> = batch.column_names().collect();
    let positions = model.map_columns(&names).map_err(plugin_error)?;
    let columns = batch.columns_at(&positions)?;
    let values = model.predict_columns(&columns).map_err(plugin_error)?;
    Ok(Predictions {
        width: model.output_width() as u32,
        values,
    })
}

impl BundledModel for XgboostModel {
    type Parsed = Ensemble;

    fn parse(bytes: &[u8]) -> Result<Ensemble, PluginError> {
        Ensemble::from_json(bytes).map_err(plugin_error)
    }

    fn metadata_of(model: &Ensemble) -> ModelMetadata {
        metadata_for(model)
    }

    fn predict_with(model: &Ensemble, batch: &Batch) -> Result<Predictions, PluginError> {
        predict_batch(model, batch)
    }
}
