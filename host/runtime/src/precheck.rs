//! Static checks of component bytes, before Cranelift is asked to compile
//! anything.
//!
//! Compiling is the one step of loading whose cost the submitter controls:
//! a small component with one function of tens of thousands of locals, one
//! multi-megabyte straight-line function or hundreds of thousands of tiny
//! functions keeps Cranelift busy for minutes and gigabytes. So the host
//! first walks the component with `wasmparser` (one linear pass, no code
//! generation, but full validation of every function), refuses what the
//! operator's [`ComponentCaps`] do not admit, and collects the top-level
//! import and export names, so that the import policy is applied before
//! compiling as well. Every refusal names the cap,
//! its value, and what the component has.

use crate::error::{FailureKind, PluginFailure};
use airlock_core::capabilities::World;
use serde::{Deserialize, Serialize};
use wasmparser::{
    ComponentExternalKind, ComponentTypeRef, Encoding, FuncValidatorAllocations, Parser, Payload,
    TypeRef, ValidPayload, Validator, WasmFeatures,
};

/// The first four bytes of every WebAssembly binary.
pub const MAGIC: &[u8; 4] = b"\0asm";
/// Bytes 4..8 of a component binary: version 0x0d, layer 1.
pub const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
/// Bytes 4..8 of a core module binary: version 1, layer 0.
pub const MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

/// The hint for people who hand the host a core module.
pub const CORE_MODULE_HINT: &str = "this is a core WebAssembly module, not a component: build the guest for `wasm32-wasip2` (rustup target add wasm32-wasip2; cargo build --target wasm32-wasip2) or with `airlock plugin build`";

/// What a component may ask the compiler to do: the operator's `[component]`
/// configuration section. The defaults admit every first-party plugin with
/// at least twice the room it needs (the largest per measure over all built
/// plugins: 356 KB, 590 functions, 235 KB of code, a 23 KB body, 85 locals,
/// stack 16, nesting 75, 19,178 loop-weighted accesses, 1 memory; a debug
/// build of the linear model fits too), and keep the worst component they admit
/// within about 2.5 s and 200 MB of compiling (see the `compile_caps`
/// bench).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentCaps {
    /// Largest component file, in bytes; checked before the file is read.
    pub max_component_bytes: u64,
    /// Core functions defined by all core modules of the component together.
    pub max_functions: u64,
    /// Locals declared by any one function (parameters not included).
    pub max_locals_per_function: u64,
    /// Size of any one function body, in bytes.
    pub max_function_body_bytes: u64,
    /// Size of all function bodies together, in bytes.
    pub max_code_bytes: u64,
    /// Deepest operand stack any one function reaches. Each value on the
    /// stack is live until consumed, so a long run of pushes is what makes
    /// register allocation superlinear (a 233 KB function of loads pushed
    /// before being added up took 24 s to compile).
    pub max_stack_height: u64,
    /// Deepest nesting of blocks, loops and ifs in any one function.
    pub max_nesting_depth: u64,
    /// Local variable accesses weighted by how many loops enclose them,
    /// summed over the component. Cranelift gives a loop header a block
    /// parameter for every variable used inside the loop, through every
    /// enclosing loop, so this is what deep loop nests over many locals
    /// cost (1,000 nested loops over 2,000 locals in a 250 KB function
    /// took 80 s and 2.5 GB to compile).
    pub max_loop_local_accesses: u64,
    /// Linear memories defined by all core modules together.
    pub max_memories: u64,
    /// Wall-clock limit of one compile, in milliseconds.
    pub compile_timeout_ms: u64,
}

impl Default for ComponentCaps {
    fn default() -> Self {
        ComponentCaps {
            max_component_bytes: 64 << 20,
            max_functions: 20_000,
            max_locals_per_function: 2_000,
            max_function_body_bytes: 256 << 10,
            max_code_bytes: 1 << 20,
            max_stack_height: 64,
            max_nesting_depth: 256,
            max_loop_local_accesses: 250_000,
            max_memories: 1,
            compile_timeout_ms: 10_000,
        }
    }
}

impl ComponentCaps {
    /// Checks an operator's values: every cap must be above zero.
    pub fn check(&self) -> Result<(), airlock_core::error::ZeroCap> {
        for (key, v) in [
            ("component.max_component_bytes", self.max_component_bytes),
            ("component.max_functions", self.max_functions),
            (
                "component.max_locals_per_function",
                self.max_locals_per_function,
            ),
            (
                "component.max_function_body_bytes",
                self.max_function_body_bytes,
            ),
            ("component.max_code_bytes", self.max_code_bytes),
            ("component.max_stack_height", self.max_stack_height),
            ("component.max_nesting_depth", self.max_nesting_depth),
            (
                "component.max_loop_local_accesses",
                self.max_loop_local_accesses,
            ),
            ("component.max_memories", self.max_memories),
            ("component.compile_timeout_ms", self.compile_timeout_ms),
        ] {
            if v == 0 {
                return Err(airlock_core::error::ZeroCap { key });
            }
        }
        Ok(())
    }
}

/// Why a component was refused before compiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrecheckError {
    /// The bytes do not start with the WebAssembly magic number.
    #[error("not a WebAssembly component: the file does not start with the `\\0asm` magic number")]
    NotWasm,
    /// A core module where a component was expected.
    #[error("{CORE_MODULE_HINT}")]
    CoreModule,
    /// A WebAssembly binary of a version or layer the host does not know.
    #[error(
        "not a WebAssembly component: unknown version/layer bytes {0:02x?} (a component has 0d 00 01 00)"
    )]
    UnknownVersion([u8; 4]),
    /// The component's structure does not parse.
    #[error("not a valid component: {0}")]
    Malformed(String),
    /// A cap in `[component]` is exceeded.
    #[error("{what}; the cap is {cap} ({key})")]
    OverCap {
        /// What the component has, e.g. "function 3 of core module 1
        /// declares 49000 locals".
        what: String,
        /// The cap's value.
        cap: u64,
        /// The configuration key of the cap, e.g. `component.max_functions`.
        key: &'static str,
    },
    /// A memory whose declared minimum alone is above the memory cap, so
    /// no call could ever instantiate it.
    #[error(
        "memory {memory} of core module {module} declares a minimum of {bytes} bytes; the memory cap is {cap} bytes (limits.memory_bytes)"
    )]
    MemoryMinimum {
        /// Index of the memory in its module.
        memory: u32,
        /// Index of the core module in the component (order of appearance).
        module: u32,
        /// Declared minimum size in bytes.
        bytes: u64,
        /// The memory cap.
        cap: u64,
    },
    /// Neither world's exports are present.
    #[error(
        "exports neither the model world (metadata, predict) nor the validator world (describe, validate); it exports: [{}]",
        .0.join(", ")
    )]
    NoWorld(Vec<String>),
}

impl From<PrecheckError> for PluginFailure {
    fn from(e: PrecheckError) -> Self {
        PluginFailure::new(FailureKind::InvalidComponent, e.to_string())
    }
}

/// What the static pass found: the component's top-level names and the
/// measures its caps apply to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Top-level import names, as wasmtime reports them
    /// (e.g. `wasi:cli/environment@0.2.6`).
    pub imports: Vec<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
    /// Core modules, adapters included.
    pub core_modules: u32,
    /// Core functions defined, over all core modules.
    pub functions: u64,
    /// Bytes of all function bodies.
    pub code_bytes: u64,
    /// The largest function body, in bytes.
    pub largest_function_body: u64,
    /// The most locals any one function declares.
    pub most_locals: u64,
    /// The deepest operand stack any one function reaches.
    pub deepest_stack: u64,
    /// The deepest nesting of blocks any one function reaches.
    pub deepest_nesting: u64,
    /// Local accesses weighted by their enclosing loops, over all functions.
    pub loop_local_accesses: u64,
    /// Linear memories defined, over all core modules.
    pub memories: u64,
}

impl Summary {
    /// The world the exports name: `metadata` and `predict` make a model,
    /// `describe` and `validate` a validator.
    pub fn world(&self) -> Result<World, PrecheckError> {
        let has = |n: &str| self.exports.iter().any(|e| e == n);
        if has("predict") && has("metadata") {
            Ok(World::Model)
        } else if has("validate") && has("describe") {
            Ok(World::Validator)
        } else {
            Err(PrecheckError::NoWorld(self.exports.clone()))
        }
    }
}

/// Checks the 8-byte header: the magic number and the component
/// version/layer, with a hint for core modules. Needs only the first 8
/// bytes, so a file's header is checked before the rest is read.
pub fn check_header(bytes: &[u8]) -> Result<(), PrecheckError> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(PrecheckError::NotWasm);
    }
    let version: [u8; 4] = [bytes[4], bytes[5], bytes[6], bytes[7]];
    if version == COMPONENT_VERSION {
        Ok(())
    } else if version == MODULE_VERSION {
        Err(PrecheckError::CoreModule)
    } else {
        Err(PrecheckError::UnknownVersion(version))
    }
}

/// Walks and validates a component once and refuses it when it is not
/// valid, exceeds `caps`, or has a memory whose declared minimum is above
/// `memory_cap` bytes. Returns the top-level import and export names and
/// the measures. Cost: linear in the component's size.
pub fn check(
    bytes: &[u8],
    caps: &ComponentCaps,
    memory_cap: u64,
) -> Result<Summary, PrecheckError> {
    fn over(
        actual: u64,
        cap: u64,
        key: &'static str,
        what: impl FnOnce(u64) -> String,
    ) -> Result<(), PrecheckError> {
        if actual > cap {
            Err(PrecheckError::OverCap {
                what: what(actual),
                cap,
                key,
            })
        } else {
            Ok(())
        }
    }
    over(
        bytes.len() as u64,
        caps.max_component_bytes,
        "component.max_component_bytes",
        |n| format!("the component is {n} bytes"),
    )?;
    check_header(bytes)?;

    let mut s = Summary::default();
    // Encodings of the binaries being parsed, outermost first.
    let mut stack: Vec<Encoding> = Vec::new();
    // The core module being parsed: its index, imported functions, and the
    // index of its next defined function.
    let mut module = 0u32;
    let mut imported_funcs = 0u64;
    let mut next_func = 0u64;
    let mut module_memories = 0u32;
    let malformed = |e: wasmparser::BinaryReaderError| PrecheckError::Malformed(e.to_string());
    let mut validator = Validator::new_with_features(WasmFeatures::default());
    let mut allocs = FuncValidatorAllocations::default();

    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(malformed)?;
        let valid = validator.payload(&payload).map_err(malformed)?;
        match payload {
            Payload::Version { encoding, .. } => {
                if encoding == Encoding::Module {
                    if stack.is_empty() {
                        return Err(PrecheckError::CoreModule);
                    }
                    module = s.core_modules;
                    s.core_modules += 1;
                    imported_funcs = 0;
                    next_func = 0;
                    module_memories = 0;
                }
                stack.push(encoding);
            }
            Payload::End(_) => {
                stack.pop();
            }
            // Type imports and exports (`(type (eq ...))`) carry no
            // capability and are not listed by wasmtime either.
            Payload::ComponentImportSection(r) if stack.len() == 1 => {
                for import in r {
                    let import = import.map_err(malformed)?;
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        s.imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(r) if stack.len() == 1 => {
                for export in r {
                    let export = export.map_err(malformed)?;
                    if export.kind != ComponentExternalKind::Type {
                        s.exports.push(export.name.name.to_string());
                    }
                }
            }
            Payload::ImportSection(r) => {
                for import in r.into_imports() {
                    let import = import.map_err(malformed)?;
                    if matches!(import.ty, TypeRef::Func(_) | TypeRef::FuncExact(_)) {
                        imported_funcs += 1;
                    }
                }
            }
            Payload::MemorySection(r) => {
                for memory in r {
                    let memory = memory.map_err(malformed)?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    let bytes = memory.initial.saturating_mul(page);
                    if bytes > memory_cap {
                        return Err(PrecheckError::MemoryMinimum {
                            memory: module_memories,
                            module,
                            bytes,
                            cap: memory_cap,
                        });
                    }
                    module_memories += 1;
                    s.memories += 1;
                    over(
                        s.memories,
                        caps.max_memories,
                        "component.max_memories",
                        |n| {
                            format!(
                                "the component's core modules define at least {n} linear memories"
                            )
                        },
                    )?;
                }
            }
            Payload::CodeSectionStart { count, .. } => {
                s.functions += u64::from(count);
                over(
                    s.functions,
                    caps.max_functions,
                    "component.max_functions",
                    |n| format!("the component's core modules define at least {n} functions"),
                )?;
            }
            Payload::CodeSectionEntry(body) => {
                let index = imported_funcs + next_func;
                next_func += 1;
                let size = body.range().len() as u64;
                over(
                    size,
                    caps.max_function_body_bytes,
                    "component.max_function_body_bytes",
                    |n| format!("function {index} of core module {module} has a body of {n} bytes"),
                )?;
                s.code_bytes += size;
                s.largest_function_body = s.largest_function_body.max(size);
                over(
                    s.code_bytes,
                    caps.max_code_bytes,
                    "component.max_code_bytes",
                    |n| format!("the component's function bodies total at least {n} bytes"),
                )?;
                let mut locals = 0u64;
                let mut reader = body.get_locals_reader().map_err(malformed)?;
                for _ in 0..reader.get_count() {
                    let (n, _) = reader.read().map_err(malformed)?;
                    locals = locals.saturating_add(u64::from(n));
                }
                over(
                    locals,
                    caps.max_locals_per_function,
                    "component.max_locals_per_function",
                    |n| format!("function {index} of core module {module} declares {n} locals"),
                )?;
                s.most_locals = s.most_locals.max(locals);
                let ValidPayload::Func(func, body) = valid else {
                    return Err(PrecheckError::Malformed(format!(
                        "function {index} of core module {module} was not handed to validation"
                    )));
                };
                let mut v = func.into_validator(std::mem::take(&mut allocs));
                let mut reader = body.get_binary_reader();
                v.read_locals(&mut reader).map_err(malformed)?;
                let (mut stack, mut nesting) = (0u64, 0u64);
                // Which open frames are loops, and how many.
                let mut frames: Vec<bool> = Vec::new();
                let mut loops = 0u64;
                while !reader.eof() {
                    let pos = reader.original_position();
                    let opcode = bytes.get(pos).copied().unwrap_or(0);
                    reader
                        .visit_operator(&mut v.visitor(pos))
                        .map_err(malformed)?
                        .map_err(malformed)?;
                    stack = stack.max(u64::from(v.operand_stack_height()));
                    // The function's own frame is not nesting.
                    let depth = v.control_stack_height().saturating_sub(1) as usize;
                    while frames.len() > depth {
                        loops -= u64::from(frames.pop() == Some(true));
                    }
                    if frames.len() < depth {
                        let is_loop = opcode == 0x03;
                        frames.push(is_loop);
                        loops += u64::from(is_loop);
                    }
                    nesting = nesting.max(depth as u64);
                    // local.get, local.set, local.tee
                    if matches!(opcode, 0x20..=0x22) {
                        s.loop_local_accesses += loops;
                        over(
                            s.loop_local_accesses,
                            caps.max_loop_local_accesses,
                            "component.max_loop_local_accesses",
                            |n| {
                                format!(
                                    "the component's local accesses weighted by enclosing loops reach {n} in function {index} of core module {module}"
                                )
                            },
                        )?;
                    }
                    over(
                        stack,
                        caps.max_stack_height,
                        "component.max_stack_height",
                        |n| {
                            format!(
                                "function {index} of core module {module} pushes {n} values on its operand stack"
                            )
                        },
                    )?;
                    over(
                        nesting,
                        caps.max_nesting_depth,
                        "component.max_nesting_depth",
                        |n| {
                            format!(
                                "function {index} of core module {module} nests blocks {n} deep"
                            )
                        },
                    )?;
                }
                reader
                    .finish_expression(&v.visitor(reader.original_position()))
                    .map_err(malformed)?;
                allocs = v.into_allocations();
                s.deepest_stack = s.deepest_stack.max(stack);
                s.deepest_nesting = s.deepest_nesting.max(nesting);
            }
            _ => {}
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_tells_components_from_core_modules_and_other_files() {
        assert_eq!(check_header(b"\0asm\x0d\0\x01\0"), Ok(()));
        assert_eq!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(PrecheckError::CoreModule)
        );
        assert_eq!(check_header(b"\0asm"), Err(PrecheckError::NotWasm));
        assert_eq!(
            check_header(b"PK\x03\x04\0\0\0\0"),
            Err(PrecheckError::NotWasm)
        );
        assert_eq!(
            check_header(b"\0asm\x0e\0\x01\0"),
            Err(PrecheckError::UnknownVersion([0x0e, 0, 1, 0]))
        );
        assert_eq!(
            PrecheckError::CoreModule.to_string(),
            CORE_MODULE_HINT,
            "the hint is the whole message"
        );
    }

    #[test]
    fn a_zero_cap_is_refused_naming_its_key() {
        assert_eq!(ComponentCaps::default().check(), Ok(()));
        let caps = ComponentCaps {
            max_loop_local_accesses: 0,
            ..ComponentCaps::default()
        };
        let e = caps.check().unwrap_err();
        assert_eq!(
            e,
            airlock_core::error::ZeroCap {
                key: "component.max_loop_local_accesses"
            }
        );
        assert_eq!(
            e.to_string(),
            "component.max_loop_local_accesses must be greater than 0"
        );
    }

    #[test]
    fn an_empty_component_has_no_world() {
        let s = check(b"\0asm\x0d\0\x01\0", &ComponentCaps::default(), 1 << 20).unwrap();
        assert_eq!(s, Summary::default());
        assert_eq!(
            s.world().unwrap_err().to_string(),
            "exports neither the model world (metadata, predict) nor the validator world (describe, validate); it exports: []"
        );
    }
}
