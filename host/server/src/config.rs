//! What the server needs to start, already resolved: the CLI reads the
//! configuration file, the environment and the flags (in that order of
//! rising precedence) and hands the result here, so this crate knows no
//! file format and no flag.

use airlock_attest::VerifyingKey;
use airlock_blobs::KeyRing;
use airlock_gate::data::DataCaps;
use airlock_runtime::sandbox::SandboxConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The server's settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where everything is kept: `airlock.db`, `blobs/`, `audit.jsonl`,
    /// `admin.token`.
    pub data_dir: PathBuf,
    /// The metadata database: `None` is SQLite in `<data_dir>/airlock.db`;
    /// a `postgres://user:password@host/db` URL puts it on PostgreSQL
    /// (blobs, the audit log and the admin token stay in `data_dir`).
    pub database_url: Option<String>,
    /// The address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Gate runs executed at once, each on its own worker thread.
    pub workers: usize,
    /// Gate runs that may wait for a worker; a submission beyond it is a
    /// 503 with `Retry-After`.
    pub queue_depth: usize,
    /// The largest blob upload.
    pub max_upload_bytes: u64,
    /// The largest JSON request body.
    pub max_json_bytes: usize,
    /// Lifetime of tokens created without an explicit one.
    pub default_token_ttl: Duration,
    /// How long shutdown waits for running gate runs before recording them
    /// as interrupted.
    pub shutdown_grace: Duration,
    /// Keys that may sign the first trust policy (and, until one is
    /// accepted, gates, plugins and bundles).
    pub trust_root: Vec<VerifyingKey>,
    /// Encrypts blobs and secrets at rest when set.
    pub key_ring: Option<KeyRing>,
    /// The sandbox every gate run uses.
    pub sandbox: SandboxConfig,
    /// Caps on the datasets gates read.
    pub data_caps: DataCaps,
    /// A TLS certificate chain and private key (PEM); plain HTTP when absent.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How models are served: limits per request, warm versions, monitoring.
    pub serving: ServingConfig,
}

/// Serving limits and switches. Every limit answers at once when reached
/// (a 4xx naming it, or 503 with `Retry-After`), never by queueing.
#[derive(Debug, Clone)]
pub struct ServingConfig {
    /// Promoted versions kept compiled and pre-instantiated besides the
    /// production one, for instant rollback.
    pub warm_versions: usize,
    /// The largest predict or infer body.
    pub max_body_bytes: usize,
    /// The most rows in one request.
    pub max_rows: usize,
    /// Fuel for one prediction call (lowered further by the model's manifest).
    pub call_fuel: u64,
    /// Wall-clock budget of one prediction call, in milliseconds.
    pub call_timeout_ms: u64,
    /// Prediction requests queued or running at once; one more is a 503.
    pub max_in_flight: usize,
    /// Threads that run model calls (never the async runtime's).
    pub threads: usize,
    /// Request ids remembered for delayed labels (`/feedback`); the oldest
    /// are forgotten first.
    pub label_book: usize,
    /// Keep sketches, data-quality counts, labels and latency histograms
    /// per version (the cost is measured in `docs/benchmarks.md`).
    pub monitoring: bool,
    /// Rows of live traffic kept in memory per version for continuous
    /// validation (only when the model's policy names monitor steps).
    pub window_rows: usize,
    /// Shadow calls waiting for the shadow worker; more are dropped and
    /// counted, never queued without bound.
    pub shadow_queue: usize,
    /// Prediction requests per second one token may send on average, up
    /// to as many at once; beyond, 429 with `Retry-After`. 0: no budget.
    pub rate_per_token: u32,
    /// Address blocks alert webhooks may reach although they are not
    /// public (loopback, private, link-local, ...); empty by default, so
    /// webhooks go only to public addresses.
    pub webhook_allow: Vec<crate::serving::egress::Cidr>,
}

impl Default for ServingConfig {
    fn default() -> ServingConfig {
        ServingConfig {
            warm_versions: 3,
            max_body_bytes: 1 << 20,
            max_rows: 1024,
            call_fuel: 1_000_000_000,
            call_timeout_ms: 1_000,
            max_in_flight: 256,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            label_book: 100_000,
            monitoring: true,
            window_rows: 1_000,
            shadow_queue: 1_024,
            rate_per_token: 0,
            webhook_allow: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// The largest component the sandbox accepts.
    pub fn sandbox_component_cap(&self) -> u64 {
        self.sandbox.component_caps.max_component_bytes
    }

    /// Embedded defaults for everything but the data directory and the sandbox.
    pub fn new(data_dir: PathBuf, sandbox: SandboxConfig, data_caps: DataCaps) -> ServerConfig {
        ServerConfig {
            data_dir,
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8470)),
            workers: 2,
            queue_depth: 16,
            max_upload_bytes: 4 << 30,
            max_json_bytes: 4 << 20,
            default_token_ttl: Duration::from_secs(90 * 24 * 3600),
            shutdown_grace: Duration::from_secs(30),
            trust_root: Vec::new(),
            key_ring: None,
            sandbox,
            data_caps,
            tls: None,
            serving: ServingConfig::default(),
        }
    }
}
