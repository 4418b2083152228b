//! Alert webhooks: signed payloads (HMAC-SHA256 over the timestamp and
//! body), delivered on their own threads with bounded retries and backoff,
//! at most [`MAX_DELIVERIES`] at once and [`MAX_DELIVERIES_PER_MODEL`] for
//! one model; only to destinations [`super::egress`] allows, connecting to
//! the address it checked, never following a redirect.

use super::ModelServing;
use super::control::Control;
use crate::state::AppState;
use airlock_rollout::webhook::{Backoff, sign};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Webhook deliveries in progress at once; more are dropped and counted.
pub const MAX_DELIVERIES: usize = 64;

/// Webhook deliveries in progress at once for one model (queued retries
/// included); more are dropped, counted and logged, so that whoever can
/// trigger one model's alerts cannot take every delivery slot.
pub const MAX_DELIVERIES_PER_MODEL: usize = 8;

static DELIVERIES: AtomicUsize = AtomicUsize::new(0);

/// Deliveries in progress, by model.
fn per_model() -> &'static Mutex<HashMap<String, usize>> {
    static PER_MODEL: std::sync::OnceLock<Mutex<HashMap<String, usize>>> =
        std::sync::OnceLock::new();
    PER_MODEL.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A delivery slot: one of [`MAX_DELIVERIES`] and one of the model's
/// [`MAX_DELIVERIES_PER_MODEL`], given back when dropped (whatever the
/// delivery thread did).
struct Slot {
    model: String,
}

impl Slot {
    fn take(model: &str) -> Option<Slot> {
        let mut counts = per_model().lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(model.to_string()).or_insert(0);
        if *n >= MAX_DELIVERIES_PER_MODEL {
            return None;
        }
        if DELIVERIES.fetch_add(1, Ordering::AcqRel) >= MAX_DELIVERIES {
            DELIVERIES.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *n += 1;
        Some(Slot {
            model: model.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        DELIVERIES.fetch_sub(1, Ordering::AcqRel);
        let mut counts = per_model().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.model) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.model);
            }
        }
    }
}

fn count(state: &AppState, outcome: &'static str) {
    state
        .serving
        .metrics
        .webhooks
        .get_or_create(&super::metrics::OutcomeLabels { outcome })
        .inc();
}

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
        let Some(slot) = Slot::take(&ms.name) else {
            count(state, "dropped");
            tracing::warn!(
                model = %ms.name,
                webhook = i,
                event,
                "webhook {} of model {}: dropped ({event}): \
                 {MAX_DELIVERIES_PER_MODEL} deliveries of this model (or {MAX_DELIVERIES} in all) are in progress",
                i, ms.name
            );
            continue;
        };
        let url = hook.url.clone();
        let body = body.clone();
        let st = state.clone();
        let model = ms.name.clone();
        let _ = std::thread::Builder::new()
            .name("airlock-webhook".into())
            .spawn(move || {
                let _slot = slot;
                let outcome = match super::egress::check(&url, &st.config.serving.webhook_allow) {
                    Err(why) => {
                        tracing::warn!(model = %model, "webhook of model {model}: refused: {why}");
                        "refused"
                    }
                    Ok(dest) => match deliver(&url, dest, &secret, &body) {
                        Ok(()) => "delivered",
                        Err(why) => {
                            tracing::warn!(
                                model = %model,
                                "webhook of model {model}: {} not delivered: {why}",
                                crate::names::show(&url)
                            );
                            "failed"
                        }
                    },
                };
                count(&st, outcome);
            });
    }
}

/// Resolves every host to the one address [`super::egress::check`]
/// allowed, so the connection goes where the check looked.
#[derive(Debug)]
struct Pinned(std::net::SocketAddr);

impl ureq::unversioned::resolver::Resolver for Pinned {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let mut addrs = self.empty();
        addrs.push(self.0);
        Ok(addrs)
    }
}

/// The retry schedule of alert deliveries.
pub const WEBHOOK_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(200),
    factor: 2,
    max_delay: Duration::from_secs(5),
    max_attempts: 5,
};

/// Posts `body` to `url` at the pinned `dest`: no proxy, no redirect
/// (a 3xx is a failure, never followed), retried on connection errors and
/// 5xx answers only, under [`WEBHOOK_BACKOFF`].
fn deliver(
    url: &str,
    dest: super::egress::Destination,
    secret: &[u8],
    body: &[u8],
) -> Result<(), String> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build();
    let agent = ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        Pinned(dest.addr),
    );
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
        let why = match sent {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) if !resp.status().is_server_error() => {
                return Err(format!(
                    "answered {} (redirects are not followed)",
                    resp.status()
                ));
            }
            Ok(resp) => format!("answered {}", resp.status()),
            Err(e) => e.to_string(),
        };
        attempt += 1;
        match WEBHOOK_BACKOFF.delay(attempt, super::predict::split_random()) {
            Some(d) => std::thread::sleep(d),
            None => return Err(format!("{why} ({attempt} attempts)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_models_deliveries_are_bounded_and_leave_slots_for_the_others() {
        let many: Vec<Slot> = std::iter::from_fn(|| Slot::take("noisy"))
            .take(MAX_DELIVERIES_PER_MODEL + 4)
            .collect();
        assert_eq!(many.len(), MAX_DELIVERIES_PER_MODEL);
        assert!(Slot::take("noisy").is_none());
        let quiet = Slot::take("quiet").expect("another model still delivers");
        drop(many.into_iter().next());
        let again = Slot::take("noisy").expect("a finished delivery frees its slot");
        drop((quiet, again));
    }
}
