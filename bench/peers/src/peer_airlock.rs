//! The airlock side: `hostile_model` in its `ok` mode (one value per row,
//! the row count), called through airlock-runtime's public API with the
//! default sandbox (fuel and epoch deadline on, pooling allocator).

use airlock_core::types::{Batch, Column, ColumnValues};
use airlock_runtime::sandbox::{CallOptions, Plugin, Sandbox, SandboxConfig};
use anyhow::{Context, Result, ensure};
use std::path::Path;
use std::sync::Arc;

/// The one-row batch that selects `hostile_model`'s `ok` mode: a single
/// numeric column named `ok` holding 0.0.
pub fn ok_batch() -> Batch {
    Batch {
        rows: 1,
        columns: vec![Column {
            name: "ok".to_string(),
            values: ColumnValues::Numeric(vec![0.0]),
        }],
    }
}

/// A default sandbox and the trivial component loaded into it.
pub fn load(wasm: &Path) -> Result<(Sandbox, Arc<Plugin>)> {
    let sandbox = Sandbox::new(SandboxConfig::default())
        .map_err(|e| anyhow::anyhow!("building the sandbox: {e}"))?;
    let plugin = sandbox
        .load_file(wasm)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading {}", wasm.display()))?;
    Ok((sandbox, plugin))
}

/// One call in a fresh instance (what airlock does for every call by
/// default); checks the answer is the row count.
pub fn fresh_call(plugin: &Plugin, batch: &Batch) -> Result<f64> {
    let out = plugin
        .predict(&CallOptions::default(), batch)
        .map_err(|e| anyhow::anyhow!("fresh predict: {e}"))?;
    ensure!(out.value.values.len() == 1, "expected one value");
    Ok(out.value.values[0])
}
