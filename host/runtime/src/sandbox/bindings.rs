//! Host-side bindings generated from the contract, one module per contract
//! version and world.
//!
//! `wit/airlock.wit` is contract 0.2; `wit/v0.1/airlock.wit` is the frozen
//! 0.1 contract, kept so that published 0.1 plugins keep running. The
//! record types (`types`, `validation`) did not change between the two, so
//! 0.2's bindings reuse 0.1's generated Rust types: one set of conversions
//! (see `crate::convert`) serves both versions, and the component model's
//! structural type check still compares each component against its own
//! version's WIT.

#![allow(missing_docs)]

/// Contract 0.1 (frozen).
pub mod v1 {
    /// The `validator` world, which also defines the shared types.
    pub mod validator {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1",
            world: "airlock:plugin/validator",
            additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        });
    }

    /// The `model` world.
    pub mod model {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1",
            world: "airlock:plugin/model",
            with: {
                "airlock:plugin/types": super::validator::airlock::plugin::types,
            },
        });
    }
}

/// Contract 0.2 (current).
pub mod v2 {
    /// The `validator` world; defines the `failures` types.
    pub mod validator {
        wasmtime::component::bindgen!({
            path: "../../wit",
            world: "airlock:plugin/validator",
            with: {
                "airlock:plugin/types": super::super::v1::validator::airlock::plugin::types,
                "airlock:plugin/validation": super::super::v1::validator::airlock::plugin::validation,
            },
        });
    }

    /// The `model` world (also what a pre-initialised model's snapshot
    /// implements: the snapshot no longer exports `init`).
    pub mod model {
        wasmtime::component::bindgen!({
            path: "../../wit",
            world: "airlock:plugin/model",
            with: {
                "airlock:plugin/types": super::super::v1::validator::airlock::plugin::types,
            },
        });
    }

    pub use validator::airlock::plugin::failures::{CandidateError, FailureKind, SandboxFailure};
}

pub use v1::validator::airlock::plugin::types::{
    Batch, Column, ColumnValues, Feature, FeatureKind, ModelMetadata, OutputSchema, PluginError,
    Predictions, Task,
};
pub use v1::validator::airlock::plugin::validation::{
    Context, Finding, Metric, ModelInfo, Reference, Severity, ValidatorInfo, Verdict,
};
