//! The `candidate` interface: how a validator probes the candidate model.
//!
//! Every probe runs the candidate in its own fresh sandbox, under at most
//! the validator's remaining fuel and remaining wall-clock time, and is
//! charged to the validator. The probe sees exactly the columns the model
//! declares (never a withheld label column), and its answers are checked
//! twice: against the model's declared contract, and against the answers
//! the gate already recorded for the same rows. A model that answers probes
//! differently from the gate's own scoring (e.g. a constant for small
//! batches) is caught here, whatever the validator does with the error: the
//! violation is recorded for the gate runner, which fails the step.
//!
//! Every probe the candidate fails (a trap, fuel, time, memory, its own
//! refusal, a violation) is also recorded here, on the probe's path, in the
//! link's [`ProbeLog`]: the gate runner lists them in the step's report and
//! blocks the step unless its configuration allows the kind. A validator
//! that swallows the error cannot hide it, and cannot invent one either.

use super::bindings::{self, PluginError};
use super::{CallState, CheckedModel};
use crate::error::{FailureKind, PluginFailure};
use airlock_core::gate::policy::{MAX_RECORDED_PROBE_FAILURES, ProbeFailure};
use airlock_core::types::{Batch, ColumnValues, Predictions};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

const CANDIDATE_IFACE_V1: &str = "airlock:plugin/candidate@0.1.0";
const CANDIDATE_IFACE_V2: &str = "airlock:plugin/candidate@0.2.0";

/// How far a probe answer may differ from the gate's recorded answer for
/// the same row (absolute, or relative to the larger magnitude).
pub const ANSWER_TOLERANCE: f64 = 1e-9;

/// The candidate a validator may call through the `candidate` interface.
#[derive(Clone)]
pub struct CandidateLink {
    /// The candidate model, its options and checked metadata.
    pub model: CheckedModel,
    /// Column names a probe may never hand the model (the gate's labels).
    pub withheld: Arc<Vec<String>>,
    /// What the candidate answered for rows the gate already scored.
    pub known: Arc<KnownAnswers>,
    /// Contract violations the candidate committed during this step; the
    /// gate runner fails the step when this is not empty.
    pub violations: Arc<Mutex<Vec<PluginFailure>>>,
    /// Every probe of this step the candidate failed, as the host saw it.
    pub probe_failures: Arc<Mutex<ProbeLog>>,
}

/// The failed probes of one step, recorded by the host.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProbeLog {
    /// In the order they happened: the first
    /// [`MAX_RECORDED_PROBE_FAILURES`], and past them the first of each
    /// kind not yet recorded, so every kind that happened is listed.
    pub recorded: Vec<ProbeFailure>,
    /// Failed probes not listed (each of a kind already listed).
    pub unrecorded: u64,
}

impl ProbeLog {
    /// Records one failed probe.
    pub fn push(&mut self, f: ProbeFailure) {
        if self.recorded.len() < MAX_RECORDED_PROBE_FAILURES
            || !self.recorded.iter().any(|r| r.kind == f.kind)
        {
            self.recorded.push(f);
        } else {
            self.unrecorded += 1;
        }
    }
}

impl CandidateLink {
    /// A link to `model` with nothing withheld and no recorded answers
    /// (a validator run outside a gate).
    pub fn new(model: CheckedModel) -> CandidateLink {
        CandidateLink {
            model,
            withheld: Arc::new(Vec::new()),
            known: Arc::new(KnownAnswers::default()),
            violations: Arc::new(Mutex::new(Vec::new())),
            probe_failures: Arc::new(Mutex::new(ProbeLog::default())),
        }
    }
}

/// Recorded answers, by a hash of the row exactly as the model saw it.
#[derive(Debug, Default)]
pub struct KnownAnswers {
    rows: HashMap<[u8; 32], Vec<f64>>,
}

impl KnownAnswers {
    /// Records the answers `predictions` gave for the rows of `batch` (the
    /// batch the model saw).
    pub fn record(&mut self, batch: &Batch, predictions: &Predictions) {
        let width = predictions.width.max(1) as usize;
        for (r, answer) in predictions.values.chunks(width).enumerate() {
            if r >= batch.rows as usize {
                break;
            }
            self.rows.insert(row_key(batch, r), answer.to_vec());
        }
    }

    /// The first row of `batch` whose answer differs from the recorded one:
    /// `(row index, recorded, answered)`.
    pub fn first_disagreement(
        &self,
        batch: &Batch,
        predictions: &Predictions,
    ) -> Option<(usize, Vec<f64>, Vec<f64>)> {
        let width = predictions.width.max(1) as usize;
        for (r, answer) in predictions.values.chunks(width).enumerate() {
            if r >= batch.rows as usize {
                break;
            }
            let Some(known) = self.rows.get(&row_key(batch, r)) else {
                continue;
            };
            let same = known.len() == answer.len()
                && known.iter().zip(answer).all(|(a, b)| {
                    let scale = a.abs().max(b.abs()).max(1.0);
                    (a - b).abs() <= ANSWER_TOLERANCE * scale
                });
            if !same {
                return Some((r, known.clone(), answer.to_vec()));
            }
        }
        None
    }

    /// How many distinct rows are recorded.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// A collision-resistant key of row `r` of `batch`: every column's name and
/// value, length-prefixed (NaN canonicalised, so every missing value is the
/// same missing value).
fn row_key(batch: &Batch, r: usize) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in &batch.columns {
        h.update((c.name.len() as u64).to_be_bytes());
        h.update(c.name.as_bytes());
        match &c.values {
            ColumnValues::Numeric(v) => {
                let x = v.get(r).copied().unwrap_or(f64::NAN);
                let bits = if x.is_nan() {
                    f64::NAN.to_bits()
                } else {
                    x.to_bits()
                };
                h.update([0u8]);
                h.update(bits.to_be_bytes());
            }
            ColumnValues::Categorical(v) => match v.get(r).and_then(|s| s.as_deref()) {
                Some(s) => {
                    h.update([1u8]);
                    h.update((s.len() as u64).to_be_bytes());
                    h.update(s.as_bytes());
                }
                None => h.update([2u8]),
            },
        }
    }
    h.finalize().into()
}

fn guest_error(code: &str, message: impl Into<String>) -> PluginError {
    PluginError {
        code: code.into(),
        message: message.into(),
    }
}

/// Why a probe returned no predictions, before it is put in either
/// contract version's words.
enum ProbeError {
    /// The validator's request was wrong; the candidate never ran.
    InvalidRequest {
        /// The 0.1 error code for it.
        code: &'static str,
        message: String,
    },
    /// The candidate ran, failed or refused.
    Candidate(PluginFailure),
}

/// Links the `candidate` interface of both contract versions into a
/// validator linker: the same probe, with 0.1's string error codes or 0.2's
/// typed `candidate-error`.
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    add_v1(linker)?;
    add_v2(linker)
}

/// `metadata`, the same in both versions: the metadata the host checked.
fn add_metadata(
    inst: &mut wasmtime::component::LinkerInstance<'_, CallState>,
) -> wasmtime::Result<()> {
    inst.func_wrap(
        "metadata",
        |store: StoreContextMut<'_, CallState>,
         (): ()|
         -> wasmtime::Result<(bindings::ModelMetadata,)> {
            match &store.data().candidate {
                Some(c) => Ok((c.model.metadata.clone().into(),)),
                None => Err(wasmtime::Error::msg(
                    "no candidate model is attached to this call",
                )),
            }
        },
    )
}

fn add_v1(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    let mut inst = linker.instance(CANDIDATE_IFACE_V1)?;
    add_metadata(&mut inst)?;
    inst.func_wrap(
        "predict",
        |store: StoreContextMut<'_, CallState>,
         (batch,): (bindings::Batch,)|
         -> wasmtime::Result<(Result<bindings::Predictions, PluginError>,)> {
            Ok((probe(store, batch)?.map_err(|e| match e {
                ProbeError::InvalidRequest { code, message } => guest_error(code, message),
                // 0.1 names every failure by its kind's string, the
                // candidate's own refusal included (`guest_error`).
                ProbeError::Candidate(f) => guest_error(f.kind.as_str(), f.message),
            }),))
        },
    )?;
    Ok(())
}

fn add_v2(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    use bindings::v2::{CandidateError, SandboxFailure};
    let mut inst = linker.instance(CANDIDATE_IFACE_V2)?;
    add_metadata(&mut inst)?;
    inst.func_wrap(
        "predict",
        |store: StoreContextMut<'_, CallState>,
         (batch,): (bindings::Batch,)|
         -> wasmtime::Result<(Result<bindings::Predictions, CandidateError>,)> {
            Ok((probe(store, batch)?.map_err(|e| match e {
                ProbeError::InvalidRequest { message, .. } => {
                    CandidateError::InvalidRequest(message)
                }
                ProbeError::Candidate(f) => match crate::convert::failure_kind_v2(f.kind) {
                    Some(kind) => CandidateError::Failed(SandboxFailure {
                        kind,
                        message: f.message,
                    }),
                    None => CandidateError::Refused(refusal(f)),
                },
            }),))
        },
    )?;
    Ok(())
}

/// The candidate's own error, as it returned it.
fn refusal(f: PluginFailure) -> PluginError {
    match f.guest_code {
        Some(code) => {
            let prefix = format!("{code}: ");
            let message = f
                .message
                .strip_prefix(&prefix)
                .map(str::to_string)
                .unwrap_or(f.message);
            PluginError { code, message }
        }
        None => guest_error(f.kind.as_str(), f.message),
    }
}

/// One probe: the candidate's declared columns only, the validator's
/// remaining fuel and time, the answers checked against the contract and
/// against the gate's recorded answers. An `Err` of the outer result is a
/// host error that traps the validator.
fn probe(
    mut store: StoreContextMut<'_, CallState>,
    batch: bindings::Batch,
) -> wasmtime::Result<Result<bindings::Predictions, ProbeError>> {
    let batch = Batch::from(batch);
    let Some(link) = store.data().candidate.clone() else {
        return Ok(Err(ProbeError::InvalidRequest {
            code: "no-candidate",
            message: "no candidate model is attached to this call".into(),
        }));
    };
    let withheld: Vec<&str> = link.withheld.iter().map(String::as_str).collect();
    let inputs =
        match airlock_core::inputs::model_inputs(&batch, &link.model.metadata.inputs, &withheld) {
            Ok((b, _)) => b,
            Err(e) => {
                return Ok(Err(ProbeError::InvalidRequest {
                    code: "missing-column",
                    message: e.to_string(),
                }));
            }
        };
    let metered = store.data().metered;
    let remaining = if metered { store.get_fuel()? } else { u64::MAX };
    let left_ms = store
        .data()
        .deadline
        .saturating_duration_since(Instant::now())
        .as_millis() as u64;
    let mut options = link.model.options.clone();
    options.limits.fuel = Some(options.limits.fuel.map_or(remaining, |f| f.min(remaining)));
    options.limits.timeout_ms = Some(
        options
            .limits
            .timeout_ms
            .map_or(left_ms, |t| t.min(left_ms))
            .max(1),
    );
    let reserved = store.data().reserved_slot.clone();
    let result = link
        .model
        .predict_within(&options, &inputs, reserved.as_ref());
    let used = match &result {
        Ok(o) => o.fuel_used,
        Err(f) => f.fuel_used,
    };
    store.data_mut().candidate_fuel += used;
    if metered {
        store.set_fuel(remaining.saturating_sub(used))?;
    }
    let record = |f: PluginFailure| {
        link.violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(f);
    };
    let failed = |f: &PluginFailure| {
        link.probe_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ProbeFailure::new(f.kind, inputs.rows, &f.message));
    };
    let out = match result {
        Ok(o) => o,
        Err(f) => {
            failed(&f);
            if f.kind == FailureKind::InvalidOutput {
                record(f.clone());
            }
            return Ok(Err(ProbeError::Candidate(f)));
        }
    };
    if let Some((row, known, got)) = link.known.first_disagreement(&inputs, &out.value) {
        let message = format!(
            "the candidate answered probe row {} with {got:?}, but answered the same row with {known:?} when the gate scored it",
            row + 1
        );
        let f = PluginFailure::new(FailureKind::InvalidOutput, message);
        failed(&f);
        record(f.clone());
        return Ok(Err(ProbeError::Candidate(f)));
    }
    Ok(Ok(out.value.into()))
}
