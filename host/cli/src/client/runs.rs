//! Gate runs from the command line: `run show | wait | cancel |
//! attestation`, and the waiting loop `submit model --wait` shares, which
//! turns a server that is stopping (or gone) into exit 3 naming the
//! command that shows the run later.

use super::commands::{print_json, text};
use super::{Client, seg};
use crate::args::Remote;
use crate::exit::CliError;
use crate::terminal::escape_untrusted as esc;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

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
            "attestation of run {} written to {} (check it: airlock attestation verify {} --public-key <key>.pub; see `airlock server-keys --out`)",
            esc(id),
            output.display(),
            output.display()
        );
    }
    Ok(())
}
