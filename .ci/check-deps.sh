#!/usr/bin/env bash
# Checks the dependency rules of docs/ARCHITECTURE.md ("Dependency rules"):
# which crate may link what, and where `unsafe` and generated bindings may
# live. Fails with one line per broken rule.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
fail() {
    echo "check-deps: $*" >&2
    failed=1
}

# Every package in `crate`'s normal (non-dev, non-build) dependency tree.
tree() {
    cargo tree -p "$1" -e normal --prefix none --format '{p}' | sed 's/ (\*)$//' | sort -u
}
# `crate`'s direct normal dependencies.
direct() {
    cargo tree -p "$1" -e normal --depth 1 --prefix none --format '{p}' | tail -n +2 | sort -u
}
# Lines of `list` matching the extended regex `re`, if any.
matching() {
    grep -E "$2" <<<"$1" || true
}

core_tree=$(tree airlock-core)
runtime_tree=$(tree airlock-runtime)
gate_tree=$(tree airlock-gate)
audit_tree=$(tree airlock-audit)

# 1. airlock-core knows nothing about wasmtime: no engine, compiler,
#    WASI, capability-based filesystem or async runtime below it.
bad=$(matching "$core_tree" '^(wasmtime|cranelift|cap-|wasi|wit-|tokio)')
[ -z "$bad" ] || fail "airlock-core must not depend on wasmtime and its kin, but links: $(echo $bad)"

# 2. The layers only point down: core <- runtime <- gate <- cli.
bad=$(matching "$core_tree" '^airlock-' | grep -v '^airlock-core ' || true)
[ -z "$bad" ] || fail "airlock-core must not depend on another airlock crate, but links: $(echo $bad)"
bad=$(matching "$(direct airlock-runtime)" '^airlock-' | grep -v '^airlock-core ' || true)
[ -z "$bad" ] || fail "airlock-runtime may depend on airlock-core only, but depends on: $(echo $bad)"
bad=$(matching "$(direct airlock-gate)" '^airlock-' | grep -Ev '^airlock-(core|runtime) ' || true)
[ -z "$bad" ] || fail "airlock-gate may depend on airlock-core and airlock-runtime only, but depends on: $(echo $bad)"
# airlock-audit (the audit log) links no engine and at most airlock-core, so
# that a verifier or the server's API layer can use it without wasmtime.
bad=$(matching "$audit_tree" '^(wasmtime|cranelift|cap-|wasi|wit-)')
[ -z "$bad" ] || fail "airlock-audit must not depend on wasmtime and its kin, but links: $(echo $bad)"
bad=$(matching "$audit_tree" '^airlock-' | grep -Ev '^airlock-(audit|core) ' || true)
[ -z "$bad" ] || fail "airlock-audit may depend on airlock-core only among airlock crates, but links: $(echo $bad)"

# 2b. airlock-attest (signing) depends on airlock-core only and links no
#     wasmtime and its kin: verifying a signature must not need the sandbox.
attest_tree=$(tree airlock-attest)
bad=$(matching "$(direct airlock-attest)" '^airlock-' | grep -v '^airlock-core ' || true)
[ -z "$bad" ] || fail "airlock-attest may depend on airlock-core only, but depends on: $(echo $bad)"
bad=$(matching "$attest_tree" '^(wasmtime|cranelift|cap-|wasi|wit-|tokio)')
[ -z "$bad" ] || fail "airlock-attest must not depend on wasmtime and its kin, but links: $(echo $bad)"

# 2c. airlock-blobs (the blob store) links no engine and at most
#     airlock-core; airlock-server reaches wasmtime only through the runtime
#     and the gate engine.
blobs_tree=$(tree airlock-blobs)
bad=$(matching "$blobs_tree" '^(wasmtime|cranelift|cap-|wasi|wit-|tokio)')
[ -z "$bad" ] || fail "airlock-blobs must not depend on wasmtime and its kin or tokio, but links: $(echo $bad)"
bad=$(matching "$blobs_tree" '^airlock-' | grep -Ev '^airlock-(blobs|core) ' || true)
[ -z "$bad" ] || fail "airlock-blobs may depend on airlock-core only among airlock crates, but links: $(echo $bad)"
bad=$(matching "$(tree airlock-server)" '^clap')
[ -z "$bad" ] || fail "only airlock-cli may know clap, but airlock-server links: $(echo $bad)"

# 2d. airlock-rollout (canary state machine, analysis, routing, sketches,
#     webhook signing) is pure: no engine, no async runtime, no HTTP, no
#     database; among airlock crates only airlock-core and airlock-stats.
rollout_tree=$(tree airlock-rollout)
bad=$(matching "$rollout_tree" '^(wasmtime|cranelift|cap-|wasi|wit-|tokio|hyper|axum|sqlx|ureq|reqwest)')
[ -z "$bad" ] || fail "airlock-rollout must stay free of I/O crates, but links: $(echo $bad)"
bad=$(matching "$rollout_tree" '^airlock-' | grep -Ev '^airlock-(rollout|core|stats) ' || true)
[ -z "$bad" ] || fail "airlock-rollout may depend on airlock-core and airlock-stats only, but links: $(echo $bad)"

# 3. Only airlock-runtime talks to wasmtime directly.
for c in airlock-gate airlock-cli airlock-server; do
    bad=$(matching "$(direct $c)" '^(wasmtime|cranelift|cap-std|wit-bindgen)')
    [ -z "$bad" ] || fail "$c must reach wasmtime only through airlock-runtime, but depends directly on: $(echo $bad)"
done

# 4. Only airlock-cli knows clap.
for t in core runtime gate attest audit; do
    v="${t}_tree"
    bad=$(matching "${!v}" '^clap')
    [ -z "$bad" ] || fail "only airlock-cli may know clap, but airlock-$t links: $(echo $bad)"
done

# 5. Only airlock-runtime has generated bindings.
bad=$(grep -rlnE 'bindgen!' host --include='*.rs' | grep -v '^host/runtime/' || true)
[ -z "$bad" ] || fail "generated bindings live in airlock-runtime only, but bindgen! appears in: $(echo $bad)"

# 6. Only airlock-runtime has `unsafe`: core, gate, cli, attest and audit
#    forbid it at the crate root (which the compiler then enforces), and
#    hold no unsafe block, function, impl or lint override.
for c in core gate cli attest audit blobs server rollout; do
    grep -q '^#!\[forbid(unsafe_code)\]' "host/$c/src/lib.rs" ||
        fail "host/$c/src/lib.rs must start with #![forbid(unsafe_code)]"
done
grep -q '^#!\[forbid(unsafe_code)\]' host/cli/src/bin/airlock.rs ||
    fail "host/cli/src/bin/airlock.rs must carry #![forbid(unsafe_code)]"
bad=$(grep -rnE '\bunsafe[[:space:]]*(\{|fn\b|impl\b|trait\b|extern\b)|allow\([^)]*unsafe_code' \
    host/core host/gate host/cli host/attest host/audit host/blobs host/server host/rollout --include='*.rs' || true)
[ -z "$bad" ] || fail "unsafe code outside airlock-runtime: $bad"

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "check-deps: all dependency rules hold"
