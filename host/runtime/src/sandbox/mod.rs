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
mod call;
pub mod candidate;
pub mod checked;
mod classify;
mod engine;
mod load;
mod lru;
pub mod preinit;
pub mod session;
pub mod slots;
mod snapshot_data;
pub mod ticker;
pub mod wasi;
pub mod worlds;

pub use call::batch_size;
pub use candidate::CandidateLink;
pub use checked::CheckedModel;
pub use preinit::{INIT_LIMITS, Snapshot, SnapshotInfo, init_limits};
pub use session::{Session, SessionError};
pub use slots::SlotStats;
pub use ticker::EngineWatch;
pub use worlds::ContractVersion;

pub use crate::bundle::Bundle;
use crate::bundle::BundleCaps;
use crate::precheck::ComponentCaps;
use airlock_core::capabilities::{Capability, World};
use airlock_core::digest::Digest;
use airlock_core::limits::{LimitRequest, Limits};
use airlock_core::manifest::Manifest;
use cache::{CacheOutcome, CompileCache};
use call::Limiter;
// The call path's helpers, named here so that `session` reaches them as
// `super::…` like the rest of the sandbox's shared items.
use call::{check_input, give_budget, predictions_size, settle};
use lru::Lru;
use serde::Serialize;
use slots::Slots;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ticker::Ticker;
use wasi::{HasWasi, WasiState};
use wasmtime::Engine;
use wasmtime::component::Linker;

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
    /// Canonicalise NaNs produced by float arithmetic (on by default; off
    /// only for benchmarks). Without it a plugin can read hardware-specific
    /// NaN bit patterns and behave differently on the machine that gated it
    /// and the one that serves it.
    pub nan_canonicalization: bool,
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
            nan_canonicalization: true,
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
    /// Snapshots of pre-initialised models by (component, bundle); bounded
    /// like `loaded`.
    snapshots: Mutex<Lru<preinit::SnapshotKey, Snapshot>>,
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
    /// Which contract version it was built against.
    pub contract: ContractVersion,
    /// Imported interfaces, as named in the component.
    pub imports: Vec<String>,
    /// Exported functions and interfaces.
    pub exports: Vec<String>,
    /// Where the compiled code came from.
    pub cache_outcome: CacheOutcome,
    /// What the plugin asks of the host (embedded in the component).
    pub manifest: Manifest,
    /// For a contract-0.2 model that exports `init`: its bytes, which
    /// [`Sandbox::preinitialize`] instruments and snapshots.
    pub(crate) init_source: Option<Arc<[u8]>>,
    pre: PreInstance,
}

impl Plugin {
    /// Whether this is a model that exports `init`, to be run from its
    /// snapshot (see [`Sandbox::preinitialize`]).
    pub fn is_preinitializable(&self) -> bool {
        self.init_source.is_some()
    }
}

/// A component linked and type-checked against its world, ready to be
/// instantiated once per call.
enum PreInstance {
    Model(worlds::ModelPre),
    Validator(worlds::ValidatorPre),
}

/// What `airlock plugin inspect` shows a reviewer, computed without running
/// any plugin code.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// `sha256:` digest of the file.
    pub digest: Digest,
    /// `model` or `validator`.
    pub world: World,
    /// The contract version its `airlock:plugin` imports name (`None`
    /// when it imports none).
    pub contract: Option<ContractVersion>,
    /// Whether it is a model that exports `init` (run once, then every
    /// call starts from the snapshot taken after it).
    pub preinitialized: bool,
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
