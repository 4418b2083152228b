//! How long the worst components that the default `[component]` caps admit
//! take to compile, to check that the caps keep compiling within a few
//! seconds. Each case appends one hostile core module to the
//! `hostile-model` plugin, checks that the default caps admit it (with a
//! second memory allowed, which the hostile module needs for its loads),
//! and compiles it in a fresh sandbox without a disk cache.
//!
//! Run: `cargo bench --workspace --bench compile_caps`. Peak memory:
//! `/usr/bin/time -v target/release/deps/compile_caps-*`.

#[path = "../tests/bombs/mod.rs"]
mod bombs;

use airlock_runtime::precheck::{self, ComponentCaps};
use airlock_runtime::sandbox::{Sandbox, SandboxConfig};
use airlock_tests::plugin;
use bombs::{Func, deep_chunks, live_locals, loop_nests, module, with_extra_module};
use std::time::Instant;

/// The default caps with room for the hostile module's own memory.
fn caps() -> ComponentCaps {
    ComponentCaps {
        max_memories: 2,
        ..ComponentCaps::default()
    }
}

/// Compiles `base` plus `extra` in a fresh sandbox and prints the time.
fn case(what: &str, base: &[u8], extra: &wasm_encoder::Module) {
    let bytes = with_extra_module(base, extra);
    let summary = precheck::check(&bytes, &caps(), 256 << 20)
        .unwrap_or_else(|e| panic!("{what}: the caps should admit it: {e}"));
    let sb = Sandbox::new(SandboxConfig {
        cache_dir: None,
        component_caps: caps(),
        ..SandboxConfig::default()
    })
    .expect("sandbox");
    let start = Instant::now();
    sb.load(&bytes).expect("load");
    println!(
        "{what:<48} {:>9} code bytes, stack {:>3}, loop-weighted accesses {:>7}: compiled in {:>8.2?}",
        summary.code_bytes,
        summary.deepest_stack,
        summary.loop_local_accesses,
        start.elapsed()
    );
}

fn main() {
    let base = std::fs::read(plugin("hostile_model")).expect("hostile_model");
    let fresh = Sandbox::new(SandboxConfig {
        cache_dir: None,
        ..SandboxConfig::default()
    })
    .expect("sandbox");
    let start = Instant::now();
    fresh.load(&base).expect("load");
    println!(
        "{:<48} {:>9} code bytes: compiled in {:>8.2?}",
        "hostile-model alone",
        "",
        start.elapsed()
    );
    let caps = caps();
    // What is left of the code cap after hostile-model's own code (measured,
    // since the plugin grows as attacks are added), with a little slack for
    // the appended module's own framing.
    let own = precheck::check(&base, &caps, 256 << 20)
        .expect("hostile-model fits the caps")
        .code_bytes as usize;
    let room = caps.max_code_bytes as usize - own - 1_024;
    let body = caps.max_function_body_bytes as usize - 64;
    // Full-size functions, and one more with what is left of the code cap.
    let sizes: Vec<usize> = (0..room / body)
        .map(|_| body)
        .chain([room % body - 64])
        .collect();

    let funcs: Vec<Func> = sizes
        .iter()
        .map(|&size| Func {
            locals: 0,
            body: deep_chunks(caps.max_stack_height as u32 + 1, size),
        })
        .collect();
    case(
        "loads at the stack cap, filling the code cap",
        &base,
        &module(&funcs, &[1], None),
    );

    let funcs: Vec<Func> = sizes
        .iter()
        .map(|&size| Func {
            locals: caps.max_locals_per_function as u32,
            body: live_locals(caps.max_locals_per_function as u32, size),
        })
        .collect();
    case(
        "live locals at the locals cap, filling the code cap",
        &base,
        &module(&funcs, &[1], None),
    );

    let (body, totals) = loop_nests(500, 100, 16);
    let within = totals
        .iter()
        .take_while(|&&t| t <= caps.max_loop_local_accesses)
        .count();
    assert!(within == totals.len(), "loop nests over the cap");
    case(
        "loop nests up to the loop-weighted cap",
        &base,
        &module(&[Func { locals: 500, body }], &[], None),
    );

    let count = caps.max_functions as usize - 1_000; // hostile-model's own
    let funcs: Vec<Func> = (0..count).map(|_| Func::empty()).collect();
    case(
        "tiny functions up to the function cap",
        &base,
        &module(&funcs, &[], None),
    );

    for lib in ["airlock_model_xgboost", "airlock_validator_performance"] {
        let bytes = std::fs::read(plugin(lib)).expect("plugin");
        let sb = Sandbox::new(SandboxConfig {
            cache_dir: None,
            ..SandboxConfig::default()
        })
        .expect("sandbox");
        let start = Instant::now();
        sb.load(&bytes).expect("load");
        println!("{lib:<48} compiled in {:>8.2?}", start.elapsed());
    }
}
