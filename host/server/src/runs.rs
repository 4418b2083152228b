//! Gate runs: a bounded queue, worker threads that run the gate engine (the
//! sandbox never runs on the async runtime's threads), cancellation, and
//! the record each run leaves: status, report and signed attestation.
//!
//! Statuses: `queued` → `running` → `passed` | `refused` | `error`; or
//! `cancelled` (before it ran, or its result discarded), or `interrupted`
//! (the server stopped or died while it was queued or running; it can be
//! re-run). A run is judged against the gate version that was current when
//! it was queued, with the version in production as baseline.
//!
//! This file holds the queue, the workers and `mark_interrupted`; what a
//! worker does with one run (judge it, sign it, record it) is in
//! `runs/execute.rs`.

mod execute;

use crate::audit::Event;
use crate::error::ApiError;
use crate::state::AppState;
use airlock_audit::Action;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};

/// The queue in front of the workers.
///
/// A submission takes its place in the queue ([`RunQueue::reserve`])
/// before its run is committed and hands the run over after the commit
/// ([`Reserved::push`], which cannot find the queue full): a full queue
/// refuses the submission outright, and a committed run is always queued.
///
/// Locks here, as everywhere in the server, are taken through poisoning
/// (`unwrap_or_else(|p| p.into_inner())`): no critical section leaves its
/// value half-changed, so a panic elsewhere never makes the server drop a
/// cancel or forget a running run.
pub struct RunQueue {
    sender: Mutex<Option<SyncSender<String>>>,
    receiver: Arc<Mutex<Receiver<String>>>,
    /// Runs on a worker, each with whether it was cancelled while running
    /// (its result is then discarded). An entry lives exactly as long as
    /// its run is on a worker, so the map never grows past the workers.
    running: Mutex<HashMap<String, bool>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Places taken: reserved, or sent and not yet taken by a worker.
    waiting: Arc<AtomicUsize>,
    depth: usize,
    closed: Arc<AtomicBool>,
}

/// A place in the run queue, taken before a run is committed; dropped
/// unused (the submission failed), it is given back.
pub struct Reserved<'a> {
    queue: &'a RunQueue,
    tx: Option<SyncSender<String>>,
}

impl Reserved<'_> {
    /// Hands the committed run to the workers. The place was taken, so the
    /// queue has room; should the workers be gone (a stop in progress), the
    /// run stays `queued` in the database and the stop records it
    /// interrupted, as it does every queued run.
    pub fn push(mut self, run_id: &str) {
        let Some(tx) = self.tx.take() else { return };
        match tx.try_send(run_id.to_string()) {
            Ok(()) => {}
            Err(e) => {
                self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
                let why = match e {
                    TrySendError::Full(_) => "the queue is full",
                    TrySendError::Disconnected(_) => "the workers have stopped",
                };
                tracing::warn!(
                    run = %run_id,
                    "run {run_id} stays queued ({why}); a stop records it interrupted"
                );
            }
        }
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.tx.take().is_some() {
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl RunQueue {
    /// A queue holding at most `depth` waiting runs.
    pub fn new(depth: usize) -> RunQueue {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
        RunQueue {
            sender: Mutex::new(Some(tx)),
            receiver: Arc::new(Mutex::new(rx)),
            running: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
            waiting: Arc::new(AtomicUsize::new(0)),
            depth: depth.max(1),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Takes a place for a run about to be committed, or says the queue is
    /// full (503 with Retry-After) or closed (shutting down).
    pub fn reserve(&self) -> Result<Reserved<'_>, ApiError> {
        let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return Err(ApiError::unavailable("the server is shutting down", 5));
        };
        self.waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w < self.depth).then_some(w + 1)
            })
            .map_err(|_| ApiError::unavailable("the gate-run queue is full; retry later", 10))?;
        Ok(Reserved {
            queue: self,
            tx: Some(tx.clone()),
        })
    }

    /// Marks a running run cancelled (its result is discarded); returns
    /// whether it was on a worker. A queued run is cancelled in the
    /// database alone: its worker skips what is no longer `queued`.
    pub fn cancel(&self, run_id: &str) -> bool {
        match self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(run_id)
        {
            Some(c) => {
                *c = true;
                true
            }
            None => false,
        }
    }

    fn is_cancelled(&self, run_id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(run_id)
            .copied()
            .unwrap_or(false)
    }

    /// Runs currently on a worker.
    pub fn running(&self) -> Vec<String> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Stops taking runs; workers finish the run they hold and exit, leaving
    /// queued runs to be recorded as interrupted.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Waits until every worker has exited or `deadline` passes; returns
    /// whether they all did.
    pub fn join(&self, deadline: std::time::Instant) -> bool {
        loop {
            let done = self
                .workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .all(|h| h.is_finished());
            if done || std::time::Instant::now() >= deadline {
                return done;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Starts `n` worker threads. They hold only a weak handle to the state, so
/// dropping the server frees it.
pub fn start_workers(state: &Arc<AppState>, n: usize) {
    let handle = tokio::runtime::Handle::current();
    let mut workers = state.runs.workers.lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..n.max(1) {
        let rx = state.runs.receiver.clone();
        let waiting = state.runs.waiting.clone();
        let closed = state.runs.closed.clone();
        let weak: Weak<AppState> = Arc::downgrade(state);
        let handle = handle.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("airlock-gate-{i}"))
            .spawn(move || {
                loop {
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(run_id) = next else { return };
                    waiting.fetch_sub(1, Ordering::SeqCst);
                    if closed.load(Ordering::SeqCst) {
                        return; // shutting down: what is left is recorded as interrupted
                    }
                    let Some(state) = weak.upgrade() else { return };
                    execute::execute(&state, &handle, &run_id);
                }
            });
        match spawned {
            Ok(h) => workers.push(h),
            Err(e) => {
                tracing::error!(worker = i, error = %e, "cannot start gate worker {i}: {e}")
            }
        }
    }
}

/// A run's entry in [`RunQueue::running`], removed when dropped.
struct OnWorker<'a> {
    queue: &'a RunQueue,
    run_id: &'a str,
}

impl<'a> OnWorker<'a> {
    fn new(queue: &'a RunQueue, run_id: &'a str) -> OnWorker<'a> {
        queue
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run_id.to_string(), false);
        OnWorker { queue, run_id }
    }
}

impl Drop for OnWorker<'_> {
    fn drop(&mut self) {
        self.queue
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.run_id);
    }
}

/// At start (and at the end of a shutdown's grace period), records every
/// run still queued or running as interrupted.
pub async fn mark_interrupted(state: &AppState) -> Result<(), ApiError> {
    // Read in the write transaction: a worker finishing meanwhile either
    // recorded its result first (and is not listed) or finds the run
    // interrupted and records nothing.
    let mut change = state.begin().await?;
    let ids: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT id, model, version, status FROM runs WHERE status IN ('queued', 'running')",
    )
    .fetch_all(&mut *change.tx)
    .await?;
    if ids.is_empty() {
        return Ok(());
    }
    for (id, model, version, was) in ids {
        sqlx::query(
            "UPDATE runs SET status = 'interrupted', reason = $1, finished_at = $2 WHERE id = $3",
        )
        .bind(format!(
            "the server stopped while the run was {was}; re-run it"
        ))
        .bind(crate::db::now())
        .bind(&id)
        .execute(&mut *change.tx)
        .await?;
        change.record(Event::new(
            "server",
            Action::GateRun,
            format!("{model}/{version}"),
            json!({ "run": id, "status": "interrupted", "was": was }),
        ));
    }
    state.commit(change).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_is_remembered_only_while_its_run_is_on_a_worker_even_through_a_poisoned_lock() {
        let q = RunQueue::new(4);
        {
            let _on = OnWorker::new(&q, "run_a");
            // Another thread panics holding the lock: the cancel still lands.
            std::thread::scope(|s| {
                let poisoner = s.spawn(|| {
                    let _held = q.running.lock().unwrap();
                    panic!("injected: a thread dies holding the run lock");
                });
                assert!(poisoner.join().is_err());
            });
            assert!(q.running.is_poisoned());
            assert!(q.cancel("run_a"));
            assert!(q.is_cancelled("run_a"));
            assert_eq!(q.running(), vec!["run_a".to_string()]);
        }
        // Off the worker: forgotten, and cancelling it again remembers nothing.
        assert!(q.running().is_empty());
        assert!(!q.cancel("run_a"));
        assert!(!q.cancel("run_never_ran"));
        assert!(
            q.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
        );
    }

    #[test]
    fn a_reserved_place_is_the_runs_and_an_unused_one_is_given_back() {
        let q = RunQueue::new(1);
        let place = q.reserve().unwrap();
        let full = q.reserve().err().expect("one place, taken");
        assert!(full.message.contains("queue is full"), "{}", full.message);
        drop(place);
        let place = q.reserve().unwrap();
        place.push("run_b");
        assert!(q.reserve().is_err());
        // A worker takes it: the place is free again.
        let got = q.receiver.lock().unwrap().recv().unwrap();
        q.waiting.fetch_sub(1, Ordering::SeqCst);
        assert_eq!(got, "run_b");
        assert!(q.reserve().is_ok());
        q.close();
        let closed = q.reserve().err().expect("closed");
        assert!(
            closed.message.contains("shutting down"),
            "{}",
            closed.message
        );
    }
}
