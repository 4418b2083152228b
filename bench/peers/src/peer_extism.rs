//! The Extism side: the trivial guest in `extism-guest/`, called through
//! the Extism Rust SDK with limits set to match airlock's defaults.
//!
//! A fresh plugin per call uses the fastest path the SDK (1.41) offers:
//! the module is compiled once into an [`extism::CompiledPlugin`], and each
//! call builds a [`extism::Plugin`] from it with
//! [`extism::Plugin::new_from_compiled`], which makes a new store, relinks
//! the host functions, instantiates Extism's kernel module and, on the
//! first call, the guest. There is no `InstancePre`-style cached link in
//! the public API; [`extism::Pool`] only reuses warm plugins.

use anyhow::{Context, Result, ensure};
use extism::{CompiledPlugin, Manifest, Plugin, PluginBuilder, Wasm};
use std::path::Path;
use std::time::Duration;

/// The guest's exported function.
const FUNCTION: &str = "predict";

/// What Extism is told, taken from airlock's default limits so that both
/// runtimes run a call under the same caps.
#[derive(Clone, Copy)]
pub struct Settings {
    /// Fuel per call (Extism refills it on every call).
    pub fuel: u64,
    /// Wall-clock timeout per call (Extism's epoch timer thread).
    pub timeout: Duration,
    /// Linear memory cap, in bytes.
    pub memory_bytes: u64,
}

/// The one-row input the guest receives: one `f64`, little-endian, like the
/// single-value `ok` column airlock's call carries.
pub fn one_row_input() -> Vec<u8> {
    0.0f64.to_le_bytes().to_vec()
}

/// Compiles the guest once. With `pooling`, Extism's engine gets a pooling
/// instance allocator (through `PluginBuilder::with_wasmtime_config`), the
/// one allocation knob the SDK exposes that could make fresh plugins
/// cheaper; otherwise it runs with Extism's default (on-demand) allocator.
pub fn compile(wasm: &Path, settings: Settings, pooling: bool) -> Result<CompiledPlugin> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let pages = u32::try_from(settings.memory_bytes / 65_536).unwrap_or(u32::MAX);
    let manifest = Manifest::new([Wasm::data(bytes)])
        .with_timeout(settings.timeout)
        .with_memory_max(pages);
    let mut builder = PluginBuilder::new(manifest)
        .with_wasi(false)
        .with_fuel_limit(settings.fuel)
        // Nothing on disk: the compiled code lives in `CompiledPlugin`.
        .with_cache_disabled();
    if pooling {
        builder = builder.with_wasmtime_config(pooling_config(settings.memory_bytes));
    }
    let compiled = builder.compile().context("compiling the Extism guest")?;
    Ok(compiled)
}

/// A wasmtime 49 configuration with a pooling allocator sized for this
/// benchmark (a handful of live plugins, each a kernel and a guest module),
/// keeping memory resident between instances as airlock's default does.
fn pooling_config(memory_bytes: u64) -> wasmtime_extism::Config {
    let mut pool = wasmtime_extism::PoolingAllocationConfig::default();
    pool.total_core_instances(64)
        .total_memories(64)
        .total_tables(64)
        .total_gc_heaps(64)
        .total_component_instances(0)
        .max_memory_size(memory_bytes as usize)
        .linear_memory_keep_resident(8 << 20)
        .table_keep_resident(1 << 20);
    let mut config = wasmtime_extism::Config::new();
    config.allocation_strategy(wasmtime_extism::InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Calls the guest once and decodes its single `f64`.
pub fn call(plugin: &mut Plugin, input: &[u8]) -> Result<f64> {
    let out: &[u8] = plugin.call(FUNCTION, input)?;
    ensure!(out.len() == 8, "expected 8 output bytes, got {}", out.len());
    Ok(f64::from_le_bytes(out.try_into()?))
}

/// A fresh plugin from `compiled`, called once, then dropped: the per-call
/// cost of an isolated Extism call.
pub fn fresh_call(compiled: &CompiledPlugin, input: &[u8]) -> Result<f64> {
    let mut plugin = Plugin::new_from_compiled(compiled)?;
    call(&mut plugin, input)
}
