//! The operator's configuration: the limit ceilings every plugin call runs
//! under and how the sandbox is set up. Embedded defaults apply when no file
//! is given; a file only needs the keys it changes.
//!
//! ```toml
//! cache_dir = "/var/cache/airlock"
//! max_instances = 32          # live instances with the pooling allocator
//! epoch_tick_ms = 2           # deadline resolution
//! [limits]
//! fuel = 1_000_000_000
//! timeout_ms = 5_000
//! memory_bytes = 134_217_728
//! [component]                 # what a component may ask the compiler to do
//! max_function_body_bytes = 262_144
//! ```

use crate::limits::Limits;
use crate::precheck::ComponentCaps;
use crate::sandbox::SandboxConfig;
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
    /// Live instances the pooling allocator holds room for.
    pub max_instances: u32,
    /// Epoch tick in milliseconds (the deadline's resolution).
    pub epoch_tick_ms: u64,
    /// Use the pooling allocator.
    pub pooling: bool,
    /// Caps checked on a component before it is compiled.
    pub component: ComponentCaps,
}

impl Default for HostConfig {
    fn default() -> Self {
        let s = SandboxConfig::default();
        HostConfig {
            limits: s.limits,
            cache_dir: None,
            max_instances: 16,
            epoch_tick_ms: s.epoch_tick.as_millis() as u64,
            pooling: s.pooling,
            component: s.component_caps,
        }
    }
}

/// Largest linear memory a 32-bit Wasm memory can have.
const MAX_MEMORY_BYTES: u64 = 4 << 30;

impl HostConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<HostConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        let cfg: HostConfig = toml::from_str(&text).map_err(|e| {
            format!(
                "config {}: {}",
                path.display(),
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })?;
        cfg.check()
            .map_err(|e| format!("config {}: {e}", path.display()))?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        let l = &self.limits;
        for (name, v) in [
            ("limits.fuel", l.fuel),
            ("limits.timeout_ms", l.timeout_ms),
            ("limits.memory_bytes", l.memory_bytes),
            ("limits.max_output_bytes", l.max_output_bytes),
            ("limits.max_input_bytes", l.max_input_bytes),
            ("epoch_tick_ms", self.epoch_tick_ms),
            ("max_instances", u64::from(self.max_instances)),
        ] {
            if v == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if l.memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "limits.memory_bytes {} exceeds the 4 GiB a 32-bit Wasm memory can address",
                l.memory_bytes
            ));
        }
        self.component.check()
    }

    /// The sandbox setup this configuration describes.
    pub fn sandbox_config(&self) -> SandboxConfig {
        SandboxConfig {
            limits: self.limits,
            cache_dir: self.cache_dir.clone(),
            max_instances: self.max_instances,
            epoch_tick: Duration::from_millis(self.epoch_tick_ms),
            pooling: self.pooling,
            component_caps: self.component,
            ..SandboxConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostConfig, String> {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        HostConfig::load(f.path())
    }

    #[test]
    fn partial_files_keep_the_other_defaults() {
        let c = parse("[limits]\nfuel = 7\n").unwrap();
        assert_eq!(c.limits.fuel, 7);
        assert_eq!(c.limits.timeout_ms, Limits::default().timeout_ms);
        assert_eq!(c.sandbox_config().limits.fuel, 7);
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
        assert!(parse("max_instances = \"x\"").is_err());
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
