//! The `airlock` CLI contract that users and scripts rely on: JSON shapes,
//! exit codes (0 pass, 1 refused or plugin failure, 2 bad input) and
//! one-line errors that name the problem.

use airlock_tests::{airlock_bin, example, plugin};
use std::path::Path;
use std::process::{Command, Output};

fn airlock(args: &[&str], cache: &Path) -> Output {
    let mut c = Command::new(airlock_bin());
    c.args(args);
    if airlock_tests::takes_cache_dir(args) {
        c.arg("--cache-dir").arg(cache);
    }
    c.output().expect("running airlock")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn stderr_line(o: &Output) -> String {
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
    e
}

#[test]
fn inspect_json_names_digest_world_imports_exports_capabilities() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = plugin("airlock_validator_robustness");
    let o = airlock(&["plugin", "inspect", &s(&wasm), "--json"], cache.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let digest = airlock_core::digest::Digest::of(&std::fs::read(&wasm).unwrap());
    assert_eq!(v["digest"], digest.to_string());
    assert_eq!(v["world"], "validator");
    let imports: Vec<&str> = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        imports.contains(&"airlock:plugin/candidate@0.2.0"),
        "{imports:?}"
    );
    let exports: Vec<&str> = v["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert_eq!(exports, ["describe", "validate"]);
    let caps: Vec<&str> = v["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(caps.contains(&"candidate"), "{caps:?}");
    assert_eq!(v["refused_imports"].as_array().unwrap().len(), 0);

    // A component that would be refused says so, naming the import.
    let o = airlock(
        &["plugin", "inspect", &s(&plugin("hostile_import")), "--json"],
        cache.path(),
    );
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["refused_imports"],
        serde_json::json!(["evil:exfil/leak@1.0.0"])
    );
}

#[test]
fn run_json_gives_one_prediction_per_row_with_fuel_and_duration() {
    let cache = tempfile::tempdir().unwrap();
    let o = airlock(
        &[
            "plugin",
            "run",
            &s(&plugin("airlock_model_xgboost")),
            "--data",
            &s(&example().join("data/golden.csv")),
            "--bundle",
            &s(&example().join("model-v1")),
            "--json",
        ],
        cache.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 10);
    let golden = std::fs::read_to_string(example().join("data/golden.csv")).unwrap();
    let first = golden.lines().nth(1).unwrap();
    let expected: f64 = first.rsplit(',').next().unwrap().parse().unwrap();
    let p = preds[0].as_array().unwrap();
    assert_eq!(p.len(), 2, "binary: probabilities of both classes");
    assert!((p[1].as_f64().unwrap() - expected).abs() < 1e-9);
    assert!(v["fuel_used"].as_u64().unwrap() > 0);
    assert!(v["duration_us"].as_f64().unwrap() > 0.0);
}

#[test]
fn gate_exit_codes_are_0_pass_1_refused_2_error() {
    let cache = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    for v in ["schema", "golden", "performance", "robustness", "drift"] {
        std::fs::copy(
            plugin(&format!("airlock_validator_{v}")),
            plugins.path().join(format!("{v}.wasm")),
        )
        .unwrap();
    }
    let model = s(&plugin("airlock_model_xgboost"));
    let gate = s(&example().join("gate.toml"));
    let dir = s(plugins.path());
    let base = [
        "gate",
        "run",
        gate.as_str(),
        "--model",
        model.as_str(),
        "--plugin-dir",
        dir.as_str(),
    ];

    let v1 = s(&example().join("model-v1"));
    let mut args = base.to_vec();
    args.extend(["--bundle", v1.as_str(), "--json"]);
    let o = airlock(&args, cache.path());
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["passed"], true);
    assert_eq!(r["steps"].as_array().unwrap().len(), 5);

    let v2 = s(&example().join("model-v2-degraded"));
    let mut args = base.to_vec();
    args.extend([
        "--bundle",
        v2.as_str(),
        "--baseline",
        model.as_str(),
        "--baseline-bundle",
        v1.as_str(),
    ]);
    let o = airlock(&args, cache.path());
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("FAIL  performance"), "{text}");
    assert!(text.contains("REFUSED"), "{text}");

    // A validator where the model belongs: exit 2, one line naming it.
    let wrong = s(&plugin("airlock_validator_schema"));
    let o = airlock(
        &[
            "gate",
            "run",
            gate.as_str(),
            "--model",
            wrong.as_str(),
            "--plugin-dir",
            dir.as_str(),
        ],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_line(&o).contains("expected a model plugin"));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let cache = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let model = s(&plugin("airlock_model_xgboost"));
    let bundle = s(&example().join("model-v1"));

    // A malformed component.
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let o = airlock(&["plugin", "inspect", &s(&junk)], cache.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_line(&o).contains("invalid_component"));

    // The wrong world.
    let o = airlock(
        &[
            "plugin",
            "run",
            &s(&plugin("airlock_validator_golden")),
            "--data",
            &s(&example().join("data/eval.csv")),
        ],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_line(&o).contains("expected a model plugin"));

    // A disallowed import.
    let o = airlock(
        &[
            "plugin",
            "run",
            &s(&plugin("hostile_socket")),
            "--data",
            &s(&example().join("data/eval.csv")),
        ],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr_line(&o);
    assert!(
        e.contains("disallowed_import") && e.contains("wasi:sockets/"),
        "{e}"
    );

    // A CSV missing a column the model needs.
    let csv = tmp.path().join("cut.csv");
    std::fs::write(&csv, "mean_texture,target\n1,0\n").unwrap();
    let o = airlock(
        &[
            "plugin",
            "run",
            &model,
            "--bundle",
            &bundle,
            "--data",
            &s(&csv),
        ],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_line(&o).contains("missing column(s) the model needs: mean_radius"));

    // A non-numeric value.
    let eval = std::fs::read_to_string(example().join("data/eval.csv")).unwrap();
    let mut lines: Vec<String> = eval.lines().take(3).map(str::to_string).collect();
    lines[2] = lines[2].replacen(|c: char| c.is_ascii_digit(), "x", 1);
    let csv = tmp.path().join("bad.csv");
    std::fs::write(&csv, lines.join("\n")).unwrap();
    let o = airlock(
        &[
            "plugin",
            "run",
            &model,
            "--bundle",
            &bundle,
            "--data",
            &s(&csv),
        ],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr_line(&o);
    assert!(
        e.contains("line 3, column `mean_radius`") && e.contains("is not a number"),
        "{e}"
    );

    // A broken gate file.
    let gate = tmp.path().join("gate.toml");
    std::fs::write(
        &gate,
        "name = \"g\"\n[[steps]]\nname = \"a\"\nplugn = \"x\"\n",
    )
    .unwrap();
    let o = airlock(&["gate", "run", &s(&gate), "--model", &model], cache.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_line(&o).contains("plugn"));

    // A plugin failure while running is exit 1, naming the kind.
    let o = airlock(
        &[
            "plugin",
            "run",
            &model,
            "--bundle",
            &bundle,
            "--data",
            &s(&example().join("data/eval.csv")),
            "--fuel",
            "1000",
        ],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr_line(&o).contains("fuel_exhausted"));
}

#[test]
fn a_candidate_whose_metadata_fails_exits_1_in_plugin_run_and_gate_run() {
    // hostile-liar without its bundle cannot read its persona: contract
    // 0.2's `metadata` returns that as its own error (0.1's trapped).
    let cache = tempfile::tempdir().unwrap();
    let liar = s(&plugin("hostile_liar"));
    let eval = s(&example().join("data/eval.csv"));
    let o = airlock(&["plugin", "run", &liar, "--data", &eval], cache.path());
    assert_eq!(o.status.code(), Some(1));
    let e = stderr_line(&o);
    assert!(e.contains("plugin failed: guest_error: no-persona:"), "{e}");
    assert!(e.contains("hint: no --bundle was given"), "{e}");

    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugin("airlock_validator_performance"),
        plugins.path().join("performance.wasm"),
    )
    .unwrap();
    let gate = plugins.path().join("gate.toml");
    std::fs::write(
        &gate,
        format!(
            "name = \"g\"\n[[steps]]\nname = \"performance\"\nplugin = \"performance\"\ndataset = \"{eval}\"\nlabel = \"target\"\n[steps.config]\nmin = {{ accuracy = 0.9 }}\n"
        ),
    )
    .unwrap();
    let o = airlock(&["gate", "run", &s(&gate), "--model", &liar], cache.path());
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("ERROR candidate: guest_error: no-persona"),
        "{text}"
    );
    assert!(
        text.contains("result: REFUSED (the candidate could not be judged)"),
        "{text}"
    );
}

#[test]
fn a_misconfigured_step_exits_2_pointing_at_the_gate_file_line() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugin("airlock_validator_performance"),
        dir.path().join("performance.wasm"),
    )
    .unwrap();
    let eval = s(&example().join("data/eval.csv"));
    let gate = dir.path().join("gate.toml");
    std::fs::write(
        &gate,
        format!(
            "name = \"g\"\n[[steps]]\nname = \"perf\"\nplugin = \"performance\"\ndataset = \"{eval}\"\nlabel = \"target\"\n[steps.config]\nminimum = {{ accuracy = 0.9 }}\n"
        ),
    )
    .unwrap();
    let model = s(&plugin("airlock_model_xgboost"));
    let bundle = s(&example().join("model-v1"));
    let o = airlock(
        &[
            "gate",
            "run",
            &s(&gate),
            "--model",
            &model,
            "--bundle",
            &bundle,
        ],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr_line(&o);
    assert!(
        e.contains(&format!("{}:8:", gate.display())) && e.contains("step `perf`: bad-config:"),
        "{e}"
    );
    assert!(o.stdout.is_empty(), "no step may have run");
}

#[test]
fn a_gate_file_copied_elsewhere_runs_with_base_dir() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugin("airlock_validator_performance"),
        plugins.path().join("performance.wasm"),
    )
    .unwrap();
    let gate = dir.path().join("copied.toml");
    std::fs::write(
        &gate,
        "name = \"g\"\n[[steps]]\nname = \"perf\"\nplugin = \"performance\"\ndataset = \"data/eval.csv\"\nlabel = \"target\"\n[steps.config]\nmin = { accuracy = 0.9 }\n",
    )
    .unwrap();
    let model = s(&plugin("airlock_model_xgboost"));
    let bundle = s(&example().join("model-v1"));
    let args = |base: Option<&str>| {
        let mut a = vec![
            "gate".to_string(),
            "run".into(),
            s(&gate),
            "--model".into(),
            model.clone(),
            "--bundle".into(),
            bundle.clone(),
            "--plugin-dir".into(),
            s(plugins.path()),
        ];
        if let Some(b) = base {
            a.extend(["--base-dir".into(), b.to_string()]);
        }
        a
    };
    // Without it the relative dataset path is looked up beside the copy.
    let a = args(None);
    let o = airlock(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_line(&o).contains("data/eval.csv"));
    let ex = s(&example());
    let a = args(Some(&ex));
    let o = airlock(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        cache.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn plugin_validate_runs_one_validator_without_a_gate_file() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("perf.toml");
    std::fs::write(&cfg, "min = { accuracy = 0.9 }\n").unwrap();
    let args = |cfg: &Path| {
        vec![
            "plugin".to_string(),
            "validate".into(),
            s(&plugin("airlock_validator_performance")),
            "--model".into(),
            s(&plugin("airlock_model_xgboost")),
            "--bundle".into(),
            s(&example().join("model-v1")),
            "--data".into(),
            s(&example().join("data/eval.csv")),
            "--label".into(),
            "target".into(),
            "--step-config".into(),
            s(cfg),
            "--json".into(),
        ]
    };
    let a = args(&cfg);
    let o = airlock(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        cache.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["steps"][0]["status"], "pass");
    assert!(r["steps"][0]["metrics"]["accuracy"].as_f64().unwrap() > 0.9);

    std::fs::write(&cfg, "min = { accuracy = 0.999 }\n").unwrap();
    let o = airlock(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(1));
}

/// The operator's `[data]` caps reach both commands that read datasets,
/// now that they are passed to the reader instead of living in the
/// sandbox's configuration.
#[test]
fn the_host_configs_data_caps_bound_the_datasets_of_plugin_run_and_gate_run() {
    let cache = tempfile::tempdir().unwrap();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("airlock.toml");
    std::fs::write(&cfg, "[data]\nmax_rows = 3\n").unwrap();
    let cfg = s(&cfg);
    let model = s(&plugin("airlock_model_xgboost"));
    let v1 = s(&example().join("model-v1"));
    let golden = example().join("data/golden.csv");

    let o = airlock(
        &[
            "plugin",
            "run",
            model.as_str(),
            "--data",
            &s(&golden),
            "--bundle",
            v1.as_str(),
            "--config",
            cfg.as_str(),
        ],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr_line(&o).trim_end(),
        format!(
            "error: {}: more than 3 rows (line 5 is row 4) exceeds data.max_rows = 3 (raise it in the [data] section of the host config to read this file)",
            golden.display()
        )
    );

    let plugins = tempfile::tempdir().unwrap();
    for v in ["schema", "golden", "performance", "robustness", "drift"] {
        std::fs::copy(
            plugin(&format!("airlock_validator_{v}")),
            plugins.path().join(format!("{v}.wasm")),
        )
        .unwrap();
    }
    let o = airlock(
        &[
            "gate",
            "run",
            &s(&example().join("gate.toml")),
            "--model",
            model.as_str(),
            "--bundle",
            v1.as_str(),
            "--plugin-dir",
            &s(plugins.path()),
            "--config",
            cfg.as_str(),
        ],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let line = stderr_line(&o);
    assert!(
        line.starts_with("error: step `schema`: ")
            && line
                .contains("eval.csv: more than 3 rows (line 5 is row 4) exceeds data.max_rows = 3"),
        "{line}"
    );
}
