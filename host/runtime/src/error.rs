//! Errors of the runtime that are not a plugin's fault, wrapping the
//! plugin failures defined in `airlock-core` (re-exported here so that one
//! import names every way a runtime call can end).

pub use airlock_core::error::{FailureKind, PluginFailure};

/// Errors of the sandbox that are not a plugin's fault: configuration,
/// I/O on the host's own files, engine setup.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A plugin misbehaved or was refused.
    #[error(transparent)]
    Plugin(#[from] PluginFailure),
    /// The host's configuration is inconsistent: a cap the sandbox is
    /// built with is zero.
    #[error("invalid configuration: {0}")]
    Config(#[from] airlock_core::error::ZeroCap),
    /// The OS gave no randomness for the compile cache's sealing key, so
    /// cached artifacts could not be trusted.
    #[error("no OS randomness for the cache key: {0}")]
    Randomness(#[source] getrandom::Error),
    /// The compile cache's sealing key exists but has the wrong size; it
    /// is never guessed around, since artifacts sealed under it would
    /// not verify.
    #[error(
        "cache key {} is corrupt ({len} bytes); delete it to start a fresh cache",
        path.display()
    )]
    CorruptCacheKey {
        /// The key file.
        path: std::path::PathBuf,
        /// Its size in bytes (a key has 32).
        len: usize,
    },
    /// A host-side file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What the host was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A model bundle was refused or could not be snapshotted.
    #[error("bundle {}: {source}", path.display())]
    Bundle {
        /// The bundle as given.
        path: std::path::PathBuf,
        /// What is wrong with it.
        source: crate::bundle::BundleError,
    },
    /// The engine failed in a way that is not attributable to a plugin.
    #[error("engine error: {0}")]
    Engine(String),
}

impl SandboxError {
    /// Wraps an I/O error with what the host was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }

    /// The plugin failure kind, when this error is one.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            SandboxError::Plugin(p) => Some(p.kind),
            _ => None,
        }
    }
}
