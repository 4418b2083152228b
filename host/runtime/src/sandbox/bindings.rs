//! Host-side bindings generated from `wit/airlock.wit`, one module per world
//! sharing a single set of types.

#![allow(missing_docs)]

/// The `validator` world, which also defines the shared types.
pub mod validator {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "airlock:plugin/validator",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The `model` world.
pub mod model {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "airlock:plugin/model",
        with: {
            "airlock:plugin/types": super::validator::airlock::plugin::types,
        },
    });
}

pub use validator::airlock::plugin::types::{
    Batch, Column, ColumnValues, Feature, FeatureKind, ModelMetadata, OutputSchema, PluginError,
    Predictions, Task,
};
pub use validator::airlock::plugin::validation::{
    Context, Finding, Metric, ModelInfo, Reference, Severity, ValidatorInfo, Verdict,
};
