//! Building a sandbox: the wasmtime engine and its configuration (fuel,
//! epochs, the pooling allocator sized from the operator's caps), the two
//! linkers, the compile cache and the epoch ticker, plus the sandbox's
//! monitoring accessors. Kept apart from loading and calling because it
//! runs once per sandbox, not once per plugin or call.

use super::cache::CompileCache;
use super::classify::root_message;
use super::lru::Lru;
use super::slots::{SlotStats, Slots};
use super::ticker::{EngineWatch, Ticker};
use super::{Inner, LoadCounters, LoadStats, Runtime, Sandbox, SandboxConfig, candidate, wasi};
use crate::error::SandboxError;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

impl Sandbox {
    /// Builds the engine, linkers, compile cache and epoch ticker.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config.component_caps.check()?;
        let mut wc = Config::new();
        wc.wasm_component_model(true)
            .consume_fuel(config.fuel)
            .epoch_interruption(config.epoch_deadline)
            .max_wasm_stack(config.max_wasm_stack)
            .cranelift_nan_canonicalization(config.nan_canonicalization);
        if config.pooling {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            let n = config.max_instances.max(2);
            // As many memories as the static cap admits, so that the pool
            // never refuses what `[component]` allows.
            let max_memories = u32::try_from(config.component_caps.max_memories)
                .unwrap_or(u32::MAX)
                .max(1);
            pool.total_component_instances(n)
                .total_core_instances(n * 8)
                .total_memories(n * max_memories.max(2))
                .total_tables(n * 4)
                .max_memories_per_component(max_memories)
                .max_memories_per_module(max_memories)
                // Room for `init` too, which runs under its own fixed
                // limits whatever the ceilings (`preinit::INIT_LIMITS`);
                // every store's limiter still holds its call to its own.
                .max_memory_size(
                    config
                        .limits
                        .memory_bytes
                        .max(super::INIT_LIMITS.memory_bytes) as usize,
                )
                .table_elements(
                    config
                        .limits
                        .table_elements
                        .max(super::INIT_LIMITS.table_elements) as usize,
                )
                .linear_memory_keep_resident(config.keep_resident_bytes)
                .table_keep_resident(config.keep_resident_bytes.min(1 << 20))
                .pagemap_scan(wasmtime::Enabled::Auto);
            wc.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wc).map_err(|e| SandboxError::Engine(e.to_string()))?;
        let cache = CompileCache::new(
            &engine,
            config.cache_dir.as_deref(),
            config.max_loaded_plugins,
        )?;

        let mut model_linker = Linker::new(&engine);
        wasi::add_to_linker(&mut model_linker).map_err(engine_err)?;
        let mut validator_linker = Linker::new(&engine);
        wasi::add_to_linker(&mut validator_linker).map_err(engine_err)?;
        candidate::add_to_linker(&mut validator_linker).map_err(engine_err)?;

        let ticker = if config.epoch_deadline {
            Some(Ticker::start(&engine, config.epoch_tick)?)
        } else {
            None
        };
        let slots = Arc::new(Slots::new(
            config.max_instances,
            config.max_queued_calls,
            config.queue_timeout,
        ));
        let loaded = Mutex::new(Lru::new(config.max_loaded_plugins));
        let snapshots = Mutex::new(Lru::new(config.max_loaded_plugins));
        Ok(Sandbox {
            inner: Arc::new(Inner {
                runtime: Arc::new(Runtime {
                    ticker,
                    engine: engine.clone(),
                    config,
                    model_linker,
                    validator_linker,
                    slots,
                }),
                engine,
                cache,
                loaded,
                snapshots,
                loads: LoadCounters::default(),
            }),
        })
    }

    /// The sandbox's configuration.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.runtime.config
    }

    /// A handle that tells whether this sandbox's engine and epoch ticker
    /// are still alive, without keeping them alive.
    pub fn watch(&self) -> EngineWatch {
        EngineWatch {
            engine: self.inner.engine.weak(),
            ticker: self
                .inner
                .runtime
                .ticker
                .as_ref()
                .map(|t| t.running.clone()),
        }
    }

    /// How many plugins the loaded-plugin cache holds now.
    pub fn loaded_count(&self) -> usize {
        self.lock_loaded().len()
    }

    /// Hits, misses and evictions of the loaded-plugin cache.
    pub fn load_stats(&self) -> LoadStats {
        let c = &self.inner.loads;
        LoadStats {
            loaded: self.loaded_count(),
            capacity: self.inner.runtime.config.max_loaded_plugins.max(1),
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
        }
    }

    /// How many instance slots are taken and how many calls wait for one.
    pub fn slot_stats(&self) -> SlotStats {
        self.inner.runtime.slots.stats()
    }

    /// Compile workers still running, including those whose load was
    /// refused at the compile time limit (Cranelift cannot be interrupted,
    /// so they run to completion); for monitoring.
    pub fn compiles_running(&self) -> usize {
        self.inner.cache.compiles_running()
    }
}

pub(super) fn engine_err(e: wasmtime::Error) -> SandboxError {
    SandboxError::Engine(root_message(&e))
}
