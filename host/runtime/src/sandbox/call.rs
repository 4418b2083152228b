//! The per-call path: building a fresh store under a call's limits (WASI
//! state, memory and table limiter, fuel and deadline), taking an instance
//! slot, running the export, and settling the result into an [`Outcome`]
//! or a typed [`PluginFailure`]. Also the size measures behind the input
//! and output caps. Everything here runs once per call.

use super::classify::classify;
use super::session::Session;
use super::slots::Slots;
use super::wasi::{WasiSpec, WasiState};
use super::{
    CallOptions, CallState, CandidateLink, Outcome, Plugin, PreInstance, Runtime, SandboxConfig,
    bindings,
};
use crate::error::{FailureKind, PluginFailure};
use airlock_core::capabilities::World;
use airlock_core::limits::{LimitRequest, Limits};
use airlock_core::types::{
    Batch, ColumnValues, Context, ModelMetadata, Predictions, ValidatorInfo, Verdict,
};
use bindings::PluginError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{ResourceLimiter, Store};

/// Memory and table caps that remember whether they were hit, so a failed
/// allocation that the guest turns into a trap is reported as
/// `memory_limit` rather than a generic trap.
///
/// The memory cap is on the total of all linear memories of the store (one
/// call), not on each memory: a component with several memories cannot
/// multiply its allowance. Wasmtime reports every memory's initial
/// allocation as a growth from 0, so instantiation counts too.
pub(super) struct Limiter {
    pub(super) memory_bytes: usize,
    pub(super) table_elements: usize,
    /// Bytes of all linear memories of the store, as granted so far.
    pub(super) memory_total: usize,
    pub(super) hit: Option<String>,
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

impl Runtime {
    /// Builds a store for one call under `limits`. `reserved` is the pool
    /// whose second slot this call holds for its candidate's calls.
    pub(super) fn store(
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
        give_budget(&mut store, limits, &self.config)?;
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
        let PreInstance::Model(pre) = &self.pre else {
            return Err(wrong_world(World::Model, self.world));
        };
        self.call(
            options,
            None,
            SlotNeed::Take(1),
            0,
            |store| {
                let m = pre.instantiate(&mut *store)?;
                Ok(m.metadata(&mut *store)?.map(ModelMetadata::from))
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
        let PreInstance::Model(pre) = &self.pre else {
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
                Ok(m.predict(&mut *store, &batch)?.map(Predictions::from))
            },
            |p: &Predictions| p.values.len() as u64 * 8,
        )
    }

    /// A validator's self-description.
    pub fn describe(&self, options: &CallOptions) -> Result<Outcome<ValidatorInfo>, PluginFailure> {
        let PreInstance::Validator(pre) = &self.pre else {
            return Err(wrong_world(World::Validator, self.world));
        };
        self.call(
            options,
            None,
            SlotNeed::Take(1),
            0,
            |store| {
                let v = pre.instantiate(&mut *store)?;
                Ok(Ok(v.describe(&mut *store)?.into()))
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
        let PreInstance::Validator(pre) = &self.pre else {
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
                Ok(v.validate(&mut *store, &ctx)?.map(Verdict::from))
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
        let PreInstance::Model(pre) = &self.pre else {
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
pub(super) enum SlotNeed {
    /// Take this many from the pool, waiting in line if need be.
    Take(u32),
    /// Use the slot the calling validator already holds for its candidate.
    Reserved,
}

/// Refuses an input above the cap before any plugin code runs.
pub(super) fn check_input(input_bytes: u64, limits: &Limits) -> Result<(), PluginFailure> {
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
pub(super) fn settle<R>(
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
pub(super) fn give_budget(
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

fn wrong_world(expected: World, got: World) -> PluginFailure {
    PluginFailure::new(
        FailureKind::InvalidComponent,
        format!("expected a {expected} plugin, but this component is a {got}"),
    )
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

pub(super) fn predictions_size(p: &Predictions) -> u64 {
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

/// The last `max` bytes of `s` (on a character boundary), for the stderr
/// tail a failure carries.
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
