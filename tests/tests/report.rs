//! The report a gate run produces can be signed: its verdict part is a
//! function of the inputs only, byte for byte, while timings and host paths
//! sit apart in its run part; and a gate run is an owned job that a server
//! can run on a worker thread.

use airlock_gate::runner::load_model;
use airlock_gate::{GateJob, GateReport, GateSpec};
use airlock_tests::{airlock_bin, cache_dir, example, plugin, sandbox};
use serde_json::Value;
use std::sync::Arc;

/// The example gate, loaded from its file, with its plugin names pointed at
/// the test build.
fn example_gate() -> GateSpec {
    let mut spec = GateSpec::load(&example().join("gate.toml")).unwrap();
    for step in &mut spec.steps {
        step.plugin = plugin(&format!("airlock_validator_{}", step.plugin))
            .display()
            .to_string();
    }
    spec
}

/// A job of the example gate on the XGBoost model with bundle `model-v1`,
/// against itself as the baseline.
fn job(seed: u64) -> GateJob {
    let sb = sandbox();
    let model = plugin("airlock_model_xgboost");
    let bundle = example().join("model-v1");
    GateJob {
        candidate: load_model(&sb, &model, Some(&bundle)).unwrap(),
        baseline: Some(load_model(&sb, &model, Some(&bundle)).unwrap()),
        sandbox: sb,
        spec: Arc::new(example_gate()),
        plugin_dir: None,
        seed: Some(seed),
        data_caps: Default::default(),
    }
}

fn verdict_bytes(r: &GateReport) -> Vec<u8> {
    serde_json::to_vec(&r.verdict).unwrap()
}

/// JSON pointers of every leaf where `a` and `b` differ.
fn differences(a: &Value, b: &Value, at: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let null = Value::Null;
                let (u, v) = (x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null));
                differences(u, v, format!("{at}/{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                differences(u, v, format!("{at}/{i}"), out);
            }
        }
        _ if a != b => out.push(at),
        _ => {}
    }
}

#[test]
fn a_gate_job_runs_on_a_spawned_thread_and_matches_the_inline_run() {
    let j = job(42);
    let inline = j.clone().run().unwrap();
    let threaded = std::thread::spawn(move || j.run()).join().unwrap().unwrap();
    assert!(inline.passed, "{}", inline.to_text());
    assert_eq!(threaded.verdict, inline.verdict);
    assert_eq!(verdict_bytes(&threaded), verdict_bytes(&inline));
}

#[test]
fn the_verdict_is_byte_identical_across_runs_with_the_same_seed() {
    let a = job(42).run().unwrap();
    let b = job(42).run().unwrap();
    let bytes = verdict_bytes(&a);
    assert_eq!(bytes, verdict_bytes(&b));

    // No time and no host path in the verdict: they are in the run part.
    let text = String::from_utf8(bytes).unwrap();
    let here = example().display().to_string();
    assert!(!text.contains(&here), "{text}");
    assert!(!text.contains("duration"), "{text}");
    assert!(!text.contains("\"run\""), "{text}");
    let names: Vec<&str> = a.steps.iter().map(|s| s.name.as_str()).collect();
    let run_names: Vec<&str> = a.run.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(run_names, names);
    assert_eq!(
        a.run.gate_file.as_deref(),
        Some(example().join("gate.toml").display().to_string().as_str())
    );
    let drift = a.run.steps.iter().find(|s| s.name == "drift").unwrap();
    assert_eq!(
        drift.dataset,
        example().join("data/eval.csv").display().to_string()
    );
    assert_eq!(
        drift.reference.as_deref(),
        Some(
            example()
                .join("data/train.csv")
                .display()
                .to_string()
                .as_str()
        )
    );
    assert!(drift.plugin.ends_with(".wasm"), "{}", drift.plugin);
    assert!(a.run.started_unix_ms > 1_600_000_000_000);
    assert!(a.run.duration_ms > 0.0);

    // `gate run --json` shows both parts: the verdict's fields at the top,
    // the run beside them.
    let whole: Value = serde_json::to_value(&a).unwrap();
    let mut top = whole.as_object().unwrap().clone();
    let run = top.remove("run").unwrap();
    assert_eq!(
        Value::Object(top),
        serde_json::to_value(&a.verdict).unwrap()
    );
    assert_eq!(run, serde_json::to_value(&a.run).unwrap());
}

#[test]
fn a_different_seed_changes_only_the_seed_and_what_depends_on_it() {
    let a = job(42).run().unwrap();
    let b = job(43).run().unwrap();
    let (va, vb) = (
        serde_json::to_value(&a.verdict).unwrap(),
        serde_json::to_value(&b.verdict).unwrap(),
    );
    let mut diff = Vec::new();
    differences(&va, &vb, String::new(), &mut diff);
    assert!(diff.contains(&"/seed".to_string()), "{diff:?}");
    // The robustness step samples rows and noise from the seed: its
    // metrics, and the fuel its probes took, follow the seed.
    let step_of = |p: &str| -> Option<String> {
        let i: usize = p.strip_prefix("/steps/")?.split('/').next()?.parse().ok()?;
        Some(a.steps[i].name.clone())
    };
    let seeded: Vec<String> = diff.iter().filter_map(|p| step_of(p)).collect();
    assert!(
        seeded.iter().any(|s| s == "robustness"),
        "the robustness sample must follow the seed: {diff:?}"
    );
    for p in &diff {
        let allowed = p == "/seed"
            || p == "/total_fuel_used"
            || step_of(p).is_some_and(|s| s == "robustness" || s == "drift")
                && (p.contains("/metrics/")
                    || p.ends_with("fuel_used")
                    || p.contains("/findings/"));
        assert!(allowed, "{p} changed with the seed: {diff:?}");
    }
}

/// `airlock gate run --json --seed 42` on the example gate with the
/// validators copied into a fresh directory: the report as JSON.
fn gate_run_json() -> (Value, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    for v in ["schema", "golden", "performance", "robustness", "drift"] {
        std::fs::copy(
            plugin(&format!("airlock_validator_{v}")),
            plugins.path().join(format!("{v}.wasm")),
        )
        .unwrap();
    }
    let o = std::process::Command::new(airlock_bin())
        .arg("gate")
        .arg("run")
        .arg(example().join("gate.toml"))
        .arg("--model")
        .arg(plugin("airlock_model_xgboost"))
        .arg("--bundle")
        .arg(example().join("model-v1"))
        .arg("--plugin-dir")
        .arg(plugins.path())
        .args(["--seed", "42", "--json", "--cache-dir"])
        .arg(cache_dir())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    (serde_json::from_slice(&o.stdout).unwrap(), plugins)
}

#[test]
fn gate_run_json_shows_both_parts_and_the_verdict_ignores_where_validators_live() {
    // The same validators from two different directories: only the run
    // part may tell them apart.
    let (mut a, dir_a) = gate_run_json();
    let (mut b, dir_b) = gate_run_json();
    let run_a = a.as_object_mut().unwrap().remove("run").unwrap();
    let run_b = b.as_object_mut().unwrap().remove("run").unwrap();
    assert_eq!(a, b);
    assert_eq!(a["seed"], 42);
    assert_eq!(a["steps"].as_array().unwrap().len(), 5);
    assert_eq!(a["steps"][0].get("plugin"), None);
    for (run, dir) in [(&run_a, &dir_a), (&run_b, &dir_b)] {
        let steps = run["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 5);
        assert_eq!(
            steps[0]["plugin"],
            dir.path().join("schema.wasm").display().to_string()
        );
        assert!(steps[0]["duration_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(
            run["gate_file"],
            example().join("gate.toml").display().to_string()
        );
    }
    assert_ne!(run_a["steps"][0]["plugin"], run_b["steps"][0]["plugin"]);
}

#[test]
fn a_step_failure_names_the_dataset_as_the_gate_file_writes_it() {
    // A model whose probabilities are NaN: the step blames the candidate.
    let persona = tempfile::tempdir().unwrap();
    std::fs::write(
        persona.path().join("liar.txt"),
        "inputs = mean_radius\noutput = nan\n",
    )
    .unwrap();
    let sb = sandbox();
    let text = format!(
        "name = \"nan\"\n[[steps]]\nname = \"performance\"\nplugin = \"{}\"\ndataset = \"data/eval.csv\"\nlabel = \"target\"\n[steps.config]\nmin = {{ accuracy = 0.5 }}\n",
        plugin("airlock_validator_performance").display()
    );
    let j = GateJob {
        candidate: load_model(&sb, &plugin("hostile_liar"), Some(persona.path())).unwrap(),
        baseline: None,
        sandbox: sb,
        spec: Arc::new(GateSpec::parse(&text, &example()).unwrap()),
        plugin_dir: None,
        seed: Some(1),
        data_caps: Default::default(),
    };
    let r = j.run().unwrap();
    let e = r.steps[0].error.as_ref().unwrap();
    assert!(
        e.message.starts_with("candidate failed on data/eval.csv: "),
        "{}",
        e.message
    );
    assert!(
        !serde_json::to_string(&r.verdict)
            .unwrap()
            .contains(&example().display().to_string())
    );
    assert_eq!(
        r.run.steps[0].dataset,
        example().join("data/eval.csv").display().to_string()
    );
}
