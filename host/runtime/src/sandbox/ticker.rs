//! The epoch ticker, which advances the engine's epoch (the clock of every
//! call's wall-clock deadline), and a watch that tells whether a sandbox's
//! engine and ticker are still alive.
//!
//! The ticker holds only a weak handle to the engine and a channel to the
//! runtime that owns it: when the runtime goes, the channel closes, the
//! thread wakes and exits, and the runtime's drop waits for it. So dropping
//! the last sandbox handle and plugin never leaves a thread behind.

use crate::error::SandboxError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::Engine;

/// The thread that advances the engine's epoch (the deadline's clock).
/// Dropping it wakes the thread, which exits, and waits for it to finish.
pub(crate) struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub(crate) running: Arc<AtomicBool>,
}

impl Ticker {
    /// Starts a thread that advances `engine`'s epoch every `tick`.
    pub(crate) fn start(engine: &Engine, tick: Duration) -> Result<Ticker, SandboxError> {
        let weak = engine.weak();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let thread = std::thread::Builder::new()
            .name("airlock-epoch".into())
            .spawn(move || {
                // Cleared however the loop ends.
                struct Exit(Arc<AtomicBool>);
                impl Drop for Exit {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::SeqCst);
                    }
                }
                let _exit = Exit(flag);
                // Ends when the runtime drops its sender, or when the engine
                // is gone, whichever is noticed first.
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(tick)
                {
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| SandboxError::io("starting epoch ticker", e))?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
            running,
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            // The thread only sleeps on the channel just closed, so this
            // returns at once; a panic in it has nothing left to report.
            let _ = t.join();
        }
    }
}

/// Watches a sandbox's engine and epoch ticker without keeping either
/// alive, so a long-running host (and its tests) can check that dropping
/// a sandbox and its plugins really frees them.
#[derive(Clone)]
pub struct EngineWatch {
    pub(crate) engine: wasmtime::EngineWeak,
    pub(crate) ticker: Option<Arc<AtomicBool>>,
}

impl EngineWatch {
    /// Whether anything still holds the engine.
    pub fn engine_alive(&self) -> bool {
        self.engine.upgrade().is_some()
    }

    /// Whether the epoch ticker thread is still running (always `false`
    /// without epoch deadlines).
    pub fn ticker_running(&self) -> bool {
        self.ticker
            .as_ref()
            .is_some_and(|r| r.load(Ordering::SeqCst))
    }
}
