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
//! (TLS termination).
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
use std::time::Instant;

/// A started server.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its state (for in-process tests).
    pub state: Arc<AppState>,
    /// Where the first admin token was written, on a fresh data directory.
    pub admin_token_file: Option<std::path::PathBuf>,
    tls: bool,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), StartError>>,
    controller_stop: tokio::sync::watch::Sender<bool>,
    controller: tokio::task::JoinHandle<()>,
}

impl Running {
    /// `https` when serving over TLS, else `http`: clients (and tests)
    /// build the base URL from it and `addr`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// Stops gracefully: no new connections, in-flight requests finish, gate
    /// runs get the grace period, and whatever is still running is recorded
    /// as interrupted.
    pub async fn stop(self) -> Result<(), StartError> {
        let _ = self.stop.send(());
        let served = self
            .task
            .await
            .map_err(|e| StartError::Sandbox(format!("server task: {e}")))?;
        let _ = self.controller_stop.send(true);
        let _ = self.controller.await;
        served
    }
}

/// Opens the data directory, binds and serves until `stop` is called.
/// With `config.tls` set, serves HTTPS only; its certificate and key are
/// checked first, so a bad one fails before anything else is touched.
pub async fn start(config: ServerConfig) -> Result<Running, StartError> {
    let acceptor = match &config.tls {
        Some((chain, key)) => Some(tls::acceptor(chain, key)?),
        None => None,
    };
    let tls = acceptor.is_some();
    let listen = config.listen;
    let workers = config.workers;
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
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = routes::router(state.clone());
    let st = state.clone();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        match acceptor {
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Some(acceptor) => {
                axum::serve(tls::TlsListener::new(listener, acceptor), app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        }
        .map_err(|source| StartError::Listen { addr, source })?;
        drain(&st).await;
        Ok(())
    });
    let admin_token_file = state.admin_token_file.get().cloned();
    Ok(Running {
        addr,
        state,
        admin_token_file,
        tls,
        stop,
        task,
        controller_stop,
        controller,
    })
}

/// After the listener closed: stop taking gate runs, give running ones the
/// grace period, then record what is left as interrupted.
async fn drain(state: &Arc<AppState>) {
    state.runs.close();
    let deadline = Instant::now() + state.config.shutdown_grace;
    let st = state.clone();
    let _ = tokio::task::spawn_blocking(move || st.runs.join(deadline)).await;
    if let Err(e) = runs::mark_interrupted(state).await {
        eprintln!("airlock server: recording interrupted runs: {e}");
    }
}
