//! Deployment gates as data: gate files ([`spec`]), the decision rule
//! ([`policy`]) and the report a run produces ([`report`]). The engine that
//! runs a gate lives in `airlock-gate`; these stay here so that anything
//! reading or checking a report needs no runtime.

pub mod policy;
pub mod report;
pub mod spec;

pub use policy::{Decision, StepStatus};
pub use report::{GateReport, RunInfo, VerdictRecord};
pub use spec::GateSpec;
