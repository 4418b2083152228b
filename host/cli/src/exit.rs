//! The one place where errors become exit codes and stderr lines.
//!
//! The same failure gives the same code in every command:
//!
//! * `0` — success; the gate passed.
//! * `1` — the candidate was judged and refused, or a model failed while
//!   running (trap, fuel, timeout, memory, its own error, or output that
//!   breaks its declared contract), in `plugin run` as in `gate run`; or
//!   an audit log failed verification (`audit verify`: an entry was
//!   edited, deleted, inserted or moved, or the recorded head is missing).
//! * `2` — the input was wrong: a malformed component, the wrong world, a
//!   disallowed import, a broken gate file, a step whose configuration its
//!   validator refuses (bad key, missing label), a broken baseline, a CSV
//!   with missing columns or non-numeric values, an unreadable file, a
//!   failed build, an audit log that cannot be read, a malformed `--head`.
//! * `3` — the host was at capacity (`busy`) and could not finish: nothing
//!   was judged; retry later.

use airlock_gate::GateError;
use airlock_runtime::error::{FailureKind, PluginFailure, SandboxError};

/// A command's failure.
#[derive(Debug)]
pub enum CliError {
    /// Bad input; the message names the problem.
    Input(String),
    /// A plugin failed while running.
    Plugin(PluginFailure),
    /// The gate ran and refused the candidate (the report was printed).
    GateRefused,
    /// The host was at capacity; nothing was judged.
    Busy(String),
    /// An audit log failed verification; the message names the first bad
    /// entry.
    Tampered(String),
}

impl CliError {
    /// An input error with `message`.
    pub fn input(message: impl Into<String>) -> Self {
        CliError::Input(message.into())
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 2,
            CliError::Busy(_) => 3,
            CliError::Plugin(_) | CliError::GateRefused | CliError::Tampered(_) => 1,
        }
    }

    /// Writes the one-line message to stderr (nothing for a refused gate,
    /// whose report already says why).
    pub fn print(&self) {
        match self {
            CliError::Input(m) => eprintln!("error: {}", one_line(m)),
            CliError::Plugin(f) => eprintln!("error: plugin failed: {}", one_line(&f.to_string())),
            CliError::Busy(m) | CliError::Tampered(m) => eprintln!("error: {}", one_line(m)),
            CliError::GateRefused => {}
        }
    }
}

/// `s` on one line: runs of whitespace (newlines included) become one space
/// (shared with the typed errors of core that quote parser messages).
pub(crate) use airlock_core::error::one_line;

impl From<SandboxError> for CliError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::Plugin(f) if f.kind == FailureKind::Busy => CliError::Busy(format!(
                "the host was busy ({}); nothing was judged, retry later",
                f.message
            )),
            SandboxError::Plugin(f)
                if !matches!(
                    f.kind,
                    FailureKind::InvalidComponent | FailureKind::DisallowedImport
                ) =>
            {
                CliError::Plugin(f)
            }
            other => CliError::Input(other.to_string()),
        }
    }
}

impl From<GateError> for CliError {
    fn from(e: GateError) -> Self {
        match e {
            GateError::Busy(_) => CliError::Busy(e.to_string()),
            other => CliError::Input(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(CliError::input("x").exit_code(), 2);
        assert_eq!(CliError::GateRefused.exit_code(), 1);
        let f = PluginFailure::new(FailureKind::FuelExhausted, "out");
        assert_eq!(CliError::from(SandboxError::Plugin(f)).exit_code(), 1);
        let f = PluginFailure::new(FailureKind::DisallowedImport, "evil");
        assert_eq!(CliError::from(SandboxError::Plugin(f)).exit_code(), 2);
        assert_eq!(one_line("a\n b"), "a b");
        let f = PluginFailure::new(FailureKind::Busy, "all 2 instance slots taken");
        assert_eq!(CliError::from(SandboxError::Plugin(f)).exit_code(), 3);
        assert_eq!(CliError::from(GateError::Busy("x".into())).exit_code(), 3);
        assert_eq!(CliError::Tampered("line 2".into()).exit_code(), 1);
    }
}
