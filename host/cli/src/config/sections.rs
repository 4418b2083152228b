//! The `[server]` and `[serving]` sections of the configuration file: what
//! `airlock server` reads besides the sandbox limits. Apart from
//! [`super::HostConfig`] because they are plain optional settings that the
//! server's flags and environment override, not ceilings checked here.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The `[server]` section: what `airlock server` reads from the file.
/// Every key is optional; the environment and flags override it (see
/// `docs/server.md` for the one precedence rule).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Where the server keeps its database, blobs, audit log and keys.
    pub data_dir: Option<PathBuf>,
    /// The address to listen on.
    pub listen: Option<SocketAddr>,
    /// Gate runs executed at once.
    pub workers: Option<usize>,
    /// Gate runs that may wait for a worker.
    pub queue_depth: Option<usize>,
    /// The largest blob upload, in bytes.
    pub max_upload_bytes: Option<u64>,
    /// Public keys (PEM files) that may sign the first trust policy.
    pub trust_root: Option<Vec<PathBuf>>,
    /// A data key file: blobs and host keys are encrypted at rest.
    pub data_keys_file: Option<PathBuf>,
    /// A TLS certificate chain (PEM): the server speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
}

/// `airlock server`'s serving settings (`[serving]`; every key optional,
/// a flag given on the command line wins; see `docs/serving.md`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServingSection {
    /// Promoted versions kept warm besides production (instant rollback).
    pub warm_versions: Option<usize>,
    /// The largest predict, infer or feedback body, in bytes.
    pub max_body_bytes: Option<usize>,
    /// The most rows in one request.
    pub max_rows: Option<usize>,
    /// Fuel for one prediction call (a model's manifest may lower it).
    pub call_fuel: Option<u64>,
    /// Wall-clock budget of one prediction call, in milliseconds.
    pub call_timeout_ms: Option<u64>,
    /// Prediction requests queued or running at once; one more is a 503.
    pub max_in_flight: Option<usize>,
    /// Threads that run model calls.
    pub predict_threads: Option<usize>,
    /// Request ids remembered for delayed labels.
    pub label_book: Option<usize>,
    /// Per-version monitoring (sketches, quality counts, labels, histograms).
    pub monitoring: Option<bool>,
    /// Rows of live traffic kept per version for continuous validation.
    pub window_rows: Option<usize>,
    /// Shadow calls that may wait; more are dropped and counted.
    pub shadow_queue: Option<usize>,
    /// Prediction requests per second per token (burst the same); 0: none.
    pub rate_per_token: Option<u32>,
    /// CIDR blocks alert webhooks may reach although not public
    /// (e.g. `["10.20.0.0/16"]` for an internal alert relay).
    pub webhook_allow: Option<Vec<String>>,
}
