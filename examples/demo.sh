#!/usr/bin/env bash
# airlock's main job, end to end, on embedded defaults:
#   build the host and every first-party plugin, inspect and run the
#   XGBoost model plugin, then run the breast-cancer deployment gate twice:
#   on a good candidate (passes, exit 0; the verdict is signed and the
#   attestation verified offline for exactly those bytes) and on a degraded
#   one compared against the good one as baseline (refused, exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building airlock and its plugins"
if [ ! -x target/debug/airlock ]; then
  echo "   First build: cargo compiles wasmtime and Cranelift, then every guest"
  echo "   plugin for wasm32-wasip2 (about 8-10 minutes on 2 cores). Later runs,"
  echo "   and the README's test command, reuse this build."
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
# One workspace build: the host binary, and (through tests/build.rs) every
# guest crate compiled to a component, with the same features the test
# command uses, so `cargo test --workspace` recompiles nothing it shares.
cargo build --workspace --quiet
airlock=target/debug/airlock
built=target/wasm-plugins/wasm32-wasip2/plugin
out=target/plugins
mkdir -p "$out"
cp "$built/airlock_model_xgboost.wasm" "$out/xgboost.wasm"
cp "$built/airlock_model_linear.wasm" "$out/linear.wasm"
for p in schema golden performance drift robustness fairness; do
  cp "$built/airlock_validator_$p.wasm" "$out/$p.wasm"
done
echo "   components in $out (a plugin author builds one with: airlock plugin build <crate> -o <file>.wasm)"

echo
echo "== what a security reviewer sees first"
"$airlock" plugin inspect "$out/xgboost.wasm"

echo
echo "== the model plugin scoring the first rows of the evaluation set"
"$airlock" plugin run "$out/xgboost.wasm" --bundle examples/breast-cancer/model-v1 \
  --data examples/breast-cancer/data/golden.csv | head -6

echo
echo "== a signing key for this host (a fresh one per demo run)"
keys=$(mktemp -d)
trap 'rm -rf "$keys"' EXIT
"$airlock" key generate "$keys/host.pem"

echo
echo "== gate on candidate v1 (expected: PASSED, exit 0), verdict signed"
"$airlock" gate run examples/breast-cancer/gate.toml \
  --model "$out/xgboost.wasm" --bundle examples/breast-cancer/model-v1 \
  --sign-key "$keys/host.pem" --attestation "$keys/v1.attestation.json"
echo "exit code: 0"

echo
echo "== the signed attestation, checked offline for exactly these bytes"
"$airlock" attestation verify "$keys/v1.attestation.json" --public-key "$keys/host.pub" \
  --model "$out/xgboost.wasm" --bundle examples/breast-cancer/model-v1 --require-pass

echo
echo "== gate on degraded candidate v2 against v1 as baseline (expected: REFUSED, exit 1)"
set +e
"$airlock" gate run examples/breast-cancer/gate.toml \
  --model "$out/xgboost.wasm" --bundle examples/breast-cancer/model-v2-degraded \
  --baseline "$out/xgboost.wasm" --baseline-bundle examples/breast-cancer/model-v1
code=$?
set -e
echo "exit code: $code"
if [ "$code" -ne 1 ]; then
  echo "demo: expected the degraded candidate to be refused with exit code 1" >&2
  exit 1
fi
echo
echo "demo: both outcomes as expected"
