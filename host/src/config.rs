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
//! [bundle]                    # caps on model bundles, checked before reading
//! max_total_bytes = 2_147_483_648
//! max_entries = 10_000
//! max_depth = 16
//! ```

use crate::bundle::BundleCaps;
use crate::limits::Limits;
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
    /// Caps on model bundles (`[bundle]`).
    pub bundle: BundleCaps,
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
            bundle: s.bundle_caps,
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
            ("bundle.max_entries", self.bundle.max_entries),
            ("bundle.max_depth", u64::from(self.bundle.max_depth)),
        ] {
            if v == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.bundle.max_depth > crate::bundle::MAX_DEPTH_CEILING {
            return Err(format!(
                "bundle.max_depth {} exceeds the ceiling of {}",
                self.bundle.max_depth,
                crate::bundle::MAX_DEPTH_CEILING
            ));
        }
        if l.memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "limits.memory_bytes {} exceeds the 4 GiB a 32-bit Wasm memory can address",
                l.memory_bytes
            ));
        }
        Ok(())
    }

    /// The sandbox setup this configuration describes.
    pub fn sandbox_config(&self) -> SandboxConfig {
        SandboxConfig {
            limits: self.limits,
            cache_dir: self.cache_dir.clone(),
            max_instances: self.max_instances,
            epoch_tick: Duration::from_millis(self.epoch_tick_ms),
            pooling: self.pooling,
            bundle_caps: self.bundle,
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
        assert!(parse("max_instances = \"x\"").is_err());
    }
}
