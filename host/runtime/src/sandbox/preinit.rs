//! Pre-initialised models: run a model's `init` once, snapshot the
//! instance, and serve every later call from the snapshot.
//!
//! A model that exports `init` (contract 0.2, world
//! `preinitialized-model`) builds its state from its bundle there. The host
//! instruments the component (wasmtime-wizer), runs `init` itself — in an
//! ordinary call store, under the fixed [`INIT_LIMITS`] lowered by the
//! model's own manifest, with the bundle mounted, the frozen clocks and the
//! fixed seed [`INIT_SEED`] — and then has wizer read the instance's globals
//! and memories back and rewrite them into a new component whose data
//! segments hold the initialised state. That snapshot is the output of
//! untrusted code, so it is loaded like any other component: the
//! `[component]` caps and the static precheck apply to it (size, memory
//! minimum, functions), it is compiled through the same cache, and every
//! call runs in a fresh instance of it. Nothing a call writes survives the
//! call.
//!
//! `init` never runs under the operator's ceilings or the caller's
//! requested limits: a model could otherwise measure them (grow its memory
//! until refused, ask for host bytes until refused) and build a different
//! snapshot where it is gated than where it is served. The operator's
//! configuration still decides whether the snapshot may be used (its size
//! and memory minimum against the `[component]` caps and the memory
//! ceiling, every call's own limits), never what it holds.
//!
//! Wizer's own driver (`Wizer::run_component`) is not used: it unwraps the
//! results of its state-reading calls, so a guest that ran out of fuel or
//! time there would panic the host. Here those calls go through
//! [`StateReader`], which records the first error and stops the snapshot,
//! and which counts what the snapshot will hold as each memory is read
//! (see [`super::snapshot_data`]): a memory whose data would pass the
//! component size cap is refused before wizer copies any of it.
//!
//! Snapshots are cached by (component digest, bundle digest): the same
//! component and bundle always give the same snapshot, byte for byte,
//! because `init` sees nothing else that varies (limits, clocks,
//! randomness and file times are all fixed).

use super::call::settle;
use super::snapshot_data::{BYTES_PER_RANGE, DataBudget, DataCount, OverBudget};
use super::worlds::ContractVersion;
use super::{CallOptions, Plugin, Sandbox};
use crate::error::{FailureKind, PluginFailure, SandboxError};
use airlock_core::digest::Digest;
use airlock_core::limits::Limits;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::{Instance, WasmList};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

/// The seed `init` runs with, whatever the run's seed: a snapshot must
/// depend only on the component and the bundle.
pub const INIT_SEED: u64 = 0;

/// The limits `init` runs under before the model's manifest lowers them.
///
/// Fixed here, not taken from the operator's configuration or from the
/// caller, so that the snapshot is a function of the component (manifest
/// included) and the bundle alone: a model cannot learn in `init` where it
/// runs. They equal the default per-call ceilings of this release; changing
/// them may change snapshots (and so their digests), so they never follow
/// [`Limits::default`] implicitly. The wall-clock deadline and the fuel
/// stop a runaway `init` (which one trips first depends on the machine's
/// speed, so it decides only whether a snapshot is built, never what it
/// holds); memory, tables and host allocations are what a model could
/// measure, and they are the same everywhere.
pub const INIT_LIMITS: Limits = Limits {
    fuel: 2_000_000_000,
    timeout_ms: 10_000,
    memory_bytes: 256 << 20,
    table_elements: 100_000,
    max_input_bytes: 64 << 20,
    max_output_bytes: 16 << 20,
    max_log_bytes: 64 << 10,
    max_host_alloc_bytes: 16 << 20,
};

/// The export a pre-initialised model provides.
const INIT_EXPORT: &str = "init";

/// What building a snapshot produced and cost, for reports and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// `sha256:` of the snapshot component: what every call runs.
    pub digest: Digest,
    /// The component `init` ran in.
    pub source_digest: Digest,
    /// The bundle `init` read.
    pub bundle_digest: Option<Digest>,
    /// Size of the snapshot in bytes.
    pub size: usize,
    /// Size of the source component in bytes.
    pub source_size: usize,
    /// Fuel `init` used.
    pub init_fuel_used: u64,
    /// The limits `init` ran under ([`init_limits`]: the fixed
    /// [`INIT_LIMITS`] lowered by the model's manifest).
    pub init_limits: Limits,
    /// Wall-clock time to instrument, compile, run `init`, snapshot and
    /// load the result (zero when it came from the cache).
    #[serde(skip)]
    pub build_time: Duration,
}

/// A snapshot and the plugin that runs it.
#[derive(Clone)]
pub struct Snapshot {
    /// The loaded snapshot component (world `model`, contract 0.2).
    pub plugin: Arc<Plugin>,
    /// Where it came from and what it cost.
    pub info: SnapshotInfo,
}

/// Key of the snapshot cache.
pub(super) type SnapshotKey = (Digest, Option<Digest>);

impl Sandbox {
    /// The plugin every call of `plugin` with `options.bundle` should run:
    /// for a model that exports `init`, its snapshot (built now, or taken
    /// from the cache); for any other plugin, `None`. Only the bundle of
    /// `options` reaches `init`: its limits are [`init_limits`] and its seed
    /// [`INIT_SEED`], whatever `options` ask for the calls.
    pub fn preinitialize(
        &self,
        plugin: &Arc<Plugin>,
        options: &CallOptions,
    ) -> Result<Option<Snapshot>, PluginFailure> {
        let Some(source) = plugin.init_source.as_ref() else {
            return Ok(None);
        };
        let key = (plugin.digest, options.bundle.as_ref().map(|b| b.digest));
        if let Some(s) = self.lock_snapshots().get(&key) {
            let mut s = s.clone();
            s.info.build_time = Duration::ZERO;
            return Ok(Some(s));
        }
        let start = Instant::now();
        let (bytes, init_fuel_used) = self.build_snapshot(plugin, source, options)?;
        let snapshot_plugin = self.load_snapshot(&bytes, plugin).map_err(|e| match e {
            SandboxError::Plugin(mut f) => {
                f.message = format!("the snapshot taken after `init` is refused: {}", f.message);
                f
            }
            other => PluginFailure::new(FailureKind::InvalidComponent, other.to_string()),
        })?;
        let snapshot = Snapshot {
            info: SnapshotInfo {
                digest: snapshot_plugin.digest,
                source_digest: plugin.digest,
                bundle_digest: key.1,
                size: bytes.len(),
                source_size: source.len(),
                init_fuel_used,
                init_limits: init_limits(plugin),
                build_time: start.elapsed(),
            },
            plugin: snapshot_plugin,
        };
        self.lock_snapshots().insert(key, snapshot.clone());
        Ok(Some(snapshot))
    }

    /// Instruments the component, runs `init` under [`init_limits`] and
    /// returns the rewritten component and the fuel `init` used.
    fn build_snapshot(
        &self,
        plugin: &Plugin,
        source: &[u8],
        options: &CallOptions,
    ) -> Result<(Vec<u8>, u64), PluginFailure> {
        let invalid = |m: String| PluginFailure::new(FailureKind::InvalidComponent, m);
        let mut wizer = Wizer::new();
        // The component's own lift of `init` refers to the core export, so
        // the core function stays (the host never calls it on a snapshot).
        wizer.init_func(INIT_EXPORT).keep_init_func(true);
        let (cx, instrumented) =
            contain_panic("instrumenting", || wizer.instrument_component(source))?.map_err(
                |e| {
                    invalid(format!(
                        "cannot be pre-initialised: {}",
                        super::classify::root_message(&e)
                    ))
                },
            )?;
        let (component, _) = self
            .compile(Digest::of(&instrumented), &instrumented)
            .map_err(into_failure)?;
        let runtime = &self.inner.runtime;
        let pre = runtime
            .model_linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("cannot be linked for `init`: {e}")))?;
        let init_options = CallOptions {
            limits: Default::default(),
            seed: INIT_SEED,
            bundle: options.bundle.clone(),
        };
        let limits = init_limits(plugin);
        let _slot = runtime.slots.acquire(1)?;
        let start = Instant::now();
        let mut store = runtime.store(&limits, &init_options, None, None)?;
        let ran = run_init(&mut store, &pre);
        let (instance, init_fuel_used) = match ran {
            Ok(Ok(instance)) => {
                let used = settle(&store, &limits, start.elapsed(), Ok(Ok(())), |_| 0)?;
                (instance, used.fuel_used)
            }
            Ok(Err(e)) => {
                let f = settle::<()>(&store, &limits, start.elapsed(), Ok(Err(e)), |_| 0)
                    .expect_err("a guest error settles as a failure");
                return Err(in_init(f));
            }
            Err(e) => {
                let f = settle::<()>(&store, &limits, start.elapsed(), Err(e), |_| 0)
                    .expect_err("a trap settles as a failure");
                return Err(in_init(f));
            }
        };
        // Reading the state back runs the instrumentation's accessors:
        // fresh fuel and deadline, and room to copy out every memory.
        super::give_budget(&mut store, &limits, &runtime.config)?;
        store.set_hostcall_fuel((limits.memory_bytes as usize).saturating_add(1 << 20));
        let max_component_bytes = runtime.config.component_caps.max_component_bytes;
        let mut reader = StateReader {
            store: &mut store,
            instance,
            error: None,
            budget: DataBudget::for_component_cap(max_component_bytes),
            count: DataCount::default(),
            counted: HashSet::new(),
            over: None,
        };
        let built = contain_panic("snapshotting", || {
            block_on(wizer.snapshot_component(&cx, &mut reader))
        });
        // The reader's own stops come first: wizer was stopped on purpose.
        if let Some(over) = reader.over {
            let count = reader.count;
            return Err(invalid(over_budget_message(
                over,
                count,
                max_component_bytes,
            )));
        }
        if let Some(e) = reader.error {
            let limiter = &store.data().limiter;
            let (kind, message) = super::classify::classify(&e, limiter, &limits, "");
            return Err(PluginFailure::new(
                kind,
                format!("reading the state `init` left behind failed: {message}"),
            ));
        }
        let snapshot = built?
            .ok_or_else(|| invalid("the snapshot did not complete synchronously".into()))?
            .map_err(|e| invalid(format!("cannot be snapshotted: {e}")))?;
        Ok((snapshot, init_fuel_used))
    }
}

/// Instantiates the instrumented component and calls `init`. The outer
/// error is a trap; the inner one the model's own error.
fn run_init(
    store: &mut Store<super::CallState>,
    pre: &wasmtime::component::InstancePre<super::CallState>,
) -> wasmtime::Result<Result<Instance, super::bindings::PluginError>> {
    let instance = pre.instantiate(&mut *store)?;
    let init = instance
        .get_typed_func::<(), (Result<(), super::bindings::PluginError>,)>(&mut *store, INIT_EXPORT)
        .map_err(|e| {
            wasmtime::Error::msg(format!(
                "`init` does not have the type `func() -> result<_, plugin-error>`: {e}"
            ))
        })?;
    let (result,) = init.call(&mut *store, ())?;
    Ok(result.map(|()| instance))
}

/// Runs a step of wizer's, turning a panic inside it (wizer asserts its own
/// invariants, and a hostile component may find one that does not hold)
/// into a refusal of the component instead of a crash of the host.
fn contain_panic<R>(what: &str, f: impl FnOnce() -> R) -> Result<R, PluginFailure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        let first = why.lines().next().unwrap_or(why);
        PluginFailure::new(
            FailureKind::InvalidComponent,
            format!("cannot be pre-initialised: {what} it failed: {first}"),
        )
    })
}

/// Names `init` in a failure of it.
fn in_init(mut f: PluginFailure) -> PluginFailure {
    f.message = format!("`init` failed: {}", f.message);
    f
}

fn into_failure(e: SandboxError) -> PluginFailure {
    match e {
        SandboxError::Plugin(f) => f,
        other => PluginFailure::new(FailureKind::InvalidComponent, other.to_string()),
    }
}

/// Runs a future that never waits (every call below is synchronous) to
/// completion; `None` if it did wait.
fn block_on<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// The limits `init` runs under: [`INIT_LIMITS`] lowered by the model's
/// manifest (covered by the component digest), nothing else.
pub fn init_limits(plugin: &Plugin) -> Limits {
    INIT_LIMITS.lowered_by(&plugin.manifest.limits)
}

/// Why the memories `init` left behind are refused, in words.
fn over_budget_message(over: OverBudget, count: DataCount, max_component_bytes: u64) -> String {
    let when = "refused while the instance's state was read, before any snapshot was built";
    match over {
        OverBudget::Bytes => format!(
            "the snapshot taken after `init` is refused: its data segments would hold more than {max_component_bytes} bytes ({} counted so far), and a component may be at most {max_component_bytes} bytes (component.max_component_bytes); {when}",
            count.bytes
        ),
        OverBudget::Ranges => format!(
            "the snapshot taken after `init` is refused: its memories hold more than {} separate runs of non-zero bytes ({} counted so far), which would cost the host about {} bytes to segment, more than a component of {max_component_bytes} bytes may (component.max_component_bytes / 16 runs); {when}",
            DataBudget::for_component_cap(max_component_bytes).max_ranges,
            count.ranges,
            count.ranges.saturating_mul(BYTES_PER_RANGE)
        ),
    }
}

/// Wizer's view of the initialised instance: calls the instrumentation's
/// accessor functions, recording the first failure, and counts what each
/// memory will become as it is first read. On a failure or a memory over
/// the budget it never answers (the future stays pending), so wizer stops
/// where it is and [`block_on`] returns; nothing is built from a partial
/// state.
struct StateReader<'a> {
    store: &'a mut Store<super::CallState>,
    instance: Instance,
    error: Option<wasmtime::Error>,
    /// What the snapshot's memories may hold.
    budget: DataBudget,
    /// What the memories read so far will become.
    count: DataCount,
    /// Memory accessors already counted (wizer reads every memory twice:
    /// once to find its segments, once to copy them).
    counted: HashSet<String>,
    /// Set when a memory passed the budget.
    over: Option<OverBudget>,
}

/// Never completes: how the reader stops wizer.
async fn stop<T>() -> T {
    std::future::pending().await
}

impl StateReader<'_> {
    /// Calls `instance#func`, returning `None` (and keeping the error) on
    /// any failure; once one call failed, no more are made.
    fn call<R>(&mut self, instance: &str, func: &str) -> Option<R>
    where
        R: wasmtime::component::Lift + wasmtime::component::ComponentType + Send + Sync + 'static,
    {
        if self.error.is_some() || self.over.is_some() {
            return None;
        }
        match self.try_call::<R>(instance, func) {
            Ok(r) => Some(r),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }

    fn try_call<R>(&mut self, instance: &str, func: &str) -> wasmtime::Result<R>
    where
        R: wasmtime::component::Lift + wasmtime::component::ComponentType + Send + Sync + 'static,
    {
        let missing = || wasmtime::Error::msg(format!("no export {instance}#{func}"));
        let (_, outer) = self
            .instance
            .get_export(&mut *self.store, None, instance)
            .ok_or_else(missing)?;
        let (_, inner) = self
            .instance
            .get_export(&mut *self.store, Some(&outer), func)
            .ok_or_else(missing)?;
        let f = self
            .instance
            .get_typed_func::<(), (R,)>(&mut *self.store, inner)?;
        Ok(f.call(&mut *self.store, ())?.0)
    }
}

impl ComponentInstanceState for StateReader<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        let Some(list) = self.call::<WasmList<u8>>(instance, func) else {
            return stop().await;
        };
        // The list is the instance's memory itself, borrowed, not copied.
        let memory = list.as_le_slice(&*self.store);
        if self.counted.insert(format!("{instance}#{func}"))
            && let Err(over) = self.count.add_memory(memory, &self.budget)
        {
            self.over = Some(over);
            return stop().await;
        }
        contents(memory);
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        match self.call(instance, func) {
            Some(v) => v,
            None => stop().await,
        }
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        match self.call(instance, func) {
            Some(v) => v,
            None => stop().await,
        }
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        match self.call::<f32>(instance, func) {
            Some(v) => v.to_bits(),
            None => stop().await,
        }
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        match self.call::<f64>(instance, func) {
            Some(v) => v.to_bits(),
            None => stop().await,
        }
    }
}

/// Whether a loaded component exports `init` (the source of a snapshot).
pub(super) fn exports_init(exports: &[String]) -> bool {
    exports.iter().any(|e| e == INIT_EXPORT)
}

/// A snapshot is a 0.2 model, like its source.
pub(super) fn check_snapshot_contract(p: &Plugin) -> Result<(), String> {
    if p.contract != ContractVersion::V0_2 {
        return Err("the snapshot is not a contract-0.2 model".into());
    }
    Ok(())
}
