//! `airlock audit verify`: checks an audit log file offline, as a security
//! reviewer would, without opening it for append (nothing is repaired or
//! changed).
//!
//! Exit 0: the log is an intact chain (and holds `--head`, if given);
//! exit 1: it is not, and the message names the first bad line and seq and
//! what is wrong; exit 2: the file cannot be read or `--head` is malformed.
//! On success the head is printed as `SEQ:HASH`, ready to record and pass
//! back as `--head` next time.

use crate::exit::CliError;
use airlock_audit::chain::parse_checkpoint;
use airlock_audit::verify_file;
use serde_json::json;
use std::path::Path;

/// Runs `audit verify`.
pub(crate) fn verify(file: &Path, head: Option<&str>, json: bool) -> Result<(), CliError> {
    let checkpoint = match head {
        Some(h) => Some(parse_checkpoint(h).ok_or_else(|| {
            CliError::input(format!(
                "--head {h:?} is not HASH or SEQ:HASH (64 lower-case hex digits)"
            ))
        })?),
        None => None,
    };
    match verify_file(file, checkpoint) {
        Ok(summary) => {
            if json {
                out!(
                    "{}",
                    crate::terminal::json(&json!({
                        "intact": true,
                        "file": file.display().to_string(),
                        "summary": summary,
                    }))
                );
            } else {
                match &summary.chain.head {
                    Some(h) => out!(
                        "intact: {}: {} entries, head {}:{}",
                        file.display(),
                        summary.chain.entries,
                        h.seq,
                        h.hash
                    ),
                    None => out!("intact: {}: no entries", file.display()),
                }
                if let Some(cp) = &summary.chain.checkpoint {
                    out!("contains the recorded head {cp}");
                }
            }
            for w in &summary.chain.warnings {
                eprintln!("warning: {w}");
            }
            if let Some(bytes) = summary.incomplete_tail_bytes {
                eprintln!(
                    "warning: the last line is an incomplete write of {bytes} bytes (an append cut short by a crash): it is not an entry, and the next open for append removes it"
                );
            }
            Ok(())
        }
        Err(e) if e.is_tampering() => {
            if json {
                out!(
                    "{}",
                    crate::terminal::json(&json!({
                        "intact": false,
                        "file": file.display().to_string(),
                        "line": e.line(),
                        "seq": e.seq(),
                        "kind": e.kind(),
                        "error": e.to_string(),
                    }))
                );
            }
            Err(CliError::Tampered(format!("audit log not intact: {e}")))
        }
        // Unreadable: missing, not a regular file, an I/O error.
        Err(e) => Err(CliError::input(e.to_string())),
    }
}
