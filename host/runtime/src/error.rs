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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::wasi::{WasiSpec, WasiState};
    use crate::sandbox::{Sandbox, SandboxConfig};
    use airlock_core::error::ZeroCap;
    use std::error::Error as _;

    fn small() -> SandboxConfig {
        SandboxConfig {
            pooling: false,
            epoch_deadline: false,
            ..SandboxConfig::default()
        }
    }

    #[test]
    fn a_zero_component_cap_is_a_config_error_naming_the_key() {
        let mut config = small();
        config.component_caps.max_memories = 0;
        let Err(e) = Sandbox::new(config) else {
            panic!("a zero cap was accepted");
        };
        assert!(
            matches!(
                e,
                SandboxError::Config(ZeroCap {
                    key: "component.max_memories"
                })
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "invalid configuration: component.max_memories must be greater than 0"
        );
    }

    #[test]
    fn a_cache_key_of_the_wrong_size_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("cache-key");
        std::fs::write(&key, b"short").unwrap();
        let config = SandboxConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..small()
        };
        let Err(e) = Sandbox::new(config) else {
            panic!("a corrupt cache key was accepted");
        };
        let SandboxError::CorruptCacheKey { path, len } = &e else {
            panic!("expected CorruptCacheKey, got {e:?}");
        };
        assert_eq!((path, *len), (&key, 5));
        assert_eq!(
            e.to_string(),
            format!(
                "cache key {} is corrupt (5 bytes); delete it to start a fresh cache",
                key.display()
            )
        );
        assert_eq!(std::fs::read(&key).unwrap(), b"short", "the key is kept");
    }

    #[test]
    fn an_unopenable_bundle_directory_keeps_its_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let spec = WasiSpec {
            seed: 0,
            max_log_bytes: 1024,
            max_host_alloc_bytes: 1 << 20,
            bundle_dir: Some(&missing),
        };
        let Err(e) = WasiState::new(&spec) else {
            panic!("a missing bundle directory was opened");
        };
        let SandboxError::Io { context, source } = &e else {
            panic!("expected Io, got {e:?}");
        };
        assert_eq!(
            context,
            &format!("cannot open bundle directory {}", missing.display())
        );
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(e.source().is_some());
    }
}
