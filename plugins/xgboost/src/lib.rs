//! airlock model plugin for XGBoost models.
//!
//! The plugin reads an XGBoost JSON model from its bundle and scores batches
//! inside the sandbox, so the host never parses the untrusted model file. The
//! evaluator lives in [`ensemble`] and is plain Rust with no I/O, so it can be
//! tested natively against XGBoost's own predictions (its hot loop on shallow
//! trees is the branch-free layout in `dense`); [`plugin`] is the thin
//! glue to the `model` world of `wit/airlock.wit`.

mod dense;
pub mod ensemble;
pub mod plugin;

pub use ensemble::{Ensemble, ModelError, Task};
pub use plugin::XgboostModel;

// Only the component exports the world: native builds (tests, the native
// benchmark linking the evaluator) must not define the component's export symbols.
#[cfg(target_arch = "wasm32")]
airlock_guest::export_bundled_model!(XgboostModel);
