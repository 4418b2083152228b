//! The client commands: each one request (or a few), its answer printed
//! as a table or lines for people, or as the server's JSON with `--json`.
//! Everything the server says is escaped before it reaches a terminal.

use super::{Client, seg};
use crate::args::Remote;
use crate::exit::CliError;
use airlock_core::gate::report::escape_untrusted as esc;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Prints `v` as pretty JSON.
pub(crate) fn print_json(v: &Value) {
    out!("{}", crate::terminal::json(v));
}

/// A JSON field as display text ("-" when absent), escaped.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// Prints rows under headers, columns padded to their widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) {
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

const FINISHED: [&str; 5] = ["passed", "refused", "error", "cancelled", "interrupted"];

/// Polls a run until it finishes; prints its verdict; exit 0 only when passed.
pub(crate) fn wait_run(c: &Client, id: &str, json: bool) -> Result<(), CliError> {
    let path = format!("/v1/runs/{}", seg(id));
    let mut delay = Duration::from_millis(200);
    let mut last_status = String::new();
    loop {
        let v = match c.get(&path, &[]) {
            Ok(v) => v,
            Err(e) => return Err(lost_while_waiting(e, id, &last_status)),
        };
        let status = v["run"]["status"].as_str().unwrap_or("").to_string();
        if FINISHED.contains(&status.as_str()) {
            if json {
                print_json(&v);
            } else {
                print_run(&v);
            }
            return if status == "passed" {
                Ok(())
            } else {
                Err(CliError::RunNotPassed)
            };
        }
        if status != last_status {
            if !json {
                eprintln!("run {}: {}", esc(id), esc(&status));
            }
            last_status = status;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// What waiting for run `id` turns into when the server stops answering:
/// a server that says it is stopping (503 `stopping`), or one that no
/// longer answers after it did, is exit 3 naming the command that shows
/// the run later; anything else is the error itself.
fn lost_while_waiting(e: CliError, id: &str, last_status: &str) -> CliError {
    let stopping = matches!(&e, CliError::Server { status: 503, code, .. } if code == "stopping");
    let gone = !last_status.is_empty()
        && matches!(&e, CliError::Input(m) if m.starts_with("cannot reach the server"));
    if !(stopping || gone) {
        return e;
    }
    CliError::Busy(format!(
        "{} while run {} was {}; it finishes or is recorded as interrupted: see it with `airlock run show {}` once the server is back",
        if stopping {
            "the server is stopping"
        } else {
            "the server stopped answering"
        },
        esc(id),
        if last_status.is_empty() {
            "waiting"
        } else {
            last_status
        },
        esc(id)
    ))
}

/// Prints a run: status, gate, and for a judged run the failing steps.
fn print_run(v: &Value) {
    let r = &v["run"];
    out!(
        "run {}: {} ({} {} under gate {} v{})",
        text(&r["id"]),
        text(&r["status"]).to_uppercase(),
        text(&r["model"]),
        text(&r["version"]),
        text(&r["gate"]),
        text(&r["gate_version"])
    );
    if let Some(reason) = r["reason"].as_str() {
        out!("  reason: {}", esc(reason));
    }
    let report = &v["report"];
    if let Some(steps) = report["steps"].as_array() {
        for s in steps {
            let status = s["status"].as_str().unwrap_or("");
            let advisory = s["advisory"].as_bool().unwrap_or(false);
            out!(
                "  {:<5} {}{}",
                status,
                text(&s["name"]),
                if advisory { " (advisory)" } else { "" }
            );
            if status != "pass" {
                for f in s["findings"].as_array().into_iter().flatten().take(3) {
                    out!("        {}: {}", text(&f["code"]), text(&f["message"]));
                }
                if let Some(e) = s["error"]["message"].as_str() {
                    out!("        error: {}", esc(e));
                }
            }
        }
    }
    if let Some(blocking) = report["decision"]["blocking_steps"].as_array()
        && !blocking.is_empty()
    {
        let names: Vec<String> = blocking.iter().map(text).collect();
        out!("  failing steps: {}", names.join(", "));
    }
    if let Some(f) = report["candidate_failure"]["message"].as_str() {
        out!("  the candidate failed: {}", esc(f));
    }
}

/// `airlock run show`.
pub(crate) fn run_show(remote: &Remote, id: &str) -> Result<(), CliError> {
    let c = Client::new(remote)?;
    let v = c.get(&format!("/v1/runs/{}", seg(id)), &[])?;
    if remote.json {
        print_json(&v);
    } else {
        print_run(&v);
    }
    Ok(())
}

/// `airlock run wait`.
pub(crate) fn run_wait(remote: &Remote, id: &str) -> Result<(), CliError> {
    wait_run(&Client::new(remote)?, id, remote.json)
}

/// `airlock run cancel`.
pub(crate) fn run_cancel(remote: &Remote, id: &str) -> Result<(), CliError> {
    let v = Client::new(remote)?.post_empty(&format!("/v1/runs/{}/cancel", seg(id)))?;
    if remote.json {
        print_json(&v);
    } else {
        out!("run {}: {}", text(&v["run"]), text(&v["status"]));
    }
    Ok(())
}

/// `airlock run attestation`: writes the envelope, never over a file.
pub(crate) fn run_attestation(remote: &Remote, id: &str, output: &Path) -> Result<(), CliError> {
    if output.exists() {
        return Err(CliError::input(format!(
            "{} already exists (airlock never overwrites an attestation)",
            output.display()
        )));
    }
    let v = Client::new(remote)?.get(&format!("/v1/runs/{}/attestation", seg(id)), &[])?;
    let envelope = serde_json::to_string_pretty(&v).expect("JSON values serialize");
    crate::signing::write_new(output, &envelope, 0o644)?;
    if remote.json {
        print_json(&v);
    } else {
        out!(
            "attestation of run {} written to {} (check it: airlock attestation verify {} --public-key <key>.pub; see `airlock keys --out`)",
            esc(id),
            output.display(),
            output.display()
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

/// `airlock token create`: the secret goes to stdout alone, so that
/// `T=$(airlock token create ...)` captures just it.
pub(crate) fn token_create(
    remote: &Remote,
    subject: &str,
    role: &str,
    models: &[String],
    aliases: &[String],
    ttl: Option<u64>,
) -> Result<(), CliError> {
    let mut scope = Map::new();
    if !models.is_empty() {
        scope.insert("models".into(), json!(models));
    }
    if !aliases.is_empty() {
        scope.insert("aliases".into(), json!(aliases));
    }
    let (_, v) = Client::new(remote)?.send_json(
        "POST",
        "/v1/tokens",
        &json!({ "subject": subject, "role": role, "scope": scope, "ttl_seconds": ttl }),
    )?;
    if remote.json {
        print_json(&v);
    } else {
        eprintln!(
            "token {} for {} ({}), expires {}; it is shown only now",
            text(&v["id"]),
            text(&v["subject"]),
            text(&v["role"]),
            super::human::unix_time(&v["expires_at"])
        );
        out!("{}", text(&v["token"]));
    }
    Ok(())
}

/// `airlock token list`.
pub(crate) fn token_list(remote: &Remote) -> Result<(), CliError> {
    let v = Client::new(remote)?.get("/v1/tokens", &[])?;
    if remote.json {
        print_json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let scope = &t["scope"];
            let list = |k: &str| {
                scope[k].as_array().map_or("all".to_string(), |a| {
                    a.iter().map(text).collect::<Vec<_>>().join(",")
                })
            };
            vec![
                text(&t["id"]),
                text(&t["subject"]),
                text(&t["role"]),
                list("models"),
                list("aliases"),
                super::human::unix_time(&t["expires_at"]),
                super::human::unix_time(&t["revoked_at"]),
            ]
        })
        .collect();
    table(
        &[
            "ID", "SUBJECT", "ROLE", "MODELS", "ALIASES", "EXPIRES", "REVOKED",
        ],
        &rows,
    );
    Ok(())
}

/// `airlock token rotate`.
pub(crate) fn token_rotate(remote: &Remote, id: &str) -> Result<(), CliError> {
    let v = Client::new(remote)?.post_empty(&format!("/v1/tokens/{}/rotate", seg(id)))?;
    if remote.json {
        print_json(&v);
    } else {
        eprintln!(
            "token {} rotated: the old secret no longer works; the new one is shown only now",
            text(&v["id"])
        );
        out!("{}", text(&v["token"]));
    }
    Ok(())
}

/// `airlock token revoke`.
pub(crate) fn token_revoke(remote: &Remote, id: &str) -> Result<(), CliError> {
    let v = Client::new(remote)?.delete(&format!("/v1/tokens/{}", seg(id)))?;
    if remote.json {
        print_json(&v);
    } else {
        out!("token {} revoked", text(&v["id"]));
    }
    Ok(())
}

/// `airlock keys [--out DIR]`.
pub(crate) fn keys(remote: &Remote, out_dir: Option<&Path>) -> Result<(), CliError> {
    let v = Client::new(remote)?.get("/v1/keys", &[])?;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let mut written: Vec<PathBuf> = Vec::new();
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::input(format!("cannot create {}: {e}", dir.display())))?;
        for k in &items {
            let id = k["key_id"].as_str().unwrap_or_default();
            let pem = k["public_key"].as_str().unwrap_or_default();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CliError::input(format!(
                    "the server listed a key id {id:?} that is not hex"
                )));
            }
            // Checked before it is written: a file named by a key id must hold that key.
            let key = airlock_attest::VerifyingKey::from_pem(pem)
                .map_err(|e| CliError::input(format!("the server's key {id}: {e}")))?;
            if key.key_id().hex() != id {
                return Err(CliError::input(format!(
                    "the server's key {id} has the id {}",
                    key.key_id().hex()
                )));
            }
            let path = dir.join(format!("{id}.pub"));
            match std::fs::read_to_string(&path) {
                Ok(existing) if existing == pem => {}
                _ => crate::signing::write_new(&path, pem, 0o644)?,
            }
            written.push(path);
        }
    }
    if remote.json {
        print_json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|k| {
            vec![
                text(&k["key_id"]),
                if k["current"].as_bool() == Some(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
                text(&k["created_at"]),
                text(&k["retired_at"]),
            ]
        })
        .collect();
    table(&["KEY ID", "CURRENT", "CREATED", "RETIRED"], &rows);
    for p in written {
        out!("wrote {}", p.display());
    }
    Ok(())
}

/// `airlock keys rotate`.
pub(crate) fn keys_rotate(remote: &Remote) -> Result<(), CliError> {
    let v = Client::new(remote)?.post_empty("/v1/keys/rotate")?;
    if remote.json {
        print_json(&v);
    } else {
        out!(
            "new signing key {} (retired {})",
            text(&v["key_id"]),
            text(&v["retired"])
        );
    }
    Ok(())
}

/// What `airlock audit log` asks for.
pub(crate) struct AuditQuery {
    pub(crate) action: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) oldest_first: bool,
    pub(crate) before: Option<u64>,
    pub(crate) after: Option<u64>,
}

/// `airlock audit log`: the newest entries first (what just happened),
/// or from the start with `--oldest-first`; the last line names the
/// command for the next page.
pub(crate) fn audit_log(remote: &Remote, q: &AuditQuery) -> Result<(), CliError> {
    let mut query: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("action", &q.action),
        ("actor", &q.actor),
        ("subject", &q.subject),
    ] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    if let Some(l) = q.limit {
        query.push(("limit", l.to_string()));
    }
    query.push((
        "order",
        if q.oldest_first { "oldest" } else { "newest" }.into(),
    ));
    if let Some(b) = q.before {
        query.push(("before_seq", b.to_string()));
    }
    if let Some(a) = q.after {
        query.push(("after_seq", a.to_string()));
    }
    let v = Client::new(remote)?.get("/v1/audit", &query)?;
    if remote.json {
        print_json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                text(&e["seq"]),
                text(&e["time"]),
                text(&e["actor"]),
                text(&e["action"]),
                text(&e["subject"]),
            ]
        })
        .collect();
    table(&["SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT"], &rows);
    let head = &v["head"];
    if !head.is_null() {
        out!(
            "head: {}",
            match (head["seq"].as_u64(), head["hash"].as_str()) {
                (Some(s), Some(h)) => format!("{s}:{}", esc(h)),
                _ => text(head),
            }
        );
    }
    let mut again = String::from("airlock audit log");
    for (flag, v) in [
        ("--action", &q.action),
        ("--actor", &q.actor),
        ("--subject", &q.subject),
    ] {
        if let Some(v) = v {
            again.push_str(&format!(" {flag} {}", esc(v)));
        }
    }
    if let Some(l) = q.limit {
        again.push_str(&format!(" --limit {l}"));
    }
    if let Some(b) = v["next_before_seq"].as_u64() {
        out!("older entries: {again} --before {b}");
    }
    if let Some(a) = v["next_after_seq"].as_u64() {
        out!("newer entries: {again} --oldest-first --after {a}");
    }
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
