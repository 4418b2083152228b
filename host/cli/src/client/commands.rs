//! The client commands: each one request (or a few), its answer printed
//! as a table or lines for people, or as the server's JSON with `--json`.
//! Everything the server says is escaped before it reaches a terminal.

use super::{Client, seg};
use crate::args::Remote;
use crate::exit::CliError;
use airlock_core::gate::report::escape_untrusted as esc;
use serde_json::{Map, Value, json};
use std::path::Path;

// Split by concern; re-exported so that callers name every client command
// through this module.
pub(crate) use super::admin::*;
pub(crate) use super::runs::*;

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

/// `airlock submit plugin`.
pub(crate) fn submit_plugin(
    remote: &Remote,
    file: &Path,
    name: &str,
    version: &str,
    signature: Option<&Path>,
) -> Result<(), CliError> {
    let signature = signature.map(read_json_file).transpose()?;
    let c = Client::new(remote)?;
    let (digest, _) = c.upload_path(file)?;
    let (status, v) = c.send_json(
        "POST",
        "/v1/plugins",
        &json!({ "name": name, "version": version, "component": digest, "signature": signature }),
    )?;
    if remote.json {
        print_json(&v);
    } else {
        out!(
            "{} plugin {}@{} ({}, {} plugin{})",
            if status == 201 {
                "registered"
            } else {
                "already registered:"
            },
            text(&v["name"]),
            text(&v["version"]),
            text(&v["digest"]),
            text(&v["world"]),
            match v["signer"].as_str() {
                Some(k) => format!(", signed by key {}", esc(k)),
                None => String::new(),
            }
        );
    }
    Ok(())
}

/// Reads a JSON file (a signature), naming it when it does not parse.
fn read_json_file(p: &Path) -> Result<Value, CliError> {
    let t = std::fs::read_to_string(p)
        .map_err(|e| CliError::input(format!("cannot read {}: {e}", p.display())))?;
    serde_json::from_str(&t)
        .map_err(|e| CliError::input(format!("{} is not JSON: {e}", p.display())))
}

/// Splits `KEY=VALUE`, naming the flag when there is no `=`.
fn key_value<'a>(flag: &str, kv: &'a str) -> Result<(&'a str, &'a str), CliError> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => Err(CliError::input(format!("{flag} {kv:?} is not KEY=VALUE"))),
    }
}

/// What `submit model` sends besides the artifacts.
pub(crate) struct Provenance {
    pub(crate) training_data: Option<String>,
    pub(crate) code_commit: Option<String>,
    pub(crate) author: Option<String>,
    pub(crate) params: Vec<String>,
    pub(crate) labels: Vec<String>,
}

impl Provenance {
    fn to_json(&self) -> Result<Value, CliError> {
        let mut params = Map::new();
        for kv in &self.params {
            let (k, v) = key_value("--param", kv)?;
            let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into()));
            params.insert(k.into(), value);
        }
        let mut labels = Map::new();
        for kv in &self.labels {
            let (k, v) = key_value("--label", kv)?;
            labels.insert(k.into(), Value::String(v.into()));
        }
        Ok(json!({
            "training_data": self.training_data,
            "code_commit": self.code_commit,
            "author": self.author,
            "parameters": params,
            "labels": labels,
        }))
    }
}

/// `airlock submit model`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn submit_model(
    remote: &Remote,
    name: &str,
    version: &str,
    plugin: &str,
    bundle: Option<&Path>,
    no_bundle: bool,
    bundle_signature: Option<&Path>,
    provenance: &Provenance,
    wait: bool,
) -> Result<(), CliError> {
    let provenance = provenance.to_json()?;
    if bundle.is_none() && !no_bundle {
        // Checked before anything is sent: a version number is used once.
        return Err(CliError::input(format!(
            "submit model {name} --version {version}: no --bundle DIR was given (the model's data bundle); pass --no-bundle for a model that reads none. Nothing was submitted"
        )));
    }
    let bundle_signature = bundle_signature.map(read_json_file).transpose()?;
    let c = Client::new(remote)?;
    let archive = match bundle {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(CliError::input(format!(
                    "--bundle {} is not a directory",
                    dir.display()
                )));
            }
            // Packed to an unnamed temporary file, then streamed from it.
            let mut tmp = tempfile::tempfile()
                .map_err(|e| CliError::input(format!("creating a temporary file: {e}")))?;
            airlock_server::archive::pack(dir, &mut tmp)
                .map_err(|e| CliError::input(format!("packing {}: {e}", dir.display())))?;
            let what = format!("{} (packed)", dir.display());
            Some(c.upload(tmp, &what)?.0)
        }
        None => None,
    };
    let (_, v) = c.send_json(
        "POST",
        &format!("/v1/models/{}/versions", seg(name)),
        &json!({ "version": version, "plugin": plugin, "bundle": archive,
                 "bundle_signature": bundle_signature, "provenance": provenance }),
    )?;
    let run = match v["run"].as_str() {
        Some(r) => r.to_string(),
        None => {
            // The same bytes were submitted before: no new run; wait for
            // the newest one.
            if !wait {
                if remote.json {
                    print_json(&v);
                } else {
                    out!(
                        "version {} of {} was already submitted with these bytes; no new gate run (rerun: none queued)",
                        esc(version),
                        esc(name)
                    );
                }
                return Ok(());
            }
            let detail = c.get(
                &format!("/v1/models/{}/versions/{}", seg(name), seg(version)),
                &[],
            )?;
            let last = detail["runs"]
                .as_array()
                .and_then(|r| r.last())
                .and_then(|r| r["id"].as_str())
                .ok_or_else(|| {
                    CliError::input(format!(
                        "version {version} of {name} was already submitted and has no gate run"
                    ))
                })?;
            eprintln!(
                "version {version} of {name} was already submitted with these bytes; waiting for its latest run {last}"
            );
            last.to_string()
        }
    };
    if wait {
        if !remote.json {
            out!(
                "submitted {} {}; gate run {}",
                esc(name),
                esc(version),
                esc(&run)
            );
        }
        return wait_run(&c, &run, remote.json);
    }
    if remote.json {
        print_json(&v);
    } else {
        out!(
            "submitted {} {}; gate run {} queued (follow it: airlock run wait {})",
            esc(name),
            esc(version),
            esc(&run),
            esc(&run)
        );
    }
    Ok(())
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
    fn provenance_reads_key_values_and_json_values() {
        let p = Provenance {
            training_data: Some("sha256:ab".into()),
            code_commit: None,
            author: Some("ana".into()),
            params: vec![
                "lr=0.1".into(),
                "obj=binary:logistic".into(),
                "deep=true".into(),
            ],
            labels: vec!["team=risk".into(), "note=a=b".into()],
        };
        let v = p.to_json().unwrap();
        assert_eq!(v["parameters"]["lr"], json!(0.1));
        assert_eq!(v["parameters"]["obj"], json!("binary:logistic"));
        assert_eq!(v["parameters"]["deep"], json!(true));
        assert_eq!(v["labels"]["note"], json!("a=b"));
        assert_eq!(v["code_commit"], Value::Null);
        let bad = Provenance {
            params: vec!["nokey".into()],
            ..p
        };
        let Err(CliError::Input(m)) = bad.to_json() else {
            panic!("accepted")
        };
        assert_eq!(m, "--param \"nokey\" is not KEY=VALUE");
    }

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
