//! Warm sessions: one live model instance scoring many batches.
//!
//! Fresh instances are the default and the safe choice; a session trades
//! that isolation (the guest's memory carries over between its calls) for
//! speed, and exists for the benchmark's warm measurements and for callers
//! who accept the trade. Everything the *host* provides still starts fresh
//! on every call, as it would for a fresh instance: fuel, the deadline,
//! empty stdout and stderr logs (each under the full log cap), the virtual
//! monotonic clock back at zero, and the input cap checked before the guest
//! runs. (The seeded random streams continue: the guest's handles to them
//! cannot be swapped under it.)
//!
//! A session also ends: it refuses calls past `session_max_calls`, after
//! sitting unused for longer than `session_max_idle`, and after a call that
//! trapped. Refusing drops the instance at once and gives its slot back to
//! the pool; the caller starts a new session.

use super::slots::SlotGuard;
use super::{
    CallState, Outcome, Runtime, batch_size, bindings, check_input, give_budget, predictions_size,
    settle,
};
use crate::error::{FailureKind, PluginFailure};
use airlock_core::limits::Limits;
use airlock_core::types::{Batch, Predictions};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Store;

/// Why a session call did not run, or how it failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    /// The session served its `session_max_calls` calls.
    #[error(
        "session refused: it has served its limit of {max} calls (session_max_calls); start a new session"
    )]
    CallsSpent {
        /// The limit.
        max: u64,
    },
    /// The session sat unused for longer than `session_max_idle_ms`.
    #[error(
        "session refused: it was idle for {idle_ms} ms, past the limit of {max_ms} ms (session_max_idle_ms); start a new session"
    )]
    Idle {
        /// How long it sat unused.
        idle_ms: u64,
        /// The limit.
        max_ms: u64,
    },
    /// An earlier call trapped, which leaves the instance unusable.
    #[error("session refused: an earlier call on it failed ({kind}); start a new session")]
    Failed {
        /// How that call failed.
        kind: FailureKind,
    },
    /// The call ran (or was refused before running) and failed.
    #[error(transparent)]
    Call(#[from] PluginFailure),
}

impl SessionError {
    /// The failure of the call itself, when the call was made.
    pub fn failure(&self) -> Option<&PluginFailure> {
        match self {
            SessionError::Call(f) => Some(f),
            _ => None,
        }
    }
}

/// A live model instance reused across calls; see
/// [`super::Plugin::instantiate`] and the module documentation.
pub struct Session {
    live: Option<Live>,
    closed: Option<SessionError>,
    limits: Limits,
    runtime: Arc<Runtime>,
    calls: u64,
    last_used: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("calls", &self.calls)
            .field("closed", &self.closed)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The instance and the slot it occupies; the store (and with it the
/// instance) is dropped before the slot is given back.
struct Live {
    store: Store<CallState>,
    model: super::worlds::ModelInstance,
    _slot: SlotGuard,
}

impl Session {
    pub(super) fn new(
        store: Store<CallState>,
        model: super::worlds::ModelInstance,
        slot: SlotGuard,
        limits: Limits,
        runtime: Arc<Runtime>,
    ) -> Session {
        Session {
            live: Some(Live {
                store,
                model,
                _slot: slot,
            }),
            closed: None,
            limits,
            runtime,
            calls: 0,
            last_used: Instant::now(),
        }
    }

    /// How many calls this session has made.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Whether the session still accepts calls (it may yet refuse the next
    /// one for sitting idle too long).
    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    /// Drops the instance, freeing its slot, and remembers why.
    fn close(&mut self, why: SessionError) -> SessionError {
        self.live = None;
        self.closed = Some(why.clone());
        why
    }

    /// Scores `batch` on the warm instance.
    pub fn predict(&mut self, batch: &Batch) -> Result<Outcome<Predictions>, SessionError> {
        if let Some(why) = &self.closed {
            return Err(why.clone());
        }
        let config = &self.runtime.config;
        if self.calls >= config.session_max_calls {
            let max = config.session_max_calls;
            return Err(self.close(SessionError::CallsSpent { max }));
        }
        let idle = self.last_used.elapsed();
        if idle > config.session_max_idle {
            let max_ms = millis(config.session_max_idle);
            return Err(self.close(SessionError::Idle {
                idle_ms: millis(idle),
                max_ms,
            }));
        }
        check_input(batch_size(batch), &self.limits)?;
        let Some(live) = self.live.as_mut() else {
            unreachable!("a session without an instance is closed")
        };
        let state = live.store.data_mut();
        state.wasi.restart();
        state.limiter.hit = None;
        state.candidate_fuel = 0;
        state.deadline = Instant::now() + Duration::from_millis(self.limits.timeout_ms);
        give_budget(&mut live.store, &self.limits, config)?;
        let start = Instant::now();
        let wire = bindings::Batch::from(batch);
        let result = live
            .model
            .predict(&mut live.store, &wire)
            .map(|r| r.map(Predictions::from));
        let trapped = result.is_err();
        let outcome = settle(
            &live.store,
            &self.limits,
            start.elapsed(),
            result,
            predictions_size,
        );
        self.calls += 1;
        self.last_used = Instant::now();
        match outcome {
            Err(f) if trapped => {
                self.close(SessionError::Failed { kind: f.kind });
                Err(SessionError::Call(f))
            }
            other => other.map_err(SessionError::Call),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
