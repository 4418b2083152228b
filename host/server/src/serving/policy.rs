//! A model's serving policy: how canaries step and are judged, whether a
//! breach in production rolls back on its own, which gate steps keep
//! validating live traffic, where alerts go, and what inputs are accepted.
//! Set by a gate-admin (`PUT /v1/models/{name}/serving`), stored with the
//! model, every change audited. Webhook secrets are sealed under the data
//! key ring when one is configured and never returned.

use super::ModelServing;
use crate::state::AppState;
use airlock_rollout::analysis::Thresholds;
use airlock_rollout::rollout::Plan;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The policy as stored and as `GET` shows it (secrets omitted).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingPolicy {
    /// Canary weights in percent, strictly increasing, ending at 100.
    #[serde(default = "default_steps")]
    pub steps: Vec<u8>,
    /// Seconds per analysis interval (at least 1).
    #[serde(default = "default_interval")]
    pub interval_s: u64,
    /// Failed intervals tolerated before the canary is aborted.
    #[serde(default)]
    pub failure_limit: u32,
    /// Intervals whose measurement itself failed, in a row, tolerated
    /// before the canary is aborted.
    #[serde(default = "default_error_limit")]
    pub consecutive_error_limit: u32,
    /// What one interval must show.
    #[serde(default = "default_thresholds")]
    pub thresholds: Thresholds,
    /// Roll production back to the previous version on a failing
    /// continuous-validation verdict (otherwise: alert only).
    #[serde(default)]
    pub auto_rollback: bool,
    /// Gate steps (by name) run on windows of live traffic, off the
    /// request path.
    #[serde(default)]
    pub monitors: Vec<String>,
    /// Rows a monitor window needs before a verdict counts.
    #[serde(default = "default_min_window")]
    pub min_window_rows: usize,
    /// Alert webhooks.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    /// Accept `null` (missing) input values; they reach the model as NaN
    /// or a missing category.
    #[serde(default)]
    pub allow_missing: bool,
    /// An optional sampled log of predictions (inputs with the sensitive
    /// fields redacted, and the answer); off unless set.
    #[serde(default)]
    pub prediction_log: Option<PredictionLogPolicy>,
}

/// What the sampled prediction log keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionLogPolicy {
    /// Share of answered rows written, in percent (more than 0, at most 100).
    pub sample_percent: f64,
    /// Input features written as `"[redacted]"`, never with their value.
    #[serde(default)]
    pub sensitive: Vec<String>,
}

/// An alert destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `http://` or `https://` URL.
    pub url: String,
    /// The HMAC-SHA256 key payloads are signed with (write-only: stored
    /// sealed, never shown).
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
}

fn default_steps() -> Vec<u8> {
    vec![5, 25, 50, 100]
}
fn default_interval() -> u64 {
    10
}
fn default_error_limit() -> u32 {
    2
}
fn default_min_window() -> usize {
    50
}
fn default_thresholds() -> Thresholds {
    Thresholds::default()
}

impl Default for ServingPolicy {
    fn default() -> ServingPolicy {
        ServingPolicy {
            steps: default_steps(),
            interval_s: default_interval(),
            failure_limit: 0,
            consecutive_error_limit: default_error_limit(),
            thresholds: default_thresholds(),
            auto_rollback: false,
            monitors: Vec::new(),
            min_window_rows: default_min_window(),
            webhooks: Vec::new(),
            allow_missing: false,
            prediction_log: None,
        }
    }
}

impl ServingPolicy {
    /// The canary plan this policy describes.
    pub fn plan(&self) -> Plan {
        Plan {
            steps: self.steps.clone(),
            failure_limit: self.failure_limit,
            consecutive_error_limit: self.consecutive_error_limit,
            thresholds: self.thresholds.clone(),
        }
    }

    /// Every rule a stored policy keeps, each refusal naming the field.
    pub fn check(&self) -> Result<(), String> {
        self.thresholds
            .validate()
            .map_err(|e| format!("thresholds: {e}"))?;
        self.plan().validate().map_err(|e| format!("steps: {e}"))?;
        if self.interval_s == 0 || self.interval_s > 86_400 {
            return Err(format!(
                "interval_s is {}: it must be 1 to 86400 seconds",
                self.interval_s
            ));
        }
        let t = &self.thresholds;
        if !(0.0..=1.0).contains(&t.max_error_rate) {
            return Err(format!(
                "thresholds.max_error_rate {} is outside 0..=1",
                t.max_error_rate
            ));
        }
        for (name, v) in [
            ("min_accuracy", t.min_accuracy),
            ("max_accuracy_drop", t.max_accuracy_drop),
            ("max_disagreement", t.max_disagreement),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(format!("thresholds.{name} {v} is outside 0..=1"));
            }
        }
        if let Some(p) = t.max_p99_ms
            && !(p > 0.0 && p.is_finite())
        {
            return Err(format!(
                "thresholds.max_p99_ms {p} must be a positive number"
            ));
        }
        if self.monitors.len() > 16 {
            return Err(format!(
                "{} monitors is over the cap of 16",
                self.monitors.len()
            ));
        }
        if let Some(l) = &self.prediction_log {
            if !(l.sample_percent > 0.0 && l.sample_percent <= 100.0) {
                return Err(format!(
                    "prediction_log.sample_percent {} is outside (0, 100]",
                    l.sample_percent
                ));
            }
            if l.sensitive.len() > 1024 {
                return Err(format!(
                    "prediction_log.sensitive names {} features, over the cap of 1024",
                    l.sensitive.len()
                ));
            }
        }
        if self.min_window_rows == 0 {
            return Err("min_window_rows must be at least 1".into());
        }
        if self.webhooks.len() > 8 {
            return Err(format!(
                "{} webhooks is over the cap of 8",
                self.webhooks.len()
            ));
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://"))
                || w.url.len() > 2048
            {
                return Err(format!(
                    "webhooks[{i}].url {} is not an http:// or https:// URL of at most 2048 bytes",
                    crate::names::show(&w.url)
                ));
            }
            match &w.secret {
                None => {
                    return Err(format!(
                        "webhooks[{i}].secret is missing: payloads are always signed"
                    ));
                }
                Some(s) if s.len() < 16 || s.len() > 256 => {
                    return Err(format!(
                        "webhooks[{i}].secret is {} bytes: use 16 to 256",
                        s.len()
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
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
                    tracing::error!(model = %model, error = %e, "serving policy of {model}: {e}");
                    return;
                }
            };
            let secrets = match s.as_deref().map(|s| open_secrets(state, model, s)) {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    tracing::error!(model = %model, error = %e, "webhook secrets of {model}: {e}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_valid_and_bad_fields_are_named() {
        ServingPolicy::default().check().unwrap();
        let bad = |f: fn(&mut ServingPolicy)| {
            let mut p = ServingPolicy::default();
            f(&mut p);
            p.check().unwrap_err()
        };
        assert!(bad(|p| p.interval_s = 0).contains("interval_s is 0"));
        assert!(bad(|p| p.steps = vec![50, 25, 100]).starts_with("steps:"));
        let e = bad(|p| p.thresholds.max_error_rate = 2.0);
        assert!(
            e.starts_with("thresholds:") && e.contains("max_error_rate"),
            "{e}"
        );
        assert!(
            bad(|p| p.webhooks = vec![Webhook {
                url: "ftp://x".into(),
                secret: Some("0123456789abcdef".into())
            }])
            .contains("webhooks[0].url")
        );
        assert!(
            bad(|p| p.webhooks = vec![Webhook {
                url: "http://x".into(),
                secret: None
            }])
            .contains("always signed")
        );
        let json: serde_json::Value = serde_json::to_value(ServingPolicy {
            webhooks: vec![Webhook {
                url: "http://x".into(),
                secret: Some("super-secret-value".into()),
            }],
            ..ServingPolicy::default()
        })
        .unwrap();
        assert!(!json.to_string().contains("super-secret-value"), "{json}");
    }
}
