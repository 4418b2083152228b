#!/usr/bin/env bash
# Two airlock servers compared as a ratio, on one machine in one run
# (docs/benchmarks.md). By default monitoring on against --no-monitoring
# ("Monitoring's cost"); any two binaries or flag sets otherwise, e.g. an
# allocator change:
#
#   ROUNDS=2 DUR=5s CONNS="1 64" bench/serving/ab.sh
#   A_BIN=/tmp/old/airlock A_NAME=before B_BIN=target/release/airlock B_NAME=after \
#     B_FLAGS= CONNS=64 bench/serving/ab.sh
#
# Both servers are set up as run.sh does and stay up for the whole run;
# ROUNDS rounds of oha on /v2 infer alternate between them at each
# connection count in CONNS, the side measured first swapping every round,
# each run after a pause and a warm-up; then the same again with the servers
# started in the other order (2 x ROUNDS rounds in all). Alternating puts
# the machine's drift on both sides alike; the idle server costs nothing
# while the other is measured. Prints every run and, per connection count,
# each side's mean throughput and B's cost against A.
#
# Environment: A_BIN, B_BIN (default target/release/airlock), A_FLAGS
# (default none), B_FLAGS (default --no-monitoring), A_NAME, B_NAME (default
# "on", "off"), ROUNDS (default 4), DUR (default 5s), CONNS (default "1 64").
# Needs target/bench-tools/bin/oha (run.sh installs it) and target/plugins
# (examples/demo.sh fills it). Not in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
a_bin=${A_BIN:-target/release/airlock}
b_bin=${B_BIN:-target/release/airlock}
a_flags=${A_FLAGS-}
b_flags=${B_FLAGS---no-monitoring}
a_name=${A_NAME:-on}
b_name=${B_NAME:-off}
oha=target/bench-tools/bin/oha
plugins=${AIRLOCK_PLUGIN_DIR:-target/plugins}
rounds=${ROUNDS:-4}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$work"' EXIT

row=$(sed -n 2p examples/breast-cancer/data/eval.csv | cut -d, -f1-30)
printf '{"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": [%s]}]}' \
  "$row" >"$work/v2.json"

# up SIDE BIN [FLAGS...]: a server with the model promoted; writes
# $work/SIDE.url and .token.
up() {
  local side=$1 a=$work/$1 bin=$2
  shift 2
  mkdir -p "$a"
  "$bin" key generate "$a/gate.pem" >/dev/null
  "$bin" server --data-dir "$a/data" --listen 127.0.0.1:0 --trust-root "$a/gate.pub" "$@" \
    >"$a/server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do [ -s "$a/data/server.url" ] && break; sleep 0.1; done
  local url
  url=$(cat "$a/data/server.url")
  export AIRLOCK_SERVER=$url
  local adm=(--token-file "$a/data/admin.token")
  {
    "$bin" gate publish examples/breast-cancer/gate.toml --name breast-cancer --version 1 \
      --key "$a/gate.pem" --plugin-dir "$plugins" "${adm[@]}"
    "$bin" model create breast-cancer --gate breast-cancer --approvals 0 "${adm[@]}"
    "$bin" submit plugin "$plugins/xgboost.wasm" --name xgboost --version 1.0.0 "${adm[@]}"
    "$bin" submit model breast-cancer --version 1.0.0 --plugin xgboost@1.0.0 \
      --bundle examples/breast-cancer/model-v1 --wait "${adm[@]}"
    "$bin" promote breast-cancer 1.0.0 "${adm[@]}"
  } >"$a/setup.log" 2>&1
  "$bin" token create --subject bench --role predictor "${adm[@]}" 2>/dev/null >"$work/$side.token"
  echo "${url%/}/v2/models/breast-cancer/infer" >"$work/$side.url"
  "$oha" --no-tui -n 2000 -c 8 -m POST -H "Authorization: Bearer $(cat "$work/$side.token")" \
    -D "$work/v2.json" "$(cat "$work/$side.url")" >/dev/null
}

# stop_all: ends both servers (between the two halves).
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  pids=()
  rm -rf "$work/a" "$work/b"
}

: >"$work/runs.tsv"
# Two halves: the servers are started in one order, then the other. Which
# server starts first was seen to move the result by about 5 % here (8 %
# one way, 3 % the other), more than monitoring itself, so both orders are
# measured and pooled.
for half in 1 2; do
# (Flags split on spaces on purpose: they are a list.)
# shellcheck disable=SC2086
if [ "$half" = 1 ]; then
  up a "$a_bin" $a_flags
  up b "$b_bin" $b_flags
else
  stop_all
  up b "$b_bin" $b_flags
  up a "$a_bin" $a_flags
fi
for r in $(seq $(((half - 1) * rounds + 1)) $((half * rounds))); do
  for c in ${CONNS:-1 64}; do
    # Odd rounds measure A first, even rounds B first, so that
    # neither side always runs right after the other's load.
    order="a b"
    [ $((r % 2)) -eq 0 ] && order="b a"
    for side in $order; do
      # A settling pause and a warm-up at this connection count: a server
      # measured at 1 connection right after its own 64-connection run was
      # seen to run about 10 % slower for a while.
      sleep 1
      "$oha" --no-tui -n 3000 -c "$c" -m POST -H "Authorization: Bearer $(cat "$work/$side.token")" \
        -D "$work/v2.json" "$(cat "$work/$side.url")" >/dev/null
      "$oha" --no-tui --output-format json -z "${DUR:-5s}" -w -c "$c" -m POST \
        -H "Authorization: Bearer $(cat "$work/$side.token")" -D "$work/v2.json" \
        "$(cat "$work/$side.url")" >"$work/r.json"
      label=$a_name
      [ "$side" = b ] && label=$b_name
      python3 - "$work/r.json" "$label" "$c" "$r" <<'PY' | tee -a "$work/runs.tsv"
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
bad = sum(n for k, n in codes.items() if not k.startswith("2")) + sum(r.get("errorDistribution", {}).values())
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{sys.argv[4]}\t{r['summary']['requestsPerSec']:.0f}\t{l['p50']*1e3:.2f}\t{l['p99']*1e3:.2f}\t{bad}")
PY
    done
  done
done
done
python3 - "$work/runs.tsv" "$a_name" "$b_name" <<'PY'
import sys
from collections import defaultdict
a_name, b_name = sys.argv[2], sys.argv[3]
rps = defaultdict(list)
for line in open(sys.argv[1]):
    side, c, _, r, *_ = line.split("\t")
    rps[(side, c)].append(float(r))
for c in sorted({c for _, c in rps}, key=int):
    a, b = rps[(a_name, c)], rps[(b_name, c)]
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    print(f"{c} connection(s): {a_name} {ma:.0f} req/s, {b_name} {mb:.0f} req/s "
          f"(means of {len(a)} runs each): {a_name} / {b_name} = {ma / mb:.3f}, "
          f"{a_name} costs {100 * (1 - ma / mb):+.1f} % against {b_name}")
PY
