//! Builds every guest crate (first-party plugins and hostile test plugins)
//! to a `wasm32-wasip2` component, so that a plain `cargo test` has the
//! components its tests load.
//!
//! Crates are built in groups by SDK world feature (model, validator), and
//! crates that use neither one at a time, because Cargo unifies features
//! within one invocation and a component must carry exactly one world.

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
    println!("cargo:rustc-env=AIRLOCK_PLUGIN_DIR={}", out.display());
    println!("cargo:rustc-env=AIRLOCK_REPO_ROOT={}", root.display());
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
