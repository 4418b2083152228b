//! Deployment gates: gate files ([`spec`]), the decision rule ([`policy`]),
//! the engine that runs a gate against a candidate ([`runner`]) and the
//! report it produces ([`report`]). The CLI runs gates locally today; the
//! HTTP server will run the same engine.

pub mod policy;
pub mod report;
pub mod runner;
pub mod spec;

pub use policy::{Decision, StepStatus};
pub use report::GateReport;
pub use runner::{GateError, GateRun, ModelUnderTest};
pub use spec::GateSpec;
