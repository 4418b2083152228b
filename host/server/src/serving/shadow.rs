//! Shadow traffic: copies of stable's requests answered by the shadow
//! version on its own thread, behind a bounded queue (a full queue drops
//! and counts, never delays the response), and compared with stable's
//! answers.

use super::WarmVersion;
use airlock_core::types::{Batch, Predictions};
use airlock_rollout::compare::Agreement;
use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
