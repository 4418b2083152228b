//! `airlock plugin new` and `airlock plugin build`: a guest crate that
//! builds as is, and the cargo invocation that turns it into a component.

use super::exit::CliError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which world to scaffold.
#[derive(Debug, Clone, Copy)]
pub enum Template {
    /// A model plugin.
    Model,
    /// A validator plugin.
    Validator,
}

/// The guest SDK this binary was built with.
fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("guest-sdk")
}

/// Writes a new guest crate into `dir` (which must not exist yet).
pub fn create(t: Template, name: &str, dir: &Path, sdk: Option<&Path>) -> Result<(), CliError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(CliError::input(format!(
            "`{name}` is not a valid crate name (letters, digits, - and _; not starting with a digit)"
        )));
    }
    if dir.exists() {
        return Err(CliError::input(format!(
            "{} already exists; choose another name or --dir",
            dir.display()
        )));
    }
    let sdk = sdk.map(Path::to_path_buf).unwrap_or_else(default_sdk);
    let sdk = std::fs::canonicalize(&sdk).map_err(|e| {
        CliError::input(format!(
            "guest SDK not found at {} ({e}); pass --sdk <path to airlock/guest-sdk>",
            sdk.display()
        ))
    })?;
    let (feature, body) = match t {
        Template::Model => ("model", MODEL_TEMPLATE),
        Template::Validator => ("validator", VALIDATOR_TEMPLATE),
    };
    let ty = to_type_name(name);
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
airlock-guest-sdk = {{ path = "{sdk}", features = ["{feature}"] }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A standalone crate, not part of any enclosing workspace.
[workspace]

[profile.release]
opt-level = 3
codegen-units = 1
lto = true
strip = "debuginfo"
"#,
        sdk = sdk.display().to_string().replace('\\', "/"),
    );
    let src = body.replace("__TYPE__", &ty).replace("__NAME__", name);
    let write = |p: PathBuf, text: &str| {
        std::fs::write(&p, text)
            .map_err(|e| CliError::input(format!("writing {}: {e}", p.display())))
    };
    std::fs::create_dir_all(dir.join("src"))
        .map_err(|e| CliError::input(format!("creating {}: {e}", dir.display())))?;
    write(dir.join("Cargo.toml"), &manifest)?;
    write(dir.join("src").join("lib.rs"), &src)?;
    write(dir.join(".gitignore"), "/target\n")?;
    // Start from the versions the SDK is tested with (cargo drops the
    // entries the crate does not use), so that the first build needs no
    // registry index and works offline when those crates are cached.
    let lock = sdk.join("..").join("Cargo.lock");
    if lock.is_file() {
        std::fs::copy(&lock, dir.join("Cargo.lock"))
            .map_err(|e| CliError::input(format!("copying {}: {e}", lock.display())))?;
    }
    Ok(())
}

fn to_type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Builds the crate in `crate_dir` for `wasm32-wasip2` and returns the
/// component's path (copied to `output` when given).
pub fn build(crate_dir: &Path, output: Option<&Path>) -> Result<PathBuf, CliError> {
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(CliError::input(format!(
            "{} has no Cargo.toml",
            crate_dir.display()
        )));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| CliError::input(format!("cannot run cargo: {e}")))?;
    if !out.status.success() {
        return Err(CliError::input(format!(
            "cargo build of {} failed (see the compiler output above; is the target installed? `rustup target add wasm32-wasip2`)",
            crate_dir.display()
        )));
    }
    let mut wasm = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if msg["manifest_path"].as_str().map(Path::new)
            != std::fs::canonicalize(&manifest).ok().as_deref()
        {
            continue;
        }
        if let Some(files) = msg["filenames"].as_array() {
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(".wasm") {
                    wasm = Some(PathBuf::from(f));
                }
            }
        }
    }
    let wasm = wasm.ok_or_else(|| {
        CliError::input(format!(
            "cargo built {} but produced no .wasm (is it a `cdylib` crate?)",
            crate_dir.display()
        ))
    })?;
    match output {
        Some(o) => {
            std::fs::copy(&wasm, o)
                .map_err(|e| CliError::input(format!("writing {}: {e}", o.display())))?;
            Ok(o.to_path_buf())
        }
        None => Ok(wasm),
    }
}

const MODEL_TEMPLATE: &str = r#"//! __NAME__: an airlock model plugin.
//!
//! The host calls `metadata` to learn the model's inputs and outputs and
//! `predict` on every batch, each time in a fresh sandboxed instance. A
//! model that needs weights reads them from its data bundle with
//! `airlock_guest::bundle::read_model_file()`.
//!
//! Build and try it:
//!
//! ```text
//! airlock plugin build __NAME__ -o __NAME__.wasm
//! airlock plugin run __NAME__.wasm --data rows.csv   # a CSV with a column `x`
//! ```

use airlock_guest::{Batch, Feature, FeatureKind, Model, ModelMetadata, OutputSchema};
use airlock_guest::{PluginError, Predictions, Task};

/// The model.
pub struct __TYPE__;

impl Model for __TYPE__ {
    fn metadata() -> ModelMetadata {
        ModelMetadata {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            inputs: vec![Feature {
                name: "x".into(),
                kind: FeatureKind::Numeric,
            }],
            output: OutputSchema {
                task: Task::Regression,
                classes: vec![],
            },
        }
    }

    fn predict(batch: Batch) -> Result<Predictions, PluginError> {
        // Replace with your model: here, y = 2x + 1.
        let x = batch.numeric("x")?;
        Ok(Predictions::regression(
            x.iter().map(|v| 2.0 * v + 1.0).collect(),
        ))
    }
}

airlock_guest::export_model!(__TYPE__);
"#;

const VALIDATOR_TEMPLATE: &str = r#"//! __NAME__: an airlock validator plugin.
//!
//! One step of a deployment gate: it receives the step's config, the
//! evaluation rows, their labels and the candidate's predictions, and
//! returns a verdict with findings and metrics.
//!
//! Build it with `airlock plugin build __NAME__ -o __NAME__.wasm`, then use it
//! in a gate file and run `airlock gate run gate.toml --model <model.wasm>`:
//!
//! ```toml
//! [[steps]]
//! name = "accuracy"
//! plugin = "__NAME__.wasm"   # relative to the gate file
//! dataset = "eval.csv"
//! label = "target"           # the label column: class indices 0, 1, ...
//! [steps.config]
//! min_accuracy = 0.9
//! ```

use airlock_guest::stats::metrics;
use airlock_guest::{Context, PluginError, Report, Validator, ValidatorInfo, Verdict};

/// The step's configuration (`[steps.config]` in the gate file).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    min_accuracy: f64,
}

/// The validator.
pub struct __TYPE__;

impl Validator for __TYPE__ {
    fn describe() -> ValidatorInfo {
        let about = "accuracy at or above a threshold";
        ValidatorInfo::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"), about)
    }

    fn validate(ctx: Context) -> Result<Verdict, PluginError> {
        let cfg: Config = ctx.config()?;
        let predicted = ctx.candidate_predictions.predicted_classes();
        let accuracy = metrics::accuracy(ctx.labels()?, &predicted)?;
        let mut report = Report::new();
        report.metric("accuracy", accuracy).require(
            accuracy >= cfg.min_accuracy,
            "accuracy-below-threshold",
            format!("accuracy {accuracy:.4} is below {}", cfg.min_accuracy),
        );
        Ok(report.finish())
    }
}

airlock_guest::export_validator!(__TYPE__);
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert_eq!(to_type_name("my-model_v2"), "MyModelV2");
    }

    #[test]
    fn refuses_bad_names_and_existing_dirs() {
        let d = tempfile::tempdir().unwrap();
        assert!(create(Template::Model, "9x", &d.path().join("a"), None).is_err());
        assert!(create(Template::Model, "a b", &d.path().join("a"), None).is_err());
        let e = create(Template::Model, "ok", d.path(), None).unwrap_err();
        assert!(matches!(e, CliError::Input(m) if m.contains("already exists")));
    }

    #[test]
    fn writes_a_crate() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("acc");
        create(Template::Validator, "acc", &dir, None).unwrap();
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_validator!(Acc)"));
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(toml.contains("features = [\"validator\"]"));
        assert!(
            dir.join("Cargo.lock").is_file(),
            "the SDK's lock file is copied"
        );
    }
}
