//! Pre-initialised models: run a model's `init` once, snapshot the
//! instance, and serve every later call from the snapshot.
//!
//! A model that exports `init` (contract 0.2, world
//! `preinitialized-model`) builds its state from its bundle there. The host
//! instruments the component (wasmtime-wizer), runs `init` itself — in an
//! ordinary call store, under the model's fuel, deadline and memory limits,
//! with the bundle mounted, the frozen clocks and the fixed seed
//! [`INIT_SEED`] — and then has wizer read the instance's globals and
//! memories back and rewrite them into a new component whose data segments
//! hold the initialised state. That snapshot is the output of untrusted
//! code, so it is loaded like any other component: the `[component]` caps
//! and the static precheck apply to it (size, memory minimum, functions),
//! it is compiled through the same cache, and every call runs in a fresh
//! instance of it. Nothing a call writes survives the call.
//!
//! Wizer's own driver (`Wizer::run_component`) is not used: it unwraps the
//! results of its state-reading calls, so a guest that ran out of fuel or
//! time there would panic the host. Here those calls go through
//! [`StateReader`], which records the first error and refuses the snapshot.
//!
//! Snapshots are cached by (component digest, bundle digest): the same
//! component and bundle always give the same snapshot, byte for byte,
//! because `init` sees nothing else that varies (clocks, randomness and
//! file times are all fixed). A snapshot is built under the limits of the
//! call that first needed it; a later caller with lower limits reuses it
//! (its own calls still run under its own limits).

use super::call::settle;
use super::worlds::ContractVersion;
use super::{CallOptions, Plugin, Sandbox};
use crate::error::{FailureKind, PluginFailure, SandboxError};
use airlock_core::digest::Digest;
use serde::Serialize;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::{Instance, WasmList};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

/// The seed `init` runs with, whatever the run's seed: a snapshot must
/// depend only on the component and the bundle.
pub const INIT_SEED: u64 = 0;

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
    /// from the cache); for any other plugin, `None`.
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
                build_time: start.elapsed(),
            },
            plugin: snapshot_plugin,
        };
        self.lock_snapshots().insert(key, snapshot.clone());
        Ok(Some(snapshot))
    }

    /// Instruments the component, runs `init` under the call's limits and
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
            seed: INIT_SEED,
            ..options.clone()
        };
        let limits = plugin.limits_for(&options.limits);
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
        let mut reader = StateReader {
            store: &mut store,
            instance,
            error: None,
        };
        let snapshot = contain_panic("snapshotting", || {
            block_on(wizer.snapshot_component(&cx, &mut reader))
        })?
        .ok_or_else(|| invalid("the snapshot did not complete synchronously".into()))?
        .map_err(|e| invalid(format!("cannot be snapshotted: {e}")))?;
        if let Some(e) = reader.error {
            let limiter = &store.data().limiter;
            let (kind, message) = super::classify::classify(&e, limiter, &limits, "");
            return Err(PluginFailure::new(
                kind,
                format!("reading the state `init` left behind failed: {message}"),
            ));
        }
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

/// Wizer's view of the initialised instance: calls the instrumentation's
/// accessor functions, recording the first failure instead of panicking.
struct StateReader<'a> {
    store: &'a mut Store<super::CallState>,
    instance: Instance,
    error: Option<wasmtime::Error>,
}

impl StateReader<'_> {
    /// Calls `instance#func`, returning `None` (and keeping the error) on
    /// any failure; once one call failed, no more are made.
    fn call<R>(&mut self, instance: &str, func: &str) -> Option<R>
    where
        R: wasmtime::component::Lift + wasmtime::component::ComponentType + Send + Sync + 'static,
    {
        if self.error.is_some() {
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
        match self.call::<WasmList<u8>>(instance, func) {
            Some(list) => contents(list.as_le_slice(&*self.store)),
            None => contents(&[]),
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func).unwrap_or(0)
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func).unwrap_or(0)
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call::<f32>(instance, func).map_or(0, f32::to_bits)
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call::<f64>(instance, func).map_or(0, f64::to_bits)
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
