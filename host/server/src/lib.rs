//! airlock's control plane over HTTP.
//!
//! One process, no external service: a data directory holding a SQLite
//! database (WAL, full sync) for metadata, content-addressed blobs
//! (optionally encrypted at rest) and the hash-chained audit log. Operators
//! upload plugins and model versions, gate-admins publish signed gates,
//! every submission is judged on worker threads and its verdict signed,
//! and promotion needs a valid, passing attestation for exactly those
//! digests plus the approvals the model's policy asks for.
//!
//! Map: `config` (resolved settings), `state` (startup, shared state, the
//! change/commit discipline), `db` (schema), `audit` (outbox → log),
//! `access` (roles, scopes, tokens; pure), `auth` (the bearer extractor),
//! `names` (naming rules), `archive` (bundle tar unpacking), `bundles`
//! (bundles read back from blobs, checked, snapshotted in the data
//! directory), `trust`
//! (artifact checks, trust policy), `gates` (pinned gate specs), `runs`
//! (queue and workers), `routes` (handlers), `serving` (warm versions,
//! predictions, the inference protocol, monitoring, canaries, automatic
//! rollback), `openapi`, `error` (the one error → status mapping), `tls`
//! (TLS termination), `lock` (one server per data directory).
#![forbid(unsafe_code)]
// Database rows are read as tuples next to the query that names their
// columns; naming a struct for each would only move the column list away.
#![allow(clippy::type_complexity)]

pub mod access;
pub mod archive;
pub mod audit;
pub mod auth;
pub mod bundles;
pub mod config;
pub mod db;
pub mod error;
pub mod gates;
pub mod lock;
pub mod names;
pub mod openapi;
pub mod routes;
pub mod runs;
pub mod serving;
pub mod state;
pub mod tls;
pub mod trust;

pub use config::ServerConfig;
pub use state::{AppState, StartError};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A started server.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its state (for in-process tests).
    pub state: Arc<AppState>,
    /// Where the first admin token was written, on a fresh data directory.
    pub admin_token_file: Option<std::path::PathBuf>,
    tls: bool,
    handshakes: Option<Arc<std::sync::atomic::AtomicUsize>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), StartError>>,
    controller_stop: tokio::sync::watch::Sender<bool>,
    controller: tokio::task::JoinHandle<()>,
    /// Set when a stop begins: every new request is a 503 `stopping`.
    stopping: Arc<AtomicBool>,
    /// Held until the server is dropped: no second server on the directory.
    _lock: lock::DataDirLock,
}

/// What a stop waits for, for the operator to read.
#[derive(Debug, Clone)]
pub struct Draining {
    /// The gate runs still running (they get the grace period).
    pub running: Vec<String>,
    /// How long they get.
    pub grace: Duration,
}

impl Running {
    /// `https` when serving over TLS, else `http`: clients (and tests)
    /// build the base URL from it and `addr`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// TLS handshakes accepted and not yet finished (0 without TLS): what a
    /// test waits on to know a connection was accepted.
    pub fn handshakes_in_progress(&self) -> usize {
        self.handshakes
            .as_ref()
            .map_or(0, |h| h.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Begins stopping: every new request is answered 503 `stopping`
    /// (clients waiting on a run are told so, with the command that shows
    /// it later), no gate run is taken any more, and the runs still going
    /// are returned with the grace period they get. Idempotent.
    pub fn begin_stop(&self) -> Draining {
        self.stopping.store(true, Ordering::SeqCst);
        self.state.runs.close();
        let mut running = self.state.runs.running();
        running.sort();
        Draining {
            running,
            grace: self.state.config.shutdown_grace,
        }
    }

    /// Stops gracefully: new requests get 503 `stopping`, gate runs get
    /// the grace period, whatever is still running is recorded as
    /// interrupted, then the listener closes.
    pub async fn stop(self) -> Result<(), StartError> {
        self.stop_unless(std::future::pending()).await
    }

    /// [`stop`](Self::stop), but when `now` completes before the runs
    /// have finished (an operator's second Ctrl-C), the grace period ends
    /// at once: the runs still going are recorded as interrupted and the
    /// listener is closed without waiting for open connections.
    pub async fn stop_unless(
        self,
        now: impl std::future::Future<Output = ()>,
    ) -> Result<(), StartError> {
        let draining = self.begin_stop();
        let deadline = Instant::now() + draining.grace;
        let mut now = std::pin::pin!(now);
        let mut cut_short = false;
        // Polled: the workers are threads, and a join would block the
        // runtime past a second signal.
        while !self.state.runs.join(Instant::now()) && Instant::now() < deadline {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
                () = &mut now => {
                    cut_short = true;
                    break;
                }
            }
        }
        if let Err(e) = runs::mark_interrupted(&self.state).await {
            tracing::error!(error = %e, "recording interrupted runs: {e}");
        }
        let _ = self.stop.send(());
        let served = if cut_short {
            self.task.abort();
            Ok(())
        } else {
            self.task
                .await
                .map_err(|e| StartError::Sandbox(format!("server task: {e}")))?
        };
        let _ = self.controller_stop.send(true);
        let _ = self.controller.await;
        served
    }
}

/// Answers 503 `stopping` to every request once a stop has begun.
async fn refuse_while_stopping(
    stopping: Arc<AtomicBool>,
    grace: u64,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if stopping.load(Ordering::SeqCst) {
        return error::ApiError::stopping(
            "the server is stopping and takes no new request; gate runs already running get the grace period, the rest are recorded as interrupted (see a run with `airlock run show RUN` once the server is back)",
            grace,
        )
        .into_response();
    }
    next.run(req).await
}

/// Opens the data directory, binds and serves until `stop` is called.
/// With `config.tls` set, serves HTTPS only; its certificate and key are
/// checked first, so a bad one fails before anything else is touched.
/// A data directory another server holds is refused before anything in
/// it is opened (`lock`).
pub async fn start(config: ServerConfig) -> Result<Running, StartError> {
    let acceptor = match &config.tls {
        Some((chain, key)) => Some(tls::acceptor(chain, key)?),
        None => None,
    };
    let tls = acceptor.is_some();
    let listen = config.listen;
    let workers = config.workers;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::Io {
        path: config.data_dir.clone(),
        source,
    })?;
    let data_dir_lock = lock::DataDirLock::acquire(&config.data_dir)?;
    let state = AppState::open(config).await?;
    runs::start_workers(&state, workers);
    // Production versions are compiled and pre-initialised before the
    // listener opens; `/v2/health/ready` says so.
    serving::warm_up(&state).await;
    state
        .serving_ready
        .store(true, std::sync::atomic::Ordering::Release);
    let (controller_stop, controller_stopped) = tokio::sync::watch::channel(false);
    let controller = serving::control::start(state.clone(), controller_stopped);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: listen,
        source,
    })?;
    tracing::info!(
        %addr,
        tls,
        workers,
        "control plane started: listening on {addr} with {workers} gate workers"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopping = Arc::new(AtomicBool::new(false));
    let grace = state.config.shutdown_grace.as_secs().max(1);
    let app = routes::router(state.clone()).layer(axum::middleware::from_fn({
        let stopping = stopping.clone();
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            refuse_while_stopping(stopping.clone(), grace, req, next)
        }
    }));
    let listener = match acceptor {
        None => Err(listener),
        Some(acceptor) => Ok(tls::TlsListener::new(listener, acceptor)),
    };
    let handshakes = listener.as_ref().ok().map(tls::TlsListener::pending);
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        match listener {
            Err(plain) => {
                axum::serve(plain, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Ok(tls) => axum::serve(tls, app).with_graceful_shutdown(shutdown).await,
        }
        .map_err(|source| StartError::Listen { addr, source })?;
        Ok(())
    });
    let admin_token_file = state.admin_token_file.get().cloned();
    Ok(Running {
        addr,
        state,
        admin_token_file,
        tls,
        handshakes,
        stop,
        task,
        controller_stop,
        controller,
        stopping,
        _lock: data_dir_lock,
    })
}
