//! A trivial Extism plugin, the peer of airlock's `hostile_model` in its
//! `ok` mode ("behaves: one value per row, the row count").
//!
//! It exists so that `bench/peers` can time what a call through Extism
//! costs when the plugin does next to nothing. The input is the batch's
//! only column as little-endian `f64`s (one per row); the output is one
//! `f64` per row holding the row count, little-endian. The input values
//! themselves are ignored, as airlock's `ok` mode ignores them.

use extism_pdk::{FnResult, plugin_fn};

/// Width of one value on the wire.
const F64_BYTES: usize = std::mem::size_of::<f64>();

/// One value per input row, each the row count: the same answer
/// `hostile_model` gives for a batch whose first column is named `ok`.
#[plugin_fn]
pub fn predict(input: Vec<u8>) -> FnResult<Vec<u8>> {
    let rows = input.len() / F64_BYTES;
    let value = (rows as f64).to_le_bytes();
    let mut out = Vec::with_capacity(rows * F64_BYTES);
    for _ in 0..rows {
        out.extend_from_slice(&value);
    }
    Ok(out)
}
