//! airlock's gate engine: datasets and gate runs.
//!
//! A gate chains validators against a candidate model (and optionally a
//! production baseline) on the operator's datasets. This crate reads those
//! datasets from CSV under caps ([`data`]) and runs a gate end to end
//! ([`runner`]) on top of `airlock-runtime`'s sandbox; the gate file, the
//! decision rule and the report it fills are data in `airlock-core`
//! (re-exported here so a caller needs one import).
#![forbid(unsafe_code)]

pub mod data;
pub mod runner;

pub use airlock_core::gate::{Decision, GateReport, GateSpec, StepStatus, policy, report, spec};
pub use runner::{GateError, GateJob, GateRun, ModelUnderTest, load_model};
