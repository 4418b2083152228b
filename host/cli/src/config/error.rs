//! Why a configuration file was refused: typed errors naming the file and
//! the key, kept apart from the loading and checking in [`super`] so the
//! messages an operator sees are all in one place.

use airlock_core::error::{ZeroCap, one_line};
use airlock_gate::data::DataCapsError;
use std::path::PathBuf;

/// Why a configuration file was refused. Every variant names the file and
/// keeps its cause; the CLI prints the message on one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not valid TOML, or not the configuration's shape (an unknown key, a
    /// value of the wrong type); TOML's message names the key and line.
    #[error("config {}: {}", path.display(), one_line(&source.to_string()))]
    Toml {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: toml::de::Error,
    },
    /// Well-formed, but a value is out of range.
    #[error("config {}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which key is wrong, and why.
        source: ConfigProblem,
    },
}

/// A configuration value out of its range, naming the key and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigProblem {
    /// A limit, cap or count is zero (`limits.*`, `bundle.*`,
    /// `component.*`, the long-running counts).
    #[error(transparent)]
    Zero(#[from] ZeroCap),
    /// Fewer instances than a validator and its candidate need at once.
    #[error(
        "max_instances {value} must be at least {min} (a validator and the candidate it probes each need an instance)"
    )]
    TooFewInstances {
        /// The configured value.
        value: u32,
        /// The least that works.
        min: u32,
    },
    /// A probability-sum tolerance that would accept rows that are not
    /// probabilities.
    #[error("output.probability_sum_tolerance {value} must be at least 0 and below 0.5")]
    Tolerance {
        /// The configured value.
        value: f64,
    },
    /// A bundle depth above the host's hard ceiling.
    #[error("bundle.max_depth {value} exceeds the ceiling of {ceiling}")]
    BundleDepth {
        /// The configured value.
        value: u32,
        /// The ceiling.
        ceiling: u32,
    },
    /// More memory than a 32-bit Wasm memory can address.
    #[error("limits.memory_bytes {value} exceeds the 4 GiB a 32-bit Wasm memory can address")]
    MemoryBytes {
        /// The configured value.
        value: u64,
    },
    /// A `[data]` cap out of range.
    #[error(transparent)]
    Data(#[from] DataCapsError),
}
