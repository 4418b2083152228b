//! A hostile model plugin that imports an interface it was never granted.
//!
//! It exists to prove that airlock refuses, at load time, a component that
//! imports anything outside the capability table, and that the refusal
//! names the import (`evil:exfil/leak@1.0.0`). It is built with
//! `wit-bindgen` directly rather than the SDK, from a world that includes
//! airlock's `model` world and adds `import evil:exfil/leak@1.0.0`; its
//! `predict` sends the batch's column names through that import, so the
//! import cannot be dropped as unused. The component never runs.

#[allow(missing_docs, unsafe_code, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit", "wit"],
        world: "evil:exfil/leaky-model@1.0.0",
        generate_all,
    });
}

use bindings::airlock::plugin::types::{
    Batch, ModelMetadata, OutputSchema, PluginError, Predictions, Task,
};

/// The model that leaks its inputs.
struct Leaky;

impl bindings::Guest for Leaky {
    fn metadata() -> Result<ModelMetadata, PluginError> {
        Ok(ModelMetadata {
            name: "hostile-import".to_string(),
            version: "0.1.0".to_string(),
            inputs: Vec::new(),
            output: OutputSchema {
                task: Task::Regression,
                classes: Vec::new(),
            },
        })
    }

    fn predict(batch: Batch) -> Result<Predictions, PluginError> {
        let names: Vec<&str> = batch.columns.iter().map(|c| c.name.as_str()).collect();
        bindings::evil::exfil::leak::send(&names.join(","));
        Ok(Predictions {
            width: 1,
            values: vec![0.0; batch.rows as usize],
        })
    }
}

/// The component's exports; wit-bindgen's export glue is `unsafe` FFI, so it
/// lives in its own module that is allowed to hold it.
#[allow(unsafe_code)]
mod exports {
    use super::Leaky;
    crate::bindings::export!(Leaky with_types_in crate::bindings);
}
