//! airlock against its peers: what one trivial plugin call costs in Extism,
//! in airlock, and at the floor wasmtime itself sets.
//!
//! Every case runs in this one process, interleaved round by round (see
//! [`harness`]), so the ratios between rows are comparable even on a noisy
//! machine. The trivial call is one row in, one `f64` out, on a plugin that
//! does nothing with it: airlock's `hostile_model` in `ok` mode, and the
//! Extism guest in `extism-guest/` that mirrors it. The Markdown table goes
//! to stdout, progress to stderr.
//!
//! Inputs, by environment variable:
//! * `AIRLOCK_TRIVIAL_WASM`: the airlock component (default: the
//!   workspace's `hostile_model.wasm` under `target/wasm-plugins`);
//! * `EXTISM_GUEST_WASM`: the Extism guest (default: its release build in
//!   `extism-guest/target`).

mod floor;
mod harness;
mod peer_airlock;
mod peer_extism;

use airlock_runtime::sandbox::{CallOptions, SandboxConfig};
use anyhow::{Context, Result, ensure};
use harness::{Case, fmt_us};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

/// Where the airlock workspace puts the trivial component.
const DEFAULT_AIRLOCK_WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../target/wasm-plugins/wasm32-wasip2/plugin/hostile_model.wasm"
);

/// Where `run.sh` builds the Extism guest.
const DEFAULT_EXTISM_WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/extism-guest/target/wasm32-unknown-unknown/release/airlock_peer_extism_guest.wasm"
);

/// A path from `var`, or `default` when unset.
fn path_from_env(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// wasmtime 48's error (built without its `anyhow` feature) as an
/// `anyhow::Error`, keeping the whole chain in the message.
fn wasmtime_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

/// The 1-minute load average, so a noisy run says so.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// Sets everything up, checks that every path gives the expected answer,
/// measures the cases interleaved and prints the report.
fn main() -> Result<()> {
    let load_before = load_average();
    let airlock_wasm = path_from_env("AIRLOCK_TRIVIAL_WASM", DEFAULT_AIRLOCK_WASM);
    let extism_wasm = path_from_env("EXTISM_GUEST_WASM", DEFAULT_EXTISM_WASM);
    let sc = SandboxConfig::default();
    let extism_settings = peer_extism::Settings {
        fuel: sc.limits.fuel,
        timeout: Duration::from_millis(sc.limits.timeout_ms),
        memory_bytes: sc.limits.memory_bytes,
    };

    // ------------------------------------------------------------ setup
    eprintln!("loading {}", airlock_wasm.display());
    let (_sandbox, plugin) = peer_airlock::load(&airlock_wasm)?;
    let batch = peer_airlock::ok_batch();
    eprintln!("compiling {}", extism_wasm.display());
    let compiled = peer_extism::compile(&extism_wasm, extism_settings, false)?;
    let compiled_pool = peer_extism::compile(&extism_wasm, extism_settings, true)?;
    let input = peer_extism::one_row_input();
    let floor_engine = floor::airlock_like_engine(&sc).map_err(wasmtime_err)?;
    let empty_component = floor::EmptyComponent::new(&floor_engine, &sc).map_err(wasmtime_err)?;
    let empty_module = floor::EmptyModule::new(&floor_engine, &sc).map_err(wasmtime_err)?;

    // ----------------------------------------------------------- sanity
    // Both plugins must answer 1.0 (the row count) for the one-row input,
    // fresh and warm, so the timings compare the same trivial work.
    ensure!(
        peer_airlock::fresh_call(&plugin, &batch)? == 1.0,
        "airlock fresh answer"
    );
    let mut session = plugin
        .instantiate(&CallOptions::default())
        .map_err(|e| anyhow::anyhow!("airlock session: {e}"))?;
    let warm = session
        .predict(&batch)
        .map_err(|e| anyhow::anyhow!("airlock warm predict: {e}"))?;
    ensure!(warm.value.values == [1.0], "airlock warm answer");
    let fuel_airlock = warm.fuel_used;
    ensure!(
        peer_extism::fresh_call(&compiled, &input)? == 1.0,
        "extism fresh answer"
    );
    ensure!(
        peer_extism::fresh_call(&compiled_pool, &input)? == 1.0,
        "extism fresh (pooling) answer"
    );
    let mut warm_plugin = extism::Plugin::new_from_compiled(&compiled)?;
    ensure!(
        peer_extism::call(&mut warm_plugin, &input)? == 1.0,
        "extism warm answer"
    );
    ensure!(
        peer_extism::call(&mut warm_plugin, &input)? == 1.0,
        "extism warm answer (2nd)"
    );
    let fuel_extism = warm_plugin.fuel_consumed();
    empty_component
        .instantiate()
        .map_err(wasmtime_err)
        .context("empty component")?;
    empty_module
        .instantiate()
        .map_err(wasmtime_err)
        .context("empty module")?;

    // ------------------------------------------------------------ cases
    let mut cases: Vec<Case> = Vec::new();
    {
        let compiled = compiled.clone();
        let input = input.clone();
        cases.push(Case::new(
            "extism-fresh",
            "Extism: fresh plugin per call (`Plugin::new_from_compiled` + call)",
            move || {
                black_box(peer_extism::fresh_call(&compiled, &input).expect("extism fresh"));
            },
        ));
    }
    {
        // Where Extism's fresh call goes: building the plugin alone (new
        // store, relinking, the kernel instance); the guest itself is only
        // instantiated by the first call.
        let compiled = compiled.clone();
        cases.push(Case::new(
            "extism-new",
            "Extism: `Plugin::new_from_compiled` + drop, no call",
            move || {
                black_box(extism::Plugin::new_from_compiled(&compiled).expect("extism new"));
            },
        ));
    }
    {
        let input = input.clone();
        cases.push(Case::new(
            "extism-warm",
            "Extism: warm plugin, reused",
            move || {
                black_box(peer_extism::call(&mut warm_plugin, &input).expect("extism warm"));
            },
        ));
    }
    {
        let input = input.clone();
        cases.push(Case::new(
            "extism-fresh-pool",
            "Extism: fresh plugin per call, pooling allocator (`with_wasmtime_config`)",
            move || {
                black_box(peer_extism::fresh_call(&compiled_pool, &input).expect("extism pool"));
            },
        ));
    }
    {
        let plugin = plugin.clone();
        let batch = batch.clone();
        cases.push(Case::new(
            "airlock-fresh",
            "airlock: fresh instance per call (`Plugin::predict`)",
            move || {
                black_box(peer_airlock::fresh_call(&plugin, &batch).expect("airlock fresh"));
            },
        ));
    }
    {
        let batch = batch.clone();
        cases.push(Case::new(
            "airlock-warm",
            "airlock: warm instance (`Plugin::instantiate` → `Session::predict`)",
            move || {
                black_box(session.predict(&batch).expect("airlock warm"));
            },
        ));
    }
    cases.push(Case::new(
        "floor-component",
        "wasmtime 48 floor: empty component, fresh store + `InstancePre::instantiate`",
        move || empty_component.instantiate().expect("floor component"),
    ));
    cases.push(Case::new(
        "floor-module",
        "wasmtime 48 floor: empty core module, fresh store + `InstancePre::instantiate`",
        move || empty_module.instantiate().expect("floor module"),
    ));

    // -------------------------------------------------------------- run
    harness::run_all(&mut cases);

    // ----------------------------------------------------------- report
    let median = |key: &str| -> f64 {
        cases
            .iter()
            .find(|c| c.key == key)
            .unwrap_or_else(|| panic!("no case {key}"))
            .summary()
            .median
    };
    println!("| # | case | key | median µs | p10 µs | p90 µs | batch medians µs | iterations |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for (i, c) in cases.iter().enumerate() {
        let s = c.summary();
        println!(
            "| {} | {} | `{}` | {} | {} | {} | {}–{} | {} |",
            i + 1,
            c.what,
            c.key,
            fmt_us(s.median),
            fmt_us(s.p10),
            fmt_us(s.p90),
            fmt_us(s.batch_lo),
            fmt_us(s.batch_hi),
            s.n
        );
    }
    let ratio = |a: &str, b: &str| format!("{:.2}×", median(a) / median(b));
    println!();
    println!("| ratio (of medians) | value |");
    println!("|---|---:|");
    let rows = [
        (
            "Extism fresh ÷ airlock fresh",
            ratio("extism-fresh", "airlock-fresh"),
        ),
        (
            "Extism warm ÷ airlock warm",
            ratio("extism-warm", "airlock-warm"),
        ),
        (
            "airlock fresh ÷ floor (empty component)",
            ratio("airlock-fresh", "floor-component"),
        ),
        (
            "Extism fresh, pooling ÷ airlock fresh",
            ratio("extism-fresh-pool", "airlock-fresh"),
        ),
        (
            "Extism fresh ÷ Extism fresh, pooling",
            ratio("extism-fresh", "extism-fresh-pool"),
        ),
        (
            "Extism plugin creation alone ÷ Extism fresh",
            ratio("extism-new", "extism-fresh"),
        ),
        (
            "airlock fresh − airlock warm",
            format!(
                "{} µs",
                fmt_us(median("airlock-fresh") - median("airlock-warm"))
            ),
        ),
        (
            "airlock fresh − floor (empty component)",
            format!(
                "{} µs",
                fmt_us(median("airlock-fresh") - median("floor-component"))
            ),
        ),
    ];
    for (what, value) in rows {
        println!("| {what} | {value} |");
    }
    println!();
    println!(
        "Fuel of one warm trivial call: airlock {fuel_airlock}, Extism {}.",
        fuel_extism.map_or("n/a".to_string(), |f| f.to_string())
    );
    println!(
        "Settings: airlock `SandboxConfig::default()` (fuel {}, timeout {} ms via a {} ms epoch tick, \
         memory cap {} MiB, pooling, {} MiB kept resident); Extism 1.41 with the same fuel, \
         timeout and memory cap, no WASI, cache off; {} rounds, ~{} ms per batch, {} ms warm-up.",
        sc.limits.fuel,
        sc.limits.timeout_ms,
        sc.epoch_tick.as_millis(),
        sc.limits.memory_bytes >> 20,
        sc.keep_resident_bytes >> 20,
        harness::ROUNDS,
        harness::BATCH_TARGET.as_millis(),
        harness::WARMUP.as_millis(),
    );
    println!(
        "Load average (1 min) at start: {load_before}; at end: {}.",
        load_average()
    );
    Ok(())
}
