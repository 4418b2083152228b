//! Submitting from the command line: `submit plugin` and `submit model`
//! (uploads, the provenance sent with a model, `--wait`). Kept apart from
//! the listing and lifecycle commands in [`super::commands`], which
//! re-exports these so callers name every client command through one
//! module.

use super::commands::{print_json, text};
use super::runs::wait_run;
use super::{Client, seg};
use crate::args::Remote;
use crate::exit::CliError;
use airlock_core::gate::report::escape_untrusted as esc;
use serde_json::{Map, Value, json};
use std::path::Path;

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
}
