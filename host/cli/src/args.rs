//! The command line's shape: every command, flag and help text, as clap
//! reads them. What each command does is in the crate root.

use airlock_core::limits::LimitRequest;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Runs untrusted ML plugins in a sandbox, gates deployments on them, and
/// serves the models that pass: plugin tools and local gate runs, the
/// control plane (`airlock server`: versions, signed gates, approvals,
/// promotion, audit) and serving (predictions, canaries, shadows,
/// automatic rollback), with the client commands that drive it.
#[derive(Debug, Parser)]
#[command(name = "airlock", version)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The sandbox's settings, on the commands that run one (plugin build,
/// inspect, run, validate; gate run; server): client commands and key
/// tools have no sandbox and do not take them.
#[derive(Debug, Args, Default)]
pub(crate) struct Global {
    /// Operator configuration (limit ceilings, cache, sandbox); default:
    /// $AIRLOCK_CONFIG if set, else the embedded defaults.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Where compiled components are cached (default: $AIRLOCK_CACHE_DIR, else
    /// $XDG_CACHE_HOME/airlock, else ~/.cache/airlock).
    #[arg(long)]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Do not cache compiled components on disk.
    #[arg(long)]
    pub(crate) no_cache: bool,
}

/// Only the operator configuration (its caps), for commands that read
/// bundles but compile nothing.
#[derive(Debug, Args)]
pub(crate) struct ConfigOnly {
    /// Operator configuration (the bundle caps); default: $AIRLOCK_CONFIG
    /// if set, else the embedded defaults.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Write, build, inspect and run plugins.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Run deployment gates.
    #[command(subcommand)]
    Gate(GateCmd),
    /// Check the control plane's hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Create a signing key pair on this machine (for gates, policies,
    /// `sign`); the server's own attestation keys are `server-keys`.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Sign a model (a directory or a file) in the OpenSSF model-signing
    /// format, which the `model_signing` tool verifies.
    Sign {
        /// The model directory or file.
        model: PathBuf,
        /// The private key (PEM, ECDSA P-256 or P-384).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the signature (default: `<model>.sig` beside it).
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    /// Verify a model against its OpenSSF model-signing signature.
    Verify {
        /// The model directory or file.
        model: PathBuf,
        /// The signature (default: `<model>.sig` beside it).
        #[arg(long)]
        signature: Option<PathBuf>,
        /// The public key (PEM) it must verify under.
        #[arg(long)]
        public_key: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check signed gate attestations.
    #[command(subcommand)]
    Attestation(AttestationCmd),
    /// Run the control plane (HTTP) until SIGINT or SIGTERM.
    ///
    /// Every setting comes from, in falling precedence: its flag, its
    /// environment variable, the `[server]` section of the configuration
    /// file (--config / $AIRLOCK_CONFIG), the embedded default. An empty
    /// environment variable counts as unset. Prints the URL, the data
    /// directory and, on a fresh directory, where the first admin token was
    /// written; also writes the URL to `<data-dir>/server.url`. One
    /// server per data directory: a second is refused, naming the first.
    Server {
        #[command(flatten)]
        args: ServerArgs,
        #[command(flatten)]
        host: Global,
    },
    /// Upload a plugin or a model version to a server.
    #[command(subcommand)]
    Submit(SubmitCmd),
    /// List the server's models.
    Models {
        #[command(flatten)]
        remote: Remote,
    },
    /// List a model's versions.
    Versions {
        /// The model.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a model (NAME) or one of its versions (NAME@VERSION).
    Show {
        /// `NAME` or `NAME@VERSION`.
        target: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Create or change a model on the server.
    #[command(subcommand)]
    Model(ModelCmd),
    /// Sign a trust policy offline, or push a signed one to a server.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Approve a model version (not your own submission).
    Approve {
        /// The model.
        name: String,
        /// The version.
        version: String,
        /// Why.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Move an alias (default `production`) to a version that passed its
    /// gate and has its approvals.
    Promote {
        /// The model.
        name: String,
        /// The version.
        version: String,
        /// The alias to move.
        #[arg(long, default_value = "production")]
        alias: String,
        /// Why (recorded in the history and the audit log).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Move an alias back to a version it held before.
    Rollback {
        /// The model.
        name: String,
        /// The version to go back to (default: the one before the current).
        #[arg(long)]
        version: Option<String>,
        /// The alias to move.
        #[arg(long, default_value = "production")]
        alias: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Every alias move of a model, oldest first.
    History {
        /// The model.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Inspect, wait for and cancel gate runs on a server.
    #[command(subcommand)]
    Run(RunCmd),
    /// Create, list, rotate and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The server's attestation signing keys: list them (and write them
    /// as PEM files for `attestation verify`), or rotate. (`keys` is an
    /// older name for it.)
    #[command(
        name = "server-keys",
        alias = "keys",
        args_conflicts_with_subcommands = true
    )]
    Keys(KeysArgs),
    /// Canary rollouts of a served model: start, resume, abort.
    #[command(subcommand)]
    Canary(CanaryCmd),
    /// A served model's serving policy, status and shadow traffic.
    #[command(subcommand)]
    Serving(ServingCmd),
    /// Send one-row predictions from a CSV file to a served model (labels
    /// too, with --feedback or --feedback-token) and print, second by second, which version
    /// answered and how accurate each was.
    Traffic {
        /// The model.
        name: String,
        /// A CSV file with a header naming the model's inputs.
        #[arg(long)]
        data: PathBuf,
        /// The label column (kept out of the request).
        #[arg(long)]
        label: Option<String>,
        /// How long to send, in seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Requests in flight at once (one thread each).
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Send each answer's label to `/feedback` with --token (which
        /// then needs the labeler's permission, e.g. an admin's).
        #[arg(long)]
        feedback: bool,
        /// Send each answer's label to `/feedback` with this token instead
        /// (a `labeler` token: predictor tokens may not send labels).
        /// Its value is never shown in help.
        #[arg(long, env = "AIRLOCK_FEEDBACK_TOKEN", hide_env_values = true)]
        feedback_token: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

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

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Kind {
    Model,
    Validator,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCmd {
    /// Scaffold a guest crate that builds as is.
    New {
        /// `model` or `validator`.
        kind: Kind,
        /// Crate name (also the directory, unless --dir is given).
        name: String,
        /// Where to create the crate.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path to airlock's guest-sdk crate (default: the one this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a guest crate to a component.
    Build {
        /// The crate's directory.
        crate_dir: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        host: Global,
    },
    /// Show a component's digest, world, imports, exports and capabilities.
    Inspect {
        /// The component.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: Global,
    },
    /// Run a model on the rows of a CSV file.
    Run {
        /// The model component.
        model: PathBuf,
        /// CSV with a header of feature names; an empty cell is a missing value.
        #[arg(long)]
        data: PathBuf,
        /// The model's data bundle (a file or a directory).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// A label column of the CSV, withheld from the model (and not
        /// counted when matching positional inputs `f0..fN`).
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Seed for the plugin's randomness.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: Global,
    },
    /// Run a validator on a model: a one-step gate, without a gate file.
    Validate {
        /// The validator component (a `.wasm` file).
        validator: PathBuf,
        /// The candidate model component.
        #[arg(long)]
        model: PathBuf,
        /// The candidate's data bundle.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// The evaluation rows (CSV).
        #[arg(long)]
        data: PathBuf,
        /// The label column of the data.
        #[arg(long)]
        label: Option<String>,
        /// A reference dataset (e.g. training data) for drift checks.
        #[arg(long)]
        reference: Option<PathBuf>,
        /// The validator's configuration: a TOML file holding what a gate
        /// step's `[steps.config]` table would.
        #[arg(long)]
        step_config: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Seed for every plugin (default: drawn at random and printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: Global,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GateCmd {
    /// Run a gate locally against a candidate model.
    Run {
        /// The gate file.
        gate: PathBuf,
        /// The candidate model component.
        #[arg(long)]
        model: PathBuf,
        /// The candidate's data bundle.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// The production model to compare against.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// The baseline's data bundle.
        #[arg(long, requires = "baseline")]
        baseline_bundle: Option<PathBuf>,
        /// Where plugin names in the gate file resolve (overrides plugin_dir).
        #[arg(long)]
        plugin_dir: Option<PathBuf>,
        /// The directory the gate file's relative paths (datasets, plugins)
        /// resolve against; default: the gate file's own directory. Use it
        /// to run a copy of a gate file kept elsewhere.
        #[arg(long)]
        base_dir: Option<PathBuf>,
        /// Seed for every plugin (default: drawn from the host's randomness
        /// and printed in the report; pass it back to rerun exactly).
        #[arg(long)]
        seed: Option<u64>,
        /// Sign the run's verdict with this private key (PEM) and write the
        /// attestation to --attestation (passed or refused alike).
        #[arg(long, requires = "attestation")]
        sign_key: Option<PathBuf>,
        /// Where to write the signed attestation (a DSSE envelope over an
        /// in-toto statement; check it with `airlock attestation verify`).
        #[arg(long, requires = "sign_key")]
        attestation: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: Global,
    },
    /// Publish a local gate file to a server: uploads and registers each
    /// validator as plugin `<name>@<validators-version>`, uploads each
    /// dataset, pins them by digest in the TOML, signs and publishes it.
    Publish {
        /// The gate file.
        gate: PathBuf,
        /// The gate's name on the server.
        #[arg(long)]
        name: String,
        /// The definition's version (1, 2, ...; above the latest).
        #[arg(long)]
        version: u64,
        /// The gate author's private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// Where plugin names in the gate file resolve (overrides plugin_dir).
        #[arg(long)]
        plugin_dir: Option<PathBuf>,
        /// The version the validators are registered under.
        #[arg(long, default_value = "1.0.0")]
        validators_version: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make a published gate version the current one (forward or back).
    Switch {
        /// The gate.
        name: String,
        /// The published version.
        #[arg(long)]
        version: i64,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCmd {
    /// Generate an ECDSA key pair: the private key (PKCS#8 PEM, mode 0600)
    /// at FILE and the public key (SPKI PEM) beside it as FILE with the
    /// extension `.pub`. Never overwrites a file.
    Generate {
        /// Where to write the private key, e.g. `signer.pem`.
        file: PathBuf,
        /// Use P-384 (SHA-384) instead of P-256 (SHA-256).
        #[arg(long)]
        p384: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AttestationCmd {
    /// Verify a gate attestation (`gate run --attestation`) offline: the
    /// signature under one of the given public keys (chosen by key id) and,
    /// with --model (and --bundle), that it is about exactly those bytes.
    Verify {
        /// The attestation (a DSSE envelope, JSON).
        file: PathBuf,
        /// A public key (PEM) it may verify under; repeat for rotated keys.
        #[arg(long = "public-key", required = true)]
        public_keys: Vec<PathBuf>,
        /// The model component it must be about.
        #[arg(long)]
        model: Option<PathBuf>,
        /// The data bundle it must be about (with --model).
        #[arg(long, requires = "model")]
        bundle: Option<PathBuf>,
        /// Also fail (exit 1) when the attested gate run did not pass.
        #[arg(long)]
        require_pass: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigOnly,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// Verify an audit log: every entry's hash, the chain of links and the
    /// numbering, from the first line to the last; names the first bad
    /// entry (exit 1) and prints the head to record for next time.
    Verify {
        /// The log (JSON Lines, one entry per line).
        file: PathBuf,
        /// A head recorded earlier, as `HASH` or `SEQ:HASH` (what an
        /// earlier verify printed): the log must still contain it. Without
        /// it, entries cut off the end cannot be detected.
        #[arg(long)]
        head: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read a server's audit log, newest first (--oldest-first: from the
    /// start), optionally filtered, a page at a time.
    Log {
        /// Only this action (e.g. `promotion`, `approval`, `token_change`).
        #[arg(long)]
        action: Option<String>,
        /// Only this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only this subject (e.g. `mymodel/1.0.0`).
        #[arg(long)]
        subject: Option<String>,
        /// At most this many entries (at most 1000) [default: 100].
        #[arg(long)]
        limit: Option<usize>,
        /// Read from the first entry forward instead of from the newest back.
        #[arg(long)]
        oldest_first: bool,
        /// Only entries before this sequence number: the next (older) page
        /// after a newest-first listing, as its last line says.
        #[arg(long, value_name = "SEQ", conflicts_with = "after")]
        before: Option<u64>,
        /// Only entries after this sequence number: the next page of an
        /// --oldest-first listing, as its last line says.
        #[arg(long, value_name = "SEQ", requires = "oldest_first")]
        after: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Limits a command line may lower.
#[derive(Debug, Args)]
pub(crate) struct LimitArgs {
    /// Fuel per call.
    #[arg(long)]
    pub(crate) fuel: Option<u64>,
    /// Wall-clock deadline per call, in milliseconds.
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// Linear memory cap, in bytes.
    #[arg(long)]
    pub(crate) memory_bytes: Option<u64>,
}

impl LimitArgs {
    pub(crate) fn request(&self) -> LimitRequest {
        LimitRequest {
            fuel: self.fuel,
            timeout_ms: self.timeout_ms,
            memory_bytes: self.memory_bytes,
            ..LimitRequest::default()
        }
    }
}
