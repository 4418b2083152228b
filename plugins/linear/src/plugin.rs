//! The component glue: the `model` world implemented on top of [`crate::linear`].
//!
//! Why it is separate from the evaluator: the evaluator is plain Rust that is
//! tested natively against scikit-learn; this module only translates between
//! the WIT types and the evaluator, and reads the bundle. The pure helpers
//! ([`metadata_for`], [`predict_batch`], [`plugin_error`]) take the parsed
//! model as an argument so they can be tested without a sandbox.

use airlock_guest::{
    Batch, BundledModel, Feature, FeatureKind, ModelMetadata, OutputSchema, PluginError,
    Predictions, Task as WitTask,
};

use crate::linear::{LinearError, LinearModel, Task};

/// The plugin type exported as the component's `model` world.
pub struct LinearPlugin;

/// The name every linear model reports in its metadata.
pub const MODEL_NAME: &str = "linear";

/// Read and parse the bundle's model file.
pub fn load() -> Result<LinearModel, PluginError> {
    airlock_guest::load_bundled::<LinearPlugin>()
}

/// Map an evaluator error to a plugin error with a machine-readable code:
/// `missing-feature` and `bad-input` for problems with the batch (a NaN is
/// `bad-input`, naming row and feature), `bad-bundle` for the model file.
pub fn plugin_error(e: LinearError) -> PluginError {
    let code = match &e {
        LinearError::MissingFeatures(_) => "missing-feature",
        LinearError::BadInput(_) | LinearError::MissingValue { .. } => "bad-input",
        LinearError::Malformed(_) | LinearError::InvalidField { .. } => "bad-bundle",
    };
    PluginError::new(code, e.to_string())
}

/// The metadata a parsed model declares: its named numeric inputs and output schema.
pub fn metadata_for(model: &LinearModel) -> ModelMetadata {
    let task = match model.task() {
        Task::Regression => WitTask::Regression,
        Task::BinaryClassification => WitTask::BinaryClassification,
        Task::MulticlassClassification => WitTask::MulticlassClassification,
    };
    ModelMetadata {
        name: MODEL_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        inputs: model
            .feature_names()
            .iter()
            .map(|name| Feature {
                name: name.clone(),
                kind: FeatureKind::Numeric,
            })
            .collect(),
        output: OutputSchema {
            task,
            classes: model.classes().to_vec(),
        },
    }
}

/// Score a batch: columns are matched to the model's features by name; extra
/// columns are ignored; every feature column must be numeric and complete.
pub fn predict_batch(model: &LinearModel, batch: &Batch) -> Result<Predictions, PluginError> {
    let names: Vec<&str> = batch.column_names().collect();
    let positions = model.map_columns(&names).map_err(plugin_error)?;
    let width = positions.len();
    let matrix = batch.matrix_at(&positions)?;
    let values = model.predict(&matrix, width).map_err(plugin_error)?;
    Ok(Predictions {
        width: model.output_width() as u32,
        values,
    })
}

impl BundledModel for LinearPlugin {
    type Parsed = LinearModel;

    fn parse(bytes: &[u8]) -> Result<LinearModel, PluginError> {
        LinearModel::from_json(bytes).map_err(plugin_error)
    }

    fn metadata_of(model: &LinearModel) -> ModelMetadata {
        metadata_for(model)
    }

    fn predict_with(model: &LinearModel, batch: &Batch) -> Result<Predictions, PluginError> {
        predict_batch(model, batch)
    }
}
