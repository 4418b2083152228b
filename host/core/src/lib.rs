//! airlock's domain, with no runtime attached.
//!
//! airlock runs untrusted model and validator plugins — WebAssembly
//! components built against `wit/airlock.wit` — and chains validators into
//! deployment gates. This crate holds what every layer agrees on and what a
//! report is made of, so that code which only reads, writes or checks
//! reports, specs and digests never links wasmtime or cranelift:
//!
//! * [`types`]: the host's batches, predictions, metadata and verdicts;
//! * [`digest`]: the injective digests that name bundles, components and
//!   datasets;
//! * [`capabilities`] and [`limits`]: the pure policies the sandbox enforces;
//! * [`manifest`]: the limits a component asks for in its custom section;
//! * [`error`]: the stable kinds of plugin failures;
//! * [`contract`]: the rules a model's metadata and outputs must keep;
//! * [`inputs`]: exactly which columns a model receives;
//! * [`gate`]: gate files, the decision rule and the report's data.
//!
//! `airlock-runtime` (wasmtime), `airlock-gate` (datasets, the gate runner)
//! and `airlock-cli` (the binary) build on it.
#![forbid(unsafe_code)]

pub mod capabilities;
pub mod contract;
pub mod digest;
pub mod error;
pub mod gate;
pub mod inputs;
pub mod limits;
pub mod manifest;
pub mod types;

pub use error::{FailureKind, PluginFailure};
pub use limits::{LimitRequest, Limits};
