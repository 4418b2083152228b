#!/usr/bin/env bash
# Builds and runs the peer benchmark: the Extism guest, then the benchmark
# binary (release), then one run that prints a Markdown table on stdout.
#
# Environment:
#   JOBS                  cargo build jobs (default 1, to leave a core free)
#   AIRLOCK_TRIVIAL_WASM  the airlock component to call (default: the
#                         workspace's hostile_model.wasm)
#   EXTISM_GUEST_WASM     the Extism guest (default: the one built here)
#
# The toolchain comes from rust-toolchain.toml in this directory (Extism's
# wasmtime needs a newer Rust than airlock's workspace pins).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
jobs="${JOBS:-1}"

trivial="${AIRLOCK_TRIVIAL_WASM:-$repo/target/wasm-plugins/wasm32-wasip2/plugin/hostile_model.wasm}"
if [[ ! -f "$trivial" ]]; then
    echo "error: the airlock trivial component is missing: $trivial" >&2
    echo "Build it first: run 'cargo test --workspace --no-run' at the repository root ($repo)." >&2
    exit 1
fi

echo "building the Extism guest ..." >&2
(
    cd "$here/extism-guest"
    nice -n 10 cargo build --release --locked --target wasm32-unknown-unknown -j "$jobs" \
        --target-dir "$here/extism-guest/target"
)

# Not --locked: the lock follows airlock-runtime's dependencies, which change
# as the workspace does.
echo "building the benchmark (release; two wasmtime versions, this takes a while) ..." >&2
(
    cd "$here"
    nice -n 10 cargo build --release -j "$jobs" --target-dir "$here/target"
)

unset RUST_BACKTRACE
export AIRLOCK_TRIVIAL_WASM="$trivial"
export EXTISM_GUEST_WASM="${EXTISM_GUEST_WASM:-$here/extism-guest/target/wasm32-unknown-unknown/release/airlock_peer_extism_guest.wasm}"
echo "running ..." >&2
exec "$here/target/release/airlock-peer-bench"
