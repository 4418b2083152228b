//! Typed failures of plugin calls and of loading plugins.
//!
//! The kinds live in `airlock-core` because reports, exit codes and the
//! runtime all name them; the runtime's own `SandboxError` wraps them.
//!
//! Every way a plugin can fail has a stable, machine-readable kind (the
//! strings below are part of the CLI's `--json` contract and of reports),
//! so that operators and scripts can tell "the model ran out of fuel" from
//! "the model said the input was wrong" without parsing messages.

use std::fmt;

/// The kind of a plugin failure; [`FailureKind::as_str`] is the stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The call used all of its fuel (instruction budget).
    FuelExhausted,
    /// The call ran past its wall-clock deadline.
    Timeout,
    /// The plugin tried to grow memory or tables past its cap.
    MemoryLimit,
    /// The plugin's call stack overflowed.
    StackOverflow,
    /// Any other trap (unreachable, panic, out-of-bounds access, ...).
    Trap,
    /// The plugin returned its own error value.
    GuestError,
    /// The component imports an interface it was not granted.
    DisallowedImport,
    /// The bytes are not a valid component, or not of the expected world.
    InvalidComponent,
    /// The plugin's result exceeded the output size cap.
    OutputTooLarge,
    /// The input handed to the plugin exceeded the input size cap.
    InputTooLarge,
    /// A model broke its own declared contract: malformed metadata, or
    /// predictions of the wrong shape, non-finite or unnormalised
    /// probabilities, or answers that contradict its earlier answers for
    /// the same rows.
    InvalidOutput,
    /// Not the plugin's fault: the host was at capacity (every instance
    /// slot stayed taken for the whole queue timeout, or the queue of
    /// waiting calls was full); retry later.
    Busy,
}

impl FailureKind {
    /// The stable snake_case name, e.g. `fuel_exhausted`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::FuelExhausted => "fuel_exhausted",
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::StackOverflow => "stack_overflow",
            FailureKind::Trap => "trap",
            FailureKind::GuestError => "guest_error",
            FailureKind::DisallowedImport => "disallowed_import",
            FailureKind::InvalidComponent => "invalid_component",
            FailureKind::OutputTooLarge => "output_too_large",
            FailureKind::InputTooLarge => "input_too_large",
            FailureKind::InvalidOutput => "invalid_output",
            FailureKind::Busy => "busy",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin call failed; the host is unaffected and the next call starts
/// clean. Every kind but [`FailureKind::Busy`] (the host's own capacity)
/// is something the plugin did or was refused for.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize)]
#[error("{kind}: {message}")]
pub struct PluginFailure {
    /// What went wrong.
    pub kind: FailureKind,
    /// Details for people: the trap message, the guest's error, the import.
    pub message: String,
    /// For `guest_error`, the plugin's own error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_code: Option<String>,
    /// The tail of what the plugin wrote to stderr (panic messages land here).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// Fuel consumed before the failure.
    pub fuel_used: u64,
    /// Of `fuel_used`, what candidate calls made by a validator consumed.
    #[serde(skip_serializing_if = "is_zero")]
    pub candidate_fuel_used: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PluginFailure {
    /// A failure of `kind` with `message` and no further context.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        PluginFailure {
            kind,
            message: message.into(),
            guest_code: None,
            stderr: String::new(),
            fuel_used: 0,
            candidate_fuel_used: 0,
        }
    }
}

/// `text` on one line: runs of whitespace (newlines included) become one
/// space. Parser errors (TOML's, with its caret diagram) span several
/// lines; the errors that quote them are printed as one line by the CLI
/// and embedded in reports, so they flatten them through here.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An operator's cap set to zero. Every cap bounds something a plugin or
/// an input may use; zero would refuse everything, which is never what an
/// operator means, so configuration checks refuse it and name the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{key} must be greater than 0")]
pub struct ZeroCap {
    /// The configuration key, dotted (`component.max_functions`).
    pub key: &'static str,
}
