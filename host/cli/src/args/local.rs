//! The shapes of the local commands: `plugin`, `gate`, `key`,
//! `attestation` and `audit` (plugins, gates, signing and the audit log on
//! disk). Apart from `args.rs` so that each file holds one family of
//! commands.

use super::{ConfigOnly, Global, LimitArgs, Remote};
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;

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
