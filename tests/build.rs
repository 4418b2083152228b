//! Builds every guest crate (first-party plugins and hostile test plugins)
//! to a `wasm32-wasip2` component, so that a plain `cargo test` has the
//! components its tests load.
//!
//! Crates are built in groups by SDK world feature (model, validator), and
//! crates that use neither one at a time, because Cargo unifies features
//! within one invocation and a component must carry exactly one world.
//!
//! The components are reproducible: the checkout, the cargo registry
//! (CARGO_HOME) and the toolchain's sysroot are remapped to fixed names with
//! `--remap-path-prefix`, so no absolute path of this machine ends up in a
//! component and its digest does not depend on where the repository lives.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let target_dir = root.join("target").join("wasm-plugins");

    for dir in ["plugins", "guest-sdk", "wit", "tests/hostile"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for base in ["plugins", "tests/hostile"] {
        let Ok(entries) = std::fs::read_dir(root.join(base)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            let Some((name, group)) = package_of(&dir.join("Cargo.toml")) else {
                continue;
            };
            match groups
                .iter_mut()
                .find(|(g, _)| *g == group && g != "single")
            {
                Some((_, names)) => names.push(name),
                None => groups.push((group, vec![name])),
            }
        }
    }

    let rustflags = remap_flags(&root);
    for (_, packages) in &groups {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&root)
            .arg("build")
            .arg("--target")
            .arg("wasm32-wasip2")
            .arg("--profile")
            .arg("plugin")
            .arg("--target-dir")
            .arg(&target_dir);
        for p in packages {
            cmd.arg("-p").arg(p);
        }
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_BUILD_RUSTFLAGS",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("CARGO_ENCODED_RUSTFLAGS", &rustflags);
        let status = cmd
            .status()
            .expect("running cargo to build the guest plugins");
        if !status.success() {
            panic!(
                "building guest plugins {packages:?} for wasm32-wasip2 failed \
                 (is the target installed? `rustup target add wasm32-wasip2`)"
            );
        }
    }

    let out = target_dir.join("wasm32-wasip2").join("plugin");
    publish_plugins(&out, &root.join("target").join("plugins"));
    println!("cargo:rustc-env=AIRLOCK_PLUGIN_DIR={}", out.display());
    println!("cargo:rustc-env=AIRLOCK_REPO_ROOT={}", root.display());
}

/// The first-party components (and the demo's attacker) under the short
/// names the README, the example gate's `plugin_dir` and every command in
/// the docs use: `target/plugins/xgboost.wasm`, `.../performance.wasm`, ...
/// So `cargo build --workspace` on a fresh clone leaves them where the
/// docs say (tested by `readme::the_using_it_section_runs_as_written`).
fn publish_plugins(built: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).expect("creating target/plugins");
    let mut names: Vec<(String, String)> = vec![
        ("airlock_model_xgboost".into(), "xgboost".into()),
        ("airlock_model_linear".into(), "linear".into()),
        ("hostile_sleeper".into(), "sleeper".into()),
    ];
    for v in [
        "schema",
        "golden",
        "performance",
        "drift",
        "robustness",
        "fairness",
    ] {
        names.push((format!("airlock_validator_{v}"), v.to_string()));
    }
    for (lib, short) in names {
        let from = built.join(format!("{lib}.wasm"));
        let to = dir.join(format!("{short}.wasm"));
        // Through a temporary name: a reader never sees half a component.
        let tmp = dir.join(format!(".{short}.wasm.tmp"));
        std::fs::copy(&from, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &to))
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
    }
}

/// `--remap-path-prefix` flags (0x1f-separated, as CARGO_ENCODED_RUSTFLAGS
/// wants, so paths with spaces survive) for CARGO_HOME, the sysroot and the
/// repository root, broadest first (rustc applies the last match).
fn remap_flags(root: &Path) -> String {
    let mut remaps: Vec<(PathBuf, &str)> = Vec::new();
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = home {
        remaps.push((home, "/cargo"));
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output()
        && out.status.success()
    {
        let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !sysroot.is_empty() {
            remaps.push((PathBuf::from(sysroot), "/rustc/sysroot"));
        }
    }
    remaps.push((root.to_path_buf(), "/airlock/workspace"));
    remaps
        .iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect::<Vec<_>>()
        .join("\x1f")
}

/// The package name and build group of a guest crate's manifest.
fn package_of(manifest: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let name = text.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix("name")?.trim_start().strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_string())
    })?;
    let group = if text.contains("features = [\"model\"]") {
        "model"
    } else if text.contains("features = [\"validator\"]") {
        "validator"
    } else {
        "single"
    };
    Some((name, group.to_string()))
}
