//! The controller: canary rollouts judged interval by interval, automatic
//! rollback in production, and the audit, history and alerts of every
//! automatic action (monitors, shadows, windows and webhooks have their
//! own modules).
//!
//! One controller task ticks for every served model; when a model's
//! interval is due it starts that model's analysis as a task of its own
//! (one at a time per model, models independently), which takes the window
//! since the last analysis (counter differences, monitor verdicts, shadow
//! agreement), measures it with the pure rules of `airlock_rollout`, and
//! applies what the rollout state machine answers. The model's control
//! lock is held only to read the window and to apply the answer, never
//! while monitors run in the sandbox; monitors that have not answered
//! within one interval make the analysis an error (judged without them),
//! so a slow monitor delays neither its model's status nor any other
//! model's rollback. Every automatic action is committed with an audit
//! entry that carries the measurement that caused it, and alerted.
//!
//! Lock order, everywhere: `Serving::alias_lock`, then a model's control
//! lock, then the write lock of a change ([`AppState::begin`]).

use super::policy::ServingPolicy;
use super::stats::Snapshot;
use super::{ModelServing, WarmVersion};
use crate::audit::Event;
use crate::error::ApiError;
use crate::state::AppState;
use airlock_audit::Action;
use airlock_rollout::analysis::{Measurement, WindowStats, measure};
use airlock_rollout::compare::Agreement;
use airlock_rollout::rollout::{Action as Step, Phase, Rollout};
use airlock_rollout::routing::Split;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the controller looks for due analyses (so an interval ends at
/// most this late).
const TICK: Duration = Duration::from_millis(20);
/// Analysis records kept per model.
const HISTORY: usize = 200;

/// A model's control state.
#[derive(Default)]
pub struct Control {
    /// The serving policy (also published to the hot path through
    /// `ModelServing::policy`).
    pub policy: ServingPolicy,
    /// Webhook secrets, in the policy's order (never shown).
    pub secrets: Vec<Vec<u8>>,
    /// The canary rollout, while one exists (kept after it ends so that
    /// its outcome can be read).
    pub rollout: Option<Rollout>,
    /// What each analysis measured and did, newest last.
    pub history: VecDeque<AnalysisRecord>,
    last: HashMap<String, Snapshot>,
    last_agreement: HashMap<String, Agreement>,
    window_started: Option<Instant>,
    pub(crate) next_due: Option<Instant>,
    pub(crate) monitors: HashMap<String, super::monitors::LoadedMonitor>,
    /// When the last automatic switch completed (for the timing records).
    switched_at: Option<Instant>,
    /// Since when an analysis of this model has been under way.
    pub(crate) analysing: Option<Instant>,
    /// Whether the monitors are out on a blocking thread (they come back
    /// when it ends, even after their analysis gave up on them).
    pub(crate) monitors_out: bool,
    /// How many times the monitors were sent out (status: tells one slow
    /// run from the next).
    pub(crate) monitor_runs: u64,
}

impl Control {
    /// Starts the analysis over: the next tick opens a fresh window.
    pub fn restart_analysis(&mut self) {
        self.next_due = None;
    }
}

/// One analysis: when, what it measured, what was done.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisRecord {
    /// When (RFC 3339 UTC).
    pub at: String,
    /// `canary` or `production`.
    pub scope: &'static str,
    /// The version the window judged.
    pub version: String,
    /// The canary weight during the window.
    pub weight: u8,
    /// The window's statistics.
    pub window: WindowStats,
    /// The measurement.
    pub measurement: Measurement,
    /// What the controller did.
    pub actions: Vec<String>,
    /// For a rollback or abort: milliseconds from the start of the window
    /// that breached to the completed switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breach_to_rollback_ms: Option<f64>,
    /// For a rollback or abort: milliseconds from the analysis' decision to
    /// the completed switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_to_switch_ms: Option<f64>,
}

/// Starts the controller task; it ends when `stop` fires.
pub fn start(
    state: Arc<AppState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            for name in state.serving.model_names() {
                let Some(ms) = state.serving.model(&name) else {
                    continue;
                };
                let mut c = ms.control.lock().await;
                if c.analysing.is_some() {
                    continue; // its last analysis is still under way
                }
                let interval = Duration::from_secs(c.policy.interval_s.max(1));
                let now = Instant::now();
                match c.next_due {
                    None => {
                        // First sight: start a window now.
                        reset_window(&ms, &mut c);
                        c.next_due = Some(now + interval);
                    }
                    Some(due) if now >= due => {
                        // Intervals keep their length instead of drifting
                        // by a tick each time (unless far behind).
                        let next = due + interval;
                        c.next_due = Some(if next > now { next } else { now + interval });
                        c.analysing = Some(now);
                        drop(c);
                        tokio::spawn(analysis_task(state.clone(), ms.clone(), interval));
                    }
                    Some(_) => {}
                }
            }
        }
    })
}

/// One model's analysis as a task of its own; whatever becomes of it
/// (an error, a panic), the model is free for the next one.
async fn analysis_task(state: Arc<AppState>, ms: Arc<ModelServing>, bound: Duration) {
    use futures_util::FutureExt;
    let run = std::panic::AssertUnwindSafe(analyze(&state, &ms, bound)).catch_unwind();
    match run.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            model = %ms.name,
            error = %e.message,
            "analysis of {}: {}",
            ms.name,
            e.message
        ),
        Err(_) => tracing::error!(model = %ms.name, "analysis of {} panicked", ms.name),
    }
    ms.control.lock().await.analysing = None;
}

/// Starts a fresh window for every version of the deployment.
fn reset_window(ms: &ModelServing, c: &mut Control) {
    let dep = ms.deployment.load_full();
    c.last.clear();
    for v in std::iter::once(&dep.stable).chain(dep.canary.as_ref()) {
        c.last.insert(v.version.clone(), v.stats.snapshot());
    }
    c.window_started = Some(Instant::now());
}

fn take_window(c: &mut Control, v: &WarmVersion) -> Snapshot {
    let now = v.stats.snapshot();
    let w = match c.last.get(&v.version) {
        Some(prev) => now.since(prev),
        None => now.clone(),
    };
    c.last.insert(v.version.clone(), now);
    w
}

/// One analysis interval of `ms`: the window is read under the control
/// lock, the monitors run without it (for at most `bound`), and the answer
/// is applied under `alias_lock` and the control lock, unless the
/// deployment changed in the meantime (then the window no longer says
/// anything about what serves, and nothing is done).
async fn analyze(
    state: &Arc<AppState>,
    ms: &Arc<ModelServing>,
    bound: Duration,
) -> Result<(), ApiError> {
    let decided;
    let (dep, judged, scope, sw, jw, window_started, compared, disagreed, policy) = {
        let mut c = ms.control.lock().await;
        decided = Instant::now();
        let window_started = c.window_started.unwrap_or(decided);
        c.window_started = Some(decided);
        let dep = ms.deployment.load_full();
        let canary_live = matches!(
            c.rollout.as_ref().map(Rollout::phase),
            Some(Phase::Progressing | Phase::Paused { .. })
        ) && dep.canary.is_some();
        let (judged, scope) = match (&dep.canary, canary_live) {
            (Some(cv), true) => (cv.clone(), "canary"),
            _ => (dep.stable.clone(), "production"),
        };
        let sw = take_window(&mut c, &dep.stable);
        let jw = if scope == "canary" {
            take_window(&mut c, &judged)
        } else {
            sw.clone()
        };
        let (compared, disagreed) = match &dep.shadow {
            Some(s) if s.version == judged.version || scope == "production" => {
                let now = state
                    .serving
                    .shadow
                    .agreement
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&(ms.name.clone(), s.version.clone()))
                    .cloned()
                    .unwrap_or_default();
                let prev = c
                    .last_agreement
                    .insert(s.version.clone(), now.clone())
                    .unwrap_or_default();
                (
                    now.compared.saturating_sub(prev.compared),
                    now.disagreed.saturating_sub(prev.disagreed),
                )
            }
            _ => (0, 0),
        };
        let policy = c.policy.clone();
        (
            dep,
            judged,
            scope,
            sw,
            jw,
            window_started,
            compared,
            disagreed,
            policy,
        )
    };
    let (validators, measurement_error) =
        super::monitors::run_monitors(state, ms, &policy, &judged, bound).await;
    let window = WindowStats {
        requests: jw.requests,
        errors: jw.errors,
        p99_ms: jw.latency_quantile_ms(0.99),
        labelled: jw.labelled,
        correct: jw.correct,
        stable_accuracy: if scope == "canary" {
            sw.accuracy()
        } else {
            None
        },
        compared,
        disagreed,
        validators,
        measurement_error,
    };
    let m = measure(&policy.thresholds, &window);
    state.serving.metrics.analysis(&ms.name, result_word(&m));
    let mut record = AnalysisRecord {
        at: crate::db::now(),
        scope,
        version: judged.version.clone(),
        weight: dep.split.canary_percent,
        window,
        measurement: m.clone(),
        actions: Vec::new(),
        breach_to_rollback_ms: None,
        decision_to_switch_ms: None,
    };
    // A production breach with automatic rollback: the target is made warm
    // before any lock is taken.
    let rollback_to = match (&m, scope) {
        (Measurement::Fail { .. }, "production") if policy.auto_rollback => {
            Some(super::autorollback::target(state, ms, &judged.version).await)
        }
        _ => None,
    };
    let order = state.serving.alias_lock.lock().await;
    let mut c = ms.control.lock().await;
    if ms.deployment.load().generation != dep.generation {
        record
            .actions
            .push("none: the deployment changed while the window was analysed".to_string());
    } else if scope == "canary" {
        // A canary that would be promoted must still meet every promotion
        // rule now (the gate may have moved, a refusal or approval may have
        // changed since it started); if not, it is aborted, naming why.
        let promoting = c
            .rollout
            .clone()
            .is_some_and(|mut r| r.observe(&m).contains(&Step::Promote));
        let refusal = if promoting {
            crate::routes::deploy::check_promotable(state, &ms.name, &judged.version, true)
                .await
                .err()
        } else {
            None
        };
        let steps = match (refusal, c.rollout.as_mut()) {
            (Some(e), Some(r)) => r
                .abort(&format!("the candidate may not be promoted: {}", e.message))
                .map_err(|e| ApiError::internal(format_args!("rollout: {e}")))?,
            (None, Some(r)) => r.observe(&m),
            (_, None) => Vec::new(),
        };
        for step in steps {
            let cause =
                json!({ "measurement": &m, "window": &record.window, "version": judged.version });
            c.switched_at = None;
            let done = apply(
                state,
                &order,
                ms,
                &mut c,
                &step,
                "airlock (canary analysis)",
                &cause,
            )
            .await?;
            if matches!(step, Step::Abort { .. })
                && let Some(at) = c.switched_at
            {
                record.breach_to_rollback_ms =
                    Some(at.duration_since(window_started).as_secs_f64() * 1e3);
                record.decision_to_switch_ms = Some(at.duration_since(decided).as_secs_f64() * 1e3);
            }
            record.actions.push(done);
        }
    } else if let Measurement::Fail { reasons } = &m {
        let cause =
            json!({ "measurement": &m, "window": &record.window, "version": judged.version });
        let summary = reasons.join("; ");
        super::alerts::alert(
            state,
            ms,
            &c,
            "production_breach",
            &judged.version,
            &summary,
            &cause,
        );
        record.actions.push(format!("alerted: {summary}"));
        if let Some(target) = rollback_to {
            match super::autorollback::roll_back(state, &order, ms, target, &summary).await {
                Ok((to, at)) => {
                    state.serving.metrics.rollback(&ms.name, "automatic");
                    record.breach_to_rollback_ms =
                        Some(at.duration_since(window_started).as_secs_f64() * 1e3);
                    record.decision_to_switch_ms =
                        Some(at.duration_since(decided).as_secs_f64() * 1e3);
                    record.actions.push(format!("rolled back to {to}"));
                    super::alerts::alert(state, ms, &c, "rollback", &to, &summary, &cause);
                    reset_window(ms, &mut c);
                }
                Err(e) => record
                    .actions
                    .push(format!("automatic rollback failed: {}", e.message)),
            }
        }
    }
    drop(order);
    let quiet = record.actions.is_empty()
        && matches!(m, Measurement::Inconclusive { .. })
        && scope == "production";
    if !quiet {
        c.history.push_back(record);
        while c.history.len() > HISTORY {
            c.history.pop_front();
        }
    }
    Ok(())
}

fn result_word(m: &Measurement) -> &'static str {
    match m {
        Measurement::Pass => "pass",
        Measurement::Fail { .. } => "fail",
        Measurement::Inconclusive { .. } => "inconclusive",
        Measurement::Error { .. } => "error",
    }
}

/// Applies one rollout action; returns what was done, in words. The
/// caller holds `alias_lock` (`_order`), then the model's control lock.
pub async fn apply(
    state: &Arc<AppState>,
    _order: &tokio::sync::MutexGuard<'_, ()>,
    ms: &Arc<ModelServing>,
    c: &mut Control,
    step: &Step,
    actor: &str,
    cause: &Value,
) -> Result<String, ApiError> {
    let warm_cap = state.config.serving.warm_versions;
    let metrics = &state.serving.metrics;
    let dep = ms.deployment.load_full();
    let candidate = c
        .rollout
        .as_ref()
        .map(|r| r.candidate().to_string())
        .unwrap_or_default();
    match step {
        Step::SetWeight(p) => {
            let canary = dep.canary.clone();
            let split = Split::new(
                &dep.stable.version,
                canary.as_ref().map(|v| v.version.as_str()),
                *p,
                dep.shadow.as_ref().map(|v| v.version.as_str()),
            )
            .map_err(|e| ApiError::internal(format_args!("canary split: {e}")))?;
            ms.switch(metrics, warm_cap, |d| {
                (d.stable.clone(), canary, split, d.shadow.clone())
            });
            record_event(
                state,
                actor,
                "canary_step",
                &ms.name,
                &candidate,
                json!({ "weight": p, "cause": cause }),
            )
            .await?;
            Ok(format!("canary weight {p}%"))
        }
        Step::Promote => {
            let Some(cv) = dep.canary.clone() else {
                return Err(ApiError::internal("promote without a canary"));
            };
            // The promotion rules are checked again in the transaction that
            // moves the alias, as for any promotion.
            let mut change = state.begin().await?;
            let (run, _) = crate::routes::deploy::check_promotable_in(
                state,
                &mut change.tx,
                &ms.name,
                &cv.version,
                true,
            )
            .await?;
            crate::routes::deploy::move_alias_in(
                &mut change,
                actor,
                None,
                &ms.name,
                "production",
                &cv.version,
                Action::Promotion,
                "promote",
                Some(&run),
                "canary passed every step",
            )
            .await?;
            state.commit(change).await?;
            ms.switch(metrics, warm_cap, |d| {
                (
                    cv.clone(),
                    None,
                    crate::serving::stable_split(&cv.version),
                    d.shadow.clone(),
                )
            });
            super::interrupted::mark_ended(state, &ms.name).await?;
            super::alerts::alert(
                state,
                ms,
                c,
                "canary_promoted",
                &cv.version,
                "canary passed every step",
                cause,
            );
            Ok(format!("promoted {} to production", cv.version))
        }
        Step::Abort { reason } => {
            let took = ms.switch(metrics, warm_cap, |d| {
                (
                    d.stable.clone(),
                    None,
                    crate::serving::stable_split(&d.stable.version),
                    d.shadow.clone(),
                )
            });
            c.switched_at = Some(Instant::now());
            metrics.abort(&ms.name, abort_word(reason, actor));
            record_event(
                state,
                actor,
                "canary_abort",
                &ms.name,
                &candidate,
                json!({ "reason": reason, "cause": cause }),
            )
            .await?;
            history_row(state, &ms.name, &candidate, "canary-abort", actor, reason).await?;
            super::interrupted::mark_ended(state, &ms.name).await?;
            super::alerts::alert(state, ms, c, "canary_aborted", &candidate, reason, cause);
            Ok(format!(
                "aborted the canary ({reason}); stable {} serves everything (switch {:.1} µs)",
                dep.stable.version,
                took.as_secs_f64() * 1e6
            ))
        }
        Step::Pause { reason } => {
            record_event(
                state,
                actor,
                "canary_pause",
                &ms.name,
                &candidate,
                json!({ "reason": reason, "cause": cause }),
            )
            .await?;
            super::alerts::alert(state, ms, c, "canary_paused", &candidate, reason, cause);
            Ok(format!("paused for a person: {reason}"))
        }
    }
}

fn abort_word(reason: &str, actor: &str) -> &'static str {
    if !actor.starts_with("airlock") {
        "manual"
    } else if reason.contains("validator") || reason.contains("monitor") {
        "validator"
    } else if reason.contains("consecutive") || reason.contains("error limit") {
        "errors"
    } else {
        "analysis"
    }
}

/// An audit entry for a serving action, committed on its own.
pub async fn record_event(
    state: &AppState,
    actor: &str,
    action: &str,
    model: &str,
    version: &str,
    details: Value,
) -> Result<(), ApiError> {
    let action =
        Action::other(action).map_err(|e| ApiError::internal(format_args!("audit action: {e}")))?;
    let mut change = state.begin().await?;
    change.record(Event::new(
        actor,
        action,
        format!("{model}/{version}"),
        details,
    ));
    state.commit(change).await
}

pub(crate) async fn history_row(
    state: &AppState,
    model: &str,
    version: &str,
    action: &str,
    actor: &str,
    reason: &str,
) -> Result<(), ApiError> {
    let mut change = state.begin().await?;
    sqlx::query(
        "INSERT INTO history (seq, model, alias, version, action, run_id, actor, reason, at)
         VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM history), $1, 'production', $2, $3, NULL, $4, $5, $6)",
    )
    .bind(model)
    .bind(version)
    .bind(action)
    .bind(actor)
    .bind(reason)
    .bind(crate::db::now())
    .execute(&mut *change.tx)
    .await?;
    state.commit(change).await
}
