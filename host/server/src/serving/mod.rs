//! Serving promoted models: warm versions, the atomic deployment switch,
//! and the per-version statistics monitoring and analysis read.
//!
//! Each served model has one [`Deployment`] behind an `ArcSwap`: which
//! version is stable, which is the canary and at what percent, which one
//! shadows. A request loads it once and answers from what it loaded, so a
//! switch (rollback, roll-forward, a canary step) is one pointer store and
//! no request ever mixes two versions. Every version a switch can reach is
//! already compiled, pre-initialised and checked ([`WarmVersion`]); each
//! request still runs in a fresh instance of that snapshot.
//!
//! Map: `predict` (the `/v1` predict and feedback handlers, routing,
//! scoring), `body` (request bodies to batches), `oip` (Open Inference
//! Protocol v2), `metrics` (Prometheus families; `scrape` refreshes gauges
//! and serves `/metrics`, which `metrics_scope` filters to a scoped
//! token's models),
//! `stats` (lock-free counters and latency buckets analysis reads),
//! `pool` (the prediction threads), `control` (canary rollouts, analysis,
//! automatic rollback), `monitors` (continuous validation), `window` (live
//! rows for monitors), `shadow` (mirrored traffic), `alerts` (signed
//! webhooks; `egress` decides where they may go), `policy` (a model's serving policy, stored and installed),
//! `predlog` (the optional sampled, redacted prediction log), `strict`
//! (JSON that refuses a key given twice),
//! `interrupted` (canaries a stop cut short, closed in the record at start),
//! `attested` (only the snapshot the passing gate run attested is served),
//! `warm` (loading a version to serve: `prepare`, `warm_up` at start, the
//! gate-time drift reference).

pub mod alerts;
pub mod attested;
pub mod autorollback;
pub mod body;
pub mod control;
pub mod egress;
pub mod interrupted;
pub mod metrics;
pub mod metrics_scope;
pub mod monitors;
pub mod oip;
pub mod policy;
pub mod pool;
pub mod predict;
pub mod predlog;
pub mod scrape;
pub mod shadow;
pub mod stats;
pub mod strict;
pub mod warm;
pub mod window;

use crate::error::ApiError;
use crate::state::AppState;
use airlock_rollout::compare::LabelBook;
use airlock_rollout::routing::Split;
use airlock_rollout::sketch::DistributionMonitor;
use airlock_runtime::sandbox::CheckedModel;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub use stats::VersionStats;
pub use warm::{call_options, prepare, promoted_before, warm_up};

/// One version of a model, ready to answer: compiled, pre-initialised from
/// its bundle, metadata checked. Cloning the `Arc` is all a switch costs.
pub struct WarmVersion {
    /// The model's name.
    pub model: String,
    /// The version.
    pub version: String,
    /// The checked model (its snapshot when it exports `init`).
    pub checked: CheckedModel,
    /// The digest of the submitted component.
    pub plugin_digest: String,
    /// The digest of the bundle, when it has one.
    pub bundle_digest: Option<String>,
    /// Counters and latency buckets the analysis reads.
    pub stats: VersionStats,
    /// Prometheus handles for this version's series.
    pub series: metrics::VersionSeries,
    /// Input and prediction sketches, data-quality counts.
    pub distributions: Mutex<DistributionMonitor>,
    /// Live rows kept for continuous validation (empty unless the model's
    /// policy names monitor steps).
    pub window: Mutex<window::LiveWindow>,
    /// How long loading took (compile, `init`, snapshot, metadata).
    pub load_time: Duration,
}

impl WarmVersion {
    /// The model's declared inputs and output.
    pub fn metadata(&self) -> &airlock_core::types::ModelMetadata {
        &self.checked.metadata
    }
}

/// What answers a model's requests right now. Replaced as a whole.
pub struct Deployment {
    /// The version that answers unless routing picks the canary.
    pub stable: Arc<WarmVersion>,
    /// The canary and the share of traffic it gets.
    pub canary: Option<Arc<WarmVersion>>,
    /// Sticky-key buckets and weights.
    pub split: Split,
    /// A version that sees a copy of stable traffic off the response path.
    pub shadow: Option<Arc<WarmVersion>>,
    /// Bumped on every switch (responses name it; tests check it).
    pub generation: u64,
}

impl Deployment {
    /// A version this deployment can answer with, by name.
    pub fn find(&self, version: &str) -> Option<&Arc<WarmVersion>> {
        std::iter::once(&self.stable)
            .chain(self.canary.as_ref())
            .chain(self.shadow.as_ref())
            .find(|v| v.version == version)
    }
}

/// A served model: its deployment, the versions kept warm, its delayed
/// labels and its rollout control.
pub struct ModelServing {
    /// The model's name.
    pub name: String,
    /// The deployment requests read (one atomic load each).
    pub deployment: ArcSwap<Deployment>,
    /// Previously promoted versions kept warm, newest first (bounded by
    /// `serving.warm_versions`).
    pub warm: Mutex<Vec<Arc<WarmVersion>>>,
    /// Request id → what was answered, for delayed labels.
    pub labels: Mutex<LabelBook>,
    /// Canary state, policy and analysis history.
    pub control: tokio::sync::Mutex<control::Control>,
    /// The policy as the request path reads it (one atomic load).
    pub policy: ArcSwap<policy::ServingPolicy>,
    generation: AtomicU64,
}

impl ModelServing {
    /// A version that may answer a request that names it: the stable one,
    /// the canary, or a previous production version kept warm. Never the
    /// shadow (it passed the gate but was not approved for traffic) nor an
    /// aborted canary (dropped when it was aborted).
    pub fn servable(&self, version: &str) -> Option<Arc<WarmVersion>> {
        let d = self.deployment.load();
        if d.stable.version == version {
            return Some(d.stable.clone());
        }
        if let Some(c) = d.canary.as_ref().filter(|c| c.version == version) {
            return Some(c.clone());
        }
        self.warm
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|v| v.version == version)
            .cloned()
    }

    /// The version named `version` among the deployment (shadow included)
    /// and the warm set: what a switch can reuse without loading.
    pub fn warm_version(&self, version: &str) -> Option<Arc<WarmVersion>> {
        if let Some(v) = self.deployment.load().find(version) {
            return Some(v.clone());
        }
        self.warm
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|v| v.version == version)
            .cloned()
    }

    /// Every warm version's name (deployment first).
    pub fn warm_names(&self) -> Vec<String> {
        let d = self.deployment.load();
        let mut names: Vec<String> = std::iter::once(&d.stable)
            .chain(d.canary.as_ref())
            .chain(d.shadow.as_ref())
            .map(|v| v.version.clone())
            .collect();
        for v in self.warm.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if !names.contains(&v.version) {
                names.push(v.version.clone());
            }
        }
        names
    }

    /// Replaces the deployment in one atomic store and returns how long the
    /// store took. The previous stable version joins the warm set.
    pub fn switch(
        &self,
        metrics: &metrics::Metrics,
        warm_cap: usize,
        make: impl FnOnce(
            &Deployment,
        ) -> (
            Arc<WarmVersion>,
            Option<Arc<WarmVersion>>,
            Split,
            Option<Arc<WarmVersion>>,
        ),
    ) -> Duration {
        let old = self.deployment.load_full();
        let (stable, canary, split, shadow) = make(&old);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let next = Arc::new(Deployment {
            stable,
            canary,
            split,
            shadow,
            generation,
        });
        let started = Instant::now();
        self.deployment.store(next.clone());
        let took = started.elapsed();
        metrics.switch_seconds.observe(took.as_secs_f64());
        metrics.canary_weight(&self.name, next.split.canary_percent);
        // Keep the previous production version warm for the way back (an
        // aborted canary or a dropped shadow is not kept: nothing may route
        // to it any more).
        let mut warm = self.warm.lock().unwrap_or_else(|p| p.into_inner());
        let v = &old.stable;
        if next.find(&v.version).is_none() && !warm.iter().any(|w| w.version == v.version) {
            warm.insert(0, v.clone());
        }
        for gone in std::iter::once(&old.canary)
            .chain(std::iter::once(&old.shadow))
            .flatten()
        {
            if next.find(&gone.version).is_none() && !warm.iter().any(|w| w.version == gone.version)
            {
                metrics.forget(&gone.model, &gone.version);
            }
        }
        warm.retain(|w| next.find(&w.version).is_none());
        while warm.len() > warm_cap {
            if let Some(gone) = warm.pop() {
                metrics.forget(&gone.model, &gone.version);
            }
        }
        metrics
            .warm_versions
            .get_or_create(&metrics::ModelLabels {
                model: self.name.clone(),
            })
            .set(
                1 + i64::from(next.canary.is_some())
                    + i64::from(next.shadow.is_some())
                    + warm.len() as i64,
            );
        took
    }
}

/// A split that sends everything to `stable`.
pub fn stable_split(stable: &str) -> Split {
    Split {
        stable: stable.to_string(),
        canary: None,
        canary_percent: 0,
        shadow: None,
        salt: String::new(),
    }
}

/// Everything served by this process.
pub struct Serving {
    models: RwLock<HashMap<String, Arc<ModelServing>>>,
    /// The Prometheus registry and families.
    pub metrics: metrics::Metrics,
    /// The threads every model call runs on, behind a bounded queue.
    pub pool: pool::PredictPool,
    /// Shadow calls waiting for the shadow worker.
    pub shadow: shadow::ShadowQueue,
    /// The open sampled prediction logs (when a policy asks for one).
    pub prediction_logs: predlog::PredictionLogs,
    /// Held from an alias move's commit to the switch that follows it, so
    /// two concurrent moves switch traffic in the order they committed.
    pub alias_lock: tokio::sync::Mutex<()>,
    /// Each token's request budget (`rate_per_token`; none when 0).
    budgets: Option<Mutex<airlock_rollout::ratelimit::Buckets>>,
    /// The budgets' clock.
    started: std::time::Instant,
}

impl Serving {
    /// Empty: nothing served until [`warm_up`] or a promotion. Starts the
    /// prediction threads.
    pub fn new(config: &crate::config::ServingConfig) -> std::io::Result<Serving> {
        Ok(Serving {
            models: RwLock::new(HashMap::new()),
            metrics: metrics::Metrics::new(),
            pool: pool::PredictPool::new(config.threads, config.max_in_flight)?,
            shadow: shadow::ShadowQueue::new(config.shadow_queue),
            alias_lock: tokio::sync::Mutex::new(()),
            prediction_logs: predlog::PredictionLogs::default(),
            budgets: (config.rate_per_token > 0).then(|| {
                let rate = f64::from(config.rate_per_token);
                Mutex::new(airlock_rollout::ratelimit::Buckets::new(
                    airlock_rollout::ratelimit::Budget { rate, burst: rate },
                ))
            }),
            started: std::time::Instant::now(),
        })
    }

    /// Admits one prediction request of `token_id` under its budget, or
    /// answers 429 with `Retry-After` (counted). Tokens only: a budget per
    /// token bounds what one client can add to the windows a canary is
    /// judged on, and what it can take from the others.
    pub fn admit(&self, token_id: &str) -> Result<(), ApiError> {
        let Some(budgets) = &self.budgets else {
            return Ok(());
        };
        let now = self.started.elapsed().as_nanos() as u64;
        let taken = budgets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(token_id, now);
        taken.map_err(|over| {
            self.metrics.rate_limited.inc();
            ApiError::over_budget(
                "this token is over its prediction budget (rate_per_token); retry later",
                over.retry_after_s,
            )
        })
    }

    /// Runs a model call on the prediction threads (503 when they are
    /// saturated, counted).
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let out = self.pool.run(f).await;
        if let Err(e) = &out
            && e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE
        {
            self.metrics.overload.inc();
        }
        out
    }

    /// The served model `name`, if it has a production version.
    pub fn model(&self, name: &str) -> Option<Arc<ModelServing>> {
        self.models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every served model's name.
    pub fn model_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Makes `version` the stable version of `model`: instantly when it is
    /// warm, else after loading it. A canary in progress is dropped (its
    /// rollout is ended by the caller).
    pub fn set_stable(&self, state: &AppState, model: &str, version: Arc<WarmVersion>) -> Duration {
        let existing = self.model(model);
        match existing {
            Some(ms) => ms.switch(&self.metrics, state.config.serving.warm_versions, |_| {
                let split = stable_split(&version.version);
                (version, None, split, None)
            }),
            None => {
                let ms = Arc::new(ModelServing {
                    name: model.to_string(),
                    deployment: ArcSwap::from_pointee(Deployment {
                        split: stable_split(&version.version),
                        stable: version,
                        canary: None,
                        shadow: None,
                        generation: 0,
                    }),
                    warm: Mutex::new(Vec::new()),
                    labels: Mutex::new(LabelBook::new(state.config.serving.label_book)),
                    control: tokio::sync::Mutex::new(control::Control::default()),
                    policy: ArcSwap::from_pointee(policy::ServingPolicy::default()),
                    generation: AtomicU64::new(0),
                });
                self.metrics.canary_weight(model, 0);
                self.models
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(model.to_string(), ms);
                Duration::ZERO
            }
        }
    }

    /// Adds a previously promoted version to the warm set (startup).
    pub fn keep_warm(&self, state: &AppState, model: &str, version: Arc<WarmVersion>) {
        if let Some(ms) = self.model(model) {
            let mut warm = ms.warm.lock().unwrap_or_else(|p| p.into_inner());
            if ms.deployment.load().find(&version.version).is_none()
                && !warm.iter().any(|w| w.version == version.version)
                && warm.len() < state.config.serving.warm_versions
            {
                warm.push(version);
            }
        }
    }
}
