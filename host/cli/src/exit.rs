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
//!
//! Against a server (`airlock submit`, `promote`, ...), the answer's HTTP
//! status decides, with the server's message printed as is:
//!
//! * `1` — the server understood the request and refused it: a rule (422:
//!   a promotion without its approvals or a passing run, an untrusted
//!   signature, an invalid gate), a conflict with what is stored (409: a
//!   version number reused for other bytes), or a role that may not (403);
//!   also a gate run that `--wait` saw refused, fail or get cancelled.
//! * `2` — the request itself was wrong (400, 401, 404, 413, ...), the
//!   server failed (5xx), or it could not be reached (the message names
//!   the URL).
//! * `3` — the server was busy (503: the gate-run queue is full, or it is
//!   shutting down); retry later.

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
    /// A server answered with an error status; its code decides the exit
    /// code (see the module doc).
    Server {
        /// The HTTP status.
        status: u16,
        /// The server's stable error code (`conflict`, `promotion_refused`, ...).
        code: String,
        /// The server's message, which names the problem.
        message: String,
    },
    /// A gate run ended without passing (refused, error, cancelled,
    /// interrupted); the verdict was printed.
    RunNotPassed,
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
            CliError::Plugin(_)
            | CliError::GateRefused
            | CliError::Tampered(_)
            | CliError::RunNotPassed => 1,
            CliError::Server { status, .. } => match status {
                503 => 3,
                403 | 409 | 422 => 1,
                _ => 2,
            },
        }
    }

    /// Writes the one-line message to stderr (nothing for a refused gate,
    /// whose report already says why). Every message may quote a plugin
    /// (its metadata, its error, `init`'s error) or a server: it is
    /// escaped, so none of it reaches the terminal as control characters.
    pub fn print(&self) {
        if let Some(line) = self.line() {
            eprintln!("{line}");
        }
    }

    /// The one line [`print`](Self::print) writes, escaped.
    pub fn line(&self) -> Option<String> {
        let safe = crate::terminal::line;
        Some(match self {
            CliError::Input(m) => format!("error: {}", safe(m)),
            CliError::Plugin(f) => format!("error: plugin failed: {}", safe(&f.to_string())),
            CliError::Busy(m) | CliError::Tampered(m) => format!("error: {}", safe(m)),
            CliError::Server {
                status,
                code,
                message,
            } => format!("error: server: {} ({status} {})", safe(message), safe(code)),
            CliError::GateRefused | CliError::RunNotPassed => return None,
        })
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
        let server = |status| CliError::Server {
            status,
            code: "x".into(),
            message: "y".into(),
        };
        for (status, code) in [
            (422, 1),
            (409, 1),
            (403, 1),
            (400, 2),
            (401, 2),
            (404, 2),
            (413, 2),
            (500, 2),
            (503, 3),
        ] {
            assert_eq!(server(status).exit_code(), code, "status {status}");
        }
        assert_eq!(CliError::RunNotPassed.exit_code(), 1);
    }

    #[test]
    fn every_printed_error_escapes_plugin_text() {
        let hostile = "x\u{1b}]0;owned\u{7}\u{202e}y\nz";
        for e in [
            CliError::input(hostile),
            CliError::Plugin(PluginFailure::new(FailureKind::GuestError, hostile)),
            CliError::Busy(hostile.into()),
            CliError::Tampered(hostile.into()),
            CliError::Server {
                status: 422,
                code: hostile.into(),
                message: hostile.into(),
            },
        ] {
            let line = e.line().unwrap();
            assert!(!line.chars().any(crate::terminal::is_unsafe), "{line:?}");
            assert!(
                line.contains("x\\u{1b}]0;owned\\u{7}\\u{202e}y z"),
                "{line}"
            );
        }
    }
}
