#!/usr/bin/env bash
# airlock's main job, end to end, on embedded defaults:
#   build the host and every first-party plugin, inspect and run the
#   XGBoost model plugin, then run the breast-cancer deployment gate twice:
#   on a good candidate (passes, exit 0) and on a degraded one compared
#   against the good one as baseline (refused, exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
cargo build -p airlock-host
airlock=target/debug/airlock
out=target/plugins
mkdir -p "$out"

echo "== building plugins (each is a guest crate compiled to a wasm32-wasip2 component)"
for p in xgboost linear schema golden performance drift robustness fairness; do
  "$airlock" plugin build "plugins/$p" -o "$out/$p.wasm"
done

echo
echo "== what a security reviewer sees first"
"$airlock" plugin inspect "$out/xgboost.wasm"

echo
echo "== the model plugin scoring the first rows of the evaluation set"
"$airlock" plugin run "$out/xgboost.wasm" --bundle examples/breast-cancer/model-v1 \
  --data examples/breast-cancer/data/golden.csv | head -6

echo
echo "== gate on candidate v1 (expected: PASSED, exit 0)"
"$airlock" gate run examples/breast-cancer/gate.toml \
  --model "$out/xgboost.wasm" --bundle examples/breast-cancer/model-v1
echo "exit code: 0"

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
