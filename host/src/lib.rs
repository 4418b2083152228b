//! The airlock host runtime.
//!
//! airlock runs untrusted model and validator plugins — WebAssembly
//! components built against `wit/airlock.wit` — under fuel, wall-clock,
//! memory and capability limits, and chains validators into deployment
//! gates. This crate is the library behind the `airlock` binary:
//!
//! * [`sandbox`]: the engine, compile cache, per-call limits and the typed
//!   failures every plugin call can end in;
//! * [`capabilities`] and [`limits`]: the pure policies the sandbox enforces;
//! * [`bundle`] and [`digest`]: model bundles snapshotted under caps, and
//!   the injective digests that name bundles, components and datasets;
//! * [`precheck`]: static caps on what a component may ask the compiler to do;
//! * [`data`]: typed batches read from CSV files;
//! * [`gate`]: gate files, the gate runner and its report;
//! * [`cli`]: the command-line front end, including the one place where
//!   errors become exit codes.
#![deny(unsafe_code)]

pub mod bundle;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod contract;
pub mod data;
pub mod digest;
pub mod error;
pub mod gate;
pub mod limits;
pub mod manifest;
pub mod precheck;
pub mod sandbox;

pub use error::{FailureKind, PluginFailure, SandboxError};
pub use limits::{LimitRequest, Limits};
