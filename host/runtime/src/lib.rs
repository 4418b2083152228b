//! The airlock runtime: wasmtime, and everything that touches it.
//!
//! This crate compiles untrusted model and validator components and runs
//! every call in a fresh instance under fuel, an epoch deadline, memory and
//! table caps and deny-by-default capabilities. It is the only airlock
//! crate that links wasmtime, holds generated bindings or uses `unsafe`
//! (in [`sandbox::cache`]); callers speak [`airlock_core::types`], which
//! [`convert`] maps to and from the bindings at the call edge.
//!
//! * [`sandbox`]: the engine, compile cache, per-call limits, the
//!   `candidate` interface and the typed failures every call can end in;
//! * [`bundle`]: model bundles snapshotted under caps;
//! * [`precheck`]: static caps on what a component may ask the compiler to do;
//! * [`error`]: the runtime's errors, wrapping core's plugin failures.
#![deny(unsafe_code)]

pub mod bundle;
pub mod convert;
pub mod error;
pub mod precheck;
pub mod sandbox;

pub use error::{FailureKind, PluginFailure, SandboxError};
