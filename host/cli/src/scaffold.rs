//! `airlock plugin new` and `airlock plugin build`: a guest crate that
//! builds as is, and the cargo invocation that turns it into a component.

mod templates;

use super::exit::CliError;
use std::path::{Path, PathBuf};
use std::process::Command;
use templates::{MODEL_TEMPLATE, VALIDATOR_TEMPLATE};

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
        .join("..")
        .join("guest-sdk")
}

/// Rust keywords (strict and reserved, 2024 edition): a crate cannot be
/// called by one.
const KEYWORDS: [&str; 52] = [
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Library names a plugin crate cannot take: Rust's built-in crates and the
/// crates every plugin depends on (the plugin's own library would shadow
/// them).
const TAKEN: [&str; 8] = [
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
    "airlock_guest",
    "serde",
    "serde_json",
];

/// Checks that `name` can be a plugin crate's name, or says which rule it
/// breaks. Names that clash with the SDK's items (`validator`, `model`,
/// `report`, ...) are fine: the template's type is named apart from them
/// (see [`type_name`]).
pub fn check_name(name: &str) -> Result<(), CliError> {
    let refuse = |rule: &str| {
        Err(CliError::input(format!(
            "`{name}` cannot be a plugin name: {rule}"
        )))
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return refuse("use only ASCII letters, digits, `-` and `_`");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return refuse("it must start with a letter");
    }
    if KEYWORDS.contains(&name) {
        return refuse("it is a Rust keyword");
    }
    let lib = name.replace('-', "_");
    if TAKEN.contains(&lib.as_str()) {
        return refuse(&format!(
            "its library name `{lib}` is taken by a built-in Rust crate or a crate every plugin depends on"
        ));
    }
    Ok(())
}

/// Writes a new guest crate into `dir` (which must not exist yet).
pub fn create(t: Template, name: &str, dir: &Path, sdk: Option<&Path>) -> Result<(), CliError> {
    check_name(name)?;
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
    let ty = type_name(t, name);
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

/// The plugin type's name: the crate name in CamelCase ending in the world
/// (`min-accuracy` → `MinAccuracyValidator`, `my-model` → `MyModel`), or
/// `ValidatorPlugin` / `ModelPlugin` for a crate named after its world. It
/// therefore never equals an SDK item the template imports (`Validator`,
/// `Report`, `Batch`, ...) nor a prelude name (`Result`, `Option`, ...).
fn type_name(t: Template, name: &str) -> String {
    let world = match t {
        Template::Model => "Model",
        Template::Validator => "Validator",
    };
    let camel = to_type_name(name);
    if camel == world {
        format!("{world}Plugin")
    } else if camel.ends_with(world) {
        camel
    } else {
        format!("{camel}{world}")
    }
}

/// Builds the crate in `crate_dir` for `wasm32-wasip2` and returns the
/// component's path (copied to `output` when given).
///
/// The build is reproducible: the absolute paths that would otherwise end
/// up in the component (the crate's and its path dependencies' folders, the
/// workspace and target folders, the cargo registry under CARGO_HOME and the
/// toolchain's sysroot) are remapped to fixed names, so the same source
/// gives the same digest wherever it is checked out.
pub fn build(crate_dir: &Path, output: Option<&Path>) -> Result<PathBuf, CliError> {
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(CliError::input(format!(
            "{} has no Cargo.toml",
            crate_dir.display()
        )));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let remaps = path_remaps(&cargo, &manifest)?;
    // `cargo rustc` passes the plugin's own remaps to the plugin crate only,
    // so dependencies keep one set of flags (and stay cached) for every
    // plugin sharing a target directory.
    let out = Command::new(&cargo)
        .args(["rustc", "--lib", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--message-format", "json-render-diagnostics"])
        .env("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags(&remaps.shared))
        .env_remove("RUSTFLAGS")
        .arg("--")
        .args(remap_args(&remaps.own))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| CliError::input(format!("cannot run cargo: {e}")))?;
    if !out.status.success() {
        return Err(CliError::input(match wasm_target_installed() {
            Some(false) => format!(
                "cannot build {}: the wasm32-wasip2 target is not installed; run `rustup target add wasm32-wasip2`",
                crate_dir.display()
            ),
            _ => format!(
                "cargo build of {} failed; see cargo's errors above",
                crate_dir.display()
            ),
        }));
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

/// Whether the toolchain `rustc` has the `wasm32-wasip2` standard library:
/// `Some(false)` only when it certainly does not, so that `plugin build`
/// blames the target only when it is really missing.
fn wasm_target_installed() -> Option<bool> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?;
    Some(has_core_library(Path::new(dir.trim())))
}

/// Whether a target's library folder holds its `core` crate (rustc prints
/// the folder whether or not the target is installed).
fn has_core_library(dir: &Path) -> bool {
    std::fs::read_dir(dir).ok().is_some_and(|entries| {
        entries.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("libcore-") && n.ends_with(".rlib")
        })
    })
}

/// Path prefixes to remap, as `(from, to)`, in two sets: `shared` applies
/// to every crate of the build (CARGO_HOME, the sysroot, the target folder
/// and path dependencies outside the plugin's workspace, such as the SDK),
/// `own` to the plugin crate only (its workspace and package folders), so
/// that the shared flags, and with them cargo's cache of the dependencies,
/// are the same for every plugin built on this machine.
struct Remaps {
    shared: Vec<(PathBuf, String)>,
    own: Vec<(PathBuf, String)>,
}

fn path_remaps(cargo: &str, manifest: &Path) -> Result<Remaps, CliError> {
    let mut shared: Vec<(PathBuf, String)> = Vec::new();
    if let Some(home) = cargo_home() {
        shared.push((home, "/cargo".into()));
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output()
        && out.status.success()
        && let Ok(root) = String::from_utf8(out.stdout)
        && !root.trim().is_empty()
    {
        shared.push((PathBuf::from(root.trim()), "/rustc/sysroot".into()));
    }
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .arg("--manifest-path")
        .arg(manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| CliError::input(format!("cannot run cargo: {e}")))?;
    if !out.status.success() {
        return Err(CliError::input(format!(
            "cargo metadata for {} failed; see cargo's errors above",
            manifest.display()
        )));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| CliError::input(format!("cargo metadata printed no JSON: {e}")))?;
    if let Some(p) = meta["target_directory"].as_str() {
        shared.push((PathBuf::from(p), "/airlock/target".into()));
    }
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str())
        .collect();
    let mut own: Vec<(PathBuf, String)> = Vec::new();
    if let Some(p) = meta["workspace_root"].as_str() {
        // rustc runs in the workspace root for its members and records that
        // folder in debug info. In a workspace of several plugins (airlock's
        // own) every member shares it, so it goes with the shared flags; a
        // standalone crate is its own workspace, so it stays with the crate.
        let remap = (PathBuf::from(p), "/airlock/workspace".to_string());
        if members.len() > 1 {
            shared.push(remap);
        } else {
            own.push(remap);
        }
    }
    let wanted = std::fs::canonicalize(manifest).ok();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        // Registry and git packages live under CARGO_HOME; only path
        // packages need their own remap.
        if !pkg["source"].is_null() {
            continue;
        }
        let (Some(name), Some(path), Some(id)) = (
            pkg["name"].as_str(),
            pkg["manifest_path"].as_str(),
            pkg["id"].as_str(),
        ) else {
            continue;
        };
        let Some(dir) = Path::new(path).parent() else {
            continue;
        };
        let remap = (dir.to_path_buf(), format!("/airlock/src/{name}"));
        if std::fs::canonicalize(path).ok() == wanted {
            own.push(remap);
        } else if !members.contains(&id) {
            // Workspace members reach rustc as paths relative to the
            // workspace root; outside ones (the SDK of a scaffolded crate)
            // as absolute paths.
            shared.push(remap);
        }
    }
    Ok(Remaps { shared, own })
}

/// `--remap-path-prefix` arguments for rustc.
fn remap_args(remaps: &[(PathBuf, String)]) -> Vec<String> {
    remaps
        .iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect()
}

/// CARGO_HOME, or `~/.cargo` when unset.
fn cargo_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(h));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo"))
}

/// The rustflags for a reproducible build: the caller's own flags
/// (`CARGO_ENCODED_RUSTFLAGS`, else `RUSTFLAGS`) followed by one
/// `--remap-path-prefix` per remap, joined with 0x1f as cargo expects, so
/// paths with spaces survive.
fn encoded_rustflags(remaps: &[(PathBuf, String)]) -> String {
    let mut flags: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(f) if !f.is_empty() => f.split('\x1f').map(str::to_string).collect(),
        _ => std::env::var("RUSTFLAGS")
            .map(|f| f.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    };
    flags.extend(remap_args(remaps));
    flags.join("\x1f")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert_eq!(to_type_name("my-model_v2"), "MyModelV2");
        assert_eq!(type_name(Template::Model, "my-model"), "MyModel");
        assert_eq!(type_name(Template::Validator, "acc"), "AccValidator");
        assert_eq!(
            type_name(Template::Validator, "validator"),
            "ValidatorPlugin"
        );
        assert_eq!(type_name(Template::Model, "model"), "ModelPlugin");
        assert_eq!(type_name(Template::Validator, "report"), "ReportValidator");
        assert_eq!(type_name(Template::Model, "result"), "ResultModel");
    }

    fn refused(name: &str) -> String {
        let d = tempfile::tempdir().unwrap();
        match create(Template::Validator, name, &d.path().join("x"), None) {
            Err(CliError::Input(m)) => m,
            other => panic!("`{name}` was not refused: {other:?}"),
        }
    }

    #[test]
    fn names_that_cannot_be_crates_are_refused_naming_the_rule() {
        assert_eq!(
            refused("_"),
            "`_` cannot be a plugin name: it must start with a letter"
        );
        assert_eq!(
            refused("9x"),
            "`9x` cannot be a plugin name: it must start with a letter"
        );
        assert_eq!(
            refused("a b"),
            "`a b` cannot be a plugin name: use only ASCII letters, digits, `-` and `_`"
        );
        assert_eq!(refused(""), "`` cannot be a plugin name: it is empty");
        assert_eq!(
            refused("fn"),
            "`fn` cannot be a plugin name: it is a Rust keyword"
        );
        assert_eq!(
            refused("serde-json"),
            "`serde-json` cannot be a plugin name: its library name `serde_json` is taken by a built-in Rust crate or a crate every plugin depends on"
        );
        for ok in ["validator", "model", "report", "batch", "result", "a-b_c9"] {
            check_name(ok).unwrap();
        }
    }

    #[test]
    fn refuses_existing_dirs() {
        let d = tempfile::tempdir().unwrap();
        let e = create(Template::Model, "ok", d.path(), None).unwrap_err();
        assert!(matches!(e, CliError::Input(m) if m.contains("already exists")));
    }

    #[test]
    fn writes_a_crate() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("acc");
        create(Template::Validator, "acc", &dir, None).unwrap();
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_validator!(AccValidator)"));
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(toml.contains("features = [\"validator\"]"));
        assert!(
            dir.join("Cargo.lock").is_file(),
            "the SDK's lock file is copied"
        );
    }

    #[test]
    fn the_target_counts_as_missing_only_without_its_core_library() {
        let d = tempfile::tempdir().unwrap();
        assert!(!has_core_library(&d.path().join("wasm32-wasip2/lib")));
        std::fs::write(d.path().join("libstd-0123.rlib"), b"").unwrap();
        assert!(!has_core_library(d.path()));
        std::fs::write(d.path().join("libcore-0123.rlib"), b"").unwrap();
        assert!(has_core_library(d.path()));
        // The toolchain running these tests has the target (it built the
        // plugins), so a real compile error is never blamed on it.
        assert_eq!(wasm_target_installed(), Some(true));
    }

    #[test]
    fn rustflags_keep_paths_with_spaces_whole() {
        let flags = encoded_rustflags(&[(PathBuf::from("/tmp/my plugins/a"), "/x".into())]);
        assert!(
            flags
                .split('\x1f')
                .any(|f| f == "--remap-path-prefix=/tmp/my plugins/a=/x"),
            "{flags:?}"
        );
    }
}
