//! The server's JSON as people read it: unix times as dates, tagged
//! states (`{"aborted": {"reason": ...}}`) as `aborted: ...`, and nested
//! documents (a policy, provenance, an analysis) as indented `key: value`
//! lines. `--json` prints the machine form instead; everything here is
//! escaped like every other line the CLI prints.

use crate::terminal::escape_untrusted as esc;
use serde_json::Value;

/// A unix time (seconds) as an RFC 3339 UTC date; anything else as text,
/// "-" when absent.
pub(crate) fn unix_time(v: &Value) -> String {
    match v.as_u64() {
        Some(secs) => airlock_audit::format_unix(secs, 0).replace(".000000Z", "Z"),
        None => scalar(v),
    }
}

/// A scalar as text ("-" when absent or empty), escaped.
pub(crate) fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// A state serialised as serde's externally tagged enum: `"progressing"`,
/// `{"paused": {"reason": "..."}}`, `{"fail": {"reasons": [..]}}`, as
/// `paused: ...` or `fail: a; b`.
pub(crate) fn tagged(v: &Value) -> String {
    match v {
        Value::Object(m) if m.len() == 1 => {
            let (tag, inner) = m.iter().next().expect("one entry");
            let detail = match inner {
                Value::Object(f) if f.len() == 1 => match f.values().next().expect("one field") {
                    Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join("; "),
                    other => scalar(other),
                },
                Value::Null => String::new(),
                other => inline(other),
            };
            if detail.is_empty() {
                esc(tag)
            } else {
                format!("{}: {detail}", esc(tag))
            }
        }
        other => inline(other),
    }
}

/// A value on one line: scalars as text, arrays of scalars comma-separated,
/// objects as `key value` pairs.
pub(crate) fn inline(v: &Value) -> String {
    match v {
        Value::Array(a) => a.iter().map(inline).collect::<Vec<_>>().join(", "),
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{} {}", esc(k), inline(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => scalar(other),
    }
}

/// `v` as indented `key: value` lines: nested objects indent, arrays of
/// scalars stay on their key's line, absent values and empty containers
/// are left out.
pub(crate) fn lines(v: &Value, indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::Null => {}
                    Value::Object(o) if o.is_empty() => {}
                    Value::Array(a) if a.is_empty() => {}
                    Value::Object(_) => {
                        out.push(format!("{pad}{}:", esc(k)));
                        out.extend(lines(v, indent + 2));
                    }
                    Value::Array(a) if a.iter().any(|x| x.is_object()) => {
                        out.push(format!("{pad}{}:", esc(k)));
                        for x in a {
                            let inner = lines(x, indent + 4);
                            for (i, l) in inner.into_iter().enumerate() {
                                if i == 0 {
                                    out.push(format!("{pad}  - {}", l.trim_start()));
                                } else {
                                    out.push(l);
                                }
                            }
                        }
                    }
                    other => out.push(format!("{pad}{}: {}", esc(k), inline(other))),
                }
            }
        }
        other => out.push(format!("{pad}{}", inline(other))),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_times_and_documents_read_as_text() {
        assert_eq!(tagged(&json!("progressing")), "progressing");
        assert_eq!(
            tagged(&json!({ "aborted": { "reason": "accuracy 0.5 under limit 0.9" } })),
            "aborted: accuracy 0.5 under limit 0.9"
        );
        assert_eq!(
            tagged(&json!({ "fail": { "reasons": ["a", "b"] } })),
            "fail: a; b"
        );
        assert_eq!(unix_time(&json!(1_748_779_199)), "2025-06-01T11:59:59Z");
        assert_eq!(unix_time(&Value::Null), "-");
        let doc = json!({
            "steps": [10, 50, 100],
            "thresholds": { "min_accuracy": 0.9, "max_p99_ms": null },
            "monitors": [],
            "webhooks": [{ "url": "https://x", "events": ["rollback"] }],
            "note": "a\u{1b}[2Kb",
        });
        let text = lines(&doc, 0).join("\n");
        assert_eq!(
            text,
            "note: a\\u{1b}[2Kb\nsteps: 10, 50, 100\nthresholds:\n  min_accuracy: 0.9\nwebhooks:\n  - events: rollback\n    url: https://x"
        );
    }
}
