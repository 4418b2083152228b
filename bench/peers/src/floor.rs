//! The floor: what wasmtime itself (airlock's version, 48) charges for a
//! fresh instance in a fresh store, with nothing to run.
//!
//! The engine is configured the way airlock's `Sandbox::new` configures
//! its own (component model, fuel, epoch interruption, stack cap, NaN
//! canonicalisation, the pooling allocator sized from the same defaults),
//! so that "airlock fresh ÷ floor" isolates what airlock adds on top of
//! instantiation: WASI context, limiter, slot queue, the guest's own start
//! code, argument conversion and the call itself.

use airlock_runtime::sandbox::SandboxConfig;
// wasmtime 48 is built without its `anyhow` feature here (airlock's
// feature list), so its own error type is used.
use wasmtime::Result;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The smallest valid component: magic, version 0x0d, layer 1.
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

/// The smallest valid core module: magic, version 1.
const EMPTY_MODULE: &[u8] = b"\0asm\x01\x00\x00\x00";

/// An engine configured like airlock's default sandbox.
pub fn airlock_like_engine(sc: &SandboxConfig) -> Result<Engine> {
    let mut wc = Config::new();
    wc.wasm_component_model(true)
        .consume_fuel(sc.fuel)
        .epoch_interruption(sc.epoch_deadline)
        .max_wasm_stack(sc.max_wasm_stack)
        .cranelift_nan_canonicalization(true);
    if sc.pooling {
        let n = sc.max_instances.max(2);
        let max_memories = u32::try_from(sc.component_caps.max_memories)
            .unwrap_or(u32::MAX)
            .max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * max_memories.max(2))
            .total_tables(n * 4)
            .max_memories_per_component(max_memories)
            .max_memories_per_module(max_memories)
            .max_memory_size(sc.limits.memory_bytes as usize)
            .table_elements(sc.limits.table_elements as usize)
            .linear_memory_keep_resident(sc.keep_resident_bytes)
            .table_keep_resident(sc.keep_resident_bytes.min(1 << 20))
            .pagemap_scan(Enabled::Auto);
        wc.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Ok(Engine::new(&wc)?)
}

/// Store settings every floor iteration applies, as airlock does per call.
#[derive(Clone, Copy)]
struct StoreSettings {
    /// Fuel put in the store (when metering is on).
    fuel: Option<u64>,
    /// Epoch deadline in ticks (when epoch interruption is on).
    epoch_ticks: Option<u64>,
}

impl StoreSettings {
    /// From airlock's sandbox defaults: the fuel ceiling and the wall-clock
    /// timeout expressed in epoch ticks.
    fn from(sc: &SandboxConfig) -> StoreSettings {
        let tick_ms = sc.epoch_tick.as_millis().max(1) as u64;
        StoreSettings {
            fuel: sc.fuel.then_some(sc.limits.fuel),
            epoch_ticks: sc
                .epoch_deadline
                .then_some(sc.limits.timeout_ms.div_ceil(tick_ms)),
        }
    }

    /// Applies the settings to a new store.
    fn apply<T>(self, store: &mut wasmtime::Store<T>) -> Result<()> {
        if let Some(f) = self.fuel {
            store.set_fuel(f)?;
        }
        if let Some(t) = self.epoch_ticks {
            store.set_epoch_deadline(t);
        }
        Ok(())
    }
}

/// An empty component, linked once; each call instantiates it in a new
/// store and drops both.
pub struct EmptyComponent {
    /// The engine the component was compiled for.
    engine: Engine,
    /// The linked, type-checked component.
    pre: wasmtime::component::InstancePre<()>,
    /// Per-store settings.
    settings: StoreSettings,
}

impl EmptyComponent {
    /// Compiles and links the empty component on `engine`.
    pub fn new(engine: &Engine, sc: &SandboxConfig) -> Result<EmptyComponent> {
        let component = wasmtime::component::Component::new(engine, EMPTY_COMPONENT)?;
        let linker = wasmtime::component::Linker::<()>::new(engine);
        Ok(EmptyComponent {
            engine: engine.clone(),
            pre: linker.instantiate_pre(&component)?,
            settings: StoreSettings::from(sc),
        })
    }

    /// One fresh store plus one fresh instance, then both dropped.
    pub fn instantiate(&self) -> Result<()> {
        let mut store = wasmtime::Store::new(&self.engine, ());
        self.settings.apply(&mut store)?;
        std::hint::black_box(self.pre.instantiate(&mut store)?);
        Ok(())
    }
}

/// An empty core module, linked once; each call instantiates it in a new
/// store and drops both.
pub struct EmptyModule {
    /// The engine the module was compiled for.
    engine: Engine,
    /// The linked module.
    pre: wasmtime::InstancePre<()>,
    /// Per-store settings.
    settings: StoreSettings,
}

impl EmptyModule {
    /// Compiles and links the empty module on `engine`.
    pub fn new(engine: &Engine, sc: &SandboxConfig) -> Result<EmptyModule> {
        let module = wasmtime::Module::new(engine, EMPTY_MODULE)?;
        let linker = wasmtime::Linker::<()>::new(engine);
        Ok(EmptyModule {
            engine: engine.clone(),
            pre: linker.instantiate_pre(&module)?,
            settings: StoreSettings::from(sc),
        })
    }

    /// One fresh store plus one fresh instance, then both dropped.
    pub fn instantiate(&self) -> Result<()> {
        let mut store = wasmtime::Store::new(&self.engine, ());
        self.settings.apply(&mut store)?;
        std::hint::black_box(self.pre.instantiate(&mut store)?);
        Ok(())
    }
}
