//! Builders of hostile components for `compile_bombs` (the refusals) and
//! the `compile_caps` bench (the worst components the caps admit): core
//! modules of `() -> ()` functions with chosen bodies, wrapped in
//! components or appended to a real plugin.
//!
//! Each user needs only some of the builders.
#![allow(dead_code)]

use wasm_encoder::{
    CodeSection, Component, Function, FunctionSection, InstanceSection, MemorySection, MemoryType,
    Module, ModuleArg, ModuleSection, StartSection, TypeSection, ValType,
};

/// One core function: how many `i64` locals it declares and its body
/// (instructions without the final `end`).
pub struct Func {
    /// `i64` locals declared.
    pub locals: u32,
    /// Instructions, without the final `end`.
    pub body: Vec<u8>,
}

impl Func {
    /// A function that does nothing.
    pub fn empty() -> Func {
        Func {
            locals: 0,
            body: Vec::new(),
        }
    }
}

/// A core module of `() -> ()` functions and memories of `pages` minimum
/// 64 KiB pages each, with `start` as its start function when given.
pub fn module(funcs: &[Func], memories: &[u64], start: Option<u32>) -> Module {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    m.section(&types);
    let mut fs = FunctionSection::new();
    for _ in funcs {
        fs.function(0);
    }
    m.section(&fs);
    if !memories.is_empty() {
        let mut ms = MemorySection::new();
        for &pages in memories {
            ms.memory(MemoryType {
                minimum: pages,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        m.section(&ms);
    }
    if let Some(f) = start {
        m.section(&StartSection { function_index: f });
    }
    let mut code = CodeSection::new();
    for f in funcs {
        let mut func = if f.locals == 0 {
            Function::new([])
        } else {
            Function::new([(f.locals, ValType::I64)])
        };
        func.raw(f.body.iter().copied());
        func.raw([0x0b]);
        code.function(&func);
    }
    m.section(&code);
    m
}

/// A component holding `modules` and nothing else.
pub fn component(modules: &[Module]) -> Vec<u8> {
    let mut c = Component::new();
    for m in modules {
        c.section(&ModuleSection(m));
    }
    c.finish()
}

/// The encoded size of a function body as the code section stores it
/// (locals declarations, instructions and `end`; not the size prefix).
pub fn body_len(f: &Func) -> usize {
    let locals: &[u8] = if f.locals == 0 {
        &[0]
    } else {
        // one declaration, its count as LEB128, the type byte
        &[1]
    };
    let mut n = locals.len() + f.body.len() + 1;
    if f.locals != 0 {
        n += leb_len(u64::from(f.locals)) + 1;
    }
    n
}

pub fn leb_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub fn push_leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A straight-line body of `i32.const 1; drop` pairs, `bytes` long.
pub fn straight_line(bytes: usize) -> Vec<u8> {
    [0x41, 0x01, 0x1a].repeat(bytes / 3)
}

/// A body about `bytes` long that keeps `locals` `i64` locals live:
/// `local.get a; local.get b; i64.add; local.set c` over scattered locals,
/// which is what makes register allocation expensive.
pub fn locals_heavy(locals: u32, bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 16);
    let mut state = 0x9e37_79b9_u32;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state % locals
    };
    while out.len() < bytes {
        let (a, b, c) = (next(), next(), next());
        out.push(0x20);
        push_leb(&mut out, a);
        out.push(0x20);
        push_leb(&mut out, b);
        out.push(0x7c);
        out.push(0x21);
        push_leb(&mut out, c);
    }
    out
}

/// A body that pushes `height` loads of distinct addresses and then adds
/// them up: `height` values live at once (the 24 s shape at 26,000).
pub fn deep_stack(height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 0..height {
        out.extend_from_slice(&[0x41, 0x00, 0x28, 0x02]); // i32.const 0; i32.load
        push_leb(&mut out, k * 4);
    }
    out.extend(std::iter::repeat_n(0x6a, height as usize - 1)); // i32.add
    out.push(0x1a); // drop
    out
}

/// A body of `depth` nested empty blocks.
pub fn nested_blocks(depth: u32) -> Vec<u8> {
    let mut out = [0x02, 0x40].repeat(depth as usize);
    out.extend(std::iter::repeat_n(0x0b, depth as usize));
    out
}

/// A body of `chunks` nests of `depth` loops, each loop computing
/// `local.get a; local.get b; i64.add; local.set c` over `locals` `i64`
/// locals. Returns the body and, after each local access in order, the
/// running total of accesses weighted by their enclosing loops.
pub fn loop_nests(locals: u32, depth: u32, chunks: u32) -> (Vec<u8>, Vec<u64>) {
    let mut out = Vec::new();
    let mut totals = Vec::new();
    let mut total = 0u64;
    let mut i = 0u32;
    let mut access = |out: &mut Vec<u8>, op: u8, d: u32| {
        out.push(op);
        push_leb(out, i % locals);
        i += 1;
        total += u64::from(d);
        totals.push(total);
    };
    for _ in 0..chunks {
        for d in 1..=depth {
            out.extend_from_slice(&[0x03, 0x40]); // loop
            access(&mut out, 0x20, d); // local.get
            access(&mut out, 0x20, d); // local.get
            out.push(0x7c); // i64.add
            access(&mut out, 0x21, d); // local.set
        }
        out.extend(std::iter::repeat_n(0x0b, depth as usize));
    }
    (out, totals)
}

/// `component_bytes` with `module` appended as one more top-level core
/// module, instantiated (with no imports) when the component is: its start
/// function runs at every instantiation.
pub fn with_extra_instance(component_bytes: &[u8], module: &Module) -> Vec<u8> {
    // The new module's index: the top-level core modules already there.
    let mut depth = 0usize;
    let mut modules = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(component_bytes) {
        match payload.unwrap() {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth -= 1,
            wasmparser::Payload::ModuleSection { .. } if depth == 1 => modules += 1,
            _ => {}
        }
    }
    let mut extra = Component::new();
    extra.section(&ModuleSection(module));
    let mut instances = InstanceSection::new();
    instances.instantiate(modules, std::iter::empty::<(&str, ModuleArg)>());
    extra.section(&instances);
    let extra = extra.finish();
    let mut out = component_bytes.to_vec();
    out.extend_from_slice(&extra[8..]);
    out
}

/// `component_bytes` with `module` appended as one more top-level core
/// module, never instantiated (only compiled).
pub fn with_extra_module(component_bytes: &[u8], module: &Module) -> Vec<u8> {
    let mut extra = Component::new();
    extra.section(&ModuleSection(module));
    let extra = extra.finish();
    let mut out = component_bytes.to_vec();
    out.extend_from_slice(&extra[8..]);
    out
}

/// A module whose start function grows each of its `memories` (all
/// starting empty) by `pages`, trapping when a growth is denied.
pub fn growing_memories(memories: u32, pages: i32) -> Module {
    let mut body = Vec::new();
    for i in 0..memories {
        body.push(0x41); // i32.const pages
        let mut v = Vec::new();
        // signed LEB128 of a small positive value
        let mut x = pages;
        loop {
            let byte = (x & 0x7f) as u8;
            x >>= 7;
            if (x == 0 && byte & 0x40 == 0) || (x == -1 && byte & 0x40 != 0) {
                v.push(byte);
                break;
            }
            v.push(byte | 0x80);
        }
        body.extend_from_slice(&v);
        body.push(0x40); // memory.grow i
        push_leb(&mut body, i);
        body.extend_from_slice(&[0x41, 0x7f]); // i32.const -1
        body.push(0x46); // i32.eq
        body.extend_from_slice(&[0x04, 0x40, 0x00, 0x0b]); // if unreachable end
    }
    module(
        &[Func { locals: 0, body }],
        &vec![0; memories as usize],
        Some(0),
    )
}

/// A body of chunks that each push `height - 1` loads of distinct
/// addresses and add them up: load-heavy code at a given operand stack
/// height, the most expensive shape per byte that was measured (about
/// 2.3 s per MiB of code at height 64).
pub fn deep_chunks(height: u32, bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut k = 0u32;
    while out.len() + (height as usize) * 10 < bytes {
        for _ in 0..height - 1 {
            out.extend_from_slice(&[0x41, 0x00, 0x28, 0x02]); // i32.const 0; i32.load
            push_leb(&mut out, (k % 16_000) * 4 + 100_000);
            k += 1;
        }
        out.extend(std::iter::repeat_n(0x6a, height as usize - 2)); // i32.add
        out.extend_from_slice(&[0x45, 0x04, 0x40, 0x00, 0x0b]); // i32.eqz; if unreachable end
    }
    out
}

/// A body that loads all of `locals` `i64` locals from memory, mixes them
/// with [`locals_heavy`] and stores them all back, so none is dead.
pub fn live_locals(locals: u32, bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..locals {
        out.extend_from_slice(&[0x41, 0x00, 0x29, 0x03]); // i32.const 0; i64.load
        push_leb(&mut out, i * 8 + 100_000);
        out.push(0x21); // local.set
        push_leb(&mut out, i);
    }
    let epilogue: usize = (0..locals).map(|i| 6 + leb_len(u64::from(i))).sum();
    out.extend(locals_heavy(
        locals,
        bytes.saturating_sub(epilogue + out.len()),
    ));
    for i in 0..locals {
        out.extend_from_slice(&[0x41, 0x00, 0x20]); // i32.const 0; local.get
        push_leb(&mut out, i);
        out.extend_from_slice(&[0x37, 0x03, 0x00]); // i64.store
    }
    out
}
