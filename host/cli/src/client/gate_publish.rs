//! `airlock gate publish`: turns a local gate file, whose steps name
//! validators by plugin name and datasets by path, into the form a server
//! accepts — every validator and dataset uploaded and pinned by digest,
//! `plugin_dir` gone — then signs it as a gate definition and publishes it.
//! The server never sees a host path, and the signature covers exactly the
//! bytes that will run.

use super::{Client, commands::print_json};
use crate::args::Remote;
use crate::exit::CliError;
use airlock_attest::policy::GateDefinition;
use airlock_core::gate::report::escape_untrusted as esc;
use airlock_core::gate::spec::GateSpec;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What each step's references become.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pinned {
    /// `sha256:<hex>` of the validator component.
    pub(crate) plugin: String,
    /// `sha256:<hex>` of the dataset.
    pub(crate) dataset: String,
    /// `sha256:<hex>` of the reference dataset, if the step has one.
    pub(crate) reference: Option<String>,
}

/// Rewrites gate TOML: each step's `plugin`, `dataset` and `reference`
/// replaced by its pinned digest (steps in file order), `plugin_dir`
/// removed. Everything else (config, labels, limits, policy) is kept.
pub(crate) fn pin_toml(source: &str, pinned: &[Pinned]) -> Result<String, CliError> {
    let mut doc: toml::Table = toml::from_str(source).map_err(|e| {
        CliError::input(format!(
            "gate file: {}",
            crate::exit::one_line(&e.to_string())
        ))
    })?;
    doc.remove("plugin_dir");
    let steps = doc
        .get_mut("steps")
        .and_then(toml::Value::as_array_mut)
        .ok_or_else(|| CliError::input("gate file: no [[steps]]"))?;
    if steps.len() != pinned.len() {
        return Err(CliError::input(format!(
            "gate file: {} steps, but {} were pinned",
            steps.len(),
            pinned.len()
        )));
    }
    for (step, p) in steps.iter_mut().zip(pinned) {
        let t = step
            .as_table_mut()
            .ok_or_else(|| CliError::input("gate file: a step is not a table"))?;
        t.insert("plugin".into(), p.plugin.clone().into());
        t.insert("dataset".into(), p.dataset.clone().into());
        match &p.reference {
            Some(r) => {
                t.insert("reference".into(), r.clone().into());
            }
            None => {
                t.remove("reference");
            }
        }
    }
    toml::to_string(&doc).map_err(|e| CliError::input(format!("gate file: {e}")))
}

/// The plugin name a step's validator is registered under: the step's
/// `plugin`, or a `.wasm` path's file stem.
fn plugin_name(plugin: &str) -> String {
    if plugin.ends_with(".wasm") {
        Path::new(plugin)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| plugin.to_string())
    } else {
        plugin.to_string()
    }
}

/// `airlock gate publish`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn publish(
    remote: &Remote,
    gate: &Path,
    name: &str,
    version: u64,
    key: &Path,
    plugin_dir: Option<&Path>,
    validators_version: &str,
) -> Result<(), CliError> {
    // Everything local is checked before anything is sent.
    let key = crate::signing::load_signing_key(key)?;
    let spec = GateSpec::load(gate).map_err(|e| CliError::input(e.to_string()))?;
    let probe = GateDefinition {
        name: name.to_string(),
        version,
        gate_toml: String::new(),
    };
    probe
        .validate()
        .map_err(|e| CliError::input(e.to_string()))?;
    for step in &spec.steps {
        let path = spec.plugin_path(step, plugin_dir);
        if !path.is_file() {
            return Err(CliError::input(format!(
                "step `{}`: validator {} does not exist (build the plugins, or pass --plugin-dir)",
                step.name,
                path.display()
            )));
        }
    }
    let c = Client::new(remote)?;
    let mut uploaded: HashMap<PathBuf, String> = HashMap::new();
    let mut registered: HashMap<String, String> = HashMap::new();
    let mut pinned = Vec::new();
    for step in &spec.steps {
        let component = spec.plugin_path(step, plugin_dir);
        let digest = upload_once(&c, &mut uploaded, &component)?;
        let plugin = plugin_name(&step.plugin);
        if !registered.contains_key(&digest) {
            register_validator(&c, &plugin, validators_version, &digest, &step.name)?;
            registered.insert(digest.clone(), plugin);
        }
        let dataset = upload_once(&c, &mut uploaded, &spec.resolve(&step.dataset))?;
        let reference = step
            .reference
            .as_ref()
            .map(|r| upload_once(&c, &mut uploaded, &spec.resolve(r)))
            .transpose()?;
        pinned.push(Pinned {
            plugin: digest,
            dataset,
            reference,
        });
    }
    let gate_toml = pin_toml(&spec.source, &pinned)?;
    let def = GateDefinition {
        name: name.to_string(),
        version,
        gate_toml,
    };
    let envelope = def
        .sign(&key)
        .map_err(|e| CliError::input(format!("signing the gate: {e}")))?;
    let body = serde_json::to_value(&envelope).expect("an envelope serializes");
    let (status, v) = c.send_json("POST", "/v1/gates", &body)?;
    if remote.json {
        print_json(&v);
    } else {
        out!(
            "{} gate {} version {}: {} (signed by key {})",
            if status == 201 {
                "published"
            } else {
                "already published:"
            },
            esc(v["name"].as_str().unwrap_or(name)),
            v["version"].as_i64().unwrap_or(version as i64),
            esc(v["digest"].as_str().unwrap_or("?")),
            key.key_id().hex()
        );
    }
    Ok(())
}

/// Uploads `path` unless this publish already did.
fn upload_once(
    c: &Client,
    uploaded: &mut HashMap<PathBuf, String>,
    path: &Path,
) -> Result<String, CliError> {
    if let Some(d) = uploaded.get(path) {
        return Ok(d.clone());
    }
    let (digest, _) = c.upload_path(path)?;
    uploaded.insert(path.to_path_buf(), digest.clone());
    Ok(digest)
}

/// Registers an uploaded validator as `name@version`. The same bytes
/// already registered (under this or another name) is fine: the gate pins
/// the digest, not the name.
fn register_validator(
    c: &Client,
    name: &str,
    version: &str,
    digest: &str,
    step: &str,
) -> Result<(), CliError> {
    let sent = c.send_json(
        "POST",
        "/v1/plugins",
        &json!({ "name": name, "version": version, "component": digest }),
    );
    let v: Value = match sent {
        Ok((_, v)) => v,
        Err(conflict @ CliError::Server { status: 409, .. }) => {
            // Other bytes under name@version, or these bytes under another
            // name: only the latter lets the gate pin this digest.
            match c.get(&format!("/v1/plugins/{digest}"), &[]) {
                Ok(v) => {
                    eprintln!(
                        "note: step `{step}`: validator {digest} is already registered as {}@{}",
                        esc(v["name"].as_str().unwrap_or("?")),
                        esc(v["version"].as_str().unwrap_or("?"))
                    );
                    v
                }
                Err(_) => return Err(conflict),
            }
        }
        Err(e) => return Err(e),
    };
    if v["world"].as_str() != Some("validator") {
        return Err(CliError::input(format!(
            "step `{step}`: plugin {name} ({digest}) is a {}, not a validator",
            esc(v["world"].as_str().unwrap_or("?"))
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_replaces_references_and_drops_plugin_dir_keeping_the_rest() {
        let src = r#"
name = "g"
plugin_dir = "../plugins"
[policy]
advisory = ["b"]
[[steps]]
name = "a"
plugin = "schema"
dataset = "data/eval.csv"
label = "target"
[steps.config]
task = "binary-classification"
[[steps]]
name = "b"
plugin = "drift"
dataset = "data/eval.csv"
reference = "data/train.csv"
"#;
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let out = pin_toml(
            src,
            &[
                Pinned {
                    plugin: d('1'),
                    dataset: d('2'),
                    reference: None,
                },
                Pinned {
                    plugin: d('3'),
                    dataset: d('2'),
                    reference: Some(d('4')),
                },
            ],
        )
        .unwrap();
        let spec = GateSpec::parse(&out, Path::new("/nonexistent")).unwrap();
        assert_eq!(spec.plugin_dir, None);
        assert_eq!(spec.steps[0].plugin, d('1'));
        assert_eq!(spec.steps[0].dataset, PathBuf::from(d('2')));
        assert_eq!(spec.steps[0].reference, None);
        assert_eq!(spec.steps[0].label.as_deref(), Some("target"));
        assert_eq!(
            spec.steps[0].config["task"].as_str(),
            Some("binary-classification")
        );
        assert_eq!(spec.steps[1].plugin, d('3'));
        assert_eq!(spec.steps[1].reference, Some(PathBuf::from(d('4'))));
        assert_eq!(spec.policy.advisory, ["b"]);
        assert!(pin_toml(src, &[]).is_err());
        assert_eq!(plugin_name("schema"), "schema");
        assert_eq!(plugin_name("../x/golden.wasm"), "golden");
    }
}
