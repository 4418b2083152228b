//! Everything serving does off the request path: canary rollouts judged
//! interval by interval, shadow comparison, continuous validation of live
//! windows in the sandbox, automatic rollback, and signed alert webhooks.
//!
//! One controller task ticks for every served model; when a model's
//! interval is due it takes the window since the last analysis (counter
//! differences, monitor verdicts, shadow agreement), measures it with the
//! pure rules of `airlock_rollout`, and applies what the rollout state
//! machine answers. Every automatic action is committed with an audit entry
//! that carries the measurement that caused it, and alerted.

use super::policy::ServingPolicy;
use super::stats::Snapshot;
use super::{ModelServing, WarmVersion};
use crate::audit::Event;
use crate::error::ApiError;
use crate::state::AppState;
use airlock_audit::Action;
use airlock_core::types::{
    Batch, Column, ColumnValues, Context, FeatureKind, ModelInfo, Predictions, Reference,
};
use airlock_rollout::analysis::{Measurement, ValidatorResult, WindowStats, measure};
use airlock_rollout::compare::Agreement;
use airlock_rollout::rollout::{Action as Step, Phase, Rollout};
use airlock_rollout::routing::Split;
use airlock_rollout::webhook::{Backoff, sign};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the controller looks for due analyses (so an interval ends at
/// most this late).
const TICK: Duration = Duration::from_millis(20);
/// Analysis records kept per model.
const HISTORY: usize = 200;
/// Webhook deliveries in progress at once; more are dropped and counted.
const MAX_DELIVERIES: usize = 64;

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
    next_due: Option<Instant>,
    monitors: HashMap<String, LoadedMonitor>,
    /// When the last automatic switch completed (for the timing records).
    switched_at: Option<Instant>,
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

/// Live rows kept for continuous validation: bounded, in memory only.
pub struct LiveWindow {
    cap: usize,
    rows: VecDeque<LiveRow>,
}

struct LiveRow {
    request_id: String,
    values: Vec<Cell>,
    prediction: Vec<f64>,
    label: Option<f64>,
}

#[derive(Clone)]
enum Cell {
    Num(f64),
    Cat(Option<String>),
}

impl LiveWindow {
    /// A window of at most `cap` rows (0 keeps nothing).
    pub fn new(cap: usize) -> LiveWindow {
        LiveWindow {
            cap,
            rows: VecDeque::new(),
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
        while self.rows.len() > cap {
            self.rows.pop_front();
        }
    }
}

/// Keeps a scored request's rows for monitors (only when the model's
/// policy names some).
pub fn window_push(
    state: &AppState,
    ms: &ModelServing,
    version: &WarmVersion,
    request_id: &str,
    batch: &Batch,
    predictions: &Predictions,
) {
    if ms.policy.load().monitors.is_empty() {
        return;
    }
    let cap = state.config.serving.window_rows;
    let mut w = version.window.lock().unwrap_or_else(|p| p.into_inner());
    if w.cap != cap {
        w.set_cap(cap);
    }
    if cap == 0 {
        return;
    }
    let width = predictions.width.max(1) as usize;
    for r in 0..batch.rows as usize {
        let values = batch
            .columns
            .iter()
            .map(|c| match &c.values {
                ColumnValues::Numeric(v) => Cell::Num(v[r]),
                ColumnValues::Categorical(v) => Cell::Cat(v[r].clone()),
            })
            .collect();
        if w.rows.len() == cap {
            w.rows.pop_front();
        }
        w.rows.push_back(LiveRow {
            request_id: request_id.to_string(),
            values,
            prediction: predictions.values[r * width..(r + 1) * width].to_vec(),
            label: None,
        });
    }
}

/// Attaches a delayed label to the window's row for `request_id`.
pub fn window_label(version: &WarmVersion, request_id: &str, label: f64) {
    let mut w = version.window.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(row) = w.rows.iter_mut().rev().find(|r| r.request_id == request_id) {
        row.label = Some(label);
    }
}

/// A window as a batch, predictions and (when asked) labels. With
/// `labelled`, only rows that have a label.
fn window_batch(version: &WarmVersion, labelled: bool) -> (Batch, Predictions, Option<Vec<f64>>) {
    let meta = version.metadata();
    let w = version.window.lock().unwrap_or_else(|p| p.into_inner());
    let rows: Vec<&LiveRow> = w
        .rows
        .iter()
        .filter(|r| !labelled || r.label.is_some())
        .collect();
    let width = rows.first().map_or(1, |r| r.prediction.len()) as u32;
    let columns = meta
        .inputs
        .iter()
        .enumerate()
        .map(|(i, f)| Column {
            name: f.name.clone(),
            values: match f.kind {
                FeatureKind::Numeric => ColumnValues::Numeric(
                    rows.iter()
                        .map(|r| match &r.values[i] {
                            Cell::Num(x) => *x,
                            Cell::Cat(_) => f64::NAN,
                        })
                        .collect(),
                ),
                FeatureKind::Categorical => ColumnValues::Categorical(
                    rows.iter()
                        .map(|r| match &r.values[i] {
                            Cell::Cat(x) => x.clone(),
                            Cell::Num(_) => None,
                        })
                        .collect(),
                ),
            },
        })
        .collect();
    let predictions = Predictions {
        width,
        values: rows
            .iter()
            .flat_map(|r| r.prediction.iter().copied())
            .collect(),
    };
    let labels = labelled.then(|| rows.iter().filter_map(|r| r.label).collect());
    (
        Batch {
            rows: rows.len() as u32,
            columns,
        },
        predictions,
        labels,
    )
}

/// A shadow call waiting for the shadow worker.
pub struct ShadowJob {
    /// The model.
    pub model: String,
    /// The shadow version.
    pub shadow: Arc<WarmVersion>,
    /// What stable scored.
    pub batch: Batch,
    /// What stable answered.
    pub stable: Predictions,
}

/// The bounded queue in front of the shadow worker thread, and the
/// agreement it has measured per shadow version.
pub struct ShadowQueue {
    tx: Mutex<Option<SyncSender<ShadowJob>>>,
    cap: usize,
    /// Agreement so far, by (model, shadow version).
    pub agreement: Arc<Mutex<HashMap<(String, String), Agreement>>>,
}

impl ShadowQueue {
    /// A queue of `cap` jobs; the worker starts with the first offer.
    pub fn new(cap: usize) -> ShadowQueue {
        ShadowQueue {
            tx: Mutex::new(None),
            cap,
            agreement: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Hands a job to the worker, or drops and counts it when the queue is
    /// full: shadow traffic never slows or queues the response path.
    pub fn offer(&self, metrics: &super::metrics::Metrics, job: ShadowJob) {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.is_none() {
            let (s, r) = std::sync::mpsc::sync_channel::<ShadowJob>(self.cap.max(1));
            let agreement = self.agreement.clone();
            let spawned = std::thread::Builder::new()
                .name("airlock-shadow".into())
                .spawn(move || shadow_worker(r, agreement));
            if spawned.is_err() {
                return;
            }
            *tx = Some(s);
        }
        let model = job.model.clone();
        if let Some(s) = tx.as_ref() {
            match s.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    metrics
                        .shadow_dropped
                        .get_or_create(&super::metrics::ModelLabels { model })
                        .inc();
                }
            }
        }
    }
}

fn shadow_worker(
    rx: std::sync::mpsc::Receiver<ShadowJob>,
    agreement: Arc<Mutex<HashMap<(String, String), Agreement>>>,
) {
    while let Ok(job) = rx.recv() {
        let task = job.shadow.metadata().output.task;
        let key = (job.model.clone(), job.shadow.version.clone());
        match job.shadow.checked.predict(&job.batch) {
            Ok(out) => {
                job.shadow.stats.ok(u64::from(job.batch.rows), out.duration);
                let mut a = agreement.lock().unwrap_or_else(|p| p.into_inner());
                a.entry(key).or_default().add(task, &job.stable, &out.value);
            }
            Err(_) => job.shadow.stats.error(Duration::ZERO),
        }
    }
}

/// Publishes the gauges computed from sketches and agreement (on scrape).
pub fn refresh_gauges(state: &AppState) {
    let m = &state.serving.metrics;
    for name in state.serving.model_names() {
        let Some(ms) = state.serving.model(&name) else {
            continue;
        };
        let dep = ms.deployment.load_full();
        for v in std::iter::once(&dep.stable)
            .chain(dep.canary.as_ref())
            .chain(dep.shadow.as_ref())
        {
            // A copy, so that drift tests never hold up the version's
            // predictions (they lock the same monitor).
            let d = v
                .distributions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let q = d.quality();
            for (problem, list) in [
                ("missing", &q.missing),
                ("out_of_range", &q.out_of_range),
                ("unseen_category", &q.unseen_category),
            ] {
                for (feature, n) in list.iter().take(super::metrics::MAX_FEATURE_SERIES) {
                    m.quality_rows
                        .get_or_create(&super::metrics::QualityLabels {
                            model: name.clone(),
                            version: v.version.clone(),
                            feature: feature.clone(),
                            problem,
                        })
                        .set(*n as i64);
                }
            }
            if let Ok(drift) = d.drift(30) {
                for f in drift.into_iter().take(super::metrics::MAX_FEATURE_SERIES) {
                    let l = super::metrics::FeatureLabels {
                        model: name.clone(),
                        version: v.version.clone(),
                        feature: f.feature.clone(),
                    };
                    m.drift_score.get_or_create(&l).set(f.score);
                    m.drift_detected.get_or_create(&l).set(i64::from(f.drifted));
                }
            }
        }
        if let Some(s) = &dep.shadow {
            let a = state
                .serving
                .shadow
                .agreement
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(a) = a.get(&(name.clone(), s.version.clone())) {
                let l = super::metrics::VersionLabels {
                    model: name.clone(),
                    version: s.version.clone(),
                };
                let c = m.shadow_compared.get_or_create(&l);
                let seen = c.get();
                c.inc_by(a.compared.saturating_sub(seen));
                let d = m.shadow_disagreed.get_or_create(&l);
                let seen = d.get();
                d.inc_by(a.disagreed.saturating_sub(seen));
                if let Some(mad) = a.mean_abs_diff() {
                    m.shadow_mean_abs_difference.get_or_create(&l).set(mad);
                }
            }
        }
    }
}

/// Reads a model's stored serving policy into its control state and the
/// hot path (startup, and after `PUT .../serving`).
pub async fn load_policy(state: &Arc<AppState>, model: &str) {
    let Some(ms) = state.serving.model(model) else {
        return;
    };
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT policy, secrets FROM serving_policies WHERE model = $1")
            .bind(model)
            .fetch_optional(&state.db)
            .await
            .unwrap_or(None);
    let (policy, secrets) = match row {
        Some((p, s)) => {
            let policy: ServingPolicy = match serde_json::from_str(&p) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("airlock server: serving policy of {model}: {e}");
                    return;
                }
            };
            let secrets = match s.as_deref().map(|s| open_secrets(state, model, s)) {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    eprintln!("airlock server: webhook secrets of {model}: {e}");
                    Vec::new()
                }
                None => Vec::new(),
            };
            (policy, secrets)
        }
        None => (ServingPolicy::default(), Vec::new()),
    };
    install_policy(&ms, policy, secrets).await;
}

/// Makes `policy` the one in force.
pub async fn install_policy(ms: &ModelServing, policy: ServingPolicy, secrets: Vec<Vec<u8>>) {
    ms.policy.store(Arc::new(policy.clone()));
    let mut c = ms.control.lock().await;
    c.next_due = None;
    c.policy = policy;
    c.secrets = secrets;
    c.monitors.clear();
}

/// Seals webhook secrets for storage (plain hex without a key ring).
pub fn seal_secrets(state: &AppState, model: &str, secrets: &[String]) -> String {
    let joined = serde_json::to_vec(secrets).unwrap_or_default();
    match &state.config.key_ring {
        Some(ring) => format!(
            "sealed:{}",
            hex::encode(ring.seal(
                &joined,
                format!("airlock webhook secrets {model}").as_bytes()
            ))
        ),
        None => format!("plain:{}", hex::encode(joined)),
    }
}

fn open_secrets(state: &AppState, model: &str, stored: &str) -> Result<Vec<Vec<u8>>, String> {
    let bytes = if let Some(h) = stored.strip_prefix("sealed:") {
        let ring = state
            .config
            .key_ring
            .as_ref()
            .ok_or("sealed under a key ring this server was not given")?;
        ring.open_sealed(
            &hex::decode(h).map_err(|e| e.to_string())?,
            format!("airlock webhook secrets {model}").as_bytes(),
        )
        .map_err(|e| e.to_string())?
    } else if let Some(h) = stored.strip_prefix("plain:") {
        hex::decode(h).map_err(|e| e.to_string())?
    } else {
        return Err("unknown format".into());
    };
    let list: Vec<String> = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok(list.into_iter().map(String::into_bytes).collect())
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
                        if let Err(e) = analyze(&state, &ms, &mut c).await {
                            eprintln!("airlock server: analysis of {name}: {}", e.message);
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    })
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

/// One analysis interval of `ms`.
async fn analyze(
    state: &Arc<AppState>,
    ms: &Arc<ModelServing>,
    c: &mut Control,
) -> Result<(), ApiError> {
    let decided = Instant::now();
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
    let sw = take_window(c, &dep.stable);
    let jw = if scope == "canary" {
        take_window(c, &judged)
    } else {
        sw.clone()
    };
    let (validators, measurement_error) = run_monitors(state, ms, c, &judged).await;
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
    let m = measure(&c.policy.thresholds, &window);
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
    if scope == "canary" {
        let steps = c
            .rollout
            .as_mut()
            .map(|r| r.observe(&m))
            .unwrap_or_default();
        for step in steps {
            let cause =
                json!({ "measurement": &m, "window": &record.window, "version": judged.version });
            c.switched_at = None;
            let done = apply(state, ms, c, &step, "airlock (canary analysis)", &cause).await?;
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
        alert(
            state,
            ms,
            c,
            "production_breach",
            &judged.version,
            &summary,
            &cause,
        );
        record.actions.push(format!("alerted: {summary}"));
        if c.policy.auto_rollback {
            match automatic_rollback(state, ms, &judged.version, &summary, &cause).await {
                Ok((to, at)) => {
                    state.serving.metrics.rollback(&ms.name, "automatic");
                    record.breach_to_rollback_ms =
                        Some(at.duration_since(window_started).as_secs_f64() * 1e3);
                    record.decision_to_switch_ms =
                        Some(at.duration_since(decided).as_secs_f64() * 1e3);
                    record.actions.push(format!("rolled back to {to}"));
                    alert(state, ms, c, "rollback", &to, &summary, &cause);
                    reset_window(ms, c);
                }
                Err(e) => record
                    .actions
                    .push(format!("automatic rollback failed: {}", e.message)),
            }
        }
    }
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

/// Applies one rollout action; returns what was done, in words.
pub async fn apply(
    state: &Arc<AppState>,
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
            let order = state.serving.alias_lock.lock().await;
            crate::routes::models::move_alias_as(
                state,
                actor,
                None,
                &ms.name,
                "production",
                &cv.version,
                Action::Promotion,
                "promote",
                None,
                "canary passed every step",
            )
            .await?;
            ms.switch(metrics, warm_cap, |d| {
                (
                    cv.clone(),
                    None,
                    crate::serving::stable_split(&cv.version),
                    d.shadow.clone(),
                )
            });
            drop(order);
            alert(
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
            alert(state, ms, c, "canary_aborted", &candidate, reason, cause);
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
            alert(state, ms, c, "canary_paused", &candidate, reason, cause);
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

async fn history_row(
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

/// Rolls production back to the version promoted before `current`
/// (warm, so the switch is one store), recording why.
async fn automatic_rollback(
    state: &Arc<AppState>,
    ms: &Arc<ModelServing>,
    current: &str,
    why: &str,
    cause: &Value,
) -> Result<(String, Instant), ApiError> {
    let earlier = super::promoted_before(state, &ms.name, current).await;
    let target = earlier.first().cloned().ok_or_else(|| {
        ApiError::refused(
            "rollback_refused",
            format!("model {} has no earlier production version", ms.name),
        )
    })?;
    let warm = super::prepare(state, &ms.name, &target).await?;
    let order = state.serving.alias_lock.lock().await;
    crate::routes::models::move_alias_as(
        state,
        "airlock (automatic rollback)",
        None,
        &ms.name,
        "production",
        &target,
        Action::Rollback,
        "rollback",
        None,
        &format!("automatic: {why}"),
    )
    .await?;
    // The alias moves first (durably, with its audit entry), then traffic:
    // a crash in between restarts serving the version the alias names.
    state.serving.set_stable(state, &ms.name, warm);
    let at = Instant::now();
    drop(order);
    let _ = cause;
    Ok((target, at))
}

/// A monitor step, loaded once per policy.
struct LoadedMonitor {
    plugin: Arc<airlock_runtime::sandbox::Plugin>,
    step: airlock_core::gate::spec::StepSpec,
    reference: Option<airlock_gate::data::Dataset>,
    /// The reference scored by each version (cached).
    reference_predictions: HashMap<String, Predictions>,
}

/// Runs the policy's monitor steps on `version`'s live window, in the
/// sandbox, on a blocking thread. A step whose window is too small is
/// skipped (it says nothing); a validator that fails to run is a
/// measurement error.
async fn run_monitors(
    state: &Arc<AppState>,
    ms: &Arc<ModelServing>,
    c: &mut Control,
    version: &Arc<WarmVersion>,
) -> (Vec<ValidatorResult>, Option<String>) {
    if c.policy.monitors.is_empty() {
        return (Vec::new(), None);
    }
    if c.monitors.len() != c.policy.monitors.len() {
        match load_monitors(
            state,
            &ms.name,
            &c.policy.monitors,
            &version.metadata().inputs,
        )
        .await
        {
            Ok(m) => c.monitors = m,
            Err(e) => return (Vec::new(), Some(format!("loading monitors: {}", e.message))),
        }
    }
    let min_rows = c.policy.min_window_rows;
    let mut monitors = std::mem::take(&mut c.monitors);
    let v = version.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        let mut error = None;
        for (name, m) in monitors.iter_mut() {
            match run_monitor(name, m, &v, min_rows) {
                Ok(Some(r)) => results.push(r),
                Ok(None) => {}
                Err(e) => error = Some(format!("monitor `{name}`: {e}")),
            }
        }
        (monitors, results, error)
    })
    .await;
    match joined {
        Ok((monitors, results, error)) => {
            c.monitors = monitors;
            (results, error)
        }
        Err(e) => (Vec::new(), Some(format!("monitor thread: {e}"))),
    }
}

fn run_monitor(
    name: &str,
    m: &mut LoadedMonitor,
    v: &WarmVersion,
    min_rows: usize,
) -> Result<Option<ValidatorResult>, String> {
    let labelled = m.step.label.is_some();
    let (data, predictions, labels) = window_batch(v, labelled);
    if (data.rows as usize) < min_rows {
        return Ok(None);
    }
    let reference = match &m.reference {
        None => None,
        Some(r) => {
            let preds = match m.reference_predictions.get(&v.version) {
                Some(p) => p.clone(),
                None => {
                    let (batch, _) =
                        airlock_gate::data::model_inputs(&r.batch, &v.metadata().inputs, &[])
                            .map_err(|e| format!("reference: {e}"))?;
                    let p = v
                        .checked
                        .predict(&batch)
                        .map_err(|f| format!("scoring the reference: {}: {}", f.kind, f.message))?
                        .value;
                    m.reference_predictions.insert(v.version.clone(), p.clone());
                    p
                }
            };
            Some(Reference {
                data: r.batch.clone(),
                labels: r.labels.clone(),
                candidate_predictions: preds,
                baseline_predictions: None,
            })
        }
    };
    let ctx = Context {
        step: name.to_string(),
        config: m.step.config_json(),
        seed: 0,
        candidate: ModelInfo {
            metadata: v.metadata().clone(),
            digest: v.plugin_digest.clone(),
            bundle_digest: v.bundle_digest.clone(),
        },
        baseline: None,
        data,
        labels,
        candidate_predictions: predictions,
        baseline_predictions: None,
        reference,
    };
    let options = airlock_runtime::sandbox::CallOptions {
        limits: m.step.limits,
        seed: 0,
        bundle: None,
    };
    let out = m
        .plugin
        .validate(&options, &ctx, None)
        .map_err(|f| format!("{}: {}", f.kind, f.message))?;
    let summary = out
        .value
        .findings
        .iter()
        .find(|f| matches!(f.severity, airlock_core::types::Severity::Error))
        .or(out.value.findings.first())
        .map(|f| f.message.clone())
        .unwrap_or_else(|| {
            if out.value.passed {
                "passed".into()
            } else {
                "failed".into()
            }
        });
    Ok(Some(ValidatorResult {
        name: name.to_string(),
        passed: out.value.passed,
        summary: format!("on {} live rows: {summary}", ctx.data.rows),
    }))
}

async fn load_monitors(
    state: &Arc<AppState>,
    model: &str,
    names: &[String],
    inputs: &[airlock_core::types::Feature],
) -> Result<HashMap<String, LoadedMonitor>, ApiError> {
    let gate: Option<(String,)> = sqlx::query_as(
        "SELECT g.toml FROM models m JOIN gate_current c ON c.name = m.gate JOIN gates g ON g.name = c.name AND g.version = c.version WHERE m.name = $1",
    )
    .bind(model)
    .fetch_optional(&state.db)
    .await?;
    let (toml,) = gate.ok_or_else(|| {
        ApiError::refused(
            "invalid_policy",
            format!("model {model} has no current gate to take monitor steps from"),
        )
    })?;
    let st = state.clone();
    let names = names.to_vec();
    let inputs = inputs.to_vec();
    let model = model.to_string();
    tokio::task::spawn_blocking(move || {
        let scratch = crate::state::scratch_dir(&st, "monitor")?;
        let spec = airlock_core::gate::spec::GateSpec::parse(&toml, scratch.path())
            .map_err(|e| ApiError::internal(format_args!("stored gate: {e}")))?;
        let mut out = HashMap::new();
        for name in names {
            let step = spec
                .steps
                .iter()
                .find(|s| s.name == name)
                .cloned()
                .ok_or_else(|| {
                    ApiError::refused(
                        "invalid_policy",
                        format!("monitor `{name}` is not a step of model {model}'s gate"),
                    )
                })?;
            let digest = crate::gates::pinned(&step.plugin)?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut st.blobs.open(&digest)?, &mut bytes)
                .map_err(|e| ApiError::internal(format_args!("reading validator: {e}")))?;
            let plugin = st.sandbox.load(&bytes).map_err(|e| {
                ApiError::refused("invalid_policy", format!("monitor `{name}`: {e}"))
            })?;
            let reference = match &step.reference {
                None => None,
                Some(r) => {
                    let d = crate::gates::pinned(&r.to_string_lossy())?;
                    let path = scratch.path().join("reference.csv");
                    st.blobs.materialize(&d, &path)?;
                    Some(
                        airlock_gate::data::read_csv_with(
                            &path,
                            Some(&inputs),
                            step.label.as_deref(),
                            &st.config.data_caps,
                        )
                        .map_err(|e| {
                            ApiError::refused(
                                "invalid_policy",
                                format!("monitor `{name}`: reference: {e}"),
                            )
                        })?,
                    )
                }
            };
            out.insert(
                name,
                LoadedMonitor {
                    plugin,
                    step,
                    reference,
                    reference_predictions: HashMap::new(),
                },
            );
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::internal(format_args!("loading monitors: {e}")))?
}

static DELIVERIES: AtomicUsize = AtomicUsize::new(0);

/// Sends an alert to every webhook of the model's policy, signed, with
/// bounded retries and backoff, on its own thread (never the request path).
pub fn alert(
    state: &Arc<AppState>,
    ms: &ModelServing,
    c: &Control,
    event: &str,
    version: &str,
    reason: &str,
    cause: &Value,
) {
    if c.policy.webhooks.is_empty() {
        return;
    }
    let body = json!({
        "event": event,
        "model": ms.name,
        "version": version,
        "reason": reason,
        "at": crate::db::now(),
        "details": cause,
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    for (i, hook) in c.policy.webhooks.iter().enumerate() {
        let Some(secret) = c.secrets.get(i).cloned() else {
            continue;
        };
        if DELIVERIES.fetch_add(1, Ordering::AcqRel) >= MAX_DELIVERIES {
            DELIVERIES.fetch_sub(1, Ordering::AcqRel);
            state
                .serving
                .metrics
                .webhooks
                .get_or_create(&super::metrics::OutcomeLabels { outcome: "dropped" })
                .inc();
            continue;
        }
        let url = hook.url.clone();
        let body = body.clone();
        let st = state.clone();
        let spawned = std::thread::Builder::new()
            .name("airlock-webhook".into())
            .spawn(move || {
                let ok = deliver(&url, &secret, &body);
                st.serving
                    .metrics
                    .webhooks
                    .get_or_create(&super::metrics::OutcomeLabels {
                        outcome: if ok { "delivered" } else { "failed" },
                    })
                    .inc();
                DELIVERIES.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            DELIVERIES.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The retry schedule of alert deliveries.
pub const WEBHOOK_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(200),
    factor: 2,
    max_delay: Duration::from_secs(5),
    max_attempts: 5,
};

fn deliver(url: &str, secret: &[u8], body: &[u8]) -> bool {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut attempt = 0u32;
    loop {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sent = agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-Airlock-Signature", sign(secret, ts, body))
            .send(body);
        if let Ok(resp) = sent
            && resp.status().is_success()
        {
            return true;
        }
        attempt += 1;
        match WEBHOOK_BACKOFF.delay(attempt, super::predict::split_random()) {
            Some(d) => std::thread::sleep(d),
            None => return false,
        }
    }
}
