//! The command line's shape: every command, flag and help text, as clap
//! reads them. What each command does is in the crate root.

use airlock_core::limits::LimitRequest;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Runs untrusted ML plugins in a sandbox and gates deployments on them.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) global: Global,
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Operator configuration (limit ceilings, cache, sandbox); default:
    /// $AIRLOCK_CONFIG if set, else the embedded defaults.
    #[arg(long, global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Where compiled components are cached (default: $AIRLOCK_CACHE_DIR, else
    /// $XDG_CACHE_HOME/airlock, else ~/.cache/airlock).
    #[arg(long, global = true)]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Do not cache compiled components on disk.
    #[arg(long, global = true)]
    pub(crate) no_cache: bool,
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
    /// Create signing keys.
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
    },
    /// Show a component's digest, world, imports, exports and capabilities.
    Inspect {
        /// The component.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
