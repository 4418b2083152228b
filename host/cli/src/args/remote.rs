//! The shapes of the client and server commands (`server`, `submit`,
//! `model`, `policy`, `canary`, `serving`, `run`, `token`, `keys`) and the
//! `--server`/`--token` flags they share. Apart from `args.rs` so that each
//! file holds one family of commands.

use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(crate) enum CanaryCmd {
    /// Start a canary of VERSION (it must meet every promotion rule), or
    /// restart the analysis with a new candidate.
    Start {
        /// The model.
        name: String,
        /// The candidate version.
        version: String,
        /// Why (audited).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Continue a canary paused by an inconclusive analysis.
    Resume {
        /// The model.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop a canary: stable answers everything again.
    Abort {
        /// The model.
        name: String,
        /// Why (audited, alerted).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServingCmd {
    /// Set the serving policy from a JSON file (docs/serving.md).
    Policy {
        /// The model.
        name: String,
        /// The policy (JSON).
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// The deployment, warm versions, rollout and recent analyses.
    Status {
        /// The model.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Mirror production traffic to VERSION (none: stop).
    Shadow {
        /// The model.
        name: String,
        /// The version (omit to stop shadowing).
        version: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// How to reach a server, and how to print its answer.
#[derive(Debug, Args, Clone)]
pub(crate) struct Remote {
    /// The server's URL.
    #[arg(long, env = "AIRLOCK_SERVER", default_value = "http://127.0.0.1:8470")]
    pub(crate) server: String,
    /// The API token (default: --token-file, else $AIRLOCK_TOKEN, else
    /// the file named by $AIRLOCK_TOKEN_FILE).
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// A file holding the API token (e.g. `<data-dir>/admin.token`).
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// Print the server's JSON as is.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Where the database, blobs, audit log and keys live [env:
    /// AIRLOCK_DATA_DIR; file: data_dir; default: $XDG_DATA_HOME/airlock or
    /// ~/.local/share/airlock].
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// The address to listen on; port 0 picks a free one [env:
    /// AIRLOCK_LISTEN; file: listen; default: 127.0.0.1:8470].
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    /// Gate runs executed at once [env: AIRLOCK_WORKERS; file: workers;
    /// default: 2].
    #[arg(long)]
    pub(crate) workers: Option<usize>,
    /// Gate runs that may wait for a worker; beyond, submissions get 503
    /// [env: AIRLOCK_QUEUE_DEPTH; file: queue_depth; default: 16].
    #[arg(long)]
    pub(crate) queue_depth: Option<usize>,
    /// The largest blob upload in bytes [env: AIRLOCK_MAX_UPLOAD_BYTES;
    /// file: max_upload_bytes; default: 4 GiB].
    #[arg(long)]
    pub(crate) max_upload_bytes: Option<u64>,
    /// A public key (PEM) that may sign the first trust policy and, until
    /// one is accepted, gates; repeat for several [env: AIRLOCK_TRUST_ROOT,
    /// comma-separated paths; file: trust_root = [...]].
    #[arg(long = "trust-root")]
    pub(crate) trust_root: Vec<PathBuf>,
    /// A data key file (0600): blobs and host keys are encrypted at rest
    /// [env: AIRLOCK_DATA_KEYS (the keys themselves) or
    /// AIRLOCK_DATA_KEYS_FILE; file: data_keys_file].
    #[arg(long)]
    pub(crate) data_keys: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key [env:
    /// AIRLOCK_TLS_CERT; file: tls_cert].
    #[arg(long)]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM) [env: AIRLOCK_TLS_KEY; file: tls_key].
    #[arg(long)]
    pub(crate) tls_key: Option<PathBuf>,
    /// Do not serve: re-encrypt every blob and re-seal the host keys under
    /// the data key ring's current (last) key, then exit. Run with the
    /// server stopped; afterwards older keys can leave the key file.
    #[arg(long)]
    pub(crate) rotate_data_keys: bool,
    /// Serve without per-version sketches, label book and latency
    /// histograms (counters, analysis and alerts stay on); for measuring
    /// what monitoring costs.
    #[arg(long)]
    pub(crate) no_monitoring: bool,
    /// Threads that run model calls [default: the number of CPUs].
    #[arg(long)]
    pub(crate) predict_threads: Option<usize>,
    /// Prediction requests queued or running at once; beyond, 503 with
    /// Retry-After [default: 256].
    #[arg(long)]
    pub(crate) max_in_flight: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SubmitCmd {
    /// Upload a component and register it as plugin NAME@VERSION (the same
    /// bytes again are accepted; other bytes under a used version are not).
    Plugin {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The plugin's name.
        #[arg(long)]
        name: String,
        /// Its semantic version.
        #[arg(long)]
        version: String,
        /// An OpenSSF model-signing signature over the file (`airlock sign`).
        #[arg(long)]
        signature: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Submit a model version: uploads its bundle, records the version and
    /// queues its gate run.
    Model {
        /// The model (created with `airlock model create`).
        name: String,
        /// The version (semantic versioning).
        #[arg(long)]
        version: String,
        /// The model plugin: `sha256:<hex>` or `name@version`.
        #[arg(long)]
        plugin: String,
        /// The data bundle directory (required unless --no-bundle).
        #[arg(long, required_unless_present = "no_bundle")]
        bundle: Option<PathBuf>,
        /// The model reads no data bundle (its plugin holds everything).
        #[arg(long, conflicts_with = "bundle")]
        no_bundle: bool,
        /// An OpenSSF model-signing signature over the bundle directory.
        #[arg(long, requires = "bundle")]
        bundle_signature: Option<PathBuf>,
        /// Provenance: the training data (a digest or URI).
        #[arg(long)]
        training_data: Option<String>,
        /// Provenance: the code commit that produced the model.
        #[arg(long)]
        code_commit: Option<String>,
        /// Provenance: who trained it.
        #[arg(long)]
        author: Option<String>,
        /// Provenance: a training parameter `KEY=VALUE` (VALUE read as JSON
        /// when it parses, e.g. `lr=0.1`, else as a string); repeatable.
        #[arg(long = "param")]
        params: Vec<String>,
        /// Provenance: a label `KEY=VALUE`; repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Wait for the gate run and print its verdict (exit 0 passed, 1 not).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelCmd {
    /// Create a model (or change its gate and policy).
    Create {
        /// The model's name.
        name: String,
        /// The gate its versions must pass.
        #[arg(long)]
        gate: String,
        /// Approvals a promotion needs (none of them the submitter's).
        #[arg(long, default_value_t = 0)]
        approvals: u32,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCmd {
    /// Sign a trust policy (TOML) offline into a DSSE envelope (JSON).
    Sign {
        /// The policy (TOML).
        policy: PathBuf,
        /// The private key (PEM); a trust-root key, or one the current
        /// policy allows for policies.
        #[arg(long)]
        key: PathBuf,
        /// Where to write the envelope (never overwritten).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Push a signed trust policy to a server.
    Push {
        /// The envelope `policy sign` wrote.
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunCmd {
    /// Show a gate run's status and verdict.
    Show {
        /// The run id (`run_<16 hex>`).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Wait for a gate run to finish and print its verdict (exit 0 passed, 1 not).
    Wait {
        /// The run id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Cancel a queued or running gate run.
    Cancel {
        /// The run id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Save a run's signed attestation (DSSE envelope) for `airlock attestation verify`.
    Attestation {
        /// The run id.
        id: String,
        /// Where to write it (never overwritten).
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCmd {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        /// Who it is for (approvals compare subjects).
        #[arg(long)]
        subject: String,
        /// predictor, labeler, reader, submitter, approver, deployer, gate-admin
        /// or admin.
        #[arg(long)]
        role: String,
        /// Limit it to this model; repeatable (default: all models).
        #[arg(long = "model")]
        models: Vec<String>,
        /// Limit a deployer to this alias; repeatable (default: all).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Lifetime in seconds (default: the server's, 90 days).
        #[arg(long)]
        ttl: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List tokens (ids, subjects, roles; never secrets).
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Give a token a new secret (printed once); the old one stops working.
    Rotate {
        /// The token id (16 hex digits).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a token at once.
    Revoke {
        /// The token id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    pub(crate) action: Option<KeysAction>,
    /// Also write each key as `<DIR>/<key_id>.pub` (PEM), for
    /// `airlock attestation verify --public-key`.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) remote: Remote,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysAction {
    /// Make a new current signing key; old attestations stay verifiable.
    Rotate {
        #[command(flatten)]
        remote: Remote,
    },
}
