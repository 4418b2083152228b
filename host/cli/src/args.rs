//! The command line's shape: every command, flag and help text, as clap
//! reads them. What each command does is in the crate root. The top level
//! ([`Cli`], [`Command`]) is here; the subcommand families are in
//! `args/local.rs` (plugin, gate, signing, audit) and `args/remote.rs`
//! (client and server commands).

mod local;
mod remote;

pub(crate) use local::*;
pub(crate) use remote::*;

use airlock_core::limits::LimitRequest;
use clap::{Args, Parser, Subcommand};
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
