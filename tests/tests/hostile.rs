//! The hostile plugin suite: plugins that attack the sandbox from the
//! inside, and the exact failure each attack must end in.
//!
//! Every failing case asserts the [`FailureKind`] (and the key part of the
//! message), then makes a benign call on the same sandbox and asserts that
//! it succeeds, because no plugin failure may affect the next call. The
//! plugins live in `tests/hostile/` and are built by `tests/build.rs`.

use airlock_core::LimitRequest;
use airlock_core::types::{Context, ModelInfo, Predictions, Verdict};
use airlock_runtime::sandbox::{
    Bundle, CallOptions, CandidateLink, CheckedModel, Outcome, Plugin, Sandbox, SandboxConfig,
};
use airlock_runtime::{FailureKind, PluginFailure, SandboxError};
use airlock_tests::{hostile_batch, load, plugin, sandbox, with_limits};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `hostile-model`'s `panic` attack panics with.
const PANIC_MESSAGE: &str = "hostile-model deliberate panic 7f3a9c";

/// The wall-clock instant every plugin sees (2020-01-01T00:00:00Z).
const FROZEN_WALL_CLOCK_SECS: f64 = 1_577_836_800.0;

/// A small fuel budget, so that fuel-exhaustion cases finish quickly.
const SMALL_FUEL: u64 = 100_000_000;

// ---------------------------------------------------------------- helpers

/// The hostile model, loaded into the shared sandbox.
fn model() -> Arc<Plugin> {
    load(&sandbox(), "hostile_model")
}

/// The hostile validator, loaded into the shared sandbox.
fn validator() -> Arc<Plugin> {
    load(&sandbox(), "hostile_validator")
}

/// Runs `hostile-model`'s attack `mode` on a one-row batch.
fn attack(
    m: &Plugin,
    mode: &str,
    options: &CallOptions,
) -> Result<Outcome<Predictions>, PluginFailure> {
    m.predict(options, &hostile_batch(mode, 1))
}

/// Asserts that `result` failed with `kind`, and returns the failure.
#[track_caller]
fn expect_failure<T: std::fmt::Debug>(
    result: Result<T, PluginFailure>,
    kind: FailureKind,
) -> PluginFailure {
    match result {
        Ok(v) => panic!("expected {kind}, but the call succeeded with {v:?}"),
        Err(f) => {
            eprintln!("observed {f}");
            assert_eq!(f.kind, kind, "wrong failure kind: {f:#?}");
            f
        }
    }
}

/// Asserts that loading `bytes` is refused with `kind`, and returns the
/// failure.
#[track_caller]
fn expect_load_failure(sb: &Sandbox, bytes: &[u8], kind: FailureKind) -> PluginFailure {
    match sb.load(bytes) {
        Ok(p) => panic!(
            "expected {kind}, but the component loaded as a {} plugin",
            p.world
        ),
        Err(SandboxError::Plugin(f)) => {
            eprintln!("observed at load: {f}");
            assert_eq!(f.kind, kind, "wrong failure kind: {f:#?}");
            f
        }
        Err(e) => panic!("expected a plugin failure of kind {kind}, got {e:?}"),
    }
}

/// Asserts that a benign call on `m` succeeds: the `ok` attack returns the
/// row count once per row.
#[track_caller]
fn assert_benign(m: &Plugin) {
    let out = m
        .predict(&CallOptions::default(), &hostile_batch("ok", 3))
        .unwrap_or_else(|f| panic!("benign call after a hostile one failed: {f:#?}"));
    assert_eq!(out.value.width, 1);
    assert_eq!(out.value.values, vec![3.0, 3.0, 3.0]);
}

/// Asserts that the benign model call succeeds on `sb`.
#[track_caller]
fn assert_benign_on(sb: &Sandbox) {
    assert_benign(&load(sb, "hostile_model"));
}

/// A sandbox with its own configuration (no disk cache, so artifacts of
/// differently configured engines never meet).
fn custom_sandbox(config: SandboxConfig) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cache_dir: None,
        ..config
    })
    .expect("sandbox")
}

/// A bundle directory holding `model.json` and nothing else.
fn bundle_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.json"), b"{\"bundle\":\"benign\"}").unwrap();
    dir
}

/// Call options granting the bundle at `dir`.
fn with_bundle(dir: &Path) -> CallOptions {
    CallOptions {
        bundle: Some(Bundle::from_path(dir).expect("bundle")),
        ..CallOptions::default()
    }
}

/// A file outside every bundle, with content that must never reach a
/// plugin's output.
fn secret_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.txt");
    std::fs::write(&path, SECRET).unwrap();
    (dir, path)
}

/// The content of [`secret_file`].
const SECRET: &str = "TOP-SECRET-host-file-4b1d";

/// Asserts a read attack failed inside the guest (the guest's own
/// `read-failed` error), and that none of `forbidden` reached the failure.
#[track_caller]
fn assert_read_refused(result: Result<Outcome<Predictions>, PluginFailure>, forbidden: &[&str]) {
    let f = expect_failure(result, FailureKind::GuestError);
    assert_eq!(f.guest_code.as_deref(), Some("read-failed"), "{f:#?}");
    for s in forbidden {
        assert!(!f.message.contains(s), "leaked `{s}`: {f:#?}");
        assert!(!f.stderr.contains(s), "leaked `{s}`: {f:#?}");
    }
}

/// A gate-step context for `hostile-validator` with `config`, `seed`, and
/// the hostile model as candidate.
fn context(config: &str, seed: u64) -> Context {
    let m = model();
    let metadata = m.metadata(&CallOptions::default()).unwrap().value;
    Context {
        step: "hostile".to_string(),
        config: config.to_string(),
        seed,
        candidate: ModelInfo {
            metadata,
            digest: m.digest.to_string(),
            bundle_digest: None,
        },
        baseline: None,
        data: hostile_batch("ok", 2),
        labels: Some(vec![0.0, 1.0]),
        candidate_predictions: Predictions {
            width: 1,
            values: vec![2.0, 2.0],
        },
        baseline_predictions: None,
        reference: None,
    }
}

/// The hostile model as a validator's candidate, each of its calls capped
/// at `fuel` (when given).
fn candidate_link(fuel: Option<u64>) -> CandidateLink {
    let options = with_limits(LimitRequest {
        fuel,
        ..LimitRequest::default()
    });
    CandidateLink::new(CheckedModel::open(model(), options).unwrap())
}

/// Runs `hostile-validator` in `mode` with `seed`.
fn validate(
    v: &Plugin,
    mode: &str,
    seed: u64,
    options: &CallOptions,
    candidate: Option<CandidateLink>,
) -> Result<Outcome<Verdict>, PluginFailure> {
    let ctx = context(&format!("{{\"mode\":\"{mode}\"}}"), seed);
    let options = CallOptions {
        seed,
        ..options.clone()
    };
    v.validate(&options, &ctx, candidate)
}

/// Asserts that a benign validator call succeeds.
#[track_caller]
fn assert_benign_validator(v: &Plugin) {
    let out = validate(v, "ok", 1, &CallOptions::default(), None)
        .unwrap_or_else(|f| panic!("benign validator call failed: {f:#?}"));
    assert!(out.value.passed);
}

/// The value of the metric `name` in `v`.
fn metric(v: &Verdict, name: &str) -> f64 {
    v.metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric `{name}` in {v:#?}"))
        .value
}

// ------------------------------------------------------------ CPU and time

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let m = model();
    let opts = with_limits(LimitRequest {
        fuel: Some(SMALL_FUEL),
        ..LimitRequest::default()
    });
    let f = expect_failure(attack(&m, "loop", &opts), FailureKind::FuelExhausted);
    assert!(f.message.contains(&SMALL_FUEL.to_string()), "{f:#?}");
    assert!(f.fuel_used >= SMALL_FUEL, "{f:#?}");
    assert_benign(&m);
}

#[test]
fn infinite_loop_with_default_fuel_runs_out_of_fuel() {
    let m = model();
    let f = expect_failure(
        attack(&m, "loop", &CallOptions::default()),
        FailureKind::FuelExhausted,
    );
    let ceiling = m.limits_for(&LimitRequest::default()).fuel;
    assert!(f.message.contains(&ceiling.to_string()), "{f:#?}");
    assert_benign(&m);
}

#[test]
fn infinite_loop_without_fuel_metering_times_out() {
    let sb = custom_sandbox(SandboxConfig {
        fuel: false,
        ..SandboxConfig::default()
    });
    let m = load(&sb, "hostile_model");
    let opts = with_limits(LimitRequest {
        timeout_ms: Some(200),
        ..LimitRequest::default()
    });
    let start = Instant::now();
    let f = expect_failure(attack(&m, "loop", &opts), FailureKind::Timeout);
    let took = start.elapsed();
    assert!(f.message.contains("200 ms"), "{f:#?}");
    assert_eq!(f.fuel_used, 0, "fuel is not metered: {f:#?}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(5),
        "the deadline was not enforced promptly: {took:?}"
    );
    assert_benign(&m);
}

#[test]
fn infinite_loop_with_fuel_still_hits_a_short_deadline() {
    let m = model();
    let opts = with_limits(LimitRequest {
        timeout_ms: Some(50),
        ..LimitRequest::default()
    });
    let start = Instant::now();
    let f = expect_failure(attack(&m, "loop", &opts), FailureKind::Timeout);
    assert!(f.message.contains("50 ms"), "{f:#?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_benign(&m);
}

#[test]
fn sleeping_an_hour_returns_at_once_on_virtual_time() {
    let m = model();
    let run = || {
        let start = Instant::now();
        let out = attack(&m, "sleep", &CallOptions::default())
            .unwrap_or_else(|f| panic!("sleep failed: {f:#?}"));
        (out, start.elapsed())
    };
    let (a, took_a) = run();
    let (b, took_b) = run();
    for took in [took_a, took_b] {
        assert!(
            took < Duration::from_secs(2),
            "sleep blocked the host for {took:?}"
        );
    }
    // The guest's monotonic clock moved by the hour it slept (plus the
    // nanoseconds of its own clock readings); the wall clock is frozen.
    let mono = a.value.values[0];
    assert!(
        (3600.0..3600.001).contains(&mono),
        "monotonic elapsed {mono}"
    );
    assert_eq!(a.value.values[1], 0.0, "the wall clock moved");
    assert_eq!(
        a.value.values, b.value.values,
        "virtual time is not repeatable"
    );
    assert_eq!(a.fuel_used, b.fuel_used, "fuel is not repeatable");
}

// ------------------------------------------------------ stack and memory

#[test]
fn unbounded_recursion_overflows_the_stack() {
    let m = model();
    let f = expect_failure(
        attack(&m, "recurse", &CallOptions::default()),
        FailureKind::StackOverflow,
    );
    assert!(f.message.contains("stack"), "{f:#?}");
    assert_benign(&m);
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    let m = model();
    let ceiling = m.limits_for(&LimitRequest::default()).memory_bytes;
    for cap in [ceiling, 32 << 20] {
        let opts = with_limits(LimitRequest {
            memory_bytes: Some(cap),
            ..LimitRequest::default()
        });
        let f = expect_failure(attack(&m, "grow", &opts), FailureKind::MemoryLimit);
        assert!(
            f.message.contains(&format!("cap {cap} bytes")),
            "cap {cap}: {f:#?}"
        );
        assert_benign(&m);
    }
}

// ------------------------------------------------------------------- I/O

#[test]
fn output_past_the_cap_is_refused() {
    let m = model();
    let cap = 1 << 20;
    let opts = with_limits(LimitRequest {
        max_output_bytes: Some(cap),
        ..LimitRequest::default()
    });
    let f = expect_failure(attack(&m, "big-output", &opts), FailureKind::OutputTooLarge);
    let values_bytes = (256u64 << 10) * 8;
    assert!(
        f.message.contains(&format!("{values_bytes} bytes"))
            && f.message.contains(&format!("cap of {cap} bytes")),
        "{f:#?}"
    );
    assert!(f.fuel_used > 0, "{f:#?}");
    // Under the default cap the same output is fine.
    let out = attack(&m, "big-output", &CallOptions::default()).unwrap();
    assert_eq!(out.value.values.len(), 256 << 10);
    assert_benign(&m);
}

#[test]
fn huge_output_is_refused_as_output_too_large() {
    // 32 MiB of predictions: past the default output cap (16 MiB) and past
    // the host's per-call allocation cap, which stops the copy out of the
    // guest; either way the plugin's result is too large.
    let m = model();
    let ceiling = m.limits_for(&LimitRequest::default()).max_output_bytes;
    for cap in [ceiling, 1 << 20] {
        let opts = with_limits(LimitRequest {
            max_output_bytes: Some(cap),
            ..LimitRequest::default()
        });
        let f = expect_failure(
            attack(&m, "huge-output", &opts),
            FailureKind::OutputTooLarge,
        );
        assert!(!f.message.is_empty(), "{f:#?}");
        assert_benign(&m);
    }
}

#[test]
fn oversized_input_is_refused_before_the_plugin_runs() {
    let m = model();
    let opts = with_limits(LimitRequest {
        max_input_bytes: Some(1024),
        ..LimitRequest::default()
    });
    let big = hostile_batch("ok", 1000);
    let f = expect_failure(m.predict(&opts, &big), FailureKind::InputTooLarge);
    assert!(f.message.contains("cap of 1024 bytes"), "{f:#?}");
    assert_eq!(f.fuel_used, 0, "the plugin ran: {f:#?}");
    // Within the cap, the same call goes through.
    let small = hostile_batch("ok", 100);
    assert_eq!(m.predict(&opts, &small).unwrap().value.values.len(), 100);
    assert_benign(&m);
}

#[test]
fn print_flood_is_truncated_at_the_log_cap() {
    let m = model();
    let flood = 10u64 << 20;
    let ceiling = m.limits_for(&LimitRequest::default()).max_log_bytes;
    for cap in [ceiling, 1000] {
        let opts = with_limits(LimitRequest {
            max_log_bytes: Some(cap),
            ..LimitRequest::default()
        });
        let out = attack(&m, "print", &opts)
            .unwrap_or_else(|f| panic!("a print flood must not fail the call: {f:#?}"));
        assert_eq!(out.value.values, vec![flood as f64]);
        assert_eq!(out.stdout.len() as u64, cap);
        assert!(out.stdout.bytes().all(|b| b == b'x'));
        assert_eq!(out.log_bytes_dropped, flood - cap);
        assert_benign(&m);
    }
}

// ----------------------------------------------------- filesystem and env

#[test]
fn bundle_is_readable_control() {
    // The control for the read attacks below: the granted bundle itself is
    // readable, so their failures are the sandbox refusing, not a broken
    // filesystem.
    let m = model();
    let dir = bundle_dir();
    let out = attack(&m, "read-bundle", &with_bundle(dir.path())).unwrap();
    let content = std::fs::read(dir.path().join("model.json")).unwrap();
    assert_eq!(out.value.values[0], content.len() as f64);
    let bytes: Vec<u8> = out.value.values[1..].iter().map(|v| *v as u8).collect();
    assert_eq!(bytes, content);
}

#[test]
fn absolute_path_outside_the_bundle_cannot_be_read() {
    let m = model();
    let dir = bundle_dir();
    for opts in [CallOptions::default(), with_bundle(dir.path())] {
        assert_read_refused(attack(&m, "read-abs", &opts), &["root:"]);
        assert_benign(&m);
    }
}

#[test]
fn dotdot_cannot_escape_the_bundle() {
    let m = model();
    let dir = bundle_dir();
    for opts in [CallOptions::default(), with_bundle(dir.path())] {
        assert_read_refused(attack(&m, "read-dotdot", &opts), &["root:"]);
        assert_benign(&m);
    }
}

#[test]
fn bundle_with_a_symlink_is_refused_by_the_host() {
    let dir = bundle_dir();
    let (_secret_dir, secret) = secret_file();
    std::os::unix::fs::symlink(&secret, dir.path().join("link")).unwrap();
    match Bundle::from_path(dir.path()) {
        Ok(_) => panic!("a bundle holding a symlink was accepted"),
        Err(e) => assert!(e.to_string().contains("symlink"), "{e}"),
    }
}

#[test]
fn symlink_planted_in_the_bundle_cannot_be_followed_out() {
    let m = model();
    let dir = bundle_dir();
    // The bundle is accepted first and the link planted afterwards, as a
    // racing attacker with write access to the bundle directory would.
    let opts = with_bundle(dir.path());
    let (secret_dir, secret) = secret_file();
    let link = dir.path().join("link");
    let relative = Path::new("..")
        .join(secret_dir.path().file_name().unwrap())
        .join("secret.txt");
    for target in [secret.clone(), relative] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // The link does lead to the secret on the host.
        assert_eq!(std::fs::read_to_string(&link).unwrap(), SECRET);
        assert_read_refused(attack(&m, "read-symlink", &opts), &[SECRET]);
        assert_benign(&m);
    }
}

#[test]
fn bundle_cannot_be_written() {
    let m = model();
    let dir = bundle_dir();
    let before = std::fs::read(dir.path().join("model.json")).unwrap();
    let f = expect_failure(
        attack(&m, "write-bundle", &with_bundle(dir.path())),
        FailureKind::GuestError,
    );
    assert_eq!(f.guest_code.as_deref(), Some("write-failed"), "{f:#?}");
    // All five attempts were refused, and the directory is untouched.
    assert_eq!(f.message.matches("/bundle").count(), 5, "{f:#?}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["model.json".to_string()]);
    assert_eq!(
        std::fs::read(dir.path().join("model.json")).unwrap(),
        before
    );
    assert_benign(&m);
}

#[test]
fn environment_and_arguments_are_empty() {
    assert!(
        std::env::vars_os().count() > 0,
        "the test process has an environment to leak"
    );
    let out = attack(&model(), "env", &CallOptions::default()).unwrap();
    assert_eq!(
        out.value.values,
        vec![0.0, 0.0],
        "[environment variables, arguments] seen by the plugin"
    );
}

// ------------------------------------------------------------------- traps

#[test]
fn panic_is_a_trap_carrying_the_panic_message() {
    let m = model();
    let f = expect_failure(
        attack(&m, "panic", &CallOptions::default()),
        FailureKind::Trap,
    );
    assert!(f.message.contains(PANIC_MESSAGE), "{f:#?}");
    assert!(f.stderr.contains(PANIC_MESSAGE), "{f:#?}");
    assert_benign(&m);
}

// ------------------------------------------------------- loading and world

#[test]
fn component_imports_sockets() {
    // The socket plugin's component really does import wasi:sockets (Rust's
    // std implements TcpStream::connect with it), which the refusal below
    // depends on.
    let bytes = std::fs::read(plugin("hostile_socket")).unwrap();
    let ins = sandbox().inspect(&bytes).expect("inspect");
    assert!(
        ins.imports
            .iter()
            .any(|i| i.starts_with("wasi:sockets/tcp@")),
        "{:#?}",
        ins.imports
    );
    assert!(!ins.refused_imports.is_empty());
    for refused in &ins.refused_imports {
        assert!(refused.starts_with("wasi:sockets/"), "{refused}");
    }
}

#[test]
fn socket_plugin_is_refused_at_load_naming_the_import() {
    let sb = sandbox();
    let bytes = std::fs::read(plugin("hostile_socket")).unwrap();
    let f = expect_load_failure(&sb, &bytes, FailureKind::DisallowedImport);
    assert!(f.message.contains("wasi:sockets/tcp@"), "{f:#?}");
    let ins = sb.inspect(&bytes).unwrap();
    for refused in &ins.refused_imports {
        assert!(f.message.contains(refused.as_str()), "{refused}: {f:#?}");
    }
    assert_benign_on(&sb);
}

#[test]
fn undeclared_import_is_refused_at_load_naming_it() {
    let sb = sandbox();
    let bytes = std::fs::read(plugin("hostile_import")).unwrap();
    let ins = sb.inspect(&bytes).expect("inspect");
    assert_eq!(
        ins.refused_imports,
        vec!["evil:exfil/leak@1.0.0".to_string()]
    );
    let f = expect_load_failure(&sb, &bytes, FailureKind::DisallowedImport);
    assert!(f.message.contains("evil:exfil/leak@1.0.0"), "{f:#?}");
    assert_benign_on(&sb);
}

#[test]
fn malformed_components_are_invalid() {
    let sb = sandbox();
    let component = std::fs::read(plugin("hostile_model")).unwrap();
    let mut random = vec![0u8; 4096];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for b in &mut random {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    let cases: [(&str, Vec<u8>); 5] = [
        ("empty file", Vec::new()),
        ("random bytes", random),
        // `(module)`: a valid core module, but not a component.
        ("core module", b"\0asm\x01\0\0\0".to_vec()),
        // A component header with nothing after it that is well formed.
        (
            "truncated component",
            component[..component.len() / 2].to_vec(),
        ),
        ("text", b"(component)".to_vec()),
    ];
    for (what, bytes) in cases {
        let f = expect_load_failure(&sb, &bytes, FailureKind::InvalidComponent);
        assert!(!f.message.is_empty(), "{what}");
        assert_benign_on(&sb);
    }
}

#[test]
fn validator_where_a_model_is_expected_is_invalid() {
    let v = validator();
    let f = expect_failure(
        v.predict(&CallOptions::default(), &hostile_batch("ok", 1)),
        FailureKind::InvalidComponent,
    );
    assert!(f.message.contains("expected a model"), "{f:#?}");
    expect_failure(
        v.metadata(&CallOptions::default()),
        FailureKind::InvalidComponent,
    );
    let m = model();
    let ctx = context("{\"mode\":\"ok\"}", 1);
    let f = expect_failure(
        m.validate(&CallOptions::default(), &ctx, None),
        FailureKind::InvalidComponent,
    );
    assert!(f.message.contains("expected a validator"), "{f:#?}");
    assert_benign(&m);
    assert_benign_validator(&v);
}

// -------------------------------------------------------------- validators

#[test]
fn validator_clocks_and_randomness_are_deterministic() {
    let v = validator();
    let opts = CallOptions::default();
    let a = validate(&v, "nondeterminism", 42, &opts, None).unwrap();
    let b = validate(&v, "nondeterminism", 42, &opts, None).unwrap();
    assert_eq!(a.value, b.value, "same seed, different verdicts");
    assert_eq!(a.fuel_used, b.fuel_used, "same seed, different fuel");
    assert_eq!(metric(&a.value, "wall_clock_secs"), FROZEN_WALL_CLOCK_SECS);

    // A sandbox of its own (fresh engine, fresh compile) agrees too.
    let other = load(
        &custom_sandbox(SandboxConfig::default()),
        "hostile_validator",
    );
    let c = validate(&other, "nondeterminism", 42, &opts, None).unwrap();
    assert_eq!(a.value, c.value, "another sandbox, different verdict");
    assert_eq!(a.fuel_used, c.fuel_used, "another sandbox, different fuel");

    // The seed is what the randomness comes from.
    let d = validate(&v, "nondeterminism", 43, &opts, None).unwrap();
    assert_ne!(
        metric(&a.value, "random_state_hash"),
        metric(&d.value, "random_state_hash"),
        "randomness does not follow the seed"
    );
    assert_eq!(metric(&d.value, "wall_clock_secs"), FROZEN_WALL_CLOCK_SECS);
    assert_benign_validator(&v);
}

#[test]
fn validator_infinite_loop_runs_out_of_fuel() {
    let v = validator();
    let opts = with_limits(LimitRequest {
        fuel: Some(SMALL_FUEL),
        ..LimitRequest::default()
    });
    let f = expect_failure(
        validate(&v, "loop", 1, &opts, None),
        FailureKind::FuelExhausted,
    );
    assert!(f.fuel_used >= SMALL_FUEL, "{f:#?}");
    assert_benign_validator(&v);
}

#[test]
fn candidate_loop_is_charged_to_the_validator() {
    let v = validator();
    let candidate_fuel = 20_000_000;
    let out = validate(
        &v,
        "probe-loop",
        1,
        &CallOptions::default(),
        Some(candidate_link(Some(candidate_fuel))),
    )
    .unwrap_or_else(|f| panic!("the validator itself failed: {f:#?}"));
    let verdict = &out.value;
    assert!(!verdict.passed, "{verdict:#?}");
    assert_eq!(verdict.findings.len(), 1, "{verdict:#?}");
    assert_eq!(verdict.findings[0].code, "candidate-fuel-exhausted");
    assert!(
        verdict.findings[0]
            .message
            .starts_with("candidate-fuel-exhausted:"),
        "{verdict:#?}"
    );
    assert!(out.candidate_fuel_used > 0);
    assert!(out.candidate_fuel_used >= candidate_fuel, "{out:#?}");
    assert!(out.fuel_used >= out.candidate_fuel_used, "{out:#?}");
    assert_benign_validator(&v);
    assert_benign(&model());
}

#[test]
fn candidate_loop_without_its_own_cap_exhausts_the_validator_budget() {
    // With no per-candidate cap, the candidate may use everything the
    // validator has left, and then the validator is out of fuel too.
    let v = validator();
    let opts = with_limits(LimitRequest {
        fuel: Some(SMALL_FUEL),
        ..LimitRequest::default()
    });
    let f = expect_failure(
        validate(&v, "probe-loop", 1, &opts, Some(candidate_link(None))),
        FailureKind::FuelExhausted,
    );
    assert!(f.fuel_used >= SMALL_FUEL, "{f:#?}");
    assert_benign_validator(&v);
}

// ------------------------------------------------------------- concurrency

#[test]
fn a_looping_call_does_not_block_benign_calls() {
    let m = model();
    let looping = {
        let m = m.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let r = attack(&m, "loop", &CallOptions::default());
            (r, start.elapsed())
        })
    };
    let start = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    assert_benign(&m);
                }
                Instant::now()
            })
        })
        .collect();
    let finished: Vec<Instant> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let benign_took = finished.iter().max().unwrap().duration_since(start);
    let (r, loop_took) = looping.join().unwrap();
    expect_failure(r, FailureKind::FuelExhausted);
    assert!(
        benign_took < loop_took,
        "100 benign calls took {benign_took:?}, longer than the looping call ({loop_took:?})"
    );
    assert_benign(&m);
}

#[test]
fn state_written_by_one_call_is_gone_in_the_next() {
    let m = model();
    // Fresh instances, with pool slots reused and reset in place: every call
    // starts from the component's initial memory.
    for _ in 0..5 {
        let out = m
            .predict(&CallOptions::default(), &hostile_batch("remember", 1))
            .unwrap();
        assert_eq!(out.value.values, [1.0]);
    }
    // The contrast that shows the test can fail: a warm session keeps state.
    let mut session = m.instantiate(&CallOptions::default()).unwrap();
    let first = session
        .predict(&hostile_batch("remember", 1))
        .unwrap()
        .value
        .values;
    let second = session
        .predict(&hostile_batch("remember", 1))
        .unwrap()
        .value
        .values;
    assert_eq!((first[0], second[0]), (1.0, 2.0));
}
