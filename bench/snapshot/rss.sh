#!/usr/bin/env bash
# Peak resident memory of building (or refusing) a pre-initialised model's
# snapshot: `airlock plugin run` on the hostile test model
# `tests/hostile/preinit`, whose bundle tells its `init` what to leave in
# memory, measured with `/usr/bin/time -f %M` (KiB).
#
#   bench/snapshot/rss.sh                 # `grow 220`: 220 MiB of dense non-zero heap
#   bench/snapshot/rss.sh 'scatter 128'   # one non-zero byte in six over 128 MiB
#   bench/snapshot/rss.sh 'grow 8'        # a snapshot that is built and runs
#
# Needs the integration tests built first (`cargo test -p airlock-tests
# --test integration --no-run`: the components and `airlock-under-test`);
# AIRLOCK_BIN overrides the binary (e.g. target/release/airlock).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${AIRLOCK_BIN:-$root/target/debug/airlock-under-test}
plugin=$root/target/wasm-plugins/wasm32-wasip2/plugin/hostile_preinit.wasm
orders=${1:-grow 220}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/bundle"
printf '%s' "$orders" >"$dir/bundle/model.json"
printf 'x\n1\n' >"$dir/data.csv"
echo "init orders: $orders"
status=0
/usr/bin/time -f 'peak RSS: %M KiB' "$bin" plugin run "$plugin" \
    --bundle "$dir/bundle" --data "$dir/data.csv" --no-cache || status=$?
echo "exit status: $status"
