//! airlock model plugin for linear and logistic regression models.
//!
//! The plugin reads an `airlock-linear` JSON model from its bundle and scores
//! batches inside the sandbox, so the host never parses the model file. The
//! evaluator lives in [`linear`] and is plain Rust with no I/O, so it can be
//! tested natively against scikit-learn's own predictions; [`plugin`] is the
//! thin glue to the `model` world of `wit/airlock.wit`.

pub mod linear;
pub mod plugin;

pub use linear::{LinearError, LinearModel, Task};
pub use plugin::LinearPlugin;

// Only the component exports the world: native builds (tests, the native
// benchmark linking the evaluator) must not define the component's export symbols.
#[cfg(target_arch = "wasm32")]
airlock_guest::export_bundled_model!(LinearPlugin);
