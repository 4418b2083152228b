//! Text bound for the operator's terminal. Plugins (a model's metadata,
//! its errors, a validator's findings) and servers write text the CLI
//! prints; none of it may drive the terminal. Every output path goes
//! through here or through [`escape_untrusted`]: one-line errors, text
//! reports, tables and `--json` documents alike.

pub(crate) use airlock_core::gate::report::escape_untrusted;
use serde::Serialize;

/// Whether `c` could move the cursor, rewrite a line, reorder what is
/// displayed (bidirectional overrides and isolates, zero-width marks) or
/// otherwise act on a terminal rather than show as itself.
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` on one line (runs of whitespace collapsed) with every other unsafe
/// character written as a visible escape: what a one-line error prints.
pub(crate) fn line(s: &str) -> String {
    escape_untrusted(&crate::exit::one_line(s))
}

/// `v` as pretty JSON in which every unsafe character inside a string is a
/// `\uXXXX` escape. serde_json escapes only U+0000..U+001F; DEL, the C1
/// controls and the bidirectional overrides would reach the terminal raw.
/// The document means the same to any JSON reader.
pub(crate) fn json(v: &impl Serialize) -> String {
    let raw = serde_json::to_string_pretty(v).expect("JSON values serialize");
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        // Outside strings a pretty document holds only ASCII punctuation,
        // spaces and newlines; inside them serde_json already escaped
        // newlines. So every unsafe character here is inside a string.
        if c != '\n' && is_unsafe(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_what_serde_leaves_raw_and_means_the_same() {
        let v = serde_json::json!({ "name": "a\u{1b}[31m\u{202e}b\u{7f}\u{85}\u{2067}c", "n": 1 });
        let s = json(&v);
        assert!(!s.chars().any(|c| c != '\n' && is_unsafe(c)), "{s}");
        assert!(
            s.contains("\\u202e") && s.contains("\\u007f") && s.contains("\\u0085"),
            "{s}"
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn line_is_one_line_with_visible_escapes() {
        assert_eq!(line("a\n\x1b[2Kb\u{202e}"), "a \\u{1b}[2Kb\\u{202e}");
    }
}
