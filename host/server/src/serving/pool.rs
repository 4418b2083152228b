//! The prediction threads: every model call runs here, never on the async
//! runtime's workers, behind a bounded queue.
//!
//! Two reasons. WASI's blocking calls (a guest writing to stderr, say)
//! enter a Tokio runtime of their own, which is not allowed on a thread
//! that drives async tasks; and a slow model must not stall health checks,
//! uploads or the control API. The queue is bounded by the serving
//! configuration's `max_in_flight`: a request that finds it full is
//! answered 503 with `Retry-After` at once, never queued without bound.

use crate::error::ApiError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of threads taking jobs from one bounded queue.
pub struct PredictPool {
    tx: SyncSender<Job>,
    /// Jobs queued or running.
    in_flight: Arc<AtomicUsize>,
    max: usize,
}

impl PredictPool {
    /// `threads` workers behind a queue of `max_in_flight` jobs.
    pub fn new(threads: usize, max_in_flight: usize) -> std::io::Result<PredictPool> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(max_in_flight.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("airlock-predict-{i}"))
                .spawn(move || worker(rx))?;
        }
        Ok(PredictPool {
            tx,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max: max_in_flight.max(1),
        })
    }

    /// Jobs queued or running now (tests wait on it instead of sleeping).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Runs `f` on a prediction thread and waits for its answer without
    /// blocking the async runtime; 503 at once when `max_in_flight` jobs
    /// are already queued or running.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let busy = || {
            ApiError::unavailable(
                format!(
                    "{} prediction requests are already in progress; retry shortly",
                    self.max
                ),
                1,
            )
        };
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(busy());
        }
        // The place is given back when the job is dropped, however that
        // happens: run to its end, unwound by a panic (the worker's
        // `catch_unwind` skips whatever follows the call), or refused by
        // the queue below.
        let place = Place(self.in_flight.clone());
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The place is free before the waiter hears of the answer, or
            // of the panic (locals unwind in reverse order).
            let done = done;
            let place = place;
            let out = f();
            drop(place);
            let _ = done.send(out);
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                return Err(busy());
            }
        }
        answer
            .await
            .map_err(|_| ApiError::internal("the prediction panicked on the host"))
    }
}

/// One place in the pool, held by a job from admission until it is dropped.
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        match job {
            // A panic in a job (none is expected: plugin failures are
            // values) must not take the thread with it.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_pool_answers_503_at_once_and_frees_its_places() {
        let pool = Arc::new(PredictPool::new(1, 1).unwrap());
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let p = pool.clone();
        let first = tokio::spawn(async move {
            p.run(move || {
                let _ = wait.recv();
                7
            })
            .await
        });
        while pool.in_flight.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|| 8).await.unwrap_err();
        assert_eq!(refused.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after, Some(1));
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 7);
        assert_eq!(pool.run(|| 9).await.unwrap(), 9);
        assert_eq!(pool.in_flight.load(Ordering::Acquire), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_prediction_gives_its_place_back() {
        // More panics than places: were a panic to keep its place, every
        // later job would be refused 503.
        let pool = PredictPool::new(1, 2).unwrap();
        for _ in 0..5 {
            let e = pool
                .run(|| -> u32 { panic!("injected host-side panic") })
                .await
                .unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        }
        assert_eq!(pool.in_flight.load(Ordering::Acquire), 0);
        assert_eq!(pool.run(|| 9).await.unwrap(), 9);
    }
}
