//! Resource exhaustion before any cap applies: components built to make
//! Cranelift (or the host's file reads) spend minutes and gigabytes, and
//! components with several memories that together exceed the memory cap.
//!
//! Each bomb from the security review is built here with `wasm-encoder` and
//! must be refused by the static pass of `airlock_runtime::precheck`, naming
//! the cap, before anything is compiled; each test prints how long the
//! refusal took (timings are shown, not asserted). The real plugins must fit
//! the default caps with room to spare, and the static view of a component's
//! imports must be exactly wasmtime's.

use airlock_core::types::{Batch, Column, ColumnValues};
use airlock_runtime::precheck::{self, ComponentCaps, PrecheckError};
use airlock_runtime::sandbox::{CallOptions, Plugin, Sandbox, SandboxConfig};
use airlock_runtime::{FailureKind, PluginFailure, SandboxError};
use airlock_tests::{plugin, sandbox};
use std::path::Path;
use std::time::Instant;
use wasm_encoder::Component;

use crate::bombs::*;

// ----------------------------------------------------------------- helpers

/// A sandbox with `caps` (no disk cache: refused components never reach it
/// anyway, and a custom engine must not share artifacts).
fn sandbox_with(caps: ComponentCaps) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cache_dir: None,
        component_caps: caps,
        ..SandboxConfig::default()
    })
    .expect("sandbox")
}

/// Loads `bytes`, asserts the refusal is `kind` with exactly `message`, and
/// prints how long it took.
#[track_caller]
fn assert_refused(sb: &Sandbox, what: &str, bytes: &[u8], kind: FailureKind, message: &str) {
    let start = Instant::now();
    let result = sb.load(bytes);
    let elapsed = start.elapsed();
    match result {
        Ok(p) => panic!(
            "{what}: expected {kind}, but it loaded as a {} plugin",
            p.world
        ),
        Err(SandboxError::Plugin(f)) => {
            eprintln!(
                "{what} ({} bytes): refused in {elapsed:?}: {f}",
                bytes.len()
            );
            assert_eq!(f.kind, kind, "{what}: {f:#?}");
            assert_eq!(f.message, message, "{what}");
        }
        Err(e) => panic!("{what}: expected {kind}, got {e:?}"),
    }
}

/// A one-row batch for `hostile-model`'s attack `mode`.
fn batch(mode: &str) -> Batch {
    Batch {
        rows: 1,
        columns: vec![Column {
            name: mode.to_string(),
            values: ColumnValues::Numeric(vec![0.0]),
        }],
    }
}

/// Asserts the benign `ok` call of `hostile-model` succeeds on `m`.
#[track_caller]
fn assert_benign(m: &Plugin) {
    let out = m
        .predict(&CallOptions::default(), &batch("ok"))
        .unwrap_or_else(|f| panic!("benign call failed: {f:#?}"));
    assert_eq!(out.value.values, vec![1.0]);
}

#[track_caller]
fn expect_call_failure<T: std::fmt::Debug>(r: Result<T, PluginFailure>) -> PluginFailure {
    match r {
        Ok(v) => panic!("expected a failure, the call returned {v:?}"),
        Err(f) => {
            eprintln!("observed {f}");
            f
        }
    }
}

/// Every first-party and hostile component the build produced.
fn built_components() -> Vec<std::path::PathBuf> {
    let dir = plugin("hostile_model").parent().unwrap().to_path_buf();
    let mut all: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    all.sort();
    assert!(all.len() >= 5, "{all:?}");
    all
}

// -------------------------------------------------------------- the bombs

#[test]
fn a_function_with_49000_locals_is_refused_before_compiling() {
    let caps = ComponentCaps::default();
    let f = Func {
        locals: 49_000,
        body: locals_heavy(49_000, 100_000),
    };
    let bytes = component(&[module(&[Func::empty(), f], &[], None)]);
    assert_refused(
        &sandbox_with(caps),
        "49,000 locals",
        &bytes,
        FailureKind::InvalidComponent,
        &format!(
            "function 1 of core module 0 declares 49000 locals; the cap is {} (component.max_locals_per_function)",
            caps.max_locals_per_function
        ),
    );
}

#[test]
fn a_7_mb_straight_line_function_is_refused_before_compiling() {
    let caps = ComponentCaps::default();
    let f = Func {
        locals: 0,
        body: straight_line(7_000_000),
    };
    let len = body_len(&f);
    let bytes = component(&[module(&[f], &[], None)]);
    assert_refused(
        &sandbox_with(caps),
        "7 MB straight-line function",
        &bytes,
        FailureKind::InvalidComponent,
        &format!(
            "function 0 of core module 0 has a body of {len} bytes; the cap is {} (component.max_function_body_bytes)",
            caps.max_function_body_bytes
        ),
    );
}

#[test]
fn three_hundred_thousand_tiny_functions_are_refused_before_compiling() {
    let caps = ComponentCaps::default();
    let funcs: Vec<Func> = (0..300_000).map(|_| Func::empty()).collect();
    let bytes = component(&[module(&funcs, &[], None)]);
    assert_refused(
        &sandbox_with(caps),
        "300,000 functions",
        &bytes,
        FailureKind::InvalidComponent,
        &format!(
            "the component's core modules define at least 300000 functions; the cap is {} (component.max_functions)",
            caps.max_functions
        ),
    );
}

#[test]
fn many_functions_each_under_the_body_cap_are_refused_by_the_total_code_cap() {
    let caps = ComponentCaps::default();
    let each = caps.max_function_body_bytes as usize - 64;
    let n = (caps.max_code_bytes as usize / each) + 1;
    let funcs: Vec<Func> = (0..n)
        .map(|_| Func {
            locals: 0,
            body: straight_line(each - 8),
        })
        .collect();
    let total: usize = funcs.iter().map(body_len).sum();
    let bytes = component(&[module(&funcs, &[], None)]);
    assert_refused(
        &sandbox_with(caps),
        "code spread over many functions",
        &bytes,
        FailureKind::InvalidComponent,
        &format!(
            "the component's function bodies total at least {total} bytes; the cap is {} (component.max_code_bytes)",
            caps.max_code_bytes
        ),
    );
}

#[test]
fn a_deep_operand_stack_is_refused_before_compiling() {
    // 26,000 values live at once compiled for 24 s; the cap stops it at
    // the first value past the cap.
    let caps = ComponentCaps::default();
    let f = Func {
        locals: 0,
        body: deep_stack(26_000),
    };
    let bytes = component(&[module(&[f], &[1], None)]);
    assert_refused(
        &sandbox_with(caps),
        "26,000 values on the operand stack",
        &bytes,
        FailureKind::InvalidComponent,
        &format!(
            "function 0 of core module 0 pushes {} values on its operand stack; the cap is {} (component.max_stack_height)",
            caps.max_stack_height + 1,
            caps.max_stack_height
        ),
    );
}

#[test]
fn deeply_nested_blocks_are_refused_before_compiling() {
    let caps = ComponentCaps::default();
    let f = Func {
        locals: 0,
        body: nested_blocks(50_000),
    };
    let bytes = component(&[module(&[Func::empty(), Func::empty(), f], &[], None)]);
    assert_refused(
        &sandbox_with(caps),
        "50,000 nested blocks",
        &bytes,
        FailureKind::InvalidComponent,
        &format!(
            "function 2 of core module 0 nests blocks {} deep; the cap is {} (component.max_nesting_depth)",
            caps.max_nesting_depth + 1,
            caps.max_nesting_depth
        ),
    );
}

#[test]
fn loop_nests_over_many_locals_are_refused_before_compiling() {
    // The shape that compiled for 80 s in 2.5 GB (1,000 nested loops over
    // 2,000 locals, repeated through a 250 KB function), kept here within
    // the nesting cap (25 nests of 200 loops), so that the loop-weighted
    // local accesses are what refuse it.
    let caps = ComponentCaps::default();
    let (body, totals) = loop_nests(2_000, 200, 25);
    let first_over = *totals
        .iter()
        .find(|&&t| t > caps.max_loop_local_accesses)
        .expect("the bomb exceeds the cap");
    let bytes = component(&[module(
        &[Func {
            locals: 2_000,
            body,
        }],
        &[],
        None,
    )]);
    assert_refused(
        &sandbox_with(caps),
        "loop nests over 2,000 locals",
        &bytes,
        FailureKind::InvalidComponent,
        &format!(
            "the component's local accesses weighted by enclosing loops reach {first_over} in function 0 of core module 0; the cap is {} (component.max_loop_local_accesses)",
            caps.max_loop_local_accesses
        ),
    );
}

#[test]
fn a_component_over_the_size_cap_is_refused_before_parsing() {
    let caps = ComponentCaps {
        max_component_bytes: 1 << 20,
        ..ComponentCaps::default()
    };
    // Padded with a custom section: well formed, but large.
    let mut big = component(&[module(&[Func::empty()], &[], None)]);
    let mut extra = Component::new();
    extra.section(&wasm_encoder::CustomSection {
        name: "padding".into(),
        data: vec![0u8; 2 << 20].into(),
    });
    big.extend_from_slice(&extra.finish()[8..]);
    assert_refused(
        &sandbox_with(caps),
        "oversized component",
        &big,
        FailureKind::InvalidComponent,
        &format!(
            "the component is {} bytes; the cap is {} (component.max_component_bytes)",
            big.len(),
            1 << 20
        ),
    );
}

#[test]
fn four_memories_are_refused_by_the_memory_count_cap() {
    let caps = ComponentCaps::default();
    let bytes = component(&[module(&[], &[1, 1, 1, 1], None)]);
    assert_refused(
        &sandbox_with(caps),
        "four memories",
        &bytes,
        FailureKind::InvalidComponent,
        &format!(
            "the component's core modules define at least {} linear memories; the cap is {} (component.max_memories)",
            caps.max_memories + 1,
            caps.max_memories
        ),
    );
}

#[test]
fn a_memory_whose_minimum_exceeds_the_memory_cap_is_refused_before_compiling() {
    let sb = sandbox_with(ComponentCaps::default());
    let cap = sb.config().limits.memory_bytes;
    let pages = cap / 65536 + 1;
    let bytes = component(&[
        module(&[Func::empty()], &[], None),
        module(&[], &[pages], None),
    ]);
    assert_refused(
        &sb,
        "memory minimum above the cap",
        &bytes,
        FailureKind::InvalidComponent,
        &format!(
            "memory 0 of core module 1 declares a minimum of {} bytes; the memory cap is {cap} bytes (limits.memory_bytes)",
            pages * 65536
        ),
    );
}

// ------------------------------------------- policy and shape before compiling

#[test]
fn a_core_module_is_refused_with_the_wasm32_wasip2_hint() {
    let core = module(&[Func::empty()], &[], None).finish();
    let expected = "this is a core WebAssembly module, not a component: build the guest for `wasm32-wasip2` (rustup target add wasm32-wasip2; cargo build --target wasm32-wasip2) or with `airlock plugin build`";
    assert_refused(
        &sandbox(),
        "core module",
        &core,
        FailureKind::InvalidComponent,
        expected,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.wasm");
    std::fs::write(&path, &core).unwrap();
    let f = read_refusal(&path);
    assert_eq!(
        f.message,
        format!("component file {}: {expected}", path.display())
    );
}

/// A sandbox whose compile limit (1 ms) no real plugin can meet: any
/// component that reaches the compiler is refused as too slow to compile,
/// which makes reaching the compiler observable.
fn sandbox_that_cannot_compile() -> Sandbox {
    sandbox_with(ComponentCaps {
        compile_timeout_ms: 1,
        ..ComponentCaps::default()
    })
}

/// Loads `bytes` and returns the plugin failure it must end in.
#[track_caller]
fn load_failure(sb: &Sandbox, bytes: &[u8]) -> PluginFailure {
    match sb.load(bytes) {
        Err(SandboxError::Plugin(f)) => {
            eprintln!("observed at load: {f}");
            f
        }
        Err(e) => panic!("expected a plugin failure, got {e:?}"),
        Ok(p) => panic!("expected a refusal, it loaded as a {} plugin", p.world),
    }
}

#[test]
fn a_compile_past_the_time_limit_is_refused_and_its_result_never_cached() {
    let sb = sandbox_that_cannot_compile();
    let model = std::fs::read(plugin("hostile_model")).unwrap();
    for attempt in 0..2 {
        let f = load_failure(&sb, &model);
        assert_eq!(f.kind, FailureKind::InvalidComponent, "{f:#?}");
        assert!(
            f.message.starts_with(
                "compiling took longer than 1 ms (component.compile_timeout_ms); the compile cannot be interrupted, so it finishes on a background thread and its result is discarded ("
            ),
            "attempt {attempt}: {f:#?}"
        );
        // Wait for the abandoned compile to finish: its result must not
        // have been cached, so the next attempt compiles (and is refused)
        // again instead of finding it.
        let start = Instant::now();
        while sb.compiles_running() > 0 {
            assert!(
                start.elapsed().as_secs() < 120,
                "the background compile never ended"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn a_socket_import_is_refused_without_compiling_the_component() {
    let sb = sandbox_that_cannot_compile();
    for lib in ["hostile_socket", "hostile_import"] {
        let bytes = std::fs::read(plugin(lib)).unwrap();
        let start = Instant::now();
        let f = load_failure(&sb, &bytes);
        eprintln!("{lib} refused in {:?}", start.elapsed());
        // Not "compiling took longer than 1 ms": the compiler never saw it.
        assert_eq!(f.kind, FailureKind::DisallowedImport, "{lib}: {f:#?}");
    }
    let f = load_failure(&sb, &std::fs::read(plugin("hostile_socket")).unwrap());
    assert!(
        f.message
            .starts_with("model plugin imports interfaces not granted: wasi:sockets/"),
        "{f:#?}"
    );
    let f = load_failure(&sb, &std::fs::read(plugin("hostile_import")).unwrap());
    assert_eq!(
        f.message,
        "model plugin imports an interface not granted: evil:exfil/leak@1.0.0"
    );
}

#[test]
fn an_invalid_function_body_is_refused_by_validation_before_compiling() {
    // `i32.add` on an empty stack, appended to a component that would
    // otherwise load: refused by the static pass, not by the compiler.
    let invalid = module(
        &[Func {
            locals: 0,
            body: vec![0x6a],
        }],
        &[],
        None,
    );
    let bytes = with_extra_module(&std::fs::read(plugin("hostile_model")).unwrap(), &invalid);
    let f = load_failure(&sandbox_that_cannot_compile(), &bytes);
    assert_eq!(f.kind, FailureKind::InvalidComponent, "{f:#?}");
    assert!(
        f.message
            .starts_with("not a valid component: type mismatch: expected i32 but nothing on stack"),
        "{f:#?}"
    );
}

#[test]
fn static_imports_and_exports_are_exactly_wasmtimes() {
    let sb = sandbox();
    for path in built_components() {
        let bytes = std::fs::read(&path).unwrap();
        let summary = precheck::check(&bytes, &ComponentCaps::default(), 256 << 20)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let ins = sb.inspect(&bytes).unwrap();
        assert_eq!(summary.imports, ins.imports, "{}", path.display());
        assert_eq!(summary.exports, ins.exports, "{}", path.display());
        assert_eq!(summary.world().unwrap(), ins.world, "{}", path.display());
    }
}

#[test]
fn every_built_plugin_fits_the_default_caps_with_room_to_spare() {
    let caps = ComponentCaps::default();
    for path in built_components() {
        let bytes = std::fs::read(&path).unwrap();
        let s = precheck::check(&bytes, &caps, 256 << 20)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!(
            "{}: {} bytes, {} core modules, {} functions, {} code bytes, largest body {}, most locals {}, deepest stack {}, deepest nesting {}, loop-weighted local accesses {}, {} memories",
            path.file_name().unwrap().to_string_lossy(),
            bytes.len(),
            s.core_modules,
            s.functions,
            s.code_bytes,
            s.largest_function_body,
            s.most_locals,
            s.deepest_stack,
            s.deepest_nesting,
            s.loop_local_accesses,
            s.memories
        );
        let name = path.display();
        // Half of each cap: a plugin that grows past it should make someone
        // look at the defaults, not fail in production.
        assert!(bytes.len() as u64 <= caps.max_component_bytes / 2, "{name}");
        assert!(s.functions <= caps.max_functions / 2, "{name}");
        assert!(s.code_bytes <= caps.max_code_bytes / 2, "{name}");
        assert!(
            s.largest_function_body <= caps.max_function_body_bytes / 2,
            "{name}"
        );
        assert!(s.most_locals <= caps.max_locals_per_function / 2, "{name}");
        assert!(s.memories <= caps.max_memories, "{name}");
    }
}

// ------------------------------------------------------ memory per call

/// Caps that admit the multi-memory components below, so the runtime
/// total is what refuses them.
fn many_memories() -> ComponentCaps {
    ComponentCaps {
        max_memories: 8,
        ..ComponentCaps::default()
    }
}

#[test]
fn four_memories_of_100_mib_exceed_the_total_memory_cap_of_one_call() {
    let sb = sandbox_with(many_memories());
    assert_eq!(sb.config().limits.memory_bytes, 256 << 20);
    let model = std::fs::read(plugin("hostile_model")).unwrap();
    // Each memory alone (100 MiB) is well under the 256 MiB cap.
    let bomb = with_extra_instance(&model, &growing_memories(4, 1600));
    let m = sb.load(&bomb).expect("the bomb passes the static caps");
    let f = expect_call_failure(m.predict(&CallOptions::default(), &batch("ok")));
    assert_eq!(f.kind, FailureKind::MemoryLimit, "{f:#?}");
    assert!(
        f.message.starts_with("linear memory growth from 0 to 104857600 bytes denied: with the call's other memories ("),
        "{f:#?}"
    );
    assert!(
        f.message.ends_with(&format!(
            "(cap {} bytes for all memories together)",
            256 << 20
        )),
        "{f:#?}"
    );
    // The same sandbox still serves benign calls.
    assert_benign(&sb.load(&model).unwrap());
}

#[test]
fn four_memories_whose_minimums_add_up_past_the_cap_fail_at_instantiation() {
    let sb = sandbox_with(many_memories());
    let model = std::fs::read(plugin("hostile_model")).unwrap();
    let bomb = with_extra_instance(&model, &module(&[], &[1600, 1600, 1600, 1600], None));
    let m = sb.load(&bomb).expect("each minimum is under the cap");
    let f = expect_call_failure(m.predict(&CallOptions::default(), &batch("ok")));
    assert_eq!(f.kind, FailureKind::MemoryLimit, "{f:#?}");
    assert!(f.message.contains("for all memories together"), "{f:#?}");
    assert_benign(&sb.load(&model).unwrap());
}

#[test]
fn several_memories_within_the_total_are_allowed() {
    let sb = sandbox_with(many_memories());
    let model = std::fs::read(plugin("hostile_model")).unwrap();
    // 4 x 50 MiB plus the model's own memory stays under 256 MiB.
    let ok = with_extra_instance(&model, &growing_memories(4, 800));
    assert_benign(&sb.load(&ok).expect("load"));
}

// ------------------------------------------------------- reading the file

/// `read_component` on `path`, which must be refused as an invalid
/// component.
#[track_caller]
fn read_refusal(path: &Path) -> PluginFailure {
    let start = Instant::now();
    let r = sandbox().read_component(path);
    let elapsed = start.elapsed();
    match r {
        Ok(b) => panic!("{} was read ({} bytes)", path.display(), b.len()),
        Err(SandboxError::Plugin(f)) => {
            eprintln!("{} refused in {elapsed:?}: {f}", path.display());
            assert_eq!(f.kind, FailureKind::InvalidComponent, "{f:#?}");
            f
        }
        Err(e) => panic!("{}: expected invalid_component, got {e:?}", path.display()),
    }
}

#[test]
fn dev_zero_given_as_a_component_is_refused_without_reading() {
    let f = read_refusal(Path::new("/dev/zero"));
    assert_eq!(
        f.message,
        "component file /dev/zero: is a character device, not a regular file"
    );
    let e = sandbox().load_file(Path::new("/dev/zero")).err().unwrap();
    assert_eq!(e.failure_kind(), Some(FailureKind::InvalidComponent));
}

#[test]
fn a_fifo_given_as_a_component_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("plugin.wasm");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let f = read_refusal(&fifo);
    assert_eq!(
        f.message,
        format!(
            "component file {}: is a FIFO, not a regular file",
            fifo.display()
        )
    );
}

#[test]
fn a_directory_given_as_a_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = read_refusal(dir.path());
    assert_eq!(
        f.message,
        format!(
            "component file {}: is a directory, not a regular file",
            dir.path().display()
        )
    );
}

#[test]
fn a_sparse_1_5_gib_file_is_refused_by_its_size_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.wasm");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(3 << 29).unwrap();
    let f = read_refusal(&path);
    assert_eq!(
        f.message,
        format!(
            "component file {}: is 1610612736 bytes; the cap is {} bytes (component.max_component_bytes)",
            path.display(),
            ComponentCaps::default().max_component_bytes
        )
    );
}

#[test]
fn a_file_without_the_magic_number_is_refused_after_reading_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    std::fs::write(&path, b"{\"learner\": {}}").unwrap();
    let f = read_refusal(&path);
    assert_eq!(
        f.message,
        format!(
            "component file {}: not a WebAssembly component: the file does not start with the `\\0asm` magic number",
            path.display()
        )
    );
    let unknown = dir.path().join("future.wasm");
    std::fs::write(&unknown, b"\0asm\x0e\0\x01\0").unwrap();
    let f = read_refusal(&unknown);
    assert!(
        f.message.ends_with(
            "not a WebAssembly component: unknown version/layer bytes [0e, 00, 01, 00] (a component has 0d 00 01 00)"
        ),
        "{f:#?}"
    );
}

#[test]
fn a_real_component_file_reads_back_whole() {
    let path = plugin("hostile_model");
    let bytes = sandbox().read_component(&path).unwrap();
    assert_eq!(bytes, std::fs::read(&path).unwrap());
}

#[test]
fn precheck_errors_say_which_cap_and_value() {
    let e = precheck::check(b"\0asm\x01\0\0\0", &ComponentCaps::default(), 1 << 20).unwrap_err();
    assert_eq!(e, PrecheckError::CoreModule);
    let bytes = component(&[module(&[Func::empty(), Func::empty()], &[], None)]);
    let caps = ComponentCaps {
        max_functions: 1,
        ..ComponentCaps::default()
    };
    assert_eq!(
        precheck::check(&bytes, &caps, 1 << 20)
            .unwrap_err()
            .to_string(),
        "the component's core modules define at least 2 functions; the cap is 1 (component.max_functions)"
    );
}
