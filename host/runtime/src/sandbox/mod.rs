//! The sandbox: compiles plugins once, then runs every call in a fresh
//! instance under fuel, an epoch deadline, memory and table caps, input and
//! output size caps, host-allocation caps and deny-by-default capabilities.
//!
//! A call ends either in its value or in a [`PluginFailure`] whose kind says
//! what happened; the store is dropped after every call, so no failure leaks
//! into the next one.
//!
//! Built to live for months inside a server: plugins hold only the shared
//! [`Runtime`] (engine, linkers, configuration, instance slots), never the
//! sandbox that caches them, so dropping every sandbox handle and plugin
//! frees the engine and stops its epoch ticker (see [`ticker`]); the
//! loaded-plugin cache is a
//! bounded LRU; and calls wait for an instance slot in a bounded queue (see
//! [`slots`]) instead of failing when the pool is full.

pub mod bindings;
pub mod cache;
pub mod candidate;
pub mod checked;
mod lru;
pub mod session;
pub mod slots;
pub mod ticker;
pub mod wasi;

pub use candidate::CandidateLink;
pub use checked::CheckedModel;
pub use session::{Session, SessionError};
pub use slots::SlotStats;
pub use ticker::EngineWatch;

pub use crate::bundle::Bundle;
use crate::bundle::BundleCaps;
use crate::error::{FailureKind, PluginFailure, SandboxError};
use crate::precheck::{self, ComponentCaps};
use airlock_core::capabilities::{self, Capability, World};
use airlock_core::digest::Digest;
use airlock_core::limits::{LimitRequest, Limits};
use airlock_core::manifest::Manifest;
use airlock_core::types::{
    Batch, ColumnValues, Context, ModelMetadata, Predictions, ValidatorInfo, Verdict,
};
use bindings::PluginError;
use cache::{CacheOutcome, CompileCache};
use lru::Lru;
use serde::Serialize;
use slots::Slots;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ticker::Ticker;
use wasi::{HasWasi, WasiSpec, WasiState};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};

/// How the operator sets up the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The ceilings every call runs under; requests may only lower them.
    pub limits: Limits,
    /// Where compiled components are cached on disk; `None` keeps them in
    /// memory only.
    pub cache_dir: Option<PathBuf>,
    /// Meter fuel (on by default; off only for benchmarks).
    pub fuel: bool,
    /// Enforce the wall-clock deadline by epoch interruption (on by default).
    pub epoch_deadline: bool,
    /// How often the epoch advances; the deadline's resolution.
    pub epoch_tick: Duration,
    /// Use the pooling instance allocator (fast fresh instances).
    pub pooling: bool,
    /// How many instances may be live at once (at least 2: a validator
    /// and the candidate it probes). With pooling this sizes the pool;
    /// either way calls beyond it wait for a slot.
    pub max_instances: u32,
    /// How long a call waits for an instance slot before it fails as
    /// `busy`; zero fails at once when every slot is taken.
    pub queue_timeout: Duration,
    /// How many calls may wait for a slot at once; further calls fail as
    /// `busy` at once.
    pub max_queued_calls: usize,
    /// How many loaded plugins the sandbox keeps (least recently used
    /// evicted first); evicting only drops the cache's reference.
    pub max_loaded_plugins: usize,
    /// How many calls one warm [`Session`] serves before it refuses more.
    pub session_max_calls: u64,
    /// How long a warm [`Session`] may sit unused before it refuses more
    /// calls (and gives back its instance slot).
    pub session_max_idle: Duration,
    /// Wasm stack cap in bytes.
    pub max_wasm_stack: usize,
    /// How strictly model outputs are checked against their metadata.
    pub output_rules: airlock_core::contract::OutputRules,
    /// With pooling: bytes of each linear memory kept resident between
    /// instances and reset in place (only the pages a call dirtied, found
    /// with Linux's `PAGEMAP_SCAN` where available) instead of being
    /// returned to the kernel and faulted in again by the next instance.
    pub keep_resident_bytes: usize,
    /// Caps on model bundles, checked before any bundle file is read
    /// (used by callers that open bundles for this sandbox).
    pub bundle_caps: BundleCaps,
    /// What a component may ask the compiler to do, checked before
    /// compiling (the operator's `[component]` section).
    pub component_caps: ComponentCaps,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            limits: Limits::default(),
            cache_dir: None,
            fuel: true,
            epoch_deadline: true,
            epoch_tick: Duration::from_millis(2),
            pooling: true,
            max_instances: 64,
            queue_timeout: Duration::from_millis(5_000),
            max_queued_calls: 256,
            max_loaded_plugins: 64,
            session_max_calls: 1_000_000,
            session_max_idle: Duration::from_secs(60),
            max_wasm_stack: 512 << 10,
            keep_resident_bytes: 8 << 20,
            output_rules: airlock_core::contract::OutputRules::default(),
            bundle_caps: BundleCaps::default(),
            component_caps: ComponentCaps::default(),
        }
    }
}

/// The runtime that loads and runs plugins; cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

/// What only the sandbox handles share: the caches. Plugins never point
/// back here, so the last handle dropped frees it.
struct Inner {
    runtime: Arc<Runtime>,
    engine: Engine,
    cache: CompileCache,
    loaded: Mutex<Lru<Digest, Arc<Plugin>>>,
    loads: LoadCounters,
}

#[derive(Default)]
struct LoadCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

/// What a plugin needs to run, shared by the sandbox and every plugin and
/// session it made: the engine, the linkers, the configuration and the
/// instance slots. It holds no plugin, so no cycle keeps it alive; when the
/// last holder drops it, the epoch ticker stops and the engine is freed.
pub(crate) struct Runtime {
    ticker: Option<Ticker>,
    engine: Engine,
    config: SandboxConfig,
    model_linker: Linker<CallState>,
    validator_linker: Linker<CallState>,
    slots: Arc<Slots>,
}

/// How the loaded-plugin cache has fared since the sandbox started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoadStats {
    /// Plugins held now.
    pub loaded: usize,
    /// The most it holds (`max_loaded_plugins`).
    pub capacity: usize,
    /// Loads answered from the cache.
    pub hits: u64,
    /// Loads that compiled or fetched the component.
    pub misses: u64,
    /// Plugins evicted to make room.
    pub evictions: u64,
}

/// A loaded plugin: compiled, checked against the capability policy, and
/// pre-instantiated, ready for a fresh instance per call.
pub struct Plugin {
    runtime: Arc<Runtime>,
    /// `sha256:` digest of the component bytes.
    pub digest: Digest,
    /// Which world it implements.
    pub world: World,
    /// Imported interfaces, as named in the component.
    pub imports: Vec<String>,
    /// Exported functions and interfaces.
    pub exports: Vec<String>,
    /// Where the compiled code came from.
    pub cache_outcome: CacheOutcome,
    /// What the plugin asks of the host (embedded in the component).
    pub manifest: Manifest,
    pre: Pre,
}

enum Pre {
    Model(bindings::model::ModelPre<CallState>),
    Validator(bindings::validator::ValidatorPre<CallState>),
}

/// What `airlock plugin inspect` shows a reviewer, computed without running
/// any plugin code.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// `sha256:` digest of the file.
    pub digest: Digest,
    /// `model` or `validator`.
    pub world: World,
    /// Size of the component in bytes.
    pub size: usize,
    /// Imported interfaces.
    pub imports: Vec<String>,
    /// Exported functions and interfaces.
    pub exports: Vec<String>,
    /// What each requested capability is granted as.
    pub capabilities: Vec<Capability>,
    /// Imports that would make the component refuse to load.
    pub refused_imports: Vec<String>,
    /// The limits the plugin's manifest asks for.
    pub requested_limits: LimitRequest,
    /// The limits its calls run under (ceilings lowered by the manifest).
    pub granted_limits: Limits,
    /// Manifest requests above the ceilings, which are not granted.
    pub refused_limit_raises: Vec<&'static str>,
}

/// Per-call options.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Lower limits for this call.
    pub limits: LimitRequest,
    /// Seed for the plugin's randomness.
    pub seed: u64,
    /// The data bundle (models only).
    pub bundle: Option<Bundle>,
}

/// The result of a successful call, with what it cost.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome<T> {
    /// What the plugin returned.
    pub value: T,
    /// Fuel consumed (0 when metering is off).
    pub fuel_used: u64,
    /// Fuel consumed by candidate calls made from a validator (included in
    /// `fuel_used`).
    pub candidate_fuel_used: u64,
    /// Wall-clock time of the call, instantiation included (time spent
    /// waiting for an instance slot is not).
    #[serde(serialize_with = "ser_duration_us")]
    pub duration: Duration,
    /// Captured stdout (truncated at the log cap).
    pub stdout: String,
    /// Captured stderr (truncated at the log cap).
    pub stderr: String,
    /// Bytes of log output that were dropped at the cap.
    pub log_bytes_dropped: u64,
}

fn ser_duration_us<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e6)
}

/// Store data of one call.
pub struct CallState {
    wasi: WasiState,
    limiter: Limiter,
    candidate: Option<CandidateLink>,
    candidate_fuel: u64,
    metered: bool,
    /// When this call's wall-clock budget runs out; candidate calls made
    /// from a validator get at most what is left.
    deadline: Instant,
    /// Set on a validator call with a candidate attached: the pool in which
    /// it holds a second slot, which its candidate calls use.
    reserved_slot: Option<Arc<Slots>>,
}

impl HasWasi for CallState {
    fn wasi(&mut self) -> &mut WasiState {
        &mut self.wasi
    }
}

impl wasmtime_wasi::WasiView for CallState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        self.wasi.ctx()
    }
}

/// Memory and table caps that remember whether they were hit, so a failed
/// allocation that the guest turns into a trap is reported as
/// `memory_limit` rather than a generic trap.
///
/// The memory cap is on the total of all linear memories of the store (one
/// call), not on each memory: a component with several memories cannot
/// multiply its allowance. Wasmtime reports every memory's initial
/// allocation as a growth from 0, so instantiation counts too.
struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    /// Bytes of all linear memories of the store, as granted so far.
    memory_total: usize,
    hit: Option<String>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let others = self.memory_total.saturating_sub(current);
        let total = others.saturating_add(desired);
        if total > self.memory_bytes {
            self.hit = Some(if others == 0 {
                format!(
                    "linear memory growth from {current} to {desired} bytes denied (cap {} bytes)",
                    self.memory_bytes
                )
            } else {
                format!(
                    "linear memory growth from {current} to {desired} bytes denied: with the call's other memories ({others} bytes) the total would be {total} bytes (cap {} bytes for all memories together)",
                    self.memory_bytes
                )
            });
            return Ok(false);
        }
        self.memory_total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit = Some(format!(
                "table growth from {current} to {desired} elements denied (cap {})",
                self.table_elements
            ));
            return Ok(false);
        }
        Ok(true)
    }
}

impl Sandbox {
    /// Builds the engine, linkers, compile cache and epoch ticker.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config
            .component_caps
            .check()
            .map_err(SandboxError::Config)?;
        let mut wc = Config::new();
        wc.wasm_component_model(true)
            .consume_fuel(config.fuel)
            .epoch_interruption(config.epoch_deadline)
            .max_wasm_stack(config.max_wasm_stack)
            .cranelift_nan_canonicalization(true);
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
                .max_memory_size(config.limits.memory_bytes as usize)
                .table_elements(config.limits.table_elements as usize)
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

    /// Reads and loads a component file (see [`Sandbox::read_component`]).
    pub fn load_file(&self, path: &Path) -> Result<Arc<Plugin>, SandboxError> {
        let bytes = self.read_component(path)?;
        self.load(&bytes)
    }

    /// Reads a component file under the sandbox's caps, checking before
    /// reading what can be checked: that the path is a regular file (a
    /// FIFO, a device or a directory is refused, never read), that its size
    /// is within `component.max_component_bytes`, and then that its first
    /// eight bytes are a component header, before the rest is read. Every
    /// caller that reads a component from disk goes through here.
    pub fn read_component(&self, path: &Path) -> Result<Vec<u8>, SandboxError> {
        use std::io::Read;
        let cap = self.inner.runtime.config.component_caps.max_component_bytes;
        let refuse = |why: String| {
            SandboxError::Plugin(PluginFailure::new(
                FailureKind::InvalidComponent,
                format!("component file {}: {why}", path.display()),
            ))
        };
        let io = |e| SandboxError::io(format!("reading plugin {}", path.display()), e);
        let check_meta = |meta: &std::fs::Metadata| {
            if !meta.is_file() {
                return Err(refuse(format!(
                    "is {}, not a regular file",
                    file_kind(meta)
                )));
            }
            if meta.len() > cap {
                return Err(refuse(format!(
                    "is {} bytes; the cap is {cap} bytes (component.max_component_bytes)",
                    meta.len()
                )));
            }
            Ok(())
        };
        // Opening a FIFO blocks until a writer appears, so the type is
        // checked before opening, and again on the opened handle.
        check_meta(&std::fs::metadata(path).map_err(io)?)?;
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        check_meta(&meta)?;
        // Never more than the cap (plus one byte to notice a file that grew).
        let mut reader = file.take(cap.saturating_add(1));
        let mut header = [0u8; 8];
        let mut got = 0;
        while got < header.len() {
            match reader.read(&mut header[got..]).map_err(io)? {
                0 => break,
                n => got += n,
            }
        }
        precheck::check_header(&header[..got]).map_err(|e| refuse(e.to_string()))?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        bytes.extend_from_slice(&header);
        reader.read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > cap {
            return Err(refuse(format!(
                "grew past the cap of {cap} bytes while being read (component.max_component_bytes)"
            )));
        }
        Ok(bytes)
    }

    /// The static pass over a component's bytes: header, caps and names,
    /// without compiling (see [`crate::precheck`]).
    fn precheck(&self, bytes: &[u8]) -> Result<precheck::Summary, SandboxError> {
        let config = &self.inner.runtime.config;
        precheck::check(bytes, &config.component_caps, config.limits.memory_bytes)
            .map_err(|e| SandboxError::Plugin(e.into()))
    }

    /// Compiles (or fetches from the cache) a component that passed the
    /// static checks, within the compile time limit.
    fn compile(
        &self,
        digest: Digest,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome), SandboxError> {
        let limit =
            Duration::from_millis(self.inner.runtime.config.component_caps.compile_timeout_ms);
        self.inner
            .cache
            .get_or_compile(&self.inner.engine, digest, bytes, limit)
            .map_err(|e| match e {
                cache::CompileError::Invalid(e) => {
                    invalid(format!("not a valid component: {}", root_message(&e)))
                }
                other => invalid(other.to_string()),
            })
    }

    /// Checks a component statically (header, `[component]` caps, the world
    /// its exports name, the import policy), and only then compiles (or
    /// fetches from the cache) and pre-instantiates it. Nothing of a
    /// refused component reaches Cranelift.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Plugin>, SandboxError> {
        let digest = Digest::of(bytes);
        if let Some(p) = self.lock_loaded().get(&digest) {
            self.inner.loads.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(p.clone());
        }
        self.inner.loads.misses.fetch_add(1, Ordering::Relaxed);
        let summary = self.precheck(bytes)?;
        let static_world = summary
            .world()
            .map_err(|e| SandboxError::Plugin(e.into()))?;
        capabilities::check_imports(static_world, &summary.imports)?;
        let engine = &self.inner.engine;
        let (component, cache_outcome) = self.compile(digest, bytes)?;
        // Wasmtime's own view after compiling must agree with the static one.
        let (world, imports, exports) = shape(engine, &component)?;
        capabilities::check_imports(world, &imports)?;
        let manifest = airlock_core::manifest::read(bytes).map_err(invalid)?;
        let pre = match world {
            World::Model => {
                let ip = self
                    .inner
                    .runtime
                    .model_linker
                    .instantiate_pre(&component)
                    .map_err(|e| link_error(&e))?;
                Pre::Model(bindings::model::ModelPre::new(ip).map_err(|e| {
                    invalid(format!(
                        "does not match the model world: {}",
                        root_message(&e)
                    ))
                })?)
            }
            World::Validator => {
                let ip = self
                    .inner
                    .runtime
                    .validator_linker
                    .instantiate_pre(&component)
                    .map_err(|e| link_error(&e))?;
                Pre::Validator(bindings::validator::ValidatorPre::new(ip).map_err(|e| {
                    invalid(format!(
                        "does not match the validator world: {}",
                        root_message(&e)
                    ))
                })?)
            }
        };
        let plugin = Arc::new(Plugin {
            runtime: self.inner.runtime.clone(),
            digest,
            world,
            imports,
            exports,
            cache_outcome,
            manifest,
            pre,
        });
        if self.lock_loaded().insert(digest, plugin.clone()).is_some() {
            self.inner.loads.evictions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(plugin)
    }

    /// Describes a component for review without instantiating it. The
    /// static caps apply as at load time (a component refused by them is
    /// never compiled); an ungranted import is listed, not refused.
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspection, SandboxError> {
        let digest = Digest::of(bytes);
        let summary = self.precheck(bytes)?;
        summary
            .world()
            .map_err(|e| SandboxError::Plugin(e.into()))?;
        let (component, _) = self.compile(digest, bytes)?;
        let (world, imports, exports) = shape(&self.inner.engine, &component)?;
        let manifest = airlock_core::manifest::read(bytes).map_err(invalid)?;
        let ceiling = self.inner.runtime.config.limits;
        let refused_imports = imports
            .iter()
            .filter(|i| capabilities::check_imports(world, &[i.as_str()]).is_err())
            .cloned()
            .collect();
        Ok(Inspection {
            digest,
            world,
            size: bytes.len(),
            capabilities: capabilities::granted(world, &imports),
            imports,
            exports,
            refused_imports,
            granted_limits: ceiling.lowered_by(&manifest.limits),
            refused_limit_raises: ceiling.refused_raises(&manifest.limits),
            requested_limits: manifest.limits,
        })
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, Lru<Digest, Arc<Plugin>>> {
        self.inner.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Runtime {
    /// Builds a store for one call under `limits`. `reserved` is the pool
    /// whose second slot this call holds for its candidate's calls.
    fn store(
        &self,
        limits: &Limits,
        options: &CallOptions,
        candidate: Option<CandidateLink>,
        reserved: Option<Arc<Slots>>,
    ) -> Result<Store<CallState>, PluginFailure> {
        let spec = WasiSpec {
            seed: options.seed,
            max_log_bytes: limits.max_log_bytes as usize,
            max_host_alloc_bytes: limits.max_host_alloc_bytes,
            bundle_dir: options.bundle.as_ref().map(|b| b.dir()),
        };
        let mut wasi = WasiState::new(&spec)
            .map_err(|e| PluginFailure::new(FailureKind::Trap, e.to_string()))?;
        wasi.metadata_hashes = options.bundle.as_ref().map(|b| b.metadata_hashes());
        let state = CallState {
            wasi,
            limiter: Limiter {
                memory_bytes: limits.memory_bytes as usize,
                table_elements: limits.table_elements as usize,
                memory_total: 0,
                hit: None,
            },
            candidate,
            candidate_fuel: 0,
            reserved_slot: reserved,
            metered: self.config.fuel,
            deadline: Instant::now() + Duration::from_millis(limits.timeout_ms),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        arm(&mut store, limits, &self.config)?;
        // Hostcall fuel bounds what the guest may copy into the host in one
        // go: arguments of a host call, or the call's result. Results get
        // their own cap (`max_output_bytes`), so allow whichever is larger.
        store.set_hostcall_fuel(limits.max_host_alloc_bytes.max(limits.max_output_bytes) as usize);
        Ok(store)
    }
}

impl Plugin {
    /// How this sandbox checks model outputs.
    pub fn output_rules(&self) -> airlock_core::contract::OutputRules {
        self.runtime.config.output_rules
    }

    /// The limits a call with `req` runs under: the operator's ceilings,
    /// lowered by the plugin's manifest, lowered by `req`.
    pub fn limits_for(&self, req: &LimitRequest) -> Limits {
        self.runtime
            .config
            .limits
            .lowered_by(&self.manifest.limits)
            .lowered_by(req)
    }

    /// A model's declared metadata.
    pub fn metadata(&self, options: &CallOptions) -> Result<Outcome<ModelMetadata>, PluginFailure> {
        let Pre::Model(pre) = &self.pre else {
            return Err(wrong_world(World::Model, self.world));
        };
        self.call(
            options,
            None,
            SlotNeed::Take(1),
            0,
            |store| {
                let m = pre.instantiate(&mut *store)?;
                Ok(Ok(m.call_metadata(&mut *store)?.into()))
            },
            |_| 0,
        )
    }

    /// Runs a model on `batch`.
    pub fn predict(
        &self,
        options: &CallOptions,
        batch: &Batch,
    ) -> Result<Outcome<Predictions>, PluginFailure> {
        self.predict_within(options, batch, None)
    }

    /// Runs a model on `batch` as a validator's candidate call: in the
    /// instance slot the validator holds for it when `reserved` is this
    /// model's pool, otherwise in a slot of its own.
    pub(crate) fn predict_within(
        &self,
        options: &CallOptions,
        batch: &Batch,
        reserved: Option<&Arc<Slots>>,
    ) -> Result<Outcome<Predictions>, PluginFailure> {
        let Pre::Model(pre) = &self.pre else {
            return Err(wrong_world(World::Model, self.world));
        };
        let input = batch_size(batch);
        let slot = match reserved {
            Some(pool) if Arc::ptr_eq(pool, &self.runtime.slots) => SlotNeed::Reserved,
            _ => SlotNeed::Take(1),
        };
        self.call(
            options,
            None,
            slot,
            input,
            |store| {
                let m = pre.instantiate(&mut *store)?;
                let batch = bindings::Batch::from(batch);
                Ok(m.call_predict(&mut *store, &batch)?.map(Predictions::from))
            },
            |p: &Predictions| p.values.len() as u64 * 8,
        )
    }

    /// A validator's self-description.
    pub fn describe(&self, options: &CallOptions) -> Result<Outcome<ValidatorInfo>, PluginFailure> {
        let Pre::Validator(pre) = &self.pre else {
            return Err(wrong_world(World::Validator, self.world));
        };
        self.call(
            options,
            None,
            SlotNeed::Take(1),
            0,
            |store| {
                let v = pre.instantiate(&mut *store)?;
                Ok(Ok(v.call_describe(&mut *store)?.into()))
            },
            |_| 0,
        )
    }

    /// Runs a validator on a gate step's context; `candidate` is what its
    /// `candidate` import calls.
    pub fn validate(
        &self,
        options: &CallOptions,
        ctx: &Context,
        candidate: Option<CandidateLink>,
    ) -> Result<Outcome<Verdict>, PluginFailure> {
        let Pre::Validator(pre) = &self.pre else {
            return Err(wrong_world(World::Validator, self.world));
        };
        let input = context_size(ctx);
        // A validator with a candidate takes a second slot up front for its
        // candidate calls (see `slots`): it never waits while holding one.
        let slot = SlotNeed::Take(if candidate.is_some() { 2 } else { 1 });
        self.call(
            options,
            candidate,
            slot,
            input,
            |store| {
                let v = pre.instantiate(&mut *store)?;
                let ctx = bindings::Context::from(ctx);
                Ok(v.call_validate(&mut *store, &ctx)?.map(Verdict::from))
            },
            verdict_size,
        )
    }

    /// A warm instance of a model, for callers that score many batches
    /// against one model and accept that memory may carry over between
    /// calls (benchmarks, and later serving). It holds an instance slot
    /// until dropped. Each call starts with fresh fuel, a fresh deadline,
    /// empty logs, the virtual clock back at zero and the input cap
    /// applied; see [`Session`] for its reuse and idle limits.
    pub fn instantiate(&self, options: &CallOptions) -> Result<Session, PluginFailure> {
        let Pre::Model(pre) = &self.pre else {
            return Err(wrong_world(World::Model, self.world));
        };
        let limits = self.limits_for(&options.limits);
        let slot = self.runtime.slots.acquire(1)?;
        let mut store = self.runtime.store(&limits, options, None, None)?;
        let model = pre.instantiate(&mut store).map_err(|e| {
            let (kind, message) = classify(&e, &store.data().limiter, &limits, "");
            PluginFailure::new(kind, message)
        })?;
        Ok(Session::new(
            store,
            model,
            slot,
            limits,
            self.runtime.clone(),
        ))
    }

    /// The shared call path: an instance slot, a fresh store, limits, the
    /// call, classification; the store is gone before the slot is given
    /// back.
    fn call<R>(
        &self,
        options: &CallOptions,
        candidate: Option<CandidateLink>,
        slot: SlotNeed,
        input_bytes: u64,
        f: impl FnOnce(&mut Store<CallState>) -> wasmtime::Result<Result<R, PluginError>>,
        output_size: impl Fn(&R) -> u64,
    ) -> Result<Outcome<R>, PluginFailure> {
        let limits = self.limits_for(&options.limits);
        check_input(input_bytes, &limits)?;
        let (held, reserved) = match slot {
            SlotNeed::Take(n) => (
                Some(self.runtime.slots.acquire(n)?),
                (n > 1).then(|| self.runtime.slots.clone()),
            ),
            SlotNeed::Reserved => (None, None),
        };
        let start = Instant::now();
        let mut store = self.runtime.store(&limits, options, candidate, reserved)?;
        let result = f(&mut store);
        let outcome = settle(&store, &limits, start.elapsed(), result, output_size);
        drop(store);
        drop(held);
        outcome
    }
}

/// Which instance slots a call needs.
enum SlotNeed {
    /// Take this many from the pool, waiting in line if need be.
    Take(u32),
    /// Use the slot the calling validator already holds for its candidate.
    Reserved,
}

/// Refuses an input above the cap before any plugin code runs.
fn check_input(input_bytes: u64, limits: &Limits) -> Result<(), PluginFailure> {
    if input_bytes > limits.max_input_bytes {
        return Err(PluginFailure::new(
            FailureKind::InputTooLarge,
            format!(
                "input of {input_bytes} bytes exceeds the cap of {} bytes",
                limits.max_input_bytes
            ),
        ));
    }
    Ok(())
}

/// Turns a finished call into its outcome or its typed failure: measures
/// fuel, collects the logs, applies the output cap, classifies errors.
fn settle<R>(
    store: &Store<CallState>,
    limits: &Limits,
    duration: Duration,
    result: wasmtime::Result<Result<R, PluginError>>,
    output_size: impl Fn(&R) -> u64,
) -> Result<Outcome<R>, PluginFailure> {
    let state = store.data();
    let fuel_used = if state.metered {
        limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0))
    } else {
        0
    };
    let (stdout, dropped_out) = state.wasi.stdout.contents();
    let (stderr, dropped_err) = state.wasi.stderr.contents();
    let fail = |kind, message: String| PluginFailure {
        kind,
        message,
        guest_code: None,
        stderr: tail(&stderr, 2048),
        fuel_used,
        candidate_fuel_used: state.candidate_fuel,
    };
    match result {
        Ok(Ok(value)) => {
            let size = output_size(&value);
            if size > limits.max_output_bytes {
                return Err(fail(
                    FailureKind::OutputTooLarge,
                    format!(
                        "result of {size} bytes exceeds the cap of {} bytes",
                        limits.max_output_bytes
                    ),
                ));
            }
            Ok(Outcome {
                value,
                fuel_used,
                candidate_fuel_used: state.candidate_fuel,
                duration,
                stdout,
                stderr,
                log_bytes_dropped: dropped_out + dropped_err,
            })
        }
        Ok(Err(e)) => {
            let mut f = fail(
                FailureKind::GuestError,
                format!("{}: {}", e.code, e.message),
            );
            f.guest_code = Some(e.code);
            Err(f)
        }
        Err(err) => {
            let (kind, message) = classify(&err, &state.limiter, limits, &stderr);
            Err(fail(kind, message))
        }
    }
}

/// Gives a store its per-call budget: fresh fuel and a fresh deadline.
fn arm(
    store: &mut Store<CallState>,
    limits: &Limits,
    config: &SandboxConfig,
) -> Result<(), PluginFailure> {
    if config.fuel {
        store
            .set_fuel(limits.fuel)
            .map_err(|e| PluginFailure::new(FailureKind::Trap, e.to_string()))?;
    }
    if config.epoch_deadline {
        let tick = config.epoch_tick.as_nanos().max(1);
        let ticks = (u128::from(limits.timeout_ms) * 1_000_000).div_ceil(tick) as u64;
        store.set_epoch_deadline(ticks.max(1) + 1);
        store.epoch_deadline_trap();
    }
    Ok(())
}

/// Maps a wasmtime error to a failure kind and a message for people.
fn classify(
    err: &wasmtime::Error,
    limiter: &Limiter,
    limits: &Limits,
    stderr: &str,
) -> (FailureKind, String) {
    // With pooling, instance slots keep the pool from filling up; should
    // it fill anyway (e.g. its memories, taken by many-memory components),
    // that is the host's capacity, not the plugin's trap.
    if let Some(full) = err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return (
            FailureKind::Busy,
            format!("the host is at capacity: the instance pool is full ({full}); retry later"),
        );
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        match trap {
            Trap::OutOfFuel => {
                return (
                    FailureKind::FuelExhausted,
                    format!("used all {} units of fuel", limits.fuel),
                );
            }
            Trap::Interrupt => {
                return (
                    FailureKind::Timeout,
                    format!("ran past its {} ms deadline", limits.timeout_ms),
                );
            }
            Trap::StackOverflow => {
                return (
                    FailureKind::StackOverflow,
                    "call stack exhausted".to_string(),
                );
            }
            _ => {}
        }
    }
    if let Some(hit) = &limiter.hit {
        return (FailureKind::MemoryLimit, hit.clone());
    }
    // Wasmtime's error for this is not a public type; its message is stable.
    if root_message(err).contains("fuel allocated for hostcalls has been exhausted") {
        return (
            FailureKind::OutputTooLarge,
            format!(
                "the plugin tried to hand the host more than {} bytes at once (its result, or the arguments of a host call)",
                limits.max_host_alloc_bytes.max(limits.max_output_bytes)
            ),
        );
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return (
            FailureKind::Trap,
            format!("plugin exited with status {}", exit.0),
        );
    }
    // Lead with what the guest said (a panic message), then the trap
    // itself without wasmtime's multi-line backtrace.
    let trap = match err.downcast_ref::<Trap>() {
        Some(t) => t.to_string(),
        None => err.root_cause().to_string(),
    };
    let trap = trap.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = match panic_line(stderr) {
        Some(panic) => format!("{panic} ({trap})"),
        None => trap,
    };
    (FailureKind::Trap, message)
}

/// The `panicked at ...` line (and the one after it) from a guest's stderr.
fn panic_line(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    while let Some(l) = lines.next() {
        if l.contains("panicked at") {
            let next = lines.next().unwrap_or("");
            return Some(format!("{} {}", l.trim(), next.trim()).trim().to_string());
        }
    }
    None
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

fn root_message(err: &wasmtime::Error) -> String {
    let mut msg = err.to_string();
    let root = err.root_cause().to_string();
    if root != msg {
        msg = format!("{msg}: {root}");
    }
    msg
}

fn engine_err(e: wasmtime::Error) -> SandboxError {
    SandboxError::Engine(root_message(&e))
}

fn invalid(message: String) -> SandboxError {
    // Parser errors can carry multi-line dumps; keep one readable line.
    let mut line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > 400 {
        let mut cut = 400;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(" ...");
    }
    SandboxError::Plugin(PluginFailure::new(FailureKind::InvalidComponent, line))
}

/// What kind of file system object `meta` describes, for error messages.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "an unknown kind of file"
    }
}

fn link_error(e: &wasmtime::Error) -> SandboxError {
    invalid(format!("cannot be linked: {}", root_message(e)))
}

fn wrong_world(expected: World, got: World) -> PluginFailure {
    PluginFailure::new(
        FailureKind::InvalidComponent,
        format!("expected a {expected} plugin, but this component is a {got}"),
    )
}

/// The world a component implements, and its import and export names.
fn shape(
    engine: &Engine,
    component: &Component,
) -> Result<(World, Vec<String>, Vec<String>), SandboxError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let has = |n: &str| names.iter().any(|e| e == n);
    let world = if has("predict") && has("metadata") {
        World::Model
    } else if has("validate") && has("describe") {
        World::Validator
    } else {
        return Err(invalid(format!(
            "exports neither the model world (metadata, predict) nor the validator world (describe, validate); it exports: [{}]",
            names.join(", ")
        )));
    };
    Ok((world, imports, names))
}

/// Encoded size of a batch, for the input cap.
pub fn batch_size(batch: &Batch) -> u64 {
    batch
        .columns
        .iter()
        .map(|c| {
            c.name.len() as u64
                + match &c.values {
                    ColumnValues::Numeric(v) => v.len() as u64 * 8,
                    ColumnValues::Categorical(v) => v
                        .iter()
                        .map(|s| 8 + s.as_ref().map_or(0, |s| s.len() as u64))
                        .sum(),
                }
        })
        .sum()
}

fn predictions_size(p: &Predictions) -> u64 {
    p.values.len() as u64 * 8
}

fn context_size(ctx: &Context) -> u64 {
    let mut n = ctx.config.len() as u64
        + batch_size(&ctx.data)
        + predictions_size(&ctx.candidate_predictions);
    n += ctx.labels.as_ref().map_or(0, |l| l.len() as u64 * 8);
    n += ctx
        .baseline_predictions
        .as_ref()
        .map_or(0, predictions_size);
    if let Some(r) = &ctx.reference {
        n += batch_size(&r.data) + predictions_size(&r.candidate_predictions);
        n += r.labels.as_ref().map_or(0, |l| l.len() as u64 * 8);
        n += r.baseline_predictions.as_ref().map_or(0, predictions_size);
    }
    n
}

fn verdict_size(v: &Verdict) -> u64 {
    v.findings
        .iter()
        .map(|f| (f.code.len() + f.message.len() + 8) as u64)
        .sum::<u64>()
        + v.metrics
            .iter()
            .map(|m| (m.name.len() + 8) as u64)
            .sum::<u64>()
}
