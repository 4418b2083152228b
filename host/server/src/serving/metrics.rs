//! The Prometheus endpoint: every family airlock exports, named by
//! Prometheus' conventions (`airlock_` prefix, base units, `_total`
//! counters) with label sets bounded by what is served: a version's series
//! are removed when it leaves the warm set, features come from the model's
//! declared inputs, and kinds, routes, reasons and triggers are fixed lists.
//! What a scrape does (gauges refreshed from sketches, `/metrics`) is in
//! `scrape.rs` (re-exported here).

use airlock_core::error::FailureKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

pub use super::scrape::{metrics, refresh_gauges};

/// `{model}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// The model.
    pub model: String,
}

/// `{model, version}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// The model.
    pub model: String,
    /// The version.
    pub version: String,
}

/// `{model, version, route}`: how the request reached the version
/// (`stable`, `canary`, `forced`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The model.
    pub model: String,
    /// The version.
    pub version: String,
    /// `stable`, `canary` or `forced`.
    pub route: &'static str,
}

/// `{model, version, kind}`: a failure kind (the sandbox's names, or
/// `refused` for the model's own error).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The model.
    pub model: String,
    /// The version.
    pub version: String,
    /// The failure kind.
    pub kind: &'static str,
}

/// `{model, version, feature}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    /// The model.
    pub model: String,
    /// The version.
    pub version: String,
    /// A declared input, or `prediction`.
    pub feature: String,
}

/// `{model, version, feature, problem}` (`missing`, `out_of_range`,
/// `unseen_category`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QualityLabels {
    /// The model.
    pub model: String,
    /// The version.
    pub version: String,
    /// A declared input.
    pub feature: String,
    /// The problem.
    pub problem: &'static str,
}

/// `{model, reason}`: why a rollout was aborted (a fixed list).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The model.
    pub model: String,
    /// `analysis`, `errors`, `validator`, `manual`.
    pub reason: &'static str,
}

/// `{model, trigger}`: who rolled back (`manual`, `automatic`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// The model.
    pub model: String,
    /// `manual` or `automatic`.
    pub trigger: &'static str,
}

/// `{model, result}` of one analysis interval.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The model.
    pub model: String,
    /// `pass`, `fail`, `inconclusive`, `error`.
    pub result: &'static str,
}

/// `{outcome}` of a webhook delivery.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered` or `failed`.
    pub outcome: &'static str,
}

/// Builds latency histograms (seconds, 10 µs to about 5 s).
#[derive(Clone)]
pub struct LatencyBuckets;
impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(1e-5, 2.0, 20))
    }
}

/// Builds fuel histograms (1 thousand to about 500 billion units).
#[derive(Clone)]
pub struct FuelBuckets;
impl MetricConstructor<Histogram> for FuelBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(1e3, 4.0, 20))
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Features per version that get drift and data-quality series (a model
/// declaring more inputs gets the first ones only: a hostile model must not
/// blow up the label set).
pub const MAX_FEATURE_SERIES: usize = 256;

/// Every family, registered once.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    rows: Family<VersionLabels, Counter>,
    latency: Family<VersionLabels, Histogram, LatencyBuckets>,
    fuel: Family<VersionLabels, Histogram, FuelBuckets>,
    /// Delayed labels received, per version.
    pub labels: Family<VersionLabels, Counter>,
    /// Delayed labels that agreed with the answer.
    pub labels_correct: Family<VersionLabels, Counter>,
    /// Shadow comparisons made, per shadow version.
    pub shadow_compared: Family<VersionLabels, Counter>,
    /// Shadow comparisons whose decision differed.
    pub shadow_disagreed: Family<VersionLabels, Counter>,
    /// Mean absolute difference of the shadow's scores from stable's.
    pub shadow_mean_abs_difference: Family<VersionLabels, FloatGauge>,
    /// Shadow calls dropped because the shadow queue was full.
    pub shadow_dropped: Family<ModelLabels, Counter>,
    /// Shadow calls the shadow version failed.
    pub shadow_errors: Family<VersionLabels, Counter>,
    /// Drift score per feature against the gate-time reference.
    pub drift_score: Family<FeatureLabels, FloatGauge>,
    /// 1 when the feature's drift test fires.
    pub drift_detected: Family<FeatureLabels, Gauge>,
    /// Rows with a data-quality problem since the version was loaded.
    pub quality_rows: Family<QualityLabels, Gauge>,
    /// The canary's share of traffic.
    canary_weight: Family<ModelLabels, Gauge>,
    /// Canary rollouts aborted, by reason.
    pub aborts: Family<ReasonLabels, Counter>,
    /// Rollbacks, by trigger (`manual`, `automatic`).
    pub rollbacks: Family<TriggerLabels, Counter>,
    /// Analysis results, by result (`pass`, `fail`, `inconclusive`, `error`).
    pub analyses: Family<ResultLabels, Counter>,
    /// How long the deployment switch (one atomic store) took.
    pub switch_seconds: Histogram,
    /// Requests refused because too many were in progress.
    pub overload: Counter,
    /// Requests refused because their token was over its budget.
    pub rate_limited: Counter,
    /// Versions kept warm, per model (deployment included).
    pub warm_versions: Family<ModelLabels, Gauge>,
    /// Alert webhook deliveries.
    pub webhooks: Family<OutcomeLabels, Counter>,
    features: Mutex<HashMap<(String, String), Vec<String>>>,
}

/// A version's hot-path handles, created once when it is loaded.
#[derive(Clone)]
pub struct VersionSeries {
    /// Requests routed to it as stable.
    pub stable: Counter,
    /// Requests routed to it as the canary.
    pub canary: Counter,
    /// Requests that forced it by header.
    pub forced: Counter,
    /// Rows scored.
    pub rows: Counter,
    /// Latency of each call (seconds).
    pub latency: Histogram,
    /// Fuel of each call.
    pub fuel: Histogram,
}

/// The failure kinds an error series can carry.
const KINDS: [&str; 13] = [
    "fuel_exhausted",
    "timeout",
    "memory_limit",
    "stack_overflow",
    "trap",
    "guest_error",
    "disallowed_import",
    "invalid_component",
    "output_too_large",
    "input_too_large",
    "invalid_output",
    "busy",
    "refused",
];

/// The static name of a failure kind (label values must be bounded).
pub fn kind_word(kind: FailureKind) -> &'static str {
    kind.as_str()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("airlock");
        let m = Metrics {
            requests: Family::default(),
            errors: Family::default(),
            rows: Family::default(),
            latency: Family::new_with_constructor(LatencyBuckets),
            fuel: Family::new_with_constructor(FuelBuckets),
            labels: Family::default(),
            labels_correct: Family::default(),
            shadow_compared: Family::default(),
            shadow_disagreed: Family::default(),
            shadow_mean_abs_difference: Family::default(),
            shadow_dropped: Family::default(),
            shadow_errors: Family::default(),
            drift_score: Family::default(),
            drift_detected: Family::default(),
            quality_rows: Family::default(),
            canary_weight: Family::default(),
            aborts: Family::default(),
            rollbacks: Family::default(),
            analyses: Family::default(),
            switch_seconds: Histogram::new(exponential_buckets(1e-8, 4.0, 16)),
            overload: Counter::default(),
            rate_limited: Counter::default(),
            warm_versions: Family::default(),
            webhooks: Family::default(),
            features: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "predict_requests",
            "Prediction requests answered or failed, by version and route",
            m.requests.clone(),
        );
        r.register(
            "predict_errors",
            "Prediction requests the model failed, by failure kind",
            m.errors.clone(),
        );
        r.register("predict_rows", "Rows scored", m.rows.clone());
        r.register(
            "predict_duration_seconds",
            "Time of one prediction call, fresh instance included",
            m.latency.clone(),
        );
        r.register(
            "predict_fuel",
            "Fuel (wasm instructions, roughly) of one prediction call",
            m.fuel.clone(),
        );
        r.register(
            "feedback_labels",
            "Delayed labels received for answered requests",
            m.labels.clone(),
        );
        r.register(
            "feedback_labels_correct",
            "Delayed labels that agreed with the answer",
            m.labels_correct.clone(),
        );
        r.register(
            "shadow_comparisons",
            "Requests mirrored to the shadow version and compared",
            m.shadow_compared.clone(),
        );
        r.register(
            "shadow_disagreements",
            "Mirrored requests where the shadow decided differently",
            m.shadow_disagreed.clone(),
        );
        r.register(
            "shadow_mean_abs_difference",
            "Mean absolute difference of the shadow's scores from stable's",
            m.shadow_mean_abs_difference.clone(),
        );
        r.register(
            "shadow_dropped",
            "Mirrored requests dropped because the shadow queue was full",
            m.shadow_dropped.clone(),
        );
        r.register(
            "shadow_errors",
            "Mirrored requests the shadow version failed",
            m.shadow_errors.clone(),
        );
        r.register(
            "drift_score",
            "Drift test score of a feature against the gate-time reference",
            m.drift_score.clone(),
        );
        r.register(
            "drift_detected",
            "1 when the feature's drift test fires",
            m.drift_detected.clone(),
        );
        r.register(
            "data_quality_rows",
            "Rows with a data-quality problem since the version was loaded",
            m.quality_rows.clone(),
        );
        r.register(
            "canary_weight_percent",
            "Share of traffic routed to the canary",
            m.canary_weight.clone(),
        );
        r.register(
            "rollout_aborts",
            "Canary rollouts aborted, by reason",
            m.aborts.clone(),
        );
        r.register("rollbacks", "Rollbacks, by trigger", m.rollbacks.clone());
        r.register(
            "analysis_runs",
            "Analysis intervals, by result",
            m.analyses.clone(),
        );
        r.register(
            "deployment_switch_seconds",
            "Time of the atomic deployment switch",
            m.switch_seconds.clone(),
        );
        r.register(
            "predict_overload",
            "Prediction requests refused because too many were in progress",
            m.overload.clone(),
        );
        r.register(
            "predict_rate_limited",
            "Prediction requests refused because their token was over its budget",
            m.rate_limited.clone(),
        );
        r.register(
            "warm_versions",
            "Versions compiled and pre-instantiated, per model",
            m.warm_versions.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Alert webhook deliveries, by outcome",
            m.webhooks.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The hot-path handles of a version, and the features its series use.
    pub fn version_series(&self, model: &str, version: &str, features: &[String]) -> VersionSeries {
        let v = VersionLabels {
            model: model.to_string(),
            version: version.to_string(),
        };
        let route = |route| {
            self.requests.get_or_create_owned(&RouteLabels {
                model: model.to_string(),
                version: version.to_string(),
                route,
            })
        };
        self.features
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (model.to_string(), version.to_string()),
                features.iter().take(MAX_FEATURE_SERIES).cloned().collect(),
            );
        VersionSeries {
            stable: route("stable"),
            canary: route("canary"),
            forced: route("forced"),
            rows: self.rows.get_or_create_owned(&v),
            latency: self.latency.get_or_create_owned(&v),
            fuel: self.fuel.get_or_create_owned(&v),
        }
    }

    /// Counts a failed request.
    pub fn error(&self, model: &str, version: &str, kind: &'static str) {
        self.errors
            .get_or_create(&KindLabels {
                model: model.to_string(),
                version: version.to_string(),
                kind,
            })
            .inc();
    }

    /// Sets the canary's share.
    pub fn canary_weight(&self, model: &str, percent: u8) {
        self.canary_weight
            .get_or_create(&ModelLabels {
                model: model.to_string(),
            })
            .set(i64::from(percent));
    }

    /// Counts an aborted rollout.
    pub fn abort(&self, model: &str, reason: &'static str) {
        self.aborts
            .get_or_create(&ReasonLabels {
                model: model.to_string(),
                reason,
            })
            .inc();
    }

    /// Counts a rollback.
    pub fn rollback(&self, model: &str, trigger: &'static str) {
        self.rollbacks
            .get_or_create(&TriggerLabels {
                model: model.to_string(),
                trigger,
            })
            .inc();
    }

    /// Counts an analysis interval's result.
    pub fn analysis(&self, model: &str, result: &'static str) {
        self.analyses
            .get_or_create(&ResultLabels {
                model: model.to_string(),
                result,
            })
            .inc();
    }

    /// Removes every series of a version that is no longer warm, so label
    /// sets stay bounded by what is served.
    pub fn forget(&self, model: &str, version: &str) {
        let v = VersionLabels {
            model: model.to_string(),
            version: version.to_string(),
        };
        for route in ["stable", "canary", "forced"] {
            self.requests.remove(&RouteLabels {
                model: model.to_string(),
                version: version.to_string(),
                route,
            });
        }
        for kind in KINDS {
            self.errors.remove(&KindLabels {
                model: model.to_string(),
                version: version.to_string(),
                kind,
            });
        }
        for f in [
            &self.rows,
            &self.labels,
            &self.labels_correct,
            &self.shadow_compared,
            &self.shadow_disagreed,
            &self.shadow_errors,
        ] {
            f.remove(&v);
        }
        self.latency.remove(&v);
        self.fuel.remove(&v);
        self.shadow_mean_abs_difference.remove(&v);
        let features = self
            .features
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(model.to_string(), version.to_string()))
            .unwrap_or_default();
        for feature in features.iter().map(String::as_str).chain(["prediction"]) {
            let fl = FeatureLabels {
                model: model.to_string(),
                version: version.to_string(),
                feature: feature.to_string(),
            };
            self.drift_score.remove(&fl);
            self.drift_detected.remove(&fl);
            for problem in ["missing", "out_of_range", "unseen_category"] {
                self.quality_rows.remove(&QualityLabels {
                    model: model.to_string(),
                    version: version.to_string(),
                    feature: feature.to_string(),
                    problem,
                });
            }
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
