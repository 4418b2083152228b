//! Per-call resource limits and how a plugin's manifest may tighten them.
//!
//! The operator's configuration sets ceilings; a plugin (or a gate step) can
//! ask for *less* of anything but never more, so a plugin author cannot
//! widen the sandbox by editing their own manifest. Kept free of I/O so the
//! rule is tested directly.

use serde::{Deserialize, Serialize};

/// The limits applied to one plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel (roughly, Wasm instructions) per call.
    pub fuel: u64,
    /// Wall-clock deadline per call, in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes: u64,
    /// Table elements cap per table.
    pub table_elements: u64,
    /// Cap on the encoded size of the input handed to the plugin.
    pub max_input_bytes: u64,
    /// Cap on the encoded size of the plugin's result.
    pub max_output_bytes: u64,
    /// Cap on captured stdout and on captured stderr (each); beyond it
    /// output is dropped and the log is marked truncated.
    pub max_log_bytes: u64,
    /// Cap on bytes the host allocates for one guest-to-host call (WASI
    /// arguments, random bytes) and on live WASI resources.
    pub max_host_alloc_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 2_000_000_000,
            timeout_ms: 10_000,
            memory_bytes: 256 << 20,
            table_elements: 100_000,
            max_input_bytes: 64 << 20,
            max_output_bytes: 16 << 20,
            max_log_bytes: 64 << 10,
            max_host_alloc_bytes: 16 << 20,
        }
    }
}

/// A request to lower some limits (from a plugin manifest, a gate step or
/// the command line); `None` keeps the ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRequest {
    /// See [`Limits::fuel`].
    pub fuel: Option<u64>,
    /// See [`Limits::timeout_ms`].
    pub timeout_ms: Option<u64>,
    /// See [`Limits::memory_bytes`].
    pub memory_bytes: Option<u64>,
    /// See [`Limits::table_elements`].
    pub table_elements: Option<u64>,
    /// See [`Limits::max_input_bytes`].
    pub max_input_bytes: Option<u64>,
    /// See [`Limits::max_output_bytes`].
    pub max_output_bytes: Option<u64>,
    /// See [`Limits::max_log_bytes`].
    pub max_log_bytes: Option<u64>,
    /// See [`Limits::max_host_alloc_bytes`].
    pub max_host_alloc_bytes: Option<u64>,
}

impl Limits {
    /// The limits after applying `req`: each requested value is honoured only
    /// when it is lower than the ceiling; a higher request keeps the ceiling.
    pub fn lowered_by(self, req: &LimitRequest) -> Limits {
        fn low(ceiling: u64, asked: Option<u64>) -> u64 {
            asked.map_or(ceiling, |a| a.min(ceiling))
        }
        Limits {
            fuel: low(self.fuel, req.fuel),
            timeout_ms: low(self.timeout_ms, req.timeout_ms),
            memory_bytes: low(self.memory_bytes, req.memory_bytes),
            table_elements: low(self.table_elements, req.table_elements),
            max_input_bytes: low(self.max_input_bytes, req.max_input_bytes),
            max_output_bytes: low(self.max_output_bytes, req.max_output_bytes),
            max_log_bytes: low(self.max_log_bytes, req.max_log_bytes),
            max_host_alloc_bytes: low(self.max_host_alloc_bytes, req.max_host_alloc_bytes),
        }
    }

    /// The requests in `req` that asked for more than the ceiling, by field
    /// name, so a report can say what was not granted.
    pub fn refused_raises(self, req: &LimitRequest) -> Vec<&'static str> {
        let pairs = [
            ("fuel", self.fuel, req.fuel),
            ("timeout_ms", self.timeout_ms, req.timeout_ms),
            ("memory_bytes", self.memory_bytes, req.memory_bytes),
            ("table_elements", self.table_elements, req.table_elements),
            ("max_input_bytes", self.max_input_bytes, req.max_input_bytes),
            (
                "max_output_bytes",
                self.max_output_bytes,
                req.max_output_bytes,
            ),
            ("max_log_bytes", self.max_log_bytes, req.max_log_bytes),
            (
                "max_host_alloc_bytes",
                self.max_host_alloc_bytes,
                req.max_host_alloc_bytes,
            ),
        ];
        pairs
            .into_iter()
            .filter(|(_, ceiling, asked)| asked.is_some_and(|a| a > *ceiling))
            .map(|(name, _, _)| name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_can_lower_but_not_raise() {
        let ceiling = Limits::default();
        let req = LimitRequest {
            fuel: Some(10),
            memory_bytes: Some(u64::MAX),
            ..LimitRequest::default()
        };
        let got = ceiling.lowered_by(&req);
        assert_eq!(got.fuel, 10);
        assert_eq!(got.memory_bytes, ceiling.memory_bytes);
        assert_eq!(got.timeout_ms, ceiling.timeout_ms);
        assert_eq!(ceiling.refused_raises(&req), vec!["memory_bytes"]);
    }

    #[test]
    fn empty_request_keeps_ceilings() {
        let c = Limits::default();
        assert_eq!(c.lowered_by(&LimitRequest::default()), c);
        assert!(c.refused_raises(&LimitRequest::default()).is_empty());
    }

    #[test]
    fn unknown_limit_names_are_rejected() {
        let e = toml::from_str::<LimitRequest>("fule = 3").unwrap_err();
        assert!(e.to_string().contains("fule"), "{e}");
    }
}
