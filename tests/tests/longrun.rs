//! Safe in a process that runs for months: dropping a sandbox frees its
//! engine and stops its epoch ticker, the loaded-plugin cache is bounded, a
//! full instance pool makes calls wait in a bounded queue and then fail as
//! the host's own `busy` (never as the plugin's trap, and never deadlocking
//! a validator and its candidate), and warm sessions start every call fresh
//! and end at their reuse and idle limits.
//!
//! Every test builds its own sandbox (no disk cache, so differently
//! configured engines never share artifacts) and drops it at the end.

use airlock_core::LimitRequest;
use airlock_core::types::{Context, ModelInfo, Predictions, Verdict};
use airlock_runtime::sandbox::{
    CallOptions, CandidateLink, CheckedModel, Outcome, Plugin, Sandbox, SandboxConfig, SessionError,
};
use airlock_runtime::{FailureKind, PluginFailure};
use airlock_tests::{hostile_batch, load, with_limits};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// How many bytes `hostile-model`'s `print` mode writes to stdout.
const PRINT_BYTES: u64 = 10 << 20;

/// A fuel budget that makes `hostile-model`'s spinning modes end quickly.
const SMALL_FUEL: u64 = 100_000_000;

// ---------------------------------------------------------------- helpers

/// A sandbox with `config`, no disk cache.
fn sandbox(config: SandboxConfig) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cache_dir: None,
        ..config
    })
    .expect("sandbox")
}

/// A sandbox whose pool has `slots` instance slots and whose calls wait at
/// most `queue_timeout` for one.
fn pool(slots: u32, queue_timeout: Duration) -> Sandbox {
    sandbox(SandboxConfig {
        max_instances: slots,
        queue_timeout,
        ..SandboxConfig::default()
    })
}

/// Runs `hostile-model` in `mode` on one row with default options.
fn run(m: &Plugin, mode: &str) -> Result<Outcome<Predictions>, PluginFailure> {
    m.predict(&CallOptions::default(), &hostile_batch(mode, 1))
}

/// Asserts that a benign call on `m` succeeds.
#[track_caller]
fn assert_benign(m: &Plugin) {
    let out = m
        .predict(&CallOptions::default(), &hostile_batch("ok", 3))
        .unwrap_or_else(|f| panic!("benign call failed: {f:#?}"));
    assert_eq!(out.value.values, vec![3.0, 3.0, 3.0]);
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
            assert_eq!(f.kind, kind, "wrong failure kind: {f:#?}");
            f
        }
    }
}

/// Waits (polling) until `cond` holds; panics after a minute.
#[track_caller]
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A gate-step context for `hostile-validator` in `mode`, with `model`'s
/// metadata as the candidate's.
fn validator_context(model: &Plugin, mode: &str) -> Context {
    let metadata = model.metadata(&CallOptions::default()).unwrap().value;
    Context {
        step: "longrun".to_string(),
        config: format!("{{\"mode\":\"{mode}\"}}"),
        seed: 1,
        candidate: ModelInfo {
            metadata,
            digest: model.digest.to_string(),
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

/// `model` as a validator's candidate, each probe capped at `fuel`.
fn candidate_link(model: &Arc<Plugin>, fuel: u64) -> CandidateLink {
    let options = with_limits(LimitRequest {
        fuel: Some(fuel),
        ..LimitRequest::default()
    });
    CandidateLink::new(CheckedModel::open(model.clone(), options).unwrap())
}

/// The finding codes of a verdict.
fn codes(v: &Verdict) -> Vec<&str> {
    v.findings.iter().map(|f| f.code.as_str()).collect()
}

// ------------------------------------------------- 1. no reference cycle

#[test]
fn dropping_every_sandbox_handle_and_plugin_frees_the_engine_and_stops_the_ticker() {
    let sb = pool(4, Duration::from_secs(30));
    let watch = sb.watch();
    let model = load(&sb, "hostile_model");
    let validator = load(&sb, "hostile_validator");
    assert_benign(&model);
    let ctx = validator_context(&model, "probe-swallow");
    let verdict = validator
        .validate(
            &CallOptions::default(),
            &ctx,
            Some(candidate_link(&model, SMALL_FUEL)),
        )
        .unwrap();
    assert!(verdict.value.passed);
    let mut session = model.instantiate(&CallOptions::default()).unwrap();
    session.predict(&hostile_batch("ok", 1)).unwrap();
    assert!(watch.engine_alive() && watch.ticker_running());

    // The sandbox handles go (a clone too), while callers still hold
    // plugins and a session: those keep working, deadlines included.
    let clone = sb.clone();
    drop((sb, clone, validator));
    assert!(watch.engine_alive() && watch.ticker_running());
    assert_benign(&model);
    let f = expect_failure(
        model.predict(
            &with_limits(LimitRequest {
                timeout_ms: Some(50),
                ..LimitRequest::default()
            }),
            &hostile_batch("loop", 1),
        ),
        FailureKind::Timeout,
    );
    assert_eq!(f.message, "ran past its 50 ms deadline");
    session.predict(&hostile_batch("ok", 1)).unwrap();

    // The last user goes: the engine is freed and the ticker has exited.
    drop((model, session));
    assert!(!watch.engine_alive(), "the engine outlived every handle");
    assert!(
        !watch.ticker_running(),
        "the epoch ticker outlived the engine"
    );
}

#[test]
fn a_sandbox_whose_cache_holds_its_plugins_is_still_freed_when_dropped() {
    // The old cycle: sandbox -> loaded plugins -> sandbox. Nothing but the
    // sandbox holds the plugins here.
    let sb = pool(2, Duration::from_secs(30));
    let watch = sb.watch();
    assert_benign(&load(&sb, "hostile_model"));
    load(&sb, "hostile_validator");
    assert_eq!(sb.loaded_count(), 2);
    drop(sb);
    assert!(!watch.engine_alive());
    assert!(!watch.ticker_running());
}

// ---------------------------------------------- 2. bounded plugin cache

#[test]
fn the_loaded_plugin_cache_evicts_the_least_recently_used_and_evicted_plugins_keep_working() {
    let sb = sandbox(SandboxConfig {
        max_loaded_plugins: 2,
        ..SandboxConfig::default()
    });
    let first = load(&sb, "hostile_model");
    load(&sb, "hostile_validator");
    load(&sb, "airlock_model_linear");
    let stats = sb.load_stats();
    assert_eq!(
        (stats.loaded, stats.capacity, stats.misses, stats.evictions),
        (2, 2, 3, 1)
    );
    assert_eq!(sb.loaded_count(), 2);

    // The evicted plugin still runs for the caller that holds it.
    assert_benign(&first);

    // Loading it again is a miss (the cache no longer had it), and evicts
    // the least recently used of the other two.
    let again = load(&sb, "hostile_model");
    let stats = sb.load_stats();
    assert_eq!((stats.hits, stats.misses, stats.evictions), (0, 4, 2));
    assert!(!Arc::ptr_eq(&first, &again));
    // The linear model was used more recently than the validator: a hit.
    load(&sb, "airlock_model_linear");
    assert_eq!(sb.load_stats().hits, 1);
    assert_benign(&again);
}

// ------------------------------------------------ 3. a full pool is busy

#[test]
fn n_plus_one_concurrent_calls_on_an_n_slot_pool_all_succeed_by_waiting() {
    const SLOTS: u32 = 2;
    let sb = pool(SLOTS, Duration::from_secs(60));
    let m = load(&sb, "hostile_model");
    let start = Arc::new(Barrier::new(SLOTS as usize + 1));
    let calls: Vec<_> = (0..=SLOTS)
        .map(|_| {
            let (m, start) = (m.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                run(&m, "print")
            })
        })
        .collect();
    for c in calls {
        let out = c.join().unwrap().unwrap_or_else(|f| panic!("{f:#?}"));
        assert_eq!(out.value.values, [PRINT_BYTES as f64]);
    }
    let stats = sb.slot_stats();
    eprintln!("after {} concurrent calls: {stats:?}", SLOTS + 1);
    assert_eq!(
        (
            stats.capacity,
            stats.in_use,
            stats.waiting,
            stats.busy_total
        ),
        (SLOTS, 0, 0, 0)
    );

    // The same, with the wait made certain: warm sessions hold every
    // slot, the extra call queues, and gets the slot a session gives back.
    let mut held: Vec<_> = (0..SLOTS)
        .map(|_| m.instantiate(&CallOptions::default()).unwrap())
        .collect();
    assert_eq!(sb.slot_stats().in_use, SLOTS);
    let extra = {
        let m = m.clone();
        std::thread::spawn(move || run(&m, "ok"))
    };
    wait_until("the extra call waits", || sb.slot_stats().waiting == 1);
    drop(held.pop());
    assert_eq!(extra.join().unwrap().unwrap().value.values, [1.0]);
    assert!(sb.slot_stats().waited_total >= 1);
    drop(held);
    assert_eq!(sb.slot_stats().in_use, 0);
}

#[test]
fn a_call_that_finds_every_slot_taken_for_the_whole_queue_timeout_fails_busy_and_the_host_keeps_working()
 {
    const SLOTS: u32 = 2;
    let sb = pool(SLOTS, Duration::from_millis(20));
    let m = load(&sb, "hostile_model");
    // N slow calls: each spins until its 1.5 s deadline (or its fuel).
    let slow: Vec<_> = (0..SLOTS)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                m.predict(
                    &with_limits(LimitRequest {
                        timeout_ms: Some(1_500),
                        ..LimitRequest::default()
                    }),
                    &hostile_batch("loop", 1),
                )
            })
        })
        .collect();
    wait_until("the slow calls hold every slot", || {
        sb.slot_stats().in_use == SLOTS
    });
    // Call N+1 waits 20 ms for a slot, then fails as the host's `busy`,
    // with no fuel charged to the plugin.
    let f = expect_failure(run(&m, "ok"), FailureKind::Busy);
    assert_eq!(
        f.message,
        "the host is at capacity: all 2 instance slots stayed taken for the whole queue timeout of 20 ms (queue_timeout_ms); retry later"
    );
    assert_eq!(f.fuel_used, 0);
    assert_eq!(f.to_string(), format!("busy: {}", f.message));
    for s in slow {
        let f = s.join().unwrap().unwrap_err();
        assert!(
            matches!(f.kind, FailureKind::Timeout | FailureKind::FuelExhausted),
            "{f:#?}"
        );
    }
    let stats = sb.slot_stats();
    assert_eq!((stats.in_use, stats.waiting, stats.busy_total), (0, 0, 1));
    assert_benign(&m);
}

#[test]
fn with_the_queue_full_a_call_fails_busy_at_once() {
    let sb = sandbox(SandboxConfig {
        max_instances: 2,
        max_queued_calls: 0,
        queue_timeout: Duration::from_secs(60),
        ..SandboxConfig::default()
    });
    let m = load(&sb, "hostile_model");
    let held: Vec<_> = (0..2)
        .map(|_| m.instantiate(&CallOptions::default()).unwrap())
        .collect();
    let f = expect_failure(run(&m, "ok"), FailureKind::Busy);
    assert_eq!(
        f.message,
        "the host is at capacity: all 2 instance slots are taken and 0 calls are already waiting (max_queued_calls = 0); retry later"
    );
    // Sessions wait in the same line.
    let f = expect_failure(m.instantiate(&CallOptions::default()), FailureKind::Busy);
    assert!(f.message.contains("max_queued_calls = 0"), "{}", f.message);
    drop(held);
    assert_benign(&m);
}

#[test]
fn validators_probing_their_candidate_cannot_deadlock_the_pool() {
    // Two slots and three validators at once, each probing the candidate.
    // Had each validator taken one slot and its probe waited for another,
    // two validators would hold both slots while both probes wait: every
    // probe would end `busy` at the queue timeout. A validator with a
    // candidate takes both its slots at once instead.
    let sb = pool(2, Duration::from_secs(60));
    let model = load(&sb, "hostile_model");
    let validator = load(&sb, "hostile_validator");
    let ctx = Arc::new(validator_context(&model, "probe-loop"));
    let start = Arc::new(Barrier::new(3));
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let (v, ctx, start) = (validator.clone(), ctx.clone(), start.clone());
            let link = candidate_link(&model, SMALL_FUEL);
            std::thread::spawn(move || {
                start.wait();
                v.validate(&CallOptions::default(), &ctx, Some(link))
            })
        })
        .collect();
    for r in runs {
        let verdict = r.join().unwrap().unwrap_or_else(|f| panic!("{f:#?}"));
        // The probe ran (and spun out its own fuel); it never waited busy.
        assert_eq!(codes(&verdict.value), ["candidate-fuel-exhausted"]);
        assert!(verdict.candidate_fuel_used >= SMALL_FUEL);
    }
    let stats = sb.slot_stats();
    assert_eq!((stats.in_use, stats.busy_total), (0, 0));
}

// ------------------------------------------------------ 4. warm sessions

#[test]
fn a_warm_session_starts_every_call_with_empty_logs() {
    let sb = sandbox(SandboxConfig::default());
    let m = load(&sb, "hostile_model");
    let fresh = run(&m, "print").unwrap();
    assert!(fresh.log_bytes_dropped > 0);
    let mut session = m.instantiate(&CallOptions::default()).unwrap();
    for _ in 0..3 {
        let out = session.predict(&hostile_batch("print", 1)).unwrap();
        // Not the earlier calls' output, and the whole cap again.
        assert_eq!(out.stdout, fresh.stdout);
        assert_eq!(out.log_bytes_dropped, fresh.log_bytes_dropped);
        assert_eq!(out.log_bytes_dropped + out.stdout.len() as u64, PRINT_BYTES);
    }
}

#[test]
fn a_warm_session_starts_every_call_with_the_virtual_clock_at_zero() {
    let sb = sandbox(SandboxConfig::default());
    let m = load(&sb, "hostile_model");
    // Each `clock` call reads the clock, then sleeps an hour of virtual time.
    let fresh = run(&m, "clock").unwrap().value.values;
    assert!(fresh[0] < 1e6, "a fresh call began at {} ns", fresh[0]);
    let mut session = m.instantiate(&CallOptions::default()).unwrap();
    for _ in 0..3 {
        let warm = session
            .predict(&hostile_batch("clock", 1))
            .unwrap()
            .value
            .values;
        // Without the reset, the second call would start an hour in.
        assert_eq!(warm, fresh);
    }
}

#[test]
fn a_warm_session_applies_the_input_cap_to_every_call() {
    let sb = sandbox(SandboxConfig::default());
    let m = load(&sb, "hostile_model");
    let mut session = m
        .instantiate(&with_limits(LimitRequest {
            max_input_bytes: Some(1_000),
            ..LimitRequest::default()
        }))
        .unwrap();
    // 2 + 200 × 8 bytes: over the cap, refused before the guest runs.
    let err = session.predict(&hostile_batch("ok", 200)).unwrap_err();
    let f = err.failure().expect("the call itself failed");
    assert_eq!(f.kind, FailureKind::InputTooLarge);
    assert_eq!(
        f.message,
        "input of 1602 bytes exceeds the cap of 1000 bytes"
    );
    // No guest code ran: the session still serves.
    assert!(session.is_open());
    let out = session.predict(&hostile_batch("ok", 3)).unwrap();
    assert_eq!(out.value.values, [3.0, 3.0, 3.0]);
}

#[test]
fn a_warm_session_refuses_calls_past_its_reuse_limit() {
    let sb = sandbox(SandboxConfig {
        session_max_calls: 3,
        ..SandboxConfig::default()
    });
    let m = load(&sb, "hostile_model");
    let mut session = m.instantiate(&CallOptions::default()).unwrap();
    for n in 1..=3 {
        let out = session.predict(&hostile_batch("remember", 1)).unwrap();
        assert_eq!(out.value.values, [f64::from(n)]);
    }
    assert_eq!(sb.slot_stats().in_use, 1);
    let err = session.predict(&hostile_batch("ok", 1)).unwrap_err();
    assert_eq!(err, SessionError::CallsSpent { max: 3 });
    assert_eq!(
        err.to_string(),
        "session refused: it has served its limit of 3 calls (session_max_calls); start a new session"
    );
    // Refusing gave the instance's slot back; later calls keep refusing.
    assert_eq!(sb.slot_stats().in_use, 0);
    assert!(!session.is_open());
    assert_eq!(session.predict(&hostile_batch("ok", 1)).unwrap_err(), err);
    assert_eq!(session.calls(), 3);
}

#[test]
fn a_warm_session_refuses_calls_after_sitting_idle_past_its_limit() {
    let sb = sandbox(SandboxConfig {
        session_max_idle: Duration::from_millis(50),
        ..SandboxConfig::default()
    });
    let m = load(&sb, "hostile_model");
    let mut session = m.instantiate(&CallOptions::default()).unwrap();
    session.predict(&hostile_batch("ok", 1)).unwrap();
    std::thread::sleep(Duration::from_millis(120));
    let err = session.predict(&hostile_batch("ok", 1)).unwrap_err();
    let SessionError::Idle { idle_ms, max_ms } = err else {
        panic!("expected an idle refusal, got {err:?}");
    };
    assert!(idle_ms >= 120, "{idle_ms}");
    assert_eq!(max_ms, 50);
    assert_eq!(
        err.to_string(),
        format!(
            "session refused: it was idle for {idle_ms} ms, past the limit of 50 ms (session_max_idle_ms); start a new session"
        )
    );
    assert_eq!(sb.slot_stats().in_use, 0);
}

#[test]
fn a_warm_session_that_trapped_refuses_further_calls_and_frees_its_slot() {
    let sb = sandbox(SandboxConfig::default());
    let m = load(&sb, "hostile_model");
    let mut session = m.instantiate(&CallOptions::default()).unwrap();
    let err = session.predict(&hostile_batch("panic", 1)).unwrap_err();
    assert_eq!(err.failure().map(|f| f.kind), Some(FailureKind::Trap));
    assert_eq!(sb.slot_stats().in_use, 0);
    let err = session.predict(&hostile_batch("ok", 1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "session refused: an earlier call on it failed (trap); start a new session"
    );
    assert_benign(&m);
}

// ------------------------------------------------------------ measure

#[test]
fn fresh_calls_and_their_slots_are_cheap_enough_to_measure() {
    // Not a timing assertion: prints what a fresh trivial call costs on this
    // machine with a roomy pool, to compare with the unit-level slot cost
    // (`cargo test --workspace --lib -- slots:: --nocapture`).
    let sb = sandbox(SandboxConfig::default());
    let m = load(&sb, "hostile_model");
    let b = hostile_batch("ok", 1);
    for _ in 0..50 {
        m.predict(&CallOptions::default(), &b).unwrap();
    }
    const CALLS: u32 = 500;
    let start = Instant::now();
    for _ in 0..CALLS {
        m.predict(&CallOptions::default(), &b).unwrap();
    }
    let per_call = start.elapsed() / CALLS;
    eprintln!("fresh trivial call: {per_call:?} per call over {CALLS} calls");
    let stats = sb.slot_stats();
    assert_eq!(
        (stats.in_use, stats.waited_total, stats.busy_total),
        (0, 0, 0)
    );
}
