//! The plugin author's path, end to end, through the real `airlock` binary:
//! `plugin new` a validator and a model, `plugin build` both, `plugin
//! inspect` them, `plugin run` the model on a CSV, and `gate run` a gate
//! that uses the new validator against the breast-cancer XGBoost example.
//!
//! Building a freshly scaffolded crate compiles wit-bindgen and the guest SDK
//! for `wasm32-wasip2`, which is slow, so everything happens in one test and
//! the guest crates share a target directory under
//! `target/scaffold-test` that survives between runs.

use airlock_tests::{airlock_bin, cache_dir, example, plugin, repo_root};
use std::path::Path;
use std::process::{Command, Output};

/// Runs `airlock` in `cwd` with the shared compile cache and guest target dir.
fn airlock(cwd: &Path, args: &[&str]) -> Output {
    Command::new(airlock_bin())
        .current_dir(cwd)
        .args(args)
        .arg("--cache-dir")
        .arg(cache_dir())
        .env(
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
        "airlock:plugin/validation@0.1.0",
    );
    check_inspect(dir, &model, "model", "airlock:plugin/types@0.1.0");

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
    assert_eq!(step["metrics"][0][0], "accuracy", "{v:#}");
    let accuracy = step["metrics"][0][1].as_f64().unwrap();
    assert!((accuracy - 0.9766).abs() < 1e-3, "{accuracy}");

    write_gate(&gate, &validator, "min_accuracy = 0.999");
    let v = run(1);
    assert_eq!(v["passed"], false, "{v:#}");
    let finding = &v["steps"][0]["findings"][0];
    assert_eq!(finding["severity"], "error", "{v:#}");
    assert_eq!(finding["code"], "accuracy-below-threshold", "{v:#}");

    // A misspelt config key is the validator's own error, naming the key.
    write_gate(&gate, &validator, "min_acuracy = 0.9");
    let v = run(1);
    let error = &v["steps"][0]["error"];
    assert_eq!(error["kind"], "guest_error", "{v:#}");
    assert!(
        error["message"].as_str().unwrap().contains("min_acuracy"),
        "{v:#}"
    );
}
