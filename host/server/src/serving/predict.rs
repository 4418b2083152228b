//! `POST /v1/models/{name}/predict` and `/feedback`: routing, the call in
//! a fresh instance, monitoring, and delayed labels. Request bodies become
//! typed batches in `body.rs` (re-exported here).

use super::{Deployment, ModelServing, WarmVersion};
use crate::access::Permission;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, extract::Path};
use crate::state::AppState;
use airlock_core::types::{Batch, Predictions, Task};
use airlock_rollout::compare::Recorded;
use airlock_rollout::routing::RouteReason;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub use super::body::{body_bytes, input_names, json_kind, parse_json, rows_to_batch};

/// Header naming a version to answer with (for testers); it must be warm.
pub const FORCE_VERSION: &str = "x-airlock-version";
/// Header carrying a sticky routing key (same key, same version).
pub const STICKY_KEY: &str = "x-airlock-key";

/// The `/v1` predict body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictBody {
    /// Objects by feature name, or arrays in declared input order; a
    /// feature named twice in a row is refused, naming it.
    rows: Vec<super::strict::StrictValue>,
    /// A sticky routing key (the header wins when both are sent).
    #[serde(default)]
    key: Option<String>,
}

/// The `/v1` predict answer.
#[derive(Debug, Serialize)]
struct PredictAnswer<'a> {
    request_id: &'a str,
    model: &'a str,
    version: &'a str,
    predictions: Vec<&'a [f64]>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    classes: &'a [String],
}

/// The served model `name`, or 404 saying which of the two it is: no
/// model of that name (a typo), or a model with no production version.
/// Only a miss asks the database.
pub async fn served(state: &AppState, name: &str) -> Result<Arc<ModelServing>, ApiError> {
    if let Some(ms) = state.serving.model(name) {
        return Ok(ms);
    }
    Err(not_served(state, name).await)
}

/// Why `name` is not served, as a 404: it does not exist, or it has no
/// production version yet.
pub async fn not_served(state: &AppState, name: &str) -> ApiError {
    // A name no model can have is refused by the naming rule before it
    // reaches the store (PostgreSQL refuses a NUL byte with an error).
    if let Err(e) = crate::names::check_name("model", name) {
        return e;
    }
    let exists: Result<Option<(String,)>, _> =
        sqlx::query_as("SELECT name FROM models WHERE name = $1")
            .bind(name)
            .fetch_optional(&state.db)
            .await;
    match exists {
        Ok(None) => ApiError::not_found(format!(
            "model {} does not exist (`airlock models` lists them)",
            crate::names::show(name)
        )),
        Ok(Some(_)) => ApiError::not_found(format!(
            "model {} is not served: it has no production version (promote one first)",
            crate::names::show(name)
        )),
        Err(e) => ApiError::from(e),
    }
}

/// A fast per-request random number for traffic splitting (not a secret:
/// splitmix64 over a counter seeded from the OS once).
pub fn split_random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    static SEEDED: std::sync::Once = std::sync::Once::new();
    SEEDED.call_once(|| {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        STATE.store(u64::from_le_bytes(b), Ordering::Relaxed);
    });
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A request id: 128 random bits, so one client cannot guess another's
/// ids and label its answers.
pub fn request_id() -> Result<String, ApiError> {
    use rand::{Rng, SeedableRng};
    thread_local! {
        /// Each thread's id generator: ChaCha12 seeded once from the OS, so
        /// ids stay unguessable without a system call per request.
        static IDS: std::cell::RefCell<Option<rand::rngs::StdRng>> =
            const { std::cell::RefCell::new(None) };
    }
    IDS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let rng = match &mut *slot {
            Some(rng) => rng,
            None => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed)
                    .map_err(|e| ApiError::internal(format_args!("randomness: {e}")))?;
                slot.insert(rand::rngs::StdRng::from_seed(seed))
            }
        };
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Ok(hex::encode(b))
    })
}

/// How a request reached its version (the metric's `route` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The stable version.
    Stable,
    /// The canary.
    Canary,
    /// Forced by header.
    Forced,
}

/// Picks the version that answers: forced by header (any warm version),
/// else the deployment's split (sticky by key when one is sent).
pub fn choose(
    ms: &ModelServing,
    dep: &Deployment,
    headers: &HeaderMap,
    key: Option<&str>,
) -> Result<(Arc<WarmVersion>, Via), ApiError> {
    if let Some(v) = headers.get(FORCE_VERSION) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::bad_request("the X-Airlock-Version header is not ASCII"))?;
        let found = ms.servable(v);
        return match found {
            Some(w) => Ok((w, Via::Forced)),
            None => Err(ApiError::not_found(format!(
                "version {} of model {} is not being served (warm versions: {})",
                crate::names::show(v),
                ms.name,
                ms.warm_names().join(", ")
            ))),
        };
    }
    let header_key = match headers.get(STICKY_KEY) {
        Some(k) => Some(
            k.to_str()
                .map_err(|_| ApiError::bad_request("the X-Airlock-Key header is not ASCII"))?,
        ),
        None => None,
    };
    let key = header_key.or(key);
    let route = dep.split.route(key, split_random());
    match (route.reason, &dep.canary) {
        (RouteReason::Canary, Some(c)) => Ok((c.clone(), Via::Canary)),
        (RouteReason::Sticky, Some(c)) if route.version == c.version => {
            Ok((c.clone(), Via::Canary))
        }
        _ => Ok((dep.stable.clone(), Via::Stable)),
    }
}

/// What a served call returns.
pub struct Answered {
    /// The request id.
    pub request_id: String,
    /// The version that answered.
    pub version: Arc<WarmVersion>,
    /// Its checked predictions.
    pub predictions: Predictions,
}

/// Scores `batch` with `version` in a fresh instance of its snapshot,
/// records what monitoring keeps, mirrors to the shadow, and names the
/// failure precisely when the model fails (only this request fails).
pub fn score(
    state: &AppState,
    ms: &ModelServing,
    dep: &Deployment,
    version: Arc<WarmVersion>,
    via: Via,
    batch: Batch,
) -> Result<Answered, ApiError> {
    let request_id = request_id()?;
    let started = Instant::now();
    let outcome = version.checked.predict(&batch);
    let took = started.elapsed();
    let series = &version.series;
    match via {
        Via::Stable => series.stable.inc(),
        Via::Canary => series.canary.inc(),
        Via::Forced => series.forced.inc(),
    };
    let monitoring = state.config.serving.monitoring;
    // Requests that chose their version by header are the caller's sample,
    // not the split's: counting them would let any predictor pick which
    // answers a canary's analysis, drift and live windows see. They show in
    // the operational metrics only.
    let analysed = via != Via::Forced;
    match outcome {
        Ok(out) => {
            if analysed {
                version.stats.ok(u64::from(batch.rows), took);
            }
            if monitoring {
                series.rows.inc_by(u64::from(batch.rows));
                series.latency.observe(took.as_secs_f64());
                series.fuel.observe(out.fuel_used as f64);
            }
            if monitoring && analysed {
                let task = version.metadata().output.task;
                let scores = scores(task, &out.value);
                version
                    .distributions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .observe(&batch, &scores);
                if batch.rows == 1 {
                    ms.labels.lock().unwrap_or_else(|p| p.into_inner()).record(
                        &request_id,
                        &version.version,
                        recorded(task, &out.value),
                    );
                }
                super::window::window_push(state, ms, &version, &request_id, &batch, &out.value);
            }
            super::predlog::maybe_log(state, ms, &version.version, &request_id, &batch, &out.value);
            if via == Via::Stable
                && let Some(shadow) = &dep.shadow
            {
                state.serving.shadow.offer(
                    &state.serving.metrics,
                    super::shadow::ShadowJob {
                        model: ms.name.clone(),
                        shadow: shadow.clone(),
                        batch,
                        stable: out.value.clone(),
                    },
                );
            }
            Ok(Answered {
                request_id,
                version,
                predictions: out.value,
            })
        }
        Err(f) => {
            let kind = if f.kind == airlock_core::error::FailureKind::GuestError {
                if analysed {
                    version.stats.refused(took);
                }
                "refused"
            } else {
                if analysed {
                    version.stats.error(took);
                }
                super::metrics::kind_word(f.kind)
            };
            state
                .serving
                .metrics
                .error(&ms.name, &version.version, kind);
            Err(ApiError::model_failed(&ms.name, &version.version, &f))
        }
    }
}

/// Per-row scores for sketches: the positive class's probability (binary),
/// the top probability (multiclass), the value (regression).
pub fn scores(task: Task, p: &Predictions) -> Vec<f64> {
    let w = p.width.max(1) as usize;
    p.values
        .chunks(w)
        .map(|row| match task {
            Task::BinaryClassification => row.get(1).copied().unwrap_or(f64::NAN),
            Task::MulticlassClassification => row.iter().copied().fold(f64::NAN, f64::max),
            Task::Regression => row[0],
        })
        .collect()
}

/// What the label book keeps of a 1-row answer: the class or the value.
pub fn recorded(task: Task, p: &Predictions) -> Recorded {
    Recorded::from_predictions(task, p)
        .into_iter()
        .next()
        .flatten()
        .unwrap_or(Recorded::Value(f64::NAN))
}

/// `POST /v1/models/{name}/predict`.
pub async fn predict(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require_model(Permission::Predict, &name)?;
    state.serving.admit(&caller.token_id)?;
    let cfg = &state.config.serving;
    let ms = served(&state, &name).await?;
    let body = body_bytes(body, cfg.max_body_bytes)?;
    let req: PredictBody = parse_json(&body)?;
    let dep = ms.deployment.load_full();
    let (version, via) = choose(&ms, &dep, &headers, req.key.as_deref())?;
    let allow_missing = ms.policy.load().allow_missing;
    let rows: Vec<Value> = req.rows.into_iter().map(|r| r.0).collect();
    let batch = rows_to_batch(version.metadata(), &rows, cfg.max_rows, allow_missing)?;
    let (st, m) = (state.clone(), ms.clone());
    let a = state
        .serving
        .call(move || score(&st, &m, &dep, version, via, batch))
        .await??;
    let w = a.predictions.width.max(1) as usize;
    let answer = PredictAnswer {
        request_id: &a.request_id,
        model: &ms.name,
        version: &a.version.version,
        predictions: a.predictions.values.chunks(w).collect(),
        classes: &a.version.metadata().output.classes,
    };
    let mut resp = axum::Json(answer).into_response();
    if let Ok(v) = HeaderValue::from_str(&a.version.version) {
        resp.headers_mut().insert("x-airlock-served-version", v);
    }
    Ok(resp)
}

/// One delayed label.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// The `request_id` of the answer.
    pub request_id: String,
    /// The true class (index or name) or value.
    pub label: Value,
}

/// The feedback body: one label, or many.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FeedbackBody {
    Many { labels: Vec<Label> },
    One(Label),
}

/// `POST /v1/models/{name}/feedback`: delayed labels by request id; each
/// is scored against what was answered and counted for that version.
pub async fn feedback(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require_model(Permission::Label, &name)?;
    let ms = served(&state, &name).await?;
    let body = body_bytes(body, state.config.serving.max_body_bytes)?;
    let labels = match parse_json::<FeedbackBody>(&body)? {
        FeedbackBody::Many { labels } => labels,
        FeedbackBody::One(l) => vec![l],
    };
    if labels.len() > 10_000 {
        return Err(ApiError::too_large(format!(
            "{} labels is over the cap of 10000 per request",
            labels.len()
        )));
    }
    let classes = ms
        .deployment
        .load()
        .stable
        .metadata()
        .output
        .classes
        .clone();
    let mut accepted = 0u64;
    let mut problems = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let value = match &l.label {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => classes.iter().position(|c| c == s).map(|p| p as f64),
            _ => None,
        };
        let Some(value) = value else {
            problems.push(serde_json::json!({ "index": i, "request_id": l.request_id,
                "error": format!("label {} is not a number or one of the classes {:?}", l.label, classes) }));
            continue;
        };
        let scored = ms
            .labels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .feedback(&l.request_id, value);
        match scored {
            Ok(s) => {
                accepted += 1;
                if let Some(v) = ms.warm_version(&s.version) {
                    v.stats.label(s.correct);
                    let labels = super::metrics::VersionLabels {
                        model: ms.name.clone(),
                        version: s.version.clone(),
                    };
                    state.serving.metrics.labels.get_or_create(&labels).inc();
                    if s.correct {
                        state.serving.metrics.labels_correct.get_or_create(&labels).inc();
                    }
                    super::window::window_label(&v, &l.request_id, value);
                }
            }
            Err(e) => problems.push(serde_json::json!({ "index": i, "request_id": l.request_id, "error": e.to_string() })),
        }
    }
    let status = if accepted == 0 && !problems.is_empty() {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    Ok((
        status,
        axum::Json(
            serde_json::json!({ "model": ms.name, "accepted": accepted, "problems": problems }),
        ),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::request_id;
    use std::collections::HashSet;

    /// Ids are 128 bits of hex, never repeat, and each thread's generator
    /// is seeded on its own: were two threads ever seeded alike, their
    /// requests would share ids and one request's label would score
    /// another's answer.
    #[test]
    fn request_ids_are_random_hex_and_never_repeat_across_threads() {
        let per_thread = 5_000;
        let ids: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(move || {
                        (0..per_thread)
                            .map(|_| request_id().unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert!(ids.iter().all(|id| {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }));
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 4 * per_thread);
        // The first id of every thread differs too (the seed, not the
        // stream, is what a shared seed would repeat).
        let firsts: HashSet<&String> = ids.iter().step_by(per_thread).collect();
        assert_eq!(firsts.len(), 4);
    }
}
