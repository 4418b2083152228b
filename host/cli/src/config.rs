//! The operator's configuration: the limit ceilings every plugin call runs
//! under and how the sandbox is set up. Embedded defaults apply when no file
//! is given; a file only needs the keys it changes.
//!
//! ```toml
//! cache_dir = "/var/cache/airlock"
//! max_instances = 32          # live instances at once (at least 2)
//! queue_timeout_ms = 5_000    # how long a call waits for an instance slot
//! max_queued_calls = 256      # calls waiting beyond this fail as `busy`
//! max_loaded_plugins = 64     # loaded plugins kept (least recently used go)
//! session_max_calls = 1_000_000   # calls one warm session serves
//! session_max_idle_ms = 60_000    # how long a warm session may sit unused
//! epoch_tick_ms = 2           # deadline resolution
//! [limits]
//! fuel = 1_000_000_000
//! timeout_ms = 5_000
//! memory_bytes = 134_217_728
//! [data]
//! max_file_bytes = 1_073_741_824   # caps on every CSV dataset read
//! max_columns = 10_000
//! max_rows = 10_000_000
//! max_cells = 50_000_000
//! [bundle]                    # caps on model bundles, checked before reading
//! max_total_bytes = 2_147_483_648
//! max_entries = 10_000
//! max_depth = 16
//! [component]                 # what a component may ask the compiler to do
//! max_function_body_bytes = 262_144
//! [server]                    # `airlock server`; flags and environment override these
//! data_dir = "/var/lib/airlock"   # relative paths resolve against this file's directory
//! listen = "127.0.0.1:8470"
//! workers = 2                 # gate runs at once
//! queue_depth = 16            # gate runs that may wait for a worker
//! max_upload_bytes = 4_294_967_296
//! trust_root = ["keys/root.pub"]  # public keys that may sign the first policy and gates
//! data_keys_file = "/etc/airlock/data.keys"   # encrypts blobs at rest (0600)
//! ```

mod error;
mod sections;

pub use error::{ConfigError, ConfigProblem};
pub use sections::{ServerSection, ServingSection};

use airlock_core::error::ZeroCap;
use airlock_core::limits::Limits;
use airlock_gate::data::DataCaps;
use airlock_runtime::bundle::{BundleCaps, MAX_DEPTH_CEILING};
use airlock_runtime::precheck::ComponentCaps;
use airlock_runtime::sandbox::SandboxConfig;
use airlock_runtime::sandbox::slots::MIN_SLOTS;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Ceilings for every plugin call.
    pub limits: Limits,
    /// Where compiled components are cached.
    pub cache_dir: Option<PathBuf>,
    /// Live instances at once (at least 2: a validator and its
    /// candidate); the pooling allocator holds room for this many.
    pub max_instances: u32,
    /// How long a call waits for an instance slot before failing as
    /// `busy`, in milliseconds (0: fail at once when all are taken).
    pub queue_timeout_ms: u64,
    /// How many calls may wait for a slot; further calls fail as `busy`
    /// at once.
    pub max_queued_calls: usize,
    /// How many loaded plugins the host keeps cached.
    pub max_loaded_plugins: usize,
    /// How many calls one warm session serves.
    pub session_max_calls: u64,
    /// How long a warm session may sit unused, in milliseconds.
    pub session_max_idle_ms: u64,
    /// Epoch tick in milliseconds (the deadline's resolution).
    pub epoch_tick_ms: u64,
    /// Use the pooling allocator.
    pub pooling: bool,
    /// How strictly model outputs are checked (`[output]`).
    pub output: airlock_core::contract::OutputRules,
    /// Caps on every dataset the host reads (`[data]`).
    pub data: DataCaps,
    /// Caps on model bundles (`[bundle]`).
    pub bundle: BundleCaps,
    /// Caps checked on a component before it is compiled.
    pub component: ComponentCaps,
    /// `airlock server`'s settings (`[server]`).
    pub server: ServerSection,
    /// `airlock server`'s serving settings (`[serving]`).
    pub serving: ServingSection,
}

impl Default for HostConfig {
    fn default() -> Self {
        let s = SandboxConfig::default();
        HostConfig {
            limits: s.limits,
            cache_dir: None,
            max_instances: 16,
            queue_timeout_ms: s.queue_timeout.as_millis() as u64,
            max_queued_calls: s.max_queued_calls,
            max_loaded_plugins: s.max_loaded_plugins,
            session_max_calls: s.session_max_calls,
            session_max_idle_ms: s.session_max_idle.as_millis() as u64,
            epoch_tick_ms: s.epoch_tick.as_millis() as u64,
            pooling: s.pooling,
            output: s.output_rules,
            data: DataCaps::default(),
            bundle: s.bundle_caps,
            component: s.component_caps,
            server: ServerSection::default(),
            serving: ServingSection::default(),
        }
    }
}

/// Largest linear memory a 32-bit Wasm memory can have.
const MAX_MEMORY_BYTES: u64 = 4 << 30;
impl HostConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<HostConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg: HostConfig = toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: path.to_path_buf(),
            source,
        })?;
        // Paths in `[server]` mean what they say from the file's directory,
        // wherever the server is started.
        let base = path.parent().unwrap_or(Path::new("."));
        let s = &mut cfg.server;
        for p in s
            .data_dir
            .iter_mut()
            .chain(s.data_keys_file.iter_mut())
            .chain(s.tls_cert.iter_mut())
            .chain(s.tls_key.iter_mut())
            .chain(s.trust_root.iter_mut().flatten())
        {
            *p = base.join(&*p);
        }
        cfg.check().map_err(|source| ConfigError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigProblem> {
        let l = &self.limits;
        for (key, v) in [
            ("limits.fuel", l.fuel),
            ("limits.timeout_ms", l.timeout_ms),
            ("limits.memory_bytes", l.memory_bytes),
            ("limits.max_output_bytes", l.max_output_bytes),
            ("limits.max_input_bytes", l.max_input_bytes),
            ("epoch_tick_ms", self.epoch_tick_ms),
            ("max_loaded_plugins", self.max_loaded_plugins as u64),
            ("session_max_calls", self.session_max_calls),
            ("session_max_idle_ms", self.session_max_idle_ms),
            ("bundle.max_entries", self.bundle.max_entries),
            ("bundle.max_depth", u64::from(self.bundle.max_depth)),
            ("server.workers", self.server.workers.unwrap_or(1) as u64),
            (
                "server.queue_depth",
                self.server.queue_depth.unwrap_or(1) as u64,
            ),
            (
                "server.max_upload_bytes",
                self.server.max_upload_bytes.unwrap_or(1),
            ),
        ] {
            if v == 0 {
                return Err(ZeroCap { key }.into());
            }
        }
        if self.max_instances < MIN_SLOTS {
            return Err(ConfigProblem::TooFewInstances {
                value: self.max_instances,
                min: MIN_SLOTS,
            });
        }
        let tol = self.output.probability_sum_tolerance;
        if !(0.0..0.5).contains(&tol) {
            return Err(ConfigProblem::Tolerance { value: tol });
        }
        self.data.check()?;
        if self.bundle.max_depth > MAX_DEPTH_CEILING {
            return Err(ConfigProblem::BundleDepth {
                value: self.bundle.max_depth,
                ceiling: MAX_DEPTH_CEILING,
            });
        }
        if l.memory_bytes > MAX_MEMORY_BYTES {
            return Err(ConfigProblem::MemoryBytes {
                value: l.memory_bytes,
            });
        }
        self.component.check()?;
        Ok(())
    }

    /// The sandbox setup this configuration describes (everything but the
    /// `[data]` caps, which callers pass to what reads datasets).
    pub fn sandbox_config(&self) -> SandboxConfig {
        SandboxConfig {
            limits: self.limits,
            cache_dir: self.cache_dir.clone(),
            max_instances: self.max_instances,
            queue_timeout: Duration::from_millis(self.queue_timeout_ms),
            max_queued_calls: self.max_queued_calls,
            max_loaded_plugins: self.max_loaded_plugins,
            session_max_calls: self.session_max_calls,
            session_max_idle: Duration::from_millis(self.session_max_idle_ms),
            epoch_tick: Duration::from_millis(self.epoch_tick_ms),
            pooling: self.pooling,
            output_rules: self.output,
            bundle_caps: self.bundle,
            component_caps: self.component,
            ..SandboxConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_gate::data::DataCapsError;

    /// Loads `text` from a temporary file; errors as the CLI prints them.
    fn parse(text: &str) -> Result<HostConfig, String> {
        load(text).map_err(|e| e.to_string())
    }

    fn load(text: &str) -> Result<HostConfig, ConfigError> {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        HostConfig::load(f.path())
    }

    /// The range problem behind a refused file.
    fn problem(text: &str) -> ConfigProblem {
        match load(text).unwrap_err() {
            ConfigError::Invalid { source, .. } => source,
            other => panic!("expected a range problem, got {other:?}"),
        }
    }

    #[test]
    fn each_kind_of_failure_keeps_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let e = HostConfig::load(&missing).unwrap_err();
        let ConfigError::Read { path, source } = &e else {
            panic!("expected Read, got {e:?}");
        };
        assert_eq!(path, &missing);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(
            e.to_string()
                .starts_with(&format!("cannot read config {}: ", missing.display())),
            "{e}"
        );

        let e = load("[limits]\nfuell = 7\n").unwrap_err();
        let ConfigError::Toml { source, .. } = &e else {
            panic!("expected Toml, got {e:?}");
        };
        assert!(
            source.message().contains("unknown field `fuell`"),
            "{source}"
        );
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(std::error::Error::source(&e).is_some());

        assert_eq!(
            problem("[limits]\nfuel = 0\n"),
            ConfigProblem::Zero(ZeroCap { key: "limits.fuel" })
        );
        assert_eq!(
            problem("max_instances = 1\n"),
            ConfigProblem::TooFewInstances { value: 1, min: 2 }
        );
        assert_eq!(
            problem("[output]\nprobability_sum_tolerance = -0.1\n"),
            ConfigProblem::Tolerance { value: -0.1 }
        );
        assert_eq!(
            problem("[bundle]\nmax_depth = 300\n"),
            ConfigProblem::BundleDepth {
                value: 300,
                ceiling: 256
            }
        );
        assert_eq!(
            problem("[limits]\nmemory_bytes = 8589934592\n"),
            ConfigProblem::MemoryBytes { value: 8 << 30 }
        );
        assert_eq!(
            problem("[data]\nmax_rows = 4294967296\n"),
            ConfigProblem::Data(DataCapsError::RowsOverBatch { max_rows: 1 << 32 })
        );
        assert_eq!(
            problem("[component]\nmax_memories = 0\n"),
            ConfigProblem::Zero(ZeroCap {
                key: "component.max_memories"
            })
        );
        let e = load("[data]\nmax_columns = 0\n").unwrap_err();
        let ConfigError::Invalid { path, source } = &e else {
            panic!("expected Invalid, got {e:?}");
        };
        assert_eq!(
            source,
            &ConfigProblem::Data(DataCapsError::Zero(ZeroCap {
                key: "data.max_columns"
            }))
        );
        assert_eq!(
            e.to_string(),
            format!(
                "config {}: data.max_columns must be greater than 0",
                path.display()
            )
        );
    }

    #[test]
    fn partial_files_keep_the_other_defaults() {
        let c = parse("[limits]\nfuel = 7\n").unwrap();
        assert_eq!(c.limits.fuel, 7);
        assert_eq!(c.limits.timeout_ms, Limits::default().timeout_ms);
        assert_eq!(c.sandbox_config().limits.fuel, 7);
    }

    #[test]
    fn the_bundle_section_sets_the_bundle_caps() {
        let c = parse("[bundle]\nmax_entries = 3\n").unwrap();
        assert_eq!(c.bundle.max_entries, 3);
        assert_eq!(c.bundle.max_depth, BundleCaps::default().max_depth);
        assert_eq!(c.sandbox_config().bundle_caps.max_entries, 3);
        let e = parse("[bundle]\nmax_depth = 0\n").unwrap_err();
        assert!(
            e.starts_with("config ") && e.ends_with(": bundle.max_depth must be greater than 0"),
            "{e}"
        );
        let e = parse("[bundle]\nmax_depth = 100000\n").unwrap_err();
        assert!(
            e.ends_with(": bundle.max_depth 100000 exceeds the ceiling of 256"),
            "{e}"
        );
        let e = parse("[bundle]\nmax_files = 3\n").unwrap_err();
        assert!(e.contains("unknown field `max_files`"), "{e}");
    }

    #[test]
    fn bad_files_name_the_key() {
        assert!(
            parse("[limits]\nfuell = 7\n")
                .unwrap_err()
                .contains("fuell")
        );
        assert!(
            parse("[limits]\nfuel = 0\n")
                .unwrap_err()
                .contains("limits.fuel")
        );
        assert!(
            parse("[limits]\nmemory_bytes = 8589934592\n")
                .unwrap_err()
                .contains("4 GiB")
        );
        let e = parse("max_instances = \"x\"").unwrap_err();
        assert!(
            e.contains("max_instances") && e.contains("invalid type"),
            "{e}"
        );
        let e = parse("[output]\nprobability_sum_tolerance = 0.7\n").unwrap_err();
        assert!(
            e.ends_with("output.probability_sum_tolerance 0.7 must be at least 0 and below 0.5"),
            "{e}"
        );
    }

    #[test]
    fn the_long_running_keys_reach_the_sandbox_and_are_checked() {
        let c = parse(
            "queue_timeout_ms = 0\nmax_queued_calls = 3\nmax_loaded_plugins = 2\nsession_max_calls = 5\nsession_max_idle_ms = 70\n",
        )
        .unwrap();
        let s = c.sandbox_config();
        assert_eq!(s.queue_timeout, Duration::ZERO);
        assert_eq!(s.max_queued_calls, 3);
        assert_eq!(s.max_loaded_plugins, 2);
        assert_eq!(s.session_max_calls, 5);
        assert_eq!(s.session_max_idle, Duration::from_millis(70));
        let d = HostConfig::default().sandbox_config();
        assert_eq!(d.queue_timeout, Duration::from_millis(5_000));
        assert_eq!(d.max_loaded_plugins, 64);
        let e = parse("max_loaded_plugins = 0\n").unwrap_err();
        assert!(
            e.ends_with(": max_loaded_plugins must be greater than 0"),
            "{e}"
        );
        let e = parse("session_max_calls = 0\n").unwrap_err();
        assert!(
            e.ends_with(": session_max_calls must be greater than 0"),
            "{e}"
        );
        let e = parse("max_instances = 1\n").unwrap_err();
        assert!(
            e.ends_with(": max_instances 1 must be at least 2 (a validator and the candidate it probes each need an instance)"),
            "{e}"
        );
        let e = parse("max_queued_calls = -1\n").unwrap_err();
        assert!(e.contains("max_queued_calls"), "{e}");
    }

    #[test]
    fn the_data_section_sets_dataset_caps_and_names_bad_keys() {
        let c = parse("[data]\nmax_rows = 5\n").unwrap();
        assert_eq!(c.data.max_rows, 5);
        assert_eq!(c.data.max_cells, DataCaps::default().max_cells);
        assert_eq!(HostConfig::default().data, DataCaps::default());
        let e = parse("[data]\nmax_cells = 0\n").unwrap_err();
        assert!(
            e.ends_with(": data.max_cells must be greater than 0"),
            "{e}"
        );
        let e = parse("[data]\nmax_colums = 5\n").unwrap_err();
        assert!(e.contains("unknown field `max_colums`"), "{e}");
    }

    #[test]
    fn the_server_section_is_read_checked_and_resolved_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("airlock.toml");
        std::fs::write(
            &f,
            "[server]\ndata_dir = \"data\"\nlisten = \"127.0.0.1:9000\"\nworkers = 3\ntrust_root = [\"root.pub\", \"/abs/other.pub\"]\n",
        )
        .unwrap();
        let c = HostConfig::load(&f).unwrap();
        assert_eq!(c.server.data_dir, Some(dir.path().join("data")));
        assert_eq!(c.server.listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(c.server.workers, Some(3));
        assert_eq!(
            c.server.trust_root,
            Some(vec![
                dir.path().join("root.pub"),
                PathBuf::from("/abs/other.pub")
            ])
        );
        assert_eq!(c.server.queue_depth, None);
        assert_eq!(HostConfig::default().server, ServerSection::default());
        let e = parse("[server]\nworkers = 0\n").unwrap_err();
        assert!(
            e.ends_with(": server.workers must be greater than 0"),
            "{e}"
        );
        let e = parse("[server]\nqueue_depth = 0\n").unwrap_err();
        assert!(
            e.ends_with(": server.queue_depth must be greater than 0"),
            "{e}"
        );
        let e = parse("[server]\nmax_upload_bytes = 0\n").unwrap_err();
        assert!(
            e.ends_with(": server.max_upload_bytes must be greater than 0"),
            "{e}"
        );
        let e = parse("[server]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(e.contains("listen"), "{e}");
        let e = parse("[server]\nworker = 2\n").unwrap_err();
        assert!(e.contains("unknown field `worker`"), "{e}");
    }

    #[test]
    fn component_caps_are_read_and_checked_by_key() {
        let c = parse("[component]\nmax_locals_per_function = 500\n").unwrap();
        assert_eq!(
            c.sandbox_config().component_caps.max_locals_per_function,
            500
        );
        assert_eq!(
            c.component.max_functions,
            ComponentCaps::default().max_functions
        );
        let e = parse("[component]\nmax_functions = 0\n").unwrap_err();
        assert!(
            e.ends_with(": component.max_functions must be greater than 0"),
            "{e}"
        );
        let e = parse("[component]\nmax_locals = 5\n").unwrap_err();
        assert!(e.contains("unknown field `max_locals`"), "{e}");
    }
}
