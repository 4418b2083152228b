//! The plugin author's path, end to end, through the real `airlock` binary:
//! `plugin new` a validator and a model, `plugin build` both, `plugin
//! inspect` them, `plugin run` the model on a CSV, and `gate run` a gate
//! that uses the new validator against the breast-cancer XGBoost example.
//!
//! Building a freshly scaffolded crate compiles wit-bindgen and the guest SDK
//! for `wasm32-wasip2`, which is slow, so everything happens in one test and
//! the guest crates share a target directory under
//! `target/scaffold-test` that survives between runs.
//!
//! The other tests hold what a plugin author ran into: names that clash with
//! the SDK's items, compile errors blamed on the wasm target, and the same
//! source giving different digests in different folders.

use airlock_tests::{airlock_bin, cache_dir, example, plugin, repo_root};
use std::path::Path;
use std::process::{Command, Output};

/// Runs `airlock` in `cwd` with the shared compile cache and guest target dir.
fn airlock(cwd: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(airlock_bin());
    c.current_dir(cwd).args(args);
    if airlock_tests::takes_cache_dir(args) {
        c.arg("--cache-dir").arg(cache_dir());
    }
    c.env(
        "CARGO_TARGET_DIR",
        repo_root().join("target").join("scaffold-test"),
    )
    .env_remove("CARGO_BUILD_TARGET")
    .env_remove("CARGO_ENCODED_RUSTFLAGS")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .output()
    .expect("running airlock")
}

/// Runs `airlock` and insists on exit code `code`.
fn expect(cwd: &Path, args: &[&str], code: i32) -> Output {
    let o = airlock(cwd, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "airlock {}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A gate with one step that runs `validator` with `config` on the
/// breast-cancer evaluation rows.
fn write_gate(path: &Path, validator: &Path, config: &str) {
    let text = format!(
        "name = \"author\"\n\n[[steps]]\nname = \"accuracy\"\nplugin = '{}'\n\
         dataset = '{}'\nlabel = \"target\"\n[steps.config]\n{config}\n",
        s(validator),
        s(&example().join("data").join("eval.csv")),
    );
    std::fs::write(path, text).unwrap();
}

/// Checks what `plugin inspect --json` says about a freshly built plugin.
fn check_inspect(dir: &Path, wasm: &Path, world: &str, own_import: &str) {
    let v = json(&expect(dir, &["plugin", "inspect", &s(wasm), "--json"], 0));
    assert_eq!(v["world"], world, "{v:#}");
    assert!(
        v["digest"].as_str().unwrap().starts_with("sha256:"),
        "{v:#}"
    );
    let imports: Vec<&str> = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(imports.contains(&own_import), "{imports:?}");
    assert!(
        imports
            .iter()
            .all(|i| i.starts_with("wasi:") || i.starts_with("airlock:plugin/")),
        "{imports:?}"
    );
    assert_eq!(v["refused_imports"], serde_json::json!([]), "{v:#}");
}

#[test]
fn author_path_from_new_to_a_passing_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // 1. Scaffold.
    let o = expect(dir, &["plugin", "new", "validator", "min-accuracy"], 0);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("airlock plugin build"),
        "no build hint: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    expect(dir, &["plugin", "new", "model", "my-model"], 0);
    for c in ["min-accuracy", "my-model"] {
        assert!(dir.join(c).join("Cargo.toml").is_file());
        assert!(dir.join(c).join("Cargo.lock").is_file());
    }
    let e = expect(dir, &["plugin", "new", "model", "my-model"], 2);
    assert!(String::from_utf8_lossy(&e.stderr).contains("already exists"));

    // The templates are what `cargo fmt` would write.
    let rustfmt = Command::new("rustfmt").arg("--version").output();
    if rustfmt.is_ok_and(|o| o.status.success()) {
        let o = Command::new("rustfmt")
            .args(["--edition", "2024", "--check"])
            .arg(dir.join("min-accuracy/src/lib.rs"))
            .arg(dir.join("my-model/src/lib.rs"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "templates are not rustfmt-clean:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }

    // 2. Build.
    let validator = dir.join("min-accuracy.wasm");
    let model = dir.join("my-model.wasm");
    let o = expect(
        dir,
        &["plugin", "build", "min-accuracy", "-o", &s(&validator)],
        0,
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("validator plugin, sha256:"));
    let o = expect(dir, &["plugin", "build", "my-model", "-o", &s(&model)], 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("model plugin, sha256:"));

    // 3. Inspect.
    check_inspect(
        dir,
        &validator,
        "validator",
        "airlock:plugin/validation@0.2.0",
    );
    check_inspect(dir, &model, "model", "airlock:plugin/types@0.2.0");

    // 4. Run the model: the template computes 2x + 1.
    let rows = dir.join("rows.csv");
    std::fs::write(&rows, "x\n0\n1\n2.5\n-3\n").unwrap();
    let v = json(&expect(
        dir,
        &["plugin", "run", &s(&model), "--data", &s(&rows), "--json"],
        0,
    ));
    assert_eq!(v["rows"], 4, "{v:#}");
    assert_eq!(v["model"]["name"], "my-model", "{v:#}");
    let predictions: Vec<f64> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert_eq!(predictions, [1.0, 3.0, 6.0, -5.0]);

    // 5. Gate the XGBoost example with the new validator.
    let xgboost = plugin("airlock_model_xgboost");
    let bundle = example().join("model-v1");
    let gate = dir.join("gate.toml");
    let run = |code: i32| {
        json(&expect(
            dir,
            &[
                "gate",
                "run",
                &s(&gate),
                "--model",
                &s(&xgboost),
                "--bundle",
                &s(&bundle),
                "--json",
            ],
            code,
        ))
    };

    write_gate(&gate, &validator, "min_accuracy = 0.9");
    let v = run(0);
    assert_eq!(v["passed"], true, "{v:#}");
    let step = &v["steps"][0];
    assert_eq!(step["validator"]["name"], "min-accuracy", "{v:#}");
    let accuracy = step["metrics"]["accuracy"].as_f64().unwrap();
    assert!((accuracy - 0.9766).abs() < 1e-3, "{accuracy}");

    write_gate(&gate, &validator, "min_accuracy = 0.999");
    let v = run(1);
    assert_eq!(v["passed"], false, "{v:#}");
    let finding = &v["steps"][0]["findings"][0];
    assert_eq!(finding["severity"], "error", "{v:#}");
    assert_eq!(finding["code"], "accuracy-below-threshold", "{v:#}");

    // A misspelt config key is an error of the gate (exit 2), found by the
    // validator's dry run before any step runs, naming the step, the key
    // and its line in the gate file.
    write_gate(&gate, &validator, "min_acuracy = 0.9");
    let o = expect(
        dir,
        &[
            "gate",
            "run",
            &s(&gate),
            "--model",
            &s(&xgboost),
            "--bundle",
            &s(&bundle),
        ],
        2,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.stdout.is_empty(), "no step may have run");
    assert!(
        stderr.contains(
            "step `accuracy`: bad-config: config key `min_acuracy`: unknown key; the known key is `min_accuracy`"
        ),
        "{stderr}"
    );
    let line = std::fs::read_to_string(&gate)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("min_acuracy"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("gate.toml:{line}:1: ")),
        "{stderr}"
    );
}

/// Runs `airlock plugin build <crate> -o <out>` and returns the digest it
/// printed.
fn build_digest(cwd: &Path, crate_dir: &Path, out: &Path) -> String {
    let o = expect(cwd, &["plugin", "build", &s(crate_dir), "-o", &s(out)], 0);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let digest = stdout
        .split("sha256:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in {stdout}"));
    format!("sha256:{}", &digest[..64])
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn names_that_clash_with_sdk_items_scaffold_crates_that_build() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // `_` cannot be a crate at all: refused, naming the rule.
    let o = expect(dir, &["plugin", "new", "validator", "_"], 2);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("`_` cannot be a plugin name: it must start with a letter"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!dir.join("_").exists());
    // The others clash with what the template imports (`Validator`,
    // `Model`, `Report`) and build anyway.
    for (world, name) in [
        ("validator", "validator"),
        ("model", "model"),
        ("validator", "report"),
    ] {
        expect(dir, &["plugin", "new", world, name], 0);
        let out = dir.join(format!("{name}.wasm"));
        let o = expect(dir, &["plugin", "build", name, "-o", &s(&out)], 0);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&format!("({world} plugin, sha256:")),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

#[test]
fn a_compile_error_is_shown_as_such_and_not_blamed_on_the_wasm_target() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    expect(dir, &["plugin", "new", "model", "broken"], 0);
    let lib = dir.join("broken/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        text.replace("2.0 * v + 1.0", "2.0 * v + undefined_name"),
    )
    .unwrap();
    let o = expect(dir, &["plugin", "build", "broken"], 2);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("cannot find value `undefined_name`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cargo build of broken failed; see cargo's errors above"),
        "{stderr}"
    );
    assert!(!stderr.contains("rustup target add"), "{stderr}");
}

#[test]
fn the_same_plugin_source_builds_to_the_same_digest_in_two_folders() {
    let tmp = tempfile::tempdir().unwrap();
    // Different names and depths, one with a space, as two checkouts would be.
    let first = tmp.path().join("first checkout");
    let second = tmp.path().join("elsewhere").join("second");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    expect(&first, &["plugin", "new", "validator", "same-source"], 0);
    let copy = second.join("same-source");
    std::fs::create_dir_all(copy.join("src")).unwrap();
    for f in ["Cargo.toml", "Cargo.lock", "src/lib.rs"] {
        std::fs::copy(first.join("same-source").join(f), copy.join(f)).unwrap();
    }
    let a = build_digest(
        &first,
        &first.join("same-source"),
        &tmp.path().join("a.wasm"),
    );
    let b = build_digest(&second, &copy, &tmp.path().join("b.wasm"));
    assert_eq!(a, b, "the same source built in two folders");
    for wasm in ["a.wasm", "b.wasm"] {
        let bytes = std::fs::read(tmp.path().join(wasm)).unwrap();
        let tmp_path = tmp.path().display().to_string();
        assert!(!contains(&bytes, &tmp_path), "{wasm} embeds {tmp_path}");
        assert!(
            !contains(&bytes, "/.cargo/registry"),
            "{wasm} embeds the registry path"
        );
    }
}

#[test]
fn first_party_plugins_embed_no_machine_paths() {
    let dir = plugin("airlock_model_xgboost")
        .parent()
        .unwrap()
        .to_path_buf();
    let root = repo_root().display().to_string();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for needle in ["/work/", "/root/.cargo", "/.cargo/registry", root.as_str()] {
            assert!(
                !contains(&bytes, needle),
                "{} embeds the path `{needle}`",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 8,
        "only {checked} components in {}",
        dir.display()
    );
}
