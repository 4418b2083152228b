//! Turning a wasmtime error into a failure kind and one line for people:
//! fuel, deadline, stack, memory and table caps, the hostcall budget, a
//! guest exit or panic. Kept apart from the call path because it is pure
//! mapping, shared by calls and by warm sessions.

use super::call::Limiter;
use crate::error::FailureKind;
use airlock_core::limits::Limits;
use wasmtime::Trap;

/// Maps a wasmtime error to a failure kind and a message for people.
pub(super) fn classify(
    err: &wasmtime::Error,
    limiter: &Limiter,
    limits: &Limits,
    stderr: &str,
) -> (FailureKind, String) {
    // With pooling, instance slots keep the pool from filling up; should
    // it fill anyway (e.g. its memories, taken by many-memory components),
    // that is the host's capacity, not the plugin's trap.
    if let Some(full) = err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return (
            FailureKind::Busy,
            format!("the host is at capacity: the instance pool is full ({full}); retry later"),
        );
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        match trap {
            Trap::OutOfFuel => {
                return (
                    FailureKind::FuelExhausted,
                    format!("used all {} units of fuel", limits.fuel),
                );
            }
            Trap::Interrupt => {
                return (
                    FailureKind::Timeout,
                    format!("ran past its {} ms deadline", limits.timeout_ms),
                );
            }
            Trap::StackOverflow => {
                return (
                    FailureKind::StackOverflow,
                    "call stack exhausted".to_string(),
                );
            }
            _ => {}
        }
    }
    if let Some(hit) = &limiter.hit {
        return (FailureKind::MemoryLimit, hit.clone());
    }
    // Wasmtime's error for this is not a public type; its message is stable.
    if root_message(err).contains("fuel allocated for hostcalls has been exhausted") {
        return (
            FailureKind::OutputTooLarge,
            format!(
                "the plugin tried to hand the host more than {} bytes at once (its result, or the arguments of a host call)",
                limits.max_host_alloc_bytes.max(limits.max_output_bytes)
            ),
        );
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return (
            FailureKind::Trap,
            format!("plugin exited with status {}", exit.0),
        );
    }
    // Lead with what the guest said (a panic message), then the trap
    // itself without wasmtime's multi-line backtrace.
    let trap = match err.downcast_ref::<Trap>() {
        Some(t) => t.to_string(),
        None => err.root_cause().to_string(),
    };
    let trap = trap.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = match panic_line(stderr) {
        Some(panic) => format!("{panic} ({trap})"),
        None => trap,
    };
    (FailureKind::Trap, message)
}

/// The `panicked at ...` line (and the one after it) from a guest's stderr.
fn panic_line(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    while let Some(l) = lines.next() {
        if l.contains("panicked at") {
            let next = lines.next().unwrap_or("");
            return Some(format!("{} {}", l.trim(), next.trim()).trim().to_string());
        }
    }
    None
}

pub(super) fn root_message(err: &wasmtime::Error) -> String {
    let mut msg = err.to_string();
    let root = err.root_cause().to_string();
    if root != msg {
        msg = format!("{msg}: {root}");
    }
    msg
}
