//! The client commands: each one request (or a few), its answer printed
//! as a table or lines for people, or as the server's JSON with `--json`.
//! Everything the server says is escaped before it reaches a terminal.
//! Submitting is in [`super::submit`], re-exported here with the rest.

use super::{Client, seg};
use crate::args::Remote;
use crate::exit::CliError;
use airlock_core::gate::report::escape_untrusted as esc;
use serde_json::{Value, json};
use std::path::Path;

// Split by concern; re-exported so that callers name every client command
// through this module.
pub(crate) use super::admin::*;
pub(crate) use super::runs::*;
pub(crate) use super::submit::*;

/// Prints `v` as pretty JSON.
pub(crate) fn print_json(v: &Value) {
    out!("{}", crate::terminal::json(v));
}

/// A JSON field as display text ("-" when absent), escaped.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// Prints rows under headers, columns padded to their widest cell.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, (c, &w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        out!("{}", s.trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// A short form of a digest for tables.
fn short(v: &Value) -> String {
    match v.as_str() {
        Some(d) if d.starts_with("sha256:") && d.len() > 19 => esc(&d[..19]),
        _ => text(v),
    }
}

/// `airlock models`.
pub(crate) fn models(remote: &Remote) -> Result<(), CliError> {
    let items = Client::new(remote)?.get_all("/v1/models")?;
    if remote.json {
        print_json(&json!({ "items": items }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|m| {
            vec![
                text(&m["name"]),
                text(&m["gate"]),
                text(&m["approvals_required"]),
                text(&m["created_at"]),
                text(&m["description"]),
            ]
        })
        .collect();
    table(
        &["NAME", "GATE", "APPROVALS", "CREATED", "DESCRIPTION"],
        &rows,
    );
    Ok(())
}

/// `airlock versions`.
pub(crate) fn versions(remote: &Remote, name: &str) -> Result<(), CliError> {
    let items = Client::new(remote)?.get_all(&format!("/v1/models/{}/versions", seg(name)))?;
    if remote.json {
        print_json(&json!({ "items": items }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|v| {
            vec![
                text(&v["version"]),
                short(&v["plugin"]),
                short(&v["bundle_digest"]),
                text(&v["submitter"]),
                text(&v["created_at"]),
            ]
        })
        .collect();
    table(
        &["VERSION", "PLUGIN", "BUNDLE", "SUBMITTER", "CREATED"],
        &rows,
    );
    Ok(())
}

/// `airlock show NAME[@VERSION]`.
pub(crate) fn show(remote: &Remote, target: &str) -> Result<(), CliError> {
    let c = Client::new(remote)?;
    let Some((name, version)) = target.split_once('@') else {
        let v = c.get(&format!("/v1/models/{}", seg(target)), &[])?;
        if remote.json {
            print_json(&v);
            return Ok(());
        }
        let m = &v["model"];
        out!("model:       {}", text(&m["name"]));
        out!("gate:        {}", text(&m["gate"]));
        out!(
            "approvals:   {} required for a promotion",
            text(&m["approvals_required"])
        );
        out!("description: {}", text(&m["description"]));
        out!(
            "created:     {} by {}",
            text(&m["created_at"]),
            text(&m["created_by"])
        );
        let aliases = v["aliases"].as_object().cloned().unwrap_or_default();
        if aliases.is_empty() {
            out!("aliases:     none");
        } else {
            out!("aliases:");
            for (alias, a) in &aliases {
                out!(
                    "  {} -> {} (since {}, by {})",
                    esc(alias),
                    text(&a["version"]),
                    text(&a["updated_at"]),
                    text(&a["updated_by"])
                );
            }
        }
        return Ok(());
    };
    if name.is_empty() || version.is_empty() {
        return Err(CliError::input(format!(
            "{target:?} is not NAME or NAME@VERSION"
        )));
    }
    let v = c.get(
        &format!("/v1/models/{}/versions/{}", seg(name), seg(version)),
        &[],
    )?;
    if remote.json {
        print_json(&v);
        return Ok(());
    }
    let ver = &v["version"];
    out!("model:     {}", text(&ver["model"]));
    out!("version:   {}", text(&ver["version"]));
    out!("plugin:    {}", text(&ver["plugin"]));
    out!("bundle:    {}", text(&ver["bundle_digest"]));
    if !ver["bundle_signer"].is_null() {
        out!("signed by: {}", text(&ver["bundle_signer"]));
    }
    out!(
        "submitted: {} by {}",
        text(&ver["created_at"]),
        text(&ver["submitter"])
    );
    let provenance = super::human::lines(&v["provenance"], 2);
    if provenance.is_empty() {
        out!("provenance: none recorded");
    } else {
        out!("provenance:");
        for l in provenance {
            out!("{l}");
        }
    }
    let runs: Vec<Vec<String>> = v["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                text(&r["id"]),
                text(&r["status"]),
                format!("{} v{}", text(&r["gate"]), text(&r["gate_version"])),
                text(&r["created_at"]),
                text(&r["finished_at"]),
            ]
        })
        .collect();
    out!("runs:");
    table(&["ID", "STATUS", "GATE", "QUEUED", "FINISHED"], &runs);
    let approvals: Vec<String> = v["approvals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| format!("{} ({})", text(&a["approver"]), text(&a["at"])))
        .collect();
    out!(
        "approvals: {}",
        if approvals.is_empty() {
            "none".into()
        } else {
            approvals.join(", ")
        }
    );
    Ok(())
}

/// `airlock model create`.
pub(crate) fn model_create(
    remote: &Remote,
    name: &str,
    gate: &str,
    approvals: u32,
    description: Option<&str>,
) -> Result<(), CliError> {
    let (status, v) = Client::new(remote)?.send_json(
        "PUT",
        &format!("/v1/models/{}", seg(name)),
        &json!({ "gate": gate, "approvals_required": approvals,
                 "description": description.unwrap_or_default() }),
    )?;
    if remote.json {
        print_json(&v);
    } else {
        out!(
            "{} model {} (gate {}, {} approval(s) required)",
            if status == 201 { "created" } else { "updated" },
            text(&v["name"]),
            text(&v["gate"]),
            text(&v["approvals_required"])
        );
    }
    Ok(())
}

/// `airlock gate switch`.
pub(crate) fn gate_switch(remote: &Remote, name: &str, version: i64) -> Result<(), CliError> {
    let (_, v) = Client::new(remote)?.send_json(
        "PUT",
        &format!("/v1/gates/{}/current", seg(name)),
        &json!({ "version": version }),
    )?;
    if remote.json {
        print_json(&v);
    } else {
        out!(
            "gate {}: current version {} (was {}), digest {}",
            text(&v["name"]),
            text(&v["current"]),
            text(&v["previous"]),
            text(&v["digest"])
        );
    }
    Ok(())
}

/// `airlock policy sign` (offline).
pub(crate) fn policy_sign(policy: &Path, key: &Path, output: &Path) -> Result<(), CliError> {
    let key = crate::signing::load_signing_key(key)?;
    let text = std::fs::read_to_string(policy)
        .map_err(|e| CliError::input(format!("cannot read {}: {e}", policy.display())))?;
    let p = airlock_attest::policy::TrustPolicy::from_toml(&text)
        .map_err(|e| CliError::input(format!("trust policy {}: {e}", policy.display())))?;
    let envelope = p
        .sign(&key)
        .map_err(|e| CliError::input(format!("signing {}: {e}", policy.display())))?;
    crate::signing::write_new(output, &envelope.to_json(), 0o644)?;
    out!(
        "signed trust policy version {} with key {}: {}",
        p.version,
        key.key_id().hex(),
        output.display()
    );
    Ok(())
}

/// `airlock policy push`.
pub(crate) fn policy_push(remote: &Remote, file: &Path) -> Result<(), CliError> {
    let signed = std::fs::read_to_string(file)
        .map_err(|e| CliError::input(format!("cannot read {}: {e}", file.display())))?;
    let envelope = airlock_attest::Envelope::from_json(&signed).map_err(|e| {
        CliError::input(format!(
            "{} is not a signed policy (`airlock policy sign` writes one): {e}",
            file.display()
        ))
    })?;
    let body = serde_json::to_value(&envelope).expect("an envelope serializes");
    let (_, v) = Client::new(remote)?.send_json("PUT", "/v1/trust-policy", &body)?;
    if remote.json {
        print_json(&v);
    } else {
        out!(
            "trust policy version {} accepted ({} key(s))",
            text(&v["version"]),
            v["keys"].as_array().map_or(0, Vec::len)
        );
    }
    Ok(())
}

/// `airlock approve`.
pub(crate) fn approve(
    remote: &Remote,
    name: &str,
    version: &str,
    comment: Option<&str>,
) -> Result<(), CliError> {
    let (_, v) = Client::new(remote)?.send_json(
        "POST",
        &format!(
            "/v1/models/{}/versions/{}/approvals",
            seg(name),
            seg(version)
        ),
        &json!({ "comment": comment.unwrap_or_default() }),
    )?;
    if remote.json {
        print_json(&v);
    } else if v["already"].as_bool() == Some(true) {
        out!("{} {}: already approved by you", esc(name), esc(version));
    } else {
        out!("{} {}: approved", esc(name), esc(version));
    }
    Ok(())
}

/// `airlock promote`.
pub(crate) fn promote(
    remote: &Remote,
    name: &str,
    version: &str,
    alias: Option<&str>,
    reason: Option<&str>,
) -> Result<(), CliError> {
    let mut body = json!({ "version": version, "reason": reason.unwrap_or_default() });
    if let Some(a) = alias {
        body["alias"] = a.into();
    }
    let (_, v) = Client::new(remote)?.send_json(
        "POST",
        &format!("/v1/models/{}/promote", seg(name)),
        &body,
    )?;
    if remote.json {
        print_json(&v);
    } else if v["unchanged"] == true {
        out!(
            "{} {} is already {}: nothing moved, nothing recorded",
            text(&v["model"]),
            text(&v["alias"]),
            text(&v["version"])
        );
    } else {
        out!(
            "{} {} -> {} (was {}; gate run {}){}",
            text(&v["model"]),
            text(&v["alias"]),
            text(&v["version"]),
            text(&v["previous"]),
            text(&v["run"]),
            switch_time(&v["switch_ns"])
        );
    }
    Ok(())
}

/// `; traffic switched in N µs` when the answer timed a switch of what is
/// served.
fn switch_time(ns: &Value) -> String {
    ns.as_f64()
        .map(|ns| format!("; traffic switched in {:.1} µs", ns / 1e3))
        .unwrap_or_default()
}

/// `airlock rollback`.
pub(crate) fn rollback(
    remote: &Remote,
    name: &str,
    version: Option<&str>,
    alias: Option<&str>,
    reason: Option<&str>,
) -> Result<(), CliError> {
    let mut body = json!({ "version": version, "reason": reason.unwrap_or_default() });
    if let Some(a) = alias {
        body["alias"] = a.into();
    }
    let (_, v) = Client::new(remote)?.send_json(
        "POST",
        &format!("/v1/models/{}/rollback", seg(name)),
        &body,
    )?;
    if remote.json {
        print_json(&v);
    } else {
        out!(
            "{} {} rolled back to {} (was {}){}",
            text(&v["model"]),
            text(&v["alias"]),
            text(&v["version"]),
            text(&v["previous"]),
            switch_time(&v["switch_ns"])
        );
    }
    Ok(())
}

/// `airlock history`.
pub(crate) fn history(remote: &Remote, name: &str) -> Result<(), CliError> {
    let v = Client::new(remote)?.get(&format!("/v1/models/{}/history", seg(name)), &[])?;
    if remote.json {
        print_json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            vec![
                text(&h["at"]),
                text(&h["action"]),
                text(&h["alias"]),
                text(&h["version"]),
                text(&h["by"]),
                text(&h["run"]),
                text(&h["reason"]),
            ]
        })
        .collect();
    table(
        &["AT", "ACTION", "ALIAS", "VERSION", "BY", "RUN", "REASON"],
        &rows,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_what_the_server_says() {
        assert_eq!(text(&json!("a\u{1b}[31mb")), esc("a\u{1b}[31mb"));
        assert_ne!(text(&json!("a\u{1b}[31mb")), "a\u{1b}[31mb");
        assert_eq!(text(&Value::Null), "-");
        assert_eq!(text(&json!(3)), "3");
        assert_eq!(
            short(&json!(format!("sha256:{}", "a".repeat(64)))),
            format!("sha256:{}", "a".repeat(12))
        );
    }
}
