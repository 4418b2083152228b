//! Pre-initialised models: the host runs a model's `init` once, snapshots
//! the instance and serves every call from a fresh instance of the
//! snapshot. These tests hold the snapshot to what any component is held
//! to — and to more, because it is the output of untrusted code that ran
//! on the host: it is deterministic, capped, isolated per call, and a
//! runaway or failing `init` is a typed failure, never a host crash.

use airlock_core::types::Batch;
use airlock_core::{LimitRequest, Limits};
use airlock_runtime::error::FailureKind;
use airlock_runtime::sandbox::{Bundle, CallOptions, CheckedModel, Sandbox, SandboxConfig};
use airlock_tests::{example, fixture, hostile_batch, load, plugin, sandbox};

/// A bundle whose `model.json` holds `text` (the hostile model's orders).
fn orders(text: &str) -> (tempfile::TempDir, Bundle) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.json"), text).unwrap();
    let b = Bundle::from_path(dir.path()).unwrap();
    (dir, b)
}

fn with_bundle(bundle: &Bundle) -> CallOptions {
    CallOptions {
        bundle: Some(bundle.clone()),
        ..CallOptions::default()
    }
}

/// A sandbox of its own (no shared in-memory caches), for checks that a
/// fresh build gives the same snapshot.
fn own_sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig {
        max_instances: 4,
        ..SandboxConfig::default()
    })
    .unwrap()
}

fn open(sb: &Sandbox, text: &str) -> Result<CheckedModel, airlock_core::PluginFailure> {
    let p = load(sb, "hostile_preinit");
    let (_dir, bundle) = orders(text);
    sb.open_model(p, with_bundle(&bundle))
}

fn eval_batch(model: &CheckedModel) -> Batch {
    let ds = airlock_gate::data::read_csv(&example().join("data/eval.csv"), None, None).unwrap();
    airlock_gate::data::model_inputs(&ds.batch, &model.metadata.inputs, &["target"])
        .unwrap()
        .0
}

#[test]
fn xgboost_runs_from_a_snapshot_with_the_same_answers_for_a_fraction_of_the_fuel() {
    let sb = sandbox();
    let bundle = Bundle::from_path(&example().join("model-v1")).unwrap();
    let snap = sb
        .open_model(load(&sb, "airlock_model_xgboost"), with_bundle(&bundle))
        .unwrap();
    let info = snap
        .snapshot
        .clone()
        .expect("the xgboost plugin exports init");
    assert_ne!(info.digest, info.source_digest);
    assert_eq!(snap.component_digest(), info.source_digest);
    assert_eq!(info.bundle_digest, Some(bundle.digest));
    assert!(info.init_fuel_used > 0);
    // The frozen 0.1 build of the same model parses its bundle on every call.
    let old = sb
        .load_file(&fixture("contract-0.1/xgboost-0.1.wasm"))
        .unwrap();
    assert!(!old.is_preinitializable());
    let old = sb.open_model(old, with_bundle(&bundle)).unwrap();
    assert!(old.snapshot.is_none());
    let batch = eval_batch(&snap);
    let new_out = snap.predict(&batch).unwrap();
    let old_out = old.predict(&batch).unwrap();
    assert_eq!(new_out.value, old_out.value, "bit-identical predictions");
    let one = batch.rows_in(0..1).expect("the evaluation set has rows");
    let new_one = snap.predict(&one).unwrap().fuel_used;
    let old_one = old.predict(&one).unwrap().fuel_used;
    assert!(
        new_one * 20 < old_one,
        "a 1-row call from the snapshot used {new_one} fuel, parsing the bundle {old_one}"
    );
}

#[test]
fn the_same_component_and_bundle_give_the_same_snapshot_and_another_bundle_another() {
    // `entropy` records randomness and both clocks during init: they are
    // fixed while init runs, so the snapshot still repeats exactly.
    let a = open(&own_sandbox(), "entropy").unwrap();
    let b = open(&own_sandbox(), "entropy").unwrap();
    let (sa, sb_) = (a.snapshot.clone().unwrap(), b.snapshot.clone().unwrap());
    assert_eq!(sa.digest, sb_.digest);
    assert_eq!(sa.init_fuel_used, sb_.init_fuel_used);
    let state = |m: &CheckedModel| m.predict(&hostile_batch("state", 5)).unwrap().value.values;
    assert_eq!(state(&a), state(&b));
    assert_eq!(state(&a)[4], 1.0, "the call ran pre-initialised");
    let other = open(&own_sandbox(), "ok").unwrap();
    assert_ne!(other.snapshot.unwrap().digest, sa.digest);
    // The cache answers by (component, bundle digest).
    let sb = own_sandbox();
    let first = open(&sb, "ok").unwrap().snapshot.unwrap();
    let again = open(&sb, "ok").unwrap().snapshot.unwrap();
    assert_eq!(first.digest, again.digest);
    assert!(again.build_time.is_zero(), "served from the snapshot cache");
}

#[test]
fn no_call_from_a_snapshot_sees_what_an_earlier_call_wrote() {
    let m = open(&sandbox(), "ok").unwrap();
    for _ in 0..5 {
        // `init` left the counter at 100; every call adds one to its own copy.
        let r = m.predict(&hostile_batch("remember", 1)).unwrap();
        assert_eq!(r.value.values, [101.0]);
        let s = m.predict(&hostile_batch("scribble", 1)).unwrap();
        assert_eq!(s.value.values, [1.0]);
    }
    // The contrast that shows the test can fail: a warm session of the same
    // snapshot keeps what its calls wrote.
    let mut session = m.plugin.instantiate(&m.options).unwrap();
    let first = session.predict(&hostile_batch("remember", 1)).unwrap();
    let second = session.predict(&hostile_batch("remember", 1)).unwrap();
    assert_eq!(
        (first.value.values[0], second.value.values[0]),
        (101.0, 102.0)
    );
}

#[test]
fn a_panic_after_the_restore_still_reaches_the_host() {
    let m = open(&sandbox(), "ok").unwrap();
    let f = m.predict(&hostile_batch("panic", 1)).unwrap_err();
    assert_eq!(f.kind, FailureKind::Trap, "{f:#?}");
    assert!(
        f.stderr.contains(hostile_preinit_marker("call")),
        "the panic message is lost: {f:#?}"
    );
    // And the next call is unharmed.
    assert_eq!(
        m.predict(&hostile_batch("remember", 1))
            .unwrap()
            .value
            .values,
        [101.0]
    );
}

/// The panic markers of `tests/hostile/preinit`.
fn hostile_preinit_marker(which: &str) -> &'static str {
    match which {
        "init" => "hostile-preinit init panic 51c2",
        _ => "hostile-preinit call panic 9e07",
    }
}

#[test]
fn a_runaway_init_is_stopped_by_its_limits_and_the_host_carries_on() {
    // `init` runs under the fixed init limits lowered by the component's
    // manifest (300M fuel, 3 s for `hostile-preinit`); what the caller asks
    // for its calls does not reach it.
    let sb = own_sandbox();
    let p = load(&sb, "hostile_preinit");
    let (_dir, bundle) = orders("spin");
    let mut options = with_bundle(&bundle);
    options.limits = LimitRequest {
        fuel: Some(50_000_000),
        ..LimitRequest::default()
    };
    let f = sb.open_model(p.clone(), options.clone()).unwrap_err();
    assert_eq!(f.kind, FailureKind::FuelExhausted, "{f:#?}");
    assert!(f.message.contains("`init` failed"), "{}", f.message);
    assert!(f.message.contains("300000000"), "{}", f.message);
    // With fuel off the deadline stops it.
    let unmetered = Sandbox::new(SandboxConfig {
        fuel: false,
        ..SandboxConfig::default()
    })
    .unwrap();
    let p2 = load(&unmetered, "hostile_preinit");
    options.limits = LimitRequest {
        timeout_ms: Some(300),
        ..LimitRequest::default()
    };
    let f = unmetered.open_model(p2, options).unwrap_err();
    assert_eq!(f.kind, FailureKind::Timeout, "{f:#?}");
    // Nothing was cached for the failed builds, and the sandbox works.
    assert!(open(&sb, "ok").is_ok());
}

#[test]
fn an_init_that_measures_its_limits_builds_the_same_snapshot_under_any_ceiling_or_request() {
    // `probe N` asks for N MiB more memory in `init` and remembers whether
    // it got them. Under the caller's limits it would learn where it runs:
    // 300 MiB fit under a 1 GiB ceiling but not under the default 256 MiB,
    // and 32 MiB fit by default but not in a call lowered to 16 MiB.
    let roomy = Sandbox::new(SandboxConfig {
        limits: Limits {
            memory_bytes: 1 << 30,
            ..Limits::default()
        },
        max_instances: 4,
        ..SandboxConfig::default()
    })
    .unwrap();
    let snapshot = |sb: &Sandbox, orders_text: &str, memory: Option<u64>| {
        let p = load(sb, "hostile_preinit");
        let (_dir, bundle) = orders(orders_text);
        let mut options = with_bundle(&bundle);
        options.limits.memory_bytes = memory;
        sb.preinitialize(&p, &options).unwrap().unwrap()
    };
    for (text, got) in [("probe 300", 0.0), ("probe 32", 1.0)] {
        let default = snapshot(&own_sandbox(), text, None);
        let lowered = snapshot(&own_sandbox(), text, Some(16 << 20));
        let raised = snapshot(&roomy, text, None);
        assert_eq!(default.info.digest, lowered.info.digest, "{text}");
        assert_eq!(default.info.digest, raised.info.digest, "{text}");
        assert_eq!(default.info.init_limits, raised.info.init_limits);
        assert_eq!(
            default.info.init_limits,
            airlock_runtime::sandbox::INIT_LIMITS.lowered_by(&LimitRequest {
                fuel: Some(300_000_000),
                timeout_ms: Some(3_000),
                ..LimitRequest::default()
            }),
            "the fixed init limits, lowered by the manifest"
        );
        // And the model answers what `init` saw under the fixed limits.
        let m = open(&roomy, text).unwrap();
        assert_eq!(m.snapshot.as_ref().unwrap().digest, default.info.digest);
        let answer = m.predict(&hostile_batch("probe", 1)).unwrap().value.values;
        assert_eq!(answer, [got], "{text}");
    }
}

#[test]
fn an_init_that_fails_or_panics_is_refused_with_its_reason() {
    let sb = sandbox();
    let f = open(&sb, "fail").unwrap_err();
    assert_eq!(f.kind, FailureKind::GuestError, "{f:#?}");
    assert_eq!(f.guest_code.as_deref(), Some("bad-bundle"));
    assert!(
        f.message
            .contains("`init` failed: bad-bundle: hostile-preinit refuses to initialise"),
        "{}",
        f.message
    );
    let f = open(&sb, "panic").unwrap_err();
    assert_eq!(f.kind, FailureKind::Trap, "{f:#?}");
    assert!(f.stderr.contains(hostile_preinit_marker("init")), "{f:#?}");
}

#[test]
fn a_snapshot_bloated_by_init_meets_the_component_and_memory_caps() {
    // 80 MiB of non-zero heap would be 80 MiB of data segments: past the
    // default 64 MiB component cap, so the snapshot is refused like any
    // oversized component (here already while the state is read).
    let f = open(&own_sandbox(), "grow 80").unwrap_err();
    assert_eq!(f.kind, FailureKind::InvalidComponent, "{f:#?}");
    assert!(
        f.message.contains("snapshot") && f.message.contains("component.max_component_bytes"),
        "{}",
        f.message
    );
    // `init` is held to its own memory cap (256 MiB), whatever the caller.
    let f = open(&own_sandbox(), "grow 300").unwrap_err();
    assert_eq!(f.kind, FailureKind::MemoryLimit, "{f:#?}");
    assert!(f.message.contains("`init` failed"), "{}", f.message);
    // A caller's lower memory cap does not change the snapshot; its calls
    // cannot start one whose memory is over it.
    let sb = own_sandbox();
    let p = load(&sb, "hostile_preinit");
    let (_dir, bundle) = orders("grow 24");
    let mut options = with_bundle(&bundle);
    options.limits.memory_bytes = Some(16 << 20);
    let built = sb.preinitialize(&p, &options).unwrap().unwrap();
    assert!(built.info.size > 24 << 20, "{:?}", built.info);
    let f = sb.open_model(p, options).unwrap_err();
    assert_eq!(f.kind, FailureKind::MemoryLimit, "{f:#?}");
    // A modest init is fine, and its snapshot's memory is part of what
    // every call starts with.
    let m = open(&own_sandbox(), "grow 8").unwrap();
    let info = m.snapshot.clone().unwrap();
    assert!(info.size > 8 << 20, "{info:?}");
    assert_eq!(
        m.predict(&hostile_batch("remember", 1))
            .unwrap()
            .value
            .values,
        [101.0]
    );
}

/// The number before ` counted so far` in a refusal.
fn counted(message: &str) -> u64 {
    let before = message
        .split(" counted so far")
        .next()
        .and_then(|m| m.rsplit('(').next())
        .unwrap_or_else(|| panic!("no count in {message}"));
    before.trim().parse().unwrap()
}

#[test]
fn a_densely_filled_init_is_refused_while_its_state_is_read_before_any_snapshot_is_built() {
    // 220 MiB of non-zero bytes: building that snapshot in full took more
    // than 1 GB of host memory before the size cap refused it. The count
    // stops at the first 64 KiB page past the 64 MiB cap.
    let cap = 64u64 << 20;
    let f = open(&own_sandbox(), "grow 220").unwrap_err();
    assert_eq!(f.kind, FailureKind::InvalidComponent, "{f:#?}");
    assert!(
        f.message
            .contains("refused while the instance's state was read, before any snapshot was built")
            && f.message.contains("component.max_component_bytes"),
        "{}",
        f.message
    );
    let n = counted(&f.message);
    assert!(cap < n && n <= cap + (64 << 10) + 4, "{n}: {}", f.message);
    // A memory of scattered bytes holds little data but would cost wizer a
    // range per byte: refused by the same count.
    let f = open(&own_sandbox(), "scatter 64").unwrap_err();
    assert_eq!(f.kind, FailureKind::InvalidComponent, "{f:#?}");
    assert!(
        f.message.contains("separate runs of non-zero bytes")
            && f.message.contains("before any snapshot was built"),
        "{}",
        f.message
    );
    // The sandbox is unharmed.
    assert!(open(&own_sandbox(), "ok").is_ok());
}

#[test]
fn a_model_that_exports_init_only_runs_from_its_snapshot() {
    let sb = sandbox();
    let p = load(&sb, "airlock_model_xgboost");
    assert!(p.is_preinitializable());
    let bundle = Bundle::from_path(&example().join("model-v1")).unwrap();
    let e = CheckedModel::open(p, with_bundle(&bundle))
        .expect_err("opening a pre-initialisable model without its snapshot is refused");
    assert!(e.message.contains("Sandbox::open_model"), "{}", e.message);
}

#[test]
fn gate_reports_name_the_snapshot_and_reruns_repeat_it() {
    let sb = sandbox();
    let text = std::fs::read_to_string(example().join("gate.toml")).unwrap();
    let mut spec = airlock_gate::GateSpec::parse(&text, &example()).unwrap();
    for step in &mut spec.steps {
        step.plugin = plugin(&format!("airlock_validator_{}", step.plugin))
            .display()
            .to_string();
    }
    let run = || {
        let candidate = airlock_gate::runner::load_model(
            &sb,
            &plugin("airlock_model_xgboost"),
            Some(&example().join("model-v1")),
        )
        .unwrap();
        airlock_gate::GateRun {
            sandbox: &sb,
            spec: &spec,
            candidate,
            baseline: None,
            plugin_dir: None,
            seed: Some(7),
            data_caps: Default::default(),
        }
        .run()
        .unwrap()
    };
    let a = run();
    let b = run();
    assert!(a.passed);
    let snap = a
        .candidate
        .snapshot_digest
        .expect("snapshot digest recorded");
    assert_eq!(b.candidate.snapshot_digest, Some(snap));
    assert_eq!(
        a.candidate.digest,
        airlock_core::digest::Digest::of(&std::fs::read(plugin("airlock_model_xgboost")).unwrap()),
        "the report names the submitted component, not the snapshot"
    );
    // The validator's probes ran the snapshot too: all of robustness's
    // probe calls together cost less than parsing the bundle once.
    let probes = a.steps.iter().find(|s| s.name == "robustness").unwrap();
    let bundle = Bundle::from_path(&example().join("model-v1")).unwrap();
    let one_parse = sb
        .open_model(load(&sb, "airlock_model_xgboost"), with_bundle(&bundle))
        .unwrap()
        .snapshot
        .unwrap()
        .init_fuel_used;
    assert!(
        probes.candidate_fuel_used > 0 && probes.candidate_fuel_used < one_parse,
        "probes used {} fuel; one parse of the bundle costs {one_parse}",
        probes.candidate_fuel_used
    );
    assert_eq!(
        serde_json::to_string(&a.verdict).unwrap(),
        serde_json::to_string(&b.verdict).unwrap(),
        "a rerun reproduces the verdict record byte for byte"
    );
}
