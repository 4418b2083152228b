//! Alert webhooks: signed payloads (HMAC-SHA256 over the timestamp and
//! body), delivered on their own threads with bounded retries and backoff,
//! at most [`MAX_DELIVERIES`] at once.

use super::ModelServing;
use super::control::Control;
use crate::state::AppState;
use airlock_rollout::webhook::{Backoff, sign};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Webhook deliveries in progress at once; more are dropped and counted.
pub const MAX_DELIVERIES: usize = 64;

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
