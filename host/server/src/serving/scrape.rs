//! A scrape of `/metrics`: the gauges computed from sketches and shadow
//! agreement are refreshed (on a blocking thread: drift tests are CPU
//! work), then the registry is encoded and cut to a scoped token's models.
//! Kept apart from the families in `metrics.rs`, which the request path
//! updates as it goes.

use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

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

/// `GET /metrics`: the Prometheus text format, only the caller's models'
/// series for a scoped token ([`super::metrics_scope`]).
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    caller: crate::auth::Caller,
) -> ApiResult<Response> {
    // Drift tests over every served version's sketches: CPU work, done on
    // a blocking thread rather than an async worker.
    let st = state.clone();
    let text = tokio::task::spawn_blocking(move || {
        refresh_gauges(&st);
        st.serving
            .metrics
            .encode()
            .map(|text| super::metrics_scope::filter(text, &caller.scope))
    })
    .await
    .map_err(|e| crate::error::ApiError::internal(format_args!("metrics thread: {e}")))?
    .map_err(|e| crate::error::ApiError::internal(format_args!("encoding metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
